//! Opening stores and platform clients from the addresses a run carries.
//!
//! A store address is a URL-like string: `shm:///dev/shm/dask-serverless-<id>` names a
//! shared-memory store rooted at that directory. Connections are cached per process: a warm
//! function reuses them across invocations.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use dask_serverless_core::{PlatformAddress, RunContext};
use dask_serverless_platform::{Invoker, LocalInvoker, LocalQueue, ResultChannel};
use dask_serverless_store::{SharedMemoryStore, Store};

use crate::RuntimeError;

/// Opens the store at `address`.
pub async fn open_store(address: &str) -> Result<Arc<dyn Store>, RuntimeError> {
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
    pub async fn for_context(context: &RunContext) -> Result<Connections, RuntimeError> {
        static CACHE: OnceLock<Mutex<HashMap<String, Connections>>> = OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        let cache_key = format!(
            "{}|{}",
            context.store,
            serde_json::to_string(&context.platform).unwrap_or_default()
        );
        let cached = cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&cache_key)
            .cloned();
        if let Some(connections) = cached {
            return Ok(connections);
        }
        let (invoker, channel) = open_platform(&context.platform).await?;
        let connections = Connections {
            store: open_store(&context.store).await?,
            invoker,
            channel,
        };
        cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(cache_key, connections.clone());
        Ok(connections)
    }
}

/// The invoker and result channel of a platform.
async fn open_platform(
    platform: &PlatformAddress,
) -> Result<(Arc<dyn Invoker>, Arc<dyn ResultChannel>), RuntimeError> {
    match platform {
        PlatformAddress::Local {
            invoke_endpoint,
            queue_endpoint,
            queue,
        } => Ok((
            Arc::new(LocalInvoker::new(invoke_endpoint.clone())),
            Arc::new(LocalQueue::new(queue_endpoint.clone(), queue.clone())),
        )),
        PlatformAddress::Aws { .. } => Err(RuntimeError::Configuration(
            "this build of dask-serverless has no AWS platform".to_owned(),
        )),
    }
}
