//! The AWS Lambda platform: the resources a cluster needs, and the [`Invoker`] and
//! [`ResultChannel`] backends that use them.
//!
//! # Model
//!
//! A *cluster* (named by a [`ClusterId`]) is a set of AWS resources that live from
//! [`Deployer::deploy`] to [`Deployer::destroy`]:
//!
//! | resource | name | purpose |
//! | --- | --- | --- |
//! | IAM role (path `/dask-serverless/`) + one inline policy | `dask-serverless-<cluster>` | what the function may do: the bucket's objects, the queue, invoking itself, logs |
//! | S3 bucket | `dask-serverless-<cluster>-<account>` | the deployment zip (`deployment/code.zip`) and the runs' data |
//! | SQS queue | `dask-serverless-<cluster>` | the result channel, and the on-failure destination of asynchronous invocations |
//! | Lambda function | `dask-serverless-<cluster>` | runs the handler; asynchronous invocations are never retried by Lambda |
//!
//! Every resource carries the tags `dask-serverless:cluster = <cluster>`,
//! `dask-serverless:created-by = dask-serverless` and `dask-serverless:region = <region>`, so [`Deployer::cleanup`] finds what a crashed
//! client left behind. A deployment that fails half-way deletes what it had created before it
//! returns the error: a failed `deploy` leaves nothing.
//!
//! The engine then talks to the cluster through two backends of `dask-serverless-platform`'s
//! traits, which it can open from plain strings kept in a run context:
//! [`LambdaInvoker`] (the Lambda Invoke API, bounded concurrency, retried throttles) and
//! [`SqsQueue`] (batched sends, long-polled receives).
//!
//! # Configuration and errors
//!
//! [`load_config`] resolves credentials and region the standard way (environment, profile, SSO,
//! container and instance roles) and checks them at once, so that a wrong setup fails in seconds
//! with a message saying what to do (see [`AwsError`]). With an `endpoint_url`, every client
//! talks to that endpoint instead of AWS: an AWS-compatible local target such as MiniStack.
//!
//! # Permissions
//!
//! [`DEPLOYER_POLICY`] is the least the caller needs to deploy, use, destroy and clean up
//! clusters: actions on resources named `dask-serverless-*` only (roles under the path
//! `/dask-serverless/`), plus the three calls that take no resource (`sts:GetCallerIdentity`,
//! `tag:GetResources`, `iam:ListRoles`). `iam:PassRole` is limited to handing the cluster's role
//! to Lambda. Role ARNs are given with and without the `/dask-serverless/` path: AWS authorizes
//! role actions on the ARN with its path, some AWS-compatible servers on the bare name. The tests deploy, invoke, destroy and clean up as a user holding exactly this
//! policy, on a local target that evaluates IAM policies.
//!
//! [`Invoker`]: dask_serverless_platform::Invoker
//! [`ResultChannel`]: dask_serverless_platform::ResultChannel

mod config;
mod deploy;
mod destroy;
mod error;
mod invoker;
mod names;
mod queue;
mod regions;
mod retry;

pub use config::{AwsSettings, CallerIdentity, caller_identity, load_config, load_config_from};
pub use deploy::{Architecture, Deployer, Deployment, DeploymentSpec, Runtime};
pub use destroy::{DestroyReport, Resource, ResourceKind, cleanup};
pub use error::AwsError;
pub use invoker::LambdaInvoker;
pub use names::{CLUSTER_TAG, CREATED_BY_TAG, CREATED_BY_VALUE, ClusterId, REGION_TAG, ROLE_PATH};
pub use queue::SqsQueue;

/// The IAM policy (JSON) a user needs to deploy, use, destroy and clean up clusters.
pub const DEPLOYER_POLICY: &str = include_str!("../deployer-policy.json");
