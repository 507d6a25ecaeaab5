//! The HTTP exchange shared by the local backends: one POST, retried by the [`RetryPolicy`], and
//! AWS error answers decoded into their type and message.
//!
//! Every successful answer is recorded in the client's [`LastAccepted`] (shared by its
//! clones): the progress that keeps a throttled request of the same client retrying.

use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use crate::{LastAccepted, PlatformError, RetryPolicy};

/// How long a connection may take to open; local platforms answer at once.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub(crate) struct HttpClient {
    client: reqwest::Client,
    pub(crate) endpoint: String,
    pub(crate) retry: RetryPolicy,
    pub(crate) last_accepted: LastAccepted,
}

/// A complete HTTP answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Answer {
    /// The AWS error type (`x-amzn-ErrorType`, or the body's `__type`) and message.
    pub(crate) fn aws_error(&self) -> (String, String) {
        let body: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_default();
        let text = |key: &str| {
            body.get(key)
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
        };
        let error_type = self
            .headers
            .get("x-amzn-errortype")
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
            .or_else(|| text("__type"))
            .unwrap_or_default();
        // `ResourceNotFoundException:http://internal...` and `com.amazonaws.sqs#QueueDoesNotExist`.
        let error_type = error_type.split(':').next().unwrap_or_default();
        let error_type = error_type
            .rsplit('#')
            .next()
            .unwrap_or_default()
            .to_string();
        let message = text("message")
            .or_else(|| text("Message"))
            .or_else(|| text("errorMessage"))
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).into_owned());
        (error_type, message)
    }

    /// An answer no caller expected, as a protocol error.
    pub(crate) fn unexpected(&self, what: &str) -> PlatformError {
        let (error_type, message) = self.aws_error();
        PlatformError::Protocol {
            message: format!("{what}: HTTP {} {error_type}: {message}", self.status),
        }
    }
}

impl HttpClient {
    pub(crate) fn new(endpoint: String) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .build()
            .unwrap_or_default();
        Self {
            client,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            retry: RetryPolicy::default(),
            last_accepted: LastAccepted::new(),
        }
    }

    /// POSTs `body` to `path`, retrying throttles (while the client makes progress) and
    /// connection failures (briefly). A throttle that outlasts the retries is
    /// [`PlatformError::Throttled`]; any other answer is returned.
    pub(crate) async fn post(
        &self,
        what: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Answer, PlatformError> {
        let url = format!("{}{path}", self.endpoint);
        let started = Instant::now();
        let mut attempt = 0;
        // Time spent throttled consumes no connection budget: it counts from the last throttle.
        let mut last_throttle = (started, 0);
        loop {
            attempt += 1;
            let mut request = self.client.post(&url).body(body.clone());
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            let error = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let response_headers = response.headers().clone();
                    let body = response
                        .bytes()
                        .await
                        .map_err(|error| self.failure(what, started, &error))?;
                    let answer = Answer {
                        status,
                        headers: response_headers,
                        body,
                    };
                    if status != StatusCode::TOO_MANY_REQUESTS {
                        if status.is_success() {
                            self.last_accepted.record();
                        }
                        return Ok(answer);
                    }
                    let retry_after = answer
                        .headers
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|value| value.to_str().ok())
                        .and_then(|value| value.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let delay = self.retry.delay(attempt, retry_after);
                    let stalled = self.last_accepted.stalled_since(started);
                    if !self.retry.allows_throttled(stalled, delay) {
                        return Err(PlatformError::Throttled {
                            what: what.to_string(),
                            attempts: attempt,
                            elapsed: started.elapsed(),
                            message: answer.aws_error().1,
                        });
                    }
                    tracing::debug!("{what} throttled (attempt {attempt}); retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                    last_throttle = (Instant::now(), attempt);
                    continue;
                }
                Err(error) => error,
            };
            if !error.is_connect() {
                return Err(self.failure(what, started, &error));
            }
            let delay = self.retry.delay(attempt, None);
            let (since, before) = last_throttle;
            if !self.retry.allows(
                attempt - before,
                since.elapsed(),
                delay,
                self.retry.connection_elapsed,
            ) {
                return Err(self.failure(what, started, &error));
            }
            tracing::debug!("{what} could not connect (attempt {attempt}); retrying in {delay:?}");
            tokio::time::sleep(delay).await;
        }
    }

    fn failure(&self, what: &str, started: Instant, error: &reqwest::Error) -> PlatformError {
        if error.is_timeout() {
            return PlatformError::Timeout {
                what: what.to_string(),
                waited: started.elapsed(),
            };
        }
        let mut message = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        if error.is_connect() {
            message.push_str("; is it running?");
        }
        PlatformError::Unavailable {
            endpoint: self.endpoint.clone(),
            message,
        }
    }
}
