//! The event loop: the real [`Driver`] and one real [`Executor`] per invocation, on a virtual
//! clock, with the platform and the store as models.
//!
//! Each state machine's actions are performed as the tokio shells perform them, but instead of
//! IO each takes a modelled time (see [`PlatformParameters`]) and its answer is handed back when
//! that time has passed. Actions the shells run concurrently (fan-ins, invocations of released
//! children, the reads of a batch's inputs) take the longest of their times; actions without
//! IO take none. The platform model keeps instances (warm ones are reused, last freed first;
//! new ones pay a cold start and are limited by the concurrency limit and the scaling rate) and
//! a queue of events waiting for one. The client model turns the graph into a plan, pickles and
//! uploads batches in the plan's upload order, invokes what the driver asks for, hears reports
//! after the result channel's latency, and at the end fetches the outputs and deletes the run.
//!
//! Nothing here decides anything of the protocol: claims, done marks, fan-ins, becoming a
//! child, recovery and backups are the state machines' own.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};

use dask_serverless_chaos::{Chaos, ChaosSpec, KillPoint};
use dask_serverless_core::{
    BatchRecord, BatchResources, BatchSpec, BatchSteps, Driver, DriverAction, DriverEvent,
    Executor, ExecutorAction, ExecutorEvent, FIRST_ATTEMPT, LEASE_RENEWAL, Micros, RecoveryPolicy,
    Report, StoreTraffic, TaskRecord,
};
use dask_serverless_graph::TaskId;
use dask_serverless_plan::{BatchId, Plan};

use crate::parameters::{PlatformParameters, StoreKind};

/// What the tasks cost: by task id, the time each computes on one full vCPU of the machine
/// the durations were measured on, the bytes of its output, and the bytes of its pickled
/// definition (what the client uploads).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TaskCosts {
    pub duration_us: Vec<f64>,
    pub output_bytes: Vec<u64>,
    pub pickled_bytes: Vec<u64>,
}

impl TaskCosts {
    /// Every one of `tasks` tasks alike.
    pub fn uniform(tasks: usize, duration_us: f64, output_bytes: u64) -> TaskCosts {
        TaskCosts {
            duration_us: vec![duration_us; tasks],
            output_bytes: vec![output_bytes; tasks],
            pickled_bytes: vec![DEFAULT_PICKLED_BYTES; tasks],
        }
    }

    fn check(&self, tasks: usize) -> Result<(), SimulationError> {
        for (name, length) in [
            ("duration_us", self.duration_us.len()),
            ("output_bytes", self.output_bytes.len()),
            ("pickled_bytes", self.pickled_bytes.len()),
        ] {
            if length != tasks {
                return Err(SimulationError::Costs(format!(
                    "{name} has {length} entries for {tasks} tasks"
                )));
            }
        }
        if let Some(bad) = self
            .duration_us
            .iter()
            .find(|duration| !duration.is_finite() || **duration < 0.0)
        {
            return Err(SimulationError::Costs(format!(
                "a task duration must be finite and not negative, not {bad}"
            )));
        }
        Ok(())
    }
}

/// A task's pickled definition when nothing better is known (a function reference and a few
/// keys).
pub const DEFAULT_PICKLED_BYTES: u64 = 250;

/// What one simulation is asked to do.
#[derive(Debug, Clone)]
pub struct SimulationOptions {
    pub memory_mb: f64,
    /// The function's reserved concurrency; `None`: the platform's limit.
    pub max_concurrency: Option<u32>,
    /// Seeds every draw (latencies, cold starts, faults).
    pub seed: u64,
    /// Faults to inject, as the chaos platform's spec.
    pub faults: ChaosSpec,
    /// The function's timeout: the driver's silence limit follows it.
    pub timeout_us: Micros,
    /// How often a batch's progress is reported (the handler's 0.1 s).
    pub progress_interval_us: Micros,
    /// Instances already started and warm when the run begins (a local cluster prewarms its
    /// workers; a Lambda cluster's start leaves one).
    pub warm_instances: u32,
}

