//! The executor: the protocol of one function invocation.
//!
//! An invocation starts with one batch and may run several: after a batch, the executor
//! adds it to the fan-in set of each child; the children whose sets became complete are
//! *released* to this executor. It becomes one of them (the plan's preferred child when it is
//! released, otherwise the lowest id) and invokes the rest. Values the next batch reads stay
//! in the host's memory; everything else is dropped.
//!
//! States:
//!
//! ```text
//!  Loading --BatchLoaded--> [Loading inputs] --InputsLoaded--> Running --TasksFinished--> FanningIn
//!     ^                                                                                    |
//!     +---------------------- becomes a released child <---- all FanInAnswered ------------+
//!                                                                  |
//!                                                                  +--> Finished (nothing released)
//! ```
//!
//! While the host runs a batch's tasks it may hand over the tasks finished so far
//! ([`ExecutorEvent::TasksProgressed`]); each batch becomes one [`Report::Progress`], and the
//! batch's final report carries only what came after the last batch.
//!
//! A task's exception or any failure around the tasks ends the invocation with a
//! [`Report::BatchFailed`]. So does a run whose objects are gone (the client ended it after
//! a failure and is waiting for its running batches to stop).
//!
//! An input missing from the store means the run has ended (the client deleted its batches) or
//! the value was lost: the executor asks whether its batch still exists to tell which. An
//! invocation whose first batch is already gone (a duplicate delivered after the run ended)
//! deletes the claim it just wrote, which would otherwise outlive the run. A child
//! whose invocation failed is reported failed in its own name, so the client never waits for
//! it.
//!
//! **At least once.** The platform may deliver one invocation event several times, and the
//! client invokes a batch again when it recovers lost work. So an invocation first *claims*
//! its event (`keys::claim_key`: its first batch and attempt): the first delivery to write
//! the claim runs, the others finish at once without a report. Fan-in sets release a child
//! once whoever adds the member, so a child is never invoked twice through fan-in.
//!
//! **Recovery.** An invocation with an attempt above the first was started by the client to
//! redo lost work. Values handed over in memory died with the function that held them, so it
//! starts at the head of the chain of hand-overs that leads to the lost batch and becomes each
//! batch of `recovering` in turn, whatever the fan-ins answer (their sets were completed by the
//! lost attempt). After that, it still becomes a batch's preferred child whose set has only
//! that batch as member even when the answer is "already added": the lost attempt added it,
//! and nobody else can run the child.
//!
//! **Stopping early.** Between tasks the host asks whether to go on
//! ([`ExecutorEvent::Boundary`]); once every [`STOP_CHECK_INTERVAL`] of the invocation's tasks
//! (never in a shorter invocation) the executor looks at the store
//! ([`ExecutorAction::CheckStop`]): a batch whose outputs someone else stored (a
//! backup won) is abandoned, unless this invocation only re-runs it to rebuild values handed
//! over in memory, or the done mark is that of an earlier attempt (the client redoes a batch
//! only once it took the earlier attempt for lost: that one may have died between its done
//! mark and its fan-ins, and would never report); and every batch is abandoned once the client's lease has not changed for
//! [`LEASE_TIMEOUT`] (the client is gone) or is missing (the client ended the run). An
//! abandoned batch ends in a [`Report::BatchAbandoned`].
//!
//! **Backups.** The client starts a *backup* of a batch that runs far longer than its siblings
//! (a straggler) while the original still runs: the same batch at a fresh attempt, marked
//! `backup`. Whoever of the two writes the batch's done mark first (create-if-absent) wins
//! and goes on to the fan-ins; the other yields when it finds the mark — when its own write
//! finds it there, or at its next stop check — and ends with
//! [`AbandonReason::FinishedElsewhere`]. A recovery does not yield to the mark of an earlier
//! attempt (above); a backup does, because that attempt is alive and does its own fan-ins.
//! Both attempts store the batch's values, so a backup assumes what Dask's own recomputation
//! of lost values assumes: a task computes the same value each time it runs.
//!
//! Invariants: each child of a batch is asked about exactly once; a child is invoked or
//! become only when its fan-in answered `released`; every batch run ends in exactly one
//! report; [`ExecutorAction::Finish`] is the last action emitted, but for the failure report of
//! a child whose invocation came back failed (the host performs an event's actions before the
//! ones queued earlier).

