//! [`LocalQueue`]: a result channel over the SQS JSON protocol, as served by the local platform.
//!
//! Messages are text (SQS bodies are text): binary data must be encoded by the sender. Sends are
//! grouped into `SendMessageBatch` calls of at most 10 messages and at most [`MESSAGE_LIMIT`]
//! bytes, in order. A receive asks for up to 10 messages with a long poll of at most 20 seconds
//! (SQS's longest), sending the wait also as the local platform's non-standard `WaitTimeMilliseconds`
//! for sub-second precision, then deletes what it received, as SQS requires.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::OnceCell;

use crate::http::{Answer, HttpClient};
use crate::{MESSAGE_LIMIT, PlatformError, ResultChannel, RetryPolicy};

/// Most messages per SQS batch and per receive.
/// Messages in one SQS batch request.
pub const BATCH_LIMIT: usize = 10;
/// SQS's longest long poll.
const LONGEST_WAIT: Duration = Duration::from_secs(20);

/// A queue of the queue service at an HTTP endpoint, used as a [`ResultChannel`].
#[derive(Debug)]
pub struct LocalQueue {
    http: HttpClient,
    queue_name: String,
    queue_url: OnceCell<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct QueueUrlAnswer {
    queue_url: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchAnswer {
    #[serde(default)]
    failed: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReceiveAnswer {
    #[serde(default)]
    messages: Vec<ReceivedMessage>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReceivedMessage {
    receipt_handle: String,
    body: String,
}

impl LocalQueue {
    /// The queue `queue_name` of the queue service at `endpoint`; nothing is sent until used.
    pub fn new(endpoint: impl Into<String>, queue_name: impl Into<String>) -> Self {
        Self {
            http: HttpClient::new(endpoint.into()),
            queue_name: queue_name.into(),
            queue_url: OnceCell::new(),
        }
    }

    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.http.retry = retry;
        self
    }

    pub fn queue_name(&self) -> &str {
        &self.queue_name
    }

    /// Creates the queue if it does not exist yet.
    pub async fn create(&self) -> Result<(), PlatformError> {
        let answer = self
            .call("CreateQueue", json!({ "QueueName": self.queue_name }))
            .await?;
        let created: QueueUrlAnswer = parse(&answer)?;
        let _ = self.queue_url.set(created.queue_url);
        Ok(())
    }

    /// Deletes the queue and the messages in it.
    pub async fn delete(&self) -> Result<(), PlatformError> {
        let queue_url = self.queue_url().await?;
        self.call("DeleteQueue", json!({ "QueueUrl": queue_url }))
            .await?;
        Ok(())
    }

    /// The queue's URL, asked once with `GetQueueUrl`.
    pub async fn queue_url(&self) -> Result<String, PlatformError> {
        self.queue_url
            .get_or_try_init(|| async {
                let answer = self
                    .call("GetQueueUrl", json!({ "QueueName": self.queue_name }))
                    .await?;
                parse::<QueueUrlAnswer>(&answer).map(|found| found.queue_url)
            })
            .await
            .cloned()
    }

    /// One SQS action; an error answer becomes a [`PlatformError`].
    async fn call(
        &self,
        action: &str,
        request: serde_json::Value,
    ) -> Result<Answer, PlatformError> {
        let target = format!("AmazonSQS.{action}");
        let what = format!("{action} on queue '{}'", self.queue_name);
        let answer = self
            .http
            .post(
                &what,
                "/",
                &[
                    ("X-Amz-Target", target.as_str()),
                    ("Content-Type", "application/x-amz-json-1.0"),
                ],
                Bytes::from(request.to_string()),
            )
            .await?;
        if answer.status.is_success() {
            return Ok(answer);
        }
        let (error_type, _) = answer.aws_error();
        Err(match error_type.as_str() {
            "QueueDoesNotExist" | "AWS.SimpleQueueService.NonExistentQueue" => {
                PlatformError::NotFound {
                    what: format!("queue '{}'", self.queue_name),
                }
            }
            _ if answer.status.is_server_error()
                || answer.status == StatusCode::SERVICE_UNAVAILABLE =>
            {
                PlatformError::Unavailable {
                    endpoint: self.http.endpoint.clone(),
                    message: answer.aws_error().1,
                }
            }
            _ => answer.unexpected(&what),
        })
    }
}

fn parse<'a, T: Deserialize<'a>>(answer: &'a Answer) -> Result<T, PlatformError> {
    serde_json::from_slice(&answer.body).map_err(|error| PlatformError::Protocol {
        message: format!("undecodable queue answer: {error}"),
    })
}

/// Groups messages, in order, into batches of at most [`BATCH_LIMIT`] messages and
/// [`MESSAGE_LIMIT`] bytes: what one SQS `SendMessageBatch` accepts. Shared by every result
/// channel that speaks the SQS protocol.
pub fn message_batches(messages: Vec<String>) -> Vec<Vec<String>> {
    let mut batches: Vec<Vec<String>> = Vec::new();
    let mut size = 0;
    for message in messages {
        let full = batches
            .last()
            .is_none_or(|batch| batch.len() == BATCH_LIMIT || size + message.len() > MESSAGE_LIMIT);
        if full {
            batches.push(Vec::new());
            size = 0;
        }
        size += message.len();
        if let Some(batch) = batches.last_mut() {
            batch.push(message);
        }
    }
    batches
}

/// Checks messages against what an SQS queue accepts (text of at most [`MESSAGE_LIMIT`] bytes)
/// and turns them into the texts a send request carries.
pub fn message_texts(messages: Vec<Bytes>) -> Result<Vec<String>, PlatformError> {
    messages
        .into_iter()
        .map(|message| {
            if message.len() > MESSAGE_LIMIT {
                return Err(PlatformError::PayloadTooLarge {
                    size: message.len(),
                    limit: MESSAGE_LIMIT,
                });
            }
            String::from_utf8(message.to_vec()).map_err(|_| PlatformError::Protocol {
                message: "queue messages are text: encode binary data before sending it"
                    .to_string(),
            })
        })
        .collect()
}

#[async_trait]
impl ResultChannel for LocalQueue {
    async fn send(&self, messages: Vec<Bytes>) -> Result<(), PlatformError> {
        let texts = message_texts(messages)?;
        if texts.is_empty() {
            return Ok(());
        }
        let queue_url = self.queue_url().await?;
        for batch in message_batches(texts) {
            let entries: Vec<serde_json::Value> = batch
                .into_iter()
                .enumerate()
                .map(|(index, body)| json!({ "Id": index.to_string(), "MessageBody": body }))
                .collect();
            let answer = self
                .call(
                    "SendMessageBatch",
                    json!({ "QueueUrl": queue_url, "Entries": entries }),
                )
                .await?;
            let sent: BatchAnswer = parse(&answer)?;
            if !sent.failed.is_empty() {
                return Err(PlatformError::Protocol {
                    message: format!("the queue refused messages: {:?}", sent.failed),
                });
            }
        }
        Ok(())
    }

    async fn receive(&self, max_wait: Duration) -> Result<Vec<Bytes>, PlatformError> {
        let queue_url = self.queue_url().await?;
        let wait = max_wait.min(LONGEST_WAIT);
        let answer = self
            .call(
                "ReceiveMessage",
                json!({
                    "QueueUrl": queue_url,
                    "MaxNumberOfMessages": BATCH_LIMIT,
                    "WaitTimeSeconds": wait.as_secs(),
                    "WaitTimeMilliseconds": wait.as_millis() as u64,
                }),
            )
            .await?;
        let received: ReceiveAnswer = parse(&answer)?;
        if received.messages.is_empty() {
            return Ok(Vec::new());
        }
        let entries: Vec<serde_json::Value> = received
            .messages
            .iter()
            .enumerate()
            .map(|(index, message)| json!({ "Id": index.to_string(), "ReceiptHandle": message.receipt_handle }))
            .collect();
        self.call(
            "DeleteMessageBatch",
            json!({ "QueueUrl": queue_url, "Entries": entries }),
        )
        .await?;
        Ok(received
            .messages
            .into_iter()
            .map(|message| Bytes::from(message.body))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_count_and_size() {
        let small: Vec<String> = (0..25).map(|index| index.to_string()).collect();
        let sizes: Vec<usize> = message_batches(small).iter().map(Vec::len).collect();
        assert_eq!(sizes, [10, 10, 5]);
        let large: Vec<String> = (0..3).map(|_| "x".repeat(MESSAGE_LIMIT / 2)).collect();
        let sizes: Vec<usize> = message_batches(large).iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 1]);
        assert!(message_batches(Vec::new()).is_empty());
    }
}
