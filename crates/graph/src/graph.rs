//! The [`Graph`] type: construction, validation and traversal.
//!
//! Construction runs three linear passes over the caller's lists:
//!
//! 1. check every index, resolve references to missing keys into errors, drop repeated
//!    dependencies (a per-dependency "last listed by" marker, so fan-ins of any width stay
//!    linear) and lay the dependencies out as compressed sparse rows;
//! 2. derive the dependents (the reverse relation) by a counting sort, so each task's
//!    dependents come out in increasing task order;
//! 3. search for a cycle with an iterative depth-first search that colours tasks *new*,
//!    *on the path* or *finished*: reaching a task that is on the path closes a cycle, and the
//!    path from that task to the top of the stack is the cycle reported to the caller.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{GraphError, counted};

/// Dense index of a task in its [`Graph`]: `0..graph.len()`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub u32);

impl TaskId {
    /// The index as a `usize`, for indexing per-task arrays.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.0)
    }
}

/// A validated, acyclic task graph. See the crate documentation for its invariants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graph {
    keys: Vec<String>,
    /// Task `i` depends on `dependency_targets[dependency_offsets[i]..dependency_offsets[i + 1]]`.
    dependency_offsets: Vec<usize>,
    dependency_targets: Vec<TaskId>,
    /// Task `i` is needed by `dependent_targets[dependent_offsets[i]..dependent_offsets[i + 1]]`.
    dependent_offsets: Vec<usize>,
    dependent_targets: Vec<TaskId>,
    outputs: Vec<TaskId>,
}

impl Graph {
    /// A pairwise tree reduction of `leaves` values (Wukong's TR workload, and a shape many
    /// tests use): `leaf-i`, then `sum-L-i` at each level `L` (an odd one out goes up alone),
    /// the root requested.
    pub fn tree_reduction(leaves: u32) -> Graph {
        let mut keys: Vec<String> = (0..leaves).map(|leaf| format!("leaf-{leaf}")).collect();
        let mut dependencies: Vec<Vec<u32>> = vec![vec![]; leaves as usize];
        let mut level: Vec<u32> = (0..leaves).collect();
        let mut depth = 1;
        while level.len() > 1 {
            let mut next = Vec::new();
            for (index, pair) in level.chunks(2).enumerate() {
                keys.push(format!("sum-{depth}-{index}"));
                dependencies.push(pair.to_vec());
                next.push(keys.len() as u32 - 1);
            }
            level = next;
            depth += 1;
        }
        Graph::new(keys, dependencies, vec![], level).expect("a tree reduction is a graph")
    }

