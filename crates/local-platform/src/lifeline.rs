//! The lifeline: every worker's process group dies with the local platform's process, by any
//! death of that process, SIGKILL included.
//!
//! A worker dies with the platform by its own death signal (`PR_SET_PDEATHSIG`), but what a
//! task started (a `subprocess.run(["sleep", "300"])`) does not: it is re-parented and lives on.
//! So each worker's process group has a *keeper*, and all keepers hang on one pipe, the
//! lifeline:
//!
//! - the platform's process creates the pipe once and holds both ends for as long as it lives,
//!   both close-on-exec. It never writes into it. Only this process holds the write end: no
//!   program it executes inherits it (close-on-exec), and a child it forks without executing
//!   anything (Python's `os.fork()`, `multiprocessing`) closes it at once, in a
//!   `pthread_atfork` child handler, so a forked child never keeps the lifeline up;
//! - a keeper is `/bin/sh -c 'read _; kill -KILL 0'` with the read end as its standard input,
//!   started in a new process group which it leads. The worker then joins that group (see
//!   `worker`), and everything the worker starts is in it too. `read` blocks until end of
//!   file, which comes only when no process holds the write end any more: when the platform's
//!   process is gone, however it died, the kernel closes its descriptors, the keeper reads end of
//!   file and kills its whole group — the worker, what its tasks started, and itself;
//! - the keeper is an executed program using under two megabytes, not a fork of the platform's
//!   process (which would pin the client's memory); the memory limit enforcer leaves it out of
//!   the group's resident memory (it is the group's leader, see `limits`).
//!
//! The lifeline belongs to the process that created it: in a forked child (whose copy of the
//! write end is closed) [`Lifeline::of_this_process`] refuses to serve, as a keeper started
//! there would kill its group at once.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};

use tokio::process::Command;

/// What a keeper runs: wait for the end of the lifeline, then kill its own process group.
pub(crate) const KEEPER_SCRIPT: &str = "read _; kill -KILL 0";

/// A pipe whose read end keepers wait on and whose write end only its creator holds.
#[derive(Debug)]
pub(crate) struct Lifeline {
    read_end: OwnedFd,
    write_end: OwnedFd,
    /// The process that created it.
    owner: u32,
}

/// The write end of the process's lifeline, closed in forked children; -1 before it exists.
static WRITE_END: AtomicI32 = AtomicI32::new(-1);

/// Runs in the child of every `fork()` of this process, before `fork()` returns there.
extern "C" fn close_write_end_in_child() {
    let write_end = WRITE_END.load(Ordering::SeqCst);
    if write_end >= 0 {
        // SAFETY: close(2) is async-signal-safe and the descriptor is the child's own copy.
        unsafe {
            libc::close(write_end);
        }
    }
}

