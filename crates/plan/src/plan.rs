//! [`Plan`]: the clusters of one graph, built once and read by the client and the functions.

use std::fmt;

use dask_serverless_graph::{Graph, TaskId};
use serde::{Deserialize, Serialize};

use crate::cluster::{Cluster, ClusterId};
use crate::{clustering, dataflow};

/// Knobs of the planner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanOptions {
    /// Number of functions expected to run at once.
    pub parallelism: usize,
    /// Clusters aimed at per function: more gives finer load balance, fewer gives less
    /// overhead per task.
    pub clusters_per_worker: usize,
    /// Upper bound on the tasks of one cluster, whatever the graph's size.
    pub max_cluster_tasks: usize,
}

impl Default for PlanOptions {
    fn default() -> PlanOptions {
        PlanOptions {
            parallelism: 2,
            clusters_per_worker: 4,
            max_cluster_tasks: 10_000,
        }
    }
}

/// The clusters of a graph and how values move between them. See the crate documentation for
/// the model and its invariants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    clusters: Vec<Cluster>,
    cluster_of: Vec<ClusterId>,
    leaves: Vec<ClusterId>,
    target_cluster_tasks: usize,
    cross_cluster_edges: usize,
}

impl Plan {
    /// Plans `graph`. Pure and deterministic; linear in tasks plus edges.
    pub fn build(graph: &Graph, options: &PlanOptions) -> Plan {
        let target_cluster_tasks = clustering::target_cluster_tasks(graph.len(), options);
        let clustering = clustering::cluster(graph, target_cluster_tasks);
        let (clusters, cross_cluster_edges) = dataflow::finish(
            graph,
            &clustering.cluster_of,
            clustering.tasks,
            clustering.parents,
        );
        let cluster_of = clustering.cluster_of;
        let leaves = clusters
            .iter()
            .filter(|cluster| cluster.parents.is_empty())
            .map(|cluster| cluster.id)
            .collect();
        Plan {
            clusters,
            cluster_of,
            leaves,
            target_cluster_tasks,
            cross_cluster_edges,
        }
    }

    /// All clusters, indexed by id: `clusters()[i].id == ClusterId(i)`. Id order is a valid
    /// execution order.
    pub fn clusters(&self) -> &[Cluster] {
        &self.clusters
    }

    pub fn cluster(&self, id: ClusterId) -> &Cluster {
        &self.clusters[id.index()]
    }

    /// The cluster that runs `task`.
    pub fn cluster_of(&self, task: TaskId) -> ClusterId {
        self.cluster_of[task.index()]
    }

    /// The number of tasks planned.
    pub fn task_count(&self) -> usize {
        self.cluster_of.len()
    }

    /// Whether `id` names a cluster of this plan.
    pub fn has_cluster(&self, id: ClusterId) -> bool {
        id.index() < self.clusters.len()
    }

    /// Clusters without parents, which the client invokes, in id order.
    pub fn leaves(&self) -> &[ClusterId] {
        &self.leaves
    }

    /// A cluster its only parent hands values to in memory: that parent's invocation always
    /// becomes it (its fan-in has one member), so it must be uploaded before the parent runs.
    pub fn is_handed_over(&self, id: ClusterId) -> bool {
        match self.cluster(id).parents.as_slice() {
            [parent] => self.cluster(*parent).preferred_child == Some(id),
            _ => false,
        }
    }

    /// The order in which the client uploads clusters.
    ///
    /// Each cluster that is not handed over heads a group: the chain of clusters handed over
    /// from it, last first, then itself — so a cluster is uploaded before whoever becomes it
    /// can run. The groups of the leaves come first: each leaf can run as soon as its group is
    /// uploaded, while the client uploads the rest (whose heads wait for the upload in their
    /// fan-in).
    pub fn upload_order(&self) -> Vec<ClusterId> {
        let mut order = Vec::with_capacity(self.clusters.len());
        let add_group = |order: &mut Vec<ClusterId>, head: ClusterId| {
            let start = order.len();
            order.push(head);
            let mut current = head;
            while let Some(child) = self.cluster(current).preferred_child {
                order.push(child);
                current = child;
            }
            order[start..].reverse();
        };
        for &leaf in &self.leaves {
            add_group(&mut order, leaf);
        }
        for cluster in &self.clusters {
            if !cluster.parents.is_empty() && !self.is_handed_over(cluster.id) {
                add_group(&mut order, cluster.id);
            }
        }
        order
    }

    /// The size at which the planner closed clusters.
    pub fn target_cluster_tasks(&self) -> usize {
        self.target_cluster_tasks
    }

    pub fn statistics(&self) -> PlanStatistics {
        let mut sizes: Vec<usize> = self
            .clusters
            .iter()
            .map(|cluster| cluster.tasks.len())
            .collect();
        sizes.sort_unstable();
        // Longest chain of clusters ending at each cluster; parents come first in id order.
        let mut chain = vec![0usize; self.clusters.len()];
        for cluster in &self.clusters {
            chain[cluster.id.index()] = 1 + cluster
                .parents
                .iter()
                .map(|parent| chain[parent.index()])
                .max()
                .unwrap_or(0);
        }
        PlanStatistics {
            tasks: self.cluster_of.len(),
            clusters: self.clusters.len(),
            leaves: self.leaves.len(),
            target_cluster_tasks: self.target_cluster_tasks,
            min_cluster_tasks: sizes.first().copied().unwrap_or(0),
            median_cluster_tasks: sizes.get(sizes.len() / 2).copied().unwrap_or(0),
            max_cluster_tasks: sizes.last().copied().unwrap_or(0),
            cross_cluster_edges: self.cross_cluster_edges,
            stored_values: self
                .clusters
                .iter()
                .map(|cluster| cluster.stored_outputs.len())
                .sum(),
            memory_values: self
                .clusters
                .iter()
                .map(|cluster| cluster.memory_outputs.len())
                .sum(),
            critical_path_clusters: chain.iter().copied().max().unwrap_or(0),
        }
    }
}

/// Summary numbers of a [`Plan`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanStatistics {
    pub tasks: usize,
    pub clusters: usize,
    pub leaves: usize,
    /// The size at which the planner closed clusters.
    pub target_cluster_tasks: usize,
    pub min_cluster_tasks: usize,
    /// The upper median when the number of clusters is even.
    pub median_cluster_tasks: usize,
    pub max_cluster_tasks: usize,
    /// Dependency edges whose two tasks are in different clusters.
    pub cross_cluster_edges: usize,
    /// Values written to the store (sinks included).
    pub stored_values: usize,
    /// Values handed in memory to a preferred child.
    pub memory_values: usize,
    /// Clusters on the longest parent-to-child chain.
    pub critical_path_clusters: usize,
}

impl fmt::Display for PlanStatistics {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{}, {}, {}, {}, {}, {}, critical path {}; tasks per cluster {}/{}/{} \
             (min/median/max, target {})",
            counted(self.tasks, "task", "tasks"),
            counted(self.clusters, "cluster", "clusters"),
            counted(self.leaves, "leaf", "leaves"),
            counted(self.stored_values, "stored value", "stored values"),
            counted(self.memory_values, "memory value", "memory values"),
            counted(
                self.cross_cluster_edges,
                "cross-cluster edge",
                "cross-cluster edges"
            ),
            counted(self.critical_path_clusters, "cluster", "clusters"),
            self.min_cluster_tasks,
            self.median_cluster_tasks,
            self.max_cluster_tasks,
            self.target_cluster_tasks,
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
