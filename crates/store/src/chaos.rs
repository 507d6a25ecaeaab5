//! [`ChaosStore`]: any store, with transient failures and latency spikes (a testing aid).
//!
//! The wrapper plays what a cloud store does to its clients: a `store` fraction of operations
//! hits a transient failure (S3's 503 SlowDown, a Redis timeout), a `latency` fraction takes
//! `latency_ms` longer (see [`dask_serverless_chaos`]).
//!
//! **Retries.** A real client retries such failures: `object_store` retries S3's 503s
//! (`S3Options::max_retries`, 3 by default) and the Redis connection manager reconnects; the
//! engine above the [`Store`] trait does not retry (a store error fails the batch, and the
//! client's driver redoes the batch within its crash budget of 3). So the wrapper stands for the
//! backend *and its client's retries*: a failed try waits a jittered backoff and tries again,
//! up to [`RETRIES`] retries, and only a failure of every try reaches the engine. At a rate of
//! 5%, one operation in 160,000 surfaces as a [`StoreError::Throttled`]; a test that wants the
//! engine's recovery exercised sets a high rate.
//!
//! Injected failures happen before the operation reaches the backend, as a 503 does: a
//! failed try changed nothing. (A timeout whose operation took effect is not modelled: retried,
//! a `put_new` or a `fan_in` would answer "not yours" for its own write.)
//!
//! Each decision draws from the chaos seed and the operation, its key (without the run's id,
//! which is drawn anew for each run), how many times this
//! wrapper saw that operation on that key before, and the try: the same work replays the same
//! faults. Each party of a run (the client, each invocation) wraps its store with a seed of
//! its own (`Chaos::scoped`), so that a recovery does not meet the very failures of the
//! attempt it redoes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use dask_serverless_chaos::{Chaos, Fault};

use crate::{Payload, Store, StoreError};

/// A key without its run id (`run-<id>/values/3` is `values/3`): run ids are drawn anew for
/// each run, and a replay must meet the same faults (the run's seed already tells runs apart).
fn stable_key(key: &str) -> &str {
    match key.split_once('/') {
        Some((first, rest)) if first.starts_with("run-") => rest,
        _ => key,
    }
}

/// Retries of a failed try, as `object_store`'s default for S3.
pub const RETRIES: u32 = 3;

/// A store whose operations fail transiently and slow down now and then.
#[derive(Debug)]
pub struct ChaosStore<S: ?Sized> {
    chaos: Chaos,
    occurrences: Mutex<HashMap<(&'static str, String), u64>>,
    inner: std::sync::Arc<S>,
}

impl<S: Store + ?Sized> ChaosStore<S> {
    pub fn new(inner: std::sync::Arc<S>, chaos: Chaos) -> Self {
        ChaosStore {
            chaos,
            occurrences: Mutex::default(),
            inner,
        }
    }

    pub fn chaos(&self) -> &Chaos {
        &self.chaos
    }

    /// Plays the faults of one operation: latency, then failed tries until one passes or
    /// every try failed.
    async fn before(&self, operation: &'static str, key: &str) -> Result<(), StoreError> {
        let spec = self.chaos.spec();
        if spec.store == 0.0 && spec.latency == 0.0 {
            return Ok(());
        }
        let occurrence = {
            let mut occurrences = self
                .occurrences
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let count = occurrences.entry((operation, key.to_owned())).or_default();
            *count += 1;
            count.to_string()
        };
        let key = stable_key(key);
        let identity = [operation, key, occurrence.as_str()];
        let mut latency = identity.to_vec();
        latency.push("latency");
        if self.chaos.happens(spec.latency, &latency) {
            self.chaos
                .record(Fault::Latency, &format!("{operation} {key}"));
            latency.push("spike");
            let spike = spec.latency_ms as f64 * (0.5 + self.chaos.draw(&latency));
            tokio::time::sleep(Duration::from_millis(spike as u64)).await;
        }
        for attempt in 0..=RETRIES {
            let attempt_text = attempt.to_string();
            let mut failure = identity.to_vec();
            failure.extend(["store", attempt_text.as_str()]);
            if !self.chaos.happens(spec.store, &failure) {
                return Ok(());
            }
            self.chaos.record(
                Fault::Store,
                &format!("{operation} {key} try {}", attempt + 1),
            );
            if attempt < RETRIES {
                failure.push("backoff");
                let ceiling = 20.0 * f64::from(1u32 << attempt);
                let backoff = ceiling * self.chaos.draw(&failure);
                tokio::time::sleep(Duration::from_millis(backoff as u64)).await;
            }
        }
        Err(StoreError::Throttled {
            message: format!(
                "SlowDown (injected): {operation} of {key:?} failed on each of {} tries",
                RETRIES + 1
            ),
        })
    }
}

#[async_trait]
impl<S: Store + ?Sized> Store for ChaosStore<S> {
    async fn put(&self, key: &str, payload: Payload) -> Result<(), StoreError> {
        self.before("put", key).await?;
        self.inner.put(key, payload).await
    }

