//! When and how long to wait before trying a request again.
//!
//! Two things are retried: throttles (HTTP 429) and connection failures (the request never
//! reached the server, so repeating it cannot run anything twice). Delays grow exponentially with
//! full jitter (a uniform draw between zero and `initial_backoff * 2^attempt`, capped at
//! `maximum_backoff`), so that many throttled callers spread out; a `Retry-After` from the server
//! is added to the drawn delay, so it is honoured as a minimum. Both kinds are bounded in attempts
//! and in total time; connection failures get a short budget, so a local platform that is not running
//! is reported within a couple of seconds.
//!
//! The jitter is drawn from the thread's generator, unless the policy has a `jitter_seed`: then
//! the delay of each attempt is a fixed draw of a generator seeded with it, so that a test (or a
//! replay) gets the same delays on every run. A seed is for tests: callers sharing a seeded policy
//! all wait alike, which is what jitter is there to avoid.

use std::time::Duration;

/// Bounds and pace of retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Most attempts of one request, the first included.
    pub maximum_attempts: u32,
    pub initial_backoff: Duration,
    pub maximum_backoff: Duration,
    /// No retry starts after this much time since the first attempt.
    pub maximum_elapsed: Duration,
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
