//! [`Deployer::deploy`]: creating the resources of a cluster, all or nothing.
//!
//! # Lifecycle
//!
//! `deploy` checks the [`DeploymentSpec`] and asks `sts:GetCallerIdentity` for the account and
//! partition (every name and ARN is known before anything is created, see the `names` module),
//! then creates, in this order, each resource tagged with the cluster id:
//!
//! 1. the IAM role (path `/dask-serverless/`, trusting `lambda.amazonaws.com`) and its inline
//!    policy. The role comes first: it is the cluster's lock (a second deployment of the same
//!    cluster id stops here with [`AwsError::AlreadyExists`], before touching anything), and
//!    IAM gets the most time to propagate it;
//! 2. the S3 bucket (with a `LocationConstraint` outside `us-east-1`), then the deployment zip
//!    in it (one `PutObject` up to 8 MiB, a multipart upload of 8 MiB parts above);
//! 3. the SQS queue;
//! 4. the Lambda function, with its code from the bucket. `CreateFunction` is retried for up
//!    to 30 seconds while Lambda answers that the new role "cannot be assumed" (IAM
//!    propagation); then `deploy` waits for the function's state to be `Active`, sets its
//!    reserved concurrency (if `max_concurrency` is given) and its asynchronous invocation
//!    config: no retries by Lambda (`MaximumRetryAttempts = 0`: retries belong to the engine),
//!    failures to the queue (`OnFailure` destination).
//!
//! # Rollback
//!
//! Each created resource is recorded as it is created. If a step fails, `deploy` deletes the
//! recorded resources (the same code as [`Deployer::destroy`]), then returns the step's error;
//! if some deletion fails too, the error is [`AwsError::RollbackIncomplete`], naming what is
//! left and how to remove it (`dask-serverless cleanup --cluster ID`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_lambda::types::{DestinationConfig, Environment, FunctionCode, OnFailure, State};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLocationConstraint, CompletedMultipartUpload, CompletedPart, CreateBucketConfiguration,
    Tagging,
};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::config::{caller_identity, endpoint, load_config};
use crate::destroy::Resource;
use crate::error::{Call, Failure, classify};
use crate::names::{REGION_TAG, ROLE_PATH, ResourceNames, tags};
use crate::{AwsError, AwsSettings, ClusterId};

/// Zips up to this size are uploaded in one `PutObject`; larger ones in parts of this size.
const MULTIPART_PART_SIZE: usize = 8 * 1024 * 1024;
/// How long `CreateFunction` is retried while a new role is not assumable yet.
const ROLE_PROPAGATION: Duration = Duration::from_secs(30);
/// How long a new function may stay `Pending`.
const ACTIVATION_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the results of a run stay in the queue if nobody receives them.
const MESSAGE_RETENTION_SECONDS: &str = "86400";

/// The Python runtimes a function can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Runtime {
    #[serde(rename = "python3.11")]
    Python311,
    #[serde(rename = "python3.12")]
    Python312,
    #[serde(rename = "python3.13")]
    Python313,
}

impl Runtime {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Python311 => "python3.11",
            Self::Python312 => "python3.12",
            Self::Python313 => "python3.13",
        }
    }

    fn to_lambda(self) -> aws_sdk_lambda::types::Runtime {
        match self {
            Self::Python311 => aws_sdk_lambda::types::Runtime::Python311,
            Self::Python312 => aws_sdk_lambda::types::Runtime::Python312,
            Self::Python313 => aws_sdk_lambda::types::Runtime::Python313,
        }
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for Runtime {
    type Err = AwsError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        [Self::Python311, Self::Python312, Self::Python313]
            .into_iter()
            .find(|runtime| runtime.as_str() == name)
            .ok_or_else(|| {
                AwsError::InvalidInput(format!(
                    "unsupported runtime '{name}': use python3.11, python3.12 or python3.13"
                ))
            })
    }
}

