//! [`S3Store`]: objects and fan-in sets in an S3 bucket (or any S3-compatible service), with no
//! other service involved: the state of a computation stays fully serverless.
//!
//! # Layout
//!
//! Every object name of a store starts with the store's prefix inside the bucket (for example
//! `dask-serverless/cluster-7/`), so several stores share one bucket. Below it:
//!
//! ```text
//! <prefix>objects/<key>@                          an object
//! <prefix>fan-in/<key>@/members/<member digest>    a member of the fan-in set at <key>
//! <prefix>fan-in/<key>@/released                   the set has released its child
//! ```
//!
//! Names end with `@`, a character keys cannot hold, so that the object at `a` (`a@`) and the
//! objects under `a/` never share a name: S3 itself does not care, but S3-compatible servers
//! that keep objects as files (where `a` cannot be both a file and a directory) then hold every
//! layout too. A member's marker is named after a digest of the member (128 bits of its SHA-256:
//! members are free text of up to 1 KiB, S3 names are at most 1 KiB in all) and holds the
//! member's text. Objects and fan-in sets live in two namespaces, as the store's model requires.
//!
//! # Atomicity
//!
//! - **`put`** is one `PutObject` up to `S3Options::multipart_threshold` (16 MiB), a multipart
//!   upload above it (parts of `S3Options::part_size`, a few in flight at once, aborted on
//!   failure). S3 publishes an object whole when the `PutObject` or the
//!   `CompleteMultipartUpload` succeeds, never a part, so readers see the old object or the new
//!   one. The payload's chunks become the request body without being joined or copied.
//! - **`put_new`** is one `PutObject` with `If-None-Match: *`: S3 creates the object only if
//!   the name is free, atomically (`412 Precondition Failed` otherwise). Only objects up to the
//!   multipart threshold: a multipart upload is not conditional here.
//! - **`get`** reads the whole object into one buffer owned by the caller.
//! - **`delete_prefix`** lists the prefix and deletes what it lists in bulk (`DeleteObjects`, up
//!   to 1000 names a request), first the objects, then the fan-in sets. It counts the objects it
//!   listed and deleted; an object written under the prefix while it is being deleted may
//!   survive.
//! - **`list`** lists the objects' namespace and sorts the keys.
//!
//! # Fan-in without a coordination service
//!
//! `fan_in(key, member, expected)`:
//!
//! 1. list the members' markers; a new member arriving at a set that already has `expected`
//!    members is an overflow, reported before anything is written;
//! 2. write the member's marker (an overwrite, so a repeated delivery changes nothing);
//! 3. list the markers again; fewer than `expected`: answer `false`;
//! 4. otherwise create `released` with `If-None-Match: *` (a conditional put): answer `true`
//!    if that create succeeded, `false` if the object already existed (`412 Precondition
//!    Failed`). A `409 Conflict` (S3's answer when a concurrent request on the same name
//!    interferes) is retried twice, then reported as [`StoreError::Throttled`], never taken for
//!    "already released".
//!
//! *Exactly one release.* S3 guarantees strong read-after-write consistency for puts and
//! lists: a list started after a put completed sees the put. Among the `expected` distinct
//! members, the one whose marker write completes last lists afterwards and so counts all of
//! them: someone always attempts the create once the set is complete (no lost release). Every
//! caller that attempts it has seen a complete set, and the conditional put lets exactly one
//! create succeed, whatever the number of concurrent or repeated callers (no double release).
//! A repeated delivery of a member to a complete set also attempts the create, so a parent
//! retried after crashing between its marker and the create still releases the child, once.
//!
//! Limits of the argument: it needs a service whose conditional create is atomic (AWS S3 since
//! 2024, and the S3-compatible services that implement `If-None-Match`); a create that times
//! out leaves its outcome unknown (the caller gets [`StoreError::Timeout`], and a retry answers
//! `false` if the first attempt did create the marker); two *new* members racing past the
//! expected size may both be counted instead of one being rejected (a caller bug either way:
//! the expected size is wrong); a fan-in costs two lists and one or two puts.
//!
//! # Failures
//!
//! Requests are retried by `object_store` with exponential backoff, a few times and within a
//! bounded time (`S3Options`), then fail: an endpoint that refuses connections gives
//! [`StoreError::Unavailable`] naming it within about a second; a missing bucket, refused
//! credentials or permissions also give [`StoreError::Unavailable`] saying what to fix; `503
//! SlowDown` and `429` that outlast the retries give [`StoreError::Throttled`]; a request that
//! runs out of time gives [`StoreError::Timeout`]. Credentials come from the standard
//! environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, container
//! and web-identity credentials, the instance's role) unless `S3Options::credentials` gives
//! them.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AwsCredential};
use object_store::client::{HttpError, HttpErrorKind};
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig, StaticCredentialProvider,
};
use sha2::{Digest, Sha256};

