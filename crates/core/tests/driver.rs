//! The driver through its actions: progress is passed on task by task and exactly once, and a
//! failure is blamed on the batch that was running.

use dask_serverless_core::{
    AbandonReason, AbandonReport, BatchReport, Driver, DriverAction, DriverEvent, FailureCause,
    FailureReport, FunctionFailureKind, ProgressReport, RecoveryPolicy, Report, RunFailure,
    TaskError, TaskRecord, TaskWarning,
};
use dask_serverless_graph::{Graph, TaskId};
use dask_serverless_plan::{BatchId, Plan, PlanOptions};

/// A chain of `length` tasks cut into one batch per task, so that one invocation becomes
/// each next batch.
fn chain_plan(length: u32) -> Plan {
    let keys = (0..length).map(|task| format!("t{task}")).collect();
    let dependencies = (0..length)
        .map(|task| if task == 0 { vec![] } else { vec![task - 1] })
        .collect();
    let graph = Graph::new(keys, dependencies, vec![], vec![length - 1]).unwrap();
    let plan = Plan::build(
        &graph,
        &PlanOptions {
            parallelism: length as usize,
            batches_per_function: 1,
            max_batch_tasks: 1,
        },
    );
    assert_eq!(plan.batches().len(), length as usize);
    plan
}

fn record(task: u32) -> TaskRecord {
    TaskRecord {
        task: TaskId(task),
        start_us: 1,
        duration_us: 2,
        stored_bytes: 0,
    }
}

fn progress(batch: u32, invocation: &str, tasks: &[u32]) -> DriverEvent {
    DriverEvent::Report(Report::Progress(ProgressReport {
        run_id: "run".into(),
        batch: BatchId(batch),
        invocation: invocation.into(),
        tasks: tasks.iter().map(|&task| record(task)).collect(),
        warnings: vec![],
    }))
}

fn finished(batch: u32, invocation: &str, tasks: &[u32], became: Option<u32>) -> DriverEvent {
    DriverEvent::Report(Report::BatchFinished(BatchReport {
        run_id: "run".into(),
        batch: BatchId(batch),
        invocation: invocation.into(),
        cold: false,
        tasks: tasks.iter().map(|&task| record(task)).collect(),
        loaded_bytes: 0,
        invoked: vec![],
        became: became.map(BatchId),
        warnings: vec![],
        store: Default::default(),
        resources: Default::default(),
    }))
}

fn started(plan: &Plan) -> Driver {
    let mut driver = Driver::new("run".into(), plan, 1_000_000);
    assert!(driver.handle(DriverEvent::Start, 0).is_empty());
    let leaf = plan.leaves()[0];
    assert_eq!(
        driver.handle(DriverEvent::Uploaded { batch: leaf }, 0),
        vec![DriverAction::Invoke { batch: leaf }]
    );
    driver
}

fn reported_tasks(actions: &[DriverAction]) -> Vec<u32> {
    actions
        .iter()
        .flat_map(|action| match action {
            DriverAction::TasksFinished { records, .. } => {
                records.iter().map(|record| record.task.0).collect()
            }
            _ => Vec::new(),
        })
        .collect()
}

#[test]
fn every_task_reaches_progress_once_whatever_repeats() {
    let plan = chain_plan(2);
    let mut driver = started(&plan);
    assert_eq!(
        reported_tasks(&driver.handle(progress(0, "i", &[0]), 1)),
        [0]
    );
    // A repeated delivery of the same progress adds nothing.
    assert!(driver.handle(progress(0, "i", &[0]), 2).is_empty());
    // The final report carries a task already streamed: only the new one is passed on.
    assert_eq!(
        reported_tasks(&driver.handle(finished(0, "i", &[0], Some(1)), 3)),
        Vec::<u32>::new()
    );
    assert_eq!(driver.finished_tasks(), 1);
    let actions = driver.handle(finished(1, "i", &[1], None), 4);
    assert_eq!(reported_tasks(&actions), [1]);
    assert_eq!(actions.last(), Some(&DriverAction::Completed));
    assert_eq!(driver.finished_tasks(), 2);
    assert!(driver.is_drained());
}

