//! The executor through its actions: each test feeds events and checks what comes out,
//! ending with a check that nothing unexpected is left.

use dask_serverless_core::{
    AbandonReason, BatchSpec, ChildSpec, Executor, ExecutorAction, ExecutorEvent, FailureCause,
    LEASE_TIMEOUT, Report, STOP_CHECK_INTERVAL, TaskError, TaskRecord,
};
use dask_serverless_graph::TaskId;
use dask_serverless_plan::BatchId;

fn spec(batch: u32, tasks: &[u32], inputs: &[u32], children: &[(u32, u32)]) -> BatchSpec {
    BatchSpec {
        batch: BatchId(batch),
        tasks: tasks.iter().map(|&t| TaskId(t)).collect(),
        inputs: inputs.iter().map(|&t| TaskId(t)).collect(),
        stored_outputs: tasks.last().map(|&t| TaskId(t)).into_iter().collect(),
        memory_outputs: Vec::new(),
        sinks: Vec::new(),
        children: children
            .iter()
            .map(|&(batch, fan_in_members)| ChildSpec {
                batch: BatchId(batch),
                fan_in_members,
            })
            .collect(),
        preferred_child: None,
        release_after: vec![Vec::new(); tasks.len()],
    }
}

fn record(task: u32) -> TaskRecord {
    TaskRecord {
        task: TaskId(task),
        start_us: 1,
        duration_us: 2,
        stored_bytes: 3,
    }
}

/// Every (other) task of the running batch finished, without warnings.
fn finished(tasks: &[u32]) -> ExecutorEvent {
    ExecutorEvent::TasksFinished {
        records: tasks.iter().map(|&task| record(task)).collect(),
        warnings: vec![],
    }
}

fn executor(batch: u32) -> Executor {
    Executor::new("run-1".into(), "request-1".into(), true, BatchId(batch))
}

/// Starts the invocation and wins its claim: the executor then loads its first batch.
fn claim(executor: &mut Executor) -> Vec<ExecutorAction> {
    let actions = executor.handle(ExecutorEvent::Start, 0);
    let [ExecutorAction::Claim { key }] = actions.as_slice() else {
        panic!("unexpected actions {actions:?}");
    };
    assert!(key.starts_with("run-1/claims/"), "{key}");
    executor.handle(ExecutorEvent::Claimed { won: true }, 0)
}

/// Feeds the end of the running batch's tasks: the batch's done mark comes first (checked
/// here, and answered as written), then what the tests look at.
fn finish_tasks(executor: &mut Executor, tasks: &[u32], now: u64) -> Vec<ExecutorAction> {
    let batch = executor.spec().map(|spec| spec.batch);
    let actions = executor.handle(finished(tasks), now);
    match (batch, actions.as_slice()) {
        (Some(batch), [ExecutorAction::MarkDone { key, content }])
            if *key == format!("run-1/done/{}", batch.0) && content.starts_with("attempt ") =>
        {
            executor.handle(ExecutorEvent::MarkedDone { existing: None }, now)
        }
        _ => actions,
    }
}

fn reports(actions: &[ExecutorAction]) -> Vec<&Report> {
    actions
        .iter()
        .filter_map(|action| match action {
            ExecutorAction::Report(report) => Some(report),
            _ => None,
        })
        .collect()
}

#[test]
fn a_lone_batch_loads_runs_reports_and_finishes() {
    let mut executor = executor(0);
    assert_eq!(
        claim(&mut executor),
        vec![ExecutorAction::LoadBatch { batch: BatchId(0) }]
    );
    let actions = executor.handle(
        ExecutorEvent::BatchLoaded {
            spec: spec(0, &[0, 1], &[], &[]),
        },
        1,
    );
    assert_eq!(actions, vec![ExecutorAction::RunTasks]);
    let actions = finish_tasks(&mut executor, &[0, 1], 2);
    let [
        ExecutorAction::Report(Report::BatchFinished(report)),
        ExecutorAction::Retain { tasks },
        ExecutorAction::Finish,
    ] = actions.as_slice()
    else {
        panic!("unexpected actions {actions:?}");
    };
    assert_eq!(report.batch, BatchId(0));
    assert_eq!(report.tasks.len(), 2);
    assert!(report.cold);
    assert_eq!(report.became, None);
    assert!(report.invoked.is_empty());
    assert!(tasks.is_empty());
    assert!(executor.is_finished());
    assert!(executor.handle(ExecutorEvent::Start, 3).is_empty());
}