use crate::key::{fan_in_overflow, validate_fan_in, validate_prefix};
use crate::{Payload, Store, StoreError, validate_key};

/// The namespace of objects, below the store's prefix.
const OBJECT_NAMESPACE: &str = "objects/";

/// The namespace of fan-in sets, below the store's prefix.
const FAN_IN_NAMESPACE: &str = "fan-in/";

/// Ends the name of every object and fan-in folder; never part of a key.
const NAME_SUFFIX: char = '@';

/// The longest object name S3 accepts, in bytes.
const MAX_OBJECT_NAME_LENGTH: usize = 1024;

/// How many times the creation of a `released` marker is tried when S3 answers `409 Conflict`.
const CONFLICT_ATTEMPTS: u32 = 3;

/// How many bytes of a member's SHA-256 name its marker.
const MEMBER_DIGEST_BYTES: usize = 16;

/// The most parts of one multipart upload.
const MAX_PARTS: u64 = 10_000;

/// Where a store lives: a bucket, a prefix inside it, and the service that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// The bucket, which must exist (the deployer creates it).
    pub bucket: String,
    /// The start of every object name of the store, such as `dask-serverless/cluster-7/`;
    /// empty for the whole bucket. A trailing `/` is added if missing.
    pub prefix: String,
    /// The bucket's region, such as `us-east-1`.
    pub region: String,
    /// The service's URL, for an S3-compatible service or a local server (`http://` allowed);
    /// `None` for the endpoint the environment names (`AWS_ENDPOINT_URL_S3`,
    /// `AWS_ENDPOINT_URL`), or else AWS S3 in `region`.
    pub endpoint: Option<String>,
}

/// Static credentials, used instead of the environment's.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    /// The access key id (`AWS_ACCESS_KEY_ID`).
    pub access_key_id: String,
    /// The secret access key (`AWS_SECRET_ACCESS_KEY`).
    pub secret_access_key: String,
    /// The session token of temporary credentials (`AWS_SESSION_TOKEN`).
    pub session_token: Option<String>,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<hidden>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<hidden>"),
            )
            .finish()
    }
}

/// Settings of an [`S3Store`]; [`Default`] suits AWS S3 and local servers alike.
#[derive(Debug, Clone)]
pub struct S3Options {
    /// Credentials to use instead of the environment's.
    pub credentials: Option<S3Credentials>,
    /// How long opening one connection may take.
    pub connect_timeout: Duration,
    /// The longest silence while waiting for or reading a response.
    pub read_timeout: Duration,
    /// How long one whole request (a part or an object's transfer included) may take.
    pub request_timeout: Duration,
    /// How many times a failed request (connection error, `5xx`, `429`) is retried.
    pub max_retries: usize,
    /// The time after which a request is no longer retried, counted from its first attempt.
    pub retry_timeout: Duration,
    /// Objects larger than this many bytes are written with a multipart upload.
    pub multipart_threshold: usize,
    /// The size of one part of a multipart upload (S3 needs at least 5 MiB); grown when an
    /// object would need more than 10 000 parts.
    pub part_size: usize,
    /// How many parts of one object are uploaded at once.
    pub upload_concurrency: usize,
    /// The largest object [`Store::put`] accepts, in bytes.
    pub max_object_size: u64,
}

