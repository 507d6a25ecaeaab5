//! Wire messages: everything that crosses a process boundary during a run.
//!
//! * [`InvocationEvent`] is the event a function is invoked with. It is small (a few hundred bytes)
//!   whatever the size of the batch: the batch's tasks travel through the store.
//! * [`BatchSpec`] is what an executor needs to know about one batch; the client stores it
//!   beside the batch's pickled tasks.
//! * [`Report`] travels on the result channel from functions to the client.
//!
//! All are JSON through serde: they are few per batch, never per value.

use dask_serverless_graph::TaskId;
use dask_serverless_plan::{BatchId, Plan};
use serde::{Deserialize, Serialize};

/// Where the functions of a run find the store, the platform and the result channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunContext {
    /// Unique per compute; every object of the run lives under `"{run_id}/"` in the store.
    pub run_id: String,
    /// The function that runs batches (invoked again for released children).
    pub function: String,
    /// Store address, interpreted by the runtime: `shm:///dev/shm/...`, `redis://host:port/...`
    /// or `s3://bucket/prefix?region=...&endpoint=...`.
    pub store: String,
    /// How to invoke functions and where the result channel is.
    pub platform: PlatformAddress,
    /// Faults to inject, a testing aid: a chaos setting (`SPEC;seed=N`, see the
    /// `dask-serverless-chaos` crate) that the runtime applies to the run's functions and
    /// connections. Absent in production.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chaos: Option<String>,
}

/// The platform of a run: its Invoke API and its result channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PlatformAddress {
    /// The local Lambda-compatible platform: Invoke API and queue service at these addresses.
    Local {
        invoke_endpoint: String,
        queue_endpoint: String,
        queue: String,
    },
    /// AWS Lambda and SQS (or an AWS-compatible endpoint).
    Aws {
        region: String,
        endpoint_url: Option<String>,
        queue_url: String,
    },
}

/// The event of one function invocation: run this batch of this run.
///
/// The platform may deliver an event more than once; every delivery of one event carries the
/// same `attempt`, and only the first to claim it (`keys::claim_key`) runs. The client invokes
/// a batch again with a higher attempt when it recovers lost work: then `recovering` lists the
/// batches the invocation becomes after `batch`, in order, whatever their fan-ins answer —
/// the chain of in-memory hand-overs that leads to the batch being recovered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationEvent {
    pub run: RunContext,
    pub batch: BatchId,
    #[serde(default = "first_attempt", skip_serializing_if = "is_first_attempt")]
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recovering: Vec<BatchId>,
    /// A backup of a batch that still runs elsewhere (a straggler): the first of the two to
    /// mark the batch done wins, the other stops (see the executor's "Backups").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub backup: bool,
    /// When the invoker sent the event (µs since the Unix epoch on its clock; 0: unknown): the
    /// function tells how long it waited to start.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub invoked_at_us: u64,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

impl InvocationEvent {
    /// The first attempt at `batch`: what a parent invokes, or the client for a leaf.
    pub fn new(run: RunContext, batch: BatchId) -> InvocationEvent {
        InvocationEvent {
            run,
            batch,
            attempt: FIRST_ATTEMPT,
            recovering: Vec::new(),
            backup: false,
            invoked_at_us: 0,
        }
    }
}

/// The attempt of every invocation but the client's recoveries.
pub const FIRST_ATTEMPT: u32 = 1;

fn first_attempt() -> u32 {
    FIRST_ATTEMPT
}

fn is_first_attempt(attempt: &u32) -> bool {
    *attempt == FIRST_ATTEMPT
}

/// The member the client adds to a batch's fan-in set once the batch is uploaded.
///
/// The client invokes the leaves before it has uploaded everything (see
/// [`Plan::upload_order`]). A batch that is neither a leaf nor handed over
/// ([`Plan::is_handed_over`]) is released by a fan-in of its parent batches *and* the client's
/// upload: whoever completes the set — the last parent or the upload — runs or invokes it.
pub const UPLOAD_MEMBER: &str = "upload";

/// Whether the client joins the batch's fan-in set once it is uploaded.
pub fn upload_joins_fan_in(plan: &Plan, batch: BatchId) -> bool {
    !plan.batch(batch).parents.is_empty() && !plan.is_handed_over(batch)
}

/// A child batch and the number of members its fan-in waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildSpec {
    pub batch: BatchId,
    /// Its distinct parent batches, plus the client's upload when it joins
    /// ([`upload_joins_fan_in`]).
    pub fan_in_members: u32,
}

