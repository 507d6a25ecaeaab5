//! What a run leaves to explain itself: one [`BatchRecord`] per batch an invocation reported
//! (finished or abandoned), and the [`TaskRecord`](crate::TaskRecord)s of the tasks. The
//! client's shell collects them from the reports of a real run; the simulator makes the same
//! from a simulated one, so that one run report reads both.

use dask_serverless_plan::BatchId;

use crate::messages::{AbandonReport, BatchReport, BatchResources, StoreTraffic};

/// What a function reported of one batch it ran: the run report's per-invocation records are
/// made of these.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRecord {
    pub batch: BatchId,
    pub invocation: String,
    pub cold: bool,
    pub tasks: usize,
    pub loaded_bytes: u64,
    /// Children it invoked, and the one it became.
    pub invoked: usize,
    pub became: Option<BatchId>,
    /// It stopped without finishing the batch (another invocation finished it, or the run
    /// ended): no task of it counted.
    pub abandoned: bool,
    /// Its store traffic, with the values it read from the store.
    pub store: StoreTraffic,
    pub resources: BatchResources,
}

impl BatchRecord {
    /// The record of a finished batch.
    pub fn finished(report: &BatchReport) -> BatchRecord {
        BatchRecord {
            batch: report.batch,
            invocation: report.invocation.clone(),
            cold: report.cold,
            tasks: report.tasks.len(),
            loaded_bytes: report.loaded_bytes,
            invoked: report.invoked.len(),
            became: report.became,
            abandoned: false,
            store: report.store.clone(),
            resources: (*report.resources).clone(),
        }
    }

    /// The record of an abandoned batch: work another invocation finished, or nobody needs,
    /// billed all the same.
    pub fn abandoned(report: &AbandonReport) -> BatchRecord {
        BatchRecord {
            batch: report.batch,
            invocation: report.invocation.clone(),
            // A cold start measured its initialization.
            cold: report.resources.init_us.is_some(),
            tasks: 0,
            loaded_bytes: 0,
            invoked: 0,
            became: None,
            abandoned: true,
            store: report.store.clone(),
            resources: (*report.resources).clone(),
        }
    }
}
