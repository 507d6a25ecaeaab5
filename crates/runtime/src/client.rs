//! The client's side: drives a [`Driver`] against the store, the invoker and the result
//! channel.
//!
//! # Throttled events
//!
//! Lambda keeps an asynchronous event it cannot run for lack of concurrency and tries it again
//! for up to six hours: a reserved concurrency below the batches ready to run only makes them
//! wait. A platform that gives up at once instead sends the event's failure record with a
//! `TooManyRequestsException` (as some Lambda-compatible endpoints do). Such an event never
//! ran: the client invokes it again after a pause ([`THROTTLED_FIRST_PAUSE`], doubling up to
//! [`THROTTLED_LONGEST_PAUSE`] for the same batch and attempt), and the driver never hears of
//! it. While the run drains, the driver is told instead (it waits for nothing that will not
//! run).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dask_serverless_core::{
    BatchRecord, BatchSpec, Driver, DriverAction, DriverEvent, InvocationEvent, RecoveryPolicy,
    Report, RunContext, RunFailure, StoreTraffic, TaskRecord, TaskWarning,
};
use dask_serverless_graph::TaskId;
use dask_serverless_plan::{BatchId, Plan};
use dask_serverless_store::frame;
use futures::future::join_all;
use serde::Deserialize;

use crate::invocation::batch_payload;
use dask_serverless_core::LEASE_RENEWAL;
use dask_serverless_core::keys::{batch_key, batches_prefix, lease_key, run_prefix, value_key};

use crate::{Connections, RuntimeError, event_payload, now_micros};

/// The first pause before an event throttled by the platform is invoked again; each further
/// throttle of the same batch and attempt doubles it, up to [`THROTTLED_LONGEST_PAUSE`].
pub(crate) const THROTTLED_FIRST_PAUSE: Duration = Duration::from_secs(1);
pub(crate) const THROTTLED_LONGEST_PAUSE: Duration = Duration::from_secs(30);

/// What a message of the result channel says, for the client.
enum Decoded {
    /// Something for the driver.
    Event(DriverEvent),
    /// The platform did not run this event for lack of concurrency (see "Throttled events");
    /// `failure` is what the driver hears of it while the run drains.
    Throttled {
        event: Box<InvocationEvent>,
        failure: DriverEvent,
    },
}

/// What the client's host (Python) hears about a run.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEvent {
    /// Tasks that ran (each reported once) and the warnings they raised.
    TasksFinished {
        records: Vec<TaskRecord>,
        warnings: Vec<TaskWarning>,
    },
    Completed,
    Failed(RunFailure),
}

/// What one compute cost, counted by the client from its own work and the batches' reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunStatistics {
    /// Function invocations: the ones the client made and the children functions invoked
    /// (a batch an invocation *became* costs none).
    pub invocations: u64,
    pub batches_finished: u64,
    /// Store operations of the client and of every function.
    pub store_operations: u64,
    /// Everything written: batches (specs and pickled tasks) and values.
    pub store_bytes_written: u64,
    pub store_bytes_read: u64,
    /// Bytes of the batches' specs and pickled tasks.
    pub task_bytes: u64,
    /// Bytes of values written by functions.
    pub value_bytes_written: u64,
    /// Bytes of distinct values read by another invocation or by the client: the values that
    /// crossed a function boundary.
    pub boundary_bytes: u64,
    /// Lost work redone: invocations the client started again (see the driver's "Recovery").
    pub recoveries: u64,
    /// Backups of stragglers the client started (see the driver's "Stragglers").
    pub backups: u64,
    /// Receives from the result channel (each a request to the queue).
    pub channel_receives: u64,
    /// Events the platform reported throttled and the client invoked again (see "Throttled
    /// events"); each is also counted in `invocations`.
    pub throttled_events: u64,
}

