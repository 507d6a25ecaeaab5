//! [`LambdaInvoker`]: the [`Invoker`] of AWS Lambda, through the Lambda Invoke API.
//!
//! At most `max_in_flight` requests are in flight at once (a semaphore; 64 by default), so that
//! a wide fan-out does not open thousands of connections. Throttles (`TooManyRequestsException`,
//! 429), server errors (5xx) and connection failures are retried by the [`RetryPolicy`]
//! (exponential backoff with full jitter); the SDK's own retries are off. Throttles are retried
//! with no cap on attempts while the invoker makes progress: until `throttle_patience` passes
//! without any invocation through it, or through any of its clones (which share a
//! [`LastAccepted`]), being accepted. A payload over Lambda's limit is refused before any
//! request (not every Lambda-compatible endpoint checks it). Answers map onto
//! [`PlatformError`]: `ResourceNotFoundException` is `NotFound`,
//! `RequestEntityTooLargeException` is `PayloadTooLarge`, a handler error of a synchronous
//! invocation is `FunctionError` with the `errorType` and `errorMessage` of its body.
//!
//! The client's read timeout is Lambda's longest run (15 minutes) plus a margin: a synchronous
//! invocation answers only when the handler returns.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_lambda::operation::invoke::InvokeOutput;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use bytes::Bytes;
use dask_serverless_platform::{
    ASYNCHRONOUS_PAYLOAD_LIMIT, Invoker, LastAccepted, PlatformError, RetryPolicy,
    SYNCHRONOUS_PAYLOAD_LIMIT,
};
use tokio::sync::Semaphore;

use crate::config::{AwsSettings, CONNECT_TIMEOUT, endpoint, load_config};
use crate::error::{AwsError, Failure};
use crate::retry::with_retries;

/// Requests in flight at once, by default.
const DEFAULT_MAX_IN_FLIGHT: usize = 64;
/// Lambda's longest run, plus a margin for the answer to come back.
const INVOKE_READ_TIMEOUT: Duration = Duration::from_secs(15 * 60 + 30);

/// Invokes Lambda functions (see the module documentation).
#[derive(Debug, Clone)]
pub struct LambdaInvoker {
    client: aws_sdk_lambda::Client,
    permits: Arc<Semaphore>,
    retry: RetryPolicy,
    /// Shared by clones: the progress that keeps throttled invocations retrying.
    last_accepted: LastAccepted,
    endpoint: String,
}

impl LambdaInvoker {
    /// An invoker using `config`'s region, credentials and endpoint.
    pub fn new(config: &SdkConfig) -> Self {
        let lambda_config = aws_sdk_lambda::config::Builder::from(config)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .read_timeout(INVOKE_READ_TIMEOUT)
                    .build(),
            )
            .build();
        Self {
            client: aws_sdk_lambda::Client::from_conf(lambda_config),
            permits: Arc::new(Semaphore::new(DEFAULT_MAX_IN_FLIGHT)),
            retry: RetryPolicy::default(),
            last_accepted: LastAccepted::new(),
            endpoint: endpoint(config, "lambda"),
        }
    }

    /// An invoker for `settings`, after [`load_config`]'s checks.
    pub async fn connect(settings: &AwsSettings) -> Result<Self, AwsError> {
        Ok(Self::new(&load_config(settings).await?))
    }

    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Allows at most `max_in_flight` (at least 1) invocation requests at once.
    pub fn with_max_in_flight(mut self, max_in_flight: usize) -> Self {
        self.permits = Arc::new(Semaphore::new(max_in_flight.max(1)));
        self
    }

    /// The Lambda endpoint, for messages.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn invoke(
        &self,
        function: &str,
        payload: Bytes,
        invocation_type: InvocationType,
    ) -> Result<InvokeOutput, PlatformError> {
        let size = payload.len();
        let limit = if invocation_type == InvocationType::Event {
            ASYNCHRONOUS_PAYLOAD_LIMIT
        } else {
            SYNCHRONOUS_PAYLOAD_LIMIT
        };
        if size > limit {
            return Err(PlatformError::PayloadTooLarge { size, limit });
        }
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PlatformError::Unavailable {
                endpoint: self.endpoint.clone(),
                message: "the invoker is closed".to_string(),
            })?;
        let what = format!("invocation of function '{function}'");
        let blob = Blob::new(payload.to_vec());
        let attempt = || {
            self.client
                .invoke()
                .function_name(function)
                .invocation_type(invocation_type.clone())
                .payload(blob.clone())
                .send()
        };
        with_retries(&self.retry, &self.last_accepted, &what, attempt)
            .await
            .map_err(|exhausted| match &exhausted.error {
                Failure::Service { code, .. } if code == "ResourceNotFoundException" => {
                    PlatformError::NotFound {
                        what: format!("function '{function}'"),
                    }
                }
                Failure::Service { code, status, .. }
                    if code == "RequestEntityTooLargeException" || *status == 413 =>
                {
                    PlatformError::PayloadTooLarge { size, limit }
                }
                _ => exhausted.into_platform_error(&what, &self.endpoint),
            })
    }
}

/// The `errorType` and `errorMessage` of a handler error's body.
fn function_error(header: &str, body: &[u8]) -> PlatformError {
    let parsed: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let text = |key: &str| {
        parsed
            .get(key)
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
    };
    PlatformError::FunctionError {
        error_type: text("errorType").unwrap_or_else(|| header.to_string()),
        message: text("errorMessage").unwrap_or_else(|| String::from_utf8_lossy(body).into_owned()),
    }
}

#[async_trait]
impl Invoker for LambdaInvoker {
    async fn invoke_event(&self, function: &str, payload: Bytes) -> Result<(), PlatformError> {
        let answer = self
            .invoke(function, payload, InvocationType::Event)
            .await?;
        if answer.status_code() != 202 {
            return Err(PlatformError::Protocol {
                message: format!(
                    "asynchronous invocation of '{function}' answered HTTP {} instead of 202",
                    answer.status_code()
                ),
            });
        }
        Ok(())
    }

    async fn invoke_request_response(
        &self,
        function: &str,
        payload: Bytes,
    ) -> Result<Bytes, PlatformError> {
        let answer = self
            .invoke(function, payload, InvocationType::RequestResponse)
            .await?;
        let body = answer
            .payload()
            .map(|blob| blob.as_ref().to_vec())
            .unwrap_or_default();
        if let Some(header) = answer.function_error() {
            return Err(function_error(header, &body));
        }
        Ok(Bytes::from(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handler_errors_keep_their_type_and_message() {
        let error = function_error(
            "Unhandled",
            br#"{"errorType": "ValueError", "errorMessage": "bad value", "stackTrace": []}"#,
        );
        assert_eq!(
            error,
            PlatformError::FunctionError {
                error_type: "ValueError".to_string(),
                message: "bad value".to_string()
            }
        );
        let error = function_error("Unhandled", b"not json");
        assert_eq!(error.to_string(), "Unhandled: not json");
    }
}