    async fn put_new(&self, key: &str, payload: Payload) -> Result<bool, StoreError> {
        self.before("put_new", key).await?;
        self.inner.put_new(key, payload).await
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        self.before("get", key).await?;
        self.inner.get(key).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.before("delete", key).await?;
        self.inner.delete(key).await
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, StoreError> {
        self.before("delete_prefix", prefix).await?;
        self.inner.delete_prefix(prefix).await
    }

    async fn fan_in(&self, key: &str, member: &str, expected: u32) -> Result<bool, StoreError> {
        self.before("fan_in", key).await?;
        self.inner.fan_in(key, member, expected).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.before("list", prefix).await?;
        self.inner.list(prefix).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::MemoryStore;

    fn store(setting: &str) -> ChaosStore<MemoryStore> {
        ChaosStore::new(Arc::new(MemoryStore::new()), Chaos::parse(setting).unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_retried_and_counted_and_only_all_failed_tries_surface() {
        let store = store("store=0.5;seed=1");
        let mut surfaced = 0;
        for index in 0..400 {
            let key = format!("run/value/{index}");
            match store.put(&key, Payload::from("value")).await {
                Ok(()) => assert!(
                    store.inner.get(&key).await.is_ok(),
                    "a put that passed did not write"
                ),
                Err(StoreError::Throttled { message }) => {
                    assert!(message.contains("failed on each of 4 tries"), "{message}");
                    assert!(store.inner.get(&key).await.is_err(), "a failed put wrote");
                    surfaced += 1;
                }
                Err(other) => panic!("unexpected {other}"),
            }
        }
        let injected = store.chaos().counters().get(Fault::Store);
        // Half the first tries of 400 puts fail, a quarter of the second ones...: about 375
        // failures; one put in 16 fails every try.
        assert!(
            (300..450).contains(&injected),
            "{injected} failures injected"
        );
        assert!((5..60).contains(&surfaced), "{surfaced} operations failed");
    }

    #[tokio::test(start_paused = true)]
    async fn latency_spikes_delay_operations() {
        let store = store("latency=1,latency_ms=100;seed=2");
        let started = tokio::time::Instant::now();
        store.put("run/a", Payload::from("a")).await.unwrap();
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(50), "{waited:?}");
        assert!(waited < Duration::from_millis(151), "{waited:?}");
        assert_eq!(store.chaos().counters().get(Fault::Latency), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_same_seed_replays_the_same_faults() {
        let outcomes = |seed: u64| async move {
            let store = store(&format!("store=0.7;seed={seed}"));
            let mut outcomes = Vec::new();
            for index in 0..50 {
                outcomes.push(
                    store
                        .put(&format!("k/{index}"), Payload::from("v"))
                        .await
                        .is_ok(),
                );
            }
            (outcomes, store.chaos().counters().get(Fault::Store))
        };
        assert_eq!(outcomes(5).await, outcomes(5).await);
        assert_ne!(outcomes(5).await, outcomes(6).await);
    }

    #[tokio::test]
    async fn without_faults_it_is_the_inner_store() {
        let store = store("kill=1");
        assert!(
            store
                .put_new("run/claim", Payload::from("a"))
                .await
                .unwrap()
        );
        assert!(
            !store
                .put_new("run/claim", Payload::from("b"))
                .await
                .unwrap()
        );
        assert!(!store.fan_in("run/set", "a", 2).await.unwrap());
        assert!(store.fan_in("run/set", "b", 2).await.unwrap());
        assert_eq!(
            store.list("run/").await.unwrap(),
            vec!["run/claim".to_owned()]
        );
        assert_eq!(store.delete_prefix("run/").await.unwrap(), 1);
    }
}