/// One compute, seen from the client.
#[derive(Debug)]
pub struct ClientRun {
    context: RunContext,
    connections: Connections,
    plan: Arc<Plan>,
    driver: Driver,
    statistics: RunStatistics,
    /// Sizes of the values read across a function boundary, by task.
    crossed: HashMap<TaskId, u64>,
    /// The tasks whose values the client may fetch (the plan's sinks).
    outputs: HashSet<TaskId>,
    /// Times the lease was written, and when last.
    lease_renewals: u64,
    lease_renewed: Option<Instant>,
    /// Every batch report and task record received, in order (see [`ClientRun::records`]).
    batch_records: Vec<BatchRecord>,
    task_records: Vec<TaskRecord>,
    /// The client's own store traffic (a prefix deletion counts as one read, its listing, and
    /// a delete per object).
    client_traffic: StoreTraffic,
    /// Throttled events to invoke again, each when its pause ends.
    throttled: Vec<(Instant, InvocationEvent)>,
    /// Throttles so far of each batch and attempt (and whether a backup): their pauses.
    throttles_by_attempt: HashMap<(BatchId, u32, bool), u32>,
}

/// The error type of a throttled invocation.
const THROTTLE_ERROR: &str = "TooManyRequestsException";

/// The part of a platform's failure record (a Lambda on-failure destination record) we read.
#[derive(Debug, Deserialize)]
struct FailureRecord {
    #[serde(rename = "requestContext", default)]
    request_context: RequestContext,
    #[serde(rename = "requestPayload")]
    request_payload: serde_json::Value,
    #[serde(rename = "responsePayload", default)]
    response_payload: serde_json::Value,
}

#[derive(Debug, Default, Deserialize)]
struct RequestContext {
    #[serde(rename = "requestId", default)]
    request_id: Option<String>,
}

impl ClientRun {
    pub async fn new(
        context: RunContext,
        plan: Arc<Plan>,
        silence_limit: Duration,
    ) -> Result<Self, RuntimeError> {
        let connections = Connections::for_context(&context).await?;
        Ok(Self::with_connections(
            context,
            connections,
            plan,
            silence_limit,
        ))
    }

    /// A run on connections opened by the caller (an in-process platform, for example).
    pub fn with_connections(
        context: RunContext,
        connections: Connections,
        plan: Arc<Plan>,
        silence_limit: Duration,
    ) -> Self {
        let driver = Driver::new(
            context.run_id.clone(),
            &plan,
            silence_limit.as_micros() as u64,
        );
        let outputs = plan
            .batches()
            .iter()
            .flat_map(|batch| batch.sinks.iter().copied())
            .collect();
        ClientRun {
            context,
            connections,
            plan,
            driver,
            statistics: RunStatistics::default(),
            crossed: HashMap::new(),
            outputs,
            batch_records: Vec::new(),
            task_records: Vec::new(),
            client_traffic: StoreTraffic::default(),
            lease_renewals: 0,
            lease_renewed: None,
            throttled: Vec::new(),
            throttles_by_attempt: HashMap::new(),
        }
    }

    /// This run with its own recovery policy (see the driver's "Recovery").
    pub fn with_recovery(mut self, policy: RecoveryPolicy) -> Self {
        self.driver = self.driver.with_recovery(policy);
        self
    }

    /// This run on a platform that runs at most `limit` functions at once, when known (see
    /// the driver's "Stragglers").
    pub fn with_concurrency_limit(mut self, limit: Option<usize>) -> Self {
        self.driver = self.driver.with_concurrency_limit(limit);
        self
    }

    /// Lost work redone so far.
    pub fn recoveries(&self) -> u32 {
        self.driver.recoveries()
    }

    /// What the functions reported so far: each batch's record (in the order the reports
    /// came) and each task's, once; and the client's own store traffic.
    pub fn records(&self) -> (&[BatchRecord], &[TaskRecord], &StoreTraffic) {
        (
            &self.batch_records,
            &self.task_records,
            &self.client_traffic,
        )
    }

    fn count_prefix_deletion(&mut self, deleted: u64) {
        self.client_traffic.read(1, 0);
        self.client_traffic.operations += deleted;
        self.client_traffic.deletes += deleted;
    }

