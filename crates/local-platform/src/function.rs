//! One function's workers and invocations: admission, dispatch and completion.
//!
//! ## Workers
//! A worker is one process running the function's runtime, with its own Runtime API listener.
//! Its phase moves as follows:
//!
//! ```text
//!            first /next                      invocation assigned
//! Starting ─────────────────► Idle ◄─────────────────────────────► Busy
//!     │   (Busy at once if it was       response or error posted        │
//!     │    started for an invocation)                                   │
//!     └──────────────► Stopping ◄───────────────────────────────────────┘
//!        killed (timeout, memory, deletion, shutdown) or process exited  ──► removed
//! ```
//!
//! - **Starting**: the process is launched (or about to be) and has not yet asked for work.
//!   Workers are started lazily, one per invocation that finds no idle worker (a cold start),
//!   while fewer than `concurrency` workers exist; the invocation that caused the start is
//!   assigned to it at once.
//! - **Idle**: warm, waiting in a `/next` long poll. An idle worker takes the next invocation.
//! - **Busy**: holds an assignment. The assignment is *delivered* when `/next` hands it to the
//!   process; its deadline (`timeout`) starts then.
//! - **Stopping**: its process group was sent SIGKILL; it still counts against `concurrency`
//!   until its supervisor has reaped the process and removed it. A removed worker is replaced
//!   lazily by the next invocation that needs one.
//!
//! ## Invocations
//! A synchronous invocation is admitted only if an idle worker exists or a worker may be started;
//! otherwise it is throttled (429). An asynchronous (`Event`) invocation is always accepted: if no
//! worker is available it waits in the function's FIFO event queue, and the next worker that
//! becomes idle or is removed takes it (so the queue is non-empty only while every allowed worker
//! exists and is busy). Every invocation ends exactly once, in [`complete`], with an [`Outcome`]:
//! whoever takes the assignment out of the worker under the function's lock (the Runtime API
//! handler, the limit enforcer, the supervisor of an exited process, a deletion) completes it.
//! A failed `Event` invocation becomes a record in the function's on-failure queue.
//!
//! Everything here runs under the function's lock and never awaits: it returns the workers to
//! launch, and the caller launches them and completes invocations after releasing the lock.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::{Notify, oneshot};

use crate::config::{FunctionConfig, function_arn};
use crate::output::{CurrentOutput, OutputHistory};
use crate::platform::Shared;
use crate::statistics::{Counter, Counters};
use crate::worker::{OutputTail, kill_process_group};

/// A worker's number within its function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct WorkerId(pub(crate) u64);

impl fmt::Display for WorkerId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "worker-{}", self.0)
    }
}

/// Who waits for an invocation's outcome.
#[derive(Debug)]
pub(crate) enum Caller {
    /// A `RequestResponse` caller, waiting on its HTTP request.
    Waiting(oneshot::Sender<Outcome>),
    /// An `Event` invocation: nobody waits; failures go to the on-failure queue.
    Event,
}

#[derive(Debug)]
pub(crate) struct Invocation {
    pub(crate) request_id: String,
    /// When the platform accepted it.
    pub(crate) submitted: SystemTime,
    pub(crate) payload: Bytes,
    pub(crate) caller: Caller,
}

/// How an invocation ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    Success(Bytes),
    Failure(Failure),
    /// The function was deleted or the local platform shut down before the invocation finished.
    Abandoned(String),
}

/// Why an invocation failed; decides its statistics counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    Handler,
    ResponseTooLarge,
    Timeout,
    OutOfMemory,
    Crash,
    Initialization,
}

/// A failed invocation, as the caller sees it: `errorType`, `errorMessage` and the JSON body.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) kind: FailureKind,
    pub(crate) error_type: String,
    pub(crate) message: String,
    /// The body returned to a synchronous caller: `{"errorMessage","errorType",...}`.
    pub(crate) body: Bytes,
}

impl Failure {
    /// A failure raised by the local platform itself (limits, crashes).
    pub(crate) fn new(kind: FailureKind, error_type: &str, message: String) -> Self {
        let body = serde_json::json!({
            "errorMessage": message,
            "errorType": error_type,
            "stackTrace": [],
        });
        Self {
            kind,
            error_type: error_type.to_string(),
            message,
            body: Bytes::from(body.to_string()),
        }
    }

