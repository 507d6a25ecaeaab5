//! `S3Store` against a real S3 server running in this process (`s3s-fs`: S3 over HTTP on
//! 127.0.0.1, objects as files in a temporary directory, signed requests with static
//! credentials): the conformance suite, stores sharing a bucket, multipart uploads, and the
//! failures a server produces (nothing listening, missing bucket, wrong credentials, throttling,
//! silence).
//!
//! Two adjustments give `s3s-fs` the semantics of AWS S3 that the store relies on:
//!
//! - `s3s-fs` checks `If-None-Match: *` and then writes, without a lock in between, so two
//!   concurrent conditional creates of one name can both succeed — on AWS S3 exactly one does.
//!   The server here runs conditional writes one at a time (the rest of the traffic stays
//!   concurrent), so the fan-in checks test the store's own protocol, as on AWS.
//! - `s3s-fs` keeps a folder per name segment and never removes one, and each list walks every
//!   folder of the bucket, so lists slow down with every name ever written. S3 has no folders:
//!   after each delete request, the server here removes the folders left empty (while no other
//!   request runs).
#![cfg(feature = "s3")]

#[macro_use]
mod support;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dask_serverless_store::{
    Payload, S3Credentials, S3Location, S3Options, S3Store, Store, StoreError, conformance,
};
use futures::future::join_all;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Short, as are the stores' prefixes: s3s-fs keeps each object's metadata in a file named after
/// the bucket and object name (in base64), so names over about 150 bytes fail there.
const BUCKET: &str = "bucket";
const REGION: &str = "us-east-1";
const ACCESS_KEY_ID: &str = "test-access-key";
const SECRET_ACCESS_KEY: &str = "test-secret-access-key";

/// The longest any failing operation may take before the test calls it a hang.
const HANG: Duration = Duration::from_secs(20);

/// What the server has seen and how it should misbehave.
#[derive(Debug, Default)]
struct ServerState {
    requests: AtomicUsize,
    completed_multipart_uploads: AtomicUsize,
    /// Answer every request with `503 SlowDown`.
    throttle: AtomicBool,
    /// Never answer.
    stall: AtomicBool,
    /// Answer this many of the next conditional writes with `409 Conflict`.
    conflicts: AtomicUsize,
}

/// An S3 error answer.
fn error_response(status: StatusCode, code: &str, message: &str) -> s3s::HttpResponse {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    let mut response = Response::new(s3s::Body::from(body));
    *response.status_mut() = status;
    response
}

/// The S3 service, with conditional writes made atomic, empty folders removed, and the switches
/// of [`ServerState`].
#[derive(Clone)]
struct TestService {
    service: S3Service,
    /// Held by conditional writes, so that each checks and writes alone.
    conditional_writes: Arc<tokio::sync::Mutex<()>>,
    /// Shared by every request; held alone while removing empty folders.
    traffic: Arc<tokio::sync::RwLock<()>>,
    bucket: PathBuf,
    state: Arc<ServerState>,
}

