//! [`AwsError`], and how an SDK error becomes one.
//!
//! Every SDK call goes through [`classify`], which sorts a failure into what the caller can act
//! on: the request never reached the endpoint ([`Failure::Connect`]), took too long, was
//! throttled, met a server error, or was answered with a service error code. Call sites then
//! name the action and the IAM permission it needs ([`Call`]), so that an access denial says
//! which permission is missing. A deletion's not-found answer is not an error but an
//! [`Outcome::AlreadyGone`] ([`Call::deletion`]): deleting is idempotent.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use aws_sdk_lambda::config::http::HttpResponse;
use aws_sdk_lambda::error::{ProvideErrorMetadata, SdkError};

use crate::resource::{Outcome, Resource};

/// What went wrong configuring, deploying, destroying or reaching AWS resources.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AwsError {
    /// The credential chain found nothing, or failed.
    #[error(
        "no AWS credentials found{}: {message}. Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
         choose a profile with AWS_PROFILE (or --profile), or sign in to an SSO profile \
         (`aws sso login --profile NAME`)",
        profile.as_ref().map(|name| format!(" (profile '{name}')")).unwrap_or_default()
    )]
    NoCredentials {
        profile: Option<String>,
        message: String,
    },
    /// AWS refused the credentials themselves (unknown key, expired session, bad signature).
    #[error(
        "AWS refused the credentials ({code}): {message}. Refresh them (expired session or SSO \
         token?) or check AWS_ACCESS_KEY_ID / AWS_PROFILE"
    )]
    InvalidCredentials { code: String, message: String },
    /// No region was given and none is configured.
    #[error(
        "no AWS region configured: pass --region, set AWS_REGION, or set `region` in the profile"
    )]
    NoRegion,
    /// A region that does not exist.
    #[error(
        "unknown region '{region}'{}: use one of the regions of your AWS partition, e.g. \
         us-east-1 or eu-west-1 (a region newer than this release can be allowed with \
         DASK_SERVERLESS_AWS_EXTRA_REGIONS={region})",
        suggestion.as_ref().map(|name| format!(" (did you mean '{name}'?)")).unwrap_or_default()
    )]
    UnknownRegion {
        region: String,
        suggestion: Option<String>,
    },
    /// The endpoint did not answer: nothing listens there, or the network is down.
    #[error(
        "could not reach {service} at {endpoint}: {} ({message})",
        unreachable_advice(endpoint)
    )]
    Unreachable {
        service: String,
        endpoint: String,
        message: String,
    },
    /// A call took longer than allowed.
    #[error("{action} at {endpoint} timed out ({message}): is the endpoint answering?")]
    Timeout {
        action: String,
        endpoint: String,
        message: String,
    },
    /// The caller lacks a permission.
    #[error(
        "access denied: {action} on {resource} needs the IAM permission '{permission}', which \
         the caller lacks ({message})"
    )]
    AccessDenied {
        action: String,
        permission: String,
        resource: String,
        message: String,
    },
    /// AWS kept throttling a call after the SDK's retries.
    #[error("{action} on {resource} was throttled: {message}; try again later")]
    Throttled {
        action: String,
        resource: String,
        message: String,
    },
    /// Input this crate refuses before calling AWS (a cluster id, a deployment spec, a URL).
    #[error("{0}")]
    InvalidInput(String),
    /// A cluster with this id is already deployed (or its role was left behind).
    #[error(
        "cluster '{cluster}' already exists ({resource} is there): destroy it first \
         (`dask-serverless cleanup --cluster {cluster}`) or pick another cluster id"
    )]
    AlreadyExists { cluster: String, resource: String },
    /// The function was created but Lambda could not make it ready.
    #[error("function '{function}' failed to become active: {reason}")]
    FunctionFailed { function: String, reason: String },
    /// The function is active but its first invocation failed: the runtime could not start
    /// or import the handler (a package built for another architecture or Python, a missing
    /// requirement).
    #[error(
        "function '{function}' cannot run: its first invocation failed with {error_type}: \
         {message}. Check the package's architecture and Python version, and that \
         `requirements` names every library the tasks import"
    )]
    FunctionBroken {
        function: String,
        error_type: String,
        message: String,
    },
    /// Any other error answer of an AWS service.
    #[error("{action} on {resource} failed: {code}: {message}")]
    Service {
        action: String,
        resource: String,
        code: String,
        message: String,
    },
    /// A deployment failed, and deleting what it had created failed too.
    #[error(
        "{error}; the rollback could not delete {}: run `dask-serverless cleanup --cluster \
         {cluster} --older-than 0`",
        list(remaining)
    )]
    RollbackIncomplete {
        error: Box<AwsError>,
        cluster: String,
        remaining: Vec<String>,
    },
    /// Some resources could not be deleted; the others were.
    #[error(
        "could not delete {}; deleted {}",
        list(failures),
        if deleted.is_empty() { "nothing".to_string() } else { list(&deleted.iter().map(ToString::to_string).collect::<Vec<_>>()) }
    )]
    CleanupIncomplete {
        deleted: Vec<Resource>,
        failures: Vec<String>,
    },
}

