//! Why a graph was rejected. Every message names the Dask keys involved, because that is what
//! the person who built the graph can look up. Keys are display names chosen by the caller,
//! shown as they are (the Python front passes each Dask key's `repr`, quotes included).

use std::fmt::Write;

/// A graph handed to [`Graph::new`](crate::Graph::new) that cannot be run.
#[non_exhaustive]
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum GraphError {
    /// A task references a key that no task defines.
    #[error("task {task} depends on {dependency}, which is not in the graph")]
    MissingDependency { task: String, dependency: String },
    /// The dependencies loop back: `path[0]` depends on `path[1]`, which depends on
    /// `path[2]`..., and the last key is the first again. A task that depends on itself gives a
    /// path of two equal keys.
    #[error("the graph has a cycle: {} (each task depends on the next)", cycle_text(.path))]
    Cycle { path: Vec<String> },
    /// An index given by the caller does not fit the graph.
    #[error("{message}")]
    InvalidIndex { message: String },
}

fn cycle_text(path: &[String]) -> String {
    let mut text = String::new();
    for (position, key) in path.iter().enumerate() {
        if position > 0 {
            text.push_str(" -> ");
        }
        let _ = write!(text, "{key}");
    }
    text
}

/// `count` followed by `noun`, plural unless the count is one: "1 task", "3 tasks".
pub(crate) fn counted(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("{count} {noun}")
    } else {
        format!("{count} {noun}s")
    }
}
