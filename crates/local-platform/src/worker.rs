//! Worker processes: launching, output forwarding and supervision.
//!
//! Launching a worker (already reserved in its function's state, phase `Starting`):
//! 1. bind its own Runtime API listener on 127.0.0.1 with an ephemeral port and serve it, so the
//!    platform knows which process asks for and answers which invocation;
//! 2. start the function's command with a clean environment: a few host variables (`PATH`,
//!    `HOME`, `LANG`, `LC_ALL`, `LC_CTYPE`, `TZ`, `TMPDIR`, `USER`, `LD_LIBRARY_PATH`), Lambda's
//!    (`AWS_LAMBDA_RUNTIME_API`, `LAMBDA_TASK_ROOT`, `_HANDLER`, `AWS_LAMBDA_FUNCTION_NAME`,
//!    `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, `AWS_LAMBDA_FUNCTION_VERSION`, `AWS_REGION`,
//!    `AWS_DEFAULT_REGION`), `DASK_SERVERLESS_PROGRESS_PATH`, then the function's own variables;
//! 3. in a process group of its own, so that a kill reaches whatever it started, and tied to
//!    the local platform's process twice over, so that the whole group dies with it even if the
//!    platform never gets to kill anything (a client killed with SIGKILL):
//!    - the group is created and led by the worker's *keeper*, started just before the worker:
//!      `/bin/sh -c 'read _; kill -KILL 0'` reading the platform's lifeline pipe, which ends
//!      only when the platform's process is gone; the keeper then kills the group — the worker
//!      and every process its tasks started (see `lifeline`). The worker joins the keeper's
//!      group as it starts, so no process of the worker ever runs without a keeper, and the
//!      group's id is the keeper's process id (`Worker::process_group`);
//!    - the worker itself has `PR_SET_PDEATHSIG = SIGKILL`, so it dies with the platform even
//!      if its keeper was killed.
//!
//!    Every worker and keeper is started by one dedicated *spawner thread* that lives as long
//!    as the process: the death signal is tied to the thread that forked (so it must outlive
//!    the worker), and forks never run concurrently. Concurrent forks in a process that loaded
//!    a multithreaded library with fork handlers (the OpenBLAS that SciPy bundles joins its
//!    threads in its `pthread_atfork` handler) race in those handlers: one fork then blocks for
//!    seconds and the runtime's own thread joins fail. The keeper is an executed program, never
//!    a fork of the platform's process kept alive (that would pin the client's memory and count
//!    in the group's resident memory); it needs no code between fork and exec, so the standard
//!    library starts it with `posix_spawn`, without running fork handlers. It is the platform's
//!    child, not the worker's: the worker's own `wait()` never sees it;
//! 4. forward its standard output and error, line by line: to the invocation it holds (kept per
//!    invocation, see the `output` module), to the worker's last lines (for initialization
//!    failures) and, prefixed by function name and worker id, to where the platform copies
//!    worker output (its standard error, a file, or nowhere).
//!
//! A supervisor task then waits for the process to exit, kills what is left of its group (the
//! keeper with it, which it reaps), removes the worker from its function, fails the invocation
//! it held (an initialization failure if it never asked for work, a crash otherwise, unless the
//! limit enforcer already failed it) and lets queued events take the freed place. Every other
//! kill (timeout, memory, initialization timeout, stopped invocations, deletion, shutdown)
//! signals the group as well, keeper included.
//!
//! What survives which death:
//!
//! | the platform's process...        | worker         | what tasks started | keeper         |
//! |----------------------------------|----------------|--------------------|----------------|
//! | shuts down, deletes the function | killed (group) | killed (group)     | killed, reaped |
//! | exits without shutting down      | death signal   | killed by keeper   | kills itself   |
//! | is killed (SIGKILL, OOM killer)  | death signal   | killed by keeper   | kills itself   |
//!
//! A process a task started that leaves the group on purpose (`setsid`, `start_new_session`)
//! is out of reach, as it is of a kill of the group.

use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::function::{
    Failure, FailureKind, Function, Invocation, Outcome, WorkerId, WorkerPhase, complete,
    while_running,
};
use crate::lifeline::Lifeline;
use crate::output::CurrentOutput;
use crate::platform::Shared;