#[test]
fn warnings_are_passed_on_with_their_progress() {
    let plan = chain_plan(1);
    let mut driver = started(&plan);
    let warning = TaskWarning {
        task: TaskId(0),
        category: "builtins.RuntimeWarning".into(),
        message: "divide by zero".into(),
        filename: "task.py".into(),
        lineno: 3,
        pickled: None,
    };
    let report = Report::Progress(ProgressReport {
        run_id: "run".into(),
        batch: BatchId(0),
        invocation: "i".into(),
        tasks: vec![record(0)],
        warnings: vec![warning.clone()],
    });
    assert_eq!(
        driver.handle(DriverEvent::Report(report), 1),
        vec![DriverAction::TasksFinished {
            records: vec![record(0)],
            warnings: vec![warning],
        }]
    );
}

/// The chain plan's run after an invocation ran batch 0, became 1, then became 2.
fn became_twice(plan: &Plan, policy: RecoveryPolicy) -> Driver {
    let mut driver = Driver::new("run".into(), plan, 1_000_000).with_recovery(policy);
    driver.handle(DriverEvent::Start, 0);
    for batch in 0..3 {
        driver.handle(
            DriverEvent::Uploaded {
                batch: BatchId(batch),
            },
            0,
        );
    }
    driver.handle(finished(0, "request-1", &[0], Some(1)), 1);
    driver.handle(progress(1, "request-1", &[1]), 2);
    driver.handle(finished(1, "request-1", &[], Some(2)), 3);
    assert_eq!(driver.running_batches(), 1);
    driver
}

fn crash(invocation: &str, batch: u32) -> DriverEvent {
    DriverEvent::PlatformFailure {
        invocation: Some(invocation.into()),
        batch: Some(BatchId(batch)),
        error_type: "Runtime.ExitError".into(),
        message: "Runtime exited with error: exit status 3".into(),
    }
}

#[test]
fn a_dead_function_is_blamed_on_the_batch_it_had_become() {
    let plan = chain_plan(3);
    let mut driver = became_twice(&plan, RecoveryPolicy::never());
    // The platform only knows the event the function was invoked with: batch 0.
    let actions = driver.handle(crash("request-1", 0), 4);
    assert_eq!(
        actions,
        vec![DriverAction::Failed(RunFailure::Function {
            kind: FunctionFailureKind::Crashed,
            batch: Some(BatchId(2)),
            attempts: 1,
            tasks_finished: 2,
            error_type: "Runtime.ExitError".into(),
            message: "Runtime exited with error: exit status 3".into(),
        })]
    );
    // Nothing of the run runs any more: the client need not wait.
    assert!(driver.is_drained());
}

#[test]
fn a_lost_batch_is_redone_from_the_head_of_its_chain_of_hand_overs() {
    let plan = chain_plan(3);
    let mut driver = became_twice(&plan, RecoveryPolicy::default());
    // Batch 2 read batch 1's values in memory, which read batch 0's: all died with request-1.
    assert_eq!(
        driver.handle(crash("request-1", 0), 4),
        vec![DriverAction::Recover {
            batch: BatchId(0),
            attempt: 2,
            recovering: vec![BatchId(1), BatchId(2)],
            backup: false,
        }]
    );
    assert_eq!(driver.recoveries(), 1);
    // The same failure recorded twice is one failure.
    assert!(driver.handle(crash("request-1", 0), 5).is_empty());
    // The recovery replays batches 0 and 1 (already reported: nothing new), then runs 2.
    assert!(
        driver
            .handle(finished(0, "request-2", &[0], Some(1)), 6)
            .is_empty()
    );
    assert!(
        driver
            .handle(finished(1, "request-2", &[1], Some(2)), 7)
            .is_empty()
    );
    assert_eq!(
        driver.handle(finished(2, "request-2", &[2], None), 8),
        vec![
            DriverAction::TasksFinished {
                records: vec![record(2)],
                warnings: vec![],
            },
            DriverAction::Completed,
        ]
    );
}

