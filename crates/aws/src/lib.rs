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
//! | CloudWatch Logs group | `/aws/lambda/dask-serverless-<cluster>` | the function's output, per invocation; created by Lambda at the first invocation, untagged |
//!
//! Every resource but the log group carries the tags `dask-serverless:cluster = <cluster>`,
//! `dask-serverless:created-by = dask-serverless` and `dask-serverless:region = <region>`, so [`Deployer::cleanup`] finds what a crashed
//! client left behind, and `dask-serverless:last-seen = <Unix seconds>`, which a live client
//! renews on its function ([`Deployer::mark_seen`]) so that a cleanup leaves its cluster alone
//! (see the `last_seen` module). The log group has no tags (Lambda creates it): a cleanup
//! finds it by the name of a cluster's function (see the `logs` module). A deployment that fails half-way deletes what it had created before it
//! returns the error: a failed `deploy` leaves nothing.
//!
//! The engine then talks to the cluster through two backends of `dask-serverless-platform`'s
//! traits, which it can open from plain strings kept in a run context:
//! [`LambdaInvoker`] (the Lambda Invoke API, bounded concurrency, retried throttles) and
//! [`SqsQueue`] (batched sends, long-polled receives).
//!
//! # Modules
//!
//! Resource management is organised by resource: one module per resource holds its creation,
//! its deletion and, where it has one, its search by tag; the [`Deployer`] only orders them.
//!
//! | module | holds |
//! | --- | --- |
//! | `regions` | the known regions, to refuse a mistyped one |
//! | `resource` | [`Resource`], [`ResourceKind`] (in deletion order), [`DestroyReport`] |
//! | `error` | [`AwsError`], and how an SDK error becomes one |
//! | `config` | [`AwsSettings`], [`load_config`]: credentials, region, endpoint, checked at once |
//! | `names` | [`ClusterId`], the names and tags of a cluster's resources, its role's policies |
//! | `spec` | [`DeploymentSpec`] (what to deploy) and [`Deployment`] (what was deployed) |
//! | `last_seen` | [`Leftovers`]: which found clusters are live (their client renews a mark), which stale; durations |
//! | `retry` | the one loop that retries and waits, paced by the platform's [`RetryPolicy`] |
//! | `clients` | the SDK clients the resource modules share |
//! | `tagging` | the search of tagged functions, queues and buckets (`tag:GetResources`) |
//! | `role` | the IAM role and its inline policy |
//! | `bucket` | the S3 bucket and the deployment package in it |
//! | `queue` | the SQS queue |
//! | `function` | the Lambda function and its asynchronous invocation config |
//! | `logs` | the function's log group: what each invocation printed ([`InvocationLog`]), its deletion |
//! | `deployer` | [`Deployer`]: deploy with rollback, destroy, clean up leftovers |
//! | `invoker` | [`LambdaInvoker`] |
//! | `result_channel` | [`SqsQueue`] |
//!
//! Each module uses only modules above it in this table.
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
//! `/dask-serverless/`, log groups `/aws/lambda/dask-serverless-*`), plus four calls that list
//! or identify rather than act on a resource (`sts:GetCallerIdentity`, `tag:GetResources`,
//! `iam:ListRoles`, `logs:DescribeLogGroups`). `iam:PassRole` is limited to handing the cluster's role
//! to Lambda. Role ARNs are given with and without the `/dask-serverless/` path: AWS authorizes
//! role actions on the ARN with its path, some AWS-compatible servers on the bare name. The tests deploy, invoke, destroy and clean up as a user holding exactly this
//! policy, on a local target that evaluates IAM policies.
//!
//! [`Invoker`]: dask_serverless_platform::Invoker
//! [`ResultChannel`]: dask_serverless_platform::ResultChannel
//! [`RetryPolicy`]: dask_serverless_platform::RetryPolicy

// The modules in layers: each uses only modules of the layers above it (the graph is acyclic).
// Shared vocabulary:
mod regions;
mod resource;

mod error;

mod config;
mod names;
mod retry;

mod clients;
mod last_seen;
mod spec;

// Resource management, one module per resource, then the orchestration:
mod tagging;

mod bucket;
mod function;
mod logs;
mod queue;
mod role;

mod deployer;

// The engine's clients of a deployed cluster:
mod invoker;
mod result_channel;

pub use config::{AwsSettings, CallerIdentity, caller_identity, load_config, load_config_from};
pub use deployer::{DeployStep, Deployer, cleanup};
pub use error::AwsError;
pub use invoker::LambdaInvoker;
pub use last_seen::{
    CleanupReport, DEFAULT_OLDER_THAN, Leftovers, SkippedCluster, format_duration, parse_duration,
};
pub use logs::{CLOCK_MARGIN, InvocationLog};
pub use names::{
    CLUSTER_TAG, CREATED_BY_TAG, CREATED_BY_VALUE, ClusterId, LAST_SEEN_TAG, REGION_TAG, ROLE_PATH,
};
pub use resource::{DestroyReport, Resource, ResourceKind};
pub use result_channel::SqsQueue;
pub use spec::{Architecture, Deployment, DeploymentSpec, Runtime};

/// The IAM policy (JSON) a user needs to deploy, use, destroy and clean up clusters.
pub const DEPLOYER_POLICY: &str = include_str!("../deployer-policy.json");
