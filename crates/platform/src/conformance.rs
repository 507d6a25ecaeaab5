//! The conformance suite: what every platform backend must do, as runnable checks.
//!
//! A [`Backend`] is an [`Invoker`] and a [`ResultChannel`] of one platform, with a function
//! deployed there that runs [`HANDLER`] (the same Python handler everywhere, so the checks mean
//! the same everywhere) and the address of the channel's queue, to which the handler sends. Each
//! public function checks one part of the contract and panics with an explanation when the
//! backend breaks it; [`run_all`] runs them all, naming each on standard error as it starts.
//!
//! The contract:
//!
//! * an asynchronous invocation runs the function (seen through the message it sends on the
//!   result channel) — *at least once*: a delivery may repeat, as Lambda's may;
//! * a synchronous invocation returns the handler's answer; a handler error is
//!   [`PlatformError::FunctionError`] with the handler's message; an unknown function is
//!   [`PlatformError::NotFound`];
//! * a payload over [`ASYNCHRONOUS_PAYLOAD_LIMIT`] or [`SYNCHRONOUS_PAYLOAD_LIMIT`] is
//!   [`PlatformError::PayloadTooLarge`] naming the limit; one at the asynchronous limit runs;
//! * the result channel delivers every message sent, in batches, *exactly once* (order is not
//!   guaranteed), a receive with nothing to receive returns empty within its wait, a message
//!   of [`MESSAGE_LIMIT`] bytes goes through and a larger one is refused with
//!   [`PlatformError::PayloadTooLarge`].
//!
//! **Under chaos.** A backend may be wrapped in [`ChaosInvoker`](crate::ChaosInvoker) and
//! [`ChaosResultChannel`](crate::ChaosResultChannel) and name their [`Chaos`] in
//! [`Backend::chaos`]: the same checks must hold, and the suite also checks that the faults
//! really happened — each injected duplicate is one more delivery received (counted), throttled
//! invocations still succeed, and [`run_all`] ends by asserting that every fault class of the
//! spec fired.
//!
//! Messages carry the name of the check that sent them; a check ignores the messages of
//! others (a late duplicate of an earlier check, say), so the checks can share one function
//! and one queue, one after the other.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use dask_serverless_chaos::{Chaos, Fault};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::{
    ASYNCHRONOUS_PAYLOAD_LIMIT, Invoker, MESSAGE_LIMIT, PlatformError, ResultChannel,
    SYNCHRONOUS_PAYLOAD_LIMIT,
};

/// The Python source of the function every backend deploys for the suite: a module named
/// [`HANDLER_MODULE`], whose entry point is [`HANDLER_ENTRY`]. See the module's docstring for
/// the events it understands.
pub const HANDLER: &str = include_str!("conformance/handler.py");
/// The module name under which [`HANDLER`] is deployed (its file is `conformance_handler.py`).
pub const HANDLER_MODULE: &str = "conformance_handler";
/// The handler setting of the function: `module.function`.
pub const HANDLER_ENTRY: &str = "conformance_handler.handle";

/// How long a check waits for messages that should come.
const DELIVERY_WAIT: Duration = Duration::from_secs(30);

/// One platform under test (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct Backend<'a> {
    pub invoker: &'a dyn Invoker,
    pub channel: &'a dyn ResultChannel,
    /// The function running [`HANDLER`].
    pub function: &'a str,
    /// The endpoint of the queue service the handler sends to (the SQS JSON protocol).
    pub queue_endpoint: &'a str,
    /// The URL of the queue behind `channel`.
    pub queue_url: &'a str,
    /// The chaos of the wrappers around `invoker` and `channel`, if any.
    pub chaos: Option<&'a Chaos>,
}

impl Backend<'_> {
    /// An event that makes the handler send `body` to the channel's queue.
    fn send_event(&self, body: &str) -> Value {
        json!({"send": body, "endpoint": self.queue_endpoint, "queue_url": self.queue_url})
    }

    fn injected(&self, fault: Fault) -> u64 {
        self.chaos.map_or(0, |chaos| chaos.counters().get(fault))
    }
}

