//! The simulator's own cost at scale: a graph of a million tasks (a tree reduction of 2^19
//! numbers, 1,048,575 tasks) planned for 10,000 functions and simulated on the `lambda` model
//! with a concurrency limit of 10,000. Prints the time to build the graph, to plan it and to
//! simulate it, and the simulation's cost per task.
//!
//! `cargo run --release -p dask-serverless-sim --example scale [LEAVES] [CONCURRENCY]`

use std::time::Instant;

use dask_serverless_graph::Graph;
use dask_serverless_plan::{Plan, PlanOptions};
use dask_serverless_sim::{PlatformParameters, SimulationOptions, TaskCosts, simulate};

fn main() {
    let mut arguments = std::env::args().skip(1);
    let leaves: u32 = arguments
        .next()
        .map_or(1 << 19, |text| text.parse().expect("LEAVES is a number"));
    let concurrency: u32 = arguments.next().map_or(10_000, |text| {
        text.parse().expect("CONCURRENCY is a number")
    });
    let started = Instant::now();
    let graph = Graph::tree_reduction(leaves);
    let built = started.elapsed();
    let plan = Plan::build(
        &graph,
        &PlanOptions {
            parallelism: concurrency as usize,
            ..PlanOptions::default()
        },
    );
    let planned = started.elapsed() - built;
    let costs = TaskCosts::uniform(graph.len(), 10_000.0, 8);
    let options = SimulationOptions {
        max_concurrency: Some(concurrency),
        ..SimulationOptions::default()
    };
    let parameters = PlatformParameters::named("lambda").expect("the lambda model");
    let simulating = Instant::now();
    let run = simulate(&plan, &costs, &parameters, &options).expect("the simulation ends");
    let simulated = simulating.elapsed();
    println!(
        "{} tasks in {} batches, concurrency limit {concurrency}: graph {:.2} s, plan {:.2} s, \
         simulation {:.2} s ({:.2} µs per task, {} events); simulated run {:.2} s, peak \
         concurrency {}, {} cold starts, completed: {}",
        graph.len(),
        plan.batches().len(),
        built.as_secs_f64(),
        planned.as_secs_f64(),
        simulated.as_secs_f64(),
        simulated.as_secs_f64() * 1e6 / graph.len() as f64,
        run.events,
        run.total_us as f64 / 1e6,
        run.peak_concurrency,
        run.cold_starts,
        run.completed,
    );
}