use std::collections::{BTreeSet, VecDeque};

use dask_serverless_graph::TaskId;
use dask_serverless_plan::BatchId;

use crate::Micros;
use crate::keys::{claim_key, done_key, lease_key};
use crate::messages::{
    AbandonReason, AbandonReport, BatchReport, BatchSpec, FIRST_ATTEMPT, FailureCause,
    FailureReport, ProgressReport, Report, TaskError, TaskRecord, TaskWarning,
};

/// Least time between two looks at the store from task boundaries.
pub const STOP_CHECK_INTERVAL: Micros = 1_000_000;
/// How long the client's lease may stay unchanged before the executor takes the client for
/// gone (the client renews it every [`LEASE_RENEWAL`]).
pub const LEASE_TIMEOUT: Micros = 15_000_000;
/// How often the client renews the run's lease.
pub const LEASE_RENEWAL: Micros = 2_000_000;

/// What the host tells the executor.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecutorEvent {
    /// The invocation starts.
    Start,
    /// The answer to [`ExecutorAction::Claim`]: whether this delivery wrote the claim.
    Claimed { won: bool },
    /// The host is between two tasks of the running batch and asks whether to go on.
    Boundary,
    /// The answer to [`ExecutorAction::CheckStop`]: the content of the batch's done mark
    /// (when asked; `None`: missing), and the lease's content (`None`: missing).
    StopChecked {
        done_mark: Option<Vec<u8>>,
        lease: Option<Vec<u8>>,
    },
    /// The spec (and the tasks) of the batch asked for are loaded.
    BatchLoaded { spec: BatchSpec },
    /// The batch's objects are gone: the client ended the run.
    RunGone,
    /// The inputs asked for are in memory.
    InputsLoaded { bytes: u64 },
    /// Some inputs asked for are not in the store: either the client ended the run (and
    /// deleted its objects) or they were lost. `message` says which.
    InputsMissing { message: String },
    /// Whether the batch being run still exists in the store (asked by
    /// [`ExecutorAction::CheckBatchExists`]): a run whose batches are gone has ended.
    BatchExists { exists: bool },
    /// Invoking a released child failed.
    InvokeFailed { batch: BatchId, message: String },
    /// Some tasks of the running batch finished (stored outputs are in the store); more
    /// follow.
    TasksProgressed {
        records: Vec<TaskRecord>,
        warnings: Vec<TaskWarning>,
    },
    /// Every other task of the batch ran; stored outputs are in the store.
    TasksFinished {
        records: Vec<TaskRecord>,
        warnings: Vec<TaskWarning>,
    },
    /// A task raised.
    TaskFailed { error: TaskError },
    /// A task's result cannot be pickled.
    ResultUnpicklable { task: TaskId, message: String },
    /// The answer to [`ExecutorAction::MarkDone`]: `None` when this invocation wrote the mark,
    /// else the content of the mark another attempt wrote first.
    MarkedDone { existing: Option<Vec<u8>> },
    /// The answer of one fan-in asked for.
    FanInAnswered { child: BatchId, released: bool },
    /// Something around the tasks failed (store, invoke, pickling).
    Failed { message: String },
}

