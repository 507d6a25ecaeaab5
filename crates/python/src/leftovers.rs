//! What dead clients of the local platform left on this machine, seen from Python.
//!
//! `remove_local_leftovers()` removes (with `dry_run=True` only lists) the shared-memory stores
//! and local platform directories whose owner is gone, never those of a live client; the rules
//! are `dask_serverless_local_platform::leftovers`'s. `LocalCluster` calls it as it starts.

use dask_serverless_local_platform::leftovers::{self, Leftover};
use pyo3::prelude::*;

/// One directory a dead client left.
#[pyclass(frozen, module = "dask_serverless._core")]
pub(crate) struct LocalLeftover {
    #[pyo3(get)]
    path: String,
    /// `shared-memory store`, `local platform directory`, ...
    #[pyo3(get)]
    kind: String,
    /// Why it counts as a leftover: `its owner, process 1234, is gone`, ...
    #[pyo3(get)]
    reason: String,
    /// Why it could not be removed; `None` when it was (or, in a dry run, would be).
    #[pyo3(get)]
    error: Option<String>,
    description: String,
}

impl LocalLeftover {
    fn new(leftover: &Leftover, error: Option<String>) -> Self {
        Self {
            path: leftover.path.display().to_string(),
            kind: leftover.kind.to_string(),
            reason: leftover.reason.to_string(),
            error,
            description: leftover.to_string(),
        }
    }
}

#[pymethods]
impl LocalLeftover {
    fn __str__(&self) -> String {
        self.description.clone()
    }

    fn __repr__(&self) -> String {
        format!("LocalLeftover({:?})", self.description)
    }
}

/// Removes what dead local clients left in `/dev/shm` and the temporary directory; returns
/// each leftover, with the error of those that could not be removed. `dry_run`: remove nothing.
#[pyfunction]
#[pyo3(signature = (dry_run=false))]
pub(crate) fn remove_local_leftovers(py: Python<'_>, dry_run: bool) -> Vec<LocalLeftover> {
    py.detach(|| {
        let directories = leftovers::default_directories();
        if dry_run {
            return leftovers::find(&directories)
                .iter()
                .map(|leftover| LocalLeftover::new(leftover, None))
                .collect();
        }
        let removal = leftovers::remove(&directories);
        let removed = removal
            .removed
            .iter()
            .map(|leftover| LocalLeftover::new(leftover, None));
        let failed = removal
            .failed
            .iter()
            .map(|(leftover, error)| LocalLeftover::new(leftover, Some(error.to_string())));
        removed.chain(failed).collect()
    })
}
