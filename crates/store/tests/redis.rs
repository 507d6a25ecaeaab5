//! `RedisStore` against a real `redis-server`, started and stopped by each test: the
//! conformance suite, stores sharing a server, and the failures a real server produces (down,
//! killed, paused).
//!
//! The server is Debian's `redis-server`; without it these tests fail and say how to install it.
#![cfg(feature = "redis")]

#[macro_use]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dask_serverless_store::{Payload, RedisOptions, RedisStore, Store, StoreError, conformance};
use futures::future::join_all;

/// The longest any failing operation may take before the test calls it a hang.
const HANG: Duration = Duration::from_secs(10);

/// A `redis-server` process on a free port of 127.0.0.1, killed when dropped.
struct RedisServer {
    process: Child,
    port: u16,
}

impl RedisServer {
    /// Starts a server on a free port, retrying on a port taken meanwhile.
    fn start() -> Self {
        for _ in 0..5 {
            if let Some(server) = Self::start_on(free_port()) {
                return server;
            }
        }
        panic!("redis-server did not start on any of five free ports");
    }

    /// Starts a server on `port`; `None` if it exited (the port is taken).
    fn start_on(port: u16) -> Option<Self> {
        let process = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let process = match process {
            Ok(process) => process,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server is not installed, and the Redis store tests need it: \
                 run `apt-get install redis-server` (Debian/Ubuntu)"
            ),
            Err(error) => panic!("cannot start redis-server: {error}"),
        };
        let mut server = Self { process, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if server.answers_ping() {
                return Some(server);
            }
            if server
                .process
                .try_wait()
                .expect("poll redis-server")
                .is_some()
            {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("redis-server on port {port} did not answer PING within 10 s");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn answers_ping(&self) -> bool {
        send_command(self.port, "PING").is_some_and(|answer| answer == "+PONG")
    }

    /// How many keys the server holds, all stores together.
    fn key_count(&self) -> u64 {
        let answer = send_command(self.port, "DBSIZE").expect("DBSIZE");
        answer
            .strip_prefix(':')
            .and_then(|count| count.parse().ok())
            .unwrap_or_else(|| panic!("unexpected DBSIZE answer {answer:?}"))
    }

    /// Sends `signal` (such as `libc::SIGSTOP`) to the server.
    fn signal(&self, signal: libc::c_int) {
        let process = libc::pid_t::try_from(self.process.id()).expect("process id");
        // SAFETY: `kill` only sends a signal; the process is our own child, not yet reaped.
        let result = unsafe { libc::kill(process, signal) };
        assert_eq!(result, 0, "kill({process}, {signal}) failed");
    }

    /// Kills the server now and waits for it to exit.
    fn kill(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A paused server must run again to die promptly; errors are ignored on the way out.
        if matches!(self.process.try_wait(), Ok(None))
            && let Ok(process) = libc::pid_t::try_from(self.process.id())
        {
            // SAFETY: as in `signal`.
            unsafe { libc::kill(process, libc::SIGCONT) };
        }
        self.kill();
    }
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Sends one inline command and returns the first line of the answer, or `None` if the server
/// cannot be reached.
fn send_command(port: u16, command: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(format!("{command}\r\n").as_bytes()).ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    Some(line.trim_end().to_owned())
}

/// A server and one store on it.
struct Fixture {
    server: RedisServer,
    store: RedisStore,
}

impl Fixture {
    async fn start() -> Self {
        let server = RedisServer::start();
        let store = RedisStore::connect(&server.url(), "dask-serverless:conformance/")
            .await
            .expect("connect to the test server");
        Self { server, store }
    }

    fn store(&self) -> &dyn Store {
        &self.store
    }

    /// Every check deletes what it wrote, fan-in sets included: the server must be empty.
    async fn finish(self) {
        assert_eq!(self.server.key_count(), 0, "the check left keys behind");
    }
}

conformance_tests!(Fixture::start());

async fn connect(server: &RedisServer, key_prefix: &str) -> RedisStore {
    RedisStore::connect(&server.url(), key_prefix)
        .await
        .expect("connect to the test server")
}

fn assert_unavailable<T: std::fmt::Debug>(result: Result<T, StoreError>, address: &str) -> String {
    match result {
        Err(StoreError::Unavailable { message }) => {
            assert!(
                message.contains(address),
                "the message must name the server's address {address}: {message}"
            );
            message
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_with_different_key_prefixes_share_a_server() {
    let server = RedisServer::start();
    // Glob characters in a prefix are matched literally by list and delete_prefix: `c*/` and
    // `c?[1]/` read as globs would also match `cX/` and `cY1/`.
    let globs = [
        connect(&server, "dask-serverless:c*/").await,
        connect(&server, "dask-serverless:c?[1]/").await,
    ];
    let plain = [
        connect(&server, "dask-serverless:cX/").await,
        connect(&server, "dask-serverless:cY1/").await,
    ];
    for store in globs.iter().chain(&plain) {
        let content = store.key_prefix().to_owned();
        store
            .put("run/value", Payload::from(content))
            .await
            .unwrap();
        assert!(store.fan_in("run/child", "parent", 1).await.unwrap());
    }
    for store in &globs {
        assert_eq!(store.get("run/value").await.unwrap(), store.key_prefix());
        assert_eq!(store.list("").await.unwrap(), vec!["run/value"]);
        assert_eq!(store.delete_prefix("run/").await.unwrap(), 1);
    }
    for store in &plain {
        assert_eq!(store.get("run/value").await.unwrap(), store.key_prefix());
        assert_eq!(store.list("run/").await.unwrap(), vec!["run/value"]);
        assert!(
            !store.fan_in("run/child", "parent", 1).await.unwrap(),
            "another store's delete_prefix removed this store's fan-in set"
        );
    }
    for store in &globs {
        assert!(store.fan_in("run/child", "parent", 1).await.unwrap());
    }

    // The whole suite, on two stores of one server at the same time.
    let (left, right) = (
        connect(&server, "dask-serverless:left/").await,
        connect(&server, "dask-serverless:right/").await,
    );
    futures::join!(conformance::run_all(&left), conformance::run_all(&right));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_in_releases_once_across_connections() {
    const SETS: usize = 32;
    const MEMBERS: u32 = 8;
    let server = RedisServer::start();
    // Separate stores have separate connections, as separate functions would.
    let stores = join_all((0..MEMBERS).map(|_| connect(&server, "dask-serverless:race/"))).await;
    let mut adds = Vec::new();
    for set in 0..SETS {
        for (index, store) in stores.iter().enumerate() {
            // Every member twice, from two different connections.
            let other = &stores[(index + 1) % stores.len()];
            for adder in [store, other] {
                adds.push((adder, format!("run/child-{set}"), format!("parent-{index}")));
            }
        }
    }
    let results = join_all(adds.iter().map(|(store, key, member)| async move {
        let released = store.fan_in(key, member, MEMBERS).await.unwrap();
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
async fn absent_server_is_unavailable_quickly() {
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let started = Instant::now();
    let result = tokio::time::timeout(
        HANG,
        RedisStore::connect(&format!("redis://{address}"), "dask-serverless:absent/"),
    )
    .await
    .expect("connecting to an absent server hung");
    let message = assert_unavailable(result, &address);
    assert!(
        message.contains("redis-server"),
        "say what to do: {message}"
    );
    println!(
        "absent server reported Unavailable after {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_is_unavailable_then_a_restarted_one_is_used_again() {
    let mut server = RedisServer::start();
    let port = server.port;
    let address = format!("127.0.0.1:{port}");
    let store = connect(&server, "dask-serverless:killed/").await;
    store
        .put("run/value", Payload::from("before"))
        .await
        .unwrap();

    server.kill();
    for attempt in 0..3 {
        let started = Instant::now();
        let result = tokio::time::timeout(HANG, store.get("run/value"))
            .await
            .expect("an operation on a killed server hung");
        assert_unavailable(result, &address);
        println!(
            "operation {attempt} on a killed server: Unavailable after {:?}",
            started.elapsed()
        );
    }
    let started = Instant::now();
    let result = tokio::time::timeout(HANG, store.fan_in("run/child", "parent", 2))
        .await
        .expect("a fan-in on a killed server hung");
    assert_unavailable(result, &address);
    println!(
        "fan-in on a killed server: Unavailable after {:?}",
        started.elapsed()
    );

    // A new server on the same address: the store reconnects by itself (the data is gone).
    let _restarted = RedisServer::start_on(port).expect("restart redis-server on its port");
    let deadline = Instant::now() + HANG;
    loop {
        match store.put("run/value", Payload::from("after")).await {
            Ok(()) => break,
            Err(StoreError::Unavailable { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("the store did not reconnect: {error}"),
        }
    }
    assert_eq!(store.get("run/value").await.unwrap(), "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_server_times_out() {
    let server = RedisServer::start();
    let options = RedisOptions {
        response_timeout: Duration::from_millis(300),
        ..RedisOptions::default()
    };
    let store = RedisStore::connect_with_options(&server.url(), "dask-serverless:paused/", options)
        .await
        .unwrap();
    store.put("run/value", Payload::from("x")).await.unwrap();
    server.signal(libc::SIGSTOP);
    let result = tokio::time::timeout(HANG, store.get("run/value"))
        .await
        .expect("an operation on a paused server hung");
    server.signal(libc::SIGCONT);
    match result {
        Err(StoreError::Timeout { message }) => {
            assert!(
                message.contains(&format!("127.0.0.1:{}", server.port)),
                "{message}"
            )
        }
        other => panic!("expected Timeout from a paused server, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_over_the_size_limit_are_rejected() {
    const LIMIT: usize = 1 << 20;
    let server = RedisServer::start();
    let options = RedisOptions {
        max_object_size: LIMIT as u64,
        ..RedisOptions::default()
    };
    let store = RedisStore::connect_with_options(&server.url(), "dask-serverless:limit/", options)
        .await
        .unwrap();
    let at_limit = Payload::from_chunks(vec![
        Bytes::from(vec![1u8; LIMIT / 2]),
        Bytes::from(vec![2u8; LIMIT / 2]),
    ]);
    store.put("run/at-limit", at_limit).await.unwrap();
    assert_eq!(store.get("run/at-limit").await.unwrap().len(), LIMIT);
    match store
        .put("run/over", Payload::from(vec![0u8; LIMIT + 1]))
        .await
    {
        Err(StoreError::PayloadTooLarge { key, size, limit }) => {
            assert_eq!(
                (key.as_str(), size, limit),
                ("run/over", LIMIT as u64 + 1, LIMIT as u64)
            );
        }
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
    assert_eq!(store.list("run/").await.unwrap(), vec!["run/at-limit"]);
    assert_eq!(
        RedisOptions::default().max_object_size,
        512 << 20,
        "the default limit is Redis's own"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_urls_and_prefixes_are_rejected() {
    assert!(matches!(
        RedisStore::connect("http://127.0.0.1:1", "p/").await,
        Err(StoreError::Unavailable { .. })
    ));
    assert!(matches!(
        RedisStore::connect("redis://127.0.0.1:1", "bad\nprefix/").await,
        Err(StoreError::InvalidKey { .. })
    ));
}