    pub fn statistics(&self) -> RunStatistics {
        RunStatistics {
            boundary_bytes: self.crossed.values().sum(),
            recoveries: u64::from(self.driver.recoveries()),
            backups: u64::from(self.driver.backups()),
            ..self.statistics.clone()
        }
    }

    pub fn run_id(&self) -> &str {
        &self.context.run_id
    }

    /// Stores a batch's spec beside its pickled tasks; call [`ClientRun::start`] first and
    /// upload in [`Plan::upload_order`]. A leaf is invoked at once; for a batch that waits for
    /// its upload, the upload joins its fan-in and the client invokes it when every parent had
    /// already finished.
    pub async fn put_batch(&mut self, batch: BatchId, tasks: Bytes) -> Result<(), RuntimeError> {
        if !self.plan.has_batch(batch) {
            return Err(RuntimeError::Configuration(format!(
                "batch {} is not in the plan, which has {} batches",
                batch.0,
                self.plan.batches().len()
            )));
        }
        let spec = BatchSpec::from_plan(&self.plan, batch);
        let payload = batch_payload(&spec, tasks);
        let size = payload.len() as u64;
        let store = &self.connections.store;
        store
            .put(&batch_key(&self.context.run_id, batch), payload)
            .await?;
        self.statistics.store_operations += 1;
        self.statistics.store_bytes_written += size;
        self.statistics.task_bytes += size;
        self.client_traffic.write(size);
        let actions = self
            .driver
            .handle(DriverEvent::Uploaded { batch }, now_micros());
        self.perform(actions).await?;
        Ok(())
    }

    /// Starts the run: from now on, uploaded batches can run.
    pub async fn start(&mut self) -> Result<Vec<RunEvent>, RuntimeError> {
        // Functions stop once the lease stops changing: it exists before the first invocation.
        self.renew_lease().await?;
        let actions = self.driver.handle(DriverEvent::Start, now_micros());
        self.perform(actions).await
    }

    /// Writes the next value of the run's lease (see the executor's "Stopping early").
    async fn renew_lease(&mut self) -> Result<(), RuntimeError> {
        self.lease_renewals += 1;
        let content = Bytes::from(self.lease_renewals.to_string());
        self.connections
            .store
            .put(&lease_key(&self.context.run_id), content.into())
            .await?;
        self.statistics.store_operations += 1;
        self.client_traffic.write(0);
        self.lease_renewed = Some(Instant::now());
        Ok(())
    }

    /// Renews the lease if [`LEASE_RENEWAL`] has passed since the last time.
    async fn renew_lease_if_due(&mut self) -> Result<(), RuntimeError> {
        let due = self
            .lease_renewed
            .is_none_or(|renewed| renewed.elapsed() >= Duration::from_micros(LEASE_RENEWAL));
        if due {
            self.renew_lease().await?;
        }
        Ok(())
    }

    /// Waits up to `max_wait` for news of the run.
    pub async fn poll(&mut self, max_wait: Duration) -> Result<Vec<RunEvent>, RuntimeError> {
        if self.driver.is_over() {
            return Ok(Vec::new());
        }
        self.renew_lease_if_due().await?;
        // Wait no longer than the next renewal, or the next throttled event's pause.
        let mut max_wait = max_wait.min(Duration::from_micros(LEASE_RENEWAL));
        if let Some(due) = self.throttled.iter().map(|(due, _)| *due).min() {
            max_wait = max_wait.min(due.saturating_duration_since(Instant::now()));
        }
        let messages = self.connections.channel.receive(max_wait).await?;
        self.statistics.channel_receives += 1;
        let mut actions = Vec::new();
        for message in messages {
            match self.decode(&message) {
                Some(Decoded::Event(event)) => {
                    self.count(&event);
                    actions.extend(self.driver.handle(event, now_micros()));
                }
                Some(Decoded::Throttled { event, .. }) => self.invoke_later(*event),
                None => {}
            }
        }
        actions.extend(self.driver.handle(DriverEvent::Tick, now_micros()));
        let events = self.perform(actions).await?;
        self.invoke_throttled_when_due().await?;
        Ok(events)
    }

