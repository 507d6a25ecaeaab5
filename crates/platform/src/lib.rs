//! The platform side of the engine: invoking functions and receiving their results.
//!
//! Two minimal traits are the contract every backend meets:
//! - [`Invoker`] starts a function: asynchronously (`Event`, fire and forget; the platform queues
//!   it) or synchronously (`RequestResponse`, waits for the handler's answer);
//! - [`ResultChannel`] carries messages (sink outputs, task events) back from the functions to the
//!   client: a queue with batched sends and long-polled receives.
//!
//! Errors are one backend-neutral, `#[non_exhaustive]` [`PlatformError`].
//!
//! Backends here talk to the local platform (the local platform) over its AWS wire protocols, so they
//! also talk to anything that speaks them: [`LocalInvoker`] (the Lambda Invoke API) and
//! [`LocalQueue`] (a subset of the SQS JSON protocol).
//!
//! [`ChaosInvoker`] wraps any invoker with throttles and duplicate deliveries, and
//! [`ChaosResultChannel`] any result channel with transient failures, for testing; the spec of
//! such faults ([`ChaosSpec`], [`Chaos`]) is re-exported from `dask-serverless-chaos`.
//!
//! Retries follow one [`RetryPolicy`]: throttles are retried with capped, jittered exponential
//! backoff and no cap on attempts while the client makes progress (see the `retry` module's
//! documentation, and `docs/reliability.md`, "Throttling").
//!
//! Every backend passes the conformance suite (the `conformance` module, behind the
//! `conformance` feature): this crate's tests run it against the local platform, the AWS
//! backend's against MiniStack, each also under chaos.

pub mod chaos;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
mod http;
mod invoker;
mod queue;
mod retry;

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub use chaos::{ChaosInvoker, ChaosResultChannel};
pub use dask_serverless_chaos::{Chaos, ChaosSpec, ChaosSpecError, Fault, KillPoint};
pub use error::PlatformError;
pub use invoker::LocalInvoker;
pub use queue::{BATCH_LIMIT, LocalQueue, message_batches, message_texts};
pub use retry::{LastAccepted, RetryPolicy};

/// Largest payload of a synchronous invocation, and of its response (Lambda's limit).
pub const SYNCHRONOUS_PAYLOAD_LIMIT: usize = 6_291_456;
/// Largest payload of an asynchronous invocation (Lambda's limit).
pub const ASYNCHRONOUS_PAYLOAD_LIMIT: usize = 1_048_576;
/// Largest message, and batch of messages, on a result channel (SQS's limit).
pub const MESSAGE_LIMIT: usize = 1_048_576;

/// Starts functions.
#[async_trait]
pub trait Invoker: Send + Sync + Debug {
    /// Queues an asynchronous invocation; returns once the platform has accepted it.
    async fn invoke_event(&self, function: &str, payload: Bytes) -> Result<(), PlatformError>;

    /// Runs the function and returns its response; a handler error is
    /// [`PlatformError::FunctionError`].
    async fn invoke_request_response(
        &self,
        function: &str,
        payload: Bytes,
    ) -> Result<Bytes, PlatformError>;
}

/// Carries messages from functions back to the client.
#[async_trait]
pub trait ResultChannel: Send + Sync + Debug {
    /// Sends messages (text, each at most [`MESSAGE_LIMIT`] bytes), in as few requests as the
    /// protocol allows.
    async fn send(&self, messages: Vec<Bytes>) -> Result<(), PlatformError>;

    /// Returns the messages available, waiting up to `max_wait` for the first one; an empty list
    /// when none came.
    async fn receive(&self, max_wait: Duration) -> Result<Vec<Bytes>, PlatformError>;
}