/// The instruction set of a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Architecture {
    #[serde(rename = "x86_64")]
    X86_64,
    #[serde(rename = "arm64")]
    Arm64,
}

impl Architecture {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64",
            Self::Arm64 => "arm64",
        }
    }

    fn to_lambda(self) -> aws_sdk_lambda::types::Architecture {
        match self {
            Self::X86_64 => aws_sdk_lambda::types::Architecture::X8664,
            Self::Arm64 => aws_sdk_lambda::types::Architecture::Arm64,
        }
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for Architecture {
    type Err = AwsError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "x86_64" => Ok(Self::X86_64),
            "arm64" => Ok(Self::Arm64),
            _ => Err(AwsError::InvalidInput(format!(
                "unsupported architecture '{name}': use x86_64 or arm64"
            ))),
        }
    }
}

/// What to deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentSpec {
    pub cluster_id: ClusterId,
    /// The deployment package: a zip with the handler and its dependencies.
    pub code: Bytes,
    pub runtime: Runtime,
    /// `module.function`, e.g. `dask_serverless.handler.handler`.
    pub handler: String,
    pub architecture: Architecture,
    /// 128 to 10240 MB.
    pub memory_mb: u32,
    /// 1 second to 15 minutes, whole seconds.
    pub timeout: Duration,
    pub environment: BTreeMap<String, String>,
    /// Reserved concurrency of the function, if any.
    pub max_concurrency: Option<u32>,
}

impl DeploymentSpec {
    /// A spec with defaults: Python 3.12 on x86_64, 1769 MB (one full vCPU), 5 minutes, no
    /// environment, no reserved concurrency.
    pub fn new(cluster_id: ClusterId, code: Bytes, handler: impl Into<String>) -> Self {
        Self {
            cluster_id,
            code,
            runtime: Runtime::Python312,
            handler: handler.into(),
            architecture: Architecture::X86_64,
            memory_mb: 1769,
            timeout: Duration::from_secs(300),
            environment: BTreeMap::new(),
            max_concurrency: None,
        }
    }

    /// Refuses what Lambda would refuse, before anything is created.
    fn check(&self) -> Result<(), AwsError> {
        let invalid = |message: String| Err(AwsError::InvalidInput(message));
        if self.code.is_empty() {
            return invalid("the deployment package is empty".to_string());
        }
        if self.handler.trim().is_empty() {
            return invalid("the handler is empty: expected module.function".to_string());
        }
        if !(128..=10240).contains(&self.memory_mb) {
            return invalid(format!(
                "memory size {} MB is out of Lambda's range 128 to 10240 MB",
                self.memory_mb
            ));
        }
        let seconds = self.timeout.as_secs();
        if !(1..=900).contains(&seconds) || self.timeout.subsec_nanos() != 0 {
            return invalid(format!(
                "timeout {:?} is out of Lambda's range: whole seconds from 1 to 900",
                self.timeout
            ));
        }
        for key in self.environment.keys() {
            let mut characters = key.chars();
            let valid = characters
                .next()
                .is_some_and(|first| first.is_ascii_alphabetic())
                && characters
                    .all(|character| character.is_ascii_alphanumeric() || character == '_');
            if !valid {
                return invalid(format!(
                    "invalid environment variable name '{key}': use letters, digits and '_', \
                     starting with a letter"
                ));
            }
        }
        Ok(())
    }
}

/// Every resource of a deployed cluster: enough to reach it and to destroy it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub cluster_id: ClusterId,
    pub region: String,
    pub endpoint_url: Option<String>,
    pub account_id: String,
    pub function_name: String,
    pub function_arn: String,
    pub role_name: String,
    pub role_arn: String,
    pub role_policy_name: String,
    pub bucket: String,
    pub code_key: String,
    pub queue_url: String,
    pub queue_arn: String,
}

