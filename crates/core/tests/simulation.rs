//! The whole protocol in a virtual loop: a driver, executors for every invocation, a fan-in
//! store with set semantics, and a pool of pending invocations — no processes, no clock.
//!
//! On random graphs and plans it checks that every task runs exactly once after all its
//! dependencies, that inputs are only loaded after they were stored, that values handed over
//! in memory are held by the invocation that needs them, and that the driver completes —
//! whenever the client uploads the batches that are not leaves (before the leaves run, while
//! they run, or after every parent finished), and in whatever order pending invocations start
//! (chosen by a seeded generator, so a failing case replays: the same seed gives the same
//! trace of protocol events). Faults come from the chaos platform's spec and seeded decisions
//! (`dask-serverless-chaos`): functions killed at its kill points, deliveries duplicated.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use dask_serverless_chaos::{Chaos, ChaosSpec, KillPoint};
use dask_serverless_core::{
    BatchSpec, Driver, DriverAction, DriverEvent, Executor, ExecutorAction, ExecutorEvent,
    FIRST_ATTEMPT, RecoveryPolicy, Report, TaskRecord,
};
use dask_serverless_graph::strategies::acyclic_graph;
use dask_serverless_graph::{Graph, TaskId};
use dask_serverless_plan::{BatchId, Plan, PlanOptions};
use proptest::prelude::*;

/// A small deterministic generator (xorshift64*): the simulation's source of interleavings.
struct Seeded(u64);

impl Seeded {
    fn new(seed: u64) -> Seeded {
        Seeded(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % bound
    }
}

/// The faults of a chaotic simulation, as the chaos platform's own spec: its seeded decisions
/// (a kill at one of its kill points, duplicate deliveries) are the ones the chaos wrappers
/// make on a real platform.
fn rates(kill: f64, duplicate: f64) -> ChaosSpec {
    ChaosSpec {
        kill,
        duplicate,
        ..ChaosSpec::default()
    }
}

/// One delivery of an invocation event.
#[derive(Debug, Clone)]
struct Delivery {
    batch: BatchId,
    attempt: u32,
    recovering: Vec<BatchId>,
    backup: bool,
}

#[derive(Default)]
struct World {
    fan_in: HashMap<String, BTreeSet<String>>,
    claims: HashSet<String>,
    done_marks: HashMap<String, Vec<u8>>,
    uploaded: HashSet<BatchId>,
    stored: HashSet<TaskId>,
    done: HashSet<TaskId>,
    run_order: Vec<TaskId>,
    invocations: VecDeque<Delivery>,
    /// Messages on the result channel, in order: reports and the platform's failure records.
    messages: VecDeque<DriverEvent>,
    invocation_count: usize,
    /// Deliver every fan-in twice, as a retried parent would.
    repeat_fan_in: bool,
    /// Fan-ins delivered a second time (checked to happen when asked for).
    repeated_fan_ins: usize,
    faults: Option<Chaos>,
    kills: usize,
    /// Deliveries taken off the platform's queue (each may be duplicated).
    deliveries: usize,
    duplicates: usize,
    /// Deliveries that lost their claim to another delivery of the same event.
    claims_lost: usize,
    /// Task runs, counting re-executions.
    task_runs: usize,
    /// Every protocol event, in order: what a replay must reproduce.
    trace: Vec<String>,
}

impl World {
    /// Performs the driver's actions as the client's shell does; returns (tasks passed on to
    /// progress, whether the run completed).
    fn perform(&mut self, driver: &mut Driver, actions: Vec<DriverAction>) -> (usize, bool) {
        let mut pending: VecDeque<DriverAction> = actions.into();
        let (mut finished_tasks, mut completed) = (0, false);
        while let Some(action) = pending.pop_front() {
            match action {
                DriverAction::Invoke { batch } => {
                    self.trace.push(format!("client invokes {}", batch.0));
                    self.deliver(Delivery {
                        batch,
                        attempt: FIRST_ATTEMPT,
                        recovering: vec![],
                        backup: false,
                    });
                }
                DriverAction::Recover {
                    batch,
                    attempt,
                    recovering,
                    backup,
                } => {
                    self.trace.push(format!(
                        "client recovers {} at {attempt} through {recovering:?}",
                        batch.0
                    ));
                    self.deliver(Delivery {
                        batch,
                        attempt,
                        recovering,
                        backup,
                    });
                }
                DriverAction::FanIn {
                    batch,
                    key,
                    member,
                    expected,
                } => {
                    let set = self.fan_in.entry(key).or_default();
                    let released = set.insert(member) && set.len() == expected as usize;
                    self.trace
                        .push(format!("upload fan-in -> {} released={released}", batch.0));
                    pending.extend(
                        driver.handle(DriverEvent::UploadFanInAnswered { batch, released }, 1),
                    );
                }
                DriverAction::TasksFinished { records, .. } => finished_tasks += records.len(),
                DriverAction::RenewLease => panic!("nobody took the client for gone"),
                DriverAction::Completed => completed = true,
                DriverAction::Failed(failure) => panic!("the run failed: {failure:?}"),
            }
        }
        (finished_tasks, completed)
    }

