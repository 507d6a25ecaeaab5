//! [`Plan`]: the batches of one graph, built once and read by the client and the functions.

use std::fmt;

use dask_serverless_graph::{Graph, TaskId};
use serde::{Deserialize, Serialize};

use crate::batch::{Batch, BatchId};
use crate::{batching, dataflow};

/// Knobs of the planner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanOptions {
    /// Number of functions expected to run at once.
    pub parallelism: usize,
    /// Batches aimed at per function: more gives finer load balance, fewer gives less
    /// overhead per task.
    pub batches_per_function: usize,
    /// Upper bound on the tasks of one batch, whatever the graph's size.
    pub max_batch_tasks: usize,
}

impl Default for PlanOptions {
    fn default() -> PlanOptions {
        PlanOptions {
            parallelism: 2,
            batches_per_function: 4,
            max_batch_tasks: 10_000,
        }
    }
}

/// The batches of a graph and how values move between them. See the crate documentation for
/// the model and its invariants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    batches: Vec<Batch>,
    batch_of: Vec<BatchId>,
    leaves: Vec<BatchId>,
    target_batch_tasks: usize,
    cross_batch_edges: usize,
}

impl Plan {
    /// Plans `graph`. Pure and deterministic; linear in tasks plus edges.
    pub fn build(graph: &Graph, options: &PlanOptions) -> Plan {
        let target_batch_tasks = batching::target_batch_tasks(graph.len(), options);
        let batching = batching::batch(graph, target_batch_tasks);
        let (batches, cross_batch_edges) =
            dataflow::finish(graph, &batching.batch_of, batching.tasks, batching.parents);
        let batch_of = batching.batch_of;
        let leaves = batches
            .iter()
            .filter(|batch| batch.parents.is_empty())
            .map(|batch| batch.id)
            .collect();
        Plan {
            batches,
            batch_of,
            leaves,
            target_batch_tasks,
            cross_batch_edges,
        }
    }

    /// All batches, indexed by id: `batches()[i].id == BatchId(i)`. Id order is a valid
    /// execution order.
    pub fn batches(&self) -> &[Batch] {
        &self.batches
    }

    pub fn batch(&self, id: BatchId) -> &Batch {
        &self.batches[id.index()]
    }

    /// The batch that runs `task`.
    pub fn batch_of(&self, task: TaskId) -> BatchId {
        self.batch_of[task.index()]
    }

    /// The number of tasks planned.
    pub fn task_count(&self) -> usize {
        self.batch_of.len()
    }

    /// Whether `id` names a batch of this plan.
    pub fn has_batch(&self, id: BatchId) -> bool {
        id.index() < self.batches.len()
    }

    /// Batches without parents, which the client invokes, in id order.
    pub fn leaves(&self) -> &[BatchId] {
        &self.leaves
    }

    /// A batch its only parent hands values to in memory: that parent's invocation always
    /// becomes it (its fan-in has one member), so it must be uploaded before the parent runs.
    pub fn is_handed_over(&self, id: BatchId) -> bool {
        match self.batch(id).parents.as_slice() {
            [parent] => self.batch(*parent).preferred_child == Some(id),
            _ => false,
        }
    }

    /// The order in which the client uploads batches.
    ///
    /// Each batch that is not handed over heads a group: the chain of batches handed over
    /// from it, last first, then itself — so a batch is uploaded before whoever becomes it
    /// can run. The groups of the leaves come first: each leaf can run as soon as its group is
    /// uploaded, while the client uploads the rest (whose heads wait for the upload in their
    /// fan-in).
    pub fn upload_order(&self) -> Vec<BatchId> {
        let mut order = Vec::with_capacity(self.batches.len());
        let add_group = |order: &mut Vec<BatchId>, head: BatchId| {
            let start = order.len();
            order.push(head);
            let mut current = head;
            while let Some(child) = self.batch(current).preferred_child {
                order.push(child);
                current = child;
            }
            order[start..].reverse();
        };
        for &leaf in &self.leaves {
            add_group(&mut order, leaf);
        }
        for batch in &self.batches {
            if !batch.parents.is_empty() && !self.is_handed_over(batch.id) {
                add_group(&mut order, batch.id);
            }
        }
        order
    }

    /// The size at which the planner closed batches.
    pub fn target_batch_tasks(&self) -> usize {
        self.target_batch_tasks
    }

    pub fn statistics(&self) -> PlanStatistics {
        let mut sizes: Vec<usize> = self.batches.iter().map(|batch| batch.tasks.len()).collect();
        sizes.sort_unstable();
        // Longest chain of batches ending at each batch; parents come first in id order.
        let mut chain = vec![0usize; self.batches.len()];
        for batch in &self.batches {
            chain[batch.id.index()] = 1 + batch
                .parents
                .iter()
                .map(|parent| chain[parent.index()])
                .max()
                .unwrap_or(0);
        }
        PlanStatistics {
            tasks: self.batch_of.len(),
            batches: self.batches.len(),
            leaves: self.leaves.len(),
            target_batch_tasks: self.target_batch_tasks,
            min_batch_tasks: sizes.first().copied().unwrap_or(0),
            median_batch_tasks: sizes.get(sizes.len() / 2).copied().unwrap_or(0),
            max_batch_tasks: sizes.last().copied().unwrap_or(0),
            cross_batch_edges: self.cross_batch_edges,
            stored_values: self
                .batches
                .iter()
                .map(|batch| batch.stored_outputs.len())
                .sum(),
            memory_values: self
                .batches
                .iter()
                .map(|batch| batch.memory_outputs.len())
                .sum(),
            critical_path_batches: chain.iter().copied().max().unwrap_or(0),
        }
    }
}

/// Summary numbers of a [`Plan`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanStatistics {
    pub tasks: usize,
    pub batches: usize,
    pub leaves: usize,
    /// The size at which the planner closed batches.
    pub target_batch_tasks: usize,
    pub min_batch_tasks: usize,
    /// The upper median when the number of batches is even.
    pub median_batch_tasks: usize,
    pub max_batch_tasks: usize,
    /// Dependency edges whose two tasks are in different batches.
    pub cross_batch_edges: usize,
    /// Values written to the store (sinks included).
    pub stored_values: usize,
    /// Values handed in memory to a preferred child.
    pub memory_values: usize,
    /// Batches on the longest parent-to-child chain.
    pub critical_path_batches: usize,
}

impl fmt::Display for PlanStatistics {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{}, {}, {}, {}, {}, {}, critical path {}; tasks per batch {}/{}/{} \
             (min/median/max, target {})",
            counted(self.tasks, "task", "tasks"),
            counted(self.batches, "batch", "batches"),
            counted(self.leaves, "leaf", "leaves"),
            counted(self.stored_values, "stored value", "stored values"),
            counted(self.memory_values, "memory value", "memory values"),
            counted(
                self.cross_batch_edges,
                "cross-batch edge",
                "cross-batch edges"
            ),
            counted(self.critical_path_batches, "batch", "batches"),
            self.min_batch_tasks,
            self.median_batch_tasks,
            self.max_batch_tasks,
            self.target_batch_tasks,
        )
    }
}

/// `count` followed by the singular or the plural noun: "1 leaf", "3 leaves".
pub(crate) fn counted(count: usize, singular: &str, plural: &str) -> String {
    if count == 1 {
        format!("{count} {singular}")
    } else {
        format!("{count} {plural}")
    }
}