/// What the executor asks the host to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecutorAction {
    /// Write the invocation's claim at `key` unless it exists (`Store::put_new`); answer with
    /// [`ExecutorEvent::Claimed`].
    Claim { key: String },
    /// Read whether `done_key` exists (when given) and the lease at `lease_key`; answer with
    /// [`ExecutorEvent::StopChecked`].
    CheckStop {
        done_key: Option<String>,
        lease_key: String,
    },
    /// The host may go on with the next task (the answer to [`ExecutorEvent::Boundary`]).
    Continue,
    /// Stop running tasks: the batch is abandoned (the answer to [`ExecutorEvent::Boundary`]
    /// or [`ExecutorEvent::StopChecked`]); the actions that follow end the invocation.
    StopTasks,
    /// Write the batch's done mark, `content` at `key`, unless it exists (`Store::put_new`);
    /// answer with [`ExecutorEvent::MarkedDone`] (see [`done_mark`]).
    MarkDone { key: String, content: String },
    /// Delete this invocation's claim at `key`; nothing answers. The run ended before the
    /// invocation started (a late duplicate delivery): its claim was written after the client
    /// deleted the run's objects and would outlive the run.
    DeleteClaim { key: String },
    /// Read the spec and tasks of a batch.
    LoadBatch { batch: BatchId },
    /// Read these values from the store into memory; answer with
    /// [`ExecutorEvent::InputsLoaded`] or [`ExecutorEvent::InputsMissing`].
    LoadInputs { tasks: Vec<TaskId> },
    /// Does the batch's spec still exist in the store? Answer with
    /// [`ExecutorEvent::BatchExists`].
    CheckBatchExists { batch: BatchId },
    /// Run the loaded batch's tasks in order, storing its stored outputs as they come.
    RunTasks,
    /// Add `member` to the set at `key`; answer with [`ExecutorEvent::FanInAnswered`].
    FanIn {
        child: BatchId,
        key: String,
        member: String,
        expected: u32,
    },
    /// Invoke a function for this released child.
    Invoke { batch: BatchId },
    /// Keep these values in memory and drop every other.
    Retain { tasks: Vec<TaskId> },
    /// Send on the result channel.
    Report(Report),
    /// The invocation is over.
    Finish,
}

/// The content of a done mark: the attempt that stored the batch's outputs, and its
/// invocation.
fn done_mark(attempt: u32, invocation: &str) -> String {
    format!("attempt {attempt} {invocation}")
}

