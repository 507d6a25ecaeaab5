//! The driver: the client's side of a run.
//!
//! The client uploads the clusters, invoking each leaf as soon as it is uploaded (and any
//! cluster whose parents all finished before its upload, see
//! [`UPLOAD_MEMBER`](crate::UPLOAD_MEMBER)), and from then on only listens. Every cluster ends in
//! exactly one final report on the result channel (finished or failed), possibly after progress
//! reports; the platform adds a failure record when it stops a function (memory, timeout,
//! crash). The driver folds these into the run's state:
//!
//! * a cluster is `Pending` until something says it runs, `Running` until its final report,
//!   then `Finished`; a repeated report of a finished cluster changes nothing (delivery may
//!   repeat);
//! * each task is passed on to progress ([`DriverAction::TasksFinished`]) exactly once, whether
//!   it arrives in a progress report, a final report, or both, and however often they repeat;
//! * the run is complete when every cluster is finished, and failed at the first failure;
//! * reports of other runs are ignored (the channel outlives runs);
//! * silence: a function lives at most its timeout, and the platform reports the ones it stops,
//!   so when nothing at all has arrived for longer than `silence_limit` while clusters are
//!   pending, the work is lost and the run fails instead of waiting forever.
//!
//! **Which cluster a dead function was running.** An invocation starts with one cluster and may
//! *become* others; the platform's failure record only knows the event it was invoked with.
//! The driver follows each invocation (by its request id) through its reports — progress names
//! the cluster it runs now, a final report the cluster it became — so a failure is blamed on
//! the cluster that was running when the function died, once.
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

use std::collections::HashMap;

use dask_serverless_graph::TaskId;
use dask_serverless_plan::{ClusterId, Plan};

use crate::Micros;
use crate::messages::{FailureCause, Report, TaskError, TaskRecord, TaskWarning};

#[derive(Debug, Clone, PartialEq)]
pub enum DriverEvent {
    /// The run starts.
    Start,
    /// A message from the result channel.
    Report(Report),
    /// The platform stopped a function. `invocation` is its request id and `cluster` the
    /// cluster it was invoked with, when the platform's record tells them.
    PlatformFailure {
        invocation: Option<String>,
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
    /// These tasks ran (feed progress callbacks), each reported once; the warnings they raised.
    TasksFinished {
        records: Vec<TaskRecord>,
        warnings: Vec<TaskWarning>,
    },
    /// Every cluster finished; the outputs are in the store.
    Completed,
    /// The run failed; nothing more will be emitted.
    Failed(RunFailure),
}

/// How the platform stopped a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunctionFailureKind {
    /// It used more memory than its memory size.
    OutOfMemory,
    /// It ran longer than its timeout.
    Timeout,
    /// Its process died, or the platform failed it otherwise.
    Crashed,
}

impl FunctionFailureKind {
    /// The kind of a platform error type, as AWS Lambda (and the local platform) name them.
    pub fn from_error_type(error_type: &str) -> FunctionFailureKind {
        match error_type {
            "Runtime.OutOfMemory" => FunctionFailureKind::OutOfMemory,
            "Sandbox.Timedout" => FunctionFailureKind::Timeout,
            _ => FunctionFailureKind::Crashed,
        }
    }
}

