//! The driver: the client's side of a run.
//!
//! The client uploads the batches, invoking each leaf as soon as it is uploaded (and any
//! batch whose parents all finished before its upload, see
//! [`UPLOAD_MEMBER`](crate::UPLOAD_MEMBER)), and from then on only listens. Every batch ends in
//! exactly one final report on the result channel (finished or failed), possibly after progress
//! reports; the platform adds a failure record when it stops a function (memory, timeout,
//! crash). The driver folds these into the run's state:
//!
//! * a batch is `Pending` until something says it runs, `Running` until its final report,
//!   then `Finished`; a repeated report of a finished batch changes nothing (delivery may
//!   repeat);
//! * each task is passed on to progress ([`DriverAction::TasksFinished`]) exactly once, whether
//!   it arrives in a progress report, a final report, or both, and however often they repeat;
//! * the run is complete when every batch is finished; it fails at the first failure that
//!   recovery cannot mend (see "Recovery");
//! * reports of other runs are ignored (the channel outlives runs);
//! * silence: a function lives at most its timeout, and the platform reports the ones it stops,
//!   so when nothing at all has arrived for longer than `silence_limit` while batches are
//!   pending, the work is lost and the run fails instead of waiting forever.
//!
//! **Which batch a dead function was running.** An invocation starts with one batch and may
//! *become* others; the platform's failure record only knows the event it was invoked with.
//! The driver follows each invocation (by its request id) through its reports — progress names
//! the batch it runs now, a final report the batch it became — so a failure is blamed on
//! the batch that was running when the function died, once. A record without the request id
//! (some platforms leave it out) is blamed by following what each finished batch's report says
//! its function became, from the batch the event was for.
//!
//! **Recovery.** Lost work is redone, within a [`RecoveryPolicy`]: a batch whose function the
//! platform stopped (crash, memory size, timeout), that reported a failure around its tasks,
//! or that stayed silent with the whole run for longer than `silence_limit`, is invoked again
//! ([`DriverAction::Recover`]) at a fresh attempt. Values it read from the store are still
//! there; values handed over in memory died with the function, so the recovery starts at the
//! head of the chain of hand-overs that leads to the batch (the nearest batch whose inputs are
//! all stored) and becomes each batch of the chain in turn. A task's exception is redone only
//! if the policy allows task retries (`compute(retries=N)`). Each batch has its own budget per
//! kind of failure, and the run a budget of recoveries in all; past them, the run fails with
//! the failure that exhausted them, naming the attempts made.
//!
//! A recovery's chain re-adds finished batches to fan-in sets they already joined; those
//! answers are "already added", so a child the lost function released but never invoked
//! would wait forever. The driver therefore invokes, at the first attempt, a batch whose parents
//! have all finished and that nothing has started (an *orphan*): its claim keeps it from running
//! twice if the lost function did invoke it after all.
//!
//! **Stragglers.** A batch still running `backup_factor` times longer than the median of its
//! finished siblings (the batches at its depth in the plan, once half of them finished), and
//! at least `backup_after`, gets one *backup*: the same batch invoked again at a fresh attempt
//! while the original runs on ([`DriverAction::Recover`] with `backup`). The first of the two
//! to mark the batch done wins and reports; the other stops (see the executor's "Backups").
//! Times are the driver's: from when it learned that the batch runs to its final report. A
//! backup never takes the place of a batch waiting for the platform's concurrency limit, when
//! the driver knows it ([`Driver::with_concurrency_limit`]); a run starts at most
//! `run_backups` backups, and one more per ten batches. The driver counts the two attempts, so
//! the death of one of them costs nothing while the other runs, and the run is drained only
//! once both stopped.
//!
//! Actions after [`DriverAction::Completed`] or [`DriverAction::Failed`] are never emitted.
//!
//! **Draining.** When a run fails, batches of other branches may still be running and would
//! write values after the client cleaned up. The driver therefore knows which batches are
//! *running*: the leaves once invoked, and every child a report says was invoked or become,
//! until that child's own report (or failure) arrives — reports may arrive in any order, so a
//! child already reported is never counted as running again. After the end of the run the
//! driver keeps following reports for this purpose only; [`Driver::is_drained`] tells the
//! shell when nothing of the run can write any more.

use std::collections::{HashMap, HashSet};

use dask_serverless_graph::TaskId;
use dask_serverless_plan::{BatchId, Plan};

use crate::messages::{
    AbandonReason, FIRST_ATTEMPT, FailureCause, Report, TaskError, TaskRecord, TaskWarning,
    UPLOAD_MEMBER, fan_in_members, upload_joins_fan_in,
};
use crate::{Micros, keys};

