//! Graphs used by several test files, and a checker of every plan invariant.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeSet;

use dask_serverless_graph::{Graph, TaskId};
use dask_serverless_plan::{BatchId, Plan};

/// Builds a graph from `(key, dependency keys)` pairs; `outputs` are keys.
pub fn graph_of(tasks: &[(&str, &[&str])], outputs: &[&str]) -> Graph {
    let index_of = |key: &str| {
        tasks
            .iter()
            .position(|(candidate, _)| *candidate == key)
            .unwrap_or_else(|| panic!("no task {key}")) as u32
    };
    Graph::new(
        tasks.iter().map(|(key, _)| key.to_string()).collect(),
        tasks
            .iter()
            .map(|(_, dependencies)| dependencies.iter().map(|key| index_of(key)).collect())
            .collect(),
        vec![],
        outputs.iter().map(|key| index_of(key)).collect(),
    )
    .unwrap()
}

/// `step-0 <- step-1 <- ... <- step-{length-1}`, the last one requested.
pub fn chain(length: u32) -> Graph {
    Graph::new(
        (0..length).map(|step| format!("step-{step}")).collect(),
        (0..length)
            .map(|step| if step == 0 { vec![] } else { vec![step - 1] })
            .collect(),
        vec![],
        vec![length - 1],
    )
    .unwrap()
}

/// A binary tree reduction of `leaves` leaves (a power of two): `leaf-i`, then `sum-L-i` at
/// each level `L`, the root requested.
pub fn tree_reduction(leaves: u32) -> Graph {
    Graph::tree_reduction(leaves)
}

/// `C = A @ B` on a `blocks x blocks` grid: `a-i-k` and `b-k-j` are sources,
/// `product-i-j-k` multiplies two blocks, `c-i-j` sums the products; every `c` is requested.
pub fn matmul(blocks: u32) -> Graph {
    let mut keys = Vec::new();
    let mut dependencies: Vec<Vec<u32>> = Vec::new();
    let mut add = |key: String, needs: Vec<u32>| {
        keys.push(key);
        dependencies.push(needs);
        keys.len() as u32 - 1
    };
    let size = blocks as usize;
    for row in 0..size {
        for column in 0..size {
            add(format!("a-{row}-{column}"), vec![]);
            add(format!("b-{row}-{column}"), vec![]);
        }
    }
    // Task indices of the source blocks, added in the interleaved order above.
    let a = |row: usize, column: usize| (2 * (row * size + column)) as u32;
    let b = |row: usize, column: usize| (2 * (row * size + column) + 1) as u32;
    let mut outputs = Vec::new();
    for row in 0..size {
        for column in 0..size {
            let products: Vec<u32> = (0..size)
                .map(|inner| {
                    add(
                        format!("product-{row}-{column}-{inner}"),
                        vec![a(row, inner), b(inner, column)],
                    )
                })
                .collect();
            outputs.push(add(format!("c-{row}-{column}"), products));
        }
    }
    Graph::new(keys, dependencies, vec![], outputs).unwrap()
}

/// `chains` independent chains of `chain_length` tasks (a load, then maps), whose ends a
/// binary tree reduces to one requested total.
pub fn map_chains_then_reduce(chains: u32, chain_length: u32) -> Graph {
    let task_count = (chains * chain_length + chains) as usize;
    let mut keys = Vec::with_capacity(task_count);
    let mut dependencies: Vec<Vec<u32>> = Vec::with_capacity(task_count);
    let mut level = Vec::with_capacity(chains as usize);
    for chain in 0..chains {
        for step in 0..chain_length {
            if step == 0 {
                keys.push(format!("load-{chain}"));
                dependencies.push(vec![]);
            } else {
                keys.push(format!("map-{step}-{chain}"));
                dependencies.push(vec![keys.len() as u32 - 2]);
            }
        }
        level.push(keys.len() as u32 - 1);
    }
    let mut depth = 1;
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len() / 2 + 1);
        for (index, group) in level.chunks(2).enumerate() {
            keys.push(format!("sum-{depth}-{index}"));
            dependencies.push(group.to_vec());
            next.push(keys.len() as u32 - 1);
        }
        level = next;
        depth += 1;
    }
    Graph::new(keys, dependencies, vec![], level).unwrap()
}

