//! The function's side: drives an [`Executor`] and hands control to the host (Python) only
//! to run tasks, drop values, or finish. Between tasks the host asks
//! [`InvocationSession::boundary_without_io`] (and, when it answers `None`,
//! [`InvocationSession::finish_boundary`])
//! whether to go on; most answers need no IO, and at most one per `STOP_CHECK_INTERVAL` reads
//! the batch's done mark and the run's lease.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use dask_serverless_core::{
    BatchResources, BatchSpec, BatchSteps, Executor, ExecutorAction, ExecutorEvent,
    InvocationEvent, ProgressReport, Report, RunContext, StoreTraffic, TaskError, TaskRecord,
    TaskWarning,
};
use dask_serverless_graph::TaskId;
use dask_serverless_plan::BatchId;
use dask_serverless_store::{Payload, StoreError, frame};
use futures::future::join_all;

use dask_serverless_core::keys::{batch_key, value_key};
use dask_serverless_store::StoreExt;

use crate::faults::FunctionFaults;
use crate::process::{self, ProcessUsage};
use crate::{Connections, RuntimeError, chaos_of, invocation_payload, now_micros};
use dask_serverless_chaos::KillPoint;

/// What the host must do next.
#[derive(Debug)]
pub enum HostStep {
    /// Run the batch's tasks in order. `tasks` is the pickled payload the client stored;
    /// `inputs` are the framed parts of each loaded value.
    Run {
        spec: Box<BatchSpec>,
        tasks: Bytes,
        inputs: Vec<(TaskId, Vec<Bytes>)>,
    },
    /// Keep these values in memory, drop the others.
    Retain { tasks: Vec<TaskId> },
    /// The invocation is over.
    Finish,
}

/// One invocation of the function, from its event to its end.
#[derive(Debug)]
pub struct InvocationSession {
    context: RunContext,
    /// The platform's request id of this invocation: what claims and done marks hold.
    invocation_id: String,
    connections: Connections,
    executor: Executor,
    actions: VecDeque<ExecutorAction>,
    loaded_tasks: Option<Bytes>,
    loaded_inputs: Vec<(TaskId, Vec<Bytes>)>,
    /// Store traffic of the current batch, sent with its report.
    traffic: Mutex<StoreTraffic>,
    /// The progress report being sent in the background, if any: reports leave in order.
    sending: Option<tokio::task::JoinHandle<()>>,
    /// The batch this invocation was invoked for.
    first_batch: BatchId,
    /// Faults to inject, when the run carries chaos (a testing aid).
    faults: Option<FunctionFaults>,
    /// Whether this invocation is its instance's first, and when its invoker sent it.
    cold: bool,
    invoked_at_us: u64,
    /// When the current batch started, and the process's usage then.
    batch_started: (u64, ProcessUsage),
    /// Messages sent on the result channel for the current batch.
    messages_sent: u64,
    /// When the current batch's steps ended.
    steps: BatchSteps,
    /// Whether a batch was reported finished already: only the first carries the wait.
    reported_a_batch: bool,
}

/// Most task records in one message: a batch with more sends them in several (progress
/// reports first), so that each message stays far inside the result channel's limit.
pub(crate) const RECORDS_PER_MESSAGE: usize = 4_000;

impl InvocationSession {
    /// Starts an invocation from its event (an [`InvocationEvent`] as JSON).
    pub async fn new(event: &str, invocation_id: String, cold: bool) -> Result<Self, RuntimeError> {
        let invocation: InvocationEvent = serde_json::from_str(event).map_err(|error| {
            RuntimeError::Message(format!("the invocation event is not a run event: {error}"))
        })?;
        let party = format!(
            "batch {} attempt {}",
            invocation.batch.0, invocation.attempt
        );
        let connections = Connections::for_party(&invocation.run, &party).await?;
        Ok(Self::with_connections(
            invocation,
            connections,
            invocation_id,
            cold,
        ))
    }