impl S3Options {
    /// The largest object S3 stores: 5 TiB.
    pub const DEFAULT_MAX_OBJECT_SIZE: u64 = 5 << 40;
}

impl Default for S3Options {
    fn default() -> Self {
        Self {
            credentials: None,
            connect_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(300),
            max_retries: 3,
            retry_timeout: Duration::from_secs(15),
            multipart_threshold: 16 << 20,
            part_size: 16 << 20,
            upload_concurrency: 4,
            max_object_size: Self::DEFAULT_MAX_OBJECT_SIZE,
        }
    }
}

/// A store in an S3 bucket. Cloning gives another handle on the same client.
#[derive(Debug, Clone)]
pub struct S3Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: AmazonS3,
    location: S3Location,
    /// The prefix inside the bucket, empty or ending with `/`.
    prefix: String,
    /// The endpoint, for messages.
    endpoint: String,
    options: S3Options,
}

impl S3Store {
    /// A store at `location` with the default [`S3Options`] and the environment's credentials.
    /// Sends no request: a missing bucket or unreachable endpoint shows at the first operation.
    pub fn new(location: S3Location) -> Result<S3Store, StoreError> {
        Self::with_options(location, S3Options::default())
    }

    /// Like [`new`](Self::new), with explicit settings.
    pub fn with_options(location: S3Location, options: S3Options) -> Result<S3Store, StoreError> {
        let prefix = normalize_prefix(&location.prefix)?;
        let chosen_endpoint = location.endpoint.clone().or_else(endpoint_from_environment);
        let endpoint = chosen_endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", location.region));
        let client_options = ClientOptions::new()
            .with_connect_timeout(options.connect_timeout)
            .with_read_timeout(options.read_timeout)
            .with_timeout(options.request_timeout);
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: options.max_retries,
            retry_timeout: options.retry_timeout,
        };
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&location.bucket)
            .with_region(&location.region)
            .with_client_options(client_options)
            .with_retry(retry);
        if let Some(url) = &chosen_endpoint {
            builder = builder
                .with_endpoint(url)
                .with_allow_http(url.starts_with("http://"));
        }
        if let Some(credentials) = &options.credentials {
            builder =
                builder.with_credentials(Arc::new(StaticCredentialProvider::new(AwsCredential {
                    key_id: credentials.access_key_id.clone(),
                    secret_key: credentials.secret_access_key.clone(),
                    token: credentials.session_token.clone(),
                })));
        }
        let client = builder.build().map_err(|error| StoreError::Unavailable {
            message: format!(
                "invalid S3 configuration for bucket {:?} at {endpoint}: {error}",
                location.bucket
            ),
        })?;
        Ok(S3Store {
            inner: Arc::new(Inner {
                client,
                location,
                prefix,
                endpoint,
                options,
            }),
        })
    }

    /// Where the store lives.
    pub fn location(&self) -> &S3Location {
        &self.inner.location
    }

    /// The full object name of `name` (a name inside the store), checked against S3's limit.
    fn path(&self, name: &str, key: &str) -> Result<Path, StoreError> {
        let full_name = format!("{}{name}", self.inner.prefix);
        if full_name.len() > MAX_OBJECT_NAME_LENGTH {
            return Err(StoreError::InvalidKey {
                key: key.to_owned(),
                reason: format!(
                    "in this store the key needs the S3 object name {full_name:?}, {} bytes long; \
                     S3 allows at most {MAX_OBJECT_NAME_LENGTH} bytes",
                    full_name.len()
                ),
            });
        }
        Path::parse(&full_name).map_err(|error| StoreError::InvalidKey {
            key: key.to_owned(),
            reason: error.to_string(),
        })
    }

    fn object_path(&self, key: &str) -> Result<Path, StoreError> {
        self.path(&format!("{OBJECT_NAMESPACE}{key}{NAME_SUFFIX}"), key)
    }

    /// The folder of a namespace under a store prefix (`prefix` empty or ending with `/`).
    fn folder_path(&self, namespace: &str, prefix: &str) -> Result<Path, StoreError> {
        let folder = format!("{namespace}{prefix}");
        self.path(folder.trim_end_matches('/'), prefix)
    }

    /// Lists the names of the objects in `folder`, relative to it.
    async fn list_folder(&self, folder: &Path, key: &str) -> Result<Vec<String>, StoreError> {
        let start = format!("{folder}/");
        self.inner
            .client
            .list(Some(folder))
            .map_err(|error| self.error(error, "list", key))
            .try_filter_map(|meta| {
                let name = meta
                    .location
                    .as_ref()
                    .strip_prefix(&start)
                    .map(str::to_owned);
                async move { Ok(name) }
            })
            .try_collect()
            .await
    }

    /// Deletes every object in `folder`; returns how many were deleted.
    async fn delete_folder(&self, folder: &Path, prefix: &str) -> Result<u64, StoreError> {
        let locations = self
            .inner
            .client
            .list(Some(folder))
            .map_ok(|meta| meta.location)
            .boxed();
        let mut deleted = 0;
        let mut results = self.inner.client.delete_stream(locations);
        while let Some(result) = results.next().await {
            match result {
                Ok(_) => deleted += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(self.error(error, "delete", prefix)),
            }
        }
        Ok(deleted)
    }

    async fn put_single(&self, path: &Path, payload: Payload, key: &str) -> Result<(), StoreError> {
        let payload = PutPayload::from_iter(payload.into_chunks());
        self.inner
            .client
            .put_opts(path, payload, PutOptions::default())
            .await
            .map_err(|error| self.error(error, "write", key))?;
        Ok(())
    }

    async fn put_multipart(
        &self,
        path: &Path,
        payload: Payload,
        key: &str,
    ) -> Result<(), StoreError> {
        let size = payload.len() as u64;
        let part_size = (self.inner.options.part_size.max(1) as u64).max(size.div_ceil(MAX_PARTS));
        let parts = split_into_parts(payload, usize::try_from(part_size).unwrap_or(usize::MAX));
        let mut upload = self
            .inner
            .client
            .put_multipart(path)
            .await
            .map_err(|error| self.error(error, "start the upload of", key))?;
        let uploads: Vec<_> = parts
            .into_iter()
            .map(|part| upload.put_part(part))
            .collect();
        let uploaded = futures::stream::iter(uploads)
            .buffer_unordered(self.inner.options.upload_concurrency.max(1))
            .try_collect::<Vec<()>>()
            .await;
        let completed = match uploaded {
            Ok(_) => upload.complete().await.map(drop),
            Err(error) => Err(error),
        };
        if let Err(error) = completed {
            // The upload is abandoned; a failed abort leaves parts that the bucket's lifecycle
            // rule for incomplete uploads removes.
            let _ = upload.abort().await;
            return Err(self.error(error, "write", key));
        }
        Ok(())
    }

    /// Creates the `released` marker of a fan-in set: `true` if this call created it, `false` if
    /// it already existed.
    async fn create_release_marker(
        &self,
        released: &Path,
        member: &str,
        key: &str,
    ) -> Result<bool, StoreError> {
        let text = Bytes::copy_from_slice(member.as_bytes());
        self.create(released, text, key, "release the fan-in set")
            .await
    }

    /// Writes `bytes` at `path` with `If-None-Match: *`: `true` if this call created the object,
    /// `false` if it already existed.
    async fn create(
        &self,
        path: &Path,
        bytes: Bytes,
        key: &str,
        action: &str,
    ) -> Result<bool, StoreError> {
        let mut attempt = 1;
        loop {
            let create = PutOptions::from(PutMode::Create);
            let result = self
                .inner
                .client
                .put_opts(path, PutPayload::from(bytes.clone()), create)
                .await;
            let error = match result {
                Ok(_) => return Ok(true),
                Err(object_store::Error::Precondition { .. }) => return Ok(false),
                Err(error @ object_store::Error::AlreadyExists { .. }) => error,
                Err(error) => return Err(self.error(error, action, key)),
            };
            // `412 Precondition Failed`: the object exists. `409 Conflict`: a concurrent request
            // on the same name interfered and the create may be retried (its outcome is then
            // known for certain); answering `false` could lose the object.
            let description = describe_chain(&error);
            if !description.contains("409 Conflict") {
                return Ok(false);
            }
            if attempt == CONFLICT_ATTEMPTS {
                return Err(StoreError::Throttled {
                    message: format!(
                        "S3 at {} answered {CONFLICT_ATTEMPTS} times that concurrent requests \
                         conflict while trying to {action} {key:?}; retry: {description}",
                        self.inner.endpoint
                    ),
                });
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
        }
    }

    /// Maps an `object_store` error onto the store's errors; `operation` and `key` say what was
    /// being done, for the message.
    fn error(&self, error: object_store::Error, operation: &str, key: &str) -> StoreError {
        let endpoint = &self.inner.endpoint;
        let bucket = &self.inner.location.bucket;
        let description = describe_chain(&error);
        if description.contains("NoSuchBucket") {
            return StoreError::Unavailable {
                message: format!(
                    "bucket {bucket:?} does not exist at {endpoint}; create it (the deployer \
                     does) or point the store at an existing bucket"
                ),
            };
        }
        match &error {
            object_store::Error::NotFound { .. } => {
                return StoreError::NotFound {
                    key: key.to_owned(),
                };
            }
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => {
                return StoreError::Unavailable {
                    message: format!(
                        "S3 at {endpoint} refused to {operation} {key:?} in bucket {bucket:?}: \
                         {description}; check the credentials (AWS_ACCESS_KEY_ID, \
                         AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN or the role) and the bucket's \
                         policy"
                    ),
                };
            }
            _ => {}
        }
        match transport_failure(&error) {
            Some(HttpErrorKind::Timeout) => {
                return StoreError::Timeout {
                    message: format!(
                        "S3 at {endpoint} did not complete {operation} {key:?} in time: \
                         {description}"
                    ),
                };
            }
            Some(HttpErrorKind::Connect | HttpErrorKind::Request | HttpErrorKind::Interrupted) => {
                return StoreError::Unavailable {
                    message: format!(
                        "cannot reach S3 at {endpoint} to {operation} {key:?}: {description}; \
                         check the endpoint and that the service is running"
                    ),
                };
            }
            _ => {}
        }
        if is_throttling(&description) {
            return StoreError::Throttled {
                message: format!("S3 at {endpoint} asked to slow down: {description}"),
            };
        }
        StoreError::Io {
            key: key.to_owned(),
            source: std::io::Error::other(format!(
                "S3 at {endpoint} failed to {operation} the key: {description}"
            )),
        }
    }
}

