//! The chaos suite: a slice of the astro-docs trace replayed into moto's
//! SQS while `cfpurge run` (the binary) is killed with SIGKILL at random
//! moments and started again on the same ledger, the link to SQS is cut
//! for a few seconds (a proxy in front of moto: moto itself loses its
//! queues when it restarts), and the fake CloudFront answers Throttling and
//! 503 for a while. At the end every requested path is covered by an
//! invalidation created after its request was sent, the queue and the
//! dead-letter queue are empty, and the ledger counts at least what
//! CloudFront created and at most the batches a kill left unconfirmed.
//! Per request, no path is paid for twice: a second invalidation covering
//! it is made for another request, or after its message was received
//! again (a kill or an outage before its delete), never for nothing. The
//! ledger's bounds move with what CloudFront bills, so they cannot see
//! that; the moments each message was received, read by a proxy in front
//! of SQS, can.
//!
//! The short form runs in the suite; the long form, with more kills and the
//! whole trace's first 1,500 requests:
//! `cargo test --release --test it chaos_long -- --ignored --nocapture`
//! (`CFPURGE_CHAOS_KILLS` sets the kills, default 12).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use cfpurge::budget::{FileStore, LedgerStore};
use cfpurge::path::CfPath;
use cfpurge::source::queue::Queue;
use cfpurge::source::sqs::SqsQueue;
use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng as _};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::replay::load_trace;
use crate::support::fake_cloudfront::{FakeCloudFront, Fault};
use crate::support::moto::{Moto, free_port};
use crate::support::proxy::{CountingProxy, Proxy};

const DIST: &str = "E2ABCDEF123456";

/// A request's message id, its paths and when it was sent.
type Sent = (String, Vec<String>, Instant);

/// A request as the per-request check sees it.
struct Request {
    id: String,
    paths: Vec<CfPath>,
    /// Each time the daemon received its message, in order.
    receives: Vec<Instant>,
}

impl Request {
    /// Whether the item `q` of an invalidation created at `at` was paid
    /// (also) for this request: it covers one of its paths that nothing
    /// covered since the message was last received before `at`.
    fn needs(&self, at: Instant, q: &CfPath, created: &[(Instant, Vec<CfPath>)]) -> bool {
        let Some(&received) = self.receives.iter().rev().find(|t| **t < at) else {
            return false;
        };
        self.paths.iter().any(|p| {
            q.covers(p)
                && !created.iter().any(|(other, items)| {
                    *other > received && *other < at && items.iter().any(|i| i.covers(p))
                })
        })
    }
}

/// Every path paid for twice for one request: a second invalidation that
/// covers it with items no other request needed, made before its message
/// was received again.
fn paid_twice(requests: &[Request], created: &[(Instant, Vec<CfPath>)]) -> Vec<String> {
    let mut twice = Vec::new();
    for r in requests {
        let Some(&first) = r.receives.first() else {
            continue;
        };
        for p in &r.paths {
            let mut covering: Vec<&(Instant, Vec<CfPath>)> = created
                .iter()
                .filter(|(at, inv)| *at > first && inv.iter().any(|q| q.covers(p)))
                .collect();
            covering.sort_by_key(|(at, _)| *at);
            for pair in covering.windows(2) {
                let (before, (at, inv)) = (pair[0].0, pair[1]);
                let again = r.receives.iter().any(|t| *t > before && t < at);
                // Covered on the way by an item bought for another request:
                // nothing was paid for this one.
                let for_another = inv.iter().filter(|q| q.covers(p)).any(|q| {
                    requests
                        .iter()
                        .any(|o| o.id != r.id && o.needs(*at, q, created))
                });
                if !again && !for_another {
                    twice.push(format!(
                        "{p} of message {}: covered again {:?} after its first invalidation, by {inv:?}",
                        r.id,
                        at.duration_since(before)
                    ));
                }
            }
        }
    }
    twice
}

struct Plan {
    requests: usize,
    /// Seconds over which the requests are sent.
    send_over: f64,
    kills: usize,
    seed: u64,
}

/// The daemon as a child process, restarted on the same files.
struct Daemon {
    config: PathBuf,
    child: Option<Child>,
    starts: usize,
}