fn list(items: &[String]) -> String {
    items.join(", ")
}

/// An SDK failure sorted by what can be done about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The request did not get an answer: connection refused, DNS, reset. Retryable.
    Connect { message: String },
    /// A timeout of the SDK (connect, read, attempt or operation).
    Timeout { message: String },
    /// HTTP 429 or a throttling error code. Retryable.
    Throttled {
        code: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// HTTP 5xx. Retryable.
    Server {
        status: u16,
        code: String,
        message: String,
    },
    /// Any other error answer.
    Service {
        status: u16,
        code: String,
        message: String,
    },
    /// The SDK could not build the request, or something unclassified.
    Other { message: String },
}

const THROTTLING_CODES: &[&str] = &[
    "TooManyRequestsException",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "RequestThrottled",
    "TooManyRequests",
    "SlowDown",
    "RequestLimitExceeded",
    "EC2ThrottledException",
];

const ACCESS_DENIED_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "AuthorizationError",
    "Forbidden",
];

const CREDENTIAL_CODES: &[&str] = &[
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidAccessKeyId",
    "InvalidToken",
    "IncompleteSignature",
];

pub(crate) const NOT_FOUND_CODES: &[&str] = &[
    "ResourceNotFoundException",
    "NoSuchEntity",
    "NoSuchBucket",
    "NotFound",
    "QueueDoesNotExist",
    "AWS.SimpleQueueService.NonExistentQueue",
];

/// The message of an error and of all its sources, joined by `: `.
pub(crate) fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// Sorts an SDK error.
pub(crate) fn classify<E>(error: &SdkError<E, HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    match error {
        SdkError::DispatchFailure(failure) => {
            let message = chain(error);
            if failure.is_timeout() {
                Failure::Timeout { message }
            } else if failure.is_io() || failure.is_other() {
                Failure::Connect { message }
            } else {
                Failure::Other { message }
            }
        }
        SdkError::TimeoutError(_) => Failure::Timeout {
            message: chain(error),
        },
        SdkError::ServiceError(service) => {
            let raw = service.raw();
            let status = raw.status().as_u16();
            let code = service.err().code().unwrap_or_default().to_string();
            let code = if code.is_empty() {
                format!("HTTP {status}")
            } else {
                code
            };
            let message = service
                .err()
                .message()
                .map(str::to_string)
                .unwrap_or_else(|| service.err().to_string());
            sort_answer(status, code, message, raw)
        }
        SdkError::ResponseError(response) => {
            let raw = response.raw();
            let status = raw.status().as_u16();
            sort_answer(status, format!("HTTP {status}"), chain(error), raw)
        }
        _ => Failure::Other {
            message: chain(error),
        },
    }
}

