//! Enforcement of the per-invocation timeout, the initialization timeout and the memory size.
//!
//! One task ticks every 25 ms over every worker of every function:
//! - a `Busy` worker past its invocation's deadline is killed and the invocation fails with
//!   `Sandbox.Timedout` (`Task timed out after 3.00 seconds while running <progress>`);
//! - a `Starting` worker that has not asked for work within [`INITIALIZATION_TIMEOUT`] is killed
//!   and its invocation fails with `Runtime.InitError`;
//! - a worker whose process group's resident memory exceeds the function's memory size is killed
//!   and its invocation, if any, fails with `Runtime.OutOfMemory`.
//!
//! Resident memory is the sum of the resident set (`VmRSS`, read from `/proc/<pid>/statm`) of every
//! process in the worker's process group, so memory used by processes the handler starts counts
//! too — except the group's leader, the worker's keeper (see `lifeline`), which belongs to the
//! platform. The group's members are found by scanning `/proc` (each process's `pgrp`) every
//! [`MEMBERSHIP_REFRESH_TICKS`] ticks, and whenever a new worker appears; between scans only the
//! known members are read, which keeps the sampling cheap.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::INITIALIZATION_TIMEOUT;
use crate::function::{
    Failure, FailureKind, Function, Invocation, Outcome, WorkerId, WorkerPhase, complete,
    while_running,
};
use crate::platform::Shared;

/// How often limits are checked.
pub(crate) const TICK: Duration = Duration::from_millis(25);
/// How many ticks between two scans of `/proc` for process group members.
const MEMBERSHIP_REFRESH_TICKS: u64 = 20;

/// Runs until aborted.
pub(crate) async fn enforce_limits(shared: Arc<Shared>) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut groups = ProcessGroups::default();
    let mut tick: u64 = 0;
    loop {
        interval.tick().await;
        tick += 1;
        enforce_once(
            &shared,
            &mut groups,
            tick.is_multiple_of(MEMBERSHIP_REFRESH_TICKS),
        );
    }
}

/// A worker to measure.
struct Measured {
    function: Arc<Function>,
    worker_id: WorkerId,
    process_id: u32,
    process_group: u32,
}

fn enforce_once(shared: &Arc<Shared>, groups: &mut ProcessGroups, refresh: bool) {
    let now = Instant::now();
    let mut failed: Vec<(Arc<Function>, Invocation, Failure)> = Vec::new();
    let mut measured = Vec::new();
    for function in shared.function_list() {
        let mut state = function.lock();
        let mut expired = Vec::new();
        for worker in state.workers.values() {
            let timed_out = match worker.phase {
                WorkerPhase::Busy => worker
                    .assignment
                    .as_ref()
                    .and_then(|assignment| assignment.deadline)
                    .is_some_and(|deadline| now >= deadline),
                WorkerPhase::Starting => {
                    now.duration_since(worker.started_at) >= INITIALIZATION_TIMEOUT
                }
                WorkerPhase::Idle | WorkerPhase::Stopping => false,
            };
            if timed_out {
                expired.push(worker.id);
            } else if worker.phase != WorkerPhase::Stopping
                && let Some(process_id) = worker.process_id
                && let Some(process_group) = worker.process_group
            {
                measured.push(Measured {
                    function: Arc::clone(&function),
                    worker_id: worker.id,
                    process_id,
                    process_group,
                });
            }
        }
        for worker_id in expired {
            let Some(worker) = state.workers.get_mut(&worker_id) else {
                continue;
            };
            let initializing = worker.phase == WorkerPhase::Starting;
            let progress = worker.progress();
            let Some(invocation) = worker.stop() else {
                continue;
            };
            let failure = if initializing {
                Failure::new(
                    FailureKind::Initialization,
                    "Runtime.InitError",
                    format!(
                        "function '{}' did not finish initializing within {:.2} seconds",
                        function.config.name,
                        INITIALIZATION_TIMEOUT.as_secs_f64()
                    ),
                )
            } else {
                Failure::new(
                    FailureKind::Timeout,
                    "Sandbox.Timedout",
                    format!(
                        "Task timed out after {:.2} seconds{}",
                        function.config.timeout.as_secs_f64(),
                        while_running(progress)
                    ),
                )
            };
            failed.push((Arc::clone(&function), invocation, failure));
        }
    }

    if !measured.is_empty() {
        let wanted: HashSet<u32> = measured.iter().map(|worker| worker.process_group).collect();
        groups.refresh_if(
            refresh
                || wanted
                    .iter()
                    .any(|group| !groups.members.contains_key(group)),
            &wanted,
        );
        for worker in measured {
            let used = groups.resident_bytes(worker.process_group, worker.process_id);
            let limit = worker.function.config.memory_mb * 1024 * 1024;
            if used <= limit {
                continue;
            }
            let function = worker.function;
            let mut state = function.lock();
            let Some(entry) = state.workers.get_mut(&worker.worker_id) else {
                continue;
            };
            if entry.phase == WorkerPhase::Stopping || entry.process_id != Some(worker.process_id) {
                continue;
            }
            let activity = match entry.phase {
                WorkerPhase::Starting => " while initializing".to_string(),
                _ => while_running(entry.progress()),
            };
            let message = format!(
                "function '{}' exceeded its memory size of {} MB (used {} MB){activity}",
                function.config.name,
                function.config.memory_mb,
                used / (1024 * 1024)
            );
            match entry.stop() {
                Some(invocation) => {
                    let failure =
                        Failure::new(FailureKind::OutOfMemory, "Runtime.OutOfMemory", message);
                    failed.push((Arc::clone(&function), invocation, failure));
                }
                None => tracing::warn!("{} of {message}; stopped", worker.worker_id),
            }
        }
    }

    for (function, invocation, failure) in failed {
        complete(shared, &function, invocation, Outcome::Failure(failure));
    }
}

