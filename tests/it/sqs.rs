//! `SqsQueue` against moto with the real AWS SDK: the queue contract of
//! `cfpurge::source::queue` as SQS (emulated) keeps it, plus what moto
//! itself does where the contract leaves room (stale and garbage receipts).
//!
//! moto's clock is the wall clock, so visibility tests sleep for a second
//! or two; every test takes a server of its own for its whole body (`Moto::take`).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_sqs::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_sqs::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_sqs::error::BoxError;
use aws_sdk_sqs::types::MessageAttributeValue;
use cfpurge::config::AwsConfig;
use cfpurge::source::queue::{Handle, Message, Queue, QueueDepth, QueueError};
use cfpurge::source::sqs::SqsQueue;

use crate::support::moto::{Moto, free_port};

const WAIT: Duration = Duration::from_secs(1);

/// Receives until `n` messages have come (or 10 s have passed).
async fn receive_n(queue: &SqsQueue, n: usize) -> Vec<Message> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        got.extend(queue.receive(10, WAIT).await.expect("receive"));
    }
    assert_eq!(got.len(), n, "messages received");
    got
}

async fn receive_one(queue: &SqsQueue) -> Message {
    receive_n(queue, 1).await.remove(0)
}

fn handles(messages: &[Message]) -> Vec<Handle> {
    messages.iter().map(Message::handle).collect()
}

fn string_attribute(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .expect("attribute")
}

/// Records each request's `X-Amz-Target` and number of batch entries.
#[derive(Clone, Debug, Default)]
struct Calls(Arc<Mutex<Vec<(String, usize)>>>);

impl Calls {
    fn of(&self, action: &str) -> Vec<usize> {
        let target = format!("AmazonSQS.{action}");
        let calls = self.0.lock().expect("calls lock");
        calls
            .iter()
            .filter(|(t, _)| *t == target)
            .map(|&(_, n)| n)
            .collect()
    }
}

impl Intercept for Calls {
    fn name(&self) -> &'static str {
        "record-calls"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        let target = request
            .headers()
            .get("x-amz-target")
            .unwrap_or_default()
            .to_owned();
        let entries = request
            .body()
            .bytes()
            .and_then(|body| serde_json::from_slice::<serde_json::Value>(body).ok())
            .and_then(|json| Some(json.get("Entries")?.as_array()?.len()))
            .unwrap_or(0);
        self.0.lock().expect("calls lock").push((target, entries));
        Ok(())
    }
}

#[tokio::test]
async fn receive_then_delete() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let url = moto
        .create_queue("work", &[("VisibilityTimeout", "30")])
        .await;
    let queue = SqsQueue::new(moto.sqs_client(), url, None);

    let mut sent = HashSet::new();
    for body in ["/a", "/b", "{\"paths\": [\"/c\"]}"] {
        sent.insert(queue.send(body).await.expect("send"));
    }
    let before = SystemTime::now() - Duration::from_secs(5);
    let got = receive_n(&queue, 3).await;
    let ids: HashSet<String> = got.iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids, sent);
    let bodies: HashSet<&str> = got.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, HashSet::from(["/a", "/b", "{\"paths\": [\"/c\"]}"]));
    for m in &got {
        assert_eq!(m.receive_count, 1);
        let first = m
            .first_received_at
            .expect("ApproximateFirstReceiveTimestamp");
        assert!(first > before && first < SystemTime::now() + Duration::from_secs(5));
        assert!(m.attributes.is_empty());
    }
    assert_eq!(
        queue.depth().await.expect("depth"),
        QueueDepth {
            visible: 0,
            in_flight: 3,
            delayed: 0
        }
    );

    assert_eq!(queue.delete(&handles(&got)).await.expect("delete"), vec![]);
    assert_eq!(queue.depth().await.expect("depth"), QueueDepth::default());
    // An empty long poll is not cut by the client's timeouts.
    let start = Instant::now();
    assert!(
        queue
            .receive(10, Duration::from_secs(2))
            .await
            .expect("empty receive")
            .is_empty()
    );
    assert!(
        start.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn redelivery_increases_the_receive_count() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let url = moto
        .create_queue("work", &[("VisibilityTimeout", "1")])
        .await;
    let queue = SqsQueue::new(moto.sqs_client(), url, None);
    queue.send("/a").await.expect("send");

    let first = receive_one(&queue).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = receive_one(&queue).await;
    assert_eq!(second.id, first.id);
    assert_eq!(first.receive_count, 1);
    assert_eq!(second.receive_count, 2);
    assert_ne!(second.receipt, first.receipt);
    assert_eq!(second.first_received_at, first.first_received_at);
}

