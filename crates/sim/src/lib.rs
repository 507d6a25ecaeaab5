//! A discrete-event simulation of dask-serverless runs, to predict time and cost at a scale
//! that cannot be rented for a test.
//!
//! The simulation runs the engine's own code: the real plan of the graph, the real
//! [`Driver`](dask_serverless_core::Driver) of the client and one real
//! [`Executor`](dask_serverless_core::Executor) per invocation, on a virtual clock. Only the
//! IO is modelled: how long invocations take to start (cold or warm, within the concurrency
//! limit and the scaling rate), how long the store takes to answer and to move bytes (with
//! its request-rate limits), how long messages take on the result channel, and how long tasks
//! compute (their measured or estimated durations, at the function's CPU share). The models'
//! parameters are named sets with their sources ([`parameters`]); the tasks' costs are given
//! ([`TaskCosts`]).
//!
//! A simulation is deterministic for a seed: every random draw is a function of the seed and
//! of what is drawn. The chaos platform's faults (kills at its kill points, duplicate
//! deliveries, stragglers, slow cold starts) can be switched on, drawn the same way.
//!
//! The result ([`SimulatedRun`]) holds the same records as a real run's client keeps (one per
//! batch report and one per task), so one run report reads both, plus what only a simulation
//! knows at once: the critical path, the peak concurrency, its own cost in events.

pub mod parameters;
mod simulation;

pub use parameters::{PARAMETER_SETS, PlatformParameters, Spread, StoreKind, StoreParameters};
pub use simulation::{
    DEFAULT_PICKLED_BYTES, SimulatedRun, SimulationError, SimulationOptions, TaskCosts, simulate,
};
