//! The local backends against the real platform (no worker needed), and against a scripted HTTP
//! server for what a real server does not produce on demand: throttling sequences, `Retry-After`,
//! server errors and undecodable answers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use dask_serverless_local_platform::{
    FunctionConfig, LocalPlatform, LocalPlatformConfig, LocalPlatformHandle,
};
use dask_serverless_platform::{
    Invoker, LocalInvoker, LocalQueue, PlatformError, ResultChannel, RetryPolicy,
};

/// One scripted answer: status, `Retry-After` seconds, body.
type Scripted = (u16, Option<u64>, &'static str);

/// A server answering every request with the next scripted answer (the last one repeats), and
/// recording when each request arrived.
struct ScriptedServer {
    endpoint: String,
    arrivals: Arc<Mutex<Vec<Instant>>>,
}

async fn scripted_server(script: Vec<Scripted>) -> ScriptedServer {
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&arrivals);
    let router = Router::new().fallback(move || {
        let recorded = Arc::clone(&recorded);
        let script = script.clone();
        async move {
            let index = {
                let mut arrivals = recorded.lock().unwrap();
                arrivals.push(Instant::now());
                arrivals.len() - 1
            };
            let (status, retry_after, body) = script[index.min(script.len() - 1)];
            let mut response: Response =
                (StatusCode::from_u16(status).unwrap(), body).into_response();
            if status == 429 {
                response.headers_mut().insert(
                    "x-amzn-ErrorType",
                    HeaderValue::from_static("TooManyRequestsException"),
                );
            }
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert("Retry-After", HeaderValue::from(seconds));
            }
            response
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    ScriptedServer { endpoint, arrivals }
}

const THROTTLED: &str = r#"{"Type":"User","message":"Rate Exceeded."}"#;

/// Connection failures keep their short budget (1.5 s), whatever the patience for throttles.
#[tokio::test]
async fn connection_refused_fails_fast_with_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let invoker = LocalInvoker::new(&endpoint);
    let started = Instant::now();
    let error = invoker
        .invoke_request_response("anything", Bytes::from_static(b"{}"))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "liveness");
    let PlatformError::Unavailable {
        endpoint: reported,
        message,
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(reported, &endpoint);
    assert!(message.ends_with("is it running?"), "{message}");
    assert!(
        error
            .to_string()
            .starts_with(&format!("could not reach the platform at {endpoint}")),
        "{error}"
    );
    let queue = LocalQueue::new(&endpoint, "results");
    let error = queue.receive(Duration::from_secs(1)).await.unwrap_err();
    assert!(
        matches!(error, PlatformError::Unavailable { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn throttles_are_retried_honouring_retry_after() {
    let server = scripted_server(vec![
        (429, Some(1), THROTTLED),
        (429, Some(1), THROTTLED),
        (200, None, r#""done""#),
    ])
    .await;
    let answer = LocalInvoker::new(&server.endpoint)
        .invoke_request_response("function", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    assert_eq!(answer, Bytes::from_static(br#""done""#));
    let arrivals = server.arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 3);
    for pair in arrivals.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_secs(1),
            "retried before Retry-After"
        );
    }
}

/// Quick backoff (1 to 10 ms), with the default bounds otherwise.
fn quick_backoff() -> RetryPolicy {
    RetryPolicy {
        initial_backoff: Duration::from_millis(1),
        maximum_backoff: Duration::from_millis(10),
        ..RetryPolicy::default()
    }
    .with_jitter_seed(4)
}

#[tokio::test]
async fn throttles_are_retried_beyond_any_count_of_attempts() {
    let mut script = vec![(429, None, THROTTLED); 30];
    script.push((202, None, ""));
    let server = scripted_server(script).await;
    let policy = quick_backoff();
    assert!(policy.maximum_attempts < 30, "the test needs a smaller cap");
    LocalInvoker::new(&server.endpoint)
        .with_retry_policy(policy)
        .invoke_event("function", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    assert_eq!(server.arrivals.lock().unwrap().len(), 31);
}

#[tokio::test]
async fn a_dropped_invocation_stops_retrying() {
    let server = scripted_server(vec![(429, None, THROTTLED)]).await;
    let invoker = LocalInvoker::new(&server.endpoint).with_retry_policy(quick_backoff());
    let invocation = tokio::spawn(async move {
        invoker
            .invoke_event("function", Bytes::from_static(b"{}"))
            .await
    });
    let arrivals = || server.arrivals.lock().unwrap().len();
    let deadline = Instant::now() + Duration::from_secs(10);
    while arrivals() < 20 {
        assert!(
            Instant::now() < deadline,
            "the throttled invocation stopped"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    invocation.abort();
    assert!(invocation.await.unwrap_err().is_cancelled());
    // A request already on its way may still land; none may leave after that.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after_drop = arrivals();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(arrivals(), after_drop, "requests went on after the drop");
}

/// A server throttling every invocation of the function `busy` and accepting the others'.
async fn busy_server() -> (String, Arc<Mutex<u64>>) {
    let busy_requests = Arc::new(Mutex::new(0));
    let counted = Arc::clone(&busy_requests);
    let router = Router::new().route(
        "/2015-03-31/functions/{function}/invocations",
        axum::routing::post(
            move |axum::extract::Path(function): axum::extract::Path<String>| {
                let counted = Arc::clone(&counted);
                async move {
                    if function != "busy" {
                        return StatusCode::ACCEPTED.into_response();
                    }
                    *counted.lock().unwrap() += 1;
                    let mut response: Response =
                        (StatusCode::TOO_MANY_REQUESTS, THROTTLED).into_response();
                    response.headers_mut().insert(
                        "x-amzn-ErrorType",
                        HeaderValue::from_static("TooManyRequestsException"),
                    );
                    response
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (endpoint, busy_requests)
}

#[tokio::test]
async fn throttles_end_only_after_the_patience_passed_without_progress() {
    let (endpoint, busy_requests) = busy_server().await;
    let patience = Duration::from_millis(500);
    let policy = RetryPolicy {
        throttle_patience: patience,
        ..quick_backoff()
    };

    // Nothing accepted: the invocation gives up after the patience, however many attempts.
    let invoker = LocalInvoker::new(&endpoint).with_retry_policy(policy.clone());
    let started = Instant::now();
    let error = invoker
        .invoke_event("busy", Bytes::from_static(b"{}"))
        .await
        .unwrap_err();
    let waited = started.elapsed();
    let PlatformError::Throttled {
        attempts, message, ..
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(message, "Rate Exceeded.");
    assert!(*attempts > policy.maximum_attempts, "{attempts} attempts");
    assert_eq!(u64::from(*attempts), *busy_requests.lock().unwrap());
    assert!(waited >= patience - Duration::from_millis(20), "{waited:?}");
    assert!(waited < patience + Duration::from_secs(1), "{waited:?}");

    // A clone's accepted invocations are progress: the throttled one waits them out, then
    // its patience.
    let invoker = LocalInvoker::new(&endpoint).with_retry_policy(policy);
    let clone = invoker.clone();
    let progress = Duration::from_millis(1500);
    let started = Instant::now();
    let (throttled, ()) = tokio::join!(
        invoker.invoke_event("busy", Bytes::from_static(b"{}")),
        async {
            while started.elapsed() < progress {
                clone
                    .invoke_event("free", Bytes::from_static(b"{}"))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    );
    let waited = started.elapsed();
    assert!(
        matches!(throttled, Err(PlatformError::Throttled { .. })),
        "{throttled:?}"
    );
    assert!(
        waited >= progress + patience - Duration::from_millis(150),
        "gave up after {waited:?}, while a clone made progress"
    );
    assert!(
        waited < progress + patience + Duration::from_secs(1),
        "{waited:?}"
    );
}

#[tokio::test]
async fn no_retries_means_one_attempt() {
    let never = scripted_server(vec![(429, None, THROTTLED)]).await;
    let error = LocalInvoker::new(&never.endpoint)
        .with_retry_policy(RetryPolicy::never())
        .invoke_event("function", Bytes::from_static(b"{}"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, PlatformError::Throttled { attempts: 1, .. }),
        "{error:?}"
    );
    assert_eq!(never.arrivals.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn payloads_over_the_limits_are_refused_without_a_request() {
    let server = scripted_server(vec![(202, None, "")]).await;
    let invoker = LocalInvoker::new(&server.endpoint);
    let error = invoker
        .invoke_event("function", Bytes::from(vec![b' '; 1_048_577]))
        .await
        .unwrap_err();
    assert_eq!(
        error,
        PlatformError::PayloadTooLarge {
            size: 1_048_577,
            limit: 1_048_576
        }
    );
    let error = invoker
        .invoke_request_response("function", Bytes::from(vec![b' '; 6_291_457]))
        .await
        .unwrap_err();
    assert_eq!(
        error,
        PlatformError::PayloadTooLarge {
            size: 6_291_457,
            limit: 6_291_456
        }
    );
    assert!(server.arrivals.lock().unwrap().is_empty(), "a request left");
}

#[tokio::test]
async fn server_errors_and_strange_answers_are_reported() {
    let unavailable = scripted_server(vec![(
        503,
        None,
        r#"{"Type":"Service","message":"the local platform is shutting down"}"#,
    )])
    .await;
    let error = LocalInvoker::new(&unavailable.endpoint)
        .invoke_event("function", Bytes::from_static(b"{}"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, PlatformError::Unavailable { message, .. } if message.contains("shutting down")),
        "{error:?}"
    );
    // Server errors are not retried: the request may have run.
    assert_eq!(unavailable.arrivals.lock().unwrap().len(), 1);

    let strange = scripted_server(vec![(200, None, "not json")]).await;
    let error = LocalInvoker::new(&strange.endpoint)
        .invoke_event("function", Bytes::from_static(b"{}"))
        .await
        .unwrap_err();
    assert!(matches!(error, PlatformError::Protocol { .. }), "{error:?}");
    let error = LocalQueue::new(&strange.endpoint, "results")
        .receive(Duration::ZERO)
        .await
        .unwrap_err();
    assert!(matches!(error, PlatformError::Protocol { .. }), "{error:?}");
}

async fn platform() -> LocalPlatformHandle {
    LocalPlatform::start(LocalPlatformConfig::default())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoker_maps_the_platform_refusals() {
    let platform = platform().await;
    // Refusals happen before any worker starts, so the command never runs.
    platform
        .create_function(FunctionConfig::new("sink", vec!["false".to_string()]))
        .await
        .unwrap();
    let invoker = LocalInvoker::new(platform.endpoint());
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
    let error = invoker
        .invoke_event("sink", Bytes::from(vec![b' '; 1_048_577]))
        .await
        .unwrap_err();
    assert_eq!(
        error,
        PlatformError::PayloadTooLarge {
            size: 1_048_577,
            limit: 1_048_576
        }
    );
    let error = invoker
        .invoke_request_response("sink", Bytes::from_static(b"not json"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, PlatformError::Protocol { message } if message.contains("InvalidRequestContentException")),
        "{error:?}"
    );
    platform.shutdown().await;
}

/// What every result channel must do; run against each backend.
async fn check_result_channel(channel: &dyn ResultChannel) {
    assert!(channel.receive(Duration::ZERO).await.unwrap().is_empty());
    channel.send(Vec::new()).await.unwrap();
    let sent: Vec<Bytes> = (0..23)
        .map(|index| Bytes::from(format!(r#"{{"event":{index}}}"#)))
        .collect();
    channel.send(sent.clone()).await.unwrap();
    let mut received = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.len() < sent.len() && Instant::now() < deadline {
        received.extend(channel.receive(Duration::from_secs(1)).await.unwrap());
    }
    assert_eq!(received, sent, "every message, once, in order");
    let error = channel
        .send(vec![Bytes::from(vec![b'x'; 1_048_577])])
        .await
        .unwrap_err();
    assert!(
        matches!(error, PlatformError::PayloadTooLarge { .. }),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_queue_is_a_result_channel() {
    let platform = platform().await;
    let queue = LocalQueue::new(platform.endpoint(), "conformance");
    let error = queue
        .send(vec![Bytes::from_static(b"x")])
        .await
        .unwrap_err();
    assert_eq!(
        error,
        PlatformError::NotFound {
            what: "queue 'conformance'".to_string()
        }
    );
    queue.create().await.unwrap();
    assert_eq!(
        queue.queue_url().await.unwrap(),
        platform.queue_url("conformance")
    );
    check_result_channel(&queue).await;
    // A second client of the same queue finds it by name.
    let other = LocalQueue::new(platform.endpoint(), "conformance");
    other
        .send(vec![Bytes::from_static(b"hello")])
        .await
        .unwrap();
    assert_eq!(
        queue.receive(Duration::from_secs(5)).await.unwrap(),
        [Bytes::from_static(b"hello")]
    );
    queue.delete().await.unwrap();
    platform.shutdown().await;
}