#[derive(Debug, Clone, PartialEq)]
pub enum DriverEvent {
    /// The run starts.
    Start,
    /// A message from the result channel.
    Report(Report),
    /// The platform stopped a function. `invocation` is its request id and `batch` the
    /// batch its event was for (a recovery's target, the last of its chain), when the
    /// platform's record tells them.
    PlatformFailure {
        invocation: Option<String>,
        batch: Option<BatchId>,
        error_type: String,
        message: String,
    },
    /// The client stored a batch's spec and tasks (after [`DriverEvent::Start`]). A leaf is
    /// invoked at once; a batch released by a fan-in that the upload joins
    /// ([`upload_joins_fan_in`](crate::upload_joins_fan_in)) gets its upload added to the set
    /// ([`DriverAction::FanIn`]).
    Uploaded { batch: BatchId },
    /// The answer of the upload's fan-in: `released` when the upload completed the set (every
    /// parent had finished before the upload), and the client invokes the batch.
    UploadFanInAnswered { batch: BatchId, released: bool },
    /// Time passes.
    Tick,
    /// The client ends the run (interrupted, or failed in the client): nothing is redone any
    /// more; the driver only follows what still runs (see "Draining").
    Stop,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DriverAction {
    /// Invoke a function for this batch (a leaf, or one the upload released), at the first
    /// attempt.
    Invoke { batch: BatchId },
    /// Invoke a function for `batch` at `attempt`, becoming the batches of `recovering` in turn
    /// after it: lost work, redone (see "Recovery").
    Recover {
        batch: BatchId,
        attempt: u32,
        recovering: Vec<BatchId>,
        /// A backup of a straggler that still runs (see "Stragglers"), not lost work.
        backup: bool,
    },
    /// Write the run's lease again now: a function took this live client for gone.
    RenewLease,
    /// Add the client's upload (`member`) to the fan-in set at `key`, complete at `expected`
    /// members; answer with [`DriverEvent::UploadFanInAnswered`].
    FanIn {
        batch: BatchId,
        key: String,
        member: String,
        expected: u32,
    },
    /// These tasks ran (feed progress callbacks), each reported once; the warnings they raised.
    TasksFinished {
        records: Vec<TaskRecord>,
        warnings: Vec<TaskWarning>,
    },
    /// Every batch finished; the outputs are in the store.
    Completed,
    /// The run failed; nothing more will be emitted.
    Failed(RunFailure),
}

/// How the platform stopped a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunctionFailureKind {
    /// It used more memory than its memory size.
    OutOfMemory,
    /// It ran longer than its timeout.
    Timeout,
    /// Its process died, or the platform failed it otherwise.
    Crashed,
}

impl FunctionFailureKind {
    /// The kind of a platform error type, as AWS Lambda (and the local platform) name them.
    pub fn from_error_type(error_type: &str) -> FunctionFailureKind {
        match error_type {
            "Runtime.OutOfMemory" => FunctionFailureKind::OutOfMemory,
            "Sandbox.Timedout" => FunctionFailureKind::Timeout,
            _ => FunctionFailureKind::Crashed,
        }
    }
}

/// Why a run failed.
#[derive(Debug, Clone, PartialEq)]
pub enum RunFailure {
    /// A task raised.
    Task(TaskError),
    /// A task's result cannot be pickled.
    Unpicklable {
        batch: BatchId,
        task: TaskId,
        message: String,
    },
    /// The platform stopped a function (memory size, timeout, crash).
    Function {
        kind: FunctionFailureKind,
        /// The batch the function was running, when known.
        batch: Option<BatchId>,
        /// How many times the batch was run and stopped so (1 without recovery).
        attempts: u32,
        /// Tasks this invocation had reported finished (over every batch it ran).
        tasks_finished: usize,
        error_type: String,
        message: String,
    },
    /// Something around the tasks failed in a function.
    Infrastructure { batch: BatchId, message: String },
    /// Nothing arrived for longer than any function may live.
    Lost {
        silent_for_us: Micros,
        pending_batches: usize,
    },
}

/// How much lost work the driver redoes before it gives up (see "Recovery").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryPolicy {
    /// Recoveries of one batch whose function crashed, vanished, or failed around the tasks.
    pub crash_retries: u32,
    /// Recoveries of one batch whose function ran out of memory (likely to again).
    pub out_of_memory_retries: u32,
    /// Recoveries of one batch whose function ran out of time.
    pub timeout_retries: u32,
    /// Retries of one batch whose task raised (Dask's `retries`): none unless asked for.
    pub task_retries: u32,
    /// Recoveries of all batches together, at least; the run allows one more per ten batches.
    pub run_retries: u32,
    /// A batch gets a backup once it has run this many times longer than the median of its
    /// finished siblings (see "Stragglers"); 0: never.
    pub backup_factor: u32,
    /// ... and at least this long.
    pub backup_after: Micros,
    /// Backups in a run, at least; the run allows one more per ten batches.
    pub run_backups: u32,
}

impl Default for RecoveryPolicy {
    fn default() -> Self {
        RecoveryPolicy {
            crash_retries: 3,
            out_of_memory_retries: 1,
            timeout_retries: 1,
            task_retries: 0,
            run_retries: 10,
            backup_factor: 3,
            // Five seconds: an instance's first invocation imports the tasks' libraries (a
            // second or more for NumPy and Dask arrays, more on a cold start of a large
            // package), and a backup against that wait only adds an invocation.
            backup_after: 5_000_000,
            run_backups: 2,
        }
    }
}

