//! How values flow between batches and live inside them.
//!
//! Given the batching, each batch gets:
//!
//! * `inputs`: the values of other batches its tasks read (each edge that crosses batches
//!   makes its dependency an input of the consumer's batch);
//! * `children`: the batches that list it as a parent;
//! * `preferred_child`: among the children whose only parent is this batch, the one that
//!   reads the most values (all of a single-parent child's inputs come from its parent, so
//!   that is its input count); ties go to the lowest id. Such a child is always released by
//!   this batch, so the function that ran this batch is the one that runs the child;
//! * `stored_outputs`: values read by any batch other than the preferred child, and every
//!   sink; `memory_outputs`: values read by other batches only through the preferred child,
//!   never stored;
//! * `release_after`: a value is released after the last task of the batch that uses it
//!   (a value nothing in the batch uses goes right after it is computed; an input goes after
//!   its last reader). Values the preferred child reads, memory outputs and stored outputs
//!   alike, are never released: they are still in memory when the function becomes the child.
//!
//! One pass per batch, with two per-task arrays shared by all passes: the position of the
//! last in-batch use of each value, and the sink marker. Cost is linear in tasks plus edges,
//! plus sorting the (short) per-batch lists.

use dask_serverless_graph::{Graph, TaskId};

use crate::batch::{Batch, BatchId};

/// The finished batches and the number of dependency edges that cross batches.
///
/// `batch_of`, `tasks` and `parents` are the batching's (see the `batching` module).
pub(crate) fn finish(
    graph: &Graph,
    batch_of: &[BatchId],
    tasks: Vec<Vec<TaskId>>,
    parents: Vec<Vec<BatchId>>,
) -> (Vec<Batch>, usize) {
    let batch_count = tasks.len();

    let mut cross_batch_edges = 0;
    let mut inputs: Vec<Vec<TaskId>> = Vec::with_capacity(batch_count);
    for (index, batch_tasks) in tasks.iter().enumerate() {
        let batch = BatchId(index as u32);
        let mut batch_inputs = Vec::new();
        for &task in batch_tasks {
            for &dependency in graph.dependencies(task) {
                if batch_of[dependency.index()] != batch {
                    batch_inputs.push(dependency);
                }
            }
        }
        cross_batch_edges += batch_inputs.len();
        batch_inputs.sort_unstable();
        batch_inputs.dedup();
        inputs.push(batch_inputs);
    }

    let mut children: Vec<Vec<BatchId>> = vec![Vec::new(); batch_count];
    for (index, batch_parents) in parents.iter().enumerate() {
        for parent in batch_parents {
            children[parent.index()].push(BatchId(index as u32));
        }
    }

    let preferred_children: Vec<Option<BatchId>> = children
        .iter()
        .map(|batch_children| {
            let mut best: Option<(BatchId, usize)> = None;
            for &child in batch_children {
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
    // Position in its batch of the last task that reads each value, 0 when none does. Only
    // the pass over a consumer's batch writes it and passes run in id order, so when the
    // pass over batch c looks at a value c produces, only c's own readers have written it
    // (readers in other batches have higher ids).
    let mut last_use = vec![0u32; graph.len()];

    let mut batches = Vec::with_capacity(batch_count);
    let per_batch = tasks.into_iter().zip(inputs).zip(parents).zip(children);
    for (index, (((batch_tasks, batch_inputs), batch_parents), batch_children)) in
        per_batch.enumerate()
    {
        let id = BatchId(index as u32);
        let preferred_child = preferred_children[index];
        for (position, &task) in batch_tasks.iter().enumerate() {
            for &dependency in graph.dependencies(task) {
                last_use[dependency.index()] = position as u32;
            }
        }

        let mut release_after: Vec<Vec<TaskId>> = vec![Vec::new(); batch_tasks.len()];
        let mut sinks = Vec::new();
        let mut stored_outputs = Vec::new();
        let mut memory_outputs = Vec::new();
        for (position, &task) in batch_tasks.iter().enumerate() {
            let mut read_by_preferred_child = false;
            let mut read_by_other_batch = false;
            for &dependent in graph.dependents(task) {
                let reader = batch_of[dependent.index()];
                if reader == id {
                    continue;
                }
                if Some(reader) == preferred_child {
                    read_by_preferred_child = true;
                } else {
                    read_by_other_batch = true;
                }
            }
            let sink = is_sink[task.index()];
            if sink {
                sinks.push(task);
            }
            if sink || read_by_other_batch {
                stored_outputs.push(task);
            } else if read_by_preferred_child {
                memory_outputs.push(task);
            }
            if !read_by_preferred_child {
                let released = (last_use[task.index()] as usize).max(position);
                release_after[released].push(task);
            }
        }
        for &input in &batch_inputs {
            release_after[last_use[input.index()] as usize].push(input);
        }
        for released in &mut release_after {
            released.sort_unstable();
        }
        sinks.sort_unstable();
        stored_outputs.sort_unstable();
        memory_outputs.sort_unstable();

        batches.push(Batch {
            id,
            tasks: batch_tasks,
            inputs: batch_inputs,
            parents: batch_parents,
            children: batch_children,
            sinks,
            stored_outputs,
            memory_outputs,
            preferred_child,
            release_after,
        });
    }
    (batches, cross_batch_edges)
}
