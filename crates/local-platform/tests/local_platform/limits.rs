//! Limits and failures: memory, timeout, crash, initialization, and failed events delivered to
//! the on-failure queue.

use std::time::{Duration, Instant};

use bytes::Bytes;
use dask_serverless_local_platform::FunctionConfig;
use dask_serverless_platform::{Invoker, LocalInvoker, LocalQueue, ResultChannel};
use serde_json::{Value, json};

use crate::support::{
    handlers_function, invoke_raw, process_is_gone, require_python, start_platform, test_function,
};

/// The `{"errorType","errorMessage"}` of a synchronous invocation that must fail.
async fn failed_invocation(
    platform: &dask_serverless_local_platform::LocalPlatformHandle,
    function: &str,
    event: Value,
) -> (String, String) {
    let answer = invoke_raw(platform, function, "RequestResponse", event.to_string()).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("X-Amz-Function-Error"),
        Some("Unhandled"),
        "{:?}",
        answer.json()
    );
    let body = answer.json();
    (
        body["errorType"].as_str().unwrap().to_string(),
        body["errorMessage"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limit_kills_the_worker_with_out_of_memory() {
    let python = require_python!();
    let platform = start_platform().await;
    platform
        .create_function(handlers_function(&python, "hungry"))
        .await
        .unwrap();
    let (error_type, message) =
        failed_invocation(&platform, "hungry", json!({"action": "allocate"})).await;
    assert_eq!(error_type, "Runtime.OutOfMemory");
    assert!(
        message.starts_with("function 'hungry' exceeded its memory size of 256 MB (used "),
        "{message}"
    );
    assert!(
        message.ends_with(" while running allocating task 'big-array'"),
        "{message}"
    );

    // The killed worker is replaced on the next invocation.
    let answer = invoke_raw(
        &platform,
        "hungry",
        "RequestResponse",
        r#"{"action":"echo"}"#,
    )
    .await;
    assert_eq!(answer.header("X-Amz-Function-Error"), None);
    let statistics = platform.function_statistics("hungry").unwrap();
    assert_eq!(statistics.out_of_memory_kills, 1);
    assert_eq!(statistics.cold_starts, 2);
    platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_kills_the_worker_with_sandbox_timedout() {
    let python = require_python!();
    let platform = start_platform().await;
    let config = FunctionConfig {
        timeout: Duration::from_secs(2),
        ..handlers_function(&python, "sleepy")
    };
    platform.create_function(config).await.unwrap();
    // Warm up, so that the measured call is the handler's alone.
    invoke_raw(
        &platform,
        "sleepy",
        "RequestResponse",
        r#"{"action":"echo"}"#,
    )
    .await;
    let worker = platform.worker_process_ids()[0];

    let started = Instant::now();
    let (error_type, message) = failed_invocation(
        &platform,
        "sleepy",
        json!({"action": "timeout", "seconds": 60}),
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(error_type, "Sandbox.Timedout");
    assert_eq!(
        message,
        "Task timed out after 2.00 seconds while running task 'slow-sum'"
    );
    assert!(elapsed >= Duration::from_secs(2), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "liveness: {elapsed:?}");
    crate::support::eventually(
        "the timed-out worker is gone",
        Duration::from_secs(10),
        || process_is_gone(worker),
    )
    .await;
    assert_eq!(platform.function_statistics("sleepy").unwrap().timeouts, 1);
    platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_fails_with_exit_error() {
    let python = require_python!();
    let platform = start_platform().await;
    platform
        .create_function(handlers_function(&python, "fragile"))
        .await
        .unwrap();
    let (error_type, message) =
        failed_invocation(&platform, "fragile", json!({"action": "exit"})).await;
    assert_eq!(error_type, "Runtime.ExitError");
    assert_eq!(
        message,
        "Runtime exited with error: exit status 3 while running task 'crash'"
    );
    let answer = invoke_raw(
        &platform,
        "fragile",
        "RequestResponse",
        r#"{"action":"echo"}"#,
    )
    .await;
    assert_eq!(answer.header("X-Amz-Function-Error"), None);
    let statistics = platform.function_statistics("fragile").unwrap();
    assert_eq!(statistics.crashes, 1);
    assert_eq!(statistics.cold_starts, 2);
    platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initialization_failures_are_reported_never_hang() {
    let python = require_python!();
    let platform = start_platform().await;
    platform
        .create_function(test_function(&python, "broken", "platform_test_broken"))
        .await
        .unwrap();
    let (error_type, message) = failed_invocation(&platform, "broken", json!({})).await;
    assert_eq!(error_type, "Runtime.InitError");
    assert!(
        message.starts_with("function 'broken' failed to initialize"),
        "{message}"
    );
    assert!(message.contains("exit status 1"), "{message}");
    assert!(
        message.contains("this module cannot be imported"),
        "{message}"
    );

    let missing_program = FunctionConfig::new(
        "unlaunchable",
        vec![
            "/nonexistent/interpreter".to_string(),
            "handler.handle".to_string(),
        ],
    );
    platform.create_function(missing_program).await.unwrap();
    let (error_type, message) = failed_invocation(&platform, "unlaunchable", json!({})).await;
    assert_eq!(error_type, "Runtime.InitError");
    assert!(message.contains("/nonexistent/interpreter"), "{message}");
    assert_eq!(platform.statistics().initialization_failures, 2);
    assert!(platform.worker_process_ids().is_empty());
    platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_events_land_in_the_on_failure_queue() {
    let python = require_python!();
    let platform = start_platform().await;
    let config = FunctionConfig {
        timeout: Duration::from_secs(2),
        on_failure_queue: Some("failures".to_string()),
        ..handlers_function(&python, "unreliable")
    };
    platform.create_function(config).await.unwrap();
    let invoker = LocalInvoker::new(platform.endpoint());
    let events = [
        json!({"action": "echo"}),
        json!({"action": "raise", "message": "bad input"}),
        json!({"action": "exit"}),
        json!({"action": "timeout", "seconds": 60}),
        json!({"action": "allocate"}),
    ];
    for event in &events {
        invoker
            .invoke_event("unreliable", Bytes::from(event.to_string()))
            .await
            .unwrap();
    }
    let failures = LocalQueue::new(platform.endpoint(), "failures");
    let mut records: Vec<Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while records.len() < 4 && Instant::now() < deadline {
        for message in failures.receive(Duration::from_secs(5)).await.unwrap() {
            records.push(serde_json::from_slice(&message).unwrap());
        }
    }
    assert_eq!(records.len(), 4, "{records:#?}");
    let mut error_types = Vec::new();
    for record in &records {
        assert_eq!(record["version"], "1.0");
        assert!(record["timestamp"].as_str().unwrap().ends_with('Z'));
        let context = &record["requestContext"];
        assert_eq!(context["condition"], "RetriesExhausted");
        assert_eq!(context["approximateInvokeCount"], 1);
        assert_eq!(
            context["functionArn"],
            "arn:aws:lambda:local:000000000000:function:unreliable:$LATEST"
        );
        assert!(
            context["requestId"]
                .as_str()
                .is_some_and(|id| !id.is_empty())
        );
        assert!(events[1..].contains(&record["requestPayload"]), "{record}");
        assert_eq!(record["responseContext"]["statusCode"], 200);
        assert_eq!(record["responseContext"]["functionError"], "Unhandled");
        assert!(record["responsePayload"]["errorMessage"].is_string());
        error_types.push(
            record["responsePayload"]["errorType"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    error_types.sort();
    assert_eq!(
        error_types,
        [
            "Runtime.ExitError",
            "Runtime.OutOfMemory",
            "Sandbox.Timedout",
            "ValueError"
        ]
    );
    // The success leaves no record.
    assert!(
        failures
            .receive(Duration::from_millis(200))
            .await
            .unwrap()
            .is_empty()
    );
    let statistics = platform.function_statistics("unreliable").unwrap();
    assert_eq!(statistics.failure_records_delivered, 4);
    assert_eq!(statistics.successes, 1);
    platform.shutdown().await;
}
