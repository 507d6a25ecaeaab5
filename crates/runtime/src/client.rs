//! The client's side: drives a [`Driver`] against the store, the invoker and the result
//! channel.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dask_serverless_core::{
    ClusterSpec, Driver, DriverAction, DriverEvent, Invocation, Report, RunContext, RunFailure,
    TaskRecord,
};
use dask_serverless_graph::TaskId;
use dask_serverless_plan::{ClusterId, Plan};
use dask_serverless_store::frame;
use futures::future::join_all;
use serde::Deserialize;

use crate::worker::cluster_payload;
use crate::{Connections, RuntimeError, cluster_key, invocation_payload, now_micros, value_key};

/// What the client's host (Python) hears about a run.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEvent {
    TasksFinished(Vec<TaskRecord>),
    Completed,
    Failed(RunFailure),
}

/// One compute, seen from the client.
#[derive(Debug)]
pub struct ClientRun {
    context: RunContext,
    connections: Connections,
    plan: Arc<Plan>,
    driver: Driver,
}

/// The part of a platform's failure record (a Lambda on-failure destination record) we read.
#[derive(Debug, Deserialize)]
struct FailureRecord {
    #[serde(rename = "requestPayload")]
    request_payload: serde_json::Value,
    #[serde(rename = "responsePayload", default)]
    response_payload: serde_json::Value,
}

impl ClientRun {
    pub async fn new(
        context: RunContext,
        plan: Arc<Plan>,
        silence_limit: Duration,
    ) -> Result<Self, RuntimeError> {
        let connections = Connections::for_context(&context).await?;
        let driver = Driver::new(
            context.run_id.clone(),
            &plan,
            silence_limit.as_micros() as u64,
        );
        Ok(ClientRun {
            context,
            connections,
            plan,
            driver,
        })
    }

    pub fn run_id(&self) -> &str {
        &self.context.run_id
    }

    /// Stores a cluster's spec beside its pickled tasks.
    pub async fn put_cluster(&self, cluster: ClusterId, tasks: Bytes) -> Result<(), RuntimeError> {
        let spec = ClusterSpec::from_plan(&self.plan, cluster);
        self.connections
            .store
            .put(
                &cluster_key(&self.context.run_id, cluster),
                cluster_payload(&spec, tasks),
            )
            .await?;
        Ok(())
    }

    /// Invokes the leaf clusters, all at once.
    pub async fn start(&mut self) -> Result<Vec<RunEvent>, RuntimeError> {
        let actions = self.driver.handle(DriverEvent::Start, now_micros());
        self.perform(actions).await
    }

    /// Waits up to `max_wait` for news of the run.
    pub async fn poll(&mut self, max_wait: Duration) -> Result<Vec<RunEvent>, RuntimeError> {
        if self.driver.is_over() {
            return Ok(Vec::new());
        }
        let messages = self.connections.channel.receive(max_wait).await?;
        let mut actions = Vec::new();
        for message in messages {
            if let Some(event) = self.decode(&message) {
                actions.extend(self.driver.handle(event, now_micros()));
            }
        }
        actions.extend(self.driver.handle(DriverEvent::Tick, now_micros()));
        self.perform(actions).await
    }

    /// After a failure: keeps clusters from starting (their specs are deleted) and waits up to
    /// `max_wait` for the running ones to report. True when nothing of the run runs any more.
    pub async fn drain(&mut self, max_wait: Duration) -> Result<bool, RuntimeError> {
        self.connections
            .store
            .delete_prefix(&format!("{}/clusters/", self.context.run_id))
            .await?;
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
            for message in messages {
                if let Some(event) = self.decode(&message) {
                    self.driver.handle(event, now_micros());
                }
            }
        }
        Ok(true)
    }

    /// Reads a value's framed parts.
    pub async fn fetch(&self, task: TaskId) -> Result<Vec<Bytes>, RuntimeError> {
        let object = self
            .connections
            .store
            .get(&value_key(&self.context.run_id, task))
            .await?;
        Ok(frame::decode(&object)?)
    }

    /// Deletes every object of the run; returns how many there were.
    pub async fn cleanup(&self) -> Result<u64, RuntimeError> {
        Ok(self
            .connections
            .store
            .delete_prefix(&format!("{}/", self.context.run_id))
            .await?)
    }

    fn decode(&self, message: &[u8]) -> Option<DriverEvent> {
        if let Ok(report) = serde_json::from_slice::<Report>(message) {
            return Some(DriverEvent::Report(report));
        }
        let record: FailureRecord = serde_json::from_slice(message).ok()?;
        let invocation: Invocation = serde_json::from_value(record.request_payload).ok()?;
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
        Some(DriverEvent::PlatformFailure {
            cluster: Some(invocation.cluster),
            error_type: text("errorType"),
            message: text("errorMessage"),
        })
    }

    async fn perform(&mut self, actions: Vec<DriverAction>) -> Result<Vec<RunEvent>, RuntimeError> {
        let mut events = Vec::new();
        let mut invocations = Vec::new();
        for action in actions {
            match action {
                DriverAction::Invoke { cluster } => invocations.push(cluster),
                DriverAction::TasksFinished { records } => {
                    events.push(RunEvent::TasksFinished(records))
                }
                DriverAction::Completed => events.push(RunEvent::Completed),
                DriverAction::Failed(failure) => events.push(RunEvent::Failed(failure)),
            }
        }
        let invoker = &self.connections.invoker;
        let context = &self.context;
        let calls = invocations.into_iter().map(|cluster| async move {
            let payload = invocation_payload(context, cluster);
            invoker.invoke_event(&context.function, payload).await
        });
        for result in join_all(calls).await {
            result?;
        }
        Ok(events)
    }
}
