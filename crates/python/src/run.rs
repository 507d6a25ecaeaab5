//! The client's run, seen from Python: upload, start, poll, fetch, drain, clean up.
//!
//! [`ClientRun::poll`] returns typed events ([`TasksFinished`], [`RunCompleted`]) and raises
//! the run's failure as the exception the caller sees (see `error::run_failure`).

use std::time::Duration;

use bytes::Bytes;
use dask_serverless_core::{RecoveryPolicy, RunContext, TaskWarning};
use dask_serverless_graph::TaskId;
use dask_serverless_plan::BatchId;
use dask_serverless_runtime::{RunEvent, RunStatistics as NativeStatistics};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::buffer::{Buffer, buffers};
use crate::error::{configuration_error, run_failure, runtime_error};
use crate::plan::Plan;
use crate::records::records_dict;
use crate::{block_on_interruptible, runtime};

/// A warning a task raised, to re-emit in the caller.
#[pyclass(frozen, module = "dask_serverless._core")]
pub(crate) struct TaskWarningRecord {
    #[pyo3(get)]
    task: u32,
    /// Qualified name of the category (`builtins.RuntimeWarning`).
    #[pyo3(get)]
    category: String,
    #[pyo3(get)]
    message: String,
    #[pyo3(get)]
    filename: String,
    #[pyo3(get)]
    lineno: u32,
    /// The pickled warning, when it could be pickled.
    pickled: Option<Vec<u8>>,
}

#[pymethods]
impl TaskWarningRecord {
    #[getter]
    fn pickled<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.pickled.as_deref().map(|bytes| PyBytes::new(py, bytes))
    }
}

impl TaskWarningRecord {
    fn from_native(warning: TaskWarning) -> TaskWarningRecord {
        use base64::Engine;
        TaskWarningRecord {
            task: warning.task.0,
            category: warning.category,
            message: warning.message,
            filename: warning.filename,
            lineno: warning.lineno,
            pickled: warning
                .pickled
                .and_then(|text| base64::engine::general_purpose::STANDARD.decode(text).ok()),
        }
    }
}

/// Tasks that ran, each reported once, in columns; and the warnings they raised.
#[pyclass(frozen, module = "dask_serverless._core")]
pub(crate) struct TasksFinished {
    #[pyo3(get)]
    tasks: Vec<u32>,
    /// Microseconds since the Unix epoch, on the function's clock.
    #[pyo3(get)]
    start_us: Vec<u64>,
    #[pyo3(get)]
    duration_us: Vec<u64>,
    /// Bytes written to the store for each value (0 when kept in memory).
    #[pyo3(get)]
    stored_bytes: Vec<u64>,
    #[pyo3(get)]
    warnings: Vec<Py<TaskWarningRecord>>,
}

/// Every batch finished: the outputs can be fetched.
#[pyclass(frozen, module = "dask_serverless._core")]
pub(crate) struct RunCompleted;

/// What one compute cost, counted by the client from its own work and the batches' reports.
#[pyclass(frozen, module = "dask_serverless._core")]
pub(crate) struct RunStatistics {
    /// Function invocations (a batch an invocation became costs none).
    #[pyo3(get)]
    invocations: u64,
    #[pyo3(get)]
    batches_finished: u64,
    /// Store operations of the client and of every function.
    #[pyo3(get)]
    store_operations: u64,
    #[pyo3(get)]
    store_bytes_written: u64,
    #[pyo3(get)]
    store_bytes_read: u64,
    /// Bytes of the batches' specs and pickled tasks.
    #[pyo3(get)]
    task_bytes: u64,
    /// Bytes of values written by functions.
    #[pyo3(get)]
    value_bytes_written: u64,
    /// Bytes of distinct values read by another invocation or by the client.
    #[pyo3(get)]
    boundary_bytes: u64,
    /// Lost work redone: invocations started again after a function died or vanished.
    #[pyo3(get)]
    recoveries: u64,
    /// Backups of stragglers: batches invoked again while their first function still ran.
    #[pyo3(get)]
    backups: u64,
    /// Receives from the result channel (requests to the queue).
    #[pyo3(get)]
    channel_receives: u64,
    /// Events the platform refused for lack of concurrency, invoked again by the client.
    #[pyo3(get)]
    throttled_events: u64,
}

