//! The cluster's Lambda function, with its asynchronous invocation config. Created last,
//! deleted first. (Invoking it is the `invoker` module's.)
//!
//! # Create
//!
//! [`create`] makes the function `dask-serverless-<cluster>` from the spec (runtime, handler,
//! architecture, memory size, timeout, environment), with the cluster's role and its code from
//! the cluster's bucket, tagged with the cluster id, the creator and the region. Then, in order:
//!
//! 1. `CreateFunction` is tried again while Lambda answers that the new role "cannot be
//!    assumed": IAM propagates a new role within seconds, rarely more ([`Waits::role_propagation`],
//!    30 seconds). A function of that name already there means the cluster exists
//!    ([`AwsError::AlreadyExists`]).
//! 2. The function and its event invoke config are recorded for rollback.
//! 3. Its state is polled until `Active` ([`Waits::activation`], 5 minutes, at most every 2
//!    seconds); `Failed` or `Inactive` is [`AwsError::FunctionFailed`] with Lambda's reason.
//! 4. Its reserved concurrency is set, if the spec has a `max_concurrency`.
//! 5. Its asynchronous invocation config: no retries by Lambda (`MaximumRetryAttempts = 0`:
//!    retries belong to the engine, which knows what is idempotent), failures to the cluster's
//!    queue (`OnFailure` destination).
//!
//! Both waits are paced and bounded by a [`RetryPolicy`] through the crate's one retry loop
//! (the `retry` module); [`Waits::with_jitter_seed`] makes their delays replay.
//!
//! # Last seen
//!
//! [`mark_seen`] renews the function's last-seen mark (`lambda:TagResource` of its
//! [`LAST_SEEN_TAG`]): the sign that a client still has the cluster open (see the `last_seen`
//! module).
//!
//! # Delete
//!
//! [`delete_event_invoke_config`], then [`delete`]; either already gone is an
//! [`Outcome::AlreadyGone`].
//!
//! # Find by tag
//!
//! Functions are found through the Resource Groups Tagging API with the other regional
//! resources (see the `tagging` module); [`from_tagged`] takes the functions among its answers,
//! each with its event invoke config.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_sdk_lambda::types::{DestinationConfig, Environment, FunctionCode, OnFailure, State};
use dask_serverless_platform::{LastAccepted, RetryPolicy};

use crate::clients::Clients;
use crate::error::{AwsError, Call, Failure, classify};
use crate::names::{LAST_SEEN_TAG, ResourceNames, last_seen_mark};
use crate::resource::{Outcome, Resource};
use crate::retry::{Attempt, Budget, retry};
use crate::spec::DeploymentSpec;
use crate::tagging::TaggedArn;

/// The resource type of functions in the Resource Groups Tagging API.
pub(crate) const TAGGING_TYPE: &str = "lambda:function";

/// The paces and bounds of the waits of [`create`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Waits {
    /// `CreateFunction` again while Lambda cannot assume the new role: for 30 seconds.
    pub(crate) role_propagation: RetryPolicy,
    /// `GetFunctionConfiguration` again while the new function is pending: for 5 minutes.
    pub(crate) activation: RetryPolicy,
}

impl Default for Waits {
    fn default() -> Self {
        Self {
            role_propagation: RetryPolicy {
                maximum_attempts: u32::MAX,
                initial_backoff: Duration::from_millis(250),
                maximum_backoff: Duration::from_secs(2),
                maximum_elapsed: Duration::from_secs(30),
                ..RetryPolicy::default()
            },
            activation: RetryPolicy {
                maximum_attempts: u32::MAX,
                initial_backoff: Duration::from_millis(200),
                maximum_backoff: Duration::from_secs(2),
                maximum_elapsed: Duration::from_secs(300),
                ..RetryPolicy::default()
            },
        }
    }
}

impl Waits {
    /// These waits with their jitter drawn from generators seeded with `seed`.
    pub(crate) fn with_jitter_seed(self, seed: u64) -> Self {
        Self {
            role_propagation: self.role_propagation.with_jitter_seed(seed),
            activation: self.activation.with_jitter_seed(seed),
        }
    }
}

/// Whether Lambda refused a new function because it cannot assume its role yet.
fn role_not_ready(failure: &Failure) -> bool {
    failure.code() == Some("InvalidParameterValueException")
        && failure.message().contains("cannot be assumed")
}

/// What a new function is linked to: the role it runs as, the queue its failures go to.
pub(crate) struct Links<'a> {
    pub(crate) role_arn: &'a str,
    pub(crate) queue_arn: &'a str,
}

