//! The function's log group in CloudWatch Logs: reading what each invocation printed, and
//! deleting the group with its cluster.
//!
//! # Model
//!
//! Lambda writes a function's output to the log group `/aws/lambda/<function>`
//! ([`log_group_name`]), which it creates at the function's first invocation; nothing of ours
//! creates it, so it carries no tags. Each execution environment (one instance: invocations one
//! after another) writes to a log stream of its own:
//!
//! ```text
//! INIT_START Runtime Version: ...        (a cold start: the instance initializes)
//! ...what the module printed as it was imported...
//! START RequestId: <id> Version: $LATEST
//! ...what the handler printed...
//! END RequestId: <id>
//! REPORT RequestId: <id>  Duration: ... Billed Duration: ... Max Memory Used: ...
//! ```
//!
//! [`invocation_logs`] reads the events of the group from a moment on (`FilterLogEvents`, every
//! page) and cuts each stream at its `START`/`END` lines into one [`InvocationLog`] per
//! request id ([`group_by_invocation`]): the lines between `START` and `END`, then the `REPORT`
//! line; what an instance printed before an invocation's `START` (its initialization) counts
//! with that invocation, as on the local platform. The `START` and `END` lines themselves are
//! left out: they only delimit. Lines found before an `END` whose `START` is older than the
//! window belong to an earlier invocation and are left out too. Each invocation keeps its last
//! [`KEPT_BYTES_PER_INVOCATION`] bytes; at most [`MOST_PAGES`] pages are read.
//!
//! Invocations are selected by the time of their `START` line, written with AWS's clock:
//! [`invocation_logs`] reads from [`CLOCK_MARGIN`] before the moment it is given, so that a
//! client clock a little ahead of AWS's loses no invocation; the caller narrows the answer
//! (the Python cluster keeps those that started since its compute began by its own clock, and
//! those that reported a batch of the compute). CloudWatch Logs receives events within seconds:
//! what an invocation printed in its last moments may show a little later.
//!
//! # Delete and find
//!
//! [`delete`] deletes the group (already gone: [`Outcome::AlreadyGone`]). Every deletion of a
//! cluster deletes its function's group after the function, so that the function writes no
//! more to it (an invocation still running could create it again; a cluster is deleted after
//! its runs ended). A cleanup finds groups without tags: [`existing`] lists the groups named
//! after our functions and keeps those of the clusters it is given.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::clients::Clients;
use crate::error::{AwsError, Call};
use crate::names::ClusterId;
use crate::resource::{Outcome, Resource};

/// The prefix of the log groups Lambda creates for functions.
const LAMBDA_LOG_GROUP_PREFIX: &str = "/aws/lambda/";
/// The prefix of our functions' log groups.
const OUR_LOG_GROUP_PREFIX: &str = "/aws/lambda/dask-serverless-";
/// Bytes of output kept per invocation: its last ones.
pub(crate) const KEPT_BYTES_PER_INVOCATION: usize = 64 * 1024;
/// Most pages of log events read at once (a page holds up to 10,000 events or 1 MB).
pub(crate) const MOST_PAGES: usize = 100;
/// How far before the moment it is given [`invocation_logs`] reads (see the module
/// documentation).
pub const CLOCK_MARGIN: Duration = Duration::from_secs(1);

/// The log group of `function`: `/aws/lambda/<function>`.
pub(crate) fn log_group_name(function: &str) -> String {
    format!("{LAMBDA_LOG_GROUP_PREFIX}{function}")
}

/// What one invocation printed, from its function's log group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationLog {
    /// The invocation's request id.
    pub request_id: String,
    /// The time of its `START` line.
    pub started: SystemTime,
    /// Its lines (see the module documentation), one `\n` after each; the last
    /// [`KEPT_BYTES_PER_INVOCATION`] bytes.
    pub text: String,
    /// Bytes of lines before those kept, dropped.
    pub omitted_bytes: u64,
}