#[test]
fn inputs_not_in_memory_are_loaded() {
    let mut executor = executor(2);
    claim(&mut executor);
    let actions = executor.handle(
        ExecutorEvent::BatchLoaded {
            spec: spec(2, &[5], &[3, 4], &[]),
        },
        1,
    );
    assert_eq!(
        actions,
        vec![ExecutorAction::LoadInputs {
            tasks: vec![TaskId(3), TaskId(4)]
        }]
    );
    assert_eq!(
        executor.handle(ExecutorEvent::InputsLoaded { bytes: 10 }, 2),
        vec![ExecutorAction::RunTasks]
    );
}

#[test]
fn becomes_the_released_child_and_reuses_values_in_memory() {
    let mut executor = executor(0);
    claim(&mut executor);
    executor.handle(
        ExecutorEvent::BatchLoaded {
            spec: spec(0, &[0, 1], &[], &[(1, 1), (2, 2)]),
        },
        1,
    );
    let actions = finish_tasks(&mut executor, &[0, 1], 2);
    assert_eq!(
        actions,
        vec![
            ExecutorAction::FanIn {
                child: BatchId(1),
                key: "run-1/fan-in/1".into(),
                member: "0".into(),
                expected: 1,
            },
            ExecutorAction::FanIn {
                child: BatchId(2),
                key: "run-1/fan-in/2".into(),
                member: "0".into(),
                expected: 2,
            },
        ]
    );

    assert!(
        executor
            .handle(
                ExecutorEvent::FanInAnswered {
                    child: BatchId(2),
                    released: false
                },
                3
            )
            .is_empty()
    );
    // A repeated answer changes nothing.
    assert!(
        executor
            .handle(
                ExecutorEvent::FanInAnswered {
                    child: BatchId(2),
                    released: true
                },
                3
            )
            .is_empty()
    );
    let actions = executor.handle(
        ExecutorEvent::FanInAnswered {
            child: BatchId(1),
            released: true,
        },
        4,
    );
    let [
        ExecutorAction::Report(Report::BatchFinished(report)),
        ExecutorAction::Retain { tasks },
        ExecutorAction::LoadBatch { batch },
    ] = actions.as_slice()
    else {
        panic!("unexpected actions {actions:?}");
    };
    assert_eq!(report.became, Some(BatchId(1)));
    assert!(report.invoked.is_empty());
    assert_eq!(tasks, &vec![TaskId(1)]);
    assert_eq!(*batch, BatchId(1));

    // The child's input is held: no load.
    let actions = executor.handle(
        ExecutorEvent::BatchLoaded {
            spec: spec(1, &[7], &[1], &[]),
        },
        5,
    );
    assert_eq!(actions, vec![ExecutorAction::RunTasks]);
    let actions = finish_tasks(&mut executor, &[7], 6);
    let [
        ExecutorAction::Report(Report::BatchFinished(report)),
        ExecutorAction::Retain { tasks },
        ExecutorAction::Finish,
    ] = actions.as_slice()
    else {
        panic!("unexpected actions {actions:?}");
    };
    assert!(
        !report.cold,
        "only the first batch of an invocation is cold"
    );
    assert_eq!(report.tasks, vec![record(7)]);
    assert!(tasks.is_empty());
}

