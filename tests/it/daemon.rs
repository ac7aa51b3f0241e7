//! The daemon end to end: moto's SQS and the fake CloudFront endpoint, both
//! through the real AWS SDK.

use std::collections::HashMap;
use std::time::Duration;

use cfpurge::budget::{AnyStore, MemoryStore};
use cfpurge::cloudfront::aws::AwsInvalidator;
use cfpurge::cloudfront::model::Limits;
use cfpurge::config::Config;
use cfpurge::daemon::{Daemon, Totals};
use cfpurge::path::CfPath;
use cfpurge::source::queue::Queue;
use cfpurge::source::sqs::SqsQueue;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::support::fake_cloudfront::{FakeCloudFront, Fault, Operation};
use crate::support::moto::Moto;

/// A ledger in memory: the budget without a file.
fn memory_ledger() -> AnyStore {
    AnyStore::Memory(MemoryStore::new())
}

const DIST: &str = "E2ABCDEF123456";

fn config(queue_url: &str) -> Config {
    config_with(queue_url, "")
}

/// The test configuration with `extra` TOML appended to `[source]`.
fn config_with(queue_url: &str, source_extra: &str) -> Config {
    let toml = format!(
        r#"
[source]
queue_url = "{queue_url}"
{source_extra}
pollers = 2
wait_time_seconds = 1
visibility_timeout_seconds = 30
[distributions.www]
id = "{DIST}"
[[routing.s3]]
bucket = "site-bucket"
distribution = "www"
[batching]
quiet_seconds = 1
max_delay_seconds = 3
[cloudfront]
create_per_second = 20
create_burst = 5
poll_interval_seconds = 1
reconcile_interval_seconds = 1
[shutdown]
grace_seconds = 5
[budget]
pacing = "none"
monthly_paths = 1000000
"#
    );
    Config::from_parts(Some(&toml), "test", std::iter::empty()).expect("config")
}

/// Sends `bodies`, runs the daemon until the queue is empty (or `limit`),
/// stops it, and returns what it did and when each body was sent.
async fn run_until_drained(
    moto: &Moto,
    fake: &FakeCloudFront,
    name: &str,
    bodies: &[String],
    limit: Duration,
) -> (Totals, Vec<Instant>, String) {
    let url = moto.create_queue(name, &[]).await;
    run_queue_until_drained(fake, config(&url), moto.sqs_client(), bodies, limit).await
}

/// As `run_until_drained`, with the queue and the configuration given.
async fn run_queue_until_drained(
    fake: &FakeCloudFront,
    config: Config,
    client: aws_sdk_sqs::Client,
    bodies: &[String],
    limit: Duration,
) -> (Totals, Vec<Instant>, String) {
    let url = config.source.queue_url.clone().expect("queue url");
    let queue = SqsQueue::new(
        client,
        url.clone(),
        config.source.dead_letter_queue_url.clone(),
    );
    let mut sent = Vec::new();
    for b in bodies {
        sent.push(Instant::now());
        queue.send(b).await.expect("send");
    }
    let daemon = Daemon::new(&config, queue.clone(), AwsInvalidator::new(fake.client()))
        .with_ledger(memory_ledger());
    let cancel = CancellationToken::new();
    let run = tokio::spawn(daemon.run(cancel.clone()));
    drained(&queue, limit).await;
    cancel.cancel();
    let totals = run.await.expect("daemon ends");
    (totals, sent, url)
}