/// One log event, as `FilterLogEvents` answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogEvent {
    pub(crate) stream: String,
    /// Milliseconds since the Unix epoch.
    pub(crate) timestamp: i64,
    pub(crate) message: String,
}

/// What `function` printed in the invocations that started at `since` less [`CLOCK_MARGIN`] or
/// later (see the module documentation), in the order they started. No log group (never
/// invoked): nothing.
pub(crate) async fn invocation_logs(
    clients: &Clients,
    function: &str,
    since: SystemTime,
) -> Result<Vec<InvocationLog>, AwsError> {
    let group = log_group_name(function);
    let endpoint = clients.endpoint("logs");
    let resource = format!("log group '{group}'");
    let call = Call::new(
        "CloudWatch Logs",
        "logs:FilterLogEvents",
        &resource,
        &endpoint,
    );
    let from = since.checked_sub(CLOCK_MARGIN).unwrap_or(UNIX_EPOCH);
    let from_ms = milliseconds(from);
    let mut events = Vec::new();
    let mut next_token: Option<String> = None;
    for _ in 0..MOST_PAGES {
        let answer = clients
            .logs
            .filter_log_events()
            .log_group_name(&group)
            .start_time(from_ms)
            .set_next_token(next_token.take())
            .send()
            .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) => {
                let failure = crate::error::classify(&error);
                if failure.is_not_found() {
                    return Ok(Vec::new());
                }
                return Err(call.error(failure));
            }
        };
        events.extend(answer.events().iter().map(|event| LogEvent {
            stream: event.log_stream_name().unwrap_or_default().to_string(),
            timestamp: event.timestamp().unwrap_or_default(),
            message: event.message().unwrap_or_default().to_string(),
        }));
        match answer.next_token() {
            Some(token) if !token.is_empty() => next_token = Some(token.to_string()),
            _ => break,
        }
    }
    Ok(group_by_invocation(events, from_ms))
}

fn milliseconds(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The request id of a `START`, `END` or `REPORT` line.
fn request_id_of<'a>(message: &'a str, kind: &str) -> Option<&'a str> {
    let rest = message.strip_prefix(kind)?.strip_prefix(" RequestId: ")?;
    rest.split_whitespace().next()
}

/// An invocation being read.
#[derive(Debug)]
struct Reading {
    log: InvocationLog,
    lines: VecDeque<String>,
    bytes: usize,
}

impl Reading {
    fn new(request_id: &str, timestamp: i64, before: Vec<String>) -> Self {
        let started = UNIX_EPOCH + Duration::from_millis(u64::try_from(timestamp).unwrap_or(0));
        let mut reading = Self {
            log: InvocationLog {
                request_id: request_id.to_string(),
                started,
                text: String::new(),
                omitted_bytes: 0,
            },
            lines: VecDeque::new(),
            bytes: 0,
        };
        for line in before {
            reading.push(&line);
        }
        reading
    }

    fn push(&mut self, line: &str) {
        let line = line.trim_end_matches(['\n', '\r']);
        let mut line = line;
        if line.len() + 1 > KEPT_BYTES_PER_INVOCATION {
            let mut start = line.len() + 1 - KEPT_BYTES_PER_INVOCATION;
            while !line.is_char_boundary(start) {
                start += 1;
            }
            self.log.omitted_bytes += start as u64;
            line = &line[start..];
        }
        while self.bytes + line.len() + 1 > KEPT_BYTES_PER_INVOCATION {
            let Some(dropped) = self.lines.pop_front() else {
                break;
            };
            self.bytes -= dropped.len() + 1;
            self.log.omitted_bytes += dropped.len() as u64 + 1;
        }
        self.bytes += line.len() + 1;
        self.lines.push_back(line.to_string());
    }

