//! [`SharedMemoryStore`]: one file per key in a shared-memory directory, safe across processes,
//! with zero-copy reads.
//!
//! # Layout
//!
//! ```text
//! <root>/objects/<folders of the key>/<last segment>@             an object
//! <root>/objects/<folders of the key>/<last segment>@put-<uuid>   a put in progress
//! <root>/fan-in/<folders of the key>/<last segment>@              a fan-in set
//! <root>/trash/<uuid>/                                            a tree being deleted
//! ```
//!
//! Key folders are plain directories named after the key's segments. Object and fan-in files
//! end with `@`, a character no key segment may contain, so the file of key `a` (`a@`) never
//! collides with the folder of key `a/b` (`a/`), and temporary files are never mistaken for
//! objects. Other processes (the client, Python workers) open the same root concurrently; the
//! invariants below make every operation safe for them.
//!
//! # Invariants
//!
//! - **A published object file is never modified.** `put` writes a fresh temporary file in the
//!   target's folder and renames it over the target (atomic on one file system), `put_new`
//!   hard-links it to the target's name (which fails, atomically, if the name exists), and
//!   `delete` unlinks. So a reader sees a whole object or none, and `get` can memory-map the file: the
//!   mapped inode never changes, and it stays alive while mapped even after a delete or an
//!   overwrite. Any other writer of this layout must follow the same rule. The map is private
//!   (copy-on-write): pages are shared with the file until a reader writes into one, which
//!   then becomes the reader's own — so readers may write into what they got.
//! - **A fan-in file is changed only under an exclusive `flock`** on that file: read the members
//!   (one per line), append the member if absent, release. A line without its final newline is
//!   the torn write of a crashed adder and is cut off by the next adder. Fan-in files are never
//!   replaced, so every process locks the same inode.
//! - **Deleting a prefix first renames its folders into `trash/`** (atomic), then removes them:
//!   objects under the prefix vanish at once for every process, and the count of deleted
//!   objects is exact. A put racing with the delete of its own prefix may or may not survive.
//! - **Nothing recreates the root.** Operations create folders only below `objects/` and
//!   `fan-in/`; if the root is gone, they fail with [`StoreError::Unavailable`] instead of
//!   leaving files in a store that was destroyed.
//!
//! File-system work runs on tokio's blocking pool: a fan-in may wait for another process's
//! lock, and large objects take milliseconds to copy.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use memmap2::MmapOptions;

use crate::key::{fan_in_overflow, validate_fan_in, validate_prefix};
use crate::{Payload, Store, StoreError, validate_key};

/// Ends the file name of every object and fan-in set; never part of a key segment.
const FILE_SUFFIX: char = '@';

/// How often `put` starts over when a concurrent `delete_prefix` removed its folder.
const PUT_ATTEMPTS: usize = 3;

/// How a written temporary file becomes the object.
#[derive(Debug, Clone, Copy)]
enum Publish {
    /// Renamed over any object of the key (`put`).
    Replace,
    /// Linked to the key's name only if nothing has it (`put_new`).
    IfAbsent,
}

/// A store of files under a directory, normally in shared memory (`/dev/shm`), that several
/// processes use at once. Cloning gives another handle on the same directory.
#[derive(Debug, Clone)]
pub struct SharedMemoryStore {
    directories: Arc<Directories>,
}

#[derive(Debug)]
struct Directories {
    root: PathBuf,
    objects: PathBuf,
    fan_in: PathBuf,
    trash: PathBuf,
}