#[tokio::test]
async fn receive_can_set_the_visibility_timeout() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let url = moto
        .create_queue("work", &[("VisibilityTimeout", "1")])
        .await;
    let queue = SqsQueue::new(moto.sqs_client(), url, None)
        .with_visibility_timeout(Duration::from_secs(30));
    queue.send("/a").await.expect("send");
    receive_one(&queue).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        queue
            .receive(1, Duration::ZERO)
            .await
            .expect("receive")
            .is_empty()
    );
}

#[tokio::test]
async fn set_visibility_keeps_a_message_hidden_past_its_timeout_and_releases_it() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let url = moto
        .create_queue("work", &[("VisibilityTimeout", "1")])
        .await;
    let queue = SqsQueue::new(moto.sqs_client(), url, None);
    queue.send("/a").await.expect("send");
    let m = receive_one(&queue).await;

    let failed = queue
        .set_visibility(&[m.handle()], Duration::from_secs(5))
        .await
        .expect("extend");
    assert_eq!(failed, vec![]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        queue
            .receive(1, Duration::ZERO)
            .await
            .expect("receive")
            .is_empty()
    );
    assert_eq!(queue.depth().await.expect("depth").in_flight, 1);

    // Released: the next receive gets it at once.
    let failed = queue
        .set_visibility(&[m.handle()], Duration::ZERO)
        .await
        .expect("release");
    assert_eq!(failed, vec![]);
    let again = queue.receive(1, Duration::ZERO).await.expect("receive");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, m.id);
    assert_eq!(again[0].receive_count, 2);
}

#[tokio::test]
async fn twenty_five_handles_go_in_three_batches() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let url = moto
        .create_queue("work", &[("VisibilityTimeout", "30")])
        .await;
    let calls = Calls::default();
    let client = aws_sdk_sqs::Client::from_conf(
        moto.sqs_client()
            .config()
            .to_builder()
            .interceptor(calls.clone())
            .build(),
    );
    let queue = SqsQueue::new(client, url, None);
    for i in 0..25 {
        queue.send(&format!("/{i}")).await.expect("send");
    }
    let got = receive_n(&queue, 25).await;

    let failed = queue
        .set_visibility(&handles(&got), Duration::from_secs(60))
        .await
        .expect("extend");
    assert_eq!(failed, vec![]);
    assert_eq!(calls.of("ChangeMessageVisibilityBatch"), vec![10, 10, 5]);

    assert_eq!(queue.delete(&handles(&got)).await.expect("delete"), vec![]);
    assert_eq!(calls.of("DeleteMessageBatch"), vec![10, 10, 5]);
    assert_eq!(queue.depth().await.expect("depth"), QueueDepth::default());

    // Nothing to do makes no call.
    assert_eq!(queue.delete(&[]).await.expect("empty delete"), vec![]);
    assert_eq!(calls.of("DeleteMessageBatch").len(), 3);
}

#[tokio::test]
async fn a_garbage_receipt_is_reported_in_failed_and_the_rest_deleted() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let url = moto
        .create_queue("work", &[("VisibilityTimeout", "30")])
        .await;
    let queue = SqsQueue::new(moto.sqs_client(), url, None);
    queue.send("/a").await.expect("send");
    queue.send("/b").await.expect("send");
    let got = receive_n(&queue, 2).await;
    let garbage = Handle {
        id: "not-a-message".into(),
        receipt: "garbage".into(),
    };

    let visibility = queue
        .set_visibility(&[got[0].handle(), garbage.clone()], Duration::from_secs(60))
        .await
        .expect("visibility batch");
    assert_eq!(visibility.len(), 1);
    assert_eq!(visibility[0].id, "not-a-message");
    assert_eq!(visibility[0].code, "ReceiptHandleIsInvalid");
    assert!(visibility[0].sender_fault);

    let batch = vec![got[0].handle(), garbage, got[1].handle()];
    let failed = queue.delete(&batch).await.expect("delete batch");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].id, "not-a-message");
    assert_eq!(failed[0].code, "ReceiptHandleIsInvalid");
    assert!(failed[0].sender_fault);
    assert_eq!(queue.depth().await.expect("depth"), QueueDepth::default());
}