#[test]
fn invokes_every_released_child_but_the_preferred_one() {
    let mut executor = executor(0);
    claim(&mut executor);
    let mut with_preference = spec(0, &[0], &[], &[(1, 1), (2, 1), (3, 1)]);
    with_preference.preferred_child = Some(BatchId(2));
    executor.handle(
        ExecutorEvent::BatchLoaded {
            spec: with_preference,
        },
        1,
    );
    finish_tasks(&mut executor, &[0], 2);
    let mut actions = Vec::new();
    for child in [3, 1, 2] {
        actions = executor.handle(
            ExecutorEvent::FanInAnswered {
                child: BatchId(child),
                released: true,
            },
            3,
        );
    }
    let [
        ExecutorAction::Invoke { batch: first },
        ExecutorAction::Invoke { batch: second },
        ExecutorAction::Report(Report::BatchFinished(report)),
        ExecutorAction::Retain { tasks },
        ExecutorAction::LoadBatch { batch: next },
    ] = actions.as_slice()
    else {
        panic!("unexpected actions {actions:?}");
    };
    assert_eq!((*first, *second), (BatchId(1), BatchId(3)));
    assert_eq!(report.became, Some(BatchId(2)));
    assert_eq!(report.invoked, vec![BatchId(1), BatchId(3)]);
    assert_eq!(tasks, &vec![TaskId(0)]);
    assert_eq!(*next, BatchId(2));
}

#[test]
fn a_task_error_is_reported_once_and_ends_the_invocation() {
    let mut executor = executor(4);
    claim(&mut executor);
    executor.handle(
        ExecutorEvent::BatchLoaded {
            spec: spec(4, &[9], &[], &[(5, 1)]),
        },
        1,
    );
    let error = TaskError {
        task: TaskId(9),
        type_name: "builtins.ValueError".into(),
        message: "bad".into(),
        traceback: String::new(),
        pickled: None,
    };
    let actions = executor.handle(
        ExecutorEvent::TaskFailed {
            error: error.clone(),
        },
        2,
    );
    let [
        ExecutorAction::Report(Report::BatchFailed(failure)),
        ExecutorAction::Retain { .. },
        ExecutorAction::Finish,
    ] = actions.as_slice()
    else {
        panic!("unexpected actions {actions:?}");
    };
    assert_eq!(failure.batch, BatchId(4));
    assert_eq!(failure.cause, FailureCause::Task(error));
    assert!(finish_tasks(&mut executor, &[], 3).is_empty());
}

#[test]
fn a_run_that_is_gone_ends_the_invocation_with_a_failure_report() {
    let mut executor = executor(1);
    claim(&mut executor);
    let actions = executor.handle(ExecutorEvent::RunGone, 1);
    let Report::BatchFailed(failure) = reports(&actions)[0] else {
        panic!("unexpected actions {actions:?}");
    };
    assert_eq!(failure.batch, BatchId(1));
    assert!(matches!(failure.cause, FailureCause::Infrastructure { .. }));
    assert_eq!(actions.last(), Some(&ExecutorAction::Finish));
}

#[test]
fn a_delivery_after_the_run_ended_deletes_its_claim() {
    // A late duplicate wins its claim because the client deleted the run's objects, the
    // original's claim with them; its first batch is gone. The claim must not outlive the run.
    let mut executor = executor(1);
    claim(&mut executor);
    let actions = executor.handle(ExecutorEvent::RunGone, 1);
    assert_eq!(
        actions.first(),
        Some(&ExecutorAction::DeleteClaim {
            key: dask_serverless_core::keys::claim_key("run-1", BatchId(1), 1)
        }),
        "{actions:?}"
    );
    assert_eq!(actions.last(), Some(&ExecutorAction::Finish));
}

#[test]
fn events_out_of_order_fail_the_batch_with_a_message() {
    let mut executor = executor(1);
    claim(&mut executor);
    let actions = finish_tasks(&mut executor, &[], 1);
    let Report::BatchFailed(failure) = reports(&actions)[0] else {
        panic!()
    };
    let FailureCause::Infrastructure { message } = &failure.cause else {
        panic!("{failure:?}")
    };
    assert!(message.contains("protocol"), "{message}");
    assert_eq!(actions.last(), Some(&ExecutorAction::Finish));
}

