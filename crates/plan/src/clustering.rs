//! Grouping tasks into clusters.
//!
//! The walk visits tasks in the graph's depth-first order
//! ([`Graph::depth_first_order`]), so a task comes right after the subtree that feeds it, and
//! puts each task in a cluster as it goes. The state is, per cluster, its tasks so far and its
//! parent set (fixed when the cluster is created), plus two lookups: the *open leaf cluster*
//! that sources join, and the most recent cluster created for each parent set.
//!
//! The target size is `T = max(1, min(ceil(tasks / (parallelism * clusters_per_worker)),
//! max_cluster_tasks))`: with one cluster per slot the work would spread over `parallelism`
//! workers `clusters_per_worker` times over. A cluster is *full* when it holds `T` tasks.
//!
//! 1. A source task (no dependency) waits for the first task that reads it. If that reader
//!    reads only new sources (fewer than `T`), the reader and its sources join the open leaf
//!    cluster if it has room for them all, else they open a new leaf cluster, which becomes
//!    the open one: values are produced where they are consumed, not in leaves of sources
//!    whose values wait in memory for readers elsewhere. Otherwise the reader waits for other
//!    clusters anyway: its new sources join the open leaf one by one (opening a new one when
//!    it is full), to be computed in parallel with them, and the reader follows rule 2.
//!    Sources nobody reads are placed last, in leaves.
//! 2. A task with dependencies has the set `P` of clusters holding them. It may join a
//!    cluster `c` that is not full iff `P ⊆ {c} ∪ parents(c)`: then `c`'s parents do not
//!    change. The candidates are the clusters of `P` and the most recent cluster whose parent
//!    set is exactly `P`. Because parents have lower ids than children, `P \ {c} ⊆
//!    parents(c)` forces `c = max(P)`: among the clusters of `P` only the newest one can ever
//!    qualify, so it is the one tried first (it is also the most recently created). Failing
//!    both, the task opens a new cluster with parents `P`.
//!
//! **Invariant:** parent sets never change after creation and every parent is created before
//! its child, so a child's id is greater than its parents' ids and the cluster graph is
//! acyclic. Every value a task reads lies in its own cluster (walked earlier, hence earlier in
//! the cluster's order) or in a parent of it, so a cluster's parents are exactly the clusters
//! it reads from.
//!
//! Cost: one pass over the order with per-cluster arrays indexed by id; the parent set of a
//! task is deduplicated with a per-cluster "last seen by" marker, the subset test is a binary
//! search per element, and the map from parent set to cluster is consulted only when the
//! newest parent cannot take the task.

use std::collections::HashMap;

use dask_serverless_graph::{Graph, TaskId};

use crate::cluster::ClusterId;
use crate::plan::PlanOptions;

/// Clusters as the walk left them: who is where, and each cluster's parents.
#[derive(Debug)]
pub(crate) struct Clustering {
    pub(crate) cluster_of: Vec<ClusterId>,
    /// Tasks of each cluster, in walk order.
    pub(crate) tasks: Vec<Vec<TaskId>>,
    /// Parents of each cluster, sorted.
    pub(crate) parents: Vec<Vec<ClusterId>>,
}

/// The number of tasks at which a cluster is full.
pub(crate) fn target_cluster_tasks(task_count: usize, options: &PlanOptions) -> usize {
    let slots = options
        .parallelism
        .max(1)
        .saturating_mul(options.clusters_per_worker.max(1));
    task_count
        .div_ceil(slots)
        .min(options.max_cluster_tasks)
        .max(1)
}

