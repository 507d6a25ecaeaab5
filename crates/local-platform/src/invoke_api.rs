//! The Lambda Invoke API and function management, in AWS's wire shapes, plus the queue service.
//!
//! - `POST /2015-03-31/functions/{name}/invocations`, `X-Amz-Invocation-Type` =
//!   `RequestResponse` (default), `Event` or `DryRun`. The payload must be JSON (an empty one
//!   counts as `{}`), at most 6 MB synchronous and 1 MB asynchronous. A synchronous invocation
//!   answers 200 with the handler's response, or 200 with `X-Amz-Function-Error: Unhandled` and
//!   `{"errorMessage","errorType",...}`; 429 `TooManyRequestsException` with `Retry-After` when
//!   every allowed worker is busy. An asynchronous invocation answers 202 and is never throttled.
//! - `POST /2015-03-31/functions` (CreateFunction: `FunctionName`, `Handler`, `MemorySize`,
//!   `Timeout`, `Environment.Variables`, and the non-standard `Command`,
//!   `ReservedConcurrentExecutions`, `DestinationConfig.OnFailure.Destination` (a queue name, URL
//!   or ARN) and `WorkingDirectory`), `GET /2015-03-31/functions` (ListFunctions),
//!   `GET` and `DELETE /2015-03-31/functions/{name}`.
//! - `GET /platform/statistics`: the local platform's counters (non-standard).
//! - `POST /` and `POST /queues/{name}`: the queue service (see [`crate::queue`]).
//!
//! Errors are AWS's: HTTP status, header `x-amzn-ErrorType` and body `{"Type","message"}`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::LocalPlatformError;
use crate::body::{LimitedBody, read_limited};
use crate::config::{
    ASYNCHRONOUS_PAYLOAD_LIMIT, FunctionConfig, SYNCHRONOUS_PAYLOAD_LIMIT, default_concurrency,
};
use crate::function::{Caller, Function, Invocation, Outcome, Submission};
use crate::platform::Shared;

/// Seconds a throttled caller is asked to wait.
const RETRY_AFTER_SECONDS: u64 = 1;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/2015-03-31/functions/{name}/invocations", post(invoke))
        .route(
            "/2015-03-31/functions",
            post(create_function).get(list_functions),
        )
        .route(
            "/2015-03-31/functions/{name}",
            get(get_function).delete(delete_function),
        )
        .route("/platform/statistics", get(statistics))
        .route("/", post(crate::queue::handle))
        .route("/queues/{name}", post(crate::queue::handle))
        .fallback(unknown_operation)
        .layer(DefaultBodyLimit::disable())
        .with_state(shared)
}

/// An AWS service error answer.
fn aws_error(status: StatusCode, error_type: &str, message: impl Into<String>) -> Response {
    let kind = if status.is_server_error() {
        "Service"
    } else {
        "User"
    };
    let mut response = (
        status,
        axum::Json(json!({ "Type": kind, "message": message.into() })),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(error_type) {
        response.headers_mut().insert("x-amzn-ErrorType", value);
    }
    response
}

fn function_not_found(name: &str) -> Response {
    aws_error(
        StatusCode::NOT_FOUND,
        "ResourceNotFoundException",
        format!("Function not found: {}", crate::config::function_arn(name)),
    )
}

fn shutting_down() -> Response {
    aws_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "ServiceException",
        "the local platform is shutting down",
    )
}

async fn unknown_operation() -> Response {
    aws_error(
        StatusCode::NOT_FOUND,
        "UnknownOperationException",
        "Unknown operation",
    )
}

