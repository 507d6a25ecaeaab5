//! Graph -> Plan: how a computation is cut into batches that functions run.
//!
//! A **batch** is a set of tasks that one function invocation runs in a fixed order, keeping
//! values in memory between them. Batches form a DAG: batch `c` is a *child* of each batch
//! it reads a value from, its *parents*. At run time a function that finishes a batch adds
//! it to each child's fan-in set (idempotently, so a retried parent never counts twice); the
//! parent whose addition completes a child's set releases that child. The function then
//! *becomes* one released child (runs it next in the same process, reusing values in memory)
//! and invokes the others. Leaf batches, those without parents, are invoked by the client.
//!
//! The [`Plan`] answers, for every batch: which tasks in which order
//! ([`Batch::tasks`]), which values it reads from other batches ([`Batch::inputs`]),
//! which of its values must be written to the store ([`Batch::stored_outputs`]) and which
//! are handed in memory to the child it becomes ([`Batch::memory_outputs`]), and when each
//! value can be dropped from memory ([`Batch::release_after`]).
//!
//! Invariants of every plan (checked by the property tests of this crate):
//!
//! * every task belongs to exactly one batch;
//! * batch ids are dense, in creation order, and parents have lower ids than their children,
//!   so the batch graph is acyclic and id order is a valid execution order;
//! * inside a batch each task comes after its dependencies; a dependency held by another
//!   batch is an input of the consumer and a stored or memory output of the producer;
//! * a memory output is read only by its producer's preferred child, whose only parent is the
//!   producer: the function that runs the producer is always the one that becomes that child;
//! * the requested outputs (sinks) are always stored.
//!
//! Planning is pure and deterministic: the same graph and options give the same plan.
//! The module `batching` describes how tasks are grouped, the module `dataflow` how values
//! flow between and inside batches, and `explain` how a plan is shown to people.

mod batch;
mod batching;
mod dataflow;
mod explain;
mod plan;

pub use batch::{Batch, BatchId};
pub use plan::{Plan, PlanOptions, PlanStatistics};