#[test]
fn a_spec_of_another_batch_is_refused() {
    let mut executor = executor(1);
    claim(&mut executor);
    let actions = executor.handle(
        ExecutorEvent::BatchLoaded {
            spec: spec(2, &[0], &[], &[]),
        },
        1,
    );
    let Report::BatchFailed(failure) = reports(&actions)[0] else {
        panic!()
    };
    let FailureCause::Infrastructure { message } = &failure.cause else {
        panic!("{failure:?}")
    };
    assert!(message.contains("batch 2"), "{message}");
}

#[test]
fn progress_while_running_is_reported_and_the_final_report_carries_the_rest() {
    let mut executor = executor(0);
    claim(&mut executor);
    executor.handle(
        ExecutorEvent::BatchLoaded {
            spec: spec(0, &[0, 1, 2], &[], &[]),
        },
        1,
    );
    let actions = executor.handle(
        ExecutorEvent::TasksProgressed {
            records: vec![record(0), record(1)],
            warnings: vec![],
        },
        2,
    );
    let [ExecutorAction::Report(Report::Progress(progress))] = actions.as_slice() else {
        panic!("unexpected actions {actions:?}");
    };
    assert_eq!(progress.batch, BatchId(0));
    assert_eq!(progress.invocation, "request-1");
    assert_eq!(progress.tasks, vec![record(0), record(1)]);
    // An empty batch sends nothing.
    assert!(
        executor
            .handle(
                ExecutorEvent::TasksProgressed {
                    records: vec![],
                    warnings: vec![],
                },
                3,
            )
            .is_empty()
    );
    let actions = finish_tasks(&mut executor, &[2], 4);
    let Report::BatchFinished(report) = reports(&actions)[0] else {
        panic!("unexpected actions {actions:?}");
    };
    assert_eq!(report.tasks, vec![record(2)]);
    assert_eq!(actions.last(), Some(&ExecutorAction::Finish));
}

#[test]
fn an_unpicklable_result_ends_the_invocation_with_its_own_cause() {
    let mut executor = executor(0);
    claim(&mut executor);
    executor.handle(
        ExecutorEvent::BatchLoaded {
            spec: spec(0, &[0], &[], &[]),
        },
        1,
    );
    let actions = executor.handle(
        ExecutorEvent::ResultUnpicklable {
            task: TaskId(0),
            message: "cannot pickle".into(),
        },
        2,
    );
    let Report::BatchFailed(failure) = reports(&actions)[0] else {
        panic!("unexpected actions {actions:?}");
    };
    assert_eq!(
        failure.cause,
        FailureCause::Unpicklable {
            task: TaskId(0),
            message: "cannot pickle".into()
        }
    );
    assert_eq!(actions.last(), Some(&ExecutorAction::Finish));
}

#[test]
fn a_missing_input_of_a_run_that_is_gone_ends_quietly_and_of_a_live_run_fails() {
    for (exists, expected) in [
        (false, "the run ended before this batch started"),
        (true, "could not read an input value: no object"),
    ] {
        let mut executor = executor(2);
        claim(&mut executor);
        let actions = executor.handle(
            ExecutorEvent::BatchLoaded {
                spec: spec(2, &[5], &[3], &[]),
            },
            1,
        );
        assert_eq!(
            actions,
            vec![ExecutorAction::LoadInputs {
                tasks: vec![TaskId(3)]
            }]
        );
        let actions = executor.handle(
            ExecutorEvent::InputsMissing {
                message: "no object run-1/values/3".into(),
            },
            2,
        );
        assert_eq!(
            actions,
            vec![ExecutorAction::CheckBatchExists { batch: BatchId(2) }]
        );
        let actions = executor.handle(ExecutorEvent::BatchExists { exists }, 3);
        let [
            ExecutorAction::Report(Report::BatchFailed(failure)),
            ExecutorAction::Retain { .. },
            ExecutorAction::Finish,
        ] = actions.as_slice()
        else {
            panic!("unexpected actions {actions:?}");
        };
        let FailureCause::Infrastructure { message } = &failure.cause else {
            panic!("{failure:?}")
        };
        assert!(message.starts_with(expected), "{message}");
    }
}

