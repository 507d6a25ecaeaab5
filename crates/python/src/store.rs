//! The shared-memory store, seen from the client (create, list, destroy).
//!
//! The client that creates a store owns it: it holds the store's owner mark until it destroys
//! the store or dies, so that a cleanup of what dead clients left never takes a live store
//! (see `dask_serverless_local_platform::leftovers`).

use std::path::PathBuf;

use dask_serverless_local_platform::leftovers::OwnerMark;
use dask_serverless_store::{SharedMemoryStore as Inner, Store};
use pyo3::prelude::*;

use crate::error::{store_error, store_failure};
use crate::runtime;

#[pyclass(module = "dask_serverless._core")]
pub(crate) struct SharedMemoryStore {
    root: PathBuf,
    inner: Option<Inner>,
    /// Held from creation to destruction.
    owner_mark: Option<OwnerMark>,
}

#[pymethods]
impl SharedMemoryStore {
    /// Creates the store's directory and marks it as owned by this process.
    #[staticmethod]
    fn create(root: PathBuf) -> PyResult<SharedMemoryStore> {
        let inner = Inner::create(root.clone()).map_err(store_error)?;
        let owner_mark = match OwnerMark::claim(&root) {
            Ok(mark) => mark,
            Err(error) => {
                let _ = inner.destroy();
                return Err(store_failure(format!(
                    "could not mark the shared-memory store {} as in use: {error}",
                    root.display()
                )));
            }
        };
        Ok(SharedMemoryStore {
            root,
            inner: Some(inner),
            owner_mark: Some(owner_mark),
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

    /// Deletes one object (nothing if there is none).
    fn delete(&self, py: Python<'_>, key: &str) -> PyResult<()> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        py.detach(|| runtime().block_on(inner.delete(key)))
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
        let destroyed = match self.inner.take() {
            Some(inner) => inner.destroy().map_err(store_error),
            None => Ok(()),
        };
        // Released only now: until the store is gone, a cleanup must leave it alone.
        self.owner_mark = None;
        destroyed
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

    /// Deletes one object (nothing if there is none).
    fn delete(&self, py: Python<'_>, key: &str) -> PyResult<()> {
        let inner = &self.inner;
        py.detach(|| runtime().block_on(inner.delete(key)))
            .map_err(store_error)
    }

    fn delete_prefix(&self, py: Python<'_>, prefix: &str) -> PyResult<u64> {
        let inner = &self.inner;
        py.detach(|| runtime().block_on(inner.delete_prefix(prefix)))
            .map_err(store_error)
    }
}
