//! The simulator on graphs of known shape: it completes with every task recorded once, it is
//! deterministic for a seed, it respects the concurrency limit and the scaling rate, and it
//! survives the chaos platform's faults through the real recovery protocol.

use std::collections::HashSet;

use dask_serverless_chaos::ChaosSpec;
use dask_serverless_graph::Graph;
use dask_serverless_plan::{Plan, PlanOptions};
use dask_serverless_sim::{
    PlatformParameters, SimulatedRun, SimulationOptions, TaskCosts, simulate,
};

fn plan(graph: &Graph, parallelism: usize) -> Plan {
    Plan::build(
        graph,
        &PlanOptions {
            parallelism,
            batches_per_function: 1,
            ..PlanOptions::default()
        },
    )
}

fn lambda() -> PlatformParameters {
    PlatformParameters::named("lambda").unwrap()
}

fn run(plan: &Plan, costs: &TaskCosts, options: &SimulationOptions) -> SimulatedRun {
    simulate(plan, costs, &lambda(), options).expect("the simulation ends")
}

#[test]
fn a_tree_reduction_completes_with_every_task_recorded_once() {
    let graph = Graph::tree_reduction(1024);
    let plan = plan(&graph, 64);
    let costs = TaskCosts::uniform(graph.len(), 100_000.0, 8);
    let result = run(&plan, &costs, &SimulationOptions::default());
    assert!(result.completed, "{:?}", result.failure);
    let tasks: HashSet<_> = result
        .task_records
        .iter()
        .map(|record| record.task)
        .collect();
    assert_eq!(tasks.len(), graph.len());
    assert_eq!(result.task_records.len(), graph.len());
    let finished: HashSet<_> = result
        .batch_records
        .iter()
        .map(|record| record.batch)
        .collect();
    assert_eq!(finished.len(), plan.batches().len());
    // Every batch's tasks ran in the invocation that reported it, after its start.
    for record in &result.batch_records {
        assert!(record.resources.start_us <= record.resources.end_us);
        assert!(record.resources.instance.starts_with("sim-instance-"));
    }
    // The leaves of 16 tasks each take 1.6 s at least; 10 levels of 0.1 s follow.
    let seconds = result.total_us as f64 / 1e6;
    assert!(seconds > 1.6 + 0.1 * 6.0, "{seconds}");
    assert!(seconds < 20.0, "{seconds}");
    // The critical path runs from a leaf batch to the root's.
    let path = &result.critical_path;
    assert!(plan.batch(path[0]).parents.is_empty());
    assert!(plan.batch(*path.last().unwrap()).children.is_empty());
    assert_eq!(result.recoveries, 0);
    assert_eq!(
        result.cold_starts as u32,
        result.peak_concurrency.min(result.cold_starts as u32)
    );
}

#[test]
fn a_seed_replays_and_another_seed_draws_other_times() {
    let graph = Graph::tree_reduction(256);
    let plan = plan(&graph, 16);
    let costs = TaskCosts::uniform(graph.len(), 20_000.0, 1_000);
    let options = SimulationOptions {
        seed: 7,
        ..SimulationOptions::default()
    };
    let first = run(&plan, &costs, &options);
    let again = run(&plan, &costs, &options);
    assert_eq!(first.total_us, again.total_us);
    assert_eq!(first.batch_records, again.batch_records);
    assert_eq!(first.task_records, again.task_records);
    let other = run(&plan, &costs, &SimulationOptions { seed: 8, ..options });
    assert_ne!(first.total_us, other.total_us);
}

#[test]
fn the_concurrency_limit_holds_and_makes_the_run_wait() {
    let graph = Graph::tree_reduction(512);
    let plan = plan(&graph, 64);
    let costs = TaskCosts::uniform(graph.len(), 200_000.0, 8);
    let free = run(&plan, &costs, &SimulationOptions::default());
    let limited = run(
        &plan,
        &costs,
        &SimulationOptions {
            max_concurrency: Some(4),
            ..SimulationOptions::default()
        },
    );
    assert!(free.peak_concurrency > 4);
    assert!(limited.peak_concurrency <= 4);
    assert!(limited.throttled > 0);
    assert!(
        limited.total_us > 4 * free.total_us,
        "{} {}",
        limited.total_us,
        free.total_us
    );
    assert!(limited.completed);
}

