//! `dask-serverless platform` as a user runs it: a real process, stopped by Ctrl-C (SIGINT).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_dask-serverless");

/// The Python interpreter with `awslambdaric` (`$DASK_SERVERLESS_PYTHON`, else `python3`).
fn python() -> Option<String> {
    let imports_runtime = |python: &str| {
        Command::new(python)
            .args(["-c", "import awslambdaric"])
            .output()
            .is_ok_and(|output| output.status.success())
    };
    match std::env::var("DASK_SERVERLESS_PYTHON") {
        Ok(python) => {
            assert!(
                imports_runtime(&python),
                "DASK_SERVERLESS_PYTHON={python} cannot import awslambdaric"
            );
            Some(python)
        }
        Err(_) if imports_runtime("python3") => Some("python3".to_string()),
        Err(_) => {
            // Written past the test harness's capture, so that a skip is always visible.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                b"SKIPPED: no Python interpreter with awslambdaric found; set DASK_SERVERLESS_PYTHON\n",
            );
            None
        }
    }
}

/// Starts the standalone platform on a free port; returns it and its endpoint.
fn start_platform() -> (Child, String) {
    let mut child = Command::new(BINARY)
        .args(["local-platform", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the binary starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let endpoint = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
    (child, endpoint)
}

/// Sends SIGINT, as Ctrl-C does, and waits (bounded) for a clean exit.
fn interrupt(mut child: Child) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the local platform did not stop on SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn process_is_gone(process_id: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{process_id}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rfind(')')
            .and_then(|end| stat[end + 1..].split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

#[test]
fn help_lists_the_local_platform_command() {
    let output = Command::new(BINARY).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(
        help.contains("local-platform  Run the local Lambda-compatible platform until interrupted"),
        "{help}"
    );
    let output = Command::new(BINARY)
        .args(["local-platform", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for option in [
        "--port <PORT>",
        "--bind <BIND>",
        "--python <PYTHON>",
        "--worker-log <WORKER_LOG>",
    ] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
}

#[test]
fn interrupt_stops_a_standalone_local_platform() {
    let (child, endpoint) = start_platform();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let statistics: Value = runtime.block_on(async {
        reqwest::get(format!("{endpoint}/platform/statistics"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(statistics["invocations"], 0);
    interrupt(child);
}

#[test]
fn standalone_local_platform_runs_functions_and_kills_its_workers_on_interrupt() {
    let Some(python) = python() else { return };
    let (child, endpoint) = start_platform();
    let handlers =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../local-platform/tests/handlers");
    let handlers = handlers.canonicalize().unwrap().display().to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let worker = runtime.block_on(async {
        let client = reqwest::Client::new();
        let created = client
            .post(format!("{endpoint}/2015-03-31/functions"))
            .json(&json!({
                "FunctionName": "standalone",
                "Handler": "platform_test_handlers.handle",
                "MemorySize": 256,
                "Environment": {"Variables": {"PYTHONPATH": handlers}},
                "Command": [python, "-m", "awslambdaric", "platform_test_handlers.handle"],
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status().as_u16(), 201);
        let answer: Value = client
            .post(format!(
                "{endpoint}/2015-03-31/functions/standalone/invocations"
            ))
            .body(r#"{"action":"echo","from":"the command line"}"#)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["event"]["from"], "the command line");
        answer["pid"].as_u64().unwrap()
    });
    assert!(!process_is_gone(worker));
    interrupt(child);
    assert!(
        process_is_gone(worker),
        "worker {worker} outlived the local platform"
    );
}