    /// Keeps a throttled `event` to invoke again after its pause.
    fn invoke_later(&mut self, event: InvocationEvent) {
        let throttles = self
            .throttles_by_attempt
            .entry((event.batch, event.attempt, event.backup))
            .or_insert(0);
        let pause = THROTTLED_FIRST_PAUSE
            .saturating_mul(1 << (*throttles).min(16))
            .min(THROTTLED_LONGEST_PAUSE);
        *throttles += 1;
        self.throttled.push((Instant::now() + pause, event));
    }

    /// Invokes again the throttled events whose pause has ended.
    async fn invoke_throttled_when_due(&mut self) -> Result<(), RuntimeError> {
        let now = Instant::now();
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.throttled)
            .into_iter()
            .partition(|(when, _)| *when <= now);
        self.throttled = waiting;
        self.statistics.throttled_events += due.len() as u64;
        self.invoke_all(due.into_iter().map(|(_, event)| event).collect())
            .await
    }

    /// After a failure: keeps batches from starting (their specs are deleted) and waits up to
    /// `max_wait` for the running ones to report. True when nothing of the run runs any more.
    pub async fn drain(&mut self, max_wait: Duration) -> Result<bool, RuntimeError> {
        // Whatever ended the run, nothing is redone from now on.
        self.driver.handle(DriverEvent::Stop, now_micros());
        let deleted = self
            .connections
            .store
            .delete_prefix(&batches_prefix(&self.context.run_id))
            .await?;
        self.count_prefix_deletion(deleted);
        // Running functions stop at their next task boundary.
        self.connections
            .store
            .delete(&lease_key(&self.context.run_id))
            .await?;
        self.client_traffic.delete();
        let deadline = Instant::now() + max_wait;
        while !self.driver.is_drained() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            let messages = self
                .connections
                .channel
                .receive(left.min(Duration::from_secs(1)))
                .await?;
            self.statistics.channel_receives += 1;
            for message in messages {
                let event = match self.decode(&message) {
                    Some(Decoded::Event(event)) => event,
                    Some(Decoded::Throttled { failure, .. }) => failure,
                    None => continue,
                };
                self.driver.handle(event, now_micros());
            }
        }
        Ok(true)
    }

    /// Reads a value's framed parts.
    pub async fn fetch(&mut self, task: TaskId) -> Result<Vec<Bytes>, RuntimeError> {
        if !self.outputs.contains(&task) {
            return Err(RuntimeError::Configuration(format!(
                "task {} is not an output of the run: only outputs are kept in the store",
                task.0
            )));
        }
        let object = self
            .connections
            .store
            .get(&value_key(&self.context.run_id, task))
            .await?;
        let size = object.len() as u64;
        self.statistics.store_operations += 1;
        self.statistics.store_bytes_read += size;
        self.client_traffic.read(1, size);
        self.crossed.insert(task, size);
        Ok(frame::decode(&object)?)
    }

    /// Deletes every object of the run; returns how many there were.
    pub async fn cleanup(&mut self) -> Result<u64, RuntimeError> {
        let deleted = self
            .connections
            .store
            .delete_prefix(&run_prefix(&self.context.run_id))
            .await?;
        self.statistics.store_operations += 1;
        self.count_prefix_deletion(deleted);
        Ok(deleted)
    }

    fn count(&mut self, event: &DriverEvent) {
        match event {
            DriverEvent::Report(Report::BatchFinished(report)) => {
                self.batch_records.push(BatchRecord::finished(report));
                self.statistics.batches_finished += 1;
                self.statistics.invocations += report.invoked.len() as u64;
                self.count_traffic(&report.store);
                for &(task, size) in &report.store.values_read {
                    self.crossed.insert(task, size);
                }
            }
            // Work another invocation finished, or nobody needs: billed all the same. (A shell
            // of an older version sends no resources: nothing to record.)
            DriverEvent::Report(Report::BatchAbandoned(report))
                if !report.resources.instance.is_empty() =>
            {
                self.batch_records.push(BatchRecord::abandoned(report));
                self.count_traffic(&report.store);
            }
            _ => {}
        }
    }

    fn count_traffic(&mut self, traffic: &StoreTraffic) {
        let statistics = &mut self.statistics;
        statistics.store_operations += traffic.operations;
        statistics.store_bytes_read += traffic.bytes_read;
        statistics.store_bytes_written += traffic.bytes_written;
        statistics.value_bytes_written += traffic.bytes_written;
    }

    fn decode(&self, message: &[u8]) -> Option<Decoded> {
        if let Ok(report) = serde_json::from_slice::<Report>(message) {
            return Some(Decoded::Event(DriverEvent::Report(report)));
        }
        let record: FailureRecord = serde_json::from_slice(message).ok()?;
        let invocation: InvocationEvent = serde_json::from_value(record.request_payload).ok()?;
        if invocation.run.run_id != self.context.run_id {
            return None;
        }
        let text = |field: &str| {
            record
                .response_payload
                .get(field)
                .and_then(|value| value.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        let throttled = [text("errorType"), text("__type")]
            .iter()
            .any(|kind| kind == THROTTLE_ERROR);
        let failure = DriverEvent::PlatformFailure {
            invocation: record.request_context.request_id,
            // A recovery's event is for the last batch of its chain.
            batch: Some(
                invocation
                    .recovering
                    .last()
                    .copied()
                    .unwrap_or(invocation.batch),
            ),
            error_type: if throttled {
                THROTTLE_ERROR.to_owned()
            } else {
                text("errorType")
            },
            message: if throttled {
                text("message")
            } else {
                text("errorMessage")
            },
        };
        Some(if throttled {
            Decoded::Throttled {
                event: Box::new(invocation),
                failure,
            }
        } else {
            Decoded::Event(failure)
        })
    }

    /// Performs the driver's actions, feeding back what they answer, until none is left.
    async fn perform(&mut self, actions: Vec<DriverAction>) -> Result<Vec<RunEvent>, RuntimeError> {
        let mut events = Vec::new();
        let mut pending: std::collections::VecDeque<DriverAction> = actions.into();
        while !pending.is_empty() {
            let mut invocations = Vec::new();
            while let Some(action) = pending.pop_front() {
                match action {
                    DriverAction::Invoke { batch } => {
                        invocations.push(InvocationEvent::new(self.context.clone(), batch))
                    }
                    DriverAction::Recover {
                        batch,
                        attempt,
                        recovering,
                        backup,
                    } => {
                        invocations.push(InvocationEvent {
                            run: self.context.clone(),
                            batch,
                            attempt,
                            recovering,
                            backup,
                            invoked_at_us: 0,
                        });
                    }
                    DriverAction::FanIn {
                        batch,
                        key,
                        member,
                        expected,
                    } => {
                        self.statistics.store_operations += 1;
                        self.client_traffic.fan_in(1);
                        let released = self
                            .connections
                            .store
                            .fan_in(&key, &member, expected)
                            .await?;
                        let answer = DriverEvent::UploadFanInAnswered { batch, released };
                        pending.extend(self.driver.handle(answer, now_micros()));
                    }
                    DriverAction::RenewLease => self.renew_lease().await?,
                    DriverAction::TasksFinished { records, warnings } => {
                        self.task_records.extend_from_slice(&records);
                        events.push(RunEvent::TasksFinished { records, warnings })
                    }
                    DriverAction::Completed => events.push(RunEvent::Completed),
                    DriverAction::Failed(failure) => events.push(RunEvent::Failed(failure)),
                }
            }
            self.invoke_all(invocations).await?;
        }
        Ok(events)
    }

    async fn invoke_all(&mut self, invocations: Vec<InvocationEvent>) -> Result<(), RuntimeError> {
        self.statistics.invocations += invocations.len() as u64;
        let invoker = &self.connections.invoker;
        let context = &self.context;
        let calls = invocations.into_iter().map(|event| async move {
            let payload = event_payload(&event);
            invoker.invoke_event(&context.function, payload).await
        });
        for result in join_all(calls).await {
            result?;
        }
        Ok(())
    }
}
