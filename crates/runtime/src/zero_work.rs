//! Zero-work runs: the engine's own cost per task.
//!
//! A zero-work run plans a graph and runs the whole protocol on it — the client's
//! [`ClientRun`], one [`InvocationSession`] per invocation, a [`MemoryStore`], batch specs and
//! reports through JSON, fan-in, invocation events — on one thread, with tasks that do nothing
//! and values that are empty. What it measures is what the engine adds to every computation,
//! whatever the platform: planning, the state machines, (de)serialization of the protocol's
//! messages and the store operations. Network, processes and Python are not in it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use dask_serverless_core::{InvocationEvent, PlatformAddress, RunContext, TaskRecord};
use dask_serverless_graph::Graph;
use dask_serverless_plan::{Plan, PlanOptions};
use dask_serverless_platform::{Invoker, PlatformError, ResultChannel};
use dask_serverless_store::MemoryStore;

use crate::{ClientRun, Connections, HostStep, InvocationSession, RunEvent, RuntimeError};

/// What a zero-work run cost.
#[derive(Debug, Clone, PartialEq)]
pub struct ZeroWorkCost {
    pub tasks: usize,
    pub batches: usize,
    pub invocations: u64,
    pub store_operations: u64,
    pub plan_seconds: f64,
    /// From the first upload to the last output fetched and the run's objects deleted.
    pub protocol_seconds: f64,
}

impl ZeroWorkCost {
    /// Plan and protocol, per task.
    pub fn microseconds_per_task(&self) -> f64 {
        (self.plan_seconds + self.protocol_seconds) * 1e6 / self.tasks.max(1) as f64
    }
}

/// A platform inside the process: invocations wait in one queue, reports in another.
#[derive(Debug, Default)]
struct InProcessPlatform {
    invocations: Mutex<VecDeque<Bytes>>,
    reports: Mutex<Vec<Bytes>>,
}

impl InProcessPlatform {
    fn next_invocation(&self) -> Option<Bytes> {
        self.invocations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
    }
}

#[async_trait]
impl Invoker for InProcessPlatform {
    async fn invoke_event(&self, _function: &str, payload: Bytes) -> Result<(), PlatformError> {
        self.invocations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(payload);
        Ok(())
    }

    async fn invoke_request_response(
        &self,
        _function: &str,
        _payload: Bytes,
    ) -> Result<Bytes, PlatformError> {
        Err(PlatformError::Protocol {
            message: "zero-work runs invoke asynchronously only".to_owned(),
        })
    }
}

#[async_trait]
impl ResultChannel for InProcessPlatform {
    async fn send(&self, messages: Vec<Bytes>) -> Result<(), PlatformError> {
        self.reports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(messages);
        Ok(())
    }

    async fn receive(&self, _max_wait: Duration) -> Result<Vec<Bytes>, PlatformError> {
        Ok(std::mem::take(
            &mut *self.reports.lock().unwrap_or_else(PoisonError::into_inner),
        ))
    }
}

/// Plans `graph` and runs it with tasks that do nothing; fails if the protocol does not
/// complete (which would be a bug of the engine).
pub async fn zero_work(graph: &Graph, options: &PlanOptions) -> Result<ZeroWorkCost, RuntimeError> {
    run(graph, options, false).await
}

