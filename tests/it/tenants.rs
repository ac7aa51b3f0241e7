//! Distribution tenants end to end: one daemon with two tenants of one
//! multi-tenant distribution and an ordinary distribution, moto's SQS and the
//! fake CloudFront (moto has no tenant calls), all through the real AWS SDK.

use std::time::Duration;

use cfpurge::budget::{AnyStore, MemoryStore};
use cfpurge::cloudfront::aws::AwsInvalidator;
use cfpurge::config::Config;
use cfpurge::daemon::Daemon;
use cfpurge::path::CfPath;
use cfpurge::source::queue::Queue;
use cfpurge::source::sqs::SqsQueue;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::support::fake_cloudfront::{FakeCloudFront, Fault, Operation};
use crate::support::moto::Moto;

const WWW: &str = "E2WWWWWWWWWWWW";
const MULTI: &str = "E3MULTITENANT";
const TENANT_A: &str = "dt_2ShopAaaa";
const TENANT_B: &str = "dt_2ShopBbbb";
/// shop-a's limits: low, so that another tool's invalidation on the tenant
/// takes most of them.
const SHOP_A_EXACT: usize = 40;
const SHOP_A_WILDCARDS: usize = 2;
/// Exact paths another tool has in progress on tenant A.
const EXTERNAL_ON_A: usize = 25;

