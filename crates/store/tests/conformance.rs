//! Runs the conformance suite against every backend of this crate: one test per check and
//! backend, each on a fresh store, plus `run_all` once per backend.

#[macro_use]
mod support;

use dask_serverless_store::{MemoryStore, SharedMemoryStore, Store};
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

    fn store(&self) -> &dyn Store {
        self.store.as_ref()
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

mod memory {
    use super::*;
    conformance_tests!(Fixture::memory());
}

mod shared_memory {
    use super::*;
    conformance_tests!(Fixture::shared_memory());
}
