//! The local platform as a whole: start, function registry, statistics and shutdown.
//!
//! [`LocalPlatform::start`] binds the listener of the Invoke API and queue service, starts serving it
//! and starts the limit enforcer. Functions are created and deleted through the returned
//! [`LocalPlatformHandle`] or over HTTP. Shutdown stops accepting invocations, deletes every function
//! (abandoning their invocations and killing every worker's process group), wakes every queue
//! long poll, stops serving and waits until every worker process has been reaped: nothing is left
//! running. Dropping the handle without shutting down still kills every worker's process group.
//!
//! The platform keeps its workers' progress files in a temporary directory of its own,
//! `dask-serverless-local-platform-<suffix>`, removed when the platform is dropped and marked
//! as owned while it lives, so that a cleanup after a dead client removes it only once its
//! owner is gone (see [`crate::leftovers`]). If the platform's process dies, its workers' process
//! groups die with it (see `lifeline`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::LocalPlatformError;
use crate::config::{FunctionConfig, LocalPlatformConfig};
use crate::function::Function;
use crate::leftovers::OwnerMark;
use crate::output::{InvocationLog, OutputCopy};
use crate::queue::QueueService;
use crate::statistics::{Counters, PlatformStatistics, add_gauges};
use crate::worker::{abandon, kill_process_group};

/// How long deletion and shutdown wait for killed workers to be reaped.
const REAP_WAIT: Duration = Duration::from_secs(10);
/// How long shutdown lets open HTTP requests finish.
const SERVE_GRACE: Duration = Duration::from_secs(2);

/// State shared by the HTTP handlers, the workers' supervisors and the limit enforcer.
#[derive(Debug)]
pub(crate) struct Shared {
    functions: Mutex<HashMap<String, Arc<Function>>>,
    pub(crate) queues: QueueService,
    pub(crate) statistics: Counters,
    pub(crate) worker_output: OutputCopy,
    /// Interpreter for functions created over HTTP without a command.
    pub(crate) python: PathBuf,
    /// Added to every function's environment.
    environment: Vec<(String, String)>,
    progress_directory: tempfile::TempDir,
    /// Tells later cleanups that the progress directory is in use (see `leftovers`).
    _progress_directory_mark: OwnerMark,
    shutting_down: AtomicBool,
}

impl Shared {
    fn functions(&self) -> MutexGuard<'_, HashMap<String, Arc<Function>>> {
        self.functions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn function(&self, name: &str) -> Option<Arc<Function>> {
        self.functions().get(name).cloned()
    }

