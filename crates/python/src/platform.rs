//! The embedded local platform, seen from Python.
//!
//! `LocalPlatform()` starts the Lambda-compatible platform on this process's runtime, bound to
//! 127.0.0.1 on a free port. `close()` (or dropping it) stops it and kills every worker.
//!
//! A platform belongs to the process that started it. In a process forked from it the
//! runtime's threads do not exist: closing or dropping it there does nothing (the parent's
//! workers are the parent's), and every other call fails with a clear error instead of
//! waiting forever.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use dask_serverless_local_platform::{
    FunctionConfig, LocalPlatformConfig, LocalPlatformHandle, WorkerOutputCopy,
};
use dask_serverless_platform::{Invoker, LocalInvoker, LocalQueue};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::error::{local_platform_error, platform_error};
use crate::logs::{InvocationLog, unix_seconds};
use crate::runtime;

#[pyclass(module = "dask_serverless._core")]
pub(crate) struct LocalPlatform {
    handle: Option<LocalPlatformHandle>,
    endpoint: String,
    invoker: LocalInvoker,
    /// The process that started the platform.
    owner: u32,
}

impl LocalPlatform {
    fn handle(&self) -> PyResult<&LocalPlatformHandle> {
        self.check_process()?;
        self.handle
            .as_ref()
            .ok_or_else(|| local_platform_error("the local platform is closed"))
    }

    fn forked(&self) -> bool {
        std::process::id() != self.owner
    }

    fn check_process(&self) -> PyResult<()> {
        if self.forked() {
            return Err(local_platform_error(format!(
                "this local platform belongs to process {}; process {} is a fork of it and \
                 cannot use it (start a batch in the child instead)",
                self.owner,
                std::process::id()
            )));
        }
        Ok(())
    }
}

#[pymethods]
impl LocalPlatform {
    /// Worker output is kept per invocation ([`LocalPlatform::invocation_logs`]) and copied as
    /// it comes to `worker_log` if given, else to standard error if `verbose`.
    #[new]
    #[pyo3(signature = (worker_log=None, verbose=false))]
    fn new(py: Python<'_>, worker_log: Option<PathBuf>, verbose: bool) -> PyResult<LocalPlatform> {
        let worker_output = match worker_log {
            Some(path) => WorkerOutputCopy::File(path),
            None if verbose => WorkerOutputCopy::StandardError,
            None => WorkerOutputCopy::Nowhere,
        };
        let config = LocalPlatformConfig {
            worker_output,
            ..LocalPlatformConfig::default()
        };
        let handle = py
            .detach(|| {
                runtime().block_on(dask_serverless_local_platform::LocalPlatform::start(config))
            })
            .map_err(local_platform_error)?;
        let endpoint = format!("http://{}", handle.address());
        Ok(LocalPlatform {
            handle: Some(handle),
            invoker: LocalInvoker::new(endpoint.clone()),
            endpoint,
            owner: std::process::id(),
        })
    }

    /// Base address of the Invoke API and the queue service.
    #[getter]
    fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    #[pyo3(signature = (name, command, environment, memory_mb, timeout_s, concurrency, on_failure_queue=None, working_directory=None))]
    #[allow(clippy::too_many_arguments)]
    fn create_function(
        &self,
        py: Python<'_>,
        name: String,
        command: Vec<String>,
        environment: Vec<(String, String)>,
        memory_mb: u64,
        timeout_s: f64,
        concurrency: usize,
        on_failure_queue: Option<String>,
        working_directory: Option<PathBuf>,
    ) -> PyResult<()> {
        let mut config = FunctionConfig::new(name, command);
        config.environment = environment;
        config.memory_mb = memory_mb;
        config.timeout = Duration::from_secs_f64(timeout_s);
        config.concurrency = concurrency;
        config.on_failure_queue = on_failure_queue;
        config.working_directory = working_directory;
        let handle = self.handle()?;
        py.detach(|| runtime().block_on(handle.create_function(config)))
            .map_err(local_platform_error)
    }

    fn create_queue(&self, py: Python<'_>, name: String) -> PyResult<()> {
        self.check_process()?;
        let queue = LocalQueue::new(self.endpoint.clone(), name);
        py.detach(|| runtime().block_on(queue.create()))
            .map_err(platform_error)
    }

    /// An asynchronous (`Event`) invocation.
    fn invoke_event(&self, py: Python<'_>, function: &str, payload: String) -> PyResult<()> {
        self.check_process()?;
        let invoker = &self.invoker;
        py.detach(|| runtime().block_on(invoker.invoke_event(function, Bytes::from(payload))))
            .map_err(platform_error)
    }

    /// A synchronous (`RequestResponse`) invocation; returns the response body.
    fn invoke(&self, py: Python<'_>, function: &str, payload: String) -> PyResult<Vec<u8>> {
        self.check_process()?;
        let invoker = &self.invoker;
        py.detach(|| {
            runtime().block_on(invoker.invoke_request_response(function, Bytes::from(payload)))
        })
        .map(|bytes| bytes.to_vec())
        .map_err(platform_error)
    }

    fn statistics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let statistics = self.handle()?.statistics();
        let result = PyDict::new(py);
        result.set_item("invocations", statistics.invocations)?;
        result.set_item("cold_starts", statistics.cold_starts)?;
        result.set_item("throttles", statistics.throttles)?;
        result.set_item("workers", statistics.workers)?;
        Ok(result)
    }

    /// Worker process ids, for checks that nothing is left running.
    fn worker_pids(&self) -> PyResult<Vec<u32>> {
        Ok(self.handle()?.worker_process_ids())
    }

    /// What the invocations of `function` submitted at `since` (Unix seconds) or later printed,
    /// in the order they started.
    fn invocation_logs(&self, function: &str, since: f64) -> PyResult<Vec<InvocationLog>> {
        let since = std::time::UNIX_EPOCH + Duration::from_secs_f64(since.max(0.0));
        let logs = self
            .handle()?
            .invocation_logs(function, since)
            .map_err(local_platform_error)?;
        Ok(logs
            .into_iter()
            .map(|log| InvocationLog {
                invocation_id: log.request_id,
                started: unix_seconds(log.assigned),
                text: log.text,
                omitted_bytes: log.omitted_bytes,
            })
            .collect())
    }

    /// Stops every running invocation of a function now (its workers are killed and restart
    /// cold) and drops its queued events; returns how many were stopped.
    fn stop_invocations(&self, function: &str) -> PyResult<usize> {
        self.handle()?
            .stop_invocations(function)
            .map_err(local_platform_error)
    }

    /// Stops serving and kills every worker; safe to call twice. In a forked process it only
    /// forgets the parent's platform.
    fn close(&mut self, py: Python<'_>) {
        if self.forked() {
            std::mem::forget(self.handle.take());
            return;
        }
        if let Some(handle) = self.handle.take() {
            py.detach(|| runtime().block_on(handle.shutdown()));
        }
    }
}

impl Drop for LocalPlatform {
    fn drop(&mut self) {
        if self.forked() {
            // The runtime that serves the handle has no threads here.
            std::mem::forget(self.handle.take());
            return;
        }
        if let Some(handle) = self.handle.take() {
            // Outside Python's control now: block on this thread.
            let _ = std::thread::spawn(move || runtime().block_on(handle.shutdown())).join();
        }
    }
}
