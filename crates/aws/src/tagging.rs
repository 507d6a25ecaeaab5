//! Finding a region's tagged resources through the Resource Groups Tagging API
//! (`tag:GetResources`), for the cleanup of leftovers.
//!
//! # Model
//!
//! One paginated `GetResources` call, filtered by one tag and by the resource types the
//! resource modules name (`function::TAGGING_TYPE`, `queue::TAGGING_TYPE`,
//! `bucket::TAGGING_TYPE`), answers the ARNs of every function, queue and bucket carrying that
//! tag. [`find`] splits each ARN into a [`TaggedArn`]; each resource module then takes its own
//! (`from_tagged`) and turns it into the [`Resource`](crate::Resource) its deletion needs. Roles
//! are not in this API (IAM is global): the `role` module finds them itself.
//!
//! The API is eventually consistent: it may list a resource for a while after its deletion (its
//! deletion then reports it as already gone) and miss one created a moment ago.

use std::collections::HashMap;

use aws_sdk_resourcegroupstagging::types::{ResourceTagMapping, TagFilter};

use crate::clients::Clients;
use crate::error::{AwsError, Call};

/// The parts of a tagged resource's ARN, `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TaggedArn {
    /// The service's ARN namespace: `lambda`, `sqs`, `s3`...
    pub(crate) service: String,
    /// The owning account (empty for buckets).
    pub(crate) account: String,
    /// What follows the account: `function:NAME`, a queue's or a bucket's name.
    pub(crate) resource: String,
    /// Every tag of the resource, key to value.
    pub(crate) tags: HashMap<String, String>,
}

impl TaggedArn {
    /// The parts of `arn`, if it has them all.
    fn parse(arn: &str) -> Option<Self> {
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let [_, _, service, _, account, resource] = parts[..] else {
            return None;
        };
        Some(Self {
            service: service.to_string(),
            account: account.to_string(),
            resource: resource.to_string(),
            tags: HashMap::new(),
        })
    }

    /// The resource of `mapping`, with its tags, if its ARN has every part.
    fn from_mapping(mapping: &ResourceTagMapping) -> Option<Self> {
        let mut tagged = Self::parse(mapping.resource_arn()?)?;
        tagged.tags = mapping
            .tags()
            .iter()
            .map(|tag| (tag.key().to_string(), tag.value().to_string()))
            .collect();
        Some(tagged)
    }
}

/// The resources of `resource_types` in this region tagged `key = value`.
pub(crate) async fn find(
    clients: &Clients,
    key: &str,
    value: &str,
    resource_types: &[&str],
) -> Result<Vec<TaggedArn>, AwsError> {
    let endpoint = clients.endpoint("tagging");
    let resource = format!("resources tagged {key}={value}");
    let call = Call::new(
        "Resource Groups Tagging",
        "tag:GetResources",
        &resource,
        &endpoint,
    );
    let mut pages = clients
        .tagging
        .get_resources()
        .tag_filters(TagFilter::builder().key(key).values(value).build())
        .set_resource_type_filters(Some(
            resource_types.iter().map(ToString::to_string).collect(),
        ))
        .into_paginator()
        .send();
    let mut found = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|error| call.sdk(error))?;
        found.extend(
            page.resource_tag_mapping_list()
                .iter()
                .filter_map(TaggedArn::from_mapping),
        );
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_split_into_service_account_and_resource() {
        assert_eq!(
            TaggedArn::parse("arn:aws:lambda:eu-west-1:123456789012:function:dask-serverless-a"),
            Some(TaggedArn {
                service: "lambda".to_string(),
                account: "123456789012".to_string(),
                resource: "function:dask-serverless-a".to_string(),
                tags: HashMap::new(),
            })
        );
        assert_eq!(
            TaggedArn::parse("arn:aws:s3:::dask-serverless-a-123456789012"),
            Some(TaggedArn {
                service: "s3".to_string(),
                account: String::new(),
                resource: "dask-serverless-a-123456789012".to_string(),
                tags: HashMap::new(),
            })
        );
        assert_eq!(TaggedArn::parse("not an arn"), None);
    }

    #[test]
    fn mappings_keep_their_tags() {
        use aws_sdk_resourcegroupstagging::types::Tag;

        let mapping = ResourceTagMapping::builder()
            .resource_arn("arn:aws:sqs:eu-west-1:123456789012:dask-serverless-a")
            .tags(
                Tag::builder()
                    .key("dask-serverless:cluster")
                    .value("a")
                    .build()
                    .unwrap(),
            )
            .tags(
                Tag::builder()
                    .key("dask-serverless:last-seen")
                    .value("1767225600")
                    .build()
                    .unwrap(),
            )
            .build();
        let tagged = TaggedArn::from_mapping(&mapping).unwrap();
        assert_eq!(tagged.resource, "dask-serverless-a");
        assert_eq!(
            tagged.tags,
            HashMap::from([
                ("dask-serverless:cluster".to_string(), "a".to_string()),
                (
                    "dask-serverless:last-seen".to_string(),
                    "1767225600".to_string()
                ),
            ])
        );
        assert_eq!(
            TaggedArn::from_mapping(&ResourceTagMapping::builder().build()),
            None
        );
    }
}
