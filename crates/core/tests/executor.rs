//! The executor through its actions: each test feeds events and checks what comes out,
//! ending with a check that nothing unexpected is left.

use dask_serverless_core::{
    BatchSpec, ChildSpec, Executor, ExecutorAction, ExecutorEvent, FailureCause, Report, TaskError,
    TaskRecord,
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
        executor.handle(ExecutorEvent::Start, 0),
        vec![ExecutorAction::LoadBatch { batch: BatchId(0) }]
    );
    let actions = executor.handle(
        ExecutorEvent::BatchLoaded {
            spec: spec(0, &[0, 1], &[], &[]),
        },
        1,
    );
    assert_eq!(actions, vec![ExecutorAction::RunTasks]);
    let actions = executor.handle(finished(&[0, 1]), 2);
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
    executor.handle(ExecutorEvent::Start, 0);
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
    executor.handle(ExecutorEvent::Start, 0);
    executor.handle(
        ExecutorEvent::BatchLoaded {
            spec: spec(0, &[0, 1], &[], &[(1, 1), (2, 2)]),
        },
        1,
    );
    let actions = executor.handle(finished(&[0, 1]), 2);
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
    let actions = executor.handle(finished(&[7]), 6);
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
    executor.handle(ExecutorEvent::Start, 0);
    let mut with_preference = spec(0, &[0], &[], &[(1, 1), (2, 1), (3, 1)]);
    with_preference.preferred_child = Some(BatchId(2));
    executor.handle(
        ExecutorEvent::BatchLoaded {
            spec: with_preference,
        },
        1,
    );
    executor.handle(finished(&[0]), 2);
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
    executor.handle(ExecutorEvent::Start, 0);
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
    assert!(executor.handle(finished(&[]), 3).is_empty());
}

#[test]
fn a_run_that_is_gone_ends_the_invocation_with_a_failure_report() {
    let mut executor = executor(1);
    executor.handle(ExecutorEvent::Start, 0);
    let actions = executor.handle(ExecutorEvent::RunGone, 1);
    let Report::BatchFailed(failure) = reports(&actions)[0] else {
        panic!("unexpected actions {actions:?}");
    };
    assert_eq!(failure.batch, BatchId(1));
    assert!(matches!(failure.cause, FailureCause::Infrastructure { .. }));
    assert_eq!(actions.last(), Some(&ExecutorAction::Finish));
}

#[test]
fn events_out_of_order_fail_the_batch_with_a_message() {
    let mut executor = executor(1);
    executor.handle(ExecutorEvent::Start, 0);
    let actions = executor.handle(finished(&[]), 1);
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
    executor.handle(ExecutorEvent::Start, 0);
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
    executor.handle(ExecutorEvent::Start, 0);
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
    let actions = executor.handle(finished(&[2]), 4);
    let Report::BatchFinished(report) = reports(&actions)[0] else {
        panic!("unexpected actions {actions:?}");
    };
    assert_eq!(report.tasks, vec![record(2)]);
    assert_eq!(actions.last(), Some(&ExecutorAction::Finish));
}

#[test]
fn an_unpicklable_result_ends_the_invocation_with_its_own_cause() {
    let mut executor = executor(0);
    executor.handle(ExecutorEvent::Start, 0);
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
        executor.handle(ExecutorEvent::Start, 0);
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
    executor.handle(ExecutorEvent::Start, 0);
    executor.handle(
        ExecutorEvent::BatchLoaded {
            spec: spec(0, &[0], &[], &[(1, 1), (2, 1)]),
        },
        1,
    );
    executor.handle(finished(&[0]), 2);
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
