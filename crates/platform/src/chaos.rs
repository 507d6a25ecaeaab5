//! Fault injection around the platform traits (a testing aid): [`ChaosInvoker`] throttles and
//! duplicates invocations, [`ChaosResultChannel`] makes sends and receives fail transiently.
//!
//! What [`ChaosInvoker`] plays (rates from a [`ChaosSpec`](dask_serverless_chaos::ChaosSpec)):
//!
//! * **Throttles.** A `throttle` fraction of invocations is refused with a 429 at its first try;
//!   a refused try is followed by another refusal with probability one half or the rate,
//!   whichever is higher (a burst). Like the backends' own handling of 429s, the wrapper waits
//!   a jittered exponential backoff ([`RetryPolicy::delay`]) between tries, and it never gives
//!   up: every burst ends, and the invocation goes through.
//! * **Duplicates.** A `duplicate` fraction of asynchronous invocations is delivered twice, as
//!   Lambda's at-least-once delivery may: half of them at once, the others late (after 0.2 to
//!   2 s, in the background, when the first delivery has usually run).
//!
//! Decisions draw from the chaos seed and the invocation's payload without what changes from
//! one replay to the next (the run's id, the time it was sent: what is left names the batch and
//! the attempt), how many times this wrapper invoked that payload before, and the
//! try: the same work replays the same faults. Backoff delays are jittered from the thread's
//! generator, as in production: they change timings, never decisions.
//!
//! What [`ChaosResultChannel`] plays: a `channel` fraction of the tries of a send or a receive
//! fails transiently (SQS's 500 `InternalError`) before reaching the channel, so a failed try
//! loses and sends nothing. The wrapper stands for the channel *and its client's retries* (the
//! backends retry server errors): a failed try waits a backoff ([`RetryPolicy::delay`]) and
//! tries again, up to the policy's `maximum_attempts` tries, and only an operation whose every
//! try failed reaches the caller, as [`PlatformError::Unavailable`]. Decisions draw from the
//! seed, the operation (`send` or `receive`), how many of them this wrapper made before, and
//! the try.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use dask_serverless_chaos::{Chaos, Fault};

use crate::{Invoker, PlatformError, ResultChannel, RetryPolicy};

/// An invoker whose invocations are throttled in bursts and delivered twice now and then.
#[derive(Debug)]
pub struct ChaosInvoker<I: ?Sized> {
    chaos: Chaos,
    retry: RetryPolicy,
    occurrences: Mutex<HashMap<Bytes, u64>>,
    inner: Arc<I>,
}

impl<I: Invoker + ?Sized + 'static> ChaosInvoker<I> {
    pub fn new(inner: Arc<I>, chaos: Chaos) -> Self {
        ChaosInvoker {
            chaos,
            retry: RetryPolicy::default(),
            occurrences: Mutex::default(),
            inner,
        }
    }

    /// This wrapper with its own backoff between throttled tries.
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn chaos(&self) -> &Chaos {
        &self.chaos
    }

    /// The identity of one invocation: its payload without what differs from one replay to
    /// the next (see [`Self::stable_identity`]), and how often it was invoked before.
    fn identity(&self, payload: &Bytes) -> (String, String) {
        let text = Self::stable_identity(payload);
        let mut occurrences = self
            .occurrences
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let count = occurrences.entry(Bytes::from(text.clone())).or_default();
        *count += 1;
        (text, count.to_string())
    }

    /// The part of an invocation's payload that names the same work in every replay: a run's
    /// event without its run context (the run id is drawn anew for each run; the context's
    /// seed already tells runs apart) and without the time it was sent. A payload that is not
    /// such an event is its own identity.
    fn stable_identity(payload: &[u8]) -> String {
        match serde_json::from_slice::<serde_json::Value>(payload) {
            Ok(serde_json::Value::Object(mut event)) => {
                event.remove("run");
                event.remove("invoked_at_us");
                serde_json::Value::Object(event).to_string()
            }
            _ => String::from_utf8_lossy(payload).into_owned(),
        }
    }

    /// Plays the throttles of one invocation: refused tries, each followed by a backoff.
    async fn throttles(&self, function: &str, payload: &str, occurrence: &str) {
        let rate = self.chaos.spec().throttle;
        let mut attempt: u32 = 0;
        loop {
            let attempt_text = attempt.to_string();
            let identity = [payload, occurrence, "throttle", attempt_text.as_str()];
            let chance = if attempt == 0 { rate } else { rate.max(0.5) };
            if !self.chaos.happens(chance, &identity) {
                return;
            }
            attempt += 1;
            self.chaos
                .record(Fault::Throttle, &format!("{function} try {attempt}"));
            tokio::time::sleep(self.retry.delay(attempt, None)).await;
        }
    }
}

