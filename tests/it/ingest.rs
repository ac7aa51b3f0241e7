//! Ingestion end to end against moto's SQS with the real SDK: source →
//! decode → pending set → a fake submitter that accepts whatever is due →
//! deletes. Proves the input side before the CloudFront side exists.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cfpurge::config::Config;
use cfpurge::decode::{RejectReason, Router};
use cfpurge::pending::MessageId;
use cfpurge::pending::{BatchRules, PendingSet};
use cfpurge::pipeline::{Clock, Ingested, ingest};
use cfpurge::planner::{self, Capacity, Settings};
use cfpurge::source::driver::{QueueHealth, Source, SourceEvent, SourceSettings};
use cfpurge::source::queue::{Failed, Handle, Message, Queue, QueueDepth, QueueError};
use cfpurge::source::sqs::SqsQueue;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::support::moto::Moto;

const CONFIG: &str = r#"
[source]
queue_url = "http://unused"
[distributions.www]
id = "E2ABCDEF123456"
[[routing.s3]]
bucket = "site-bucket"
distribution = "www"
"#;

fn router() -> Router {
    let config = Config::from_parts(Some(CONFIG), "test", std::iter::empty()).expect("config");
    Router::new(&config)
}

fn settings(pollers: usize, visibility_secs: u64, max_pending: usize) -> SourceSettings {
    SourceSettings {
        pollers,
        wait: Duration::from_secs(1),
        visibility: Duration::from_secs(visibility_secs),
        max_pending_messages: max_pending,
        max_pending_bytes: usize::MAX,
        requeue_after: Duration::from_secs(11 * 3600),
    }
}

const RULES: BatchRules = BatchRules {
    quiet: 300,
    max_delay: 2_000,
    max_batch_paths: 3000,
};

/// What a wiring run saw.
#[derive(Debug, Default)]
struct Outcome {
    pending: usize,
    duplicates: usize,
    deleted_empty: usize,
    rejected: Vec<RejectReason>,
    invalidations: Vec<Vec<String>>,
    deleted: usize,
}

/// Runs source → decode → pending → fake submitter until `expect_deleted`
/// messages were deleted (covered or empty) and `expect_rejected` rejected,
/// or the time limit passes.
async fn wire<Q: Queue>(
    source: &Source<Q>,
    expect_deleted: usize,
    expect_rejected: usize,
    limit: Duration,
) -> Outcome {
    let router = router();
    let clock = Clock::new();
    let tasks = TaskTracker::new();
    let cancel = CancellationToken::new();
    let mut events = source.start(&tasks, &cancel, &cancel);
    let mut pending = PendingSet::new(RULES);
    let mut out = Outcome::default();
    let deadline = tokio::time::Instant::now() + limit;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while out.deleted + out.deleted_empty < expect_deleted || out.rejected.len() < expect_rejected {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => break,
            Some(event) = events.recv() => {
                match ingest(source, &router, &mut pending, &clock, event).await {
                    Ingested::Pending { .. } => out.pending += 1,
                    Ingested::Duplicate => out.duplicates += 1,
                    Ingested::Deleted { .. } => out.deleted_empty += 1,
                    Ingested::Rejected(r) => out.rejected.push(r),
                    Ingested::Forgotten | Ingested::SourceFull => {}
                }
            }
            _ = tick.tick() => {
                let now = clock.now().mono;
                for dist in pending.due(now) {
                    let plan = planner::plan(&pending.batch(&dist), Capacity::AWS, &Settings::default());
                    // The fake submitter accepts at once.
                    let submitted_at = clock.now().mono;
                    out.invalidations.push(plan.paths.iter().map(|p| p.to_string()).collect());
                    let covered = pending.apply(&dist, &plan.paths, submitted_at);
                    out.deleted += source.delete(&covered).await;
                }
            }
        }
    }
    cancel.cancel();
    tasks.close();
    tasks.wait().await;
    out
}

async fn visible_count(moto: &Moto, url: &str) -> u64 {
    let queue = SqsQueue::new(moto.sqs_client(), url.to_owned(), None);
    let d = queue.depth().await.expect("depth");
    d.visible + d.in_flight + d.delayed
}

