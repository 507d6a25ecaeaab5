//! The `dask-serverless` binary: see the library's documentation.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(dask_serverless_cli::run(std::env::args_os().collect()))
}