#[async_trait]
impl<I: Invoker + ?Sized + 'static> Invoker for ChaosInvoker<I> {
    async fn invoke_event(&self, function: &str, payload: Bytes) -> Result<(), PlatformError> {
        let (text, occurrence) = self.identity(&payload);
        self.throttles(function, &text, &occurrence).await;
        let duplicate = [text.as_str(), occurrence.as_str(), "duplicate"];
        if !self.chaos.happens(self.chaos.spec().duplicate, &duplicate) {
            return self.inner.invoke_event(function, payload).await;
        }
        let late = self
            .chaos
            .draw(&[text.as_str(), occurrence.as_str(), "late"]);
        if late < 0.5 {
            self.chaos.record(Fault::Duplicate, "at once");
            let (first, second) = tokio::join!(
                self.inner.invoke_event(function, payload.clone()),
                self.inner.invoke_event(function, payload),
            );
            if let Err(error) = second {
                eprintln!("dask-serverless: a duplicate delivery failed: {error}");
            }
            return first;
        }
        self.chaos.record(Fault::Duplicate, "late");
        self.inner.invoke_event(function, payload.clone()).await?;
        let delay = Duration::from_millis(200 + (1800.0 * (late - 0.5) * 2.0) as u64);
        let inner = Arc::clone(&self.inner);
        let function = function.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Err(error) = inner.invoke_event(&function, payload).await {
                eprintln!("dask-serverless: a late duplicate delivery failed: {error}");
            }
        });
        Ok(())
    }

    async fn invoke_request_response(
        &self,
        function: &str,
        payload: Bytes,
    ) -> Result<Bytes, PlatformError> {
        let (text, occurrence) = self.identity(&payload);
        self.throttles(function, &text, &occurrence).await;
        self.inner.invoke_request_response(function, payload).await
    }
}

/// A result channel whose sends and receives fail transiently now and then (see the module
/// documentation).
#[derive(Debug)]
pub struct ChaosResultChannel<C: ?Sized> {
    chaos: Chaos,
    retry: RetryPolicy,
    occurrences: Mutex<HashMap<&'static str, u64>>,
    inner: Arc<C>,
}

impl<C: ResultChannel + ?Sized> ChaosResultChannel<C> {
    pub fn new(inner: Arc<C>, chaos: Chaos) -> Self {
        ChaosResultChannel {
            chaos,
            retry: RetryPolicy::default(),
            occurrences: Mutex::default(),
            inner,
        }
    }

    /// This wrapper with its own tries and backoff.
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn chaos(&self) -> &Chaos {
        &self.chaos
    }

    /// Plays the failed tries of one operation: `Ok` once a try passes.
    async fn before(&self, operation: &'static str) -> Result<(), PlatformError> {
        let rate = self.chaos.spec().channel;
        if rate == 0.0 {
            return Ok(());
        }
        let occurrence = {
            let mut occurrences = self
                .occurrences
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let count = occurrences.entry(operation).or_default();
            *count += 1;
            count.to_string()
        };
        let tries = self.retry.maximum_attempts.max(1);
        for attempt in 1..=tries {
            let attempt_text = attempt.to_string();
            let identity = [
                operation,
                occurrence.as_str(),
                "channel",
                attempt_text.as_str(),
            ];
            if !self.chaos.happens(rate, &identity) {
                return Ok(());
            }
            self.chaos
                .record(Fault::Channel, &format!("{operation} try {attempt}"));
            if attempt < tries {
                tokio::time::sleep(self.retry.delay(attempt, None)).await;
            }
        }
        Err(PlatformError::Unavailable {
            endpoint: "the result channel".to_string(),
            message: format!(
                "HTTP 500 InternalError (injected): the {operation} failed on each of {tries} tries"
            ),
        })
    }
}

