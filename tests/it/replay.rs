//! The astro-docs trace (`benches/data/astro-docs-commits.jsonl`) replayed
//! end to end, compressed in time, through moto's SQS and the fake
//! CloudFront, once through cfpurge's daemon and once through the consumer
//! teams write without it: one CreateInvalidation per message. Both runs see
//! the same requests at the same offsets against a fake that keeps
//! invalidations in progress, enforces the 3,000/15 limits and throttles
//! creates like AWS, all sped up by [`SPEEDUP`].
//!
//! The short form runs in the normal suite and checks coverage and cost; the
//! long form replays the whole trace and prints the figures:
//! `cargo test --release --test it replay_astro -- --ignored --nocapture`
//! (`CFPURGE_REPLAY_COMPRESSION` sets the compression, default
//! [`DEFAULT_COMPRESSION`]).

use std::time::Duration;

use aws_sdk_cloudfront::error::ProvideErrorMetadata as _;
use aws_sdk_cloudfront::types::{InvalidationBatch, Paths};
use cfpurge::cloudfront::aws::AwsInvalidator;
use cfpurge::config::Config;
use cfpurge::daemon::Daemon;
use cfpurge::source::queue::{MAX_RECEIVE, Queue};
use cfpurge::source::sqs::SqsQueue;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::support::fake_cloudfront::{FakeCloudFront, Operation, RateLimit, coverage};
use crate::support::moto::Moto;

const DIST: &str = "E3ASTRODOCS0001";

/// How much faster than AWS the fake CloudFront runs: its in-progress time
/// is divided by this and its create rate multiplied by it. The trace's own
/// compression cannot apply to CloudFront (at 300,000 an invalidation would
/// be in progress for half a millisecond), so multiplying every measured
/// time by this reads the run as the trace squeezed by `compression /
/// SPEEDUP` against AWS's real limits.
const SPEEDUP: f64 = 60.0;

/// How long an invalidation stays in progress on AWS ("minutes", as
/// reported); [`SPEEDUP`] times less on the fake.
const AWS_IN_PROGRESS: Duration = Duration::from_secs(180);

/// The whole trace (829 days) in about 4 minutes a run.
const DEFAULT_COMPRESSION: f64 = 300_000.0;

/// The short form: the first requests of the trace (37.6 days), in about
/// 5.4 seconds.
const SHORT_REQUESTS: usize = 300;
const SHORT_COMPRESSION: f64 = 600_000.0;

/// The naive consumer's loops, as many as the daemon's pollers.
const NAIVE_WORKERS: usize = 2;
/// Its long-poll wait: SQS's 20 s, sped up, rounded up to whole seconds.
const NAIVE_WAIT: Duration = Duration::from_secs(1);
/// Its backoff on Throttling: the SDK's standard retry (1 s doubling to
/// 20 s, full jitter), sped up.
const NAIVE_BACKOFF_BASE: Duration = Duration::from_millis(17);
const NAIVE_BACKOFF_CAP: Duration = Duration::from_millis(333);
/// Its wait after TooManyInvalidationsInProgress: 30 s, sped up.
const NAIVE_TOO_MANY_WAIT: Duration = Duration::from_millis(500);
/// Attempts per message before it is left for SQS to deliver again.
const NAIVE_MAX_ATTEMPTS: u32 = 1_000;

/// How often the queue's depth is checked once everything is sent.
const DEPTH_EVERY: Duration = Duration::from_millis(100);

/// One request of the trace.
#[derive(Clone, Debug)]
pub(crate) struct Request {
    /// Seconds since the trace's first request.
    pub(crate) t: f64,
    pub(crate) paths: Vec<String>,
}

/// Reads the first `limit` requests of the trace (all with `None`).
pub(crate) fn load_trace(limit: Option<usize>) -> Vec<Request> {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/data/astro-docs-commits.jsonl"
    );
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("read {file}: {e}"));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .take(limit.unwrap_or(usize::MAX))
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("trace line is JSON");
            Request {
                t: v["t"].as_f64().expect("trace line has t"),
                paths: v["paths"]
                    .as_array()
                    .expect("trace line has paths")
                    .iter()
                    .map(|p| p.as_str().expect("path is a string").to_owned())
                    .collect(),
            }
        })
        .collect()
}

