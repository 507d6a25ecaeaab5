//! The Lambda Runtime API, served to one worker on its own listener.
//!
//! - `GET /2018-06-01/runtime/invocation/next`: long poll until the worker has an assignment,
//!   then deliver it: the event as body, `Content-Type: application/json` (the runtime interface
//!   client fails without it), `Lambda-Runtime-Aws-Request-Id`, `Lambda-Runtime-Deadline-Ms`
//!   (epoch milliseconds), `Lambda-Runtime-Invoked-Function-Arn` and `Lambda-Runtime-Trace-Id`.
//!   The first call ends the worker's `Starting` phase. Delivery starts the timeout and empties
//!   the worker's progress file.
//! - `POST /2018-06-01/runtime/invocation/{id}/response`: the invocation succeeded; a response
//!   over 6 MB fails it with `Function.ResponseSizeTooLarge` (the worker itself stays warm).
//! - `POST /2018-06-01/runtime/invocation/{id}/error`: the handler failed; its error body
//!   (`errorMessage`, `errorType`, `stackTrace`) reaches the caller as is.
//! - `POST /2018-06-01/runtime/init/error`: initialization failed; the message is kept for the
//!   `Runtime.InitError` reported when the process exits.
//!
//! Either answer frees the worker (`Idle`), which then takes a queued event if there is one.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::json;
use tokio::sync::Notify;

use crate::body::{LimitedBody, read_limited};
use crate::config::SYNCHRONOUS_PAYLOAD_LIMIT;
use crate::function::{
    Failure, FailureKind, Function, Invocation, Outcome, WorkerId, WorkerPhase, complete,
};
use crate::platform::Shared;

/// What one worker's Runtime API knows: whose it is.
#[derive(Debug, Clone)]
pub(crate) struct WorkerContext {
    pub(crate) shared: Arc<Shared>,
    pub(crate) function: Arc<Function>,
    pub(crate) worker_id: WorkerId,
    pub(crate) wake: Arc<Notify>,
}

pub(crate) fn router(context: WorkerContext) -> Router {
    Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
        .route(
            "/2018-06-01/runtime/invocation/{request_id}/response",
            post(invocation_response),
        )
        .route(
            "/2018-06-01/runtime/invocation/{request_id}/error",
            post(invocation_error),
        )
        .route("/2018-06-01/runtime/init/error", post(initialization_error))
        .layer(DefaultBodyLimit::disable())
        .with_state(context)
}

fn runtime_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "errorType": error_type, "errorMessage": message })),
    )
        .into_response()
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, axum::Json(json!({ "status": "OK" }))).into_response()
}

/// The worker is gone (stopped or removed): it will never get work again.
fn gone() -> Response {
    runtime_error(
        StatusCode::GONE,
        "Runtime.WorkerStopped",
        "this worker has been stopped",
    )
}

async fn next_invocation(State(context): State<WorkerContext>) -> Response {
    let function = &context.function;
    loop {
        let woken = context.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let launches;
        {
            let mut state = function.lock();
            let Some(worker) = state.workers.get_mut(&context.worker_id) else {
                return gone();
            };
            match worker.phase {
                WorkerPhase::Stopping => return gone(),
                WorkerPhase::Starting if worker.assignment.is_some() => {
                    worker.phase = WorkerPhase::Busy
                }
                WorkerPhase::Starting => worker.phase = WorkerPhase::Idle,
                WorkerPhase::Idle | WorkerPhase::Busy => {}
            }
            if let Some(assignment) = worker.assignment.as_mut()
                && assignment.deadline.is_none()
            {
                let timeout = function.config.timeout;
                assignment.deadline = Some(Instant::now() + timeout);
                let deadline_epoch_ms = (SystemTime::now() + timeout)
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis();
                crate::function::clear_progress(&worker.progress_path);
                return delivery(&function.arn, &assignment.invocation, deadline_epoch_ms);
            }
            launches = if worker.phase == WorkerPhase::Idle {
                function.dispatch_queued(&mut state)
            } else {
                Vec::new()
            };
        }
        if launches.is_empty() {
            woken.await;
        } else {
            // Not expected (queued events find idle workers at once), but never strand them.
            function.launch(&context.shared, launches);
        }
    }
}