type ServiceFuture =
    Pin<Box<dyn Future<Output = Result<s3s::HttpResponse, s3s::HttpError>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for TestService {
    type Response = s3s::HttpResponse;
    type Error = s3s::HttpError;
    type Future = ServiceFuture;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            this.state.requests.fetch_add(1, Ordering::SeqCst);
            if this.state.stall.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            if this.state.throttle.load(Ordering::SeqCst) {
                return Ok(error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "SlowDown",
                    "Please reduce your request rate.",
                ));
            }
            let headers = request.headers();
            let conditional = request.method() == Method::PUT
                && (headers.contains_key("if-none-match") || headers.contains_key("if-match"));
            let conflict = conditional
                && this
                    .state
                    .conflicts
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                        left.checked_sub(1)
                    })
                    .is_ok();
            if conflict {
                return Ok(error_response(
                    StatusCode::CONFLICT,
                    "ConditionalRequestConflict",
                    "A conflicting conditional operation is currently in progress.",
                ));
            }
            let completes_upload = request.method() == Method::POST
                && request
                    .uri()
                    .query()
                    .is_some_and(|query| query.contains("uploadId"));
            let deletes = request.method() == Method::DELETE
                || (request.method() == Method::POST
                    && request
                        .uri()
                        .query()
                        .is_some_and(|query| query.starts_with("delete")));
            let response = {
                let _traffic = this.traffic.read().await;
                let _conditional_write = if conditional {
                    Some(this.conditional_writes.lock().await)
                } else {
                    None
                };
                hyper::service::Service::call(&this.service, request).await
            };
            let succeeded = response.as_ref().is_ok_and(|r| r.status().is_success());
            if completes_upload && succeeded {
                this.state
                    .completed_multipart_uploads
                    .fetch_add(1, Ordering::SeqCst);
            }
            if deletes && succeeded {
                let _alone = this.traffic.write().await;
                let bucket = this.bucket.clone();
                tokio::task::spawn_blocking(move || remove_empty_folders(&bucket))
                    .await
                    .expect("remove empty folders");
            }
            response
        })
    }
}

/// Removes the folders under `root` (not `root` itself) that hold no file, at any depth.
fn remove_empty_folders(root: &Path) {
    fn visit(folder: &Path) -> bool {
        let mut empty = true;
        for entry in std::fs::read_dir(folder).expect("read a bucket folder") {
            let path = entry.expect("folder entry").path();
            if path.is_dir() && visit(&path) {
                std::fs::remove_dir(&path).expect("remove an empty folder");
            } else {
                empty = false;
            }
        }
        empty
    }
    visit(root);
}

/// An S3 server on a free port of 127.0.0.1, serving a temporary directory that holds one
/// bucket; stopped when dropped.
struct S3Server {
    address: SocketAddr,
    root: TempDir,
    state: Arc<ServerState>,
    server: tokio::task::JoinHandle<()>,
}

