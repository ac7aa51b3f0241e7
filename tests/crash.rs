//! Crashes at each step of spending, with the real ledger file: the daemon
//! is stopped dead (a panic from a failpoint ends its task, nothing after it
//! runs) before the ledger's rename, after it, after CreateInvalidation
//! returned, and before the commit is on disk; then it is started again on
//! the same file, queue and CloudFront. Each time the ledger holds at least
//! what CloudFront recorded and at most one batch more, and every request
//! ends covered.
//!
//! Failpoints are process-wide, so these tests live in their own binary and
//! take turns (`FailScenario` holds a lock).

use std::path::Path;
use std::time::{Duration, SystemTime};

use cfpurge::budget::{FileStore, LedgerStore};
use cfpurge::clock::Clock;
use cfpurge::cloudfront::simulate::SimulatedCloudFront;
use cfpurge::config::Config;
use cfpurge::daemon::Daemon;
use cfpurge::path::CfPath;
use cfpurge::source::local::LocalQueue;
use cfpurge::source::queue::Queue;
use fail::FailScenario;
use tokio_util::sync::CancellationToken;

const DIST: &str = "E2ABCDEF123456";
/// Requests sent; all in one batch, so one batch is at most this many paths.
const REQUESTS: usize = 10;

fn config(ledger: &Path) -> Config {
    let toml = format!(
        r#"
[source]
kind = "local"
visibility_timeout_seconds = 30
[distributions.www]
id = "{DIST}"
[batching]
quiet_seconds = 1
max_delay_seconds = 5
[cloudfront]
mode = "simulate"
create_per_second = 100
create_burst = 100
poll_interval_seconds = 5
simulate_completion_seconds = 30
[budget]
monthly_paths = 100000
pacing = "none"
ledger_path = "{}"
"#,
        ledger.display()
    );
    Config::from_parts(Some(&toml), "test", std::iter::empty()).expect("config")
}

/// Paths CloudFront created, all invalidations together.
fn recorded(cloudfront: &SimulatedCloudFront) -> u64 {
    cloudfront
        .created()
        .iter()
        .map(|(_, inv)| inv.paths.len() as u64)
        .sum()
}

/// What the ledger on disk counts as spent.
fn ledger_used(path: &Path) -> u64 {
    let state = FileStore::new(path.to_path_buf())
        .load()
        .expect("the ledger reads back")
        .expect("a ledger was written");
    state.spent + state.external
}

/// Runs `f` on a runtime of its own, on paused time (the daemons' wall
/// clocks follow it, as the queue's and CloudFront's do), in a thread of
/// its own: when `f` panics, the runtime goes with it and so does every task
/// the daemon spawned, as when a process dies.
fn in_own_runtime<T: Send + 'static>(
    f: impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = T>>> + Send + 'static,
) -> std::thread::Result<T> {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime")
            .block_on(f())
    })
    .join()
}