/// The function name in a path: a plain name, `name:qualifier` or a function ARN.
fn resolve_function_name(raw: &str) -> &str {
    let name = match raw.find(":function:") {
        Some(position) if raw.starts_with("arn:") => &raw[position + ":function:".len()..],
        _ => raw,
    };
    name.split(':').next().unwrap_or(name)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InvocationType {
    RequestResponse,
    Event,
    DryRun,
}

async fn invoke(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if shared.is_shutting_down() {
        return shutting_down();
    }
    let name = resolve_function_name(&name);
    let Some(function) = shared.function(name) else {
        return function_not_found(name);
    };
    let invocation_type = match headers
        .get("x-amz-invocation-type")
        .map(|value| value.to_str().unwrap_or_default())
    {
        None | Some("RequestResponse") => InvocationType::RequestResponse,
        Some("Event") => InvocationType::Event,
        Some("DryRun") => InvocationType::DryRun,
        Some(other) => {
            return aws_error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
                format!(
                    "invalid invocation type '{other}': expected RequestResponse, Event or DryRun"
                ),
            );
        }
    };
    let (limit, operation) = match invocation_type {
        InvocationType::Event => (ASYNCHRONOUS_PAYLOAD_LIMIT, "InvokeAsync"),
        _ => (SYNCHRONOUS_PAYLOAD_LIMIT, "InvokeFunction"),
    };
    let payload = match read_limited(body, limit).await {
        LimitedBody::Complete(bytes) if bytes.is_empty() => Bytes::from_static(b"{}"),
        LimitedBody::Complete(bytes) => bytes,
        LimitedBody::TooLarge { size } => {
            return aws_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLargeException",
                format!(
                    "Request must be smaller than {limit} bytes for the {operation} operation (the request has {size} bytes)"
                ),
            );
        }
        LimitedBody::Failed(message) => {
            return aws_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestContentException",
                message,
            );
        }
    };
    if let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(&payload) {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            format!("Could not parse request body into json: {error}"),
        );
    }
    let request_id = uuid::Uuid::new_v4().to_string();
    match invocation_type {
        InvocationType::DryRun => StatusCode::NO_CONTENT.into_response(),
        InvocationType::Event => {
            let invocation = Invocation {
                request_id: request_id.clone(),
                submitted: std::time::SystemTime::now(),
                payload,
                caller: Caller::Event,
            };
            match function.submit(&shared, invocation) {
                Submission::Accepted => {
                    with_request_id(StatusCode::ACCEPTED.into_response(), &request_id)
                }
                Submission::Deleted | Submission::Throttled => function_not_found(name),
            }
        }
        InvocationType::RequestResponse => {
            let (sender, receiver) = oneshot::channel();
            let invocation = Invocation {
                request_id: request_id.clone(),
                submitted: std::time::SystemTime::now(),
                payload,
                caller: Caller::Waiting(sender),
            };
            match function.submit(&shared, invocation) {
                Submission::Accepted => {}
                Submission::Deleted => return function_not_found(name),
                Submission::Throttled => {
                    let mut response = aws_error(
                        StatusCode::TOO_MANY_REQUESTS,
                        "TooManyRequestsException",
                        format!(
                            "Rate Exceeded: all {} workers of function '{name}' are busy (reserved concurrency)",
                            function.config.concurrency
                        ),
                    );
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
                    return response;
                }
            }
            let response = match receiver.await {
                Ok(Outcome::Success(body)) => synchronous_answer(body, false),
                Ok(Outcome::Failure(failure)) => synchronous_answer(failure.body, true),
                Ok(Outcome::Abandoned(message)) => {
                    aws_error(StatusCode::SERVICE_UNAVAILABLE, "ServiceException", message)
                }
                Err(_) => shutting_down(),
            };
            with_request_id(response, &request_id)
        }
    }
}

fn synchronous_answer(body: Bytes, failed: bool) -> Response {
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        "X-Amz-Executed-Version",
        HeaderValue::from_static("$LATEST"),
    );
    if failed {
        headers.insert(
            "X-Amz-Function-Error",
            HeaderValue::from_static("Unhandled"),
        );
    }
    response
}

fn with_request_id(mut response: Response, request_id: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-amzn-RequestId", value);
    }
    response
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateFunctionRequest {
    function_name: String,
    handler: Option<String>,
    memory_size: Option<u64>,
    timeout: Option<u64>,
    environment: Option<EnvironmentRequest>,
    /// Non-standard: the worker's argv; by default `<python> -m awslambdaric <Handler>`.
    command: Option<Vec<String>>,
    /// Non-standard here (PutFunctionConcurrency on AWS).
    reserved_concurrent_executions: Option<usize>,
    /// Non-standard here (PutFunctionEventInvokeConfig on AWS).
    destination_config: Option<DestinationConfigRequest>,
    /// Non-standard: the workers' directory and `LAMBDA_TASK_ROOT`.
    working_directory: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EnvironmentRequest {
    #[serde(default)]
    variables: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DestinationConfigRequest {
    on_failure: Option<DestinationRequest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DestinationRequest {
    destination: String,
}

async fn create_function(State(shared): State<Arc<Shared>>, body: Body) -> Response {
    let body = match read_limited(body, SYNCHRONOUS_PAYLOAD_LIMIT).await {
        LimitedBody::Complete(bytes) => bytes,
        _ => {
            return aws_error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
                "unreadable request",
            );
        }
    };
    let request: CreateFunctionRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return aws_error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
                format!("invalid CreateFunction request: {error}"),
            );
        }
    };
    let command = match (request.command, &request.handler) {
        (Some(command), _) => command,
        (None, Some(handler)) => vec![
            shared.python.to_string_lossy().into_owned(),
            "-m".to_string(),
            "awslambdaric".to_string(),
            handler.clone(),
        ],
        (None, None) => {
            return aws_error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
                "either Handler or Command is required",
            );
        }
    };
    let defaults = FunctionConfig::new(request.function_name, command);
    let config = FunctionConfig {
        environment: request
            .environment
            .map(|environment| environment.variables.into_iter().collect())
            .unwrap_or_default(),
        memory_mb: request.memory_size.unwrap_or(defaults.memory_mb),
        timeout: request
            .timeout
            .map_or(defaults.timeout, Duration::from_secs),
        concurrency: request
            .reserved_concurrent_executions
            .unwrap_or_else(default_concurrency),
        on_failure_queue: request
            .destination_config
            .and_then(|destinations| destinations.on_failure)
            .map(|destination| queue_name_of_destination(&destination.destination).to_string()),
        working_directory: request.working_directory,
        ..defaults
    };
    match shared.create_function(config) {
        Ok(function) => (
            StatusCode::CREATED,
            axum::Json(function_configuration(&function)),
        )
            .into_response(),
        Err(error) => local_platform_error(error),
    }
}

