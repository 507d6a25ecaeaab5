//! Configuration of the local platform and of the functions it hosts, and the Lambda limits it enforces.
//!
//! A [`FunctionConfig`] is the local equivalent of a Lambda function: the command that starts one
//! worker process (the runtime, e.g. `python -m awslambdaric module.handler`), the environment
//! added to Lambda's own variables, and the limits Lambda enforces per function: memory size,
//! timeout and reserved concurrency. The ranges accepted are Lambda's (128..=10240 MB, at most
//! 900 seconds), so that a configuration that works locally also deploys.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::LocalPlatformError;
use crate::output::WorkerOutputCopy;

/// Largest request payload of a synchronous (`RequestResponse`) invocation, and largest response.
pub const SYNCHRONOUS_PAYLOAD_LIMIT: usize = 6_291_456;
/// Largest request payload of an asynchronous (`Event`) invocation.
pub const ASYNCHRONOUS_PAYLOAD_LIMIT: usize = 1_048_576;
/// Largest message body (and batch) accepted by the queue service.
pub const QUEUE_MESSAGE_LIMIT: usize = 1_048_576;
/// How long a new worker may take from its start to its first request for work.
pub const INITIALIZATION_TIMEOUT: Duration = Duration::from_secs(10);
/// Lambda's smallest and largest memory sizes, in MB.
pub const MEMORY_RANGE_MB: std::ops::RangeInclusive<u64> = 128..=10_240;
/// Lambda's largest function timeout.
pub const MAXIMUM_TIMEOUT: Duration = Duration::from_secs(900);

/// Where the local platform listens and how it runs functions created over HTTP.
#[derive(Debug, Clone)]
pub struct LocalPlatformConfig {
    /// Address of the Invoke API and queue service. Port 0 picks a free port.
    pub bind: SocketAddr,
    /// Python interpreter used for functions created over HTTP without a `Command`.
    pub python: PathBuf,
    /// Where the workers' standard output and error are copied as they come, every line
    /// prefixed by function name and worker id: the platform's standard error (the default),
    /// a file, or nowhere. Either way each invocation's output is kept (see
    /// [`LocalPlatformHandle::invocation_logs`](crate::LocalPlatformHandle::invocation_logs)).
    pub worker_output: WorkerOutputCopy,
    /// Variables added to the environment of every function's workers (after the function's
    /// own): how `dask-serverless local-platform --chaos` hands its faults to the functions.
    pub environment: Vec<(String, String)>,
}

impl Default for LocalPlatformConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            python: PathBuf::from("python3"),
            worker_output: WorkerOutputCopy::default(),
            environment: Vec::new(),
        }
    }
}

/// One function: how to start its workers and the limits enforced on them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionConfig {
    /// Function name, as in Lambda: 1 to 64 letters, digits, hyphens or underscores.
    pub name: String,
    /// Worker argv, e.g. `[python, "-m", "awslambdaric", "dask_serverless.handler.handler"]`.
    /// The last argument is also exported as `_HANDLER`.
    pub command: Vec<String>,
    /// Extra environment variables, added after Lambda's own.
    pub environment: Vec<(String, String)>,
    /// Memory size in MB (MiB), enforced on the resident memory of each worker's process group.
    pub memory_mb: u64,
    /// Longest run of one invocation, from the moment its worker receives it.
    pub timeout: Duration,
    /// Largest number of workers (and so of invocations running at once): reserved concurrency.
    pub concurrency: usize,
    /// Queue that receives a record of every failed asynchronous invocation.
    pub on_failure_queue: Option<String>,
    /// Working directory of the workers and `LAMBDA_TASK_ROOT`; the local platform's own if `None`.
    pub working_directory: Option<PathBuf>,
}

impl FunctionConfig {
    /// A function with Lambda's defaults: 128 MB, 3 seconds, and one worker per available core.
    pub fn new(name: impl Into<String>, command: Vec<String>) -> Self {
        Self {
            name: name.into(),
            command,
            environment: Vec::new(),
            memory_mb: 128,
            timeout: Duration::from_secs(3),
            concurrency: default_concurrency(),
            on_failure_queue: None,
            working_directory: None,
        }
    }

    /// Checks the configuration against Lambda's rules.
    pub(crate) fn validate(&self) -> Result<(), LocalPlatformError> {
        let invalid = |message: String| {
            Err(LocalPlatformError::InvalidFunction {
                name: self.name.clone(),
                message,
            })
        };
        if !is_valid_function_name(&self.name) {
            return invalid(
                "a function name has 1 to 64 letters, digits, hyphens or underscores".to_string(),
            );
        }
        if self.command.is_empty() || self.command[0].is_empty() {
            return invalid("the command that starts a worker is empty".to_string());
        }
        if !MEMORY_RANGE_MB.contains(&self.memory_mb) {
            return invalid(format!(
                "memory size {} MB is outside Lambda's range of {} to {} MB",
                self.memory_mb,
                MEMORY_RANGE_MB.start(),
                MEMORY_RANGE_MB.end()
            ));
        }
        if self.timeout.is_zero() || self.timeout > MAXIMUM_TIMEOUT {
            return invalid(format!(
                "timeout {:?} is outside Lambda's range (above zero, at most {} seconds)",
                self.timeout,
                MAXIMUM_TIMEOUT.as_secs()
            ));
        }
        if self.concurrency == 0 {
            return invalid("concurrency must be at least 1".to_string());
        }
        if let Some(queue) = &self.on_failure_queue
            && !crate::queue::is_valid_queue_name(queue)
        {
            return invalid(format!("'{queue}' is not a valid queue name"));
        }
        for (key, _) in &self.environment {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return invalid(format!("'{key}' is not a valid environment variable name"));
            }
        }
        Ok(())
    }

    /// The handler named by the command: its last argument.
    pub(crate) fn handler(&self) -> &str {
        self.command.last().map(String::as_str).unwrap_or_default()
    }
}

/// One worker per available core.
pub(crate) fn default_concurrency() -> usize {
    std::thread::available_parallelism().map_or(1, |cores| cores.get())
}

fn is_valid_function_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.chars().all(|character| {
            character.is_ascii_alphanumeric() || character == '-' || character == '_'
        })
}

/// The ARN Lambda would give the function, in the local platform's `local` region.
pub(crate) fn function_arn(name: &str) -> String {
    format!("arn:aws:lambda:local:000000000000:function:{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_rules_are_enforced() {
        let valid = FunctionConfig::new("squares", vec!["python3".to_string()]);
        assert!(valid.validate().is_ok());
        let cases = [
            FunctionConfig {
                name: "no spaces".to_string(),
                ..valid.clone()
            },
            FunctionConfig {
                command: Vec::new(),
                ..valid.clone()
            },
            FunctionConfig {
                memory_mb: 64,
                ..valid.clone()
            },
            FunctionConfig {
                timeout: Duration::from_secs(901),
                ..valid.clone()
            },
            FunctionConfig {
                concurrency: 0,
                ..valid.clone()
            },
        ];
        for case in cases {
            assert!(case.validate().is_err(), "{case:?} should be refused");
        }
    }
}