#[async_trait]
impl<C: ResultChannel + ?Sized> ResultChannel for ChaosResultChannel<C> {
    async fn send(&self, messages: Vec<Bytes>) -> Result<(), PlatformError> {
        self.before("send").await?;
        self.inner.send(messages).await
    }

    async fn receive(&self, max_wait: Duration) -> Result<Vec<Bytes>, PlatformError> {
        self.before("receive").await?;
        self.inner.receive(max_wait).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[test]
    fn an_event_is_the_same_work_whatever_its_run_id_and_send_time() {
        let event = |run: &str, sent: u64| {
            format!(
                r#"{{"run":{{"run_id":"{run}"}},"batch":3,"attempt":2,"invoked_at_us":{sent}}}"#
            )
        };
        let first = ChaosInvoker::<CountingInvoker>::stable_identity(event("run-a", 1).as_bytes());
        let replay = ChaosInvoker::<CountingInvoker>::stable_identity(event("run-b", 2).as_bytes());
        assert_eq!(first, replay);
        assert!(
            first.contains("\"batch\":3") && first.contains("\"attempt\":2"),
            "{first}"
        );
        let other_batch = event("run-a", 1).replace("\"batch\":3", "\"batch\":4");
        assert_ne!(
            first,
            ChaosInvoker::<CountingInvoker>::stable_identity(other_batch.as_bytes())
        );
        assert_eq!(
            ChaosInvoker::<CountingInvoker>::stable_identity(b"not json"),
            "not json"
        );
    }

    /// Counts the invocations that reach the platform.
    #[derive(Debug, Default)]
    struct CountingInvoker {
        events: Mutex<Vec<Bytes>>,
        calls: AtomicU64,
    }

    #[async_trait]
    impl Invoker for CountingInvoker {
        async fn invoke_event(&self, _: &str, payload: Bytes) -> Result<(), PlatformError> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            self.events.lock().unwrap().push(payload);
            Ok(())
        }

        async fn invoke_request_response(
            &self,
            _: &str,
            payload: Bytes,
        ) -> Result<Bytes, PlatformError> {
            Ok(payload)
        }
    }

    fn invoker(setting: &str) -> (Arc<CountingInvoker>, ChaosInvoker<CountingInvoker>) {
        let inner = Arc::new(CountingInvoker::default());
        let chaos = ChaosInvoker::new(Arc::clone(&inner), Chaos::parse(setting).unwrap());
        (inner, chaos)
    }

    #[tokio::test(start_paused = true)]
    async fn throttled_invocations_back_off_and_always_go_through() {
        let (inner, invoker) = invoker("throttle=0.9;seed=4");
        let started = tokio::time::Instant::now();
        for batch in 0..100 {
            let payload = Bytes::from(format!("{{\"batch\":{batch}}}"));
            invoker.invoke_event("f", payload).await.unwrap();
        }
        assert_eq!(inner.calls.load(Ordering::Relaxed), 100);
        let throttles = invoker.chaos().counters().get(Fault::Throttle);
        // At 0.9 most invocations see a burst of several refusals.
        assert!(throttles > 300, "{throttles} throttles");
        assert!(started.elapsed() > Duration::from_secs(1), "no backoff");
    }