/// Why a run failed.
#[derive(Debug, Clone, PartialEq)]
pub enum RunFailure {
    /// A task raised.
    Task(TaskError),
    /// A task's result cannot be pickled.
    Unpicklable {
        cluster: ClusterId,
        task: TaskId,
        message: String,
    },
    /// The platform stopped a function (memory size, timeout, crash).
    Function {
        kind: FunctionFailureKind,
        /// The cluster the function was running, when known.
        cluster: Option<ClusterId>,
        /// Tasks this invocation had reported finished (over every cluster it ran).
        tasks_finished: usize,
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
    /// Invoked or become, no final report yet.
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

/// What the driver knows of one invocation.
#[derive(Debug, Clone, Copy)]
struct InvocationState {
    /// The cluster it runs now (or ran last).
    cluster: ClusterId,
    tasks_finished: usize,
}

/// The client's state machine for one run.
#[derive(Debug)]
pub struct Driver {
    run_id: String,
    /// By cluster id: whether the cluster has no parents (the client invokes it).
    leaves: Vec<bool>,
    clusters: Vec<ClusterState>,
    /// By task: already passed on to progress.
    reported: Vec<bool>,
    invocations: HashMap<String, InvocationState>,
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
            reported: vec![false; plan.task_count()],
            invocations: HashMap::new(),
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

    /// Tasks passed on to progress so far.
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
                DriverEvent::Report(report)
                    if report.run_id() == self.run_id
                        && self.names_only_known_clusters(&report) =>
                {
                    self.follow(&report);
                }
                DriverEvent::PlatformFailure {
                    invocation,
                    cluster,
                    ..
                } => {
                    if let Some(cluster) = self.failed_cluster(invocation.as_deref(), cluster) {
                        self.set_state(cluster, ClusterState::Failed);
                    }
                }
                _ => {}
            }
            return Vec::new();
        }
        match event {
            DriverEvent::Start => self.start(now),
            DriverEvent::Report(report) => self.report(report, now),
            DriverEvent::PlatformFailure {
                invocation,
                cluster,
                error_type,
                message,
            } => {
                let cluster = self.failed_cluster(invocation.as_deref(), cluster);
                if let Some(cluster) = cluster {
                    self.set_state(cluster, ClusterState::Failed);
                }
                let tasks_finished = invocation
                    .as_deref()
                    .and_then(|id| self.invocations.get(id))
                    .map_or(0, |state| state.tasks_finished);
                self.fail(RunFailure::Function {
                    kind: FunctionFailureKind::from_error_type(&error_type),
                    cluster,
                    tasks_finished,
                    error_type,
                    message,
                })
            }
            DriverEvent::Uploaded { cluster, released } => self.uploaded(cluster, released),
            DriverEvent::Tick => self.tick(now),
        }
    }

    /// The cluster a failed invocation was running: the last one its reports named, else the
    /// one it was invoked with.
    fn failed_cluster(
        &self,
        invocation: Option<&str>,
        invoked_with: Option<ClusterId>,
    ) -> Option<ClusterId> {
        invocation
            .and_then(|id| self.invocations.get(id))
            .map(|state| state.cluster)
            .or(invoked_with)
            .filter(|cluster| cluster.index() < self.clusters.len())
    }

    fn uploaded(&mut self, cluster: ClusterId, released: bool) -> Vec<DriverAction> {
        let leaf = self.leaves.get(cluster.index()) == Some(&true);
        if !(released || leaf)
            || self.state != RunState::Running
            || self.clusters.get(cluster.index()) != Some(&ClusterState::Pending)
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
        if !self.names_only_known_clusters(&report) {
            let unknown = self
                .named_clusters(&report)
                .into_iter()
                .find(|cluster| cluster.index() >= self.clusters.len());
            return self.fail(RunFailure::Infrastructure {
                cluster: unknown.unwrap_or(ClusterId(u32::MAX)),
                message: "a report names a cluster or task this run does not have".to_owned(),
            });
        }
        let was_finished = match &report {
            Report::ClusterFinished(finished) => {
                self.clusters[finished.cluster.index()] == ClusterState::Finished
            }
            _ => false,
        };
        self.follow(&report);
        match report {
            Report::Progress(progress) => self.progressed(progress.tasks, progress.warnings),
            Report::ClusterFinished(finished) => {
                if was_finished {
                    return Vec::new();
                }
                let mut actions = self.progressed(finished.tasks, finished.warnings);
                if self.finished_clusters == self.clusters.len() {
                    self.state = RunState::Over;
                    actions.push(DriverAction::Completed);
                }
                actions
            }
            Report::ClusterFailed(failed) => match failed.cause {
                FailureCause::Task(error) => self.fail(RunFailure::Task(error)),
                FailureCause::Unpicklable { task, message } => self.fail(RunFailure::Unpicklable {
                    cluster: failed.cluster,
                    task,
                    message,
                }),
                FailureCause::Infrastructure { message } => self.fail(RunFailure::Infrastructure {
                    cluster: failed.cluster,
                    message,
                }),
            },
        }
    }

    /// The records of tasks not passed on yet, as one progress action.
    fn progressed(
        &mut self,
        records: Vec<TaskRecord>,
        warnings: Vec<TaskWarning>,
    ) -> Vec<DriverAction> {
        let mut fresh = Vec::with_capacity(records.len());
        for record in records {
            let seen = &mut self.reported[record.task.index()];
            if !*seen {
                *seen = true;
                fresh.push(record);
            }
        }
        self.finished_tasks += fresh.len();
        if fresh.is_empty() && warnings.is_empty() {
            return Vec::new();
        }
        vec![DriverAction::TasksFinished {
            records: fresh,
            warnings,
        }]
    }

    fn named_clusters(&self, report: &Report) -> Vec<ClusterId> {
        match report {
            Report::Progress(progress) => vec![progress.cluster],
            Report::ClusterFinished(finished) => std::iter::once(finished.cluster)
                .chain(finished.invoked.iter().copied())
                .chain(finished.became)
                .collect(),
            Report::ClusterFailed(failed) => vec![failed.cluster],
        }
    }

    /// Whether every cluster and task a report names belongs to the run.
    fn names_only_known_clusters(&self, report: &Report) -> bool {
        let clusters_known = self
            .named_clusters(report)
            .iter()
            .all(|cluster| cluster.index() < self.clusters.len());
        let tasks: &[TaskRecord] = match report {
            Report::Progress(progress) => &progress.tasks,
            Report::ClusterFinished(finished) => &finished.tasks,
            Report::ClusterFailed(_) => &[],
        };
        let warnings: &[TaskWarning] = match report {
            Report::Progress(progress) => &progress.warnings,
            Report::ClusterFinished(finished) => &finished.warnings,
            Report::ClusterFailed(_) => &[],
        };
        clusters_known
            && tasks
                .iter()
                .all(|record| record.task.index() < self.reported.len())
            && warnings
                .iter()
                .all(|warning| warning.task.index() < self.reported.len())
    }

    /// Updates which clusters run, which finished, and what each invocation runs, from a report
    /// of this run.
    fn follow(&mut self, report: &Report) {
        match report {
            Report::Progress(progress) => {
                if self.clusters[progress.cluster.index()] == ClusterState::Pending {
                    self.set_state(progress.cluster, ClusterState::Running);
                }
                self.track_invocation(
                    &progress.invocation,
                    Some(progress.cluster),
                    progress.tasks.len(),
                );
            }
            Report::ClusterFinished(finished) => {
                self.set_state(finished.cluster, ClusterState::Finished);
                for &child in finished.invoked.iter().chain(&finished.became) {
                    if self.clusters.get(child.index()) == Some(&ClusterState::Pending) {
                        self.set_state(child, ClusterState::Running);
                    }
                }
                self.track_invocation(&finished.invocation, finished.became, finished.tasks.len());
            }
            Report::ClusterFailed(failed) => self.set_state(failed.cluster, ClusterState::Failed),
        }
    }

    fn track_invocation(&mut self, invocation: &str, cluster: Option<ClusterId>, tasks: usize) {
        if invocation.is_empty() {
            return;
        }
        match (self.invocations.get_mut(invocation), cluster) {
            (Some(state), Some(cluster)) => {
                state.cluster = cluster;
                state.tasks_finished += tasks;
            }
            (Some(state), None) => state.tasks_finished += tasks,
            (None, Some(cluster)) => {
                self.invocations.insert(
                    invocation.to_owned(),
                    InvocationState {
                        cluster,
                        tasks_finished: tasks,
                    },
                );
            }
            (None, None) => {}
        }
    }

    fn set_state(&mut self, cluster: ClusterId, state: ClusterState) {
        let Some(current) = self.clusters.get_mut(cluster.index()) else {
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
