//! [`Deployer::destroy`] and [`Deployer::cleanup`]: deleting a cluster's resources.
//!
//! # Deletion
//!
//! Resources are deleted in dependency order: the function's asynchronous invocation config,
//! the function, the queue, the bucket (emptied first, page by page; unfinished multipart
//! uploads aborted), then the role (its inline policies deleted and managed policies detached
//! first). Deletion is idempotent: a resource that is already gone is reported as such, not as
//! an error. Every resource is tried even if another fails; if any failed, the result is
//! [`AwsError::CleanupIncomplete`] naming what was deleted and what was not.
//!
//! # Finding leftovers
//!
//! [`Deployer::leftovers`] finds resources by their tags, without a [`Deployment`] record: the
//! functions, queues and buckets of the region through the Resource Groups Tagging API
//! (`tag:GetResources`), and the roles under the path `/dask-serverless/` (IAM is global, so a
//! role is taken only if its `dask-serverless:region` tag names this region). With a cluster id
//! the filter is the `dask-serverless:cluster` tag, without one the
//! `dask-serverless:created-by` tag: every cluster of the region. The tagging API is eventually
//! consistent: it may list a resource for a while after its deletion (that resource is then
//! reported as already gone) and miss one created a moment ago.

use std::fmt;

use aws_sdk_resourcegroupstagging::types::TagFilter;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use serde::{Deserialize, Serialize};

use crate::deploy::{Deployer, Deployment};
use crate::error::classify;
use crate::names::{CLUSTER_TAG, CREATED_BY_TAG, CREATED_BY_VALUE, REGION_TAG, ROLE_PATH};
use crate::{AwsError, AwsSettings, ClusterId};

/// The kinds of resource a cluster has, in deletion order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ResourceKind {
    /// The asynchronous invocation config of a function (named by the function).
    EventInvokeConfig,
    Function,
    /// A queue, named by its URL.
    Queue,
    Bucket,
    /// An inline policy of a role, named `role/policy`.
    RolePolicy,
    Role,
}

impl ResourceKind {
    fn describe(self) -> &'static str {
        match self {
            Self::EventInvokeConfig => "event invoke config of function",
            Self::Function => "function",
            Self::Queue => "queue",
            Self::Bucket => "bucket",
            Self::RolePolicy => "inline policy",
            Self::Role => "role",
        }
    }
}

/// One AWS resource of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Resource {
    pub kind: ResourceKind,
    pub name: String,
}

impl Resource {
    pub fn function(name: &str) -> Self {
        Self::new(ResourceKind::Function, name)
    }

    pub fn event_invoke_config(function: &str) -> Self {
        Self::new(ResourceKind::EventInvokeConfig, function)
    }

    pub fn queue(url: &str) -> Self {
        Self::new(ResourceKind::Queue, url)
    }

    pub fn bucket(name: &str) -> Self {
        Self::new(ResourceKind::Bucket, name)
    }

    pub fn role(name: &str) -> Self {
        Self::new(ResourceKind::Role, name)
    }

    fn new(kind: ResourceKind, name: &str) -> Self {
        Self {
            kind,
            name: name.to_string(),
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} {}", self.kind.describe(), self.name)
    }
}

/// What a deletion did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestroyReport {
    /// Resources deleted, in order.
    pub deleted: Vec<Resource>,
    /// Resources that were already gone.
    pub already_gone: Vec<Resource>,
    /// Objects deleted from buckets before the buckets themselves.
    pub objects_deleted: u64,
}

impl fmt::Display for DestroyReport {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.deleted.is_empty() && self.already_gone.is_empty() {
            return writeln!(formatter, "nothing to delete");
        }
        for resource in &self.deleted {
            writeln!(formatter, "deleted {resource}")?;
        }
        for resource in &self.already_gone {
            writeln!(formatter, "already gone: {resource}")?;
        }
        if self.objects_deleted > 0 {
            writeln!(
                formatter,
                "deleted {} objects from buckets",
                self.objects_deleted
            )?;
        }
        Ok(())
    }
}

/// Whether a deletion removed the resource or found it gone.
enum Outcome {
    Deleted,
    AlreadyGone,
}

/// Deletes the leftovers of `cluster` (every cluster if `None`) in the region of `settings`.
pub async fn cleanup(
    settings: &AwsSettings,
    cluster: Option<&str>,
) -> Result<DestroyReport, AwsError> {
    Deployer::connect(settings).await?.cleanup(cluster).await
}