/// Host variables a worker inherits; everything else comes from Lambda's set and the function.
const INHERITED_VARIABLES: [&str; 9] = [
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "USER",
    "LD_LIBRARY_PATH",
];

/// Lines of output kept per worker for initialization failures.
const TAIL_LINES: usize = 30;
/// Longest line kept in the tail.
const TAIL_LINE_LENGTH: usize = 1_000;

/// Sends SIGKILL to a worker's whole process group (its keeper's process id).
pub(crate) fn kill_process_group(process_group: u32) {
    let Ok(group) = libc::pid_t::try_from(process_group) else {
        return;
    };
    if group > 1 {
        // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
    }
}

/// The last lines a worker wrote.
#[derive(Debug, Default)]
pub(crate) struct OutputTail {
    lines: Mutex<VecDeque<String>>,
}

impl OutputTail {
    fn lines(&self) -> MutexGuard<'_, VecDeque<String>> {
        self.lines
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn push(&self, line: &str) {
        let mut lines = self.lines();
        if lines.len() == TAIL_LINES {
            lines.pop_front();
        }
        let mut end = line.len().min(TAIL_LINE_LENGTH);
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        lines.push_back(line[..end].to_string());
    }

    pub(crate) fn text(&self) -> String {
        self.lines().iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// Launches a reserved worker and supervises it until it exits.
pub(crate) async fn start_worker(
    shared: Arc<Shared>,
    function: Arc<Function>,
    worker_id: WorkerId,
) {
    let launched = launch(&shared, &function, worker_id).await;
    let launched = match launched {
        Ok(launched) => launched,
        Err(message) => {
            let failed = {
                let mut state = function.lock();
                let failed = state
                    .workers
                    .remove(&worker_id)
                    .and_then(|mut worker| worker.assignment.take());
                let launches = function.dispatch_queued(&mut state);
                drop(state);
                function.launch(&shared, launches);
                failed
            };
            tracing::warn!(function = %function.config.name, "{message}");
            if let Some(assignment) = failed {
                let failure =
                    Failure::new(FailureKind::Initialization, "Runtime.InitError", message);
                complete(
                    &shared,
                    &function,
                    assignment.invocation,
                    Outcome::Failure(failure),
                );
            }
            return;
        }
    };
    {
        let mut state = function.lock();
        let keep = !state.deleted
            && state
                .workers
                .get(&worker_id)
                .is_some_and(|worker| worker.phase != WorkerPhase::Stopping);
        if let Some(worker) = state.workers.get_mut(&worker_id) {
            worker.process_id = Some(launched.process_id);
            worker.process_group = Some(launched.process_group);
        }
        if !keep {
            // Deleted or stopped while launching: it never gets to run anything.
            kill_process_group(launched.process_group);
        }
    }
    supervise(shared, function, worker_id, launched).await;
}

/// A started worker: its process and its keeper, the ids of both, and its forwarders and
/// Runtime API server.
struct Launched {
    child: Child,
    process_id: u32,
    keeper: Child,
    process_group: u32,
    forwarders: Vec<JoinHandle<()>>,
    server: JoinHandle<()>,
}

async fn launch(
    shared: &Arc<Shared>,
    function: &Arc<Function>,
    worker_id: WorkerId,
) -> Result<Launched, String> {
    let config = &function.config;
    let (wake, progress_path, output_tail, current_output) = {
        let state = function.lock();
        let worker = state
            .workers
            .get(&worker_id)
            .ok_or_else(|| format!("{worker_id} of function '{}' vanished", config.name))?;
        (
            Arc::clone(&worker.wake),
            worker.progress_path.clone(),
            Arc::clone(&worker.output_tail),
            Arc::clone(&worker.current_output),
        )
    };
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|error| format!("could not open a Runtime API listener: {error}"))?;
    let runtime_address = listener
        .local_addr()
        .map_err(|error| format!("could not read the Runtime API address: {error}"))?;
    let router = crate::runtime_api::router(crate::runtime_api::WorkerContext {
        shared: Arc::clone(shared),
        function: Arc::clone(function),
        worker_id,
        wake,
    });
    let server = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::warn!("Runtime API server failed: {error}");
        }
    });
    let task_root = match &config.working_directory {
        Some(directory) => directory.clone(),
        None => std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
    };
    crate::function::clear_progress(&progress_path);

    // The keeper first: it leads the process group the worker joins, so that no process of the
    // worker ever runs without one.
    let keeper_command = Lifeline::of_this_process()
        .and_then(|lifeline| {
            lifeline
                .keeper_command()
                .map_err(|error| format!("could not prepare a keeper: {error}"))
        })
        .map_err(|message| {
            server.abort();
            format!(
                "could not start a worker of function '{}': {message}",
                config.name
            )
        })?;
    let keeper = match spawn(keeper_command).await {
        Ok(keeper) => keeper,
        Err(error) => {
            server.abort();
            return Err(format!(
                "could not start a worker of function '{}': could not start its keeper \
                 (/bin/sh): {error}",
                config.name
            ));
        }
    };
    let Some(process_group) = keeper.id() else {
        server.abort();
        return Err(format!(
            "could not start a worker of function '{}': its keeper exited at once",
            config.name
        ));
    };

    let mut command = Command::new(&config.command[0]);
    command
        .args(&config.command[1..])
        .env_clear()
        .current_dir(&task_root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(process_group as libc::pid_t)
        .kill_on_drop(true);
    for name in INHERITED_VARIABLES {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command
        .env("AWS_LAMBDA_RUNTIME_API", runtime_address.to_string())
        .env("LAMBDA_TASK_ROOT", &task_root)
        .env("_HANDLER", config.handler())
        .env("AWS_LAMBDA_FUNCTION_NAME", &config.name)
        .env(
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            config.memory_mb.to_string(),
        )
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_REGION", "local")
        .env("AWS_DEFAULT_REGION", "local")
        .env("DASK_SERVERLESS_PROGRESS_PATH", &progress_path)
        .envs(config.environment.iter().map(|(key, value)| (key, value)));
    let parent = std::process::id() as libc::pid_t;
    let arm_death_signal = move || {
        // SAFETY: plain system calls without pointers, async-signal-safe as required between
        // fork and exec.
        unsafe {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // The local platform died before the death signal was armed.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
        }
        Ok(())
    };
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (prctl, getppid, _exit); it allocates nothing.
    unsafe {
        command.pre_exec(arm_death_signal);
    }
    let mut child = match spawn(command).await {
        Ok(child) => child,
        Err(error) => {
            server.abort();
            kill_process_group(process_group);
            return Err(format!(
                "could not start a worker of function '{}' with command {:?}: {error}",
                config.name, config.command
            ));
        }
    };
    let Some(process_id) = child.id() else {
        server.abort();
        kill_process_group(process_group);
        return Err("the worker exited before it could be supervised".to_string());
    };
    let prefix = format!("[{} {worker_id}]", config.name);
    let mut forwarders = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        forwarders.push(forward(
            stdout,
            prefix.clone(),
            Arc::clone(shared),
            Arc::clone(&output_tail),
            Arc::clone(&current_output),
        ));
    }
    if let Some(stderr) = child.stderr.take() {
        forwarders.push(forward(
            stderr,
            prefix,
            Arc::clone(shared),
            output_tail,
            current_output,
        ));
    }
    Ok(Launched {
        child,
        process_id,
        keeper,
        process_group,
        forwarders,
        server,
    })
}

