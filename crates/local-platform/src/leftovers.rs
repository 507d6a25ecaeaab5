//! What clients of the local platform leave on this machine when they die, and its removal.
//!
//! A client of the local platform (a Python `LocalCluster`, a `dask-serverless local-platform`
//! command) keeps files in directories of its own:
//!
//! | directory | what it is |
//! |---|---|
//! | `/dev/shm/dask-serverless-<12 hex digits>` | a `LocalCluster`'s shared-memory store (in the temporary directory where `/dev/shm` is not writable) |
//! | `<temporary directory>/dask-serverless-local-platform-<suffix>` | the local platform's directory (progress files of its workers) |
//! | `<temporary directory>/dask-serverless-emulator-<suffix>` | the same, named by builds before the local platform had this name |
//!
//! A client that shuts down removes its own. One that dies first (SIGKILL, the out-of-memory
//! killer, a crash) leaves them behind; the next `LocalCluster` start and
//! `dask-serverless cleanup --local` remove them with [`remove`] — never those of a live client.
//!
//! # Owner marks
//!
//! Each such directory holds an [`OwnerMark`]: the file `owner.lock`, which its owner keeps
//! open, with an exclusive `flock`, for as long as it uses the directory. The kernel releases
//! the lock when the owner's descriptor is closed, which happens when the owner dies, however
//! it dies. So *the owner is alive* exactly when another `flock(LOCK_EX | LOCK_NB)` on that file
//! fails, and that check is an atomic question to the kernel:
//!
//! - no process ids are compared, so a reused process id is never mistaken for a live owner,
//!   and neither a `/proc` that hides other users' processes (`hidepid`) nor a process in
//!   another pid namespace (containers sharing `/dev/shm`) is mistaken for a dead one, which a
//!   mark of process id and start time would get wrong;
//! - the lock is on the file itself, so it protects the owner whoever looks: this process,
//!   another process, or another user (who may open the file for reading to lock it).
//!
//! The file is close-on-exec, so no program the owner starts holds the lock. A child the owner
//! forks without executing a program shares the lock, so the directory stays until that child
//! exits too (a kept leftover, never a removed live directory). The mark appears already
//! locked: it is written under a temporary name, locked, then renamed to `owner.lock`. Its
//! content, the owner's process id, only serves messages.
//!
//! # What counts as a leftover
//!
//! A directory with one of the names above, of the current user (of any user when running as
//! root), not a symbolic link, and:
//! - marked, with a lock that can be taken: its owner is gone;
//! - or unmarked (made by a build before owner marks, or by a client that died in the instant
//!   between creating the directory and marking it), and untouched — the directory and
//!   everything in it — for [`UNMARKED_AGE`], one hour. Nothing tells whether such a directory
//!   is in use; every compute writes into both directories, so an hour untouched means a dead
//!   client or a live one of an older build idle for an hour, whose next compute would then
//!   fail with a clear store error. Directories of this build are marked and never at that risk.
//!
//! A shared-memory store caught in its own destruction (`<root>@destroyed-<id>`, renamed before
//! removal) is judged the same way: its mark moved with it.
//!
//! # Removal
//!
//! A marked leftover is removed while holding its dead owner's lock, so two cleanups never
//! remove the same directory at once (the second finds the lock taken and leaves it). A
//! directory that vanished meanwhile was removed by someone else and is not reported.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, ErrorKind, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The name of the owner mark in a marked directory.
pub const OWNER_FILE: &str = "owner.lock";
/// How long an unmarked directory must be untouched to count as a leftover.
pub const UNMARKED_AGE: Duration = Duration::from_secs(60 * 60);

const PREFIX: &str = "dask-serverless-";
const PLATFORM_PREFIX: &str = "dask-serverless-local-platform-";
const LEGACY_PLATFORM_PREFIX: &str = "dask-serverless-emulator-";
/// Hex digits in the name of a shared-memory store.
const STORE_ID_LENGTH: usize = 12;
/// What the shared-memory store appends to a root it is destroying.
const DESTROYED_SUFFIX: &str = "@destroyed-";