impl SharedMemoryStore {
    /// A handle on the store at `root`, which [`create`](Self::create) made (possibly in another
    /// process). Touches nothing; operations fail with [`StoreError::Unavailable`] if the store
    /// does not exist.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        Self {
            directories: Arc::new(Directories {
                objects: root.join("objects"),
                fan_in: root.join("fan-in"),
                trash: root.join("trash"),
                root,
            }),
        }
    }

    /// Creates the store at `root` (and any missing parent directory), keeping whatever a store
    /// already there holds. Blocks on the file system (a few directory creations).
    pub fn create(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let store = Self::new(root);
        let directories = &store.directories;
        let describe = |source| whole_store_error("create", &directories.root, source);
        fs::create_dir_all(&directories.root).map_err(describe)?;
        for directory in [
            &directories.objects,
            &directories.fan_in,
            &directories.trash,
        ] {
            create_directory(directory).map_err(describe)?;
        }
        Ok(store)
    }

    /// The default place for a store named `name`: `/dev/shm/dask-serverless-<name>` where
    /// `/dev/shm` exists, the system's temporary directory otherwise.
    pub fn default_root(name: &str) -> PathBuf {
        let shared_memory = Path::new("/dev/shm");
        let parent = if shared_memory.is_dir() {
            shared_memory.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        parent.join(format!("dask-serverless-{name}"))
    }

    /// The directory holding the store.
    pub fn root(&self) -> &Path {
        &self.directories.root
    }

    /// Removes the store and everything in it. Every handle on it, in any process, then fails
    /// with [`StoreError::Unavailable`]. Destroying a store that is already gone succeeds.
    /// Objects already read stay valid.
    ///
    /// Blocks until the files are removed (from async code, call it through
    /// `tokio::task::spawn_blocking` if the store may be large).
    pub fn destroy(self) -> Result<(), StoreError> {
        let root = &self.directories.root;
        let describe = |source| whole_store_error("remove", root, source);
        // Renaming first makes the store vanish at once for every process, so no one writes
        // into a tree that is being removed.
        let mut doomed_name = root.file_name().unwrap_or_default().to_os_string();
        doomed_name.push(format!("{FILE_SUFFIX}destroyed-{}", uuid::Uuid::new_v4()));
        let doomed = root.with_file_name(doomed_name);
        let removed = match fs::rename(root, &doomed) {
            Ok(()) => doomed,
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(()),
            Err(_) => root.clone(),
        };
        remove_tree(&removed).map_err(describe)
    }

    async fn run_blocking<T, F>(&self, operation: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Directories) -> Result<T, StoreError> + Send + 'static,
    {
        let directories = Arc::clone(&self.directories);
        match tokio::task::spawn_blocking(move || operation(&directories)).await {
            Ok(result) => result,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => Err(StoreError::Unavailable {
                message: format!("the store operation was cancelled: {error}"),
            }),
        }
    }
}

impl Directories {
    fn is_present(&self) -> bool {
        [&self.objects, &self.fan_in, &self.trash]
            .iter()
            .all(|directory| directory.is_dir())
    }

    fn unavailable(&self) -> StoreError {
        StoreError::Unavailable {
            message: format!(
                "the shared-memory store directory {} is gone or was never created; it is \
                 removed when its computation ends (SharedMemoryStore::destroy), so check that \
                 every process uses the store of a running computation, made by \
                 SharedMemoryStore::create",
                self.root.display()
            ),
        }
    }

    /// Maps an I/O error on `key` to a store error: a missing file is a missing store when the
    /// store itself is gone, and a full file system is reported as such.
    fn error(&self, key: &str, error: io::Error) -> StoreError {
        if error.kind() == ErrorKind::NotFound && !self.is_present() {
            return self.unavailable();
        }
        if matches!(
            error.kind(),
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded
        ) {
            return StoreError::StorageFull {
                key: key.to_owned(),
                message: format!(
                    "the file system of {} is full ({error}); free memory, raise the size of the \
                     shared-memory file system, or use a smaller computation",
                    self.root.display()
                ),
            };
        }
        StoreError::Io {
            key: key.to_owned(),
            source: error,
        }
    }

    fn put(&self, key: &str, payload: &Payload) -> Result<(), StoreError> {
        self.publish(key, payload, Publish::Replace).map(|_| ())
    }

    fn put_new(&self, key: &str, payload: &Payload) -> Result<bool, StoreError> {
        self.publish(key, payload, Publish::IfAbsent)
    }

