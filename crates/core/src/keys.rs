//! The store key layout of a run: the one place that names where things live.
//!
//! Every object of a run lives under its run prefix, so that deleting `"{run}/"` deletes the
//! whole run (the store's `delete_prefix` removes objects and fan-in sets alike):
//!
//! ```text
//! {run}/batches/{batch}    a batch's spec and pickled tasks (written by the client)
//! {run}/values/{task}      a task's value read by another invocation or by the client
//! {run}/fan-in/{batch}     the fan-in set that releases a batch
//! {run}/claims/{batch}/{attempt}
//!                          who runs an invocation that starts with this batch, at this attempt
//!                          (the first of duplicate deliveries to write it)
//! {run}/done/{batch}       the batch's outputs are stored (written by the first to finish it)
//! {run}/lease              renewed by the client while it is alive
//! ```
//!
//! Deleting `"{run}/batches/"` keeps batches that have not started from ever starting: an
//! invocation that finds its batch gone knows the run is over.

use dask_serverless_graph::TaskId;
use dask_serverless_plan::BatchId;

/// The prefix of everything a run stores.
pub fn run_prefix(run_id: &str) -> String {
    format!("{run_id}/")
}

/// The prefix of the run's batches (specs and pickled tasks).
pub fn batches_prefix(run_id: &str) -> String {
    format!("{run_id}/batches/")
}

/// A batch's spec and pickled tasks.
pub fn batch_key(run_id: &str, batch: BatchId) -> String {
    format!("{run_id}/batches/{}", batch.0)
}

/// A task's value.
pub fn value_key(run_id: &str, task: TaskId) -> String {
    format!("{run_id}/values/{}", task.0)
}

/// The fan-in set that releases a batch.
pub fn fan_in_key(run_id: &str, batch: BatchId) -> String {
    format!("{run_id}/fan-in/{}", batch.0)
}

/// The claim of the invocation that starts with `batch` at `attempt`: the first of its
/// deliveries to write it runs it, the others stop.
pub fn claim_key(run_id: &str, batch: BatchId, attempt: u32) -> String {
    format!("{run_id}/claims/{}/{attempt}", batch.0)
}

/// Written when a batch's outputs are stored: whoever runs it too stops at its next task.
pub fn done_key(run_id: &str, batch: BatchId) -> String {
    format!("{run_id}/done/{}", batch.0)
}

/// The run's lease, renewed by the client: when it stops changing, the client is gone.
pub fn lease_key(run_id: &str) -> String {
    format!("{run_id}/lease")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_run_is_under_its_prefix() {
        let run = "run-1";
        let prefix = run_prefix(run);
        for key in [
            batch_key(run, BatchId(3)),
            value_key(run, TaskId(7)),
            fan_in_key(run, BatchId(3)),
            claim_key(run, BatchId(3), 2),
            done_key(run, BatchId(3)),
            lease_key(run),
        ] {
            assert!(key.starts_with(&prefix), "{key}");
        }
        assert!(batch_key(run, BatchId(3)).starts_with(&batches_prefix(run)));
        assert_eq!(fan_in_key(run, BatchId(3)), "run-1/fan-in/3");
        assert_eq!(claim_key(run, BatchId(3), 2), "run-1/claims/3/2");
        assert!(!claim_key(run, BatchId(3), 1).starts_with(&batches_prefix(run)));
    }
}
