//! `dask-serverless`: the project's command-line tool, as a library.
//!
//! The same code runs as the `dask-serverless` binary of this crate and as the console script
//! of the Python package (`dask_serverless._cli`, entering the native module): one build.
//! [`run`] parses the arguments, runs a subcommand and returns the exit status.
//!
//! Subcommands:
//! - `local-platform` (alias `emulator`): runs the local Lambda-compatible platform standalone
//!   (Invoke API, Runtime API for its workers, queue service) until Ctrl-C or SIGTERM, then
//!   shuts it down, killing every worker. Killed otherwise (SIGKILL included), its workers and
//!   whatever they started die with it (see the local platform's `lifeline`).
//!   The first line on standard output is `listening on http://<address>`, so that a script that
//!   asked for port 0 learns the port. `--chaos SPEC --seed N` injects faults into the
//!   functions (a testing aid: they get the spec in `DASK_SERVERLESS_CHAOS`; see
//!   docs/reliability.md, "The chaos suite").
//! - `cleanup`: deletes what clients that died left behind; `--dry-run` lists it and deletes
//!   nothing. Prints one line per item.
//!   - `cleanup --local`: on this machine, the shared-memory stores and local platform
//!     directories whose owner is gone (see `dask_serverless_local_platform::leftovers`), never
//!     those of a live client. In every build.
//!   - `cleanup --region R` (feature `aws`, on by default): the AWS resources that clusters left
//!     behind in a region, found by their `dask-serverless:*` tags (all clusters, or one with
//!     `--cluster`), except clusters whose client was seen less than `--older-than` ago
//!     (default 15m; `0` deletes every cluster): a live client renews a last-seen mark every
//!     minute. Skipped clusters get one line each. A build without the feature says so and
//!     points to `--local`.
//! - `bench`: runs the benchmark harness, `<python> -m dask_serverless.bench <arguments>`, with
//!   the interpreter named by `DASK_SERVERLESS_PYTHON` (else `python3`). Every argument goes to
//!   the harness (`dask-serverless bench --help` prints its options). The process *becomes* the
//!   interpreter (exec), so output, Ctrl-C and the exit status are the harness's own.
//! - `experiment`: runs an experiment from a configuration file, `<python> -m
//!   dask_serverless.experiments <arguments>`, the same way as `bench` (`dask-serverless
//!   experiment --help` prints its options).
//! - `estimate`: predicts a compute's time and cost with the simulator, `<python> -m
//!   dask_serverless.simulation <arguments>`, the same way (`dask-serverless estimate --help`).
//!
//! Worker output goes to standard error, or to `--worker-log FILE`. Diagnostics follow
//! `RUST_LOG` (default `info`, without the AWS SDK's own credential-chain warnings: `cleanup`
//! reports those itself), coloured only on a terminal.
//!
//! Errors: one line, `error: <what went wrong>: <cause>: <cause>`, each cause once (a cause
//! that repeats the text before it is dropped), exit status 1. `--verbose` adds the causes'
//! details and a backtrace where one was captured; a panic prints one line too, unless
//! `--verbose`.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
#[cfg(feature = "aws")]
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use dask_serverless_local_platform::{LocalPlatform, LocalPlatformConfig, WorkerOutputCopy};
use tokio::signal::unix::{Signal, SignalKind, signal};

#[derive(Debug, Parser)]
#[command(
    name = "dask-serverless",
    version,
    about = "Dask computations on serverless functions"
)]
struct Arguments {
    /// Print every cause of an error in full, with a backtrace where one was captured.
    #[arg(long, short, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the local Lambda-compatible platform until interrupted.
    #[command(alias = "emulator")]
    LocalPlatform(LocalPlatformArguments),
    /// Delete what dead clients left: AWS resources (found by their tags; clusters whose
    /// client was seen recently are left alone), or with --local this machine's shared memory
    /// and temporary directories.
    Cleanup(CleanupArguments),
    /// Run the benchmark harness (python -m dask_serverless.bench); arguments go to it.
    Bench(BenchArguments),
    /// Run an experiment (a grid of workloads, memory sizes, concurrency limits and runs)
    /// from a configuration file (python -m dask_serverless.experiments); arguments go to it.
    Experiment(ExperimentArguments),
    /// Predict a compute's time and cost with the simulator, before running it (python -m
    /// dask_serverless.simulation); arguments go to it.
    Estimate(EstimateArguments),
}