/// The S3 endpoint the standard environment names, if any.
fn endpoint_from_environment() -> Option<String> {
    ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
}

/// Checks the store's prefix inside the bucket and makes it end with `/` (or stay empty).
fn normalize_prefix(prefix: &str) -> Result<String, StoreError> {
    if prefix.is_empty() {
        return Ok(String::new());
    }
    let folder = prefix.strip_suffix('/').unwrap_or(prefix);
    let invalid = |reason: String| StoreError::InvalidKey {
        key: prefix.to_owned(),
        reason,
    };
    if folder.is_empty() || folder.starts_with('/') {
        return Err(invalid(
            "the prefix inside the bucket is relative: it cannot start with '/'".to_owned(),
        ));
    }
    let parsed = Path::parse(folder).map_err(|error| invalid(error.to_string()))?;
    if parsed.as_ref() != folder {
        return Err(invalid(
            "the prefix inside the bucket cannot contain an empty segment ('//')".to_owned(),
        ));
    }
    Ok(format!("{folder}/"))
}

/// Splits a payload into parts of `part_size` bytes (the last one shorter) without copying.
fn split_into_parts(payload: Payload, part_size: usize) -> Vec<PutPayload> {
    let mut parts = Vec::new();
    let mut current: Vec<Bytes> = Vec::new();
    let mut current_length = 0;
    for mut chunk in payload.into_chunks() {
        while !chunk.is_empty() {
            let taken = chunk.split_to((part_size - current_length).min(chunk.len()));
            current_length += taken.len();
            current.push(taken);
            if current_length == part_size {
                parts.push(PutPayload::from_iter(std::mem::take(&mut current)));
                current_length = 0;
            }
        }
    }
    if current_length > 0 || parts.is_empty() {
        parts.push(PutPayload::from_iter(current));
    }
    parts
}

