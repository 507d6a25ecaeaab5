//! Opening stores and platform clients from the addresses a run carries.
//!
//! A store address is a URL-like string: `shm:///dev/shm/dask-serverless-<id>` names a
//! shared-memory store rooted at that directory. Connections are cached per process: a warm
//! function reuses them across invocations.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use dask_serverless_core::RunContext;
use dask_serverless_platform::{Invoker, LocalInvoker, LocalQueue, ResultChannel};
use dask_serverless_store::{SharedMemoryStore, Store};

use crate::RuntimeError;

/// Opens the store at `address`.
pub fn open_store(address: &str) -> Result<Arc<dyn Store>, RuntimeError> {
    if let Some(path) = address.strip_prefix("shm://") {
        return Ok(Arc::new(SharedMemoryStore::new(PathBuf::from(path))));
    }
    Err(RuntimeError::Configuration(format!(
        "unknown store address '{address}': expected shm:///path/to/directory"
    )))
}

/// The store, invoker and result channel of a run.
#[derive(Debug, Clone)]
pub struct Connections {
    pub store: Arc<dyn Store>,
    pub invoker: Arc<dyn Invoker>,
    pub channel: Arc<dyn ResultChannel>,
}

impl Connections {
    /// Opens (or reuses, within this process) the connections a run context names.
    pub fn for_context(context: &RunContext) -> Result<Connections, RuntimeError> {
        static CACHE: OnceLock<Mutex<HashMap<String, Connections>>> = OnceLock::new();
        let cache_key = format!(
            "{}|{}|{}|{}",
            context.store, context.invoke_endpoint, context.queue_endpoint, context.queue
        );
        let mut cache = CACHE
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(connections) = cache.get(&cache_key) {
            return Ok(connections.clone());
        }
        let connections = Connections {
            store: open_store(&context.store)?,
            invoker: Arc::new(LocalInvoker::new(context.invoke_endpoint.clone())),
            channel: Arc::new(LocalQueue::new(
                context.queue_endpoint.clone(),
                context.queue.clone(),
            )),
        };
        cache.insert(cache_key, connections.clone());
        Ok(connections)
    }
}