#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
struct BenchArguments {
    /// Arguments of the harness, for example `--small --runs 1`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    arguments: Vec<OsString>,
}

#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
struct EstimateArguments {
    /// A seed workload's name or a Python file defining `collection`, and options, for
    /// example `gemm --platform lambda --memory-mb 3008`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    arguments: Vec<OsString>,
}

#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
struct ExperimentArguments {
    /// The configuration file and options, for example `sweep.toml --output results`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    arguments: Vec<OsString>,
}

#[derive(Debug, clap::Args)]
struct CleanupArguments {
    /// Clean up this machine instead of AWS: the shared-memory stores and local platform
    /// directories of dead local clients (never those of a live one).
    #[arg(long)]
    local: bool,
    #[cfg(feature = "aws")]
    #[command(flatten)]
    aws: AwsCleanupArguments,
    /// List what would be deleted (and, on AWS, what would be skipped); delete nothing.
    #[arg(long)]
    dry_run: bool,
}

#[cfg(feature = "aws")]
#[derive(Debug, clap::Args)]
struct AwsCleanupArguments {
    /// AWS region (default: AWS_REGION, else the profile's region).
    #[arg(long, conflicts_with = "local")]
    region: Option<String>,
    /// An AWS-compatible endpoint to use instead of AWS, e.g. http://127.0.0.1:4566.
    #[arg(long, conflicts_with = "local")]
    endpoint_url: Option<String>,
    /// Profile of the AWS config files (default: AWS_PROFILE, else `default`).
    #[arg(long, conflicts_with = "local")]
    profile: Option<String>,
    /// Only this cluster's resources (default: those of every cluster in the region), if its
    /// client was not seen within --older-than either.
    #[arg(long, conflicts_with = "local")]
    cluster: Option<String>,
    /// Leave alone every cluster whose client was seen less than this long ago (live clients
    /// renew a mark every minute), e.g. 30m, 2h, 1d; 0 deletes every cluster, in use or not.
    #[arg(long, default_value = "15m", value_parser = parse_older_than, conflicts_with = "local")]
    older_than: Duration,
}

#[cfg(feature = "aws")]
fn parse_older_than(text: &str) -> Result<Duration, String> {
    dask_serverless_aws::parse_duration(text).map_err(|error| error.to_string())
}

#[derive(Debug, clap::Args)]
struct LocalPlatformArguments {
    /// Port of the Invoke API and queue service; 0 picks a free one.
    #[arg(long, default_value_t = 9000)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    bind: IpAddr,
    /// Python interpreter for functions created without a command.
    #[arg(long, default_value = "python3")]
    python: PathBuf,
    /// Append worker output to this file instead of standard error.
    #[arg(long)]
    worker_log: Option<PathBuf>,
    /// Faults for testing, injected into every function of a run that carries none itself,
    /// e.g. `kill=0.05,duplicate=0.05,throttle=0.2,straggle=0.01` (see docs/reliability.md).
    #[arg(long, value_parser = parse_chaos_spec)]
    chaos: Option<dask_serverless_chaos::ChaosSpec>,
    /// Seed of the faults of `--chaos`: the same seed replays the same faults.
    #[arg(long, default_value_t = 0, requires = "chaos")]
    seed: u64,
}

fn parse_chaos_spec(text: &str) -> Result<dask_serverless_chaos::ChaosSpec, String> {
    text.parse()
        .map_err(|error: dask_serverless_chaos::ChaosSpecError| error.reason)
}