/// The marker name of a fan-in member: the first 128 bits of the SHA-256 of its text, in
/// hexadecimal (32 characters; two of the `n` members of a set share a name with odds of about
/// n² / 2^129, negligible for any set).
fn member_digest(member: &str) -> String {
    let digest = Sha256::digest(member.as_bytes());
    let mut hexadecimal = String::with_capacity(MEMBER_DIGEST_BYTES * 2);
    for byte in &digest[..MEMBER_DIGEST_BYTES] {
        let _ = write!(hexadecimal, "{byte:02x}");
    }
    hexadecimal
}

/// Every message of an error's chain, joined.
fn describe_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut description = error.to_string();
    let mut current = error.source();
    while let Some(source) = current {
        let message = source.to_string();
        if !description.contains(&message) {
            description.push_str(": ");
            description.push_str(&message);
        }
        current = source.source();
    }
    description
}

/// The kind of the transport failure behind an error, if one is.
fn transport_failure(error: &(dyn std::error::Error + 'static)) -> Option<HttpErrorKind> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(http_error) = error.downcast_ref::<HttpError>() {
            return Some(http_error.kind());
        }
        current = error.source();
    }
    None
}

/// Whether a failure's description is S3 asking the client to slow down.
fn is_throttling(description: &str) -> bool {
    [
        "SlowDown",
        "503 Service Unavailable",
        "429 Too Many Requests",
        "TooManyRequests",
        "RequestLimitExceeded",
        "Throttling",
    ]
    .iter()
    .any(|marker| description.contains(marker))
}