impl Daemon {
    fn start(config: PathBuf) -> Daemon {
        let mut d = Daemon {
            config,
            child: None,
            starts: 0,
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_cfpurge"))
            .args(["run", "-c"])
            .arg(&self.config)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start cfpurge");
        self.child = Some(child);
        self.starts += 1;
    }

    /// SIGKILL: nothing after it runs, as when a machine dies.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for the exit code.
    fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status.code();
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

fn write_config(folder: &Path, queue_url: &str, dlq_url: &str, sqs: &str, cf: &str) -> PathBuf {
    let config = format!(
        r#"
[aws]
region = "us-east-1"
sqs_endpoint_url = "{sqs}"
cloudfront_endpoint_url = "{cf}"
[source]
queue_url = "{queue_url}"
dead_letter_queue_url = "{dlq_url}"
wait_time_seconds = 1
visibility_timeout_seconds = 4
[distributions.www]
id = "{DIST}"
[batching]
quiet_seconds = 1
max_delay_seconds = 2
[cloudfront]
create_per_second = 20
create_burst = 5
poll_interval_seconds = 1
reconcile_interval_seconds = 2
[budget]
monthly_paths = 100000000
pacing = "none"
ledger_path = "{ledger}"
[shutdown]
grace_seconds = 5
[http]
listen = "127.0.0.1:{port}"
"#,
        ledger = folder.join("ledger.json").display(),
        port = free_port(),
    );
    let path = folder.join("cfpurge.toml");
    std::fs::write(&path, config).expect("write the configuration");
    path
}

async fn chaos(plan: Plan) {
    let moto = Moto::start_new();
    // cfpurge → the proxy that is cut → the one that reads what SQS
    // hands out → moto.
    let counting = CountingProxy::start(moto.port()).await;
    let proxy = Proxy::start(counting.port()).await;
    let fake = FakeCloudFront::start(Duration::from_secs(3)).await;
    fake.add_distribution(DIST);
    fake.faults().seed(plan.seed);
    let folder = tempfile::tempdir().expect("folder");
    let url = moto.create_queue("chaos", &[]).await;
    let dlq = moto.create_queue("chaos-dlq", &[]).await;
    let config = write_config(
        folder.path(),
        &url,
        &dlq,
        &proxy.endpoint(),
        &fake.endpoint(),
    );
    // Producers reach SQS directly: the outage is cfpurge's.
    let queue = SqsQueue::new(moto.sqs_client(), url, None);

    let trace = load_trace(Some(plan.requests));
    let span = trace.last().map_or(1.0, |r| r.t.max(1.0));
    let sent: Arc<Mutex<Vec<Sent>>> = Arc::new(Mutex::new(Vec::new()));
    let sender = {
        let (queue, sent) = (queue.clone(), sent.clone());
        let start = Instant::now();
        tokio::spawn(async move {
            for r in trace {
                let at = start + Duration::from_secs_f64(r.t / span * plan.send_over);
                tokio::time::sleep_until(at).await;
                let body = serde_json::json!({ "paths": r.paths }).to_string();
                let when = Instant::now();
                let id = queue.send(&body).await.expect("send");
                sent.lock().await.push((id, r.paths, when));
            }
        })
    };

    let mut daemon = Daemon::start(config);
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let (mut outages, mut fault_phases) = (0, 0);
    for round in 0..plan.kills {
        tokio::time::sleep(Duration::from_millis(rng.random_range(800..3000))).await;
        daemon.kill();
        daemon.spawn();
        match round % 3 {
            1 => {
                proxy.cut();
                tokio::time::sleep(Duration::from_secs(3)).await;
                proxy.restore().await;
                outages += 1;
            }
            2 => {
                fake.faults().fail_with_probability(Fault::Throttling, 0.3);
                fake.faults()
                    .fail_with_probability(Fault::ServiceUnavailable, 0.1);
                tokio::time::sleep(Duration::from_secs(3)).await;
                fake.faults().clear();
                fault_phases += 1;
            }
            _ => {}
        }
    }
    sender.await.expect("sender");

    // The last daemon drains what is left.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let d = queue.depth().await.expect("depth");
        if d.visible + d.in_flight + d.delayed == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "not drained: {d:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(daemon.stop(), Some(0), "the last daemon exits 0 on SIGTERM");

    // Every requested path covered by an invalidation made after it was sent.
    let invalidations = fake.invalidations(DIST);
    let created: Vec<(Instant, Vec<CfPath>)> = invalidations
        .iter()
        .map(|inv| {
            let paths = inv
                .paths
                .iter()
                .map(|p| CfPath::parse(p).expect("fake path"))
                .collect();
            (inv.created_at, paths)
        })
        .collect();
    let sent = sent.lock().await;
    let mut lost = 0;
    let mut paths_requested = 0;
    for (_, paths, when) in sent.iter() {
        for p in paths {
            paths_requested += 1;
            let p = CfPath::parse(p).expect("trace path");
            let covered = created
                .iter()
                .any(|(at, inv)| at > when && inv.iter().any(|q| q.covers(&p)));
            lost += usize::from(!covered);
        }
    }
    // Per request: paid for once, but for a redelivery.
    let mut receives: std::collections::HashMap<String, Vec<Instant>> = Default::default();
    for (at, id) in counting.received() {
        receives.entry(id).or_default().push(at);
    }
    let requests: Vec<Request> = sent
        .iter()
        .map(|(id, paths, _)| Request {
            id: id.clone(),
            paths: paths
                .iter()
                .map(|p| CfPath::parse(p).expect("trace path"))
                .collect(),
            receives: receives.get(id).cloned().unwrap_or_default(),
        })
        .collect();
    let unseen = requests.iter().filter(|r| r.receives.is_empty()).count();
    let redelivered = requests.iter().filter(|r| r.receives.len() > 1).count();
    let twice = paid_twice(&requests, &created);
    let dead = SqsQueue::new(moto.sqs_client(), dlq, None);
    let dead_letters = dead.depth().await.expect("dlq depth");

    // The ledger: at least what CloudFront made; above it only by batches
    // a kill left reserved and never created, one per kill at most.
    let state = FileStore::new(folder.path().join("ledger.json"))
        .load()
        .expect("the ledger reads back")
        .expect("a ledger");
    let billed: u64 = invalidations.iter().map(|inv| inv.paths.len() as u64).sum();
    let leftover: u64 = state.reservations.values().map(|r| r.paths).sum();
    let faults = fake
        .calls()
        .iter()
        .filter(|c| !c.outcome.is_success())
        .count();
    println!(
        "chaos: kills {}, SQS outages {outages}, CloudFront fault phases {fault_phases} \
         ({faults} faulty answers), messages {}, paths {paths_requested}, invalidations {}, \
         billed {billed}, ledger {} (+{leftover} left reserved by kills), lost {lost}, \
         messages received more than once {redelivered}, paths paid twice {}",
        plan.kills,
        sent.len(),
        invalidations.len(),
        state.spent + state.external,
        twice.len(),
    );
    assert_eq!(sent.len(), plan.requests);
    assert_eq!(lost, 0, "requested paths never covered");
    assert_eq!(unseen, 0, "messages the proxy never saw received");
    assert!(
        twice.is_empty(),
        "{} paths paid twice for one request, among them:\n{}",
        twice.len(),
        twice[..twice.len().min(5)].join("\n")
    );
    assert_eq!(dead_letters, Default::default(), "nothing was rejected");
    assert!(
        state.spent >= billed,
        "ledger {} < billed {billed}",
        state.spent
    );
    assert_eq!(
        state.spent,
        billed + leftover,
        "the ledger is CloudFront's figure plus the reservations kills left"
    );
    assert!(
        state.reservations.len() <= plan.kills,
        "{} reservations left by {} kills",
        state.reservations.len(),
        plan.kills
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_short_kills_outages_and_faults_lose_nothing() {
    chaos(Plan {
        requests: 120,
        send_over: 10.0,
        kills: 4,
        seed: 11,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: minutes; run with --ignored"]
async fn chaos_long_kills_outages_and_faults_lose_nothing() {
    let kills = std::env::var("CFPURGE_CHAOS_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    chaos(Plan {
        requests: 1_500,
        send_over: 60.0,
        kills,
        seed: 29,
    })
    .await;
}

#[test]
fn paying_twice_is_told_from_another_request_and_from_a_redelivery() {
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let paths =
        |v: &[&str]| -> Vec<CfPath> { v.iter().map(|p| CfPath::parse(p).unwrap()).collect() };
    let request = |id: &str, p: &[&str], receives: &[u64]| Request {
        id: id.into(),
        paths: paths(p),
        receives: receives.iter().map(|s| at(*s)).collect(),
    };
    // /a paid at 2, and again at 5 for nothing.
    let created = vec![(at(2), paths(&["/a"])), (at(5), paths(&["/a"]))];
    let twice = paid_twice(&[request("m1", &["/a"], &[1])], &created);
    assert_eq!(twice.len(), 1, "{twice:?}");
    // The same, the message received again at 4 (a kill before its
    // delete): not twice.
    assert!(paid_twice(&[request("m1", &["/a"], &[1, 4])], &created).is_empty());
    // The same path asked again by another request at 3: not twice.
    let two = [request("m1", &["/a"], &[1]), request("m2", &["/a"], &[3])];
    assert!(paid_twice(&two, &created).is_empty());
    // A wildcard for another request's path covers /a again: not twice;
    // unless that request had been served already.
    let created = vec![(at(2), paths(&["/a", "/b"])), (at(5), paths(&["/*"]))];
    let served = [request("m1", &["/a"], &[1]), request("m2", &["/b"], &[1])];
    assert_eq!(paid_twice(&served, &created).len(), 2);
    let waiting = [request("m1", &["/a"], &[1]), request("m3", &["/c"], &[3])];
    assert!(paid_twice(&waiting, &created).is_empty());
}