impl Lifeline {
    /// A new pipe, both ends close-on-exec.
    pub(crate) fn new() -> std::io::Result<Self> {
        let mut ends = [0 as libc::c_int; 2];
        // SAFETY: pipe2 writes two descriptors into the array it is given.
        if unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned by nothing else.
        let (read_end, write_end) =
            unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) };
        Ok(Self {
            read_end,
            write_end,
            owner: std::process::id(),
        })
    }

    /// The lifeline of this process, created on first use and kept until the process ends.
    pub(crate) fn of_this_process() -> Result<&'static Lifeline, String> {
        static LIFELINE: OnceLock<Result<Lifeline, String>> = OnceLock::new();
        let lifeline = LIFELINE
            .get_or_init(|| {
                let lifeline = Lifeline::new()
                    .map_err(|error| format!("could not create the lifeline pipe: {error}"))?;
                WRITE_END.store(lifeline.write_end.as_raw_fd(), Ordering::SeqCst);
                // SAFETY: the handler only makes an async-signal-safe call (close).
                let registered =
                    unsafe { libc::pthread_atfork(None, None, Some(close_write_end_in_child)) };
                if registered != 0 {
                    return Err(format!(
                        "could not register the lifeline's fork handler: {}",
                        std::io::Error::from_raw_os_error(registered)
                    ));
                }
                Ok(lifeline)
            })
            .as_ref()
            .map_err(Clone::clone)?;
        if lifeline.owner != std::process::id() {
            return Err(format!(
                "process {} is a fork of process {}, whose local platform it cannot use",
                std::process::id(),
                lifeline.owner
            ));
        }
        Ok(lifeline)
    }

    /// A keeper: a shell that leads a new process group and kills it when the lifeline ends.
    pub(crate) fn keeper_command(&self) -> std::io::Result<Command> {
        let mut command = Command::new("/bin/sh");
        command
            .args(["-c", KEEPER_SCRIPT])
            .env_clear()
            .current_dir("/")
            .stdin(Stdio::from(self.read_end.try_clone()?))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        Ok(command)
    }

    /// Closes the write end: every keeper of this lifeline kills its group. Tests only: the
    /// lifeline of the process is never cut, it ends with the process.
    #[cfg(test)]
    pub(crate) fn cut(self) -> OwnedFd {
        drop(self.write_end);
        self.read_end
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn is_gone(process_id: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{process_id}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rfind(')')
                .and_then(|end| stat[end + 1..].split_whitespace().next())
                .is_some_and(|state| state == "Z" || state == "X"),
        }
    }

    async fn eventually_gone(process_id: u32, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !is_gone(process_id) {
            assert!(Instant::now() < deadline, "{what} ({process_id}) is alive");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_keeper_kills_its_group_when_the_lifeline_ends_and_not_before() {
        let lifeline = Lifeline::new().unwrap();
        let starting = crate::test_support::starting_programs();
        let mut keeper = lifeline.keeper_command().unwrap().spawn().unwrap();
        let group = keeper.id().unwrap();
        // A member of the keeper's group that starts a process of its own.
        let mut member = Command::new("/bin/sh")
            .args(["-c", "sleep 300 & echo $!; wait"])
            .stdout(Stdio::piped())
            .process_group(group as i32)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        drop(starting);
        let member_id = member.id().unwrap();
        let mut output = member.stdout.take().unwrap();
        let mut line = Vec::new();
        while !line.ends_with(b"\n") {
            let mut byte = [0u8; 1];
            tokio::io::AsyncReadExt::read_exact(&mut output, &mut byte)
                .await
                .unwrap();
            line.push(byte[0]);
        }
        let sleeper: u32 = String::from_utf8(line).unwrap().trim().parse().unwrap();

        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(keeper.try_wait().unwrap().is_none(), "the keeper waits");
        assert!(!is_gone(sleeper));

        let _read_end = lifeline.cut();
        let status = tokio::time::timeout(Duration::from_secs(5), keeper.wait())
            .await
            .expect("the keeper ends with the lifeline")
            .unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
        let _ = member.wait().await;
        eventually_gone(member_id, "the member").await;
        eventually_gone(sleeper, "what the member started").await;
    }

    #[test]
    fn the_lifeline_of_this_process_is_one_and_closed_on_exec() {
        let first = Lifeline::of_this_process().unwrap();
        let second = Lifeline::of_this_process().unwrap();
        assert!(std::ptr::eq(first, second));
        for descriptor in [first.read_end.as_raw_fd(), first.write_end.as_raw_fd()] {
            // SAFETY: F_GETFD reads the flags of a descriptor this process owns.
            let flags = unsafe { libc::fcntl(descriptor, libc::F_GETFD) };
            assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
        }
        assert_eq!(
            WRITE_END.load(Ordering::SeqCst),
            first.write_end.as_raw_fd()
        );
    }

    #[test]
    fn a_forked_child_does_not_hold_the_write_end() {
        let lifeline = Lifeline::of_this_process().unwrap();
        let write_end = lifeline.write_end.as_raw_fd();
        let read_end = lifeline.read_end.as_raw_fd();
        // The child never execs: it holds every descriptor until it exits.
        let _starting = crate::test_support::starting_programs();
        // SAFETY: the child only makes async-signal-safe calls (fcntl, _exit).
        let child = unsafe { libc::fork() };
        assert!(child >= 0, "fork failed");
        if child == 0 {
            // SAFETY: as above.
            unsafe {
                let write_closed = libc::fcntl(write_end, libc::F_GETFD) == -1;
                let read_open = libc::fcntl(read_end, libc::F_GETFD) != -1;
                libc::_exit(if write_closed && read_open { 0 } else { 1 });
            }
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
        assert!(libc::WIFEXITED(status));
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "the child still held the write end"
        );
        // The parent's own write end is untouched.
        // SAFETY: F_GETFD reads the flags of a descriptor this process owns.
        assert_ne!(unsafe { libc::fcntl(write_end, libc::F_GETFD) }, -1);
    }
}