    fn finish(mut self) -> InvocationLog {
        let mut text = String::with_capacity(self.bytes);
        for line in &self.lines {
            text.push_str(line);
            text.push('\n');
        }
        self.log.text = text;
        self.log
    }
}

/// Cuts the events of a log group into invocations (see the module documentation); those whose
/// `START` is before `from_ms` are left out.
pub(crate) fn group_by_invocation(events: Vec<LogEvent>, from_ms: i64) -> Vec<InvocationLog> {
    // Each stream in the order its events came (their order in the stream).
    let mut streams: BTreeMap<String, Vec<LogEvent>> = BTreeMap::new();
    for event in events {
        streams.entry(event.stream.clone()).or_default().push(event);
    }
    let mut logs = Vec::new();
    for events in streams.into_values() {
        // Lines not yet inside an invocation: an initialization, or the end of an earlier one.
        let mut before: Vec<String> = Vec::new();
        let mut current: Option<Reading> = None;
        for event in events {
            let message = event.message.as_str();
            if let Some(id) = request_id_of(message, "START") {
                logs.extend(current.take().map(Reading::finish));
                current = Some(Reading::new(
                    id,
                    event.timestamp,
                    std::mem::take(&mut before),
                ));
            } else if let Some(id) = request_id_of(message, "END") {
                if current
                    .as_ref()
                    .is_none_or(|reading| reading.log.request_id != id)
                {
                    // The end of an invocation that started before the window.
                    logs.extend(current.take().map(Reading::finish));
                    before.clear();
                }
            } else if let Some(id) = request_id_of(message, "REPORT") {
                match current.take() {
                    Some(mut reading) if reading.log.request_id == id => {
                        reading.push(message);
                        logs.push(reading.finish());
                    }
                    other => {
                        logs.extend(other.map(Reading::finish));
                        before.clear();
                    }
                }
            } else {
                match current.as_mut() {
                    Some(reading) => reading.push(message),
                    None => before.push(message.to_string()),
                }
            }
        }
        logs.extend(current.map(Reading::finish));
    }
    let from = UNIX_EPOCH + Duration::from_millis(u64::try_from(from_ms).unwrap_or(0));
    logs.retain(|log| log.started >= from);
    logs.sort_by(|left, right| {
        (left.started, &left.request_id).cmp(&(right.started, &right.request_id))
    });
    logs
}

/// Deletes a log group; already gone is [`Outcome::AlreadyGone`].
pub(crate) async fn delete(clients: &Clients, resource: &Resource) -> Result<Outcome, AwsError> {
    let endpoint = clients.endpoint("logs");
    let described = resource.to_string();
    let call = Call::new(
        "CloudWatch Logs",
        "logs:DeleteLogGroup",
        &described,
        &endpoint,
    );
    let result = clients
        .logs
        .delete_log_group()
        .log_group_name(&resource.name)
        .send()
        .await;
    call.deletion(result)
}

