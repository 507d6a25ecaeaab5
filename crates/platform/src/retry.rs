//! When and how long to wait before trying a request again.
//!
//! Two things are retried: throttles (HTTP 429) and connection failures (the request never
//! reached the server, so repeating it cannot run anything twice). Delays grow exponentially with
//! full jitter (a uniform draw between zero and `initial_backoff * 2^attempt`, capped at
//! `maximum_backoff`), so that many throttled callers spread out; a `Retry-After` from the server
//! is added to the drawn delay, so it is honoured as a minimum. Both kinds are bounded in attempts
//! and in total time; connection failures get a short budget, so a local platform that is not running
//! is reported within a couple of seconds.

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
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            maximum_attempts: 12,
            initial_backoff: Duration::from_millis(50),
            maximum_backoff: Duration::from_secs(2),
            maximum_elapsed: Duration::from_secs(60),
            connection_elapsed: Duration::from_millis(1500),
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

    /// The delay before attempt `attempt + 1` (`attempt` counts from 1): full jitter, plus the
    /// server's `Retry-After`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exponent = attempt.saturating_sub(1).min(20);
        let ceiling = self
            .initial_backoff
            .saturating_mul(1 << exponent)
            .min(self.maximum_backoff);
        let jitter = ceiling.mul_f64(fastrand::f64());
        retry_after.unwrap_or_default() + jitter
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
}
