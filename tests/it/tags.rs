//! Cache tags and `routing.skip` end to end: the daemon against moto's SQS
//! and the fake CloudFront, through the real AWS SDK.

use std::time::Duration;

use cfpurge::budget::{AnyStore, MemoryStore};
use cfpurge::cloudfront::aws::AwsInvalidator;
use cfpurge::config::Config;
use cfpurge::daemon::{Daemon, Observers, Totals};
use cfpurge::source::queue::Queue;
use cfpurge::source::sqs::SqsQueue;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::support::fake_cloudfront::{FakeCloudFront, coverage};
use crate::support::moto::Moto;

const DIST: &str = "E2ABCDEF123456";

/// A pattern for Vite's hashed assets (`assets/name-XXXXXXXX.js`, their
/// source maps, styles and fonts).
const VITE: &str = r"^/assets/[^/]+-[A-Za-z0-9_-]{8}\.(js|mjs|css|woff2?)(\.map)?$";

fn config(queue_url: &str) -> Config {
    config_with(queue_url, "")
}

/// The test configuration with `extra` TOML in `[source]`.
fn config_with(queue_url: &str, extra: &str) -> Config {
    let toml = format!(
        r#"
[source]
queue_url = "{queue_url}"
{extra}
pollers = 2
wait_time_seconds = 1
visibility_timeout_seconds = 30
[distributions.www]
id = "{DIST}"
cache_tags = true
max_inflight_paths = 4
[routing]
skip = ['{VITE}']
[[routing.s3]]
bucket = "site-bucket"
distribution = "www"
index_document = "index.html"
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

/// A running daemon on a fresh queue.
struct Running {
    queue: SqsQueue,
    observers: Observers,
    cancel: CancellationToken,
    run: tokio::task::JoinHandle<Totals>,
}

async fn start(moto: &Moto, fake: &FakeCloudFront, name: &str) -> Running {
    let url = moto.create_queue(name, &[]).await;
    start_with(moto, fake, config(&url)).await
}

async fn start_with(moto: &Moto, fake: &FakeCloudFront, config: Config) -> Running {
    let url = config.source.queue_url.clone().expect("queue url");
    let queue = SqsQueue::new(
        moto.sqs_client(),
        url,
        config.source.dead_letter_queue_url.clone(),
    );
    let daemon = Daemon::new(&config, queue.clone(), AwsInvalidator::new(fake.client()))
        .with_ledger(AnyStore::Memory(MemoryStore::new()));
    let observers = daemon.observers();
    let cancel = CancellationToken::new();
    let run = tokio::spawn(daemon.run(cancel.clone()));
    Running {
        queue,
        observers,
        cancel,
        run,
    }
}

impl Running {
    async fn send(&self, body: &str) -> Instant {
        let at = Instant::now();
        self.queue.send(body).await.expect("send");
        at
    }

    /// Waits until the queue is empty (bounded), stops the daemon, returns
    /// what it did and its metrics' text.
    async fn drain_and_stop(self, limit: Duration) -> (Totals, String) {
        let deadline = Instant::now() + limit;
        while self.queue.depth().await.expect("depth") != Default::default() {
            assert!(Instant::now() < deadline, "the queue did not drain");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.cancel.cancel();
        let totals = self.run.await.expect("daemon ends");
        (totals, cfpurge::metrics::encode(&self.observers.registry))
    }
}

/// The value of one series in a metrics text.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{series} missing"))
}

fn items(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// Paths, wildcards and tags of two messages go out in one
/// CreateInvalidation, each tag once whatever its case; later tags wait for
/// room among the exact paths in flight (tags count with them); every tag
/// is covered by an invalidation holding it, and billed one path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_wildcards_and_tags_go_out_together_and_tags_count_as_exact_paths() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let fake = FakeCloudFront::start(Duration::from_secs(6)).await;
    fake.add_distribution(DIST);
    let running = start(moto, &fake, "tags-mix").await;

    let pages: Vec<String> = (1..=8).map(|i| format!("/a/{i}.html")).collect();
    let mut m1 = pages.clone();
    m1.extend(items(&["/b.html", "/c/*"]));
    let body1 = serde_json::json!({"paths": m1, "tags": ["Blog", "news"]}).to_string();
    let body2 = r##"{"paths": ["#BLOG", "/b.html"]}"##;
    let t1 = running.send(&body1).await;
    let t2 = running.send(body2).await;

    let deadline = Instant::now() + Duration::from_secs(30);
    while fake.invalidations(DIST).is_empty() {
        assert!(Instant::now() < deadline, "no invalidation");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Three tags while three exact items (one path, two tags) of the first
    // are in flight against max_inflight_paths = 4.
    let body3 = r#"{"tags": ["sale", "x1", "x2"]}"#;
    let t3 = running.send(body3).await;
    let (totals, text) = running.drain_and_stop(Duration::from_secs(60)).await;

    let invalidations = fake.invalidations(DIST);
    let mut first = invalidations[0].paths.clone();
    first.sort();
    assert_eq!(first, ["#Blog", "#news", "/a/*", "/b.html", "/c/*"]);
    let (peak_exact, peak_wildcard) = fake.peak_inflight(DIST);
    assert!(
        peak_exact <= 4,
        "exact items in flight peaked at {peak_exact}"
    );
    assert_eq!(peak_wildcard, 2);
    let later: Vec<String> = invalidations[1..]
        .iter()
        .flat_map(|i| i.paths.clone())
        .collect();
    let mut later_sorted = later.clone();
    later_sorted.sort();
    assert_eq!(later_sorted, ["#sale", "#x1", "#x2"]);
    assert!(
        invalidations.len() >= 3,
        "the three tags cannot fit beside the first batch at once"
    );

    let mut all_items = m1.clone();
    all_items.extend(items(&["#Blog", "#news"]));
    let requests = [
        (all_items, t1),
        (items(&["#BLOG", "/b.html"]), t2),
        (items(&["#sale", "#x1", "#x2"]), t3),
    ];
    let covered = coverage(
        requests.iter().map(|(r, t)| (r.as_slice(), *t)),
        &invalidations,
    );
    assert!(covered.iter().all(Option::is_some), "{covered:?}");

    let billed: usize = invalidations.iter().map(|i| i.paths.len()).sum();
    assert_eq!(billed, 8);
    assert_eq!(totals.paths_submitted, 8);
    assert_eq!(totals.messages_deleted, 3);
    assert_eq!(
        metric(&text, "cfpurge_budget_paths_used{account=\"default\"}"),
        8.0
    );
    assert_eq!(
        metric(
            &text,
            "cfpurge_paths_submitted_total{distribution=\"www\",kind=\"tag\"}"
        ),
        5.0
    );
    assert_eq!(
        metric(
            &text,
            "cfpurge_paths_submitted_total{distribution=\"www\",kind=\"exact\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            "cfpurge_paths_submitted_total{distribution=\"www\",kind=\"wildcard\"}"
        ),
        2.0
    );
}

/// An S3 event of a whole deploy bills only the pages; a message of only
/// hashed assets is deleted without an invalidation. Both are counted in
/// `cfpurge_paths_skipped_total`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_assets_are_never_billed_and_a_message_of_only_them_is_deleted() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let fake = FakeCloudFront::start(Duration::from_secs(2)).await;
    fake.add_distribution(DIST);
    let record = |key: &str| {
        serde_json::json!({"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "site-bucket"}, "object": {"key": key}}})
    };
    let assets = [
        "assets/index-BXd1X2ab.js",
        "assets/index-BXd1X2ab.js.map",
        "assets/style-C3e4F5g6.css",
        "assets/inter-Abc_1234.woff2",
    ];

    // Only hashed assets: deleted, nothing created.
    let running = start(moto, &fake, "skip-assets").await;
    let only_assets: Vec<_> = assets.iter().map(|k| record(k)).collect();
    running
        .send(&serde_json::json!({ "Records": only_assets }).to_string())
        .await;
    let (totals, text) = running.drain_and_stop(Duration::from_secs(30)).await;
    assert_eq!(totals.messages_deleted, 1, "{totals:?}");
    assert!(fake.invalidations(DIST).is_empty());
    assert_eq!(
        metric(&text, "cfpurge_paths_skipped_total{distribution=\"www\"}"),
        4.0
    );

    // A whole deploy: the pages only.
    let running = start(moto, &fake, "skip-deploy").await;
    let mut deploy: Vec<_> = ["index.html", "docs/index.html", "about.html"]
        .iter()
        .map(|k| record(k))
        .collect();
    deploy.extend(assets.iter().map(|k| record(k)));
    let sent = running
        .send(&serde_json::json!({ "Records": deploy }).to_string())
        .await;
    let (totals, text) = running.drain_and_stop(Duration::from_secs(30)).await;
    assert_eq!(totals.messages_deleted, 1, "{totals:?}");
    let invalidations = fake.invalidations(DIST);
    let mut billed: Vec<String> = invalidations.iter().flat_map(|i| i.paths.clone()).collect();
    billed.sort();
    // Six page paths, within max_inflight_paths = 4: "/docs/*" takes two.
    assert_eq!(
        billed,
        ["/", "/about.html", "/docs", "/docs/*", "/index.html"]
    );
    let pages = items(&[
        "/",
        "/about.html",
        "/docs",
        "/docs/",
        "/docs/index.html",
        "/index.html",
    ]);
    assert!(coverage([(pages.as_slice(), sent)], &invalidations)[0].is_some());
    assert_eq!(
        metric(&text, "cfpurge_paths_skipped_total{distribution=\"www\"}"),
        4.0
    );
    assert_eq!(
        metric(&text, "cfpurge_paths_requested_total{distribution=\"www\"}"),
        6.0
    );
}

/// A tag CloudFront refuses (a rule cfpurge does not know) sends only the
/// messages asking for it, in any case, to the dead-letter queue as
/// `invalid_tag`; the rest of the batch is covered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_cloudfront_refuses_rejects_only_the_messages_asking_for_it() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let fake = FakeCloudFront::start(Duration::from_secs(2)).await;
    fake.add_distribution(DIST);
    // Whichever spelling arrives first is the one sent.
    fake.faults().refuse_path("#Refused");
    fake.faults().refuse_path("#REFUSED");
    let url = moto.create_queue("tags-refused", &[]).await;
    let dlq = moto.create_queue("tags-refused-dlq", &[]).await;
    let running = start_with(
        moto,
        &fake,
        config_with(&url, &format!("dead_letter_queue_url = \"{dlq}\"")),
    )
    .await;
    let bodies = [
        r#"{"tags": ["ok"]}"#,
        r##"{"paths": ["/p.html", "#Refused"]}"##,
        r#"{"tags": ["REFUSED"]}"#,
        r#"{"paths": ["/q.html"]}"#,
    ];
    let mut sent = Vec::new();
    for b in bodies {
        sent.push(running.send(b).await);
    }
    let (totals, text) = running.drain_and_stop(Duration::from_secs(60)).await;
    assert_eq!(totals.messages_deleted, 2, "{totals:?}");
    let invalidations = fake.invalidations(DIST);
    let ok = [(items(&["#ok"]), sent[0]), (items(&["/q.html"]), sent[3])];
    let covered = coverage(ok.iter().map(|(r, t)| (r.as_slice(), *t)), &invalidations);
    assert!(covered.iter().all(Option::is_some), "{covered:?}");
    let dead = SqsQueue::new(moto.sqs_client(), dlq, None);
    let mut forwarded = Vec::new();
    for _ in 0..5 {
        forwarded.extend(
            dead.receive(10, Duration::from_secs(1))
                .await
                .expect("receive from the dead-letter queue"),
        );
        if forwarded.len() >= 2 {
            break;
        }
    }
    let mut bodies_forwarded: Vec<&str> = forwarded.iter().map(|m| m.body.as_str()).collect();
    bodies_forwarded.sort_unstable();
    assert_eq!(bodies_forwarded, [bodies[1], bodies[2]]);
    for m in &forwarded {
        assert_eq!(m.attributes["cfpurge-reject-reason"], "invalid_tag");
    }
    assert_eq!(
        metric(
            &text,
            "cfpurge_messages_rejected_total{reason=\"invalid_tag\"}"
        ),
        2.0
    );
}