#[test]
fn a_batch_that_keeps_dying_fails_the_run_after_its_budget_naming_the_attempts() {
    let plan = chain_plan(1);
    let mut driver = started(&plan);
    let out_of_memory = |invocation: &str| DriverEvent::PlatformFailure {
        invocation: Some(invocation.into()),
        batch: Some(BatchId(0)),
        error_type: "Runtime.OutOfMemory".into(),
        message: "used more than 128 MB".into(),
    };
    assert_eq!(
        driver.handle(out_of_memory("request-1"), 1),
        vec![DriverAction::Recover {
            batch: BatchId(0),
            attempt: 2,
            recovering: vec![],
            backup: false,
        }]
    );
    let actions = driver.handle(out_of_memory("request-2"), 2);
    let [DriverAction::Failed(RunFailure::Function { kind, attempts, .. })] = actions.as_slice()
    else {
        panic!("unexpected actions {actions:?}");
    };
    assert_eq!((*kind, *attempts), (FunctionFailureKind::OutOfMemory, 2));
    assert!(driver.is_over());
}

#[test]
fn a_task_exception_is_retried_only_when_asked() {
    let plan = chain_plan(1);
    let raised = |invocation: &str| {
        DriverEvent::Report(Report::BatchFailed(FailureReport {
            run_id: "run".into(),
            batch: BatchId(0),
            invocation: invocation.into(),
            cause: FailureCause::Task(TaskError {
                task: TaskId(0),
                type_name: "builtins.ValueError".into(),
                message: "flaky".into(),
                traceback: String::new(),
                pickled: None,
            }),
        }))
    };
    let mut driver = started(&plan);
    assert!(matches!(
        driver.handle(raised("request-1"), 1).as_slice(),
        [DriverAction::Failed(RunFailure::Task(_))]
    ));
    let mut driver = Driver::new("run".into(), &plan, 1_000_000).with_recovery(RecoveryPolicy {
        task_retries: 1,
        ..RecoveryPolicy::default()
    });
    driver.handle(DriverEvent::Start, 0);
    driver.handle(DriverEvent::Uploaded { batch: BatchId(0) }, 0);
    assert_eq!(
        driver.handle(raised("request-1"), 1),
        vec![DriverAction::Recover {
            batch: BatchId(0),
            attempt: 2,
            recovering: vec![],
            backup: false,
        }]
    );
    assert!(matches!(
        driver.handle(raised("request-2"), 2).as_slice(),
        [DriverAction::Failed(RunFailure::Task(_))]
    ));
}

#[test]
fn silence_redoes_what_runs_and_fails_the_run_once_the_budget_is_spent() {
    let plan = chain_plan(1);
    let mut driver = Driver::new("run".into(), &plan, 10).with_recovery(RecoveryPolicy {
        crash_retries: 1,
        ..RecoveryPolicy::default()
    });
    driver.handle(DriverEvent::Start, 0);
    driver.handle(DriverEvent::Uploaded { batch: BatchId(0) }, 0);
    assert!(driver.handle(DriverEvent::Tick, 10).is_empty());
    assert_eq!(
        driver.handle(DriverEvent::Tick, 11),
        vec![DriverAction::Recover {
            batch: BatchId(0),
            attempt: 2,
            recovering: vec![],
            backup: false,
        }]
    );
    assert!(driver.handle(DriverEvent::Tick, 21).is_empty());
    let actions = driver.handle(DriverEvent::Tick, 22);
    assert!(
        matches!(
            actions.as_slice(),
            [DriverAction::Failed(RunFailure::Lost { .. })]
        ),
        "{actions:?}"
    );
}