impl Default for SimulationOptions {
    fn default() -> SimulationOptions {
        SimulationOptions {
            memory_mb: 2_048.0,
            max_concurrency: None,
            seed: 0,
            faults: ChaosSpec::default(),
            timeout_us: 300_000_000,
            progress_interval_us: 100_000,
            warm_instances: 0,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SimulationError {
    #[error("task costs do not fit the plan: {0}")]
    Costs(String),
    #[error("the simulated run did not end within {0} simulated seconds")]
    NoEnd(f64),
}

/// A simulated run: the same records as a real run's client keeps, and what a simulation
/// can tell besides.
#[derive(Debug, Clone)]
pub struct SimulatedRun {
    pub completed: bool,
    /// Why the run failed, when it did.
    pub failure: Option<String>,
    /// Simulated time of each client phase, µs: graph and plan, the upload, the run (from the
    /// end of the upload to the driver's completion), fetching and cleaning up.
    pub graph_us: Micros,
    pub upload_us: Micros,
    pub run_us: Micros,
    pub fetch_us: Micros,
    pub total_us: Micros,
    pub batch_records: Vec<BatchRecord>,
    pub task_records: Vec<TaskRecord>,
    pub client_traffic: StoreTraffic,
    /// Invocations made by the client and the functions, and of them the cold starts.
    pub invocations: u64,
    pub cold_starts: u64,
    pub recoveries: u32,
    pub backups: u32,
    /// Invocations that waited for a place (concurrency or scaling rate), and the most
    /// instances busy at once.
    pub throttled: u64,
    pub peak_concurrency: u32,
    pub channel_receives: u64,
    /// The batches on the path that decided the run's end, first to last: each the last of
    /// its parents to finish before its child could start.
    pub critical_path: Vec<BatchId>,
    pub kills: u64,
    pub duplicates: u64,
    /// Invocations refused (429) at least once, then accepted after backoff (`throttle`).
    pub refused_invocations: u64,
    /// Events the simulation processed (its own cost).
    pub events: u64,
}

/// One delivery of an invocation event.
#[derive(Debug, Clone)]
struct Delivery {
    batch: BatchId,
    attempt: u32,
    recovering: Vec<BatchId>,
    backup: bool,
    sent_at: Micros,
    /// Which delivery of this event (duplicates have a higher one).
    copy: u32,
}

#[derive(Debug)]
enum Wake {
    /// The client's upload of this batch is in the store.
    Uploaded(BatchId),
    /// The client's fan-in for an upload was answered.
    UploadFanIn { batch: BatchId, released: bool },
    /// An event reaches the platform.
    Arrive(Delivery),
    /// The platform looks again for places for its waiting events.
    Dispatch,
    /// An invocation's IO is answered (or its cold start is over: no events).
    Resume {
        invocation: usize,
        events: Vec<ExecutorEvent>,
    },
    /// A message reaches the client.
    Message(DriverEvent),
    /// The client's periodic look (stragglers, silence).
    Tick,
    /// The outputs are fetched and the run deleted.
    Ended,
}

/// The state of one invocation.
#[derive(Debug)]
struct Invocation {
    id: String,
    instance: usize,
    executor: Executor,
    actions: VecDeque<ExecutorAction>,
    /// The batch the platform names in a failure record: a recovery's target.
    named: BatchId,
    cold: bool,
    init_us: Micros,
    sent_at: Micros,
    batch_started: Micros,
    reported_a_batch: bool,
    traffic: StoreTraffic,
    steps: BatchSteps,
    messages: u64,
    cpu_us: Micros,
    held_bytes: u64,
    peak_bytes: u64,
    doomed: Option<KillPoint>,
    ran_a_batch: bool,
    finished: bool,
    /// The batch's tasks being run, between two looks at the store.
    task_run: Option<TaskRun>,
}

/// A batch's tasks being run (see [`World::continue_tasks`]).
#[derive(Debug)]
struct TaskRun {
    spec: BatchSpec,
    stored: HashSet<TaskId>,
    /// The next task's position, and when it starts (µs, fractional).
    position: usize,
    at: f64,
    speed: f64,
    /// Whether the executor was asked about the boundary before the next task.
    checked: bool,
    records: Vec<TaskRecord>,
    /// Records sent in progress reports so far, and when the next may go.
    streamed: usize,
    next_progress: f64,
}

/// The simulation's world: the platform, the store's contents as the protocol sees them,
/// and the client.
struct World<'a> {
    plan: &'a Plan,
    costs: &'a TaskCosts,
    parameters: &'a PlatformParameters,
    options: &'a SimulationOptions,
    draws: Chaos,
    now: Micros,
    sequence: u64,
    queue: BinaryHeap<Reverse<(Micros, u64)>>,
    wakes: HashMap<u64, Wake>,
    driver: Driver,
    run_id: String,
    // The store, as the protocol sees it.
    claims: HashSet<String>,
    done_marks: HashMap<String, Vec<u8>>,
    fan_in: HashMap<String, HashSet<String>>,
    stored_objects: u64,
    /// Request-rate limits: when the prefix can take its next read and write.
    next_read_slot: f64,
    next_write_slot: f64,
    // The platform.
    invocations: Vec<Invocation>,
    idle_instances: Vec<usize>,
    instances: usize,
    starting_or_busy: u32,
    waiting: VecDeque<Delivery>,
    dispatch_scheduled: bool,
    first_invoke_at: Option<Micros>,
    // The client.
    completed_at: Option<Micros>,
    failure: Option<String>,
    upload_started_at: Micros,
    uploads_done_at: Micros,
    batch_finished_at: Vec<Option<Micros>>,
    // The records.
    batch_records: Vec<BatchRecord>,
    task_records: Vec<TaskRecord>,
    client_traffic: StoreTraffic,
    /// The lease's content: how often the client wrote it (functions compare contents).
    lease_writes: u64,
    invocation_count: u64,
    cold_starts: u64,
    throttled: u64,
    peak_concurrency: u32,
    channel_receives: u64,
    kills: u64,
    duplicates: u64,
    refused_invocations: u64,
    events: u64,
    concurrency_limit: u32,
}

/// The longest a simulated run may last before it is called stuck (a day).
const LONGEST_RUN_US: Micros = 86_400_000_000;
/// How often the client looks at its driver without a message.
const TICK_US: Micros = 100_000;

/// Simulates one run of `plan` with `costs` on the platform `parameters` describe.
pub fn simulate(
    plan: &Plan,
    costs: &TaskCosts,
    parameters: &PlatformParameters,
    options: &SimulationOptions,
) -> Result<SimulatedRun, SimulationError> {
    costs.check(plan.task_count())?;
    let run_id = format!("sim-{}", options.seed);
    let silence_limit = options.timeout_us + 30_000_000;
    // A reserved concurrency stands for the account's limit (raised, if need be).
    let concurrency = options
        .max_concurrency
        .unwrap_or(parameters.concurrency_limit)
        .max(1);
    let driver = Driver::new(run_id.clone(), plan, silence_limit)
        .with_recovery(RecoveryPolicy::default())
        .with_concurrency_limit(Some(concurrency as usize));
    let world = World {
        plan,
        costs,
        parameters,
        options,
        draws: Chaos::new(options.faults.clone(), options.seed),
        now: 0,
        sequence: 0,
        queue: BinaryHeap::new(),
        wakes: HashMap::new(),
        driver,
        run_id,
        claims: HashSet::new(),
        done_marks: HashMap::new(),
        fan_in: HashMap::new(),
        stored_objects: 0,
        next_read_slot: 0.0,
        next_write_slot: 0.0,
        invocations: Vec::new(),
        idle_instances: (0..options.warm_instances as usize).rev().collect(),
        instances: options.warm_instances as usize,
        starting_or_busy: 0,
        waiting: VecDeque::new(),
        dispatch_scheduled: false,
        first_invoke_at: None,
        completed_at: None,
        failure: None,
        upload_started_at: 0,
        uploads_done_at: 0,
        batch_finished_at: vec![None; plan.batches().len()],
        batch_records: Vec::new(),
        task_records: Vec::with_capacity(plan.task_count()),
        client_traffic: StoreTraffic::default(),
        lease_writes: 0,
        invocation_count: 0,
        cold_starts: 0,
        throttled: 0,
        peak_concurrency: 0,
        channel_receives: 0,
        kills: 0,
        duplicates: 0,
        refused_invocations: 0,
        events: 0,
        concurrency_limit: concurrency,
    };
    world.run()
}

/// How long an action of an invocation takes, and what answers it.
struct Outcome {
    duration_us: f64,
    events: Vec<ExecutorEvent>,
    /// The invocation dies once the action's time has passed.
    dies: Option<KillPoint>,
}

impl Outcome {
    fn at_once(events: Vec<ExecutorEvent>) -> Outcome {
        Outcome {
            duration_us: 0.0,
            events,
            dies: None,
        }
    }

    fn after(duration_us: f64, events: Vec<ExecutorEvent>) -> Outcome {
        Outcome {
            duration_us,
            events,
            dies: None,
        }
    }
}

impl World<'_> {
    fn schedule(&mut self, delay_us: f64, wake: Wake) {
        let at = self.now + delay_us.max(0.0).round() as Micros;
        self.sequence += 1;
        self.queue.push(Reverse((at, self.sequence)));
        self.wakes.insert(self.sequence, wake);
    }

    /// A standard normal draw, a function of the seed and `identity` alone (Box-Muller).
    fn normal(&self, identity: &[&str]) -> f64 {
        let mut first = identity.to_vec();
        first.push("u");
        let mut second = identity.to_vec();
        second.push("v");
        let u = self.draws.draw(&first).max(1e-12);
        let v = self.draws.draw(&second);
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// The client writes the run's lease: a new content, as the shells' lease carries the
    /// time it was written.
    fn write_lease(&mut self) {
        self.lease_writes += 1;
        self.client_traffic.write(16);
    }

    fn run_is_live(&self) -> bool {
        self.completed_at.is_none() && self.failure.is_none()
    }

    fn run(mut self) -> Result<SimulatedRun, SimulationError> {
        let graph_us = (self.plan.task_count() as f64 * self.parameters.client_graph_per_task_us)
            .round() as Micros;
        self.now = graph_us;
        // The client writes the run's lease, then starts the driver and uploads.
        self.write_lease();
        let actions = self.driver.handle(DriverEvent::Start, self.now);
        self.perform(actions);
        self.upload_started_at = self.now;
        self.upload();
        self.schedule(TICK_US as f64, Wake::Tick);
        let mut last_lease = self.now;
        let mut ended_at = None;
        while let Some(Reverse((at, sequence))) = self.queue.pop() {
            let wake = self.wakes.remove(&sequence).expect("every wake is kept");
            self.now = at;
            self.events += 1;
            if self.now > LONGEST_RUN_US {
                return Err(SimulationError::NoEnd(LONGEST_RUN_US as f64 / 1e6));
            }
            match wake {
                Wake::Ended => {
                    ended_at = Some(self.now);
                    break;
                }
                Wake::Uploaded(batch) => {
                    let actions = self
                        .driver
                        .handle(DriverEvent::Uploaded { batch }, self.now);
                    self.perform(actions);
                }
                Wake::UploadFanIn { batch, released } => {
                    let event = DriverEvent::UploadFanInAnswered { batch, released };
                    let actions = self.driver.handle(event, self.now);
                    self.perform(actions);
                }
                Wake::Arrive(delivery) => {
                    self.first_invoke_at.get_or_insert(self.now);
                    self.waiting.push_back(delivery);
                    self.dispatch();
                    // Still waiting (the queue is first in, first out): it found no place.
                    if !self.waiting.is_empty() {
                        self.throttled += 1;
                    }
                }
                Wake::Dispatch => {
                    self.dispatch_scheduled = false;
                    self.dispatch();
                }
                Wake::Resume { invocation, events } => self.resume(invocation, events),
                Wake::Message(event) => {
                    if self.run_is_live() {
                        self.channel_receives += 1;
                        self.count(&event);
                        let actions = self.driver.handle(event, self.now);
                        self.perform(actions);
                    }
                }
                Wake::Tick => {
                    if self.run_is_live() {
                        if self.now - last_lease >= LEASE_RENEWAL {
                            self.write_lease();
                            last_lease = self.now;
                        }
                        let actions = self.driver.handle(DriverEvent::Tick, self.now);
                        self.perform(actions);
                        self.schedule(TICK_US as f64, Wake::Tick);
                    }
                }
            }
        }
        let Some(ended_at) = ended_at else {
            return Err(SimulationError::NoEnd(self.now as f64 / 1e6));
        };
        let run_end = self.completed_at.unwrap_or(ended_at);
        let critical_path = self.critical_path();
        Ok(SimulatedRun {
            completed: self.completed_at.is_some(),
            failure: self.failure,
            graph_us,
            upload_us: self.uploads_done_at.saturating_sub(self.upload_started_at),
            // As the client counts it: from the end of the upload.
            run_us: run_end.saturating_sub(self.uploads_done_at.max(self.upload_started_at)),
            fetch_us: ended_at.saturating_sub(run_end),
            total_us: ended_at,
            batch_records: self.batch_records,
            task_records: self.task_records,
            client_traffic: self.client_traffic,
            invocations: self.invocation_count,
            cold_starts: self.cold_starts,
            recoveries: self.driver.recoveries(),
            backups: self.driver.backups(),
            throttled: self.throttled,
            peak_concurrency: self.peak_concurrency,
            channel_receives: self.channel_receives,
            critical_path,
            kills: self.kills,
            duplicates: self.duplicates,
            refused_invocations: self.refused_invocations,
            events: self.events,
        })
    }

    /// The client pickles the batches one after the other in the plan's upload order and
    /// writes each with up to `client_operations_in_flight` writes at once.
    fn upload(&mut self) {
        let parameters = self.parameters;
        let mut pickled_at = self.now as f64;
        let mut free_at: BinaryHeap<Reverse<u64>> =
            (0..parameters.client_operations_in_flight.max(1))
                .map(|_| Reverse(self.now))
                .collect();
        for batch in self.plan.upload_order() {
            let planned = self.plan.batch(batch);
            pickled_at += planned.tasks.len() as f64 * parameters.client_pickle_per_task_us;
            let bytes = self.batch_bytes(batch);
            let Reverse(slot) = free_at.pop().expect("at least one slot");
            let start = self.write_slot(pickled_at.max(slot as f64));
            let latency = parameters
                .store
                .write_latency_us
                .at(self.normal(&["upload", &batch.0.to_string()]));
            let done =
                start + latency + bytes as f64 * 1e6 / parameters.client_bandwidth_bytes_per_s;
            free_at.push(Reverse(done as u64));
            self.client_traffic.write(bytes);
            self.stored_objects += 1;
            self.uploads_done_at = self.uploads_done_at.max(done as Micros);
            self.schedule(done - self.now as f64, Wake::Uploaded(batch));
        }
    }

    /// The earliest time from `at` when the store takes another write (a prefix's request
    /// rate), taking it.
    fn write_slot(&mut self, at: f64) -> f64 {
        match self.parameters.store.writes_per_s_per_prefix {
            Some(rate) => {
                let slot = at.max(self.next_write_slot);
                self.next_write_slot = slot + 1e6 / rate;
                slot
            }
            None => at,
        }
    }

    fn read_slot(&mut self, at: f64) -> f64 {
        match self.parameters.store.reads_per_s_per_prefix {
            Some(rate) => {
                let slot = at.max(self.next_read_slot);
                self.next_read_slot = slot + 1e6 / rate;
                slot
            }
            None => at,
        }
    }

    /// Performs the driver's actions as the client's shell does.
    fn perform(&mut self, actions: Vec<DriverAction>) {
        let mut pending: VecDeque<DriverAction> = actions.into();
        while let Some(action) = pending.pop_front() {
            match action {
                DriverAction::Invoke { batch } => {
                    self.send(batch, FIRST_ATTEMPT, Vec::new(), false, true);
                }
                DriverAction::Recover {
                    batch,
                    attempt,
                    recovering,
                    backup,
                } => self.send(batch, attempt, recovering, backup, true),
                DriverAction::FanIn {
                    batch,
                    key,
                    member,
                    expected,
                } => {
                    let released = self.add_to_fan_in(key, member, expected);
                    self.client_traffic.fan_in(1);
                    let duration = self.fan_in_time(&["upload fan-in", &batch.0.to_string()]);
                    self.schedule(duration, Wake::UploadFanIn { batch, released });
                }
                DriverAction::RenewLease => self.write_lease(),
                DriverAction::TasksFinished { records, .. } => {
                    self.task_records.extend(records);
                }
                DriverAction::Completed => {
                    self.completed_at = Some(self.now);
                    self.end_run();
                }
                DriverAction::Failed(failure) => {
                    self.failure = Some(format!("{failure:?}"));
                    self.end_run();
                }
            }
        }
    }

    /// The client fetches the outputs, then deletes the run's objects.
    fn end_run(&mut self) {
        let parameters = self.parameters;
        let outputs: Vec<TaskId> = self
            .plan
            .batches()
            .iter()
            .flat_map(|batch| batch.sinks.iter().copied())
            .collect();
        let bytes: u64 = outputs
            .iter()
            .map(|task| self.costs.output_bytes[task.index()])
            .sum();
        let fetch = if self.completed_at.is_some() {
            self.client_traffic.read(outputs.len() as u64, bytes);
            parameters.store.read_latency_us.at(self.normal(&["fetch"]))
                + bytes as f64 * 1e6 / parameters.client_bandwidth_bytes_per_s
        } else {
            0.0
        };
        // A listing, then deletions (S3 deletes up to 1,000 objects a request).
        let requests = match parameters.store.kind {
            StoreKind::S3 => 1 + self.stored_objects.div_ceil(1_000),
            StoreKind::Redis | StoreKind::SharedMemory => 2,
        };
        self.client_traffic.read(1, 0);
        self.client_traffic.operations += self.stored_objects;
        self.client_traffic.deletes += self.stored_objects;
        let cleanup = requests as f64 * parameters.store.small_operation_us.median_us;
        self.schedule(fetch + cleanup, Wake::Ended);
    }

    fn add_to_fan_in(&mut self, key: String, member: String, expected: u32) -> bool {
        let set = self.fan_in.entry(key).or_default();
        set.insert(member) && set.len() == expected as usize
    }

    /// One fan-in: three requests on S3 (two listings and a write), one elsewhere.
    fn fan_in_time(&self, identity: &[&str]) -> f64 {
        let requests = match self.parameters.store.kind {
            StoreKind::S3 => 3.0,
            StoreKind::Redis | StoreKind::SharedMemory => 1.0,
        };
        requests
            * self
                .parameters
                .store
                .small_operation_us
                .at(self.normal(identity))
    }

    /// Sends an invocation event; it reaches the platform after the invoke latency (the
    /// client's or a function's), and may be delivered twice.
    fn send(
        &mut self,
        batch: BatchId,
        attempt: u32,
        recovering: Vec<BatchId>,
        backup: bool,
        by_client: bool,
    ) {
        self.invocation_count += 1;
        let identity = [
            "invoke",
            &batch.0.to_string(),
            &attempt.to_string(),
            if backup { "backup" } else { "" },
            &self.invocation_count.to_string(),
        ];
        let spread = if by_client {
            self.parameters.client_invoke_latency_us
        } else {
            self.parameters.function_invoke_latency_us
        };
        let mut latency = spread.at(self.normal(&identity));
        if self.draws.happens(
            self.options.faults.throttle,
            &[&identity[..], &["throttle"]].concat(),
        ) {
            // A burst of refusals (429), each tried again after the invoker's backoff: from
            // 50 ms doubling up to 2 s, with full jitter.
            self.refused_invocations += 1;
            let refusals =
                1 + (4.0 * self.draws.draw(&[&identity[..], &["burst"]].concat())) as u32;
            for refusal in 0..refusals {
                let ceiling = (50_000.0 * f64::from(1u32 << refusal.min(6))).min(2_000_000.0);
                let jitter = self
                    .draws
                    .draw(&[&identity[..], &["backoff", &refusal.to_string()]].concat());
                latency += ceiling * jitter;
            }
        }
        let delivery = Delivery {
            batch,
            attempt,
            recovering,
            backup,
            sent_at: self.now,
            copy: 0,
        };
        if self.draws.happens(self.options.faults.duplicate, &identity) {
            self.duplicates += 1;
            let late =
                latency * (1.0 + 4.0 * self.draws.draw(&[&identity[..], &["late"]].concat()));
            self.schedule(
                late,
                Wake::Arrive(Delivery {
                    copy: 1,
                    ..delivery.clone()
                }),
            );
        }
        self.schedule(latency, Wake::Arrive(delivery));
    }

    /// Instances the scaling rate allows so far.
    fn instances_allowed(&self) -> f64 {
        let since = self
            .now
            .saturating_sub(self.first_invoke_at.unwrap_or(self.now));
        self.parameters.burst_instances as f64
            + self.parameters.new_instances_per_10_s * since as f64 / 10_000_000.0
    }

    /// Starts waiting events on idle instances, or on new ones while the concurrency limit
    /// and the scaling rate allow.
    fn dispatch(&mut self) {
        while !self.waiting.is_empty() {
            if self.starting_or_busy >= self.concurrency_limit {
                // Tried again when an instance frees.
                return;
            }
            if let Some(instance) = self.idle_instances.pop() {
                let delivery = self.waiting.pop_front().expect("a front");
                self.start(delivery, instance, None);
                continue;
            }
            let allowed = self.instances_allowed();
            if (self.instances as f64) < allowed {
                let delivery = self.waiting.pop_front().expect("a front");
                let instance = self.instances;
                self.instances += 1;
                let identity = ["cold", &instance.to_string()];
                let mut init = self.parameters.cold_start_us.at(self.normal(&identity))
                    + self.parameters.cold_start_per_package_mb_us * self.parameters.package_mb;
                if self.draws.happens(self.options.faults.cold, &identity) {
                    init += self.options.faults.cold_ms as f64 * 1_000.0;
                }
                self.cold_starts += 1;
                self.start(delivery, instance, Some(init));
                continue;
            }
            // The scaling rate: wait until another instance is allowed.
            if !self.dispatch_scheduled {
                self.dispatch_scheduled = true;
                let next = (self.instances as f64 + 1.0 - allowed) * 10_000_000.0
                    / self.parameters.new_instances_per_10_s.max(1e-9);
                self.schedule(next.max(1.0), Wake::Dispatch);
            }
            return;
        }
    }

    /// Starts an invocation of `delivery` on `instance`, after its cold start if it has one.
    fn start(&mut self, delivery: Delivery, instance: usize, init_us: Option<f64>) {
        self.starting_or_busy += 1;
        self.peak_concurrency = self.peak_concurrency.max(self.starting_or_busy);
        let number = self.invocations.len();
        let id = format!("sim-invocation-{number}");
        let named = delivery
            .recovering
            .last()
            .copied()
            .unwrap_or(delivery.batch);
        let identity = [
            "kill",
            &delivery.batch.0.to_string(),
            &delivery.attempt.to_string(),
            &delivery.copy.to_string(),
            if delivery.backup { "backup" } else { "" },
        ];
        let doomed = if self.options.faults.kill > 0.0 {
            self.draws.kill_point(&identity)
        } else {
            None
        };
        let cold = init_us.is_some();
        let init = init_us.unwrap_or(0.0);
        let started_at = self.now + init.round() as Micros;
        let executor = Executor::new(self.run_id.clone(), id.clone(), cold, delivery.batch)
            .with_attempt(delivery.attempt, delivery.recovering.clone())
            .as_backup(delivery.backup);
        self.invocations.push(Invocation {
            id,
            instance,
            executor,
            actions: VecDeque::new(),
            named,
            cold,
            init_us: init.round() as Micros,
            sent_at: delivery.sent_at,
            batch_started: started_at,
            reported_a_batch: false,
            traffic: StoreTraffic::default(),
            steps: BatchSteps::default(),
            messages: 0,
            cpu_us: 0,
            held_bytes: 0,
            peak_bytes: 0,
            doomed,
            ran_a_batch: false,
            finished: false,
            task_run: None,
        });
        self.schedule(
            init,
            Wake::Resume {
                invocation: number,
                events: vec![ExecutorEvent::Start],
            },
        );
    }

    /// Hands `events` to an invocation's executor, then performs its actions until one takes
    /// time.
    fn resume(&mut self, index: usize, events: Vec<ExecutorEvent>) {
        if self.invocations[index].finished {
            return;
        }
        let mut reaction = Vec::new();
        for event in events {
            reaction.extend(self.invocations[index].executor.handle(event, self.now));
        }
        let invocation = &mut self.invocations[index];
        for action in reaction.into_iter().rev() {
            invocation.actions.push_front(action);
        }
        loop {
            let Some(action) = self.invocations[index].actions.pop_front() else {
                return;
            };
            if matches!(action, ExecutorAction::Finish) {
                self.finish(index, None);
                return;
            }
            let outcome = self.outcome(index, action);
            if let Some(point) = outcome.dies {
                // The platform's failure record comes after the function's death.
                let delay = outcome.duration_us;
                self.finish(index, Some(point));
                let invocation = &self.invocations[index];
                let failure = DriverEvent::PlatformFailure {
                    invocation: Some(invocation.id.clone()),
                    batch: Some(invocation.named),
                    error_type: "Runtime.ExitError".into(),
                    message: format!("killed {}", point.name()),
                };
                let latency = delay + self.parameters.channel_latency_us.median_us;
                self.schedule(latency, Wake::Message(failure));
                return;
            }
            if outcome.duration_us > 0.0 {
                self.schedule(
                    outcome.duration_us,
                    Wake::Resume {
                        invocation: index,
                        events: outcome.events,
                    },
                );
                return;
            }
            let mut reaction = Vec::new();
            for event in outcome.events {
                reaction.extend(self.invocations[index].executor.handle(event, self.now));
            }
            let invocation = &mut self.invocations[index];
            for action in reaction.into_iter().rev() {
                invocation.actions.push_front(action);
            }
        }
    }

    /// The invocation ends (killed at `killed`): its instance is free again, unless it died.
    fn finish(&mut self, index: usize, killed: Option<KillPoint>) {
        let invocation = &mut self.invocations[index];
        invocation.finished = true;
        self.starting_or_busy -= 1;
        if killed.is_some() {
            self.kills += 1;
        } else {
            self.idle_instances.push(invocation.instance);
        }
        if !self.waiting.is_empty() && !self.dispatch_scheduled {
            self.dispatch_scheduled = true;
            let identity = ["retry", &self.invocations[index].id];
            let retry = self.parameters.throttle_retry_us.at(self.normal(&identity));
            self.schedule(retry, Wake::Dispatch);
        }
    }
}

impl World<'_> {
    /// Bytes of what the client uploads for a batch, and a function loads: its pickled tasks,
    /// and a spec of a header and the ids of its tasks and inputs.
    fn batch_bytes(&self, batch: BatchId) -> u64 {
        let planned = self.plan.batch(batch);
        let tasks: u64 = planned
            .tasks
            .iter()
            .map(|task| self.costs.pickled_bytes[task.index()])
            .sum();
        tasks + 64 + 8 * (planned.tasks.len() + planned.inputs.len()) as u64
    }
}

impl World<'_> {
    /// What one action of an invocation takes and what answers it (see the module
    /// documentation). Consecutive fan-ins, and consecutive invocations, run at once.
    fn outcome(&mut self, index: usize, action: ExecutorAction) -> Outcome {
        let store = &self.parameters.store;
        let id = self.invocations[index].id.clone();
        let doomed = self.invocations[index].doomed;
        let small = |world: &Self, what: &str| {
            store
                .small_operation_us
                .at(world.normal(&["small", &id, what, &world.now.to_string()]))
        };
        match action {
            ExecutorAction::Claim { key } => {
                let won = self.claims.insert(key);
                let invocation = &mut self.invocations[index];
                invocation.traffic.write(invocation.id.len() as u64);
                let mut outcome =
                    Outcome::after(small(self, "claim"), vec![ExecutorEvent::Claimed { won }]);
                if doomed == Some(KillPoint::BeforeStart) {
                    outcome.dies = Some(KillPoint::BeforeStart);
                }
                outcome
            }
            ExecutorAction::DeleteClaim { key } => {
                self.claims.remove(&key);
                self.invocations[index].traffic.delete();
                Outcome::after(small(self, "delete claim"), Vec::new())
            }
            ExecutorAction::CheckStop { done_key, .. } => {
                let reads = 1 + u64::from(done_key.is_some());
                let done_mark = done_key.and_then(|key| self.done_marks.get(&key).cloned());
                let lease = self
                    .run_is_live()
                    .then(|| self.lease_writes.to_le_bytes().to_vec());
                self.invocations[index].traffic.read(reads, 0);
                Outcome::after(
                    small(self, "check stop"),
                    vec![ExecutorEvent::StopChecked { done_mark, lease }],
                )
            }
            ExecutorAction::Continue => self.continue_tasks(index),
            ExecutorAction::StopTasks => {
                self.invocations[index].task_run = None;
                Outcome::at_once(Vec::new())
            }
            ExecutorAction::LoadBatch { batch } => {
                if self.invocations[index].ran_a_batch && doomed == Some(KillPoint::BecomingChild) {
                    return Outcome {
                        duration_us: 0.0,
                        events: Vec::new(),
                        dies: Some(KillPoint::BecomingChild),
                    };
                }
                if !self.run_is_live() {
                    self.invocations[index].traffic.read(1, 0);
                    return Outcome::after(
                        store.small_operation_us.median_us,
                        vec![ExecutorEvent::RunGone],
                    );
                }
                let bytes = self.batch_bytes(batch);
                self.invocations[index].traffic.read(1, bytes);
                let bandwidth = self.read_bandwidth();
                let start = self.read_slot(self.now as f64) - self.now as f64;
                let latency =
                    store
                        .read_latency_us
                        .at(self.normal(&["load", &id, &batch.0.to_string()]));
                Outcome::after(
                    start + latency + bytes as f64 * 1e6 / bandwidth,
                    vec![ExecutorEvent::BatchLoaded {
                        spec: BatchSpec::from_plan(self.plan, batch),
                    }],
                )
            }
            ExecutorAction::LoadInputs { tasks } => {
                if !self.run_is_live() {
                    return Outcome::after(
                        store.read_latency_us.median_us,
                        vec![ExecutorEvent::InputsMissing {
                            message: "the run's values are gone".into(),
                        }],
                    );
                }
                let bytes: u64 = tasks
                    .iter()
                    .map(|task| self.costs.output_bytes[task.index()])
                    .sum();
                let mut start = self.now as f64;
                for _ in &tasks {
                    start = self.read_slot(start);
                }
                let latency =
                    store
                        .read_latency_us
                        .at(self.normal(&["inputs", &id, &self.now.to_string()]));
                let bandwidth = self.read_bandwidth();
                let invocation = &mut self.invocations[index];
                invocation.traffic.read(tasks.len() as u64, bytes);
                for task in &tasks {
                    invocation
                        .traffic
                        .values_read
                        .push((*task, self.costs.output_bytes[task.index()]));
                }
                invocation.held_bytes += bytes;
                invocation.peak_bytes = invocation.peak_bytes.max(invocation.held_bytes);
                Outcome::after(
                    start - self.now as f64 + latency + bytes as f64 * 1e6 / bandwidth,
                    vec![ExecutorEvent::InputsLoaded { bytes }],
                )
            }
            ExecutorAction::CheckBatchExists { .. } => {
                self.invocations[index].traffic.read(1, 0);
                Outcome::after(
                    small(self, "exists"),
                    vec![ExecutorEvent::BatchExists {
                        exists: self.run_is_live(),
                    }],
                )
            }
            ExecutorAction::RunTasks => self.run_tasks(index),
            ExecutorAction::MarkDone { key, content } => {
                let size = content.len() as u64;
                let existing = match self.done_marks.get(&key) {
                    Some(mark) => Some(mark.clone()),
                    None => {
                        self.done_marks.insert(key, content.into_bytes());
                        None
                    }
                };
                let duration = small(self, "mark done");
                let invocation = &mut self.invocations[index];
                invocation.traffic.write(size);
                if existing.is_some() {
                    // The shell reads the other attempt's mark.
                    invocation.traffic.read(1, 0);
                }
                invocation.steps.marked_us = self.now + duration.round() as Micros;
                let mut outcome =
                    Outcome::after(duration, vec![ExecutorEvent::MarkedDone { existing }]);
                if doomed == Some(KillPoint::BeforeFanIns) {
                    outcome.dies = Some(KillPoint::BeforeFanIns);
                }
                outcome
            }
            ExecutorAction::FanIn {
                child,
                key,
                member,
                expected,
            } => {
                let mut fan_ins = vec![(child, key, member, expected)];
                while let Some(ExecutorAction::FanIn { .. }) =
                    self.invocations[index].actions.front()
                {
                    let Some(ExecutorAction::FanIn {
                        child,
                        key,
                        member,
                        expected,
                    }) = self.invocations[index].actions.pop_front()
                    else {
                        unreachable!("the front is a fan-in");
                    };
                    fan_ins.push((child, key, member, expected));
                }
                let mut longest: f64 = 0.0;
                let mut events = Vec::new();
                let mut released_any = false;
                for (child, key, member, expected) in fan_ins {
                    let released = self.add_to_fan_in(key, member, expected);
                    released_any |= released;
                    longest = longest.max(self.fan_in_time(&["fan-in", &id, &child.0.to_string()]));
                    self.invocations[index].traffic.fan_in(1);
                    events.push(ExecutorEvent::FanInAnswered { child, released });
                }
                self.invocations[index].steps.fanned_in_us = self.now + longest.round() as Micros;
                let mut outcome = Outcome::after(longest, events);
                if released_any && doomed == Some(KillPoint::BeforeInvoke) {
                    outcome.dies = Some(KillPoint::BeforeInvoke);
                }
                outcome
            }
            ExecutorAction::Invoke { batch } => {
                let mut children = vec![batch];
                while let Some(ExecutorAction::Invoke { .. }) =
                    self.invocations[index].actions.front()
                {
                    if let Some(ExecutorAction::Invoke { batch }) =
                        self.invocations[index].actions.pop_front()
                    {
                        children.push(batch);
                    }
                }
                for child in children {
                    self.send(child, FIRST_ATTEMPT, Vec::new(), false, false);
                }
                // The calls answer once the platform has the events.
                let call = self.parameters.function_invoke_latency_us.median_us / 2.0;
                self.invocations[index].steps.invoked_us = self.now + call.round() as Micros;
                Outcome::after(call, Vec::new())
            }
            ExecutorAction::Report(report) => self.report(index, report),
            ExecutorAction::Retain { tasks } => {
                let kept: u64 = tasks
                    .iter()
                    .map(|task| self.costs.output_bytes[task.index()])
                    .sum();
                self.invocations[index].held_bytes = kept;
                Outcome::at_once(Vec::new())
            }
            ExecutorAction::Finish => unreachable!("Finish ends the invocation before"),
        }
    }