    /// An invocation on connections opened by the caller.
    pub fn with_connections(
        invocation: InvocationEvent,
        connections: Connections,
        invocation_id: String,
        cold: bool,
    ) -> Self {
        let mut executor = Executor::new(
            invocation.run.run_id.clone(),
            invocation_id.clone(),
            cold,
            invocation.batch,
        )
        .with_attempt(invocation.attempt, invocation.recovering)
        .as_backup(invocation.backup);
        let actions = executor.handle(ExecutorEvent::Start, now_micros()).into();
        let faults = match chaos_of(&invocation.run) {
            Ok(chaos) => chaos.map(|chaos| {
                FunctionFaults::draw(
                    chaos,
                    invocation.run.chaos.is_some(),
                    &invocation.run.run_id,
                    invocation.batch.0,
                    invocation.attempt,
                )
            }),
            Err(error) => {
                eprintln!("dask-serverless: no faults injected: {error}");
                None
            }
        };
        InvocationSession {
            first_batch: invocation.batch,
            cold,
            invoked_at_us: invocation.invoked_at_us,
            batch_started: (now_micros(), process::usage()),
            messages_sent: 0,
            steps: BatchSteps::default(),
            reported_a_batch: false,
            faults,
            context: invocation.run,
            invocation_id,
            connections,
            executor,
            actions,
            loaded_tasks: None,
            loaded_inputs: Vec::new(),
            traffic: Mutex::default(),
            sending: None,
        }
    }

    pub fn run_id(&self) -> &str {
        &self.context.run_id
    }

    /// Performs the executor's actions until the host must act.
    pub async fn next_step(&mut self) -> HostStep {
        while let Some(action) = self.actions.pop_front() {
            match action {
                ExecutorAction::Claim { key } => {
                    if let Some(faults) = &self.faults {
                        faults.at(KillPoint::BeforeStart);
                        tokio::time::sleep(faults.cold_start()).await;
                    }
                    let event = self.claim(&key).await;
                    self.feed(event);
                }
                ExecutorAction::DeleteClaim { key } => {
                    self.count(StoreTraffic::delete);
                    if let Err(error) = self.connections.store.delete(&key).await {
                        eprintln!("dask-serverless: could not delete the claim {key}: {error}");
                    }
                }
                ExecutorAction::MarkDone { key, content } => {
                    let event = self.mark_done(&key, content).await;
                    self.steps.marked_us = now_micros();
                    if let Some(faults) = &self.faults {
                        faults.at(KillPoint::BeforeFanIns);
                    }
                    self.feed(event);
                }
                ExecutorAction::CheckStop { .. }
                | ExecutorAction::Continue
                | ExecutorAction::StopTasks => {
                    // Answers to the host's boundary questions, consumed by `boundary`; one
                    // left over means the host stopped asking: nothing to do.
                }
                ExecutorAction::LoadBatch { batch } => {
                    if let Some(faults) = &self.faults
                        && batch != self.first_batch
                    {
                        faults.at(KillPoint::BecomingChild);
                    }
                    let event = self.load_batch(batch).await;
                    self.feed(event);
                }
                ExecutorAction::LoadInputs { tasks } => {
                    let event = self.load_inputs(tasks).await;
                    self.feed(event);
                }
                ExecutorAction::CheckBatchExists { batch } => {
                    let event = self.batch_exists(batch).await;
                    self.feed(event);
                }
                ExecutorAction::RunTasks => {
                    self.steps.loaded_us = now_micros();
                    let spec = self.executor.spec().cloned();
                    let tasks = self.loaded_tasks.take();
                    if let (Some(spec), Some(tasks)) = (spec, tasks) {
                        return HostStep::Run {
                            spec: Box::new(spec),
                            tasks,
                            inputs: std::mem::take(&mut self.loaded_inputs),
                        };
                    }
                    self.feed(ExecutorEvent::Failed {
                        message: "internal error: tasks to run but none loaded".to_owned(),
                    });
                }
                fan_in @ ExecutorAction::FanIn { .. } => {
                    let mut batch = vec![fan_in];
                    while matches!(self.actions.front(), Some(ExecutorAction::FanIn { .. })) {
                        batch.extend(self.actions.pop_front());
                    }
                    self.fan_in(batch).await;
                    self.steps.fanned_in_us = now_micros();
                }
                invoke @ ExecutorAction::Invoke { .. } => {
                    if let Some(faults) = &self.faults {
                        faults.at(KillPoint::BeforeInvoke);
                    }
                    let mut batch = vec![invoke];
                    while matches!(self.actions.front(), Some(ExecutorAction::Invoke { .. })) {
                        batch.extend(self.actions.pop_front());
                    }
                    self.invoke(batch).await;
                    self.steps.invoked_us = now_micros();
                }
                ExecutorAction::Report(report) => self.report(report).await,
                ExecutorAction::Retain { tasks } => return HostStep::Retain { tasks },
                ExecutorAction::Finish => return HostStep::Finish,
            }
        }
        HostStep::Finish
    }

