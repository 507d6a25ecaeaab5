//! [`Deployer`]: deploying a cluster all or nothing, destroying it, and cleaning up leftovers
//! by tag. The orchestration only: each resource's calls are its own module's (`role`,
//! `bucket`, `queue`, `function`).
//!
//! # Deploy
//!
//! [`Deployer::deploy`] checks the [`DeploymentSpec`] and asks `sts:GetCallerIdentity` for the
//! account and partition, so that every name and ARN is known before anything is created (see
//! the `names` module). Then it creates, in this order, each resource tagged with the cluster
//! id, its creator and its region:
//!
//! 1. the IAM role and its inline policy (`role`): first, because it is the cluster's lock (a
//!    second deployment of the same cluster id stops there, before touching anything) and
//!    because IAM gets the most time to propagate it;
//! 2. the S3 bucket, then the deployment zip in it (`bucket`);
//! 3. the SQS queue (`queue`);
//! 4. the Lambda function, which needs all three, and its asynchronous invocation config
//!    (`function`). Its log group is Lambda's to create, at the first invocation (never during
//!    a deployment, so a rollback has none to delete); [`Deployer::destroy`] deletes it.
//!
//! [`Deployer::deploy_reporting`] tells an observer each [`DeployStep`] as it begins (a client
//! shows them as a progress line: IAM's propagation and the function's activation take seconds).
//! [`Deployer::first_invocation`] then invokes the new function once and waits for its answer:
//! the first cold start, paid at start rather than by the first compute, and the proof that the
//! package imports (a broken one is [`AwsError::FunctionBroken`], with the runtime's error).
//!
//! # Rollback
//!
//! Each resource module records a resource as soon as it exists. If a step fails, `deploy`
//! deletes the recorded resources (the same code as [`Deployer::destroy`]), then returns the
//! step's error; if some deletion fails too, the error is [`AwsError::RollbackIncomplete`],
//! naming what is left and how to remove it (`dask-serverless cleanup --cluster ID
//! --older-than 0`: the rolled-back resources carry fresh last-seen marks).
//!
//! # Destroy and clean up
//!
//! [`Deployer::destroy`] deletes the resources a [`Deployment`] names; [`Deployer::cleanup`]
//! deletes those [`Deployer::leftovers`] finds by tag, without a record: the functions, queues
//! and buckets of the region through the Resource Groups Tagging API (`tagging`), and the roles
//! of the region (`role`), each with its tags; then the log groups of the clusters found (and of
//! the cluster named), by name, as Lambda creates them untagged (`logs`). With a cluster id the tag is
//! `dask-serverless:cluster`, without one `dask-serverless:created-by`: every cluster of the
//! region. The found resources are then judged cluster by cluster (the `last_seen` module): a
//! cluster whose client was seen less than `older_than` ago is skipped as a whole, the others
//! are deleted. [`Deployer::mark_seen`] renews a live cluster's mark.
//!
//! Every deletion sorts the resources by kind (the deletion order of
//! [`ResourceKind`](crate::ResourceKind)) and tries each one even if another fails. A resource
//! already gone is reported as such, not as an error; if any deletion failed, the result is
//! [`AwsError::CleanupIncomplete`], naming what was deleted and what was not.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use aws_config::SdkConfig;
use bytes::Bytes;
use dask_serverless_platform::{Invoker, PlatformError};

use crate::clients::Clients;
use crate::config::{AwsSettings, caller_identity, load_config};
use crate::error::AwsError;
use crate::invoker::LambdaInvoker;
use crate::last_seen::{CleanupReport, FoundResource, Leftovers, judge};
use crate::logs::InvocationLog;
use crate::names::{CLUSTER_TAG, CREATED_BY_TAG, CREATED_BY_VALUE, ClusterId, ResourceNames};
use crate::resource::{DestroyReport, Outcome, Resource, ResourceKind};
use crate::spec::{Deployment, DeploymentSpec};
use crate::{bucket, function, logs, queue, role, tagging};

