//! The one loop that retries and waits in this crate, paced and bounded by the platform's
//! [`RetryPolicy`].
//!
//! # Model
//!
//! [`retry`] runs an attempt until it is [`Attempt::Done`] (a value, or an error no retry can
//! fix). An attempt that asks for another ([`Attempt::Again`]) gets one after
//! `policy.delay(attempt, retry_after)` (full jitter below an exponential ceiling, at least the
//! server's `Retry-After`; drawn from a seeded generator if the policy has a `jitter_seed`), if
//! the policy allows it within the attempt's [`Budget`]: for [`Budget::Throttle`], any number
//! of attempts while the time without progress (since the later of the first attempt and the
//! last success recorded in the caller's [`LastAccepted`], shared by the clones of a client)
//! stays within `throttle_patience`; for the others, fewer than `maximum_attempts` attempts,
//! and the delay ends within the budget since the first attempt (time and attempts spent
//! throttled do not count: those count from the last throttle). Otherwise the last error is
//! returned, with the number of attempts and the time spent ([`Exhausted`]). Every success is
//! recorded in the [`LastAccepted`].
//!
//! Its users:
//!
//! * [`with_retries`], for the engine's hot calls (invocations; queue sends, receives and
//!   deletes), whose SDK clients have their own retries switched off so that one policy governs
//!   every backend. Retried: throttles (HTTP 429 or a throttling code) while the client makes
//!   progress (`throttle_patience` without any accepted request ends them); server errors (5xx)
//!   within `maximum_elapsed`; connection failures (nothing answered) within the short
//!   `connection_elapsed`, so that an endpoint that is down is reported in seconds. Any other
//!   error is returned at once.
//! * The `function` module's two waits: `CreateFunction` while IAM propagates a new role, and
//!   polling until a new function is `Active`. Their policies are bounded by time only.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use aws_sdk_lambda::config::http::HttpResponse;
use aws_sdk_lambda::error::{ProvideErrorMetadata, SdkError};
use dask_serverless_platform::{LastAccepted, PlatformError, RetryPolicy};
use tokio::time::Instant;

use crate::error::{Failure, classify, unreachable_advice};

/// Which time budget of the policy bounds the retries of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Budget {
    /// `throttle_patience` without progress, any number of attempts: throttles.
    Throttle,
    /// `maximum_elapsed`: server errors, waits.
    Elapsed,
    /// `connection_elapsed`: nothing answered.
    Connection,
}

/// What one attempt gave.
#[derive(Debug)]
pub(crate) enum Attempt<T, E> {
    /// Finished: a value, or an error that no retry can fix.
    Done(Result<T, E>),
    /// Not yet: try again, within `budget` and no sooner than `retry_after`; `error` is the
    /// result if the policy allows no other attempt.
    Again {
        error: E,
        budget: Budget,
        retry_after: Option<Duration>,
    },
}

/// An operation that failed for good.
#[derive(Debug, Clone)]
pub(crate) struct Exhausted<E> {
    pub(crate) error: E,
    pub(crate) attempts: u32,
    pub(crate) elapsed: Duration,
}

/// Runs `attempt` until it is done or the policy allows no other (see the module
/// documentation); `what` names the operation in logs.
pub(crate) async fn retry<T, E, F, Fut>(
    policy: &RetryPolicy,
    last_accepted: &LastAccepted,
    what: &str,
    mut attempt: F,
) -> Result<T, Exhausted<E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Attempt<T, E>>,
    E: fmt::Display,
{
    let started = Instant::now();
    let mut attempts = 0;
    // Time spent throttled consumes no other budget: those count from the last throttle.
    let mut last_throttle = (started, 0);
    loop {
        attempts += 1;
        let error = match attempt().await {
            Attempt::Done(Ok(value)) => {
                last_accepted.record();
                return Ok(value);
            }
            Attempt::Done(Err(error)) => error,
            Attempt::Again {
                error,
                budget,
                retry_after,
            } => {
                let delay = policy.delay(attempts, retry_after);
                let (since, before) = last_throttle;
                let allowed = match budget {
                    Budget::Throttle => {
                        policy.allows_throttled(last_accepted.stalled_since(started), delay)
                    }
                    Budget::Elapsed => policy.allows(
                        attempts - before,
                        since.elapsed(),
                        delay,
                        policy.maximum_elapsed,
                    ),
                    Budget::Connection => policy.allows(
                        attempts - before,
                        since.elapsed(),
                        delay,
                        policy.connection_elapsed,
                    ),
                };
                if allowed {
                    tracing::debug!(
                        "{what}: not yet (attempt {attempts}: {error}); trying again in {delay:?}"
                    );
                    tokio::time::sleep(delay).await;
                    if budget == Budget::Throttle {
                        last_throttle = (Instant::now(), attempts);
                    }
                    continue;
                }
                error
            }
        };
        return Err(Exhausted {
            error,
            attempts,
            elapsed: started.elapsed(),
        });
    }
}

