//! [`Plan::explain`]: a plan as people read it.
//!
//! One header line with the totals, then one block per batch in id order:
//!
//! ```text
//! batch 3  (12 tasks, parents [0 1], children [5], becomes 5)
//!     tasks: 'a', 'b', 'c', … 'z'
//!     inputs (2): 'x', 'y'
//!     stored (1): 'z'
//!     in memory (1): 'c'
//!     sinks (1): 'z'
//! ```
//!
//! Key lists longer than four show the first three and the last; empty lists are left out.
//! Huge plans show their first [`MAX_BATCHES_SHOWN`] batches, then how many are left.

use std::fmt::Write;

use dask_serverless_graph::{Graph, TaskId};

use crate::batch::BatchId;
use crate::plan::{Plan, counted};

/// Batches shown in full before the rest are only counted.
const MAX_BATCHES_SHOWN: usize = 50;

impl Plan {
    /// A readable description of the plan: totals, then each batch with its tasks, its
    /// neighbours and what happens to its values. `graph` must be the graph planned.
    pub fn explain(&self, graph: &Graph) -> String {
        let statistics = self.statistics();
        let mut text = String::new();
        let _ = writeln!(
            text,
            "plan: {}, {} (target size {}), {}, {}, {}, {}, critical path {}",
            counted(statistics.tasks, "task", "tasks"),
            counted(statistics.batches, "batch", "batches"),
            statistics.target_batch_tasks,
            counted(statistics.leaves, "leaf", "leaves"),
            counted(statistics.stored_values, "stored value", "stored values"),
            counted(statistics.memory_values, "memory value", "memory values"),
            counted(
                statistics.cross_batch_edges,
                "cross-batch edge",
                "cross-batch edges"
            ),
            counted(statistics.critical_path_batches, "batch", "batches"),
        );
        for batch in self.batches().iter().take(MAX_BATCHES_SHOWN) {
            let _ = write!(
                text,
                "batch {}  ({}, parents {}, children {}",
                batch.id,
                counted(batch.tasks.len(), "task", "tasks"),
                id_list(&batch.parents),
                id_list(&batch.children),
            );
            if let Some(child) = batch.preferred_child {
                let _ = write!(text, ", becomes {child}");
            }
            text.push_str(")\n");
            let _ = writeln!(text, "    tasks: {}", key_list(graph, &batch.tasks));
            for (label, values) in [
                ("inputs", &batch.inputs),
                ("stored", &batch.stored_outputs),
                ("in memory", &batch.memory_outputs),
                ("sinks", &batch.sinks),
            ] {
                if !values.is_empty() {
                    let _ = writeln!(
                        text,
                        "    {label} ({}): {}",
                        values.len(),
                        key_list(graph, values)
                    );
                }
            }
        }
        let hidden = self.batches().len().saturating_sub(MAX_BATCHES_SHOWN);
        if hidden > 0 {
            let _ = writeln!(text, "… {}", counted(hidden, "more batch", "more batches"));
        }
        text
    }
}

/// `[0 1 5]`.
fn id_list(ids: &[BatchId]) -> String {
    let ids: Vec<String> = ids.iter().map(BatchId::to_string).collect();
    format!("[{}]", ids.join(" "))
}

/// `a, b, c, … z`: all keys up to four, else the first three and the last (keys are shown as
/// the caller named them).
fn key_list(graph: &Graph, tasks: &[TaskId]) -> String {
    let quoted = |task: &TaskId| graph.key(*task).to_owned();
    match tasks {
        [first, second, third, .., last] if tasks.len() > 4 => format!(
            "{}, {}, {}, … {}",
            quoted(first),
            quoted(second),
            quoted(third),
            quoted(last)
        ),
        _ => tasks.iter().map(quoted).collect::<Vec<_>>().join(", "),
    }
}