/// Which consumer drains the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Consumer {
    Cfpurge,
    Naive,
}

impl Consumer {
    fn name(self) -> &'static str {
        match self {
            Consumer::Cfpurge => "cfpurge",
            Consumer::Naive => "naive",
        }
    }
}

/// What one replay measured.
#[derive(Debug)]
struct Run {
    consumer: Consumer,
    messages: usize,
    requested_paths: usize,
    /// Paths of every invalidation the fake created: what AWS bills.
    billed_paths: usize,
    invalidations: usize,
    create_calls: usize,
    throttling: usize,
    too_many: usize,
    /// When the last request was sent, from the first.
    last_send: Duration,
    /// From the first send until the queue was seen empty; `None` if it
    /// was not before the deadline.
    drain: Option<Duration>,
    /// Send to the creation of the covering invalidation, of every request
    /// that has one, sorted.
    latencies: Vec<Duration>,
    uncovered: usize,
    queue_empty: bool,
}

impl Run {
    fn percentile(&self, q: f64) -> Option<Duration> {
        if self.latencies.is_empty() {
            return None;
        }
        // Nearest rank.
        let rank = (q * self.latencies.len() as f64).ceil() as usize;
        Some(self.latencies[rank.clamp(1, self.latencies.len()) - 1])
    }
}

/// The fake CloudFront as AWS behaves, [`SPEEDUP`] times faster.
async fn fake_cloudfront() -> FakeCloudFront {
    let fake = FakeCloudFront::start(AWS_IN_PROGRESS.div_f64(SPEEDUP)).await;
    fake.add_distribution(DIST);
    fake.faults().set_rate_limit(Some(RateLimit {
        per_second: RateLimit::AWS.per_second * SPEEDUP,
        burst: RateLimit::AWS.burst,
    }));
    fake
}

/// The daemon's settings: the defaults, with every interval sped up by
/// [`SPEEDUP`] as far as whole seconds allow, and a budget that never binds
/// (the naive consumer has none).
fn daemon_config(queue_url: &str, ledger: &std::path::Path) -> Config {
    let toml = format!(
        r#"
[source]
queue_url = "{queue_url}"
pollers = {NAIVE_WORKERS}
wait_time_seconds = 1
visibility_timeout_seconds = 30
[distributions.docs]
id = "{DIST}"
[batching]
quiet_seconds = 1
max_delay_seconds = 1
[cloudfront]
create_per_second = {rate}
create_burst = 3
poll_interval_seconds = 1
reconcile_interval_seconds = 5
[budget]
monthly_paths = 100000000
pacing = "none"
ledger_path = "{ledger}"
[shutdown]
grace_seconds = 5
"#,
        rate = RateLimit::AWS.per_second * SPEEDUP,
        ledger = ledger.display(),
    );
    Config::from_parts(Some(&toml), "replay", std::iter::empty()).expect("replay config")
}

/// The consumer teams deploy without cfpurge: receive, one
/// CreateInvalidation per message with its paths and its message id as
/// CallerReference, retried on Throttling (backoff) and
/// TooManyInvalidationsInProgress (a fixed wait), then delete the message.
async fn naive_worker(queue: SqsQueue, cf: aws_sdk_cloudfront::Client, cancel: CancellationToken) {
    while !cancel.is_cancelled() {
        let received = tokio::select! {
            () = cancel.cancelled() => break,
            r = queue.receive(MAX_RECEIVE, NAIVE_WAIT) => r,
        };
        let Ok(messages) = received else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        for message in messages {
            let body: serde_json::Value =
                serde_json::from_str(&message.body).expect("the replay sends JSON");
            let paths: Vec<String> = body["paths"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p.as_str().map(str::to_owned))
                .collect();
            if naive_create(&cf, &message.id, paths, &cancel).await {
                // A failed delete leaves the message to come back, and its
                // reference makes the second create a no-op.
                let _ = queue.delete(&[message.handle()]).await;
            }
        }
    }
}