#[test]
fn a_child_released_by_a_lost_function_but_never_invoked_is_invoked_by_the_driver() {
    // Two leaves 0 and 1, each read by batch 2 (a fan-in of both and the upload).
    let keys = vec!["a".into(), "b".into(), "c".into()];
    let graph = Graph::new(keys, vec![vec![], vec![], vec![0, 1]], vec![], vec![2]).unwrap();
    let plan = Plan::build(
        &graph,
        &PlanOptions {
            parallelism: 3,
            batches_per_function: 1,
            max_batch_tasks: 1,
        },
    );
    assert_eq!(plan.batches().len(), 3);
    let child = BatchId(2);
    assert_eq!(plan.batch(child).parents.len(), 2);
    let mut driver = Driver::new("run".into(), &plan, 1_000_000);
    driver.handle(DriverEvent::Start, 0);
    for batch in 0..3 {
        let actions = driver.handle(
            DriverEvent::Uploaded {
                batch: BatchId(batch),
            },
            0,
        );
        if let [DriverAction::FanIn { batch, .. }] = actions.as_slice() {
            // Neither parent has finished: the upload does not release the child.
            driver.handle(
                DriverEvent::UploadFanInAnswered {
                    batch: *batch,
                    released: false,
                },
                0,
            );
        }
    }
    let (first, second) = (plan.batch(child).parents[0], plan.batch(child).parents[1]);
    driver.handle(finished(first.0, "request-1", &[first.0], None), 1);
    // The second parent's function released the child, then died before invoking it.
    assert!(matches!(
        driver.handle(crash("request-2", second.0), 2).as_slice(),
        [DriverAction::Recover { .. }]
    ));
    // Its recovery finds the child's set complete already: it invokes nothing.
    let actions = driver.handle(finished(second.0, "request-3", &[second.0], None), 3);
    assert_eq!(
        actions.last(),
        Some(&DriverAction::Invoke { batch: child }),
        "{actions:?}"
    );
}

#[test]
fn reports_of_a_batch_another_attempt_finished_change_nothing() {
    let plan = chain_plan(1);
    let mut driver = Driver::new("run".into(), &plan, 1_000_000);
    driver.handle(DriverEvent::Start, 0);
    driver.handle(DriverEvent::Uploaded { batch: BatchId(0) }, 0);
    driver.handle(progress(0, "request-1", &[]), 1);
    let late_failure = DriverEvent::Report(Report::BatchFailed(FailureReport {
        run_id: "run".into(),
        batch: BatchId(0),
        invocation: "request-2".into(),
        cause: FailureCause::Infrastructure {
            message: "store unavailable".into(),
        },
    }));
    let abandoned = DriverEvent::Report(Report::BatchAbandoned(AbandonReport {
        run_id: "run".into(),
        batch: BatchId(0),
        invocation: "request-2".into(),
        reason: AbandonReason::FinishedElsewhere,
        store: Default::default(),
        resources: Default::default(),
    }));
    assert!(driver.handle(abandoned.clone(), 2).is_empty());
    assert_eq!(
        driver
            .handle(finished(0, "request-1", &[0], None), 3)
            .last(),
        Some(&DriverAction::Completed)
    );
    assert!(driver.handle(late_failure, 4).is_empty());
    assert!(driver.handle(abandoned, 5).is_empty());
}

#[test]
fn platform_error_types_name_the_kind_of_failure() {
    assert_eq!(
        FunctionFailureKind::from_error_type("Runtime.OutOfMemory"),
        FunctionFailureKind::OutOfMemory
    );
    assert_eq!(
        FunctionFailureKind::from_error_type("Sandbox.Timedout"),
        FunctionFailureKind::Timeout
    );
    assert_eq!(
        FunctionFailureKind::from_error_type("Runtime.ExitError"),
        FunctionFailureKind::Crashed
    );
}

#[test]
fn an_unpicklable_result_fails_the_run_as_such() {
    let plan = chain_plan(1);
    let mut driver = started(&plan);
    let failure = Report::BatchFailed(FailureReport {
        run_id: "run".into(),
        batch: BatchId(0),
        invocation: "i".into(),
        cause: FailureCause::Unpicklable {
            task: TaskId(0),
            message: "cannot pickle '_thread.lock' object".into(),
        },
    });
    assert_eq!(
        driver.handle(DriverEvent::Report(failure), 1),
        vec![DriverAction::Failed(RunFailure::Unpicklable {
            batch: BatchId(0),
            task: TaskId(0),
            message: "cannot pickle '_thread.lock' object".into(),
        })]
    );
}

#[test]
fn a_report_naming_a_task_out_of_range_fails_the_run_without_panicking() {
    let plan = chain_plan(1);
    let mut driver = started(&plan);
    let actions = driver.handle(progress(0, "i", &[7]), 1);
    let [DriverAction::Failed(RunFailure::Infrastructure { message, .. })] = actions.as_slice()
    else {
        panic!("unexpected actions {actions:?}");
    };
    assert!(message.contains("does not have"), "{message}");
    assert!(driver.is_over());
}