/// A queue name from an SQS ARN (`arn:aws:sqs:region:account:name`), URL or bare name.
fn queue_name_of_destination(destination: &str) -> &str {
    destination
        .trim_end_matches('/')
        .rsplit([':', '/'])
        .next()
        .unwrap_or(destination)
}

fn local_platform_error(error: LocalPlatformError) -> Response {
    match &error {
        LocalPlatformError::FunctionExists { .. } => aws_error(
            StatusCode::CONFLICT,
            "ResourceConflictException",
            error.to_string(),
        ),
        LocalPlatformError::FunctionNotFound { name } => function_not_found(name),
        LocalPlatformError::InvalidFunction { .. } => aws_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            error.to_string(),
        ),
        LocalPlatformError::ShuttingDown => shutting_down(),
        _ => aws_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceException",
            error.to_string(),
        ),
    }
}

/// Lambda's `FunctionConfiguration`, plus the non-standard fields the local platform accepts.
fn function_configuration(function: &Function) -> Value {
    let config = &function.config;
    let variables: BTreeMap<&str, &str> = config
        .environment
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    json!({
        "FunctionName": config.name,
        "FunctionArn": function.arn,
        "Handler": config.handler(),
        "MemorySize": config.memory_mb,
        "Timeout": if config.timeout.subsec_nanos() == 0 {
            json!(config.timeout.as_secs())
        } else {
            json!(config.timeout.as_secs_f64())
        },
        "Environment": { "Variables": variables },
        "Version": "$LATEST",
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "PackageType": "Zip",
        "Command": config.command,
        "ReservedConcurrentExecutions": config.concurrency,
        "OnFailureQueue": config.on_failure_queue,
        "WorkingDirectory": config.working_directory,
    })
}

async fn get_function(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    let name = resolve_function_name(&name);
    match shared.function(name) {
        Some(function) => axum::Json(json!({
            "Configuration": function_configuration(&function),
            "Concurrency": { "ReservedConcurrentExecutions": function.config.concurrency },
        }))
        .into_response(),
        None => function_not_found(name),
    }
}

async fn list_functions(State(shared): State<Arc<Shared>>) -> Response {
    let mut functions = shared.function_list();
    functions.sort_by(|left, right| left.config.name.cmp(&right.config.name));
    let configurations: Vec<Value> = functions
        .iter()
        .map(|function| function_configuration(function))
        .collect();
    axum::Json(json!({ "Functions": configurations })).into_response()
}

async fn delete_function(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    let name = resolve_function_name(&name);
    match shared
        .delete_function(name, &format!("function '{name}' was deleted"))
        .await
    {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => local_platform_error(error),
    }
}

async fn statistics(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(shared.statistics()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_paths_and_destinations() {
        assert_eq!(resolve_function_name("squares"), "squares");
        assert_eq!(resolve_function_name("squares:$LATEST"), "squares");
        assert_eq!(
            resolve_function_name("arn:aws:lambda:local:000000000000:function:squares:$LATEST"),
            "squares"
        );
        assert_eq!(queue_name_of_destination("failures"), "failures");
        assert_eq!(
            queue_name_of_destination("arn:aws:sqs:local:000000000000:failures"),
            "failures"
        );
        assert_eq!(
            queue_name_of_destination("http://127.0.0.1:1/queues/failures"),
            "failures"
        );
    }
}
