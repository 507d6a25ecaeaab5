//! What a function printed during one invocation, as both platforms report it: the local
//! platform keeps it per invocation, AWS Lambda in CloudWatch Logs.

use std::time::{SystemTime, UNIX_EPOCH};

use pyo3::prelude::*;

/// One invocation's output.
#[pyclass(module = "dask_serverless._core", frozen, get_all)]
#[derive(Debug, Clone)]
pub(crate) struct InvocationLog {
    /// The invocation's request id (`context.aws_request_id`).
    pub(crate) invocation_id: String,
    /// When it started, in Unix seconds.
    pub(crate) started: f64,
    /// Its standard output and error, one `\n` after each line.
    pub(crate) text: String,
    /// Bytes it wrote before those kept, dropped (the local platform keeps the last ones).
    pub(crate) omitted_bytes: u64,
}

#[pymethods]
impl InvocationLog {
    fn __repr__(&self) -> String {
        format!(
            "InvocationLog(invocation_id={:?}, started={}, {} bytes)",
            self.invocation_id,
            self.started,
            self.text.len()
        )
    }
}

/// `time` in Unix seconds (0 before 1970).
pub(crate) fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs_f64())
        .unwrap_or(0.0)
}
