//! The protocol of a decentralized run, as sans-IO state machines.
//!
//! A run executes a [`Plan`](dask_serverless_plan::Plan): batches of tasks, each run by one
//! function invocation. Two parties take part and neither performs IO here:
//!
//! * the [`Executor`] lives in a function. It runs one batch after another within one
//!   invocation: it asks for the batch's inputs that are not already in memory, lets the
//!   host run the tasks, adds the finished batch to each child's fan-in set, *becomes* one
//!   released child and invokes the others, and reports what happened on the result channel;
//! * the [`Driver`] lives in the client. It invokes the leaf batches, then only listens to the
//!   result channel: it follows progress task by task, notices failures (a task's exception, a
//!   function the platform stopped, or silence longer than a function may live) and decides
//!   when the run is over.
//!
//! Both follow the same discipline: `handle(event, now) -> Vec<Action>`. Time is passed in,
//! never read; the shells in the runtime crate perform the actions (store reads, invocations,
//! messages) and feed the outcomes back as events. Everything crossing a process boundary is a
//! serde type in [`messages`].

mod driver;
mod executor;
pub mod keys;
pub mod messages;
mod records;

pub use driver::{
    Driver, DriverAction, DriverEvent, FunctionFailureKind, RecoveryPolicy, RunFailure,
};
pub use executor::{
    Executor, ExecutorAction, ExecutorEvent, LEASE_RENEWAL, LEASE_TIMEOUT, STOP_CHECK_INTERVAL,
};
pub use messages::{
    AbandonReason, AbandonReport, BatchReport, BatchResources, BatchSpec, BatchSteps, ChildSpec,
    FIRST_ATTEMPT, FailureCause, FailureReport, InvocationEvent, PlatformAddress, ProgressReport,
    Report, RunContext, StoreTraffic, TaskError, TaskRecord, TaskWarning, UPLOAD_MEMBER,
    fan_in_members, upload_joins_fan_in,
};
pub use records::BatchRecord;

/// Time as the state machines see it: microseconds on a clock chosen by the shell.
pub type Micros = u64;
