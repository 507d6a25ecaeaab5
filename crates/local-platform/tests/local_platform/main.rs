//! Tests of the local platform with real worker processes: Python running `awslambdaric` against the
//! local platform's Runtime API, with the handlers in `tests/handlers/`.
//!
//! The interpreter is `$DASK_SERVERLESS_PYTHON`, or `python3` if unset. Tests that need workers
//! skip (saying so) only when no such interpreter can import `awslambdaric`; an interpreter named
//! explicitly that cannot is an error.

mod invocations;
mod lifecycle;
mod limits;
mod queues;
mod support;