/// The attempt a done mark names; a mark it cannot read counts as the latest attempt.
fn marked_attempt(mark: &[u8]) -> u32 {
    std::str::from_utf8(mark)
        .ok()
        .and_then(|text| text.strip_prefix("attempt "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|attempt| attempt.parse().ok())
        .unwrap_or(u32::MAX)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Created,
    Claiming,
    Loading {
        batch: BatchId,
    },
    LoadingInputs,
    /// An input was missing: is the run gone? The message says what was missing.
    CheckingRun {
        message: String,
    },
    Running,
    /// The tasks ran; waiting for the answer of [`ExecutorAction::MarkDone`].
    MarkingDone,
    FanningIn {
        waiting: BTreeSet<BatchId>,
        released: Vec<BatchId>,
    },
    Finished,
}

/// The state machine of one invocation.
#[derive(Debug)]
pub struct Executor {
    run_id: String,
    invocation: String,
    cold: bool,
    first_batch: BatchId,
    attempt: u32,
    /// The batches still to become, whatever their fan-ins answer (a recovery's chain).
    recovering: VecDeque<BatchId>,
    /// A backup of a straggler: it yields to any other attempt's done mark.
    backup: bool,
    state: State,
    /// When the store was last looked at from a task boundary.
    last_stop_check: Option<Micros>,
    /// The lease's content when last read, and when it was first seen with that content.
    lease: Option<(Vec<u8>, Micros)>,
    spec: Option<BatchSpec>,
    /// Values the host holds that the current batch may read without loading.
    held: BTreeSet<TaskId>,
    records: Vec<TaskRecord>,
    warnings: Vec<TaskWarning>,
    loaded_bytes: u64,
}

impl Executor {
    pub fn new(run_id: String, invocation: String, cold: bool, batch: BatchId) -> Executor {
        Executor {
            run_id,
            invocation,
            cold,
            first_batch: batch,
            attempt: FIRST_ATTEMPT,
            recovering: VecDeque::new(),
            backup: false,
            state: State::Created,
            last_stop_check: None,
            lease: None,
            spec: None,
            held: BTreeSet::new(),
            records: Vec::new(),
            warnings: Vec::new(),
            loaded_bytes: 0,
        }
    }

    /// This invocation at `attempt`, becoming the batches of `recovering` in turn after its
    /// first (see "Recovery" in the module documentation).
    pub fn with_attempt(mut self, attempt: u32, recovering: Vec<BatchId>) -> Executor {
        self.attempt = attempt;
        self.recovering = recovering.into();
        self
    }

    /// This invocation as a backup of a straggler (see "Backups" in the module documentation).
    pub fn as_backup(mut self, backup: bool) -> Executor {
        self.backup = backup;
        self
    }

    /// The batch being run, once loaded.
    pub fn spec(&self) -> Option<&BatchSpec> {
        self.spec.as_ref()
    }

    pub fn is_finished(&self) -> bool {
        self.state == State::Finished
    }

    pub fn handle(&mut self, event: ExecutorEvent, now: Micros) -> Vec<ExecutorAction> {
        let actions = self.react(event, now);
        if self.last_stop_check.is_none() && actions.contains(&ExecutorAction::RunTasks) {
            // The first look at the store comes an interval into the invocation's tasks: a
            // short invocation never pays for one.
            self.last_stop_check = Some(now);
        }
        actions
    }

    fn react(&mut self, event: ExecutorEvent, now: Micros) -> Vec<ExecutorAction> {
        // A child's failed invocation is reported whenever it comes back, even after the end.
        if self.state == State::Finished && !matches!(event, ExecutorEvent::InvokeFailed { .. }) {
            return match event {
                // The host asks between tasks of a batch that already ended: stop.
                ExecutorEvent::Boundary | ExecutorEvent::StopChecked { .. } => {
                    vec![ExecutorAction::StopTasks]
                }
                _ => Vec::new(),
            };
        }
        match event {
            ExecutorEvent::Start => self.start(),
            ExecutorEvent::Claimed { won } => {
                if self.state != State::Claiming {
                    return self.protocol_error("Claimed");
                }
                if won {
                    self.load_first_batch()
                } else {
                    // Another delivery of this event runs it: end without a word.
                    self.state = State::Finished;
                    vec![ExecutorAction::Finish]
                }
            }
            ExecutorEvent::Boundary => self.boundary(now),
            ExecutorEvent::StopChecked { done_mark, lease } => {
                self.stop_checked(done_mark, lease, now)
            }
            ExecutorEvent::BatchLoaded { spec } => self.batch_loaded(spec),
            ExecutorEvent::RunGone => {
                // A claim written after the run's objects were deleted would stay forever:
                // when the first batch is gone, the claim may be such a one, so it goes. (While
                // the run lives, its batches exist, and claims go with the run's objects.)
                let claim =
                    matches!(self.state, State::Loading { batch } if batch == self.first_batch)
                        .then(|| ExecutorAction::DeleteClaim {
                            key: claim_key(&self.run_id, self.first_batch, self.attempt),
                        });
                // Tell the client (it may be draining the run) that this batch never ran.
                let mut actions = self.fail(FailureCause::Infrastructure {
                    message: "the run ended before this batch started".to_owned(),
                });
                actions.splice(0..0, claim);
                actions
            }
            ExecutorEvent::InputsLoaded { bytes } => {
                if self.state != State::LoadingInputs {
                    return self.protocol_error("InputsLoaded");
                }
                self.loaded_bytes += bytes;
                self.state = State::Running;
                vec![ExecutorAction::RunTasks]
            }
            ExecutorEvent::InputsMissing { message } => {
                if self.state != State::LoadingInputs {
                    return self.protocol_error("InputsMissing");
                }
                let batch = self
                    .spec
                    .as_ref()
                    .expect("loading inputs implies a spec")
                    .batch;
                self.state = State::CheckingRun { message };
                vec![ExecutorAction::CheckBatchExists { batch }]
            }
            ExecutorEvent::BatchExists { exists } => {
                let State::CheckingRun { message } = &self.state else {
                    return self.protocol_error("BatchExists");
                };
                if exists {
                    let message = format!("could not read an input value: {message}");
                    self.fail(FailureCause::Infrastructure { message })
                } else {
                    self.fail(FailureCause::Infrastructure {
                        message: "the run ended before this batch started".to_owned(),
                    })
                }
            }
            ExecutorEvent::InvokeFailed { batch, message } => {
                // The child never started: the client learns it from a failure in its name.
                vec![ExecutorAction::Report(Report::BatchFailed(FailureReport {
                    run_id: self.run_id.clone(),
                    batch,
                    invocation: String::new(),
                    cause: FailureCause::Infrastructure {
                        message: format!(
                            "could not invoke a function for batch {}: {message}",
                            batch.0
                        ),
                    },
                }))]
            }
            ExecutorEvent::TasksProgressed { records, warnings } => {
                self.tasks_progressed(records, warnings)
            }
            ExecutorEvent::TasksFinished { records, warnings } => {
                self.tasks_finished(records, warnings)
            }
            ExecutorEvent::MarkedDone { existing } => self.marked_done(existing),
            ExecutorEvent::FanInAnswered { child, released } => {
                self.fan_in_answered(child, released)
            }
            ExecutorEvent::TaskFailed { error } => self.fail(FailureCause::Task(error)),
            ExecutorEvent::ResultUnpicklable { task, message } => {
                self.fail(FailureCause::Unpicklable { task, message })
            }
            ExecutorEvent::Failed { message } => {
                self.fail(FailureCause::Infrastructure { message })
            }
        }
    }

    fn start(&mut self) -> Vec<ExecutorAction> {
        if self.state != State::Created {
            return self.protocol_error("Start");
        }
        self.state = State::Claiming;
        vec![ExecutorAction::Claim {
            key: claim_key(&self.run_id, self.first_batch, self.attempt),
        }]
    }

    fn load_first_batch(&mut self) -> Vec<ExecutorAction> {
        self.state = State::Loading {
            batch: self.first_batch,
        };
        vec![ExecutorAction::LoadBatch {
            batch: self.first_batch,
        }]
    }

    /// Whether the running batch is only re-run to rebuild values handed over in memory (a
    /// recovery's chain has batches after it): its done mark does not stop it.
    fn rebuilding(&self) -> bool {
        !self.recovering.is_empty()
    }

    fn boundary(&mut self, now: Micros) -> Vec<ExecutorAction> {
        if self.state != State::Running {
            return self.protocol_error("Boundary");
        }
        let due = self
            .last_stop_check
            .is_none_or(|last| now.saturating_sub(last) >= STOP_CHECK_INTERVAL);
        if !due {
            return vec![ExecutorAction::Continue];
        }
        self.last_stop_check = Some(now);
        let spec = self.spec.as_ref().expect("running implies a loaded spec");
        vec![ExecutorAction::CheckStop {
            done_key: (!self.rebuilding()).then(|| done_key(&self.run_id, spec.batch)),
            lease_key: lease_key(&self.run_id),
        }]
    }

    fn stop_checked(
        &mut self,
        done_mark: Option<Vec<u8>>,
        lease: Option<Vec<u8>>,
        now: Micros,
    ) -> Vec<ExecutorAction> {
        if self.state != State::Running {
            return self.protocol_error("StopChecked");
        }
        let client_gone = match (lease, &self.lease) {
            (None, _) => true,
            (Some(content), Some((seen, since))) if content == *seen => {
                now.saturating_sub(*since) > LEASE_TIMEOUT
            }
            (Some(content), _) => {
                self.lease = Some((content, now));
                false
            }
        };
        let reason = if client_gone {
            AbandonReason::ClientGone
        } else if done_mark
            .as_deref()
            .is_some_and(|mark| self.yields_to(mark))
        {
            AbandonReason::FinishedElsewhere
        } else {
            return vec![ExecutorAction::Continue];
        };
        self.abandon(reason)
    }

    /// Whether a done mark this invocation did not write ends its attempt at the running batch:
    /// a mark of this attempt (another delivery) or of a later one (the client took this one
    /// for lost, or a backup overtook this straggler) always; an earlier attempt's only for a
    /// backup (the original is alive and does its fan-ins). A recovery runs on over an earlier
    /// attempt's mark: that attempt may have died between its mark and its fan-ins. Batches
    /// re-run to rebuild values handed over in memory never yield.
    fn yields_to(&self, mark: &[u8]) -> bool {
        !self.rebuilding() && (self.backup || marked_attempt(mark) >= self.attempt)
    }

    /// Stops the running batch without a failure: report why and end the invocation.
    fn abandon(&mut self, reason: AbandonReason) -> Vec<ExecutorAction> {
        let mut actions = vec![ExecutorAction::StopTasks];
        actions.extend(self.yield_batch(reason));
        actions
    }

    /// Ends the invocation with the current batch abandoned (its tasks no longer run).
    fn yield_batch(&mut self, reason: AbandonReason) -> Vec<ExecutorAction> {
        let spec = self.spec.take().expect("abandoning implies a loaded spec");
        self.state = State::Finished;
        self.held.clear();
        vec![
            ExecutorAction::Report(Report::BatchAbandoned(AbandonReport {
                run_id: self.run_id.clone(),
                batch: spec.batch,
                invocation: self.invocation.clone(),
                reason,
                store: Default::default(),
                resources: Default::default(),
            })),
            ExecutorAction::Retain { tasks: Vec::new() },
            ExecutorAction::Finish,
        ]
    }

    fn batch_loaded(&mut self, spec: BatchSpec) -> Vec<ExecutorAction> {
        let expected = match self.state {
            State::Loading { batch } => batch,
            _ => return self.protocol_error("BatchLoaded"),
        };
        if spec.batch != expected {
            return self.fail(FailureCause::Infrastructure {
                message: format!(
                    "loaded batch {} while batch {} was asked for",
                    spec.batch.0, expected.0
                ),
            });
        }
        let missing: Vec<TaskId> = spec
            .inputs
            .iter()
            .copied()
            .filter(|input| !self.held.contains(input))
            .collect();
        self.records.clear();
        self.warnings.clear();
        self.loaded_bytes = 0;
        self.spec = Some(spec);
        if missing.is_empty() {
            self.state = State::Running;
            vec![ExecutorAction::RunTasks]
        } else {
            self.state = State::LoadingInputs;
            vec![ExecutorAction::LoadInputs { tasks: missing }]
        }
    }

    fn tasks_progressed(
        &mut self,
        records: Vec<TaskRecord>,
        warnings: Vec<TaskWarning>,
    ) -> Vec<ExecutorAction> {
        if self.state != State::Running {
            return self.protocol_error("TasksProgressed");
        }
        if records.is_empty() && warnings.is_empty() {
            return Vec::new();
        }
        let spec = self.spec.as_ref().expect("running implies a loaded spec");
        vec![ExecutorAction::Report(Report::Progress(ProgressReport {
            run_id: self.run_id.clone(),
            batch: spec.batch,
            invocation: self.invocation.clone(),
            tasks: records,
            warnings,
        }))]
    }

    fn tasks_finished(
        &mut self,
        records: Vec<TaskRecord>,
        warnings: Vec<TaskWarning>,
    ) -> Vec<ExecutorAction> {
        if self.state != State::Running {
            return self.protocol_error("TasksFinished");
        }
        self.records = records;
        self.warnings = warnings;
        let spec = self.spec.as_ref().expect("running implies a loaded spec");
        self.held = spec
            .stored_outputs
            .iter()
            .chain(&spec.memory_outputs)
            .copied()
            .collect();
        let mark_done = ExecutorAction::MarkDone {
            key: done_key(&self.run_id, spec.batch),
            content: done_mark(self.attempt, &self.invocation),
        };
        self.state = State::MarkingDone;
        vec![mark_done]
    }

    /// The batch's done mark is written (`existing` is `None`), or another attempt's was
    /// there: this attempt yields to it, or goes on to the fan-ins (see [`Executor::yields_to`]).
    fn marked_done(&mut self, existing: Option<Vec<u8>>) -> Vec<ExecutorAction> {
        if self.state != State::MarkingDone {
            return self.protocol_error("MarkedDone");
        }
        if existing.is_some_and(|mark| self.yields_to(&mark)) {
            return self.yield_batch(AbandonReason::FinishedElsewhere);
        }
        let spec = self
            .spec
            .as_ref()
            .expect("marking done implies a loaded spec");
        if spec.children.is_empty() {
            return self.conclude(Vec::new());
        }
        let member = spec.batch.0.to_string();
        let actions = spec
            .children
            .iter()
            .map(|child| ExecutorAction::FanIn {
                child: child.batch,
                key: crate::keys::fan_in_key(&self.run_id, child.batch),
                member: member.clone(),
                expected: child.fan_in_members,
            })
            .collect();
        self.state = State::FanningIn {
            waiting: spec.children.iter().map(|child| child.batch).collect(),
            released: Vec::new(),
        };
        actions
    }

    fn fan_in_answered(&mut self, child: BatchId, was_released: bool) -> Vec<ExecutorAction> {
        // An answer for a child not asked about, or a repeated one, changes nothing.
        let State::FanningIn { waiting, released } = &mut self.state else {
            return Vec::new();
        };
        if !waiting.remove(&child) {
            return Vec::new();
        }
        if was_released {
            released.push(child);
        }
        if !waiting.is_empty() {
            return Vec::new();
        }
        let released = std::mem::take(released);
        self.conclude(released)
    }

    /// Ends the current batch: invoke released children but one, report, become that one.
    fn conclude(&mut self, mut released: Vec<BatchId>) -> Vec<ExecutorAction> {
        let spec = self.spec.take().expect("concluding implies a loaded spec");
        released.sort_unstable();
        let next_in_chain = self
            .recovering
            .front()
            .copied()
            .filter(|next| spec.children.iter().any(|child| child.batch == *next));
        // A recovery becomes a handed-over child its set would not release again: the lost
        // attempt added this batch, and only this batch, to it.
        let handed_over = (self.attempt > FIRST_ATTEMPT)
            .then_some(spec.preferred_child)
            .flatten()
            .filter(|preferred| {
                spec.children
                    .iter()
                    .any(|child| child.batch == *preferred && child.fan_in_members == 1)
            });
        let became = if let Some(next) = next_in_chain {
            self.recovering.pop_front();
            released.retain(|&child| child != next);
            Some(next)
        } else {
            spec.preferred_child
                .filter(|preferred| released.contains(preferred))
                .or(handed_over)
                .or_else(|| released.first().copied())
        };
        let invoked: Vec<BatchId> = released
            .iter()
            .copied()
            .filter(|&child| Some(child) != became)
            .collect();
        let mut actions: Vec<ExecutorAction> = invoked
            .iter()
            .map(|&batch| ExecutorAction::Invoke { batch })
            .collect();
        actions.push(ExecutorAction::Report(Report::BatchFinished(BatchReport {
            run_id: self.run_id.clone(),
            batch: spec.batch,
            invocation: self.invocation.clone(),
            cold: self.cold,
            tasks: std::mem::take(&mut self.records),
            loaded_bytes: self.loaded_bytes,
            invoked,
            became,
            warnings: std::mem::take(&mut self.warnings),
            store: Default::default(),
            resources: Default::default(),
        })));
        // Only the first batch of an invocation pays the cold start.
        self.cold = false;
        match became {
            Some(child) => {
                actions.push(ExecutorAction::Retain {
                    tasks: self.held.iter().copied().collect(),
                });
                self.state = State::Loading { batch: child };
                actions.push(ExecutorAction::LoadBatch { batch: child });
            }
            None => {
                self.held.clear();
                self.state = State::Finished;
                actions.push(ExecutorAction::Retain { tasks: Vec::new() });
                actions.push(ExecutorAction::Finish);
            }
        }
        actions
    }

    fn fail(&mut self, cause: FailureCause) -> Vec<ExecutorAction> {
        let batch = match (&self.spec, &self.state) {
            (Some(spec), _) => spec.batch,
            (None, State::Loading { batch }) => *batch,
            (None, _) => self.first_batch,
        };
        self.state = State::Finished;
        self.held.clear();
        vec![
            ExecutorAction::Report(Report::BatchFailed(FailureReport {
                run_id: self.run_id.clone(),
                batch,
                invocation: self.invocation.clone(),
                cause,
            })),
            ExecutorAction::Retain { tasks: Vec::new() },
            ExecutorAction::Finish,
        ]
    }

    fn protocol_error(&mut self, event: &str) -> Vec<ExecutorAction> {
        let message = format!(
            "internal protocol error: {event} arrived in state {:?}",
            self.state
        );
        self.fail(FailureCause::Infrastructure { message })
    }
}
