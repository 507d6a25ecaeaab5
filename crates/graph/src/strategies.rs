//! Proptest strategies that generate random valid graphs (enabled by the `proptest` feature).
//!
//! Every generated task may depend only on tasks with a lower index, so the graphs are
//! acyclic by construction. Dependencies mix near neighbours (which builds long chains and
//! deep graphs) with uniformly random earlier tasks (which builds wide fan-ins and fan-outs),
//! and may repeat, to exercise deduplication. Outputs are random tasks, possibly repeated.

use std::ops::RangeInclusive;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

use crate::graph::Graph;

/// The arguments of [`Graph::new`] for one random acyclic graph with no missing keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphInputs {
    pub keys: Vec<String>,
    pub dependencies: Vec<Vec<u32>>,
    pub outputs: Vec<u32>,
}

impl GraphInputs {
    /// Builds the graph; generated inputs are always valid.
    pub fn build(&self) -> Graph {
        Graph::new(
            self.keys.clone(),
            self.dependencies.clone(),
            Vec::new(),
            self.outputs.clone(),
        )
        .expect("generated graphs are valid")
    }
}

/// Inputs of a random acyclic graph with a task count in `tasks` and at most
/// `max_dependencies` listed dependencies per task (repeats included).
pub fn graph_inputs(
    tasks: RangeInclusive<usize>,
    max_dependencies: usize,
) -> impl Strategy<Value = GraphInputs> {
    (tasks, 0..=max_dependencies)
        .prop_flat_map(|(task_count, dependency_limit)| {
            // (pick a near neighbour?, which one)
            let dependency = (any::<bool>(), any::<Index>());
            (
                vec(vec(dependency, 0..=dependency_limit), task_count),
                vec(any::<Index>(), 0..=4),
            )
        })
        .prop_map(|(picks, output_picks)| {
            let task_count = picks.len();
            let keys = (0..task_count).map(|task| format!("task-{task}")).collect();
            let dependencies = picks
                .iter()
                .enumerate()
                .map(|(task, task_picks)| {
                    if task == 0 {
                        return Vec::new();
                    }
                    task_picks
                        .iter()
                        .map(|(near, index)| {
                            let dependency = if *near {
                                task - 1 - index.index(task.min(3))
                            } else {
                                index.index(task)
                            };
                            dependency as u32
                        })
                        .collect()
                })
                .collect();
            let outputs = if task_count == 0 {
                Vec::new()
            } else {
                output_picks
                    .iter()
                    .map(|index| index.index(task_count) as u32)
                    .collect()
            };
            GraphInputs {
                keys,
                dependencies,
                outputs,
            }
        })
}

/// A random acyclic graph with a task count in `tasks` and at most `max_dependencies` listed
/// dependencies per task.
pub fn acyclic_graph(
    tasks: RangeInclusive<usize>,
    max_dependencies: usize,
) -> impl Strategy<Value = Graph> {
    graph_inputs(tasks, max_dependencies).prop_map(|inputs| inputs.build())
}
