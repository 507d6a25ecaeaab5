//! `dask-serverless cleanup` as a user runs it: a real process with a clean environment (no
//! AWS variables of the machine leak in; the instance metadata service is never asked).
//!
//! The last test needs MiniStack (`$DASK_SERVERLESS_MINISTACK`, else `ministack` on `PATH`) and
//! fails with an install hint without it.
#![cfg(feature = "aws")]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const BINARY: &str = env!("CARGO_BIN_EXE_dask-serverless");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `dask-serverless cleanup ARGUMENTS` with only the given AWS variables.
fn cleanup(arguments: &[&str], variables: &[(&str, &str)]) -> (Output, Duration) {
    // A fresh, empty home per call: no shared config or credentials files.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let home = std::env::temp_dir().join(format!(
        "dask-serverless-cli-home-{}-{call}",
        std::process::id()
    ));
    std::fs::create_dir_all(&home).unwrap();
    let mut command = Command::new(BINARY);
    command
        .arg("cleanup")
        .args(arguments)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", home.join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("no-credentials"))
        .env("RUST_LOG", "warn");
    for (name, value) in variables {
        command.env(name, value);
    }
    let started = Instant::now();
    let output = command.output().expect("the binary runs");
    let elapsed = started.elapsed();
    let _ = std::fs::remove_dir_all(&home);
    (output, elapsed)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn without_credentials_it_says_what_to_do() {
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let (output, elapsed) = cleanup(&["--region", "eu-west-1", "--endpoint-url", &endpoint], &[]);
    assert!(!output.status.success());
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    let stderr = text(&output.stderr);
    assert!(stderr.contains("no AWS credentials found"), "{stderr}");
    assert!(stderr.contains("AWS_ACCESS_KEY_ID"), "{stderr}");
}

#[test]
fn local_and_aws_options_do_not_mix() {
    let (output, _) = cleanup(&["--local", "--region", "eu-west-1"], &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("the argument '--local' cannot be used with '--region <REGION>'"),
        "{stderr}"
    );
}

#[test]
fn a_mistyped_region_is_named() {
    let (output, _) = cleanup(&["--region", "eu-wst-1"], &[]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("unknown region 'eu-wst-1' (did you mean 'eu-west-1'?)"),
        "{stderr}"
    );
}

#[test]
fn an_endpoint_with_nothing_listening_is_named() {
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let (output, elapsed) = cleanup(
        &["--region", "eu-west-1", "--endpoint-url", &endpoint],
        &[
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
        ],
    );
    assert!(!output.status.success());
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "could not reach STS at {endpoint}: is it running?"
        )),
        "{stderr}"
    );
}

/// A MiniStack server, killed with its process group when dropped.
struct MiniStack {
    child: Child,
    endpoint: String,
    directory: PathBuf,
}

impl MiniStack {
    fn start() -> Self {
        let program = std::env::var_os("DASK_SERVERLESS_MINISTACK")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("ministack"));
        let port = free_port();
        let directory = std::env::temp_dir().join(format!(
            "dask-serverless-cli-ministack-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&directory).unwrap();
        let child = Command::new(&program)
            .env("BIND_HOST", "127.0.0.1")
            .env("GATEWAY_PORT", port.to_string())
            .env("TMPDIR", &directory)
            .current_dir(&directory)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "MiniStack ({}) could not be started: {error}. Install it in its own \
                     virtualenv: `python3 -m venv .venv-ministack && .venv-ministack/bin/pip \
                     install ministack`, then set \
                     DASK_SERVERLESS_MINISTACK=$PWD/.venv-ministack/bin/ministack",
                    program.display()
                )
            });
        let ministack = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            directory,
        };
        let started = Instant::now();
        while request(port, "GET /_ministack/health HTTP/1.0\r\n\r\n").is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "MiniStack did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        ministack
    }

    fn port(&self) -> u16 {
        self.endpoint.rsplit(':').next().unwrap().parse().unwrap()
    }
}