    /// Builds and validates a graph.
    ///
    /// `keys[i]` is the display name of task `i` (Dask keys are stringified by the caller).
    /// `dependencies[i]` lists the indices of the tasks task `i` needs; an index at or beyond
    /// `keys.len()` refers to `missing[index - keys.len()]`, a key that some task references
    /// but no task defines, and is reported as [`GraphError::MissingDependency`].
    /// `outputs` are the tasks the caller wants back; repeats are dropped, keeping the order of
    /// first occurrence. Repeated dependencies are dropped the same way.
    pub fn new(
        keys: Vec<String>,
        dependencies: Vec<Vec<u32>>,
        missing: Vec<String>,
        outputs: Vec<u32>,
    ) -> Result<Graph, GraphError> {
        let task_count = keys.len();
        if dependencies.len() != task_count {
            return Err(GraphError::InvalidIndex {
                message: format!(
                    "the graph has {task_count} keys but {} dependency lists; \
                     each task needs exactly one list",
                    dependencies.len()
                ),
            });
        }
        let known_count = task_count + missing.len();
        if known_count > u32::MAX as usize {
            return Err(GraphError::InvalidIndex {
                message: format!(
                    "the graph has {known_count} keys, more than the {} a graph can index",
                    u32::MAX
                ),
            });
        }

        let edge_capacity = dependencies.iter().map(Vec::len).sum();
        let mut dependency_offsets = Vec::with_capacity(task_count + 1);
        let mut dependency_targets = Vec::with_capacity(edge_capacity);
        dependency_offsets.push(0);
        // `last_listed_by[d]` is the last task whose list contained `d`: a repeat within one
        // list is recognised in constant time.
        let mut last_listed_by = vec![u32::MAX; task_count];
        for (task, list) in dependencies.iter().enumerate() {
            for &dependency in list {
                let index = dependency as usize;
                if index >= task_count {
                    return Err(unknown_dependency(&keys, &missing, task, index));
                }
                if last_listed_by[index] != task as u32 {
                    last_listed_by[index] = task as u32;
                    dependency_targets.push(TaskId(dependency));
                }
            }
            dependency_offsets.push(dependency_targets.len());
        }
        drop(dependencies);

        let mut is_output = vec![false; task_count];
        let mut unique_outputs = Vec::with_capacity(outputs.len());
        for output in outputs {
            let index = output as usize;
            if index >= task_count {
                return Err(unknown_output(&missing, task_count, index));
            }
            if !is_output[index] {
                is_output[index] = true;
                unique_outputs.push(TaskId(output));
            }
        }

        let (dependent_offsets, dependent_targets) =
            reverse(task_count, &dependency_offsets, &dependency_targets);
        let graph = Graph {
            keys,
            dependency_offsets,
            dependency_targets,
            dependent_offsets,
            dependent_targets,
            outputs: unique_outputs,
        };
        if let Some(cycle) = graph.find_cycle() {
            return Err(GraphError::Cycle {
                path: cycle
                    .iter()
                    .map(|&task| graph.key(task).to_owned())
                    .collect(),
            });
        }
        Ok(graph)
    }

    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the graph has no task.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The display key of a task.
    pub fn key(&self, task: TaskId) -> &str {
        &self.keys[task.index()]
    }

    /// The tasks `task` needs, deduplicated, in the order the caller gave.
    pub fn dependencies(&self, task: TaskId) -> &[TaskId] {
        let index = task.index();
        &self.dependency_targets[self.dependency_offsets[index]..self.dependency_offsets[index + 1]]
    }

    /// The tasks that need `task`, in increasing task order.
    pub fn dependents(&self, task: TaskId) -> &[TaskId] {
        let index = task.index();
        &self.dependent_targets[self.dependent_offsets[index]..self.dependent_offsets[index + 1]]
    }

    /// The tasks the caller wants back, deduplicated, in order of first request.
    pub fn outputs(&self) -> &[TaskId] {
        &self.outputs
    }

    /// Number of dependency edges (after deduplication).
    pub fn edge_count(&self) -> usize {
        self.dependency_targets.len()
    }

    /// All tasks in index order.
    pub fn tasks(&self) -> impl Iterator<Item = TaskId> + use<> {
        (0..self.keys.len() as u32).map(TaskId)
    }

    /// A deterministic depth-first topological order of all tasks.
    ///
    /// Roots are the outputs in order, then every task not reachable from an output, in index
    /// order. From each root an iterative post-order search visits dependencies in their
    /// given order, so every task comes after its dependencies and the tasks a root
    /// introduces stay contiguous: a subtree is finished before its sibling starts.
    pub fn depth_first_order(&self) -> Vec<TaskId> {
        let task_count = self.len();
        let mut order = Vec::with_capacity(task_count);
        let mut visited = vec![false; task_count];
        // Each entry is a task on the current path and the position of its next dependency.
        let mut stack: Vec<(TaskId, usize)> = Vec::new();
        for root in self.outputs.iter().copied().chain(self.tasks()) {
            if visited[root.index()] {
                continue;
            }
            visited[root.index()] = true;
            stack.push((root, self.dependency_offsets[root.index()]));
            while let Some(top) = stack.last_mut() {
                let (task, next) = *top;
                if next < self.dependency_offsets[task.index() + 1] {
                    top.1 += 1;
                    let dependency = self.dependency_targets[next];
                    if !visited[dependency.index()] {
                        visited[dependency.index()] = true;
                        stack.push((dependency, self.dependency_offsets[dependency.index()]));
                    }
                } else {
                    stack.pop();
                    order.push(task);
                }
            }
        }
        order
    }