/// moto 5.2.5 accepts any receipt a message ever had: a stale one deletes
/// the message (and changes its visibility). This is why the "latest
/// receipt only" rule is tested against `LocalQueue`, which refuses it.
#[tokio::test]
async fn moto_accepts_a_stale_receipt() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let url = moto
        .create_queue("work", &[("VisibilityTimeout", "1")])
        .await;
    let queue = SqsQueue::new(moto.sqs_client(), url, None);
    queue.send("/a").await.expect("send");
    let first = receive_one(&queue).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = receive_one(&queue).await;
    assert_ne!(first.receipt, second.receipt);

    let failed = queue
        .set_visibility(&[first.handle()], Duration::from_secs(30))
        .await
        .expect("stale visibility");
    assert_eq!(failed, vec![]);
    assert_eq!(
        queue.delete(&[first.handle()]).await.expect("stale delete"),
        vec![]
    );
    assert_eq!(queue.depth().await.expect("depth"), QueueDepth::default());
    // Deleting again, with either receipt, still succeeds.
    assert_eq!(
        queue
            .delete(&[second.handle()])
            .await
            .expect("delete again"),
        vec![]
    );
}

#[tokio::test]
async fn reject_with_a_dead_letter_queue_forwards_byte_for_byte_and_deletes() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let url = moto
        .create_queue("work", &[("VisibilityTimeout", "30")])
        .await;
    let dlq = moto.create_queue("work-dlq", &[]).await;
    let client = moto.sqs_client();
    let queue = SqsQueue::new(client.clone(), url, Some(dlq.clone()));

    let body = "{\"paths\": [\"no-slash\", \"/é 🦀\"]}\r\n\t  trailing \"quotes\" <&> ";
    client
        .send_message()
        .queue_url(queue.queue_url())
        .message_body(body)
        .message_attributes("trace", string_attribute("t-1"))
        .send()
        .await
        .expect("send with attribute");
    let m = receive_one(&queue).await;
    assert_eq!(m.body, body);
    assert_eq!(
        m.attributes,
        BTreeMap::from([("trace".to_owned(), "t-1".to_owned())])
    );

    let detail = format!("path 1: must start with /\nsecond line {}", "x".repeat(400));
    assert!(
        queue
            .reject(&m, "invalid_path", &detail)
            .await
            .expect("reject")
    );
    assert_eq!(queue.depth().await.expect("depth"), QueueDepth::default());

    let dead = SqsQueue::new(client, dlq, None);
    let forwarded = receive_one(&dead).await;
    assert_eq!(forwarded.body.as_bytes(), body.as_bytes());
    assert_eq!(
        forwarded.attributes["cfpurge-reject-reason"],
        "invalid_path"
    );
    let note = &forwarded.attributes["cfpurge-reject-detail"];
    assert!(
        note.starts_with("path 1: must start with / second line xxx"),
        "{note}"
    );
    assert!(!note.contains('\n'));
    assert_eq!(note.chars().count(), 256);
    assert_eq!(forwarded.attributes["trace"], "t-1");
}

#[tokio::test]
async fn reject_without_a_dead_letter_queue_leaves_the_message() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let url = moto
        .create_queue("work", &[("VisibilityTimeout", "30")])
        .await;
    let queue = SqsQueue::new(moto.sqs_client(), url, None);
    queue.send("not a purge request {").await.expect("send");
    let m = receive_one(&queue).await;
    assert!(
        !queue
            .reject(&m, "malformed", "not JSON")
            .await
            .expect("reject")
    );
    assert_eq!(
        queue.depth().await.expect("depth"),
        QueueDepth {
            visible: 0,
            in_flight: 1,
            delayed: 0
        }
    );
}

