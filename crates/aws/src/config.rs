//! Loading the AWS configuration, and checking it before anything else happens.
//!
//! [`load_config`] resolves credentials and region the standard way (environment variables,
//! the shared config and credentials files with `--profile`/`AWS_PROFILE`, SSO, web identity,
//! container and instance roles), then checks, in this order, each failing fast with a message
//! saying what to do:
//!
//! 1. the region is a real one (see the `regions` module), or [`AwsError::NoRegion`];
//! 2. the credential chain yields credentials within 15 seconds, or
//!    [`AwsError::NoCredentials`];
//! 3. `sts:GetCallerIdentity`, the first call (it needs no permission), answers within 10
//!    seconds: otherwise the endpoint is [`AwsError::Unreachable`] (nothing listens) or
//!    [`AwsError::Timeout`] (it accepts but does not answer), or the credentials are refused
//!    ([`AwsError::InvalidCredentials`]).
//!
//! Every client made from the returned [`SdkConfig`] has a 3-second connect timeout, a
//! 30-second read timeout and at most 3 attempts per call, so that no call hangs. With an
//! `endpoint_url`, every client talks to it (and S3 uses path-style addressing).

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, Region, SdkConfig};
use aws_sdk_sts::config::ProvideCredentials;
use serde::{Deserialize, Serialize};

use crate::error::{AwsError, Call, chain};
use crate::regions;

/// Where and as whom to reach AWS. Every field is optional: `None` defers to the standard
/// configuration (`AWS_REGION`, `AWS_PROFILE`, the profile's `region`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwsSettings {
    /// An AWS region, e.g. `eu-west-1`.
    pub region: Option<String>,
    /// An AWS-compatible endpoint every client talks to instead of AWS, e.g.
    /// `http://127.0.0.1:4566`.
    pub endpoint_url: Option<String>,
    /// A profile of the shared config files.
    pub profile: Option<String>,
}

impl AwsSettings {
    /// Settings for `region` at `endpoint_url` (if any), with the default profile.
    pub fn new(region: impl Into<String>, endpoint_url: Option<String>) -> Self {
        Self {
            region: Some(region.into()),
            endpoint_url,
            profile: None,
        }
    }
}

/// Who the credentials belong to, as `sts:GetCallerIdentity` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerIdentity {
    pub account: String,
    pub arn: String,
    /// The ARN partition: `aws`, `aws-cn`, `aws-us-gov`...
    pub partition: String,
}

pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound of the first call: the checks must answer quickly or say why not.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound of the credential chain (an SSO or process provider may take a moment).
const CREDENTIALS_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound of resolving the configuration itself (files, region chain).
const LOAD_TIMEOUT: Duration = Duration::from_secs(20);

/// The timeouts of every client.
pub(crate) fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .build()
}

fn retries() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(200))
        .with_max_backoff(Duration::from_secs(5))
}

/// Resolves and checks the configuration for `settings` (see the module documentation).
pub async fn load_config(settings: &AwsSettings) -> Result<SdkConfig, AwsError> {
    load_config_from(settings, aws_config::defaults(BehaviorVersion::latest())).await
}

