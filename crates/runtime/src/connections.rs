//! Opening stores and platform clients from the addresses a run carries.
//!
//! A store address is a URL:
//!
//! * `shm:///dev/shm/dask-serverless-<id>`: a shared-memory store rooted at that directory;
//! * `redis://host:port/db?prefix=<key prefix>`: a Redis server (`rediss://` for TLS);
//! * `s3://bucket/prefix?region=<region>&endpoint=<url>`: an S3 bucket (or an S3-compatible
//!   endpoint), credentials from the standard environment.
//!
//! Connections are cached per process: a warm function reuses them across invocations.
//!
//! A run that carries a chaos setting ([`RunContext::chaos`], or else the process's
//! `DASK_SERVERLESS_CHAOS`) gets its store wrapped in a [`ChaosStore`], its invoker in a
//! [`ChaosInvoker`] and its result channel in a [`ChaosResultChannel`], on the client as in its
//! functions: faults for testing (see `docs/reliability.md`, "The chaos suite").

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use dask_serverless_core::{PlatformAddress, RunContext};
use dask_serverless_platform::{
    Chaos, ChaosInvoker, ChaosResultChannel, Invoker, LocalInvoker, LocalQueue, ResultChannel,
};
use dask_serverless_store::{ChaosStore, PatientStore, SharedMemoryStore, Store};

use crate::RuntimeError;

/// Opens the store at `address`.
pub async fn open_store(address: &str) -> Result<Arc<dyn Store>, RuntimeError> {
    if let Some(path) = address.strip_prefix("shm://") {
        return Ok(Arc::new(SharedMemoryStore::new(PathBuf::from(path))));
    }
    let invalid = |reason: String| {
        RuntimeError::Configuration(format!("invalid store address '{address}': {reason}"))
    };
    let url = url::Url::parse(address).map_err(|error| invalid(error.to_string()))?;
    #[cfg_attr(not(any(feature = "redis", feature = "s3")), allow(unused_variables))]
    let query = |name: &str| {
        url.query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    };
    match url.scheme() {
        #[cfg(feature = "redis")]
        "redis" | "rediss" => {
            let prefix = query("prefix").unwrap_or_else(|| "dask-serverless/".to_owned());
            let mut server = url.clone();
            server.set_query(None);
            Ok(Arc::new(
                dask_serverless_store::RedisStore::connect(server.as_str(), &prefix).await?,
            ))
        }
        #[cfg(feature = "s3")]
        "s3" => {
            let bucket = url
                .host_str()
                .filter(|bucket| !bucket.is_empty())
                .ok_or_else(|| invalid("no bucket: expected s3://bucket/prefix".to_owned()))?;
            let region = query("region")
                .or_else(|| std::env::var("AWS_REGION").ok())
                .ok_or_else(|| invalid("no region: add ?region=<region>".to_owned()))?;
            let location = dask_serverless_store::S3Location {
                bucket: bucket.to_owned(),
                prefix: url.path().trim_start_matches('/').to_owned(),
                region,
                endpoint: query("endpoint"),
            };
            Ok(Arc::new(dask_serverless_store::S3Store::new(location)?))
        }
        #[cfg(not(feature = "redis"))]
        "redis" | "rediss" => Err(not_built("Redis stores", "redis")),
        #[cfg(not(feature = "s3"))]
        "s3" => Err(not_built("S3 stores", "s3")),
        scheme => Err(invalid(format!(
            "unknown scheme '{scheme}': expected shm://, redis:// or s3://"
        ))),
    }
}

/// The error of a backend this build was compiled without.
#[allow(dead_code)] // unused when every backend is built
fn not_built(what: &str, feature: &str) -> RuntimeError {
    RuntimeError::Configuration(format!(
        "this build of dask-serverless has no support for {what}: build it with the cargo \
         feature `{feature}` (the Python package's default build has it)"
    ))
}

/// The store, invoker and result channel of a run.
#[derive(Debug, Clone)]
pub struct Connections {
    pub store: Arc<dyn Store>,
    pub invoker: Arc<dyn Invoker>,
    pub channel: Arc<dyn ResultChannel>,
}

impl Connections {
    /// Opens (or reuses, within this process) the connections a run context names, for the
    /// client.
    /// The client's store is patient (see [`PatientStore`]): the client has nobody to redo its
    /// work, so a transient store failure is tried again for longer than in a function.
    pub async fn for_context(context: &RunContext) -> Result<Connections, RuntimeError> {
        let mut connections = Self::for_party(context, "client").await?;
        connections.store = Arc::new(PatientStore::new(connections.store));
        Ok(connections)
    }

    /// The connections of one party of a run: the client, or an invocation (`party` names it:
    /// its batch and attempt), whose injected faults are its own.
    pub async fn for_party(context: &RunContext, party: &str) -> Result<Connections, RuntimeError> {
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
            return Ok(connections.with_chaos(chaos_of(context)?.map(|chaos| chaos.scoped(party))));
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
        Ok(connections.with_chaos(chaos_of(context)?.map(|chaos| chaos.scoped(party))))
    }

    /// These connections with `chaos`'s faults injected into the store, the invoker and the
    /// result channel.
    pub fn with_chaos(self, chaos: Option<Chaos>) -> Connections {
        let Some(chaos) = chaos else {
            return self;
        };
        Connections {
            store: Arc::new(ChaosStore::new(self.store, chaos.clone())),
            invoker: Arc::new(ChaosInvoker::new(self.invoker, chaos.clone())),
            channel: Arc::new(ChaosResultChannel::new(self.channel, chaos)),
        }
    }
}

/// The faults a run injects: its own chaos setting, or else the process's
/// `DASK_SERVERLESS_CHAOS`; `None` for a normal run.
pub fn chaos_of(context: &RunContext) -> Result<Option<Chaos>, RuntimeError> {
    match &context.chaos {
        Some(setting) => Chaos::parse(setting)
            .map(Some)
            .map_err(|error| RuntimeError::Configuration(error.to_string())),
        None => Ok(Chaos::from_environment()),
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
        #[cfg(not(feature = "aws"))]
        PlatformAddress::Aws { .. } => Err(not_built("AWS Lambda", "aws")),
        #[cfg(feature = "aws")]
        PlatformAddress::Aws {
            region,
            endpoint_url,
            queue_url,
        } => {
            use dask_serverless_aws::{AwsSettings, LambdaInvoker, SqsQueue};
            let settings = AwsSettings {
                region: Some(region.clone()),
                endpoint_url: endpoint_url.clone(),
                profile: None,
            };
            let invoker = LambdaInvoker::connect(&settings).await?;
            let queue = SqsQueue::connect(&settings, queue_url.clone()).await?;
            Ok((Arc::new(invoker), Arc::new(queue)))
        }
    }
}