#[tokio::test]
async fn a_message_left_after_reject_reaches_the_redrive_dead_letter_queue() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let dlq = moto.create_queue("work-dlq", &[]).await;
    let policy = format!(
        "{{\"deadLetterTargetArn\": \"{}\", \"maxReceiveCount\": \"1\"}}",
        moto.queue_arn(&dlq).await
    );
    let url = moto
        .create_queue(
            "work",
            &[("VisibilityTimeout", "1"), ("RedrivePolicy", &policy)],
        )
        .await;
    let queue = SqsQueue::new(moto.sqs_client(), url, None);
    queue.send("not a purge request {").await.expect("send");
    let m = receive_one(&queue).await;
    assert!(
        !queue
            .reject(&m, "malformed", "not JSON")
            .await
            .expect("reject")
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The next receive finds the count spent and moves it.
    assert!(
        queue
            .receive(1, Duration::ZERO)
            .await
            .expect("receive")
            .is_empty()
    );
    let dead = SqsQueue::new(moto.sqs_client(), dlq, None);
    assert_eq!(receive_one(&dead).await.body, "not a purge request {");
}

#[tokio::test]
async fn requeue_sends_a_fresh_copy_and_deletes_the_original() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let url = moto
        .create_queue("work", &[("VisibilityTimeout", "1")])
        .await;
    let client = moto.sqs_client();
    let queue = SqsQueue::new(client.clone(), url, None);
    client
        .send_message()
        .queue_url(queue.queue_url())
        .message_body("/waited")
        .message_attributes("trace", string_attribute("t-1"))
        .send()
        .await
        .expect("send");
    receive_one(&queue).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let m = receive_one(&queue).await;
    assert_eq!(m.receive_count, 2);

    queue.requeue(&m).await.expect("requeue");
    let copy = receive_one(&queue).await;
    assert_ne!(copy.id, m.id);
    assert_eq!(copy.body, "/waited");
    assert_eq!(copy.receive_count, 1);
    assert_eq!(copy.attributes, m.attributes);
    assert_eq!(
        queue.depth().await.expect("depth"),
        QueueDepth {
            visible: 0,
            in_flight: 1,
            delayed: 0
        }
    );
}

#[tokio::test]
async fn depth_counts_visible_in_flight_and_delayed() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let url = moto
        .create_queue("work", &[("VisibilityTimeout", "30")])
        .await;
    let client = moto.sqs_client();
    let queue = SqsQueue::new(client.clone(), url, None);
    assert_eq!(queue.depth().await.expect("depth"), QueueDepth::default());
    for body in ["/a", "/b", "/c"] {
        queue.send(body).await.expect("send");
    }
    client
        .send_message()
        .queue_url(queue.queue_url())
        .message_body("/later")
        .delay_seconds(60)
        .send()
        .await
        .expect("delayed send");
    let got = queue.receive(1, Duration::ZERO).await.expect("receive");
    assert_eq!(got.len(), 1);
    assert_eq!(
        queue.depth().await.expect("depth"),
        QueueDepth {
            visible: 2,
            in_flight: 1,
            delayed: 1
        }
    );
}

#[tokio::test]
async fn a_missing_queue_is_not_found() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let url = format!("{}/123456789012/no-such-queue", moto.endpoint());
    let queue = SqsQueue::new(moto.sqs_client(), url, None);
    let handle = Handle {
        id: "m".into(),
        receipt: "r".into(),
    };
    assert!(matches!(
        queue.receive(1, Duration::ZERO).await,
        Err(QueueError::NotFound(_))
    ));
    assert!(matches!(
        queue.delete(std::slice::from_ref(&handle)).await,
        Err(QueueError::NotFound(_))
    ));
    assert!(matches!(
        queue.set_visibility(&[handle], Duration::ZERO).await,
        Err(QueueError::NotFound(_))
    ));
    assert!(matches!(
        queue.send("/a").await,
        Err(QueueError::NotFound(_))
    ));
    assert!(matches!(queue.depth().await, Err(QueueError::NotFound(_))));
}