    /// A function's bandwidth from the store, and to it.
    fn read_bandwidth(&self) -> f64 {
        self.parameters
            .function_bandwidth(self.options.memory_mb)
            .min(self.parameters.store.read_bandwidth_bytes_per_s)
    }

    fn write_bandwidth(&self) -> f64 {
        self.parameters
            .function_bandwidth(self.options.memory_mb)
            .min(self.parameters.store.write_bandwidth_bytes_per_s)
    }

    /// Starts the batch's tasks (see [`World::continue_tasks`]).
    fn run_tasks(&mut self, index: usize) -> Outcome {
        let spec = self.invocations[index]
            .executor
            .spec()
            .expect("RunTasks follows a loaded batch")
            .clone();
        let identity = ["straggle", &self.invocations[index].id];
        let slowdown = self.draws.slowdown(&identity);
        let speed = self.parameters.cpu_share(self.options.memory_mb).min(1.0)
            * self.parameters.task_speed
            / slowdown;
        let invocation = &mut self.invocations[index];
        invocation.steps.loaded_us = self.now;
        invocation.ran_a_batch = true;
        // The handler unpickles the batch's tasks and inputs before the first task.
        let overhead = self.parameters.function_batch_overhead_us / speed;
        invocation.task_run = Some(TaskRun {
            stored: spec.stored_outputs.iter().copied().collect(),
            spec,
            position: 0,
            at: self.now as f64 + overhead,
            speed,
            checked: false,
            records: Vec::new(),
            streamed: 0,
            next_progress: self.now as f64 + self.options.progress_interval_us as f64,
        });
        self.continue_tasks(index)
    }

