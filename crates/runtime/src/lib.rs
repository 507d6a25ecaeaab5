//! The tokio shell around the protocol core.
//!
//! [`dask_serverless_core`] decides; this crate acts. It opens stores and platform clients from
//! the addresses in a [`RunContext`](dask_serverless_core::RunContext), performs the actions the
//! state machines emit (store reads and writes, fan-in, invocations, reports) and feeds the
//! outcomes back as events:
//!
//! * [`ClientRun`] drives a [`Driver`](dask_serverless_core::Driver) in the client: it uploads
//!   cluster payloads, invokes the leaves concurrently, then turns result-channel messages into
//!   progress, completion or failure;
//! * [`WorkerSession`] drives an [`Executor`](dask_serverless_core::Executor) in a function and
//!   stops whenever the host (Python) must act: run tasks, drop values, or finish.
//!
//! Store layout of a run (every key under `"{run_id}/"`, deleted when the run ends):
//! `clusters/{cluster}` the framed spec and pickled tasks, `values/{task}` a framed value,
//! `fanin/{cluster}` a fan-in set.

mod client;
mod connections;
mod worker;
mod zero_work;

pub use client::{ClientRun, RunEvent, RunStatistics};
pub use connections::{Connections, open_store};
pub use worker::{HostStep, WorkerSession};
pub use zero_work::{ZeroWorkCost, zero_work};

use dask_serverless_graph::TaskId;
use dask_serverless_plan::ClusterId;

/// An error of the shell, with a message that says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Store(#[from] dask_serverless_store::StoreError),
    #[error(transparent)]
    Platform(#[from] dask_serverless_platform::PlatformError),
    #[error(transparent)]
    Aws(#[from] dask_serverless_aws::AwsError),
    #[error("invalid message: {0}")]
    Message(String),
    #[error("{0}")]
    Configuration(String),
}

/// The store key of a cluster's spec and tasks.
pub fn cluster_key(run_id: &str, cluster: ClusterId) -> String {
    format!("{run_id}/clusters/{}", cluster.0)
}

/// The store key of a task's value.
pub fn value_key(run_id: &str, task: TaskId) -> String {
    format!("{run_id}/values/{}", task.0)
}

/// The event that invokes a function for `cluster` of the run.
pub(crate) fn invocation_payload(
    context: &dask_serverless_core::RunContext,
    cluster: ClusterId,
) -> bytes::Bytes {
    let event = dask_serverless_core::Invocation {
        run: context.clone(),
        cluster,
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