/// With `upload_late`, the client uploads the batches that are not leaves only once every
/// invocation it could run has ended, so the upload releases them (tests use it).
async fn run(
    graph: &Graph,
    options: &PlanOptions,
    upload_late: bool,
) -> Result<ZeroWorkCost, RuntimeError> {
    let planning = Instant::now();
    let plan = Arc::new(Plan::build(graph, options));
    let plan_seconds = planning.elapsed().as_secs_f64();

    let protocol = Instant::now();
    let platform = Arc::new(InProcessPlatform::default());
    let connections = Connections {
        store: Arc::new(MemoryStore::new()),
        invoker: platform.clone(),
        channel: platform.clone(),
    };
    let context = RunContext {
        run_id: "zero-work".to_owned(),
        function: "zero-work".to_owned(),
        store: "memory://".to_owned(),
        platform: PlatformAddress::Local {
            invoke_endpoint: String::new(),
            queue_endpoint: String::new(),
            queue: String::new(),
        },
        chaos: None,
    };
    let mut client = ClientRun::with_connections(
        context,
        connections.clone(),
        plan.clone(),
        Duration::from_secs(3600),
    );
    let order = plan.upload_order();
    let mut events = client.start().await?;
    // Early: everything is uploaded before any function runs; late: the leaves, then the rest
    // once every invocation the client could start has ended.
    let leaf_count = plan.leaves().len();
    let (now, mut late_uploads) =
        order.split_at(if upload_late { leaf_count } else { order.len() });
    for &batch in now {
        client.put_batch(batch, Bytes::new()).await?;
    }
    let mut invocation_count = 0u64;
    loop {
        for event in events {
            match event {
                RunEvent::TasksFinished { .. } => {}
                RunEvent::Completed => {
                    for &output in graph.outputs() {
                        client.fetch(output).await?;
                    }
                    client.cleanup().await?;
                    let statistics = client.statistics();
                    return Ok(ZeroWorkCost {
                        tasks: graph.len(),
                        batches: plan.batches().len(),
                        invocations: statistics.invocations,
                        store_operations: statistics.store_operations,
                        plan_seconds,
                        protocol_seconds: protocol.elapsed().as_secs_f64(),
                    });
                }
                RunEvent::Failed(failure) => {
                    return Err(RuntimeError::Message(format!(
                        "the zero-work run failed: {failure:?}"
                    )));
                }
            }
        }
        let mut ran_any = false;
        while let Some(event) = platform.next_invocation() {
            ran_any = true;
            invocation_count += 1;
            let invocation: InvocationEvent = serde_json::from_slice(&event)
                .map_err(|error| RuntimeError::Message(error.to_string()))?;
            let session = InvocationSession::with_connections(
                invocation,
                connections.clone(),
                invocation_count.to_string(),
                false,
            );
            run_invocation(session).await?;
        }
        events = client.poll(Duration::ZERO).await?;
        if !ran_any && events.is_empty() && !late_uploads.is_empty() {
            for &batch in std::mem::take(&mut late_uploads) {
                client.put_batch(batch, Bytes::new()).await?;
            }
            continue;
        }
        if !ran_any && events.is_empty() {
            return Err(RuntimeError::Message(
                "the zero-work run stalled: nothing to invoke and no news".to_owned(),
            ));
        }
    }
}

/// Runs one invocation with tasks that do nothing: every stored output is an empty value.
async fn run_invocation(mut session: InvocationSession) -> Result<(), RuntimeError> {
    loop {
        match session.next_step().await {
            HostStep::Run { spec, .. } => {
                let mut records = Vec::with_capacity(spec.tasks.len());
                let stored = &spec.stored_outputs;
                for &task in &spec.tasks {
                    let stored_bytes = if stored.contains(&task) {
                        session.put_value(task, Vec::new()).await?
                    } else {
                        0
                    };
                    records.push(TaskRecord {
                        task,
                        start_us: 0,
                        duration_us: 0,
                        stored_bytes,
                    });
                }
                session.tasks_finished(records, Vec::new());
            }
            HostStep::Retain { .. } => {}
            HostStep::Finish => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_zero_work_run_completes_every_batch_and_leaves_nothing() {
        let graph = Graph::tree_reduction(1024);
        for batches_per_function in [1, 4, 64] {
            let options = PlanOptions {
                parallelism: 4,
                batches_per_function,
                ..PlanOptions::default()
            };
            let early = run(&graph, &options, false).await.unwrap();
            let late = run(&graph, &options, true).await.unwrap();
            for cost in [&early, &late] {
                assert_eq!(cost.tasks, 2047);
                assert!(cost.batches > 1, "{cost:?}");
                // Every batch ran in an invocation or was become.
                assert!(cost.invocations >= 1 && cost.invocations <= cost.batches as u64);
                // Uploads, loads, fan-ins, the output fetch and the final delete.
                assert!(cost.store_operations >= 2 * cost.batches as u64 + 2);
                assert!(cost.microseconds_per_task() > 0.0);
            }
            // Uploaded early, the fan-ins are completed by parents, which become the batches
            // they release; uploaded late, the client completes them and invokes each.
            assert!(early.invocations < late.invocations, "{early:?} {late:?}");
        }
    }
}
