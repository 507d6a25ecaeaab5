//! When and how long to wait before trying a request again.
//!
//! Three things are retried, each with its own bound:
//!
//! * **Throttles** (HTTP 429, `TooManyRequestsException`): the platform is short of capacity
//!   (its request rate, or its concurrency while functions run). They are retried with no cap on
//!   attempts, as long as the run makes progress: the invocation gives up, with
//!   [`PlatformError::Throttled`](crate::PlatformError::Throttled), only once
//!   [`RetryPolicy::throttle_patience`] (15 minutes by default) passed *without progress*, that
//!   is without any request through the same client, or any of its clones, being accepted since
//!   the later of the throttled request's first attempt and the last accepted request (a
//!   [`LastAccepted`], shared by the clones). Fifteen minutes is Lambda's longest function run:
//!   capacity held by running functions frees within it, so a platform that accepted nothing
//!   for that long will not free any by itself (a reserved concurrency of zero, an account limit
//!   held by another workload), and saying so beats waiting forever.
//! * **Connection failures** (the request never reached the server, so repeating it cannot run
//!   anything twice): a short budget of attempts and time (`connection_elapsed`, 1.5 s), so that
//!   a platform that is not running is reported within a couple of seconds.
//! * **Server errors**, where a backend retries them (the AWS backend does, the local platform's
//!   client does not: its server errors mean it is shutting down): `maximum_attempts` and
//!   `maximum_elapsed`.
//!
//! Time and attempts spent throttled count against no other budget: after a throttle, the
//! budgets of connection failures and server errors start afresh.
//!
//! Nothing retries after its caller lost interest: the retries are the loop of the invoking
//! future, so dropping the future (a run that ended, a function that timed out) stops them at
//! once — no request leaves after the drop.
//!
//! Delays grow exponentially with full jitter (a uniform draw between zero and
//! `initial_backoff * 2^attempt`, capped at `maximum_backoff`), so that many throttled callers
//! spread out; a `Retry-After` from the server is added to the drawn delay, so it is honoured as
//! a minimum.
//!
//! The jitter is drawn from the thread's generator, unless the policy has a `jitter_seed`: then
//! the delay of each attempt is a fixed draw of a generator seeded with it, so that a test (or a
//! replay) gets the same delays on every run. A seed is for tests: callers sharing a seeded policy
//! all wait alike, which is what jitter is there to avoid.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Bounds and pace of retries (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Most attempts of one request, the first included, for connection failures and server
    /// errors (throttles have no cap on attempts).
    pub maximum_attempts: u32,
    pub initial_backoff: Duration,
    pub maximum_backoff: Duration,
    /// For server errors: no retry starts after this much time since the first attempt.
    pub maximum_elapsed: Duration,
    /// For throttles: no retry starts once this much time passed without progress (no request
    /// of the client or its clones accepted since the later of the first attempt and the last
    /// accepted request; see [`LastAccepted`]).
    pub throttle_patience: Duration,
    /// Time budget for retrying connection failures.
    pub connection_elapsed: Duration,
    /// Seed of the jitter: `None` (the default) draws from the thread's generator; a seed makes
    /// [`RetryPolicy::delay`] a function of the attempt, the same on every run.
    pub jitter_seed: Option<u64>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            maximum_attempts: 12,
            initial_backoff: Duration::from_millis(50),
            maximum_backoff: Duration::from_secs(2),
            maximum_elapsed: Duration::from_secs(60),
            throttle_patience: Duration::from_secs(15 * 60),
            connection_elapsed: Duration::from_millis(1500),
            jitter_seed: None,
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn never() -> Self {
        Self {
            maximum_attempts: 1,
            throttle_patience: Duration::ZERO,
            ..Self::default()
        }
    }

    /// This policy with its jitter drawn from a generator seeded with `seed` (see the module
    /// documentation).
    pub fn with_jitter_seed(mut self, seed: u64) -> Self {
        self.jitter_seed = Some(seed);
        self
    }

    /// The delay before attempt `attempt + 1` (`attempt` counts from 1): full jitter, plus the
    /// server's `Retry-After`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exponent = attempt.saturating_sub(1).min(20);
        let ceiling = self
            .initial_backoff
            .saturating_mul(1 << exponent)
            .min(self.maximum_backoff);
        let jitter = ceiling.mul_f64(self.jitter_fraction(attempt));
        retry_after.unwrap_or_default() + jitter
    }

    /// A uniform draw in `[0, 1)` for `attempt`: from the thread's generator, or, with a seed,
    /// the `attempt`-th draw of a generator seeded with it.
    fn jitter_fraction(&self, attempt: u32) -> f64 {
        let Some(seed) = self.jitter_seed else {
            return fastrand::f64();
        };
        let mut generator = fastrand::Rng::with_seed(seed);
        for _ in 1..attempt {
            generator.u64(..);
        }
        generator.f64()
    }

    /// Whether another attempt may start after `attempt` attempts, `elapsed` time, and the
    /// coming `delay`, within a budget.
    pub fn allows(
        &self,
        attempt: u32,
        elapsed: Duration,
        delay: Duration,
        budget: Duration,
    ) -> bool {
        attempt < self.maximum_attempts && elapsed + delay <= budget
    }

    /// Whether a throttled request may try again after the coming `delay`, when `stalled` has
    /// passed without progress (see [`LastAccepted::stalled_since`]): attempts do not count.
    pub fn allows_throttled(&self, stalled: Duration, delay: Duration) -> bool {
        stalled + delay <= self.throttle_patience
    }
}