/// The size of a batch's fan-in set when complete (see [`UPLOAD_MEMBER`]).
pub fn fan_in_members(plan: &Plan, batch: BatchId) -> u32 {
    plan.batch(batch).parents.len() as u32 + u32::from(upload_joins_fan_in(plan, batch))
}

/// Everything an executor needs to run one batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchSpec {
    pub batch: BatchId,
    /// Execution order.
    pub tasks: Vec<TaskId>,
    /// Values produced by other batches.
    pub inputs: Vec<TaskId>,
    /// Values written to the store when computed (read by other invocations or the client).
    pub stored_outputs: Vec<TaskId>,
    /// Values handed in memory to the preferred child, never stored.
    pub memory_outputs: Vec<TaskId>,
    /// Values the client asked for.
    pub sinks: Vec<TaskId>,
    pub children: Vec<ChildSpec>,
    pub preferred_child: Option<BatchId>,
    /// `release_after[i]`: values no longer needed once `tasks[i]` has run.
    pub release_after: Vec<Vec<TaskId>>,
}

impl BatchSpec {
    /// The spec of one batch of a plan.
    pub fn from_plan(plan: &Plan, batch: BatchId) -> BatchSpec {
        let planned = plan.batch(batch);
        BatchSpec {
            batch,
            tasks: planned.tasks.clone(),
            inputs: planned.inputs.clone(),
            stored_outputs: planned.stored_outputs.clone(),
            memory_outputs: planned.memory_outputs.clone(),
            sinks: planned.sinks.clone(),
            children: planned
                .children
                .iter()
                .map(|&child| ChildSpec {
                    batch: child,
                    fan_in_members: fan_in_members(plan, child),
                })
                .collect(),
            preferred_child: planned.preferred_child,
            release_after: planned.release_after.clone(),
        }
    }
}

/// One task as it ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub task: TaskId,
    /// Microseconds since the Unix epoch on the function's clock.
    pub start_us: u64,
    pub duration_us: u64,
    /// Bytes written to the store for this value (0 when kept in memory).
    pub stored_bytes: u64,
}

/// A warning a task raised, re-emitted in the client under its own filters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskWarning {
    pub task: TaskId,
    /// Qualified name of the warning's category (`builtins.RuntimeWarning`).
    pub category: String,
    pub message: String,
    pub filename: String,
    pub lineno: u32,
    /// The pickled warning, base64 encoded, when it could be pickled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pickled: Option<String>,
}

/// A task's exception, as the function saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskError {
    pub task: TaskId,
    /// Qualified name of the exception type, for messages when it cannot be rebuilt.
    pub type_name: String,
    pub message: String,
    pub traceback: String,
    /// The pickled exception, base64 encoded, when it could be pickled.
    pub pickled: Option<String>,
}

/// Store traffic of one batch, counted by the function's shell (the executor itself does no
/// IO): what the benchmark's per-task figures and the run's bill are made of.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreTraffic {
    /// Reads, writes, fan-ins and existence checks.
    pub operations: u64,
    /// Of the operations: reads (a whole object, or whether it exists), writes, deletions,
    /// and adds to fan-in sets.
    #[serde(default)]
    pub reads: u64,
    #[serde(default)]
    pub writes: u64,
    #[serde(default)]
    pub deletes: u64,
    #[serde(default)]
    pub fan_ins: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// The values this batch read from the store and their sizes: values that crossed a
    /// function boundary.
    pub values_read: Vec<(TaskId, u64)>,
}

impl StoreTraffic {
    /// Counts `count` reads of `bytes` bytes in all.
    pub fn read(&mut self, count: u64, bytes: u64) {
        self.operations += count;
        self.reads += count;
        self.bytes_read += bytes;
    }

    /// Counts one write of `bytes` bytes.
    pub fn write(&mut self, bytes: u64) {
        self.operations += 1;
        self.writes += 1;
        self.bytes_written += bytes;
    }

    pub fn delete(&mut self) {
        self.operations += 1;
        self.deletes += 1;
    }

    pub fn fan_in(&mut self, count: u64) {
        self.operations += count;
        self.fan_ins += count;
    }
}

