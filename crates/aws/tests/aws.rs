//! The AWS backend against real AWS. The test is ignored by default (it counts as ignored,
//! never as passed); run it with
//! `DASK_SERVERLESS_TEST_AWS=1 cargo test -p dask-serverless-aws --test aws -- --ignored`.
//!
//! Uses the standard credential chain and `DASK_SERVERLESS_TEST_AWS_REGION` (else `AWS_REGION`,
//! else `us-east-1`). Deploys a cluster with a tiny handler, invokes it both ways, receives a
//! failure record, destroys it and checks by tag that nothing is left. Costs a few cents at
//! most; a crashed run's leftovers are removed by `dask-serverless cleanup`.

mod common;

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use common::spec;
use dask_serverless_aws::{AwsSettings, ClusterId, Deployer, LambdaInvoker, SqsQueue, load_config};
use dask_serverless_platform::{Invoker, PlatformError, ResultChannel};
use serde_json::{Value, json};

/// The settings of the real-AWS tests; fails without `DASK_SERVERLESS_TEST_AWS=1`, the consent
/// to create and delete resources in the account.
fn settings() -> AwsSettings {
    assert_eq!(
        std::env::var("DASK_SERVERLESS_TEST_AWS").as_deref(),
        Ok("1"),
        "the real-AWS test creates and deletes resources in your account: set \
         DASK_SERVERLESS_TEST_AWS=1 to run it"
    );
    let region = std::env::var("DASK_SERVERLESS_TEST_AWS_REGION")
        .or_else(|_| std::env::var("AWS_REGION"))
        .unwrap_or_else(|_| "us-east-1".to_string());
    AwsSettings {
        region: Some(region),
        endpoint_url: None,
        profile: std::env::var("AWS_PROFILE").ok(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real AWS, costs cents: DASK_SERVERLESS_TEST_AWS=1 cargo test -p dask-serverless-aws --test aws -- --ignored"]
async fn deploy_invoke_and_destroy_on_aws() {
    let settings = settings();
    let config = load_config(&settings).await.expect("AWS configuration");
    let deployer = Deployer::new(&config).unwrap();
    let cluster = ClusterId::random();
    let spec = spec(cluster.as_str(), 0);
    let deployment = deployer.deploy(&spec).await.expect("deployment");
    let outcome = async {
        deployer
            .mark_seen(&deployment, SystemTime::now())
            .await
            .expect("the last-seen mark is renewed");
        let invoker = LambdaInvoker::new(&config);
        let answer = invoker
            .invoke_request_response(&deployment.function_name, Bytes::from(r#"{"x": 1}"#))
            .await?;
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(answer["echo"], json!({"x": 1}));
        let error = invoker
            .invoke_request_response(&deployment.function_name, Bytes::from(r#"{"fail": 1}"#))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, PlatformError::FunctionError { error_type, .. } if error_type == "ValueError"),
            "{error:?}"
        );
        invoker
            .invoke_event(&deployment.function_name, Bytes::from(r#"{"fail": "async"}"#))
            .await?;
        let queue = SqsQueue::new(&config, &deployment.queue_url);
        let started = Instant::now();
        let mut records = Vec::new();
        while records.is_empty() && started.elapsed() < Duration::from_secs(120) {
            records = queue.receive(Duration::from_secs(20)).await?;
        }
        assert_eq!(records.len(), 1, "no failure record within 2 minutes");
        let record: Value = serde_json::from_slice(&records[0]).unwrap();
        assert_eq!(record["responsePayload"]["errorType"], "ValueError");
        Ok::<(), PlatformError>(())
    }
    .await;
    let report = deployer.destroy(&deployment).await.expect("destroy");
    println!("{report}");
    outcome.expect("invocations");
    let found = deployer
        .leftovers(Some(cluster.as_str()), Duration::ZERO)
        .await
        .unwrap();
    assert!(
        found
            .to_delete
            .iter()
            .all(|resource| resource.kind != dask_serverless_aws::ResourceKind::Role),
        "roles remain: {found:?}"
    );
}
