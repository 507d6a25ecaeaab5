//! The function's executor, seen from the handler.
//!
//! The handler asks [`Invocation::step`] what to do next and gets a typed step: run a batch
//! ([`RunBatchStep`]), keep only some values ([`RetainStep`]) or finish ([`FinishStep`]).
//! While it runs a batch's tasks it stores outputs ([`Invocation::put_value`], without copying
//! them), streams finished tasks ([`Invocation::progress`]) and ends with
//! [`Invocation::tasks_finished`], or reports what failed.

use base64::Engine;
use dask_serverless_core::{TaskError, TaskRecord, TaskWarning};
use dask_serverless_graph::TaskId;
use dask_serverless_runtime::{HostStep, InvocationSession};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::buffer::{Buffer, buffers, chunks};
use crate::error::runtime_error;
use crate::runtime;

fn ids(tasks: &[TaskId]) -> Vec<u32> {
    tasks.iter().map(|task| task.0).collect()
}

/// Run the tasks of a batch, in order.
#[pyclass(frozen, module = "dask_serverless._core")]
pub(crate) struct RunBatchStep {
    #[pyo3(get)]
    batch: u32,
    /// Tasks in execution order.
    #[pyo3(get)]
    tasks: Vec<u32>,
    /// Values to write to the store when computed.
    #[pyo3(get)]
    stored_outputs: Vec<u32>,
    /// Values handed in memory to the batch this invocation becomes next.
    #[pyo3(get)]
    memory_outputs: Vec<u32>,
    /// `release_after[i]`: values no later task needs once `tasks[i]` ran.
    #[pyo3(get)]
    release_after: Vec<Vec<u32>>,
    /// The pickled tasks the client stored.
    payload: Py<PyBytes>,
    /// Values read from the store: `(task, [pickle stream, buffer, ...])`.
    #[pyo3(get)]
    inputs: Vec<(u32, Vec<Py<Buffer>>)>,
}

#[pymethods]
impl RunBatchStep {
    #[getter]
    fn payload(&self, py: Python<'_>) -> Py<PyBytes> {
        self.payload.clone_ref(py)
    }
}

/// Keep these values in memory; drop the others.
#[pyclass(frozen, module = "dask_serverless._core")]
pub(crate) struct RetainStep {
    #[pyo3(get)]
    tasks: Vec<u32>,
}

/// The invocation is over.
#[pyclass(frozen, module = "dask_serverless._core")]
pub(crate) struct FinishStep;

#[pyclass(module = "dask_serverless._core")]
pub(crate) struct Invocation {
    session: InvocationSession,
}

type Record = (u32, u64, u64, u64);
type Warning = (u32, String, String, String, u32, Option<Vec<u8>>);

fn task_records(records: Vec<Record>) -> Vec<TaskRecord> {
    records
        .into_iter()
        .map(|(task, start_us, duration_us, stored_bytes)| TaskRecord {
            task: TaskId(task),
            start_us,
            duration_us,
            stored_bytes,
        })
        .collect()
}

fn task_warnings(warnings: Vec<Warning>) -> Vec<TaskWarning> {
    warnings
        .into_iter()
        .map(
            |(task, category, message, filename, lineno, pickled)| TaskWarning {
                task: TaskId(task),
                category,
                message,
                filename,
                lineno,
                pickled: pickled.map(|bytes| encode(&bytes)),
            },
        )
        .collect()
}

fn encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[pymethods]
impl Invocation {
    #[new]
    fn new(py: Python<'_>, event: &str, invocation_id: String, cold: bool) -> PyResult<Invocation> {
        let session = py
            .detach(|| runtime().block_on(InvocationSession::new(event, invocation_id, cold)))
            .map_err(runtime_error)?;
        Ok(Invocation { session })
    }

    #[getter]
    fn run_id(&self) -> String {
        self.session.run_id().to_owned()
    }

    /// The next thing the handler must do.
    fn step(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let session = &mut self.session;
        let step = py.detach(|| runtime().block_on(session.next_step()));
        Ok(match step {
            HostStep::Run {
                spec,
                tasks,
                inputs,
            } => {
                let loaded = inputs
                    .into_iter()
                    .map(|(task, parts)| Ok((task.0, buffers(py, parts)?)))
                    .collect::<PyResult<Vec<_>>>()?;
                let step = RunBatchStep {
                    batch: spec.batch.0,
                    tasks: ids(&spec.tasks),
                    stored_outputs: ids(&spec.stored_outputs),
                    memory_outputs: ids(&spec.memory_outputs),
                    release_after: spec.release_after.iter().map(|tasks| ids(tasks)).collect(),
                    payload: PyBytes::new(py, &tasks).unbind(),
                    inputs: loaded,
                };
                Py::new(py, step)?.into_any()
            }
            HostStep::Retain { tasks } => {
                Py::new(py, RetainStep { tasks: ids(&tasks) })?.into_any()
            }
            HostStep::Finish => Py::new(py, FinishStep)?.into_any(),
        })
    }

    /// Between two tasks: `True` to go on, `False` to stop (the batch is abandoned; `step`
    /// then ends the invocation). Looks at the store at most once a second.
    fn boundary(&mut self, py: Python<'_>) -> bool {
        if let Some(answer) = self.session.boundary_without_io() {
            return answer;
        }
        let session = &mut self.session;
        py.detach(|| runtime().block_on(session.finish_boundary()))
    }

    /// Stores a value's pickle parts without copying them; returns the bytes written.
    fn put_value(&self, py: Python<'_>, task: u32, parts: Vec<Bound<'_, PyAny>>) -> PyResult<u64> {
        let chunks = chunks(&parts)?;
        let session = &self.session;
        py.detach(|| runtime().block_on(session.put_value(TaskId(task), chunks)))
            .map_err(runtime_error)
    }

    /// Some tasks of the running batch finished: `records` are
    /// `(task, start_us, duration_us, stored_bytes)`, `warnings`
    /// `(task, category, message, filename, lineno, pickled)`. Sent in the background.
    fn progress(&mut self, py: Python<'_>, records: Vec<Record>, warnings: Vec<Warning>) {
        let session = &mut self.session;
        let (records, warnings) = (task_records(records), task_warnings(warnings));
        py.detach(|| runtime().block_on(session.progress(records, warnings)));
    }

    /// Every other task of the batch ran.
    fn tasks_finished(&mut self, records: Vec<Record>, warnings: Vec<Warning>) {
        self.session
            .tasks_finished(task_records(records), task_warnings(warnings));
    }

    /// A task raised; `pickled` is the pickled exception when it could be pickled.
    #[pyo3(signature = (task, type_name, message, traceback, pickled=None))]
    fn task_failed(
        &mut self,
        task: u32,
        type_name: String,
        message: String,
        traceback: String,
        pickled: Option<Vec<u8>>,
    ) {
        self.session.task_failed(TaskError {
            task: TaskId(task),
            type_name,
            message,
            traceback,
            pickled: pickled.map(|bytes| encode(&bytes)),
        });
    }

    /// A task's result cannot be pickled.
    fn result_unpicklable(&mut self, task: u32, message: String) {
        self.session.result_unpicklable(TaskId(task), message);
    }

    /// Something around the tasks failed.
    fn failed(&mut self, message: String) {
        self.session.failed(message);
    }
}