    /// A dependency cycle as a closed path (first task repeated at the end), if there is one.
    fn find_cycle(&self) -> Option<Vec<TaskId>> {
        #[derive(Copy, Clone, PartialEq)]
        enum Colour {
            New,
            OnPath,
            Finished,
        }
        let mut colour = vec![Colour::New; self.len()];
        let mut stack: Vec<(TaskId, usize)> = Vec::new();
        for root in self.tasks() {
            if colour[root.index()] != Colour::New {
                continue;
            }
            colour[root.index()] = Colour::OnPath;
            stack.push((root, self.dependency_offsets[root.index()]));
            while let Some(top) = stack.last_mut() {
                let (task, next) = *top;
                if next < self.dependency_offsets[task.index() + 1] {
                    top.1 += 1;
                    let dependency = self.dependency_targets[next];
                    match colour[dependency.index()] {
                        Colour::New => {
                            colour[dependency.index()] = Colour::OnPath;
                            stack.push((dependency, self.dependency_offsets[dependency.index()]));
                        }
                        Colour::OnPath => {
                            let start = stack
                                .iter()
                                .position(|&(on_path, _)| on_path == dependency)
                                .expect("a task coloured on-path is on the stack");
                            let mut path: Vec<TaskId> =
                                stack[start..].iter().map(|&(on_path, _)| on_path).collect();
                            path.push(dependency);
                            return Some(path);
                        }
                        Colour::Finished => {}
                    }
                } else {
                    colour[task.index()] = Colour::Finished;
                    stack.pop();
                }
            }
        }
        None
    }
}

/// The dependents relation in compressed sparse rows, by counting sort over the dependencies.
fn reverse(
    task_count: usize,
    dependency_offsets: &[usize],
    dependency_targets: &[TaskId],
) -> (Vec<usize>, Vec<TaskId>) {
    let mut offsets = vec![0usize; task_count + 1];
    for dependency in dependency_targets {
        offsets[dependency.index() + 1] += 1;
    }
    for index in 0..task_count {
        offsets[index + 1] += offsets[index];
    }
    let mut next_slot = offsets[..task_count].to_vec();
    let mut targets = vec![TaskId(0); dependency_targets.len()];
    for task in 0..task_count {
        for dependency in
            &dependency_targets[dependency_offsets[task]..dependency_offsets[task + 1]]
        {
            let slot = &mut next_slot[dependency.index()];
            targets[*slot] = TaskId(task as u32);
            *slot += 1;
        }
    }
    (offsets, targets)
}

fn unknown_dependency(
    keys: &[String],
    missing: &[String],
    task: usize,
    index: usize,
) -> GraphError {
    match missing.get(index - keys.len()) {
        Some(dependency) => GraphError::MissingDependency {
            task: keys[task].clone(),
            dependency: dependency.clone(),
        },
        None => GraphError::InvalidIndex {
            message: format!(
                "task '{}' depends on index {index}, but the graph has only {} and {}",
                keys[task],
                counted(keys.len(), "task"),
                counted(missing.len(), "missing key")
            ),
        },
    }
}

fn unknown_output(missing: &[String], task_count: usize, index: usize) -> GraphError {
    let message = match missing.get(index - task_count) {
        Some(key) => format!("output '{key}' is requested, but no task of the graph defines it"),
        None => format!(
            "output index {index} is out of range: the graph has {} and {}",
            counted(task_count, "task"),
            counted(missing.len(), "missing key")
        ),
    };
    GraphError::InvalidIndex { message }
}
