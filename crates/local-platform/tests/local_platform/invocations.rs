//! Invocations: answers, errors, events, warm reuse, concurrency and payload limits.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use dask_serverless_local_platform::{
    ASYNCHRONOUS_PAYLOAD_LIMIT, LocalPlatform, LocalPlatformConfig, LocalPlatformError,
    SYNCHRONOUS_PAYLOAD_LIMIT, WorkerOutputCopy,
};
use dask_serverless_platform::{Invoker, LocalInvoker, LocalQueue, PlatformError, ResultChannel};
use serde_json::{Value, json};

use crate::support::{eventually, handlers_function, invoke_raw, require_python, start_platform};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronous_invocation_returns_the_handler_value() {
    let python = require_python!();
    let platform = start_platform().await;
    let mut config = handlers_function(&python, "echo");
    config
        .environment
        .push(("EXTRA_SETTING".to_string(), "forty-two".to_string()));
    platform.create_function(config).await.unwrap();

    let answer = invoke_raw(
        &platform,
        "echo",
        "RequestResponse",
        r#"{"action":"echo","n":7}"#,
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("X-Amz-Function-Error"), None);
    assert_eq!(answer.header("X-Amz-Executed-Version"), Some("$LATEST"));
    assert!(answer.header("x-amzn-RequestId").is_some());
    assert_eq!(answer.json()["event"], json!({"action": "echo", "n": 7}));

    let names = [
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "_HANDLER",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_REGION",
        "DASK_SERVERLESS_PROGRESS_PATH",
        "EXTRA_SETTING",
    ];
    let invoker = LocalInvoker::new(platform.endpoint());
    let answer = invoker
        .invoke_request_response(
            "echo",
            Bytes::from(json!({"action": "environment", "names": names}).to_string()),
        )
        .await
        .unwrap();
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    let variables = &answer["variables"];
    assert!(
        variables["AWS_LAMBDA_RUNTIME_API"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    let task_root = crate::support::handlers_directory().display().to_string();
    assert_eq!(variables["LAMBDA_TASK_ROOT"], task_root.as_str());
    assert_eq!(answer["cwd"], task_root.as_str());
    assert_eq!(variables["_HANDLER"], "platform_test_handlers.handle");
    assert_eq!(variables["AWS_LAMBDA_FUNCTION_NAME"], "echo");
    assert_eq!(variables["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "256");
    assert_eq!(variables["AWS_LAMBDA_FUNCTION_VERSION"], "$LATEST");
    assert_eq!(variables["AWS_REGION"], "local");
    assert!(
        variables["DASK_SERVERLESS_PROGRESS_PATH"]
            .as_str()
            .unwrap()
            .ends_with(".progress")
    );
    assert_eq!(variables["EXTRA_SETTING"], "forty-two");
    assert_eq!(answer["function_name"], "echo");
    // The deadline is epoch milliseconds: the context sees the remaining part of the 10 seconds.
    let remaining = answer["remaining_ms"].as_i64().unwrap();
    assert!(
        (1..=10_000).contains(&remaining),
        "remaining {remaining} ms"
    );

    // An empty payload is the empty event; a payload that is not JSON is refused.
    assert_eq!(
        invoke_raw(&platform, "echo", "RequestResponse", "")
            .await
            .json()["event"],
        json!({})
    );
    let refused = invoke_raw(&platform, "echo", "RequestResponse", "not json").await;
    assert_eq!(refused.status, 400);
    assert_eq!(
        refused.header("x-amzn-ErrorType"),
        Some("InvalidRequestContentException")
    );
    let dry_run = invoke_raw(&platform, "echo", "DryRun", "{}").await;
    assert_eq!(dry_run.status, 204);
    platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_exception_is_reported_as_a_function_error() {
    let python = require_python!();
    let platform = start_platform().await;
    platform
        .create_function(handlers_function(&python, "raiser"))
        .await
        .unwrap();

    let answer = invoke_raw(
        &platform,
        "raiser",
        "RequestResponse",
        r#"{"action":"raise","message":"boom"}"#,
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("X-Amz-Function-Error"), Some("Unhandled"));
    let body = answer.json();
    assert_eq!(body["errorType"], "ValueError");
    assert_eq!(body["errorMessage"], "boom");
    assert!(body["stackTrace"].is_array());

    let invoker = LocalInvoker::new(platform.endpoint());
    let error = invoker
        .invoke_request_response(
            "raiser",
            Bytes::from_static(br#"{"action":"raise","message":"again"}"#),
        )
        .await
        .unwrap_err();
    assert_eq!(
        error,
        PlatformError::FunctionError {
            error_type: "ValueError".to_string(),
            message: "again".to_string()
        }
    );
    // The worker survives handler errors.
    let statistics = platform.function_statistics("raiser").unwrap();
    assert_eq!(statistics.handler_errors, 2);
    assert_eq!(statistics.cold_starts, 1);
    platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_invocation_runs_the_handler() {
    let python = require_python!();
    let platform = start_platform().await;
    platform
        .create_function(handlers_function(&python, "writer"))
        .await
        .unwrap();
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("written.json");
    let event = json!({"action": "write_file", "path": path, "text": "from an event"});

    let answer = invoke_raw(&platform, "writer", "Event", event.to_string()).await;
    assert_eq!(answer.status, 202);
    assert!(answer.body.is_empty());
    eventually("the event's file", Duration::from_secs(30), || {
        std::fs::read_to_string(&path).is_ok_and(|text| text.contains("from an event"))
    })
    .await;

    let invoker = LocalInvoker::new(platform.endpoint());
    std::fs::remove_file(&path).unwrap();
    invoker
        .invoke_event("writer", Bytes::from(event.to_string()))
        .await
        .unwrap();
    eventually("the second event's file", Duration::from_secs(30), || {
        path.exists()
    })
    .await;
    eventually(
        "the second event's completion",
        Duration::from_secs(30),
        || platform.statistics().successes == 2,
    )
    .await;
    let statistics = platform.statistics();
    assert_eq!(statistics.asynchronous_invocations, 2);
    assert_eq!(statistics.cold_starts, 1);
    platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_worker_is_reused() {
    let python = require_python!();
    let platform = start_platform().await;
    platform
        .create_function(handlers_function(&python, "warm"))
        .await
        .unwrap();
    let invoker = LocalInvoker::new(platform.endpoint());
    let mut process_ids = Vec::new();
    for _ in 0..3 {
        let answer = invoker
            .invoke_request_response("warm", Bytes::from_static(br#"{"action":"echo"}"#))
            .await
            .unwrap();
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        process_ids.push(answer["pid"].as_u64().unwrap());
    }
    assert!(
        process_ids.iter().all(|&pid| pid == process_ids[0]),
        "{process_ids:?}"
    );
    assert_eq!(platform.worker_process_ids(), [process_ids[0] as u32]);
    let statistics = platform.function_statistics("warm").unwrap();
    assert_eq!(statistics.cold_starts, 1);
    assert_eq!(statistics.invocations, 3);
    assert_eq!(statistics.successes, 3);
    assert_eq!(statistics.workers, 1);
    assert_eq!(statistics.busy_workers, 0);
    platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronous_invocations_beyond_concurrency_are_throttled_and_retried() {
    let python = require_python!();
    let platform = start_platform().await;
    platform
        .create_function(handlers_function(&python, "slow"))
        .await
        .unwrap();

    // Two long invocations hold both workers: a third is refused at once with 429.
    let mut holders = Vec::new();
    for _ in 0..2 {
        let endpoint = platform.endpoint();
        holders.push(tokio::spawn(async move {
            LocalInvoker::new(endpoint)
                .invoke_request_response(
                    "slow",
                    Bytes::from_static(br#"{"action":"sleep","seconds":2}"#),
                )
                .await
        }));
    }
    eventually("both workers busy", Duration::from_secs(30), || {
        platform.function_statistics("slow").unwrap().busy_workers == 2
    })
    .await;
    let refused = invoke_raw(&platform, "slow", "RequestResponse", r#"{"action":"echo"}"#).await;
    assert_eq!(refused.status, 429);
    assert_eq!(
        refused.header("x-amzn-ErrorType"),
        Some("TooManyRequestsException")
    );
    assert_eq!(refused.header("Retry-After"), Some("1"));
    assert_eq!(refused.json()["Type"], "User");
    for holder in holders {
        holder.await.unwrap().unwrap();
    }

    // Five at once on two workers: some are throttled, and the invoker retries them all through.
    let invoker = Arc::new(LocalInvoker::new(platform.endpoint()));
    let callers: Vec<_> = (0..5)
        .map(|_| {
            let invoker = Arc::clone(&invoker);
            tokio::spawn(async move {
                invoker
                    .invoke_request_response(
                        "slow",
                        Bytes::from_static(br#"{"action":"sleep","seconds":0.5}"#),
                    )
                    .await
            })
        })
        .collect();
    for caller in callers {
        let answer = caller.await.unwrap().expect("retried until it ran");
        assert!(serde_json::from_slice::<Value>(&answer).unwrap()["pid"].is_u64());
    }
    let statistics = platform.function_statistics("slow").unwrap();
    assert!(statistics.throttles >= 2, "{statistics:?}");
    assert_eq!(statistics.successes, 7);
    assert!(statistics.cold_starts <= 2, "{statistics:?}");
    assert!(statistics.workers <= 2, "{statistics:?}");
    platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_beyond_concurrency_are_queued_and_all_complete() {
    let python = require_python!();
    let platform = start_platform().await;
    platform
        .create_function(handlers_function(&python, "queued"))
        .await
        .unwrap();
    let results = LocalQueue::new(platform.endpoint(), "results");
    results.create().await.unwrap();
    let invoker = LocalInvoker::new(platform.endpoint());
    for index in 0..6 {
        let event = json!({
            "action": "send",
            "seconds": 0.3,
            "endpoint": platform.endpoint(),
            "queue_url": platform.queue_url("results"),
            "body": format!("event {index}"),
        });
        invoker
            .invoke_event("queued", Bytes::from(event.to_string()))
            .await
            .unwrap();
    }
    let statistics = platform.function_statistics("queued").unwrap();
    assert_eq!(statistics.asynchronous_invocations, 6);
    assert_eq!(statistics.throttles, 0);
    assert!(statistics.workers <= 2, "{statistics:?}");

    let mut bodies = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while bodies.len() < 6 && tokio::time::Instant::now() < deadline {
        for message in results.receive(Duration::from_secs(5)).await.unwrap() {
            bodies.push(String::from_utf8(message.to_vec()).unwrap());
        }
    }
    bodies.sort();
    let expected: Vec<String> = (0..6).map(|index| format!("event {index}")).collect();
    assert_eq!(bodies, expected);
    eventually("all six completions", Duration::from_secs(10), || {
        platform.function_statistics("queued").unwrap().successes == 6
    })
    .await;
    let statistics = platform.function_statistics("queued").unwrap();
    assert!(statistics.cold_starts <= 2, "{statistics:?}");
    assert_eq!(statistics.queued_events, 0);
    platform.shutdown().await;
}

/// A JSON event of exactly `size` bytes.
fn event_of_size(size: usize) -> String {
    let frame = r#"{"action":"echo","padding":""}"#;
    let mut event = String::with_capacity(size);
    event.push_str(&frame[..frame.len() - 2]);
    event.push_str(&"x".repeat(size - frame.len()));
    event.push_str("\"}");
    assert_eq!(event.len(), size);
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_payloads_are_refused() {
    let python = require_python!();
    let platform = start_platform().await;
    platform
        .create_function(handlers_function(&python, "limits"))
        .await
        .unwrap();

    let too_large = invoke_raw(
        &platform,
        "limits",
        "RequestResponse",
        event_of_size(SYNCHRONOUS_PAYLOAD_LIMIT + 1),
    )
    .await;
    assert_eq!(too_large.status, 413);
    assert_eq!(
        too_large.header("x-amzn-ErrorType"),
        Some("RequestEntityTooLargeException")
    );
    assert!(
        too_large.json()["message"]
            .as_str()
            .unwrap()
            .contains("6291456")
    );
    let too_large = invoke_raw(
        &platform,
        "limits",
        "Event",
        event_of_size(ASYNCHRONOUS_PAYLOAD_LIMIT + 1),
    )
    .await;
    assert_eq!(too_large.status, 413);
    assert_eq!(
        too_large.header("x-amzn-ErrorType"),
        Some("RequestEntityTooLargeException")
    );

    // At the limits, both are accepted.
    let at_limit = invoke_raw(
        &platform,
        "limits",
        "Event",
        event_of_size(ASYNCHRONOUS_PAYLOAD_LIMIT),
    )
    .await;
    assert_eq!(at_limit.status, 202);
    let invoker = LocalInvoker::new(platform.endpoint());
    let error = invoker
        .invoke_event(
            "limits",
            Bytes::from(event_of_size(ASYNCHRONOUS_PAYLOAD_LIMIT + 1)),
        )
        .await
        .unwrap_err();
    assert_eq!(
        error,
        PlatformError::PayloadTooLarge {
            size: ASYNCHRONOUS_PAYLOAD_LIMIT + 1,
            limit: ASYNCHRONOUS_PAYLOAD_LIMIT
        }
    );
    let error = invoker
        .invoke_request_response(
            "limits",
            Bytes::from(event_of_size(SYNCHRONOUS_PAYLOAD_LIMIT + 1)),
        )
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        PlatformError::PayloadTooLarge {
            limit: SYNCHRONOUS_PAYLOAD_LIMIT,
            ..
        }
    ));

    let missing = invoke_raw(&platform, "missing", "RequestResponse", "{}").await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.header("x-amzn-ErrorType"),
        Some("ResourceNotFoundException")
    );
    let error = invoker
        .invoke_event("missing", Bytes::from_static(b"{}"))
        .await
        .unwrap_err();
    assert_eq!(
        error,
        PlatformError::NotFound {
            what: "function 'missing'".to_string()
        }
    );
    platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_response_fails_with_response_size_too_large() {
    let python = require_python!();
    let platform = start_platform().await;
    platform
        .create_function(handlers_function(&python, "talkative"))
        .await
        .unwrap();
    let answer = invoke_raw(
        &platform,
        "talkative",
        "RequestResponse",
        json!({"action": "large_response", "size": 7 * 1024 * 1024}).to_string(),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("X-Amz-Function-Error"), Some("Unhandled"));
    let body = answer.json();
    assert_eq!(body["errorType"], "Function.ResponseSizeTooLarge");
    assert!(
        body["errorMessage"].as_str().unwrap().contains("6291456"),
        "{body}"
    );

    // A response just under the limit passes, on the same warm worker.
    let invoker = LocalInvoker::new(platform.endpoint());
    let answer = invoker
        .invoke_request_response(
            "talkative",
            Bytes::from(json!({"action": "large_response", "size": 6_000_000}).to_string()),
        )
        .await
        .unwrap();
    assert_eq!(answer.len(), 6_000_002);
    let statistics = platform.function_statistics("talkative").unwrap();
    assert_eq!(statistics.oversized_responses, 1);
    assert_eq!(statistics.cold_starts, 1);
    platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_invocation_keeps_what_its_worker_printed() {
    let python = require_python!();
    let platform = LocalPlatform::start(LocalPlatformConfig {
        worker_output: WorkerOutputCopy::Nowhere,
        ..LocalPlatformConfig::default()
    })
    .await
    .expect("the local platform starts");
    let mut config = handlers_function(&python, "talker");
    config.concurrency = 1;
    platform.create_function(config).await.unwrap();
    let before = SystemTime::now();
    let mut request_ids = Vec::new();
    for text in ["first", "second"] {
        let payload = json!({"action": "print", "text": text}).to_string();
        let answer = invoke_raw(&platform, "talker", "RequestResponse", payload).await;
        assert_eq!(
            answer.status,
            200,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        request_ids.push(answer.header("x-amzn-RequestId").unwrap().to_string());
    }
    let logs = platform.invocation_logs("talker", before).unwrap();
    let ids: Vec<&str> = logs.iter().map(|log| log.request_id.as_str()).collect();
    assert_eq!(ids, request_ids, "{logs:#?}");
    // One worker ran both, one after the other: each invocation has its own lines, from both
    // streams (whose relative order is the order the platform read the two pipes).
    for (log, text) in logs.iter().zip(["first", "second"]) {
        assert_eq!(log.worker, "worker-1");
        let mut lines: Vec<&str> = log.text.lines().collect();
        lines.sort_unstable();
        assert_eq!(
            lines,
            [format!("{text} on stderr"), format!("{text} on stdout")],
            "{logs:#?}"
        );
        assert!(log.text.ends_with('\n'));
    }
    assert!(logs.iter().all(|log| log.omitted_bytes == 0));
    assert!(logs[0].submitted >= before && logs[0].assigned >= logs[0].submitted);
    // Only those submitted since the moment asked for.
    let later = platform
        .invocation_logs("talker", SystemTime::now() + Duration::from_secs(1))
        .unwrap();
    assert!(later.is_empty(), "{later:?}");
    assert!(matches!(
        platform.invocation_logs("nobody", before),
        Err(LocalPlatformError::FunctionNotFound { .. })
    ));
    platform.shutdown().await;
}
