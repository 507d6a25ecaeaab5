//! How values flow between clusters and live inside them.
//!
//! Given the clustering, each cluster gets:
//!
//! * `inputs`: the values of other clusters its tasks read (each edge that crosses clusters
//!   makes its dependency an input of the consumer's cluster);
//! * `children`: the clusters that list it as a parent;
//! * `preferred_child`: among the children whose only parent is this cluster, the one that
//!   reads the most values (all of a single-parent child's inputs come from its parent, so
//!   that is its input count); ties go to the lowest id. Such a child is always released by
//!   this cluster, so the function that ran this cluster is the one that runs the child;
//! * `stored_outputs`: values read by any cluster other than the preferred child, and every
//!   sink; `memory_outputs`: values read by other clusters only through the preferred child,
//!   never stored;
//! * `release_after`: a value is released after the last task of the cluster that uses it
//!   (a value nothing in the cluster uses goes right after it is computed; an input goes after
//!   its last reader). Values the preferred child reads, memory outputs and stored outputs
//!   alike, are never released: they are still in memory when the function becomes the child.
//!
//! One pass per cluster, with two per-task arrays shared by all passes: the position of the
//! last in-cluster use of each value, and the sink marker. Cost is linear in tasks plus edges,
//! plus sorting the (short) per-cluster lists.

use dask_serverless_graph::{Graph, TaskId};

use crate::cluster::{Cluster, ClusterId};

/// The finished clusters and the number of dependency edges that cross clusters.
///
/// `cluster_of`, `tasks` and `parents` are the clustering's (see the `clustering` module).
pub(crate) fn finish(
    graph: &Graph,
    cluster_of: &[ClusterId],
    tasks: Vec<Vec<TaskId>>,
    parents: Vec<Vec<ClusterId>>,
) -> (Vec<Cluster>, usize) {
    let cluster_count = tasks.len();

    let mut cross_cluster_edges = 0;
    let mut inputs: Vec<Vec<TaskId>> = Vec::with_capacity(cluster_count);
    for (index, cluster_tasks) in tasks.iter().enumerate() {
        let cluster = ClusterId(index as u32);
        let mut cluster_inputs = Vec::new();
        for &task in cluster_tasks {
            for &dependency in graph.dependencies(task) {
                if cluster_of[dependency.index()] != cluster {
                    cluster_inputs.push(dependency);
                }
            }
        }
        cross_cluster_edges += cluster_inputs.len();
        cluster_inputs.sort_unstable();
        cluster_inputs.dedup();
        inputs.push(cluster_inputs);
    }

    let mut children: Vec<Vec<ClusterId>> = vec![Vec::new(); cluster_count];
    for (index, cluster_parents) in parents.iter().enumerate() {
        for parent in cluster_parents {
            children[parent.index()].push(ClusterId(index as u32));
        }
    }

    let preferred_children: Vec<Option<ClusterId>> = children
        .iter()
        .map(|cluster_children| {
            let mut best: Option<(ClusterId, usize)> = None;
            for &child in cluster_children {
                if parents[child.index()].len() != 1 {
                    continue;
                }
                let reads = inputs[child.index()].len();
                if best.is_none_or(|(_, best_reads)| reads > best_reads) {
                    best = Some((child, reads));
                }
            }
            best.map(|(child, _)| child)
        })
        .collect();

    let mut is_sink = vec![false; graph.len()];
    for output in graph.outputs() {
        is_sink[output.index()] = true;
    }
    // Position in its cluster of the last task that reads each value, 0 when none does. Only
    // the pass over a consumer's cluster writes it and passes run in id order, so when the
    // pass over cluster c looks at a value c produces, only c's own readers have written it
    // (readers in other clusters have higher ids).
    let mut last_use = vec![0u32; graph.len()];

    let mut clusters = Vec::with_capacity(cluster_count);
    let per_cluster = tasks.into_iter().zip(inputs).zip(parents).zip(children);
    for (index, (((cluster_tasks, cluster_inputs), cluster_parents), cluster_children)) in
        per_cluster.enumerate()
    {
        let id = ClusterId(index as u32);
        let preferred_child = preferred_children[index];
        for (position, &task) in cluster_tasks.iter().enumerate() {
            for &dependency in graph.dependencies(task) {
                last_use[dependency.index()] = position as u32;
            }
        }

        let mut release_after: Vec<Vec<TaskId>> = vec![Vec::new(); cluster_tasks.len()];
        let mut sinks = Vec::new();
        let mut stored_outputs = Vec::new();
        let mut memory_outputs = Vec::new();
        for (position, &task) in cluster_tasks.iter().enumerate() {
            let mut read_by_preferred_child = false;
            let mut read_by_other_cluster = false;
            for &dependent in graph.dependents(task) {
                let reader = cluster_of[dependent.index()];
                if reader == id {
                    continue;
                }
                if Some(reader) == preferred_child {
                    read_by_preferred_child = true;
                } else {
                    read_by_other_cluster = true;
                }
            }
            let sink = is_sink[task.index()];
            if sink {
                sinks.push(task);
            }
            if sink || read_by_other_cluster {
                stored_outputs.push(task);
            } else if read_by_preferred_child {
                memory_outputs.push(task);
            }
            if !read_by_preferred_child {
                let released = (last_use[task.index()] as usize).max(position);
                release_after[released].push(task);
            }
        }
        for &input in &cluster_inputs {
            release_after[last_use[input.index()] as usize].push(input);
        }
        for released in &mut release_after {
            released.sort_unstable();
        }
        sinks.sort_unstable();
        stored_outputs.sort_unstable();
        memory_outputs.sort_unstable();

        clusters.push(Cluster {
            id,
            tasks: cluster_tasks,
            inputs: cluster_inputs,
            parents: cluster_parents,
            children: cluster_children,
            sinks,
            stored_outputs,
            memory_outputs,
            preferred_child,
            release_after,
        });
    }
    (clusters, cross_cluster_edges)
}