    /// The host is between two tasks: `true` to go on, `false` to stop running tasks (the batch
    /// is abandoned; [`InvocationSession::next_step`] then ends the invocation).
    pub fn boundary_without_io(&mut self) -> Option<bool> {
        if let Some(faults) = &mut self.faults {
            faults.boundary();
        }
        self.feed(ExecutorEvent::Boundary);
        match self.actions.front() {
            Some(ExecutorAction::Continue) => {
                self.actions.pop_front();
                Some(true)
            }
            Some(ExecutorAction::StopTasks) => {
                self.actions.pop_front();
                Some(false)
            }
            _ => None,
        }
    }

    /// Performs the store reads a boundary asked for (when
    /// [`InvocationSession::boundary_without_io`] answered `None`) and returns the executor's
    /// answer.
    pub async fn finish_boundary(&mut self) -> bool {
        while let Some(action) = self.actions.pop_front() {
            match action {
                ExecutorAction::CheckStop {
                    done_key,
                    lease_key,
                } => match self.check_stop(done_key, &lease_key).await {
                    Some(event) => self.feed(event),
                    None => return true,
                },
                ExecutorAction::Continue => return true,
                ExecutorAction::StopTasks => return false,
                other => {
                    // Not an answer: leave it for `next_step`.
                    self.actions.push_front(other);
                    return false;
                }
            }
        }
        true
    }

    /// Writes one value (its framed pickle parts); returns the bytes written.
    pub async fn put_value(&self, task: TaskId, parts: Vec<Bytes>) -> Result<u64, RuntimeError> {
        let payload = frame::encode(parts);
        let size = payload.len() as u64;
        self.count(|traffic| traffic.write(size));
        self.connections
            .store
            .put(&value_key(&self.context.run_id, task), payload)
            .await?;
        Ok(size)
    }

    /// The host ran these tasks of the running batch; more follow. The progress report is
    /// sent in the background (call from within the runtime): the tasks go on meanwhile.
    pub async fn progress(&mut self, records: Vec<TaskRecord>, warnings: Vec<TaskWarning>) {
        self.feed(ExecutorEvent::TasksProgressed { records, warnings });
        while let Some(ExecutorAction::Report(Report::Progress(_))) = self.actions.front() {
            let Some(ExecutorAction::Report(report)) = self.actions.pop_front() else {
                break;
            };
            self.wait_for_sending().await;
            let channel = self.connections.channel.clone();
            let messages = split_records(report);
            self.messages_sent += messages.len() as u64;
            self.sending = Some(tokio::spawn(async move {
                for message in &messages {
                    send(&*channel, message).await;
                }
            }));
        }
    }

    /// The host ran every other task of the batch.
    pub fn tasks_finished(&mut self, records: Vec<TaskRecord>, warnings: Vec<TaskWarning>) {
        self.steps.computed_us = now_micros();
        self.feed(ExecutorEvent::TasksFinished { records, warnings });
    }

    /// A task's result cannot be pickled.
    pub fn result_unpicklable(&mut self, task: TaskId, message: String) {
        self.feed(ExecutorEvent::ResultUnpicklable { task, message });
    }

    /// A task raised.
    pub fn task_failed(&mut self, error: TaskError) {
        self.feed(ExecutorEvent::TaskFailed { error });
    }

    /// Something around the tasks failed in the host (pickling an output, for example).
    pub fn failed(&mut self, message: String) {
        self.feed(ExecutorEvent::Failed { message });
    }