impl S3Server {
    async fn start() -> Self {
        let root = tempfile::Builder::new()
            .prefix("dask-serverless-s3-")
            .tempdir()
            .expect("temporary directory");
        // s3s-fs keeps a bucket as a directory under its root.
        std::fs::create_dir(root.path().join(BUCKET)).expect("create the bucket");
        let file_system = s3s_fs::FileSystem::new(root.path()).expect("s3s-fs on the directory");
        let mut builder = S3ServiceBuilder::new(file_system);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY_ID, SECRET_ACCESS_KEY));
        let state = Arc::new(ServerState::default());
        let service = TestService {
            service: builder.build(),
            conditional_writes: Arc::default(),
            traffic: Arc::default(),
            bucket: root.path().join(BUCKET),
            state: state.clone(),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("local address");
        let server = tokio::spawn(async move {
            // Dropping the set (when the server task is aborted) aborts every connection.
            let mut connections = JoinSet::new();
            let http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                // Without it, small answers written in two parts wait for a delayed ACK (40 ms).
                let _ = socket.set_nodelay(true);
                let connection = http
                    .serve_connection(TokioIo::new(socket), service.clone())
                    .into_owned();
                connections.spawn(async move {
                    let _ = connection.await;
                });
            }
        });
        Self {
            address,
            root,
            state,
            server,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    fn location(&self, prefix: &str) -> S3Location {
        S3Location {
            bucket: BUCKET.to_owned(),
            prefix: prefix.to_owned(),
            region: REGION.to_owned(),
            endpoint: Some(self.endpoint()),
        }
    }

    fn store(&self, prefix: &str) -> S3Store {
        S3Store::with_options(self.location(prefix), options()).expect("S3 store")
    }

    /// The files of the bucket, at any depth.
    fn files(&self) -> Vec<String> {
        fn walk(directory: &Path, files: &mut Vec<String>) {
            for entry in std::fs::read_dir(directory).expect("read a bucket directory") {
                let path = entry.expect("directory entry").path();
                if path.is_dir() {
                    walk(&path, files);
                } else {
                    files.push(path.display().to_string());
                }
            }
        }
        let mut files = Vec::new();
        walk(&self.root.path().join(BUCKET), &mut files);
        files
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn credentials() -> S3Credentials {
    S3Credentials {
        access_key_id: ACCESS_KEY_ID.to_owned(),
        secret_access_key: SECRET_ACCESS_KEY.to_owned(),
        session_token: None,
    }
}

/// Options for the test server: its credentials, and few quick retries.
fn options() -> S3Options {
    S3Options {
        credentials: Some(credentials()),
        max_retries: 2,
        retry_timeout: Duration::from_secs(5),
        ..S3Options::default()
    }
}

/// A server and one store in its bucket.
struct Fixture {
    server: S3Server,
    store: S3Store,
}

impl Fixture {
    async fn start() -> Self {
        let server = S3Server::start().await;
        let store = server.store("dask-serverless/conformance/");
        Self { server, store }
    }

    fn store(&self) -> &dyn Store {
        &self.store
    }

    /// Every check deletes what it wrote, fan-in sets included: the bucket must hold no file.
    async fn finish(self) {
        assert_eq!(
            self.server.files(),
            Vec::<String>::new(),
            "the check left objects behind"
        );
    }
}

conformance_tests!(Fixture::start());

fn assert_unavailable<T: std::fmt::Debug>(result: Result<T, StoreError>, needle: &str) -> String {
    match result {
        Err(StoreError::Unavailable { message }) => {
            assert!(
                message.contains(needle),
                "the message must name {needle}: {message}"
            );
            message
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_with_different_prefixes_share_a_bucket() {
    let server = S3Server::start().await;
    let first = server.store("dask-serverless/first");
    let second = server.store("dask-serverless/first-second/");
    let whole_bucket = server.store("");
    for (store, content) in [
        (&first, "first"),
        (&second, "second"),
        (&whole_bucket, "all"),
    ] {
        store
            .put("run/value", Payload::from(content.to_owned()))
            .await
            .unwrap();
        assert!(store.fan_in("run/child", "parent", 1).await.unwrap());
    }
    assert_eq!(first.list("").await.unwrap(), vec!["run/value"]);
    assert_eq!(first.delete_prefix("run/").await.unwrap(), 1);
    for (store, content) in [(&second, "second"), (&whole_bucket, "all")] {
        assert_eq!(store.get("run/value").await.unwrap(), content);
        assert!(
            !store.fan_in("run/child", "parent", 1).await.unwrap(),
            "another store's delete_prefix removed this store's fan-in set"
        );
    }
    assert!(first.fan_in("run/child", "parent", 1).await.unwrap());
    // The store over the whole bucket lists only its own namespace.
    assert_eq!(whole_bucket.list("").await.unwrap(), vec!["run/value"]);

    // The checks of prefixes and fan-in, on two stores of one bucket at the same time (the whole
    // suite twice at once is slow on this server, whose lists walk the whole bucket).
    let (left, right) = (
        server.store("dask-serverless/left/"),
        server.store("dask-serverless/right/"),
    );
    let checks = |store: S3Store| async move {
        conformance::delete_prefix_removes_exactly_the_prefix(&store).await;
        conformance::list_returns_the_keys_under_a_prefix(&store).await;
        conformance::key_can_also_be_a_folder(&store).await;
        conformance::fan_in_releases_once_despite_concurrent_duplicates(&store).await;
        conformance::cleanup_removes_objects_and_fan_in_sets(&store).await;
    };
    futures::join!(checks(left), checks(right));
    let leftovers: Vec<String> = server
        .files()
        .into_iter()
        .filter(|file| file.contains("/left/") || file.contains("/right/"))
        .collect();
    assert!(leftovers.is_empty(), "the checks left {leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_in_releases_once_across_clients() {
    const SETS: usize = 16;
    const MEMBERS: usize = 6;
    let server = S3Server::start().await;
    // Separate stores have separate clients and connections, as separate functions would.
    let stores: Vec<S3Store> = (0..MEMBERS)
        .map(|_| server.store("dask-serverless/race/"))
        .collect();
    let mut adds = Vec::new();
    for set in 0..SETS {
        for (index, store) in stores.iter().enumerate() {
            // Every member twice, from two different clients.
            let other = &stores[(index + 1) % MEMBERS];
            for adder in [store, other] {
                adds.push((adder, format!("run/child-{set}"), format!("parent-{index}")));
            }
        }
    }
    let results = join_all(adds.iter().map(|(store, key, member)| async move {
        let released = store.fan_in(key, member, MEMBERS as u32).await.unwrap();
        (key.clone(), released)
    }))
    .await;
    let mut releases = std::collections::BTreeMap::<String, usize>::new();
    for (key, released) in results {
        *releases.entry(key).or_default() += usize::from(released);
    }
    assert_eq!(releases.len(), SETS);
    assert!(
        releases.values().all(|&count| count == 1),
        "each set must release exactly once: {releases:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_go_through_multipart_uploads() {
    let server = S3Server::start().await;
    let options = S3Options {
        multipart_threshold: 6 << 20,
        part_size: 5 << 20,
        ..options()
    };
    let store = S3Store::with_options(server.location("dask-serverless/multipart/"), options)
        .expect("S3 store");
    let chunks: Vec<Bytes> = (0..7u8)
        .map(|seed| Bytes::from(vec![seed; 3 << 20]))
        .collect();
    let expected: Vec<u8> = chunks.iter().flat_map(|chunk| chunk.to_vec()).collect();
    store
        .put("run/large", Payload::from_chunks(chunks))
        .await
        .unwrap();
    assert_eq!(
        server
            .state
            .completed_multipart_uploads
            .load(Ordering::SeqCst),
        1,
        "a 21 MiB object over a 6 MiB threshold must be one multipart upload"
    );
    assert!(store.get("run/large").await.unwrap() == expected[..]);
    store
        .put("run/small", Payload::from(vec![1u8; 6 << 20]))
        .await
        .unwrap();
    assert_eq!(
        server
            .state
            .completed_multipart_uploads
            .load(Ordering::SeqCst),
        1,
        "an object at the threshold is a single put"
    );
    assert_eq!(store.delete_prefix("run/").await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_without_server_is_unavailable_quickly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind 127.0.0.1:0")
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let location = S3Location {
        bucket: BUCKET.to_owned(),
        prefix: String::new(),
        region: REGION.to_owned(),
        endpoint: Some(endpoint.clone()),
    };
    let store = S3Store::with_options(location, options()).expect("S3 store");
    let started = Instant::now();
    let result = tokio::time::timeout(HANG, store.get("run/value"))
        .await
        .expect("an operation on an absent endpoint hung");
    assert_unavailable(result, &endpoint);
    println!(
        "absent endpoint reported Unavailable after {:?}",
        started.elapsed()
    );
    let result = tokio::time::timeout(HANG, store.fan_in("run/child", "parent", 1))
        .await
        .expect("a fan-in on an absent endpoint hung");
    assert_unavailable(result, &endpoint);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bucket_is_unavailable() {
    let server = S3Server::start().await;
    let location = S3Location {
        bucket: "no-such-bucket".to_owned(),
        ..server.location("")
    };
    let store = S3Store::with_options(location, options()).expect("S3 store");
    assert_unavailable(store.list("run/").await, "no-such-bucket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_unavailable() {
    let server = S3Server::start().await;
    let options = S3Options {
        credentials: Some(S3Credentials {
            secret_access_key: "not-the-secret".to_owned(),
            ..credentials()
        }),
        ..options()
    };
    let store = S3Store::with_options(server.location(""), options).expect("S3 store");
    let message = assert_unavailable(
        store.put("run/value", Payload::from("x")).await,
        &server.endpoint(),
    );
    assert!(
        message.contains("credentials"),
        "say what to check: {message}"
    );
    for shown in [
        format!("{:?}", credentials()),
        format!("{:?}", server.store("")),
    ] {
        assert!(
            !shown.contains(SECRET_ACCESS_KEY),
            "Debug must not show the secret: {shown}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_down_answers_are_throttled_after_bounded_retries() {
    let server = S3Server::start().await;
    let options = S3Options {
        max_retries: 2,
        ..options()
    };
    let store = S3Store::with_options(server.location(""), options).expect("S3 store");
    server.state.throttle.store(true, Ordering::SeqCst);
    let result = tokio::time::timeout(HANG, store.get("run/value"))
        .await
        .expect("a throttled operation hung");
    assert!(
        matches!(result, Err(StoreError::Throttled { .. })),
        "expected Throttled, got {result:?}"
    );
    assert_eq!(
        server.state.requests.load(Ordering::SeqCst),
        3,
        "one request and two retries"
    );
    server.state.throttle.store(false, Ordering::SeqCst);
    store.put("run/value", Payload::from("x")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_release_is_retried_never_taken_for_released() {
    let server = S3Server::start().await;
    let store = server.store("dask-serverless/conflict/");
    // One conflict: the create is tried again and releases.
    server.state.conflicts.store(1, Ordering::SeqCst);
    assert!(store.fan_in("run/child", "parent", 1).await.unwrap());
    assert_eq!(server.state.conflicts.load(Ordering::SeqCst), 0);
    assert!(!store.fan_in("run/child", "parent", 1).await.unwrap());
    // Conflicts that persist: an error to retry, not a silent "already released".
    server.state.conflicts.store(10, Ordering::SeqCst);
    let result = store.fan_in("run/other", "parent", 1).await;
    assert!(
        matches!(result, Err(StoreError::Throttled { .. })),
        "expected Throttled, got {result:?}"
    );
    server.state.conflicts.store(0, Ordering::SeqCst);
    assert!(
        store.fan_in("run/other", "parent", 1).await.unwrap(),
        "the retried fan-in releases"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_server_times_out() {
    let server = S3Server::start().await;
    let options = S3Options {
        read_timeout: Duration::from_millis(300),
        max_retries: 1,
        ..options()
    };
    let store = S3Store::with_options(server.location(""), options).expect("S3 store");
    server.state.stall.store(true, Ordering::SeqCst);
    let result = tokio::time::timeout(HANG, store.get("run/value"))
        .await
        .expect("an operation on a silent server hung");
    match result {
        Err(StoreError::Timeout { message }) => {
            assert!(message.contains(&server.endpoint()), "{message}")
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_over_the_size_limit_are_rejected() {
    let server = S3Server::start().await;
    let options = S3Options {
        max_object_size: 1000,
        ..options()
    };
    let store = S3Store::with_options(server.location(""), options).expect("S3 store");
    store
        .put("run/at-limit", Payload::from(vec![0u8; 1000]))
        .await
        .unwrap();
    assert!(matches!(
        store.put("run/over", Payload::from(vec![0u8; 1001])).await,
        Err(StoreError::PayloadTooLarge {
            size: 1001,
            limit: 1000,
            ..
        })
    ));
    assert_eq!(store.list("run/").await.unwrap(), vec!["run/at-limit"]);
    assert_eq!(S3Options::default().max_object_size, 5 << 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_over_the_s3_limit_and_bad_prefixes_are_rejected() {
    let server = S3Server::start().await;
    let store = server.store(&format!("{}/", "p".repeat(100)));
    // A valid key of 1000 bytes, too long once the store's prefix and layout are added.
    let key = vec!["k".repeat(99); 10].join("/");
    match store.put(&key, Payload::from("x")).await {
        Err(StoreError::InvalidKey {
            key: reported,
            reason,
        }) => {
            assert_eq!(reported, key);
            assert!(reason.contains("1024"), "{reason}");
        }
        other => panic!("expected InvalidKey, got {other:?}"),
    }
    for prefix in ["/absolute/", "double//slash/", "dot/../dot/"] {
        assert!(
            matches!(
                S3Store::with_options(server.location(prefix), options()),
                Err(StoreError::InvalidKey { .. })
            ),
            "prefix {prefix:?} must be rejected"
        );
    }
}
