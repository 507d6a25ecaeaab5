//! What to deploy ([`DeploymentSpec`], with its [`Runtime`] and [`Architecture`]) and what was
//! deployed ([`Deployment`]): the record a client keeps to reach and destroy a cluster.
//!
//! # Model
//!
//! A spec is checked ([`DeploymentSpec::check`]) before anything is created: everything Lambda
//! would refuse (memory size, timeout, environment variable names, an empty package) is refused
//! here first, so that a bad spec never leaves half a cluster behind.
//!
//! A [`Deployment`] names every resource of a cluster (see the `names` module) and serializes
//! to JSON, so that another process (the Python front, a later `destroy`) can use it; its
//! cluster id is checked again when it is read back. [`Deployment::resources`] lists what
//! [`Deployer::destroy`](crate::Deployer::destroy) deletes, in deletion order.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::config::AwsSettings;
use crate::error::AwsError;
use crate::names::ClusterId;
use crate::resource::Resource;

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

    pub(crate) fn to_lambda(self) -> aws_sdk_lambda::types::Runtime {
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

    pub(crate) fn to_lambda(self) -> aws_sdk_lambda::types::Architecture {
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
    pub(crate) fn check(&self) -> Result<(), AwsError> {
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
    /// The resources, in the order [`Deployer::destroy`](crate::Deployer::destroy) deletes them.
    pub fn resources(&self) -> Vec<Resource> {
        vec![
            Resource::event_invoke_config(&self.function_name),
            Resource::function(&self.function_name),
            Resource::log_group(&self.log_group()),
            Resource::queue(&self.queue_url),
            Resource::bucket(&self.bucket),
            Resource::role(&self.role_name),
        ]
    }

    /// The function's log group (see the `logs` module): Lambda creates it at the first
    /// invocation.
    pub fn log_group(&self) -> String {
        crate::logs::log_group_name(&self.function_name)
    }

    /// Settings reaching this deployment (with the default profile).
    pub fn settings(&self) -> AwsSettings {
        AwsSettings::new(self.region.clone(), self.endpoint_url.clone())
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