    /// The client's upload of batches: it tells the driver, and performs what the driver asks.
    fn upload(&mut self, driver: &mut Driver, batch: BatchId) -> (usize, bool) {
        assert!(
            self.uploaded.insert(batch),
            "batch {} uploaded twice",
            batch.0
        );
        self.trace.push(format!("upload {}", batch.0));
        let actions = driver.handle(DriverEvent::Uploaded { batch }, 1);
        self.perform(driver, actions)
    }

    /// Hands an invocation to the platform, which may deliver it twice.
    /// Duplicates are decided when a delivery is picked to run, from the seeded generator.
    fn deliver(&mut self, delivery: Delivery) {
        self.invocations.push_back(delivery);
    }

    /// Whether the invocation dies here: it was chosen to die at this kind of point (see
    /// `run_invocation`), and for mid-task kills, at this task.
    fn kill(
        &mut self,
        doomed: Option<KillPoint>,
        point: KillPoint,
        id: &str,
        first: BatchId,
    ) -> bool {
        if doomed != Some(point) {
            return false;
        }
        self.kills += 1;
        self.trace.push(format!("{id} killed {}", point.name()));
        // The platform records the failure on the result channel.
        self.messages.push_back(DriverEvent::PlatformFailure {
            invocation: Some(id.to_owned()),
            batch: Some(first),
            error_type: "Runtime.ExitError".into(),
            message: format!("killed {}", point.name()),
        });
        true
    }

