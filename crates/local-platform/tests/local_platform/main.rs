//! Tests of the local platform with real worker processes: Python running `awslambdaric` against the
//! local platform's Runtime API, with the handlers in `tests/handlers/`.
//!
//! The interpreter is `$DASK_SERVERLESS_PYTHON`, or `python3` if unset. A test that needs
//! workers fails, saying what to install or set, when that interpreter cannot import
//! `awslambdaric`: it never passes without running.

mod invocations;
mod lifecycle;
mod limits;
mod queues;
mod support;