    #[tokio::test(start_paused = true)]
    async fn duplicates_deliver_twice_at_once_or_late() {
        let (inner, invoker) = invoker("duplicate=0.5;seed=9");
        for batch in 0..200 {
            let payload = Bytes::from(format!("{{\"batch\":{batch}}}"));
            invoker.invoke_event("f", payload).await.unwrap();
        }
        let duplicates = invoker.chaos().counters().get(Fault::Duplicate);
        assert!((60..140).contains(&duplicates), "{duplicates} duplicates");
        let before_late = inner.calls.load(Ordering::Relaxed);
        assert!(before_late > 200 && before_late < 200 + duplicates);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(inner.calls.load(Ordering::Relaxed), 200 + duplicates);
        // Every duplicate is the same event as its original.
        let events = inner.events.lock().unwrap();
        let distinct: std::collections::BTreeSet<&Bytes> = events.iter().collect();
        assert_eq!(distinct.len(), 200);
    }

    /// Keeps what is sent, and counts the tries that reach it.
    #[derive(Debug, Default)]
    struct RecordingChannel {
        messages: Mutex<Vec<Bytes>>,
        tries: AtomicU64,
    }

    #[async_trait]
    impl ResultChannel for RecordingChannel {
        async fn send(&self, messages: Vec<Bytes>) -> Result<(), PlatformError> {
            self.tries.fetch_add(1, Ordering::Relaxed);
            self.messages.lock().unwrap().extend(messages);
            Ok(())
        }

        async fn receive(&self, _: Duration) -> Result<Vec<Bytes>, PlatformError> {
            self.tries.fetch_add(1, Ordering::Relaxed);
            Ok(std::mem::take(&mut *self.messages.lock().unwrap()))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn channel_failures_are_retried_and_lose_nothing() {
        let inner = Arc::new(RecordingChannel::default());
        let channel = ChaosResultChannel::new(
            Arc::clone(&inner),
            Chaos::parse("channel=0.5;seed=3").unwrap(),
        );
        let started = tokio::time::Instant::now();
        for index in 0..100 {
            let message = Bytes::from(format!("message {index}"));
            channel.send(vec![message]).await.unwrap();
        }
        let received = channel.receive(Duration::ZERO).await.unwrap();
        assert_eq!(received.len(), 100, "every message, once");
        // Failed tries never reach the channel: one try of each operation does.
        assert_eq!(inner.tries.load(Ordering::Relaxed), 101);
        let failures = channel.chaos().counters().get(Fault::Channel);
        assert!((60..160).contains(&failures), "{failures} failed tries");
        assert!(started.elapsed() > Duration::from_secs(1), "no backoff");

        // Past the policy's tries, the failure reaches the caller, and nothing was sent.
        let inner = Arc::new(RecordingChannel::default());
        let channel =
            ChaosResultChannel::new(Arc::clone(&inner), Chaos::parse("channel=1").unwrap())
                .with_retry_policy(RetryPolicy {
                    maximum_attempts: 3,
                    ..RetryPolicy::default()
                });
        let error = channel
            .send(vec![Bytes::from_static(b"lost")])
            .await
            .unwrap_err();
        assert!(
            matches!(&error, PlatformError::Unavailable { message, .. } if message.contains("each of 3 tries")),
            "{error:?}"
        );
        assert_eq!(inner.tries.load(Ordering::Relaxed), 0);
        assert_eq!(channel.chaos().counters().get(Fault::Channel), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn the_same_seed_replays_the_same_faults() {
        let run = |seed: u64| async move {
            let (inner, invoker) = invoker(&format!("duplicate=0.3,throttle=0.3;seed={seed}"));
            for batch in 0..50 {
                let payload = Bytes::from(format!("{{\"batch\":{batch}}}"));
                invoker.invoke_event("f", payload).await.unwrap();
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
            // Jittered backoffs may reorder deliveries; which ones happen replays.
            let mut events = inner.events.lock().unwrap().clone();
            events.sort();
            (events, invoker.chaos().counters().all())
        };
        assert_eq!(run(1).await, run(1).await);
        assert_ne!(run(1).await.1, run(2).await.1);
    }
}