    fn count(&self, update: impl FnOnce(&mut StoreTraffic)) {
        update(&mut self.traffic.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Feeds an event; the executor's reaction is performed before what was queued earlier.
    fn feed(&mut self, event: ExecutorEvent) {
        let actions = self.executor.handle(event, now_micros());
        for action in actions.into_iter().rev() {
            self.actions.push_front(action);
        }
    }

    async fn claim(&mut self, key: &str) -> ExecutorEvent {
        let owner_size = self.invocation_id.len() as u64;
        self.count(|traffic| traffic.write(owner_size));
        let owner = Payload::from(self.invocation_id.clone());
        match self.connections.store.put_new(key, owner).await {
            Ok(won) => {
                if !won {
                    eprintln!(
                        "dask-serverless: another delivery of this invocation event runs it \
                         ({key}); this one ends"
                    );
                }
                ExecutorEvent::Claimed { won }
            }
            Err(error) => ExecutorEvent::Failed {
                message: format!("could not claim the invocation event ({key}): {error}"),
            },
        }
    }

    /// Writes the batch's done mark unless another attempt's is there; answers with that one.
    async fn mark_done(&mut self, key: &str, content: String) -> ExecutorEvent {
        let size = content.len() as u64;
        self.count(|traffic| traffic.write(size));
        let store = &self.connections.store;
        let existing = match store.put_new(key, Payload::from(content)).await {
            Ok(true) => Ok(None),
            Ok(false) => {
                self.count(|traffic| traffic.read(1, 0));
                store
                    .get_optional(key)
                    .await
                    .map(|mark| mark.map(|mark| mark.to_vec()))
            }
            Err(error) => Err(error),
        };
        match existing {
            Ok(existing) => ExecutorEvent::MarkedDone { existing },
            Err(error) => {
                // Only a backup of this batch would miss the mark: it runs on to its own end.
                eprintln!("dask-serverless: could not mark {key} done: {error}");
                ExecutorEvent::MarkedDone { existing: None }
            }
        }
    }

    /// Reads what a stop check needs; `None` if the store could not answer.
    async fn check_stop(
        &mut self,
        done_key: Option<String>,
        lease_key: &str,
    ) -> Option<ExecutorEvent> {
        let store = &self.connections.store;
        let done = async {
            match &done_key {
                Some(key) => store
                    .get_optional(key)
                    .await
                    .map(|found| found.map(|mark| mark.to_vec())),
                None => Ok(None),
            }
        };
        let (done, lease) = futures::join!(done, store.get_optional(lease_key));
        self.count(|traffic| traffic.read(1 + u64::from(done_key.is_some()), 0));
        match (done, lease) {
            (Ok(done_mark), Ok(lease)) => Some(ExecutorEvent::StopChecked {
                done_mark,
                lease: lease.map(|bytes| bytes.to_vec()),
            }),
            (Err(error), _) | (_, Err(error)) => {
                // A store that cannot answer now says nothing about the client: go on.
                eprintln!("dask-serverless: could not look at the run's lease: {error}");
                None
            }
        }
    }

    async fn load_batch(&mut self, batch: BatchId) -> ExecutorEvent {
        let key = batch_key(&self.context.run_id, batch);
        self.count(|traffic| traffic.read(1, 0));
        let object = match self.connections.store.get(&key).await {
            Ok(object) => {
                self.count(|traffic| traffic.read(0, object.len() as u64));
                object
            }
            Err(StoreError::NotFound { .. }) => return ExecutorEvent::RunGone,
            Err(error) => {
                return ExecutorEvent::Failed {
                    message: format!("could not read batch {}: {error}", batch.0),
                };
            }
        };
        let parts = match frame::decode(&object) {
            Ok(parts) if parts.len() == 2 => parts,
            Ok(parts) => {
                return ExecutorEvent::Failed {
                    message: format!("batch object has {} parts, expected 2", parts.len()),
                };
            }
            Err(error) => {
                return ExecutorEvent::Failed {
                    message: format!("batch object is unreadable: {error}"),
                };
            }
        };
        match serde_json::from_slice::<BatchSpec>(&parts[0]) {
            Ok(spec) => {
                self.loaded_tasks = Some(parts[1].clone());
                ExecutorEvent::BatchLoaded { spec }
            }
            Err(error) => ExecutorEvent::Failed {
                message: format!("batch spec is unreadable: {error}"),
            },
        }
    }

    async fn load_inputs(&mut self, tasks: Vec<TaskId>) -> ExecutorEvent {
        let store = &self.connections.store;
        let run_id = &self.context.run_id;
        let reads = tasks.iter().map(|&task| async move {
            let object = store.get(&value_key(run_id, task)).await?;
            let size = object.len() as u64;
            Ok::<_, StoreError>((task, frame::decode(&object)?, size))
        });
        let mut loaded = Vec::with_capacity(tasks.len());
        let mut bytes = 0;
        for result in join_all(reads).await {
            match result {
                Ok((task, parts, size)) => {
                    bytes += size;
                    loaded.push((task, parts));
                    self.count(|traffic| {
                        traffic.read(1, size);
                        traffic.values_read.push((task, size));
                    });
                }
                Err(error @ StoreError::NotFound { .. }) => {
                    return ExecutorEvent::InputsMissing {
                        message: error.to_string(),
                    };
                }
                Err(error) => {
                    return ExecutorEvent::Failed {
                        message: format!("could not read an input value: {error}"),
                    };
                }
            }
        }
        self.loaded_inputs = loaded;
        ExecutorEvent::InputsLoaded { bytes }
    }

    async fn batch_exists(&self, batch: BatchId) -> ExecutorEvent {
        let key = batch_key(&self.context.run_id, batch);
        self.count(|traffic| traffic.read(1, 0));
        let exists = !matches!(
            self.connections.store.get(&key).await,
            Err(StoreError::NotFound { .. })
        );
        ExecutorEvent::BatchExists { exists }
    }

    async fn fan_in(&mut self, batch: Vec<ExecutorAction>) {
        let store = &self.connections.store;
        let calls = batch.into_iter().filter_map(|action| match action {
            ExecutorAction::FanIn {
                child,
                key,
                member,
                expected,
            } => Some(async move { (child, store.fan_in(&key, &member, expected).await) }),
            _ => None,
        });
        let answers = join_all(calls).await;
        self.count(|traffic| traffic.fan_in(answers.len() as u64));
        for (child, answer) in answers {
            match answer {
                Ok(released) => self.feed(ExecutorEvent::FanInAnswered { child, released }),
                Err(error) => {
                    self.feed(ExecutorEvent::Failed {
                        message: format!("fan-in for batch {} failed: {error}", child.0),
                    });
                    return;
                }
            }
        }
    }

    async fn invoke(&mut self, batch: Vec<ExecutorAction>) {
        let invoker = &self.connections.invoker;
        let function = &self.context.function;
        let context = &self.context;
        let calls = batch.into_iter().filter_map(|action| match action {
            ExecutorAction::Invoke { batch } => Some(async move {
                let payload = invocation_payload(context, batch);
                (batch, invoker.invoke_event(function, payload).await)
            }),
            _ => None,
        });
        for (batch, result) in join_all(calls).await {
            if let Err(error) = result {
                self.feed(ExecutorEvent::InvokeFailed {
                    batch,
                    message: error.to_string(),
                });
            }
        }
    }

    async fn wait_for_sending(&mut self) {
        if let Some(sending) = self.sending.take() {
            let _ = sending.await;
        }
    }

    async fn report(&mut self, mut report: Report) {
        self.wait_for_sending().await;
        let messages = match &mut report {
            Report::BatchFinished(finished) => {
                let mut traffic = self.traffic.lock().unwrap_or_else(PoisonError::into_inner);
                finished.store = std::mem::take(&mut *traffic);
                drop(traffic);
                let messages = split_records(report);
                self.messages_sent += messages.len() as u64;
                let resources = self.batch_resources();
                messages
                    .into_iter()
                    .map(|mut message| {
                        if let Report::BatchFinished(finished) = &mut message {
                            *finished.resources = resources.clone();
                        }
                        message
                    })
                    .collect()
            }
            Report::BatchAbandoned(abandoned) => {
                let mut traffic = self.traffic.lock().unwrap_or_else(PoisonError::into_inner);
                abandoned.store = std::mem::take(&mut *traffic);
                drop(traffic);
                self.messages_sent += 1;
                *abandoned.resources = self.batch_resources();
                vec![report]
            }
            _ => vec![report],
        };
        for message in &messages {
            send(&*self.connections.channel, message).await;
        }
    }

    /// What the batch now reported spent, and the start of the next one.
    fn batch_resources(&mut self) -> BatchResources {
        let now = now_micros();
        let usage = process::usage();
        let (started, before) = std::mem::replace(&mut self.batch_started, (now, usage));
        let first = !std::mem::replace(&mut self.reported_a_batch, true);
        let init_us = (first && self.cold)
            .then(process::started_us)
            .flatten()
            .map(|process_started| started.saturating_sub(process_started));
        let wait_us =
            (first && self.invoked_at_us > 0).then(|| started.saturating_sub(self.invoked_at_us));
        BatchResources {
            instance: process::instance_id().to_owned(),
            start_us: started,
            end_us: now,
            cpu_user_us: usage.user_us.saturating_sub(before.user_us),
            cpu_kernel_us: usage.kernel_us.saturating_sub(before.kernel_us),
            peak_memory_bytes: usage.peak_memory_bytes,
            init_us,
            wait_us,
            messages_sent: std::mem::take(&mut self.messages_sent),
            steps: std::mem::take(&mut self.steps),
        }
    }
}

/// A report as the messages that carry it: one, unless it has more task records than
/// [`RECORDS_PER_MESSAGE`]; then progress reports carry the first ones and the report itself
/// (last) the rest, so that nothing is dropped and the final report still ends the batch.
fn split_records(report: Report) -> Vec<Report> {
    let (run_id, batch, invocation, tasks) = match &report {
        Report::Progress(progress) => (
            &progress.run_id,
            progress.batch,
            &progress.invocation,
            &progress.tasks,
        ),
        Report::BatchFinished(finished) => (
            &finished.run_id,
            finished.batch,
            &finished.invocation,
            &finished.tasks,
        ),
        _ => return vec![report],
    };
    if tasks.len() <= RECORDS_PER_MESSAGE {
        return vec![report];
    }
    let keep = tasks.len() % RECORDS_PER_MESSAGE;
    let keep = if keep == 0 { RECORDS_PER_MESSAGE } else { keep };
    let ahead: Vec<Report> = tasks[..tasks.len() - keep]
        .chunks(RECORDS_PER_MESSAGE)
        .map(|chunk| {
            Report::Progress(ProgressReport {
                run_id: run_id.clone(),
                batch,
                invocation: invocation.clone(),
                tasks: chunk.to_vec(),
                warnings: Vec::new(),
            })
        })
        .collect();
    let mut last = report;
    match &mut last {
        Report::Progress(progress) => progress.tasks.drain(..progress.tasks.len() - keep),
        Report::BatchFinished(finished) => finished.tasks.drain(..finished.tasks.len() - keep),
        _ => unreachable!("only reports with task records are split"),
    };
    ahead.into_iter().chain(std::iter::once(last)).collect()
}

async fn send(channel: &dyn dask_serverless_platform::ResultChannel, report: &Report) {
    let message = match serde_json::to_vec(report) {
        Ok(message) => Bytes::from(message),
        Err(error) => {
            eprintln!("dask-serverless: could not encode a report: {error}");
            return;
        }
    };
    if let Err(error) = channel.send(vec![message]).await {
        // The client notices the silence; say why on the function's log.
        eprintln!("dask-serverless: could not send a report: {error}");
    }
}

/// Frames a batch's spec and pickled tasks as the object workers load.
pub(crate) fn batch_payload(spec: &BatchSpec, tasks: Bytes) -> Payload {
    let spec = Bytes::from(serde_json::to_vec(spec).unwrap_or_default());
    frame::encode(vec![spec, tasks])
}

#[cfg(test)]
mod tests {
    use super::*;
    use dask_serverless_core::BatchReport;

    fn records(count: u32) -> Vec<TaskRecord> {
        (0..count)
            .map(|task| TaskRecord {
                task: TaskId(task),
                start_us: 1_796_000_000_000_000 + u64::from(task),
                duration_us: 1_000,
                stored_bytes: 100_000,
            })
            .collect()
    }

    fn finished(tasks: Vec<TaskRecord>) -> Report {
        Report::BatchFinished(BatchReport {
            run_id: "run-0123456789abcdef".into(),
            batch: BatchId(7),
            invocation: "a-long-request-id-of-an-invocation".into(),
            cold: true,
            tasks,
            loaded_bytes: 0,
            invoked: vec![],
            became: None,
            warnings: vec![],
            store: Default::default(),
            resources: Default::default(),
        })
    }

    #[test]
    fn a_large_report_travels_in_messages_far_inside_the_limit_and_drops_nothing() {
        let limit = dask_serverless_platform::MESSAGE_LIMIT;
        for count in [1, 4_000, 4_001, 10_000, 25_000] {
            let messages = split_records(finished(records(count)));
            let mut seen = Vec::new();
            for (position, message) in messages.iter().enumerate() {
                let size = serde_json::to_vec(message).unwrap().len();
                assert!(size < limit / 2, "{count} tasks: a message of {size} bytes");
                let tasks = match message {
                    Report::Progress(progress) => {
                        assert!(position + 1 < messages.len(), "progress comes first");
                        &progress.tasks
                    }
                    Report::BatchFinished(finished) => {
                        assert_eq!(position + 1, messages.len(), "the final report is last");
                        &finished.tasks
                    }
                    other => panic!("unexpected {other:?}"),
                };
                seen.extend(tasks.iter().map(|record| record.task.0));
            }
            assert_eq!(seen, (0..count).collect::<Vec<_>>(), "{count} tasks");
        }
    }
}
