//! The private native module `dask_serverless._core`.
//!
//! The only crate that touches Python. It wraps the planner ([`plan::Plan`]), the local
//! platform ([`platform::LocalPlatform`]) and the removal of what dead local clients left
//! ([`leftovers`]), the shared-memory store, the client's run
//! ([`run::ClientRun`]) and the function's executor ([`invocation::Invocation`]). Blocking calls release
//! the GIL and run on one process-wide tokio runtime. Rust errors become the package's own
//! Python exceptions (`dask_serverless.errors`) in exactly one place, [`error`]; results cross
//! as typed classes, never tuples or JSON strings.

use std::sync::OnceLock;

use pyo3::prelude::*;

#[cfg(feature = "aws")]
mod aws;
mod buffer;
mod error;
mod invocation;
mod leftovers;
mod logs;
mod plan;
mod platform;
mod records;
mod run;
mod sim;
mod store;

/// The process-wide runtime that every blocking call runs on.
/// How often a long native call looks whether the caller was interrupted.
const SIGNAL_CHECK: std::time::Duration = std::time::Duration::from_millis(100);

/// Runs `future` on the runtime without the GIL, looking every [`SIGNAL_CHECK`] whether the
/// caller was interrupted (Ctrl-C): then the future is dropped, which stops what it was doing
/// (an invocation waiting out throttles, a store operation tried again), and the signal's
/// exception (`KeyboardInterrupt`) is raised.
pub(crate) fn block_on_interruptible<F>(py: Python<'_>, future: F) -> PyResult<F::Output>
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    py.detach(|| {
        runtime().block_on(async move {
            let mut future = std::pin::pin!(future);
            loop {
                tokio::select! {
                    output = &mut future => return Ok(output),
                    () = tokio::time::sleep(SIGNAL_CHECK) => {
                        Python::attach(|py| py.check_signals())?;
                    }
                }
            }
        })
    })
}

pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("dask-serverless")
            .enable_all()
            .build()
            .expect("the tokio runtime starts")
    })
}

/// Runs the `dask-serverless` command line (`arguments[0]` is the program name) and returns
/// its exit status: the package's console script enters here, so the command and the module
/// are one build.
#[pyfunction]
fn run_command(py: Python<'_>, arguments: Vec<std::ffi::OsString>) -> u8 {
    py.detach(|| dask_serverless_cli::run(arguments))
}

#[pymodule]
fn _core(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<buffer::Buffer>()?;
    module.add_class::<plan::Plan>()?;
    module.add_class::<platform::LocalPlatform>()?;
    module.add_class::<store::SharedMemoryStore>()?;
    module.add_class::<store::AnyStore>()?;
    module.add_class::<run::ClientRun>()?;
    module.add_class::<run::TasksFinished>()?;
    module.add_class::<run::TaskWarningRecord>()?;
    module.add_class::<run::RunCompleted>()?;
    module.add_class::<run::RunStatistics>()?;
    module.add_class::<invocation::Invocation>()?;
    module.add_class::<invocation::RunBatchStep>()?;
    module.add_class::<invocation::RetainStep>()?;
    module.add_class::<invocation::FinishStep>()?;
    module.add_class::<leftovers::LocalLeftover>()?;
    module.add_class::<logs::InvocationLog>()?;
    module.add_class::<sim::SimulatedRun>()?;
    #[cfg(feature = "aws")]
    module.add_class::<aws::AwsDeployer>()?;
    #[cfg(feature = "aws")]
    module.add_class::<aws::CleanupReport>()?;
    module.add_function(wrap_pyfunction!(plan::zero_work, module)?)?;
    module.add_function(wrap_pyfunction!(run::run_prefix, module)?)?;
    module.add_function(wrap_pyfunction!(run::chaos_setting, module)?)?;
    module.add_function(wrap_pyfunction!(run_command, module)?)?;
    module.add_function(wrap_pyfunction!(sim::simulate, module)?)?;
    module.add_function(wrap_pyfunction!(sim::simulator_parameters, module)?)?;
    module.add_function(wrap_pyfunction!(leftovers::remove_local_leftovers, module)?)?;
    Ok(())
}
