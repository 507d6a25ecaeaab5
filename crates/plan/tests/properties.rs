//! Plans of random and very large graphs keep every invariant of the plan model.

mod common;

use std::time::Instant;

use dask_serverless_graph::strategies::acyclic_graph;
use dask_serverless_graph::{Graph, TaskId};
use dask_serverless_plan::{BatchId, Plan, PlanOptions};
use proptest::prelude::*;

use common::{
    batch_graph_is_acyclic, chain, check_plan, map_chains_then_reduce, matmul, tree_reduction,
};

fn options(parallelism: usize, batches_per_function: usize, max_batch_tasks: usize) -> PlanOptions {
    PlanOptions {
        parallelism,
        batches_per_function,
        max_batch_tasks,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_plans_keep_every_invariant(
        graph in acyclic_graph(0..=300, 4),
        parallelism in 1usize..=64,
        batches_per_function in 1usize..=8,
        max_batch_tasks in 1usize..=64,
    ) {
        let options = options(parallelism, batches_per_function, max_batch_tasks);
        let plan = Plan::build(&graph, &options);
        if let Err(message) = check_plan(&graph, &plan) {
            return Err(TestCaseError::fail(format!("{message}\n{}", plan.explain(&graph))));
        }
        let again = Plan::build(&graph, &options);
        prop_assert_eq!(&again, &plan);
        prop_assert_eq!(again.explain(&graph), plan.explain(&graph));
        let statistics = plan.statistics();
        prop_assert_eq!(statistics.tasks, graph.len());
        prop_assert!(statistics.max_batch_tasks <= plan.target_batch_tasks());
    }

    #[test]
    fn dense_random_plans_keep_every_invariant(
        graph in acyclic_graph(1..=120, 8),
        parallelism in 1usize..=4,
    ) {
        let plan = Plan::build(&graph, &options(parallelism, 2, 10_000));
        if let Err(message) = check_plan(&graph, &plan) {
            return Err(TestCaseError::fail(format!("{message}\n{}", plan.explain(&graph))));
        }
    }
}

#[test]
fn target_size_follows_the_options() {
    let graph = chain(100);
    assert_eq!(
        Plan::build(&graph, &PlanOptions::default()).target_batch_tasks(),
        13
    );
    assert_eq!(
        Plan::build(&graph, &options(10, 10, 10_000)).target_batch_tasks(),
        1
    );
    assert_eq!(
        Plan::build(&graph, &options(1, 1, 7)).target_batch_tasks(),
        7
    );
    assert_eq!(
        Plan::build(&graph, &options(0, 0, 0)).target_batch_tasks(),
        1
    );
}

#[test]
fn empty_graph_has_an_empty_plan() {
    let graph = Graph::new(vec![], vec![], vec![], vec![]).unwrap();
    let plan = Plan::build(&graph, &PlanOptions::default());
    assert!(plan.batches().is_empty());
    assert!(plan.leaves().is_empty());
    check_plan(&graph, &plan).unwrap();
}

#[test]
fn a_chain_hands_every_cut_over_in_memory() {
    let graph = chain(10);
    let plan = Plan::build(&graph, &options(1, 1, 4));
    check_plan(&graph, &plan).unwrap();
    assert_eq!(plan.batches().len(), 3);
    for batch in &plan.batches()[..2] {
        assert_eq!(batch.preferred_child, Some(BatchId(batch.id.0 + 1)));
        assert_eq!(batch.memory_outputs.len(), 1);
        assert!(batch.stored_outputs.is_empty());
    }
    assert_eq!(plan.batches()[2].stored_outputs, [TaskId(9)]);
}

#[test]
fn fixed_shapes_keep_every_invariant() {
    for parallelism in 1..=8 {
        for graph in [
            chain(50),
            tree_reduction(64),
            matmul(4),
            map_chains_then_reduce(40, 5),
        ] {
            let plan = Plan::build(&graph, &options(parallelism, 4, 10_000));
            check_plan(&graph, &plan).unwrap();
            assert!(batch_graph_is_acyclic(&plan));
        }
    }
}

/// 100,000 chains of 9 tasks and a binary reduction of their ends: 1,000,006 tasks.
fn million_task_graph() -> Graph {
    map_chains_then_reduce(100_000, 9)
}

#[test]
fn a_million_tasks_plan_correctly() {
    let graph = million_task_graph();
    assert_eq!(graph.len(), 1_000_006);
    let plan = Plan::build(&graph, &PlanOptions::default());
    check_plan(&graph, &plan).unwrap();
    let statistics = plan.statistics();
    assert_eq!(statistics.tasks, graph.len());
    assert!(statistics.max_batch_tasks <= 10_000);
    assert!(statistics.batches >= 100, "{statistics}");
    assert_eq!(
        plan.batch(plan.batch_of(graph.outputs()[0])).sinks,
        graph.outputs()
    );
}

/// Prints the planner's speed on the million-task graph; run in release mode.
#[test]
#[ignore = "measures speed; run with --release -- --ignored --nocapture"]
fn planner_speed() {
    let started = Instant::now();
    let graph = million_task_graph();
    let built = started.elapsed();
    let mut best = f64::INFINITY;
    let mut plan = None;
    for _ in 0..5 {
        let started = Instant::now();
        plan = Some(Plan::build(&graph, &PlanOptions::default()));
        best = best.min(started.elapsed().as_secs_f64());
    }
    let plan = plan.unwrap();
    println!(
        "graph: {} (built in {:.3} s)",
        graph.statistics(),
        built.as_secs_f64()
    );
    println!("plan: {}", plan.statistics());
    println!(
        "planned {} tasks in {:.3} s: {:.0} tasks/s",
        graph.len(),
        best,
        graph.len() as f64 / best
    );
}
