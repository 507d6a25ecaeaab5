//! Shared by the integration tests: a MiniStack server per test, AWS configurations with test
//! credentials, and deployment packages built in memory.
//!
//! MiniStack is found as `$DASK_SERVERLESS_MINISTACK`, else `ministack` on `PATH`; a test that
//! needs it fails with an install hint when it is missing. Each server runs on a free port in
//! its own process group, with its own `TMPDIR` (where it extracts the functions' code), and the
//! guard kills the group and removes that directory when dropped.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};
use aws_sdk_sts::config::Credentials;
use bytes::Bytes;
use dask_serverless_aws::{AwsSettings, ClusterId, DeploymentSpec, load_config_from};

const INSTALL_HINT: &str = "MiniStack is needed by this test and was not found. Install it in \
its own virtualenv (it pins botocore): `python3 -m venv .venv-ministack && \
.venv-ministack/bin/pip install ministack`, then set \
DASK_SERVERLESS_MINISTACK=$PWD/.venv-ministack/bin/ministack (or put `ministack` on PATH)";

/// A running MiniStack; killed with its workers when dropped.
#[derive(Debug)]
pub struct MiniStack {
    child: Child,
    pub endpoint: String,
    directory: PathBuf,
}

/// The MiniStack program, or a panic with the install hint.
fn program() -> PathBuf {
    let program = std::env::var_os("DASK_SERVERLESS_MINISTACK")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("ministack"));
    if program.components().count() > 1 {
        assert!(
            program.is_file(),
            "DASK_SERVERLESS_MINISTACK={} does not exist. {INSTALL_HINT}",
            program.display()
        );
        return program;
    }
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|directory| directory.join(&program))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_default();
    on_path.unwrap_or_else(|| panic!("{INSTALL_HINT}"))
}

/// A port nothing listens on (at the time of asking).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

impl MiniStack {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts MiniStack with extra environment variables (e.g. `AUTH=true`).
    pub fn start_with(environment: &[(&str, &str)]) -> Self {
        let program = program();
        let port = free_port();
        let directory = std::env::temp_dir().join(format!(
            "dask-serverless-ministack-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&directory).expect("a temporary directory");
        let log = std::fs::File::create(directory.join("ministack.log")).expect("a log file");
        let mut command = Command::new(&program);
        command
            .env("BIND_HOST", "127.0.0.1")
            .env("GATEWAY_PORT", port.to_string())
            .env("TMPDIR", &directory)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .current_dir(&directory)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a log file"))
            .stderr(log)
            .process_group(0);
        for (name, value) in environment {
            command.env(name, value);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("could not start {}: {error}", program.display()));
        let ministack = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            directory,
        };
        ministack.wait_until_healthy(port);
        ministack
    }

    fn wait_until_healthy(&self, port: u16) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if health(port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "MiniStack did not become healthy within 30 s; its log:\n{}",
            std::fs::read_to_string(self.directory.join("ministack.log")).unwrap_or_default()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.directory.join("ministack.log")).unwrap_or_default()
    }

    pub fn settings(&self, region: &str) -> AwsSettings {
        AwsSettings::new(region, Some(self.endpoint.clone()))
    }

    /// A checked configuration for this server with the test credentials.
    pub async fn config(&self, region: &str) -> SdkConfig {
        self.config_as(region, "test", "test").await
    }

    /// A checked configuration for this server with the given access key.
    pub async fn config_as(&self, region: &str, access_key: &str, secret: &str) -> SdkConfig {
        load_config_from(&self.settings(region), loader_with(access_key, secret))
            .await
            .expect("the configuration loads")
    }
}

impl Drop for MiniStack {
    fn drop(&mut self) {
        let group = -(self.child.id() as i32);
        // SAFETY: kill(2) with a negative pid signals the process group this guard created.
        unsafe {
            libc::kill(group, libc::SIGKILL);
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

/// Whether `GET /_ministack/health` answers 200.
fn health(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = "GET /_ministack/health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = [0u8; 16];
    stream.read(&mut answer).is_ok_and(|read| {
        String::from_utf8_lossy(&answer[..read]).starts_with("HTTP/1.1 200")
            || String::from_utf8_lossy(&answer[..read]).starts_with("HTTP/1.0 200")
    })
}

/// A configuration loader with static credentials (never the environment's).
pub fn loader_with(access_key: &str, secret: &str) -> ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest()).credentials_provider(Credentials::new(
        access_key,
        secret,
        None,
        None,
        "dask-serverless-tests",
    ))
}

/// A zip (stored, not compressed) of `files`.
pub fn zip(files: &[(&str, &[u8])]) -> Bytes {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .unix_permissions(0o644);
    for (name, content) in files {
        writer.start_file(*name, options).expect("a zip entry");
        writer.write_all(content).expect("zip content");
    }
    Bytes::from(writer.finish().expect("a zip").into_inner())
}

/// The test handler: prints `token` on stdout and stderr, echoes its event, sleeps `sleep`
/// seconds, fails on `fail`, and with `reply_to` sends `token` to
/// that queue URL (with botocore, which every Python Lambda runtime ships).
pub const HANDLER: &str = r#"
import json
import os
import sys
import time

import botocore.session


def handler(event, context):
    if "token" in event:
        print(f"printed for token {event['token']} on stdout", flush=True)
        print(f"printed for token {event['token']} on stderr", file=sys.stderr, flush=True)
    if "sleep" in event:
        time.sleep(event["sleep"])
    if "fail" in event:
        raise ValueError("asked to fail: " + str(event["fail"]))
    if "reply_to" in event:
        sqs = botocore.session.get_session().create_client(
            "sqs",
            region_name=os.environ["AWS_REGION"],
            endpoint_url=os.environ.get("AWS_ENDPOINT_URL"),
        )
        sqs.send_message(
            QueueUrl=event["reply_to"], MessageBody=json.dumps({"reply": event["token"]})
        )
    return {"echo": event, "setting": os.environ.get("DASK_SERVERLESS_TEST_SETTING")}
"#;

/// A deployment spec of the test handler for `cluster`, with `padding` extra bytes of
/// incompressible data in the zip (to exercise multipart uploads).
pub fn spec(cluster: &str, padding: usize) -> DeploymentSpec {
    let mut files: Vec<(&str, Vec<u8>)> = vec![("handler.py", HANDLER.as_bytes().to_vec())];
    if padding > 0 {
        let mut rng = fastrand::Rng::with_seed(7);
        files.push(("padding.bin", (0..padding).map(|_| rng.u8(..)).collect()));
    }
    let borrowed: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(name, content)| (*name, content.as_slice()))
        .collect();
    let mut spec = DeploymentSpec::new(
        ClusterId::new(cluster).expect("a valid cluster id"),
        zip(&borrowed),
        "handler.handler",
    );
    spec.memory_mb = 256;
    spec.timeout = Duration::from_secs(30);
    spec.environment =
        BTreeMap::from([("DASK_SERVERLESS_TEST_SETTING".to_string(), "on".to_string())]);
    spec
}