fn config(queue_url: &str, shop_a_tenant: &str) -> Config {
    let toml = format!(
        r#"
[source]
queue_url = "{queue_url}"
pollers = 2
wait_time_seconds = 1
visibility_timeout_seconds = 30
[distributions.www]
id = "{WWW}"
[distributions.shop-a]
id = "{MULTI}"
tenant_id = "{shop_a_tenant}"
max_inflight_paths = {SHOP_A_EXACT}
max_inflight_wildcards = {SHOP_A_WILDCARDS}
[distributions.shop-b]
id = "{MULTI}"
tenant_id = "{TENANT_B}"
[routing]
default_distribution = "www"
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

/// Every path covered by an invalidation of `target` (a distribution or
/// tenant id) created after its request was sent.
fn assert_covered(fake: &FakeCloudFront, target: &str, wanted: &[(String, Instant)]) {
    let invalidations = fake.invalidations(target);
    for (path, sent) in wanted {
        let p = CfPath::parse(path).expect("path");
        let ok = invalidations.iter().any(|inv| {
            !inv.external
                && inv.created_at > *sent
                && inv
                    .paths
                    .iter()
                    .any(|q| CfPath::parse(q).expect("fake path").covers(&p))
        });
        assert!(
            ok,
            "{path} not covered on {target} by an invalidation made after it was sent"
        );
    }
}

/// The value of one series in the Prometheus text.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no series {series}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tenants_and_a_distribution_each_within_its_own_limits_through_faults() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let fake = FakeCloudFront::start(Duration::from_secs(30)).await;
    fake.add_distribution(WWW);
    fake.add_tenant(TENANT_A);
    fake.add_tenant(TENANT_B);
    // Another tool's invalidation in progress on tenant A, for longer than
    // the test: it holds 25 of shop-a's 40 exact paths throughout.
    let theirs: Vec<String> = (0..EXTERNAL_ON_A).map(|i| format!("/ext/{i}")).collect();
    let refs: Vec<&str> = theirs.iter().map(String::as_str).collect();
    fake.add_external(TENANT_A, &refs, "saas-console-1");
    fake.set_in_progress_for(Duration::from_secs(2));
    // Faults on every operation, the tenant ones included.
    let faults = fake.faults();
    faults.seed(11);
    faults.fail_with_probability(Fault::Throttling, 0.2);
    faults.fail_with_probability(Fault::ServiceUnavailable, 0.1);
    faults.fail_next(Fault::TooManyInvalidationsInProgress, 2);

    let url = moto.create_queue("tenants-e2e", &[]).await;
    let config = config(&url, TENANT_A);
    let queue = SqsQueue::new(moto.sqs_client(), url.clone(), None);
    // shop-a: 30 paths in 30 directories (nothing to coalesce cheaply),
    // named by alias and by tenant id; shop-b: 20 paths named by tenant id;
    // www: 10, by default and by id.
    let mut bodies = Vec::new();
    let mut wanted: Vec<(&str, String, usize)> = Vec::new();
    for i in 0..30 {
        let name = if i % 2 == 0 { "shop-a" } else { TENANT_A };
        let path = format!("/a{i}/page.html");
        wanted.push((TENANT_A, path.clone(), bodies.len()));
        bodies.push(format!(r#"{{"distribution":"{name}","paths":["{path}"]}}"#));
    }
    for i in 0..20 {
        let path = format!("/b/{i}.html");
        wanted.push((TENANT_B, path.clone(), bodies.len()));
        bodies.push(format!(
            r#"{{"distribution":"{TENANT_B}","paths":["{path}"]}}"#
        ));
    }
    for i in 0..10 {
        let path = format!("/w/{i}.html");
        wanted.push((WWW, path.clone(), bodies.len()));
        bodies.push(if i % 2 == 0 {
            format!(r#"{{"paths":["{path}"]}}"#)
        } else {
            format!(r#"{{"distribution":"{WWW}","paths":["{path}"]}}"#)
        });
    }
    let mut sent = Vec::new();
    for b in &bodies {
        sent.push(Instant::now());
        queue.send(b).await.expect("send");
    }
    let daemon = Daemon::new(&config, queue.clone(), AwsInvalidator::new(fake.client()))
        .with_ledger(AnyStore::Memory(MemoryStore::new()));
    let observers = daemon.observers();
    let cancel = CancellationToken::new();
    let run = tokio::spawn(daemon.run(cancel.clone()));
    let emptied = drained(&queue, Duration::from_secs(90)).await;
    cancel.cancel();
    let totals = run.await.expect("daemon ends");
    assert!(emptied, "the queue was not drained: {totals:?}");

    // Nothing lost: every message deleted, every path covered on its own
    // target, each batch made once.
    assert_eq!(totals.messages_deleted, 60, "{totals:?}");
    for target in [TENANT_A, TENANT_B, WWW] {
        let mine: Vec<(String, Instant)> = wanted
            .iter()
            .filter(|(t, _, _)| *t == target)
            .map(|(_, p, i)| (p.clone(), sent[*i]))
            .collect();
        assert_covered(&fake, target, &mine);
    }
    assert!(
        fake.invalidations_per_caller_reference()
            .values()
            .all(|&n| n == 1),
        "a batch made two invalidations"
    );
    // No path went to another target.
    for (target, prefix) in [(TENANT_A, "/a"), (TENANT_B, "/b/"), (WWW, "/w/")] {
        for inv in fake.invalidations(target).iter().filter(|i| !i.external) {
            assert!(
                inv.paths.iter().all(|p| p.starts_with(prefix)),
                "{target}: {:?}",
                inv.paths
            );
        }
    }

    // Each within its own limits, the other tool's paths on tenant A
    // counted: without them the daemon would have put up to 40 of its own
    // in flight there.
    let (exact, wildcard) = fake.peak_inflight(TENANT_A);
    assert!(
        exact <= SHOP_A_EXACT && wildcard <= SHOP_A_WILDCARDS,
        "tenant A peaked at {exact} exact and {wildcard} wildcard paths"
    );
    assert!(exact > EXTERNAL_ON_A, "shop-a's own paths went in flight");

    // Tenants through the tenant calls only, the distribution through its
    // own; and the faults hit the tenant calls.
    let calls = fake.calls();
    for call in &calls {
        let tenant = call.distribution.starts_with("dt_");
        assert_eq!(call.operation.is_tenant(), tenant, "{call:?}");
        assert_ne!(call.distribution, MULTI, "the shared id is never called");
    }
    for op in [
        Operation::CreateInvalidationForDistributionTenant,
        Operation::GetInvalidationForDistributionTenant,
        Operation::ListInvalidationsForDistributionTenant,
    ] {
        for tenant in [TENANT_A, TENANT_B] {
            assert!(
                calls
                    .iter()
                    .any(|c| c.operation == op && c.distribution == tenant),
                "no {op:?} on {tenant}"
            );
        }
    }
    let faulted = calls
        .iter()
        .filter(|c| c.operation.is_tenant() && !c.outcome.is_success())
        .count();
    assert!(faulted > 0, "the faults hit the tenant calls");

    // The other tool's paths on the tenant are counted in the budget too.
    let status = observers.status.snapshot();
    assert_eq!(
        status.budget.used,
        totals.paths_submitted + EXTERNAL_ON_A as u64,
        "{totals:?}"
    );
    assert_eq!(
        status.distributions["shop-a"].tenant_id.as_deref(),
        Some(TENANT_A)
    );
    assert_eq!(status.distributions["shop-a"].id, MULTI);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_that_does_not_exist_fails_readiness_and_keeps_its_message() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let fake = FakeCloudFront::start(Duration::from_secs(2)).await;
    fake.add_distribution(WWW);
    fake.add_tenant(TENANT_B);
    let url = moto.create_queue("tenants-missing", &[]).await;
    // shop-a names a tenant CloudFront does not know.
    let config = config(&url, "dt_2Missing");
    let queue = SqsQueue::new(moto.sqs_client(), url.clone(), None);
    queue
        .send(r#"{"distribution":"shop-a","paths":["/a/lost.html"]}"#)
        .await
        .expect("send");
    queue
        .send(r#"{"distribution":"shop-b","paths":["/b/fine.html"]}"#)
        .await
        .expect("send");
    let daemon = Daemon::new(&config, queue.clone(), AwsInvalidator::new(fake.client()))
        .with_ledger(AnyStore::Memory(MemoryStore::new()));
    let observers = daemon.observers();
    let cancel = CancellationToken::new();
    let run = tokio::spawn(daemon.run(cancel.clone()));
    let deadline = Instant::now() + Duration::from_secs(30);
    let reason = loop {
        let refused = observers
            .readiness
            .reasons()
            .into_iter()
            .find(|r| r.contains("shop-a"));
        if let Some(reason) = refused
            && !fake.invalidations(TENANT_B).is_empty()
        {
            break reason;
        }
        assert!(
            Instant::now() < deadline,
            "{:?}",
            observers.readiness.reasons()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    cancel.cancel();
    let totals = run.await.expect("daemon ends");
    assert!(
        reason.contains("distribution tenant dt_2Missing of distribution E3MULTITENANT")
            && reason.contains("EntityNotFound"),
        "{reason}"
    );
    assert_eq!(totals.messages_deleted, 1, "{totals:?}");
    // The message for the missing tenant is released, not lost.
    let depth = queue.depth().await.expect("depth");
    assert_eq!(depth.visible + depth.in_flight, 1, "{depth:?}");
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&observers.registry.gather())
        .expect("encode");
    assert!(
        metric(
            &text,
            r#"cfpurge_cloudfront_errors_total{code="no_such_distribution",distribution="shop-a"}"#
        ) >= 1.0
    );
    assert!(fake.invalidations(TENANT_A).is_empty());
}
