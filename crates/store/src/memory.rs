//! [`MemoryStore`]: an in-process store, for tests and single-process runs.
//!
//! Model: two ordered maps behind one mutex — objects (`key -> Bytes`) and fan-in sets
//! (`key -> set of members`). Every operation takes the lock once, so each is atomic with respect
//! to the others; no lock is held across an `.await`. Ordered maps give sorted listings and
//! let prefix operations visit only the keys under the prefix.
//!
//! `get` returns a reference-counted handle to the stored bytes (no copy). `put` stores the
//! payload as one contiguous buffer, copying only when it has several chunks. Nothing survives
//! the process.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;

use crate::key::{fan_in_overflow, validate_fan_in, validate_prefix};
use crate::{Payload, Store, StoreError, validate_key};

/// A store that keeps everything in this process's memory.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Bytes>,
    fan_in_sets: BTreeMap<String, BTreeSet<String>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a map half-updated (each operation is one
        // map call), so a poisoned lock is still consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        formatter
            .debug_struct("MemoryStore")
            .field("objects", &state.objects.len())
            .field("fan_in_sets", &state.fan_in_sets.len())
            .finish()
    }
}

/// The keys of `map` that start with `prefix`, in order.
fn keys_under<'map, V>(
    map: &'map BTreeMap<String, V>,
    prefix: &'map str,
) -> impl Iterator<Item = &'map String> + 'map {
    map.range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
        .map(|(key, _)| key)
        .take_while(move |key| key.starts_with(prefix))
}

fn remove_prefix<V>(map: &mut BTreeMap<String, V>, prefix: &str) -> u64 {
    let doomed: Vec<String> = keys_under(map, prefix).cloned().collect();
    for key in &doomed {
        map.remove(key);
    }
    doomed.len() as u64
}

#[async_trait]
impl Store for MemoryStore {
    async fn put(&self, key: &str, payload: Payload) -> Result<(), StoreError> {
        validate_key(key)?;
        let object = payload.into_contiguous();
        self.lock().objects.insert(key.to_owned(), object);
        Ok(())
    }

    async fn put_new(&self, key: &str, payload: Payload) -> Result<bool, StoreError> {
        validate_key(key)?;
        let object = payload.into_contiguous();
        let mut state = self.lock();
        if state.objects.contains_key(key) {
            return Ok(false);
        }
        state.objects.insert(key.to_owned(), object);
        Ok(true)
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        validate_key(key)?;
        // A copy: the caller owns what it reads (see `Store::get`).
        self.lock()
            .objects
            .get(key)
            .map(|object| Bytes::copy_from_slice(object))
            .ok_or_else(|| StoreError::NotFound {
                key: key.to_owned(),
            })
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        self.lock().objects.remove(key);
        Ok(())
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, StoreError> {
        validate_prefix(prefix, false)?;
        let mut state = self.lock();
        remove_prefix(&mut state.fan_in_sets, prefix);
        Ok(remove_prefix(&mut state.objects, prefix))
    }

    async fn fan_in(&self, key: &str, member: &str, expected: u32) -> Result<bool, StoreError> {
        validate_fan_in(key, member, expected)?;
        let mut state = self.lock();
        let members = state.fan_in_sets.entry(key.to_owned()).or_default();
        if members.contains(member) {
            return Ok(false);
        }
        if members.len() >= expected as usize {
            return Err(fan_in_overflow(key, member, expected));
        }
        members.insert(member.to_owned());
        Ok(members.len() == expected as usize)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        validate_prefix(prefix, true)?;
        Ok(keys_under(&self.lock().objects, prefix).cloned().collect())
    }
}