fn delivery(function_arn: &str, invocation: &Invocation, deadline_epoch_ms: u128) -> Response {
    let trace_id = {
        let random = uuid::Uuid::new_v4().simple().to_string();
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        format!("Root=1-{seconds:08x}-{};Sampled=0", &random[..24])
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header("Lambda-Runtime-Aws-Request-Id", &invocation.request_id)
        .header("Lambda-Runtime-Deadline-Ms", deadline_epoch_ms.to_string())
        .header("Lambda-Runtime-Invoked-Function-Arn", function_arn)
        .header("Lambda-Runtime-Trace-Id", trace_id)
        .body(Body::from(invocation.payload.clone()))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Ends the worker's delivered invocation `request_id` with `outcome` and frees the worker.
fn finish(context: &WorkerContext, request_id: &str, outcome: Outcome) -> Response {
    let function = &context.function;
    let (invocation, launches) = {
        let mut state = function.lock();
        let Some(worker) = state.workers.get_mut(&context.worker_id) else {
            return gone();
        };
        if worker.phase == WorkerPhase::Stopping {
            return gone();
        }
        let delivered = worker.assignment.as_ref().is_some_and(|assignment| {
            assignment.deadline.is_some() && assignment.invocation.request_id == request_id
        });
        let Some(assignment) = worker.assignment.take_if(|_| delivered) else {
            return runtime_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestID",
                &format!("{request_id} is not the invocation this worker is running"),
            );
        };
        worker.phase = WorkerPhase::Idle;
        (assignment.invocation, function.dispatch_queued(&mut state))
    };
    function.launch(&context.shared, launches);
    complete(&context.shared, function, invocation, outcome);
    accepted()
}

async fn invocation_response(
    State(context): State<WorkerContext>,
    Path(request_id): Path<String>,
    body: Body,
) -> Response {
    let outcome = match read_limited(body, SYNCHRONOUS_PAYLOAD_LIMIT).await {
        LimitedBody::Complete(bytes) => Outcome::Success(bytes),
        LimitedBody::TooLarge { size } => Outcome::Failure(Failure::new(
            FailureKind::ResponseTooLarge,
            "Function.ResponseSizeTooLarge",
            format!(
                "Response payload size ({size} bytes) exceeded maximum allowed payload size ({SYNCHRONOUS_PAYLOAD_LIMIT} bytes)."
            ),
        )),
        LimitedBody::Failed(message) => {
            return runtime_error(StatusCode::BAD_REQUEST, "InvalidRequest", &message);
        }
    };
    finish(&context, &request_id, outcome)
}

async fn invocation_error(
    State(context): State<WorkerContext>,
    Path(request_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let error_type = headers
        .get("Lambda-Runtime-Function-Error-Type")
        .and_then(|value| value.to_str().ok());
    let body = match read_limited(body, SYNCHRONOUS_PAYLOAD_LIMIT).await {
        LimitedBody::Complete(bytes) => bytes,
        LimitedBody::TooLarge { size } => Bytes::from(format!(
            "the error report of {size} bytes exceeded {SYNCHRONOUS_PAYLOAD_LIMIT} bytes"
        )),
        LimitedBody::Failed(message) => {
            return runtime_error(StatusCode::BAD_REQUEST, "InvalidRequest", &message);
        }
    };
    let failure = Failure::reported(body, error_type);
    finish(&context, &request_id, Outcome::Failure(failure))
}

async fn initialization_error(
    State(context): State<WorkerContext>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body = match read_limited(body, SYNCHRONOUS_PAYLOAD_LIMIT).await {
        LimitedBody::Complete(bytes) => bytes,
        LimitedBody::TooLarge { .. } | LimitedBody::Failed(_) => Bytes::new(),
    };
    let error_type = headers
        .get("Lambda-Runtime-Function-Error-Type")
        .and_then(|value| value.to_str().ok());
    let failure = Failure::reported(body, error_type);
    let mut state = context.function.lock();
    let Some(worker) = state.workers.get_mut(&context.worker_id) else {
        return gone();
    };
    if worker.phase != WorkerPhase::Starting {
        return runtime_error(
            StatusCode::FORBIDDEN,
            "InvalidStateTransition",
            "initialization errors can only be reported before the first invocation",
        );
    }
    worker.initialization_error = Some(format!("{}: {}", failure.error_type, failure.message));
    accepted()
}
