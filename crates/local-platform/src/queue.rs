//! A small queue service speaking a subset of the SQS JSON protocol.
//!
//! Requests are `POST /` (or `POST /queues/<name>`) with `X-Amz-Target: AmazonSQS.<Action>` and a
//! JSON body, answered as SQS answers them, errors included (`{"__type","message"}`, HTTP 400).
//! Actions: CreateQueue, GetQueueUrl, ListQueues, DeleteQueue, PurgeQueue, SendMessage,
//! SendMessageBatch, ReceiveMessage, DeleteMessage, DeleteMessageBatch. A queue's URL is
//! `http://<platform address>/queues/<name>`; actions accept any URL whose last segment is the name.
//!
//! Model: a queue is a FIFO of text messages. `ReceiveMessage` takes up to
//! `MaxNumberOfMessages` (1 to 10) from the front, waiting up to `WaitTimeSeconds` (0 to 20; or the
//! non-standard `WaitTimeMilliseconds`, 0 to 20000) for the first one and returning as soon as any
//! is there (long polling). **Simplification:** a received message is removed at once: there is no
//! visibility timeout, so a consumer that crashes after receiving loses the message;
//! `DeleteMessage` and `DeleteMessageBatch` are accepted and do nothing. Bodies are limited to
//! 1 MiB, like SQS's, and to the characters SQS allows. Records written by the local platform itself (the
//! on-failure destination) bypass the size limit so that no failure is lost.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use md5::{Digest, Md5};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::body::{LimitedBody, read_limited};
use crate::config::QUEUE_MESSAGE_LIMIT;
use crate::platform::Shared;

/// Most messages per `ReceiveMessage` and per batch.
const BATCH_LIMIT: usize = 10;
/// Longest long poll, as in SQS.
const LONGEST_WAIT: Duration = Duration::from_secs(20);

/// SQS queue names: 1 to 80 letters, digits, hyphens or underscores (and `.fifo`).
pub(crate) fn is_valid_queue_name(name: &str) -> bool {
    let base = name.strip_suffix(".fifo").unwrap_or(name);
    (1..=80).contains(&name.len())
        && !base.is_empty()
        && base.chars().all(|character| {
            character.is_ascii_alphanumeric() || character == '-' || character == '_'
        })
}

#[derive(Debug)]
struct Message {
    id: String,
    body: String,
    md5: String,
}

#[derive(Debug, Default)]
struct Queue {
    messages: Mutex<VecDeque<Message>>,
    /// Woken on every send, deletion and shutdown.
    arrived: Notify,
    deleted: AtomicBool,
}

impl Queue {
    fn messages(&self) -> MutexGuard<'_, VecDeque<Message>> {
        self.messages
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn push(&self, body: String) -> (String, String) {
        let message = Message {
            id: uuid::Uuid::new_v4().to_string(),
            md5: md5_hex(body.as_bytes()),
            body,
        };
        let answer = (message.id.clone(), message.md5.clone());
        self.messages().push_back(message);
        self.arrived.notify_waiters();
        answer
    }
}

/// Every queue of the local platform.
#[derive(Debug)]
pub(crate) struct QueueService {
    queues: Mutex<HashMap<String, Arc<Queue>>>,
    base_url: String,
    closed: AtomicBool,
}

impl QueueService {
    pub(crate) fn new(base_url: String) -> Self {
        Self {
            queues: Mutex::new(HashMap::new()),
            base_url,
            closed: AtomicBool::new(false),
        }
    }

    fn queues(&self) -> MutexGuard<'_, HashMap<String, Arc<Queue>>> {
        self.queues
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn url(&self, name: &str) -> String {
        format!("{}/queues/{name}", self.base_url)
    }

    /// Creates the queue if absent (creation is idempotent, as in SQS).
    pub(crate) fn create(&self, name: &str) {
        self.queues().entry(name.to_string()).or_default();
    }

    fn get(&self, name: &str) -> Option<Arc<Queue>> {
        self.queues().get(name).cloned()
    }

