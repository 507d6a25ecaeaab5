//! [`Clients`]: the SDK clients of one region that the resource modules (`role`, `bucket`,
//! `queue`, `function`, `logs`, `tagging`) share, made once per [`Deployer`](crate::Deployer).
//!
//! # Model
//!
//! Every client comes from one [`SdkConfig`] (see the `config` module: its timeouts, its
//! bounded SDK retries, its endpoint). S3 uses path-style addressing when an endpoint URL is
//! set, as AWS-compatible local servers expect. The clients hold no state of a cluster: the
//! resource modules get the names of what they act on with each call.
//!
//! These are the clients of resource management only. The engine's hot paths have their own,
//! with the SDK's retries off and the platform's `RetryPolicy` instead: the `invoker` and
//! `result_channel` modules.

use aws_config::SdkConfig;

use crate::config::endpoint;
use crate::error::AwsError;

/// The SDK clients of one region (see the module documentation).
#[derive(Debug, Clone)]
pub(crate) struct Clients {
    pub(crate) config: SdkConfig,
    pub(crate) region: String,
    pub(crate) iam: aws_sdk_iam::Client,
    pub(crate) s3: aws_sdk_s3::Client,
    pub(crate) sqs: aws_sdk_sqs::Client,
    pub(crate) lambda: aws_sdk_lambda::Client,
    pub(crate) logs: aws_sdk_cloudwatchlogs::Client,
    pub(crate) tagging: aws_sdk_resourcegroupstagging::Client,
}

impl Clients {
    /// The clients of `config`'s region, credentials and endpoint.
    pub(crate) fn new(config: &SdkConfig) -> Result<Self, AwsError> {
        let region = config.region().ok_or(AwsError::NoRegion)?.to_string();
        let s3_config = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(config.endpoint_url().is_some())
            .build();
        Ok(Self {
            config: config.clone(),
            region,
            iam: aws_sdk_iam::Client::new(config),
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            sqs: aws_sdk_sqs::Client::new(config),
            lambda: aws_sdk_lambda::Client::new(config),
            logs: aws_sdk_cloudwatchlogs::Client::new(config),
            tagging: aws_sdk_resourcegroupstagging::Client::new(config),
        })
    }

    /// The endpoint of `service` (its endpoint prefix, e.g. `lambda`), for messages.
    pub(crate) fn endpoint(&self, service: &str) -> String {
        endpoint(&self.config, service)
    }
}