/// Runs the command line `arguments` (the program name first) and returns the exit status.
pub fn run(arguments: Vec<OsString>) -> u8 {
    let arguments = match Arguments::try_parse_from(arguments) {
        Ok(arguments) => arguments,
        Err(error) => {
            // Help and version go to standard output with status 0; usage errors to standard
            // error with clap's own status.
            let _ = error.print();
            return error.exit_code().clamp(0, 255) as u8;
        }
    };
    let verbose = arguments.verbose;
    if !verbose {
        std::panic::set_hook(Box::new(|information| {
            let message = information
                .payload()
                .downcast_ref::<&str>()
                .map(|text| text.to_string())
                .or_else(|| information.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "an unexpected internal error".to_owned());
            eprintln!("error: internal error: {message} (run with --verbose for details)");
        }));
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,aws_config=error")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
    match std::panic::catch_unwind(|| run_command(arguments.command)) {
        Ok(Ok(())) => 0,
        Ok(Err(error)) => {
            eprintln!("error: {}", describe(&error, verbose));
            1
        }
        Err(_) => 1,
    }
}

/// An error as one line: each cause once, in order.
fn describe(error: &anyhow::Error, verbose: bool) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    if verbose {
        text.push_str(&format!("\n\n{error:?}"));
    }
    text
}

fn run_command(command: Command) -> anyhow::Result<()> {
    match command {
        Command::LocalPlatform(platform) => async_runtime()?.block_on(run_local_platform(platform)),
        Command::Cleanup(cleanup) if cleanup.local => run_local_cleanup(cleanup.dry_run),
        #[cfg(feature = "aws")]
        Command::Cleanup(cleanup) => {
            async_runtime()?.block_on(run_cleanup(cleanup.aws, cleanup.dry_run))
        }
        #[cfg(not(feature = "aws"))]
        Command::Cleanup(_) => Err(anyhow::anyhow!(
            "this build has no AWS support (cargo feature `aws`): `dask-serverless cleanup \
             --local` cleans up this machine"
        )),
        Command::Bench(bench) => Err(run_python_module("dask_serverless.bench", bench.arguments)),
        Command::Experiment(experiment) => Err(run_python_module(
            "dask_serverless.experiments",
            experiment.arguments,
        )),
        Command::Estimate(estimate) => Err(run_python_module(
            "dask_serverless.simulation",
            estimate.arguments,
        )),
    }
}

fn async_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")
}

/// Replaces this process with `<python> -m <module> <arguments>` (a subcommand written in
/// Python); returns only when the interpreter could not be started.
fn run_python_module(module: &str, arguments: Vec<OsString>) -> anyhow::Error {
    let python = std::env::var_os("DASK_SERVERLESS_PYTHON").unwrap_or_else(|| "python3".into());
    let error = std::process::Command::new(&python)
        .args(["-m", module])
        .args(arguments)
        .exec();
    anyhow::Error::new(error).context(format!(
        "could not run `{} -m {module}` (set DASK_SERVERLESS_PYTHON to the interpreter that \
         has dask_serverless installed)",
        python.to_string_lossy()
    ))
}

/// Removes (or with `dry_run` lists) what dead local clients left, one line per item.
fn run_local_cleanup(dry_run: bool) -> anyhow::Result<()> {
    use dask_serverless_local_platform::leftovers;

    let directories = leftovers::default_directories();
    if dry_run {
        let found = leftovers::find(&directories);
        if found.is_empty() {
            println!("nothing to remove");
        }
        for leftover in found {
            println!("would remove {leftover}");
        }
        return Ok(());
    }
    let removal = leftovers::remove(&directories);
    if removal.removed.is_empty() && removal.failed.is_empty() {
        println!("nothing to remove");
    }
    for leftover in &removal.removed {
        println!("removed {leftover}");
    }
    for (leftover, error) in &removal.failed {
        eprintln!("could not remove {leftover}: {error}");
    }
    match removal.failed.len() {
        0 => Ok(()),
        failed => Err(anyhow::anyhow!(
            "could not remove {failed} of {} leftovers",
            failed + removal.removed.len()
        )),
    }
}

