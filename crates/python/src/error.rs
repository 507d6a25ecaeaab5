//! Rust errors as Python exceptions: the one place where they are mapped.
//!
//! The exception classes are the package's own, defined in `dask_serverless.errors` (one family
//! under `ServerlessError`, each also deriving from the standard exception a caller would catch)
//! and raised from here, so no Python code maps error strings to types:
//!
//! * graph errors are `GraphValidationError`s (`ValueError`);
//! * a store or platform that cannot be reached is a `StoreUnavailableError` /
//!   `PlatformUnavailableError` (`ConnectionError`), other store and platform failures
//!   `StoreError` / `PlatformError`;
//! * invalid arguments and settings are `ConfigurationError`s (`ValueError`), AWS credentials and
//!   settings `AwsConfigurationError`s, a denied AWS action an `AwsPermissionError`;
//! * how a run failed becomes the task's own exception, or `SerializationError`,
//!   `FunctionMemoryError`, `FunctionTimeoutError`, `FunctionError` or `RunLostError`
//!   ([`run_failure`]).
//!
//! Each keeps the Rust error's message, which says what went wrong and what to do.

use base64::Engine;
#[cfg(feature = "aws")]
use dask_serverless_aws::AwsError;
use dask_serverless_core::{FunctionFailureKind, RunFailure};
use dask_serverless_graph::GraphError;
use dask_serverless_platform::PlatformError as NativePlatformError;
use dask_serverless_runtime::RuntimeError;
use dask_serverless_store::StoreError as NativeStoreError;
use pyo3::import_exception;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::plan::Plan;

import_exception!(dask_serverless.errors, ServerlessError);
import_exception!(dask_serverless.errors, ConfigurationError);
import_exception!(dask_serverless.errors, GraphValidationError);
import_exception!(dask_serverless.errors, SerializationError);
import_exception!(dask_serverless.errors, FunctionError);
import_exception!(dask_serverless.errors, FunctionMemoryError);
import_exception!(dask_serverless.errors, FunctionTimeoutError);
import_exception!(dask_serverless.errors, RunLostError);
import_exception!(dask_serverless.errors, RemoteTaskError);
import_exception!(dask_serverless.errors, StoreError);
import_exception!(dask_serverless.errors, StoreUnavailableError);
import_exception!(dask_serverless.errors, PlatformError);
import_exception!(dask_serverless.errors, PlatformUnavailableError);
#[cfg(feature = "aws")]
import_exception!(dask_serverless.errors, AwsConfigurationError);
#[cfg(feature = "aws")]
import_exception!(dask_serverless.errors, AwsPermissionError);

pub(crate) fn configuration_error(message: impl Into<String>) -> PyErr {
    ConfigurationError::new_err(message.into())
}

pub(crate) fn graph_error(error: GraphError) -> PyErr {
    GraphValidationError::new_err(error.to_string())
}

/// A store failure the store crate does not describe (a `StoreError`).
pub(crate) fn store_failure(message: String) -> PyErr {
    StoreError::new_err(message)
}

pub(crate) fn store_error(error: NativeStoreError) -> PyErr {
    match error {
        NativeStoreError::Unavailable { .. } => StoreUnavailableError::new_err(error.to_string()),
        _ => StoreError::new_err(error.to_string()),
    }
}

pub(crate) fn platform_error(error: NativePlatformError) -> PyErr {
    match error {
        NativePlatformError::Unavailable { .. } => {
            PlatformUnavailableError::new_err(error.to_string())
        }
        _ => PlatformError::new_err(error.to_string()),
    }
}

pub(crate) fn runtime_error(error: RuntimeError) -> PyErr {
    match error {
        RuntimeError::Store(error) => store_error(error),
        RuntimeError::Platform(error) => platform_error(error),
        RuntimeError::Configuration(message) => ConfigurationError::new_err(message),
        RuntimeError::Message(message) => ServerlessError::new_err(message),
        #[cfg(feature = "aws")]
        RuntimeError::Aws(error) => aws_error(error),
    }
}

pub(crate) fn local_platform_error(error: impl std::fmt::Display) -> PyErr {
    PlatformError::new_err(format!("the local platform failed: {error}"))
}

