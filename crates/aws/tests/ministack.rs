//! The AWS backend end to end against MiniStack, a local AWS-compatible server: deploy,
//! invoke, receive, destroy, clean up, and the failures a user meets first.
//!
//! Each test starts its own server (see `common`), so tests are independent. They fail (never
//! skip) when MiniStack cannot be found, with an install hint.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_config::SdkConfig;
use bytes::Bytes;
use common::{MiniStack, free_port, loader_with, spec};
use dask_serverless_aws::{
    AwsError, AwsSettings, ClusterId, DEFAULT_OLDER_THAN, Deployer, Deployment, InvocationLog,
    LAST_SEEN_TAG, LambdaInvoker, ResourceKind, SqsQueue, load_config_from,
};
use dask_serverless_platform::{Invoker, PlatformError, ResultChannel, RetryPolicy};
use serde_json::{Value, json};

const REGION: &str = "eu-west-1";
/// `older_than` for "every cluster, live or not".
const EVERY_CLUSTER: Duration = Duration::ZERO;

/// Receives until `count` messages came or `within` passed.
async fn receive_at_least(queue: &SqsQueue, count: usize, within: Duration) -> Vec<Value> {
    let started = Instant::now();
    let mut received = Vec::new();
    while received.len() < count && started.elapsed() < within {
        for message in queue.receive(Duration::from_secs(1)).await.unwrap() {
            received.push(serde_json::from_slice(&message).expect("JSON messages"));
        }
    }
    received
}