/// A batch ran to the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchReport {
    pub run_id: String,
    pub batch: BatchId,
    pub invocation: String,
    pub cold: bool,
    pub tasks: Vec<TaskRecord>,
    pub loaded_bytes: u64,
    /// Children this invocation invoked.
    pub invoked: Vec<BatchId>,
    /// The child this invocation runs next.
    pub became: Option<BatchId>,
    /// Warnings of the tasks not sent with an earlier [`ProgressReport`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<TaskWarning>,
    /// Filled in by the shell just before the report is sent.
    #[serde(default)]
    pub store: StoreTraffic,
    /// What the function spent on the batch; filled in by the shell too (boxed: reports are
    /// moved around often, resources only read at the end).
    #[serde(default)]
    pub resources: Box<BatchResources>,
}

/// What one invocation spent on one batch, measured in the function by its shell: the
/// per-invocation records of the run report are made of these (an invocation's batches
/// together).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchResources {
    /// The function instance (execution environment) that ran it; warm invocations of one
    /// instance share it.
    pub instance: String,
    /// When the batch started (its spec was asked for) and when its report was sent, µs since
    /// the Unix epoch on the function's clock.
    pub start_us: u64,
    pub end_us: u64,
    /// CPU time of the function's process during the batch, in user and in kernel mode.
    pub cpu_user_us: u64,
    pub cpu_kernel_us: u64,
    /// The process's peak resident memory so far, in bytes.
    pub peak_memory_bytes: u64,
    /// For an invocation's first batch: how long the instance took to start before its first
    /// invocation (cold starts only), and how long the event waited between its invoker
    /// sending it and the invocation starting (when the invoker said when).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_us: Option<u64>,
    /// Messages and requests sent on the result channel for this batch.
    #[serde(default)]
    pub messages_sent: u64,
    /// When the batch's steps ended (µs since the Unix epoch, 0: the step did not happen):
    /// its inputs loaded (the tasks start), its tasks done, its done mark written, its fan-ins
    /// answered, its children invoked. With `start_us` and `end_us` they split the batch into
    /// loading, computing, marking done, fan-in, invoking and reporting.
    #[serde(default, skip_serializing_if = "BatchSteps::is_empty")]
    pub steps: BatchSteps,
}

/// See [`BatchResources::steps`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchSteps {
    pub loaded_us: u64,
    pub computed_us: u64,
    pub marked_us: u64,
    pub fanned_in_us: u64,
    pub invoked_us: u64,
}

impl BatchSteps {
    pub fn is_empty(&self) -> bool {
        *self == BatchSteps::default()
    }
}

/// Tasks of a batch that is still running, sent at most every few tenths of a second so
/// that the client's progress moves task by task. The batch's final report carries only the
/// tasks finished after the last progress report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressReport {
    pub run_id: String,
    pub batch: BatchId,
    pub invocation: String,
    pub tasks: Vec<TaskRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<TaskWarning>,
}

/// Why a batch could not run to the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
pub enum FailureCause {
    /// A task raised: its own exception.
    Task(TaskError),
    /// A task's result cannot be pickled, so it cannot leave the function.
    Unpicklable { task: TaskId, message: String },
    /// Something around the tasks failed (store, invocation, unpickling the batch).
    Infrastructure { message: String },
}

/// A batch could not run to the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureReport {
    pub run_id: String,
    pub batch: BatchId,
    pub invocation: String,
    #[serde(flatten)]
    pub cause: FailureCause,
}

/// Why an invocation stopped running a batch without finishing it, though nothing failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AbandonReason {
    /// Another invocation finished the batch first (this one was a backup, or the original
    /// that a backup overtook).
    FinishedElsewhere,
    /// The client stopped renewing the run's lease: it is gone, or it ended the run.
    ClientGone,
}

/// An invocation stopped running a batch that someone else finishes, or that nobody needs any
/// more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbandonReport {
    pub run_id: String,
    pub batch: BatchId,
    pub invocation: String,
    pub reason: AbandonReason,
    /// What the abandoned work cost, filled in by the shell as for a [`BatchReport`]: a
    /// backup's loser is billed too.
    #[serde(default)]
    pub store: StoreTraffic,
    #[serde(default)]
    pub resources: Box<BatchResources>,
}

/// A message on the result channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Report {
    Progress(ProgressReport),
    BatchFinished(BatchReport),
    BatchFailed(FailureReport),
    BatchAbandoned(AbandonReport),
}

impl Report {
    pub fn run_id(&self) -> &str {
        match self {
            Report::Progress(report) => &report.run_id,
            Report::BatchFinished(report) => &report.run_id,
            Report::BatchFailed(report) => &report.run_id,
            Report::BatchAbandoned(report) => &report.run_id,
        }
    }
}