    /// Runs the batch's next tasks as the handler does: before each task the executor is asked
    /// whether to go on (its look at the store, once a second of tasks, happens at that
    /// simulated time); each task computes at the function's CPU share and its stored output
    /// is written as it comes; once a progress interval has passed after a task, the records
    /// so far go out in a progress report; after the last task the executor hears that the
    /// tasks finished.
    fn continue_tasks(&mut self, index: usize) -> Outcome {
        let bandwidth = self.write_bandwidth();
        let Some(mut run) = self.invocations[index].task_run.take() else {
            return Outcome::at_once(Vec::new());
        };
        // After a look at the store or a progress report, the next task starts now.
        run.at = run.at.max(self.now as f64);
        while run.position < run.spec.tasks.len() {
            let invocation = &mut self.invocations[index];
            if !run.checked {
                run.checked = true;
                let at = run.at.round() as Micros;
                if run.position > 0 && invocation.doomed == Some(KillPoint::MidTask) {
                    return Outcome {
                        duration_us: run.at - self.now as f64,
                        events: Vec::new(),
                        dies: Some(KillPoint::MidTask),
                    };
                }
                let answer = invocation.executor.handle(ExecutorEvent::Boundary, at);
                if answer != [ExecutorAction::Continue] {
                    // A look at the store (or a stop), at the boundary's time.
                    for action in answer.into_iter().rev() {
                        invocation.actions.push_front(action);
                    }
                    let wait = run.at - self.now as f64;
                    invocation.task_run = Some(run);
                    return Outcome::after(wait, Vec::new());
                }
            }
            let task = run.spec.tasks[run.position];
            run.position += 1;
            run.checked = false;
            let duration = self.costs.duration_us[task.index()] / run.speed;
            let start = run.at;
            run.at += duration + self.parameters.function_task_overhead_us / run.speed;
            invocation.cpu_us += duration.round() as Micros;
            let bytes = self.costs.output_bytes[task.index()];
            invocation.held_bytes += bytes;
            invocation.peak_bytes = invocation.peak_bytes.max(invocation.held_bytes);
            let stored_bytes = if run.stored.contains(&task) {
                let slot = self.write_slot(run.at);
                let latency = self
                    .parameters
                    .store
                    .write_latency_us
                    .at(self.normal(&["store", &task.0.to_string()]));
                run.at = slot + latency + bytes as f64 * 1e6 / bandwidth;
                self.invocations[index].traffic.write(bytes);
                self.stored_objects += 1;
                bytes
            } else {
                0
            };
            run.records.push(TaskRecord {
                task,
                start_us: start.round() as Micros,
                duration_us: duration.round() as Micros,
                stored_bytes,
            });
            if run.at >= run.next_progress {
                let records = run.records[run.streamed..].to_vec();
                run.streamed = run.records.len();
                run.next_progress = run.at + self.options.progress_interval_us as f64;
                let at = run.at.round() as Micros;
                let invocation = &mut self.invocations[index];
                let reaction = invocation.executor.handle(
                    ExecutorEvent::TasksProgressed {
                        records,
                        warnings: Vec::new(),
                    },
                    at,
                );
                // The report goes out at the task's end; then the tasks go on.
                invocation.actions.push_front(ExecutorAction::Continue);
                for action in reaction.into_iter().rev() {
                    invocation.actions.push_front(action);
                }
                let wait = run.at - self.now as f64;
                invocation.task_run = Some(run);
                return Outcome::after(wait, Vec::new());
            }
        }
        self.invocations[index].steps.computed_us = run.at.round() as Micros;
        Outcome::after(
            run.at - self.now as f64,
            vec![ExecutorEvent::TasksFinished {
                records: run.records.split_off(run.streamed),
                warnings: Vec::new(),
            }],
        )
    }