/// A step of a deployment, told as it begins (see [`Deployer::deploy_reporting`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployStep {
    /// Asking STS who the caller is (account and partition).
    Identity,
    /// Creating the IAM role and its policy.
    Role,
    /// Creating the S3 bucket.
    Bucket,
    /// Uploading the deployment package of `bytes` bytes.
    Upload { bytes: usize },
    /// Creating the SQS queue.
    Queue,
    /// Creating the Lambda function (tried again while IAM propagates the role).
    Function,
    /// Waiting for the function to become active.
    Activation,
}

impl std::fmt::Display for DeployStep {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeployStep::Identity => formatter.write_str("checking credentials"),
            DeployStep::Role => formatter.write_str("creating the role"),
            DeployStep::Bucket => formatter.write_str("creating the bucket"),
            DeployStep::Upload { bytes } => write!(
                formatter,
                "uploading the package ({:.1} MB)",
                *bytes as f64 / 1e6
            ),
            DeployStep::Queue => formatter.write_str("creating the queue"),
            DeployStep::Function => formatter.write_str("creating the function"),
            DeployStep::Activation => formatter.write_str("waiting for the function to be active"),
        }
    }
}

/// Creates and deletes clusters' resources in one region (see the module documentation).
#[derive(Debug, Clone)]
pub struct Deployer {
    clients: Clients,
    waits: function::Waits,
}

/// Deletes the leftovers of `cluster` (every cluster if `None`) in the region of `settings`,
/// except clusters whose client was seen less than `older_than` ago.
pub async fn cleanup(
    settings: &AwsSettings,
    cluster: Option<&str>,
    older_than: Duration,
) -> Result<CleanupReport, AwsError> {
    Deployer::connect(settings)
        .await?
        .cleanup(cluster, older_than)
        .await
}

impl Deployer {
    /// A deployer using `config`'s region, credentials and endpoint.
    pub fn new(config: &SdkConfig) -> Result<Self, AwsError> {
        Ok(Self {
            clients: Clients::new(config)?,
            waits: function::Waits::default(),
        })
    }

    /// A deployer for `settings`, after [`load_config`]'s checks.
    pub async fn connect(settings: &AwsSettings) -> Result<Self, AwsError> {
        Self::new(&load_config(settings).await?)
    }

    /// This deployer with the jitter of its waits (for a new role to propagate, for a new
    /// function to become active) drawn from generators seeded with `seed`, so that a test
    /// replays the same delays.
    pub fn with_jitter_seed(mut self, seed: u64) -> Self {
        self.waits = self.waits.with_jitter_seed(seed);
        self
    }

    pub fn region(&self) -> &str {
        &self.clients.region
    }

    /// Creates every resource of `spec`'s cluster; on failure, deletes what it created.
    pub async fn deploy(&self, spec: &DeploymentSpec) -> Result<Deployment, AwsError> {
        self.deploy_reporting(spec, &|_| {}).await
    }