/// The lock its owner holds on a directory while it uses it; released when dropped or when
/// the owner dies. See the module documentation.
#[derive(Debug)]
pub struct OwnerMark {
    _file: File,
}

impl OwnerMark {
    /// Marks `directory` as owned by this process until the mark is dropped.
    pub fn claim(directory: &Path) -> io::Result<Self> {
        let temporary = directory.join(format!(
            ".{OWNER_FILE}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let mut file = File::options()
            .write(true)
            .create_new(true)
            .open(&temporary)?;
        let claimed = lock(&file, false).and_then(|()| {
            writeln!(file, "{}", std::process::id())?;
            fs::rename(&temporary, directory.join(OWNER_FILE))
        });
        if let Err(error) = claimed {
            let _ = fs::remove_file(&temporary);
            return Err(error);
        }
        Ok(Self { _file: file })
    }
}

/// `flock` on `file`, exclusive; `Err(WouldBlock)` when `only_if_free` and someone holds it.
fn lock(file: &File, only_if_free: bool) -> io::Result<()> {
    let operation = if only_if_free {
        libc::LOCK_EX | libc::LOCK_NB
    } else {
        libc::LOCK_EX
    };
    loop {
        // SAFETY: flock(2) on a descriptor the file owns; no memory is involved.
        if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.kind() != ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// What a leftover directory was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeftoverKind {
    /// A `LocalCluster`'s shared-memory store.
    SharedMemoryStore,
    /// The local platform's directory.
    PlatformDirectory,
    /// The local platform's directory, as builds before owner marks named it.
    LegacyPlatformDirectory,
}

impl LeftoverKind {
    /// The kind a directory's name says, if it is one of ours.
    fn of_name(name: &str) -> Option<Self> {
        if let Some(suffix) = name.strip_prefix(PLATFORM_PREFIX) {
            return (!suffix.is_empty()).then_some(Self::PlatformDirectory);
        }
        if let Some(suffix) = name.strip_prefix(LEGACY_PLATFORM_PREFIX) {
            return (!suffix.is_empty()).then_some(Self::LegacyPlatformDirectory);
        }
        let rest = name.strip_prefix(PREFIX)?;
        let (id, after) = rest.split_at_checked(STORE_ID_LENGTH)?;
        let is_store_id = id
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte));
        (is_store_id && (after.is_empty() || after.starts_with(DESTROYED_SUFFIX)))
            .then_some(Self::SharedMemoryStore)
    }
}

impl fmt::Display for LeftoverKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Self::SharedMemoryStore => "shared-memory store",
            Self::PlatformDirectory => "local platform directory",
            Self::LegacyPlatformDirectory => "local platform directory of an older build",
        })
    }
}

/// Why a directory counts as a leftover.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeftoverReason {
    /// Its owner mark is not held: the owner is gone. `owner` is the process id it recorded.
    OwnerGone { owner: Option<u32> },
    /// No owner mark, and nothing in it changed for `untouched`.
    Unmarked { untouched: Duration },
}

impl fmt::Display for LeftoverReason {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OwnerGone { owner: Some(owner) } => {
                write!(formatter, "its owner, process {owner}, is gone")
            }
            Self::OwnerGone { owner: None } => formatter.write_str("its owner is gone"),
            Self::Unmarked { untouched } => write!(
                formatter,
                "no owner mark, untouched for {}",
                describe_duration(*untouched)
            ),
        }
    }
}

/// `3 h 05 min`, `42 min`.
fn describe_duration(duration: Duration) -> String {
    let minutes = duration.as_secs() / 60;
    if minutes >= 60 {
        format!("{} h {:02} min", minutes / 60, minutes % 60)
    } else {
        format!("{minutes} min")
    }
}

/// A directory a dead client left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub path: PathBuf,
    pub kind: LeftoverKind,
    pub reason: LeftoverReason,
}

impl fmt::Display for Leftover {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{} ({}; {})",
            self.path.display(),
            self.kind,
            self.reason
        )
    }
}