    /// Writes `payload` to a temporary file beside the target, then publishes it: renamed over
    /// the target, or hard-linked to the target's name, which fails if a file has that name
    /// (`false`). Either is atomic on one file system.
    fn publish(&self, key: &str, payload: &Payload, mode: Publish) -> Result<bool, StoreError> {
        let target = file_path(&self.objects, key);
        for attempt in 1..=PUT_ATTEMPTS {
            create_parent_directories(&self.objects, key)
                .map_err(|error| self.error(key, error))?;
            let mut temporary_name = target.file_name().unwrap_or_default().to_os_string();
            temporary_name.push(format!("put-{}", uuid::Uuid::new_v4()));
            let temporary = target.with_file_name(temporary_name);
            let result = write_new_file(&temporary, payload).and_then(|()| match mode {
                Publish::Replace => fs::rename(&temporary, &target).map(|()| true),
                Publish::IfAbsent => {
                    let linked = match fs::hard_link(&temporary, &target) {
                        Ok(()) => Ok(true),
                        Err(error) if error.kind() == ErrorKind::AlreadyExists => Ok(false),
                        Err(error) => Err(error),
                    };
                    let _ = fs::remove_file(&temporary);
                    linked
                }
            });
            match result {
                Ok(written) => return Ok(written),
                Err(error) => {
                    let _ = fs::remove_file(&temporary);
                    let folder_vanished = error.kind() == ErrorKind::NotFound;
                    if !(folder_vanished && attempt < PUT_ATTEMPTS && self.is_present()) {
                        return Err(self.error(key, error));
                    }
                }
            }
        }
        unreachable!("the last attempt returns")
    }

    fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let file = match File::open(file_path(&self.objects, key)) {
            Ok(file) => file,
            Err(error) if error.kind() == ErrorKind::NotFound && self.is_present() => {
                return Err(StoreError::NotFound {
                    key: key.to_owned(),
                });
            }
            Err(error) => return Err(self.error(key, error)),
        };
        let length = file
            .metadata()
            .map_err(|error| self.error(key, error))?
            .len();
        if length == 0 {
            // A map of zero bytes is an error on Linux; an empty object needs none.
            return Ok(Bytes::new());
        }
        // SAFETY: a published object file is never written, truncated or extended (see the
        // module invariants): puts rename a new file over it and deletes unlink it, neither of
        // which touches the mapped inode. So the mapping stays valid and unchanged for as long
        // as the returned bytes live. The mapping is private (copy-on-write): a reader that
        // writes into it gets its own pages and never changes the file.
        let map = unsafe { MmapOptions::new().map_copy(&file) }
            .map_err(|error| self.error(key, error))?;
        Ok(Bytes::from_owner(map))
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        match fs::remove_file(file_path(&self.objects, key)) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == ErrorKind::NotFound && self.is_present() => Ok(()),
            Err(error) => Err(self.error(key, error)),
        }
    }

    fn delete_prefix(&self, prefix: &str) -> Result<u64, StoreError> {
        let folder = prefix.trim_end_matches('/');
        let trashed_objects = self.move_to_trash(&self.objects.join(folder), prefix)?;
        let trashed_fan_in = self.move_to_trash(&self.fan_in.join(folder), prefix)?;
        let mut deleted = 0;
        if let Some(trashed) = trashed_objects {
            deleted = count_files(&trashed).map_err(|error| self.error(prefix, error))?;
            remove_tree(&trashed).map_err(|error| self.error(prefix, error))?;
        }
        if let Some(trashed) = trashed_fan_in {
            remove_tree(&trashed).map_err(|error| self.error(prefix, error))?;
        }
        Ok(deleted)
    }

    /// Renames `folder` into the trash; `None` if there is no such folder.
    fn move_to_trash(&self, folder: &Path, prefix: &str) -> Result<Option<PathBuf>, StoreError> {
        let trashed = self.trash.join(uuid::Uuid::new_v4().to_string());
        match fs::rename(folder, &trashed) {
            Ok(()) => Ok(Some(trashed)),
            Err(error) if error.kind() == ErrorKind::NotFound && self.is_present() => Ok(None),
            Err(error) => Err(self.error(prefix, error)),
        }
    }

    fn fan_in(&self, key: &str, member: &str, expected: u32) -> Result<bool, StoreError> {
        let error = |error| self.error(key, error);
        create_parent_directories(&self.fan_in, key).map_err(error)?;
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(file_path(&self.fan_in, key))
            .map_err(error)?;
        lock_exclusive(&file).map_err(error)?;
        let outcome = add_member(&file, key, member, expected);
        // Closing the file releases the lock too; unlocking first just releases it sooner.
        let _ = file.unlock();
        outcome
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let folder = self.objects.join(prefix.trim_end_matches('/'));
        let mut keys = Vec::new();
        match collect_keys(&folder, prefix, &mut keys) {
            Ok(()) => {}
            Err(error) if error.kind() == ErrorKind::NotFound && self.is_present() => {}
            Err(error) => return Err(self.error(prefix, error)),
        }
        keys.sort_unstable();
        Ok(keys)
    }
}