#[test]
fn a_batch_abandoned_for_a_lapsed_lease_renews_it_then_is_redone() {
    let plan = chain_plan(1);
    let mut driver = started(&plan);
    let abandoned = DriverEvent::Report(Report::BatchAbandoned(AbandonReport {
        run_id: "run".into(),
        batch: BatchId(0),
        invocation: "request-1".into(),
        reason: AbandonReason::ClientGone,
        store: Default::default(),
        resources: Default::default(),
    }));
    assert_eq!(
        driver.handle(abandoned, 1),
        vec![
            DriverAction::RenewLease,
            DriverAction::Recover {
                batch: BatchId(0),
                attempt: 2,
                recovering: vec![],
                backup: false,
            },
        ]
    );
}

#[test]
fn a_run_the_client_stopped_redoes_nothing_and_drains() {
    let plan = chain_plan(1);
    let mut driver = started(&plan);
    assert!(driver.handle(DriverEvent::Stop, 1).is_empty());
    assert!(driver.is_over());
    // The function the client stopped is recorded failed: no recovery, nothing runs.
    assert!(driver.handle(crash("request-1", 0), 2).is_empty());
    assert!(driver.is_drained());
}

#[test]
fn a_recovery_that_dies_while_rebuilding_its_chain_is_blamed_on_its_target() {
    let plan = chain_plan(3);
    let mut driver = became_twice(&plan, RecoveryPolicy::default());
    assert!(matches!(
        driver.handle(crash("request-1", 0), 4).as_slice(),
        [DriverAction::Recover { attempt: 2, .. }]
    ));
    // The recovery rebuilds batch 0 (finished already) and becomes 1, then dies: its record
    // names the event's target, batch 2, which is still lost.
    driver.handle(finished(0, "request-2", &[0], Some(1)), 5);
    assert_eq!(
        driver.handle(crash("request-2", 2), 6),
        vec![DriverAction::Recover {
            batch: BatchId(0),
            attempt: 3,
            recovering: vec![BatchId(1), BatchId(2)],
            backup: false,
        }]
    );
}

/// Four leaf batches (one task each) and the batch of the task that sums them.
fn fan_in_plan() -> Plan {
    let keys = (0..5).map(|task| format!("t{task}")).collect();
    let dependencies = vec![vec![], vec![], vec![], vec![], vec![0, 1, 2, 3]];
    let graph = Graph::new(keys, dependencies, vec![], vec![4]).unwrap();
    let plan = Plan::build(
        &graph,
        &PlanOptions {
            parallelism: 4,
            batches_per_function: 1,
            max_batch_tasks: 1,
        },
    );
    assert_eq!(plan.batches().len(), 5);
    assert_eq!(plan.leaves().len(), 4);
    plan
}

/// The driver of `plan` with every leaf invoked at time 0 and all leaves but the last
/// finished at 0.1 s; a backup may start after a second (the default waits five).
fn three_of_four_leaves_finished(plan: &Plan, limit: Option<usize>) -> (Driver, BatchId) {
    three_of_four_leaves_finished_with(
        plan,
        limit,
        RecoveryPolicy {
            backup_after: 1_000_000,
            ..RecoveryPolicy::default()
        },
    )
}

fn three_of_four_leaves_finished_with(
    plan: &Plan,
    limit: Option<usize>,
    policy: RecoveryPolicy,
) -> (Driver, BatchId) {
    let mut driver = Driver::new("run".into(), plan, 60_000_000)
        .with_concurrency_limit(limit)
        .with_recovery(policy);
    driver.handle(DriverEvent::Start, 0);
    let leaves = plan.leaves().to_vec();
    for &leaf in &leaves {
        assert_eq!(
            driver.handle(DriverEvent::Uploaded { batch: leaf }, 0),
            vec![DriverAction::Invoke { batch: leaf }]
        );
    }
    for &leaf in &leaves[..3] {
        let task = plan.batch(leaf).tasks[0].0;
        driver.handle(
            finished(leaf.0, &format!("leaf-{}", leaf.0), &[task], None),
            100_000,
        );
    }
    (driver, leaves[3])
}

fn backups(actions: &[DriverAction]) -> Vec<BatchId> {
    actions
        .iter()
        .filter_map(|action| match action {
            DriverAction::Recover {
                batch,
                backup: true,
                ..
            } => Some(*batch),
            _ => None,
        })
        .collect()
}

