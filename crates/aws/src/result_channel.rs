//! [`SqsQueue`]: an SQS queue as the [`ResultChannel`] of a cluster.
//!
//! Messages are text (SQS bodies are text): binary data must be encoded by the sender. Sends go
//! out in order, in `SendMessageBatch` calls of at most 10 messages and at most
//! [`MESSAGE_LIMIT`](dask_serverless_platform::MESSAGE_LIMIT) (1 MiB) of bodies. A receive long-polls for up to 10 messages
//! (`WaitTimeSeconds` = the wait rounded up to whole seconds, at most 20, SQS's longest), then
//! deletes what it received with one `DeleteMessageBatch`; a message whose deletion fails comes
//! back after the queue's visibility timeout, so the engine must tolerate a repeated message.
//!
//! Records of failed asynchronous invocations arrive here too (the queue is the function's
//! on-failure destination), in Lambda's destination shape: `requestContext`, `requestPayload`,
//! `responseContext`, `responsePayload` with `errorType` and `errorMessage`.
//!
//! Throttles, server errors and connection failures are retried by the [`RetryPolicy`];
//! throttles while the queue's client (and its clones) makes progress.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, SendMessageBatchRequestEntry};
use bytes::Bytes;
use dask_serverless_platform::{
    BATCH_LIMIT, LastAccepted, PlatformError, ResultChannel, RetryPolicy, message_batches,
    message_texts,
};

use crate::config::{AwsSettings, CONNECT_TIMEOUT, endpoint, load_config};
use crate::error::{AwsError, Failure};
use crate::retry::{Exhausted, with_retries};

/// SQS's longest long poll, in seconds.
const LONGEST_WAIT_SECONDS: u64 = 20;
/// Read timeout of the client: longer than the longest long poll.
const READ_TIMEOUT: Duration = Duration::from_secs(LONGEST_WAIT_SECONDS + 10);

/// A queue of SQS, used as a result channel (see the module documentation).
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    retry: RetryPolicy,
    last_accepted: LastAccepted,
    endpoint: String,
}

impl SqsQueue {
    /// The queue at `queue_url`, reached with `config`; nothing is sent until used.
    pub fn new(config: &SdkConfig, queue_url: impl Into<String>) -> Self {
        let sqs_config = aws_sdk_sqs::config::Builder::from(config)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .read_timeout(READ_TIMEOUT)
                    .build(),
            )
            .build();
        Self {
            client: aws_sdk_sqs::Client::from_conf(sqs_config),
            queue_url: queue_url.into(),
            retry: RetryPolicy::default(),
            last_accepted: LastAccepted::new(),
            endpoint: endpoint(config, "sqs"),
        }
    }

    /// The queue at `queue_url` for `settings`, after [`load_config`]'s checks.
    pub async fn connect(
        settings: &AwsSettings,
        queue_url: impl Into<String>,
    ) -> Result<Self, AwsError> {
        Ok(Self::new(&load_config(settings).await?, queue_url))
    }

    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    fn error(&self, what: &str, exhausted: Exhausted<Failure>) -> PlatformError {
        match &exhausted.error {
            Failure::Service { code, .. }
                if code == "QueueDoesNotExist"
                    || code == "AWS.SimpleQueueService.NonExistentQueue" =>
            {
                PlatformError::NotFound {
                    what: format!("queue {}", self.queue_url),
                }
            }
            _ => exhausted.into_platform_error(what, &self.endpoint),
        }
    }
}

/// `WaitTimeSeconds` for a receive waiting at most `max_wait`.
fn wait_seconds(max_wait: Duration) -> i32 {
    let seconds = max_wait.as_secs() + u64::from(max_wait.subsec_nanos() > 0);
    seconds.min(LONGEST_WAIT_SECONDS) as i32
}

#[async_trait]
impl ResultChannel for SqsQueue {
    async fn send(&self, messages: Vec<Bytes>) -> Result<(), PlatformError> {
        let texts = message_texts(messages)?;
        let what = format!("SendMessageBatch to {}", self.queue_url);
        for batch in message_batches(texts) {
            let entries = batch
                .into_iter()
                .enumerate()
                .map(|(index, body)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(index.to_string())
                        .message_body(body)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| PlatformError::Protocol {
                    message: format!("{what}: {error}"),
                })?;
            let attempt = || {
                self.client
                    .send_message_batch()
                    .queue_url(&self.queue_url)
                    .set_entries(Some(entries.clone()))
                    .send()
            };
            let sent = with_retries(&self.retry, &self.last_accepted, &what, attempt)
                .await
                .map_err(|exhausted| self.error(&what, exhausted))?;
            if !sent.failed().is_empty() {
                let failures: Vec<String> = sent
                    .failed()
                    .iter()
                    .map(|failed| {
                        format!(
                            "message {}: {}: {}",
                            failed.id(),
                            failed.code(),
                            failed.message().unwrap_or_default()
                        )
                    })
                    .collect();
                return Err(PlatformError::Protocol {
                    message: format!("the queue refused messages: {}", failures.join("; ")),
                });
            }
        }
        Ok(())
    }

    async fn receive(&self, max_wait: Duration) -> Result<Vec<Bytes>, PlatformError> {
        let what = format!("ReceiveMessage from {}", self.queue_url);
        let attempt = || {
            self.client
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(BATCH_LIMIT as i32)
                .wait_time_seconds(wait_seconds(max_wait))
                .send()
        };
        let received = with_retries(&self.retry, &self.last_accepted, &what, attempt)
            .await
            .map_err(|exhausted| self.error(&what, exhausted))?;
        let messages = received.messages();
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let entries = messages
            .iter()
            .enumerate()
            .filter_map(|(index, message)| {
                let receipt_handle = message.receipt_handle()?;
                DeleteMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .receipt_handle(receipt_handle)
                    .build()
                    .ok()
            })
            .collect::<Vec<_>>();
        let what = format!("DeleteMessageBatch on {}", self.queue_url);
        let attempt = || {
            self.client
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries.clone()))
                .send()
        };
        let deleted = with_retries(&self.retry, &self.last_accepted, &what, attempt)
            .await
            .map_err(|exhausted| self.error(&what, exhausted))?;
        for failed in deleted.failed() {
            tracing::warn!(
                "could not delete message {} from {}: {}: {}; it will be received again",
                failed.id(),
                self.queue_url,
                failed.code(),
                failed.message().unwrap_or_default()
            );
        }
        Ok(messages
            .iter()
            .map(|message| Bytes::from(message.body().unwrap_or_default().to_string()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_round_up_to_whole_seconds_at_most_twenty() {
        assert_eq!(wait_seconds(Duration::ZERO), 0);
        assert_eq!(wait_seconds(Duration::from_millis(1)), 1);
        assert_eq!(wait_seconds(Duration::from_millis(2500)), 3);
        assert_eq!(wait_seconds(Duration::from_secs(60)), 20);
    }
}
