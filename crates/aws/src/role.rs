//! The cluster's IAM role: what its function may do. Created first, deleted last.
//!
//! # Create
//!
//! [`create`] makes the role `dask-serverless-<cluster>` under the path [`ROLE_PATH`], trusting
//! `lambda.amazonaws.com`, tagged with the cluster id, its creator and its region, then puts its
//! one inline policy (the cluster's bucket objects, its queue, invoking its own function, the
//! function's logs; see the `names` module). The role is the cluster's lock: a second deployment
//! of the same cluster id stops here with [`AwsError::AlreadyExists`], before anything else is
//! touched. It is recorded for rollback as soon as it exists, so that a failed `PutRolePolicy`
//! deletes it again.
//!
//! # Delete
//!
//! [`delete`] deletes the inline policies first (each reported as deleted), detaches managed
//! policies (a user may have attached some), then deletes the role. A role that is already gone
//! is an [`Outcome::AlreadyGone`], not an error.
//!
//! # Find by tag
//!
//! IAM is global and outside the Resource Groups Tagging API, so [`find_by_tag`] lists the roles
//! under [`ROLE_PATH`] and reads each one's tags: a role is taken only if it carries the wanted
//! tag and its [`REGION_TAG`] names this region, so that cleaning up one region never deletes
//! the roles of clusters in others. It comes with its tags' cluster id and last-seen mark (a
//! [`FoundResource`]), which a cleanup judges with the cluster's other resources.

use std::collections::HashMap;
use std::time::SystemTime;

use crate::clients::Clients;
use crate::error::{AwsError, Call, Failure, classify};
use crate::last_seen::FoundResource;
use crate::names::{REGION_TAG, ROLE_PATH, ResourceNames};
use crate::resource::{DestroyReport, Outcome, Resource};

/// Creates the role of `names` and its inline policy; returns the role's ARN.
pub(crate) async fn create(
    clients: &Clients,
    names: &ResourceNames,
    created: &mut Vec<Resource>,
) -> Result<String, AwsError> {
    let endpoint = clients.endpoint("iam");
    let resource = format!("role '{}'", names.role);
    let call = Call::new("IAM", "iam:CreateRole", &resource, &endpoint);
    let mut request = clients
        .iam
        .create_role()
        .role_name(&names.role)
        .path(ROLE_PATH)
        .assume_role_policy_document(ResourceNames::trust_policy().to_string())
        .description(format!(
            "Role of the functions of dask-serverless cluster {}",
            names.cluster
        ));
    for (key, value) in names.tags(SystemTime::now()) {
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
                    cluster: names.cluster.to_string(),
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
    let call = Call::new("IAM", "iam:PutRolePolicy", &resource, &endpoint);
    clients
        .iam
        .put_role_policy()
        .role_name(&names.role)
        .policy_name(&names.role_policy)
        .policy_document(names.role_policy_document().to_string())
        .send()
        .await
        .map_err(|error| call.sdk(error))?;
    Ok(role_arn)
}

/// Deletes the role `resource` names, its inline policies first (added to `report` as they go)
/// and its managed policies detached.
pub(crate) async fn delete(
    clients: &Clients,
    resource: &Resource,
    report: &mut DestroyReport,
) -> Result<Outcome, AwsError> {
    let role = &resource.name;
    let endpoint = clients.endpoint("iam");
    let described = resource.to_string();
    let call = Call::new("IAM", "iam:ListRolePolicies", &described, &endpoint);
    let policies = match clients
        .iam
        .list_role_policies()
        .role_name(role)
        .send()
        .await
    {
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
        if let Outcome::Deleted = delete_inline_policy(clients, role, &policy).await? {
            report.deleted.push(Resource::role_policy(role, &policy));
        }
    }
    let call = Call::new("IAM", "iam:ListAttachedRolePolicies", &described, &endpoint);
    let attached = clients
        .iam
        .list_attached_role_policies()
        .role_name(role)
        .send()
        .await
        .map_err(|error| call.sdk(error))?;
    for policy in attached.attached_policies() {
        let call = Call::new("IAM", "iam:DetachRolePolicy", &described, &endpoint);
        clients
            .iam
            .detach_role_policy()
            .role_name(role)
            .policy_arn(policy.policy_arn().unwrap_or_default())
            .send()
            .await
            .map_err(|error| call.sdk(error))?;
    }
    let call = Call::new("IAM", "iam:DeleteRole", &described, &endpoint);
    call.deletion(clients.iam.delete_role().role_name(role).send().await)
}

/// Deletes the inline policy `policy` of `role`.
pub(crate) async fn delete_inline_policy(
    clients: &Clients,
    role: &str,
    policy: &str,
) -> Result<Outcome, AwsError> {
    let endpoint = clients.endpoint("iam");
    let described = format!("inline policy '{policy}' of role '{role}'");
    let call = Call::new("IAM", "iam:DeleteRolePolicy", &described, &endpoint);
    let result = clients
        .iam
        .delete_role_policy()
        .role_name(role)
        .policy_name(policy)
        .send()
        .await;
    call.deletion(result)
}

/// The roles under [`ROLE_PATH`] tagged `key = value` and with this region's [`REGION_TAG`],
/// each with what its tags say about its cluster.
pub(crate) async fn find_by_tag(
    clients: &Clients,
    key: &str,
    value: &str,
) -> Result<Vec<FoundResource>, AwsError> {
    let endpoint = clients.endpoint("iam");
    let resource = format!("roles under {ROLE_PATH}");
    let call = Call::new("IAM", "iam:ListRoles", &resource, &endpoint);
    let mut pages = clients
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
            let call = Call::new("IAM", "iam:ListRoleTags", &role_resource, &endpoint);
            let tags: HashMap<String, String> = match clients
                .iam
                .list_role_tags()
                .role_name(role.role_name())
                .send()
                .await
            {
                Ok(answer) => answer
                    .tags()
                    .iter()
                    .map(|tag| (tag.key().to_string(), tag.value().to_string()))
                    .collect(),
                Err(error) => {
                    let failure = classify(&error);
                    if failure.is_not_found() {
                        continue;
                    }
                    return Err(call.error(failure));
                }
            };
            if tags.get(key).map(String::as_str) == Some(value)
                && tags.get(REGION_TAG) == Some(&clients.region)
            {
                found.push(FoundResource::new(Resource::role(role.role_name()), &tags));
            }
        }
    }
    Ok(found)
}
