//! Grouping tasks into batches.
//!
//! The walk visits tasks in the graph's depth-first order
//! ([`Graph::depth_first_order`]), so a task comes right after the subtree that feeds it, and
//! puts each task in a batch as it goes. The state is, per batch, its tasks so far and its
//! parent set (fixed when the batch is created), plus two lookups: the *open leaf batch*
//! that sources join, and the most recent batch created for each parent set.
//!
//! The target size is `T = max(1, min(ceil(tasks / (parallelism * batches_per_function)),
//! max_batch_tasks))`: with one batch per slot the work would spread over `parallelism`
//! workers `batches_per_function` times over. A batch is *full* when it holds `T` tasks.
//!
//! 1. A source task (no dependency) waits for the first task that reads it. If that reader
//!    reads only new sources (fewer than `T`), the reader and its sources join the open leaf
//!    batch if it has room for them all, else they open a new leaf batch, which becomes
//!    the open one: values are produced where they are consumed, not in leaves of sources
//!    whose values wait in memory for readers elsewhere. Otherwise the reader waits for other
//!    batches anyway: its new sources join the open leaf one by one (opening a new one when
//!    it is full), to be computed in parallel with them, and the reader follows rule 2.
//!    Sources nobody reads are placed last, in leaves.
//! 2. A task with dependencies has the set `P` of batches holding them. It may join a
//!    batch `c` that is not full iff `P ⊆ {c} ∪ parents(c)`: then `c`'s parents do not
//!    change. The candidates are the batches of `P` and the most recent batch whose parent
//!    set is exactly `P`. Because parents have lower ids than children, `P \ {c} ⊆
//!    parents(c)` forces `c = max(P)`: among the batches of `P` only the newest one can ever
//!    qualify, so it is the one tried first (it is also the most recently created). Failing
//!    both, the task opens a new batch with parents `P`.
//!
//! **Invariant:** parent sets never change after creation and every parent is created before
//! its child, so a child's id is greater than its parents' ids and the batch graph is
//! acyclic. Every value a task reads lies in its own batch (walked earlier, hence earlier in
//! the batch's order) or in a parent of it, so a batch's parents are exactly the batches
//! it reads from.
//!
//! Cost: one pass over the order with per-batch arrays indexed by id; the parent set of a
//! task is deduplicated with a per-batch "last seen by" marker, the subset test is a binary
//! search per element, and the map from parent set to batch is consulted only when the
//! newest parent cannot take the task.

use std::collections::HashMap;

use dask_serverless_graph::{Graph, TaskId};

use crate::batch::BatchId;
use crate::plan::PlanOptions;

/// Batches as the walk left them: who is where, and each batch's parents.
#[derive(Debug)]
pub(crate) struct Batching {
    pub(crate) batch_of: Vec<BatchId>,
    /// Tasks of each batch, in walk order.
    pub(crate) tasks: Vec<Vec<TaskId>>,
    /// Parents of each batch, sorted.
    pub(crate) parents: Vec<Vec<BatchId>>,
}

/// The number of tasks at which a batch is full.
pub(crate) fn target_batch_tasks(task_count: usize, options: &PlanOptions) -> usize {
    let slots = options
        .parallelism
        .max(1)
        .saturating_mul(options.batches_per_function.max(1));
    task_count
        .div_ceil(slots)
        .min(options.max_batch_tasks)
        .max(1)
}

/// Puts every task of `graph` in a batch of at most `target` tasks.
pub(crate) fn batch(graph: &Graph, target: usize) -> Batching {
    let mut walk = Walk {
        target,
        batch_of: vec![UNPLACED; graph.len()],
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
            .filter(|dependency| walk.batch_of[dependency.index()] == UNPLACED)
            .count();
        let chosen = if new_sources == dependencies.len() && new_sources < target {
            // It reads new sources only: they are computed where it runs.
            let leaf = walk.leaf_with_room(new_sources + 1);
            for &dependency in dependencies {
                walk.place(dependency, leaf);
            }
            leaf
        } else {
            // The task waits for other batches anyway (or for more sources than a batch
            // holds): its new sources go to leaves, to be computed in parallel.
            for &dependency in dependencies {
                if walk.batch_of[dependency.index()] == UNPLACED {
                    let leaf = walk.leaf_with_room(1);
                    walk.place(dependency, leaf);
                }
            }
            walk.batch_for(task, dependencies)
        };
        walk.place(task, chosen);
    }
    for task in graph.tasks() {
        if walk.batch_of[task.index()] == UNPLACED {
            let leaf = walk.leaf_with_room(1);
            walk.place(task, leaf);
        }
    }
    Batching {
        batch_of: walk.batch_of,
        tasks: walk.tasks,
        parents: walk.parents,
    }
}

/// The batch of a task not placed yet.
const UNPLACED: BatchId = BatchId(u32::MAX);

#[derive(Debug)]
struct Walk {
    target: usize,
    batch_of: Vec<BatchId>,
    tasks: Vec<Vec<TaskId>>,
    parents: Vec<Vec<BatchId>>,
    /// Per batch, the last task whose parent set included it (deduplication marker).
    last_seen_by: Vec<u32>,
    /// Per parent set, the most recently created batch with exactly those parents.
    latest_with_parents: HashMap<Vec<BatchId>, BatchId>,
    open_leaf: Option<BatchId>,
    /// Scratch: the parent set of the current task, sorted.
    parent_set: Vec<BatchId>,
}

impl Walk {
    fn is_full(&self, batch: BatchId) -> bool {
        self.tasks[batch.index()].len() >= self.target
    }

    fn open(&mut self, parents: Vec<BatchId>) -> BatchId {
        let id = BatchId(u32::try_from(self.tasks.len()).expect("fewer batches than tasks"));
        self.tasks.push(Vec::new());
        self.parents.push(parents);
        self.last_seen_by.push(u32::MAX);
        id
    }

    fn place(&mut self, task: TaskId, batch: BatchId) {
        self.batch_of[task.index()] = batch;
        self.tasks[batch.index()].push(task);
    }

    /// The open leaf batch if it has room for `count` more tasks, else a new one.
    fn leaf_with_room(&mut self, count: usize) -> BatchId {
        match self.open_leaf {
            Some(leaf) if self.tasks[leaf.index()].len() + count <= self.target => leaf,
            _ => {
                let leaf = self.open(Vec::new());
                self.open_leaf = Some(leaf);
                leaf
            }
        }
    }

    fn batch_for(&mut self, task: TaskId, dependencies: &[TaskId]) -> BatchId {
        self.parent_set.clear();
        for dependency in dependencies {
            let holder = self.batch_of[dependency.index()];
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
