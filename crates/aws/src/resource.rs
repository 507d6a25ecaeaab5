//! [`Resource`]: one AWS resource of a cluster, named by its kind and name, and
//! [`DestroyReport`]: what a deletion did.
//!
//! # Model
//!
//! A cluster is made of seven kinds of [`Resource`], the [`ResourceKind`]s. Their order is the
//! deletion order: what uses another resource goes before it (the function's asynchronous
//! invocation config names the queue; the function writes to its log group, runs with the role
//! and was loaded from the bucket). Deploying creates them in about the reverse order (see the `deployer` module);
//! every deletion, rollback and cleanup sorts the resources it has by kind first.
//!
//! A resource is named the way its deletion call needs: a queue by its URL, an inline policy as
//! `role/policy`, the asynchronous invocation config by its function's name, a log group by
//! its name (`/aws/lambda/<function>`, which Lambda creates at the first invocation).
//!
//! This module depends on nothing else of the crate, so that every other module (errors
//! included) can name resources.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The kinds of resource a cluster has, in deletion order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ResourceKind {
    /// The asynchronous invocation config of a function (named by the function).
    EventInvokeConfig,
    Function,
    /// The function's CloudWatch Logs group, created by Lambda.
    LogGroup,
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
            Self::LogGroup => "log group",
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

    pub fn log_group(name: &str) -> Self {
        Self::new(ResourceKind::LogGroup, name)
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

    pub(crate) fn role_policy(role: &str, policy: &str) -> Self {
        Self::new(ResourceKind::RolePolicy, &format!("{role}/{policy}"))
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

/// Whether a deletion removed the resource or found it gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Deleted,
    AlreadyGone,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_sort_in_deletion_order() {
        let mut resources = [
            Resource::role("r"),
            Resource::bucket("b"),
            Resource::role_policy("r", "p"),
            Resource::function("f"),
            Resource::queue("q"),
            Resource::log_group("/aws/lambda/f"),
            Resource::event_invoke_config("f"),
        ];
        resources.sort_by_key(|resource| resource.kind);
        let kinds: Vec<ResourceKind> = resources.iter().map(|resource| resource.kind).collect();
        assert_eq!(
            kinds,
            [
                ResourceKind::EventInvokeConfig,
                ResourceKind::Function,
                ResourceKind::LogGroup,
                ResourceKind::Queue,
                ResourceKind::Bucket,
                ResourceKind::RolePolicy,
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