impl Deployer {
    /// Deletes every resource of `deployment` (see the module documentation).
    pub async fn destroy(&self, deployment: &Deployment) -> Result<DestroyReport, AwsError> {
        if deployment.region != self.region {
            return Err(AwsError::InvalidInput(format!(
                "cluster {} is in region {}, but this deployer works in {}",
                deployment.cluster_id, deployment.region, self.region
            )));
        }
        self.delete_resources(deployment.resources()).await
    }

    /// The resources of `cluster` (every cluster if `None`) found in this region by their tags.
    pub async fn leftovers(&self, cluster: Option<&str>) -> Result<Vec<Resource>, AwsError> {
        let cluster = cluster.map(ClusterId::new).transpose()?;
        let (key, value) = match &cluster {
            Some(cluster) => (CLUSTER_TAG, cluster.to_string()),
            None => (CREATED_BY_TAG, CREATED_BY_VALUE.to_string()),
        };
        let mut found = self.tagged_resources(key, &value).await?;
        found.extend(self.tagged_roles(key, &value).await?);
        found.sort();
        found.dedup();
        Ok(found)
    }

    /// Deletes the resources [`Deployer::leftovers`] finds.
    pub async fn cleanup(&self, cluster: Option<&str>) -> Result<DestroyReport, AwsError> {
        let found = self.leftovers(cluster).await?;
        self.delete_resources(found).await
    }