/// When a request through a client, or through any of its clones, was last accepted by the
/// platform: the progress that keeps throttled requests retrying (see the module
/// documentation). Clones share it.
#[derive(Debug, Clone, Default)]
pub struct LastAccepted {
    instant: Arc<Mutex<Option<Instant>>>,
}

impl LastAccepted {
    /// Nothing accepted yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A request was accepted now.
    pub fn record(&self) {
        *self.instant.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    /// The instant of the last accepted request, if any.
    pub fn instant(&self) -> Option<Instant> {
        *self.instant.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How long a request whose first attempt was at `started` has waited without progress:
    /// the time since the later of `started` and the last accepted request.
    pub fn stalled_since(&self, started: Instant) -> Duration {
        let since = self
            .instant()
            .map_or(started, |accepted| accepted.max(started));
        since.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_are_jittered_and_honour_retry_after() {
        let policy = RetryPolicy::default();
        for attempt in 1..30 {
            let delay = policy.delay(attempt, None);
            let ceiling = (policy.initial_backoff * 2u32.pow((attempt - 1).min(20)))
                .min(policy.maximum_backoff);
            assert!(
                delay <= ceiling,
                "attempt {attempt}: {delay:?} over {ceiling:?}"
            );
        }
        let with_server_hint = policy.delay(1, Some(Duration::from_secs(1)));
        assert!(with_server_hint >= Duration::from_secs(1));
        assert!(with_server_hint <= Duration::from_secs(1) + policy.initial_backoff);
    }

    #[test]
    fn bounds_are_respected() {
        let policy = RetryPolicy::default();
        assert!(policy.allows(1, Duration::ZERO, Duration::ZERO, policy.maximum_elapsed));
        assert!(!policy.allows(
            policy.maximum_attempts,
            Duration::ZERO,
            Duration::ZERO,
            policy.maximum_elapsed
        ));
        assert!(!policy.allows(
            1,
            Duration::from_secs(59),
            Duration::from_secs(2),
            policy.maximum_elapsed
        ));
        assert!(!RetryPolicy::never().allows(1, Duration::ZERO, Duration::ZERO, Duration::MAX));
    }

    #[test]
    fn throttles_are_bounded_by_time_without_progress_only() {
        let policy = RetryPolicy::default();
        // However many attempts were made, a throttle is retried while progress is recent.
        assert!(policy.allows_throttled(Duration::from_secs(14 * 60), policy.maximum_backoff));
        assert!(!policy.allows_throttled(Duration::from_secs(15 * 60), Duration::from_millis(1)));
        assert!(!RetryPolicy::never().allows_throttled(Duration::ZERO, Duration::from_millis(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_accepted_request_is_shared_by_clones_and_restarts_the_stall() {
        let last_accepted = LastAccepted::new();
        let clone = last_accepted.clone();
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(10)).await;
        // Nothing accepted: the stall counts from the request's first attempt.
        assert_eq!(
            last_accepted.stalled_since(started),
            Duration::from_secs(10)
        );
        clone.record();
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(last_accepted.stalled_since(started), Duration::from_secs(3));
        // A request that started after the last acceptance counts from its own start.
        let later = Instant::now();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(clone.stalled_since(later), Duration::from_secs(1));
    }

    #[test]
    fn a_seed_gives_the_same_delays_on_every_run() {
        let delays = |policy: &RetryPolicy| -> Vec<Duration> {
            (1..=20)
                .map(|attempt| policy.delay(attempt, None))
                .collect()
        };
        let seeded = RetryPolicy::default().with_jitter_seed(7);
        assert_eq!(delays(&seeded), delays(&seeded.clone()));
        assert_ne!(
            delays(&seeded),
            delays(&RetryPolicy::default().with_jitter_seed(8))
        );
        let distinct: std::collections::BTreeSet<Duration> =
            delays(&seeded).into_iter().skip(6).collect();
        assert!(distinct.len() > 1, "every attempt drew the same jitter");
        for (attempt, delay) in (1..).zip(delays(&seeded)) {
            let ceiling = (seeded.initial_backoff * 2u32.pow((attempt - 1).min(20)))
                .min(seeded.maximum_backoff);
            assert!(
                delay <= ceiling,
                "attempt {attempt}: {delay:?} over {ceiling:?}"
            );
        }
        assert_eq!(RetryPolicy::default().jitter_seed, None);
    }
}