/// AWS errors: configuration (credentials, region, input) is an `AwsConfigurationError`, a
/// denied action an `AwsPermissionError`, an endpoint that does not answer a
/// `PlatformUnavailableError`.
#[cfg(feature = "aws")]
pub(crate) fn aws_error(error: AwsError) -> PyErr {
    let message = error.to_string();
    match error {
        AwsError::NoCredentials { .. }
        | AwsError::InvalidCredentials { .. }
        | AwsError::NoRegion
        | AwsError::UnknownRegion { .. }
        | AwsError::InvalidInput(_) => AwsConfigurationError::new_err(message),
        AwsError::AccessDenied { .. } => AwsPermissionError::new_err(message),
        AwsError::Unreachable { .. } | AwsError::Timeout { .. } => {
            PlatformUnavailableError::new_err(message)
        }
        _ => PlatformError::new_err(message),
    }
}

/// The exception a failed run raises in the client.
pub(crate) fn run_failure(
    py: Python<'_>,
    plan: &Plan,
    function_timeout_s: f64,
    failure: RunFailure,
) -> PyErr {
    match failure {
        RunFailure::Task(error) => {
            let key = plan.key_name(error.task);
            if let Some(raised) = error
                .pickled
                .as_deref()
                .and_then(|pickled| unpickle_exception(py, pickled))
            {
                let note = format!("Raised by task {key} in a function:\n{}", error.traceback);
                let _ = raised.call_method1(py, "add_note", (note,));
                return PyErr::from_value(raised.into_bound(py));
            }
            RemoteTaskError::new_err(format!(
                "task {key} raised {}: {}\n{}",
                error.type_name, error.message, error.traceback
            ))
        }
        RunFailure::Unpicklable { message, .. } => SerializationError::new_err(message),
        RunFailure::Function {
            kind,
            batch,
            attempts,
            tasks_finished,
            error_type,
            message,
        } => {
            let place = batch.map_or_else(
                || "a function".to_owned(),
                |batch| format!("the function running {}", plan.describe_batch(batch)),
            );
            let text = match kind {
                FunctionFailureKind::OutOfMemory => format!(
                    "{place} exceeded its memory size ({error_type}: {message}). Raise \
                     memory_mb, or use smaller chunks so that each task holds less."
                ),
                FunctionFailureKind::Timeout => format!(
                    "{place} ran longer than its timeout ({error_type}: {message}); it had \
                     finished {tasks_finished} tasks, running for {function_timeout_s} s. \
                     timeout_s is the limit of one invocation, which may run many tasks \
                     (several batches in a row): raise timeout_s (AWS Lambda allows up to \
                     900 s), or make tasks shorter."
                ),
                FunctionFailureKind::Crashed => {
                    format!("{place} stopped ({error_type}: {message})")
                }
            };
            let text = if attempts > 1 {
                format!("{text} It failed so on each of {attempts} attempts.")
            } else {
                text
            };
            let arguments = (text, error_type, batch.map(|batch| batch.0));
            match kind {
                FunctionFailureKind::OutOfMemory => FunctionMemoryError::new_err(arguments),
                FunctionFailureKind::Timeout => FunctionTimeoutError::new_err(arguments),
                FunctionFailureKind::Crashed => FunctionError::new_err(arguments),
            }
        }
        RunFailure::Infrastructure { batch, message } => {
            ServerlessError::new_err(format!("{} failed: {message}", plan.describe_batch(batch)))
        }
        RunFailure::Lost {
            silent_for_us,
            pending_batches,
        } => RunLostError::new_err(format!(
            "no news of the run for {:.0} s while {pending_batches} batches were pending: the \
             platform lost them",
            silent_for_us as f64 / 1e6
        )),
    }
}

fn unpickle_exception(py: Python<'_>, pickled: &str) -> Option<Py<PyAny>> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(pickled)
        .ok()?;
    let loads = py.import("cloudpickle").ok()?.getattr("loads").ok()?;
    let raised = loads.call1((PyBytes::new(py, &bytes),)).ok()?;
    let base = py.get_type::<pyo3::exceptions::PyBaseException>();
    if raised.is_instance(&base).ok()? {
        Some(raised.unbind())
    } else {
        None
    }
}