    fn run_invocation(
        &mut self,
        graph: &Graph,
        plan: &Plan,
        delivery: Delivery,
        choice: &mut Seeded,
    ) {
        self.invocation_count += 1;
        let id = format!("invocation-{}", self.invocation_count);
        let first = delivery.batch;
        // A failure record names the batch the event was for: a recovery's target.
        let named = delivery.recovering.last().copied().unwrap_or(first);
        self.trace.push(format!("{id} starts {}", first.0));
        // A function dies with probability `kill`, at one kind of point chosen at random (the
        // first time it gets there; it survives if it never does).
        let doomed = self
            .faults
            .as_ref()
            .and_then(|chaos| chaos.kill_point(&[&id, "kill"]));
        if self.kill(doomed, KillPoint::BeforeStart, &id, named) {
            return;
        }
        let mut executor = Executor::new("run".into(), id.clone(), false, first)
            .with_attempt(delivery.attempt, delivery.recovering)
            .as_backup(delivery.backup);
        let mut held: HashSet<TaskId> = HashSet::new();
        let mut queue: VecDeque<ExecutorAction> = executor.handle(ExecutorEvent::Start, 0).into();
        let mut ran_a_batch = false;
        while let Some(action) = queue.pop_front() {
            let events = match action {
                ExecutorAction::Claim { key } => {
                    let won = self.claims.insert(key);
                    if !won {
                        self.claims_lost += 1;
                    }
                    vec![ExecutorEvent::Claimed { won }]
                }
                ExecutorAction::LoadBatch { batch } => {
                    if ran_a_batch && self.kill(doomed, KillPoint::BecomingChild, &id, named) {
                        return;
                    }
                    assert!(
                        self.uploaded.contains(&batch),
                        "batch {} loaded before uploaded",
                        batch.0
                    );
                    vec![ExecutorEvent::BatchLoaded {
                        spec: BatchSpec::from_plan(plan, batch),
                    }]
                }
                ExecutorAction::LoadInputs { tasks } => {
                    for task in &tasks {
                        assert!(
                            self.stored.contains(task),
                            "input {task} loaded before stored"
                        );
                        held.insert(*task);
                    }
                    vec![ExecutorEvent::InputsLoaded { bytes: 0 }]
                }
                ExecutorAction::RunTasks => {
                    let spec = executor.spec().unwrap().clone();
                    for input in &spec.inputs {
                        assert!(held.contains(input), "input {input} not in memory");
                    }
                    let mut records = Vec::new();
                    self.trace.push(format!("{id} runs batch {}", spec.batch.0));
                    let dies_after = (doomed == Some(KillPoint::MidTask))
                        .then(|| choice.below(spec.tasks.len()));
                    for (position, &task) in spec.tasks.iter().enumerate() {
                        if dies_after == Some(position)
                            && self.kill(doomed, KillPoint::MidTask, &id, named)
                        {
                            return;
                        }
                        for dependency in graph.dependencies(task) {
                            assert!(self.done.contains(dependency), "{task} before {dependency}");
                            assert!(
                                held.contains(dependency),
                                "{task} runs without its input {dependency} in memory"
                            );
                        }
                        let first_run = self.done.insert(task);
                        assert!(
                            first_run || self.faults.is_some(),
                            "task {task} ran twice without a fault"
                        );
                        self.task_runs += 1;
                        self.run_order.push(task);
                        held.insert(task);
                        if spec.stored_outputs.contains(&task) {
                            self.stored.insert(task);
                        }
                        records.push(TaskRecord {
                            task,
                            start_us: 0,
                            duration_us: 0,
                            stored_bytes: 0,
                        });
                    }
                    ran_a_batch = true;
                    vec![ExecutorEvent::TasksFinished {
                        records,
                        warnings: vec![],
                    }]
                }
                ExecutorAction::DeleteClaim { key } => {
                    self.claims.remove(&key);
                    vec![]
                }
                ExecutorAction::MarkDone { key, content } => {
                    let existing = match self.done_marks.entry(key) {
                        Entry::Occupied(mark) => Some(mark.get().clone()),
                        Entry::Vacant(place) => {
                            place.insert(content.into_bytes());
                            None
                        }
                    };
                    // The mark is written; the fan-ins are not.
                    if self.kill(doomed, KillPoint::BeforeFanIns, &id, named) {
                        return;
                    }
                    vec![ExecutorEvent::MarkedDone { existing }]
                }
                ExecutorAction::FanIn {
                    child,
                    key,
                    member,
                    expected,
                } => {
                    let set = self.fan_in.entry(key).or_default();
                    let added = set.insert(member.clone());
                    let released = added && set.len() == expected as usize;
                    self.trace.push(format!(
                        "fan-in {member} -> {} released={released}",
                        child.0
                    ));
                    let mut events = vec![ExecutorEvent::FanInAnswered { child, released }];
                    if self.repeat_fan_in {
                        // The repeat adds nothing: set semantics.
                        self.repeated_fan_ins += 1;
                        assert!(!set.insert(member));
                        events.push(ExecutorEvent::FanInAnswered {
                            child,
                            released: false,
                        });
                    }
                    if released && self.kill(doomed, KillPoint::BeforeInvoke, &id, named) {
                        return;
                    }
                    events
                }
                ExecutorAction::CheckBatchExists { batch } => {
                    // Inputs are only loaded once stored: asking means a broken protocol.
                    panic!("batch {} asked whether the run is gone", batch.0)
                }
                ExecutorAction::CheckStop { .. }
                | ExecutorAction::Continue
                | ExecutorAction::StopTasks => {
                    panic!("the simulation never asks at task boundaries")
                }
                ExecutorAction::Invoke { batch } => {
                    self.trace.push(format!("{id} invokes {}", batch.0));
                    self.deliver(Delivery {
                        batch,
                        attempt: FIRST_ATTEMPT,
                        recovering: vec![],
                        backup: false,
                    });
                    vec![]
                }
                ExecutorAction::Report(report) => {
                    self.trace.push(format!("{id} reports {report:?}"));
                    self.messages.push_back(DriverEvent::Report(report));
                    vec![]
                }
                ExecutorAction::Retain { tasks } => {
                    let keep: HashSet<TaskId> = tasks.into_iter().collect();
                    held.retain(|task| keep.contains(task));
                    vec![]
                }
                ExecutorAction::Finish => {
                    assert!(queue.is_empty(), "actions after Finish: {queue:?}");
                    return;
                }
            };
            // The host performs the reaction to its events before the actions queued earlier.
            let mut reaction = Vec::new();
            for event in events {
                reaction.extend(executor.handle(event, 0));
            }
            for action in reaction.into_iter().rev() {
                queue.push_front(action);
            }
        }
        panic!("the invocation ended without Finish");
    }
}

/// Simulates a run; after each batch it uploads, the client lets up to `upload_stride`
/// invocations run (0: it uploads everything first). Which pending invocation starts next is
/// drawn from `seed`, and so are the faults.
fn simulate(
    graph: &Graph,
    options: &PlanOptions,
    repeat_fan_in: bool,
    upload_stride: usize,
    seed: u64,
) -> World {
    simulate_with_faults(
        graph,
        options,
        repeat_fan_in,
        upload_stride,
        seed,
        rates(0.0, 0.0),
    )
}

fn simulate_with_faults(
    graph: &Graph,
    options: &PlanOptions,
    repeat_fan_in: bool,
    upload_stride: usize,
    seed: u64,
    faults: ChaosSpec,
) -> World {
    let mut choice = Seeded::new(seed);
    let faultless = faults.kill == 0.0 && faults.duplicate == 0.0;
    let chaos = (!faultless).then(|| Chaos::new(faults, seed));
    let plan = Plan::build(graph, options);
    let mut world = World {
        repeat_fan_in,
        faults: chaos,
        ..World::default()
    };
    // Enough budget for the fault rates the tests use: what they check is correctness.
    let policy = RecoveryPolicy {
        crash_retries: 50,
        run_retries: 10_000,
        ..RecoveryPolicy::default()
    };
    let mut driver = Driver::new("run".into(), &plan, 1_000_000).with_recovery(policy);
    let order = plan.upload_order();
    assert_eq!(order.len(), plan.batches().len());
    let mut completed = false;
    if plan.batches().is_empty() {
        assert_eq!(
            driver.handle(DriverEvent::Start, 0),
            vec![DriverAction::Completed]
        );
        completed = true;
    } else {
        assert!(driver.handle(DriverEvent::Start, 0).is_empty());
    }
    let mut finished_tasks = 0;
    let mut pending_uploads = order.as_slice();
    let mut delayed_duplicates: Vec<Delivery> = Vec::new();
    loop {
        if let Some((&next, rest)) = pending_uploads.split_first() {
            let (tasks, done) = world.upload(&mut driver, next);
            finished_tasks += tasks;
            completed |= done;
            pending_uploads = rest;
        }
        let uploads_left = !pending_uploads.is_empty();
        let mut ran = 0;
        while !uploads_left || ran < upload_stride {
            if world.invocations.is_empty() {
                // Late duplicates arrive once everything else ran.
                match delayed_duplicates.pop() {
                    Some(late) => world.invocations.push_back(late),
                    None => break,
                }
            }
            let position = choice.below(world.invocations.len());
            let Some(delivery) = world.invocations.remove(position) else {
                break;
            };
            world.deliveries += 1;
            let identity = [
                delivery.batch.0.to_string(),
                delivery.attempt.to_string(),
                world.deliveries.to_string(),
            ];
            let identity: Vec<&str> = identity.iter().map(String::as_str).collect();
            let duplicated = world.faults.as_ref().is_some_and(|chaos| {
                chaos.happens(
                    chaos.spec().duplicate,
                    &[&identity[..], &["duplicate"]].concat(),
                )
            });
            if duplicated {
                world.duplicates += 1;
                let at_once = world.faults.as_ref().is_some_and(|chaos| {
                    chaos.happens(0.5, &[&identity[..], &["at-once"]].concat())
                });
                if at_once {
                    world.invocations.push_back(delivery.clone());
                } else {
                    delayed_duplicates.push(delivery.clone());
                }
            }
            ran += 1;
            world.run_invocation(graph, &plan, delivery, &mut choice);
            while let Some(message) = world.messages.pop_front() {
                let actions = driver.handle(message, 1);
                let (tasks, done) = world.perform(&mut driver, actions);
                finished_tasks += tasks;
                completed |= done;
            }
        }
        if !uploads_left && world.invocations.is_empty() && delayed_duplicates.is_empty() {
            break;
        }
    }
    assert!(
        completed,
        "the driver did not complete: a hang. The trace:\n{}",
        world.trace.join("\n")
    );
    assert_eq!(
        finished_tasks,
        graph.len(),
        "every task passed on to progress exactly once"
    );
    assert_eq!(world.done.len(), graph.len());
    for output in graph.outputs() {
        assert!(world.stored.contains(output), "output {output} not stored");
    }
    if faultless {
        assert!(
            driver.is_drained(),
            "{} batches still running",
            driver.running_batches()
        );
        assert!(world.invocation_count <= plan.batches().len());
        assert_eq!(world.task_runs, graph.len());
        assert_eq!(driver.recoveries(), 0);
    }
    let fan_ins = plan
        .batches()
        .iter()
        .map(|batch| batch.children.len())
        .sum::<usize>();
    if repeat_fan_in && faultless {
        assert_eq!(
            world.repeated_fan_ins, fan_ins,
            "every fan-in delivered twice"
        );
    } else if !repeat_fan_in {
        assert_eq!(world.repeated_fan_ins, 0);
    }
    world
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn every_task_runs_once_in_dependency_order(
        graph in acyclic_graph(1..=120, 4),
        parallelism in 1usize..6,
        batches_per_function in 1usize..5,
        repeat in any::<bool>(),
        upload_stride in 0usize..4,
        seed in any::<u64>(),
    ) {
        let options = PlanOptions { parallelism, batches_per_function, ..PlanOptions::default() };
        simulate(&graph, &options, repeat, upload_stride, seed);
    }

    #[test]
    fn the_same_seed_replays_the_same_trace(
        graph in acyclic_graph(1..=80, 4),
        parallelism in 1usize..6,
        upload_stride in 0usize..4,
        seed in any::<u64>(),
    ) {
        let options = PlanOptions { parallelism, batches_per_function: 2, ..PlanOptions::default() };
        let first = simulate(&graph, &options, false, upload_stride, seed);
        let second = simulate(&graph, &options, false, upload_stride, seed);
        prop_assert_eq!(&first.trace, &second.trace);
        prop_assert!(!first.trace.is_empty());
    }

    #[test]
    fn killed_functions_are_redone_to_the_same_complete_run(
        graph in acyclic_graph(1..=100, 4),
        parallelism in 1usize..6,
        batches_per_function in 1usize..5,
        upload_stride in 0usize..4,
        kill in prop_oneof![Just(0.05), Just(0.2)],
        seed in any::<u64>(),
    ) {
        let options = PlanOptions { parallelism, batches_per_function, ..PlanOptions::default() };
        let faults = rates(kill, 0.0);
        simulate_with_faults(&graph, &options, false, upload_stride, seed, faults);
    }

    #[test]
    fn duplicate_deliveries_run_each_event_once(
        graph in acyclic_graph(1..=100, 4),
        parallelism in 1usize..6,
        batches_per_function in 1usize..5,
        upload_stride in 0usize..4,
        seed in any::<u64>(),
    ) {
        let options = PlanOptions { parallelism, batches_per_function, ..PlanOptions::default() };
        let faults = rates(0.0, 0.3);
        let world = simulate_with_faults(&graph, &options, false, upload_stride, seed, faults);
        // Every duplicate lost its claim: no task ran twice.
        prop_assert_eq!(world.claims_lost, world.duplicates);
        prop_assert_eq!(world.task_runs, graph.len());
    }

    #[test]
    fn kills_and_duplicates_together_still_complete(
        graph in acyclic_graph(1..=100, 4),
        parallelism in 1usize..6,
        upload_stride in 0usize..4,
        seed in any::<u64>(),
    ) {
        let options = PlanOptions { parallelism, batches_per_function: 2, ..PlanOptions::default() };
        let faults = rates(0.1, 0.1);
        let first =
            simulate_with_faults(&graph, &options, false, upload_stride, seed, faults.clone());
        // Faults replay from the seed too.
        let second = simulate_with_faults(&graph, &options, false, upload_stride, seed, faults);
        prop_assert_eq!(&first.trace, &second.trace);
    }
}

#[test]
fn every_kill_point_happens_and_is_recovered_from() {
    // A tree of 64 leaves: chains of hand-overs, fan-ins and invocations of children.
    let graph = Graph::tree_reduction(64);
    let options = PlanOptions {
        parallelism: 8,
        batches_per_function: 2,
        max_batch_tasks: 4,
    };
    let mut points = HashSet::new();
    let mut kills = 0;
    for seed in 0..40 {
        let world = simulate_with_faults(&graph, &options, false, 1, seed, rates(0.15, 0.1));
        kills += world.kills;
        for line in &world.trace {
            if let Some((_, point)) = line.split_once(" killed ") {
                points.insert(point.to_owned());
            }
        }
    }
    assert!(kills > 40, "{kills} kills");
    for point in KillPoint::ALL.map(KillPoint::name) {
        assert!(points.contains(point), "no kill {point}: {points:?}");
    }
}

#[test]
fn different_seeds_interleave_invocations_differently() {
    // Independent sources and a sum: many leaves pending at once, so the order differs.
    let mut keys: Vec<String> = (0..24).map(|i| format!("source-{i}")).collect();
    let mut dependencies: Vec<Vec<u32>> = vec![vec![]; 24];
    keys.push("sum".into());
    dependencies.push((0..24).collect());
    let graph = Graph::new(keys, dependencies, vec![], vec![24]).unwrap();
    let options = PlanOptions {
        parallelism: 8,
        batches_per_function: 1,
        ..PlanOptions::default()
    };
    let traces: HashSet<Vec<String>> = (0..8)
        .map(|seed| simulate(&graph, &options, false, 0, seed).trace)
        .collect();
    assert!(traces.len() > 1, "every seed gave the same trace");
}

#[test]
fn a_tree_reduction_needs_few_invocations() {
    // 64 leaves summed pairwise: 127 tasks.
    let graph = Graph::tree_reduction(64);
    let options = PlanOptions {
        parallelism: 2,
        batches_per_function: 2,
        ..PlanOptions::default()
    };
    let world = simulate(&graph, &options, false, 0, 7);
    // 127 tasks in about parallelism * batches_per_function leaf batches; the fan-ins above
    // them are run by the parent that completes them, without a new invocation.
    assert!(
        world.invocation_count <= 6,
        "{} invocations",
        world.invocation_count
    );
}

#[test]
fn the_driver_ignores_other_runs_and_repeats_and_notices_silence() {
    let graph = Graph::new(
        vec!["a".into(), "b".into()],
        vec![vec![], vec![0]],
        vec![],
        vec![1],
    )
    .unwrap();
    let plan = Plan::build(&graph, &PlanOptions::default());
    let mut driver = Driver::new("run".into(), &plan, 100);
    assert!(driver.handle(DriverEvent::Start, 0).is_empty());
    // A leaf is invoked as soon as it is uploaded.
    assert_eq!(
        driver.handle(upload(plan.leaves()[0]), 0),
        vec![DriverAction::Invoke {
            batch: plan.leaves()[0]
        }]
    );
    let finished = |run: &str| {
        Report::BatchFinished(dask_serverless_core::BatchReport {
            run_id: run.into(),
            batch: BatchId(0),
            invocation: String::new(),
            cold: false,
            tasks: vec![],
            loaded_bytes: 0,
            invoked: vec![],
            became: None,
            warnings: vec![],
            store: Default::default(),
            resources: Default::default(),
        })
    };
    assert!(
        driver
            .handle(DriverEvent::Report(finished("other-run")), 10)
            .is_empty()
    );
    assert!(driver.handle(DriverEvent::Tick, 50).is_empty());
    let mut silent = Driver::new("run".into(), &plan, 100);
    silent.handle(DriverEvent::Start, 0);
    let actions = silent.handle(DriverEvent::Tick, 500);
    assert!(matches!(
        actions.as_slice(),
        [DriverAction::Failed(
            dask_serverless_core::RunFailure::Lost { .. }
        )]
    ));
    assert!(silent.handle(DriverEvent::Tick, 600).is_empty());

    if plan.batches().len() == 1 {
        let actions = driver.handle(DriverEvent::Report(finished("run")), 20);
        assert_eq!(actions.last(), Some(&DriverAction::Completed));
        assert!(
            driver
                .handle(DriverEvent::Report(finished("run")), 21)
                .is_empty()
        );
    }
}

#[test]
fn a_platform_failure_fails_the_run_once() {
    let graph = Graph::new(vec!["a".into()], vec![vec![]], vec![], vec![0]).unwrap();
    let plan = Plan::build(&graph, &PlanOptions::default());
    let mut driver = Driver::new("run".into(), &plan, 100).with_recovery(RecoveryPolicy::never());
    driver.handle(DriverEvent::Start, 0);
    let failure = DriverEvent::PlatformFailure {
        invocation: None,
        batch: Some(BatchId(0)),
        error_type: "Runtime.ExitError".into(),
        message: "Runtime exited".into(),
    };
    let actions = driver.handle(failure.clone(), 1);
    assert!(matches!(actions.as_slice(), [DriverAction::Failed(_)]));
    assert!(driver.is_over());
    assert!(driver.handle(failure, 2).is_empty());
}

/// The client uploaded a batch.
fn upload(batch: BatchId) -> DriverEvent {
    DriverEvent::Uploaded { batch }
}

fn finished_report(batch: u32, invoked: &[u32], became: Option<u32>) -> Report {
    Report::BatchFinished(dask_serverless_core::BatchReport {
        run_id: "run".into(),
        batch: BatchId(batch),
        invocation: String::new(),
        cold: false,
        tasks: vec![],
        loaded_bytes: 0,
        invoked: invoked.iter().map(|&c| BatchId(c)).collect(),
        became: became.map(BatchId),
        warnings: vec![],
        store: Default::default(),
        resources: Default::default(),
    })
}

#[test]
fn after_a_failure_the_driver_follows_running_batches_until_drained() {
    // Eight independent sources feeding one sum: several leaf batches and a fan-in.
    let mut keys: Vec<String> = (0..8).map(|i| format!("source-{i}")).collect();
    let mut dependencies: Vec<Vec<u32>> = vec![vec![]; 8];
    keys.push("sum".into());
    dependencies.push((0..8).collect());
    let graph = Graph::new(keys, dependencies, vec![], vec![8]).unwrap();
    let options = PlanOptions {
        parallelism: 2,
        batches_per_function: 2,
        ..PlanOptions::default()
    };
    let plan = Plan::build(&graph, &options);
    let leaves: Vec<u32> = plan.leaves().iter().map(|c| c.0).collect();
    assert!(leaves.len() >= 2, "{}", plan.explain(&graph));
    let mut driver =
        Driver::new("run".into(), &plan, 1_000_000).with_recovery(RecoveryPolicy::never());
    driver.handle(DriverEvent::Start, 0);
    for &leaf in plan.leaves() {
        driver.handle(upload(leaf), 0);
    }
    assert_eq!(driver.running_batches(), leaves.len());

    // The first leaf fails: the run is over but the other leaves still run.
    let failure = Report::BatchFailed(dask_serverless_core::FailureReport {
        run_id: "run".into(),
        batch: BatchId(leaves[0]),
        invocation: String::new(),
        cause: dask_serverless_core::FailureCause::Infrastructure {
            message: "broken".into(),
        },
    });
    let actions = driver.handle(DriverEvent::Report(failure), 1);
    assert!(matches!(actions.as_slice(), [DriverAction::Failed(_)]));
    assert!(!driver.is_drained());

    // A child's report may arrive before the report of the parent that invoked it.
    let last = plan.batches().len() as u32 - 1;
    assert!(
        driver
            .handle(DriverEvent::Report(finished_report(last, &[], None)), 2)
            .is_empty()
    );
    for &leaf in &leaves[1..] {
        let became = (leaf == leaves[leaves.len() - 1]).then_some(last);
        assert!(
            driver
                .handle(DriverEvent::Report(finished_report(leaf, &[], became)), 3)
                .is_empty()
        );
    }
    assert!(
        driver.is_drained(),
        "{} still running",
        driver.running_batches()
    );
}
