//! Behaviour specific to `SharedMemoryStore`: zero-copy reads, the life cycle of its directory,
//! and fan-in across separate processes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dask_serverless_store::{Payload, SharedMemoryStore, Store, StoreError, StoreExt, frame};
use tempfile::TempDir;

/// A temporary directory in shared memory when the machine has it.
fn temporary_directory() -> TempDir {
    let builder = tempfile::Builder::new()
        .prefix("dask-serverless-store-test-")
        .to_owned();
    if Path::new("/dev/shm").is_dir() {
        builder.tempdir_in("/dev/shm")
    } else {
        builder.tempdir()
    }
    .expect("temporary directory")
}

fn created_store(directory: &TempDir) -> SharedMemoryStore {
    SharedMemoryStore::create(directory.path().join("store")).expect("create the store")
}

/// Every file under `directory`, relative to it.
fn files_under(directory: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![directory.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).expect("read_dir") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path.strip_prefix(directory).unwrap().to_path_buf());
            }
        }
    }
    files.sort();
    files
}

fn assert_unavailable<T: std::fmt::Debug>(result: Result<T, StoreError>, root: &Path) {
    match result {
        Err(StoreError::Unavailable { message }) => assert!(
            message.contains(&root.display().to_string()),
            "the message must name the store directory: {message}"
        ),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

/// The line of `/proc/self/maps` describing the mapping that contains `address`.
#[cfg(target_os = "linux")]
fn mapping_containing(address: *const u8) -> Option<String> {
    let address = address as usize;
    std::fs::read_to_string("/proc/self/maps")
        .expect("read /proc/self/maps")
        .lines()
        .find(|line| {
            let range = line.split_whitespace().next().unwrap_or_default();
            let Some((start, end)) = range.split_once('-') else {
                return false;
            };
            let start = usize::from_str_radix(start, 16).unwrap_or(usize::MAX);
            let end = usize::from_str_radix(end, 16).unwrap_or(0);
            (start..end).contains(&address)
        })
        .map(str::to_owned)
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn get_maps_the_object_file_and_the_map_outlives_delete() {
    let directory = temporary_directory();
    let store = created_store(&directory);
    let parts = vec![
        Bytes::from_static(b"pickle"),
        Bytes::from(vec![7u8; 10_000]),
    ];
    store.put_parts("run/value", parts.clone()).await.unwrap();

    let object = store.get("run/value").await.unwrap();
    let mapping = mapping_containing(object.as_ptr()).expect("the object is mapped");
    assert!(
        mapping.contains(&store.root().display().to_string()),
        "get must map the object file, not copy it: {mapping}"
    );
    for part in frame::decode(&object).unwrap() {
        assert_eq!(
            part.as_ptr() as usize % frame::ALIGNMENT,
            0,
            "part not aligned in memory"
        );
    }

    store.delete("run/value").await.unwrap();
    assert!(matches!(
        store.get("run/value").await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        frame::decode(&object).unwrap(),
        parts,
        "data changed after delete"
    );
    let mapping = mapping_containing(object.as_ptr()).expect("still mapped");
    assert!(mapping.ends_with("(deleted)"), "{mapping}");
    let root = store.root().to_path_buf();
    store.destroy().unwrap();
    assert!(!root.exists());
    assert_eq!(
        frame::decode(&object).unwrap(),
        parts,
        "data changed after destroy"
    );
}

#[tokio::test]
async fn destroy_leaves_nothing_and_later_calls_are_unavailable() {
    let directory = temporary_directory();
    let store = created_store(&directory);
    let other_handle = SharedMemoryStore::new(store.root());
    let root = store.root().to_path_buf();
    store.put("run/a", Payload::from("a")).await.unwrap();
    store.put("run/deep/b", Payload::from("b")).await.unwrap();
    assert!(store.fan_in("run/child", "parent", 2).await.is_ok());

    store.destroy().unwrap();
    assert!(!root.exists(), "destroy left {}", root.display());
    assert!(files_under(directory.path()).is_empty());
    assert_eq!(std::fs::read_dir(directory.path()).unwrap().count(), 0);

    assert_unavailable(other_handle.get("run/a").await, &root);
    assert_unavailable(other_handle.put("run/a", Payload::from("a")).await, &root);
    assert_unavailable(other_handle.delete("run/a").await, &root);
    assert_unavailable(other_handle.fan_in("run/child", "parent", 2).await, &root);
    assert_unavailable(other_handle.list("run/").await, &root);
    assert_unavailable(other_handle.delete_prefix("run/").await, &root);
    assert!(
        !root.exists(),
        "a call on a destroyed store brought its directory back"
    );
    other_handle.destroy().expect("destroying twice succeeds");
}

#[tokio::test]
async fn a_store_never_created_is_unavailable() {
    let directory = temporary_directory();
    let root = directory.path().join("never-created");
    let store = SharedMemoryStore::new(&root);
    assert_unavailable(store.put("key", Payload::from("x")).await, &root);
    assert_unavailable(store.get("key").await, &root);
    assert!(!root.exists());
}

#[tokio::test]
async fn handles_on_one_directory_share_everything() {
    let directory = temporary_directory();
    let first = created_store(&directory);
    first
        .put("run/a", Payload::from("from first"))
        .await
        .unwrap();
    assert!(!first.fan_in("run/child", "parent-1", 2).await.unwrap());

    let second = SharedMemoryStore::new(first.root());
    assert_eq!(second.get("run/a").await.unwrap(), &b"from first"[..]);
    assert!(!second.fan_in("run/child", "parent-1", 2).await.unwrap());
    assert!(second.fan_in("run/child", "parent-2", 2).await.unwrap());

    let recreated = SharedMemoryStore::create(first.root()).unwrap();
    assert_eq!(
        recreated.list("").await.unwrap(),
        vec!["run/a".to_owned()],
        "create on an existing store keeps its objects"
    );
    first.destroy().unwrap();
}

#[tokio::test]
async fn puts_leave_no_temporary_files_and_strays_are_ignored_then_cleaned() {
    let directory = temporary_directory();
    let store = created_store(&directory);
    for index in 0..5 {
        let payload = Payload::from(vec![index as u8; 1000]);
        store
            .put(&format!("run/{index}"), payload.clone())
            .await
            .unwrap();
        store.put(&format!("run/{index}"), payload).await.unwrap();
    }
    let objects = store.root().join("objects");
    assert!(
        files_under(&objects)
            .iter()
            .all(|file| file.to_string_lossy().ends_with('@')),
        "temporary files left: {:?}",
        files_under(&objects)
    );

    // A writer that crashed mid-put leaves its temporary file behind.
    std::fs::write(objects.join("run/0@put-crashed"), b"partial").unwrap();
    std::fs::write(objects.join("run/not-an-object"), b"stray").unwrap();
    assert_eq!(store.list("run/").await.unwrap().len(), 5);
    assert_eq!(store.delete_prefix("run/").await.unwrap(), 5);
    assert!(files_under(&objects).is_empty());
    assert!(files_under(&store.root().join("trash")).is_empty());
    store.destroy().unwrap();
}

#[test]
fn default_root_is_named_after_the_store() {
    let root = SharedMemoryStore::default_root("run-42");
    assert!(root.ends_with("dask-serverless-run-42"));
    if Path::new("/dev/shm").is_dir() {
        assert!(root.starts_with("/dev/shm"));
    }
}

// Fan-in across processes: the test binary runs itself several times as child processes, each
// running only `fan_in_child_process` with its assignment in environment variables.

const CHILD_ROOT_VARIABLE: &str = "DASK_SERVERLESS_STORE_TEST_CHILD_ROOT";
const CHILD_INDEX_VARIABLE: &str = "DASK_SERVERLESS_STORE_TEST_CHILD_INDEX";
const CHILD_CONTROL_VARIABLE: &str = "DASK_SERVERLESS_STORE_TEST_CHILD_CONTROL";
const CHILDREN: usize = 4;
const MEMBERS_PER_CHILD: usize = 2;
const FAN_IN_SETS: usize = 64;

fn fan_in_key(set: usize) -> String {
    format!("run/fan-in/child-{set}")
}

fn member(child: usize, index: usize) -> String {
    format!("child-{child}-member-{index}")
}

/// The members a child adds: its own, then (as duplicate deliveries) its neighbour's.
fn deliveries_of(child: usize) -> Vec<String> {
    let neighbour = (child + 1) % CHILDREN;
    (0..MEMBERS_PER_CHILD)
        .map(|index| member(child, index))
        .chain((0..MEMBERS_PER_CHILD).map(|index| member(neighbour, index)))
        .collect()
}

#[test]
fn fan_in_across_processes_releases_exactly_once() {
    let directory = temporary_directory();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = created_store(&directory);
    let control = directory.path().join("control");
    std::fs::create_dir(&control).unwrap();

    let executable = std::env::current_exe().expect("the test executable");
    let children: Vec<_> = (0..CHILDREN)
        .map(|child| {
            Command::new(&executable)
                .args([
                    "fan_in_child_process",
                    "--exact",
                    "--ignored",
                    "--test-threads=1",
                ])
                .env(CHILD_ROOT_VARIABLE, store.root())
                .env(CHILD_INDEX_VARIABLE, child.to_string())
                .env(CHILD_CONTROL_VARIABLE, &control)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn a child test process")
        })
        .collect();
    // Every child waits for this file, so that their adds overlap.
    std::fs::write(control.join("go"), b"").unwrap();

    let mut releases = vec![0; FAN_IN_SETS];
    for (child, process) in children.into_iter().enumerate() {
        let output = process.wait_with_output().expect("wait for a child");
        assert!(
            output.status.success(),
            "child {child} failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let report = std::fs::read_to_string(control.join(format!("releases-{child}")))
            .unwrap_or_else(|error| panic!("child {child} reported nothing: {error}"));
        for (set, count) in report.split_whitespace().enumerate() {
            releases[set] += count.parse::<usize>().expect("a release count");
        }
    }
    assert_eq!(
        releases,
        vec![1; FAN_IN_SETS],
        "in every set, exactly one add across all processes must release"
    );

    runtime.block_on(async {
        let expected = (CHILDREN * MEMBERS_PER_CHILD) as u32;
        for set in 0..FAN_IN_SETS {
            for child in 0..CHILDREN {
                for index in 0..MEMBERS_PER_CHILD {
                    let released = store
                        .fan_in(&fan_in_key(set), &member(child, index), expected)
                        .await
                        .unwrap();
                    assert!(!released, "set {set} misses member {child}/{index}");
                }
            }
        }
        store.destroy().unwrap();
    });
}

#[test]
#[ignore = "a child process of fan_in_across_processes_releases_exactly_once"]
fn fan_in_child_process() {
    let Ok(root) = std::env::var(CHILD_ROOT_VARIABLE) else {
        return;
    };
    let child: usize = std::env::var(CHILD_INDEX_VARIABLE)
        .unwrap()
        .parse()
        .unwrap();
    let control = PathBuf::from(std::env::var(CHILD_CONTROL_VARIABLE).unwrap());
    let store = SharedMemoryStore::new(root);
    let expected = (CHILDREN * MEMBERS_PER_CHILD) as u32;
    let runtime = tokio::runtime::Runtime::new().unwrap();

    // Spin rather than sleep, so that all children start within microseconds of each other.
    let go = control.join("go");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !go.exists() {
        assert!(Instant::now() < deadline, "the parent never said go");
        std::thread::yield_now();
    }
    let releases = runtime.block_on(async {
        let mut releases = vec![0usize; FAN_IN_SETS];
        // Set by set, so that the children race on the same set at the same time.
        for (set, set_releases) in releases.iter_mut().enumerate() {
            let mut adds = tokio::task::JoinSet::new();
            for delivery in deliveries_of(child) {
                let store = store.clone();
                adds.spawn(
                    async move { store.fan_in(&fan_in_key(set), &delivery, expected).await },
                );
            }
            while let Some(released) = adds.join_next().await {
                *set_releases += usize::from(released.unwrap().unwrap());
            }
        }
        releases
    });
    let report: Vec<String> = releases.iter().map(usize::to_string).collect();
    std::fs::write(control.join(format!("releases-{child}")), report.join(" ")).unwrap();
}