/// The log groups that exist among those of `clusters`' functions, each with its cluster.
pub(crate) async fn existing(
    clients: &Clients,
    clusters: &BTreeSet<String>,
) -> Result<Vec<(String, Resource)>, AwsError> {
    if clusters.is_empty() {
        return Ok(Vec::new());
    }
    let endpoint = clients.endpoint("logs");
    let resource = format!("log groups '{OUR_LOG_GROUP_PREFIX}*'");
    let call = Call::new(
        "CloudWatch Logs",
        "logs:DescribeLogGroups",
        &resource,
        &endpoint,
    );
    let mut found = Vec::new();
    let mut next_token: Option<String> = None;
    loop {
        let answer = clients
            .logs
            .describe_log_groups()
            .log_group_name_prefix(OUR_LOG_GROUP_PREFIX)
            .set_next_token(next_token.take())
            .send()
            .await
            .map_err(|error| call.sdk(error))?;
        for group in answer.log_groups() {
            let Some(name) = group.log_group_name() else {
                continue;
            };
            let Some(cluster) = name.strip_prefix(OUR_LOG_GROUP_PREFIX) else {
                continue;
            };
            if clusters.contains(cluster) && ClusterId::new(cluster).is_ok() {
                found.push((cluster.to_string(), Resource::log_group(name)));
            }
        }
        match answer.next_token() {
            Some(token) if !token.is_empty() => next_token = Some(token.to_string()),
            _ => break,
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(stream: &str, timestamp: i64, message: &str) -> LogEvent {
        LogEvent {
            stream: stream.to_string(),
            timestamp,
            message: message.to_string(),
        }
    }

    fn texts(logs: &[InvocationLog]) -> Vec<(&str, &str)> {
        logs.iter()
            .map(|log| (log.request_id.as_str(), log.text.as_str()))
            .collect()
    }

    #[test]
    fn streams_are_cut_into_invocations_at_their_start_and_end_lines() {
        let events = vec![
            event("a", 1_000, "INIT_START Runtime Version: python:3.12"),
            event("a", 1_001, "imported\n"),
            event("a", 1_002, "START RequestId: r1 Version: $LATEST"),
            // Another instance, interleaved.
            event("b", 1_003, "START RequestId: r2 Version: $LATEST"),
            event("a", 1_004, "task printed\n"),
            event("b", 1_005, "other task"),
            event("a", 1_006, "END RequestId: r1"),
            event("a", 1_007, "REPORT RequestId: r1\tDuration: 4 ms"),
            event("a", 1_010, "START RequestId: r3 Version: $LATEST"),
            event("a", 1_011, "END RequestId: r3"),
            event("a", 1_012, "REPORT RequestId: r3\tDuration: 1 ms"),
            // r2 has not ended yet: what it printed so far.
        ];
        let logs = group_by_invocation(events, 0);
        assert_eq!(
            texts(&logs),
            [
                (
                    "r1",
                    "INIT_START Runtime Version: python:3.12\nimported\ntask printed\n\
                     REPORT RequestId: r1\tDuration: 4 ms\n"
                ),
                ("r2", "other task\n"),
                ("r3", "REPORT RequestId: r3\tDuration: 1 ms\n"),
            ]
        );
        assert_eq!(logs[0].started, UNIX_EPOCH + Duration::from_millis(1_002));
    }

    #[test]
    fn invocations_that_started_before_the_window_are_left_out() {
        let events = vec![
            // The end of an invocation whose START is older than the window.
            event("a", 2_000, "late line of r0"),
            event("a", 2_001, "END RequestId: r0"),
            event("a", 2_002, "REPORT RequestId: r0\tDuration: 9 ms"),
            event("a", 2_003, "START RequestId: r1 Version: $LATEST"),
            event("a", 2_004, "mine"),
            event("a", 2_005, "END RequestId: r1"),
        ];
        assert_eq!(
            texts(&group_by_invocation(events.clone(), 0)),
            [("r1", "mine\n")]
        );
        assert!(group_by_invocation(events, 2_004).is_empty());
    }

    #[test]
    fn an_invocation_keeps_its_last_bytes() {
        let line = "x".repeat(1_000);
        let mut events = vec![event("a", 1, "START RequestId: r1 Version: $LATEST")];
        events.push(event("a", 2, "first"));
        for index in 0..100 {
            events.push(event("a", 3 + index, &line));
        }
        let logs = group_by_invocation(events, 0);
        assert!(logs[0].text.len() <= KEPT_BYTES_PER_INVOCATION);
        assert!(!logs[0].text.contains("first"));
        assert_eq!(
            logs[0].text.len() as u64 + logs[0].omitted_bytes,
            ("first\n".len() + 100 * 1_001) as u64
        );
    }

    #[test]
    fn log_groups_are_named_after_functions() {
        assert_eq!(
            log_group_name("dask-serverless-abc"),
            "/aws/lambda/dask-serverless-abc"
        );
    }
}