/// One message's CreateInvalidation with the naive consumer's retries;
/// whether it was accepted.
async fn naive_create(
    cf: &aws_sdk_cloudfront::Client,
    reference: &str,
    paths: Vec<String>,
    cancel: &CancellationToken,
) -> bool {
    let batch = InvalidationBatch::builder()
        .caller_reference(reference)
        .paths(
            Paths::builder()
                .quantity(paths.len() as i32)
                .set_items(Some(paths))
                .build()
                .expect("paths with a quantity"),
        )
        .build()
        .expect("a batch with paths and a reference");
    for attempt in 0..NAIVE_MAX_ATTEMPTS {
        let result = cf
            .create_invalidation()
            .distribution_id(DIST)
            .invalidation_batch(batch.clone())
            .send()
            .await;
        let wait = match result {
            Ok(_) => return true,
            Err(e) => match e.code() {
                Some("Throttling") => {
                    let ceiling = NAIVE_BACKOFF_BASE
                        .saturating_mul(1 << attempt.min(16))
                        .min(NAIVE_BACKOFF_CAP);
                    ceiling.mul_f64(rand::random::<f64>())
                }
                Some("TooManyInvalidationsInProgress") => NAIVE_TOO_MANY_WAIT,
                _ => return false,
            },
        };
        tokio::select! {
            () = cancel.cancelled() => return false,
            () = tokio::time::sleep(wait) => {}
        }
    }
    false
}

/// Replays `requests` at `t / compression` seconds into one consumer,
/// waits until the queue is empty (or `drain_limit` after the last send),
/// and measures the run.
async fn replay(
    moto: &Moto,
    consumer: Consumer,
    name: &str,
    requests: &[Request],
    compression: f64,
    drain_limit: Duration,
) -> Run {
    let fake = fake_cloudfront().await;
    let url = moto
        .create_queue(&format!("replay-{name}-{}", consumer.name()), &[])
        .await;
    let queue = SqsQueue::new(moto.sqs_client(), url.clone(), None);
    let ledger = tempfile::tempdir().expect("ledger folder");
    let cancel = CancellationToken::new();
    let tasks: Vec<tokio::task::JoinHandle<()>> = match consumer {
        Consumer::Cfpurge => {
            let daemon = Daemon::new(
                &daemon_config(&url, &ledger.path().join("ledger.json")),
                queue.clone(),
                AwsInvalidator::new(fake.client()),
            );
            let run = daemon.run(cancel.clone());
            vec![tokio::spawn(async move {
                run.await;
            })]
        }
        Consumer::Naive => (0..NAIVE_WORKERS)
            .map(|_| tokio::spawn(naive_worker(queue.clone(), fake.client(), cancel.clone())))
            .collect(),
    };

    let start = Instant::now();
    let mut sent = Vec::with_capacity(requests.len());
    for request in requests {
        tokio::time::sleep_until(start + Duration::from_secs_f64(request.t / compression)).await;
        let body = serde_json::json!({ "paths": request.paths }).to_string();
        sent.push(Instant::now());
        send_with_retries(&queue, &body).await;
    }
    let last_send = sent.last().map_or(Duration::ZERO, |t| *t - start);

    let deadline = Instant::now() + drain_limit;
    let mut drain = None;
    while Instant::now() < deadline {
        if let Ok(d) = queue.depth().await
            && d.visible + d.in_flight + d.delayed == 0
        {
            drain = Some(start.elapsed());
            break;
        }
        tokio::time::sleep(DEPTH_EVERY).await;
    }
    cancel.cancel();
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("the consumer stops within a minute")
            .expect("the consumer does not panic");
    }
    let queue_empty = queue
        .depth()
        .await
        .is_ok_and(|d| d.visible + d.in_flight + d.delayed == 0);

    let invalidations = fake.invalidations(DIST);
    let waits = coverage(
        requests
            .iter()
            .map(|r| r.paths.as_slice())
            .zip(sent.iter().copied()),
        &invalidations,
    );
    let uncovered = waits.iter().filter(|w| w.is_none()).count();
    let mut latencies: Vec<Duration> = waits.into_iter().flatten().collect();
    latencies.sort();
    let creates = fake.calls_of(Operation::CreateInvalidation);
    let answered = |code: &str| creates.iter().filter(|c| c.outcome.code() == code).count();
    Run {
        consumer,
        messages: requests.len(),
        requested_paths: requests.iter().map(|r| r.paths.len()).sum(),
        billed_paths: invalidations.iter().map(|i| i.paths.len()).sum(),
        invalidations: invalidations.len(),
        create_calls: creates.len(),
        throttling: answered("Throttling"),
        too_many: answered("TooManyInvalidationsInProgress"),
        last_send,
        drain,
        latencies,
        uncovered,
        queue_empty,
    }
}