/// Runs the SDK call `operation` until it succeeds, fails for good, or the policy's bounds are
/// reached (see the module documentation); successes are recorded in `last_accepted`.
pub(crate) async fn with_retries<T, E, F, Fut>(
    policy: &RetryPolicy,
    last_accepted: &LastAccepted,
    what: &str,
    mut operation: F,
) -> Result<T, Exhausted<Failure>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + StdError + 'static,
{
    retry(policy, last_accepted, what, || {
        let call = operation();
        async move {
            let error = match call.await {
                Ok(value) => return Attempt::Done(Ok(value)),
                Err(error) => error,
            };
            let failure = classify(&error);
            let (budget, retry_after) = match &failure {
                Failure::Throttled { retry_after, .. } => (Budget::Throttle, *retry_after),
                Failure::Server { .. } => (Budget::Elapsed, None),
                Failure::Connect { .. } => (Budget::Connection, None),
                _ => return Attempt::Done(Err(failure)),
            };
            Attempt::Again {
                error: failure,
                budget,
                retry_after,
            }
        }
    })
    .await
}

impl Exhausted<Failure> {
    /// The backend-neutral error of a call about `what` at `endpoint`, for failures that
    /// the caller did not map itself.
    pub(crate) fn into_platform_error(self, what: &str, endpoint: &str) -> PlatformError {
        match self.error {
            Failure::Throttled { message, .. } => PlatformError::Throttled {
                what: what.to_string(),
                attempts: self.attempts,
                elapsed: self.elapsed,
                message,
            },
            Failure::Connect { message } => PlatformError::Unavailable {
                endpoint: endpoint.to_string(),
                message: format!("{message}; {}", unreachable_advice(endpoint)),
            },
            Failure::Server {
                status,
                code,
                message,
            } => PlatformError::Unavailable {
                endpoint: endpoint.to_string(),
                message: format!("HTTP {status} {code}: {message}"),
            },
            Failure::Timeout { .. } => PlatformError::Timeout {
                what: what.to_string(),
                waited: self.elapsed,
            },
            Failure::Service {
                status,
                code,
                message,
            } => PlatformError::Protocol {
                message: format!("{what}: HTTP {status} {code}: {message}"),
            },
            Failure::Other { message } => PlatformError::Protocol {
                message: format!("{what}: {message}"),
            },
        }
    }
}