async fn send(client: &aws_sdk_sqs::Client, url: &str, body: &str) {
    client
        .send_message()
        .queue_url(url)
        .message_body(body)
        .send()
        .await
        .expect("send");
}

/// A source started on its own, with no pipeline behind it.
struct Running<Q> {
    source: Source<Q>,
    tasks: TaskTracker,
    cancel: CancellationToken,
    events: tokio::sync::mpsc::Receiver<SourceEvent>,
}

impl<Q: Queue> Running<Q> {
    fn start(source: Source<Q>) -> Running<Q> {
        let (tasks, cancel) = (TaskTracker::new(), CancellationToken::new());
        let events = source.start(&tasks, &cancel, &cancel);
        Running {
            source,
            tasks,
            cancel,
            events,
        }
    }

    /// The id of the next message passed on.
    /// The next message received; the source saying it is full (which
    /// may come before the messages of a receive under way) is passed over.
    async fn next_id(&mut self) -> MessageId {
        loop {
            let event = tokio::time::timeout(Duration::from_secs(10), self.events.recv())
                .await
                .expect("an event in time")
                .expect("channel open");
            match event {
                SourceEvent::Received { id, .. } => return id,
                SourceEvent::Full => {}
                other => panic!("expected a received message, got {other:?}"),
            }
        }
    }