#[pymethods]
impl RunStatistics {
    /// The statistics as a dict of their names.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        dict.set_item("invocations", self.invocations)?;
        dict.set_item("batches_finished", self.batches_finished)?;
        dict.set_item("store_operations", self.store_operations)?;
        dict.set_item("store_bytes_written", self.store_bytes_written)?;
        dict.set_item("store_bytes_read", self.store_bytes_read)?;
        dict.set_item("task_bytes", self.task_bytes)?;
        dict.set_item("value_bytes_written", self.value_bytes_written)?;
        dict.set_item("boundary_bytes", self.boundary_bytes)?;
        dict.set_item("recoveries", self.recoveries)?;
        dict.set_item("backups", self.backups)?;
        dict.set_item("channel_receives", self.channel_receives)?;
        dict.set_item("throttled_events", self.throttled_events)?;
        Ok(dict)
    }

    fn __repr__(&self) -> String {
        format!(
            "RunStatistics(invocations={}, store_operations={}, store_bytes_written={}, \
             store_bytes_read={}, boundary_bytes={}, recoveries={}, backups={})",
            self.invocations,
            self.store_operations,
            self.store_bytes_written,
            self.store_bytes_read,
            self.boundary_bytes,
            self.recoveries,
            self.backups
        )
    }
}

impl From<NativeStatistics> for RunStatistics {
    fn from(statistics: NativeStatistics) -> RunStatistics {
        RunStatistics {
            invocations: statistics.invocations,
            batches_finished: statistics.batches_finished,
            store_operations: statistics.store_operations,
            store_bytes_written: statistics.store_bytes_written,
            store_bytes_read: statistics.store_bytes_read,
            task_bytes: statistics.task_bytes,
            value_bytes_written: statistics.value_bytes_written,
            boundary_bytes: statistics.boundary_bytes,
            recoveries: statistics.recoveries,
            backups: statistics.backups,
            channel_receives: statistics.channel_receives,
            throttled_events: statistics.throttled_events,
        }
    }
}

#[pyclass(module = "dask_serverless._core")]
pub(crate) struct ClientRun {
    inner: dask_serverless_runtime::ClientRun,
    plan: Py<Plan>,
    function_timeout_s: f64,
}

/// A duration in seconds from Python: finite and not negative.
fn seconds(name: &str, value: f64) -> PyResult<Duration> {
    if value.is_finite() && value >= 0.0 {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(configuration_error(format!(
            "{name} must be a finite number of seconds, at least 0, not {value}"
        )))
    }
}

#[pymethods]
impl ClientRun {
    /// A run of `plan` in the batch described by `context` (a `RunContext` as JSON).
    /// `function_timeout_s` is the function's timeout; the run is lost after
    /// `silence_limit_s` without news. A batch whose task raised runs again up to
    /// `task_retries` times (Dask's `retries`); lost functions are redone within the default
    /// budgets, and a straggler gets a backup unless the platform's `concurrency_limit`
    /// functions already run.
    #[new]
    #[pyo3(signature = (context, plan, function_timeout_s, silence_limit_s, task_retries=0, concurrency_limit=None))]
    fn new(
        py: Python<'_>,
        context: &str,
        plan: Py<Plan>,
        function_timeout_s: f64,
        silence_limit_s: f64,
        task_retries: u32,
        concurrency_limit: Option<usize>,
    ) -> PyResult<ClientRun> {
        let context: RunContext = serde_json::from_str(context)
            .map_err(|error| configuration_error(format!("invalid run context: {error}")))?;
        seconds("function_timeout_s", function_timeout_s)?;
        let silence_limit = seconds("silence_limit_s", silence_limit_s)?;
        let native_plan = plan.get().plan.clone();
        let inner = py
            .detach(|| {
                runtime().block_on(dask_serverless_runtime::ClientRun::new(
                    context,
                    native_plan,
                    silence_limit,
                ))
            })
            .map_err(runtime_error)?
            .with_recovery(RecoveryPolicy {
                task_retries,
                ..RecoveryPolicy::default()
            })
            .with_concurrency_limit(concurrency_limit);
        Ok(ClientRun {
            inner,
            plan,
            function_timeout_s,
        })
    }

    #[getter]
    fn run_id(&self) -> String {
        self.inner.run_id().to_owned()
    }

    /// Stores a batch's pickled tasks beside its spec.
    fn put_batch(&mut self, py: Python<'_>, batch: u32, tasks: Vec<u8>) -> PyResult<()> {
        let inner = &mut self.inner;
        block_on_interruptible(py, inner.put_batch(BatchId(batch), Bytes::from(tasks)))?
            .map_err(runtime_error)
    }

    /// Starts the run; returns the first events.
    fn start(&mut self, py: Python<'_>) -> PyResult<Vec<Py<PyAny>>> {
        let inner = &mut self.inner;
        let events = block_on_interruptible(py, inner.start())?.map_err(runtime_error)?;
        self.events(py, events)
    }