#[test]
fn the_scaling_rate_spreads_cold_starts_over_time() {
    let graph = Graph::tree_reduction(2048);
    let plan = plan(&graph, 1024);
    let costs = TaskCosts::uniform(graph.len(), 1_000_000.0, 8);
    let mut slow = lambda();
    slow.burst_instances = 100;
    slow.new_instances_per_10_s = 100.0;
    let fast = run(&plan, &costs, &SimulationOptions::default());
    let scaled = simulate(&plan, &costs, &slow, &SimulationOptions::default()).unwrap();
    assert!(scaled.completed);
    assert!(fast.peak_concurrency > 100);
    // 1,024 leaves at 100 instances now and 100 more every 10 s: most of them wait.
    assert!(scaled.throttled > 500, "{}", scaled.throttled);
    assert!(scaled.peak_concurrency < fast.peak_concurrency);
    assert!(
        scaled.total_us > fast.total_us + 5_000_000,
        "{} {}",
        scaled.total_us,
        fast.total_us
    );
}

#[test]
fn kills_and_duplicates_are_recovered_by_the_real_protocol() {
    let graph = Graph::tree_reduction(512);
    let plan = plan(&graph, 32);
    let costs = TaskCosts::uniform(graph.len(), 10_000.0, 8);
    let mut recovered = 0;
    for seed in 0..6 {
        let options = SimulationOptions {
            seed,
            faults: ChaosSpec {
                kill: 0.1,
                duplicate: 0.1,
                ..ChaosSpec::default()
            },
            timeout_us: 60_000_000,
            ..SimulationOptions::default()
        };
        let result = run(&plan, &costs, &options);
        assert!(result.completed, "seed {seed}: {:?}", result.failure);
        let tasks: HashSet<_> = result
            .task_records
            .iter()
            .map(|record| record.task)
            .collect();
        assert_eq!(tasks.len(), graph.len(), "seed {seed}");
        recovered += result.recoveries;
        assert!(
            result.kills > 0 || result.duplicates > 0,
            "seed {seed}: no fault drawn"
        );
    }
    assert!(recovered > 0);
}

#[test]
fn costs_that_do_not_fit_the_plan_are_refused() {
    let graph = Graph::tree_reduction(8);
    let plan = plan(&graph, 2);
    let error = simulate(
        &plan,
        &TaskCosts::uniform(3, 1.0, 1),
        &lambda(),
        &SimulationOptions::default(),
    )
    .unwrap_err();
    assert!(error.to_string().contains("for 15 tasks"), "{error}");
}

#[test]
fn refused_invocations_are_tried_again_after_backoff_and_cost_time() {
    let graph = Graph::tree_reduction(256);
    let plan = plan(&graph, 32);
    let costs = TaskCosts::uniform(graph.len(), 10_000.0, 8);
    let calm = run(&plan, &costs, &SimulationOptions::default());
    let throttled = run(
        &plan,
        &costs,
        &SimulationOptions {
            faults: ChaosSpec {
                throttle: 0.5,
                ..ChaosSpec::default()
            },
            ..SimulationOptions::default()
        },
    );
    assert!(throttled.completed);
    assert_eq!(calm.refused_invocations, 0);
    assert!(throttled.refused_invocations > 0);
    assert!(throttled.total_us > calm.total_us);
    assert_eq!(throttled.recoveries, 0);
}

#[test]
fn a_batch_running_longer_than_the_lease_timeout_still_finds_the_client_alive() {
    // The client renews its lease every 2 s with a new content; a function looks at it once a
    // second of tasks and takes the client for gone only when the content stayed the same for
    // 15 s. Batches of 20 tasks of 1 s run 20 s each.
    let graph = Graph::tree_reduction(64);
    let plan = plan(&graph, 2);
    let costs = TaskCosts::uniform(graph.len(), 1_000_000.0, 8);
    let result = run(&plan, &costs, &SimulationOptions::default());
    assert!(result.completed, "{:?}", result.failure);
    assert_eq!(result.recoveries, 0);
    assert!(result.total_us > 20_000_000, "{}", result.total_us);
}
