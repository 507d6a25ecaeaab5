//! The cluster's S3 bucket: the deployment package and the runs' data. Created second.
//!
//! # Create
//!
//! [`create`] makes the bucket `dask-serverless-<cluster>-<account>` (bucket names are global,
//! hence the account id), with a `LocationConstraint` outside `us-east-1`, records it for
//! rollback, then tags it (`PutBucketTagging`: the cluster id, the creator, the region). A
//! bucket this account already owns means the cluster exists ([`AwsError::AlreadyExists`]); one
//! another account owns means the name is taken ([`AwsError::InvalidInput`]).
//!
//! [`upload`] then puts the deployment zip at `deployment/code.zip`: one `PutObject` up to
//! 8 MiB, a multipart upload of 8 MiB parts above, aborted if a part fails.
//!
//! # Delete
//!
//! [`delete`] aborts unfinished multipart uploads (a failed deployment's would keep their parts),
//! deletes the objects a page at a time (`DeleteObjects`, counted in the report), then deletes
//! the bucket. A bucket that is already gone, at any of these steps, is an
//! [`Outcome::AlreadyGone`].
//!
//! # Find by tag
//!
//! Buckets are found through the Resource Groups Tagging API with the other regional resources
//! (see the `tagging` module); [`from_tagged`] takes the buckets among its answers.

use std::time::SystemTime;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLocationConstraint, CompletedMultipartUpload, CompletedPart, CreateBucketConfiguration,
    Delete, ObjectIdentifier, Tagging,
};
use bytes::Bytes;

use crate::clients::Clients;
use crate::error::{AwsError, Call, Failure, classify};
use crate::names::ResourceNames;
use crate::resource::{DestroyReport, Outcome, Resource};
use crate::tagging::TaggedArn;

/// The resource type of buckets in the Resource Groups Tagging API.
pub(crate) const TAGGING_TYPE: &str = "s3";
/// Zips up to this size are uploaded in one `PutObject`; larger ones in parts of this size.
const MULTIPART_PART_SIZE: usize = 8 * 1024 * 1024;

/// Creates the bucket of `names` (in this region) and tags it.
pub(crate) async fn create(
    clients: &Clients,
    names: &ResourceNames,
    created: &mut Vec<Resource>,
) -> Result<(), AwsError> {
    let endpoint = clients.endpoint("s3");
    let resource = format!("bucket '{}'", names.bucket);
    let call = Call::new("S3", "s3:CreateBucket", &resource, &endpoint);
    let mut request = clients.s3.create_bucket().bucket(&names.bucket);
    if clients.region != "us-east-1" {
        request = request.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(clients.region.as_str()))
                .build(),
        );
    }
    if let Err(error) = request.send().await {
        let failure = classify(&error);
        return Err(match failure.code() {
            Some("BucketAlreadyOwnedByYou") => AwsError::AlreadyExists {
                cluster: names.cluster.to_string(),
                resource,
            },
            Some("BucketAlreadyExists") => AwsError::InvalidInput(format!(
                "the bucket name '{}' is taken by another AWS account: pick another \
                 cluster id",
                names.bucket
            )),
            _ => call.error(failure),
        });
    }
    created.push(Resource::bucket(&names.bucket));
    let call = Call::new("S3", "s3:PutBucketTagging", &resource, &endpoint);
    let tag_set = names
        .tags(SystemTime::now())
        .into_iter()
        .map(|(key, value)| {
            aws_sdk_s3::types::Tag::builder()
                .key(key)
                .value(value)
                .build()
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|tag_set| Tagging::builder().set_tag_set(Some(tag_set)).build())
        .map_err(|error| {
            call.error(Failure::Other {
                message: error.to_string(),
            })
        })?;
    clients
        .s3
        .put_bucket_tagging()
        .bucket(&names.bucket)
        .tagging(tag_set)
        .send()
        .await
        .map_err(|error| call.sdk(error))?;
    Ok(())
}

/// Uploads the deployment zip: one request up to [`MULTIPART_PART_SIZE`], a multipart
/// upload above (aborted if a part fails).
pub(crate) async fn upload(
    clients: &Clients,
    bucket: &str,
    key: &str,
    code: &Bytes,
) -> Result<(), AwsError> {
    let endpoint = clients.endpoint("s3");
    let resource = format!("object 's3://{bucket}/{key}'");
    if code.len() <= MULTIPART_PART_SIZE {
        let call = Call::new("S3", "s3:PutObject", &resource, &endpoint);
        clients
            .s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("application/zip")
            .body(ByteStream::from(code.clone()))
            .send()
            .await
            .map_err(|error| call.sdk(error))?;
        return Ok(());
    }
    let call = Call::new("S3", "s3:PutObject", &resource, &endpoint);
    let started = clients
        .s3
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .content_type("application/zip")
        .send()
        .await
        .map_err(|error| call.sdk(error))?;
    let upload_id = started.upload_id().unwrap_or_default().to_string();
    let result = upload_parts(clients, bucket, key, &upload_id, code, call).await;
    if result.is_err() {
        let aborted = clients
            .s3
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(&upload_id)
            .send()
            .await;
        if let Err(error) = aborted {
            tracing::warn!(
                "could not abort the multipart upload of {resource}: {}",
                classify(&error).message()
            );
        }
    }
    result
}

