//! `dask-serverless`: the project's command-line tool.
//!
//! Subcommands:
//! - `emulator`: runs the local Lambda-compatible platform standalone (Invoke API, Runtime API for
//!   its workers, queue service) until Ctrl-C or SIGTERM, then shuts it down, killing every worker.
//!   The first line on standard output is `listening on http://<address>`, so that a script that
//!   asked for port 0 learns the port.
//!
//! Worker output goes to standard error, or to `--worker-log FILE`. Diagnostics follow
//! `RUST_LOG` (default `info`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use dask_serverless_emulator::{Emulator, EmulatorConfig};
use tokio::signal::unix::{Signal, SignalKind, signal};

#[derive(Debug, Parser)]
#[command(
    name = "dask-serverless",
    version,
    about = "Dask computations on serverless functions"
)]
struct Arguments {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the local Lambda-compatible platform until interrupted.
    Emulator(EmulatorArguments),
}

#[derive(Debug, clap::Args)]
struct EmulatorArguments {
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
}

fn main() -> anyhow::Result<()> {
    let arguments = Arguments::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    match arguments.command {
        Command::Emulator(emulator) => runtime.block_on(run_emulator(emulator)),
    }
}

async fn run_emulator(arguments: EmulatorArguments) -> anyhow::Result<()> {
    // Listen for signals before announcing the address: a script may interrupt right after.
    let mut stop_signals = StopSignals::listen()?;
    let config = EmulatorConfig {
        bind: SocketAddr::new(arguments.bind, arguments.port),
        python: arguments.python,
        worker_log: arguments.worker_log,
    };
    let emulator = Emulator::start(config).await?;
    println!("listening on {}", emulator.endpoint());
    stop_signals.wait().await;
    eprintln!("stopping: killing every worker");
    emulator.shutdown().await;
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