/// Checks every invariant the plan crate documents; the error says which one broke.
pub fn check_plan(graph: &Graph, plan: &Plan) -> Result<(), String> {
    let batches = plan.batches();
    let mut position = vec![usize::MAX; graph.len()];
    let mut holder = vec![BatchId(u32::MAX); graph.len()];

    // Every task planned exactly once; ids dense; parents lower, sorted and consistent.
    for (index, batch) in batches.iter().enumerate() {
        ensure(batch.id == BatchId(index as u32), || {
            format!("batch {index} has id {}", batch.id)
        })?;
        ensure(!batch.tasks.is_empty(), || {
            format!("batch {index} is empty")
        })?;
        for (at, &task) in batch.tasks.iter().enumerate() {
            ensure(position[task.index()] == usize::MAX, || {
                format!("task {task} planned twice")
            })?;
            position[task.index()] = at;
            holder[task.index()] = batch.id;
            ensure(plan.batch_of(task) == batch.id, || {
                format!("batch_of({task}) is wrong")
            })?;
        }
        ensure(strictly_increasing(&batch.parents), || {
            format!("parents of {index} not sorted")
        })?;
        ensure(strictly_increasing(&batch.children), || {
            format!("children of {index} not sorted")
        })?;
        ensure(
            batch.parents.iter().all(|parent| parent.0 < batch.id.0),
            || format!("batch {index} has a parent with a higher id"),
        )?;
        for parent in &batch.parents {
            ensure(plan.batch(*parent).children.contains(&batch.id), || {
                format!("{parent} does not list its child {index}")
            })?;
        }
        for child in &batch.children {
            ensure(plan.batch(*child).parents.contains(&batch.id), || {
                format!("{child} does not list its parent {index}")
            })?;
        }
    }
    ensure(position.iter().all(|&at| at != usize::MAX), || {
        "a task is not planned".into()
    })?;
    let leaves: Vec<BatchId> = batches
        .iter()
        .filter(|batch| batch.parents.is_empty())
        .map(|batch| batch.id)
        .collect();
    ensure(plan.leaves() == leaves, || {
        "leaves are not the parentless batches".into()
    })?;
    ensure(batch_graph_is_acyclic(plan), || {
        "the batch graph has a cycle".into()
    })?;

    // Dependencies: inside a batch, earlier; across batches, through inputs and outputs.
    for batch in batches {
        let mut expected_inputs = BTreeSet::new();
        let mut expected_parents = BTreeSet::new();
        for &task in &batch.tasks {
            for &dependency in graph.dependencies(task) {
                let producer = holder[dependency.index()];
                if producer == batch.id {
                    ensure(
                        position[dependency.index()] < position[task.index()],
                        || format!("task {task} runs before its dependency {dependency}"),
                    )?;
                } else {
                    expected_inputs.insert(dependency);
                    expected_parents.insert(producer);
                    let produced = plan.batch(producer);
                    ensure(
                        produced.stored_outputs.contains(&dependency)
                            || produced.memory_outputs.contains(&dependency),
                        || format!("{dependency} crosses to {} but is no output", batch.id),
                    )?;
                }
            }
        }
        ensure(
            batch.inputs == expected_inputs.into_iter().collect::<Vec<_>>(),
            || format!("inputs of {} are wrong", batch.id),
        )?;
        ensure(
            batch.parents == expected_parents.into_iter().collect::<Vec<_>>(),
            || format!("parents of {} are not the batches it reads", batch.id),
        )?;
    }

    // Preferred child, stored and memory outputs, sinks.
    let is_output: BTreeSet<TaskId> = graph.outputs().iter().copied().collect();
    let mut sinks = BTreeSet::new();
    for batch in batches {
        let single_parent_children: Vec<BatchId> = batch
            .children
            .iter()
            .copied()
            .filter(|child| plan.batch(*child).parents.len() == 1)
            .collect();
        let expected_preferred = single_parent_children
            .iter()
            .copied()
            .max_by_key(|child| (plan.batch(*child).inputs.len(), std::cmp::Reverse(*child)));
        ensure(batch.preferred_child == expected_preferred, || {
            format!("preferred child of {} is wrong", batch.id)
        })?;
        let mut expected_stored = Vec::new();
        let mut expected_memory = Vec::new();
        let mut handed_over = BTreeSet::new();
        for &task in &batch.tasks {
            let readers: BTreeSet<BatchId> = graph
                .dependents(task)
                .iter()
                .map(|dependent| holder[dependent.index()])
                .filter(|reader| *reader != batch.id)
                .collect();
            let read_by_preferred = readers
                .iter()
                .any(|reader| Some(*reader) == batch.preferred_child);
            if read_by_preferred {
                handed_over.insert(task);
            }
            if is_output.contains(&task) {
                sinks.insert(task);
                ensure(batch.sinks.contains(&task), || {
                    format!("sink {task} not listed")
                })?;
            }
            if is_output.contains(&task)
                || readers
                    .iter()
                    .any(|reader| Some(*reader) != batch.preferred_child)
            {
                expected_stored.push(task);
            } else if read_by_preferred {
                expected_memory.push(task);
            }
        }
        expected_stored.sort();
        expected_memory.sort();
        ensure(batch.stored_outputs == expected_stored, || {
            format!("stored outputs of {} are wrong", batch.id)
        })?;
        ensure(batch.memory_outputs == expected_memory, || {
            format!("memory outputs of {} are wrong", batch.id)
        })?;
        for memory in &batch.memory_outputs {
            let child = batch
                .preferred_child
                .ok_or("memory output without preferred child")?;
            ensure(plan.batch(child).parents == [batch.id], || {
                "memory output to a child with several parents".into()
            })?;
            for dependent in graph.dependents(*memory) {
                let reader = holder[dependent.index()];
                ensure(reader == batch.id || reader == child, || {
                    format!("memory output {memory} is read by {reader}, not the preferred child")
                })?;
            }
        }
        ensure(
            batch
                .sinks
                .iter()
                .all(|sink| batch.stored_outputs.contains(sink)),
            || "a sink is not stored".into(),
        )?;
        check_releases(graph, batch, &handed_over)?;
    }
    ensure(sinks == is_output, || {
        "sinks are not the graph's outputs".into()
    })?;
    let listed_sinks: usize = batches.iter().map(|batch| batch.sinks.len()).sum();
    ensure(listed_sinks == is_output.len(), || {
        "a sink is listed twice".into()
    })?;
    Ok(())
}