async fn upload_parts(
    clients: &Clients,
    bucket: &str,
    key: &str,
    upload_id: &str,
    code: &Bytes,
    call: Call<'_>,
) -> Result<(), AwsError> {
    let mut parts = Vec::new();
    for (index, start) in (0..code.len()).step_by(MULTIPART_PART_SIZE).enumerate() {
        let part_number = i32::try_from(index + 1).unwrap_or(i32::MAX);
        let end = (start + MULTIPART_PART_SIZE).min(code.len());
        let answer = clients
            .s3
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(part_number)
            .body(ByteStream::from(code.slice(start..end)))
            .send()
            .await
            .map_err(|error| call.sdk(error))?;
        parts.push(
            CompletedPart::builder()
                .part_number(part_number)
                .set_e_tag(answer.e_tag().map(str::to_string))
                .build(),
        );
    }
    clients
        .s3
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .map_err(|error| call.sdk(error))?;
    Ok(())
}

/// Deletes the bucket `resource` names: aborts its unfinished multipart uploads, deletes its
/// objects page by page (counted in `report`), then the bucket.
pub(crate) async fn delete(
    clients: &Clients,
    resource: &Resource,
    report: &mut DestroyReport,
) -> Result<Outcome, AwsError> {
    let bucket = &resource.name;
    let endpoint = clients.endpoint("s3");
    let described = resource.to_string();
    // Unfinished multipart uploads (a failed deployment's) would keep parts around.
    let call = Call::new("S3", "s3:ListBucketMultipartUploads", &described, &endpoint);
    match clients
        .s3
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
    {
        Ok(answer) => {
            for upload in answer.uploads() {
                let call = Call::new("S3", "s3:AbortMultipartUpload", &described, &endpoint);
                clients
                    .s3
                    .abort_multipart_upload()
                    .bucket(bucket)
                    .key(upload.key().unwrap_or_default())
                    .upload_id(upload.upload_id().unwrap_or_default())
                    .send()
                    .await
                    .map_err(|error| call.sdk(error))?;
            }
        }
        Err(error) => {
            let failure = classify(&error);
            if failure.is_not_found() {
                return Ok(Outcome::AlreadyGone);
            }
            return Err(call.error(failure));
        }
    }
    let call = Call::new("S3", "s3:ListBucket", &described, &endpoint);
    let mut pages = clients
        .s3
        .list_objects_v2()
        .bucket(bucket)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = match page {
            Ok(page) => page,
            Err(error) => {
                let failure = classify(&error);
                if failure.is_not_found() {
                    return Ok(Outcome::AlreadyGone);
                }
                return Err(call.error(failure));
            }
        };
        let keys = page
            .contents()
            .iter()
            .filter_map(|object| object.key())
            .map(|key| ObjectIdentifier::builder().key(key).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| AwsError::InvalidInput(error.to_string()))?;
        if keys.is_empty() {
            continue;
        }
        let count = keys.len() as u64;
        let delete = Delete::builder()
            .set_objects(Some(keys))
            .quiet(true)
            .build()
            .map_err(|error| AwsError::InvalidInput(error.to_string()))?;
        let call = Call::new("S3", "s3:DeleteObject", &described, &endpoint);
        let answer = clients
            .s3
            .delete_objects()
            .bucket(bucket)
            .delete(delete)
            .send()
            .await
            .map_err(|error| call.sdk(error))?;
        if let Some(first) = answer.errors().first() {
            return Err(AwsError::Service {
                action: "s3:DeleteObject".to_string(),
                resource: format!(
                    "object '{}' of {described}",
                    first.key().unwrap_or_default()
                ),
                code: first.code().unwrap_or_default().to_string(),
                message: first.message().unwrap_or_default().to_string(),
            });
        }
        report.objects_deleted += count;
    }
    let call = Call::new("S3", "s3:DeleteBucket", &described, &endpoint);
    let result = clients.s3.delete_bucket().bucket(bucket).send().await;
    call.deletion(result)
}

/// The bucket a tagged ARN names, if it names one.
pub(crate) fn from_tagged(arn: &TaggedArn) -> Option<Resource> {
    (arn.service == "s3").then(|| Resource::bucket(&arn.resource))
}
