//! The client's run, seen from Python: upload, start, poll, fetch, clean up.

use std::time::Duration;

use bytes::Bytes;
use dask_serverless_core::{RunContext, RunFailure, TaskRecord};
use dask_serverless_graph::TaskId;
use dask_serverless_plan::ClusterId;
use dask_serverless_runtime::RunEvent;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use crate::buffer::{Buffer, buffers};
use crate::error::runtime_error;
use crate::plan::Plan;
use crate::runtime;

#[pyclass(module = "dask_serverless._core")]
pub(crate) struct ClientRun {
    inner: dask_serverless_runtime::ClientRun,
}

#[pymethods]
impl ClientRun {
    #[new]
    fn new(
        py: Python<'_>,
        context: &str,
        plan: &Plan,
        silence_limit_s: f64,
    ) -> PyResult<ClientRun> {
        let context: RunContext = serde_json::from_str(context)
            .map_err(|error| PyValueError::new_err(format!("invalid run context: {error}")))?;
        let silence_limit = Duration::from_secs_f64(silence_limit_s.max(0.0));
        let plan = plan.plan.clone();
        let inner = py
            .detach(|| {
                runtime().block_on(dask_serverless_runtime::ClientRun::new(
                    context,
                    plan,
                    silence_limit,
                ))
            })
            .map_err(runtime_error)?;
        Ok(ClientRun { inner })
    }

    #[getter]
    fn run_id(&self) -> String {
        self.inner.run_id().to_owned()
    }

    /// Stores a cluster's pickled tasks beside its spec.
    fn put_cluster(&mut self, py: Python<'_>, cluster: u32, tasks: Vec<u8>) -> PyResult<()> {
        let inner = &mut self.inner;
        py.detach(|| runtime().block_on(inner.put_cluster(ClusterId(cluster), Bytes::from(tasks))))
            .map_err(runtime_error)
    }

    /// Invokes the leaf clusters; returns the first events.
    fn start<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let inner = &mut self.inner;
        let events = py
            .detach(|| runtime().block_on(inner.start()))
            .map_err(runtime_error)?;
        events_to_python(py, events)
    }

    /// Waits up to `timeout_s` for news; returns events as tuples:
    /// `("tasks", [(task, start_us, duration_us, stored_bytes), ...])`, `("completed",)` or
    /// `("failed", kind, details)` with kind `task`, `function`, `infrastructure` or `lost`.
    fn poll<'py>(&mut self, py: Python<'py>, timeout_s: f64) -> PyResult<Bound<'py, PyList>> {
        let inner = &mut self.inner;
        let wait = Duration::from_secs_f64(timeout_s.max(0.0));
        let events = py
            .detach(|| runtime().block_on(inner.poll(wait)))
            .map_err(runtime_error)?;
        events_to_python(py, events)
    }

    /// A value's pickle parts (zero-copy buffers).
    fn fetch(&mut self, py: Python<'_>, task: u32) -> PyResult<Vec<Py<Buffer>>> {
        let inner = &mut self.inner;
        let parts = py
            .detach(|| runtime().block_on(inner.fetch(TaskId(task))))
            .map_err(runtime_error)?;
        buffers(py, parts)
    }

    /// After a failure: stops clusters from starting and waits up to `timeout_s` for running
    /// ones to end; True when nothing of the run runs any more.
    fn drain(&mut self, py: Python<'_>, timeout_s: f64) -> PyResult<bool> {
        let inner = &mut self.inner;
        let wait = Duration::from_secs_f64(timeout_s.max(0.0));
        py.detach(|| runtime().block_on(inner.drain(wait)))
            .map_err(runtime_error)
    }

    /// Deletes every object of the run.
    fn cleanup(&mut self, py: Python<'_>) -> PyResult<u64> {
        let inner = &mut self.inner;
        py.detach(|| runtime().block_on(inner.cleanup()))
            .map_err(runtime_error)
    }

    /// What the run cost so far: invocations, store operations and bytes (see
    /// `RunStatistics`), as a dict.
    fn statistics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let statistics = self.inner.statistics();
        let dict = PyDict::new(py);
        dict.set_item("invocations", statistics.invocations)?;
        dict.set_item("clusters_finished", statistics.clusters_finished)?;
        dict.set_item("store_operations", statistics.store_operations)?;
        dict.set_item("store_bytes_written", statistics.store_bytes_written)?;
        dict.set_item("store_bytes_read", statistics.store_bytes_read)?;
        dict.set_item("task_bytes", statistics.task_bytes)?;
        dict.set_item("value_bytes_written", statistics.value_bytes_written)?;
        dict.set_item("boundary_bytes", statistics.boundary_bytes)?;
        Ok(dict)
    }
}

fn records_to_python<'py>(py: Python<'py>, records: &[TaskRecord]) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for record in records {
        list.append((
            record.task.0,
            record.start_us,
            record.duration_us,
            record.stored_bytes,
        ))?;
    }
    Ok(list)
}

fn events_to_python(py: Python<'_>, events: Vec<RunEvent>) -> PyResult<Bound<'_, PyList>> {
    let list = PyList::empty(py);
    for event in events {
        let item = match event {
            RunEvent::TasksFinished(records) => PyTuple::new(
                py,
                [
                    "tasks".into_pyobject(py)?.into_any(),
                    records_to_python(py, &records)?.into_any(),
                ],
            )?,
            RunEvent::Completed => PyTuple::new(py, ["completed"])?,
            RunEvent::Failed(failure) => {
                let details = PyDict::new(py);
                let kind = match failure {
                    RunFailure::Task(error) => {
                        details.set_item("task", error.task.0)?;
                        details.set_item("type_name", error.type_name)?;
                        details.set_item("message", error.message)?;
                        details.set_item("traceback", error.traceback)?;
                        details.set_item("pickled", error.pickled)?;
                        "task"
                    }
                    RunFailure::Function {
                        cluster,
                        error_type,
                        message,
                    } => {
                        details.set_item("cluster", cluster.map(|cluster| cluster.0))?;
                        details.set_item("error_type", error_type)?;
                        details.set_item("message", message)?;
                        "function"
                    }
                    RunFailure::Infrastructure { cluster, message } => {
                        details.set_item("cluster", cluster.0)?;
                        details.set_item("message", message)?;
                        "infrastructure"
                    }
                    RunFailure::Lost {
                        silent_for_us,
                        pending_clusters,
                    } => {
                        details.set_item("silent_for_s", silent_for_us as f64 / 1e6)?;
                        details.set_item("pending_clusters", pending_clusters)?;
                        "lost"
                    }
                };
                PyTuple::new(
                    py,
                    [
                        "failed".into_pyobject(py)?.into_any(),
                        kind.into_pyobject(py)?.into_any(),
                        details.into_any(),
                    ],
                )?
            }
        };
        list.append(item)?;
    }
    Ok(list)
}