#[test]
fn a_child_whose_invocation_failed_is_reported_in_its_name_even_after_the_end() {
    let mut executor = executor(0);
    claim(&mut executor);
    executor.handle(
        ExecutorEvent::BatchLoaded {
            spec: spec(0, &[0], &[], &[(1, 1), (2, 1)]),
        },
        1,
    );
    finish_tasks(&mut executor, &[0], 2);
    executor.handle(
        ExecutorEvent::FanInAnswered {
            child: BatchId(1),
            released: true,
        },
        3,
    );
    let actions = executor.handle(
        ExecutorEvent::FanInAnswered {
            child: BatchId(2),
            released: true,
        },
        3,
    );
    // Becomes 1, invokes 2; suppose 1 ran and the invocation finished before 2's answer.
    assert_eq!(actions[0], ExecutorAction::Invoke { batch: BatchId(2) });
    let actions = executor.handle(
        ExecutorEvent::InvokeFailed {
            batch: BatchId(2),
            message: "429 Too Many Requests".into(),
        },
        4,
    );
    let [ExecutorAction::Report(Report::BatchFailed(failure))] = actions.as_slice() else {
        panic!("unexpected actions {actions:?}");
    };
    assert_eq!(failure.batch, BatchId(2));
    let FailureCause::Infrastructure { message } = &failure.cause else {
        panic!("{failure:?}")
    };
    assert_eq!(
        message,
        "could not invoke a function for batch 2: 429 Too Many Requests"
    );
}

#[test]
fn a_second_delivery_of_an_event_loses_the_claim_and_ends_without_a_report() {
    let mut executor = executor(4);
    assert_eq!(
        executor.handle(ExecutorEvent::Start, 0),
        vec![ExecutorAction::Claim {
            key: "run-1/claims/4/1".into()
        }]
    );
    assert_eq!(
        executor.handle(ExecutorEvent::Claimed { won: false }, 1),
        vec![ExecutorAction::Finish]
    );
    assert!(executor.is_finished());
    // A recovery claims its own attempt.
    let mut recovery = executor_at(4, 7, &[]);
    assert_eq!(
        recovery.handle(ExecutorEvent::Start, 0),
        vec![ExecutorAction::Claim {
            key: "run-1/claims/4/7".into()
        }]
    );
}

fn executor_at(batch: u32, attempt: u32, recovering: &[u32]) -> Executor {
    executor(batch).with_attempt(attempt, recovering.iter().map(|&b| BatchId(b)).collect())
}

/// A batch of one task whose value its preferred child, handed over, reads in memory.
fn handing_over(batch: u32, child: u32) -> BatchSpec {
    BatchSpec {
        stored_outputs: vec![],
        memory_outputs: vec![TaskId(batch)],
        preferred_child: Some(BatchId(child)),
        ..spec(batch, &[batch], &[], &[(child, 1)])
    }
}

#[test]
fn the_done_mark_is_written_before_any_fan_in() {
    let mut executor = executor(0);
    claim(&mut executor);
    executor.handle(
        ExecutorEvent::BatchLoaded {
            spec: spec(0, &[0], &[], &[(1, 2)]),
        },
        1,
    );
    let actions = executor.handle(finished(&[0]), 2);
    assert_eq!(
        actions,
        vec![ExecutorAction::MarkDone {
            key: "run-1/done/0".into(),
            content: "attempt 1 request-1".into(),
        }]
    );
    assert_eq!(
        executor.handle(ExecutorEvent::MarkedDone { existing: None }, 3),
        vec![ExecutorAction::FanIn {
            child: BatchId(1),
            key: "run-1/fan-in/1".into(),
            member: "0".into(),
            expected: 2,
        }]
    );
}

/// An executor of batch 0 (one task, one child) at `attempt`, its tasks run, asking to mark
/// the batch done.
fn marking_done(attempt: u32, backup: bool) -> Executor {
    let mut executor = executor_at(0, attempt, &[]).as_backup(backup);
    claim(&mut executor);
    executor.handle(
        ExecutorEvent::BatchLoaded {
            spec: spec(0, &[0], &[], &[(1, 2)]),
        },
        1,
    );
    let actions = executor.handle(finished(&[0]), 2);
    assert!(
        matches!(actions.as_slice(), [ExecutorAction::MarkDone { .. }]),
        "{actions:?}"
    );
    executor
}