impl Drop for MiniStack {
    fn drop(&mut self) {
        // SAFETY: kill(2) with a negative pid signals the process group this guard created.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

/// Sends a raw HTTP request; the answer if its status is 200.
fn request(port: u16, raw: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(raw.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.lines().next().unwrap_or_default();
    status.contains(" 200").then_some(answer)
}

/// Creates a queue tagged as cluster `cluster`'s, through the SQS JSON protocol.
fn create_tagged_queue(ministack: &MiniStack, cluster: &str) {
    create_queue_seen(ministack, cluster, None);
}

/// Creates a queue tagged as cluster `cluster`'s, with a last-seen mark `seen_ago` before now
/// (none if `None`).
fn create_queue_seen(ministack: &MiniStack, cluster: &str, seen_ago: Option<Duration>) {
    let mut tags = serde_json::json!({
        "dask-serverless:cluster": cluster,
        "dask-serverless:created-by": "dask-serverless",
        "dask-serverless:region": "us-east-1"
    });
    if let Some(seen_ago) = seen_ago {
        let seen = SystemTime::now() - seen_ago;
        let mark = seen.duration_since(UNIX_EPOCH).unwrap().as_secs();
        tags["dask-serverless:last-seen"] = mark.to_string().into();
    }
    let body = serde_json::json!({
        "QueueName": format!("dask-serverless-{cluster}"),
        "tags": tags
    })
    .to_string();
    let raw = format!(
        "POST / HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/x-amz-json-1.0\r\n\
         X-Amz-Target: AmazonSQS.CreateQueue\r\nAuthorization: AWS4-HMAC-SHA256 \
         Credential=test/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, \
         Signature=0\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    request(ministack.port(), &raw).expect("the queue is created");
}

#[test]
fn it_lists_then_deletes_leftovers() {
    let ministack = MiniStack::start();
    create_tagged_queue(&ministack, "left");
    create_tagged_queue(&ministack, "other");
    let credentials = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ];
    let endpoint = ministack.endpoint.as_str();
    let queue_url = |cluster: &str| format!("{endpoint}/000000000000/dask-serverless-{cluster}");
    let arguments = ["--region", "us-east-1", "--endpoint-url", endpoint];

    let dry_run = [&arguments[..], &["--cluster", "left", "--dry-run"]].concat();
    let (output, _) = cleanup(&dry_run, &credentials);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        format!(
            "would delete (cluster left in region us-east-1):\n  queue {}\n",
            queue_url("left")
        )
    );

    let (output, _) = cleanup(
        &[&arguments[..], &["--cluster", "left"]].concat(),
        &credentials,
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        format!(
            "cleaning up cluster left in region us-east-1\ndeleted queue {}\n",
            queue_url("left")
        )
    );

    let (output, _) = cleanup(&[&arguments[..], &["--dry-run"]].concat(), &credentials);
    assert_eq!(
        text(&output.stdout),
        format!(
            "would delete (every cluster in region us-east-1):\n  queue {}\n",
            queue_url("other")
        )
    );
    let (output, _) = cleanup(&arguments, &credentials);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let (output, _) = cleanup(&[&arguments[..], &["--dry-run"]].concat(), &credentials);
    assert_eq!(
        text(&output.stdout),
        "nothing to delete (every cluster in region us-east-1)\n"
    );
}

#[test]
fn it_leaves_clusters_seen_recently_alone_unless_told() {
    let ministack = MiniStack::start();
    create_queue_seen(&ministack, "live", Some(Duration::from_secs(40)));
    create_queue_seen(&ministack, "dead", Some(Duration::from_secs(3_600)));
    let credentials = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ];
    let endpoint = ministack.endpoint.as_str();
    let queue_url = |cluster: &str| format!("{endpoint}/000000000000/dask-serverless-{cluster}");
    let arguments = ["--region", "us-east-1", "--endpoint-url", endpoint];
    // "seen 40 s ago", or 41 s if a second turns meanwhile.
    let skipped_line = |stdout: &str| {
        let line = stdout.lines().next().unwrap_or_default().to_string();
        assert!(
            line.starts_with("skipped cluster live: its client was seen 4")
                && line.ends_with(
                    " s ago, less than --older-than 15m; use --older-than 0 to delete it anyway"
                ),
            "{stdout}"
        );
        line
    };

    let (output, _) = cleanup(&[&arguments[..], &["--dry-run"]].concat(), &credentials);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let skipped = skipped_line(&stdout);
    assert_eq!(
        stdout,
        format!(
            "{skipped}\nwould delete (every cluster in region us-east-1):\n  queue {}\n",
            queue_url("dead")
        )
    );

    let (output, _) = cleanup(&arguments, &credentials);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let skipped = skipped_line(&stdout);
    assert_eq!(
        stdout,
        format!(
            "{skipped}\ncleaning up every cluster in region us-east-1\ndeleted queue {}\n",
            queue_url("dead")
        )
    );

    // Named, the live cluster is still left alone; an hour is more than its age.
    let named = [&arguments[..], &["--cluster", "live"]].concat();
    let (output, _) = cleanup(&named, &credentials);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let skipped = skipped_line(&stdout);
    assert_eq!(
        stdout,
        format!("{skipped}\ncleaning up cluster live in region us-east-1\nnothing to delete\n")
    );
    let (output, _) = cleanup(
        &[&arguments[..], &["--dry-run", "--older-than", "30s"]].concat(),
        &credentials,
    );
    assert_eq!(
        text(&output.stdout),
        format!(
            "would delete (every cluster in region us-east-1):\n  queue {}\n",
            queue_url("live")
        )
    );

    let (output, _) = cleanup(&[&named[..], &["--older-than", "0"]].concat(), &credentials);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        format!(
            "cleaning up cluster live in region us-east-1\ndeleted queue {}\n",
            queue_url("live")
        )
    );

    let (output, _) = cleanup(
        &[&arguments[..], &["--older-than", "15"]].concat(),
        &credentials,
    );
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains(
            "invalid value '15' for '--older-than <OLDER_THAN>': invalid duration '15': write a \
             number and a unit (s, m, h or d), such as 30m, 2h or 1d, or 0 for no minimum"
        ),
        "{}",
        text(&output.stderr)
    );
}
