//! The task graph of one computation, in a compact form, with no IO.
//!
//! A [`Graph`] is what the Python front hands over after reading a Dask graph: one entry per
//! task with its display key and the tasks it depends on, plus the tasks the caller wants
//! back. Tasks are numbered densely by [`TaskId`]; Dask keys stay strings, used only for
//! messages and explanations.
//!
//! Invariants of every `Graph` value (checked once by [`Graph::new`], relied upon everywhere
//! else):
//!
//! * every dependency names a task of the graph (no missing keys, no index out of range);
//! * the dependency relation is acyclic (a task never depends on itself, directly or not);
//! * each task's dependencies are deduplicated and keep the order the caller gave;
//! * outputs are deduplicated and keep the order of first occurrence.
//!
//! Storage is compressed sparse rows: one array of keys, one array of dependency targets
//! sliced by offsets, and the same for the reverse relation (dependents), so a graph of a
//! million tasks is a handful of allocations. All algorithms are iterative and linear in
//! tasks plus edges: graphs reach a million tasks and chains a hundred thousand deep.

mod error;
mod graph;
mod statistics;
#[cfg(any(test, feature = "proptest"))]
pub mod strategies;

pub use error::GraphError;
pub use graph::{Graph, TaskId};
pub use statistics::GraphStatistics;

#[cfg(test)]
mod tests;
