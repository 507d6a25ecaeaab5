//! [`LocalInvoker`]: a client of the Lambda Invoke API, as served by the local platform.

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::StatusCode;

use crate::http::{Answer, HttpClient};
use crate::{
    ASYNCHRONOUS_PAYLOAD_LIMIT, Invoker, PlatformError, RetryPolicy, SYNCHRONOUS_PAYLOAD_LIMIT,
};

/// Invokes functions through the Lambda Invoke API at an HTTP endpoint
/// (`POST /2015-03-31/functions/{name}/invocations`). Throttles (429) and connection failures are
/// retried by its [`RetryPolicy`]; clones share the record of progress that keeps throttled
/// invocations retrying (see [`LastAccepted`](crate::LastAccepted)). A payload over Lambda's
/// limit ([`ASYNCHRONOUS_PAYLOAD_LIMIT`], [`SYNCHRONOUS_PAYLOAD_LIMIT`]) is refused before any
/// request.
#[derive(Debug, Clone)]
pub struct LocalInvoker {
    http: HttpClient,
}

impl LocalInvoker {
    /// An invoker for the platform at `endpoint`, e.g. `http://127.0.0.1:9000`.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            http: HttpClient::new(endpoint.into()),
        }
    }

    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.http.retry = retry;
        self
    }

    pub fn endpoint(&self) -> &str {
        &self.http.endpoint
    }

    async fn invoke(
        &self,
        function: &str,
        payload: Bytes,
        invocation_type: &str,
    ) -> Result<Answer, PlatformError> {
        let size = payload.len();
        let limit = if invocation_type == "Event" {
            ASYNCHRONOUS_PAYLOAD_LIMIT
        } else {
            SYNCHRONOUS_PAYLOAD_LIMIT
        };
        if size > limit {
            return Err(PlatformError::PayloadTooLarge { size, limit });
        }
        let what = format!("invocation of function '{function}'");
        let answer = self
            .http
            .post(
                &what,
                &format!("/2015-03-31/functions/{function}/invocations"),
                &[
                    ("X-Amz-Invocation-Type", invocation_type),
                    ("Content-Type", "application/json"),
                ],
                payload,
            )
            .await?;
        if answer.status.is_success() {
            return Ok(answer);
        }
        let (error_type, message) = answer.aws_error();
        Err(match (answer.status, error_type.as_str()) {
            (StatusCode::NOT_FOUND, _) | (_, "ResourceNotFoundException") => {
                PlatformError::NotFound {
                    what: format!("function '{function}'"),
                }
            }
            (StatusCode::PAYLOAD_TOO_LARGE, _) | (_, "RequestEntityTooLargeException") => {
                PlatformError::PayloadTooLarge { size, limit }
            }
            (status, _) if status.is_server_error() => PlatformError::Unavailable {
                endpoint: self.http.endpoint.clone(),
                message: format!("HTTP {status} {error_type}: {message}"),
            },
            _ => answer.unexpected(&what),
        })
    }
}

#[async_trait]
impl Invoker for LocalInvoker {
    async fn invoke_event(&self, function: &str, payload: Bytes) -> Result<(), PlatformError> {
        let answer = self.invoke(function, payload, "Event").await?;
        if answer.status != StatusCode::ACCEPTED {
            return Err(PlatformError::Protocol {
                message: format!(
                    "asynchronous invocation of '{function}' answered HTTP {} instead of 202",
                    answer.status
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
        let answer = self.invoke(function, payload, "RequestResponse").await?;
        if answer.headers.contains_key("x-amz-function-error") {
            let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
            let text = |key: &str| {
                body.get(key)
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_string)
            };
            return Err(PlatformError::FunctionError {
                error_type: text("errorType").unwrap_or_else(|| "Unhandled".to_string()),
                message: text("errorMessage")
                    .unwrap_or_else(|| String::from_utf8_lossy(&answer.body).into_owned()),
            });
        }
        Ok(answer.body)
    }
}