    /// Writes a local platform record (e.g. a failed event) into a queue, creating it if needed.
    pub(crate) fn deliver(&self, name: &str, body: String) {
        let queue = Arc::clone(self.queues().entry(name.to_string()).or_default());
        queue.push(body);
    }

    /// Wakes every long poll, which then returns at once; used at shutdown.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        for queue in self.queues().values() {
            queue.arrived.notify_waiters();
        }
    }

    async fn receive(&self, queue: &Queue, maximum: usize, wait: Duration) -> Vec<Message> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let arrived = queue.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            {
                let mut messages = queue.messages();
                if !messages.is_empty() {
                    let count = maximum.min(messages.len());
                    return messages.drain(..count).collect();
                }
            }
            if queue.deleted.load(Ordering::SeqCst) || self.closed.load(Ordering::SeqCst) {
                return Vec::new();
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return Vec::new();
            }
        }
    }
}

fn md5_hex(data: &[u8]) -> String {
    Md5::digest(data)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// An SQS error: HTTP 400 with `{"__type","message"}`.
#[derive(Debug)]
struct QueueError {
    code: &'static str,
    query_code: &'static str,
    message: String,
}

impl QueueError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            query_code: code,
            message: message.into(),
        }
    }

    fn queue_does_not_exist() -> Self {
        Self {
            code: "QueueDoesNotExist",
            query_code: "AWS.SimpleQueueService.NonExistentQueue",
            message: "The specified queue does not exist.".to_string(),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new("InvalidParameterValue", message)
    }
}