impl RecoveryPolicy {
    /// No recovery at all: the first failure fails the run.
    pub fn never() -> Self {
        RecoveryPolicy {
            crash_retries: 0,
            out_of_memory_retries: 0,
            timeout_retries: 0,
            task_retries: 0,
            run_retries: 0,
            backup_factor: 0,
            backup_after: 0,
            run_backups: 0,
        }
    }
}

/// The kinds of failure a batch has its own budget for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailureKind {
    Crash,
    OutOfMemory,
    Timeout,
    Task,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BatchState {
    /// Not started as far as the driver knows.
    Pending,
    /// Invoked or become, no final report yet.
    Running,
    /// Reported finished.
    Finished,
    /// Reported failed, or stopped by the platform.
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunState {
    Created,
    Running,
    Over,
}

/// What the driver knows of one invocation.
#[derive(Debug, Clone, Copy)]
struct InvocationState {
    /// The batch it runs now (or ran last).
    batch: BatchId,
    tasks_finished: usize,
}

/// The client's state machine for one run.
#[derive(Debug)]
pub struct Driver {
    run_id: String,
    /// By batch id: whether the batch has no parents (the client invokes it).
    leaves: Vec<bool>,
    /// By batch id: its parents and children.
    parents: Vec<Vec<BatchId>>,
    children: Vec<Vec<BatchId>>,
    /// By batch id: the parent that hands it values in memory, if any.
    memory_parent: Vec<Option<BatchId>>,
    /// By batch id: whether the client stored it.
    uploaded: Vec<bool>,
    /// By batch id: recoveries so far, per kind of failure.
    recoveries: Vec<[u32; 4]>,
    recoveries_in_run: u32,
    /// The attempt the next recovery invokes with (every recovery has its own).
    next_attempt: u32,
    policy: RecoveryPolicy,
    /// Invocations whose failure was already handled (the platform may record one twice).
    failed_invocations: HashSet<String>,
    /// By batch id: the size of its fan-in set when the client's upload joins it.
    upload_fan_ins: Vec<Option<u32>>,
    batches: Vec<BatchState>,
    /// By task: already passed on to progress.
    reported: Vec<bool>,
    invocations: HashMap<String, InvocationState>,
    /// By batch id: the batch its function became after it, as its final report said.
    became: Vec<Option<BatchId>>,
    finished_batches: usize,
    running_batches: usize,
    finished_tasks: usize,
    last_heard: Micros,
    silence_limit: Micros,
    state: RunState,
    /// The time of the event being handled.
    now: Micros,
    stragglers: Stragglers,
}

/// What the driver knows to tell stragglers (see "Stragglers").
#[derive(Debug)]
struct Stragglers {
    /// By batch id: its depth in the plan (0 for a leaf, else one more than its deepest
    /// parent). Batches at one depth are siblings.
    depth: Vec<usize>,
    /// By depth: how many batches.
    siblings: Vec<usize>,
    /// By batch id: when the driver learned that it runs.
    running_since: Vec<Micros>,
    /// By depth: how long its finished batches ran, as the driver saw it, and their median
    /// (`None` when out of date).
    durations: Vec<Vec<Micros>>,
    medians: Vec<Option<Micros>>,
    /// By batch id: whether it got its backup.
    backed_up: Vec<bool>,
    /// By batch id: attempts still running besides the one its state counts (a straggler and
    /// its backup).
    extra_attempts: Vec<u32>,
    extra_running: u32,
    backups: u32,
    /// Batches the platform runs at once at most, when known: a backup never takes a place
    /// another batch waits for.
    concurrency_limit: Option<usize>,
    last_scan: Micros,
}

/// Least time between two looks for stragglers.
const STRAGGLER_SCAN_INTERVAL: Micros = 200_000;

impl Stragglers {
    fn new(plan: &Plan) -> Stragglers {
        let count = plan.batches().len();
        // Depths in topological order (Kahn): a batch's depth is final once its parents' are.
        let mut depth = vec![0usize; count];
        let mut waiting: Vec<usize> = plan.batches().iter().map(|b| b.parents.len()).collect();
        let mut ready: Vec<BatchId> = plan
            .batches()
            .iter()
            .filter(|batch| batch.parents.is_empty())
            .map(|batch| batch.id)
            .collect();
        while let Some(batch) = ready.pop() {
            for &child in &plan.batch(batch).children {
                depth[child.index()] = depth[child.index()].max(depth[batch.index()] + 1);
                waiting[child.index()] -= 1;
                if waiting[child.index()] == 0 {
                    ready.push(child);
                }
            }
        }
        let levels = depth.iter().max().map_or(0, |deepest| deepest + 1);
        let mut siblings = vec![0; levels];
        for &level in &depth {
            siblings[level] += 1;
        }
        Stragglers {
            depth,
            siblings,
            running_since: vec![0; count],
            durations: vec![Vec::new(); levels],
            medians: vec![None; levels],
            backed_up: vec![false; count],
            extra_attempts: vec![0; count],
            extra_running: 0,
            backups: 0,
            concurrency_limit: None,
            last_scan: 0,
        }
    }

    fn finished(&mut self, batch: BatchId, now: Micros) {
        let level = self.depth[batch.index()];
        let ran = now.saturating_sub(self.running_since[batch.index()]);
        self.durations[level].push(ran);
        self.medians[level] = None;
    }

    /// The median time the finished siblings of `batch` ran, once at least half of its
    /// siblings finished.
    fn sibling_median(&mut self, batch: BatchId) -> Option<Micros> {
        let level = self.depth[batch.index()];
        let durations = &self.durations[level];
        if durations.is_empty() || durations.len() * 2 < self.siblings[level] {
            return None;
        }
        if self.medians[level].is_none() {
            let mut sorted = durations.clone();
            let middle = sorted.len() / 2;
            let (_, median, _) = sorted.select_nth_unstable(middle);
            self.medians[level] = Some(*median);
        }
        self.medians[level]
    }

    /// One attempt of `batch` besides the one its state counts stopped; whether there was one.
    fn attempt_stopped(&mut self, batch: BatchId) -> bool {
        let extra = &mut self.extra_attempts[batch.index()];
        if *extra == 0 {
            return false;
        }
        *extra -= 1;
        self.extra_running -= 1;
        true
    }
}

impl Driver {
    pub fn new(run_id: String, plan: &Plan, silence_limit: Micros) -> Driver {
        Driver {
            run_id,
            leaves: plan
                .batches()
                .iter()
                .map(|c| c.parents.is_empty())
                .collect(),
            parents: plan
                .batches()
                .iter()
                .map(|batch| batch.parents.clone())
                .collect(),
            children: plan
                .batches()
                .iter()
                .map(|batch| batch.children.clone())
                .collect(),
            memory_parent: plan
                .batches()
                .iter()
                .map(|batch| match batch.parents.as_slice() {
                    [parent]
                        if plan.is_handed_over(batch.id)
                            && !plan.batch(*parent).memory_outputs.is_empty() =>
                    {
                        Some(*parent)
                    }
                    _ => None,
                })
                .collect(),
            uploaded: vec![false; plan.batches().len()],
            recoveries: vec![[0; 4]; plan.batches().len()],
            recoveries_in_run: 0,
            next_attempt: FIRST_ATTEMPT + 1,
            policy: RecoveryPolicy::default(),
            failed_invocations: HashSet::new(),
            upload_fan_ins: plan
                .batches()
                .iter()
                .map(|batch| {
                    upload_joins_fan_in(plan, batch.id).then(|| fan_in_members(plan, batch.id))
                })
                .collect(),
            batches: vec![BatchState::Pending; plan.batches().len()],
            reported: vec![false; plan.task_count()],
            invocations: HashMap::new(),
            became: vec![None; plan.batches().len()],
            finished_batches: 0,
            running_batches: 0,
            finished_tasks: 0,
            last_heard: 0,
            silence_limit,
            state: RunState::Created,
            now: 0,
            stragglers: Stragglers::new(plan),
        }
    }

    /// This driver knowing that the platform runs at most `limit` functions at once: no backup
    /// of a straggler is started while as many batches run (see "Stragglers").
    pub fn with_concurrency_limit(mut self, limit: Option<usize>) -> Driver {
        self.stragglers.concurrency_limit = limit;
        self
    }

    /// Backups of stragglers started so far.
    pub fn backups(&self) -> u32 {
        self.stragglers.backups
    }

    /// This driver with its own recovery policy (the default redoes lost work a few times).
    pub fn with_recovery(mut self, policy: RecoveryPolicy) -> Driver {
        self.policy = policy;
        self
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Recoveries started so far.
    pub fn recoveries(&self) -> u32 {
        self.recoveries_in_run
    }

    pub fn is_over(&self) -> bool {
        self.state == RunState::Over
    }

    /// Tasks passed on to progress so far.
    pub fn finished_tasks(&self) -> usize {
        self.finished_tasks
    }

    /// No batch of the run is known to be running: nothing of it can write any more.
    pub fn is_drained(&self) -> bool {
        self.running_batches == 0 && self.stragglers.extra_running == 0
    }

    /// Batches invoked or become that have not reported yet.
    pub fn running_batches(&self) -> usize {
        self.running_batches
    }

    pub fn handle(&mut self, event: DriverEvent, now: Micros) -> Vec<DriverAction> {
        self.now = now;
        if self.state == RunState::Over {
            // Only follow which batches still run (see "Draining").
            match event {
                DriverEvent::Report(report)
                    if report.run_id() == self.run_id && self.names_only_known_batches(&report) =>
                {
                    self.follow(&report);
                }
                DriverEvent::PlatformFailure {
                    invocation, batch, ..
                } => {
                    if let Some(batch) = self.failed_batch(invocation.as_deref(), batch)
                        && !self.stragglers.attempt_stopped(batch)
                    {
                        self.set_state(batch, BatchState::Failed);
                    }
                }
                _ => {}
            }
            return Vec::new();
        }
        match event {
            DriverEvent::Start => self.start(now),
            DriverEvent::Report(report) => self.report(report, now),
            DriverEvent::PlatformFailure {
                invocation,
                batch,
                error_type,
                message,
            } => self.platform_failure(invocation, batch, error_type, message),
            DriverEvent::Uploaded { batch } => self.uploaded(batch),
            DriverEvent::UploadFanInAnswered { batch, released } => {
                self.upload_released(batch, released)
            }
            DriverEvent::Tick => self.tick(now),
            DriverEvent::Stop => {
                self.state = RunState::Over;
                Vec::new()
            }
        }
    }

    /// The batch a failed invocation was running: the last one its reports named, unless
    /// that one is finished (a recovery rebuilding values it hands over), else the one it was
    /// invoked for (a recovery's target).
    fn failed_batch(
        &self,
        invocation: Option<&str>,
        invoked_for: Option<BatchId>,
    ) -> Option<BatchId> {
        let known = |batch: &BatchId| batch.index() < self.batches.len();
        let reported = invocation
            .and_then(|id| self.invocations.get(id))
            .map(|state| state.batch)
            .filter(known);
        // Without the invocation's reports (a record without its request id), the function may
        // have died in a batch it became after the one it was invoked for: follow what each
        // finished batch's report says it became.
        let invoked_for = invoked_for.filter(known).map(|mut batch| {
            let mut steps = 0;
            while self.batches[batch.index()] == BatchState::Finished
                && let Some(next) = self.became[batch.index()]
                && steps < self.batches.len()
            {
                batch = next;
                steps += 1;
            }
            batch
        });
        match reported {
            Some(batch) if self.batches[batch.index()] != BatchState::Finished => Some(batch),
            Some(batch) => invoked_for
                .filter(|target| self.batches[target.index()] != BatchState::Finished)
                .or(Some(batch)),
            None => invoked_for,
        }
    }

    fn uploaded(&mut self, batch: BatchId) -> Vec<DriverAction> {
        if self.state != RunState::Running || batch.index() >= self.batches.len() {
            return Vec::new();
        }
        self.uploaded[batch.index()] = true;
        if self.leaves[batch.index()] {
            return self.invoke_pending(batch);
        }
        match self.upload_fan_ins[batch.index()] {
            Some(expected) => vec![DriverAction::FanIn {
                batch,
                key: keys::fan_in_key(&self.run_id, batch),
                member: UPLOAD_MEMBER.to_owned(),
                expected,
            }],
            // Handed over in memory: its parent becomes it.
            None => Vec::new(),
        }
    }

    fn upload_released(&mut self, batch: BatchId, released: bool) -> Vec<DriverAction> {
        if !released || self.state != RunState::Running || batch.index() >= self.batches.len() {
            return Vec::new();
        }
        self.invoke_pending(batch)
    }

    /// Invokes a batch nothing started yet.
    fn invoke_pending(&mut self, batch: BatchId) -> Vec<DriverAction> {
        if self.batches[batch.index()] != BatchState::Pending {
            return Vec::new();
        }
        self.set_state(batch, BatchState::Running);
        vec![DriverAction::Invoke { batch }]
    }

    fn start(&mut self, now: Micros) -> Vec<DriverAction> {
        if self.state != RunState::Created {
            return Vec::new();
        }
        self.state = RunState::Running;
        self.last_heard = now;
        if self.batches.is_empty() {
            self.state = RunState::Over;
            return vec![DriverAction::Completed];
        }
        // Leaves are invoked as they are uploaded.
        Vec::new()
    }

    fn report(&mut self, report: Report, now: Micros) -> Vec<DriverAction> {
        if report.run_id() != self.run_id || self.state != RunState::Running {
            return Vec::new();
        }
        self.last_heard = now;
        if !self.names_only_known_batches(&report) {
            let unknown = self
                .named_batches(&report)
                .into_iter()
                .find(|batch| batch.index() >= self.batches.len());
            return self.fail(RunFailure::Infrastructure {
                batch: unknown.unwrap_or(BatchId(u32::MAX)),
                message: "a report names a batch or task this run does not have".to_owned(),
            });
        }
        let was_finished = match &report {
            Report::BatchFinished(finished) => {
                self.batches[finished.batch.index()] == BatchState::Finished
            }
            _ => false,
        };
        if let Report::BatchFailed(failed) = &report
            && self.batches[failed.batch.index()] == BatchState::Finished
        {
            // Another attempt finished it: nothing is lost.
            return Vec::new();
        }
        // Whether this report is of one of two attempts that still ran (see "Stragglers").
        let loser_of_two = matches!(&report, Report::BatchAbandoned(abandoned)
            if self.stragglers.extra_attempts[abandoned.batch.index()] > 0);
        self.follow(&report);
        match report {
            Report::Progress(progress) => self.progressed(progress.tasks, progress.warnings),
            Report::BatchFinished(finished) => {
                if was_finished {
                    return Vec::new();
                }
                let mut actions = self.progressed(finished.tasks, finished.warnings);
                if self.finished_batches == self.batches.len() {
                    self.state = RunState::Over;
                    actions.push(DriverAction::Completed);
                    return actions;
                }
                actions.extend(self.invoke_orphans(finished.batch));
                actions
            }
            Report::BatchFailed(failed) => {
                let batch = failed.batch;
                let (kind, failure) = match failed.cause {
                    FailureCause::Task(error) => (Some(FailureKind::Task), RunFailure::Task(error)),
                    FailureCause::Unpicklable { task, message } => (
                        None,
                        RunFailure::Unpicklable {
                            batch,
                            task,
                            message,
                        },
                    ),
                    FailureCause::Infrastructure { message } => (
                        Some(FailureKind::Crash),
                        RunFailure::Infrastructure { batch, message },
                    ),
                };
                match kind {
                    Some(kind) => self.recover_or_fail(batch, kind, failure),
                    None => self.fail(failure),
                }
            }
            Report::BatchAbandoned(abandoned) => match abandoned.reason {
                AbandonReason::FinishedElsewhere => {
                    let batch = abandoned.batch;
                    if self.batches[batch.index()] == BatchState::Running
                        && self.stragglers.backed_up[batch.index()]
                        && !loser_of_two
                    {
                        // The last attempt of a straggler and its backup yielded to the mark
                        // of one that died before its fan-ins: nobody finishes the batch.
                        return self.recover_or_fail(
                            batch,
                            FailureKind::Crash,
                            RunFailure::Infrastructure {
                                batch,
                                message: "the function that marked this batch done stopped \
                                          before finishing it"
                                    .to_owned(),
                            },
                        );
                    }
                    // The winner's report says it finished.
                    Vec::new()
                }
                // The function took the client for gone: its work is lost. Show the recovery
                // a live lease first.
                AbandonReason::ClientGone => {
                    let mut actions = vec![DriverAction::RenewLease];
                    actions.extend(
                        self.recover_or_fail(
                            abandoned.batch,
                            FailureKind::Crash,
                            RunFailure::Infrastructure {
                                batch: abandoned.batch,
                                message: "the function stopped: it took the client for gone (the \
                                      run's lease was not renewed)"
                                    .to_owned(),
                            },
                        ),
                    );
                    if self.state == RunState::Over {
                        actions.retain(|action| *action != DriverAction::RenewLease);
                    }
                    actions
                }
            },
        }
    }

    fn platform_failure(
        &mut self,
        invocation: Option<String>,
        batch: Option<BatchId>,
        error_type: String,
        message: String,
    ) -> Vec<DriverAction> {
        if let Some(id) = &invocation
            && !self.failed_invocations.insert(id.clone())
        {
            // The same invocation's failure, recorded again.
            return Vec::new();
        }
        let batch = self.failed_batch(invocation.as_deref(), batch);
        let tasks_finished = invocation
            .as_deref()
            .and_then(|id| self.invocations.get(id))
            .map_or(0, |state| state.tasks_finished);
        let kind = FunctionFailureKind::from_error_type(&error_type);
        let failure = RunFailure::Function {
            kind,
            batch,
            attempts: 1,
            tasks_finished,
            error_type,
            message,
        };
        let Some(batch) = batch else {
            return self.fail(failure);
        };
        if self.batches[batch.index()] == BatchState::Finished {
            // It died after its last batch was reported: nothing is lost.
            return Vec::new();
        }
        let budget = match kind {
            FunctionFailureKind::OutOfMemory => FailureKind::OutOfMemory,
            FunctionFailureKind::Timeout => FailureKind::Timeout,
            FunctionFailureKind::Crashed => FailureKind::Crash,
        };
        self.recover_or_fail(batch, budget, failure)
    }

    /// Redoes `batch` if the budgets allow, else fails the run with `failure`.
    fn recover_or_fail(
        &mut self,
        batch: BatchId,
        kind: FailureKind,
        mut failure: RunFailure,
    ) -> Vec<DriverAction> {
        if kind != FailureKind::Task && self.stragglers.attempt_stopped(batch) {
            // One of a straggler and its backup stopped; the other runs on.
            return Vec::new();
        }
        let used = self.recoveries[batch.index()][kind as usize];
        let allowed = match kind {
            FailureKind::Crash => self.policy.crash_retries,
            FailureKind::OutOfMemory => self.policy.out_of_memory_retries,
            FailureKind::Timeout => self.policy.timeout_retries,
            FailureKind::Task => self.policy.task_retries,
        };
        let run_allowed = self
            .policy
            .run_retries
            .saturating_add(u32::try_from(self.batches.len() / 10).unwrap_or(u32::MAX));
        if used >= allowed || self.recoveries_in_run >= run_allowed {
            if let RunFailure::Function { attempts, .. } = &mut failure {
                *attempts = used + 1;
            }
            self.set_state(batch, BatchState::Failed);
            return self.fail(failure);
        }
        self.recoveries[batch.index()][kind as usize] += 1;
        self.recoveries_in_run += 1;
        vec![self.recover(batch)]
    }

    /// Invokes `batch` again at a fresh attempt, from the head of its chain of hand-overs.
    fn recover(&mut self, batch: BatchId) -> DriverAction {
        self.invoke_again(batch, false)
    }

    /// Invokes `batch` again at a fresh attempt, from the head of its chain of hand-overs: lost
    /// work, or a `backup` of a straggler (whose original keeps running, and its start time).
    fn invoke_again(&mut self, batch: BatchId, backup: bool) -> DriverAction {
        let mut chain = vec![batch];
        while let Some(parent) = self.memory_parent[chain[chain.len() - 1].index()] {
            chain.push(parent);
        }
        chain.reverse();
        let head = chain.remove(0);
        let attempt = self.next_attempt;
        self.next_attempt += 1;
        if !backup {
            self.set_state(batch, BatchState::Running);
            self.stragglers.running_since[batch.index()] = self.now;
        }
        DriverAction::Recover {
            batch: head,
            attempt,
            recovering: chain,
            backup,
        }
    }

    /// Backups of running batches that take far longer than their finished siblings (see
    /// "Stragglers").
    fn back_up_stragglers(&mut self) -> Vec<DriverAction> {
        let policy = self.policy;
        let now = self.now;
        let allowed = policy
            .run_backups
            .saturating_add(u32::try_from(self.batches.len() / 10).unwrap_or(u32::MAX));
        if policy.backup_factor == 0
            || self.stragglers.backups >= allowed
            || now.saturating_sub(self.stragglers.last_scan) < STRAGGLER_SCAN_INTERVAL
        {
            return Vec::new();
        }
        self.stragglers.last_scan = now;
        let mut actions = Vec::new();
        for index in 0..self.batches.len() {
            let batch = BatchId(index as u32);
            if self.batches[index] != BatchState::Running || self.stragglers.backed_up[index] {
                continue;
            }
            let ran = now.saturating_sub(self.stragglers.running_since[index]);
            if ran < policy.backup_after {
                continue;
            }
            let Some(median) = self.stragglers.sibling_median(batch) else {
                continue;
            };
            if ran <= median.saturating_mul(Micros::from(policy.backup_factor)) {
                continue;
            }
            let running = self.running_batches + self.stragglers.extra_running as usize;
            if self
                .stragglers
                .concurrency_limit
                .is_some_and(|limit| running >= limit)
                || self.stragglers.backups >= allowed
            {
                break;
            }
            self.stragglers.backed_up[index] = true;
            self.stragglers.backups += 1;
            self.stragglers.extra_attempts[index] += 1;
            self.stragglers.extra_running += 1;
            actions.push(self.invoke_again(batch, true));
        }
        actions
    }

    /// The children of `finished` that nothing started although all their parents finished
    /// and they are uploaded (see "Recovery"), invoked at the first attempt.
    fn invoke_orphans(&mut self, finished: BatchId) -> Vec<DriverAction> {
        let orphans: Vec<BatchId> = self.children[finished.index()]
            .iter()
            .copied()
            .filter(|child| {
                self.batches[child.index()] == BatchState::Pending
                    && self.uploaded[child.index()]
                    && self.parents[child.index()]
                        .iter()
                        .all(|parent| self.batches[parent.index()] == BatchState::Finished)
            })
            .collect();
        orphans
            .into_iter()
            .map(|orphan| {
                if self.memory_parent[orphan.index()].is_some() {
                    // Its values died with the function that held them.
                    self.recover(orphan)
                } else {
                    self.set_state(orphan, BatchState::Running);
                    DriverAction::Invoke { batch: orphan }
                }
            })
            .collect()
    }

    /// The records of tasks not passed on yet, as one progress action.
    fn progressed(
        &mut self,
        records: Vec<TaskRecord>,
        warnings: Vec<TaskWarning>,
    ) -> Vec<DriverAction> {
        let mut fresh = Vec::with_capacity(records.len());
        for record in records {
            let seen = &mut self.reported[record.task.index()];
            if !*seen {
                *seen = true;
                fresh.push(record);
            }
        }
        self.finished_tasks += fresh.len();
        if fresh.is_empty() && warnings.is_empty() {
            return Vec::new();
        }
        vec![DriverAction::TasksFinished {
            records: fresh,
            warnings,
        }]
    }

    fn named_batches(&self, report: &Report) -> Vec<BatchId> {
        match report {
            Report::Progress(progress) => vec![progress.batch],
            Report::BatchFinished(finished) => std::iter::once(finished.batch)
                .chain(finished.invoked.iter().copied())
                .chain(finished.became)
                .collect(),
            Report::BatchFailed(failed) => vec![failed.batch],
            Report::BatchAbandoned(abandoned) => vec![abandoned.batch],
        }
    }

    /// Whether every batch and task a report names belongs to the run.
    fn names_only_known_batches(&self, report: &Report) -> bool {
        let batches_known = self
            .named_batches(report)
            .iter()
            .all(|batch| batch.index() < self.batches.len());
        let tasks: &[TaskRecord] = match report {
            Report::Progress(progress) => &progress.tasks,
            Report::BatchFinished(finished) => &finished.tasks,
            Report::BatchFailed(_) | Report::BatchAbandoned(_) => &[],
        };
        let warnings: &[TaskWarning] = match report {
            Report::Progress(progress) => &progress.warnings,
            Report::BatchFinished(finished) => &finished.warnings,
            Report::BatchFailed(_) | Report::BatchAbandoned(_) => &[],
        };
        batches_known
            && tasks
                .iter()
                .all(|record| record.task.index() < self.reported.len())
            && warnings
                .iter()
                .all(|warning| warning.task.index() < self.reported.len())
    }

    /// Updates which batches run, which finished, and what each invocation runs, from a report
    /// of this run.
    fn follow(&mut self, report: &Report) {
        match report {
            Report::Progress(progress) => {
                if self.batches[progress.batch.index()] == BatchState::Pending {
                    self.set_state(progress.batch, BatchState::Running);
                }
                self.track_invocation(
                    &progress.invocation,
                    Some(progress.batch),
                    progress.tasks.len(),
                );
            }
            Report::BatchFinished(finished) => {
                self.set_state(finished.batch, BatchState::Finished);
                self.became[finished.batch.index()] = finished.became;
                for &child in finished.invoked.iter().chain(&finished.became) {
                    if self.batches.get(child.index()) == Some(&BatchState::Pending) {
                        self.set_state(child, BatchState::Running);
                    }
                }
                self.track_invocation(&finished.invocation, finished.became, finished.tasks.len());
            }
            Report::BatchFailed(failed) => self.set_state(failed.batch, BatchState::Failed),
            Report::BatchAbandoned(abandoned) => {
                // The loser of a straggler and its backup stopped.
                let loser = (abandoned.reason == AbandonReason::FinishedElsewhere
                    || self.state == RunState::Over)
                    && self.stragglers.attempt_stopped(abandoned.batch);
                // Stopped, as far as draining is concerned; a winner's report may follow.
                if !loser && self.state == RunState::Over {
                    self.set_state(abandoned.batch, BatchState::Failed);
                }
            }
        }
    }

    fn track_invocation(&mut self, invocation: &str, batch: Option<BatchId>, tasks: usize) {
        if invocation.is_empty() {
            return;
        }
        match (self.invocations.get_mut(invocation), batch) {
            (Some(state), Some(batch)) => {
                state.batch = batch;
                state.tasks_finished += tasks;
            }
            (Some(state), None) => state.tasks_finished += tasks,
            (None, Some(batch)) => {
                self.invocations.insert(
                    invocation.to_owned(),
                    InvocationState {
                        batch,
                        tasks_finished: tasks,
                    },
                );
            }
            (None, None) => {}
        }
    }

    fn set_state(&mut self, batch: BatchId, state: BatchState) {
        let Some(current) = self.batches.get_mut(batch.index()) else {
            return;
        };
        if *current == BatchState::Finished || *current == state {
            return;
        }
        match *current {
            BatchState::Running => self.running_batches -= 1,
            BatchState::Finished => self.finished_batches -= 1,
            _ => {}
        }
        let previous = std::mem::replace(current, state);
        match state {
            BatchState::Running => {
                self.running_batches += 1;
                self.stragglers.running_since[batch.index()] = self.now;
            }
            BatchState::Finished => {
                self.finished_batches += 1;
                if previous == BatchState::Running {
                    self.stragglers.finished(batch, self.now);
                }
            }
            _ => {}
        }
    }

    fn tick(&mut self, now: Micros) -> Vec<DriverAction> {
        if self.state != RunState::Running {
            return Vec::new();
        }
        let silent_for_us = now.saturating_sub(self.last_heard);
        if silent_for_us <= self.silence_limit {
            return self.back_up_stragglers();
        }
        // Nothing arrived for longer than a function may live: what runs is lost.
        self.last_heard = now;
        let pending_batches = self.batches.len() - self.finished_batches;
        let running: Vec<BatchId> = (0..self.batches.len())
            .filter(|&index| self.batches[index] == BatchState::Running)
            .map(|index| BatchId(index as u32))
            .collect();
        if running.is_empty() {
            return self.fail(RunFailure::Lost {
                silent_for_us,
                pending_batches,
            });
        }
        let mut actions = Vec::new();
        for batch in running {
            actions.extend(self.recover_or_fail(
                batch,
                FailureKind::Crash,
                RunFailure::Lost {
                    silent_for_us,
                    pending_batches,
                },
            ));
            if self.state == RunState::Over {
                return actions
                    .into_iter()
                    .filter(|action| matches!(action, DriverAction::Failed(_)))
                    .collect();
            }
        }
        actions
    }

    fn fail(&mut self, failure: RunFailure) -> Vec<DriverAction> {
        self.state = RunState::Over;
        vec![DriverAction::Failed(failure)]
    }
}
