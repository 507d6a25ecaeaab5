//! `dask-serverless local-platform` as a user runs it: a real process, stopped by Ctrl-C
//! (SIGINT), or killed.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_dask-serverless");

/// The Python interpreter with `awslambdaric` (`$DASK_SERVERLESS_PYTHON`, else `python3`); a
/// test that needs one fails, saying what to install, when there is none.
fn python() -> String {
    let imports_runtime = |python: &str| {
        Command::new(python)
            .args(["-c", "import awslambdaric"])
            .output()
            .is_ok_and(|output| output.status.success())
    };
    let python = std::env::var("DASK_SERVERLESS_PYTHON").unwrap_or_else(|_| "python3".into());
    assert!(
        imports_runtime(&python),
        "this test runs Python workers and {python} cannot import awslambdaric: set \
         DASK_SERVERLESS_PYTHON to an interpreter that can (`make test` does), or \
         `{python} -m pip install awslambdaric`"
    );
    python
}

/// Starts the standalone platform on a free port; returns it and its endpoint.
fn start_platform() -> (Child, String) {
    start_platform_with(Command::new(BINARY).args(["local-platform", "--port", "0"]))
}

/// Starts the standalone platform with `command`; returns it and its endpoint.
fn start_platform_with(command: &mut Command) -> (Child, String) {
    let mut child = command
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
    let python = python();
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

#[test]
fn an_error_is_one_line_without_a_backtrace_and_without_colour() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let output = Command::new(BINARY)
        .args(["local-platform", "--port", &port])
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let error = String::from_utf8(output.stderr).unwrap();
    assert_eq!(
        error,
        format!(
            "error: could not listen on 127.0.0.1:{port}: Address already in use (os error 98)\n"
        )
    );
    // --verbose adds the details.
    let output = Command::new(BINARY)
        .args(["--verbose", "local-platform", "--port", &port])
        .output()
        .unwrap();
    let error = String::from_utf8(output.stderr).unwrap();
    assert!(error.lines().count() > 1, "{error}");
}

#[test]
fn log_lines_carry_no_colour_codes_when_redirected() {
    let (child, _endpoint) = start_platform();
    let mut child = child;
    // Standard error is inherited by start_platform; run a second one with it captured.
    interrupt_quietly(&mut child);
    let mut captured = Command::new(BINARY)
        .args(["local-platform", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(captured.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    interrupt_quietly(&mut captured);
    let mut error = String::new();
    std::io::Read::read_to_string(&mut captured.stderr.take().unwrap(), &mut error).unwrap();
    assert!(error.contains("listening on"), "{error}");
    assert!(!error.contains('\u{1b}'), "ANSI codes in {error:?}");
}

/// SIGINT, then wait for the exit.
fn interrupt_quietly(child: &mut Child) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
}

/// The process group of a live process, from `/proc/<pid>/stat`.
fn process_group_of(process_id: u64) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{process_id}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 1..];
    after_name
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn a_killed_local_platform_takes_every_process_along_and_cleanup_removes_its_directory() {
    let python = python();
    // Its own temporary directory, to find the platform's directory among others.
    let temporary = tempfile::tempdir().unwrap();
    let (mut child, endpoint) = start_platform_with(
        Command::new(BINARY)
            // The former name of the command, which older scripts use.
            .args(["emulator", "--port", "0"])
            .env("TMPDIR", temporary.path()),
    );
    let handlers =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../local-platform/tests/handlers");
    let handlers = handlers.canonicalize().unwrap().display().to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answer: Value = runtime.block_on(async {
        let client = reqwest::Client::new();
        let created = client
            .post(format!("{endpoint}/2015-03-31/functions"))
            .json(&json!({
                "FunctionName": "doomed",
                "Handler": "platform_test_handlers.handle",
                "MemorySize": 256,
                "Environment": {"Variables": {"PYTHONPATH": handlers}},
                "Command": [python, "-m", "awslambdaric", "platform_test_handlers.handle"],
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status().as_u16(), 201);
        client
            .post(format!(
                "{endpoint}/2015-03-31/functions/doomed/invocations"
            ))
            .body(r#"{"action":"spawn_child"}"#)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let worker = answer["pid"].as_u64().unwrap();
    let started_by_the_task = answer["child_pid"].as_u64().unwrap();
    let keeper = process_group_of(worker);
    assert_ne!(keeper, worker);
    let processes = [worker, started_by_the_task, keeper];
    for process_id in processes {
        assert!(!process_is_gone(process_id));
    }
    let platform_directories: Vec<PathBuf> = std::fs::read_dir(temporary.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("dask-serverless-local-platform-")
        })
        .collect();
    let [platform_directory] = &platform_directories[..] else {
        panic!("one platform directory expected: {platform_directories:?}");
    };
    assert!(platform_directory.join("owner.lock").exists());

    // Nothing to remove while the platform lives.
    let cleanup = |arguments: &[&str]| {
        let output = Command::new(BINARY)
            .arg("cleanup")
            .args(arguments)
            .env("TMPDIR", temporary.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let listed = cleanup(&["--local", "--dry-run"]);
    assert!(
        !listed.contains(&platform_directory.display().to_string()),
        "{listed}"
    );

    let platform_process = child.id();
    child.kill().unwrap(); // SIGKILL: the platform gets no chance to clean up.
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes
        .iter()
        .all(|&process_id| process_is_gone(process_id))
    {
        let alive: Vec<u64> = processes
            .into_iter()
            .filter(|&process_id| !process_is_gone(process_id))
            .collect();
        assert!(
            Instant::now() < deadline,
            "alive 5 s after the platform was killed: {alive:?} of worker {worker}, \
             its task's process {started_by_the_task}, keeper {keeper}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        platform_directory.exists(),
        "a killed platform removes nothing"
    );

    let expected = format!(
        "{} (local platform directory; its owner, process {platform_process}, is gone)",
        platform_directory.display()
    );
    let listed = cleanup(&["--local", "--dry-run"]);
    assert!(
        listed
            .lines()
            .any(|line| line == format!("would remove {expected}")),
        "{listed}"
    );
    assert!(platform_directory.exists(), "a dry run removes nothing");
    let removed = cleanup(&["--local"]);
    assert!(
        removed
            .lines()
            .any(|line| line == format!("removed {expected}")),
        "{removed}"
    );
    assert!(!platform_directory.exists());
}

#[test]
fn chaos_reaches_the_functions_of_a_standalone_local_platform_and_bad_specs_are_refused() {
    let output = Command::new(BINARY)
        .args(["local-platform", "--port", "0", "--chaos", "kill=2"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains("the rate of 'kill' must be between 0 and 1, not 2"),
        "{error}"
    );

    let python = python();
    let (child, endpoint) = start_platform_with(Command::new(BINARY).args([
        "emulator",
        "--port",
        "0",
        "--chaos",
        "kill=0.05,duplicate=0.05",
        "--seed",
        "7",
    ]));
    let handlers =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../local-platform/tests/handlers");
    let handlers = handlers.canonicalize().unwrap().display().to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let variables = runtime.block_on(async {
        let client = reqwest::Client::new();
        let created = client
            .post(format!("{endpoint}/2015-03-31/functions"))
            .json(&json!({
                "FunctionName": "chaotic",
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
                "{endpoint}/2015-03-31/functions/chaotic/invocations"
            ))
            .body(r#"{"action":"environment","names":["DASK_SERVERLESS_CHAOS"]}"#)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["variables"].clone()
    });
    interrupt(child);
    assert_eq!(
        variables["DASK_SERVERLESS_CHAOS"],
        "kill=0.05,duplicate=0.05;seed=7"
    );
}