    /// A failure reported by the runtime on `/error`: its body is passed through as is when it
    /// is a JSON object, and wrapped otherwise.
    pub(crate) fn reported(body: Bytes, error_type_header: Option<&str>) -> Self {
        let parsed: Option<serde_json::Map<String, serde_json::Value>> =
            serde_json::from_slice(&body).ok();
        let field = |name: &str| {
            parsed
                .as_ref()
                .and_then(|object| object.get(name))
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
        };
        let error_type = field("errorType")
            .filter(|value| !value.is_empty())
            .or_else(|| error_type_header.map(str::to_string))
            .unwrap_or_else(|| "Unhandled".to_string());
        match parsed {
            Some(_) => Self {
                kind: FailureKind::Handler,
                error_type,
                message: field("errorMessage").unwrap_or_default(),
                body,
            },
            None => Self::new(
                FailureKind::Handler,
                &error_type,
                String::from_utf8_lossy(&body).into_owned(),
            ),
        }
    }
}

/// A worker's place in its lifecycle (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WorkerPhase {
    Starting,
    Idle,
    Busy,
    Stopping,
}

/// An invocation given to a worker.
#[derive(Debug)]
pub(crate) struct Assignment {
    pub(crate) invocation: Invocation,
    /// Set when the worker received it on `/next`; the timeout runs from then.
    pub(crate) deadline: Option<Instant>,
}

#[derive(Debug)]
pub(crate) struct Worker {
    pub(crate) id: WorkerId,
    pub(crate) phase: WorkerPhase,
    pub(crate) started_at: Instant,
    /// Process id of the worker; `None` until launched.
    pub(crate) process_id: Option<u32>,
    /// Its process group, led by its keeper (the keeper's process id); `None` until launched.
    pub(crate) process_group: Option<u32>,
    pub(crate) assignment: Option<Assignment>,
    /// Woken whenever the worker's state changes for its `/next` long poll.
    pub(crate) wake: Arc<Notify>,
    /// The file the handler writes its current activity to (`DASK_SERVERLESS_PROGRESS_PATH`).
    pub(crate) progress_path: PathBuf,
    /// What the runtime posted on `/init/error`, as `errorType: errorMessage`.
    pub(crate) initialization_error: Option<String>,
    /// The last lines the process wrote, for initialization failures.
    pub(crate) output_tail: Arc<OutputTail>,
    /// The invocation its output goes to: the last one assigned to it (see the `output`
    /// module).
    pub(crate) current_output: Arc<CurrentOutput>,
}

impl Worker {
    /// Sends SIGKILL to the worker's process group and marks it stopping; returns the
    /// invocation it held, if any, for the caller to complete.
    pub(crate) fn stop(&mut self) -> Option<Invocation> {
        self.phase = WorkerPhase::Stopping;
        if let Some(process_group) = self.process_group {
            kill_process_group(process_group);
        }
        self.wake.notify_waiters();
        self.assignment
            .take()
            .map(|assignment| assignment.invocation)
    }

    /// What the handler last said it was doing, from its progress file.
    pub(crate) fn progress(&self) -> Option<String> {
        read_progress(&self.progress_path)
    }
}

/// What became of a submitted invocation.
#[derive(Debug)]
pub(crate) enum Submission {
    Accepted,
    /// Every allowed worker is busy (synchronous invocations only).
    Throttled,
    /// The function was deleted meanwhile.
    Deleted,
}

#[derive(Debug, Default)]
pub(crate) struct FunctionState {
    pub(crate) workers: BTreeMap<WorkerId, Worker>,
    pub(crate) queued_events: VecDeque<Invocation>,
    pub(crate) deleted: bool,
    next_worker_number: u64,
}

/// A hosted function: its configuration, workers and counters.
#[derive(Debug)]
pub(crate) struct Function {
    pub(crate) config: FunctionConfig,
    pub(crate) arn: String,
    pub(crate) state: Mutex<FunctionState>,
    pub(crate) statistics: Counters,
    /// What its last invocations printed.
    pub(crate) outputs: OutputHistory,
    progress_directory: PathBuf,
}