fn mark(attempt: u32) -> Option<Vec<u8>> {
    Some(format!("attempt {attempt} request-9").into_bytes())
}

#[test]
fn the_first_of_a_straggler_and_its_backup_to_mark_the_batch_done_wins() {
    // The backup (attempt 5) finds the original's mark: it yields, without a fan-in.
    let mut backup = marking_done(5, true);
    let actions = backup.handle(ExecutorEvent::MarkedDone { existing: mark(1) }, 3);
    let Report::BatchAbandoned(report) = reports(&actions)[0] else {
        panic!("unexpected actions {actions:?}");
    };
    assert_eq!(report.reason, AbandonReason::FinishedElsewhere);
    assert!(
        !actions
            .iter()
            .any(|action| matches!(action, ExecutorAction::FanIn { .. })),
        "{actions:?}"
    );
    assert_eq!(actions.last(), Some(&ExecutorAction::Finish));
    assert!(backup.is_finished());
    // The original finds the backup's mark: it yields too.
    let mut original = marking_done(1, false);
    let actions = original.handle(ExecutorEvent::MarkedDone { existing: mark(5) }, 3);
    assert!(
        matches!(reports(&actions)[0], Report::BatchAbandoned(_)),
        "{actions:?}"
    );
    // A recovery goes on over the mark of the attempt it redoes (which may have died before
    // its fan-ins), and yields to a later one.
    let mut recovery = marking_done(5, false);
    let actions = recovery.handle(ExecutorEvent::MarkedDone { existing: mark(1) }, 3);
    assert!(
        matches!(actions.as_slice(), [ExecutorAction::FanIn { .. }]),
        "{actions:?}"
    );
    let mut recovery = marking_done(5, false);
    let actions = recovery.handle(ExecutorEvent::MarkedDone { existing: mark(6) }, 3);
    assert!(
        matches!(reports(&actions)[0], Report::BatchAbandoned(_)),
        "{actions:?}"
    );
    // The winner goes on to its fan-ins.
    let mut winner = marking_done(5, true);
    let actions = winner.handle(ExecutorEvent::MarkedDone { existing: None }, 3);
    assert!(
        matches!(actions.as_slice(), [ExecutorAction::FanIn { .. }]),
        "{actions:?}"
    );
}

#[test]
fn a_backup_stops_at_a_task_boundary_once_the_original_marked_the_batch_done() {
    let mut backup = executor_at(0, 4, &[]).as_backup(true);
    claim(&mut backup);
    backup.handle(
        ExecutorEvent::BatchLoaded {
            spec: spec(0, &[0, 1], &[], &[]),
        },
        1,
    );
    let second = STOP_CHECK_INTERVAL;
    assert_eq!(
        backup.handle(ExecutorEvent::Boundary, second + 1),
        vec![check_stop(true)]
    );
    let checked = ExecutorEvent::StopChecked {
        done_mark: mark(1),
        lease: Some(b"1".to_vec()),
    };
    let actions = backup.handle(checked, second + 1);
    assert_eq!(actions.first(), Some(&ExecutorAction::StopTasks));
    let Report::BatchAbandoned(report) = reports(&actions)[0] else {
        panic!("unexpected actions {actions:?}");
    };
    assert_eq!(report.reason, AbandonReason::FinishedElsewhere);
}