/// Sends one body, retrying moto's rare transient failures a few times.
async fn send_with_retries(queue: &SqsQueue, body: &str) {
    for attempt in 0..5 {
        match queue.send(body).await {
            Ok(_) => return,
            Err(e) if e.is_transient() && attempt < 4 => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("send to moto: {e}"),
        }
    }
}

fn secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "–".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()))
}

fn ratio(naive: f64, cfpurge: f64) -> String {
    if cfpurge == 0.0 {
        "–".to_owned()
    } else {
        format!("{:.2}", naive / cfpurge)
    }
}

/// Both runs as a markdown table, naive ÷ cfpurge in the last column.
fn table(cfpurge: &Run, naive: &Run) -> String {
    let f = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64());
    let rows: Vec<(&str, String, String, String)> = vec![
        (
            "messages",
            cfpurge.messages.to_string(),
            naive.messages.to_string(),
            ratio(naive.messages as f64, cfpurge.messages as f64),
        ),
        (
            "requested paths",
            cfpurge.requested_paths.to_string(),
            naive.requested_paths.to_string(),
            ratio(naive.requested_paths as f64, cfpurge.requested_paths as f64),
        ),
        (
            "billed paths",
            cfpurge.billed_paths.to_string(),
            naive.billed_paths.to_string(),
            ratio(naive.billed_paths as f64, cfpurge.billed_paths as f64),
        ),
        (
            "invalidations created",
            cfpurge.invalidations.to_string(),
            naive.invalidations.to_string(),
            ratio(naive.invalidations as f64, cfpurge.invalidations as f64),
        ),
        (
            "CreateInvalidation calls",
            cfpurge.create_calls.to_string(),
            naive.create_calls.to_string(),
            ratio(naive.create_calls as f64, cfpurge.create_calls as f64),
        ),
        (
            "Throttling answers",
            cfpurge.throttling.to_string(),
            naive.throttling.to_string(),
            ratio(naive.throttling as f64, cfpurge.throttling as f64),
        ),
        (
            "TooManyInvalidationsInProgress answers",
            cfpurge.too_many.to_string(),
            naive.too_many.to_string(),
            ratio(naive.too_many as f64, cfpurge.too_many as f64),
        ),
        (
            "last request sent",
            secs(Some(cfpurge.last_send)),
            secs(Some(naive.last_send)),
            "–".to_owned(),
        ),
        (
            "time to drain (first send to empty queue)",
            secs(cfpurge.drain),
            secs(naive.drain),
            ratio(f(naive.drain), f(cfpurge.drain)),
        ),
        (
            "send to covering invalidation, p50",
            secs(cfpurge.percentile(0.50)),
            secs(naive.percentile(0.50)),
            ratio(f(naive.percentile(0.50)), f(cfpurge.percentile(0.50))),
        ),
        (
            "send to covering invalidation, p99",
            secs(cfpurge.percentile(0.99)),
            secs(naive.percentile(0.99)),
            ratio(f(naive.percentile(0.99)), f(cfpurge.percentile(0.99))),
        ),
        (
            "requests covered",
            format!(
                "{}/{}",
                cfpurge.messages - cfpurge.uncovered,
                cfpurge.messages
            ),
            format!("{}/{}", naive.messages - naive.uncovered, naive.messages),
            "–".to_owned(),
        ),
    ];
    let mut out = String::from("| | cfpurge | naive | naive ÷ cfpurge |\n|---|---:|---:|---:|\n");
    for (name, a, b, r) in rows {
        out.push_str(&format!("| {name} | {a} | {b} | {r} |\n"));
    }
    out
}