    /// Whether nothing more than the source saying it is full is passed on
    /// within `d`.
    async fn quiet_for(&mut self, d: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Err(_) => return true,
                Ok(Some(SourceEvent::Full)) => {}
                Ok(_) => return false,
            }
        }
    }

    async fn stop(self) {
        self.cancel.cancel();
        self.tasks.close();
        tokio::time::timeout(Duration::from_secs(5), self.tasks.wait())
            .await
            .expect("the source stops on cancel");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_is_covered_then_deleted_and_the_queue_ends_empty() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let url = moto.create_queue("ingest-formats", &[]).await;
    let client = moto.sqs_client();
    let bodies = [
        r#"{"distribution":"www","paths":["/a/1.html","/a/2.html"]}"#.to_owned(),
        "/plain/one.html\n# comment\n/plain/two.html\n".to_owned(),
        r#"{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"site-bucket"},"object":{"key":"img/my+photo.png"}}}]}"#.to_owned(),
        r#"{"source":"aws.s3","detail-type":"Object Deleted","detail":{"bucket":{"name":"site-bucket"},"object":{"key":"old/page.html"}}}"#.to_owned(),
        serde_json::json!({"Type": "Notification", "MessageId": "x", "Message": "/sns/wrapped.html"}).to_string(),
        r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-24T00:00:00.000Z","Bucket":"site-bucket"}"#.to_owned(),
    ];
    for body in &bodies {
        send(&client, &url, body).await;
    }
    let source = Source::new(
        SqsQueue::new(moto.sqs_client(), url.clone(), None),
        settings(2, 30, 1000),
    );
    let out = wire(&source, bodies.len(), 0, Duration::from_secs(20)).await;
    assert_eq!(out.pending, 5, "{out:?}");
    assert_eq!(out.deleted_empty, 1, "the test event is deleted at once");
    assert_eq!(out.deleted, 5, "{out:?}");
    let submitted: Vec<String> = out.invalidations.concat();
    for p in [
        "/a/1.html",
        "/a/2.html",
        "/plain/one.html",
        "/plain/two.html",
        "/img/my%20photo.png",
        "/old/page.html",
        "/sns/wrapped.html",
    ] {
        assert!(submitted.iter().any(|s| s == p), "{p} not in {submitted:?}");
    }
    assert_eq!(source.held(), 0);
    assert_eq!(visible_count(moto, &url).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_message_goes_to_the_dlq_and_does_not_delay_good_ones() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let dlq = moto.create_queue("ingest-dlq", &[]).await;
    let url = moto.create_queue("ingest-main", &[]).await;
    let client = moto.sqs_client();
    let bad = "{\"paths\": [\"/x\"";
    send(&client, &url, bad).await;
    for i in 0..5 {
        let body = format!(r#"{{"paths":["/good/{i}.html"]}}"#);
        send(&client, &url, &body).await;
    }
    send(&client, &url, "/bad*path").await;
    let source = Source::new(
        SqsQueue::new(moto.sqs_client(), url.clone(), Some(dlq.clone())),
        settings(1, 30, 1000),
    );
    let started = std::time::Instant::now();
    let out = wire(&source, 5, 2, Duration::from_secs(20)).await;
    assert_eq!(out.deleted, 5, "{out:?}");
    let mut reasons: Vec<&str> = out.rejected.iter().map(|r| r.as_str()).collect();
    reasons.sort_unstable();
    assert_eq!(reasons, ["invalid_path", "malformed"]);
    // The good ones went out with the first batches: one quiet window and a
    // tick, not a retry cycle.
    assert!(started.elapsed() < Duration::from_secs(10));
    let got = client
        .receive_message()
        .queue_url(&dlq)
        .max_number_of_messages(10)
        .message_attribute_names("All")
        .wait_time_seconds(1)
        .send()
        .await
        .expect("receive dlq");
    let messages = got.messages();
    assert_eq!(messages.len(), 2);
    let malformed = messages
        .iter()
        .find(|m| m.body() == Some(bad))
        .expect("the bad body, byte for byte");
    let reason = malformed
        .message_attributes()
        .and_then(|a| a.get("cfpurge-reject-reason"))
        .and_then(|v| v.string_value())
        .expect("reason attribute");
    assert_eq!(reason, "malformed");
    assert_eq!(visible_count(moto, &url).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extension_keeps_a_waiting_message_hidden_past_its_timeout() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let url = moto.create_queue("ingest-extend", &[]).await;
    let client = moto.sqs_client();
    send(&client, &url, "/wait.html").await;
    let mut run = Running::start(Source::new(
        SqsQueue::new(moto.sqs_client(), url.clone(), None),
        settings(1, 2, 1000),
    ));
    let id = run.next_id().await;
    // Three original timeouts later, another consumer still sees nothing.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let other = client
            .receive_message()
            .queue_url(&url)
            .wait_time_seconds(0)
            .send()
            .await
            .expect("receive");
        assert!(other.messages().is_empty(), "the message became visible");
    }
    assert!(
        run.quiet_for(Duration::from_millis(100)).await,
        "passed on twice"
    );
    assert_eq!(run.source.delete(&[id]).await, 1);
    run.stop().await;
    assert_eq!(visible_count(moto, &url).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_message_is_not_counted_twice_and_is_deleted_with_its_latest_handle() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let url = moto.create_queue("ingest-redeliver", &[]).await;
    let client = moto.sqs_client();
    send(&client, &url, "/twice.html").await;
    let mut run = Running::start(Source::new(
        SqsQueue::new(moto.sqs_client(), url.clone(), None),
        settings(1, 30, 1000),
    ));
    let id = run.next_id().await;
    let source = run.source.clone();
    let old_receipt = source.receipt(&id).expect("held");
    // Make it visible again behind cfpurge's back: SQS delivers it again.
    client
        .change_message_visibility()
        .queue_url(&url)
        .receipt_handle(&old_receipt)
        .visibility_timeout(0)
        .send()
        .await
        .expect("change visibility");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while source.counts().redelivered == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(source.counts().redelivered, 1);
    assert_eq!(source.counts().received, 2);
    let latest = source.receipt(&id).expect("held");
    assert_ne!(latest, old_receipt, "the latest handle is kept");
    assert!(
        run.quiet_for(Duration::from_millis(300)).await,
        "passed on twice"
    );
    assert_eq!(source.held(), 1);
    assert_eq!(source.delete(&[id]).await, 1);
    run.stop().await;
    assert_eq!(visible_count(moto, &url).await, 0);
}

/// The SQS adapter, with the first delete of every message refused as a
/// batch partial failure (the way SQS reports `Failed` entries).
struct FlakyDeletes {
    inner: SqsQueue,
    refused: AtomicUsize,
    seen: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Queue for FlakyDeletes {
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Message>, QueueError> {
        self.inner.receive(max, wait).await
    }
    async fn set_visibility(
        &self,
        handles: &[Handle],
        timeout: Duration,
    ) -> Result<Vec<Failed>, QueueError> {
        self.inner.set_visibility(handles, timeout).await
    }
    async fn delete(&self, handles: &[Handle]) -> Result<Vec<Failed>, QueueError> {
        let (first_time, again): (Vec<Handle>, Vec<Handle>) = {
            let mut seen = self.seen.lock().expect("lock");
            handles
                .iter()
                .cloned()
                .partition(|h| seen.insert(h.id.clone()))
        };
        self.refused.fetch_add(first_time.len(), Ordering::SeqCst);
        let mut failed: Vec<Failed> = first_time
            .iter()
            .map(|h| Failed {
                id: h.id.clone(),
                code: "InternalError".to_owned(),
                sender_fault: false,
            })
            .collect();
        failed.extend(self.inner.delete(&again).await?);
        Ok(failed)
    }
    async fn reject(
        &self,
        message: &Message,
        reason: &str,
        detail: &str,
    ) -> Result<bool, QueueError> {
        self.inner.reject(message, reason, detail).await
    }
    async fn requeue(&self, message: &Message) -> Result<(), QueueError> {
        self.inner.requeue(message).await
    }
    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        self.inner.depth().await
    }
    async fn send(&self, body: &str) -> Result<String, QueueError> {
        self.inner.send(body).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_delete_failure_is_retried() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let url = moto.create_queue("ingest-flaky", &[]).await;
    let client = moto.sqs_client();
    for i in 0..12 {
        send(&client, &url, &format!("/f/{i}.html")).await;
    }
    let flaky = FlakyDeletes {
        inner: SqsQueue::new(moto.sqs_client(), url.clone(), None),
        refused: AtomicUsize::new(0),
        seen: Default::default(),
    };
    let source = Source::new(flaky, settings(1, 30, 1000));
    let out = wire(&source, 12, 0, Duration::from_secs(20)).await;
    assert_eq!(out.deleted, 12, "{out:?}");
    assert_eq!(source.queue().refused.load(Ordering::SeqCst), 12);
    assert_eq!(source.counts().delete_failures, 0);
    assert_eq!(visible_count(moto, &url).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiving_pauses_at_max_pending_messages_and_resumes_below() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let url = moto.create_queue("ingest-backpressure", &[]).await;
    let client = moto.sqs_client();
    for i in 0..25 {
        send(&client, &url, &format!("/b/{i}.html")).await;
    }
    let mut run = Running::start(Source::new(
        SqsQueue::new(moto.sqs_client(), url.clone(), None),
        settings(3, 30, 7),
    ));
    let mut ids = Vec::new();
    while ids.len() < 7 {
        ids.push(run.next_id().await);
    }
    // Three pollers, several long polls: still no more than seven held.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let source = run.source.clone();
    assert_eq!(source.held(), 7);
    assert_eq!(source.counts().received, 7);
    assert!(run.quiet_for(Duration::from_millis(10)).await);
    // Room for three more.
    source.delete(&ids[..3]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while source.counts().received < 10 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(source.counts().received, 10);
    assert_eq!(source.held(), 7);
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_queue_makes_the_source_not_ready_without_stopping_it() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let url = format!("{}/123456789012/no-such-queue", moto.endpoint());
    let run = Running::start(Source::new(
        SqsQueue::new(moto.sqs_client(), url, None),
        settings(2, 30, 10),
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while run.source.health() == QueueHealth::Ready && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let QueueHealth::NotReady(why) = run.source.health() else {
        panic!("still ready after a missing queue");
    };
    assert!(why.to_lowercase().contains("exist"), "{why}");
    // The pollers keep running, and stop on cancel.
    assert!(!run.tasks.is_empty());
    run.stop().await;
}
