//! Cluster ids, the names of a cluster's resources, their tags, and the policy documents of the
//! function's role.
//!
//! Names derive from the cluster id alone (plus the account id for the bucket, whose names are
//! global), so that a cluster's resources can be found and deleted without a record:
//!
//! * function, role, inline policy and queue: `dask-serverless-<cluster>`;
//! * bucket: `dask-serverless-<cluster>-<account>` (at most 63 characters);
//! * the role lives under the path [`ROLE_PATH`].
//!
//! Tags: [`CLUSTER_TAG`] (the cluster id), [`CREATED_BY_TAG`] (`dask-serverless`),
//! [`REGION_TAG`] (the cluster's region) and [`LAST_SEEN_TAG`] (when the resource was created,
//! in Unix seconds) on every resource ([`ResourceNames::tags`]); the resource modules find
//! leftovers by the first two, and roles (global) by the third as well. A live client renews
//! the last-seen mark of its function (see the `last_seen` module).
//!
//! A cluster id is 1 to 32 characters of `[a-z0-9-]`, starting with a letter or digit and not
//! ending with `-`: short enough for every limit (S3's 63 characters with a 12-digit account
//! id), valid in every service's names.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::AwsError;

/// Tag naming the cluster a resource belongs to.
pub const CLUSTER_TAG: &str = "dask-serverless:cluster";
/// Tag marking a resource as created by this project.
pub const CREATED_BY_TAG: &str = "dask-serverless:created-by";
/// Value of [`CREATED_BY_TAG`].
pub const CREATED_BY_VALUE: &str = "dask-serverless";
/// Tag naming the region of the cluster a resource belongs to: roles are global, so that
/// [`Deployer::cleanup`](crate::Deployer::cleanup) in one region must not delete the roles of
/// clusters in others.
pub const REGION_TAG: &str = "dask-serverless:region";
/// Tag holding when a client of the cluster was last seen alive, in Unix seconds: set on every
/// resource at its creation, renewed on the function while a client has the cluster open, read
/// by [`Deployer::cleanup`](crate::Deployer::cleanup) to leave live clusters alone.
pub const LAST_SEEN_TAG: &str = "dask-serverless:last-seen";
/// IAM path of every role this project creates.
pub const ROLE_PATH: &str = "/dask-serverless/";

const PREFIX: &str = "dask-serverless-";
const LONGEST_CLUSTER_ID: usize = 32;

/// The id of a deployed cluster: names and tags all its resources.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClusterId(String);

impl ClusterId {
    /// Checks `id` (see the module documentation).
    pub fn new(id: impl Into<String>) -> Result<Self, AwsError> {
        let id = id.into();
        let valid_characters = id
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-');
        if id.is_empty()
            || id.len() > LONGEST_CLUSTER_ID
            || !valid_characters
            || id.starts_with('-')
            || id.ends_with('-')
        {
            return Err(AwsError::InvalidInput(format!(
                "invalid cluster id '{id}': use 1 to {LONGEST_CLUSTER_ID} characters of a-z, 0-9 \
                 and '-', neither starting nor ending with '-'"
            )));
        }
        Ok(Self(id))
    }

    /// A fresh random id: a letter then 11 letters or digits.
    pub fn random() -> Self {
        let mut id = String::with_capacity(12);
        id.push(fastrand::lowercase());
        for _ in 0..11 {
            let index = fastrand::u8(0..36);
            id.push(if index < 10 {
                char::from(b'0' + index)
            } else {
                char::from(b'a' + index - 10)
            });
        }
        Self(id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl TryFrom<String> for ClusterId {
    type Error = AwsError;

    fn try_from(id: String) -> Result<Self, Self::Error> {
        Self::new(id)
    }
}

impl From<ClusterId> for String {
    fn from(id: ClusterId) -> Self {
        id.0
    }
}

/// The value of a [`LAST_SEEN_TAG`] for `now`: whole Unix seconds (0 before 1970).
pub(crate) fn last_seen_mark(now: SystemTime) -> String {
    now.duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs())
        .unwrap_or(0)
        .to_string()
}

/// The time a [`LAST_SEEN_TAG`] value names; `None` if it is not a number of seconds.
pub(crate) fn read_last_seen_mark(value: &str) -> Option<SystemTime> {
    let seconds: u64 = value.trim().parse().ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(seconds))
}

/// The names and ARNs of one cluster's resources, all known before any is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResourceNames {
    pub(crate) cluster: ClusterId,
    pub(crate) function: String,
    pub(crate) function_arn: String,
    pub(crate) role: String,
    pub(crate) role_policy: String,
    pub(crate) queue: String,
    pub(crate) queue_arn: String,
    pub(crate) bucket: String,
    pub(crate) code_key: String,
    partition: String,
    region: String,
    account: String,
}

impl ResourceNames {
    pub(crate) fn new(cluster: &ClusterId, partition: &str, region: &str, account: &str) -> Self {
        let base = format!("{PREFIX}{cluster}");
        let bucket = format!("{base}-{}", account.to_ascii_lowercase());
        Self {
            cluster: cluster.clone(),
            function_arn: format!("arn:{partition}:lambda:{region}:{account}:function:{base}"),
            queue_arn: format!("arn:{partition}:sqs:{region}:{account}:{base}"),
            function: base.clone(),
            role: base.clone(),
            role_policy: base.clone(),
            queue: base,
            bucket,
            code_key: "deployment/code.zip".to_string(),
            partition: partition.to_string(),
            region: region.to_string(),
            account: account.to_string(),
        }
    }