    /// Sends a report, with what the batch spent as the function's shell fills it in.
    fn report(&mut self, index: usize, mut report: Report) -> Outcome {
        // The shell sends progress in the background; other reports are awaited.
        let send = if matches!(report, Report::Progress(_)) {
            0.0
        } else {
            self.parameters.channel_latency_us.median_us / 2.0
        };
        let now = self.now;
        let invocation = &mut self.invocations[index];
        invocation.messages += 1;
        match &mut report {
            Report::BatchFinished(finished) => {
                finished.store = std::mem::take(&mut invocation.traffic);
                *finished.resources = batch_resources(invocation, now, self.parameters);
                self.batch_finished_at[finished.batch.index()] = Some(now);
            }
            Report::BatchAbandoned(abandoned) => {
                abandoned.store = std::mem::take(&mut invocation.traffic);
                *abandoned.resources = batch_resources(invocation, now, self.parameters);
            }
            Report::Progress(_) | Report::BatchFailed(_) => {}
        }
        let latency = self.parameters.channel_latency_us.at(self.normal(&[
            "report",
            &self.invocations[index].id,
            &now.to_string(),
        ]));
        self.schedule(latency, Wake::Message(DriverEvent::Report(report)));
        Outcome::after(send, Vec::new())
    }

    /// Keeps the records of a report, as the client's shell does.
    fn count(&mut self, event: &DriverEvent) {
        match event {
            DriverEvent::Report(Report::BatchFinished(report)) => {
                self.batch_records.push(BatchRecord::finished(report));
            }
            DriverEvent::Report(Report::BatchAbandoned(report)) => {
                self.batch_records.push(BatchRecord::abandoned(report));
            }
            _ => {}
        }
    }