/// Runs the batch's tasks against a model of its memory: a value must be present when a
/// task reads it, is released exactly once, and only the handed-over values remain.
fn check_releases(
    graph: &Graph,
    batch: &dask_serverless_plan::Batch,
    handed_over: &BTreeSet<TaskId>,
) -> Result<(), String> {
    ensure(batch.release_after.len() == batch.tasks.len(), || {
        "release_after has the wrong length".into()
    })?;
    let mut in_memory: BTreeSet<TaskId> = batch.inputs.iter().copied().collect();
    for (at, &task) in batch.tasks.iter().enumerate() {
        for dependency in graph.dependencies(task) {
            ensure(in_memory.contains(dependency), || {
                format!(
                    "batch {}: {dependency} is released before {task} reads it",
                    batch.id
                )
            })?;
        }
        in_memory.insert(task);
        for value in &batch.release_after[at] {
            ensure(in_memory.remove(value), || {
                format!("batch {}: {value} released twice or never held", batch.id)
            })?;
            ensure(!batch.memory_outputs.contains(value), || {
                format!("memory output {value} released")
            })?;
        }
    }
    ensure(&in_memory == handed_over, || {
        format!(
            "batch {}: values left in memory are not those handed to the preferred child",
            batch.id
        )
    })?;
    Ok(())
}

/// Kahn's algorithm on the parent/child relation, ignoring ids.
pub fn batch_graph_is_acyclic(plan: &Plan) -> bool {
    let batches = plan.batches();
    let mut waiting: Vec<usize> = batches.iter().map(|batch| batch.parents.len()).collect();
    let mut ready: Vec<BatchId> = batches
        .iter()
        .filter(|batch| batch.parents.is_empty())
        .map(|batch| batch.id)
        .collect();
    let mut visited = 0;
    while let Some(batch) = ready.pop() {
        visited += 1;
        for child in &plan.batch(batch).children {
            waiting[child.index()] -= 1;
            if waiting[child.index()] == 0 {
                ready.push(*child);
            }
        }
    }
    visited == batches.len()
}

fn strictly_increasing(ids: &[BatchId]) -> bool {
    ids.windows(2).all(|pair| pair[0] < pair[1])
}

fn ensure(condition: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if condition { Ok(()) } else { Err(message()) }
}
