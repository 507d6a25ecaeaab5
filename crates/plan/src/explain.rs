//! [`Plan::explain`]: a plan as people read it.
//!
//! One header line with the totals, then one block per cluster in id order:
//!
//! ```text
//! cluster 3  (12 tasks, parents [0 1], children [5], becomes 5)
//!     tasks: 'a', 'b', 'c', … 'z'
//!     inputs (2): 'x', 'y'
//!     stored (1): 'z'
//!     in memory (1): 'c'
//!     sinks (1): 'z'
//! ```
//!
//! Key lists longer than four show the first three and the last; empty lists are left out.
//! Huge plans show their first [`MAX_CLUSTERS_SHOWN`] clusters, then how many are left.

use std::fmt::Write;

use dask_serverless_graph::{Graph, TaskId};

use crate::cluster::ClusterId;
use crate::plan::{Plan, counted};

/// Clusters shown in full before the rest are only counted.
const MAX_CLUSTERS_SHOWN: usize = 50;

impl Plan {
    /// A readable description of the plan: totals, then each cluster with its tasks, its
    /// neighbours and what happens to its values. `graph` must be the graph planned.
    pub fn explain(&self, graph: &Graph) -> String {
        let statistics = self.statistics();
        let mut text = String::new();
        let _ = writeln!(
            text,
            "plan: {}, {} (target size {}), {}, {}, {}, {}, critical path {}",
            counted(statistics.tasks, "task", "tasks"),
            counted(statistics.clusters, "cluster", "clusters"),
            statistics.target_cluster_tasks,
            counted(statistics.leaves, "leaf", "leaves"),
            counted(statistics.stored_values, "stored value", "stored values"),
            counted(statistics.memory_values, "memory value", "memory values"),
            counted(
                statistics.cross_cluster_edges,
                "cross-cluster edge",
                "cross-cluster edges"
            ),
            counted(statistics.critical_path_clusters, "cluster", "clusters"),
        );
        for cluster in self.clusters().iter().take(MAX_CLUSTERS_SHOWN) {
            let _ = write!(
                text,
                "cluster {}  ({}, parents {}, children {}",
                cluster.id,
                counted(cluster.tasks.len(), "task", "tasks"),
                id_list(&cluster.parents),
                id_list(&cluster.children),
            );
            if let Some(child) = cluster.preferred_child {
                let _ = write!(text, ", becomes {child}");
            }
            text.push_str(")\n");
            let _ = writeln!(text, "    tasks: {}", key_list(graph, &cluster.tasks));
            for (label, values) in [
                ("inputs", &cluster.inputs),
                ("stored", &cluster.stored_outputs),
                ("in memory", &cluster.memory_outputs),
                ("sinks", &cluster.sinks),
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
        let hidden = self.clusters().len().saturating_sub(MAX_CLUSTERS_SHOWN);
        if hidden > 0 {
            let _ = writeln!(
                text,
                "… {}",
                counted(hidden, "more cluster", "more clusters")
            );
        }
        text
    }
}

/// `[0 1 5]`.
fn id_list(ids: &[ClusterId]) -> String {
    let ids: Vec<String> = ids.iter().map(ClusterId::to_string).collect();
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