#[tokio::test]
async fn arguments_out_of_range_are_refused_without_a_call() {
    // No server at all: the checks come before any request.
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let queue = SqsQueue::new(
        Moto::sqs_client_at(&endpoint),
        format!("{endpoint}/1/q"),
        None,
    );
    let start = Instant::now();
    assert!(matches!(
        queue.receive(0, WAIT).await,
        Err(QueueError::Invalid(_))
    ));
    assert!(matches!(
        queue.receive(11, WAIT).await,
        Err(QueueError::Invalid(_))
    ));
    assert!(matches!(
        queue.receive(1, Duration::from_secs(21)).await,
        Err(QueueError::Invalid(_))
    ));
    assert!(matches!(queue.send("").await, Err(QueueError::Invalid(_))));
    let handle = Handle {
        id: "m".into(),
        receipt: "r".into(),
    };
    assert!(matches!(
        queue
            .set_visibility(&[handle], Duration::from_secs(43_201))
            .await,
        Err(QueueError::Invalid(_))
    ));
    assert!(start.elapsed() < Duration::from_millis(500));
}

#[tokio::test]
async fn an_unreachable_endpoint_is_transient_and_fails_fast() {
    // Nothing listens on this port: connections are refused.
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let queue = SqsQueue::new(
        Moto::sqs_client_at(&endpoint),
        format!("{endpoint}/1/q"),
        None,
    );
    let start = Instant::now();
    let err = queue.receive(1, WAIT).await.expect_err("nothing listens");
    assert!(err.is_transient(), "{err:?}");
    // Three attempts with the SDK's backoff, far within the operation
    // timeout (90 s).
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    assert!(matches!(queue.depth().await, Err(QueueError::Transient(_))));
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_as_transient() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });
    let endpoint = format!("http://127.0.0.1:{port}");
    let client = Moto::sqs_client_at(&endpoint);
    // The daemon's attempt timeout is the wait plus 10 s; shorter here so
    // that the test does not take half a minute.
    let short = aws_sdk_sqs::config::timeout::TimeoutConfig::builder()
        .operation_attempt_timeout(Duration::from_millis(500))
        .operation_timeout(Duration::from_secs(2))
        .build();
    let client =
        aws_sdk_sqs::Client::from_conf(client.config().to_builder().timeout_config(short).build());
    let queue = SqsQueue::new(client, format!("{endpoint}/1/q"), None);
    let start = Instant::now();
    let err = queue.depth().await.expect_err("no answer");
    assert!(err.is_transient(), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    hold.abort();
}

#[tokio::test]
async fn the_sqs_endpoint_overrides_the_shared_one() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let url = moto.create_queue("work", &[]).await;
    let aws = AwsConfig {
        endpoint_url: Some(format!("http://127.0.0.1:{}", free_port())),
        sqs_endpoint_url: Some(moto.endpoint().to_owned()),
        ..AwsConfig::default()
    };
    let client = cfpurge::aws::sqs(&Moto::sdk_config(), &aws, WAIT);
    let queue = SqsQueue::new(client, url, None);
    assert_eq!(
        queue.depth().await.expect("depth via sqs_endpoint_url"),
        QueueDepth::default()
    );
}

#[tokio::test]
async fn a_stopped_server_is_transient_and_a_restarted_one_answers() {
    let mut moto = Moto::start_new();
    let url = moto.create_queue("work", &[]).await;
    let queue = SqsQueue::new(moto.sqs_client(), url.clone(), None);
    assert_eq!(queue.depth().await.expect("depth"), QueueDepth::default());

    moto.stop();
    assert!(matches!(queue.depth().await, Err(QueueError::Transient(_))));

    let port = moto.port();
    moto.restart();
    assert_eq!(moto.port(), port);
    // Same port, fresh state: the queue is gone until created again.
    assert!(matches!(queue.depth().await, Err(QueueError::NotFound(_))));
    assert_eq!(moto.create_queue("work", &[]).await, url);
    assert_eq!(queue.depth().await.expect("depth"), QueueDepth::default());
}
