//! Runs the conformance suite against every backend of this crate: one test per check and
//! backend, each on a fresh store, plus `run_all` once per backend.

use dask_serverless_store::{MemoryStore, SharedMemoryStore, Store, conformance};
use tempfile::TempDir;

/// A fresh store, and the directory that holds it if it has one.
struct Fixture {
    store: Box<dyn Store>,
    directory: Option<(TempDir, SharedMemoryStore)>,
}

impl Fixture {
    async fn memory() -> Self {
        Self {
            store: Box::new(MemoryStore::new()),
            directory: None,
        }
    }

    async fn shared_memory() -> Self {
        let parent = std::path::Path::new("/dev/shm");
        let builder = tempfile::Builder::new()
            .prefix("dask-serverless-conformance-")
            .to_owned();
        let directory = if parent.is_dir() {
            builder.tempdir_in(parent)
        } else {
            builder.tempdir()
        }
        .expect("temporary directory");
        let store =
            SharedMemoryStore::create(directory.path().join("store")).expect("create the store");
        Self {
            store: Box::new(store.clone()),
            directory: Some((directory, store)),
        }
    }

    /// Checks that the store can be torn down completely.
    async fn finish(self) {
        if let Some((directory, store)) = self.directory {
            let root = store.root().to_path_buf();
            store.destroy().expect("destroy the store");
            assert!(!root.exists(), "destroy left {}", root.display());
            let leftovers: Vec<_> = std::fs::read_dir(directory.path())
                .expect("read the temporary directory")
                .collect();
            assert!(leftovers.is_empty(), "destroy left {leftovers:?}");
        }
    }
}

macro_rules! conformance_tests {
    ($backend:ident: $($check:ident),* $(,)?) => {
        mod $backend {
            use super::*;

            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let fixture = Fixture::$backend().await;
                    conformance::$check(fixture.store.as_ref()).await;
                    fixture.finish().await;
                }
            )*

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn run_all() {
                let fixture = Fixture::$backend().await;
                conformance::run_all(fixture.store.as_ref()).await;
                fixture.finish().await;
            }
        }
    };
}

macro_rules! every_check {
    ($($backend:ident),*) => {
        $(
            conformance_tests!($backend:
                put_get_delete_round_trip,
                put_overwrites,
                empty_object_round_trips,
                chunks_are_concatenated,
                large_object_round_trips,
                get_of_missing_key_names_the_key,
                invalid_keys_are_rejected,
                delete_of_absent_key_succeeds,
                delete_prefix_removes_exactly_the_prefix,
                list_returns_the_keys_under_a_prefix,
                key_can_also_be_a_folder,
                read_bytes_outlive_overwrite_and_delete,
                concurrent_writers_never_mix,
                fan_in_ignores_repeated_members,
                fan_in_releases_once_among_concurrent_members,
                fan_in_releases_once_despite_concurrent_duplicates,
                fan_in_of_one_releases_on_first_add,
                fan_in_sets_are_independent,
                fan_in_rejects_invalid_calls,
                cleanup_removes_objects_and_fan_in_sets,
                framed_parts_round_trip,
            );
        )*
    };
}

every_check!(memory, shared_memory);