    /// The tags of every resource of the cluster, as `(key, value)` pairs, with a last-seen
    /// mark of `now`.
    pub(crate) fn tags(&self, now: SystemTime) -> [(&'static str, String); 4] {
        [
            (CLUSTER_TAG, self.cluster.to_string()),
            (CREATED_BY_TAG, CREATED_BY_VALUE.to_string()),
            (REGION_TAG, self.region.clone()),
            (LAST_SEEN_TAG, last_seen_mark(now)),
        ]
    }

    /// The role's trust policy: Lambda may assume it.
    pub(crate) fn trust_policy() -> Value {
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": { "Service": "lambda.amazonaws.com" },
                "Action": "sts:AssumeRole"
            }]
        })
    }

    /// The role's inline policy: the cluster's bucket, queue and function, and the logs of the
    /// function, nothing else.
    pub(crate) fn role_policy_document(&self) -> Value {
        let Self {
            partition,
            region,
            account,
            bucket,
            ..
        } = self;
        json!({
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "BucketObjects",
                    "Effect": "Allow",
                    "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                    "Resource": format!("arn:{partition}:s3:::{bucket}/*")
                },
                {
                    "Sid": "BucketListing",
                    "Effect": "Allow",
                    "Action": "s3:ListBucket",
                    "Resource": format!("arn:{partition}:s3:::{bucket}")
                },
                {
                    "Sid": "ResultQueue",
                    "Effect": "Allow",
                    "Action": [
                        "sqs:SendMessage",
                        "sqs:ReceiveMessage",
                        "sqs:DeleteMessage",
                        "sqs:GetQueueAttributes"
                    ],
                    "Resource": self.queue_arn
                },
                {
                    "Sid": "InvokeChildren",
                    "Effect": "Allow",
                    "Action": "lambda:InvokeFunction",
                    "Resource": self.function_arn
                },
                {
                    "Sid": "LogGroup",
                    "Effect": "Allow",
                    "Action": "logs:CreateLogGroup",
                    "Resource": format!("arn:{partition}:logs:{region}:{account}:*")
                },
                {
                    "Sid": "LogEvents",
                    "Effect": "Allow",
                    "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                    "Resource": format!(
                        "arn:{partition}:logs:{region}:{account}:log-group:/aws/lambda/{}:*",
                        self.function
                    )
                }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_are_checked() {
        assert!(ClusterId::new("abc-123").is_ok());
        for bad in ["", "-abc", "abc-", "ABC", "a_b", "a.b", &"x".repeat(33)] {
            assert!(ClusterId::new(bad).is_err(), "{bad:?} accepted");
        }
        for _ in 0..100 {
            let random = ClusterId::random();
            assert_eq!(ClusterId::new(random.as_str()).unwrap(), random);
        }
    }

    #[test]
    fn names_fit_every_limit() {
        let cluster = ClusterId::new("x".repeat(LONGEST_CLUSTER_ID)).unwrap();
        let names = ResourceNames::new(&cluster, "aws", "eu-west-1", "123456789012");
        assert!(names.bucket.len() <= 63, "{}", names.bucket);
        assert!(names.function.len() <= 64);
        assert!(names.role.len() <= 64);
        assert!(names.queue.len() <= 80);
    }

    #[test]
    fn every_resource_is_tagged_with_cluster_creator_region_and_last_seen() {
        let cluster = ClusterId::new("abc").unwrap();
        let names = ResourceNames::new(&cluster, "aws", "eu-west-1", "123456789012");
        let now = UNIX_EPOCH + Duration::from_millis(1_767_225_600_900);
        assert_eq!(
            names.tags(now),
            [
                (CLUSTER_TAG, "abc".to_string()),
                (CREATED_BY_TAG, "dask-serverless".to_string()),
                (REGION_TAG, "eu-west-1".to_string()),
                (LAST_SEEN_TAG, "1767225600".to_string()),
            ]
        );
    }

    #[test]
    fn last_seen_marks_are_whole_unix_seconds() {
        let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        assert_eq!(last_seen_mark(now), "1767225600");
        assert_eq!(read_last_seen_mark("1767225600"), Some(now));
        assert_eq!(read_last_seen_mark(" 1767225600 "), Some(now));
        assert_eq!(last_seen_mark(UNIX_EPOCH - Duration::from_secs(1)), "0");
        for bad in ["", "soon", "-5", "1.5", "99999999999999999999999"] {
            assert_eq!(read_last_seen_mark(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_role_policy_names_only_the_cluster_resources() {
        let cluster = ClusterId::new("abc").unwrap();
        let names = ResourceNames::new(&cluster, "aws", "eu-west-1", "123456789012");
        let document = serde_json::to_string_pretty(&names.role_policy_document()).unwrap();
        for resource in [
            "arn:aws:s3:::dask-serverless-abc-123456789012/*",
            "arn:aws:sqs:eu-west-1:123456789012:dask-serverless-abc",
            "arn:aws:lambda:eu-west-1:123456789012:function:dask-serverless-abc",
            "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/dask-serverless-abc:*",
        ] {
            assert!(
                document.contains(resource),
                "{resource} missing in {document}"
            );
        }
        assert!(
            !document.contains("\"*\""),
            "a wildcard resource: {document}"
        );
    }
}