#[test]
fn a_recovery_becomes_its_chain_whatever_the_fan_ins_answer() {
    // Batch 0 hands over to 1, which hands over to 2: recover 2 from 0.
    let mut recovery = executor_at(0, 3, &[1, 2]);
    claim(&mut recovery);
    recovery.handle(
        ExecutorEvent::BatchLoaded {
            spec: handing_over(0, 1),
        },
        1,
    );
    finish_tasks(&mut recovery, &[0], 2);
    // The lost attempt added batch 0 to the set already.
    let actions = recovery.handle(
        ExecutorEvent::FanInAnswered {
            child: BatchId(1),
            released: false,
        },
        3,
    );
    let Report::BatchFinished(report) = reports(&actions)[0] else {
        panic!("unexpected actions {actions:?}");
    };
    assert_eq!(report.became, Some(BatchId(1)));
    assert_eq!(
        actions.last(),
        Some(&ExecutorAction::LoadBatch { batch: BatchId(1) })
    );
    recovery.handle(
        ExecutorEvent::BatchLoaded {
            spec: handing_over(1, 2),
        },
        4,
    );
    finish_tasks(&mut recovery, &[1], 5);
    let actions = recovery.handle(
        ExecutorEvent::FanInAnswered {
            child: BatchId(2),
            released: false,
        },
        6,
    );
    assert_eq!(
        actions.last(),
        Some(&ExecutorAction::LoadBatch { batch: BatchId(2) })
    );
    // The recovered batch's own handed-over child is become too, the set being this batch's.
    recovery.handle(
        ExecutorEvent::BatchLoaded {
            spec: handing_over(2, 3),
        },
        7,
    );
    finish_tasks(&mut recovery, &[2], 8);
    let actions = recovery.handle(
        ExecutorEvent::FanInAnswered {
            child: BatchId(3),
            released: false,
        },
        9,
    );
    assert_eq!(
        actions.last(),
        Some(&ExecutorAction::LoadBatch { batch: BatchId(3) })
    );
    // A first attempt does not: an answer "already added" means someone else has the child.
    let mut first = executor(2);
    claim(&mut first);
    first.handle(
        ExecutorEvent::BatchLoaded {
            spec: handing_over(2, 3),
        },
        1,
    );
    finish_tasks(&mut first, &[2], 2);
    let actions = first.handle(
        ExecutorEvent::FanInAnswered {
            child: BatchId(3),
            released: false,
        },
        3,
    );
    assert_eq!(actions.last(), Some(&ExecutorAction::Finish));
}

/// An executor running batch 0 (one task) at the given attempt and chain.
fn running(attempt: u32, recovering: &[u32]) -> Executor {
    let mut executor = executor_at(0, attempt, recovering);
    claim(&mut executor);
    let spec = match recovering.first() {
        Some(&next) => handing_over(0, next),
        None => spec(0, &[0], &[], &[]),
    };
    assert_eq!(
        executor.handle(ExecutorEvent::BatchLoaded { spec }, 0),
        vec![ExecutorAction::RunTasks]
    );
    executor
}

fn check_stop(done: bool) -> ExecutorAction {
    ExecutorAction::CheckStop {
        done_key: done.then(|| "run-1/done/0".to_owned()),
        lease_key: "run-1/lease".into(),
    }
}

/// The answer of a stop check; `done_elsewhere`: the done mark of the first attempt exists.
fn stop_checked(done_elsewhere: bool, lease: Option<&str>) -> ExecutorEvent {
    ExecutorEvent::StopChecked {
        done_mark: done_elsewhere.then(|| b"attempt 1 request-2".to_vec()),
        lease: lease.map(|lease| lease.as_bytes().to_vec()),
    }
}

#[test]
fn task_boundaries_look_at_the_store_at_most_once_per_interval() {
    // The batch started at 0: a batch shorter than the interval never looks.
    let mut executor = running(1, &[]);
    let second = STOP_CHECK_INTERVAL;
    assert_eq!(
        executor.handle(ExecutorEvent::Boundary, second - 1),
        vec![ExecutorAction::Continue]
    );
    assert_eq!(
        executor.handle(ExecutorEvent::Boundary, second),
        vec![check_stop(true)]
    );
    assert_eq!(
        executor.handle(stop_checked(false, Some("1")), second + 1),
        vec![ExecutorAction::Continue]
    );
    assert_eq!(
        executor.handle(ExecutorEvent::Boundary, 2 * second - 1),
        vec![ExecutorAction::Continue]
    );
    assert_eq!(
        executor.handle(ExecutorEvent::Boundary, 2 * second),
        vec![check_stop(true)]
    );
}

