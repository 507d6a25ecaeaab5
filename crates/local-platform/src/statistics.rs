//! Counters of what the local platform did, kept per function and for the whole platform.
//!
//! Counters only grow (invocations, cold starts, throttles, outcomes); gauges (workers, busy
//! workers, queued events) are read from the functions' state when a snapshot is taken.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::function::{FunctionState, WorkerPhase};

/// A snapshot of the local platform's counters, for the whole platform or one function.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PlatformStatistics {
    /// Invocations accepted (synchronous admitted plus asynchronous queued).
    pub invocations: u64,
    pub synchronous_invocations: u64,
    pub asynchronous_invocations: u64,
    /// Synchronous invocations refused with 429 because every allowed worker was busy.
    pub throttles: u64,
    /// Worker processes started.
    pub cold_starts: u64,
    pub successes: u64,
    /// Errors raised by the handler and reported by its runtime.
    pub handler_errors: u64,
    /// Responses over the 6 MB limit (`Function.ResponseSizeTooLarge`).
    pub oversized_responses: u64,
    pub timeouts: u64,
    pub out_of_memory_kills: u64,
    /// Workers that exited while running an invocation.
    pub crashes: u64,
    /// Workers that failed before asking for their first invocation.
    pub initialization_failures: u64,
    /// Invocations ended by a deletion or a shutdown.
    pub abandoned: u64,
    /// Failure records written to on-failure queues.
    pub failure_records_delivered: u64,
    /// Worker processes alive now (any phase).
    pub workers: u64,
    /// Workers holding an invocation now.
    pub busy_workers: u64,
    /// Asynchronous invocations waiting for a worker now.
    pub queued_events: u64,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Counter {
    Invocations,
    SynchronousInvocations,
    AsynchronousInvocations,
    Throttles,
    ColdStarts,
    Successes,
    HandlerErrors,
    OversizedResponses,
    Timeouts,
    OutOfMemoryKills,
    Crashes,
    InitializationFailures,
    Abandoned,
    FailureRecordsDelivered,
}

const COUNTERS: usize = 14;

#[derive(Debug, Default)]
pub(crate) struct Counters {
    values: [AtomicU64; COUNTERS],
}

impl Counters {
    pub(crate) fn increment(&self, counter: Counter) {
        self.values[counter as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self, counter: Counter) -> u64 {
        self.values[counter as usize].load(Ordering::Relaxed)
    }

    /// The counters, with zero gauges (see [`add_gauges`]).
    pub(crate) fn snapshot(&self) -> PlatformStatistics {
        PlatformStatistics {
            invocations: self.get(Counter::Invocations),
            synchronous_invocations: self.get(Counter::SynchronousInvocations),
            asynchronous_invocations: self.get(Counter::AsynchronousInvocations),
            throttles: self.get(Counter::Throttles),
            cold_starts: self.get(Counter::ColdStarts),
            successes: self.get(Counter::Successes),
            handler_errors: self.get(Counter::HandlerErrors),
            oversized_responses: self.get(Counter::OversizedResponses),
            timeouts: self.get(Counter::Timeouts),
            out_of_memory_kills: self.get(Counter::OutOfMemoryKills),
            crashes: self.get(Counter::Crashes),
            initialization_failures: self.get(Counter::InitializationFailures),
            abandoned: self.get(Counter::Abandoned),
            failure_records_delivered: self.get(Counter::FailureRecordsDelivered),
            workers: 0,
            busy_workers: 0,
            queued_events: 0,
        }
    }
}

/// Adds a function's current workers and queue to the snapshot's gauges.
pub(crate) fn add_gauges(statistics: &mut PlatformStatistics, state: &FunctionState) {
    statistics.workers += state.workers.len() as u64;
    statistics.busy_workers += state
        .workers
        .values()
        .filter(|worker| worker.phase != WorkerPhase::Stopping && worker.assignment.is_some())
        .count() as u64;
    statistics.queued_events += state.queued_events.len() as u64;
}