#[async_trait]
impl Store for S3Store {
    async fn put(&self, key: &str, payload: Payload) -> Result<(), StoreError> {
        validate_key(key)?;
        let path = self.object_path(key)?;
        let size = payload.len() as u64;
        let limit = self.inner.options.max_object_size;
        if size > limit {
            return Err(StoreError::PayloadTooLarge {
                key: key.to_owned(),
                size,
                limit,
            });
        }
        if payload.len() > self.inner.options.multipart_threshold {
            self.put_multipart(&path, payload, key).await
        } else {
            self.put_single(&path, payload, key).await
        }
    }

    async fn put_new(&self, key: &str, payload: Payload) -> Result<bool, StoreError> {
        validate_key(key)?;
        let path = self.object_path(key)?;
        // One conditional PUT: a claim is small; a multipart upload cannot be conditional here.
        let limit = self.inner.options.multipart_threshold as u64;
        let size = payload.len() as u64;
        if size > limit {
            return Err(StoreError::PayloadTooLarge {
                key: key.to_owned(),
                size,
                limit,
            });
        }
        let bytes = payload.into_contiguous();
        self.create(&path, bytes, key, "write").await
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        validate_key(key)?;
        let path = self.object_path(key)?;
        let result = self
            .inner
            .client
            .get(&path)
            .await
            .map_err(|error| self.error(error, "read", key))?;
        result
            .bytes()
            .await
            .map_err(|error| self.error(error, "read", key))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        let path = self.object_path(key)?;
        match self.inner.client.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(self.error(error, "delete", key)),
        }
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, StoreError> {
        validate_prefix(prefix, false)?;
        let objects = self.folder_path(OBJECT_NAMESPACE, prefix)?;
        let fan_in_sets = self.folder_path(FAN_IN_NAMESPACE, prefix)?;
        let deleted = self.delete_folder(&objects, prefix).await?;
        self.delete_folder(&fan_in_sets, prefix).await?;
        Ok(deleted)
    }