/// The settings both runs used, for the printout.
fn settings(compression: f64, requests: &[Request]) -> String {
    let span = requests.last().map_or(0.0, |r| r.t);
    format!(
        "trace: {} requests over {:.1} days, compressed {compression:.0}× into {:.1} s\n\
         fake CloudFront: {SPEEDUP}× AWS: in progress {:.1} s, creates {}/s with a burst of {}, \
         3,000 exact / 15 wildcard paths in flight\n\
         cfpurge: quiet 1 s, max delay 1 s, 2 pollers, long poll 1 s, {}/s creates (burst 3), \
         poll 1 s, reconcile 5 s, wildcard threshold 8, no budget limit\n\
         naive: {NAIVE_WORKERS} loops, long poll 1 s, one create per message, Throttling backoff \
         {}–{} ms full jitter, {} ms after TooManyInvalidationsInProgress, queue visibility 30 s\n\
         read as AWS time (× {SPEEDUP}): the trace compressed {:.0}×",
        requests.len(),
        span / 86_400.0,
        span / compression,
        AWS_IN_PROGRESS.as_secs_f64() / SPEEDUP,
        RateLimit::AWS.per_second * SPEEDUP,
        RateLimit::AWS.burst,
        RateLimit::AWS.per_second * SPEEDUP,
        NAIVE_BACKOFF_BASE.as_millis(),
        NAIVE_BACKOFF_CAP.as_millis(),
        NAIVE_TOO_MANY_WAIT.as_millis(),
        compression / SPEEDUP,
    )
}

fn assert_sound(run: &Run) {
    let who = run.consumer.name();
    assert_eq!(
        run.uncovered, 0,
        "{who}: {} requests never covered by an invalidation made after they were sent",
        run.uncovered
    );
    assert!(run.queue_empty, "{who}: messages left in the queue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_of_the_trace_start_covers_every_request_and_bills_no_more_than_naive() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let requests = load_trace(Some(SHORT_REQUESTS));
    let limit = Duration::from_secs(40);
    let cfpurge = replay(
        moto,
        Consumer::Cfpurge,
        "short",
        &requests,
        SHORT_COMPRESSION,
        limit,
    )
    .await;
    let naive = replay(
        moto,
        Consumer::Naive,
        "short",
        &requests,
        SHORT_COMPRESSION,
        limit,
    )
    .await;
    let report = table(&cfpurge, &naive);
    println!("{report}");
    assert_sound(&cfpurge);
    assert_sound(&naive);
    assert!(
        cfpurge.billed_paths <= naive.billed_paths,
        "cfpurge billed more than one invalidation per message\n{report}"
    );
    assert_eq!(
        cfpurge.too_many, 0,
        "cfpurge ran into the in-flight limits\n{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "replays the whole trace: minutes; run with --release --ignored --nocapture"]
async fn replay_astro_whole_trace_against_the_naive_consumer() {
    let compression = std::env::var("CFPURGE_REPLAY_COMPRESSION")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map_or(DEFAULT_COMPRESSION, |v| {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|c| c.is_finite() && *c > 0.0)
                .unwrap_or_else(|| panic!("CFPURGE_REPLAY_COMPRESSION={v:?}: want a number > 0"))
        });
    let moto = Moto::take().await;
    let moto = moto.server();
    let requests = load_trace(None);
    let limit = Duration::from_secs(600);
    println!("{}\n", settings(compression, &requests));
    let cfpurge = replay(
        moto,
        Consumer::Cfpurge,
        "whole",
        &requests,
        compression,
        limit,
    )
    .await;
    let naive = replay(
        moto,
        Consumer::Naive,
        "whole",
        &requests,
        compression,
        limit,
    )
    .await;
    println!("{}", table(&cfpurge, &naive));
    assert_sound(&cfpurge);
    assert_sound(&naive);
    assert_eq!(cfpurge.too_many, 0, "cfpurge ran into the in-flight limits");
}
