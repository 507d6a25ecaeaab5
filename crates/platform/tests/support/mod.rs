//! Shared by the tests that run functions on the local platform: the interpreter, and a
//! platform hosting the conformance handler with a queue for its messages.

#![allow(dead_code, unreachable_pub)]

use std::sync::OnceLock;
use std::time::Duration;

use dask_serverless_local_platform::{
    FunctionConfig, LocalPlatform, LocalPlatformConfig, LocalPlatformHandle,
};
use dask_serverless_platform::conformance::{HANDLER, HANDLER_ENTRY, HANDLER_MODULE};
use dask_serverless_platform::{LocalInvoker, LocalQueue};

/// The Python interpreter with `awslambdaric` (`$DASK_SERVERLESS_PYTHON`, else `python3`). A
/// test that needs one fails, saying what to install, when there is none: it never counts as
/// passed without running.
pub fn require_python() -> String {
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

/// A local platform with the function `conformance` running the conformance handler, and the
/// queue `conformance` its events send to.
#[derive(Debug)]
pub struct LocalBackend {
    pub platform: LocalPlatformHandle,
    pub invoker: LocalInvoker,
    pub queue: LocalQueue,
    pub queue_url: String,
    pub function: String,
    /// Holds the handler's module while the platform runs.
    _directory: tempfile::TempDir,
}

impl LocalBackend {
    /// Starts the platform with the function allowed `concurrency` workers at once.
    pub async fn start(concurrency: usize) -> Self {
        let python = require_python();
        let directory = tempfile::Builder::new()
            .prefix("dask-serverless-platform-conformance-")
            .tempdir()
            .expect("a temporary directory");
        std::fs::write(
            directory.path().join(format!("{HANDLER_MODULE}.py")),
            HANDLER,
        )
        .expect("the handler's module");
        let platform = LocalPlatform::start(LocalPlatformConfig::default())
            .await
            .expect("the local platform starts");
        let function = "conformance".to_string();
        let path = directory.path().display().to_string();
        platform
            .create_function(FunctionConfig {
                environment: vec![
                    ("PYTHONPATH".to_string(), path),
                    ("PYTHONDONTWRITEBYTECODE".to_string(), "1".to_string()),
                ],
                memory_mb: 256,
                timeout: Duration::from_secs(30),
                concurrency,
                working_directory: Some(directory.path().to_path_buf()),
                ..FunctionConfig::new(
                    &function,
                    vec![
                        python,
                        "-m".to_string(),
                        "awslambdaric".to_string(),
                        HANDLER_ENTRY.to_string(),
                    ],
                )
            })
            .await
            .expect("the function is created");
        let invoker = LocalInvoker::new(platform.endpoint());
        let queue = LocalQueue::new(platform.endpoint(), "conformance");
        queue.create().await.expect("the queue is created");
        let queue_url = queue.queue_url().await.expect("the queue's URL");
        Self {
            platform,
            invoker,
            queue,
            queue_url,
            function,
            _directory: directory,
        }
    }

    pub async fn shutdown(self) {
        self.platform.shutdown().await;
    }
}
