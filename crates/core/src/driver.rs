//! The driver: the client's side of a run.
//!
//! The client uploads the clusters, invoking each leaf as soon as it is uploaded (and any
//! cluster whose parents all finished before its upload, see
//! [`UPLOAD_MEMBER`](crate::UPLOAD_MEMBER)), and from then on only listens. Every cluster ends in
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
//!
//! **Draining.** When a run fails, clusters of other branches may still be running and would
//! write values after the client cleaned up. The driver therefore knows which clusters are
//! *running*: the leaves once invoked, and every child a report says was invoked or become,
//! until that child's own report (or failure) arrives — reports may arrive in any order, so a
//! child already reported is never counted as running again. After the end of the run the
//! driver keeps following reports for this purpose only; [`Driver::is_drained`] tells the
//! shell when nothing of the run can write any more.

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
    /// The client uploaded a cluster (after [`DriverEvent::Start`]). A leaf is invoked at once;
    /// for others, the client added [`UPLOAD_MEMBER`](crate::UPLOAD_MEMBER) to its fan-in set
    /// and `released` says whether that completed the set (every parent had finished).
    Uploaded { cluster: ClusterId, released: bool },
    /// Time passes.
    Tick,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DriverAction {
    /// Invoke a function for this cluster (a leaf, or one the upload released).
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
    /// Not started as far as the driver knows.
    Pending,
    /// Invoked or become, no report yet.
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

/// The client's state machine for one run.
#[derive(Debug)]
pub struct Driver {
    run_id: String,
    /// By cluster id: whether the cluster has no parents (the client invokes it).
    leaves: Vec<bool>,
    clusters: Vec<ClusterState>,
    task_counts: Vec<usize>,
    finished_clusters: usize,
    running_clusters: usize,
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
                .clusters()
                .iter()
                .map(|c| c.parents.is_empty())
                .collect(),
            clusters: vec![ClusterState::Pending; plan.clusters().len()],
            task_counts: plan.clusters().iter().map(|c| c.tasks.len()).collect(),
            finished_clusters: 0,
            running_clusters: 0,
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

    /// No cluster of the run is known to be running: nothing of it can write any more.
    pub fn is_drained(&self) -> bool {
        self.running_clusters == 0
    }

    /// Clusters invoked or become that have not reported yet.
    pub fn running_clusters(&self) -> usize {
        self.running_clusters
    }

    pub fn handle(&mut self, event: DriverEvent, now: Micros) -> Vec<DriverAction> {
        if self.state == RunState::Over {
            // Only follow which clusters still run (see "Draining").
            match event {
                DriverEvent::Report(report) if report.run_id() == self.run_id => {
                    self.follow(&report);
                }
                DriverEvent::PlatformFailure {
                    cluster: Some(cluster),
                    ..
                } => self.set_state(cluster, ClusterState::Failed),
                _ => {}
            }
            return Vec::new();
        }
        match event {
            DriverEvent::Start => self.start(now),
            DriverEvent::Report(report) => self.report(report, now),
            DriverEvent::PlatformFailure {
                cluster,
                error_type,
                message,
            } => {
                if let Some(cluster) = cluster {
                    self.set_state(cluster, ClusterState::Failed);
                }
                self.fail(RunFailure::Function {
                    cluster,
                    error_type,
                    message,
                })
            }
            DriverEvent::Uploaded { cluster, released } => self.uploaded(cluster, released),
            DriverEvent::Tick => self.tick(now),
        }
    }

    fn uploaded(&mut self, cluster: ClusterId, released: bool) -> Vec<DriverAction> {
        let leaf = self.leaves.get(cluster.0 as usize) == Some(&true);
        if !(released || leaf)
            || self.state != RunState::Running
            || self.clusters.get(cluster.0 as usize) != Some(&ClusterState::Pending)
        {
            return Vec::new();
        }
        self.set_state(cluster, ClusterState::Running);
        vec![DriverAction::Invoke { cluster }]
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
        // Leaves are invoked as they are uploaded.
        Vec::new()
    }

    fn report(&mut self, report: Report, now: Micros) -> Vec<DriverAction> {
        if report.run_id() != self.run_id || self.state != RunState::Running {
            return Vec::new();
        }
        self.last_heard = now;
        if let Some(unknown) = self.unknown_cluster(&report) {
            return self.fail(RunFailure::Infrastructure {
                cluster: unknown,
                message: format!("a report names unknown cluster {}", unknown.0),
            });
        }
        let was_finished = match &report {
            Report::ClusterFinished(finished) => {
                self.clusters[finished.cluster.0 as usize] == ClusterState::Finished
            }
            Report::ClusterFailed(_) => false,
        };
        self.follow(&report);
        match report {
            Report::ClusterFinished(finished) => {
                if was_finished {
                    return Vec::new();
                }
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

    /// The first cluster a report names that the plan does not have.
    fn unknown_cluster(&self, report: &Report) -> Option<ClusterId> {
        let named: Vec<ClusterId> = match report {
            Report::ClusterFinished(finished) => std::iter::once(finished.cluster)
                .chain(finished.invoked.iter().copied())
                .chain(finished.became)
                .collect(),
            Report::ClusterFailed(failed) => vec![failed.cluster],
        };
        named
            .into_iter()
            .find(|cluster| cluster.0 as usize >= self.clusters.len())
    }

    /// Updates which clusters run and which finished from a report of this run.
    fn follow(&mut self, report: &Report) {
        match report {
            Report::ClusterFinished(finished) => {
                self.set_state(finished.cluster, ClusterState::Finished);
                for &child in finished.invoked.iter().chain(&finished.became) {
                    if self.clusters.get(child.0 as usize) == Some(&ClusterState::Pending) {
                        self.set_state(child, ClusterState::Running);
                    }
                }
            }
            Report::ClusterFailed(failed) => self.set_state(failed.cluster, ClusterState::Failed),
        }
    }

    fn set_state(&mut self, cluster: ClusterId, state: ClusterState) {
        let Some(current) = self.clusters.get_mut(cluster.0 as usize) else {
            return;
        };
        if *current == ClusterState::Finished || *current == state {
            return;
        }
        match *current {
            ClusterState::Running => self.running_clusters -= 1,
            ClusterState::Finished => self.finished_clusters -= 1,
            _ => {}
        }
        match state {
            ClusterState::Running => self.running_clusters += 1,
            ClusterState::Finished => self.finished_clusters += 1,
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
