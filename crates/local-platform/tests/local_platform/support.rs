//! Shared setup: the interpreter, a local platform, functions running the test handlers, and raw
//! HTTP calls to the Invoke API.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use dask_serverless_local_platform::{
    FunctionConfig, LocalPlatform, LocalPlatformConfig, LocalPlatformHandle,
};
use serde_json::Value;

/// The Python interpreter with `awslambdaric` (`$DASK_SERVERLESS_PYTHON`, else `python3`).
/// A test that needs one fails, saying what to install, when there is none: it never counts as
/// passed without running.
pub(crate) fn python() -> String {
    static PYTHON: OnceLock<Result<String, String>> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let imports_runtime = |python: &str| {
                std::process::Command::new(python)
                    .args(["-c", "import awslambdaric"])
                    .output()
                    .is_ok_and(|output| output.status.success())
            };
            match std::env::var("DASK_SERVERLESS_PYTHON") {
                Ok(python) if imports_runtime(&python) => Ok(python),
                Ok(python) => Err(format!(
                    "DASK_SERVERLESS_PYTHON={python} cannot import awslambdaric: \
                     `{python} -m pip install awslambdaric` (or run the tests with `make test`)"
                )),
                Err(_) if imports_runtime("python3") => Ok("python3".to_string()),
                Err(_) => Err(
                    "these tests run Python workers and found no interpreter with \
                     awslambdaric: set DASK_SERVERLESS_PYTHON to one (`make test` does), or \
                     `python3 -m pip install awslambdaric`"
                        .to_string(),
                ),
            }
        })
        .clone()
        .unwrap_or_else(|message| panic!("{message}"))
}

/// The interpreter the test needs; fails the test when there is none.
macro_rules! require_python {
    () => {
        crate::support::python()
    };
}
pub(crate) use require_python;

pub(crate) fn handlers_directory() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/handlers")
}

pub(crate) async fn start_platform() -> LocalPlatformHandle {
    LocalPlatform::start(LocalPlatformConfig::default())
        .await
        .expect("the local platform starts")
}

/// A function running `module.handle` from the test handlers, with 256 MB, 10 s and 2 workers.
pub(crate) fn test_function(python: &str, name: &str, module: &str) -> FunctionConfig {
    let directory = handlers_directory();
    FunctionConfig {
        environment: vec![
            ("PYTHONPATH".to_string(), directory.display().to_string()),
            ("PYTHONDONTWRITEBYTECODE".to_string(), "1".to_string()),
        ],
        memory_mb: 256,
        timeout: Duration::from_secs(10),
        concurrency: 2,
        working_directory: Some(directory),
        ..FunctionConfig::new(
            name,
            vec![
                python.to_string(),
                "-m".to_string(),
                "awslambdaric".to_string(),
                format!("{module}.handle"),
            ],
        )
    }
}

pub(crate) fn handlers_function(python: &str, name: &str) -> FunctionConfig {
    test_function(python, name, "platform_test_handlers")
}

/// A raw answer of the Invoke API.
#[derive(Debug)]
pub(crate) struct RawAnswer {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl RawAnswer {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "not JSON ({error}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// `POST /2015-03-31/functions/{function}/invocations` with the given invocation type.
pub(crate) async fn invoke_raw(
    platform: &LocalPlatformHandle,
    function: &str,
    invocation_type: &str,
    payload: impl Into<reqwest::Body>,
) -> RawAnswer {
    let response = reqwest::Client::new()
        .post(format!(
            "{}/2015-03-31/functions/{function}/invocations",
            platform.endpoint()
        ))
        .header("X-Amz-Invocation-Type", invocation_type)
        .body(payload)
        .send()
        .await
        .expect("the local platform answers");
    RawAnswer {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.bytes().await.expect("a body").to_vec(),
    }
}

/// Polls `condition` every 20 ms until it holds; panics after `limit` (a liveness bound).
pub(crate) async fn eventually(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether a process is gone (absent, or a zombie waiting for a reaper that is not us).
pub(crate) fn process_is_gone(process_id: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{process_id}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rfind(')')
            .and_then(|end| stat[end + 1..].split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

/// The fields of `/proc/<pid>/stat` after the command name: state, parent, process group...
fn stat_fields(process_id: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{process_id}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    Some(after_name.split_whitespace().map(str::to_string).collect())
}

/// The parent and the process group of a live process.
pub(crate) fn parent_and_group(process_id: u32) -> Option<(u32, u32)> {
    let fields = stat_fields(process_id)?;
    Some((fields.get(1)?.parse().ok()?, fields.get(2)?.parse().ok()?))
}

/// The live (not zombie) processes of a process group.
pub(crate) fn live_members_of_group(group: u32) -> Vec<u32> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(process_id) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
        else {
            continue;
        };
        if let Some(fields) = stat_fields(process_id)
            && fields.get(2).map(String::as_str) == Some(group.to_string().as_str())
            && !matches!(fields.first().map(String::as_str), Some("Z" | "X"))
        {
            members.push(process_id);
        }
    }
    members.sort_unstable();
    members
}

/// The command line of a process, its arguments joined by spaces.
pub(crate) fn command_line(process_id: u32) -> String {
    std::fs::read(format!("/proc/{process_id}/cmdline"))
        .map(|bytes| {
            bytes
                .split(|&byte| byte == 0)
                .filter(|part| !part.is_empty())
                .map(|part| String::from_utf8_lossy(part).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}