/// What [`remove`] did.
#[derive(Debug, Default)]
pub struct Removal {
    /// Removed, in the order found.
    pub removed: Vec<Leftover>,
    /// Leftovers that could not be removed, with the reason.
    pub failed: Vec<(Leftover, io::Error)>,
}

/// Where clients of the local platform keep their directories: `/dev/shm` (where it exists)
/// and the temporary directory (`TMPDIR`, else `/tmp`).
pub fn default_directories() -> Vec<PathBuf> {
    let mut directories = Vec::new();
    let shared_memory = Path::new("/dev/shm");
    if shared_memory.is_dir() {
        directories.push(shared_memory.to_path_buf());
    }
    let temporary = std::env::temp_dir();
    if !directories.contains(&temporary) {
        directories.push(temporary);
    }
    directories
}

/// The leftovers in `directories` (not recursive), without removing anything.
pub fn find(directories: &[PathBuf]) -> Vec<Leftover> {
    let now = SystemTime::now();
    let mut found = Vec::new();
    for directory in directories {
        let Ok(entries) = fs::read_dir(directory) else {
            continue;
        };
        let mut paths: Vec<(PathBuf, LeftoverKind)> = entries
            .flatten()
            .filter_map(|entry| {
                let kind = LeftoverKind::of_name(entry.file_name().to_str()?)?;
                Some((entry.path(), kind))
            })
            .collect();
        paths.sort_by(|left, right| left.0.cmp(&right.0));
        for (path, kind) in paths {
            if let Some(reason) = judge(&path, now).and_then(|judged| judged.reason()) {
                found.push(Leftover { path, kind, reason });
            }
        }
    }
    found
}

/// Removes the leftovers in `directories` (see the module documentation).
pub fn remove(directories: &[PathBuf]) -> Removal {
    let now = SystemTime::now();
    let mut removal = Removal::default();
    for leftover in find(directories) {
        // Judged again, and removed under the dead owner's lock.
        let Some(judged) = judge(&leftover.path, now) else {
            continue;
        };
        if judged.reason().is_none() {
            continue;
        }
        match fs::remove_dir_all(&leftover.path) {
            Ok(()) => removal.removed.push(leftover),
            Err(error) if error.kind() == ErrorKind::NotFound => {}
            Err(error) => removal.failed.push((leftover, error)),
        }
        drop(judged);
    }
    removal
}

/// What a look at one directory found; holds the dead owner's lock while alive.
enum Judged {
    /// Owned by a live process, or recently touched, or not ours to judge.
    InUse,
    OwnerGone {
        owner: Option<u32>,
        _lock: File,
    },
    Unmarked {
        untouched: Duration,
    },
}

impl Judged {
    fn reason(&self) -> Option<LeftoverReason> {
        match self {
            Self::InUse => None,
            Self::OwnerGone { owner, .. } => Some(LeftoverReason::OwnerGone { owner: *owner }),
            Self::Unmarked { untouched } => Some(LeftoverReason::Unmarked {
                untouched: *untouched,
            }),
        }
    }
}

/// Judges one directory; `None` if it is gone or not a directory of the current user.
fn judge(path: &Path, now: SystemTime) -> Option<Judged> {
    let metadata = fs::symlink_metadata(path).ok()?;
    if !metadata.is_dir() || !owned_by_current_user(&metadata) {
        return None;
    }
    let mark = path.join(OWNER_FILE);
    match File::open(&mark) {
        Ok(file) => Some(match lock(&file, true) {
            Ok(()) => Judged::OwnerGone {
                owner: fs::read_to_string(&mark)
                    .ok()
                    .and_then(|text| text.trim().parse().ok()),
                _lock: file,
            },
            Err(_) => Judged::InUse,
        }),
        // Another user's mark: not ours to judge.
        Err(error) if error.kind() != ErrorKind::NotFound => Some(Judged::InUse),
        Err(_) => {
            let untouched = now
                .duration_since(newest_modification(path))
                .unwrap_or_default();
            Some(if untouched >= UNMARKED_AGE {
                Judged::Unmarked { untouched }
            } else {
                Judged::InUse
            })
        }
    }
}