#[cfg(feature = "aws")]
async fn run_cleanup(arguments: AwsCleanupArguments, dry_run: bool) -> anyhow::Result<()> {
    use dask_serverless_aws::{AwsSettings, Deployer, format_duration};

    let settings = AwsSettings {
        region: arguments.region,
        endpoint_url: arguments.endpoint_url,
        profile: arguments.profile,
    };
    let deployer = Deployer::connect(&settings).await?;
    let cluster = arguments.cluster.as_deref();
    let scope = match cluster {
        Some(cluster) => format!("cluster {cluster}"),
        None => "every cluster".to_string(),
    };
    let place = format!("{scope} in region {}", deployer.region());
    let older_than = arguments.older_than;
    let leftovers = deployer.leftovers(cluster, older_than).await?;
    for skipped in &leftovers.skipped {
        println!(
            "skipped {skipped}, less than --older-than {}; use --older-than 0 to delete it anyway",
            format_duration(older_than)
        );
    }
    if dry_run {
        if leftovers.to_delete.is_empty() {
            println!("nothing to delete ({place})");
        } else {
            println!("would delete ({place}):");
            for resource in &leftovers.to_delete {
                println!("  {resource}");
            }
        }
        return Ok(());
    }
    println!("cleaning up {place}");
    let report = deployer.delete_leftovers(leftovers).await?;
    print!("{report}");
    Ok(())
}

async fn run_local_platform(arguments: LocalPlatformArguments) -> anyhow::Result<()> {
    // Listen for signals before announcing the address: a script may interrupt right after.
    let mut stop_signals = StopSignals::listen()?;
    let mut environment = Vec::new();
    if let Some(spec) = arguments.chaos {
        let chaos = dask_serverless_chaos::Chaos::new(spec, arguments.seed);
        environment.push((
            dask_serverless_chaos::CHAOS_VARIABLE.to_owned(),
            chaos.setting(),
        ));
        if let Ok(log) = std::env::var(dask_serverless_chaos::CHAOS_LOG_VARIABLE) {
            environment.push((dask_serverless_chaos::CHAOS_LOG_VARIABLE.to_owned(), log));
        }
        eprintln!("chaos: {} (seed {})", chaos.spec(), chaos.seed());
    }
    let config = LocalPlatformConfig {
        bind: SocketAddr::new(arguments.bind, arguments.port),
        python: arguments.python,
        worker_output: arguments
            .worker_log
            .map_or(WorkerOutputCopy::StandardError, WorkerOutputCopy::File),
        environment,
    };
    let platform = LocalPlatform::start(config).await?;
    println!("listening on {}", platform.endpoint());
    stop_signals.wait().await;
    eprintln!("stopping: killing every worker");
    platform.shutdown().await;
    Ok(())
}

/// Ctrl-C (SIGINT) and SIGTERM, both meaning "stop cleanly".
struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl StopSignals {
    fn listen() -> anyhow::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("could not listen for Ctrl-C")?,
            terminate: signal(SignalKind::terminate()).context("could not listen for SIGTERM")?,
        })
    }

    async fn wait(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

#[cfg(all(test, feature = "aws"))]
mod tests {
    use super::*;

    fn cleanup_arguments(arguments: &[&str]) -> Result<CleanupArguments, clap::Error> {
        let command_line = ["dask-serverless", "cleanup"].iter().chain(arguments);
        match Arguments::try_parse_from(command_line)?.command {
            Command::Cleanup(cleanup) => Ok(cleanup),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn cleanup_spares_clusters_seen_in_the_last_quarter_hour_unless_told() {
        let default = cleanup_arguments(&[]).unwrap();
        assert_eq!(
            default.aws.older_than,
            dask_serverless_aws::DEFAULT_OLDER_THAN
        );
        let every = cleanup_arguments(&["--older-than", "0"]).unwrap();
        assert_eq!(every.aws.older_than, Duration::ZERO);
        let two_hours = cleanup_arguments(&["--older-than", "2h"]).unwrap();
        assert_eq!(two_hours.aws.older_than, Duration::from_secs(7_200));
        let error = cleanup_arguments(&["--older-than", "15"]).unwrap_err();
        assert!(
            error.to_string().contains(
                "invalid duration '15': write a number and a unit (s, m, h or d), such as 30m, \
                 2h or 1d, or 0 for no minimum"
            ),
            "{error}"
        );
        // A local cleanup has no age to respect: combining them is refused.
        assert!(cleanup_arguments(&["--local", "--older-than", "1h"]).is_err());
    }
}