/// The members of the process groups of the workers, as last scanned.
#[derive(Debug, Default)]
struct ProcessGroups {
    members: HashMap<u32, Vec<u32>>,
}

impl ProcessGroups {
    fn refresh_if(&mut self, refresh: bool, wanted: &HashSet<u32>) {
        if !refresh {
            return;
        }
        let mut members: HashMap<u32, Vec<u32>> =
            wanted.iter().map(|&group| (group, Vec::new())).collect();
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let Some(process_id) = entry
                    .file_name()
                    .to_str()
                    .and_then(|name| name.parse::<u32>().ok())
                else {
                    continue;
                };
                if let Some(group) = process_group_of(process_id)
                    && let Some(list) = members.get_mut(&group)
                {
                    list.push(process_id);
                }
            }
        }
        self.members = members;
    }

    /// Resident bytes of a worker's group: its known members but the leader (the keeper), or
    /// the worker alone before its group was scanned.
    fn resident_bytes(&self, group: u32, worker: u32) -> u64 {
        match self.members.get(&group) {
            Some(members) if members.iter().any(|&member| member != group) => members
                .iter()
                .filter(|&&member| member != group)
                .map(|&process_id| resident_bytes(process_id))
                .sum(),
            _ => resident_bytes(worker),
        }
    }
}

/// The process group of a process, from `/proc/<pid>/stat` (the field after state and parent).
fn process_group_of(process_id: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{process_id}/stat")).ok()?;
    // The command name is in parentheses and may itself contain spaces and parentheses.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(2)?.parse().ok()
}

/// The resident set of one process in bytes; zero if it is gone.
fn resident_bytes(process_id: u32) -> u64 {
    let Ok(statm) = std::fs::read_to_string(format!("/proc/{process_id}/statm")) else {
        return 0;
    };
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .unwrap_or(0);
    pages * page_size()
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process_group_and_memory() {
        let own = std::process::id();
        // SAFETY: getpgrp has no preconditions.
        let group = unsafe { libc::getpgrp() } as u32;
        assert_eq!(process_group_of(own), Some(group));
        assert!(resident_bytes(own) > 0);
        assert_eq!(resident_bytes(u32::MAX), 0);
    }

    #[test]
    fn a_group_is_measured_without_its_leader_the_keeper() {
        let starting = crate::test_support::starting_programs();
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        drop(starting);
        let worker = sleeper.id();
        // A process being started (`exec` under way) still grows: wait until it runs `sleep`
        // and its resident memory holds still, so that two reads of it agree.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let comm = std::fs::read_to_string(format!("/proc/{worker}/comm")).unwrap_or_default();
            let before = resident_bytes(worker);
            std::thread::sleep(std::time::Duration::from_millis(50));
            if comm.trim() == "sleep" && before > 0 && resident_bytes(worker) == before {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the sleeper never settled"
            );
        }
        // This process stands for the keeper: much larger than the sleeper, and left out.
        let keeper = std::process::id();
        let mut groups = ProcessGroups::default();
        groups.members.insert(keeper, vec![keeper, worker]);
        let measured = groups.resident_bytes(keeper, worker);
        assert!(measured > 0);
        assert_eq!(measured, resident_bytes(worker));
        assert!(measured < resident_bytes(keeper));
        // Before its group is scanned, or with the keeper alone found, the worker alone counts.
        groups.members.insert(keeper, vec![keeper]);
        assert_eq!(
            groups.resident_bytes(keeper, worker),
            resident_bytes(worker)
        );
        let _ = sleeper.kill();
        let _ = sleeper.wait();
    }
}
