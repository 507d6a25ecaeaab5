//! Tests of construction, validation, traversal and statistics.

use proptest::prelude::*;

use crate::strategies::{acyclic_graph, graph_inputs};
use crate::{Graph, GraphError, TaskId};

fn keys(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| name.to_string()).collect()
}

fn ids(indices: &[u32]) -> Vec<TaskId> {
    indices.iter().copied().map(TaskId).collect()
}

/// a; b and c need a; d needs b and c.
fn diamond() -> Graph {
    Graph::new(
        keys(&["a", "b", "c", "d"]),
        vec![vec![], vec![0], vec![0], vec![1, 2]],
        vec![],
        vec![3],
    )
    .unwrap()
}

#[test]
fn dependencies_keep_given_order_without_repeats() {
    let graph = Graph::new(
        keys(&["a", "b", "c", "d"]),
        vec![vec![], vec![], vec![0], vec![2, 0, 2, 1, 0]],
        vec![],
        vec![3, 2, 3, 3],
    )
    .unwrap();
    assert_eq!(graph.len(), 4);
    assert_eq!(graph.dependencies(TaskId(3)), ids(&[2, 0, 1]));
    assert_eq!(graph.dependents(TaskId(0)), ids(&[2, 3]));
    assert_eq!(graph.dependents(TaskId(3)), ids(&[]));
    assert_eq!(graph.outputs(), ids(&[3, 2]));
    assert_eq!(graph.edge_count(), 4);
    assert_eq!(graph.key(TaskId(1)), "b");
    assert_eq!(graph.tasks().collect::<Vec<_>>(), ids(&[0, 1, 2, 3]));
}

#[test]
fn empty_graph_is_valid() {
    let graph = Graph::new(vec![], vec![], vec![], vec![]).unwrap();
    assert!(graph.is_empty());
    assert!(graph.depth_first_order().is_empty());
    assert_eq!(graph.statistics().depth, 0);
}

#[test]
fn missing_dependency_names_both_keys() {
    let error = Graph::new(
        keys(&["a", "b"]),
        vec![vec![], vec![0, 2]],
        keys(&["zzz"]),
        vec![1],
    )
    .unwrap_err();
    assert_eq!(
        error,
        GraphError::MissingDependency {
            task: "b".into(),
            dependency: "zzz".into()
        }
    );
    assert_eq!(
        error.to_string(),
        "task b depends on zzz, which is not in the graph"
    );
}

#[test]
fn cycle_reports_its_path() {
    // x needs a; a needs b; b needs c; c needs a.
    let error = Graph::new(
        keys(&["x", "a", "b", "c"]),
        vec![vec![1], vec![2], vec![3], vec![1]],
        vec![],
        vec![0],
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "the graph has a cycle: a -> b -> c -> a (each task depends on the next)"
    );
}

#[test]
fn self_dependency_is_a_cycle() {
    let error =
        Graph::new(keys(&["a", "b"]), vec![vec![], vec![0, 1]], vec![], vec![]).unwrap_err();
    assert_eq!(
        error,
        GraphError::Cycle {
            path: keys(&["b", "b"])
        }
    );
}

#[test]
fn indices_out_of_range_are_explained() {
    let dependency = Graph::new(
        keys(&["a", "b"]),
        vec![vec![], vec![5]],
        keys(&["m"]),
        vec![],
    )
    .unwrap_err();
    assert_eq!(
        dependency.to_string(),
        "task 'b' depends on index 5, but the graph has only 2 tasks and 1 missing key"
    );
    let output = Graph::new(keys(&["a"]), vec![vec![]], vec![], vec![0, 7]).unwrap_err();
    assert_eq!(
        output.to_string(),
        "output index 7 is out of range: the graph has 1 task and 0 missing keys"
    );
    let missing_output =
        Graph::new(keys(&["a"]), vec![vec![]], keys(&["gone"]), vec![1]).unwrap_err();
    assert_eq!(
        missing_output.to_string(),
        "output 'gone' is requested, but no task of the graph defines it"
    );
    let lengths = Graph::new(keys(&["a", "b"]), vec![vec![]], vec![], vec![]).unwrap_err();
    assert_eq!(
        lengths.to_string(),
        "the graph has 2 keys but 1 dependency lists; each task needs exactly one list"
    );
}

#[test]
fn depth_first_order_finishes_each_subtree_before_the_next() {
    // A binary reduction: s0 = l0 + l1, s1 = l2 + l3, total = s0 + s1; plus an unrelated task.
    let graph = Graph::new(
        keys(&["l0", "l1", "l2", "l3", "s0", "s1", "total", "stray"]),
        vec![
            vec![],
            vec![],
            vec![],
            vec![],
            vec![0, 1],
            vec![2, 3],
            vec![4, 5],
            vec![],
        ],
        vec![],
        vec![6],
    )
    .unwrap();
    let order: Vec<&str> = graph
        .depth_first_order()
        .into_iter()
        .map(|task| graph.key(task))
        .collect();
    assert_eq!(
        order,
        ["l0", "l1", "s0", "l2", "l3", "s1", "total", "stray"]
    );
}

#[test]
fn depth_first_order_starts_from_outputs_in_request_order() {
    let graph = Graph::new(
        keys(&["a", "b", "c"]),
        vec![vec![], vec![0], vec![]],
        vec![],
        vec![2, 1],
    )
    .unwrap();
    assert_eq!(graph.depth_first_order(), ids(&[2, 0, 1]));
}

