//! The planner, seen from Python.

use std::sync::Arc;

use dask_serverless_graph::{Graph, TaskId};
use dask_serverless_plan::{BatchId, PlanOptions};
use pyo3::exceptions::PyIndexError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::error::{configuration_error, graph_error};

/// A validated graph and its plan.
#[pyclass(frozen, module = "dask_serverless._core")]
pub(crate) struct Plan {
    pub(crate) graph: Arc<Graph>,
    pub(crate) plan: Arc<dask_serverless_plan::Plan>,
}

fn ids(tasks: &[TaskId]) -> Vec<u32> {
    tasks.iter().map(|task| task.0).collect()
}

impl Plan {
    fn batch(&self, batch: u32) -> PyResult<&dask_serverless_plan::Batch> {
        self.plan
            .batches()
            .get(batch as usize)
            .ok_or_else(|| PyIndexError::new_err(format!("no batch {batch}")))
    }

    /// A task's key as the client wrote it (its `repr`), or its number if out of range.
    pub(crate) fn key_name(&self, task: TaskId) -> String {
        if task.index() < self.graph.len() {
            self.graph.key(task).to_owned()
        } else {
            format!("#{}", task.0)
        }
    }

    /// `batch 3 (40 tasks, ('x', 0) to ('y', 3))`, for messages.
    pub(crate) fn describe_batch(&self, batch: BatchId) -> String {
        let Some(planned) = self.plan.batches().get(batch.index()) else {
            return format!("batch {}", batch.0);
        };
        match planned.tasks.as_slice() {
            [] => format!("batch {}", batch.0),
            [only] => format!("batch {} (1 task: {})", batch.0, self.key_name(*only)),
            [first, .., last] => format!(
                "batch {} ({} tasks, {} to {})",
                batch.0,
                planned.tasks.len(),
                self.key_name(*first),
                self.key_name(*last)
            ),
        }
    }
}

/// Planner options checked: every count at least 1.
fn plan_options(
    parallelism: usize,
    batches_per_function: usize,
    max_batch_tasks: usize,
) -> PyResult<PlanOptions> {
    for (name, value) in [
        ("parallelism", parallelism),
        ("batches_per_function", batches_per_function),
        ("max_batch_tasks", max_batch_tasks),
    ] {
        if value == 0 {
            return Err(configuration_error(format!(
                "{name} must be at least 1, not 0"
            )));
        }
    }
    Ok(PlanOptions {
        parallelism,
        batches_per_function,
        max_batch_tasks,
    })
}

#[pymethods]
impl Plan {
    #[new]
    #[allow(clippy::too_many_arguments)] // mirrors the Python keyword arguments
    #[pyo3(signature = (keys, dependencies, missing, outputs, parallelism=2, batches_per_function=4, max_batch_tasks=10_000))]
    fn new(
        py: Python<'_>,
        keys: Vec<String>,
        dependencies: Vec<Vec<u32>>,
        missing: Vec<String>,
        outputs: Vec<u32>,
        parallelism: usize,
        batches_per_function: usize,
        max_batch_tasks: usize,
    ) -> PyResult<Plan> {
        let options = plan_options(parallelism, batches_per_function, max_batch_tasks)?;
        py.detach(|| {
            let graph = Graph::new(keys, dependencies, missing, outputs).map_err(graph_error)?;
            let plan = dask_serverless_plan::Plan::build(&graph, &options);
            Ok(Plan {
                graph: Arc::new(graph),
                plan: Arc::new(plan),
            })
        })
    }

    /// A readable account of the plan.
    fn explain(&self) -> String {
        self.plan.explain(&self.graph)
    }

    fn batch_count(&self) -> usize {
        self.plan.batches().len()
    }

    fn task_count(&self) -> usize {
        self.graph.len()
    }

    /// Batches in the order the client uploads them (see `Plan::upload_order`).
    fn upload_order(&self) -> Vec<u32> {
        self.plan
            .upload_order()
            .iter()
            .map(|batch| batch.0)
            .collect()
    }

    fn leaves(&self) -> Vec<u32> {
        self.plan.leaves().iter().map(|batch| batch.0).collect()
    }

    /// The batch's tasks in execution order.
    fn batch_tasks(&self, batch: u32) -> PyResult<Vec<u32>> {
        Ok(ids(&self.batch(batch)?.tasks))
    }

    /// Values the batch reads from other batches.
    fn batch_inputs(&self, batch: u32) -> PyResult<Vec<u32>> {
        Ok(ids(&self.batch(batch)?.inputs))
    }

    fn batch_of(&self, task: u32) -> PyResult<u32> {
        if task as usize >= self.graph.len() {
            return Err(PyIndexError::new_err(format!("no task {task}")));
        }
        Ok(self.plan.batch_of(TaskId(task)).0)
    }

    fn batch_parents(&self, batch: u32) -> PyResult<Vec<u32>> {
        let parents = &self.batch(batch)?.parents;
        Ok(parents.iter().map(|parent: &BatchId| parent.0).collect())
    }

    /// Totals of the graph and the plan.
    fn statistics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let graph = self.graph.statistics();
        let plan = self.plan.statistics();
        let result = PyDict::new(py);
        result.set_item("graph", graph.to_string())?;
        result.set_item("plan", plan.to_string())?;
        result.set_item("tasks", self.graph.len())?;
        result.set_item("batches", self.plan.batches().len())?;
        result.set_item("leaves", self.plan.leaves().len())?;
        Ok(result)
    }
}

/// Plans a graph given as dependency lists and runs the whole protocol on it in this process
/// with tasks that do nothing (see `dask_serverless_runtime::zero_work`): the engine's own
/// cost. Returns `tasks`, `batches`, `invocations`, `store_operations`, `plan_seconds`,
/// `protocol_seconds` and `microseconds_per_task`.
#[pyfunction]
#[pyo3(signature = (dependencies, outputs, parallelism=2, batches_per_function=4, max_batch_tasks=10_000))]
pub(crate) fn zero_work<'py>(
    py: Python<'py>,
    dependencies: Vec<Vec<u32>>,
    outputs: Vec<u32>,
    parallelism: usize,
    batches_per_function: usize,
    max_batch_tasks: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let options = plan_options(parallelism, batches_per_function, max_batch_tasks)?;
    let cost = py.detach(|| {
        let keys = (0..dependencies.len())
            .map(|task| task.to_string())
            .collect();
        let graph = Graph::new(keys, dependencies, Vec::new(), outputs).map_err(graph_error)?;
        crate::runtime()
            .block_on(dask_serverless_runtime::zero_work(&graph, &options))
            .map_err(crate::error::runtime_error)
    })?;
    let dict = PyDict::new(py);
    dict.set_item("tasks", cost.tasks)?;
    dict.set_item("batches", cost.batches)?;
    dict.set_item("invocations", cost.invocations)?;
    dict.set_item("store_operations", cost.store_operations)?;
    dict.set_item("plan_seconds", cost.plan_seconds)?;
    dict.set_item("protocol_seconds", cost.protocol_seconds)?;
    dict.set_item("microseconds_per_task", cost.microseconds_per_task())?;
    Ok(dict)
}