/// Puts every task of `graph` in a cluster of at most `target` tasks.
pub(crate) fn cluster(graph: &Graph, target: usize) -> Clustering {
    let mut walk = Walk {
        target,
        cluster_of: vec![UNPLACED; graph.len()],
        tasks: Vec::new(),
        parents: Vec::new(),
        last_seen_by: Vec::new(),
        latest_with_parents: HashMap::new(),
        open_leaf: None,
        parent_set: Vec::new(),
    };
    for task in graph.depth_first_order() {
        let dependencies = graph.dependencies(task);
        if dependencies.is_empty() {
            // Placed with its first reader (below), or at the end if nobody reads it.
            continue;
        }
        let new_sources = dependencies
            .iter()
            .filter(|dependency| walk.cluster_of[dependency.index()] == UNPLACED)
            .count();
        let chosen = if new_sources == dependencies.len() && new_sources < target {
            // It reads new sources only: they are computed where it runs.
            let leaf = walk.leaf_with_room(new_sources + 1);
            for &dependency in dependencies {
                walk.place(dependency, leaf);
            }
            leaf
        } else {
            // The task waits for other clusters anyway (or for more sources than a cluster
            // holds): its new sources go to leaves, to be computed in parallel.
            for &dependency in dependencies {
                if walk.cluster_of[dependency.index()] == UNPLACED {
                    let leaf = walk.leaf_with_room(1);
                    walk.place(dependency, leaf);
                }
            }
            walk.cluster_for(task, dependencies)
        };
        walk.place(task, chosen);
    }
    for task in graph.tasks() {
        if walk.cluster_of[task.index()] == UNPLACED {
            let leaf = walk.leaf_with_room(1);
            walk.place(task, leaf);
        }
    }
    Clustering {
        cluster_of: walk.cluster_of,
        tasks: walk.tasks,
        parents: walk.parents,
    }
}

/// The cluster of a task not placed yet.
const UNPLACED: ClusterId = ClusterId(u32::MAX);

#[derive(Debug)]
struct Walk {
    target: usize,
    cluster_of: Vec<ClusterId>,
    tasks: Vec<Vec<TaskId>>,
    parents: Vec<Vec<ClusterId>>,
    /// Per cluster, the last task whose parent set included it (deduplication marker).
    last_seen_by: Vec<u32>,
    /// Per parent set, the most recently created cluster with exactly those parents.
    latest_with_parents: HashMap<Vec<ClusterId>, ClusterId>,
    open_leaf: Option<ClusterId>,
    /// Scratch: the parent set of the current task, sorted.
    parent_set: Vec<ClusterId>,
}

impl Walk {
    fn is_full(&self, cluster: ClusterId) -> bool {
        self.tasks[cluster.index()].len() >= self.target
    }

    fn open(&mut self, parents: Vec<ClusterId>) -> ClusterId {
        let id = ClusterId(u32::try_from(self.tasks.len()).expect("fewer clusters than tasks"));
        self.tasks.push(Vec::new());
        self.parents.push(parents);
        self.last_seen_by.push(u32::MAX);
        id
    }

    fn place(&mut self, task: TaskId, cluster: ClusterId) {
        self.cluster_of[task.index()] = cluster;
        self.tasks[cluster.index()].push(task);
    }

    /// The open leaf cluster if it has room for `count` more tasks, else a new one.
    fn leaf_with_room(&mut self, count: usize) -> ClusterId {
        match self.open_leaf {
            Some(leaf) if self.tasks[leaf.index()].len() + count <= self.target => leaf,
            _ => {
                let leaf = self.open(Vec::new());
                self.open_leaf = Some(leaf);
                leaf
            }
        }
    }

    fn cluster_for(&mut self, task: TaskId, dependencies: &[TaskId]) -> ClusterId {
        self.parent_set.clear();
        for dependency in dependencies {
            let holder = self.cluster_of[dependency.index()];
            let marker = &mut self.last_seen_by[holder.index()];
            if *marker != task.0 {
                *marker = task.0;
                self.parent_set.push(holder);
            }
        }
        self.parent_set.sort_unstable();
        let (&newest, others) = self
            .parent_set
            .split_last()
            .expect("a task with dependencies has a parent set");
        let newest_parents = &self.parents[newest.index()];
        if !self.is_full(newest)
            && others
                .iter()
                .all(|parent| newest_parents.binary_search(parent).is_ok())
        {
            return newest;
        }
        if let Some(&sibling) = self.latest_with_parents.get(self.parent_set.as_slice())
            && !self.is_full(sibling)
        {
            return sibling;
        }
        let parents = self.parent_set.clone();
        let opened = self.open(parents.clone());
        self.latest_with_parents.insert(parents, opened);
        opened
    }
}
