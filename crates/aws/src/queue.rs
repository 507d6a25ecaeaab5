//! The cluster's SQS queue: the result channel of its runs, and its function's on-failure
//! destination. Created third. (Sending and receiving on it is the `result_channel` module's.)
//!
//! # Create
//!
//! [`create`] makes the queue `dask-serverless-<cluster>`, tagged with the cluster id, the
//! creator and the region, keeping unreceived messages for a day, records it for rollback (by
//! its URL), then asks for its ARN, which the function's on-failure destination needs. A queue
//! of that name already there means the cluster exists ([`AwsError::AlreadyExists`]).
//!
//! # Delete
//!
//! [`delete`] deletes the queue by its URL; a queue that is already gone is an
//! [`Outcome::AlreadyGone`].
//!
//! # Find by tag
//!
//! Queues are found through the Resource Groups Tagging API with the other regional resources
//! (see the `tagging` module), which answers ARNs; [`from_tagged`] asks SQS for the URL of each
//! queue among them, skipping queues deleted in the meantime.

use std::time::SystemTime;

use crate::clients::Clients;
use crate::error::{AwsError, Call, classify};
use crate::names::ResourceNames;
use crate::resource::{Outcome, Resource};
use crate::tagging::TaggedArn;

/// The resource type of queues in the Resource Groups Tagging API.
pub(crate) const TAGGING_TYPE: &str = "sqs";
/// How long the results of a run stay in the queue if nobody receives them.
const MESSAGE_RETENTION_SECONDS: &str = "86400";

/// A created queue: its URL (for clients) and its ARN (for policies and destinations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CreatedQueue {
    pub(crate) url: String,
    pub(crate) arn: String,
}

/// Creates the queue of `names`.
pub(crate) async fn create(
    clients: &Clients,
    names: &ResourceNames,
    created: &mut Vec<Resource>,
) -> Result<CreatedQueue, AwsError> {
    let endpoint = clients.endpoint("sqs");
    let resource = format!("queue '{}'", names.queue);
    let call = Call::new("SQS", "sqs:CreateQueue", &resource, &endpoint);
    let mut request = clients
        .sqs
        .create_queue()
        .queue_name(&names.queue)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::MessageRetentionPeriod,
            MESSAGE_RETENTION_SECONDS,
        );
    for (key, value) in names.tags(SystemTime::now()) {
        request = request.tags(key, value);
    }
    let answer = match request.send().await {
        Ok(answer) => answer,
        Err(error) => {
            let failure = classify(&error);
            if failure.code() == Some("QueueAlreadyExists")
                || failure.code() == Some("QueueNameExists")
            {
                return Err(AwsError::AlreadyExists {
                    cluster: names.cluster.to_string(),
                    resource,
                });
            }
            return Err(call.error(failure));
        }
    };
    let url = answer.queue_url().unwrap_or_default().to_string();
    created.push(Resource::queue(&url));
    let call = Call::new("SQS", "sqs:GetQueueAttributes", &resource, &endpoint);
    let attributes = clients
        .sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|error| call.sdk(error))?;
    let arn = attributes
        .attributes()
        .and_then(|found| found.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .cloned()
        .unwrap_or_else(|| names.queue_arn.clone());
    Ok(CreatedQueue { url, arn })
}

/// Deletes the queue `resource` names (by its URL).
pub(crate) async fn delete(clients: &Clients, resource: &Resource) -> Result<Outcome, AwsError> {
    let endpoint = clients.endpoint("sqs");
    let described = resource.to_string();
    let call = Call::new("SQS", "sqs:DeleteQueue", &described, &endpoint);
    let result = clients
        .sqs
        .delete_queue()
        .queue_url(&resource.name)
        .send()
        .await;
    call.deletion(result)
}

/// The queue a tagged ARN names, by its URL; `None` if the ARN names no queue or the queue is
/// gone.
pub(crate) async fn from_tagged(
    clients: &Clients,
    arn: &TaggedArn,
) -> Result<Option<Resource>, AwsError> {
    if arn.service != "sqs" {
        return Ok(None);
    }
    let name = &arn.resource;
    let endpoint = clients.endpoint("sqs");
    let resource = format!("queue '{name}'");
    let call = Call::new("SQS", "sqs:GetQueueUrl", &resource, &endpoint);
    match clients
        .sqs
        .get_queue_url()
        .queue_name(name)
        .queue_owner_aws_account_id(&arn.account)
        .send()
        .await
    {
        Ok(answer) => Ok(answer.queue_url().map(Resource::queue)),
        Err(error) => {
            let failure = classify(&error);
            if failure.is_not_found() {
                Ok(None)
            } else {
                Err(call.error(failure))
            }
        }
    }
}