/// Asserts through the APIs themselves that nothing of `deployment` remains.
async fn assert_gone(config: &SdkConfig, deployment: &Deployment) {
    let lambda = aws_sdk_lambda::Client::new(config);
    let function = lambda
        .get_function()
        .function_name(&deployment.function_name)
        .send()
        .await;
    assert!(
        function.is_err(),
        "function {} remains",
        deployment.function_name
    );
    let iam = aws_sdk_iam::Client::new(config);
    let roles = iam
        .list_roles()
        .path_prefix("/dask-serverless/")
        .send()
        .await
        .unwrap();
    assert!(
        roles
            .roles()
            .iter()
            .all(|role| role.role_name() != deployment.role_name),
        "role {} remains",
        deployment.role_name
    );
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(true)
            .build(),
    );
    let buckets = s3.list_buckets().send().await.unwrap();
    assert!(
        buckets
            .buckets()
            .iter()
            .all(|bucket| bucket.name() != Some(deployment.bucket.as_str())),
        "bucket {} remains",
        deployment.bucket
    );
    let sqs = aws_sdk_sqs::Client::new(config);
    let queues = sqs
        .list_queues()
        .queue_name_prefix("dask-serverless-")
        .send()
        .await
        .unwrap();
    assert!(
        !queues.queue_urls().contains(&deployment.queue_url),
        "queue {} remains",
        deployment.queue_url
    );
    let logs = aws_sdk_cloudwatchlogs::Client::new(config);
    let groups = logs
        .describe_log_groups()
        .log_group_name_prefix(deployment.log_group())
        .send()
        .await
        .unwrap();
    assert!(
        groups.log_groups().is_empty(),
        "log group {} remains",
        deployment.log_group()
    );
    let tagging = aws_sdk_resourcegroupstagging::Client::new(config);
    let tagged = tagging
        .get_resources()
        .tag_filters(
            aws_sdk_resourcegroupstagging::types::TagFilter::builder()
                .key("dask-serverless:cluster")
                .values(deployment.cluster_id.as_str())
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(
        tagged.resource_tag_mapping_list().is_empty(),
        "tagged resources remain: {:?}",
        tagged.resource_tag_mapping_list()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_invoke_receive_and_destroy() {
    let ministack = MiniStack::start();
    let config = ministack.config(REGION).await;
    // Seeded waits: a failure here replays with the same delays.
    let deployer = Deployer::new(&config).unwrap().with_jitter_seed(1);
    let mut spec = spec("first", 0);
    spec.max_concurrency = Some(5);
    let deployment = deployer.deploy(&spec).await.unwrap();
    assert_eq!(deployment.function_name, "dask-serverless-first");
    assert_eq!(deployment.role_name, "dask-serverless-first");
    assert_eq!(
        deployment.bucket,
        format!("dask-serverless-first-{}", deployment.account_id)
    );
    assert!(deployment.queue_url.ends_with("/dask-serverless-first"));
    assert!(
        deployment
            .role_arn
            .contains(":role/dask-serverless/dask-serverless-first")
    );
    assert_eq!(
        deployment.endpoint_url.as_deref(),
        Some(ministack.endpoint.as_str())
    );

    // The deployment is a record that survives the process: it round-trips through JSON.
    let record = serde_json::to_string(&deployment).unwrap();
    assert_eq!(
        serde_json::from_str::<Deployment>(&record).unwrap(),
        deployment
    );

    // A second deployment of the same cluster id stops before touching anything.
    let again = deployer.deploy(&spec).await.unwrap_err();
    assert!(matches!(again, AwsError::AlreadyExists { .. }), "{again}");

    // Synchronous invocation: the handler's answer, with the function's environment.
    let invoker = LambdaInvoker::new(&config);
    let answer = invoker
        .invoke_request_response(&deployment.function_name, Bytes::from(r#"{"x": 1}"#))
        .await
        .unwrap();
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer, json!({"echo": {"x": 1}, "setting": "on"}));

    // A handler error of a synchronous invocation keeps its message.
    let error = invoker
        .invoke_request_response(
            &deployment.function_name,
            Bytes::from(r#"{"fail": "sync"}"#),
        )
        .await
        .unwrap_err();
    let PlatformError::FunctionError {
        error_type,
        message,
    } = &error
    else {
        panic!("expected a function error, got {error:?}");
    };
    assert!(!error_type.is_empty());
    assert!(message.contains("asked to fail: sync"), "{message}");

    // An unknown function.
    let error = invoker
        .invoke_request_response("dask-serverless-nobody", Bytes::from("{}"))
        .await
        .unwrap_err();
    assert!(matches!(error, PlatformError::NotFound { .. }), "{error:?}");

    // Asynchronous invocations run, and reply on the result channel.
    let queue = SqsQueue::new(&config, &deployment.queue_url);
    let started = SystemTime::now();
    for token in 0..3 {
        let payload = json!({"reply_to": deployment.queue_url, "token": token});
        invoker
            .invoke_event(&deployment.function_name, Bytes::from(payload.to_string()))
            .await
            .unwrap();
    }
    let replies = receive_at_least(&queue, 3, Duration::from_secs(60)).await;
    let tokens: BTreeSet<i64> = replies
        .iter()
        .map(|reply| {
            reply["reply"]
                .as_i64()
                .unwrap_or_else(|| panic!("not a reply: {reply}"))
        })
        .collect();
    assert_eq!(tokens, BTreeSet::from([0, 1, 2]));

    // A failing asynchronous invocation reaches the queue as a destination record.
    let payload = json!({"fail": "async"});
    invoker
        .invoke_event(&deployment.function_name, Bytes::from(payload.to_string()))
        .await
        .unwrap();
    let records = receive_at_least(&queue, 1, Duration::from_secs(60)).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(record["requestPayload"], payload);
    assert!(record["requestContext"].is_object(), "{record}");
    assert!(record["responseContext"].is_object(), "{record}");
    assert!(
        record["responsePayload"]["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("asked to fail: async"),
        "{record}"
    );
    assert!(
        record["responsePayload"]["errorType"].is_string(),
        "{record}"
    );

    // What each invocation printed, from the function's log group, cut per invocation.
    let logs = deployer
        .invocation_logs(&deployment, started)
        .await
        .unwrap();
    let printed: Vec<&InvocationLog> = logs
        .iter()
        .filter(|log| log.text.contains("printed for token"))
        .collect();
    assert_eq!(printed.len(), 3, "{logs:#?}");
    for token in 0..3 {
        let line = format!("printed for token {token} on stdout\n");
        let log = printed
            .iter()
            .find(|log| log.text.contains(&line))
            .unwrap_or_else(|| panic!("no invocation printed {line:?}: {logs:#?}"));
        // Both streams, under the invocation that printed them, and nothing of the others.
        assert!(
            log.text
                .contains(&format!("printed for token {token} on stderr\n")),
            "{log:#?}"
        );
        assert_eq!(log.text.matches("printed for token").count(), 2, "{log:#?}");
        assert!(!log.text.contains("START RequestId"), "{log:#?}");
        assert!(
            log.text
                .contains(&format!("REPORT RequestId: {}", log.request_id)),
            "{log:#?}"
        );
        assert!(log.started >= started - dask_serverless_aws::CLOCK_MARGIN);
    }
    let ids: BTreeSet<&str> = logs.iter().map(|log| log.request_id.as_str()).collect();
    assert_eq!(
        ids.len(),
        logs.len(),
        "one record per invocation: {logs:#?}"
    );
    // Invocations before the moment asked for are left out.
    let later = deployer
        .invocation_logs(&deployment, SystemTime::now() + Duration::from_secs(5))
        .await
        .unwrap();
    assert!(later.is_empty(), "{later:#?}");

    // Destroy deletes everything, then finds everything gone.
    let report = deployer.destroy(&deployment).await.unwrap();
    let kinds: BTreeSet<ResourceKind> = report
        .deleted
        .iter()
        .map(|resource| resource.kind)
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            ResourceKind::EventInvokeConfig,
            ResourceKind::Function,
            ResourceKind::LogGroup,
            ResourceKind::Queue,
            ResourceKind::Bucket,
            ResourceKind::RolePolicy,
            ResourceKind::Role
        ]),
        "{report}"
    );
    assert_eq!(report.objects_deleted, 1, "{report}");
    assert_gone(&config, &deployment).await;
    // Its logs went with it.
    assert!(
        deployer
            .invocation_logs(&deployment, started)
            .await
            .unwrap()
            .is_empty()
    );
    let again = deployer.destroy(&deployment).await.unwrap();
    assert!(again.deleted.is_empty(), "{again}");
    assert_eq!(again.already_gone.len(), 6, "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_result_channel_batches_and_round_trips_messages() {
    let ministack = MiniStack::start();
    let config = ministack.config(REGION).await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let queue_url = sqs
        .create_queue()
        .queue_name("round-trip")
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let queue = SqsQueue::new(&config, &queue_url);

    // Nothing to receive: an empty list after about the wait.
    let started = Instant::now();
    assert!(
        queue
            .receive(Duration::from_millis(500))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // 25 small messages and 3 large ones: several batches by count and by size.
    let mut sent: Vec<String> = (0..25)
        .map(|index| format!("{{\"small\": {index}}}"))
        .collect();
    for index in 0..3 {
        sent.push(format!(
            "{{\"large\": {index}, \"fill\": \"{}\"}}",
            "x".repeat(400_000)
        ));
    }
    queue
        .send(sent.iter().cloned().map(Bytes::from).collect())
        .await
        .unwrap();
    let started = Instant::now();
    let mut received = Vec::new();
    while received.len() < sent.len() && started.elapsed() < Duration::from_secs(30) {
        for message in queue.receive(Duration::from_secs(1)).await.unwrap() {
            received.push(String::from_utf8(message.to_vec()).unwrap());
        }
    }
    received.sort();
    sent.sort();
    assert_eq!(received.len(), sent.len());
    assert_eq!(received, sent);
    // Received messages were deleted.
    assert!(queue.receive(Duration::ZERO).await.unwrap().is_empty());

    // Limits are checked before sending.
    let too_large = Bytes::from(vec![b'x'; 1_048_577]);
    let error = queue.send(vec![too_large]).await.unwrap_err();
    assert!(
        matches!(error, PlatformError::PayloadTooLarge { .. }),
        "{error:?}"
    );
    let error = queue
        .send(vec![Bytes::from_static(&[0xff, 0xfe])])
        .await
        .unwrap_err();
    assert!(matches!(error, PlatformError::Protocol { .. }), "{error:?}");

    // A queue that does not exist.
    let missing = SqsQueue::new(&config, format!("{}-missing", queue_url));
    let error = missing.receive(Duration::ZERO).await.unwrap_err();
    assert!(matches!(error, PlatformError::NotFound { .. }), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_finds_leftovers_by_tag_cluster_by_cluster() {
    let ministack = MiniStack::start();
    let config = ministack.config(REGION).await;
    let deployer = Deployer::new(&config).unwrap();
    // The first zip is over 8 MiB: its upload is a multipart one.
    let first = deployer
        .deploy(&spec("alpha", 9 * 1024 * 1024))
        .await
        .unwrap();
    let second = deployer.deploy(&spec("beta", 0)).await.unwrap();
    let answer = LambdaInvoker::new(&config)
        .invoke_request_response(&first.function_name, Bytes::from("{}"))
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&answer).unwrap()["setting"],
        "on"
    );

    let found = deployer
        .leftovers(Some("alpha"), EVERY_CLUSTER)
        .await
        .unwrap();
    assert!(found.skipped.is_empty(), "{found:?}");
    let names: BTreeSet<String> = found.to_delete.iter().map(ToString::to_string).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "event invoke config of function dask-serverless-alpha".to_string(),
            "function dask-serverless-alpha".to_string(),
            // Found by name (Lambda made it untagged at the invocation above).
            "log group /aws/lambda/dask-serverless-alpha".to_string(),
            format!("queue {}", first.queue_url),
            format!("bucket {}", first.bucket),
            "role dask-serverless-alpha".to_string(),
        ])
    );
    let found = deployer.leftovers(None, EVERY_CLUSTER).await.unwrap();
    assert_eq!(found.to_delete.len(), 11);

    let report = deployer
        .cleanup(Some("alpha"), EVERY_CLUSTER)
        .await
        .unwrap();
    assert!(report.skipped.is_empty(), "{report}");
    assert!(report.deleted.deleted.len() >= 6, "{report}");
    assert!(
        report
            .deleted
            .deleted
            .iter()
            .any(|resource| resource.kind == ResourceKind::LogGroup),
        "{report}"
    );
    assert!(
        report
            .deleted
            .deleted
            .iter()
            .all(|resource| resource.name.contains("alpha")),
        "{report}"
    );
    assert_gone(&config, &first).await;
    let found = deployer
        .leftovers(Some("beta"), EVERY_CLUSTER)
        .await
        .unwrap();
    assert_eq!(found.to_delete.len(), 5);
    // The other cluster still works.
    LambdaInvoker::new(&config)
        .invoke_request_response(&second.function_name, Bytes::from("{}"))
        .await
        .unwrap();

    let report = deployer.cleanup(None, EVERY_CLUSTER).await.unwrap();
    assert!(
        report
            .deleted
            .deleted
            .iter()
            .all(|resource| resource.name.contains("beta")),
        "{report}"
    );
    assert_gone(&config, &second).await;
    let found = deployer.leftovers(None, EVERY_CLUSTER).await.unwrap();
    assert!(found.to_delete.is_empty(), "{found:?}");
    let report = deployer.cleanup(None, EVERY_CLUSTER).await.unwrap();
    assert_eq!(report.to_string(), "nothing to delete\n");

    // Cluster ids are checked.
    let error = deployer
        .cleanup(Some("Not Valid"), EVERY_CLUSTER)
        .await
        .unwrap_err();
    assert!(matches!(error, AwsError::InvalidInput(_)), "{error}");
}

/// Sets the last-seen mark of every resource of `deployment` to `seen`, through each service's
/// own tagging call: what a client that died at `seen` left behind.
async fn set_last_seen(config: &SdkConfig, deployment: &Deployment, seen: SystemTime) {
    let mark = seen
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    aws_sdk_lambda::Client::new(config)
        .tag_resource()
        .resource(&deployment.function_arn)
        .tags(LAST_SEEN_TAG, &mark)
        .send()
        .await
        .unwrap();
    aws_sdk_sqs::Client::new(config)
        .tag_queue()
        .queue_url(&deployment.queue_url)
        .tags(LAST_SEEN_TAG, &mark)
        .send()
        .await
        .unwrap();
    aws_sdk_iam::Client::new(config)
        .tag_role()
        .role_name(&deployment.role_name)
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key(LAST_SEEN_TAG)
                .value(&mark)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    // A bucket's tags are replaced as a whole.
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(true)
            .build(),
    );
    let tags = s3
        .get_bucket_tagging()
        .bucket(&deployment.bucket)
        .send()
        .await
        .unwrap();
    let mut tag_set: Vec<aws_sdk_s3::types::Tag> = tags
        .tag_set()
        .iter()
        .filter(|tag| tag.key() != LAST_SEEN_TAG)
        .cloned()
        .collect();
    assert_eq!(tag_set.len(), 3, "{tag_set:?}");
    tag_set.push(
        aws_sdk_s3::types::Tag::builder()
            .key(LAST_SEEN_TAG)
            .value(&mark)
            .build()
            .unwrap(),
    );
    s3.put_bucket_tagging()
        .bucket(&deployment.bucket)
        .tagging(
            aws_sdk_s3::types::Tagging::builder()
                .set_tag_set(Some(tag_set))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_leaves_clusters_seen_recently_alone() {
    let ministack = MiniStack::start();
    let config = ministack.config(REGION).await;
    let deployer = Deployer::new(&config).unwrap();
    let live = deployer.deploy(&spec("live", 0)).await.unwrap();
    let dead = deployer.deploy(&spec("dead", 0)).await.unwrap();
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3_600);
    set_last_seen(&config, &dead, an_hour_ago).await;

    // Every resource got a mark at its creation: the new cluster is live, the other is not.
    let found = deployer.leftovers(None, DEFAULT_OLDER_THAN).await.unwrap();
    assert_eq!(found.skipped.len(), 1, "{found:?}");
    assert_eq!(found.skipped[0].cluster, "live");
    assert!(
        found.skipped[0].seen_ago < Duration::from_secs(60),
        "{found:?}"
    );
    assert_eq!(found.to_delete.len(), 5, "{found:?}");
    assert!(
        found
            .to_delete
            .iter()
            .all(|resource| resource.name.contains("dead")),
        "{found:?}"
    );

    // A cluster is judged by its freshest mark: all old but the function's, renewed, is live.
    set_last_seen(&config, &live, an_hour_ago).await;
    let found = deployer
        .leftovers(Some("live"), DEFAULT_OLDER_THAN)
        .await
        .unwrap();
    assert!(found.skipped.is_empty(), "{found:?}");
    assert_eq!(found.to_delete.len(), 5, "{found:?}");
    deployer.mark_seen(&live, SystemTime::now()).await.unwrap();
    let found = deployer
        .leftovers(Some("live"), DEFAULT_OLDER_THAN)
        .await
        .unwrap();
    assert_eq!(found.skipped.len(), 1, "{found:?}");
    assert!(found.to_delete.is_empty(), "{found:?}");
    // ... unless the cleanup asks for more than its age.
    let found = deployer
        .leftovers(Some("live"), Duration::from_secs(0))
        .await
        .unwrap();
    assert!(found.skipped.is_empty(), "{found:?}");
    assert_eq!(found.to_delete.len(), 5, "{found:?}");

    // The cleanup deletes the dead cluster and leaves the live one working.
    let report = deployer.cleanup(None, DEFAULT_OLDER_THAN).await.unwrap();
    assert_eq!(report.skipped.len(), 1, "{report}");
    assert!(
        report
            .to_string()
            .starts_with("skipped cluster live: its client was seen "),
        "{report}"
    );
    assert_eq!(report.deleted.deleted.len(), 6, "{report}");
    assert_gone(&config, &dead).await;
    LambdaInvoker::new(&config)
        .invoke_request_response(&live.function_name, Bytes::from("{}"))
        .await
        .unwrap();

    // Naming the cluster is not enough to delete it while its client is seen...
    let report = deployer
        .cleanup(Some("live"), DEFAULT_OLDER_THAN)
        .await
        .unwrap();
    assert_eq!(report.skipped.len(), 1, "{report}");
    assert!(report.deleted.deleted.is_empty(), "{report}");
    // ... zero is: its log group too, made by the invocation above (and spared with the rest
    // of the cluster while it was live).
    let report = deployer.cleanup(Some("live"), EVERY_CLUSTER).await.unwrap();
    assert_eq!(report.deleted.deleted.len(), 7, "{report}");
    assert!(
        report
            .deleted
            .deleted
            .iter()
            .any(|resource| resource.name == live.log_group()),
        "{report}"
    );
    assert_gone(&config, &live).await;

    // A mark of another region's deployment is refused.
    let mut elsewhere = live.clone();
    elsewhere.region = "us-east-2".to_string();
    let error = deployer
        .mark_seen(&elsewhere, SystemTime::now())
        .await
        .unwrap_err();
    assert!(matches!(error, AwsError::InvalidInput(_)), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_that_fails_half_way_leaves_nothing() {
    let ministack = MiniStack::start();
    let config = ministack.config(REGION).await;
    let deployer = Deployer::new(&config).unwrap();
    // Lambda refuses a package that is not a zip: role, bucket, code and queue exist by then.
    let mut broken = spec("broken", 0);
    broken.code = Bytes::from_static(b"this is not a zip archive");
    let error = deployer.deploy(&broken).await.unwrap_err();
    let AwsError::Service {
        action, message, ..
    } = &error
    else {
        panic!("expected the service's refusal, got {error:?}");
    };
    assert_eq!(action, "lambda:CreateFunction");
    assert!(message.contains("unzip"), "{message}");
    let found = deployer.leftovers(None, EVERY_CLUSTER).await.unwrap();
    assert!(found.to_delete.is_empty(), "{found:?}");
    let placeholder = Deployment {
        cluster_id: ClusterId::new("broken").unwrap(),
        region: REGION.to_string(),
        endpoint_url: None,
        account_id: String::new(),
        function_name: "dask-serverless-broken".to_string(),
        function_arn: String::new(),
        role_name: "dask-serverless-broken".to_string(),
        role_arn: String::new(),
        role_policy_name: String::new(),
        bucket: "dask-serverless-broken-000000000000".to_string(),
        code_key: String::new(),
        queue_url: format!("{}/000000000000/dask-serverless-broken", ministack.endpoint),
        queue_arn: String::new(),
    };
    assert_gone(&config, &placeholder).await;

    // The same cluster id deploys once the cause is fixed.
    let deployment = deployer.deploy(&spec("broken", 0)).await.unwrap();
    deployer.destroy(&deployment).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_names_the_missing_permission_and_rolls_back() {
    let ministack = MiniStack::start_with(&[("AUTH", "true")]);
    let admin = ministack.config(REGION).await;
    // A user who may manage roles but not buckets.
    let iam = aws_sdk_iam::Client::new(&admin);
    iam.create_user().user_name("limited").send().await.unwrap();
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["iam:*", "sts:GetCallerIdentity", "tag:GetResources"], "Resource": "*"}]
    });
    iam.put_user_policy()
        .user_name("limited")
        .policy_name("roles-only")
        .policy_document(policy.to_string())
        .send()
        .await
        .unwrap();
    let key = iam
        .create_access_key()
        .user_name("limited")
        .send()
        .await
        .unwrap();
    let key = key.access_key().unwrap();
    let limited = ministack
        .config_as(REGION, key.access_key_id(), key.secret_access_key())
        .await;
    let error = Deployer::new(&limited)
        .unwrap()
        .deploy(&spec("denied", 0))
        .await
        .unwrap_err();
    let AwsError::AccessDenied { permission, .. } = &error else {
        panic!("expected an access denial, got {error:?}");
    };
    assert_eq!(permission, "s3:CreateBucket", "{error}");
    assert!(
        error
            .to_string()
            .contains("needs the IAM permission 's3:CreateBucket'"),
        "{error}"
    );
    // The role created before the denial was deleted.
    let found = Deployer::new(&admin)
        .unwrap()
        .leftovers(None, EVERY_CLUSTER)
        .await
        .unwrap();
    assert!(found.to_delete.is_empty(), "{found:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_with_nothing_listening_is_reported_within_seconds() {
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let settings = AwsSettings::new(REGION, Some(endpoint.clone()));
    let started = Instant::now();
    let error = load_config_from(&settings, loader_with("test", "test"))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(error, AwsError::Unreachable { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "could not reach STS at {endpoint}: is it running?"
        )),
        "{message}"
    );

    // The engine's clients say so too, within their connection budget.
    let config = loader_with("test", "test")
        .region(aws_config::Region::new(REGION))
        .endpoint_url(&endpoint)
        .load()
        .await;
    let started = Instant::now();
    let error = LambdaInvoker::new(&config)
        .invoke_event("dask-serverless-x", Bytes::from("{}"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, PlatformError::Unavailable { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("is it running?"), "{error}");
    let error = SqsQueue::new(&config, format!("{endpoint}/000000000000/q"))
        .with_retry_policy(RetryPolicy::never())
        .receive(Duration::ZERO)
        .await
        .unwrap_err();
    assert!(
        matches!(error, PlatformError::Unavailable { .. }),
        "{error:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_never_answers_times_out() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    // Accept connections and hold them without answering.
    let holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        listener.set_nonblocking(true).unwrap();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if let Ok((stream, _)) = listener.accept() {
                held.push(stream);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let settings = AwsSettings::new(REGION, Some(endpoint));
    let started = Instant::now();
    let error = load_config_from(&settings, loader_with("test", "test"))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(error, AwsError::Timeout { .. }), "{error:?}");
    assert!(
        error.to_string().contains("sts:GetCallerIdentity"),
        "{error}"
    );
    drop(holder);
}

#[tokio::test]
async fn a_mistyped_region_is_refused_before_any_call() {
    let settings = AwsSettings::new("eu-wst-1", Some("http://127.0.0.1:9".to_string()));
    let error = load_config_from(&settings, loader_with("test", "test"))
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("unknown region 'eu-wst-1' (did you mean 'eu-west-1'?)"),
        "{error}"
    );
    let settings = AwsSettings::new("Europe", None);
    let error = load_config_from(&settings, loader_with("test", "test"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            AwsError::UnknownRegion {
                suggestion: None,
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn missing_credentials_are_reported() {
    let settings = AwsSettings::new(REGION, Some("http://127.0.0.1:9".to_string()));
    let loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).no_credentials();
    let error = load_config_from(&settings, loader).await.unwrap_err();
    assert!(matches!(error, AwsError::NoCredentials { .. }), "{error:?}");
    assert!(
        error.to_string().starts_with("no AWS credentials found"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_invocations_are_retried_until_capacity_frees() {
    let ministack = MiniStack::start();
    let config = ministack.config(REGION).await;
    let deployer = Deployer::new(&config).unwrap();
    let mut spec = spec("narrow", 0);
    spec.max_concurrency = Some(1);
    let deployment = deployer.deploy(&spec).await.unwrap();
    let slow = Bytes::from(r#"{"sleep": 1}"#);

    // Without retries, the second of two overlapping invocations is refused.
    let once = LambdaInvoker::new(&config).with_retry_policy(RetryPolicy::never());
    let (first, second) = tokio::join!(
        once.invoke_request_response(&deployment.function_name, slow.clone()),
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            once.invoke_request_response(&deployment.function_name, slow.clone())
                .await
        }
    );
    first.unwrap();
    let error = second.unwrap_err();
    assert!(
        matches!(error, PlatformError::Throttled { attempts: 1, .. }),
        "{error:?}"
    );

    // With the default policy, it waits for the first to finish.
    let patient = LambdaInvoker::new(&config);
    let (first, second) = tokio::join!(
        patient.invoke_request_response(&deployment.function_name, slow.clone()),
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            patient
                .invoke_request_response(&deployment.function_name, slow.clone())
                .await
        }
    );
    first.unwrap();
    second.unwrap();
    deployer.destroy(&deployment).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_policy_is_enough_for_the_whole_lifecycle() {
    let ministack = MiniStack::start_with(&[("AUTH", "true")]);
    let admin = ministack.config(REGION).await;
    let iam = aws_sdk_iam::Client::new(&admin);
    iam.create_user()
        .user_name("deployer")
        .send()
        .await
        .unwrap();
    iam.put_user_policy()
        .user_name("deployer")
        .policy_name("dask-serverless")
        .policy_document(dask_serverless_aws::DEPLOYER_POLICY)
        .send()
        .await
        .unwrap();
    // Where MiniStack's authorization differs from AWS's: it checks `CreateFunction` against
    // `*` (the name is in the body, not the path) where AWS checks the function's ARN, and it
    // takes `PutFunctionEventInvokeConfig` for `UpdateFunctionCode`, and it knows the batch
    // calls of SQS as actions of their own (AWS authorizes them as `SendMessage` and
    // `DeleteMessage`).
    let local_only = json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "lambda:CreateFunction", "Resource": "*"},
            {
                "Effect": "Allow",
                "Action": "lambda:UpdateFunctionCode",
                "Resource": "arn:aws:lambda:*:*:function:dask-serverless-*"
            },
            {
                "Effect": "Allow",
                "Action": ["sqs:SendMessageBatch", "sqs:DeleteMessageBatch"],
                "Resource": "arn:aws:sqs:*:*:dask-serverless-*"
            }
        ]
    });
    iam.put_user_policy()
        .user_name("deployer")
        .policy_name("local-target-only")
        .policy_document(local_only.to_string())
        .send()
        .await
        .unwrap();
    let key = iam
        .create_access_key()
        .user_name("deployer")
        .send()
        .await
        .unwrap();
    let key = key.access_key().unwrap();
    let config = ministack
        .config_as(REGION, key.access_key_id(), key.secret_access_key())
        .await;

    let deployer = Deployer::new(&config).unwrap();
    let mut spec = spec("least", 0);
    spec.max_concurrency = Some(3);
    let deployment = deployer.deploy(&spec).await.unwrap();
    let invoker = LambdaInvoker::new(&config);
    invoker
        .invoke_request_response(&deployment.function_name, Bytes::from("{}"))
        .await
        .unwrap();
    invoker
        .invoke_event(&deployment.function_name, Bytes::from(r#"{"fail": "x"}"#))
        .await
        .unwrap();
    let queue = SqsQueue::new(&config, &deployment.queue_url);
    queue
        .send(vec![Bytes::from("{\"hello\": 1}")])
        .await
        .unwrap();
    let received = receive_at_least(&queue, 2, Duration::from_secs(60)).await;
    assert_eq!(received.len(), 2, "{received:?}");
    let logs = deployer
        .invocation_logs(&deployment, UNIX_EPOCH)
        .await
        .unwrap();
    assert_eq!(logs.len(), 2, "{logs:#?}");
    deployer.destroy(&deployment).await.unwrap();
    assert_gone(&admin, &deployment).await;

    let deployment = deployer.deploy(&spec).await.unwrap();
    invoker
        .invoke_request_response(&deployment.function_name, Bytes::from("{}"))
        .await
        .unwrap();
    deployer
        .mark_seen(&deployment, SystemTime::now())
        .await
        .unwrap();
    let report = deployer.cleanup(None, DEFAULT_OLDER_THAN).await.unwrap();
    assert_eq!(report.skipped.len(), 1, "{report}");
    assert!(report.deleted.deleted.is_empty(), "{report}");
    let report = deployer.cleanup(None, EVERY_CLUSTER).await.unwrap();
    assert_eq!(report.deleted.deleted.len(), 7, "{report}");
    assert_gone(&admin, &deployment).await;
    let found = deployer.leftovers(None, EVERY_CLUSTER).await.unwrap();
    assert!(found.to_delete.is_empty(), "{found:?}");
}
