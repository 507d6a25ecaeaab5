//! The shared-memory store, seen from the client (create, list, destroy).

use std::path::PathBuf;

use dask_serverless_store::{SharedMemoryStore as Inner, Store};
use pyo3::prelude::*;

use crate::error::store_error;
use crate::runtime;

#[pyclass(module = "dask_serverless._core")]
pub(crate) struct SharedMemoryStore {
    root: PathBuf,
    inner: Option<Inner>,
}

#[pymethods]
impl SharedMemoryStore {
    /// Creates the store's directory.
    #[staticmethod]
    fn create(root: PathBuf) -> PyResult<SharedMemoryStore> {
        let inner = Inner::create(root.clone()).map_err(store_error)?;
        Ok(SharedMemoryStore {
            root,
            inner: Some(inner),
        })
    }

    #[getter]
    fn root(&self) -> PathBuf {
        self.root.clone()
    }

    /// Keys under a prefix.
    fn list(&self, py: Python<'_>, prefix: &str) -> PyResult<Vec<String>> {
        let Some(inner) = &self.inner else {
            return Ok(Vec::new());
        };
        py.detach(|| runtime().block_on(inner.list(prefix)))
            .map_err(store_error)
    }

    fn delete_prefix(&self, py: Python<'_>, prefix: &str) -> PyResult<u64> {
        let Some(inner) = &self.inner else {
            return Ok(0);
        };
        py.detach(|| runtime().block_on(inner.delete_prefix(prefix)))
            .map_err(store_error)
    }

    /// Deletes the store and everything in it; safe to call twice.
    fn destroy(&mut self) -> PyResult<()> {
        match self.inner.take() {
            Some(inner) => inner.destroy().map_err(store_error),
            None => Ok(()),
        }
    }
}

/// Any store, opened from its address (`shm://`, `redis://`, `s3://`).
#[pyclass(module = "dask_serverless._core", name = "Store")]
pub(crate) struct AnyStore {
    address: String,
    inner: std::sync::Arc<dyn Store>,
}

#[pymethods]
impl AnyStore {
    #[staticmethod]
    fn open(py: Python<'_>, address: String) -> PyResult<AnyStore> {
        let inner = py
            .detach(|| runtime().block_on(dask_serverless_runtime::open_store(&address)))
            .map_err(crate::error::runtime_error)?;
        Ok(AnyStore { address, inner })
    }

    #[getter]
    fn address(&self) -> String {
        self.address.clone()
    }

    /// Keys under a prefix (`""` for all).
    fn list(&self, py: Python<'_>, prefix: &str) -> PyResult<Vec<String>> {
        let inner = &self.inner;
        py.detach(|| runtime().block_on(inner.list(prefix)))
            .map_err(store_error)
    }

    fn delete_prefix(&self, py: Python<'_>, prefix: &str) -> PyResult<u64> {
        let inner = &self.inner;
        py.detach(|| runtime().block_on(inner.delete_prefix(prefix)))
            .map_err(store_error)
    }
}
