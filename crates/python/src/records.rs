//! A run's records as Python sees them: columns (lists of equal length) of the batch reports
//! and of the tasks, and the client's own store traffic. Real runs (`ClientRun.records()`)
//! and simulated ones (`SimulatedRun.records()`) give the same shape, so one run report reads
//! both.

use dask_serverless_core::{BatchRecord, StoreTraffic, TaskRecord};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// `batches`, one row per batch report (what the invocation spent on it), `tasks`, one row
/// per task, and `client_store`. Times are µs (since the Unix epoch for a real run, since the
/// client entered `get` for a simulated one); `init_us` and `wait_us` are `None` where unknown.
pub(crate) fn records_dict<'py>(
    py: Python<'py>,
    batches: &[BatchRecord],
    tasks: &[TaskRecord],
    client: &StoreTraffic,
) -> PyResult<Bound<'py, PyDict>> {
    let batch_columns = PyDict::new(py);
    macro_rules! column {
        ($dict:expr, $rows:expr, $name:literal, $value:expr) => {
            $dict.set_item($name, $rows.iter().map($value).collect::<Vec<_>>())?
        };
    }
    column!(batch_columns, batches, "batch", |record| record.batch.0);
    column!(batch_columns, batches, "invocation", |record| record
        .invocation
        .clone());
    column!(batch_columns, batches, "instance", |record| record
        .resources
        .instance
        .clone());
    column!(batch_columns, batches, "cold", |record| record.cold);
    column!(batch_columns, batches, "abandoned", |record| record
        .abandoned);
    column!(batch_columns, batches, "tasks", |record| record.tasks);
    column!(batch_columns, batches, "invoked", |record| record.invoked);
    column!(batch_columns, batches, "became", |record| record
        .became
        .map(|batch| batch.0));
    column!(batch_columns, batches, "loaded_bytes", |record| record
        .loaded_bytes);
    column!(batch_columns, batches, "start_us", |record| record
        .resources
        .start_us);
    column!(batch_columns, batches, "end_us", |record| record
        .resources
        .end_us);
    column!(batch_columns, batches, "cpu_user_us", |record| record
        .resources
        .cpu_user_us);
    column!(batch_columns, batches, "cpu_kernel_us", |record| record
        .resources
        .cpu_kernel_us);
    column!(batch_columns, batches, "peak_memory_bytes", |record| record
        .resources
        .peak_memory_bytes);
    column!(batch_columns, batches, "init_us", |record| record
        .resources
        .init_us);
    column!(batch_columns, batches, "wait_us", |record| record
        .resources
        .wait_us);
    column!(batch_columns, batches, "messages_sent", |record| record
        .resources
        .messages_sent);
    column!(batch_columns, batches, "store_reads", |record| record
        .store
        .reads);
    column!(batch_columns, batches, "store_writes", |record| record
        .store
        .writes);
    column!(batch_columns, batches, "store_deletes", |record| record
        .store
        .deletes);
    column!(batch_columns, batches, "store_fan_ins", |record| record
        .store
        .fan_ins);
    column!(batch_columns, batches, "store_bytes_read", |record| record
        .store
        .bytes_read);
    column!(batch_columns, batches, "store_bytes_written", |record| {
        record.store.bytes_written
    });
    column!(batch_columns, batches, "loaded_us", |record| record
        .resources
        .steps
        .loaded_us);
    column!(batch_columns, batches, "computed_us", |record| record
        .resources
        .steps
        .computed_us);
    column!(batch_columns, batches, "marked_us", |record| record
        .resources
        .steps
        .marked_us);
    column!(batch_columns, batches, "fanned_in_us", |record| record
        .resources
        .steps
        .fanned_in_us);
    column!(batch_columns, batches, "invoked_us", |record| record
        .resources
        .steps
        .invoked_us);
    column!(batch_columns, batches, "values_read", |record| record
        .store
        .values_read
        .iter()
        .map(|(task, _)| task.0)
        .collect::<Vec<_>>());
    let task_columns = PyDict::new(py);
    column!(task_columns, tasks, "task", |record| record.task.0);
    column!(task_columns, tasks, "start_us", |record| record.start_us);
    column!(task_columns, tasks, "duration_us", |record| record
        .duration_us);
    column!(task_columns, tasks, "stored_bytes", |record| record
        .stored_bytes);
    let client_traffic = PyDict::new(py);
    client_traffic.set_item("reads", client.reads)?;
    client_traffic.set_item("writes", client.writes)?;
    client_traffic.set_item("deletes", client.deletes)?;
    client_traffic.set_item("fan_ins", client.fan_ins)?;
    client_traffic.set_item("bytes_read", client.bytes_read)?;
    client_traffic.set_item("bytes_written", client.bytes_written)?;
    let records = PyDict::new(py);
    records.set_item("batches", batch_columns)?;
    records.set_item("tasks", task_columns)?;
    records.set_item("client_store", client_traffic)?;
    Ok(records)
}
