//! The retry and error paths of [`LambdaInvoker`] and [`SqsQueue`], against a scripted HTTP
//! server that answers with throttles, server errors and error bodies in AWS's wire format,
//! and counts the requests it holds at once.

mod common;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::{Region, SdkConfig};
use bytes::Bytes;
use common::loader_with;
use dask_serverless_aws::{LambdaInvoker, SqsQueue};
use dask_serverless_platform::{
    ASYNCHRONOUS_PAYLOAD_LIMIT, Invoker, PlatformError, ResultChannel, RetryPolicy,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One scripted answer.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Answer {
    fn new(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.to_string(),
        }
    }

    /// An AWS error answer of the REST-JSON protocols (Lambda).
    fn error(status: u16, code: &str, message: &str) -> Self {
        Self {
            status,
            headers: vec![("x-amzn-ErrorType", code.to_string())],
            body: format!(r#"{{"Type": "User", "message": "{message}"}}"#),
        }
    }

    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }
}

/// A server answering from a script (then `fallback`), holding each request `delay`.
#[derive(Debug)]
struct Scripted {
    answers: Mutex<VecDeque<Answer>>,
    fallback: Answer,
    delay: Duration,
    requests: AtomicUsize,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
}

impl Scripted {
    async fn start(answers: Vec<Answer>, fallback: Answer, delay: Duration) -> (Arc<Self>, String) {
        let script = Arc::new(Self {
            answers: Mutex::new(answers.into()),
            fallback,
            delay,
            requests: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            most_in_flight: AtomicUsize::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let serving = script.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serving.clone().serve(stream));
            }
        });
        (script, endpoint)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    async fn serve(self: Arc<Self>, stream: TcpStream) {
        let mut reader = BufReader::new(stream);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let mut content_length = 0;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).await.unwrap_or(0) == 0 {
                    return;
                }
                let header = header.trim_end();
                if header.is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    content_length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; content_length];
            if reader.read_exact(&mut body).await.is_err() {
                return;
            }
            self.requests.fetch_add(1, Ordering::SeqCst);
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            let answer = self
                .answers
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(|| self.fallback.clone());
            let mut raw = format!(
                "HTTP/1.1 {} Scripted\r\nContent-Length: {}\r\nContent-Type: application/json\r\n",
                answer.status,
                answer.body.len()
            );
            for (name, value) in &answer.headers {
                raw.push_str(&format!("{name}: {value}\r\n"));
            }
            raw.push_str("\r\n");
            raw.push_str(&answer.body);
            if reader.get_mut().write_all(raw.as_bytes()).await.is_err() {
                return;
            }
        }
    }
}

async fn config(endpoint: &str) -> SdkConfig {
    loader_with("test", "test")
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .load()
        .await
}

fn quick_retries(maximum_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        maximum_attempts,
        initial_backoff: Duration::from_millis(10),
        maximum_backoff: Duration::from_millis(50),
        ..RetryPolicy::default()
    }
    .with_jitter_seed(u64::from(maximum_attempts))
}

#[tokio::test]
async fn throttles_are_retried_beyond_any_count_of_attempts_then_reported() {
    let throttled = Answer::error(429, "TooManyRequestsException", "Rate Exceeded.");
    let (script, endpoint) = Scripted::start(
        vec![throttled.clone(); 30],
        Answer::new(202, ""),
        Duration::ZERO,
    )
    .await;
    let invoker = LambdaInvoker::new(&config(&endpoint).await).with_retry_policy(quick_retries(5));
    invoker.invoke_event("f", Bytes::from("{}")).await.unwrap();
    assert_eq!(script.requests(), 31);

    // Throttled for ever: given up once the patience passed without progress.
    let (script, endpoint) = Scripted::start(Vec::new(), throttled, Duration::ZERO).await;
    let patience = Duration::from_millis(300);
    let policy = RetryPolicy {
        throttle_patience: patience,
        ..quick_retries(4)
    };
    let invoker = LambdaInvoker::new(&config(&endpoint).await).with_retry_policy(policy);
    let started = std::time::Instant::now();
    let error = invoker
        .invoke_event("f", Bytes::from("{}"))
        .await
        .unwrap_err();
    assert!(started.elapsed() >= patience - Duration::from_millis(60));
    let PlatformError::Throttled {
        attempts, message, ..
    } = &error
    else {
        panic!("expected a throttle, got {error:?}");
    };
    assert!(*attempts > 4, "{attempts} attempts");
    assert_eq!(message, "Rate Exceeded.");
    assert_eq!(script.requests(), *attempts as usize);
}

#[tokio::test]
async fn a_dropped_invocation_stops_retrying() {
    let throttled = Answer::error(429, "TooManyRequestsException", "Rate Exceeded.");
    let (script, endpoint) = Scripted::start(Vec::new(), throttled, Duration::ZERO).await;
    let invoker = LambdaInvoker::new(&config(&endpoint).await).with_retry_policy(quick_retries(3));
    let invocation =
        tokio::spawn(async move { invoker.invoke_event("f", Bytes::from("{}")).await });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while script.requests() < 10 {
        assert!(std::time::Instant::now() < deadline, "the retries stopped");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    invocation.abort();
    assert!(invocation.await.unwrap_err().is_cancelled());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after_drop = script.requests();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        script.requests(),
        after_drop,
        "requests went on after the drop"
    );
}