/// An error of an operation on the whole store directory, saying which directory and what the
/// operation was.
fn whole_store_error(action: &str, root: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        key: String::new(),
        source: io::Error::new(
            source.kind(),
            format!(
                "cannot {action} the store directory {}: {source}",
                root.display()
            ),
        ),
    }
}

/// With the lock held: adds `member` to the set in `file` unless present. Returns whether this
/// add completed the set.
fn add_member(mut file: &File, key: &str, member: &str, expected: u32) -> Result<bool, StoreError> {
    let io_error = |source| StoreError::Io {
        key: key.to_owned(),
        source,
    };
    let mut contents = Vec::new();
    file.rewind().map_err(io_error)?;
    file.read_to_end(&mut contents).map_err(io_error)?;
    let complete_length = contents
        .iter()
        .rposition(|byte| *byte == b'\n')
        .map_or(0, |index| index + 1);
    if complete_length < contents.len() {
        // A crashed adder left a partial line: drop it so appends start on a fresh line.
        file.set_len(complete_length as u64).map_err(io_error)?;
    }
    let mut count = 0usize;
    for line in contents[..complete_length].split(|byte| *byte == b'\n') {
        if line == member.as_bytes() {
            return Ok(false);
        }
        count += usize::from(!line.is_empty());
    }
    if count >= expected as usize {
        return Err(fan_in_overflow(key, member, expected));
    }
    let line = format!("{member}\n");
    if let Err(error) = file.write_all(line.as_bytes()) {
        let _ = file.set_len(complete_length as u64);
        return Err(io_error(error));
    }
    Ok(count + 1 == expected as usize)
}

/// Takes an exclusive `flock` on `file`, waiting for other holders; retried when a signal
/// interrupts the wait.
fn lock_exclusive(file: &File) -> io::Result<()> {
    loop {
        match file.lock() {
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            result => return result,
        }
    }
}

/// The file of `key` under `base`: its folders, then its last segment with the suffix.
fn file_path(base: &Path, key: &str) -> PathBuf {
    let mut path = base.join(key);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(FILE_SUFFIX.to_string());
    path.set_file_name(name);
    path
}

/// Creates the folders of `key` below `base`, one level at a time, without ever creating
/// `base` itself (so a destroyed store is not brought back).
fn create_parent_directories(base: &Path, key: &str) -> io::Result<()> {
    let mut path = base.to_path_buf();
    let mut segments = key.split('/');
    segments.next_back();
    for segment in segments {
        path.push(segment);
        create_directory(&path)?;
    }
    Ok(())
}

fn create_directory(path: &Path) -> io::Result<()> {
    match fs::create_dir(path) {
        Err(error) if error.kind() != ErrorKind::AlreadyExists => Err(error),
        _ => Ok(()),
    }
}

fn write_new_file(path: &Path, payload: &Payload) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
    for chunk in payload.chunks() {
        file.write_all(chunk)?;
    }
    Ok(())
}

/// The key segment an object or fan-in file name stands for, if it is one.
fn segment_of_file_name(name: &str) -> Option<&str> {
    let segment = name.strip_suffix(FILE_SUFFIX)?;
    validate_key(segment).ok()?;
    (!segment.contains('/')).then_some(segment)
}

