//! The driver through its actions: progress is passed on task by task and exactly once, and a
//! failure is blamed on the batch that was running.

use dask_serverless_core::{
    BatchReport, Driver, DriverAction, DriverEvent, FailureCause, FailureReport,
    FunctionFailureKind, ProgressReport, Report, RunFailure, TaskRecord, TaskWarning,
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

#[test]
fn a_dead_function_is_blamed_on_the_batch_it_had_become() {
    let plan = chain_plan(3);
    let mut driver = started(&plan);
    driver.handle(finished(0, "request-1", &[0], Some(1)), 1);
    driver.handle(progress(1, "request-1", &[1]), 2);
    driver.handle(finished(1, "request-1", &[], Some(2)), 3);
    assert_eq!(driver.running_batches(), 1);
    // The platform only knows the event the function was invoked with: batch 0.
    let actions = driver.handle(
        DriverEvent::PlatformFailure {
            invocation: Some("request-1".into()),
            batch: Some(BatchId(0)),
            error_type: "Runtime.ExitError".into(),
            message: "Runtime exited with error: exit status 3".into(),
        },
        4,
    );
    assert_eq!(
        actions,
        vec![DriverAction::Failed(RunFailure::Function {
            kind: FunctionFailureKind::Crashed,
            batch: Some(BatchId(2)),
            tasks_finished: 2,
            error_type: "Runtime.ExitError".into(),
            message: "Runtime exited with error: exit status 3".into(),
        })]
    );
    // Nothing of the run runs any more: the client need not wait.
    assert!(driver.is_drained());
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