    /// Waits up to `timeout_s` for news; returns `TasksFinished` and `RunCompleted` events,
    /// or raises the run's failure.
    fn poll(&mut self, py: Python<'_>, timeout_s: f64) -> PyResult<Vec<Py<PyAny>>> {
        let wait = seconds("timeout_s", timeout_s)?;
        let inner = &mut self.inner;
        let events = block_on_interruptible(py, inner.poll(wait))?.map_err(runtime_error)?;
        self.events(py, events)
    }

    /// A value's pickle parts (zero-copy, writable buffers); only outputs can be fetched.
    fn fetch(&mut self, py: Python<'_>, task: u32) -> PyResult<Vec<Py<Buffer>>> {
        let inner = &mut self.inner;
        let parts =
            block_on_interruptible(py, inner.fetch(TaskId(task)))?.map_err(runtime_error)?;
        buffers(py, parts)
    }

    /// After a failure: stops batches from starting and waits up to `timeout_s` for running
    /// ones to end; True when nothing of the run runs any more.
    fn drain(&mut self, py: Python<'_>, timeout_s: f64) -> PyResult<bool> {
        let wait = seconds("timeout_s", timeout_s)?;
        let inner = &mut self.inner;
        py.detach(|| runtime().block_on(inner.drain(wait)))
            .map_err(runtime_error)
    }

    /// Deletes every object of the run.
    fn cleanup(&mut self, py: Python<'_>) -> PyResult<u64> {
        let inner = &mut self.inner;
        py.detach(|| runtime().block_on(inner.cleanup()))
            .map_err(runtime_error)
    }

    /// What the run cost so far.
    fn statistics(&self) -> RunStatistics {
        self.inner.statistics().into()
    }

    /// What the functions reported so far, as columns (lists of equal length): `batches`, one
    /// row per batch report (what the invocation spent on it), and `tasks`, one row per task.
    /// Times are µs since the Unix epoch on the function's clock; `init_us` and `wait_us` are
    /// `None` where unknown.
    fn records<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (batches, tasks, client) = self.inner.records();
        records_dict(py, batches, tasks, client)
    }
}

/// The prefix of everything a run stores (see `dask_serverless_core::keys`).
#[pyfunction]
pub(crate) fn run_prefix(run_id: &str) -> String {
    dask_serverless_core::keys::run_prefix(run_id)
}

/// The chaos setting of a cluster's `run`-th compute: `spec` with a seed derived from `seed`
/// and `run`, so that each compute draws its own faults and a cluster's sequence of computes
/// replays from its seed. A bad spec raises `ValueError` with a one-line message.
#[pyfunction]
pub(crate) fn chaos_setting(spec: &str, seed: u64, run: u64) -> PyResult<String> {
    let spec: dask_serverless_platform::ChaosSpec =
        spec.parse()
            .map_err(|error: dask_serverless_platform::ChaosSpecError| {
                pyo3::exceptions::PyValueError::new_err(error.to_string())
            })?;
    let cluster = dask_serverless_platform::Chaos::new(spec.clone(), seed);
    let run_seed = (cluster.draw(&["run", &run.to_string()]) * (1u64 << 53) as f64) as u64;
    Ok(dask_serverless_platform::Chaos::new(spec, run_seed).setting())
}

impl ClientRun {
    fn events(&self, py: Python<'_>, events: Vec<RunEvent>) -> PyResult<Vec<Py<PyAny>>> {
        let mut converted = Vec::with_capacity(events.len());
        for event in events {
            match event {
                RunEvent::TasksFinished { records, warnings } => {
                    let mut finished = TasksFinished {
                        tasks: Vec::with_capacity(records.len()),
                        start_us: Vec::with_capacity(records.len()),
                        duration_us: Vec::with_capacity(records.len()),
                        stored_bytes: Vec::with_capacity(records.len()),
                        warnings: Vec::with_capacity(warnings.len()),
                    };
                    for record in records {
                        finished.tasks.push(record.task.0);
                        finished.start_us.push(record.start_us);
                        finished.duration_us.push(record.duration_us);
                        finished.stored_bytes.push(record.stored_bytes);
                    }
                    for warning in warnings {
                        finished
                            .warnings
                            .push(Py::new(py, TaskWarningRecord::from_native(warning))?);
                    }
                    converted.push(Py::new(py, finished)?.into_any());
                }
                RunEvent::Completed => converted.push(Py::new(py, RunCompleted)?.into_any()),
                RunEvent::Failed(failure) => {
                    return Err(run_failure(
                        py,
                        self.plan.get(),
                        self.function_timeout_s,
                        failure,
                    ));
                }
            }
        }
        Ok(converted)
    }
}