/// [`load_config`] starting from `loader`, e.g. one with explicit credentials.
pub async fn load_config_from(
    settings: &AwsSettings,
    mut loader: ConfigLoader,
) -> Result<SdkConfig, AwsError> {
    let extra_regions = std::env::var(regions::EXTRA_REGIONS_VARIABLE).ok();
    if let Some(region) = &settings.region {
        check_region(region, extra_regions.as_deref())?;
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(profile) = &settings.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(endpoint_url) = &settings.endpoint_url {
        loader = loader.endpoint_url(check_endpoint_url(endpoint_url)?);
    }
    let loader = loader.timeout_config(timeouts()).retry_config(retries());
    let config = tokio::time::timeout(LOAD_TIMEOUT, loader.load())
        .await
        .map_err(|_| AwsError::Timeout {
            action: "resolving the AWS configuration".to_string(),
            endpoint: "the profile files and the instance metadata service".to_string(),
            message: format!("no answer within {LOAD_TIMEOUT:?}"),
        })?;
    let region = config.region().ok_or(AwsError::NoRegion)?.to_string();
    check_region(&region, extra_regions.as_deref())?;
    check_credentials(&config, settings.profile.as_deref()).await?;
    caller_identity(&config).await?;
    Ok(config)
}

fn check_region(region: &str, extra_regions: Option<&str>) -> Result<(), AwsError> {
    if regions::is_known(region, extra_regions) {
        return Ok(());
    }
    Err(AwsError::UnknownRegion {
        region: region.to_string(),
        suggestion: regions::suggestion(region).map(str::to_string),
    })
}

/// An endpoint URL without its trailing slash, if it is an `http(s)://host[:port]` URL.
fn check_endpoint_url(endpoint_url: &str) -> Result<String, AwsError> {
    let trimmed = endpoint_url.trim().trim_end_matches('/');
    let host = trimmed
        .strip_prefix("http://")
        .or_else(|| trimmed.strip_prefix("https://"));
    match host {
        Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => {
            Ok(trimmed.to_string())
        }
        _ => Err(AwsError::InvalidInput(format!(
            "invalid endpoint URL '{endpoint_url}': expected http://HOST[:PORT] or \
             https://HOST[:PORT]"
        ))),
    }
}

async fn check_credentials(config: &SdkConfig, profile: Option<&str>) -> Result<(), AwsError> {
    let missing = |message: String| AwsError::NoCredentials {
        profile: profile.map(str::to_string),
        message,
    };
    let provider = config
        .credentials_provider()
        .ok_or_else(|| missing("no credential provider is configured".to_string()))?;
    match tokio::time::timeout(CREDENTIALS_TIMEOUT, provider.provide_credentials()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(missing(chain(&error))),
        Err(_) => Err(missing(format!(
            "the credential chain gave no answer within {CREDENTIALS_TIMEOUT:?}"
        ))),
    }
}

/// The endpoint a client of `service` (its endpoint prefix, e.g. `lambda`) talks to, for
/// messages.
pub(crate) fn endpoint(config: &SdkConfig, service: &str) -> String {
    if let Some(url) = config.endpoint_url() {
        return url.to_string();
    }
    let region = config.region().map(ToString::to_string).unwrap_or_default();
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("https://{service}.{region}.{suffix}")
}

/// Who the credentials of `config` belong to (`sts:GetCallerIdentity`, bounded to 10 seconds).
pub async fn caller_identity(config: &SdkConfig) -> Result<CallerIdentity, AwsError> {
    let sts_config = aws_sdk_sts::config::Builder::from(config)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .read_timeout(CHECK_TIMEOUT)
                .operation_timeout(CHECK_TIMEOUT)
                .build(),
        )
        .build();
    let sts = aws_sdk_sts::Client::from_conf(sts_config);
    let endpoint = endpoint(config, "sts");
    let call = Call {
        service: "STS",
        permission: "sts:GetCallerIdentity",
        resource: "the caller",
        endpoint: &endpoint,
    };
    let answer = sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|error| call.sdk(error))?;
    let account = answer.account().unwrap_or_default().to_string();
    let arn = answer.arn().unwrap_or_default().to_string();
    let partition = arn.split(':').nth(1).unwrap_or("aws").to_string();
    let partition = if partition.is_empty() {
        "aws".to_string()
    } else {
        partition
    };
    if account.is_empty() {
        return Err(AwsError::Service {
            action: "sts:GetCallerIdentity".to_string(),
            resource: "the caller".to_string(),
            code: "MissingAccount".to_string(),
            message: "the answer named no account".to_string(),
        });
    }
    Ok(CallerIdentity {
        account,
        arn,
        partition,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls_are_checked() {
        assert_eq!(
            check_endpoint_url("http://127.0.0.1:4566/").unwrap(),
            "http://127.0.0.1:4566"
        );
        assert!(check_endpoint_url("127.0.0.1:4566").is_err());
        assert!(check_endpoint_url("https://").is_err());
    }

    #[test]
    fn a_typo_in_the_region_is_refused_with_a_suggestion() {
        let error = check_region("eu-wst-1", None).unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown region 'eu-wst-1' (did you mean 'eu-west-1'?): use one of the regions of \
             your AWS partition, e.g. us-east-1 or eu-west-1 (a region newer than this release \
             can be allowed with DASK_SERVERLESS_AWS_EXTRA_REGIONS=eu-wst-1)"
        );
    }
}
