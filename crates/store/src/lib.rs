//! The store through which serverless functions exchange task outputs and resolve fan-in.
//!
//! # Model
//!
//! A store holds two kinds of things, each named by a [key](validate_key) (a relative,
//! `/`-separated path such as `run-17/output/task-3`):
//!
//! - **Objects**: immutable byte strings. A function writes an output other functions need with
//!   [`Store::put`]; the others read it with [`Store::get`]. A put is atomic: a reader sees the
//!   whole old object, the whole new one, or none — never a mix or a prefix. Writing an existing
//!   key replaces the object. [`Store::put_new`] writes only if the key holds no object, and
//!   tells whether it wrote: of concurrent writers of one key, exactly one wins.
//! - **Fan-in sets**: sets of member names used to release a task once all its parents are done.
//!   Each finished parent calls [`Store::fan_in`] with its own name; exactly one call — the first
//!   add that makes the set reach the expected number of distinct members — returns `true`, and
//!   its caller runs the child. Re-adding a member (a retried or duplicated delivery) returns
//!   `false`, so a child is never released twice.
//!
//! Objects and fan-in sets live in separate namespaces: the same key may name one of each.
//! [`Store::list`] and [`Store::delete`] see objects only; [`Store::delete_prefix`] removes both,
//! which is how the client deletes everything a computation wrote when it ends, successful or
//! not. A key may also be a folder of other keys (`a` and `a/b` can both hold objects).
//!
//! # Contract
//!
//! [`Store`] is the minimal contract each backend implements; conveniences built on it live in
//! [`StoreExt`], implemented for every store. All methods are async and report failures as one
//! backend-neutral [`StoreError`]. Arguments are validated before any effect. Every backend must
//! pass the conformance suite (the `conformance` module, behind the `conformance` feature).
//!
//! Backends: [`MemoryStore`] (in-process), [`SharedMemoryStore`] (files in a shared-memory
//! directory, safe across processes, zero-copy reads), and behind cargo features `RedisStore`
//! (feature `redis`: a Redis server shared by many machines) and `S3Store` (feature `s3`: an S3
//! bucket, fan-in by conditional puts, no other service); feature `full` enables both. Each
//! backend's module documentation describes its layout, atomicity and limits. [`ChaosStore`]
//! wraps any store with transient failures and latency spikes, for testing. [`frame`] lays
//! several buffers out in one object so that Python's pickle protocol 5 buffers come back
//! zero-copy and aligned.

pub mod chaos;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
pub mod frame;
mod key;
mod memory;
mod patient;
mod payload;
#[cfg(feature = "redis")]
mod redis_store;
#[cfg(feature = "s3")]
mod s3_store;
mod shared_memory;

use async_trait::async_trait;
use bytes::Bytes;

pub use chaos::ChaosStore;
pub use error::StoreError;
pub use key::{MAX_KEY_LENGTH, MAX_MEMBER_LENGTH, MAX_SEGMENT_LENGTH, validate_key};
pub use memory::MemoryStore;
pub use patient::{PATIENCE, PatientStore};
pub use payload::Payload;
#[cfg(feature = "redis")]
pub use redis_store::{RedisOptions, RedisStore};
#[cfg(feature = "s3")]
pub use s3_store::{S3Credentials, S3Location, S3Options, S3Store};
pub use shared_memory::SharedMemoryStore;

/// A place where functions exchange objects and resolve fan-in. See the crate documentation for
/// the model.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Writes an object atomically: readers see the whole object or nothing. Replaces any object
    /// already stored under `key`.
    async fn put(&self, key: &str, payload: Payload) -> Result<(), StoreError>;

    /// Writes an object only if no object is stored under `key`: `true` if it wrote, `false`
    /// (and nothing changed) if an object was there. Atomic like [`Store::put`], and safe for
    /// concurrent callers in many processes: of several `put_new` of one absent key, exactly
    /// one returns `true`. This is how a function *claims* something (a batch to run) that
    /// duplicates of it may race for.
    async fn put_new(&self, key: &str, payload: Payload) -> Result<bool, StoreError>;

    /// Reads a whole object, or [`StoreError::NotFound`] naming the key if there is none.
    ///
    /// The bytes stay valid after the object is deleted or replaced, and they belong to the
    /// caller: no other reader and not the stored object share their memory, so a caller may
    /// write into them (the shared-memory store maps objects privately, copy-on-write; the
    /// other backends return fresh buffers).
    async fn get(&self, key: &str) -> Result<Bytes, StoreError>;

    /// Deletes an object. Deleting an absent object succeeds.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Deletes every object and fan-in set whose key starts with `prefix` (which ends with `/`),
    /// and returns how many objects were deleted.
    async fn delete_prefix(&self, prefix: &str) -> Result<u64, StoreError>;

    /// Adds `member` to the fan-in set at `key`, whose final size is `expected` distinct members.
    ///
    /// Returns `true` for exactly one call: the first add that makes the set reach `expected`
    /// members. Re-adding a member returns `false`. Adding a new member to a complete set is a
    /// [`StoreError::InvalidFanIn`]. Safe for concurrent callers in many processes.
    async fn fan_in(&self, key: &str, member: &str, expected: u32) -> Result<bool, StoreError>;

    /// Lists the keys of the objects under `prefix` (which ends with `/`, or is empty for all
    /// objects), at any depth, in lexicographic order.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
}

/// Conveniences built on [`Store`], available on every store (including `dyn Store`).
#[async_trait]
pub trait StoreExt: Store {
    /// Writes `parts` as one [framed](frame) object, without copying them.
    async fn put_parts(&self, key: &str, parts: Vec<Bytes>) -> Result<(), StoreError> {
        self.put(key, frame::encode(parts)).await
    }

    /// Reads a [framed](frame) object back as its parts (zero-copy slices of the object).
    async fn get_parts(&self, key: &str) -> Result<Vec<Bytes>, StoreError> {
        let object = self.get(key).await?;
        frame::decode(&object).map_err(|error| match error {
            StoreError::Corrupt { message } => StoreError::Corrupt {
                message: format!("object {key:?}: {message}"),
            },
            other => other,
        })
    }

    /// Reads an object, or `None` if there is none.
    async fn get_optional(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        match self.get(key).await {
            Ok(object) => Ok(Some(object)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }
}

impl<S: Store + ?Sized> StoreExt for S {}