    pub(crate) fn function_list(&self) -> Vec<Arc<Function>> {
        self.functions().values().cloned().collect()
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    pub(crate) fn create_function(
        &self,
        mut config: FunctionConfig,
    ) -> Result<Arc<Function>, LocalPlatformError> {
        config.environment.extend(self.environment.iter().cloned());
        if self.is_shutting_down() {
            return Err(LocalPlatformError::ShuttingDown);
        }
        config.validate()?;
        let mut functions = self.functions();
        if functions.contains_key(&config.name) {
            return Err(LocalPlatformError::FunctionExists { name: config.name });
        }
        if let Some(queue) = &config.on_failure_queue {
            self.queues.create(queue);
        }
        let function = Arc::new(Function::new(config, self.progress_directory.path()));
        functions.insert(function.config.name.clone(), Arc::clone(&function));
        Ok(function)
    }

    /// Removes a function, abandons its invocations and waits until its workers are reaped.
    pub(crate) async fn delete_function(
        &self,
        name: &str,
        reason: &str,
    ) -> Result<(), LocalPlatformError> {
        let function =
            self.functions()
                .remove(name)
                .ok_or_else(|| LocalPlatformError::FunctionNotFound {
                    name: name.to_string(),
                })?;
        let abandoned = function.delete();
        abandon(self, &function, abandoned, reason);
        wait_for_workers(&function).await;
        Ok(())
    }

    pub(crate) fn statistics(&self) -> PlatformStatistics {
        let mut statistics = self.statistics.snapshot();
        for function in self.function_list() {
            add_gauges(&mut statistics, &function.lock());
        }
        statistics
    }

    pub(crate) fn function_statistics(&self, name: &str) -> Option<PlatformStatistics> {
        let function = self.function(name)?;
        let mut statistics = function.statistics.snapshot();
        add_gauges(&mut statistics, &function.lock());
        Some(statistics)
    }

    /// SIGKILL to every worker's process group, without waiting.
    fn kill_every_worker(&self) {
        for function in self.function_list() {
            let state = function.lock();
            for worker in state.workers.values() {
                if let Some(process_group) = worker.process_group {
                    kill_process_group(process_group);
                }
            }
        }
    }
}

/// Waits (bounded) until every worker of a deleted function has been reaped and removed.
async fn wait_for_workers(function: &Function) {
    let deadline = tokio::time::Instant::now() + REAP_WAIT;
    loop {
        let remaining: Vec<u32> = {
            let state = function.lock();
            if state.workers.is_empty() {
                return;
            }
            state
                .workers
                .values()
                .filter_map(|worker| worker.process_group)
                .collect()
        };
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                function = %function.config.name,
                "workers {remaining:?} were not reaped within {REAP_WAIT:?}"
            );
            return;
        }
        // Workers launched after the deletion are killed by their launcher; kill again in case.
        for process_group in remaining {
            kill_process_group(process_group);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The local Lambda-compatible platform.
#[derive(Debug)]
pub struct LocalPlatform;

impl LocalPlatform {
    /// Binds the configured address and starts serving the Invoke API and the queue service on
    /// the current tokio runtime (which must be multi-threaded or stay alive as long as the
    /// platform: workers die with the thread that launched them).
    pub async fn start(
        config: LocalPlatformConfig,
    ) -> Result<LocalPlatformHandle, LocalPlatformError> {
        let listener =
            TcpListener::bind(config.bind)
                .await
                .map_err(|source| LocalPlatformError::Bind {
                    address: config.bind,
                    source,
                })?;
        let address = listener
            .local_addr()
            .map_err(|source| LocalPlatformError::Bind {
                address: config.bind,
                source,
            })?;
        let progress_directory = tempfile::Builder::new()
            .prefix("dask-serverless-local-platform-")
            .tempdir()
            .map_err(|source| LocalPlatformError::Io {
                what: "could not create the progress directory".to_string(),
                source,
            })?;
        let progress_directory_mark =
            OwnerMark::claim(progress_directory.path()).map_err(|source| {
                LocalPlatformError::Io {
                    what: format!(
                        "could not mark the progress directory {}",
                        progress_directory.path().display()
                    ),
                    source,
                }
            })?;
        let worker_output =
            OutputCopy::open(&config.worker_output).map_err(|source| LocalPlatformError::Io {
                what: format!("could not open the worker log {:?}", config.worker_output),
                source,
            })?;
        let shared = Arc::new(Shared {
            functions: Mutex::new(HashMap::new()),
            queues: QueueService::new(format!("http://{address}")),
            statistics: Counters::default(),
            worker_output,
            python: config.python,
            environment: config.environment,
            progress_directory,
            _progress_directory_mark: progress_directory_mark,
            shutting_down: AtomicBool::new(false),
        });
        let (stop_serving, stopped) = oneshot::channel::<()>();
        let router = crate::invoke_api::router(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(error) = served {
                tracing::error!("the local platform stopped serving: {error}");
            }
        });
        let enforcer = tokio::spawn(crate::limits::enforce_limits(Arc::clone(&shared)));
        tracing::info!("local platform listening on http://{address}");
        Ok(LocalPlatformHandle {
            shared,
            address,
            server: Some(server),
            stop_serving: Some(stop_serving),
            enforcer,
        })
    }
}

/// A running platform. Shut it down with [`LocalPlatformHandle::shutdown`]; dropping it kills the
/// workers but cannot wait for them.
#[derive(Debug)]
pub struct LocalPlatformHandle {
    shared: Arc<Shared>,
    address: SocketAddr,
    server: Option<JoinHandle<()>>,
    stop_serving: Option<oneshot::Sender<()>>,
    enforcer: JoinHandle<()>,
}

impl LocalPlatformHandle {
    /// The address of the Invoke API and queue service.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://<address>`, the endpoint to give clients.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The URL of a queue of the queue service (which need not exist yet).
    pub fn queue_url(&self, name: &str) -> String {
        self.shared.queues.url(name)
    }

    /// Creates a function; its workers start on its first invocations.
    pub async fn create_function(&self, config: FunctionConfig) -> Result<(), LocalPlatformError> {
        self.shared.create_function(config).map(drop)
    }

    /// Deletes a function: abandons its invocations, kills its workers and waits for them.
    pub async fn delete_function(&self, name: &str) -> Result<(), LocalPlatformError> {
        self.shared
            .delete_function(name, &format!("function '{name}' was deleted"))
            .await
    }

