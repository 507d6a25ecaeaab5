//! The function's executor, seen from the handler.

use dask_serverless_core::{TaskError, TaskRecord};
use dask_serverless_graph::TaskId;
use dask_serverless_runtime::{HostStep, WorkerSession};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use crate::buffer::{buffers, chunks};
use crate::error::runtime_error;
use crate::runtime;

#[pyclass(module = "dask_serverless._core")]
pub(crate) struct Worker {
    session: WorkerSession,
}

fn ids(tasks: &[TaskId]) -> Vec<u32> {
    tasks.iter().map(|task| task.0).collect()
}

#[pymethods]
impl Worker {
    #[new]
    fn new(py: Python<'_>, event: &str, invocation_id: String, cold: bool) -> PyResult<Worker> {
        let session = py
            .detach(|| runtime().block_on(WorkerSession::new(event, invocation_id, cold)))
            .map_err(runtime_error)?;
        Ok(Worker { session })
    }

    #[getter]
    fn run_id(&self) -> String {
        self.session.run_id().to_owned()
    }

    /// The next thing the handler must do: `("run", spec, tasks, inputs)`,
    /// `("retain", [task, ...])` or `("finish",)`.
    fn step<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let session = &mut self.session;
        let step = py.detach(|| runtime().block_on(session.next_step()));
        match step {
            HostStep::Run {
                spec,
                tasks,
                inputs,
            } => {
                let description = PyDict::new(py);
                description.set_item("cluster", spec.cluster.0)?;
                description.set_item("tasks", ids(&spec.tasks))?;
                description.set_item("stored_outputs", ids(&spec.stored_outputs))?;
                description.set_item("memory_outputs", ids(&spec.memory_outputs))?;
                description.set_item("sinks", ids(&spec.sinks))?;
                let release_after = PyList::empty(py);
                for released in &spec.release_after {
                    release_after.append(ids(released))?;
                }
                description.set_item("release_after", release_after)?;
                let loaded = PyList::empty(py);
                for (task, parts) in inputs {
                    loaded.append((task.0, buffers(py, parts)?))?;
                }
                PyTuple::new(
                    py,
                    [
                        "run".into_pyobject(py)?.into_any(),
                        description.into_any(),
                        PyBytes::new(py, &tasks).into_any(),
                        loaded.into_any(),
                    ],
                )
            }
            HostStep::Retain { tasks } => PyTuple::new(
                py,
                [
                    "retain".into_pyobject(py)?.into_any(),
                    ids(&tasks).into_pyobject(py)?.into_any(),
                ],
            ),
            HostStep::Finish => PyTuple::new(py, ["finish"]),
        }
    }

    /// Stores a value's pickle parts; returns the bytes written.
    fn put_value(&self, py: Python<'_>, task: u32, parts: Vec<Bound<'_, PyAny>>) -> PyResult<u64> {
        let chunks = chunks(&parts)?;
        let session = &self.session;
        py.detach(|| runtime().block_on(session.put_value(TaskId(task), chunks)))
            .map_err(runtime_error)
    }

    /// Every task ran: `records` are `(task, start_us, duration_us, stored_bytes)`.
    fn tasks_finished(&mut self, records: Vec<(u32, u64, u64, u64)>) {
        let records = records
            .into_iter()
            .map(|(task, start_us, duration_us, stored_bytes)| TaskRecord {
                task: TaskId(task),
                start_us,
                duration_us,
                stored_bytes,
            })
            .collect();
        self.session.tasks_finished(records);
    }

    /// A task raised.
    #[pyo3(signature = (task, type_name, message, traceback, pickled=None))]
    fn task_failed(
        &mut self,
        task: u32,
        type_name: String,
        message: String,
        traceback: String,
        pickled: Option<String>,
    ) {
        self.session.task_failed(TaskError {
            task: TaskId(task),
            type_name,
            message,
            traceback,
            pickled,
        });
    }

    /// Something around the tasks failed.
    fn failed(&mut self, message: String) {
        self.session.failed(message);
    }
}