/// Creates the function of `spec` with its `links`, and waits until it is active (calling
/// `activating` as the wait begins); returns its ARN.
pub(crate) async fn create(
    clients: &Clients,
    spec: &DeploymentSpec,
    names: &ResourceNames,
    links: Links<'_>,
    waits: &Waits,
    activating: &(dyn Fn() + Send + Sync),
    created: &mut Vec<Resource>,
) -> Result<String, AwsError> {
    let endpoint = clients.endpoint("lambda");
    let resource = format!("function '{}'", names.function);
    let call = Call::new("Lambda", "lambda:CreateFunction", &resource, &endpoint);
    let mut request = clients
        .lambda
        .create_function()
        .function_name(&names.function)
        .description(format!("dask-serverless cluster {}", spec.cluster_id))
        .runtime(spec.runtime.to_lambda())
        .handler(&spec.handler)
        .architectures(spec.architecture.to_lambda())
        .memory_size(i32::try_from(spec.memory_mb).unwrap_or(i32::MAX))
        .timeout(i32::try_from(spec.timeout.as_secs()).unwrap_or(i32::MAX))
        .role(links.role_arn)
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
    for (key, value) in names.tags(SystemTime::now()) {
        request = request.tags(key, value);
    }
    let what = format!("creating {resource} with role '{}'", names.role);
    let attempt = || {
        let request = request.clone();
        async move {
            match request.send().await {
                Ok(answer) => Attempt::Done(Ok(answer)),
                Err(error) => {
                    let failure = classify(&error);
                    if role_not_ready(&failure) {
                        Attempt::Again {
                            error: failure,
                            budget: Budget::Elapsed,
                            retry_after: None,
                        }
                    } else {
                        Attempt::Done(Err(failure))
                    }
                }
            }
        }
    };
    let answer = match retry(
        &waits.role_propagation,
        &LastAccepted::new(),
        &what,
        attempt,
    )
    .await
    {
        Ok(answer) => answer,
        Err(exhausted) if exhausted.error.code() == Some("ResourceConflictException") => {
            return Err(AwsError::AlreadyExists {
                cluster: spec.cluster_id.to_string(),
                resource,
            });
        }
        Err(exhausted) => return Err(call.error(exhausted.error)),
    };
    created.push(Resource::event_invoke_config(&names.function));
    created.push(Resource::function(&names.function));
    let function_arn = answer
        .function_arn()
        .map(str::to_string)
        .unwrap_or_else(|| names.function_arn.clone());
    activating();
    wait_until_active(clients, &names.function, &waits.activation).await?;
    if let Some(max_concurrency) = spec.max_concurrency {
        let call = Call::new(
            "Lambda",
            "lambda:PutFunctionConcurrency",
            &resource,
            &endpoint,
        );
        clients
            .lambda
            .put_function_concurrency()
            .function_name(&names.function)
            .reserved_concurrent_executions(i32::try_from(max_concurrency).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|error| call.sdk(error))?;
    }
    let call = Call::new(
        "Lambda",
        "lambda:PutFunctionEventInvokeConfig",
        &resource,
        &endpoint,
    );
    clients
        .lambda
        .put_function_event_invoke_config()
        .function_name(&names.function)
        .maximum_retry_attempts(0)
        .destination_config(
            DestinationConfig::builder()
                .on_failure(OnFailure::builder().destination(links.queue_arn).build())
                .build(),
        )
        .send()
        .await
        .map_err(|error| call.sdk(error))?;
    Ok(function_arn)
}

/// Polls the state of `function` until it is `Active`, paced and bounded by `policy`.
async fn wait_until_active(
    clients: &Clients,
    function: &str,
    policy: &RetryPolicy,
) -> Result<(), AwsError> {
    let endpoint = clients.endpoint("lambda");
    let resource = format!("function '{function}'");
    let call = Call::new(
        "Lambda",
        "lambda:GetFunctionConfiguration",
        &resource,
        &endpoint,
    );
    let what = format!("waiting for {resource} to become active");
    let attempt = || async move {
        let answer = match clients
            .lambda
            .get_function_configuration()
            .function_name(function)
            .send()
            .await
        {
            Ok(answer) => answer,
            Err(error) => return Attempt::Done(Err(call.sdk(error))),
        };
        match answer.state() {
            Some(State::Active) => Attempt::Done(Ok(())),
            Some(State::Failed) | Some(State::Inactive) => {
                Attempt::Done(Err(AwsError::FunctionFailed {
                    function: function.to_string(),
                    reason: format!(
                        "{}: {}",
                        answer
                            .state_reason_code()
                            .map(|code| code.as_str().to_string())
                            .unwrap_or_default(),
                        answer.state_reason().unwrap_or_default()
                    ),
                }))
            }
            _ => Attempt::Again {
                error: AwsError::FunctionFailed {
                    function: function.to_string(),
                    reason: format!("still pending after {:?}", policy.maximum_elapsed),
                },
                budget: Budget::Elapsed,
                retry_after: None,
            },
        }
    };
    retry(policy, &LastAccepted::new(), &what, attempt)
        .await
        .map_err(|exhausted| exhausted.error)
}

