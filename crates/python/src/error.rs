//! Rust errors as Python exceptions: the one place where they are mapped.
//!
//! Graph errors are `ValueError`s (bad input); a missing object is a `KeyError`; a store or
//! platform that cannot be reached is a `ConnectionError`; the rest are `RuntimeError`s. Each
//! keeps the Rust error's message, which says what went wrong and what to do.

use dask_serverless_graph::GraphError;
use dask_serverless_platform::PlatformError;
use dask_serverless_runtime::RuntimeError;
use dask_serverless_store::StoreError;
use pyo3::create_exception;
use pyo3::exceptions::{PyConnectionError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

create_exception!(_core, GraphValidationError, PyValueError);
create_exception!(_core, StoreFailure, PyRuntimeError);
create_exception!(_core, StoreUnavailable, PyConnectionError);
create_exception!(_core, PlatformFailure, PyRuntimeError);
create_exception!(_core, PlatformUnavailable, PyConnectionError);

pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    module.add("GraphValidationError", py.get_type::<GraphValidationError>())?;
    module.add("StoreFailure", py.get_type::<StoreFailure>())?;
    module.add("StoreUnavailable", py.get_type::<StoreUnavailable>())?;
    module.add("PlatformFailure", py.get_type::<PlatformFailure>())?;
    module.add("PlatformUnavailable", py.get_type::<PlatformUnavailable>())?;
    Ok(())
}

pub(crate) fn graph_error(error: GraphError) -> PyErr {
    GraphValidationError::new_err(error.to_string())
}

pub(crate) fn store_error(error: StoreError) -> PyErr {
    match error {
        StoreError::Unavailable { .. } => StoreUnavailable::new_err(error.to_string()),
        _ => StoreFailure::new_err(error.to_string()),
    }
}

pub(crate) fn platform_error(error: PlatformError) -> PyErr {
    match error {
        PlatformError::Unavailable { .. } => PlatformUnavailable::new_err(error.to_string()),
        _ => PlatformFailure::new_err(error.to_string()),
    }
}

pub(crate) fn runtime_error(error: RuntimeError) -> PyErr {
    match error {
        RuntimeError::Store(error) => store_error(error),
        RuntimeError::Platform(error) => platform_error(error),
        RuntimeError::Configuration(message) => PyValueError::new_err(message),
        RuntimeError::Message(message) => PyRuntimeError::new_err(message),
    }
}

pub(crate) fn emulator_error(error: impl std::fmt::Display) -> PyErr {
    PlatformFailure::new_err(format!("the local platform failed: {error}"))
}