/// Runs every check of the suite, one after the other; under chaos, then asserts that each
/// fault class of the spec was injected.
pub async fn run_all(backend: &Backend<'_>) {
    let checks: [(&str, CheckFuture<'_>); 9] = [
        (
            "a synchronous invocation returns the handler's answer",
            Box::pin(request_response_returns_the_answer(backend)),
        ),
        (
            "a handler error is a function error with its message",
            Box::pin(a_handler_error_is_a_function_error(backend)),
        ),
        (
            "an unknown function is not found",
            Box::pin(an_unknown_function_is_not_found(backend)),
        ),
        (
            "payloads over the limits are refused",
            Box::pin(payloads_over_the_limits_are_refused(backend)),
        ),
        (
            "asynchronous invocations run the function",
            Box::pin(event_invocations_run_the_function(backend)),
        ),
        (
            "an event at the asynchronous limit runs",
            Box::pin(an_event_at_the_limit_runs(backend)),
        ),
        (
            "messages are received exactly once",
            Box::pin(messages_are_received_exactly_once(backend)),
        ),
        (
            "an empty receive returns within its wait",
            Box::pin(an_empty_receive_returns_within_its_wait(backend)),
        ),
        (
            "a message at the limit passes, one over is refused",
            Box::pin(a_message_at_the_limit_passes_and_one_over_is_refused(
                backend,
            )),
        ),
    ];
    for (name, check) in checks {
        let started = std::time::Instant::now();
        eprintln!("conformance: {name}");
        check.await;
        eprintln!("conformance: {name}: passed in {:?}", started.elapsed());
    }
    if let Some(chaos) = backend.chaos {
        let spec = chaos.spec();
        for (fault, rate) in [
            (Fault::Throttle, spec.throttle),
            (Fault::Duplicate, spec.duplicate),
            (Fault::Channel, spec.channel),
        ] {
            if rate > 0.0 {
                assert!(
                    chaos.counters().get(fault) > 0,
                    "the chaos spec '{}' has {} at {rate}, and none was injected",
                    spec,
                    fault.name()
                );
            }
        }
    }
}

type CheckFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>>;

/// `{"echo": token}` comes back as `{"echo": token}`.
pub async fn request_response_returns_the_answer(backend: &Backend<'_>) {
    for index in 0..4 {
        let token = format!("echo {index}: \u{e9}t\u{e9} \"quoted\"");
        let payload = json!({"echo": token}).to_string();
        let answer = backend
            .invoker
            .invoke_request_response(backend.function, Bytes::from(payload))
            .await
            .unwrap_or_else(|error| panic!("a synchronous invocation failed: {error}"));
        let answer: Value = serde_json::from_slice(&answer).unwrap_or_else(|error| {
            panic!(
                "the answer is not the handler's JSON ({error}): {}",
                String::from_utf8_lossy(&answer)
            )
        });
        assert_eq!(answer, json!({"echo": token}), "not the handler's answer");
    }
}

/// `{"fail": message}` raises in the handler: a function error carrying the message.
pub async fn a_handler_error_is_a_function_error(backend: &Backend<'_>) {
    let message = "conformance: the handler was asked to fail";
    let payload = json!({"fail": message}).to_string();
    let error = backend
        .invoker
        .invoke_request_response(backend.function, Bytes::from(payload))
        .await
        .expect_err("a handler that raises must not answer successfully");
    let PlatformError::FunctionError {
        error_type,
        message: reported,
    } = &error
    else {
        panic!("a handler error must be a FunctionError, not {error:?}");
    };
    assert!(!error_type.is_empty(), "the error type is empty: {error:?}");
    assert!(
        reported.contains(message),
        "the handler's message is lost: {reported:?}"
    );
    assert!(
        error.to_string().contains(message),
        "the error's text lacks the message: {error}"
    );
}

/// A function that does not exist.
pub async fn an_unknown_function_is_not_found(backend: &Backend<'_>) {
    let missing = "dask-serverless-conformance-missing";
    let error = backend
        .invoker
        .invoke_request_response(missing, Bytes::from_static(b"{}"))
        .await
        .expect_err("an unknown function cannot answer");
    assert!(
        matches!(&error, PlatformError::NotFound { what } if what.contains(missing)),
        "an unknown function must be NotFound naming it, not {error:?}"
    );
}

/// Payloads one byte over each limit are refused, with the limit named.
pub async fn payloads_over_the_limits_are_refused(backend: &Backend<'_>) {
    let over = padded(json!({"echo": "too large"}), ASYNCHRONOUS_PAYLOAD_LIMIT + 1);
    let error = backend
        .invoker
        .invoke_event(backend.function, over)
        .await
        .expect_err("an event over the limit must be refused");
    assert_eq!(
        error,
        PlatformError::PayloadTooLarge {
            size: ASYNCHRONOUS_PAYLOAD_LIMIT + 1,
            limit: ASYNCHRONOUS_PAYLOAD_LIMIT
        }
    );
    assert!(
        error
            .to_string()
            .contains("exceeds the limit of 1048576 bytes"),
        "{error}"
    );
    let over = padded(json!({"echo": "too large"}), SYNCHRONOUS_PAYLOAD_LIMIT + 1);
    let error = backend
        .invoker
        .invoke_request_response(backend.function, over)
        .await
        .expect_err("a synchronous payload over the limit must be refused");
    assert_eq!(
        error,
        PlatformError::PayloadTooLarge {
            size: SYNCHRONOUS_PAYLOAD_LIMIT + 1,
            limit: SYNCHRONOUS_PAYLOAD_LIMIT
        }
    );
}

/// Asynchronous invocations each run the function at least once; under chaos duplicates, each
/// injected duplicate is one more run.
pub async fn event_invocations_run_the_function(backend: &Backend<'_>) {
    let check = "event-invocations";
    let count = 12;
    let duplicates_before = backend.injected(Fault::Duplicate);
    let throttles_before = backend.injected(Fault::Throttle);
    let tokens: Vec<String> = (0..count).map(|index| format!("{check}/{index}")).collect();
    for token in &tokens {
        let payload = backend.send_event(token).to_string();
        backend
            .invoker
            .invoke_event(backend.function, Bytes::from(payload))
            .await
            .unwrap_or_else(|error| panic!("an asynchronous invocation failed: {error}"));
    }
    let duplicates = backend.injected(Fault::Duplicate) - duplicates_before;
    let deliveries = receive_deliveries(backend, check, count + duplicates as usize).await;
    for token in &tokens {
        assert!(
            deliveries.get(token).is_some_and(|&times| times >= 1),
            "the invocation that sends {token:?} never ran: {:?}",
            summary(&deliveries)
        );
    }
    let total: usize = deliveries.values().sum();
    if let Some(chaos) = backend.chaos {
        if chaos.spec().duplicate > 0.0 {
            assert!(duplicates > 0, "no duplicate was injected");
        }
        assert_eq!(
            total,
            count + duplicates as usize,
            "{duplicates} injected duplicates, yet not one more run each: {:?}",
            summary(&deliveries)
        );
        if chaos.spec().throttle > 0.0 {
            eprintln!(
                "conformance: {} throttles injected, every invocation went through",
                backend.injected(Fault::Throttle) - throttles_before
            );
        }
    }
}

/// An event of exactly [`ASYNCHRONOUS_PAYLOAD_LIMIT`] bytes is accepted and runs.
pub async fn an_event_at_the_limit_runs(backend: &Backend<'_>) {
    let check = "event-at-the-limit";
    let token = format!("{check}/0");
    let duplicates_before = backend.injected(Fault::Duplicate);
    let payload = padded(backend.send_event(&token), ASYNCHRONOUS_PAYLOAD_LIMIT);
    backend
        .invoker
        .invoke_event(backend.function, payload)
        .await
        .unwrap_or_else(|error| panic!("an event at the limit was refused: {error}"));
    let duplicates = backend.injected(Fault::Duplicate) - duplicates_before;
    let deliveries = receive_deliveries(backend, check, 1 + duplicates as usize).await;
    assert!(
        deliveries.get(&token).is_some_and(|&times| times >= 1),
        "the event at the limit never ran: {:?}",
        summary(&deliveries)
    );
}

/// Messages sent in several calls (batches by count and by size) come back exactly once each.
pub async fn messages_are_received_exactly_once(backend: &Backend<'_>) {
    let check = "exactly-once";
    let mut sent: Vec<String> = (0..37).map(|index| format!("{check}/{index}")).collect();
    sent.extend((0..3).map(|index| format!("{check}/large {index} {}", "x".repeat(400_000))));
    let mut calls = Vec::new();
    let mut rest = sent.as_slice();
    for size in [0, 1, 10, 26, 3] {
        let (call, remaining) = rest.split_at(size);
        calls.push(call.to_vec());
        rest = remaining;
    }
    assert!(rest.is_empty());
    for call in calls {
        let messages = call.into_iter().map(Bytes::from).collect();
        backend
            .channel
            .send(messages)
            .await
            .unwrap_or_else(|error| panic!("a send failed: {error}"));
    }
    let deliveries = receive_deliveries(backend, check, sent.len()).await;
    let expected: BTreeMap<String, usize> =
        sent.iter().map(|message| (message.clone(), 1)).collect();
    if deliveries != expected {
        let differences: Vec<String> = expected
            .keys()
            .chain(deliveries.keys())
            .filter(|message| deliveries.get(*message) != expected.get(*message))
            .map(|message| {
                format!(
                    "{:.40}: received {}",
                    message,
                    deliveries.get(message).copied().unwrap_or(0)
                )
            })
            .collect();
        panic!("messages not received exactly once: {differences:?}");
    }
}

/// A receive with nothing to receive answers empty, after waiting, within its wait (and the
/// backend's rounding of it to whole seconds).
pub async fn an_empty_receive_returns_within_its_wait(backend: &Backend<'_>) {
    // Strays of other checks (late duplicates) are taken out first.
    let deadline = Instant::now() + DELIVERY_WAIT;
    loop {
        let wait = Duration::from_secs(1);
        let started = Instant::now();
        let received = backend
            .channel
            .receive(wait)
            .await
            .unwrap_or_else(|error| panic!("a receive failed: {error}"));
        let waited = started.elapsed();
        if received.is_empty() {
            // Chaos retries add at most a few hundred milliseconds.
            assert!(
                waited <= wait + Duration::from_millis(1500),
                "an empty receive of {wait:?} took {waited:?}"
            );
            assert!(
                waited >= wait / 2,
                "an empty receive of {wait:?} returned after {waited:?}: it did not wait"
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "messages kept coming for {DELIVERY_WAIT:?}"
        );
    }
}

/// A message of [`MESSAGE_LIMIT`] bytes goes through intact; one byte more is refused before
/// anything is sent.
pub async fn a_message_at_the_limit_passes_and_one_over_is_refused(backend: &Backend<'_>) {
    let check = "message-at-the-limit";
    let prefix = format!("{check}/0 ");
    let message = format!("{prefix}{}", "y".repeat(MESSAGE_LIMIT - prefix.len()));
    assert_eq!(message.len(), MESSAGE_LIMIT);
    backend
        .channel
        .send(vec![Bytes::from(message.clone())])
        .await
        .unwrap_or_else(|error| panic!("a message at the limit was refused: {error}"));
    let deliveries = receive_deliveries(backend, check, 1).await;
    assert_eq!(
        deliveries.get(&message),
        Some(&1),
        "the message at the limit did not come back intact, once"
    );
    let over = Bytes::from(format!("{check}/1 {}", "z".repeat(MESSAGE_LIMIT)));
    let size = over.len();
    let error = backend
        .channel
        .send(vec![over])
        .await
        .expect_err("a message over the limit must be refused");
    assert_eq!(
        error,
        PlatformError::PayloadTooLarge {
            size,
            limit: MESSAGE_LIMIT
        }
    );
    let again = receive_own(backend, check, &mut Vec::new()).await;
    assert!(again.is_empty(), "a refused message arrived");
}

/// `value` (a JSON object) with a `padding` field that makes it exactly `size` bytes.
fn padded(mut value: Value, size: usize) -> Bytes {
    value["padding"] = json!("");
    let bare = value.to_string().len();
    assert!(bare <= size, "{bare} bytes before padding, over {size}");
    value["padding"] = json!("p".repeat(size - bare));
    let text = value.to_string();
    assert_eq!(text.len(), size);
    Bytes::from(text)
}

/// The messages of `check` in one receive of up to a second; the others' (a failure record of
/// the platform, say) are added to `others`, for failure messages.
async fn receive_own(backend: &Backend<'_>, check: &str, others: &mut Vec<String>) -> Vec<String> {
    let received = backend
        .channel
        .receive(Duration::from_secs(1))
        .await
        .unwrap_or_else(|error| panic!("a receive failed: {error}"));
    let mut own = Vec::new();
    for message in received {
        let text = String::from_utf8(message.to_vec())
            .unwrap_or_else(|_| panic!("a message that is not text came"));
        if text.starts_with(&format!("{check}/")) {
            own.push(text);
        } else {
            others.push(text.chars().take(600).collect());
        }
    }
    own
}

/// The deliveries counted, each message cut to its first 60 characters: for failure messages.
fn summary(deliveries: &BTreeMap<String, usize>) -> Vec<String> {
    deliveries
        .iter()
        .map(|(message, times)| {
            let start: String = message.chars().take(60).collect();
            format!("{start}: {times}")
        })
        .collect()
}

/// Receives until `expected` messages of `check` came (counting repeats), then once more (a
/// second) to catch extra deliveries; the count of each message.
async fn receive_deliveries(
    backend: &Backend<'_>,
    check: &str,
    expected: usize,
) -> BTreeMap<String, usize> {
    let deadline = Instant::now() + DELIVERY_WAIT;
    let mut deliveries: BTreeMap<String, usize> = BTreeMap::new();
    let mut others = Vec::new();
    let mut total = 0;
    while total < expected {
        assert!(
            Instant::now() < deadline,
            "{total} of {expected} messages of {check:?} came within {DELIVERY_WAIT:?}: {:?}; \
             other messages: {others:?}",
            summary(&deliveries)
        );
        for message in receive_own(backend, check, &mut others).await {
            *deliveries.entry(message).or_default() += 1;
            total += 1;
        }
    }
    for message in receive_own(backend, check, &mut others).await {
        *deliveries.entry(message).or_default() += 1;
    }
    deliveries
}