    async fn fan_in(&self, key: &str, member: &str, expected: u32) -> Result<bool, StoreError> {
        validate_fan_in(key, member, expected)?;
        let folder = format!("{FAN_IN_NAMESPACE}{key}{NAME_SUFFIX}");
        let members = self.path(&format!("{folder}/members"), key)?;
        let digest = member_digest(member);
        let marker = self.path(&format!("{folder}/members/{digest}"), key)?;
        let released = self.path(&format!("{folder}/released"), key)?;
        let expected_members = expected as usize;

        let present = self.list_folder(&members, key).await?;
        let is_new = !present.contains(&digest);
        let count = if is_new {
            if present.len() >= expected_members {
                return Err(fan_in_overflow(key, member, expected));
            }
            let text = PutPayload::from(Bytes::copy_from_slice(member.as_bytes()));
            self.inner
                .client
                .put_opts(&marker, text, PutOptions::default())
                .await
                .map_err(|error| self.error(error, "add a fan-in member to", key))?;
            self.list_folder(&members, key).await?.len()
        } else {
            present.len()
        };
        if count < expected_members {
            return Ok(false);
        }
        self.create_release_marker(&released, member, key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        validate_prefix(prefix, true)?;
        let folder = self.folder_path(OBJECT_NAMESPACE, prefix)?;
        let mut keys: Vec<String> = self
            .list_folder(&folder, prefix)
            .await?
            .into_iter()
            .filter_map(|name| {
                let relative = format!("{prefix}{name}");
                relative
                    .strip_suffix(NAME_SUFFIX)
                    .map(str::to_owned)
                    .filter(|key| validate_key(key).is_ok())
            })
            .collect();
        keys.sort();
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lengths(parts: &[PutPayload]) -> Vec<usize> {
        parts.iter().map(PutPayload::content_length).collect()
    }

    #[test]
    fn parts_have_the_part_size_except_the_last() {
        let payload = Payload::from_chunks(vec![
            Bytes::from(vec![1u8; 7]),
            Bytes::new(),
            Bytes::from(vec![2u8; 5]),
        ]);
        let parts = split_into_parts(payload, 4);
        assert_eq!(lengths(&parts), vec![4, 4, 4]);
        let joined: Vec<u8> = parts
            .iter()
            .flat_map(|part| part.iter().flat_map(|chunk| chunk.to_vec()))
            .collect();
        assert_eq!(joined, [vec![1u8; 7], vec![2u8; 5]].concat());
        assert_eq!(
            lengths(&split_into_parts(Payload::from(vec![0u8; 9]), 4)),
            vec![4, 4, 1]
        );
        assert_eq!(lengths(&split_into_parts(Payload::new(), 4)), vec![0]);
    }

    #[test]
    fn prefixes_are_normalized_and_checked() {
        assert_eq!(normalize_prefix("").unwrap(), "");
        assert_eq!(normalize_prefix("a/b").unwrap(), "a/b/");
        assert_eq!(normalize_prefix("a/b/").unwrap(), "a/b/");
        assert_eq!(
            normalize_prefix("dask-serverless:cluster-1/").unwrap(),
            "dask-serverless:cluster-1/"
        );
        for invalid in ["/", "/a", "a//b", "a/../b", "a/./b"] {
            assert!(
                matches!(
                    normalize_prefix(invalid),
                    Err(StoreError::InvalidKey { .. })
                ),
                "{invalid:?} must be rejected"
            );
        }
    }

    #[test]
    fn member_digests_are_hexadecimal_sha256() {
        assert_eq!(member_digest("abc"), "ba7816bf8f01cfea414140de5dae2223");
    }

    #[test]
    fn throttling_is_recognized() {
        assert!(is_throttling(
            "Server returned non-2xx status code: 503 Service Unavailable: <Code>SlowDown</Code>"
        ));
        assert!(is_throttling("429 Too Many Requests"));
        assert!(!is_throttling("500 Internal Server Error"));
    }
}
