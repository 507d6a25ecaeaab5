//! The tokio shell around the protocol core.
//!
//! [`dask_serverless_core`] decides; this crate acts. It opens stores and platform clients from
//! the addresses in a [`RunContext`](dask_serverless_core::RunContext), performs the actions the
//! state machines emit (store reads and writes, fan-in, invocations, reports) and feeds the
//! outcomes back as events:
//!
//! * [`ClientRun`] drives a [`Driver`](dask_serverless_core::Driver) in the client: it uploads
//!   batch payloads, invokes the leaves concurrently, then turns result-channel messages into
//!   progress, completion or failure;
//! * [`InvocationSession`] drives an [`Executor`](dask_serverless_core::Executor) in a function and
//!   stops whenever the host (Python) must act: run tasks, drop values, or finish.
//!
//! The store layout of a run is [`dask_serverless_core::keys`].

mod client;
mod connections;
mod faults;
mod invocation;
pub mod process;
mod zero_work;

pub use client::{ClientRun, RunEvent, RunStatistics};
pub use connections::{Connections, chaos_of, open_store};
pub use dask_serverless_core::BatchRecord;
pub use invocation::{HostStep, InvocationSession};
pub use zero_work::{ZeroWorkCost, zero_work};

use dask_serverless_plan::BatchId;

/// An error of the shell, with a message that says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Store(#[from] dask_serverless_store::StoreError),
    #[error(transparent)]
    Platform(#[from] dask_serverless_platform::PlatformError),
    #[cfg(feature = "aws")]
    #[error(transparent)]
    Aws(#[from] dask_serverless_aws::AwsError),
    #[error("invalid message: {0}")]
    Message(String),
    #[error("{0}")]
    Configuration(String),
}

/// The event that invokes a function for `batch` of the run, at its first attempt.
pub(crate) fn invocation_payload(
    context: &dask_serverless_core::RunContext,
    batch: BatchId,
) -> bytes::Bytes {
    event_payload(&dask_serverless_core::InvocationEvent::new(
        context.clone(),
        batch,
    ))
}

/// An invocation event as the bytes a function is invoked with, stamped with the time it is
/// sent (the function tells how long it waited to start).
pub(crate) fn event_payload(event: &dask_serverless_core::InvocationEvent) -> bytes::Bytes {
    let event = dask_serverless_core::InvocationEvent {
        invoked_at_us: now_micros(),
        ..event.clone()
    };
    bytes::Bytes::from(serde_json::to_vec(&event).expect("an invocation serializes"))
}

/// Microseconds since the Unix epoch.
pub fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_micros() as u64)
        .unwrap_or(0)
}