/// A command to fork, and where to send the child.
struct SpawnRequest {
    command: Command,
    runtime: tokio::runtime::Handle,
    reply: tokio::sync::oneshot::Sender<std::io::Result<Child>>,
}

/// Forks `command` on the spawner thread (see the module documentation).
async fn spawn(command: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<std::sync::mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (sender, receiver) = std::sync::mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("dask-serverless-spawner".to_owned())
            .spawn(move || {
                for mut request in receiver {
                    // The child is registered with the runtime that supervises it.
                    let _context = request.runtime.enter();
                    let _ = request.reply.send(request.command.spawn());
                }
            })
            .expect("the spawner thread starts");
        Mutex::new(sender)
    });
    let (reply, answer) = tokio::sync::oneshot::channel();
    let request = SpawnRequest {
        command,
        runtime: tokio::runtime::Handle::current(),
        reply,
    };
    sender
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .send(request)
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
    answer
        .await
        .map_err(|_| std::io::Error::other("the spawner thread dropped the request"))?
}

fn forward(
    stream: impl AsyncRead + Unpin + Send + 'static,
    prefix: String,
    shared: Arc<Shared>,
    tail: Arc<OutputTail>,
    current: Arc<CurrentOutput>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    // Lambda runtimes write multi-line records with `\r` between their lines.
                    for text in text.trim_end_matches(['\n', '\r']).split('\r') {
                        shared.worker_output.write_line(&prefix, text);
                        tail.push(text);
                        current.push(text);
                    }
                }
            }
        }
    })
}