impl IntoResponse for QueueError {
    fn into_response(self) -> Response {
        let mut response = (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "__type": format!("com.amazonaws.sqs#{}", self.code),
                "message": self.message,
            })),
        )
            .into_response();
        if let Ok(value) = HeaderValue::from_str(&format!("{};Sender", self.query_code)) {
            response.headers_mut().insert("x-amzn-query-error", value);
        }
        response
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct QueueNameRequest {
    queue_name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct QueueUrlRequest {
    queue_url: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListQueuesRequest {
    #[serde(default)]
    queue_name_prefix: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendMessageRequest {
    queue_url: String,
    message_body: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendMessageBatchRequest {
    queue_url: String,
    entries: Vec<SendEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendEntry {
    id: String,
    message_body: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReceiveMessageRequest {
    queue_url: String,
    max_number_of_messages: Option<i64>,
    wait_time_seconds: Option<i64>,
    /// Non-standard: a long poll with millisecond precision; wins over `WaitTimeSeconds`.
    wait_time_milliseconds: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteMessageBatchRequest {
    queue_url: String,
    entries: Vec<DeleteEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteEntry {
    id: String,
}

/// The queue service's HTTP entry point.
pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match handle_action(&shared.queues, &headers, body).await {
        Ok(answer) => Json(answer).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn handle_action(
    service: &QueueService,
    headers: &HeaderMap,
    body: Body,
) -> Result<Value, QueueError> {
    let target = headers
        .get("x-amz-target")
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| QueueError::new("MissingAction", "the X-Amz-Target header is missing"))?;
    let action = target
        .strip_prefix("AmazonSQS.")
        .ok_or_else(|| QueueError::new("InvalidAction", format!("unknown target '{target}'")))?;
    // Batches may hold ten messages of the largest size, plus JSON escaping.
    let body = match read_limited(body, 2 * BATCH_LIMIT * QUEUE_MESSAGE_LIMIT).await {
        LimitedBody::Complete(bytes) => bytes,
        LimitedBody::TooLarge { size } => {
            return Err(QueueError::new(
                "BatchRequestTooLong",
                format!("the request of {size} bytes is too long"),
            ));
        }
        LimitedBody::Failed(message) => return Err(QueueError::invalid(message)),
    };
    let body: &[u8] = if body.is_empty() { b"{}" } else { &body };
    match action {
        "CreateQueue" => {
            let request: QueueNameRequest = parse(body)?;
            if !is_valid_queue_name(&request.queue_name) {
                return Err(QueueError::invalid(
                    "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length",
                ));
            }
            service.create(&request.queue_name);
            Ok(json!({ "QueueUrl": service.url(&request.queue_name) }))
        }
        "GetQueueUrl" => {
            let request: QueueNameRequest = parse(body)?;
            service
                .get(&request.queue_name)
                .ok_or_else(QueueError::queue_does_not_exist)?;
            Ok(json!({ "QueueUrl": service.url(&request.queue_name) }))
        }
        "ListQueues" => {
            let request: ListQueuesRequest = parse(body)?;
            let mut names: Vec<String> = service
                .queues()
                .keys()
                .filter(|name| name.starts_with(&request.queue_name_prefix))
                .cloned()
                .collect();
            names.sort();
            let urls: Vec<String> = names.iter().map(|name| service.url(name)).collect();
            Ok(json!({ "QueueUrls": urls }))
        }
        "DeleteQueue" => {
            let request: QueueUrlRequest = parse(body)?;
            let name = queue_name(&request.queue_url);
            let queue = service
                .queues()
                .remove(name)
                .ok_or_else(QueueError::queue_does_not_exist)?;
            queue.deleted.store(true, Ordering::SeqCst);
            queue.arrived.notify_waiters();
            Ok(json!({}))
        }
        "PurgeQueue" => {
            let request: QueueUrlRequest = parse(body)?;
            lookup(service, &request.queue_url)?.messages().clear();
            Ok(json!({}))
        }
        "SendMessage" => {
            let request: SendMessageRequest = parse(body)?;
            let queue = lookup(service, &request.queue_url)?;
            check_body(&request.message_body)?;
            let (id, md5) = queue.push(request.message_body);
            Ok(json!({ "MessageId": id, "MD5OfMessageBody": md5 }))
        }
        "SendMessageBatch" => {
            let request: SendMessageBatchRequest = parse(body)?;
            let queue = lookup(service, &request.queue_url)?;
            check_batch(request.entries.iter().map(|entry| entry.id.as_str()))?;
            let total: usize = request
                .entries
                .iter()
                .map(|entry| entry.message_body.len())
                .sum();
            if total > QUEUE_MESSAGE_LIMIT {
                return Err(QueueError::new(
                    "BatchRequestTooLong",
                    format!(
                        "Batch requests cannot be longer than {QUEUE_MESSAGE_LIMIT} bytes. You have sent {total} bytes."
                    ),
                ));
            }
            for entry in &request.entries {
                check_body(&entry.message_body)?;
            }
            let successful: Vec<Value> = request
                .entries
                .into_iter()
                .map(|entry| {
                    let (id, md5) = queue.push(entry.message_body);
                    json!({ "Id": entry.id, "MessageId": id, "MD5OfMessageBody": md5 })
                })
                .collect();
            Ok(json!({ "Successful": successful, "Failed": [] }))
        }
        "ReceiveMessage" => {
            let request: ReceiveMessageRequest = parse(body)?;
            let queue = lookup(service, &request.queue_url)?;
            let maximum = request.max_number_of_messages.unwrap_or(1);
            if !(1..=BATCH_LIMIT as i64).contains(&maximum) {
                return Err(QueueError::invalid(format!(
                    "Value {maximum} for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided."
                )));
            }
            let wait = match (request.wait_time_milliseconds, request.wait_time_seconds) {
                (Some(milliseconds), _) => wait_time(milliseconds, 1, "WaitTimeMilliseconds")?,
                (None, Some(seconds)) => wait_time(seconds, 1000, "WaitTimeSeconds")?,
                (None, None) => Duration::ZERO,
            };
            let messages = service.receive(&queue, maximum as usize, wait).await;
            if messages.is_empty() {
                return Ok(json!({}));
            }
            let messages: Vec<Value> = messages
                .into_iter()
                .map(|message| {
                    json!({
                        "MessageId": message.id,
                        "ReceiptHandle": message.id,
                        "MD5OfBody": message.md5,
                        "Body": message.body,
                    })
                })
                .collect();
            Ok(json!({ "Messages": messages }))
        }
        "DeleteMessage" => {
            let request: QueueUrlRequest = parse(body)?;
            lookup(service, &request.queue_url)?;
            Ok(json!({}))
        }
        "DeleteMessageBatch" => {
            let request: DeleteMessageBatchRequest = parse(body)?;
            lookup(service, &request.queue_url)?;
            check_batch(request.entries.iter().map(|entry| entry.id.as_str()))?;
            let successful: Vec<Value> = request
                .entries
                .iter()
                .map(|entry| json!({ "Id": entry.id }))
                .collect();
            Ok(json!({ "Successful": successful, "Failed": [] }))
        }
        other => Err(QueueError::new(
            "InvalidAction",
            format!("The action {other} is not valid for this endpoint."),
        )),
    }
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, QueueError> {
    serde_json::from_slice(body)
        .map_err(|error| QueueError::invalid(format!("invalid request: {error}")))
}

/// The queue name of a queue URL: its last path segment.
fn queue_name(queue_url: &str) -> &str {
    queue_url
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
}

fn lookup(service: &QueueService, queue_url: &str) -> Result<Arc<Queue>, QueueError> {
    service
        .get(queue_name(queue_url))
        .ok_or_else(QueueError::queue_does_not_exist)
}

fn wait_time(
    value: i64,
    milliseconds_per_unit: i64,
    parameter: &str,
) -> Result<Duration, QueueError> {
    let milliseconds = value.saturating_mul(milliseconds_per_unit);
    if !(0..=LONGEST_WAIT.as_millis() as i64).contains(&milliseconds) {
        return Err(QueueError::invalid(format!(
            "Value {value} for parameter {parameter} is invalid. Reason: Must be >= 0 and <= 20 seconds."
        )));
    }
    Ok(Duration::from_millis(milliseconds as u64))
}

fn check_body(body: &str) -> Result<(), QueueError> {
    if body.is_empty() {
        return Err(QueueError::new(
            "MissingParameter",
            "The request must contain the parameter MessageBody.",
        ));
    }
    if body.len() > QUEUE_MESSAGE_LIMIT {
        return Err(QueueError::invalid(format!(
            "One or more parameters are invalid. Reason: Message must be shorter than {QUEUE_MESSAGE_LIMIT} bytes."
        )));
    }
    let allowed = |character: char| matches!(character, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}');
    if !body.chars().all(allowed) {
        return Err(QueueError::new(
            "InvalidMessageContents",
            "Invalid binary character in the message body; SQS bodies are text.",
        ));
    }
    Ok(())
}

fn check_batch<'a>(ids: impl ExactSizeIterator<Item = &'a str>) -> Result<(), QueueError> {
    let count = ids.len();
    if count == 0 {
        return Err(QueueError::new(
            "EmptyBatchRequest",
            "There should be at least one entry in the request.",
        ));
    }
    if count > BATCH_LIMIT {
        return Err(QueueError::new(
            "TooManyEntriesInBatchRequest",
            format!(
                "Maximum number of entries per request are {BATCH_LIMIT}. You have sent {count}."
            ),
        ));
    }
    let mut seen = HashSet::new();
    for id in ids {
        if !seen.insert(id) {
            return Err(QueueError::new(
                "BatchEntryIdsNotDistinct",
                format!("Id {id} repeated."),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_urls() {
        assert!(is_valid_queue_name("results-1_a"));
        assert!(is_valid_queue_name("jobs.fifo"));
        assert!(!is_valid_queue_name(""));
        assert!(!is_valid_queue_name("with space"));
        assert!(!is_valid_queue_name(&"x".repeat(81)));
        assert_eq!(queue_name("http://127.0.0.1:9/queues/results"), "results");
        assert_eq!(
            queue_name("https://sqs.eu-west-1.amazonaws.com/123456789012/results/"),
            "results"
        );
    }

    #[test]
    fn md5_matches_sqs() {
        assert_eq!(md5_hex(b"hello"), "5d41402abc4b2a76b9719d911017c592");
    }
}