impl Function {
    pub(crate) fn new(config: FunctionConfig, progress_directory: &Path) -> Self {
        Self {
            arn: function_arn(&config.name),
            config,
            state: Mutex::new(FunctionState::default()),
            statistics: Counters::default(),
            outputs: OutputHistory::default(),
            progress_directory: progress_directory.to_path_buf(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, FunctionState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Admits an invocation: to an idle worker, to a new worker, or (events only) to the queue.
    pub(crate) fn submit(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        invocation: Invocation,
    ) -> Submission {
        let synchronous = matches!(invocation.caller, Caller::Waiting(_));
        let launches = {
            let mut state = self.lock();
            if state.deleted {
                return Submission::Deleted;
            }
            if synchronous {
                let mut launches = Vec::new();
                if self.assign(&mut state, invocation, &mut launches).is_err() {
                    drop(state);
                    self.count(shared, Counter::Throttles);
                    return Submission::Throttled;
                }
                launches
            } else {
                // Events run in arrival order: this one waits behind those already queued.
                state.queued_events.push_back(invocation);
                self.dispatch_queued(&mut state)
            }
        };
        self.count(shared, Counter::Invocations);
        self.count(
            shared,
            if synchronous {
                Counter::SynchronousInvocations
            } else {
                Counter::AsynchronousInvocations
            },
        );
        self.launch(shared, launches);
        Submission::Accepted
    }

    /// Gives the invocation to an idle worker, or reserves a new worker for it; hands it back
    /// if every allowed worker exists and is busy.
    fn assign(
        &self,
        state: &mut FunctionState,
        invocation: Invocation,
        launches: &mut Vec<WorkerId>,
    ) -> Result<(), Invocation> {
        if let Some(worker) = state
            .workers
            .values_mut()
            .find(|worker| worker.phase == WorkerPhase::Idle)
        {
            worker.phase = WorkerPhase::Busy;
            worker.current_output.switch_to(self.outputs.record(
                &invocation.request_id,
                invocation.submitted,
                worker.id,
            ));
            worker.assignment = Some(Assignment {
                invocation,
                deadline: None,
            });
            worker.wake.notify_waiters();
            return Ok(());
        }
        if state.workers.len() >= self.config.concurrency {
            return Err(invocation);
        }
        state.next_worker_number += 1;
        let id = WorkerId(state.next_worker_number);
        let progress_path = self
            .progress_directory
            .join(format!("{}-{}.progress", self.config.name, id));
        // What the new worker prints while it starts counts with the invocation it starts for.
        let current_output = Arc::new(CurrentOutput::default());
        current_output.switch_to(self.outputs.record(
            &invocation.request_id,
            invocation.submitted,
            id,
        ));
        state.workers.insert(
            id,
            Worker {
                id,
                phase: WorkerPhase::Starting,
                started_at: Instant::now(),
                process_id: None,
                process_group: None,
                assignment: Some(Assignment {
                    invocation,
                    deadline: None,
                }),
                wake: Arc::new(Notify::new()),
                progress_path,
                initialization_error: None,
                output_tail: Arc::new(OutputTail::default()),
                current_output,
            },
        );
        launches.push(id);
        Ok(())
    }

    /// Moves queued events to idle or new workers while any is available. Call whenever a
    /// worker becomes idle or is removed.
    pub(crate) fn dispatch_queued(&self, state: &mut FunctionState) -> Vec<WorkerId> {
        let mut launches = Vec::new();
        if state.deleted {
            return launches;
        }
        while let Some(invocation) = state.queued_events.pop_front() {
            if let Err(invocation) = self.assign(state, invocation, &mut launches) {
                state.queued_events.push_front(invocation);
                break;
            }
        }
        launches
    }

    /// Launches the processes of reserved workers (outside the lock).
    pub(crate) fn launch(self: &Arc<Self>, shared: &Arc<Shared>, launches: Vec<WorkerId>) {
        for worker_id in launches {
            self.count(shared, Counter::ColdStarts);
            tokio::spawn(crate::worker::start_worker(
                Arc::clone(shared),
                Arc::clone(self),
                worker_id,
            ));
        }
    }

    /// Marks the function deleted, stops every worker and abandons every invocation; returns
    /// the invocations to complete.
    pub(crate) fn delete(&self) -> Vec<Invocation> {
        let mut state = self.lock();
        state.deleted = true;
        let mut abandoned: Vec<Invocation> = state.queued_events.drain(..).collect();
        for worker in state.workers.values_mut() {
            abandoned.extend(worker.stop());
        }
        abandoned
    }

    /// Stops the workers that hold an invocation (killing their process groups) and drops the
    /// queued events; returns the invocations to complete. Idle workers stay warm.
    pub(crate) fn stop_invocations(&self) -> Vec<Invocation> {
        let mut state = self.lock();
        let mut stopped: Vec<Invocation> = state.queued_events.drain(..).collect();
        for worker in state.workers.values_mut() {
            if worker.assignment.is_some() {
                stopped.extend(worker.stop());
            }
        }
        stopped
    }

    pub(crate) fn count(&self, shared: &Shared, counter: Counter) {
        self.statistics.increment(counter);
        shared.statistics.increment(counter);
    }
}

/// Ends an invocation: answers its caller, or records a failed event in the on-failure queue.
pub(crate) fn complete(
    shared: &Shared,
    function: &Function,
    invocation: Invocation,
    outcome: Outcome,
) {
    let counter = match &outcome {
        Outcome::Success(_) => Counter::Successes,
        Outcome::Abandoned(_) => Counter::Abandoned,
        Outcome::Failure(failure) => match failure.kind {
            FailureKind::Handler => Counter::HandlerErrors,
            FailureKind::ResponseTooLarge => Counter::OversizedResponses,
            FailureKind::Timeout => Counter::Timeouts,
            FailureKind::OutOfMemory => Counter::OutOfMemoryKills,
            FailureKind::Crash => Counter::Crashes,
            FailureKind::Initialization => Counter::InitializationFailures,
        },
    };
    function.count(shared, counter);
    match invocation.caller {
        Caller::Waiting(sender) => {
            // The caller may have gone away; the invocation ran all the same, as on Lambda.
            let _ = sender.send(outcome);
        }
        Caller::Event => {
            let failure = match outcome {
                Outcome::Success(_) => return,
                Outcome::Failure(failure) => failure,
                Outcome::Abandoned(message) => {
                    Failure::new(FailureKind::Handler, "Runtime.Abandoned", message)
                }
            };
            tracing::debug!(
                function = %function.config.name,
                request_id = %invocation.request_id,
                error_type = %failure.error_type,
                "asynchronous invocation failed: {}",
                failure.message
            );
            let Some(queue) = &function.config.on_failure_queue else {
                return;
            };
            let record = crate::destination::failure_record(
                &function.arn,
                &invocation.request_id,
                &invocation.payload,
                &failure,
            );
            shared.queues.deliver(queue, record);
            function.count(shared, Counter::FailureRecordsDelivered);
        }
    }
}

/// The progress file's text, trimmed and bounded; `None` if empty or unreadable.
/// Empties a progress file without shrinking it: the handler may have it memory-mapped, and a
/// map beyond the end of its file faults.
pub(crate) fn clear_progress(path: &Path) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path);
    if let Ok(file) = file {
        let _ = file.write_at(&[0], 0);
    }
}

pub(crate) fn read_progress(path: &Path) -> Option<String> {
    const LIMIT: usize = 2_000;
    let text = std::fs::read(path).ok()?;
    // The handler writes into a memory map and ends its text with a NUL byte.
    let text = text.split(|&byte| byte == 0).next().unwrap_or_default();
    let text = String::from_utf8_lossy(text);
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if text.len() <= LIMIT {
        return Some(text.to_string());
    }
    let mut end = LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Some(format!("{}...", &text[..end]))
}

/// ` while running <progress>` or nothing: the suffix of limit and crash messages.
pub(crate) fn while_running(progress: Option<String>) -> String {
    progress.map_or_else(String::new, |text| format!(" while running {text}"))
}
