//! The platform conformance suite against the local platform (started in-process, running the
//! suite's handler in Python workers): as it is, and under chaos (throttles, duplicate
//! deliveries, failing sends and receives).

mod support;

use std::sync::Arc;

use dask_serverless_platform::conformance::{Backend, run_all};
use dask_serverless_platform::{Chaos, ChaosInvoker, ChaosResultChannel, LocalQueue};
use support::LocalBackend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_platform_conforms() {
    let local = LocalBackend::start(4).await;
    let endpoint = local.platform.endpoint();
    run_all(&Backend {
        invoker: &local.invoker,
        channel: &local.queue,
        function: &local.function,
        queue_endpoint: &endpoint,
        queue_url: &local.queue_url,
        chaos: None,
    })
    .await;
    local.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_platform_conforms_under_chaos() {
    let local = LocalBackend::start(4).await;
    let endpoint = local.platform.endpoint();
    // Every event delivered twice (at once or late), half of the invocations throttled in
    // bursts, three tries in ten of a send or receive failing.
    let chaos = Chaos::parse("throttle=0.5,duplicate=1,channel=0.3;seed=11").unwrap();
    let invoker = ChaosInvoker::new(Arc::new(local.invoker.clone()), chaos.clone());
    let queue = ChaosResultChannel::new(
        Arc::new(LocalQueue::new(&endpoint, local.queue.queue_name())),
        chaos.clone(),
    );
    run_all(&Backend {
        invoker: &invoker,
        channel: &queue,
        function: &local.function,
        queue_endpoint: &endpoint,
        queue_url: &local.queue_url,
        chaos: Some(&chaos),
    })
    .await;
    local.shutdown().await;
}
