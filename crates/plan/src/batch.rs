//! [`BatchId`] and [`Batch`]: one unit of work for one function invocation.

use std::fmt;

use dask_serverless_graph::TaskId;
use serde::{Deserialize, Serialize};

/// Dense index of a batch in its [`Plan`](crate::Plan), in creation order: a parent always
/// has a lower id than its children.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BatchId(pub u32);

impl BatchId {
    /// The index as a `usize`, for indexing per-batch arrays.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for BatchId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.0)
    }
}

/// Tasks that one function invocation runs in order, and how its values come and go.
///
/// Lists of values are sorted by task id, except `tasks` (execution order) and
/// `release_after` (indexed by position in `tasks`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub id: BatchId,
    /// Execution order: every task comes after its dependencies held by this batch.
    pub tasks: Vec<TaskId>,
    /// Values this batch reads from other batches (all produced by its parents).
    pub inputs: Vec<TaskId>,
    /// Batches this batch reads from; it is released when all of them have finished.
    pub parents: Vec<BatchId>,
    /// Batches that read from this batch.
    pub children: Vec<BatchId>,
    /// Requested outputs of the graph that this batch computes.
    pub sinks: Vec<TaskId>,
    /// Values written to the store once computed: read by a batch other than the preferred
    /// child, or requested by the caller.
    pub stored_outputs: Vec<TaskId>,
    /// Values read only by the preferred child: handed over in memory, never stored.
    pub memory_outputs: Vec<TaskId>,
    /// The child this batch's function becomes: among the children whose only parent is this
    /// batch, the one reading the most values from it (ties: lowest id).
    pub preferred_child: Option<BatchId>,
    /// `release_after[i]`: values no longer needed once `tasks[i]` has run. Every value this
    /// batch produces or reads is released exactly once, except the values the preferred
    /// child reads, which stay in memory for it.
    pub release_after: Vec<Vec<TaskId>>,
}