fn owned_by_current_user(metadata: &fs::Metadata) -> bool {
    // SAFETY: geteuid has no preconditions.
    let user = unsafe { libc::geteuid() };
    user == 0 || metadata.uid() == user
}

/// The latest modification time of `path` and everything below it (links not followed).
fn newest_modification(path: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    let mut pending = vec![path.to_path_buf()];
    while let Some(next) = pending.pop() {
        let Ok(metadata) = fs::symlink_metadata(&next) else {
            continue;
        };
        if let Ok(modified) = metadata.modified() {
            newest = newest.max(modified);
        }
        if metadata.is_dir()
            && let Ok(entries) = fs::read_dir(&next)
        {
            pending.extend(entries.flatten().map(|entry| entry.path()));
        }
    }
    newest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_leftovers() {
        use LeftoverKind::*;
        let cases = [
            ("dask-serverless-0123456789ab", Some(SharedMemoryStore)),
            (
                "dask-serverless-0123456789ab@destroyed-1f2e",
                Some(SharedMemoryStore),
            ),
            (
                "dask-serverless-local-platform-x1Yz9A",
                Some(PlatformDirectory),
            ),
            (
                "dask-serverless-emulator-NLrair",
                Some(LegacyPlatformDirectory),
            ),
            ("dask-serverless-local-platform-", None),
            ("dask-serverless-emulator-", None),
            ("dask-serverless-0123456789AB", None),
            ("dask-serverless-0123456789a", None),
            ("dask-serverless-0123456789abc", None),
            ("dask-serverless-cli-ministack-5382-46229", None),
            ("dask-serverless-cli-home-77-0", None),
            ("dask-serverless-run-42", None),
            ("something-else", None),
        ];
        for (name, kind) in cases {
            assert_eq!(LeftoverKind::of_name(name), kind, "{name}");
        }
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(
            describe_duration(Duration::from_secs(42 * 60 + 5)),
            "42 min"
        );
        assert_eq!(
            describe_duration(Duration::from_secs(3 * 3600 + 300)),
            "3 h 05 min"
        );
    }

    /// A directory named like a store, under `parent`.
    fn store_directory(parent: &Path, id: &str) -> PathBuf {
        let path = parent.join(format!("dask-serverless-{id}"));
        fs::create_dir_all(path.join("objects/run")).unwrap();
        fs::write(path.join("objects/run/value@"), b"value").unwrap();
        path
    }

    fn set_modified(path: &Path, when: SystemTime) {
        File::open(path).unwrap().set_modified(when).unwrap();
    }

    #[test]
    fn only_what_dead_owners_left_is_removed() {
        let _no_program_starts = crate::test_support::no_program_starts();
        let parent = tempfile::tempdir().unwrap();
        let directories = [parent.path().to_path_buf()];

        // Marked by a live owner (this process, another descriptor than the cleanup's).
        let live = store_directory(parent.path(), "00000000000a");
        let live_mark = OwnerMark::claim(&live).unwrap();
        // Marked by an owner that is gone: the mark is there, its lock is free.
        let dead = store_directory(parent.path(), "00000000000b");
        drop(OwnerMark::claim(&dead).unwrap());
        let dead_platform = parent.path().join("dask-serverless-local-platform-Ab12Cd");
        fs::create_dir(&dead_platform).unwrap();
        drop(OwnerMark::claim(&dead_platform).unwrap());
        // Unmarked: recent (kept), untouched for two hours (removed), old but with a recent
        // file inside (kept).
        let recent = parent.path().join("dask-serverless-emulator-Recent");
        fs::create_dir(&recent).unwrap();
        let two_hours_ago = SystemTime::now() - Duration::from_secs(2 * 3600);
        let old = parent.path().join("dask-serverless-emulator-OldOne");
        fs::create_dir(&old).unwrap();
        fs::write(old.join("worker-1.progress"), b"task 'x'").unwrap();
        set_modified(&old.join("worker-1.progress"), two_hours_ago);
        set_modified(&old, two_hours_ago);
        let old_but_used = store_directory(parent.path(), "00000000000c");
        for path in [
            old_but_used.join("objects/run"),
            old_but_used.join("objects"),
            old_but_used.clone(),
        ] {
            set_modified(&path, two_hours_ago);
        }
        // Not ours by name, even dead-looking.
        let stranger = parent.path().join("dask-serverless-cli-home-1-0");
        fs::create_dir(&stranger).unwrap();
        set_modified(&stranger, two_hours_ago);

        let found = find(&directories);
        let found_paths: Vec<&Path> = found
            .iter()
            .map(|leftover| leftover.path.as_path())
            .collect();
        // In the order of their names.
        assert_eq!(
            found_paths,
            [dead.as_path(), old.as_path(), dead_platform.as_path()]
        );
        let dead_leftover = found.iter().find(|leftover| leftover.path == dead).unwrap();
        assert_eq!(dead_leftover.kind, LeftoverKind::SharedMemoryStore);
        assert_eq!(
            dead_leftover.reason,
            LeftoverReason::OwnerGone {
                owner: Some(std::process::id())
            }
        );
        assert_eq!(
            dead_leftover.to_string(),
            format!(
                "{} (shared-memory store; its owner, process {}, is gone)",
                dead.display(),
                std::process::id()
            )
        );
        let old_leftover = found.iter().find(|leftover| leftover.path == old).unwrap();
        assert!(
            old_leftover
                .to_string()
                .ends_with("(local platform directory of an older build; no owner mark, untouched for 2 h 00 min)"),
            "{old_leftover}"
        );
        // Finding removes nothing.
        assert!(dead.exists() && old.exists() && dead_platform.exists());

        let removal = remove(&directories);
        assert!(removal.failed.is_empty(), "{:?}", removal.failed);
        let removed_paths: Vec<&Path> = removal
            .removed
            .iter()
            .map(|leftover| leftover.path.as_path())
            .collect();
        assert_eq!(removed_paths, found_paths);
        for gone in [&dead, &old, &dead_platform] {
            assert!(!gone.exists(), "{} is still there", gone.display());
        }
        for kept in [&live, &recent, &old_but_used, &stranger] {
            assert!(kept.exists(), "{} was removed", kept.display());
        }
        assert!(live.join("objects/run/value@").exists());

        // Once its owner lets go, the live one is a leftover too; then nothing is left.
        drop(live_mark);
        let removal = remove(&directories);
        assert_eq!(removal.removed.len(), 1);
        assert_eq!(removal.removed[0].path, live);
        assert!(remove(&directories).removed.is_empty());
    }

    #[test]
    fn a_mark_is_held_until_dropped_and_leaves_no_temporary_file() {
        let _no_program_starts = crate::test_support::no_program_starts();
        let directory = tempfile::tempdir().unwrap();
        let mark = OwnerMark::claim(directory.path()).unwrap();
        let names: Vec<String> = fs::read_dir(directory.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [OWNER_FILE]);
        let other = File::open(directory.path().join(OWNER_FILE)).unwrap();
        assert_eq!(
            lock(&other, true).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
        drop(mark);
        lock(&other, true).unwrap();
    }

    #[test]
    fn a_mark_is_not_inherited_by_programs_the_owner_starts() {
        let directory = tempfile::tempdir().unwrap();
        let _mark = OwnerMark::claim(directory.path()).unwrap();
        let mark_path = directory.path().join(OWNER_FILE);
        // A program started now lists its descriptors: none is the mark.
        let _starting = crate::test_support::starting_programs();
        let output = std::process::Command::new("/bin/sh")
            .args(["-c", "for fd in /proc/self/fd/*; do readlink \"$fd\"; done"])
            .output()
            .unwrap();
        let descriptors = String::from_utf8(output.stdout).unwrap();
        assert!(!descriptors.is_empty());
        assert!(
            !descriptors.contains(&mark_path.display().to_string()),
            "{descriptors}"
        );
    }
}