fn sort_answer(status: u16, code: String, message: String, raw: &HttpResponse) -> Failure {
    if status == 429 || THROTTLING_CODES.contains(&code.as_str()) {
        let retry_after = raw
            .headers()
            .get("retry-after")
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Failure::Throttled {
            code,
            message,
            retry_after,
        }
    } else if status >= 500 {
        Failure::Server {
            status,
            code,
            message,
        }
    } else {
        Failure::Service {
            status,
            code,
            message,
        }
    }
}

impl Failure {
    /// The error code of an error answer.
    pub(crate) fn code(&self) -> Option<&str> {
        match self {
            Self::Throttled { code, .. }
            | Self::Server { code, .. }
            | Self::Service { code, .. } => Some(code),
            _ => None,
        }
    }

    pub(crate) fn message(&self) -> &str {
        match self {
            Self::Connect { message }
            | Self::Timeout { message }
            | Self::Throttled { message, .. }
            | Self::Server { message, .. }
            | Self::Service { message, .. }
            | Self::Other { message } => message,
        }
    }

    /// Whether the answer says the resource does not exist.
    pub(crate) fn is_not_found(&self) -> bool {
        match self {
            Self::Service { status, code, .. } => {
                NOT_FOUND_CODES.contains(&code.as_str()) || *status == 404
            }
            _ => false,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.message())
    }
}

/// One SDK call, as errors name it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Call<'a> {
    /// The service's display name, e.g. `Lambda`.
    pub(crate) service: &'a str,
    /// The IAM permission the call needs, e.g. `lambda:CreateFunction`.
    pub(crate) permission: &'a str,
    /// What the call acts on, e.g. `function 'dask-serverless-abc'`.
    pub(crate) resource: &'a str,
    /// The endpoint, for "could not reach" messages.
    pub(crate) endpoint: &'a str,
}

impl<'a> Call<'a> {
    /// A call of `service` needing `permission` on `resource`, at `endpoint`.
    pub(crate) fn new(
        service: &'a str,
        permission: &'a str,
        resource: &'a str,
        endpoint: &'a str,
    ) -> Self {
        Self {
            service,
            permission,
            resource,
            endpoint,
        }
    }

    /// The [`AwsError`] of a failed call.
    pub(crate) fn error(&self, failure: Failure) -> AwsError {
        let action = self.permission.to_string();
        match failure {
            Failure::Connect { message } => AwsError::Unreachable {
                service: self.service.to_string(),
                endpoint: self.endpoint.to_string(),
                message,
            },
            Failure::Timeout { message } => AwsError::Timeout {
                action,
                endpoint: self.endpoint.to_string(),
                message,
            },
            Failure::Throttled { message, .. } => AwsError::Throttled {
                action,
                resource: self.resource.to_string(),
                message,
            },
            Failure::Service { code, message, .. }
                if ACCESS_DENIED_CODES.contains(&code.as_str()) =>
            {
                let permission = denied_permission(&message)
                    .unwrap_or(self.permission)
                    .to_string();
                AwsError::AccessDenied {
                    action,
                    permission,
                    resource: self.resource.to_string(),
                    message,
                }
            }
            Failure::Service { code, message, .. } if CREDENTIAL_CODES.contains(&code.as_str()) => {
                AwsError::InvalidCredentials { code, message }
            }
            Failure::Service { code, message, .. } | Failure::Server { code, message, .. } => {
                AwsError::Service {
                    action,
                    resource: self.resource.to_string(),
                    code,
                    message,
                }
            }
            Failure::Other { message } => AwsError::Service {
                action,
                resource: self.resource.to_string(),
                code: "ClientError".to_string(),
                message,
            },
        }
    }

    /// Classifies and converts an SDK error.
    pub(crate) fn sdk<E>(&self, error: SdkError<E, HttpResponse>) -> AwsError
    where
        E: ProvideErrorMetadata + StdError + 'static,
    {
        self.error(classify(&error))
    }

