//! What workers print, kept per invocation.
//!
//! # Model
//!
//! A worker's standard output and error are read line by line by its forwarders (see the
//! `worker` module). Every line goes to the invocation the worker holds at the moment the line
//! is read: its [`CurrentOutput`] names it. When an invocation is assigned to a worker (see
//! `Function::assign`), the function's [`OutputHistory`] records a new [`InvocationOutput`]
//! for it and the worker's current output switches to it; it stays the worker's current output
//! until the next assignment, so that what the runtime prints after an invocation's response
//! (and what a new worker prints while it starts, before it asks for the invocation that
//! started it) is counted with that invocation. A line printed in the very last instant of an
//! invocation, read after the worker already received its next one, is counted with the next.
//!
//! Bounds: each invocation keeps its last [`KEPT_BYTES_PER_INVOCATION`] bytes (older lines are
//! dropped and counted in [`InvocationLog::omitted_bytes`]), and each function its last
//! [`KEPT_INVOCATIONS`] invocations. Memory is so bounded per function by their product, and
//! is in practice the output the tasks actually wrote.
//!
//! Besides being kept, every line may be copied as it comes, prefixed by function name and
//! worker id, to the platform's standard error or a file ([`WorkerOutputCopy`]).

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use crate::function::WorkerId;

/// Bytes of output kept per invocation: its last ones.
pub const KEPT_BYTES_PER_INVOCATION: usize = 64 * 1024;
/// Invocations whose output a function keeps: its last ones.
pub const KEPT_INVOCATIONS: usize = 1024;

/// Where the workers' output is copied as it comes, besides being kept per invocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum WorkerOutputCopy {
    /// Nowhere: only kept per invocation ([`LocalPlatformHandle::invocation_logs`]).
    ///
    /// [`LocalPlatformHandle::invocation_logs`]: crate::LocalPlatformHandle::invocation_logs
    Nowhere,
    /// To the local platform's standard error.
    #[default]
    StandardError,
    /// Appended to this file.
    File(PathBuf),
}

/// The open destination of [`WorkerOutputCopy`].
#[derive(Debug)]
pub(crate) enum OutputCopy {
    Nowhere,
    StandardError,
    File(Mutex<File>),
}

impl OutputCopy {
    pub(crate) fn open(copy: &WorkerOutputCopy) -> std::io::Result<Self> {
        Ok(match copy {
            WorkerOutputCopy::Nowhere => Self::Nowhere,
            WorkerOutputCopy::StandardError => Self::StandardError,
            WorkerOutputCopy::File(path) => Self::File(Mutex::new(open_append(path)?)),
        })
    }

    pub(crate) fn write_line(&self, prefix: &str, line: &str) {
        match self {
            Self::Nowhere => {}
            Self::StandardError => eprintln!("{prefix} {line}"),
            Self::File(file) => {
                let mut file = file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                let _ = writeln!(file, "{prefix} {line}");
            }
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    File::options().create(true).append(true).open(path)
}

/// The output of one invocation, as it is being written.
#[derive(Debug)]
pub(crate) struct InvocationOutput {
    request_id: String,
    worker: WorkerId,
    /// When the platform accepted the invocation.
    submitted: SystemTime,
    /// When it was assigned to its worker.
    assigned: SystemTime,
    text: Mutex<KeptText>,
}

/// The last lines of an invocation, at most [`KEPT_BYTES_PER_INVOCATION`] bytes.
#[derive(Debug, Default)]
struct KeptText {
    lines: VecDeque<String>,
    /// Bytes of `lines`, a newline counted after each.
    bytes: usize,
    omitted_bytes: u64,
}

impl InvocationOutput {
    fn text(&self) -> MutexGuard<'_, KeptText> {
        self.text
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn push(&self, line: &str) {
        let mut text = self.text();
        let mut line = line;
        if line.len() + 1 > KEPT_BYTES_PER_INVOCATION {
            // Only the end of a line longer than everything kept.
            let mut start = line.len() + 1 - KEPT_BYTES_PER_INVOCATION;
            while !line.is_char_boundary(start) {
                start += 1;
            }
            text.omitted_bytes += start as u64;
            line = &line[start..];
        }
        while text.bytes + line.len() + 1 > KEPT_BYTES_PER_INVOCATION {
            let Some(dropped) = text.lines.pop_front() else {
                break;
            };
            text.bytes -= dropped.len() + 1;
            text.omitted_bytes += dropped.len() as u64 + 1;
        }
        text.bytes += line.len() + 1;
        text.lines.push_back(line.to_string());
    }

    fn snapshot(&self) -> InvocationLog {
        let text = self.text();
        let mut joined = String::with_capacity(text.bytes);
        for line in &text.lines {
            joined.push_str(line);
            joined.push('\n');
        }
        InvocationLog {
            request_id: self.request_id.clone(),
            worker: self.worker.to_string(),
            submitted: self.submitted,
            assigned: self.assigned,
            text: joined,
            omitted_bytes: text.omitted_bytes,
        }
    }
}

/// What one invocation printed (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationLog {
    /// The invocation's request id (`Lambda-Runtime-Aws-Request-Id`, `context.aws_request_id`).
    pub request_id: String,
    /// The worker that ran it, e.g. `worker-3`.
    pub worker: String,
    /// When the platform accepted the invocation.
    pub submitted: SystemTime,
    /// When it was assigned to its worker.
    pub assigned: SystemTime,
    /// Its standard output and error, interleaved as read, one `\n` after each line; the last
    /// [`KEPT_BYTES_PER_INVOCATION`] bytes.
    pub text: String,
    /// Bytes written before those kept, dropped.
    pub omitted_bytes: u64,
}

/// The invocation a worker holds, whose output its lines go to.
#[derive(Debug, Default)]
pub(crate) struct CurrentOutput {
    current: Mutex<Option<Arc<InvocationOutput>>>,
}

impl CurrentOutput {
    fn current(&self) -> MutexGuard<'_, Option<Arc<InvocationOutput>>> {
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn switch_to(&self, output: Arc<InvocationOutput>) {
        *self.current() = Some(output);
    }