#[test]
fn a_batch_someone_else_finished_is_abandoned_unless_it_is_rebuilt_for_its_chain() {
    let second = STOP_CHECK_INTERVAL;
    let mut executor = running(1, &[]);
    executor.handle(ExecutorEvent::Boundary, second);
    let actions = executor.handle(stop_checked(true, Some("1")), second);
    assert_eq!(actions.first(), Some(&ExecutorAction::StopTasks));
    let Report::BatchAbandoned(report) = reports(&actions)[0] else {
        panic!("unexpected actions {actions:?}");
    };
    assert_eq!(
        (report.batch, report.reason),
        (BatchId(0), AbandonReason::FinishedElsewhere)
    );
    assert_eq!(actions.last(), Some(&ExecutorAction::Finish));
    assert!(executor.is_finished());
    // The host asking again after the end is told to stop.
    assert_eq!(
        executor.handle(ExecutorEvent::Boundary, second + 2),
        vec![ExecutorAction::StopTasks]
    );
    // A recovery re-running a finished batch for the values it hands over does not look.
    let mut rebuilding = running(2, &[1]);
    assert_eq!(
        rebuilding.handle(ExecutorEvent::Boundary, second),
        vec![check_stop(false)]
    );
    assert_eq!(
        rebuilding.handle(stop_checked(true, Some("1")), second),
        vec![ExecutorAction::Continue]
    );
}

#[test]
fn a_recovery_runs_on_over_the_done_mark_of_the_attempt_it_redoes() {
    // Attempt 1 stored its outputs and marked the batch done, then died before its fan-ins:
    // it will never report. Attempt 2, the recovery, must not take its mark for a winner.
    let mut recovery = running(2, &[]);
    recovery.handle(ExecutorEvent::Boundary, 0);
    assert_eq!(
        recovery.handle(stop_checked(true, Some("1")), 1),
        vec![ExecutorAction::Continue]
    );
    // A mark of its own attempt or a later one (a later recovery, a backup) is a winner's.
    for mark in ["attempt 2 request-3", "attempt 3 request-4", "unreadable"] {
        let mut recovery = running(2, &[]);
        recovery.handle(ExecutorEvent::Boundary, 0);
        let checked = ExecutorEvent::StopChecked {
            done_mark: Some(mark.as_bytes().to_vec()),
            lease: Some(b"1".to_vec()),
        };
        let actions = recovery.handle(checked, 1);
        assert_eq!(actions.first(), Some(&ExecutorAction::StopTasks), "{mark}");
    }
}

#[test]
fn a_lease_that_stops_changing_or_vanishes_means_the_client_is_gone() {
    let second = STOP_CHECK_INTERVAL;
    let mut executor = running(1, &[]);
    let mut check = |now: u64, lease: Option<&str>| {
        let actions = executor.handle(ExecutorEvent::Boundary, now);
        assert_eq!(actions, vec![check_stop(true)], "at {now}");
        executor.handle(stop_checked(false, lease), now)
    };
    assert_eq!(check(second, Some("1")), vec![ExecutorAction::Continue]);
    assert_eq!(check(2 * second, Some("2")), vec![ExecutorAction::Continue]);
    // Unchanged since `2 * second`: gone only past the timeout.
    assert_eq!(
        check(2 * second + LEASE_TIMEOUT, Some("2")),
        vec![ExecutorAction::Continue]
    );
    let actions = check(3 * second + LEASE_TIMEOUT, Some("2"));
    let Report::BatchAbandoned(report) = reports(&actions)[0] else {
        panic!("unexpected actions {actions:?}");
    };
    assert_eq!(report.reason, AbandonReason::ClientGone);

    let mut ended = running(1, &[]);
    ended.handle(ExecutorEvent::Boundary, second);
    let actions = ended.handle(stop_checked(false, None), second);
    let Report::BatchAbandoned(report) = reports(&actions)[0] else {
        panic!("unexpected actions {actions:?}");
    };
    assert_eq!(report.reason, AbandonReason::ClientGone);
}