#[tokio::test]
async fn retry_after_is_honoured_as_a_minimum() {
    let throttled =
        Answer::error(429, "TooManyRequestsException", "slow down").header("Retry-After", "1");
    let (script, endpoint) =
        Scripted::start(vec![throttled], Answer::new(202, ""), Duration::ZERO).await;
    let invoker = LambdaInvoker::new(&config(&endpoint).await).with_retry_policy(quick_retries(3));
    let started = std::time::Instant::now();
    invoker.invoke_event("f", Bytes::from("{}")).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(script.requests(), 2);
}

#[tokio::test]
async fn server_errors_are_retried() {
    let (script, endpoint) = Scripted::start(
        vec![
            Answer::error(500, "ServiceException", "internal"),
            Answer::error(502, "ResourceNotReadyException", "not ready"),
        ],
        Answer::new(200, r#"{"ok": 1}"#),
        Duration::ZERO,
    )
    .await;
    let invoker = LambdaInvoker::new(&config(&endpoint).await).with_retry_policy(quick_retries(5));
    let answer = invoker
        .invoke_request_response("f", Bytes::from("{}"))
        .await
        .unwrap();
    assert_eq!(answer, Bytes::from(r#"{"ok": 1}"#));
    assert_eq!(script.requests(), 3);

    let (_, endpoint) = Scripted::start(
        Vec::new(),
        Answer::error(503, "ServiceException", "down"),
        Duration::ZERO,
    )
    .await;
    let invoker = LambdaInvoker::new(&config(&endpoint).await).with_retry_policy(quick_retries(2));
    let error = invoker
        .invoke_event("f", Bytes::from("{}"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, PlatformError::Unavailable { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("ServiceException: down"),
        "{error}"
    );
}

#[tokio::test]
async fn answers_map_to_platform_errors_without_retries() {
    let (script, endpoint) = Scripted::start(
        vec![
            Answer::error(404, "ResourceNotFoundException", "Function not found: f"),
            Answer::error(413, "RequestEntityTooLargeException", "too large"),
            Answer::new(200, r#"{"errorType": "KeyError", "errorMessage": "'x'"}"#)
                .header("X-Amz-Function-Error", "Unhandled"),
            Answer::error(400, "InvalidRequestContentException", "bad JSON"),
        ],
        Answer::new(200, "{}"),
        Duration::ZERO,
    )
    .await;
    let invoker = LambdaInvoker::new(&config(&endpoint).await);
    let error = invoker
        .invoke_event("f", Bytes::from("{}"))
        .await
        .unwrap_err();
    assert_eq!(
        error,
        PlatformError::NotFound {
            what: "function 'f'".to_string()
        }
    );
    let error = invoker
        .invoke_event("f", Bytes::from("{}"))
        .await
        .unwrap_err();
    assert_eq!(
        error,
        PlatformError::PayloadTooLarge {
            size: 2,
            limit: ASYNCHRONOUS_PAYLOAD_LIMIT
        }
    );
    let error = invoker
        .invoke_request_response("f", Bytes::from("{}"))
        .await
        .unwrap_err();
    assert_eq!(
        error,
        PlatformError::FunctionError {
            error_type: "KeyError".to_string(),
            message: "'x'".to_string()
        }
    );
    let error = invoker
        .invoke_event("f", Bytes::from("{"))
        .await
        .unwrap_err();
    assert!(matches!(error, PlatformError::Protocol { .. }), "{error:?}");
    assert!(
        error.to_string().contains("InvalidRequestContentException"),
        "{error}"
    );
    assert_eq!(script.requests(), 4, "an error answer was retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_are_bounded() {
    let (script, endpoint) =
        Scripted::start(Vec::new(), Answer::new(202, ""), Duration::from_millis(100)).await;
    let invoker = LambdaInvoker::new(&config(&endpoint).await).with_max_in_flight(2);
    let mut invocations = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let invoker = invoker.clone();
        invocations.spawn(async move { invoker.invoke_event("f", Bytes::from("{}")).await });
    }
    while let Some(result) = invocations.join_next().await {
        result.unwrap().unwrap();
    }
    assert_eq!(script.requests(), 8);
    assert_eq!(script.most_in_flight.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_queue_retries_server_errors_and_deletes_what_it_received() {
    let (script, endpoint) = Scripted::start(
        vec![
            Answer::new(500, r#"{"__type": "InternalFailure", "message": "oops"}"#),
            Answer::new(
                200,
                r#"{"Messages": [{"MessageId": "1", "ReceiptHandle": "r1", "Body": "hello"}]}"#,
            ),
            Answer::new(200, r#"{"Successful": [{"Id": "0"}], "Failed": []}"#),
        ],
        Answer::new(200, "{}"),
        Duration::ZERO,
    )
    .await;
    let queue = SqsQueue::new(
        &config(&endpoint).await,
        format!("{endpoint}/000000000000/q"),
    )
    .with_retry_policy(quick_retries(3));
    let received = queue.receive(Duration::from_secs(1)).await.unwrap();
    assert_eq!(received, vec![Bytes::from("hello")]);
    assert_eq!(script.requests(), 3, "receive, receive again, delete");

    let (_, endpoint) = Scripted::start(
        Vec::new(),
        Answer::new(
            400,
            r#"{"__type": "com.amazonaws.sqs#QueueDoesNotExist", "message": "no queue"}"#,
        )
        .header(
            "x-amzn-query-error",
            "AWS.SimpleQueueService.NonExistentQueue;Sender",
        ),
        Duration::ZERO,
    )
    .await;
    let queue = SqsQueue::new(
        &config(&endpoint).await,
        format!("{endpoint}/000000000000/q"),
    );
    let error = queue.receive(Duration::ZERO).await.unwrap_err();
    assert!(matches!(error, PlatformError::NotFound { .. }), "{error:?}");
}