    /// From the batch that finished last, back through the parent of each that finished
    /// last.
    fn critical_path(&self) -> Vec<BatchId> {
        let finished = |batch: BatchId| self.batch_finished_at[batch.index()].unwrap_or(0);
        let Some(mut batch) = self
            .plan
            .batches()
            .iter()
            .map(|batch| batch.id)
            .max_by_key(|&batch| (finished(batch), batch))
        else {
            return Vec::new();
        };
        let mut path = vec![batch];
        while let Some(parent) = self
            .plan
            .batch(batch)
            .parents
            .iter()
            .copied()
            .max_by_key(|&parent| (finished(parent), parent))
        {
            path.push(parent);
            batch = parent;
        }
        path.reverse();
        path
    }
}

/// What the invocation spent on the batch now reported, and the start of the next one.
fn batch_resources(
    invocation: &mut Invocation,
    now: Micros,
    parameters: &PlatformParameters,
) -> BatchResources {
    let started = std::mem::replace(&mut invocation.batch_started, now);
    let first = !std::mem::replace(&mut invocation.reported_a_batch, true);
    BatchResources {
        instance: format!("sim-instance-{}", invocation.instance),
        start_us: started,
        end_us: now,
        cpu_user_us: std::mem::take(&mut invocation.cpu_us),
        cpu_kernel_us: 0,
        peak_memory_bytes: parameters.baseline_memory_bytes + invocation.peak_bytes,
        init_us: (first && invocation.cold).then_some(invocation.init_us),
        wait_us: first.then(|| started.saturating_sub(invocation.sent_at)),
        messages_sent: std::mem::take(&mut invocation.messages),
        steps: std::mem::take(&mut invocation.steps),
    }
}
