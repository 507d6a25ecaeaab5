//! The queue service, through the SQS JSON protocol (raw) and the platform's `LocalQueue`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use dask_serverless_platform::{LocalQueue, PlatformError, ResultChannel};
use serde_json::{Value, json};

use crate::support::start_platform;

/// One SQS action; returns the HTTP status and the JSON answer.
async fn sqs(endpoint: &str, action: &str, request: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{endpoint}/"))
        .header("X-Amz-Target", format!("AmazonSQS.{action}"))
        .header("Content-Type", "application/x-amz-json-1.0")
        .body(request.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_protocol_subset() {
    let platform = start_platform().await;
    let endpoint = platform.endpoint();

    let (status, answer) = sqs(&endpoint, "GetQueueUrl", json!({"QueueName": "jobs"})).await;
    assert_eq!(status, 400);
    assert_eq!(answer["__type"], "com.amazonaws.sqs#QueueDoesNotExist");

    let (status, answer) = sqs(&endpoint, "CreateQueue", json!({"QueueName": "jobs"})).await;
    assert_eq!(status, 200);
    let queue_url = answer["QueueUrl"].as_str().unwrap().to_string();
    assert_eq!(queue_url, format!("{endpoint}/queues/jobs"));
    assert_eq!(queue_url, platform.queue_url("jobs"));
    let (_, answer) = sqs(&endpoint, "GetQueueUrl", json!({"QueueName": "jobs"})).await;
    assert_eq!(answer["QueueUrl"], queue_url.as_str());

    let (status, answer) = sqs(
        &endpoint,
        "SendMessage",
        json!({"QueueUrl": queue_url, "MessageBody": "hello"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        answer["MD5OfMessageBody"],
        "5d41402abc4b2a76b9719d911017c592"
    );
    let entries: Vec<Value> = (0..3)
        .map(|index| json!({"Id": format!("m{index}"), "MessageBody": format!("batch {index}")}))
        .collect();
    let (_, answer) = sqs(
        &endpoint,
        "SendMessageBatch",
        json!({"QueueUrl": queue_url, "Entries": entries}),
    )
    .await;
    assert_eq!(answer["Successful"].as_array().unwrap().len(), 3);
    assert_eq!(answer["Failed"], json!([]));

    let (_, answer) = sqs(
        &endpoint,
        "ReceiveMessage",
        json!({"QueueUrl": queue_url, "MaxNumberOfMessages": 3}),
    )
    .await;
    let bodies: Vec<&str> = answer["Messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|message| message["Body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["hello", "batch 0", "batch 1"]);
    let receipt = answer["Messages"][0]["ReceiptHandle"].as_str().unwrap();
    let (status, _) = sqs(
        &endpoint,
        "DeleteMessage",
        json!({"QueueUrl": queue_url, "ReceiptHandle": receipt}),
    )
    .await;
    assert_eq!(status, 200);
    let (_, answer) = sqs(
        &endpoint,
        "ReceiveMessage",
        json!({"QueueUrl": queue_url, "MaxNumberOfMessages": 10}),
    )
    .await;
    assert_eq!(answer["Messages"].as_array().unwrap().len(), 1);
    // Received messages are gone at once: an empty queue answers without `Messages`.
    let (status, answer) = sqs(&endpoint, "ReceiveMessage", json!({"QueueUrl": queue_url})).await;
    assert_eq!(status, 200);
    assert_eq!(answer, json!({}));

    let too_many: Vec<Value> = (0..11)
        .map(|index| json!({"Id": format!("m{index}"), "MessageBody": "x"}))
        .collect();
    let (status, answer) = sqs(
        &endpoint,
        "SendMessageBatch",
        json!({"QueueUrl": queue_url, "Entries": too_many}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        answer["__type"],
        "com.amazonaws.sqs#TooManyEntriesInBatchRequest"
    );
    let (status, answer) = sqs(
        &endpoint,
        "ReceiveMessage",
        json!({"QueueUrl": queue_url, "MaxNumberOfMessages": 11}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(answer["__type"], "com.amazonaws.sqs#InvalidParameterValue");
    let (status, answer) = sqs(&endpoint, "Unknown", json!({})).await;
    assert_eq!(status, 400);
    assert_eq!(answer["__type"], "com.amazonaws.sqs#InvalidAction");

    let (status, _) = sqs(&endpoint, "DeleteQueue", json!({"QueueUrl": queue_url})).await;
    assert_eq!(status, 200);
    let (status, _) = sqs(
        &endpoint,
        "SendMessage",
        json!({"QueueUrl": queue_url, "MessageBody": "late"}),
    )
    .await;
    assert_eq!(status, 400);
    platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_queue_round_trip_and_long_poll() {
    let platform = start_platform().await;
    let queue = LocalQueue::new(platform.endpoint(), "results");
    assert!(matches!(
        queue.receive(Duration::ZERO).await,
        Err(PlatformError::NotFound { .. })
    ));
    queue.create().await.unwrap();

    // 25 messages go in batches of 10 and come back in order, up to 10 per receive.
    let sent: Vec<Bytes> = (0..25)
        .map(|index| Bytes::from(format!("message {index}")))
        .collect();
    queue.send(sent.clone()).await.unwrap();
    let mut received = Vec::new();
    loop {
        let messages = queue.receive(Duration::ZERO).await.unwrap();
        if messages.is_empty() {
            break;
        }
        assert!(messages.len() <= 10);
        received.extend(messages);
    }
    assert_eq!(received, sent);

    // A long poll returns as soon as a message arrives, well before its wait ends.
    let endpoint = platform.endpoint();
    let waiting = tokio::spawn(async move {
        let queue = LocalQueue::new(endpoint, "results");
        let started = Instant::now();
        let messages = queue.receive(Duration::from_secs(20)).await.unwrap();
        (messages, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    queue
        .send(vec![Bytes::from_static(b"wake up")])
        .await
        .unwrap();
    let (messages, waited) = waiting.await.unwrap();
    assert_eq!(messages, [Bytes::from_static(b"wake up")]);
    assert!(waited < Duration::from_secs(15), "liveness: {waited:?}");

    // An empty long poll waits its time out and returns nothing.
    let started = Instant::now();
    assert!(
        queue
            .receive(Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(started.elapsed() >= Duration::from_millis(300));

    // Limits: text only, at most 1 MiB per message.
    let binary = queue
        .send(vec![Bytes::from_static(&[0xff, 0xfe])])
        .await
        .unwrap_err();
    assert!(
        matches!(binary, PlatformError::Protocol { .. }),
        "{binary:?}"
    );
    let large = queue
        .send(vec![Bytes::from(vec![b'x'; 1_048_577])])
        .await
        .unwrap_err();
    assert_eq!(
        large,
        PlatformError::PayloadTooLarge {
            size: 1_048_577,
            limit: 1_048_576
        }
    );
    // Several large messages are split over batches under the 1 MiB batch limit.
    let halves: Vec<Bytes> = (0..3).map(|_| Bytes::from(vec![b'y'; 600_000])).collect();
    queue.send(halves).await.unwrap();
    let mut count = 0;
    while count < 3 {
        let messages = queue.receive(Duration::from_secs(5)).await.unwrap();
        assert!(!messages.is_empty());
        count += messages.len();
    }

    queue.delete().await.unwrap();
    assert!(matches!(
        queue.send(vec![Bytes::from_static(b"x")]).await,
        Err(PlatformError::NotFound { .. })
    ));
    platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_waiting_long_polls() {
    let platform = start_platform().await;
    let queue = LocalQueue::new(platform.endpoint(), "idle");
    queue.create().await.unwrap();
    let waiting = tokio::spawn(async move { queue.receive(Duration::from_secs(20)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    platform.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(10), "liveness");
    let received = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the long poll ends with the local platform")
        .unwrap();
    assert_eq!(received, Ok(Vec::new()));
}