#[test]
fn by_default_a_straggler_waits_five_seconds_for_its_backup() {
    // An instance's first invocation imports the tasks' libraries for a second or more: that
    // wait draws no backup.
    let plan = fan_in_plan();
    let (mut driver, straggler) =
        three_of_four_leaves_finished_with(&plan, None, RecoveryPolicy::default());
    assert!(backups(&driver.handle(DriverEvent::Tick, 4_900_000)).is_empty());
    assert_eq!(
        backups(&driver.handle(DriverEvent::Tick, 5_100_000)),
        [straggler]
    );
}

#[test]
fn a_straggler_gets_one_backup_and_the_run_drains_once_both_stopped() {
    let plan = fan_in_plan();
    let (mut driver, straggler) = three_of_four_leaves_finished(&plan, None);
    // Three times its siblings' 0.1 s, but not yet the least time for a backup (1 s).
    assert!(driver.handle(DriverEvent::Tick, 900_000).is_empty());
    let actions = driver.handle(DriverEvent::Tick, 1_100_000);
    assert_eq!(
        actions,
        vec![DriverAction::Recover {
            batch: straggler,
            attempt: 2,
            recovering: vec![],
            backup: true,
        }]
    );
    assert_eq!(driver.backups(), 1);
    assert_eq!(driver.recoveries(), 0);
    // One backup per batch.
    assert!(backups(&driver.handle(DriverEvent::Tick, 5_000_000)).is_empty());
    // The backup wins; the straggler still runs, so the run is not drained.
    let task = plan.batch(straggler).tasks[0].0;
    let winner = DriverEvent::Report(Report::BatchFinished(BatchReport {
        invoked: vec![BatchId(4)],
        ..match finished(straggler.0, "backup", &[task], None) {
            DriverEvent::Report(Report::BatchFinished(report)) => report,
            _ => unreachable!(),
        }
    }));
    assert_eq!(reported_tasks(&driver.handle(winner, 5_100_000)), [task]);
    assert!(!driver.is_drained());
    let sink = driver.handle(finished(4, "backup-child", &[4], None), 5_200_000);
    assert_eq!(sink.last(), Some(&DriverAction::Completed));
    assert!(!driver.is_drained(), "the straggler has not stopped yet");
    let yielded = DriverEvent::Report(Report::BatchAbandoned(AbandonReport {
        run_id: "run".into(),
        batch: straggler,
        invocation: "leaf-3".into(),
        reason: AbandonReason::FinishedElsewhere,
        store: Default::default(),
        resources: Default::default(),
    }));
    assert!(driver.handle(yielded, 5_300_000).is_empty());
    assert!(driver.is_drained());
}

#[test]
fn the_death_of_a_straggler_or_its_backup_costs_nothing_while_the_other_runs() {
    let plan = fan_in_plan();
    let (mut driver, straggler) = three_of_four_leaves_finished(&plan, None);
    assert_eq!(
        backups(&driver.handle(DriverEvent::Tick, 2_000_000)),
        [straggler]
    );
    let died = DriverEvent::PlatformFailure {
        invocation: Some("leaf-3".into()),
        batch: Some(straggler),
        error_type: "Runtime.ExitError".into(),
        message: "killed".into(),
    };
    assert!(driver.handle(died, 2_100_000).is_empty());
    assert_eq!(driver.recoveries(), 0);
    // The backup dying as well is lost work: redone.
    let died = DriverEvent::PlatformFailure {
        invocation: Some("backup".into()),
        batch: Some(straggler),
        error_type: "Runtime.ExitError".into(),
        message: "killed".into(),
    };
    let actions = driver.handle(died, 2_200_000);
    assert!(
        matches!(
            actions.as_slice(),
            [DriverAction::Recover { backup: false, batch, .. }] if *batch == straggler
        ),
        "{actions:?}"
    );
}