impl Deployment {
    /// The resources, in the order [`Deployer::destroy`] deletes them.
    pub fn resources(&self) -> Vec<Resource> {
        vec![
            Resource::event_invoke_config(&self.function_name),
            Resource::function(&self.function_name),
            Resource::queue(&self.queue_url),
            Resource::bucket(&self.bucket),
            Resource::role(&self.role_name),
        ]
    }

    /// Settings reaching this deployment (with the default profile).
    pub fn settings(&self) -> AwsSettings {
        AwsSettings::new(self.region.clone(), self.endpoint_url.clone())
    }
}

/// Creates and deletes clusters' resources in one region (see the module documentation).
#[derive(Debug, Clone)]
pub struct Deployer {
    pub(crate) config: SdkConfig,
    pub(crate) region: String,
    pub(crate) iam: aws_sdk_iam::Client,
    pub(crate) s3: aws_sdk_s3::Client,
    pub(crate) sqs: aws_sdk_sqs::Client,
    pub(crate) lambda: aws_sdk_lambda::Client,
    pub(crate) tagging: aws_sdk_resourcegroupstagging::Client,
}

impl Deployer {
    /// A deployer using `config`'s region, credentials and endpoint.
    pub fn new(config: &SdkConfig) -> Result<Self, AwsError> {
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
            tagging: aws_sdk_resourcegroupstagging::Client::new(config),
        })
    }

    /// A deployer for `settings`, after [`load_config`]'s checks.
    pub async fn connect(settings: &AwsSettings) -> Result<Self, AwsError> {
        Self::new(&load_config(settings).await?)
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// The endpoint of `service` (its endpoint prefix), for messages.
    pub(crate) fn endpoint(&self, service: &str) -> String {
        endpoint(&self.config, service)
    }

    /// A [`Call`] of `service` needing `permission` on `resource`.
    pub(crate) fn call<'a>(
        &self,
        service: &'a str,
        permission: &'a str,
        resource: &'a str,
        endpoint: &'a str,
    ) -> Call<'a> {
        Call {
            service,
            permission,
            resource,
            endpoint,
        }
    }

    /// Creates every resource of `spec`'s cluster; on failure, deletes what it created.
    pub async fn deploy(&self, spec: &DeploymentSpec) -> Result<Deployment, AwsError> {
        spec.check()?;
        let identity = caller_identity(&self.config).await?;
        let names = ResourceNames::new(
            &spec.cluster_id,
            &identity.partition,
            &self.region,
            &identity.account,
        );
        let mut created = Vec::new();
        let error = match self
            .create(spec, &names, &identity.account, &mut created)
            .await
        {
            Ok(deployment) => return Ok(deployment),
            Err(error) => error,
        };
        if created.is_empty() {
            return Err(error);
        }
        tracing::warn!(
            "deployment of cluster {} failed ({error}); deleting what it created",
            spec.cluster_id
        );
        match self.delete_resources(created).await {
            Ok(_) => Err(error),
            Err(AwsError::CleanupIncomplete { failures, .. }) => {
                Err(AwsError::RollbackIncomplete {
                    error: Box::new(error),
                    cluster: spec.cluster_id.to_string(),
                    remaining: failures,
                })
            }
            Err(other) => Err(AwsError::RollbackIncomplete {
                error: Box::new(error),
                cluster: spec.cluster_id.to_string(),
                remaining: vec![other.to_string()],
            }),
        }
    }

    async fn create(
        &self,
        spec: &DeploymentSpec,
        names: &ResourceNames,
        account: &str,
        created: &mut Vec<Resource>,
    ) -> Result<Deployment, AwsError> {
        let role_arn = self.create_role(spec, names, created).await?;
        self.create_bucket(spec, names, created).await?;
        self.upload(&names.bucket, &names.code_key, &spec.code)
            .await?;
        let (queue_url, queue_arn) = self.create_queue(spec, names, created).await?;
        let function_arn = self
            .create_function(spec, names, &role_arn, &queue_arn, created)
            .await?;
        Ok(Deployment {
            cluster_id: spec.cluster_id.clone(),
            region: self.region.clone(),
            endpoint_url: self.config.endpoint_url().map(str::to_string),
            account_id: account.to_string(),
            function_name: names.function.clone(),
            function_arn,
            role_name: names.role.clone(),
            role_arn,
            role_policy_name: names.role_policy.clone(),
            bucket: names.bucket.clone(),
            code_key: names.code_key.clone(),
            queue_url,
            queue_arn,
        })
    }

    fn all_tags(&self, cluster: &ClusterId) -> Vec<(&'static str, String)> {
        let mut all = tags(cluster).to_vec();
        all.push((REGION_TAG, self.region.clone()));
        all
    }

    async fn create_role(
        &self,
        spec: &DeploymentSpec,
        names: &ResourceNames,
        created: &mut Vec<Resource>,
    ) -> Result<String, AwsError> {
        let endpoint = self.endpoint("iam");
        let resource = format!("role '{}'", names.role);
        let call = self.call("IAM", "iam:CreateRole", &resource, &endpoint);
        let mut request = self
            .iam
            .create_role()
            .role_name(&names.role)
            .path(ROLE_PATH)
            .assume_role_policy_document(ResourceNames::trust_policy().to_string())
            .description(format!(
                "Role of the functions of dask-serverless cluster {}",
                spec.cluster_id
            ));
        for (key, value) in self.all_tags(&spec.cluster_id) {
            let tag = aws_sdk_iam::types::Tag::builder()
                .key(key)
                .value(value)
                .build()
                .map_err(|error| {
                    call.error(Failure::Other {
                        message: error.to_string(),
                    })
                })?;
            request = request.tags(tag);
        }
        let answer = match request.send().await {
            Ok(answer) => answer,
            Err(error) => {
                let failure = classify(&error);
                if failure.code() == Some("EntityAlreadyExists") {
                    return Err(AwsError::AlreadyExists {
                        cluster: spec.cluster_id.to_string(),
                        resource,
                    });
                }
                return Err(call.error(failure));
            }
        };
        created.push(Resource::role(&names.role));
        let role_arn = answer
            .role()
            .map(|role| role.arn().to_string())
            .unwrap_or_default();
        let call = self.call("IAM", "iam:PutRolePolicy", &resource, &endpoint);
        self.iam
            .put_role_policy()
            .role_name(&names.role)
            .policy_name(&names.role_policy)
            .policy_document(names.role_policy_document().to_string())
            .send()
            .await
            .map_err(|error| call.sdk(error))?;
        Ok(role_arn)
    }

    async fn create_bucket(
        &self,
        spec: &DeploymentSpec,
        names: &ResourceNames,
        created: &mut Vec<Resource>,
    ) -> Result<(), AwsError> {
        let endpoint = self.endpoint("s3");
        let resource = format!("bucket '{}'", names.bucket);
        let call = self.call("S3", "s3:CreateBucket", &resource, &endpoint);
        let mut request = self.s3.create_bucket().bucket(&names.bucket);
        if self.region != "us-east-1" {
            request = request.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(self.region.as_str()))
                    .build(),
            );
        }
        if let Err(error) = request.send().await {
            let failure = classify(&error);
            return Err(match failure.code() {
                Some("BucketAlreadyOwnedByYou") => AwsError::AlreadyExists {
                    cluster: spec.cluster_id.to_string(),
                    resource,
                },
                Some("BucketAlreadyExists") => AwsError::InvalidInput(format!(
                    "the bucket name '{}' is taken by another AWS account: pick another \
                     cluster id",
                    names.bucket
                )),
                _ => call.error(failure),
            });
        }
        created.push(Resource::bucket(&names.bucket));
        let call = self.call("S3", "s3:PutBucketTagging", &resource, &endpoint);
        let tag_set = self
            .all_tags(&spec.cluster_id)
            .into_iter()
            .map(|(key, value)| {
                aws_sdk_s3::types::Tag::builder()
                    .key(key)
                    .value(value)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .and_then(|tag_set| Tagging::builder().set_tag_set(Some(tag_set)).build())
            .map_err(|error| {
                call.error(Failure::Other {
                    message: error.to_string(),
                })
            })?;
        self.s3
            .put_bucket_tagging()
            .bucket(&names.bucket)
            .tagging(tag_set)
            .send()
            .await
            .map_err(|error| call.sdk(error))?;
        Ok(())
    }

    /// Uploads the deployment zip: one request up to [`MULTIPART_PART_SIZE`], a multipart
    /// upload above (aborted if a part fails).
    async fn upload(&self, bucket: &str, key: &str, code: &Bytes) -> Result<(), AwsError> {
        let endpoint = self.endpoint("s3");
        let resource = format!("object 's3://{bucket}/{key}'");
        if code.len() <= MULTIPART_PART_SIZE {
            let call = self.call("S3", "s3:PutObject", &resource, &endpoint);
            self.s3
                .put_object()
                .bucket(bucket)
                .key(key)
                .content_type("application/zip")
                .body(ByteStream::from(code.clone()))
                .send()
                .await
                .map_err(|error| call.sdk(error))?;
            return Ok(());
        }
        let call = self.call("S3", "s3:PutObject", &resource, &endpoint);
        let started = self
            .s3
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .content_type("application/zip")
            .send()
            .await
            .map_err(|error| call.sdk(error))?;
        let upload_id = started.upload_id().unwrap_or_default().to_string();
        let result = self.upload_parts(bucket, key, &upload_id, code, call).await;
        if result.is_err() {
            let aborted = self
                .s3
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
            if let Err(error) = aborted {
                tracing::warn!(
                    "could not abort the multipart upload of {resource}: {}",
                    classify(&error).message()
                );
            }
        }
        result
    }

    async fn upload_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        code: &Bytes,
        call: Call<'_>,
    ) -> Result<(), AwsError> {
        let mut parts = Vec::new();
        for (index, start) in (0..code.len()).step_by(MULTIPART_PART_SIZE).enumerate() {
            let part_number = i32::try_from(index + 1).unwrap_or(i32::MAX);
            let end = (start + MULTIPART_PART_SIZE).min(code.len());
            let answer = self
                .s3
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(part_number)
                .body(ByteStream::from(code.slice(start..end)))
                .send()
                .await
                .map_err(|error| call.sdk(error))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(part_number)
                    .set_e_tag(answer.e_tag().map(str::to_string))
                    .build(),
            );
        }
        self.s3
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|error| call.sdk(error))?;
        Ok(())
    }

    async fn create_queue(
        &self,
        spec: &DeploymentSpec,
        names: &ResourceNames,
        created: &mut Vec<Resource>,
    ) -> Result<(String, String), AwsError> {
        let endpoint = self.endpoint("sqs");
        let resource = format!("queue '{}'", names.queue);
        let call = self.call("SQS", "sqs:CreateQueue", &resource, &endpoint);
        let mut request = self.sqs.create_queue().queue_name(&names.queue).attributes(
            aws_sdk_sqs::types::QueueAttributeName::MessageRetentionPeriod,
            MESSAGE_RETENTION_SECONDS,
        );
        for (key, value) in self.all_tags(&spec.cluster_id) {
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
                        cluster: spec.cluster_id.to_string(),
                        resource,
                    });
                }
                return Err(call.error(failure));
            }
        };
        let queue_url = answer.queue_url().unwrap_or_default().to_string();
        created.push(Resource::queue(&queue_url));
        let call = self.call("SQS", "sqs:GetQueueAttributes", &resource, &endpoint);
        let attributes = self
            .sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|error| call.sdk(error))?;
        let queue_arn = attributes
            .attributes()
            .and_then(|found| found.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
            .cloned()
            .unwrap_or_else(|| names.queue_arn.clone());
        Ok((queue_url, queue_arn))
    }

    async fn create_function(
        &self,
        spec: &DeploymentSpec,
        names: &ResourceNames,
        role_arn: &str,
        queue_arn: &str,
        created: &mut Vec<Resource>,
    ) -> Result<String, AwsError> {
        let endpoint = self.endpoint("lambda");
        let resource = format!("function '{}'", names.function);
        let call = self.call("Lambda", "lambda:CreateFunction", &resource, &endpoint);
        let mut request = self
            .lambda
            .create_function()
            .function_name(&names.function)
            .description(format!("dask-serverless cluster {}", spec.cluster_id))
            .runtime(spec.runtime.to_lambda())
            .handler(&spec.handler)
            .architectures(spec.architecture.to_lambda())
            .memory_size(i32::try_from(spec.memory_mb).unwrap_or(i32::MAX))
            .timeout(i32::try_from(spec.timeout.as_secs()).unwrap_or(i32::MAX))
            .role(role_arn)
            .code(
                FunctionCode::builder()
                    .s3_bucket(&names.bucket)
                    .s3_key(&names.code_key)
                    .build(),
            )
            .environment(
                Environment::builder()
                    .set_variables(Some(
                        spec.environment
                            .iter()
                            .map(|(key, value)| (key.clone(), value.clone()))
                            .collect::<HashMap<_, _>>(),
                    ))
                    .build(),
            );
        for (key, value) in self.all_tags(&spec.cluster_id) {
            request = request.tags(key, value);
        }
        let started = Instant::now();
        let mut attempt = 0u32;
        let answer = loop {
            attempt += 1;
            match request.clone().send().await {
                Ok(answer) => break answer,
                Err(error) => {
                    let failure = classify(&error);
                    let role_not_ready = failure.code() == Some("InvalidParameterValueException")
                        && failure.message().contains("cannot be assumed");
                    if role_not_ready && started.elapsed() < ROLE_PROPAGATION {
                        let delay = Duration::from_millis(250 * u64::from(attempt.min(8)));
                        tracing::debug!("role {} not assumable yet; retrying", names.role);
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    if failure.code() == Some("ResourceConflictException") {
                        return Err(AwsError::AlreadyExists {
                            cluster: spec.cluster_id.to_string(),
                            resource,
                        });
                    }
                    return Err(call.error(failure));
                }
            }
        };
        created.push(Resource::event_invoke_config(&names.function));
        created.push(Resource::function(&names.function));
        let function_arn = answer
            .function_arn()
            .map(str::to_string)
            .unwrap_or_else(|| names.function_arn.clone());
        self.wait_until_active(&names.function, &resource, &endpoint)
            .await?;
        if let Some(max_concurrency) = spec.max_concurrency {
            let call = self.call(
                "Lambda",
                "lambda:PutFunctionConcurrency",
                &resource,
                &endpoint,
            );
            self.lambda
                .put_function_concurrency()
                .function_name(&names.function)
                .reserved_concurrent_executions(i32::try_from(max_concurrency).unwrap_or(i32::MAX))
                .send()
                .await
                .map_err(|error| call.sdk(error))?;
        }
        let call = self.call(
            "Lambda",
            "lambda:PutFunctionEventInvokeConfig",
            &resource,
            &endpoint,
        );
        self.lambda
            .put_function_event_invoke_config()
            .function_name(&names.function)
            .maximum_retry_attempts(0)
            .destination_config(
                DestinationConfig::builder()
                    .on_failure(OnFailure::builder().destination(queue_arn).build())
                    .build(),
            )
            .send()
            .await
            .map_err(|error| call.sdk(error))?;
        Ok(function_arn)
    }

    async fn wait_until_active(
        &self,
        function: &str,
        resource: &str,
        endpoint: &str,
    ) -> Result<(), AwsError> {
        let call = self.call(
            "Lambda",
            "lambda:GetFunctionConfiguration",
            resource,
            endpoint,
        );
        let started = Instant::now();
        let mut delay = Duration::from_millis(200);
        loop {
            let answer = self
                .lambda
                .get_function_configuration()
                .function_name(function)
                .send()
                .await
                .map_err(|error| call.sdk(error))?;
            match answer.state() {
                Some(State::Active) => return Ok(()),
                Some(State::Failed) | Some(State::Inactive) => {
                    return Err(AwsError::FunctionFailed {
                        function: function.to_string(),
                        reason: format!(
                            "{}: {}",
                            answer
                                .state_reason_code()
                                .map(|code| code.as_str().to_string())
                                .unwrap_or_default(),
                            answer.state_reason().unwrap_or_default()
                        ),
                    });
                }
                _ if started.elapsed() > ACTIVATION_TIMEOUT => {
                    return Err(AwsError::FunctionFailed {
                        function: function.to_string(),
                        reason: format!("still pending after {ACTIVATION_TIMEOUT:?}"),
                    });
                }
                _ => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DeploymentSpec {
        DeploymentSpec::new(
            ClusterId::new("abc").unwrap(),
            Bytes::from_static(b"PK"),
            "handler.handler",
        )
    }

    #[test]
    fn specs_are_checked_before_anything_is_created() {
        assert!(spec().check().is_ok());
        let mut bad = spec();
        bad.memory_mb = 64;
        assert!(
            bad.check()
                .unwrap_err()
                .to_string()
                .contains("128 to 10240")
        );
        let mut bad = spec();
        bad.timeout = Duration::from_secs(901);
        assert!(bad.check().is_err());
        let mut bad = spec();
        bad.environment.insert("1X".to_string(), String::new());
        assert!(bad.check().is_err());
        let mut bad = spec();
        bad.code = Bytes::new();
        assert!(bad.check().is_err());
    }

    #[test]
    fn runtimes_and_architectures_parse() {
        assert_eq!("python3.13".parse::<Runtime>().unwrap(), Runtime::Python313);
        assert!("python2.7".parse::<Runtime>().is_err());
        assert_eq!(
            "arm64".parse::<Architecture>().unwrap(),
            Architecture::Arm64
        );
        assert!("x86".parse::<Architecture>().is_err());
    }

    #[test]
    fn deployments_round_trip_through_json() {
        let deployment = Deployment {
            cluster_id: ClusterId::new("abc").unwrap(),
            region: "eu-west-1".to_string(),
            endpoint_url: None,
            account_id: "123456789012".to_string(),
            function_name: "dask-serverless-abc".to_string(),
            function_arn: "arn:aws:lambda:eu-west-1:123456789012:function:dask-serverless-abc"
                .to_string(),
            role_name: "dask-serverless-abc".to_string(),
            role_arn: "arn:aws:iam::123456789012:role/dask-serverless/dask-serverless-abc"
                .to_string(),
            role_policy_name: "dask-serverless-abc".to_string(),
            bucket: "dask-serverless-abc-123456789012".to_string(),
            code_key: "deployment/code.zip".to_string(),
            queue_url: "https://sqs.eu-west-1.amazonaws.com/123456789012/dask-serverless-abc"
                .to_string(),
            queue_arn: "arn:aws:sqs:eu-west-1:123456789012:dask-serverless-abc".to_string(),
        };
        let text = serde_json::to_string(&deployment).unwrap();
        assert_eq!(
            serde_json::from_str::<Deployment>(&text).unwrap(),
            deployment
        );
        let tampered = text.replace("\"abc\"", "\"NOT VALID\"");
        assert!(serde_json::from_str::<Deployment>(&tampered).is_err());
    }
}
