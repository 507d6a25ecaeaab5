//! Retries of the engine's hot calls (invocations, queue sends and receives), with the
//! semantics of the platform's [`RetryPolicy`].
//!
//! The SDK's own retries are switched off on these clients, so that one policy governs every
//! backend. Retried: throttles (HTTP 429 or a throttling code, honouring `Retry-After` as a
//! minimum) and server errors (5xx) within `maximum_elapsed`; connection failures (nothing
//! answered) within the short `connection_elapsed`, so that an endpoint that is down is
//! reported in seconds. The delay before attempt `n + 1` is a uniform draw in
//! `[0, min(initial_backoff * 2^(n-1), maximum_backoff)]` (full jitter). Any other error is
//! returned at once.

use std::error::Error as StdError;
use std::future::Future;
use std::time::{Duration, Instant};

use aws_sdk_lambda::config::http::HttpResponse;
use aws_sdk_lambda::error::{ProvideErrorMetadata, SdkError};
use dask_serverless_platform::{PlatformError, RetryPolicy};

use crate::error::{Failure, classify};

/// A call that failed for good.
#[derive(Debug, Clone)]
pub(crate) struct Exhausted {
    pub(crate) failure: Failure,
    pub(crate) attempts: u32,
    pub(crate) elapsed: Duration,
}

/// Runs `operation` until it succeeds, fails for good, or the policy's bounds are reached.
pub(crate) async fn with_retries<T, E, F, Fut>(
    policy: &RetryPolicy,
    what: &str,
    mut operation: F,
) -> Result<T, Exhausted>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + StdError + 'static,
{
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let error = match operation().await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let failure = classify(&error);
        let (budget, retry_after) = match &failure {
            Failure::Throttled { retry_after, .. } => (Some(policy.maximum_elapsed), *retry_after),
            Failure::Server { .. } => (Some(policy.maximum_elapsed), None),
            Failure::Connect { .. } => (Some(policy.connection_elapsed), None),
            _ => (None, None),
        };
        if let Some(budget) = budget {
            let delay = policy.delay(attempt, retry_after);
            if policy.allows(attempt, started.elapsed(), delay, budget) {
                tracing::debug!(
                    "{what} failed (attempt {attempt}: {}); retrying in {delay:?}",
                    failure.message()
                );
                tokio::time::sleep(delay).await;
                continue;
            }
        }
        return Err(Exhausted {
            failure,
            attempts: attempt,
            elapsed: started.elapsed(),
        });
    }
}

impl Exhausted {
    /// The backend-neutral error of a call about `what` at `endpoint`, for failures that
    /// the caller did not map itself.
    pub(crate) fn into_platform_error(self, what: &str, endpoint: &str) -> PlatformError {
        match self.failure {
            Failure::Throttled { message, .. } => PlatformError::Throttled {
                what: what.to_string(),
                attempts: self.attempts,
                elapsed: self.elapsed,
                message,
            },
            Failure::Connect { message } => PlatformError::Unavailable {
                endpoint: endpoint.to_string(),
                message: format!("{message}; {}", crate::error::unreachable_advice(endpoint)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_below_an_exponential_ceiling() {
        let policy = RetryPolicy::default();
        for attempt in 1..30 {
            let ceiling = (policy.initial_backoff * 2u32.pow((attempt - 1).min(20)))
                .min(policy.maximum_backoff);
            assert!(policy.delay(attempt, None) <= ceiling);
        }
        let hinted = policy.delay(1, Some(Duration::from_secs(1)));
        assert!(hinted >= Duration::from_secs(1));
    }
}
