//! The platform conformance suite against the AWS backend on MiniStack: [`LambdaInvoker`] and
//! [`SqsQueue`] against a deployment of the suite's handler (MiniStack runs it as a Python
//! Lambda function), as they are and under chaos (throttles, duplicate deliveries, failing
//! sends and receives). Each test starts its own server; a missing MiniStack fails the test.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{MiniStack, free_port, zip};
use dask_serverless_aws::{
    ClusterId, Deployer, Deployment, DeploymentSpec, LambdaInvoker, SqsQueue,
};
use dask_serverless_platform::conformance::{
    Backend, HANDLER, HANDLER_ENTRY, HANDLER_MODULE, run_all,
};
use dask_serverless_platform::{
    ASYNCHRONOUS_PAYLOAD_LIMIT, Chaos, ChaosInvoker, ChaosResultChannel, Invoker, PlatformError,
    SYNCHRONOUS_PAYLOAD_LIMIT,
};

const REGION: &str = "eu-west-1";

/// The suite's handler deployed as the function of a cluster, with its queue.
async fn deploy(ministack: &MiniStack, cluster: &str) -> (Deployer, Deployment) {
    let config = ministack.config(REGION).await;
    let deployer = Deployer::new(&config).unwrap();
    let module = format!("{HANDLER_MODULE}.py");
    let mut spec = DeploymentSpec::new(
        ClusterId::new(cluster).expect("a valid cluster id"),
        zip(&[(module.as_str(), HANDLER.as_bytes())]),
        HANDLER_ENTRY,
    );
    spec.memory_mb = 256;
    spec.timeout = Duration::from_secs(60);
    let deployment = deployer.deploy(&spec).await.expect("the deployment");
    (deployer, deployment)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_and_sqs_on_ministack_conform() {
    let ministack = MiniStack::start();
    let config = ministack.config(REGION).await;
    let (deployer, deployment) = deploy(&ministack, "conformance").await;
    let invoker = LambdaInvoker::new(&config);
    let queue = SqsQueue::new(&config, &deployment.queue_url);
    run_all(&Backend {
        invoker: &invoker,
        channel: &queue,
        function: &deployment.function_name,
        queue_endpoint: &ministack.endpoint,
        queue_url: &deployment.queue_url,
        chaos: None,
    })
    .await;
    deployer.destroy(&deployment).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_and_sqs_on_ministack_conform_under_chaos() {
    let ministack = MiniStack::start();
    let config = ministack.config(REGION).await;
    let (deployer, deployment) = deploy(&ministack, "conformance-chaos").await;
    let chaos = Chaos::parse("throttle=0.5,duplicate=1,channel=0.3;seed=12").unwrap();
    let invoker = ChaosInvoker::new(Arc::new(LambdaInvoker::new(&config)), chaos.clone());
    let queue = ChaosResultChannel::new(
        Arc::new(SqsQueue::new(&config, &deployment.queue_url)),
        chaos.clone(),
    );
    run_all(&Backend {
        invoker: &invoker,
        channel: &queue,
        function: &deployment.function_name,
        queue_endpoint: &ministack.endpoint,
        queue_url: &deployment.queue_url,
        chaos: Some(&chaos),
    })
    .await;
    deployer.destroy(&deployment).await.unwrap();
}

/// MiniStack does not check payload sizes, so the invoker must: an endpoint with nothing
/// listening proves that no request is made.
#[tokio::test]
async fn payloads_over_the_limits_are_refused_without_a_request() {
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let config = common::loader_with("test", "test")
        .region(aws_config::Region::new(REGION))
        .endpoint_url(&endpoint)
        .load()
        .await;
    let invoker = LambdaInvoker::new(&config);
    let error = invoker
        .invoke_event("f", Bytes::from(vec![b' '; ASYNCHRONOUS_PAYLOAD_LIMIT + 1]))
        .await
        .unwrap_err();
    assert_eq!(
        error,
        PlatformError::PayloadTooLarge {
            size: ASYNCHRONOUS_PAYLOAD_LIMIT + 1,
            limit: ASYNCHRONOUS_PAYLOAD_LIMIT
        }
    );
    let error = invoker
        .invoke_request_response("f", Bytes::from(vec![b' '; SYNCHRONOUS_PAYLOAD_LIMIT + 1]))
        .await
        .unwrap_err();
    assert_eq!(
        error,
        PlatformError::PayloadTooLarge {
            size: SYNCHRONOUS_PAYLOAD_LIMIT + 1,
            limit: SYNCHRONOUS_PAYLOAD_LIMIT
        }
    );
    // The same endpoint, with a payload within the limit: a request, which finds nobody.
    let error = invoker
        .invoke_event("f", Bytes::from_static(b"{}"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, PlatformError::Unavailable { .. }),
        "{error:?}"
    );
}
