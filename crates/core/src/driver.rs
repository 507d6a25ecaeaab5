//! The driver: the client's side of a run.
//!
//! The client invokes the leaf clusters and from then on only listens. Every cluster ends in
//! exactly one report on the result channel (finished or failed); the platform adds a failure
//! record when it stops a function (memory, timeout, crash). The driver folds these into the
//! run's state:
//!
//! * a cluster is `Pending` until its report arrives, then `Finished`; a repeated report of a
//!   finished cluster changes nothing (delivery may repeat);
//! * the run is complete when every cluster is finished, and failed at the first failure;
//! * reports of other runs are ignored (the channel outlives runs);
//! * silence: a function lives at most its timeout, and the platform reports the ones it stops,
//!   so when nothing at all has arrived for longer than `silence_limit` while clusters are
//!   pending, the work is lost and the run fails instead of waiting forever.
//!
//! Actions after [`DriverAction::Completed`] or [`DriverAction::Failed`] are never emitted.

use dask_serverless_plan::{ClusterId, Plan};

use crate::Micros;
use crate::messages::{Report, TaskError, TaskRecord};

#[derive(Debug, Clone, PartialEq)]
pub enum DriverEvent {
    /// The run starts.
    Start,
    /// A message from the result channel.
    Report(Report),
    /// The platform stopped a function that was running `cluster` (or an unknown cluster).
    PlatformFailure {
        cluster: Option<ClusterId>,
        error_type: String,
        message: String,
    },
    /// Time passes.
    Tick,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DriverAction {
    /// Invoke a function for this leaf cluster.
    Invoke { cluster: ClusterId },
    /// These tasks ran (feed progress callbacks).
    TasksFinished { records: Vec<TaskRecord> },
    /// Every cluster finished; the outputs are in the store.
    Completed,
    /// The run failed; nothing more will be emitted.
    Failed(RunFailure),
}

/// Why a run failed.
#[derive(Debug, Clone, PartialEq)]
pub enum RunFailure {
    /// A task raised.
    Task(TaskError),
    /// The platform stopped a function (memory size, timeout, crash).
    Function {
        cluster: Option<ClusterId>,
        error_type: String,
        message: String,
    },
    /// Something around the tasks failed in a function.
    Infrastructure { cluster: ClusterId, message: String },
    /// Nothing arrived for longer than any function may live.
    Lost {
        silent_for_us: Micros,
        pending_clusters: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClusterState {
    Pending,
    Finished,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunState {
    Created,
    Running,
    Over,
}

/// The client's state machine for one run.
#[derive(Debug)]
pub struct Driver {
    run_id: String,
    leaves: Vec<ClusterId>,
    clusters: Vec<ClusterState>,
    task_counts: Vec<usize>,
    finished_clusters: usize,
    finished_tasks: usize,
    last_heard: Micros,
    silence_limit: Micros,
    state: RunState,
}

impl Driver {
    pub fn new(run_id: String, plan: &Plan, silence_limit: Micros) -> Driver {
        Driver {
            run_id,
            leaves: plan.leaves().to_vec(),
            clusters: vec![ClusterState::Pending; plan.clusters().len()],
            task_counts: plan.clusters().iter().map(|c| c.tasks.len()).collect(),
            finished_clusters: 0,
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

    /// Tasks reported finished so far.
    pub fn finished_tasks(&self) -> usize {
        self.finished_tasks
    }

    pub fn handle(&mut self, event: DriverEvent, now: Micros) -> Vec<DriverAction> {
        if self.state == RunState::Over {
            return Vec::new();
        }
        match event {
            DriverEvent::Start => self.start(now),
            DriverEvent::Report(report) => self.report(report, now),
            DriverEvent::PlatformFailure {
                cluster,
                error_type,
                message,
            } => self.fail(RunFailure::Function {
                cluster,
                error_type,
                message,
            }),
            DriverEvent::Tick => self.tick(now),
        }
    }

    fn start(&mut self, now: Micros) -> Vec<DriverAction> {
        if self.state != RunState::Created {
            return Vec::new();
        }
        self.state = RunState::Running;
        self.last_heard = now;
        if self.clusters.is_empty() {
            self.state = RunState::Over;
            return vec![DriverAction::Completed];
        }
        self.leaves
            .iter()
            .map(|&cluster| DriverAction::Invoke { cluster })
            .collect()
    }

    fn report(&mut self, report: Report, now: Micros) -> Vec<DriverAction> {
        if report.run_id() != self.run_id || self.state != RunState::Running {
            return Vec::new();
        }
        self.last_heard = now;
        match report {
            Report::ClusterFinished(finished) => {
                let Some(state) = self.clusters.get_mut(finished.cluster.0 as usize) else {
                    return self.fail(RunFailure::Infrastructure {
                        cluster: finished.cluster,
                        message: format!("a report names unknown cluster {}", finished.cluster.0),
                    });
                };
                if *state == ClusterState::Finished {
                    return Vec::new();
                }
                *state = ClusterState::Finished;
                self.finished_clusters += 1;
                self.finished_tasks += self.task_counts[finished.cluster.0 as usize];
                let mut actions = vec![DriverAction::TasksFinished {
                    records: finished.tasks,
                }];
                if self.finished_clusters == self.clusters.len() {
                    self.state = RunState::Over;
                    actions.push(DriverAction::Completed);
                }
                actions
            }
            Report::ClusterFailed(failed) => match failed.task_error {
                Some(error) => self.fail(RunFailure::Task(error)),
                None => self.fail(RunFailure::Infrastructure {
                    cluster: failed.cluster,
                    message: failed.message,
                }),
            },
        }
    }

    fn tick(&mut self, now: Micros) -> Vec<DriverAction> {
        if self.state != RunState::Running {
            return Vec::new();
        }
        let silent_for_us = now.saturating_sub(self.last_heard);
        if silent_for_us > self.silence_limit {
            return self.fail(RunFailure::Lost {
                silent_for_us,
                pending_clusters: self.clusters.len() - self.finished_clusters,
            });
        }
        Vec::new()
    }

    fn fail(&mut self, failure: RunFailure) -> Vec<DriverAction> {
        self.state = RunState::Over;
        vec![DriverAction::Failed(failure)]
    }
}