    async fn tagged_resources(&self, key: &str, value: &str) -> Result<Vec<Resource>, AwsError> {
        let endpoint = self.endpoint("tagging");
        let resource = format!("resources tagged {key}={value}");
        let call = self.call(
            "Resource Groups Tagging",
            "tag:GetResources",
            &resource,
            &endpoint,
        );
        let mut pages = self
            .tagging
            .get_resources()
            .tag_filters(TagFilter::builder().key(key).values(value).build())
            .resource_type_filters("lambda:function")
            .resource_type_filters("sqs")
            .resource_type_filters("s3")
            .into_paginator()
            .send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|error| call.sdk(error))?;
            for mapping in page.resource_tag_mapping_list() {
                let Some(arn) = mapping.resource_arn() else {
                    continue;
                };
                // arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE
                let parts: Vec<&str> = arn.splitn(6, ':').collect();
                let [_, _, service, _, account, resource_part] = parts[..] else {
                    continue;
                };
                match service {
                    "lambda" => {
                        if let Some(function) = resource_part.strip_prefix("function:") {
                            let function = function.split(':').next().unwrap_or(function);
                            found.push(Resource::event_invoke_config(function));
                            found.push(Resource::function(function));
                        }
                    }
                    "s3" => found.push(Resource::bucket(resource_part)),
                    "sqs" => {
                        if let Some(url) = self.queue_url(resource_part, account).await? {
                            found.push(Resource::queue(&url));
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(found)
    }

    /// The URL of a queue, or `None` if it is gone.
    async fn queue_url(&self, name: &str, account: &str) -> Result<Option<String>, AwsError> {
        let endpoint = self.endpoint("sqs");
        let resource = format!("queue '{name}'");
        let call = self.call("SQS", "sqs:GetQueueUrl", &resource, &endpoint);
        match self
            .sqs
            .get_queue_url()
            .queue_name(name)
            .queue_owner_aws_account_id(account)
            .send()
            .await
        {
            Ok(answer) => Ok(answer.queue_url().map(str::to_string)),
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

    async fn tagged_roles(&self, key: &str, value: &str) -> Result<Vec<Resource>, AwsError> {
        let endpoint = self.endpoint("iam");
        let resource = format!("roles under {ROLE_PATH}");
        let call = self.call("IAM", "iam:ListRoles", &resource, &endpoint);
        let mut pages = self
            .iam
            .list_roles()
            .path_prefix(ROLE_PATH)
            .into_paginator()
            .send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|error| call.sdk(error))?;
            for role in page.roles() {
                let role_resource = format!("role '{}'", role.role_name());
                let call = self.call("IAM", "iam:ListRoleTags", &role_resource, &endpoint);
                let tags = match self
                    .iam
                    .list_role_tags()
                    .role_name(role.role_name())
                    .send()
                    .await
                {
                    Ok(answer) => answer.tags().to_vec(),
                    Err(error) => {
                        let failure = classify(&error);
                        if failure.is_not_found() {
                            continue;
                        }
                        return Err(call.error(failure));
                    }
                };
                let tag = |wanted: &str| {
                    tags.iter()
                        .find(|tag| tag.key() == wanted)
                        .map(|tag| tag.value().to_string())
                };
                if tag(key).as_deref() == Some(value)
                    && tag(REGION_TAG).as_deref() == Some(self.region.as_str())
                {
                    found.push(Resource::role(role.role_name()));
                }
            }
        }
        Ok(found)
    }

    /// Deletes `resources` in dependency order, trying every one.
    pub(crate) async fn delete_resources(
        &self,
        mut resources: Vec<Resource>,
    ) -> Result<DestroyReport, AwsError> {
        resources.sort_by_key(|resource| resource.kind);
        let mut report = DestroyReport::default();
        let mut failures = Vec::new();
        for resource in resources {
            let outcome = match resource.kind {
                ResourceKind::EventInvokeConfig => self.delete_event_invoke_config(&resource).await,
                ResourceKind::Function => self.delete_function(&resource).await,
                ResourceKind::Queue => self.delete_queue(&resource).await,
                ResourceKind::Bucket => self.delete_bucket(&resource, &mut report).await,
                ResourceKind::RolePolicy => match resource.name.split_once('/') {
                    Some((role, policy)) => self.delete_role_policy(role, policy).await,
                    None => Ok(Outcome::AlreadyGone),
                },
                ResourceKind::Role => self.delete_role(&resource, &mut report).await,
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

    async fn delete_event_invoke_config(&self, resource: &Resource) -> Result<Outcome, AwsError> {
        let endpoint = self.endpoint("lambda");
        let described = resource.to_string();
        let call = self.call(
            "Lambda",
            "lambda:DeleteFunctionEventInvokeConfig",
            &described,
            &endpoint,
        );
        let result = self
            .lambda
            .delete_function_event_invoke_config()
            .function_name(&resource.name)
            .send()
            .await;
        outcome(result.map(drop), |error| call.sdk(error), classify)
    }

    async fn delete_function(&self, resource: &Resource) -> Result<Outcome, AwsError> {
        let endpoint = self.endpoint("lambda");
        let described = resource.to_string();
        let call = self.call("Lambda", "lambda:DeleteFunction", &described, &endpoint);
        let result = self
            .lambda
            .delete_function()
            .function_name(&resource.name)
            .send()
            .await;
        outcome(result.map(drop), |error| call.sdk(error), classify)
    }

    async fn delete_queue(&self, resource: &Resource) -> Result<Outcome, AwsError> {
        let endpoint = self.endpoint("sqs");
        let described = resource.to_string();
        let call = self.call("SQS", "sqs:DeleteQueue", &described, &endpoint);
        let result = self
            .sqs
            .delete_queue()
            .queue_url(&resource.name)
            .send()
            .await;
        outcome(result.map(drop), |error| call.sdk(error), classify)
    }

    async fn delete_bucket(
        &self,
        resource: &Resource,
        report: &mut DestroyReport,
    ) -> Result<Outcome, AwsError> {
        let bucket = &resource.name;
        let endpoint = self.endpoint("s3");
        let described = resource.to_string();
        // Unfinished multipart uploads (a failed deployment's) would keep parts around.
        let call = self.call("S3", "s3:ListBucketMultipartUploads", &described, &endpoint);
        match self.s3.list_multipart_uploads().bucket(bucket).send().await {
            Ok(answer) => {
                for upload in answer.uploads() {
                    let call = self.call("S3", "s3:AbortMultipartUpload", &described, &endpoint);
                    self.s3
                        .abort_multipart_upload()
                        .bucket(bucket)
                        .key(upload.key().unwrap_or_default())
                        .upload_id(upload.upload_id().unwrap_or_default())
                        .send()
                        .await
                        .map_err(|error| call.sdk(error))?;
                }
            }
            Err(error) => {
                let failure = classify(&error);
                if failure.is_not_found() {
                    return Ok(Outcome::AlreadyGone);
                }
                return Err(call.error(failure));
            }
        }
        let call = self.call("S3", "s3:ListBucket", &described, &endpoint);
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(page) => page,
                Err(error) => {
                    let failure = classify(&error);
                    if failure.is_not_found() {
                        return Ok(Outcome::AlreadyGone);
                    }
                    return Err(call.error(failure));
                }
            };
            let keys = page
                .contents()
                .iter()
                .filter_map(|object| object.key())
                .map(|key| ObjectIdentifier::builder().key(key).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| AwsError::InvalidInput(error.to_string()))?;
            if keys.is_empty() {
                continue;
            }
            let count = keys.len() as u64;
            let delete = Delete::builder()
                .set_objects(Some(keys))
                .quiet(true)
                .build()
                .map_err(|error| AwsError::InvalidInput(error.to_string()))?;
            let call = self.call("S3", "s3:DeleteObject", &described, &endpoint);
            let answer = self
                .s3
                .delete_objects()
                .bucket(bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|error| call.sdk(error))?;
            if let Some(first) = answer.errors().first() {
                return Err(AwsError::Service {
                    action: "s3:DeleteObject".to_string(),
                    resource: format!(
                        "object '{}' of {described}",
                        first.key().unwrap_or_default()
                    ),
                    code: first.code().unwrap_or_default().to_string(),
                    message: first.message().unwrap_or_default().to_string(),
                });
            }
            report.objects_deleted += count;
        }
        let call = self.call("S3", "s3:DeleteBucket", &described, &endpoint);
        let result = self.s3.delete_bucket().bucket(bucket).send().await;
        outcome(result.map(drop), |error| call.sdk(error), classify)
    }

    async fn delete_role_policy(&self, role: &str, policy: &str) -> Result<Outcome, AwsError> {
        let endpoint = self.endpoint("iam");
        let described = format!("inline policy '{policy}' of role '{role}'");
        let call = self.call("IAM", "iam:DeleteRolePolicy", &described, &endpoint);
        let result = self
            .iam
            .delete_role_policy()
            .role_name(role)
            .policy_name(policy)
            .send()
            .await;
        outcome(result.map(drop), |error| call.sdk(error), classify)
    }

    async fn delete_role(
        &self,
        resource: &Resource,
        report: &mut DestroyReport,
    ) -> Result<Outcome, AwsError> {
        let role = &resource.name;
        let endpoint = self.endpoint("iam");
        let described = resource.to_string();
        let call = self.call("IAM", "iam:ListRolePolicies", &described, &endpoint);
        let policies = match self.iam.list_role_policies().role_name(role).send().await {
            Ok(answer) => answer.policy_names().to_vec(),
            Err(error) => {
                let failure = classify(&error);
                if failure.is_not_found() {
                    return Ok(Outcome::AlreadyGone);
                }
                return Err(call.error(failure));
            }
        };
        for policy in policies {
            if let Outcome::Deleted = self.delete_role_policy(role, &policy).await? {
                report.deleted.push(Resource::new(
                    ResourceKind::RolePolicy,
                    &format!("{role}/{policy}"),
                ));
            }
        }
        let call = self.call("IAM", "iam:ListAttachedRolePolicies", &described, &endpoint);
        let attached = self
            .iam
            .list_attached_role_policies()
            .role_name(role)
            .send()
            .await
            .map_err(|error| call.sdk(error))?;
        for policy in attached.attached_policies() {
            let call = self.call("IAM", "iam:DetachRolePolicy", &described, &endpoint);
            self.iam
                .detach_role_policy()
                .role_name(role)
                .policy_arn(policy.policy_arn().unwrap_or_default())
                .send()
                .await
                .map_err(|error| call.sdk(error))?;
        }
        let call = self.call("IAM", "iam:DeleteRole", &described, &endpoint);
        let result = self.iam.delete_role().role_name(role).send().await;
        outcome(result.map(drop), |error| call.sdk(error), classify)
    }
}

/// A deletion's outcome: done, already gone (a not-found answer), or an error.
fn outcome<E>(
    result: Result<(), E>,
    convert: impl FnOnce(E) -> AwsError,
    sort: impl FnOnce(&E) -> crate::error::Failure,
) -> Result<Outcome, AwsError> {
    match result {
        Ok(()) => Ok(Outcome::Deleted),
        Err(error) if sort(&error).is_not_found() => Ok(Outcome::AlreadyGone),
        Err(error) => Err(convert(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_sort_in_deletion_order() {
        let mut resources = [
            Resource::role("r"),
            Resource::bucket("b"),
            Resource::function("f"),
            Resource::queue("q"),
            Resource::event_invoke_config("f"),
        ];
        resources.sort_by_key(|resource| resource.kind);
        let kinds: Vec<ResourceKind> = resources.iter().map(|resource| resource.kind).collect();
        assert_eq!(
            kinds,
            [
                ResourceKind::EventInvokeConfig,
                ResourceKind::Function,
                ResourceKind::Queue,
                ResourceKind::Bucket,
                ResourceKind::Role
            ]
        );
    }

    #[test]
    fn reports_read_well() {
        let report = DestroyReport {
            deleted: vec![Resource::function("dask-serverless-abc")],
            already_gone: vec![Resource::bucket("dask-serverless-abc-1")],
            objects_deleted: 2,
        };
        assert_eq!(
            report.to_string(),
            "deleted function dask-serverless-abc\nalready gone: bucket \
             dask-serverless-abc-1\ndeleted 2 objects from buckets\n"
        );
        assert_eq!(DestroyReport::default().to_string(), "nothing to delete\n");
    }
}