/// Crashes the daemon at `point` (configured with `actions`), checks the
/// ledger against CloudFront, restarts it and checks again once every
/// request is covered.
fn crash_at(point: &'static str, actions: &str, none_left_open: bool) {
    let scenario = FailScenario::setup();
    let folder = tempfile::tempdir().expect("ledger folder");
    let ledger = folder.path().join("ledger.json");
    let config = config(&ledger);
    let queue = LocalQueue::new(Duration::from_secs(30));
    let cloudfront = SimulatedCloudFront::new([DIST.to_owned()], Duration::from_secs(30));
    let sent: Vec<CfPath> = (0..REQUESTS)
        .map(|i| CfPath::parse(&format!("/p{i}/index.html")).expect("path"))
        .collect();

    fail::cfg(point, actions).expect("failpoint");
    let crashed = {
        let (config, queue, cloudfront, sent) = (
            config.clone(),
            queue.clone(),
            cloudfront.clone(),
            sent.clone(),
        );
        in_own_runtime(move || {
            Box::pin(async move {
                for p in &sent {
                    queue
                        .send(&format!(r#"{{"paths":["{p}"]}}"#))
                        .await
                        .expect("send");
                }
                let daemon = Daemon::new(&config, queue, cloudfront)
                    .with_clock(Clock::following_tokio(SystemTime::now()));
                tokio::time::timeout(
                    Duration::from_secs(600),
                    daemon.run(CancellationToken::new()),
                )
                .await
                .map(|_| ())
            })
        })
    };
    match crashed {
        Err(_) => {}
        Ok(Err(_)) => panic!("{point} was never reached"),
        Ok(Ok(())) => panic!("{point}: the daemon did not crash"),
    }
    fail::remove(point);

    let (used, billed) = (ledger_used(&ledger), recorded(&cloudfront));
    assert!(
        used >= billed,
        "{point}: the ledger counts {used} paths, CloudFront created {billed}"
    );
    assert!(
        used <= billed + REQUESTS as u64,
        "{point}: the ledger counts {used}, more than one batch above {billed}"
    );

    // Started again on the same file: the messages the crashed process held
    // come back after their visibility timeout and are covered.
    let restarted = {
        let (config, queue, cloudfront) = (config.clone(), queue.clone(), cloudfront.clone());
        in_own_runtime(move || {
            Box::pin(async move {
                let daemon = Daemon::new(&config, queue.clone(), cloudfront)
                    .with_clock(Clock::following_tokio(SystemTime::now()));
                let cancel = CancellationToken::new();
                let run = tokio::spawn(daemon.run(cancel.clone()));
                // Long enough for its first reconcile round, which
                // confirms what CloudFront shows of a crashed batch, even
                // when the crashed process had deleted the messages it
                // covered before its commit was written.
                for i in 0..600 {
                    if queue.is_empty() && i >= 20 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                cancel.cancel();
                run.await.expect("the second run ends");
            })
        })
    };
    assert!(restarted.is_ok(), "{point}: the second run failed");
    assert!(queue.is_empty(), "{point}: {} messages left", queue.len());

    let (used, billed) = (ledger_used(&ledger), recorded(&cloudfront));
    assert!(
        used >= billed && used <= billed + REQUESTS as u64,
        "{point}: after the restart the ledger counts {used}, CloudFront created {billed}"
    );
    // Per request: covered, and paid for once. Every message the crashed
    // process held comes back after the crash; one that a created batch
    // covered is deleted with that batch's invalidation, never covered by
    // a second one.
    let created = cloudfront.created();
    for p in &sent {
        let covering = created
            .iter()
            .filter(|(_, inv)| inv.paths.iter().any(|q| q.covers(p)))
            .count();
        assert_eq!(
            covering, 1,
            "{point}: {p} is covered by {covering} invalidations"
        );
    }
    assert!(queue.dead_letters().is_empty());
    // A reservation whose invalidation CloudFront shows is confirmed at
    // start-up; one it never saw stays open, counted as spent.
    let state = FileStore::new(ledger.clone())
        .load()
        .expect("load")
        .expect("ledger");
    assert_eq!(
        state.reservations.is_empty(),
        none_left_open,
        "{point}: reservations left {:?}",
        state.reservations
    );
    scenario.teardown();
}

// The ledger is saved once when it is opened, then for the batch's
// reservation, then for its commit: `1*off->panic` skips the first save.

#[test]
fn a_crash_before_the_reservation_is_renamed_into_place() {
    crash_at("ledger::before_rename", "1*off->panic", true);
}

#[test]
fn a_crash_after_the_reservation_is_renamed_into_place() {
    crash_at("ledger::after_rename", "1*off->panic", false);
}

#[test]
fn a_crash_after_create_invalidation_returned() {
    crash_at("daemon::after_create", "panic", true);
}

#[test]
fn a_crash_before_the_commit_is_on_disk() {
    crash_at("ledger::before_rename", "2*off->panic", true);
}
