//! Snapshots of `Plan::explain` on the shapes people meet most.

mod common;

use dask_serverless_plan::{Plan, PlanOptions};
use insta::assert_snapshot;

use common::{chain, check_plan, graph_of, matmul, tree_reduction};

fn explained(graph: &dask_serverless_graph::Graph, parallelism: usize) -> String {
    let options = PlanOptions {
        parallelism,
        ..PlanOptions::default()
    };
    let plan = Plan::build(graph, &options);
    check_plan(graph, &plan).unwrap();
    plan.explain(graph)
}

#[test]
fn linear_chain() {
    assert_snapshot!(explained(&chain(20), 2));
}

#[test]
fn tree_reduction_of_sixteen_leaves() {
    assert_snapshot!(explained(&tree_reduction(16), 2));
}

#[test]
fn diamond() {
    let graph = graph_of(
        &[("a", &[]), ("b", &["a"]), ("c", &["a"]), ("d", &["b", "c"])],
        &["d"],
    );
    assert_snapshot!(explained(&graph, 2));
}

#[test]
fn matmul_four_by_four() {
    assert_snapshot!(explained(&matmul(4), 2));
}

#[test]
fn several_outputs() {
    // A loaded table feeds three summaries and a cleaned copy; the caller asks for the
    // summaries (one twice) and an intermediate value.
    let graph = graph_of(
        &[
            ("load-0", &[]),
            ("load-1", &[]),
            ("load-2", &[]),
            ("clean-0", &["load-0"]),
            ("clean-1", &["load-1"]),
            ("clean-2", &["load-2"]),
            ("count", &["clean-0", "clean-1", "clean-2"]),
            ("total", &["clean-0", "clean-1", "clean-2"]),
            ("mean", &["count", "total"]),
            ("maximum", &["clean-0", "clean-1", "clean-2"]),
        ],
        &["mean", "maximum", "mean", "total"],
    );
    assert_snapshot!(explained(&graph, 1));
}

#[test]
fn statistics_read_as_one_line() {
    let graph = tree_reduction(16);
    let plan = Plan::build(&graph, &PlanOptions::default());
    assert_snapshot!(
        plan.statistics().to_string(),
        @"31 tasks, 15 batches, 8 leaves, 15 stored values, 0 memory values, 14 cross-batch edges, critical path 4 batches; tasks per batch 1/3/3 (min/median/max, target 4)"
    );
}

#[test]
fn huge_plans_are_cut_short() {
    let graph = chain(120);
    let plan = Plan::build(
        &graph,
        &PlanOptions {
            parallelism: 60,
            batches_per_function: 1,
            max_batch_tasks: 10_000,
        },
    );
    let text = plan.explain(&graph);
    assert_eq!(plan.batches().len(), 60);
    assert!(text.ends_with("batch 49  (2 tasks, parents [48], children [50], becomes 50)\n    tasks: step-98, step-99\n    inputs (1): step-97\n    in memory (1): step-99\n… 10 more batches\n"), "{text}");
}