async fn supervise(
    shared: Arc<Shared>,
    function: Arc<Function>,
    worker_id: WorkerId,
    launched: Launched,
) {
    let Launched {
        mut child,
        mut keeper,
        process_group,
        forwarders,
        server,
        ..
    } = launched;
    let status = child.wait().await;
    // Whatever the worker started dies with it, and so does its keeper, which is reaped here.
    kill_process_group(process_group);
    let _ = tokio::time::timeout(Duration::from_secs(2), keeper.wait()).await;
    // Let the forwarders write what the process printed last (bounded: a grandchild that escaped
    // the group could hold the pipes open).
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        for forwarder in forwarders {
            let _ = forwarder.await;
        }
    })
    .await;
    server.abort();
    let exit = match &status {
        Ok(status) => describe_exit(*status),
        Err(error) => format!("unknown exit ({error})"),
    };
    let (failed, launches) = {
        let mut state = function.lock();
        let Some(mut worker) = state.workers.remove(&worker_id) else {
            return;
        };
        worker.wake.notify_waiters();
        let failed = worker.assignment.take().map(|assignment| {
            let failure = if worker.phase == WorkerPhase::Starting {
                initialization_failure(&function, &worker, &exit)
            } else {
                Failure::new(
                    FailureKind::Crash,
                    "Runtime.ExitError",
                    format!(
                        "Runtime exited with error: {exit}{}",
                        while_running(worker.progress())
                    ),
                )
            };
            (assignment.invocation, failure)
        });
        let _ = std::fs::remove_file(&worker.progress_path);
        if failed.is_none() && worker.phase != WorkerPhase::Stopping {
            tracing::warn!(
                function = %function.config.name,
                "{worker_id} exited while idle: {exit}"
            );
        }
        (failed, function.dispatch_queued(&mut state))
    };
    function.launch(&shared, launches);
    if let Some((invocation, failure)) = failed {
        complete(&shared, &function, invocation, Outcome::Failure(failure));
    }
}

/// `Runtime.InitError` for a worker that exited before asking for its first invocation.
fn initialization_failure(
    function: &Function,
    worker: &crate::function::Worker,
    exit: &str,
) -> Failure {
    let mut message = format!(
        "function '{}' failed to initialize: its worker exited ({exit}) before asking for an invocation",
        function.config.name
    );
    if let Some(error) = &worker.initialization_error {
        message.push_str(&format!("; init error: {error}"));
    }
    let tail = worker.output_tail.text();
    if !tail.is_empty() {
        message.push_str(&format!("; last output:\n{tail}"));
    }
    Failure::new(FailureKind::Initialization, "Runtime.InitError", message)
}

/// `exit status 3` or `signal: killed`, as Lambda words it.
fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit status {code}");
    }
    match status.signal() {
        Some(libc::SIGKILL) => "signal: killed".to_string(),
        Some(libc::SIGSEGV) => "signal: segmentation fault".to_string(),
        Some(libc::SIGABRT) => "signal: aborted".to_string(),
        Some(libc::SIGTERM) => "signal: terminated".to_string(),
        Some(libc::SIGBUS) => "signal: bus error".to_string(),
        Some(signal) => format!("signal: {signal}"),
        None => status.to_string(),
    }
}

/// Abandons invocations ended by a deletion or shutdown.
pub(crate) fn abandon(
    shared: &Shared,
    function: &Function,
    invocations: Vec<Invocation>,
    reason: &str,
) {
    for invocation in invocations {
        complete(
            shared,
            function,
            invocation,
            Outcome::Abandoned(reason.to_string()),
        );
    }
}