/// Waits until the queue holds nothing (true), or `limit` passes (false).
async fn drained(queue: &SqsQueue, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if queue.depth().await.expect("depth") == Default::default() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every path, covered by an invalidation created after its request was
/// sent.
fn assert_covered<P: AsRef<str>>(fake: &FakeCloudFront, wanted: &[(P, Instant)]) {
    let invalidations = fake.invalidations(DIST);
    for (path, sent) in wanted {
        let path = path.as_ref();
        let p = CfPath::parse(path).expect("path");
        let ok = invalidations.iter().any(|inv| {
            inv.created_at > *sent
                && inv
                    .paths
                    .iter()
                    .any(|q| CfPath::parse(q).expect("fake path").covers(&p))
        });
        assert!(
            ok,
            "{path} not covered by an invalidation made after it was sent"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_every_format_end_covered_and_the_queue_ends_empty() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let fake = FakeCloudFront::start(Duration::from_secs(2)).await;
    fake.add_distribution(DIST);
    let bodies = vec![
        r#"{"distribution":"www","paths":["/a/1.html","/a/2.html"]}"#.to_owned(),
        "/plain/one.html\n/plain/two.html\n".to_owned(),
        r#"{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"site-bucket"},"object":{"key":"img/my+photo.png"}}}]}"#.to_owned(),
        r#"{"source":"aws.s3","detail-type":"Object Deleted","detail":{"bucket":{"name":"site-bucket"},"object":{"key":"old/page.html"}}}"#.to_owned(),
        serde_json::json!({"Type": "Notification", "MessageId": "x", "Message": "/sns/wrapped.html"}).to_string(),
    ];
    let (totals, sent, _) = run_until_drained(
        moto,
        &fake,
        "daemon-formats",
        &bodies,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(totals.messages_deleted, 5, "{totals:?}");
    assert_covered(
        &fake,
        &[
            ("/a/1.html", sent[0]),
            ("/a/2.html", sent[0]),
            ("/plain/one.html", sent[1]),
            ("/plain/two.html", sent[1]),
            ("/img/my%20photo.png", sent[2]),
            ("/old/page.html", sent[3]),
            ("/sns/wrapped.html", sent[4]),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_server_errors_lose_nothing_and_never_duplicate_a_batch() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let fake = FakeCloudFront::start(Duration::from_secs(2)).await;
    fake.add_distribution(DIST);
    let faults = fake.faults();
    faults.seed(7);
    faults.fail_with_probability(Fault::Throttling, 0.3);
    faults.fail_with_probability(Fault::ServiceUnavailable, 0.1);
    let bodies: Vec<String> = (0..30)
        .map(|i| format!(r#"{{"paths":["/f/{}/{i}.html"]}}"#, i % 5))
        .collect();
    let (totals, sent, _) = run_until_drained(
        moto,
        &fake,
        "daemon-faults",
        &bodies,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(totals.messages_deleted, 30, "{totals:?}");
    let wanted: Vec<(String, Instant)> = (0..30)
        .map(|i| (format!("/f/{}/{i}.html", i % 5), sent[i]))
        .collect();
    assert_covered(&fake, &wanted);
    // The faults hit every operation: creates, polls and listings.
    let errors = fake
        .calls()
        .iter()
        .filter(|c| !c.outcome.is_success())
        .count();
    assert!(errors > 0, "the faults were injected");
    assert!(
        fake.invalidations_per_caller_reference()
            .values()
            .all(|&n| n == 1),
        "a batch made two invalidations"
    );
}

/// The fake creates the invalidation, then answers after the client has
/// given up: the outcome is unknown to the daemon. Its retry must go under
/// the same CallerReference, which CloudFront answers with the existing
/// invalidation; a retry under a new reference would make (and bill) a
/// second invalidation of the same paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_answered_too_late_is_retried_under_its_reference_and_made_once() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let fake = FakeCloudFront::start(Duration::from_secs(2)).await;
    fake.add_distribution(DIST);
    fake.faults().set_late_creates(1, Duration::from_secs(3));
    let url = moto.create_queue("daemon-late-create", &[]).await;
    let config = config(&url);
    let queue = SqsQueue::new(moto.sqs_client(), url.clone(), None);
    for i in 0..3 {
        queue
            .send(&format!(r#"{{"paths":["/late/{i}.html"]}}"#))
            .await
            .expect("send");
    }
    let invalidator = AwsInvalidator::new(fake.client_with_timeout(Duration::from_secs(1)));
    let daemon = Daemon::new(&config, queue.clone(), invalidator).with_ledger(memory_ledger());
    let cancel = CancellationToken::new();
    let run = tokio::spawn(daemon.run(cancel.clone()));
    assert!(
        drained(&queue, Duration::from_secs(60)).await,
        "not drained"
    );
    cancel.cancel();
    let totals = run.await.expect("daemon ends");
    assert_eq!(totals.messages_deleted, 3, "{totals:?}");
    let creates = fake.calls_of(Operation::CreateInvalidation);
    assert!(
        creates.len() >= 2,
        "the late create was retried: {creates:?}"
    );
    let mut made: HashMap<String, usize> = HashMap::new();
    for inv in fake.invalidations(DIST) {
        for p in inv.paths {
            *made.entry(p).or_default() += 1;
        }
    }
    assert_eq!(made.len(), 3, "{made:?}");
    assert!(
        made.values().all(|&n| n == 1),
        "a path was invalidated twice: {made:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn others_in_flight_and_a_burst_never_trip_the_limits() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let fake = FakeCloudFront::start(Duration::from_secs(3)).await;
    fake.add_distribution(DIST);
    // Another tool holds most of the room: 2,990 exact paths and 14 wildcards.
    let exact: Vec<String> = (0..2990).map(|i| format!("/other/{i}")).collect();
    let exact_refs: Vec<&str> = exact.iter().map(String::as_str).collect();
    fake.add_external(DIST, &exact_refs, "deploy-tool-1");
    let wild: Vec<String> = (0..14).map(|i| format!("/w{i}/*")).collect();
    let wild_refs: Vec<&str> = wild.iter().map(String::as_str).collect();
    fake.add_external(DIST, &wild_refs, "deploy-tool-2");
    // A burst in 40 directories of 3 files: far more than 10 exact paths
    // and one wildcard.
    let bodies: Vec<String> = (0..40)
        .map(|d| format!(r#"{{"paths":["/b{d}/1.html","/b{d}/2.html","/b{d}/3.html"]}}"#))
        .collect();
    let (totals, _, _) = run_until_drained(
        moto,
        &fake,
        "daemon-limits",
        &bodies,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(totals.messages_deleted, 40, "{totals:?}");
    let (peak_exact, peak_wild) = fake.peak_inflight(DIST);
    assert!(
        peak_exact <= Limits::AWS.exact && peak_wild <= Limits::AWS.wildcard,
        "peak {peak_exact}/{peak_wild}"
    );
    let refused: HashMap<String, usize> = fake
        .calls_of(Operation::CreateInvalidation)
        .iter()
        .filter(|c| !c.outcome.is_success())
        .fold(HashMap::new(), |mut m, c| {
            *m.entry(c.outcome.code().to_owned()).or_default() += 1;
            m
        });
    assert!(
        refused.is_empty(),
        "CloudFront refused creates: {refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_cloudfront_refuses_sends_only_the_messages_asking_for_it_to_the_dead_letter_queue()
{
    let moto = Moto::take().await;
    let moto = moto.server();
    let fake = FakeCloudFront::start(Duration::from_secs(2)).await;
    fake.add_distribution(DIST);
    // A rule cfpurge's validation does not know: CloudFront refuses the
    // path, whatever else is in the batch.
    fake.faults().refuse_path("/odd/refused.html");
    let url = moto.create_queue("daemon-refused", &[]).await;
    let dlq = moto.create_queue("daemon-refused-dlq", &[]).await;
    let config = config_with(&url, &format!("dead_letter_queue_url = \"{dlq}\""));
    // Twenty messages in twenty directories (nothing to coalesce), one of
    // them also asking for the refused path.
    let bodies: Vec<String> = (0..20)
        .map(|i| {
            if i == 7 {
                format!(r#"{{"paths":["/d{i}/page.html","/odd/refused.html"]}}"#)
            } else {
                format!(r#"{{"paths":["/d{i}/page.html"]}}"#)
            }
        })
        .collect();
    let (totals, sent, _) = run_queue_until_drained(
        &fake,
        config,
        moto.sqs_client(),
        &bodies,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(totals.messages_deleted, 19, "{totals:?}");
    let wanted: Vec<(String, Instant)> = (0..20)
        .filter(|&i| i != 7)
        .map(|i| (format!("/d{i}/page.html"), sent[i]))
        .collect();
    assert_covered(&fake, &wanted);
    let dead = SqsQueue::new(moto.sqs_client(), dlq, None);
    let forwarded = dead
        .receive(10, Duration::from_secs(1))
        .await
        .expect("receive from the dead-letter queue");
    assert_eq!(
        forwarded.len(),
        1,
        "only the message asking for the refused path"
    );
    assert_eq!(forwarded[0].body, bodies[7]);
    assert_eq!(
        forwarded[0].attributes["cfpurge-reject-reason"],
        "invalid_path"
    );
    assert!(
        forwarded[0].attributes["cfpurge-reject-detail"].contains("/odd/refused.html"),
        "the detail names the refused path: {:?}",
        forwarded[0].attributes
    );
    // Finding it took a few halvings, not a call per path.
    let refused = fake
        .calls_of(Operation::CreateInvalidation)
        .iter()
        .filter(|c| c.outcome.code() == "InvalidArgument")
        .count();
    assert!((1..=6).contains(&refused), "{refused} refused creates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_refused_as_too_large_or_invalid_is_split_and_everything_is_covered() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let fake = FakeCloudFront::start(Duration::from_secs(2)).await;
    fake.add_distribution(DIST);
    // The first create is refused as too large, the next as invalid, for
    // no reason the paths show: each halving goes out on its own.
    fake.faults().fail_next(Fault::BatchTooLarge, 1);
    fake.faults().fail_next(Fault::InvalidArgument, 1);
    let url = moto.create_queue("daemon-split", &[]).await;
    let dlq = moto.create_queue("daemon-split-dlq", &[]).await;
    let config = config_with(&url, &format!("dead_letter_queue_url = \"{dlq}\""));
    let bodies: Vec<String> = (0..12)
        .map(|i| format!(r#"{{"paths":["/s{i}/index.html"]}}"#))
        .collect();
    let (totals, sent, _) = run_queue_until_drained(
        &fake,
        config,
        moto.sqs_client(),
        &bodies,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(totals.messages_deleted, 12, "{totals:?}");
    let wanted: Vec<(String, Instant)> = (0..12)
        .map(|i| (format!("/s{i}/index.html"), sent[i]))
        .collect();
    assert_covered(&fake, &wanted);
    let codes: Vec<String> = fake
        .calls_of(Operation::CreateInvalidation)
        .iter()
        .map(|c| c.outcome.code().to_owned())
        .collect();
    assert!(
        codes.iter().any(|c| c == "BatchTooLarge") && codes.iter().any(|c| c == "InvalidArgument"),
        "{codes:?}"
    );
    let dead = SqsQueue::new(moto.sqs_client(), dlq, None);
    assert_eq!(dead.depth().await.expect("depth"), Default::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_never_exceed_the_configured_rate() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let fake = FakeCloudFront::start(Duration::from_secs(1)).await;
    // Twelve distributions whose batches all fall due together: far more
    // creates than the limiter lets out at once.
    let mut toml = String::new();
    for d in 0..12 {
        let id = format!("E{d:02}ABCDEFGHIJ");
        fake.add_distribution(&id);
        toml.push_str(&format!("[distributions.d{d}]\nid = \"{id}\"\n"));
    }
    let url = moto.create_queue("daemon-rate", &[]).await;
    let (rate, burst) = (4.0, 2.0);
    let config = Config::from_parts(
        Some(&format!(
            r#"
[source]
queue_url = "{url}"
wait_time_seconds = 1
{toml}
[batching]
quiet_seconds = 1
max_delay_seconds = 2
[cloudfront]
create_per_second = {rate}
create_burst = {burst}
poll_interval_seconds = 1
[budget]
pacing = "none"
"#
        )),
        "test",
        std::iter::empty(),
    )
    .expect("config");
    let bodies: Vec<String> = (0..36)
        .map(|i| {
            format!(
                r#"{{"distribution":"d{}","paths":["/r/{i}.html"]}}"#,
                i % 12
            )
        })
        .collect();
    let (totals, _, _) = run_queue_until_drained(
        &fake,
        config,
        moto.sqs_client(),
        &bodies,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(totals.messages_deleted, 36, "{totals:?}");
    let mut times: Vec<Instant> = fake
        .calls_of(Operation::CreateInvalidation)
        .iter()
        .map(|c| c.at)
        .collect();
    times.sort_unstable();
    assert!(times.len() >= 12, "{} creates", times.len());
    // In any stretch of the record, no more calls than the burst plus the
    // rate over its length; one call of slack for the two clocks.
    for i in 0..times.len() {
        for j in i + 1..times.len() {
            let span = times[j].duration_since(times[i]).as_secs_f64();
            let calls = (j - i + 1) as f64;
            assert!(
                calls <= burst + rate * span + 1.0,
                "{calls} creates in {span:.3} s (rate {rate}/s, burst {burst})"
            );
        }
    }
}

/// Creates a distribution in moto's CloudFront and returns its id.
async fn moto_distribution(client: &aws_sdk_cloudfront::Client) -> String {
    use aws_sdk_cloudfront::types::{
        DefaultCacheBehavior, DistributionConfig, Origin, Origins, S3OriginConfig,
        ViewerProtocolPolicy,
    };
    let origin = Origin::builder()
        .id("site")
        .domain_name("site-bucket.s3.amazonaws.com")
        .s3_origin_config(S3OriginConfig::builder().origin_access_identity("").build())
        .build()
        .expect("origin");
    let config = DistributionConfig::builder()
        .caller_reference("daemon-moto-cloudfront")
        .comment("cfpurge test")
        .enabled(true)
        .origins(
            Origins::builder()
                .quantity(1)
                .items(origin)
                .build()
                .expect("origins"),
        )
        .default_cache_behavior(
            DefaultCacheBehavior::builder()
                .target_origin_id("site")
                .viewer_protocol_policy(ViewerProtocolPolicy::AllowAll)
                .cache_policy_id("658327ea-f89d-4fab-a63d-7e88639e58f6")
                .build()
                .expect("cache behavior"),
        )
        .build()
        .expect("distribution config");
    let out = client
        .create_distribution()
        .distribution_config(config)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create distribution in moto: {e:?}"));
    out.distribution().expect("distribution").id().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_motos_own_cloudfront_requests_end_covered_and_the_queue_ends_empty() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let aws = cfpurge::config::AwsConfig {
        endpoint_url: Some(moto.endpoint().to_owned()),
        ..Default::default()
    };
    let cloudfront = cfpurge::aws::cloudfront(&Moto::sdk_config(), &aws);
    let id = moto_distribution(&cloudfront).await;
    let url = moto.create_queue("daemon-moto-cloudfront", &[]).await;
    let toml = format!(
        r#"
[source]
queue_url = "{url}"
wait_time_seconds = 1
[distributions.www]
id = "{id}"
[batching]
quiet_seconds = 1
max_delay_seconds = 3
[cloudfront]
poll_interval_seconds = 1
[budget]
pacing = "none"
"#
    );
    let config = Config::from_parts(Some(&toml), "test", std::iter::empty()).expect("config");
    let queue = SqsQueue::new(moto.sqs_client(), url, None);
    let mut sent = Vec::new();
    for i in 0..8 {
        let path = format!("/m/{i}.html");
        queue
            .send(&format!(r#"{{"paths":["{path}"]}}"#))
            .await
            .expect("send");
        sent.push(path);
    }
    let daemon = Daemon::new(
        &config,
        queue.clone(),
        AwsInvalidator::new(cloudfront.clone()),
    )
    .with_ledger(memory_ledger());
    let cancel = CancellationToken::new();
    let run = tokio::spawn(daemon.run(cancel.clone()));
    drained(&queue, Duration::from_secs(30)).await;
    cancel.cancel();
    let totals = run.await.expect("daemon ends");
    assert_eq!(totals.messages_deleted, 8, "{totals:?}");
    // What moto recorded covers every path.
    let listed = cloudfront
        .list_invalidations()
        .distribution_id(&id)
        .send()
        .await
        .expect("list invalidations");
    let mut paths: Vec<String> = Vec::new();
    for summary in listed
        .invalidation_list()
        .map(|l| l.items())
        .unwrap_or_default()
    {
        let inv = cloudfront
            .get_invalidation()
            .distribution_id(&id)
            .id(summary.id())
            .send()
            .await
            .expect("get invalidation");
        let inv = inv.invalidation().expect("invalidation");
        assert!(
            inv.status().eq_ignore_ascii_case("completed"),
            "{}",
            inv.status()
        );
        if let Some(batch) = inv.invalidation_batch() {
            paths.extend(
                batch
                    .paths()
                    .and_then(|p| p.items.clone())
                    .unwrap_or_default(),
            );
        }
    }
    for p in &sent {
        let p = CfPath::parse(p).expect("path");
        assert!(
            paths
                .iter()
                .any(|q| CfPath::parse(q).expect("moto path").covers(&p)),
            "{p} not covered in {paths:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_distribution_cloudfront_refuses_keeps_its_requests_queued_and_not_ready_until_it_exists()
{
    let moto = Moto::take().await;
    let moto = moto.server();
    // The distribution does not exist yet: NoSuchDistribution on every call.
    let fake = FakeCloudFront::start(Duration::from_secs(2)).await;
    let url = moto.create_queue("daemon-missing-distribution", &[]).await;
    let dlq = moto
        .create_queue("daemon-missing-distribution-dlq", &[])
        .await;
    let config = config_with(&url, &format!("dead_letter_queue_url = \"{dlq}\""));
    let queue = SqsQueue::new(moto.sqs_client(), url, Some(dlq.clone()));
    let mut sent = Vec::new();
    for i in 0..3 {
        sent.push(Instant::now());
        queue
            .send(&format!(r#"{{"paths":["/n/{i}.html"]}}"#))
            .await
            .expect("send");
    }
    let daemon = Daemon::new(&config, queue.clone(), AwsInvalidator::new(fake.client()))
        .with_ledger(memory_ledger());
    let observers = daemon.observers();
    let cancel = CancellationToken::new();
    let run = tokio::spawn(daemon.run(cancel.clone()));

    let deadline = Instant::now() + Duration::from_secs(20);
    while !observers
        .readiness
        .reasons()
        .iter()
        .any(|r| r.starts_with("distribution:www: ") && r.contains("NoSuchDistribution"))
    {
        assert!(
            Instant::now() < deadline,
            "never not ready: {:?}",
            observers.readiness.reasons()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Past the quiet window and the longest delay: still queued, nothing
    // rejected, nothing created.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let depth = queue.depth().await.expect("depth");
    assert_eq!(depth.visible + depth.in_flight, 3, "{depth:?}");
    let dead = SqsQueue::new(moto.sqs_client(), dlq, None);
    assert_eq!(dead.depth().await.expect("dlq depth"), Default::default());
    assert!(fake.invalidations(DIST).is_empty());

    // Created: the next reconcile sees it, and the held batch goes out at
    // once rather than after the one-minute retry.
    fake.add_distribution(DIST);
    assert!(
        drained(&queue, Duration::from_secs(20)).await,
        "not drained after the fix"
    );
    assert!(
        observers.readiness.is_ready(),
        "{:?}",
        observers.readiness.reasons()
    );
    cancel.cancel();
    let totals = run.await.expect("daemon ends");
    assert_eq!(totals.messages_deleted, 3, "{totals:?}");
    let wanted: Vec<(String, Instant)> =
        (0..3).map(|i| (format!("/n/{i}.html"), sent[i])).collect();
    assert_covered(&fake, &wanted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_tools_invalidations_this_month_are_counted_once_and_ours_not_twice() {
    use cfpurge::budget::LedgerStore as _;

    let moto = Moto::take().await;

    let moto = moto.server();
    let fake = FakeCloudFront::start(Duration::from_secs(1)).await;
    fake.add_distribution(DIST);
    // Another tool: 3 paths (one a wildcard, billed as one) and 2 paths.
    fake.add_external(DIST, &["/a.html", "/b.html", "/c/*"], "deploy-tool-1");
    fake.add_external(DIST, &["/d.html", "/e.html"], "deploy-tool-2");
    let url = moto.create_queue("daemon-external", &[]).await;
    let config = config(&url);
    let queue = SqsQueue::new(moto.sqs_client(), url, None);
    queue
        .send(r#"{"paths":["/ours.html"]}"#)
        .await
        .expect("send");
    let store = MemoryStore::new();
    let daemon = Daemon::new(&config, queue.clone(), AwsInvalidator::new(fake.client()))
        .with_ledger(AnyStore::Memory(store.clone()));
    let cancel = CancellationToken::new();
    let run = tokio::spawn(daemon.run(cancel.clone()));
    assert!(
        drained(&queue, Duration::from_secs(20)).await,
        "not drained"
    );
    // A few more reconciles (one a second here) find nothing new.
    tokio::time::sleep(Duration::from_secs(3)).await;
    fake.add_external(DIST, &["/f.html"], "deploy-tool-3");
    tokio::time::sleep(Duration::from_secs(3)).await;
    cancel.cancel();
    run.await.expect("daemon ends");
    let state = store.load().expect("load").expect("a ledger");
    assert_eq!(state.external, 6, "{state:?}");
    assert_eq!(state.spent, 1, "our own path, once");
    // The other tools' three and ours are all remembered as looked at.
    assert_eq!(state.external_seen.len(), 4, "{state:?}");
}
