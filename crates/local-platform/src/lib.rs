//! The local platform: a Lambda-compatible service that runs functions as warm local processes.
//!
//! It serves the AWS Lambda **Invoke API** to callers and the Lambda **Runtime API** to its
//! workers, so that the same handler and the same invoker code run locally and on AWS. Workers are
//! processes running a Lambda runtime interface client (`python -m awslambdaric module.handler`),
//! started lazily (cold starts) up to each function's reserved concurrency and reused while warm.
//! Lambda's limits are enforced with Lambda's error types: concurrency (429 throttles for
//! synchronous calls; asynchronous calls wait in a queue), payload sizes (413), response size
//! (`Function.ResponseSizeTooLarge`), timeout (`Sandbox.Timedout`), memory size
//! (`Runtime.OutOfMemory`), crashes (`Runtime.ExitError`) and initialization failures
//! (`Runtime.InitError`). What workers print is kept per invocation, as CloudWatch Logs keeps a
//! Lambda function's output (and copied live to standard error, a file, or nowhere). Failed
//! asynchronous invocations are delivered as destination records to
//! an on-failure queue of the built-in queue service, which speaks a subset of the SQS JSON
//! protocol.
//!
//! It runs embedded (started on the caller's tokio runtime) or standalone
//! (`dask-serverless platform --port N`).
//!
//! ```no_run
//! # async fn example() -> Result<(), dask_serverless_local_platform::LocalPlatformError> {
//! use dask_serverless_local_platform::{LocalPlatform, LocalPlatformConfig, FunctionConfig};
//! let platform = LocalPlatform::start(LocalPlatformConfig::default()).await?;
//! let command = ["python3", "-m", "awslambdaric", "handlers.handle"].map(String::from).to_vec();
//! platform.create_function(FunctionConfig::new("squares", command)).await?;
//! // POST http://{address}/2015-03-31/functions/squares/invocations
//! println!("{}", platform.address());
//! platform.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! Module map: [`config`] (functions and limits), `platform` (registry, start, shutdown),
//! `function` (worker phases and invocation lifecycle), `worker` (processes), [`output`] (what
//! workers print, kept per invocation and copied live), `lifeline` (worker
//! process groups die with the platform's process), [`leftovers`] (what dead clients left on
//! disk, and its removal), `runtime_api`, `invoke_api`, `limits` (timeout and memory
//! enforcement), `queue` (queue service), `destination` (failure records), `statistics`.

mod body;
pub mod config;
mod destination;
mod function;
mod invoke_api;
pub mod leftovers;
mod lifeline;
mod limits;
pub mod output;
mod platform;
mod queue;
mod runtime_api;
mod statistics;
mod worker;

use std::net::SocketAddr;

pub use config::{
    ASYNCHRONOUS_PAYLOAD_LIMIT, FunctionConfig, LocalPlatformConfig, QUEUE_MESSAGE_LIMIT,
    SYNCHRONOUS_PAYLOAD_LIMIT,
};
pub use output::{InvocationLog, WorkerOutputCopy};
pub use platform::{LocalPlatform, LocalPlatformHandle};
pub use statistics::PlatformStatistics;

/// Why the local platform refused an operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalPlatformError {
    #[error("could not listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("function '{name}' already exists")]
    FunctionExists { name: String },
    #[error("function '{name}' does not exist")]
    FunctionNotFound { name: String },
    #[error("invalid function '{name}': {message}")]
    InvalidFunction { name: String, message: String },
    #[error("the local platform is shutting down")]
    ShuttingDown,
}

#[cfg(test)]
pub(crate) mod test_support {
    //! The unit tests run on threads of one process. A program started from one of them holds a
    //! copy of every descriptor of the process from its fork to its exec (where close-on-exec
    //! closes them), `flock` locks included: an owner mark dropped meanwhile stays locked for
    //! that moment. Tests that start programs hold [`starting_programs`] while they do; tests
    //! that need a dropped mark's lock free at once hold [`no_program_starts`].

    use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

    static PROGRAM_STARTS: RwLock<()> = RwLock::new(());

    /// Held while a test starts a program (several may at once).
    pub(crate) fn starting_programs() -> RwLockReadGuard<'static, ()> {
        PROGRAM_STARTS
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Held while no program may be started by another test.
    pub(crate) fn no_program_starts() -> RwLockWriteGuard<'static, ()> {
        PROGRAM_STARTS
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    /// The handle is shared with other threads by embedders (e.g. the Python extension).
    #[test]
    fn public_types_are_send_and_sync() {
        fn send_and_sync<T: Send + Sync>() {}
        send_and_sync::<super::LocalPlatformHandle>();
        send_and_sync::<super::LocalPlatformError>();
        send_and_sync::<super::PlatformStatistics>();
    }
}
