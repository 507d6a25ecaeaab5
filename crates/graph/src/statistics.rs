//! Summary numbers of a [`Graph`], for logs, explanations and benchmarks.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::counted;
use crate::graph::Graph;

/// Shape of a graph. `depth` is the number of tasks on the longest dependency path.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphStatistics {
    pub tasks: usize,
    pub edges: usize,
    pub outputs: usize,
    /// Tasks with no dependency.
    pub sources: usize,
    /// Tasks no other task depends on.
    pub sinks: usize,
    pub depth: usize,
    /// Largest number of dependencies of one task.
    pub max_fan_in: usize,
    /// Largest number of dependents of one task.
    pub max_fan_out: usize,
}

impl Graph {
    /// Counts tasks, edges, sources and sinks, and measures depth and fan-in and fan-out.
    pub fn statistics(&self) -> GraphStatistics {
        let mut statistics = GraphStatistics {
            tasks: self.len(),
            edges: self.edge_count(),
            outputs: self.outputs().len(),
            sources: 0,
            sinks: 0,
            depth: 0,
            max_fan_in: 0,
            max_fan_out: 0,
        };
        // Longest path ending at each task, in tasks, filled in topological order.
        let mut depth = vec![0u32; self.len()];
        for task in self.depth_first_order() {
            let dependencies = self.dependencies(task);
            let dependents = self.dependents(task);
            statistics.sources += usize::from(dependencies.is_empty());
            statistics.sinks += usize::from(dependents.is_empty());
            statistics.max_fan_in = statistics.max_fan_in.max(dependencies.len());
            statistics.max_fan_out = statistics.max_fan_out.max(dependents.len());
            let task_depth = 1 + dependencies
                .iter()
                .map(|dependency| depth[dependency.index()])
                .max()
                .unwrap_or(0);
            depth[task.index()] = task_depth;
            statistics.depth = statistics.depth.max(task_depth as usize);
        }
        statistics
    }
}

impl fmt::Display for GraphStatistics {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{}, {}, {}, {}, {}, depth {}, max fan-in {}, max fan-out {}",
            counted(self.tasks, "task"),
            counted(self.edges, "edge"),
            counted(self.outputs, "output"),
            counted(self.sources, "source"),
            counted(self.sinks, "sink"),
            self.depth,
            self.max_fan_in,
            self.max_fan_out
        )
    }
}