#[test]
fn no_backup_takes_a_place_the_concurrency_limit_leaves_to_waiting_batches() {
    let plan = fan_in_plan();
    let (mut driver, _) = three_of_four_leaves_finished(&plan, Some(1));
    assert!(backups(&driver.handle(DriverEvent::Tick, 5_000_000)).is_empty());
    let (mut driver, straggler) = three_of_four_leaves_finished(&plan, Some(2));
    assert_eq!(
        backups(&driver.handle(DriverEvent::Tick, 5_000_000)),
        [straggler]
    );
    // Nor without enough finished siblings to compare with, nor with backups off.
    let mut driver = Driver::new("run".into(), &plan, 60_000_000);
    driver.handle(DriverEvent::Start, 0);
    for &leaf in plan.leaves() {
        driver.handle(DriverEvent::Uploaded { batch: leaf }, 0);
    }
    let first = plan.leaves()[0];
    let task = plan.batch(first).tasks[0].0;
    driver.handle(finished(first.0, "leaf", &[task], None), 100_000);
    assert!(backups(&driver.handle(DriverEvent::Tick, 5_000_000)).is_empty());
    let mut driver =
        Driver::new("run".into(), &plan, 60_000_000).with_recovery(RecoveryPolicy::never());
    driver.handle(DriverEvent::Start, 0);
    for &leaf in plan.leaves() {
        driver.handle(DriverEvent::Uploaded { batch: leaf }, 0);
    }
    for &leaf in &plan.leaves()[..3] {
        let task = plan.batch(leaf).tasks[0].0;
        driver.handle(finished(leaf.0, "leaf", &[task], None), 100_000);
    }
    assert!(backups(&driver.handle(DriverEvent::Tick, 5_000_000)).is_empty());
}

#[test]
fn a_backup_that_yields_to_the_mark_of_a_dead_original_is_redone() {
    // The original marked the batch done and died before its fan-ins; the backup found the mark
    // and yielded. Nobody finishes the batch: it is redone, whichever message comes first.
    let plan = fan_in_plan();
    let died = |straggler: BatchId| DriverEvent::PlatformFailure {
        invocation: Some("leaf-3".into()),
        batch: Some(straggler),
        error_type: "Runtime.ExitError".into(),
        message: "killed".into(),
    };
    let yielded = |straggler: BatchId| {
        DriverEvent::Report(Report::BatchAbandoned(AbandonReport {
            run_id: "run".into(),
            batch: straggler,
            invocation: "backup".into(),
            reason: AbandonReason::FinishedElsewhere,
            store: Default::default(),
            resources: Default::default(),
        }))
    };
    let redone = |actions: &[DriverAction], straggler: BatchId| {
        matches!(
            actions,
            [DriverAction::Recover { backup: false, batch, .. }] if *batch == straggler
        )
    };
    let (mut driver, straggler) = three_of_four_leaves_finished(&plan, None);
    assert_eq!(
        backups(&driver.handle(DriverEvent::Tick, 2_000_000)),
        [straggler]
    );
    assert!(driver.handle(died(straggler), 2_100_000).is_empty());
    let actions = driver.handle(yielded(straggler), 2_200_000);
    assert!(redone(&actions, straggler), "{actions:?}");

    let (mut driver, straggler) = three_of_four_leaves_finished(&plan, None);
    assert_eq!(
        backups(&driver.handle(DriverEvent::Tick, 2_000_000)),
        [straggler]
    );
    assert!(driver.handle(yielded(straggler), 2_100_000).is_empty());
    let actions = driver.handle(died(straggler), 2_200_000);
    assert!(redone(&actions, straggler), "{actions:?}");
}

#[test]
fn a_failure_record_without_request_id_is_blamed_on_the_batch_the_function_became() {
    // Some platforms' failure records carry the event but not the request id: the driver then
    // cannot look at the invocation's reports, and follows what each finished batch became.
    let plan = chain_plan(3);
    let mut driver = started(&plan);
    driver.handle(finished(0, "request-1", &[0], Some(1)), 1);
    let died = DriverEvent::PlatformFailure {
        invocation: None,
        batch: Some(BatchId(0)),
        error_type: "Runtime.HandlerError".into(),
        message: "Worker process died".into(),
    };
    // Batch 1 died with the function; its input was handed over in memory: redo from 0.
    assert_eq!(
        driver.handle(died, 2),
        vec![DriverAction::Recover {
            batch: BatchId(0),
            attempt: 2,
            recovering: vec![BatchId(1)],
            backup: false,
        }]
    );
}
