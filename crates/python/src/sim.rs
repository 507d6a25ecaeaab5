//! The simulator, seen from Python: `simulate` runs a plan on a named (or given) platform
//! model and returns a [`SimulatedRun`], whose records have the shape of a real run's.

use dask_serverless_chaos::Chaos;
use dask_serverless_sim::{
    DEFAULT_PICKLED_BYTES, PARAMETER_SETS, PlatformParameters, SimulationOptions, TaskCosts,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::plan::Plan;
use crate::records::records_dict;

/// A simulated run (see `dask_serverless.simulate`).
#[pyclass(module = "dask_serverless._core")]
pub(crate) struct SimulatedRun {
    inner: dask_serverless_sim::SimulatedRun,
}

#[pymethods]
impl SimulatedRun {
    /// The records, as `ClientRun.records()` gives a real run's.
    fn records<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let run = &self.inner;
        records_dict(
            py,
            &run.batch_records,
            &run.task_records,
            &run.client_traffic,
        )
    }

    /// The run's figures: its phases in seconds, what it made and what only a simulation
    /// knows (critical path, peak concurrency, the events it took).
    fn summary<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let run = &self.inner;
        let seconds = |micros: u64| micros as f64 / 1e6;
        let summary = PyDict::new(py);
        summary.set_item("succeeded", run.completed)?;
        summary.set_item("failure", run.failure.clone())?;
        summary.set_item("ingest_seconds", seconds(run.graph_us))?;
        summary.set_item("upload_seconds", seconds(run.upload_us))?;
        summary.set_item("run_seconds", seconds(run.run_us))?;
        summary.set_item("fetch_seconds", seconds(run.fetch_us))?;
        summary.set_item("total_seconds", seconds(run.total_us))?;
        summary.set_item("invocations", run.invocations)?;
        summary.set_item("cold_starts", run.cold_starts)?;
        summary.set_item("recoveries", run.recoveries)?;
        summary.set_item("backups", run.backups)?;
        summary.set_item("throttled_events", run.throttled)?;
        summary.set_item("peak_concurrency", run.peak_concurrency)?;
        summary.set_item("channel_receives", run.channel_receives)?;
        summary.set_item(
            "critical_path",
            run.critical_path
                .iter()
                .map(|batch| batch.0)
                .collect::<Vec<_>>(),
        )?;
        summary.set_item("kills", run.kills)?;
        summary.set_item("duplicates", run.duplicates)?;
        summary.set_item("refused_invocations", run.refused_invocations)?;
        summary.set_item("simulation_events", run.events)?;
        let mut operations = run.client_traffic.operations;
        let mut written = run.client_traffic.bytes_written;
        let mut read = run.client_traffic.bytes_read;
        for record in &run.batch_records {
            operations += record.store.operations;
            written += record.store.bytes_written;
            read += record.store.bytes_read;
        }
        summary.set_item("store_operations", operations)?;
        summary.set_item("store_bytes_written", written)?;
        summary.set_item("store_bytes_read", read)?;
        summary.set_item(
            "batches_finished",
            run.batch_records
                .iter()
                .filter(|record| !record.abandoned)
                .count(),
        )?;
        Ok(summary)
    }
}

/// The parameters of a named platform model, as JSON (`lambda`, `lambda-2020`, `local`).
#[pyfunction]
pub(crate) fn simulator_parameters(name: &str) -> PyResult<String> {
    let parameters = PlatformParameters::named(name).ok_or_else(|| {
        PyValueError::new_err(format!(
            "no platform model named {name:?}: the models are {}",
            PARAMETER_SETS.join(", ")
        ))
    })?;
    Ok(serde_json::to_string(&parameters).expect("parameters serialize"))
}

/// Simulates a run of `plan` with each task's duration (µs on one vCPU), output bytes and
/// pickled bytes (`None`: a default), on the platform model `parameters` (JSON).
#[pyfunction]
#[pyo3(signature = (
    plan, duration_us, output_bytes, parameters, *, pickled_bytes = None, memory_mb = 2048.0,
    max_concurrency = None, seed = 0, chaos = None, timeout_s = 300.0, warm_instances = 0
))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn simulate(
    py: Python<'_>,
    plan: &Plan,
    duration_us: Vec<f64>,
    output_bytes: Vec<u64>,
    parameters: &str,
    pickled_bytes: Option<Vec<u64>>,
    memory_mb: f64,
    max_concurrency: Option<u32>,
    seed: u64,
    chaos: Option<&str>,
    timeout_s: f64,
    warm_instances: u32,
) -> PyResult<SimulatedRun> {
    let parameters: PlatformParameters = serde_json::from_str(parameters).map_err(|error| {
        PyValueError::new_err(format!(
            "the platform model's parameters are not valid: {error}"
        ))
    })?;
    let faults = match chaos {
        Some(setting) => Chaos::parse(setting)
            .map_err(|error| PyValueError::new_err(error.to_string()))?
            .spec()
            .clone(),
        None => Default::default(),
    };
    if !(memory_mb.is_finite() && memory_mb >= 128.0) {
        return Err(PyValueError::new_err(format!(
            "memory_mb must be at least 128, not {memory_mb}"
        )));
    }
    if !(timeout_s.is_finite() && timeout_s > 0.0) {
        return Err(PyValueError::new_err(format!(
            "timeout_s must be positive, not {timeout_s}"
        )));
    }
    let tasks = duration_us.len();
    let costs = TaskCosts {
        duration_us,
        output_bytes,
        pickled_bytes: pickled_bytes.unwrap_or_else(|| vec![DEFAULT_PICKLED_BYTES; tasks]),
    };
    let options = SimulationOptions {
        memory_mb,
        max_concurrency,
        seed,
        faults,
        timeout_us: (timeout_s * 1e6) as u64,
        warm_instances,
        ..SimulationOptions::default()
    };
    let plan = plan.plan.clone();
    let run = py
        .detach(|| dask_serverless_sim::simulate(&plan, &costs, &parameters, &options))
        .map_err(|error| PyValueError::new_err(error.to_string()))?;
    Ok(SimulatedRun { inner: run })
}