    pub(crate) fn push(&self, line: &str) {
        if let Some(output) = self.current().as_ref() {
            output.push(line);
        }
    }
}

/// A function's last [`KEPT_INVOCATIONS`] invocation outputs, in assignment order.
#[derive(Debug, Default)]
pub(crate) struct OutputHistory {
    outputs: Mutex<VecDeque<Arc<InvocationOutput>>>,
}

impl OutputHistory {
    fn outputs(&self) -> MutexGuard<'_, VecDeque<Arc<InvocationOutput>>> {
        self.outputs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records the output of an invocation just assigned to `worker`.
    pub(crate) fn record(
        &self,
        request_id: &str,
        submitted: SystemTime,
        worker: WorkerId,
    ) -> Arc<InvocationOutput> {
        let output = Arc::new(InvocationOutput {
            request_id: request_id.to_string(),
            worker,
            submitted,
            assigned: SystemTime::now(),
            text: Mutex::new(KeptText::default()),
        });
        let mut outputs = self.outputs();
        if outputs.len() == KEPT_INVOCATIONS {
            outputs.pop_front();
        }
        outputs.push_back(Arc::clone(&output));
        output
    }

    /// The kept invocations submitted at `since` or later, in assignment order. An invocation
    /// assigned twice (its first worker died before it started) appears once per assignment.
    pub(crate) fn since(&self, since: SystemTime) -> Vec<InvocationLog> {
        let outputs: Vec<Arc<InvocationOutput>> = self
            .outputs()
            .iter()
            .filter(|output| output.submitted >= since)
            .cloned()
            .collect();
        outputs.iter().map(|output| output.snapshot()).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn an_invocation_keeps_its_last_bytes_and_counts_the_others() {
        let history = OutputHistory::default();
        let output = history.record("r1", SystemTime::now(), WorkerId(1));
        output.push("first");
        output.push("second");
        assert_eq!(
            history.since(SystemTime::UNIX_EPOCH)[0].text,
            "first\nsecond\n"
        );
        let line = "x".repeat(1000);
        for _ in 0..100 {
            output.push(&line);
        }
        let log = &history.since(SystemTime::UNIX_EPOCH)[0];
        assert!(
            log.text.len() <= KEPT_BYTES_PER_INVOCATION,
            "{}",
            log.text.len()
        );
        assert!(!log.text.contains("first"));
        assert_eq!(
            log.text.len() as u64 + log.omitted_bytes,
            ("first\nsecond\n".len() + 100 * 1001) as u64
        );
        // A line longer than the bound keeps its end.
        output.push(&format!("{}end", "y".repeat(2 * KEPT_BYTES_PER_INVOCATION)));
        let log = &history.since(SystemTime::UNIX_EPOCH)[0];
        assert_eq!(log.text.len(), KEPT_BYTES_PER_INVOCATION);
        assert!(log.text.ends_with("yend\n"));
    }

    #[test]
    fn a_function_keeps_its_last_invocations_and_selects_by_submission() {
        let history = OutputHistory::default();
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        for index in 0..KEPT_INVOCATIONS + 5 {
            let submitted = start + Duration::from_secs(index as u64);
            history.record(&format!("r{index}"), submitted, WorkerId(1));
        }
        let kept = history.since(SystemTime::UNIX_EPOCH);
        assert_eq!(kept.len(), KEPT_INVOCATIONS);
        assert_eq!(kept[0].request_id, "r5");
        let recent = history.since(start + Duration::from_secs(KEPT_INVOCATIONS as u64 + 3));
        let ids: Vec<&str> = recent.iter().map(|log| log.request_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                format!("r{}", KEPT_INVOCATIONS + 3),
                format!("r{}", KEPT_INVOCATIONS + 4)
            ]
        );
    }

    #[test]
    fn lines_go_to_the_current_invocation_only() {
        let history = OutputHistory::default();
        let current = CurrentOutput::default();
        current.push("before any invocation");
        current.switch_to(history.record("a", SystemTime::now(), WorkerId(1)));
        current.push("in a");
        current.switch_to(history.record("b", SystemTime::now(), WorkerId(1)));
        current.push("in b");
        let texts: Vec<(String, String)> = history
            .since(SystemTime::UNIX_EPOCH)
            .into_iter()
            .map(|log| (log.request_id, log.text))
            .collect();
        assert_eq!(
            texts,
            [
                ("a".to_string(), "in a\n".to_string()),
                ("b".to_string(), "in b\n".to_string())
            ]
        );
    }
}