/// The delays [`retry`] would wait if every attempt asked for another and took no time: the
/// schedule of a policy, for tests.
#[cfg(test)]
pub(crate) fn schedule(policy: &RetryPolicy) -> Vec<Duration> {
    let mut delays = Vec::new();
    let mut elapsed = Duration::ZERO;
    for attempt in 1.. {
        let delay = policy.delay(attempt, None);
        if !policy.allows(attempt, elapsed, delay, policy.maximum_elapsed) {
            return delays;
        }
        elapsed += delay;
        delays.push(delay);
    }
    delays
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn quick(maximum_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            maximum_attempts,
            initial_backoff: Duration::from_millis(1),
            maximum_backoff: Duration::from_millis(4),
            ..RetryPolicy::default()
        }
        .with_jitter_seed(7)
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_go_on_until_done_or_the_policy_says_stop() {
        let attempts = AtomicU32::new(0);
        let counter = &attempts;
        let third_time_lucky = || async move {
            match counter.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Attempt::Again {
                    error: "not yet",
                    budget: Budget::Elapsed,
                    retry_after: None,
                },
                _ => Attempt::Done(Ok::<_, &str>("done")),
            }
        };
        assert_eq!(
            retry(&quick(5), &LastAccepted::new(), "a test", third_time_lucky)
                .await
                .unwrap(),
            "done"
        );
        assert_eq!(attempts.load(Ordering::SeqCst), 3);

        let never = || async {
            Attempt::<(), _>::Again {
                error: "not yet",
                budget: Budget::Elapsed,
                retry_after: None,
            }
        };
        let exhausted = retry(&quick(4), &LastAccepted::new(), "a test", never)
            .await
            .unwrap_err();
        assert_eq!((exhausted.error, exhausted.attempts), ("not yet", 4));

        let failing = || async { Attempt::<(), _>::Done(Err("for good")) };
        let exhausted = retry(&quick(4), &LastAccepted::new(), "a test", failing)
            .await
            .unwrap_err();
        assert_eq!((exhausted.error, exhausted.attempts), ("for good", 1));
    }

    #[tokio::test(start_paused = true)]
    async fn budgets_bound_the_time_spent_retrying() {
        let policy = RetryPolicy {
            connection_elapsed: Duration::from_millis(30),
            ..quick(u32::MAX)
        };
        let unanswered = || async {
            Attempt::<(), _>::Again {
                error: "nothing listens",
                budget: Budget::Connection,
                retry_after: None,
            }
        };
        let exhausted = retry(&policy, &LastAccepted::new(), "a test", unanswered)
            .await
            .unwrap_err();
        assert!(exhausted.attempts > 1);
        // The clock is paused: the time spent is the sum of the delays, none beyond the budget.
        assert!(
            exhausted.elapsed <= Duration::from_millis(30),
            "{:?}",
            exhausted.elapsed
        );
        let hinted = || async {
            Attempt::<(), _>::Again {
                error: "throttled",
                budget: Budget::Elapsed,
                retry_after: Some(Duration::from_millis(50)),
            }
        };
        let exhausted = retry(&quick(2), &LastAccepted::new(), "a test", hinted)
            .await
            .unwrap_err();
        assert!(exhausted.elapsed >= Duration::from_millis(50));
        assert!(exhausted.elapsed <= Duration::from_millis(54));
    }

    #[tokio::test(start_paused = true)]
    async fn throttles_have_no_attempt_cap_and_end_after_patience_without_progress() {
        let policy = RetryPolicy {
            throttle_patience: Duration::from_secs(5),
            ..quick(3)
        };
        // Forty throttles, far beyond `maximum_attempts`, then success.
        let attempts = AtomicU32::new(0);
        let counter = &attempts;
        let throttled_forty_times = || async move {
            if counter.fetch_add(1, Ordering::SeqCst) < 40 {
                Attempt::Again {
                    error: "throttled",
                    budget: Budget::Throttle,
                    retry_after: None,
                }
            } else {
                Attempt::Done(Ok::<_, &str>("accepted"))
            }
        };
        let last_accepted = LastAccepted::new();
        let answer = retry(&policy, &last_accepted, "a test", throttled_forty_times).await;
        assert_eq!(answer.unwrap(), "accepted");
        assert_eq!(attempts.load(Ordering::SeqCst), 41);
        assert!(
            last_accepted.instant().is_some(),
            "the success was recorded"
        );

        // Throttled for ever: retried until the patience passed without progress...
        let forever = || async {
            Attempt::<(), _>::Again {
                error: "throttled",
                budget: Budget::Throttle,
                retry_after: Some(Duration::from_millis(100)),
            }
        };
        let started = Instant::now();
        let exhausted = retry(&policy, &LastAccepted::new(), "a test", forever)
            .await
            .unwrap_err();
        assert!(exhausted.attempts > 40, "{} attempts", exhausted.attempts);
        assert!(started.elapsed() <= Duration::from_secs(5));
        assert!(started.elapsed() >= Duration::from_millis(4800));

        // ...which a clone's accepted requests keep renewing.
        let shared = LastAccepted::new();
        let clone = shared.clone();
        let progressing = async {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                clone.record();
            }
        };
        let started = Instant::now();
        let (exhausted, ()) = tokio::join!(retry(&policy, &shared, "a test", forever), progressing);
        assert!(exhausted.is_err());
        // Ten seconds of progress, then the five of patience.
        assert!(
            started.elapsed() >= Duration::from_millis(14_800),
            "{:?}",
            started.elapsed()
        );
        assert!(started.elapsed() <= Duration::from_secs(15));
    }

    #[tokio::test(start_paused = true)]
    async fn time_spent_throttled_leaves_the_other_budgets_whole() {
        let policy = RetryPolicy {
            maximum_elapsed: Duration::from_secs(1),
            ..quick(3)
        };
        // Throttled for ten seconds (about twenty attempts, far past the three allowed for
        // server errors, and far past their second), then two server errors, then success.
        let server_errors = AtomicU32::new(0);
        let counter = &server_errors;
        let started = Instant::now();
        let sequence = || async move {
            if started.elapsed() < Duration::from_secs(10) {
                tokio::time::sleep(Duration::from_millis(500)).await;
                return Attempt::Again {
                    error: "throttled",
                    budget: Budget::Throttle,
                    retry_after: None,
                };
            }
            if counter.fetch_add(1, Ordering::SeqCst) < 2 {
                return Attempt::Again {
                    error: "server error",
                    budget: Budget::Elapsed,
                    retry_after: None,
                };
            }
            Attempt::Done(Ok::<_, &str>("done"))
        };
        let answer = retry(&policy, &LastAccepted::new(), "a test", sequence).await;
        assert_eq!(answer.map_err(|exhausted| exhausted.error), Ok("done"));
        assert_eq!(server_errors.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_seeded_policy_replays_its_schedule() {
        let policy = RetryPolicy {
            maximum_attempts: u32::MAX,
            maximum_elapsed: Duration::from_secs(10),
            ..RetryPolicy::default()
        };
        let seeded = policy.clone().with_jitter_seed(42);
        assert_eq!(schedule(&seeded), schedule(&seeded));
        assert_ne!(schedule(&seeded), schedule(&policy.with_jitter_seed(43)));
        assert!(schedule(&seeded).iter().sum::<Duration>() <= Duration::from_secs(10));
    }
}