/// Appends to `keys` the key of every object under `folder`, whose keys start with `prefix`.
/// Entries that vanish during the walk (a concurrent delete) are skipped.
fn collect_keys(folder: &Path, prefix: &str, keys: &mut Vec<String>) -> io::Result<()> {
    for entry in fs::read_dir(folder)? {
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) if error.kind() == ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let file_type = match entry.file_type() {
            Ok(file_type) => file_type,
            Err(error) if error.kind() == ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        if file_type.is_dir() {
            if validate_key(&name).is_err() {
                continue;
            }
            match collect_keys(&entry.path(), &format!("{prefix}{name}/"), keys) {
                Err(error) if error.kind() != ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        } else if let Some(segment) = segment_of_file_name(&name) {
            keys.push(format!("{prefix}{segment}"));
        }
    }
    Ok(())
}

/// The number of object files in the tree at `folder`.
fn count_files(folder: &Path) -> io::Result<u64> {
    let mut count = 0;
    for entry in fs::read_dir(folder)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            count += count_files(&entry.path())?;
        } else if entry
            .file_name()
            .to_str()
            .is_some_and(|name| segment_of_file_name(name).is_some())
        {
            count += 1;
        }
    }
    Ok(count)
}

/// Removes the tree at `path`, retrying when a racing writer added an entry meanwhile.
fn remove_tree(path: &Path) -> io::Result<()> {
    let mut attempts_left = 3;
    loop {
        match fs::remove_dir_all(path) {
            Ok(()) => return Ok(()),
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(()),
            Err(_) if attempts_left > 1 => attempts_left -= 1,
            Err(error) => return Err(error),
        }
    }
}

#[async_trait]
impl Store for SharedMemoryStore {
    async fn put(&self, key: &str, payload: Payload) -> Result<(), StoreError> {
        validate_key(key)?;
        let key = key.to_owned();
        self.run_blocking(move |directories| directories.put(&key, &payload))
            .await
    }

    async fn put_new(&self, key: &str, payload: Payload) -> Result<bool, StoreError> {
        validate_key(key)?;
        let key = key.to_owned();
        self.run_blocking(move |directories| directories.put_new(&key, &payload))
            .await
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        validate_key(key)?;
        let key = key.to_owned();
        self.run_blocking(move |directories| directories.get(&key))
            .await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        let key = key.to_owned();
        self.run_blocking(move |directories| directories.delete(&key))
            .await
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, StoreError> {
        validate_prefix(prefix, false)?;
        let prefix = prefix.to_owned();
        self.run_blocking(move |directories| directories.delete_prefix(&prefix))
            .await
    }

    async fn fan_in(&self, key: &str, member: &str, expected: u32) -> Result<bool, StoreError> {
        validate_fan_in(key, member, expected)?;
        let key = key.to_owned();
        let member = member.to_owned();
        self.run_blocking(move |directories| directories.fan_in(&key, &member, expected))
            .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        validate_prefix(prefix, true)?;
        let prefix = prefix.to_owned();
        self.run_blocking(move |directories| directories.list(&prefix))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_carry_the_suffix_and_folders_do_not() {
        let base = Path::new("/store/objects");
        assert_eq!(file_path(base, "a"), Path::new("/store/objects/a@"));
        assert_eq!(
            file_path(base, "run1/x/y.z"),
            Path::new("/store/objects/run1/x/y.z@")
        );
        assert_eq!(segment_of_file_name("y.z@"), Some("y.z"));
        assert_eq!(segment_of_file_name("y.z@put-1234"), None);
        assert_eq!(segment_of_file_name("y.z"), None);
        assert_eq!(segment_of_file_name("@"), None);
    }

    #[test]
    fn a_torn_member_line_is_cut_off_by_the_next_add() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("set@");
        fs::write(&path, "parent-1\nparent-2\nparen").unwrap();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .unwrap();
        assert!(!add_member(&file, "set", "parent-1", 3).unwrap());
        assert!(add_member(&file, "set", "parent-3", 3).unwrap());
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "parent-1\nparent-2\nparent-3\n"
        );
    }
}