    /// Stops every invocation of a function now: kills the workers running one (their
    /// invocations end as `Runtime.Abandoned` failures) and drops its queued events. Idle
    /// workers stay warm. Returns how many invocations were stopped.
    pub fn stop_invocations(&self, name: &str) -> Result<usize, LocalPlatformError> {
        let function =
            self.shared
                .function(name)
                .ok_or_else(|| LocalPlatformError::FunctionNotFound {
                    name: name.to_string(),
                })?;
        let stopped = function.stop_invocations();
        let count = stopped.len();
        abandon(
            &self.shared,
            &function,
            stopped,
            &format!("the invocations of function '{name}' were stopped"),
        );
        Ok(count)
    }

    /// What the invocations of a function submitted at `since` or later printed, in the order
    /// they were assigned to workers (see the `output` module: the last
    /// [`KEPT_INVOCATIONS`](crate::output::KEPT_INVOCATIONS) invocations of the function, the
    /// last [`KEPT_BYTES_PER_INVOCATION`](crate::output::KEPT_BYTES_PER_INVOCATION) bytes of
    /// each).
    pub fn invocation_logs(
        &self,
        name: &str,
        since: SystemTime,
    ) -> Result<Vec<InvocationLog>, LocalPlatformError> {
        let function =
            self.shared
                .function(name)
                .ok_or_else(|| LocalPlatformError::FunctionNotFound {
                    name: name.to_string(),
                })?;
        Ok(function.outputs.since(since))
    }

    /// The configurations of the functions hosted now, by name.
    pub fn functions(&self) -> Vec<FunctionConfig> {
        let mut configs: Vec<FunctionConfig> = self
            .shared
            .function_list()
            .iter()
            .map(|function| function.config.clone())
            .collect();
        configs.sort_by(|left, right| left.name.cmp(&right.name));
        configs
    }

    /// Counters for the whole platform (including deleted functions) and current gauges.
    pub fn statistics(&self) -> PlatformStatistics {
        self.shared.statistics()
    }

    /// Counters and gauges of one function.
    pub fn function_statistics(&self, name: &str) -> Option<PlatformStatistics> {
        self.shared.function_statistics(name)
    }

    /// Process ids of every live worker.
    pub fn worker_process_ids(&self) -> Vec<u32> {
        self.collect_from_workers(|worker| worker.process_id)
    }

    /// Process groups of every live worker: each is the process id of the worker's keeper,
    /// which leads the group (see the `worker` module).
    pub fn worker_process_groups(&self) -> Vec<u32> {
        self.collect_from_workers(|worker| worker.process_group)
    }

    fn collect_from_workers(
        &self,
        field: impl Fn(&crate::function::Worker) -> Option<u32>,
    ) -> Vec<u32> {
        let mut values = Vec::new();
        for function in self.shared.function_list() {
            values.extend(function.lock().workers.values().filter_map(&field));
        }
        values.sort_unstable();
        values
    }

    /// Stops serving, kills every worker's process group and waits for the workers: when this
    /// returns nothing the local platform started is still running.
    pub async fn shutdown(mut self) {
        self.shared.shutting_down.store(true, Ordering::SeqCst);
        let names: Vec<String> = self
            .shared
            .function_list()
            .iter()
            .map(|function| function.config.name.clone())
            .collect();
        for name in names {
            let _ = self
                .shared
                .delete_function(&name, "the local platform is shutting down")
                .await;
        }
        self.shared.queues.close();
        if let Some(stop_serving) = self.stop_serving.take() {
            let _ = stop_serving.send(());
        }
        if let Some(mut server) = self.server.take()
            && tokio::time::timeout(SERVE_GRACE, &mut server)
                .await
                .is_err()
        {
            server.abort();
        }
        self.enforcer.abort();
        tracing::info!("local platform at http://{} shut down", self.address);
    }
}

impl Drop for LocalPlatformHandle {
    fn drop(&mut self) {
        if self.server.is_some() {
            // Not shut down: make sure no worker outlives the handle.
            self.shared.shutting_down.store(true, Ordering::SeqCst);
            for function in self.shared.function_list() {
                let abandoned = function.delete();
                abandon(
                    &self.shared,
                    &function,
                    abandoned,
                    "the local platform was dropped",
                );
            }
            self.shared.kill_every_worker();
            self.shared.queues.close();
            if let Some(server) = self.server.take() {
                server.abort();
            }
        }
        self.enforcer.abort();
    }
}
