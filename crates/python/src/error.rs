//! Rust errors as Python exceptions: the one place where they are mapped.
//!
//! Graph errors are `ValueError`s (bad input); a missing object is a `KeyError`; a store or
//! platform that cannot be reached is a `ConnectionError`; the rest are `RuntimeError`s. Each
//! keeps the Rust error's message, which says what went wrong and what to do.

use dask_serverless_aws::AwsError;
use dask_serverless_graph::GraphError;
use dask_serverless_platform::PlatformError as NativePlatformError;
use dask_serverless_runtime::RuntimeError;
use dask_serverless_store::StoreError as NativeStoreError;
use pyo3::create_exception;
use pyo3::exceptions::{PyConnectionError, PyPermissionError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

create_exception!(_core, GraphValidationError, PyValueError);
create_exception!(_core, StoreError, PyRuntimeError);
create_exception!(_core, StoreUnavailableError, PyConnectionError);
create_exception!(_core, PlatformError, PyRuntimeError);
create_exception!(_core, PlatformUnavailableError, PyConnectionError);
create_exception!(_core, AwsConfigurationError, PyValueError);
create_exception!(_core, AwsPermissionError, PyPermissionError);

pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    module.add(
        "GraphValidationError",
        py.get_type::<GraphValidationError>(),
    )?;
    module.add("StoreError", py.get_type::<StoreError>())?;
    module.add(
        "StoreUnavailableError",
        py.get_type::<StoreUnavailableError>(),
    )?;
    module.add("PlatformError", py.get_type::<PlatformError>())?;
    module.add(
        "PlatformUnavailableError",
        py.get_type::<PlatformUnavailableError>(),
    )?;
    Ok(())
}

pub(crate) fn graph_error(error: GraphError) -> PyErr {
    GraphValidationError::new_err(error.to_string())
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
        RuntimeError::Configuration(message) => PyValueError::new_err(message),
        RuntimeError::Message(message) => PyRuntimeError::new_err(message),
        RuntimeError::Aws(error) => aws_error(error),
    }
}

pub(crate) fn emulator_error(error: impl std::fmt::Display) -> PyErr {
    PlatformError::new_err(format!("the local platform failed: {error}"))
}

/// AWS errors: configuration (credentials, region, input) is a `ValueError`, a denied action
/// a `PermissionError`, an endpoint that does not answer a `ConnectionError`.
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