    /// The outcome of a deletion call: deleted, already gone (a not-found answer), or the
    /// [`AwsError`] of any other failure.
    pub(crate) fn deletion<T, E>(
        &self,
        result: Result<T, SdkError<E, HttpResponse>>,
    ) -> Result<Outcome, AwsError>
    where
        E: ProvideErrorMetadata + StdError + 'static,
    {
        match result {
            Ok(_) => Ok(Outcome::Deleted),
            Err(error) => {
                let failure = classify(&error);
                if failure.is_not_found() {
                    Ok(Outcome::AlreadyGone)
                } else {
                    Err(self.error(failure))
                }
            }
        }
    }
}

/// The permission AWS names in an access denial ("... is not authorized to perform:
/// iam:PassRole on resource: ..."): it may differ from the call's own (`lambda:CreateFunction`
/// also needs `iam:PassRole`).
fn denied_permission(message: &str) -> Option<&str> {
    let (_, rest) = message.split_once("perform: ")?;
    let permission = rest.split_whitespace().next()?;
    permission.contains(':').then_some(permission)
}

/// What to check when an endpoint does not answer: a local AWS-compatible endpoint may not be
/// running; AWS itself is, so the network (or a proxy) is in the way.
pub(crate) fn unreachable_advice(endpoint: &str) -> &'static str {
    let host = endpoint
        .split("://")
        .nth(1)
        .unwrap_or(endpoint)
        .split(['/', ':'])
        .next()
        .unwrap_or_default();
    if host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn") {
        "check this machine's network connection to AWS (and its proxy settings)"
    } else {
        "is it running?"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_denials_name_the_missing_permission() {
        let call = Call {
            service: "Lambda",
            permission: "lambda:CreateFunction",
            resource: "function 'dask-serverless-abc'",
            endpoint: "https://lambda.eu-west-1.amazonaws.com",
        };
        let message = "User: arn:aws:iam::123456789012:user/ann is not authorized to perform: \
                       iam:PassRole on resource: arn:aws:iam::123456789012:role/x";
        let error = call.error(Failure::Service {
            status: 403,
            code: "AccessDeniedException".to_string(),
            message: message.to_string(),
        });
        assert_eq!(
            error.to_string(),
            format!(
                "access denied: lambda:CreateFunction on function 'dask-serverless-abc' needs \
                 the IAM permission 'iam:PassRole', which the caller lacks ({message})"
            )
        );
        let error = call.error(Failure::Service {
            status: 403,
            code: "AccessDenied".to_string(),
            message: "Access Denied".to_string(),
        });
        assert!(error.to_string().contains("'lambda:CreateFunction'"));
    }

    #[test]
    fn unreachable_endpoints_say_so() {
        let call = Call {
            service: "STS",
            permission: "sts:GetCallerIdentity",
            resource: "the caller",
            endpoint: "http://127.0.0.1:9",
        };
        let error = call.error(Failure::Connect {
            message: "connection refused".to_string(),
        });
        assert_eq!(
            error.to_string(),
            "could not reach STS at http://127.0.0.1:9: is it running? (connection refused)"
        );
    }

    #[test]
    fn aws_itself_unreachable_points_at_the_network_not_at_aws() {
        let call = Call {
            service: "STS",
            permission: "sts:GetCallerIdentity",
            resource: "the caller",
            endpoint: "https://sts.eu-west-1.amazonaws.com",
        };
        let text = call
            .error(Failure::Connect {
                message: "dns error".to_string(),
            })
            .to_string();
        assert!(!text.contains("is it running"), "{text}");
        assert!(text.contains("network connection to AWS"), "{text}");
        assert_eq!(
            unreachable_advice("https://lambda.cn-north-1.amazonaws.com.cn/"),
            unreachable_advice("https://sts.us-east-1.amazonaws.com:443")
        );
    }
}
