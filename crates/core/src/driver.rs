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
//! * the run is complete when every batch is finished, and failed at the first failure;
//! * reports of other runs are ignored (the channel outlives runs);
//! * silence: a function lives at most its timeout, and the platform reports the ones it stops,
//!   so when nothing at all has arrived for longer than `silence_limit` while batches are
//!   pending, the work is lost and the run fails instead of waiting forever.
//!
//! **Which batch a dead function was running.** An invocation starts with one batch and may
//! *become* others; the platform's failure record only knows the event it was invoked with.
//! The driver follows each invocation (by its request id) through its reports — progress names
//! the batch it runs now, a final report the batch it became — so a failure is blamed on
//! the batch that was running when the function died, once.
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

use std::collections::HashMap;

use dask_serverless_graph::TaskId;
use dask_serverless_plan::{BatchId, Plan};

use crate::messages::{
    FailureCause, Report, TaskError, TaskRecord, TaskWarning, UPLOAD_MEMBER, fan_in_members,
    upload_joins_fan_in,
};
use crate::{Micros, keys};

#[derive(Debug, Clone, PartialEq)]
pub enum DriverEvent {
    /// The run starts.
    Start,
    /// A message from the result channel.
    Report(Report),
    /// The platform stopped a function. `invocation` is its request id and `batch` the
    /// batch it was invoked with, when the platform's record tells them.
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
}

#[derive(Debug, Clone, PartialEq)]
pub enum DriverAction {
    /// Invoke a function for this batch (a leaf, or one the upload released).
    Invoke { batch: BatchId },
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
    /// By batch id: the size of its fan-in set when the client's upload joins it.
    upload_fan_ins: Vec<Option<u32>>,
    batches: Vec<BatchState>,
    /// By task: already passed on to progress.
    reported: Vec<bool>,
    invocations: HashMap<String, InvocationState>,
    finished_batches: usize,
    running_batches: usize,
    finished_tasks: usize,
    last_heard: Micros,
    silence_limit: Micros,
    state: RunState,
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
            finished_batches: 0,
            running_batches: 0,
            finished_tasks: 0,
            last_heard: 0,
            silence_limit,
            state: RunState::Created,
        }
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
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
        self.running_batches == 0
    }

    /// Batches invoked or become that have not reported yet.
    pub fn running_batches(&self) -> usize {
        self.running_batches
    }

    pub fn handle(&mut self, event: DriverEvent, now: Micros) -> Vec<DriverAction> {
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
                    if let Some(batch) = self.failed_batch(invocation.as_deref(), batch) {
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
            } => {
                let batch = self.failed_batch(invocation.as_deref(), batch);
                if let Some(batch) = batch {
                    self.set_state(batch, BatchState::Failed);
                }
                let tasks_finished = invocation
                    .as_deref()
                    .and_then(|id| self.invocations.get(id))
                    .map_or(0, |state| state.tasks_finished);
                self.fail(RunFailure::Function {
                    kind: FunctionFailureKind::from_error_type(&error_type),
                    batch,
                    tasks_finished,
                    error_type,
                    message,
                })
            }
            DriverEvent::Uploaded { batch } => self.uploaded(batch),
            DriverEvent::UploadFanInAnswered { batch, released } => {
                self.upload_released(batch, released)
            }
            DriverEvent::Tick => self.tick(now),
        }
    }

    /// The batch a failed invocation was running: the last one its reports named, else the
    /// one it was invoked with.
    fn failed_batch(
        &self,
        invocation: Option<&str>,
        invoked_with: Option<BatchId>,
    ) -> Option<BatchId> {
        invocation
            .and_then(|id| self.invocations.get(id))
            .map(|state| state.batch)
            .or(invoked_with)
            .filter(|batch| batch.index() < self.batches.len())
    }

    fn uploaded(&mut self, batch: BatchId) -> Vec<DriverAction> {
        if self.state != RunState::Running || batch.index() >= self.batches.len() {
            return Vec::new();
        }
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
                }
                actions
            }
            Report::BatchFailed(failed) => match failed.cause {
                FailureCause::Task(error) => self.fail(RunFailure::Task(error)),
                FailureCause::Unpicklable { task, message } => self.fail(RunFailure::Unpicklable {
                    batch: failed.batch,
                    task,
                    message,
                }),
                FailureCause::Infrastructure { message } => self.fail(RunFailure::Infrastructure {
                    batch: failed.batch,
                    message,
                }),
            },
        }
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
            Report::BatchFailed(_) => &[],
        };
        let warnings: &[TaskWarning] = match report {
            Report::Progress(progress) => &progress.warnings,
            Report::BatchFinished(finished) => &finished.warnings,
            Report::BatchFailed(_) => &[],
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
                for &child in finished.invoked.iter().chain(&finished.became) {
                    if self.batches.get(child.index()) == Some(&BatchState::Pending) {
                        self.set_state(child, BatchState::Running);
                    }
                }
                self.track_invocation(&finished.invocation, finished.became, finished.tasks.len());
            }
            Report::BatchFailed(failed) => self.set_state(failed.batch, BatchState::Failed),
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
        match state {
            BatchState::Running => self.running_batches += 1,
            BatchState::Finished => self.finished_batches += 1,
            _ => {}
        }
        *current = state;
    }

    fn tick(&mut self, now: Micros) -> Vec<DriverAction> {
        if self.state != RunState::Running {
            return Vec::new();
        }
        let silent_for_us = now.saturating_sub(self.last_heard);
        if silent_for_us > self.silence_limit {
            return self.fail(RunFailure::Lost {
                silent_for_us,
                pending_batches: self.batches.len() - self.finished_batches,
            });
        }
        Vec::new()
    }

    fn fail(&mut self, failure: RunFailure) -> Vec<DriverAction> {
        self.state = RunState::Over;
        vec![DriverAction::Failed(failure)]
    }
}
