//! [`PatientStore`]: any store whose transient failures are tried again for longer.
//!
//! Backends retry a transient failure a few times themselves (S3's client 3 times, see
//! [`ChaosStore`](crate::ChaosStore)); a function whose store operation fails after those fails
//! its batch, and the client's driver redoes the batch. The client has nobody to redo its work:
//! a store operation of the client that fails (an upload, the lease, fetching a result,
//! deleting the run's objects) fails the whole compute, perhaps after every task ran. So the
//! client's store is wrapped in a `PatientStore`, which keeps trying a transient failure with a
//! jittered exponential backoff (50 ms doubling to 2 s) for up to [`PATIENCE`].
//!
//! Only what cannot do harm is tried again: a [`StoreError::Throttled`] (the store refused the
//! request before doing anything) for every operation, and a [`StoreError::Timeout`] (which
//! may have taken effect) only for operations that give the same result when repeated (`get`,
//! `put`, `delete`, `delete_prefix`, `list`); a `put_new` or a `fan_in` repeated after its own
//! write took effect would answer "not yours".

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{Payload, Store, StoreError};

/// How long a transient failure is tried again, in all.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A store whose transient failures are tried again for up to a patience.
#[derive(Debug)]
pub struct PatientStore<S: ?Sized> {
    inner: Arc<S>,
    patience: Duration,
}

impl<S: Store + ?Sized> PatientStore<S> {
    pub fn new(inner: Arc<S>) -> Self {
        PatientStore {
            inner,
            patience: PATIENCE,
        }
    }

    /// This store with another patience.
    pub fn with_patience(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }

    /// Runs `operation` until it succeeds, fails for good, or the patience is spent.
    async fn patiently<T, F, Fut>(&self, repeatable: bool, operation: F) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let started = tokio::time::Instant::now();
        let mut ceiling = Duration::from_millis(50);
        loop {
            let error = match operation().await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let transient = match error {
                StoreError::Throttled { .. } => true,
                StoreError::Timeout { .. } => repeatable,
                _ => false,
            };
            let delay = ceiling.mul_f64(fastrand::f64());
            if !transient || started.elapsed() + delay > self.patience {
                return Err(error);
            }
            tokio::time::sleep(delay).await;
            ceiling = (ceiling * 2).min(Duration::from_secs(2));
        }
    }
}

#[async_trait]
impl<S: Store + ?Sized> Store for PatientStore<S> {
    async fn put(&self, key: &str, payload: Payload) -> Result<(), StoreError> {
        self.patiently(true, || self.inner.put(key, payload.clone()))
            .await
    }

    async fn put_new(&self, key: &str, payload: Payload) -> Result<bool, StoreError> {
        self.patiently(false, || self.inner.put_new(key, payload.clone()))
            .await
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        self.patiently(true, || self.inner.get(key)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.patiently(true, || self.inner.delete(key)).await
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, StoreError> {
        self.patiently(true, || self.inner.delete_prefix(prefix))
            .await
    }

    async fn fan_in(&self, key: &str, member: &str, expected: u32) -> Result<bool, StoreError> {
        self.patiently(false, || self.inner.fan_in(key, member, expected))
            .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.patiently(true, || self.inner.list(prefix)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChaosStore, MemoryStore};
    use dask_serverless_chaos::Chaos;

    #[tokio::test(start_paused = true)]
    async fn transient_failures_that_outlast_the_backend_retries_are_tried_again() {
        // Half the tries fail: one operation in sixteen fails every try of the backend.
        let chaotic = Arc::new(ChaosStore::new(
            Arc::new(MemoryStore::new()),
            Chaos::parse("store=0.5;seed=4").unwrap(),
        ));
        let mut surfaced = 0;
        for index in 0..200 {
            if chaotic
                .put(&format!("run/a/{index}"), Payload::from("a"))
                .await
                .is_err()
            {
                surfaced += 1;
            }
        }
        assert!(surfaced > 0, "the backend alone gives up now and then");
        let patient = PatientStore::new(chaotic);
        for index in 0..200 {
            let key = format!("run/b/{index}");
            patient.put(&key, Payload::from("b")).await.unwrap();
            assert!(
                patient
                    .put_new(&format!("{key}/new"), Payload::from("b"))
                    .await
                    .unwrap()
            );
            assert!(patient.fan_in(&format!("{key}/set"), "1", 1).await.unwrap());
            assert_eq!(patient.get(&key).await.unwrap(), Bytes::from("b"));
        }
        // The values and the put_new objects (fan-in sets are not counted as objects).
        assert_eq!(patient.delete_prefix("run/b/").await.unwrap(), 400);
    }

    /// A store whose every operation fails with `error`.
    #[derive(Debug)]
    struct Failing(fn() -> StoreError, std::sync::atomic::AtomicU32);

    #[async_trait]
    impl Store for Failing {
        async fn put(&self, _: &str, _: Payload) -> Result<(), StoreError> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err(self.0())
        }
        async fn put_new(&self, _: &str, _: Payload) -> Result<bool, StoreError> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err(self.0())
        }
        async fn get(&self, _: &str) -> Result<Bytes, StoreError> {
            Err(self.0())
        }
        async fn delete(&self, _: &str) -> Result<(), StoreError> {
            Err(self.0())
        }
        async fn delete_prefix(&self, _: &str) -> Result<u64, StoreError> {
            Err(self.0())
        }
        async fn fan_in(&self, _: &str, _: &str, _: u32) -> Result<bool, StoreError> {
            Err(self.0())
        }
        async fn list(&self, _: &str) -> Result<Vec<String>, StoreError> {
            Err(self.0())
        }
    }

    fn timeout() -> StoreError {
        StoreError::Timeout {
            message: "no answer".into(),
        }
    }

    fn unavailable() -> StoreError {
        StoreError::Unavailable {
            message: "down".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn only_harmless_repeats_are_tried_and_the_patience_ends_them() {
        let timing_out = Arc::new(Failing(timeout, Default::default()));
        let patient = PatientStore::new(timing_out.clone()).with_patience(Duration::from_secs(5));
        // A put repeated is the same put: tried until the patience ends.
        let started = tokio::time::Instant::now();
        assert!(matches!(
            patient.put("run/a", Payload::from("a")).await,
            Err(StoreError::Timeout { .. })
        ));
        assert!(started.elapsed() <= Duration::from_secs(5));
        let tries = timing_out.1.load(std::sync::atomic::Ordering::Relaxed);
        assert!(tries > 3, "{tries} tries");
        // A put_new whose write may have taken effect is not repeated.
        timing_out.1.store(0, std::sync::atomic::Ordering::Relaxed);
        assert!(patient.put_new("run/b", Payload::from("b")).await.is_err());
        assert_eq!(timing_out.1.load(std::sync::atomic::Ordering::Relaxed), 1);
        // Nor is a failure that is not transient.
        let down = Arc::new(Failing(unavailable, Default::default()));
        let patient = PatientStore::new(down.clone());
        assert!(matches!(
            patient.put("run/c", Payload::from("c")).await,
            Err(StoreError::Unavailable { .. })
        ));
        assert_eq!(down.1.load(std::sync::atomic::Ordering::Relaxed), 1);
    }
}
