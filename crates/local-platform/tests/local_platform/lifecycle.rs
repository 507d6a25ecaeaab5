//! Function management over HTTP, deletion and shutdown: nothing is left running.

use std::time::{Duration, Instant};

use bytes::Bytes;
use dask_serverless_local_platform::FunctionConfig;
use dask_serverless_platform::{Invoker, LocalInvoker, PlatformError};
use serde_json::{Value, json};

use crate::support::{
    command_line, eventually, handlers_directory, handlers_function, invoke_raw,
    live_members_of_group, parent_and_group, process_is_gone, require_python, start_platform,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_are_managed_over_http() {
    let python = require_python!();
    let platform = start_platform().await;
    let client = reqwest::Client::new();
    let functions = format!("{}/2015-03-31/functions", platform.endpoint());
    let directory = handlers_directory().display().to_string();
    let request = json!({
        "FunctionName": "managed",
        "Handler": "platform_test_handlers.handle",
        "MemorySize": 256,
        "Timeout": 5,
        "Environment": {"Variables": {"PYTHONPATH": directory}},
        "Command": [python, "-m", "awslambdaric", "platform_test_handlers.handle"],
        "ReservedConcurrentExecutions": 1,
        "DestinationConfig": {"OnFailure": {"Destination": "arn:aws:sqs:local:000000000000:managed-failures"}},
        "WorkingDirectory": directory,
    });
    let created = client.post(&functions).json(&request).send().await.unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let created: Value = created.json().await.unwrap();
    assert_eq!(
        created["FunctionArn"],
        "arn:aws:lambda:local:000000000000:function:managed"
    );
    assert_eq!(created["MemorySize"], 256);
    let duplicate = client.post(&functions).json(&request).send().await.unwrap();
    assert_eq!(duplicate.status().as_u16(), 409);
    assert_eq!(
        duplicate.headers()["x-amzn-ErrorType"],
        "ResourceConflictException"
    );
    let invalid = client
        .post(&functions)
        .json(&json!({"FunctionName": "tiny", "Handler": "a.b", "MemorySize": 64}))
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status().as_u16(), 400);

    let configuration = platform.functions();
    assert_eq!(configuration.len(), 1);
    assert_eq!(configuration[0].concurrency, 1);
    assert_eq!(configuration[0].timeout, Duration::from_secs(5));
    assert_eq!(
        configuration[0].on_failure_queue.as_deref(),
        Some("managed-failures")
    );
    let fetched: Value = client
        .get(format!("{functions}/managed"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        fetched["Configuration"]["Handler"],
        "platform_test_handlers.handle"
    );
    assert_eq!(fetched["Concurrency"]["ReservedConcurrentExecutions"], 1);
    let listed: Value = client
        .get(&functions)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["Functions"][0]["FunctionName"], "managed");

    let answer = invoke_raw(
        &platform,
        "managed",
        "RequestResponse",
        r#"{"action":"echo"}"#,
    )
    .await;
    assert_eq!(answer.status, 200);
    let statistics: Value = client
        .get(format!("{}/platform/statistics", platform.endpoint()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(statistics["successes"], 1);
    assert_eq!(statistics["workers"], 1);
    let worker = platform.worker_process_ids()[0];
    let keeper = platform.worker_process_groups()[0];

    let deleted = client
        .delete(format!("{functions}/managed"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
    assert!(
        process_is_gone(worker),
        "deletion waits for the worker to be reaped"
    );
    assert!(process_is_gone(keeper), "the keeper dies with its worker");
    let missing = invoke_raw(&platform, "managed", "RequestResponse", "{}").await;
    assert_eq!(missing.status, 404);
    let deleted = client
        .delete(format!("{functions}/managed"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 404);
    platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_leaves_no_worker_process() {
    let python = require_python!();
    let platform = start_platform().await;
    let config = FunctionConfig {
        concurrency: 3,
        ..handlers_function(&python, "busy")
    };
    platform.create_function(config).await.unwrap();
    let invoker = LocalInvoker::new(platform.endpoint());

    // A worker that started a process of its own: it is in the worker's group and dies with it.
    let answer = invoker
        .invoke_request_response("busy", Bytes::from_static(br#"{"action":"spawn_child"}"#))
        .await
        .unwrap();
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    let grandchild = answer["child_pid"].as_u64().unwrap() as u32;
    assert!(!process_is_gone(grandchild));

    // Three workers busy when the local platform shuts down: their callers are answered.
    let callers: Vec<_> = (0..3)
        .map(|_| {
            let invoker = invoker.clone();
            tokio::spawn(async move {
                invoker
                    .invoke_request_response(
                        "busy",
                        Bytes::from_static(br#"{"action":"sleep","seconds":9}"#),
                    )
                    .await
            })
        })
        .collect();
    eventually("three busy workers", Duration::from_secs(8), || {
        platform.statistics().busy_workers == 3 && platform.worker_process_ids().len() == 3
    })
    .await;
    let workers = platform.worker_process_ids();
    let keepers = platform.worker_process_groups();
    assert_eq!(keepers.len(), 3);

    let started = Instant::now();
    platform.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "liveness: {:?}",
        started.elapsed()
    );
    for process_id in workers.iter().chain(&keepers).copied().chain([grandchild]) {
        assert!(
            process_is_gone(process_id),
            "process {process_id} survived the shutdown"
        );
    }
    for caller in callers {
        let outcome = tokio::time::timeout(Duration::from_secs(10), caller)
            .await
            .expect("abandoned callers are answered")
            .unwrap();
        assert!(
            matches!(outcome, Err(PlatformError::Unavailable { .. })),
            "{outcome:?}"
        );
    }
    // And the platform is gone: a new call fails fast.
    let started = Instant::now();
    let error = invoker
        .invoke_event("busy", Bytes::from_static(b"{}"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, PlatformError::Unavailable { .. }),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "liveness");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_handle_kills_the_workers() {
    let python = require_python!();
    let platform = start_platform().await;
    platform
        .create_function(handlers_function(&python, "dropped"))
        .await
        .unwrap();
    invoke_raw(
        &platform,
        "dropped",
        "RequestResponse",
        r#"{"action":"echo"}"#,
    )
    .await;
    let workers = platform.worker_process_ids();
    assert_eq!(workers.len(), 1);
    let keepers = platform.worker_process_groups();
    drop(platform);
    eventually("the worker killed on drop", Duration::from_secs(10), || {
        workers
            .iter()
            .chain(&keepers)
            .all(|&process_id| process_is_gone(process_id))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_runs_in_a_group_led_by_its_keeper() {
    let python = require_python!();
    let platform = start_platform().await;
    platform
        .create_function(handlers_function(&python, "kept"))
        .await
        .unwrap();
    let answer = invoke_raw(
        &platform,
        "kept",
        "RequestResponse",
        r#"{"action":"spawn_child"}"#,
    )
    .await;
    let answer = answer.json();
    let worker = answer["pid"].as_u64().unwrap() as u32;
    let grandchild = answer["child_pid"].as_u64().unwrap() as u32;
    assert_eq!(platform.worker_process_ids(), [worker]);
    let [keeper] = platform.worker_process_groups()[..] else {
        panic!("one worker, one group");
    };
    let platform_process = std::process::id();
    // The keeper leads the group, as the platform's child; the worker and what it started
    // are in the group.
    assert_eq!(parent_and_group(keeper), Some((platform_process, keeper)));
    assert_eq!(parent_and_group(worker), Some((platform_process, keeper)));
    assert_eq!(parent_and_group(grandchild), Some((worker, keeper)));
    assert_eq!(command_line(keeper), "/bin/sh -c read _; kill -KILL 0");
    assert_eq!(live_members_of_group(keeper), {
        let mut members = vec![keeper, worker, grandchild];
        members.sort_unstable();
        members
    });

    // A worker that exits on its own takes its group, keeper included, along.
    let failed = invoke_raw(&platform, "kept", "RequestResponse", r#"{"action":"exit"}"#).await;
    assert_eq!(failed.header("X-Amz-Function-Error"), Some("Unhandled"));
    eventually(
        "the group gone with its worker",
        Duration::from_secs(5),
        || live_members_of_group(keeper).is_empty(),
    )
    .await;
    assert!(platform.worker_process_groups().is_empty());
    platform.shutdown().await;
}
