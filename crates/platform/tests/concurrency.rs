//! The local platform's concurrency limit, seen through the invoker: many more asynchronous
//! invocations than the limit all run, never more at once than the limit (the platform queues
//! events, as Lambda does); synchronous invocations over the limit are refused with 429, and
//! the invoker's retries carry them through once a worker frees.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use dask_serverless_platform::{Invoker, PlatformError, ResultChannel, RetryPolicy};
use serde_json::{Value, json};
use support::LocalBackend;
use tokio::time::Instant;

const LIMIT: usize = 2;

/// An event that holds a worker for `hold` seconds, then sends when it ran.
fn interval_event(local: &LocalBackend, token: &str, hold: f64) -> Bytes {
    let event = json!({
        "interval": token,
        "hold": hold,
        "endpoint": local.platform.endpoint(),
        "queue_url": local.queue_url,
    });
    Bytes::from(event.to_string())
}

/// The most intervals `(start, end)` that overlap at one instant.
fn most_at_once(intervals: &[(f64, f64)]) -> usize {
    intervals
        .iter()
        .map(|&(instant, _)| {
            intervals
                .iter()
                .filter(|&&(start, end)| start <= instant && instant < end)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_beyond_the_concurrency_limit_all_run_never_more_at_once() {
    let local = LocalBackend::start(LIMIT).await;
    let count = 12;
    // Samples the platform's own count of busy workers while the events run.
    let sampling = Arc::new(AtomicBool::new(true));
    let most_busy = Arc::new(AtomicU64::new(0));
    let sampler = {
        let sampling = Arc::clone(&sampling);
        let most_busy = Arc::clone(&most_busy);
        let statistics = {
            let platform = &local.platform;
            let function = local.function.clone();
            move || platform.function_statistics(&function).unwrap_or_default()
        };
        async move {
            while sampling.load(Ordering::SeqCst) {
                let now = statistics();
                most_busy.fetch_max(now.busy_workers.max(now.workers), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    let invoke_and_receive = async {
        for index in 0..count {
            local
                .invoker
                .invoke_event(
                    &local.function,
                    interval_event(&local, &index.to_string(), 0.3),
                )
                .await
                .unwrap();
        }
        let statistics = local.platform.function_statistics(&local.function).unwrap();
        assert!(
            statistics.queued_events > 0,
            "the events should wait for a worker: {statistics:?}"
        );
        let mut intervals: Vec<Value> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while intervals.len() < count {
            assert!(
                Instant::now() < deadline,
                "{} of {count} ran",
                intervals.len()
            );
            for message in local.queue.receive(Duration::from_secs(1)).await.unwrap() {
                intervals.push(serde_json::from_slice(&message).unwrap());
            }
        }
        sampling.store(false, Ordering::SeqCst);
        intervals
    };
    let (intervals, ()) = tokio::join!(invoke_and_receive, sampler);
    let tokens: BTreeSet<String> = intervals
        .iter()
        .map(|interval| interval["interval"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(tokens.len(), count, "every event ran once: {intervals:?}");
    let times: Vec<(f64, f64)> = intervals
        .iter()
        .map(|interval| {
            (
                interval["start"].as_f64().unwrap(),
                interval["end"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        most_at_once(&times),
        LIMIT,
        "at most (and, with this many events, exactly) the limit at once: {times:?}"
    );
    let processes: BTreeSet<u64> = intervals
        .iter()
        .map(|interval| interval["pid"].as_u64().unwrap())
        .collect();
    assert!(processes.len() <= LIMIT, "{processes:?}");
    let most_busy = most_busy.load(Ordering::SeqCst);
    assert!(
        (1..=LIMIT as u64).contains(&most_busy),
        "the platform counted {most_busy} workers at once"
    );
    local.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronous_invocations_over_the_limit_are_throttled_then_retried() {
    let local = LocalBackend::start(LIMIT).await;
    let hold = |token: &str| interval_event(&local, token, 1.5);
    let impatient = local
        .invoker
        .clone()
        .with_retry_policy(RetryPolicy::never());
    let (first, second, refused, patient) = tokio::join!(
        local
            .invoker
            .invoke_request_response(&local.function, hold("first")),
        local
            .invoker
            .invoke_request_response(&local.function, hold("second")),
        async {
            tokio::time::sleep(Duration::from_millis(700)).await;
            impatient
                .invoke_request_response(&local.function, hold("refused"))
                .await
        },
        async {
            tokio::time::sleep(Duration::from_millis(700)).await;
            let started = Instant::now();
            let answer = local
                .invoker
                .invoke_request_response(&local.function, hold("patient"))
                .await;
            (answer, started.elapsed())
        },
    );
    first.unwrap();
    second.unwrap();
    let error = refused.unwrap_err();
    assert!(
        matches!(&error, PlatformError::Throttled { attempts: 1, message, .. } if message.contains("busy")),
        "{error:?}"
    );
    let (answer, waited) = patient;
    let answer: Value = serde_json::from_slice(&answer.unwrap()).unwrap();
    assert_eq!(answer["interval"], "patient");
    // It ran only once a worker was free: after the first two ended.
    assert!(waited >= Duration::from_millis(1500 + 800), "{waited:?}");
    let statistics = local.platform.function_statistics(&local.function).unwrap();
    assert!(statistics.throttles >= 2, "{statistics:?}");
    local.shutdown().await;
}