#[test]
fn deep_chains_need_no_recursion() {
    let length = 100_000u32;
    let keys = (0..length).map(|task| format!("step-{task}")).collect();
    let dependencies = (0..length)
        .map(|task| if task == 0 { vec![] } else { vec![task - 1] })
        .collect();
    let graph = Graph::new(keys, dependencies, vec![], vec![length - 1]).unwrap();
    assert_eq!(graph.statistics().depth, length as usize);
    assert_eq!(
        graph.depth_first_order(),
        ids(&(0..length).collect::<Vec<_>>())
    );

    // The same chain closed into a loop: the cycle is the whole chain.
    let keys = (0..length).map(|task| format!("step-{task}")).collect();
    let dependencies = (0..length)
        .map(|task| vec![if task == 0 { length - 1 } else { task - 1 }])
        .collect();
    let GraphError::Cycle { path } = Graph::new(keys, dependencies, vec![], vec![]).unwrap_err()
    else {
        panic!("expected a cycle");
    };
    assert_eq!(path.len(), length as usize + 1);
    assert_eq!(path.first(), path.last());
}

#[test]
fn statistics_describe_the_shape() {
    let statistics = diamond().statistics();
    assert_eq!(
        statistics.to_string(),
        "4 tasks, 4 edges, 1 output, 1 source, 1 sink, depth 3, max fan-in 2, max fan-out 2"
    );
}

#[test]
fn task_ids_serialize_as_plain_numbers() {
    assert_eq!(serde_json::to_string(&ids(&[3, 14])).unwrap(), "[3,14]");
    assert_eq!(serde_json::from_str::<TaskId>("7").unwrap(), TaskId(7));
    assert_eq!(TaskId(7).to_string(), "7");
}

proptest! {
    #[test]
    fn graphs_keep_what_the_caller_gave(inputs in graph_inputs(0..=200, 5)) {
        let graph = inputs.build();
        prop_assert_eq!(graph.len(), inputs.keys.len());
        let mut edges = 0;
        for task in graph.tasks() {
            let mut expected: Vec<TaskId> = Vec::new();
            for &dependency in &inputs.dependencies[task.index()] {
                if !expected.contains(&TaskId(dependency)) {
                    expected.push(TaskId(dependency));
                }
            }
            prop_assert_eq!(graph.dependencies(task), expected.as_slice());
            for &dependency in graph.dependencies(task) {
                prop_assert!(graph.dependents(dependency).contains(&task));
            }
            prop_assert!(graph.dependents(task).windows(2).all(|pair| pair[0] < pair[1]));
            edges += graph.dependents(task).len();
        }
        prop_assert_eq!(edges, graph.edge_count());
        let mut expected_outputs: Vec<TaskId> = Vec::new();
        for &output in &inputs.outputs {
            if !expected_outputs.contains(&TaskId(output)) {
                expected_outputs.push(TaskId(output));
            }
        }
        prop_assert_eq!(graph.outputs(), expected_outputs.as_slice());
    }

    #[test]
    fn depth_first_order_is_a_topological_permutation(graph in acyclic_graph(0..=200, 4)) {
        let order = graph.depth_first_order();
        let mut position = vec![usize::MAX; graph.len()];
        for (index, task) in order.iter().enumerate() {
            prop_assert_eq!(position[task.index()], usize::MAX, "task listed twice");
            position[task.index()] = index;
        }
        prop_assert_eq!(order.len(), graph.len());
        for task in graph.tasks() {
            for &dependency in graph.dependencies(task) {
                prop_assert!(position[dependency.index()] < position[task.index()]);
            }
        }
        if let Some(&first_output) = graph.outputs().first() {
            // The first output's whole ancestry comes first, then the output itself.
            let mut ancestors = vec![false; graph.len()];
            let mut pending = vec![first_output];
            let mut count = 0;
            while let Some(task) = pending.pop() {
                if !ancestors[task.index()] {
                    ancestors[task.index()] = true;
                    count += 1;
                    pending.extend_from_slice(graph.dependencies(task));
                }
            }
            prop_assert_eq!(order[count - 1], first_output);
            prop_assert!(order[..count].iter().all(|task| ancestors[task.index()]));
        }
    }

    #[test]
    fn a_backward_edge_is_reported_as_a_cycle(
        inputs in graph_inputs(2..=120, 3),
        picks in (any::<prop::sample::Index>(), any::<prop::sample::Index>()),
    ) {
        // Make a lower task depend on a higher one that (transitively) depends on it, if any.
        let graph = inputs.build();
        let low = picks.0.index(graph.len());
        let mut reachable_from_dependents = vec![false; graph.len()];
        let mut pending: Vec<TaskId> = graph.dependents(TaskId(low as u32)).to_vec();
        while let Some(task) = pending.pop() {
            if !reachable_from_dependents[task.index()] {
                reachable_from_dependents[task.index()] = true;
                pending.extend_from_slice(graph.dependents(task));
            }
        }
        let candidates: Vec<usize> = (0..graph.len()).filter(|&task| reachable_from_dependents[task]).collect();
        prop_assume!(!candidates.is_empty());
        let high = candidates[picks.1.index(candidates.len())];
        let mut dependencies = inputs.dependencies.clone();
        dependencies[low].push(high as u32);
        let error = Graph::new(inputs.keys.clone(), dependencies.clone(), vec![], inputs.outputs.clone()).unwrap_err();
        let GraphError::Cycle { path } = error else {
            return Err(TestCaseError::fail("expected a cycle"));
        };
        prop_assert!(path.len() >= 2);
        prop_assert_eq!(path.first(), path.last());
        let index_of = |key: &String| inputs.keys.iter().position(|candidate| candidate == key).unwrap();
        for pair in path.windows(2) {
            let (task, dependency) = (index_of(&pair[0]), index_of(&pair[1]) as u32);
            prop_assert!(dependencies[task].contains(&dependency));
        }
    }
}