/// Sets the last-seen mark of the function `function_arn` to `now`.
pub(crate) async fn mark_seen(
    clients: &Clients,
    function_arn: &str,
    now: SystemTime,
) -> Result<(), AwsError> {
    let endpoint = clients.endpoint("lambda");
    let resource = format!("function '{function_arn}'");
    let call = Call::new("Lambda", "lambda:TagResource", &resource, &endpoint);
    clients
        .lambda
        .tag_resource()
        .resource(function_arn)
        .tags(LAST_SEEN_TAG, last_seen_mark(now))
        .send()
        .await
        .map_err(|error| call.sdk(error))?;
    Ok(())
}

/// Deletes the asynchronous invocation config of the function `resource` names.
pub(crate) async fn delete_event_invoke_config(
    clients: &Clients,
    resource: &Resource,
) -> Result<Outcome, AwsError> {
    let endpoint = clients.endpoint("lambda");
    let described = resource.to_string();
    let call = Call::new(
        "Lambda",
        "lambda:DeleteFunctionEventInvokeConfig",
        &described,
        &endpoint,
    );
    let result = clients
        .lambda
        .delete_function_event_invoke_config()
        .function_name(&resource.name)
        .send()
        .await;
    call.deletion(result)
}

/// Deletes the function `resource` names.
pub(crate) async fn delete(clients: &Clients, resource: &Resource) -> Result<Outcome, AwsError> {
    let endpoint = clients.endpoint("lambda");
    let described = resource.to_string();
    let call = Call::new("Lambda", "lambda:DeleteFunction", &described, &endpoint);
    let result = clients
        .lambda
        .delete_function()
        .function_name(&resource.name)
        .send()
        .await;
    call.deletion(result)
}

/// The function a tagged ARN names, with its event invoke config; nothing if it names no
/// function.
pub(crate) fn from_tagged(arn: &TaggedArn) -> Vec<Resource> {
    if arn.service != "lambda" {
        return Vec::new();
    }
    let Some(function) = arn.resource.strip_prefix("function:") else {
        return Vec::new();
    };
    // An ARN of a version or alias, `function:NAME:QUALIFIER`, names the same function.
    let function = function.split(':').next().unwrap_or(function);
    vec![
        Resource::event_invoke_config(function),
        Resource::function(function),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::ResourceKind;
    use crate::retry::schedule;

    #[test]
    fn the_waits_are_bounded_paced_and_replay_with_a_seed() {
        let waits = Waits::default().with_jitter_seed(3);
        for (policy, bound) in [
            (&waits.role_propagation, Duration::from_secs(30)),
            (&waits.activation, Duration::from_secs(300)),
        ] {
            let delays = schedule(policy);
            assert_eq!(delays, schedule(policy), "the same seed, other delays");
            assert!(delays.iter().sum::<Duration>() <= bound);
            assert!(delays.iter().all(|delay| *delay <= Duration::from_secs(2)));
            // Bounded by time, not by attempts: the wait goes on to (nearly) its end.
            assert!(
                delays.iter().sum::<Duration>() >= bound - Duration::from_secs(2),
                "{delays:?}"
            );
        }
        assert_eq!(Waits::default().activation.jitter_seed, None);
    }

    #[test]
    fn tagged_functions_come_with_their_event_invoke_config() {
        let arn = TaggedArn {
            service: "lambda".to_string(),
            account: "123456789012".to_string(),
            resource: "function:dask-serverless-a:1".to_string(),
            tags: HashMap::new(),
        };
        let kinds: Vec<(ResourceKind, String)> = from_tagged(&arn)
            .into_iter()
            .map(|resource| (resource.kind, resource.name))
            .collect();
        assert_eq!(
            kinds,
            [
                (
                    ResourceKind::EventInvokeConfig,
                    "dask-serverless-a".to_string()
                ),
                (ResourceKind::Function, "dask-serverless-a".to_string()),
            ]
        );
        let bucket = TaggedArn {
            service: "s3".to_string(),
            account: String::new(),
            resource: "dask-serverless-a-123456789012".to_string(),
            tags: HashMap::new(),
        };
        assert!(from_tagged(&bucket).is_empty());
    }
}
