//! The one error type of every store backend.
//!
//! Variants are backend-neutral: a caller decides what to do from the variant alone, whatever the
//! backend (memory, shared memory, Redis, S3). Each backend maps its native failures onto them:
//!
//! - caller mistakes: [`StoreError::InvalidKey`], [`StoreError::InvalidFanIn`],
//!   [`StoreError::PayloadTooLarge`] — retrying the same call cannot help;
//! - absent data: [`StoreError::NotFound`] — only `get` returns it (deleting an absent object
//!   succeeds);
//! - transient conditions: [`StoreError::Throttled`], [`StoreError::Timeout`] — worth a retry
//!   with backoff;
//! - the store itself is unusable: [`StoreError::Unavailable`], [`StoreError::StorageFull`] —
//!   the message says what to do;
//! - damaged data: [`StoreError::Corrupt`] — an object does not have the layout its reader
//!   expects (see [`crate::frame`]);
//! - anything else from the operating system: [`StoreError::Io`], naming the key involved.
//!
//! The enum is `#[non_exhaustive]` so that later backends can add conditions without breaking
//! callers.

/// An error from a [`Store`](crate::Store) operation.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No object is stored under `key`.
    #[error("no object is stored under key {key:?}")]
    NotFound {
        /// The key that was read.
        key: String,
    },

    /// `key` (or a prefix) is not a valid store key; see [`validate_key`](crate::validate_key).
    #[error("invalid store key {key:?}: {reason}")]
    InvalidKey {
        /// The rejected key or prefix.
        key: String,
        /// Why it was rejected.
        reason: String,
    },

    /// A fan-in call is inconsistent: an invalid member, an expected size of zero, or more
    /// distinct members than the expected size.
    #[error("invalid fan-in on key {key:?}: {reason}")]
    InvalidFanIn {
        /// The key of the fan-in set.
        key: String,
        /// What is wrong.
        reason: String,
    },

    /// The object is larger than the backend accepts.
    #[error("object {key:?} is {size} bytes, over the store's limit of {limit} bytes")]
    PayloadTooLarge {
        /// The key that was written.
        key: String,
        /// The size of the rejected object in bytes.
        size: u64,
        /// The largest object the backend accepts, in bytes.
        limit: u64,
    },

    /// The backend has no room left for the object.
    #[error("no room left in the store to write {key:?}: {message}")]
    StorageFull {
        /// The key that was written.
        key: String,
        /// What ran out and what to do about it.
        message: String,
    },

    /// The backend asked the caller to slow down; retry later.
    #[error("store throttled the request: {message}")]
    Throttled {
        /// The backend's explanation.
        message: String,
    },

    /// The backend did not answer in time; the operation may or may not have happened.
    #[error("store request timed out: {message}")]
    Timeout {
        /// What timed out.
        message: String,
    },

    /// The store cannot be used at all (server down, directory missing).
    #[error("store unavailable: {message}")]
    Unavailable {
        /// What is wrong and what to do about it.
        message: String,
    },

    /// Stored data does not have the expected layout.
    #[error("corrupt store object: {message}")]
    Corrupt {
        /// What is wrong with the data.
        message: String,
    },

    /// An operating-system error not covered by another variant.
    #[error("I/O error{}: {source}", on_key(key))]
    Io {
        /// The key (or prefix) involved; empty for operations on the whole store.
        key: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

fn on_key(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!(" on store key {key:?}")
    }
}