    /// [`Deployer::deploy`], telling `progress` each step as it begins.
    pub async fn deploy_reporting(
        &self,
        spec: &DeploymentSpec,
        progress: &(dyn Fn(DeployStep) + Send + Sync),
    ) -> Result<Deployment, AwsError> {
        spec.check()?;
        progress(DeployStep::Identity);
        let identity = caller_identity(&self.clients.config).await?;
        let names = ResourceNames::new(
            &spec.cluster_id,
            &identity.partition,
            &self.clients.region,
            &identity.account,
        );
        let mut created = Vec::new();
        let error = match self
            .create(spec, &names, &identity.account, progress, &mut created)
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

    /// Creates the resources in order, recording each in `created` as soon as it exists.
    async fn create(
        &self,
        spec: &DeploymentSpec,
        names: &ResourceNames,
        account: &str,
        progress: &(dyn Fn(DeployStep) + Send + Sync),
        created: &mut Vec<Resource>,
    ) -> Result<Deployment, AwsError> {
        let clients = &self.clients;
        progress(DeployStep::Role);
        let role_arn = role::create(clients, names, created).await?;
        progress(DeployStep::Bucket);
        bucket::create(clients, names, created).await?;
        progress(DeployStep::Upload {
            bytes: spec.code.len(),
        });
        bucket::upload(clients, &names.bucket, &names.code_key, &spec.code).await?;
        progress(DeployStep::Queue);
        let queue = queue::create(clients, names, created).await?;
        progress(DeployStep::Function);
        let function_arn = function::create(
            clients,
            spec,
            names,
            function::Links {
                role_arn: &role_arn,
                queue_arn: &queue.arn,
            },
            &self.waits,
            &|| progress(DeployStep::Activation),
            created,
        )
        .await?;
        Ok(Deployment {
            cluster_id: spec.cluster_id.clone(),
            region: clients.region.clone(),
            endpoint_url: clients.config.endpoint_url().map(str::to_string),
            account_id: account.to_string(),
            function_name: names.function.clone(),
            function_arn,
            role_name: names.role.clone(),
            role_arn,
            role_policy_name: names.role_policy.clone(),
            bucket: names.bucket.clone(),
            code_key: names.code_key.clone(),
            queue_url: queue.url,
            queue_arn: queue.arn,
        })
    }

    /// Invokes `deployment`'s function once, synchronously, with a ping (the handler answers it
    /// at once); returns how long the answer took: the function's first cold start, when no
    /// instance was running yet. A function whose runtime cannot start or import the handler is
    /// [`AwsError::FunctionBroken`].
    pub async fn first_invocation(&self, deployment: &Deployment) -> Result<Duration, AwsError> {
        self.check_region(deployment)?;
        let invoker = LambdaInvoker::new(&self.clients.config);
        let started = Instant::now();
        match invoker
            .invoke_request_response(
                &deployment.function_name,
                Bytes::from_static(br#"{"ping": true}"#),
            )
            .await
        {
            Ok(_) => Ok(started.elapsed()),
            Err(PlatformError::FunctionError {
                error_type,
                message,
            }) => Err(AwsError::FunctionBroken {
                function: deployment.function_name.clone(),
                error_type,
                message,
            }),
            Err(other) => Err(AwsError::Service {
                action: "lambda:Invoke".to_string(),
                resource: format!("function '{}'", deployment.function_name),
                code: "InvocationFailed".to_string(),
                message: other.to_string(),
            }),
        }
    }

    /// Deletes every resource of `deployment` (see the module documentation).
    pub async fn destroy(&self, deployment: &Deployment) -> Result<DestroyReport, AwsError> {
        self.check_region(deployment)?;
        self.delete_resources(deployment.resources()).await
    }

    /// Refuses a deployment of another region than this deployer's.
    fn check_region(&self, deployment: &Deployment) -> Result<(), AwsError> {
        if deployment.region != self.clients.region {
            return Err(AwsError::InvalidInput(format!(
                "cluster {} is in region {}, but this deployer works in {}",
                deployment.cluster_id, deployment.region, self.clients.region
            )));
        }
        Ok(())
    }

    /// Renews the last-seen mark of `deployment`'s cluster to `now`: its client is alive (see
    /// the `last_seen` module). A client calls it periodically while the cluster is open.
    pub async fn mark_seen(
        &self,
        deployment: &Deployment,
        now: SystemTime,
    ) -> Result<(), AwsError> {
        self.check_region(deployment)?;
        function::mark_seen(&self.clients, &deployment.function_arn, now).await
    }

    /// What `deployment`'s function printed in the invocations that started at `since` or later
    /// (by AWS's clock, read from [`CLOCK_MARGIN`](crate::CLOCK_MARGIN) earlier), one
    /// [`InvocationLog`] per invocation in the order they started (see the `logs` module).
    pub async fn invocation_logs(
        &self,
        deployment: &Deployment,
        since: SystemTime,
    ) -> Result<Vec<InvocationLog>, AwsError> {
        self.check_region(deployment)?;
        logs::invocation_logs(&self.clients, &deployment.function_name, since).await
    }

    /// The resources of `cluster` (every cluster if `None`) found in this region by their tags,
    /// judged now: those of clusters whose client was seen less than `older_than` ago are
    /// skipped, the others are to delete.
    pub async fn leftovers(
        &self,
        cluster: Option<&str>,
        older_than: Duration,
    ) -> Result<Leftovers, AwsError> {
        let found = self.find_tagged(cluster).await?;
        Ok(judge(found, older_than, SystemTime::now()))
    }

    /// Every resource tagged as `cluster`'s (every cluster's if `None`) in this region.
    async fn find_tagged(&self, cluster: Option<&str>) -> Result<Vec<FoundResource>, AwsError> {
        let cluster = cluster.map(ClusterId::new).transpose()?;
        let (key, value) = match &cluster {
            Some(cluster) => (CLUSTER_TAG, cluster.to_string()),
            None => (CREATED_BY_TAG, CREATED_BY_VALUE.to_string()),
        };
        let clients = &self.clients;
        let resource_types = [
            function::TAGGING_TYPE,
            queue::TAGGING_TYPE,
            bucket::TAGGING_TYPE,
        ];
        let mut found = Vec::new();
        for arn in tagging::find(clients, key, &value, &resource_types).await? {
            let mut resources = function::from_tagged(&arn);
            resources.extend(bucket::from_tagged(&arn));
            resources.extend(queue::from_tagged(clients, &arn).await?);
            found.extend(
                resources
                    .into_iter()
                    .map(|resource| FoundResource::new(resource, &arn.tags)),
            );
        }
        found.extend(role::find_by_tag(clients, key, &value).await?);
        // Log groups have no tags: those of the clusters found, and of the cluster named.
        let mut clusters: BTreeSet<String> = found
            .iter()
            .filter_map(|found| found.cluster.clone())
            .collect();
        clusters.extend(cluster.as_ref().map(ToString::to_string));
        for (cluster, log_group) in logs::existing(clients, &clusters).await? {
            found.push(FoundResource {
                resource: log_group,
                cluster: Some(cluster),
                last_seen: None,
            });
        }
        Ok(found)
    }

    /// Deletes the resources of the stale clusters of `leftovers` (what
    /// [`Deployer::leftovers`] found).
    pub async fn delete_leftovers(&self, leftovers: Leftovers) -> Result<DestroyReport, AwsError> {
        self.delete_resources(leftovers.to_delete).await
    }

    /// Deletes the resources [`Deployer::leftovers`] finds to delete; reports the clusters it
    /// skipped too.
    pub async fn cleanup(
        &self,
        cluster: Option<&str>,
        older_than: Duration,
    ) -> Result<CleanupReport, AwsError> {
        let mut leftovers = self.leftovers(cluster, older_than).await?;
        let skipped = std::mem::take(&mut leftovers.skipped);
        let deleted = self.delete_leftovers(leftovers).await?;
        Ok(CleanupReport { skipped, deleted })
    }

    /// Deletes `resources` in deletion order, trying every one.
    async fn delete_resources(
        &self,
        mut resources: Vec<Resource>,
    ) -> Result<DestroyReport, AwsError> {
        let clients = &self.clients;
        resources.sort_by_key(|resource| resource.kind);
        let mut report = DestroyReport::default();
        let mut failures = Vec::new();
        for resource in resources {
            let outcome = match resource.kind {
                ResourceKind::EventInvokeConfig => {
                    function::delete_event_invoke_config(clients, &resource).await
                }
                ResourceKind::Function => function::delete(clients, &resource).await,
                ResourceKind::LogGroup => logs::delete(clients, &resource).await,
                ResourceKind::Queue => queue::delete(clients, &resource).await,
                ResourceKind::Bucket => bucket::delete(clients, &resource, &mut report).await,
                ResourceKind::RolePolicy => match resource.name.split_once('/') {
                    Some((role, policy)) => role::delete_inline_policy(clients, role, policy).await,
                    None => Ok(Outcome::AlreadyGone),
                },
                ResourceKind::Role => role::delete(clients, &resource, &mut report).await,
            };
            match outcome {
                Ok(Outcome::Deleted) => report.deleted.push(resource),
                Ok(Outcome::AlreadyGone) => report.already_gone.push(resource),
                Err(error) => failures.push(format!("{resource} ({error})")),
            }
        }
        if failures.is_empty() {
            Ok(report)
        } else {
            Err(AwsError::CleanupIncomplete {
                deleted: report.deleted,
                failures,
            })
        }
    }
}
