//! The daemon run whole, on paused time, against the local queue and the
//! simulated CloudFront.

mod run {
    use super::super::*;
    use crate::cloudfront::simulate::SimulatedCloudFront;
    use crate::path::CfPath;
    use crate::source::local::LocalQueue;

    const CONFIG: &str = r#"
[source]
kind = "local"
visibility_timeout_seconds = 60
[distributions.www]
id = "E2ABCDEF123456"
[batching]
quiet_seconds = 2
max_delay_seconds = 10
[cloudfront]
mode = "simulate"
create_per_second = 100
create_burst = 100
poll_interval_seconds = 5
simulate_completion_seconds = 30
[budget]
pacing = "none"
"#;

    #[tokio::test(start_paused = true)]
    async fn requests_end_covered_by_invalidations_and_the_queue_ends_empty() {
        let config = Config::from_parts(Some(CONFIG), "test", std::iter::empty()).expect("config");
        let queue = LocalQueue::new(Duration::from_secs(60));
        let cloudfront =
            SimulatedCloudFront::new(["E2ABCDEF123456".to_owned()], Duration::from_secs(30));
        let mut asked = Vec::new();
        for i in 0..40 {
            let path = format!("/docs/{}/page-{i}/", i % 4);
            queue
                .send(&format!(r#"{{"paths":["{path}"]}}"#))
                .await
                .expect("send");
            asked.push(CfPath::parse(&path).expect("path"));
        }
        queue.send("not a path").await.expect("send");
        let daemon = Daemon::new(&config, queue.clone(), cloudfront.clone())
            .with_ledger(AnyStore::Memory(crate::budget::MemoryStore::new()));
        let observers = daemon.observers();
        let cancel = CancellationToken::new();
        let run = tokio::spawn(daemon.run(cancel.clone()));
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(queue.is_empty(), "{} messages left", queue.len());
        let created = cloudfront.created();
        for p in &asked {
            assert!(
                created
                    .iter()
                    .any(|(_, inv)| inv.paths.iter().any(|q| q.covers(p))),
                "{p} not covered"
            );
        }
        assert_eq!(queue.dead_letters().len(), 1);
        cancel.cancel();
        let totals = run.await.expect("run ends");
        assert_eq!(totals.messages_deleted, 40);
        assert_eq!(totals.invalidations as usize, created.len());
        assert!(
            created
                .iter()
                .all(|(_, inv)| inv.caller_reference.starts_with("cfpurge-www-"))
        );

        // The metrics and the status tell the same story.
        let text = crate::metrics::encode(&observers.registry);
        let value = |series: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
                .unwrap_or_else(|| panic!("{series} missing from\n{text}"))
                .parse()
                .expect("a number")
        };
        let billed: usize = created.iter().map(|(_, inv)| inv.paths.len()).sum();
        let wildcards = created
            .iter()
            .flat_map(|(_, inv)| &inv.paths)
            .filter(|p| p.is_wildcard())
            .count();
        assert_eq!(value("cfpurge_messages_received_total"), 41.0);
        assert_eq!(value("cfpurge_messages_deleted_total"), 40.0);
        assert_eq!(
            value("cfpurge_paths_requested_total{distribution=\"www\"}"),
            40.0
        );
        assert_eq!(
            value("cfpurge_invalidations_created_total{distribution=\"www\"}"),
            created.len() as f64
        );
        assert_eq!(
            value("cfpurge_paths_submitted_total{distribution=\"www\",kind=\"exact\"}")
                + value("cfpurge_paths_submitted_total{distribution=\"www\",kind=\"wildcard\"}"),
            billed as f64
        );
        assert_eq!(
            value("cfpurge_paths_submitted_total{distribution=\"www\",kind=\"wildcard\"}"),
            wildcards as f64
        );
        let rejected: f64 = text
            .lines()
            .filter(|l| l.starts_with("cfpurge_messages_rejected_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert_eq!(rejected, 1.0);
        assert_eq!(
            value("cfpurge_request_to_invalidation_seconds_count{distribution=\"www\"}"),
            40.0
        );
        assert_eq!(value("cfpurge_pending_messages"), 0.0);
        let snapshot = observers.status.snapshot();
        let www = &snapshot.distributions["www"];
        let last = www.last_invalidation.as_ref().expect("a last invalidation");
        assert!(created.iter().any(|(_, inv)| inv.id == last.id));
        assert_eq!(www.pending_paths, 0);
        assert!(observers.readiness.is_ready());
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_waiting_for_room_goes_when_a_completion_is_seen_not_at_its_recheck() {
        // Polls and rechecks every 20 s; invalidations complete in 25 s.
        let config = Config::from_parts(
            Some(CONFIG),
            "test",
            [
                ("CFPURGE__CLOUDFRONT__POLL_INTERVAL_SECONDS", "20"),
                ("CFPURGE__CLOUDFRONT__SIMULATE_COMPLETION_SECONDS", "25"),
                ("CFPURGE__BUDGET__MONTHLY_PATHS", "1000000"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        )
        .expect("config");
        let queue = LocalQueue::new(Duration::from_secs(60));
        let cloudfront =
            SimulatedCloudFront::new(["E2ABCDEF123456".to_owned()], Duration::from_secs(25));
        // 3,000 paths in as many folders: one invalidation that takes all
        // the room for exact paths.
        let paths: Vec<String> = (0..3000).map(|i| format!("\"/f{i}/x\"")).collect();
        for chunk in paths.chunks(1000) {
            let body = format!(r#"{{"paths":[{}]}}"#, chunk.join(","));
            queue.send(&body).await.expect("send");
        }
        let daemon = Daemon::new(&config, queue.clone(), cloudfront.clone())
            .with_ledger(AnyStore::Memory(crate::budget::MemoryStore::new()));
        let cancel = CancellationToken::new();
        let started = tokio::time::Instant::now();
        let run = tokio::spawn(daemon.run(cancel.clone()));
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(cloudfront.created().len(), 1);
        // This one finds no room: it waits for a completion. The first
        // completes 25 s after it was created, between 25 s and 27 s.
        // While the batch waits, the first is checked every round (5 s),
        // so its completion is seen within a round of that, not at its
        // second poll 20 s apart (about 42 s); the batch's recheck would
        // come about 20 s after each try.
        queue.send("/late.html").await.expect("send");
        let deadline = started + Duration::from_secs(120);
        while cloudfront.created().len() < 2 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let second = tokio::time::Instant::now() - started;
        assert_eq!(cloudfront.created().len(), 2);
        assert!(
            (Duration::from_secs(25)..Duration::from_secs(33)).contains(&second),
            "the second invalidation came {second:?} after the start"
        );
        cancel.cancel();
        run.await.expect("run ends");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_submits_what_is_pending_within_the_grace_period() {
        let config = Config::from_parts(Some(CONFIG), "test", std::iter::empty()).expect("config");
        let queue = LocalQueue::new(Duration::from_secs(60));
        let cloudfront =
            SimulatedCloudFront::new(["E2ABCDEF123456".to_owned()], Duration::from_secs(30));
        queue.send("/late.html").await.expect("send");
        let daemon = Daemon::new(&config, queue.clone(), cloudfront.clone())
            .with_ledger(AnyStore::Memory(crate::budget::MemoryStore::new()));
        let cancel = CancellationToken::new();
        let run = tokio::spawn(daemon.run(cancel.clone()));
        // Received, but the quiet window has not closed.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(cloudfront.created().is_empty());
        cancel.cancel();
        let totals = run.await.expect("run ends");
        assert_eq!(totals.invalidations, 1);
        assert_eq!(totals.messages_deleted, 1);
        assert!(queue.is_empty());
    }
}

mod budget {
    use super::super::*;
    use crate::budget::MemoryStore;
    use crate::cloudfront::simulate::SimulatedCloudFront;
    use crate::source::local::LocalQueue;

    const DIST: &str = "E2ABCDEF123456";

    fn config(monthly: u64, policy: &str) -> Config {
        Config::from_parts(
            Some(&config_text(monthly, policy)),
            "test",
            std::iter::empty(),
        )
        .expect("config")
    }

    fn config_text(monthly: u64, policy: &str) -> String {
        format!(
            r#"
[source]
kind = "local"
visibility_timeout_seconds = 60
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
monthly_paths = {monthly}
pacing = "none"
on_exhausted = "{policy}"
"#
        )
    }

    struct Run {
        queue: LocalQueue,
        cloudfront: SimulatedCloudFront,
        store: MemoryStore,
        cancel: CancellationToken,
        task: tokio::task::JoinHandle<Totals>,
    }

    fn start(config: &Config) -> Run {
        let queue = LocalQueue::new(Duration::from_secs(60));
        let cloudfront = SimulatedCloudFront::new([DIST.to_owned()], Duration::from_secs(30));
        let store = MemoryStore::new();
        let daemon = Daemon::new(config, queue.clone(), cloudfront.clone())
            .with_ledger(AnyStore::Memory(store.clone()));
        let cancel = CancellationToken::new();
        let task = tokio::spawn(daemon.run(cancel.clone()));
        Run {
            queue,
            cloudfront,
            store,
            cancel,
            task,
        }
    }

    impl Run {
        async fn send(&self, paths: &[&str]) {
            for p in paths {
                self.queue
                    .send(&format!(r#"{{"paths":["{p}"]}}"#))
                    .await
                    .expect("send");
            }
        }

        fn created(&self) -> Vec<Vec<String>> {
            self.cloudfront
                .created()
                .into_iter()
                .map(|(_, inv)| inv.paths.iter().map(|p| p.as_str().to_owned()).collect())
                .collect()
        }

        fn spent(&self) -> u64 {
            let state = self.store.load().expect("load").expect("a ledger");
            state.spent + state.external
        }

        async fn stop(self) -> Totals {
            self.cancel.cancel();
            self.task.await.expect("run ends")
        }
    }

    #[tokio::test(start_paused = true)]
    async fn hold_spends_no_more_than_the_budget_and_keeps_the_rest_queued() {
        let run = start(&config(5, "hold"));
        run.send(&[
            "/a/1.html",
            "/b/1.html",
            "/c/1.html",
            "/d/1.html",
            "/e/1.html",
        ])
        .await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(run.created().len(), 1);
        assert_eq!(run.spent(), 5);
        // Spent: later requests wait, neither deleted nor rejected.
        run.send(&["/f/1.html", "/g/1.html"]).await;
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!(run.created().len(), 1, "{:?}", run.created());
        assert_eq!(run.queue.len(), 2);
        assert!(run.queue.dead_letters().is_empty());
        assert_eq!(run.spent(), 5);
        // Shutdown releases them for another consumer.
        let totals = run.stop().await;
        assert_eq!(totals.messages_deleted, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_binding_budget_makes_the_planner_coalesce_harder() {
        let run = start(&config(3, "hold"));
        // Seven files in one directory: seven exact paths would fit the
        // in-flight limits, but only three paths are left to spend.
        let paths: Vec<String> = (1..=7).map(|i| format!("/docs/{i}.html")).collect();
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        run.send(&refs).await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(run.created(), vec![vec!["/docs/*".to_owned()]]);
        assert_eq!(run.spent(), 1);
        assert!(run.queue.is_empty());
        run.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn coalesce_sends_one_covering_path_once_spent() {
        let run = start(&config(2, "coalesce"));
        run.send(&["/a/1.html", "/b/1.html"]).await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(run.spent(), 2);
        run.send(&["/docs/en/a.html", "/docs/de/b.html", "/docs/c.html"])
            .await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let created = run.created();
        assert_eq!(created.len(), 2, "{created:?}");
        assert!(created.contains(&vec!["/docs/*".to_owned()]), "{created:?}");
        assert_eq!(run.spent(), 3, "the overspend is counted");
        assert!(run.queue.is_empty());
        // Requests with nothing in common beyond the root: `/*`, allowed
        // here though allow_root_wildcard is off.
        run.send(&["/x/1.html", "/y/1.html"]).await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(
            run.created().contains(&vec!["/*".to_owned()]),
            "{:?}",
            run.created()
        );
        run.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_storm_that_spends_the_budget_is_covered_without_waiting_for_a_wildcard_slot() {
        let run = start(&config(30, "coalesce"));
        // Twenty directories of ten files, more wildcards than there are
        // slots and more paths than the budget.
        let paths: Vec<String> = (0..20)
            .flat_map(|d| (0..10).map(move |f| format!("/d{d}/f{f}.html")))
            .collect();
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        run.send(&refs).await;
        // Well within the 30 s that invalidations stay in progress: the
        // covering `/*` found the slot it needs.
        tokio::time::sleep(Duration::from_secs(15)).await;
        let created = run.created();
        assert!(
            run.queue.is_empty(),
            "{} left; {created:?}",
            run.queue.len()
        );
        assert!(created.contains(&vec!["/*".to_owned()]), "{created:?}");
        run.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn once_the_budget_is_spent_a_batch_is_not_cut_by_its_size() {
        // Batches of at most 10 paths; the budget is one path.
        let text = config_text(1, "coalesce").replace(
            "max_delay_seconds = 5",
            "max_delay_seconds = 5\nmax_batch_paths = 10",
        );
        let config = Config::from_parts(Some(&text), "test", std::iter::empty()).expect("config");
        let run = start(&config);
        run.send(&["/first.html"]).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(run.created(), [vec!["/first.html".to_owned()]]);
        // 40 paths, one every 100 ms: the quiet window (1 s) never closes
        // while they come, and the size (10) is reached four times. Each
        // cut would be a `/*` billed past the budget; the window (the
        // oldest's 5 s) makes it one.
        for i in 0..40 {
            run.send(&[&format!("/d{i}/x.html")]).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
        let created = run.created();
        let covers = created
            .iter()
            .filter(|c| *c == &vec!["/*".to_owned()])
            .count();
        assert_eq!((created.len(), covers), (2, 1), "{created:?}");
        assert!(run.queue.is_empty(), "{} left", run.queue.len());
        assert_eq!(run.spent(), 2);
        run.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn overspend_plans_as_usual_and_counts_it() {
        let run = start(&config(2, "overspend"));
        run.send(&["/a/1.html", "/b/1.html", "/c/1.html", "/d/1.html"])
            .await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let created = run.created();
        let billed: usize = created.iter().map(Vec::len).sum();
        assert_eq!(billed, 4, "{created:?}");
        assert_eq!(run.spent(), 4);
        assert!(run.queue.is_empty());
        run.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_ledger_that_cannot_be_written_submits_nothing_and_is_not_ready() {
        let config = config(100, "hold");
        let queue = LocalQueue::new(Duration::from_secs(60));
        let cloudfront = SimulatedCloudFront::new([DIST.to_owned()], Duration::from_secs(30));
        let store = MemoryStore::new();
        store.fail_saves(1000);
        let daemon = Daemon::new(&config, queue.clone(), cloudfront.clone())
            .with_ledger(AnyStore::Memory(store.clone()));
        let observers = daemon.observers();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(daemon.run(cancel.clone()));
        queue.send("/a.html").await.expect("send");
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(cloudfront.created().is_empty());
        assert!(
            observers
                .readiness
                .reasons()
                .iter()
                .any(|r| r.starts_with("ledger: ")),
            "{:?}",
            observers.readiness.reasons()
        );
        assert_eq!(queue.len(), 1);
        // Writable again: ready, and the request goes out.
        store.fail_saves(0);
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(cloudfront.created().len(), 1);
        assert!(queue.is_empty());
        assert!(
            !observers
                .readiness
                .reasons()
                .iter()
                .any(|r| r.starts_with("ledger")),
            "{:?}",
            observers.readiness.reasons()
        );
        cancel.cancel();
        task.await.expect("run ends");
    }
}

/// One slow effect never holds up the loop: a hanging delete and hanging
/// polls of one distribution, while another's batch is due.
mod slow_effects {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::SystemTime;

    use super::super::*;
    use crate::cloudfront::invalidator::{
        Invalidation, InvalidationSummary, InvalidatorError, Target,
    };
    use crate::cloudfront::simulate::SimulatedCloudFront;
    use crate::path::CfPath;
    use crate::source::local::LocalQueue;
    use crate::source::queue::{Failed, Handle, Message, QueueDepth, QueueError};

    /// Long enough to outlast every window of the test.
    const HANG: Duration = Duration::from_secs(3600);

    /// The local queue, whose deletes hang while `hang` is set.
    #[derive(Clone)]
    struct SlowDeletes {
        inner: LocalQueue,
        hang: Arc<AtomicBool>,
    }

    impl Queue for SlowDeletes {
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
            if self.hang.load(Ordering::SeqCst) {
                tokio::time::sleep(HANG).await;
            }
            self.inner.delete(handles).await
        }
        async fn reject(
            &self,
            m: &Message,
            reason: &str,
            detail: &str,
        ) -> Result<bool, QueueError> {
            self.inner.reject(m, reason, detail).await
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

    /// The simulated CloudFront, whose GetInvalidation hangs while `hang`
    /// is set.
    #[derive(Clone, Debug)]
    struct HangingPolls {
        inner: SimulatedCloudFront,
        hang: Arc<AtomicBool>,
    }

    impl Invalidator for HangingPolls {
        async fn create(
            &self,
            distribution_id: impl Into<Target> + Send,
            caller_reference: &str,
            paths: &[CfPath],
        ) -> Result<Invalidation, InvalidatorError> {
            self.inner
                .create(distribution_id, caller_reference, paths)
                .await
        }
        async fn get(
            &self,
            distribution_id: impl Into<Target> + Send,
            id: &str,
        ) -> Result<Invalidation, InvalidatorError> {
            if self.hang.load(Ordering::SeqCst) {
                tokio::time::sleep(HANG).await;
            }
            self.inner.get(distribution_id, id).await
        }
        async fn list(
            &self,
            distribution_id: impl Into<Target> + Send,
            marker: Option<&str>,
            max_items: i32,
        ) -> Result<(Vec<InvalidationSummary>, Option<String>), InvalidatorError> {
            self.inner.list(distribution_id, marker, max_items).await
        }
    }

    /// The defaults where they matter here: even pacing, 0.5 creates a
    /// second with a burst of 3.
    const CONFIG: &str = r#"
[source]
kind = "local"
visibility_timeout_seconds = 60
[distributions.www]
id = "EWWW"
[distributions.img]
id = "EIMG"
[batching]
quiet_seconds = 2
[cloudfront]
mode = "simulate"
poll_interval_seconds = 5
simulate_completion_seconds = 30
"#;

    #[tokio::test(start_paused = true)]
    async fn a_hanging_delete_and_hanging_polls_hold_up_no_other_batch_nor_the_heartbeat() {
        let config = Config::from_parts(Some(CONFIG), "test", std::iter::empty()).expect("config");
        assert_eq!(config.budget.pacing, crate::config::Pacing::Even);
        let hang = Arc::new(AtomicBool::new(true));
        let queue = SlowDeletes {
            inner: LocalQueue::new(Duration::from_secs(60)),
            hang: hang.clone(),
        };
        let simulated =
            SimulatedCloudFront::new(["EWWW".into(), "EIMG".into()], Duration::from_secs(30));
        let cloudfront = HangingPolls {
            inner: simulated.clone(),
            hang: hang.clone(),
        };
        // The middle of a month, on a wall clock that moves with paused time.
        let mid_month = SystemTime::UNIX_EPOCH + Duration::from_secs(1_794_000_000);
        let daemon = Daemon::new(&config, queue.clone(), cloudfront)
            .with_ledger(AnyStore::Memory(crate::budget::MemoryStore::new()))
            .with_clock(Clock::following_tokio(mid_month));
        let observers = daemon.observers();
        let cancel = CancellationToken::new();
        let run = tokio::spawn(daemon.run(cancel.clone()));

        queue
            .send(r#"{"distribution":"www","paths":["/a.html"]}"#)
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(simulated.created().len(), 1, "www's batch went out");
        // Its delete now hangs, and so do the polls of its invalidation.
        tokio::time::sleep(Duration::from_secs(20)).await;
        let sent = tokio::time::Instant::now();
        queue
            .send(r#"{"distribution":"img","paths":["/b.png"]}"#)
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_secs(4)).await;
        let created = simulated.created();
        assert_eq!(created.len(), 2, "img's batch is not held up: {created:?}");
        assert_eq!(created[1].0, "EIMG");
        assert!(
            observers.heartbeat.age() <= Duration::from_secs(1),
            "the loop keeps beating"
        );
        assert!(tokio::time::Instant::now() - sent <= Duration::from_secs(4));
        // Once the delete gets through, the queue ends empty.
        hang.store(false, Ordering::SeqCst);
        tokio::time::sleep(HANG + Duration::from_secs(10)).await;
        assert!(queue.inner.is_empty(), "{} left", queue.inner.len());
        cancel.cancel();
        let totals = run.await.expect("run ends");
        assert_eq!(totals.invalidations, 2);
        assert_eq!(totals.messages_deleted, 2);
    }
}

/// A crash between CreateInvalidation and the deletes: the next process
/// pays nothing twice.
/// The runner's promise: a call that hangs holds up only what needs it.
mod hanging_calls {
    use std::sync::Arc;
    use std::time::Instant as StdInstant;

    use crate::source::queue::{Failed, Handle, Message, QueueDepth, QueueError};

    use super::super::*;
    use crate::budget::MemoryStore;
    use crate::cloudfront::invalidator::{
        Invalidation, InvalidationSummary, InvalidatorError, Target,
    };
    use crate::cloudfront::simulate::SimulatedCloudFront;
    use crate::path::CfPath;
    use crate::source::local::LocalQueue;

    const CONFIG: &str = r#"
[source]
kind = "local"
visibility_timeout_seconds = 60
[distributions.www]
id = "EWWW"
[distributions.img]
id = "EIMG"
[batching]
quiet_seconds = 1
max_delay_seconds = 1
[cloudfront]
mode = "simulate"
poll_interval_seconds = 1
simulate_completion_seconds = 2
create_per_second = 100
create_burst = 100
[budget]
pacing = "none"
"#;

    /// The simulated CloudFront, whose GetInvalidation of one distribution
    /// hangs.
    #[derive(Clone, Debug)]
    struct OneHangs {
        inner: SimulatedCloudFront,
        hangs: Arc<String>,
    }

    impl Invalidator for OneHangs {
        async fn create(
            &self,
            target: impl Into<Target> + Send,
            caller_reference: &str,
            paths: &[CfPath],
        ) -> Result<Invalidation, InvalidatorError> {
            self.inner.create(target, caller_reference, paths).await
        }
        async fn get(
            &self,
            target: impl Into<Target> + Send,
            id: &str,
        ) -> Result<Invalidation, InvalidatorError> {
            let target = target.into();
            if target.to_string().contains(self.hangs.as_str()) {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            self.inner.get(target, id).await
        }
        async fn list(
            &self,
            target: impl Into<Target> + Send,
            marker: Option<&str>,
            max_items: i32,
        ) -> Result<(Vec<InvalidationSummary>, Option<String>), InvalidatorError> {
            self.inner.list(target, marker, max_items).await
        }
    }

    fn status_of(observers: &Observers, alias: &str) -> (u64, Option<String>) {
        let snapshot = observers.status.snapshot();
        let d = &snapshot.distributions[alias];
        (
            d.inflight_exact,
            d.last_invalidation.as_ref().map(|l| l.status.clone()),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_poll_of_one_distribution_delays_no_others_completion() {
        let config = Config::from_parts(Some(CONFIG), "test", std::iter::empty()).expect("config");
        let queue = LocalQueue::new(Duration::from_secs(60));
        let simulated =
            SimulatedCloudFront::new(["EWWW".into(), "EIMG".into()], Duration::from_secs(2));
        let cloudfront = OneHangs {
            inner: simulated.clone(),
            hangs: Arc::new("EWWW".into()),
        };
        let daemon = Daemon::new(&config, queue.clone(), cloudfront)
            .with_ledger(AnyStore::Memory(MemoryStore::new()));
        let observers = daemon.observers();
        let cancel = CancellationToken::new();
        let run = tokio::spawn(daemon.run(cancel.clone()));
        queue
            .send(r#"{"distribution":"www","paths":["/a.html"]}"#)
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_secs(1)).await;
        queue
            .send(r#"{"distribution":"img","paths":["/b.png"]}"#)
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(simulated.created().len(), 2);
        // img's invalidation completed 2 s after its creation; its polls
        // do not wait behind www's, which hang.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            status_of(&observers, "img"),
            (0, Some("Completed".to_owned())),
            "img's completion is noticed while www's poll hangs"
        );
        assert_eq!(status_of(&observers, "www").0, 1, "www's poll still hangs");
        cancel.cancel();
        run.await.expect("run ends");
    }

    /// The simulated CloudFront, whose CreateInvalidation never answers.
    #[derive(Clone, Debug)]
    struct CreatesHang {
        inner: SimulatedCloudFront,
    }

    impl Invalidator for CreatesHang {
        async fn create(
            &self,
            _target: impl Into<Target> + Send,
            _caller_reference: &str,
            _paths: &[CfPath],
        ) -> Result<Invalidation, InvalidatorError> {
            std::future::pending().await
        }
        async fn get(
            &self,
            target: impl Into<Target> + Send,
            id: &str,
        ) -> Result<Invalidation, InvalidatorError> {
            self.inner.get(target, id).await
        }
        async fn list(
            &self,
            target: impl Into<Target> + Send,
            marker: Option<&str>,
            max_items: i32,
        ) -> Result<(Vec<InvalidationSummary>, Option<String>), InvalidatorError> {
            self.inner.list(target, marker, max_items).await
        }
    }

    /// The local queue, whose visibility changes and deletes hang once
    /// `hang` is set.
    #[derive(Clone)]
    struct QueueHangs {
        inner: LocalQueue,
        hang: Arc<std::sync::atomic::AtomicBool>,
    }

    impl QueueHangs {
        async fn maybe_hang(&self) {
            if self.hang.load(std::sync::atomic::Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
        }
    }

    impl Queue for QueueHangs {
        async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Message>, QueueError> {
            self.inner.receive(max, wait).await
        }
        async fn set_visibility(
            &self,
            handles: &[Handle],
            timeout: Duration,
        ) -> Result<Vec<Failed>, QueueError> {
            self.maybe_hang().await;
            self.inner.set_visibility(handles, timeout).await
        }
        async fn delete(&self, handles: &[Handle]) -> Result<Vec<Failed>, QueueError> {
            self.maybe_hang().await;
            self.inner.delete(handles).await
        }
        async fn reject(
            &self,
            m: &Message,
            reason: &str,
            detail: &str,
        ) -> Result<bool, QueueError> {
            self.inner.reject(m, reason, detail).await
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

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_within_the_grace_period_and_its_margin_whatever_hangs() {
        let toml = format!("{CONFIG}\n[shutdown]\ngrace_seconds = 3\n");
        let config = Config::from_parts(Some(&toml), "test", std::iter::empty()).expect("config");
        let hang = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let queue = QueueHangs {
            inner: LocalQueue::new(Duration::from_secs(60)),
            hang: hang.clone(),
        };
        let cloudfront = CreatesHang {
            inner: SimulatedCloudFront::new(["EWWW".into(), "EIMG".into()], Duration::from_secs(2)),
        };
        let daemon = Daemon::new(&config, queue.clone(), cloudfront)
            .with_ledger(AnyStore::Memory(MemoryStore::new()));
        let cancel = CancellationToken::new();
        let run = tokio::spawn(daemon.run(cancel.clone()));
        queue
            .send(r#"{"distribution":"www","paths":["/a.html"]}"#)
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_secs(5)).await;
        // Its create hangs; another request waits behind it.
        queue
            .send(r#"{"distribution":"www","paths":["/b.html"]}"#)
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_secs(1)).await;
        // Making the messages visible again hangs too.
        hang.store(true, std::sync::atomic::Ordering::SeqCst);
        let stopped = tokio::time::Instant::now();
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .expect("the daemon ends")
            .expect("run ends");
        let took = stopped.elapsed();
        assert!(
            took <= Duration::from_secs(3) + SHUTDOWN_MARGIN,
            "shutdown took {took:?}"
        );
        // Nothing is lost: both messages come back to the queue once their
        // visibility runs out.
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert_eq!(queue.inner.len(), 2);
    }

    /// Real time: the ledger's write blocks a thread, as a DynamoDB call
    /// that hangs does.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_ledger_write_that_hangs_holds_up_only_the_batch_that_needs_it() {
        let config = Config::from_parts(Some(CONFIG), "test", std::iter::empty()).expect("config");
        let queue = LocalQueue::new(Duration::from_secs(60));
        let cloudfront =
            SimulatedCloudFront::new(["EWWW".into(), "EIMG".into()], Duration::from_secs(2));
        let store = MemoryStore::new();
        let daemon = Daemon::new(&config, queue.clone(), cloudfront.clone())
            .with_ledger(AnyStore::Memory(store.clone()));
        let observers = daemon.observers();
        let cancel = CancellationToken::new();
        let run = tokio::spawn(daemon.run(cancel.clone()));
        queue
            .send(r#"{"distribution":"www","paths":["/a.html"]}"#)
            .await
            .expect("send");
        let started = StdInstant::now();
        while cloudfront.created().is_empty() && started.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(cloudfront.created().len(), 1, "www's batch went out");
        // From now on the next ledger write hangs for 10 s.
        store.hang_next_save(Duration::from_secs(10));
        let hung = StdInstant::now();
        queue
            .send(r#"{"distribution":"img","paths":["/b.png"]}"#)
            .await
            .expect("send");
        let mut completed_after = None;
        while hung.elapsed() < Duration::from_secs(8) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(
                observers.heartbeat.age() < Duration::from_millis(1500),
                "the loop beats while the ledger hangs ({:?})",
                observers.heartbeat.age()
            );
            if completed_after.is_none()
                && status_of(&observers, "www") == (0, Some("Completed".to_owned()))
            {
                completed_after = Some(hung.elapsed());
            }
        }
        assert!(
            completed_after.is_some(),
            "www's completion is noticed while the ledger hangs"
        );
        assert_eq!(
            cloudfront.created().len(),
            1,
            "img's batch waits for its reservation to be written"
        );
        while cloudfront.created().len() < 2 && hung.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            cloudfront.created().len(),
            2,
            "img goes once the write is done"
        );
        cancel.cancel();
        run.await.expect("run ends");
    }
}

mod after_a_crash {
    use std::time::SystemTime;

    use super::super::*;
    use crate::budget::{Budget, MemoryStore};
    use crate::cloudfront::simulate::SimulatedCloudFront;
    use crate::path::CfPath;
    use crate::source::local::LocalQueue;

    const CONFIG: &str = r#"
[source]
kind = "local"
visibility_timeout_seconds = 60
[distributions.www]
id = "EWWW"
[batching]
quiet_seconds = 2
[cloudfront]
mode = "simulate"
poll_interval_seconds = 5
simulate_completion_seconds = 30
"#;

    #[tokio::test(start_paused = true)]
    async fn a_batch_created_before_a_crash_covers_its_redelivered_messages() {
        let config = Config::from_parts(Some(CONFIG), "test", std::iter::empty()).expect("config");
        let queue = LocalQueue::new(Duration::from_secs(60));
        let cloudfront = SimulatedCloudFront::new(["EWWW".into()], Duration::from_secs(30));
        queue
            .send(r#"{"paths":["/a.html","/b.html"]}"#)
            .await
            .expect("send");
        queue.send(r#"{"paths":["/c.html"]}"#).await.expect("send");
        // The process that crashed: it received both messages, reserved
        // and created a batch for the first, and died before committing
        // and deleting.
        assert_eq!(
            queue
                .receive(10, Duration::ZERO)
                .await
                .expect("receive")
                .len(),
            2
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        let store = MemoryStore::new();
        let reference = "cfpurge-www-1700000000000-1-00000000000000aa";
        let paths = [
            CfPath::parse("/a.html").unwrap(),
            CfPath::parse("/b.html").unwrap(),
        ];
        {
            let mut budget = Budget::open(
                AnyStore::Memory(store.clone()),
                config.budget.clone(),
                SystemTime::now(),
            )
            .expect("ledger");
            budget
                .reserve(reference, "www", 2, SystemTime::now())
                .expect("reserve");
        }
        cloudfront
            .create("EWWW", reference, &paths)
            .await
            .expect("create");
        // The messages come back once their visibility runs out.
        tokio::time::advance(Duration::from_secs(61)).await;

        let daemon = Daemon::new(&config, queue.clone(), cloudfront.clone())
            .with_ledger(AnyStore::Memory(store.clone()))
            .with_clock(Clock::following_tokio(SystemTime::now()));
        let cancel = CancellationToken::new();
        let run = tokio::spawn(daemon.run(cancel.clone()));
        tokio::time::sleep(Duration::from_secs(30)).await;
        let created: Vec<Vec<String>> = cloudfront
            .created()
            .into_iter()
            .map(|(_, inv)| inv.paths.iter().map(|p| p.to_string()).collect())
            .collect();
        assert_eq!(
            created,
            vec![
                vec!["/a.html".to_owned(), "/b.html".to_owned()],
                vec!["/c.html".to_owned()]
            ],
            "only the message the crashed batch did not cover is paid for"
        );
        assert!(queue.is_empty(), "{} left", queue.len());
        let state = store.load().expect("load").expect("a ledger");
        assert_eq!(
            state.spent, 3,
            "the crashed batch confirmed, the new one committed"
        );
        assert!(state.reservations.is_empty(), "{:?}", state.reservations);
        cancel.cancel();
        run.await.expect("run ends");
    }
}

/// The core driven by hand: each input and each moment given, no runner.
mod core_driven {
    use std::time::Duration;

    use crate::clock::Clock;
    use crate::config::Config;
    use crate::coordination::Answer;
    use crate::daemon::core::{Command, Core, Input, Mode, ReplicaState};
    use crate::daemon::{Observers, Publisher};

    const CONFIG: &str = r#"
[source]
kind = "local"
[distributions.www]
id = "EWWW"
[cloudfront]
mode = "simulate"
"#;

    fn config() -> Config {
        Config::from_parts(Some(CONFIG), "test", std::iter::empty()).expect("config")
    }

    /// `cfpurge_leader` as a scrape reads it.
    fn leader_gauge(published: &Publisher) -> String {
        let text = crate::metrics::encode(&published.observers().registry);
        text.lines()
            .find_map(|l| l.strip_prefix("cfpurge_leader "))
            .unwrap_or_else(|| panic!("no cfpurge_leader in\n{text}"))
            .to_owned()
    }

    fn role(published: &Publisher) -> String {
        published.observers().status.snapshot().role.clone()
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_paused_past_its_lease_reads_standby_before_its_loop_runs_again() {
        let clock = Clock::new();
        let mut core = Core::new(&config(), clock, "1".into(), Mode::Live);
        // The runner's part: what the core shows, published after each step.
        let mut published = Publisher::new(Observers::new(&config()));
        let lease = Duration::from_secs(15);
        core.set_replica(ReplicaState::new("a".into(), lease, false));
        let now = clock.now();
        core.turn(&now);
        published.publish(core.shown(), &clock);
        assert!(
            core.take_commands()
                .iter()
                .any(|c| matches!(c, Command::Lease { .. })),
            "a look at the lease"
        );
        assert_eq!(
            (role(&published), leader_gauge(&published)),
            ("standby".into(), "0".into())
        );
        core.handle(Input::Lease(Answer::Seen(None)), &now);
        core.handle(Input::Lease(Answer::Acquired { fencing: 1 }), &now);
        published.publish(core.shown(), &clock);
        assert_eq!(
            (role(&published), leader_gauge(&published)),
            ("leader".into(), "1".into())
        );

        // The process stops (SIGSTOP) and its loop with it; the clock goes
        // on. Just within two thirds of the lease it still leads...
        tokio::time::advance(lease * 2 / 3 - Duration::from_millis(1)).await;
        assert_eq!(
            (role(&published), leader_gauge(&published)),
            ("leader".into(), "1".into())
        );
        // ...and past them, resumed, its first answers say standby, before
        // the core has taken another turn.
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(
            (role(&published), leader_gauge(&published)),
            ("standby".into(), "0".into())
        );
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(
            (role(&published), leader_gauge(&published)),
            ("standby".into(), "0".into())
        );

        // Once its loop runs it stands down, and stays a standby.
        let now = clock.now();
        core.turn(&now);
        published.publish(core.shown(), &clock);
        assert!(!core.is_leader(now.mono));
        assert_eq!(
            (role(&published), leader_gauge(&published)),
            ("standby".into(), "0".into())
        );
    }
}

/// The start-up gate, the core driven by hand: nothing is submitted
/// before this term's rounds have looked everywhere for what a crash left,
/// whatever fails, stops or is cut short on the way.
mod gate {
    use std::time::{Duration, SystemTime};

    use crate::budget::{AnyStore, Budget, LedgerError, LedgerState, LedgerStore, MemoryStore};
    use crate::clock::{Clock, Now};
    use crate::cloudfront::invalidator::{Invalidator, InvalidatorError, MAX_LIST_ITEMS};
    use crate::cloudfront::simulate::SimulatedCloudFront;
    use crate::config::Config;
    use crate::coordination::{Answer, Call, Seen};
    use crate::daemon::core::{Command, Core, Input, Mode, ReplicaState};
    use crate::path::CfPath;
    use crate::pipeline::Effect;
    use crate::source::driver::{Body, SourceEvent};
    use crate::tracker::{self, external};

    const CONFIG: &str = r#"
[source]
kind = "local"
[distributions.www]
id = "EWWW"
[distributions.img]
id = "EIMG"
[batching]
quiet_seconds = 1
max_delay_seconds = 1
[cloudfront]
mode = "simulate"
"#;

    /// The crashed process's batch: reserved, created, never committed.
    const CRASHED: &str = "cfpurge-www-1700000000000-1-00000000000000aa";

    /// Another replica's batch, left so when it crashed in its term.
    const OTHER_CRASHED: &str = "cfpurge-www-1700000000001-f7-00000000000000bb";

    /// The core and a simulated world that answers its commands.
    struct World {
        core: Core,
        clock: Clock,
        cf: SimulatedCloudFront,
        ledger: Option<LedgerState>,
        /// What the next ledger reads answer, first to last; then the
        /// ledger as written.
        loads: Vec<Result<(), LedgerError>>,
        /// What the next scans of `www` answer, first to last: a failure,
        /// or the pages they may list; then as many pages as they need.
        scans: Vec<Result<usize, InvalidatorError>>,
        /// Every Reconcile asked for: its distribution and whether its scan
        /// goes on from a cut one.
        reconciles: Vec<(String, bool)>,
        /// The paths of every CreateInvalidation asked for.
        creates: Vec<Vec<String>>,
        deleted: Vec<String>,
        /// As one of several replicas: whether the lease table lets this
        /// one lead (`None`: alone, no lease calls).
        lease: Option<bool>,
        /// Messages made visible again.
        released: Vec<String>,
        /// When the crashed process first received its messages.
        first: SystemTime,
    }

    impl World {
        /// A world after a crash: the crashed batch (`/a.html`) was
        /// reserved and created, then another tool created `others`
        /// invalidations on www, newer than it; its message comes back
        /// (`m-a`), with another one no batch covered (`m-c`, `/c.html`).
        async fn after_a_crash(others: usize) -> World {
            let config =
                Config::from_parts(Some(CONFIG), "test", std::iter::empty()).expect("config");
            // One wall clock, moving with the paused one, for the core and
            // CloudFront: the crashed process first received the messages
            // now, and created its batch a second later.
            let first = SystemTime::now();
            let clock = Clock::following_tokio(first);
            let cf =
                SimulatedCloudFront::new(["EWWW".into(), "EIMG".into()], Duration::from_secs(30))
                    .starting_at(first);
            tokio::time::advance(Duration::from_secs(1)).await;
            let store = MemoryStore::new();
            let mut budget = Budget::open(
                AnyStore::Memory(store.clone()),
                config.budget.clone(),
                SystemTime::now(),
            )
            .expect("ledger");
            budget
                .reserve(CRASHED, "www", 1, SystemTime::now())
                .expect("reserve");
            drop(budget);
            cf.create("EWWW", CRASHED, &[CfPath::parse("/a.html").unwrap()])
                .await
                .expect("create");
            for i in 0..others {
                tokio::time::advance(Duration::from_millis(10)).await;
                cf.create(
                    "EWWW",
                    &format!("deploy-tool-{i}"),
                    &[CfPath::parse(&format!("/other/{i}")).unwrap()],
                )
                .await
                .expect("create");
            }
            let core = Core::new(&config, clock, "2".into(), Mode::Live);
            let mut world = World {
                core,
                clock,
                cf,
                ledger: store.load().expect("load"),
                loads: Vec::new(),
                scans: Vec::new(),
                reconciles: Vec::new(),
                creates: Vec::new(),
                deleted: Vec::new(),
                lease: None,
                released: Vec::new(),
                first,
            };
            world.receive(&[("m-a", "/a.html"), ("m-c", "/c.html")], first);
            world
        }

        /// Messages of www received now, first received (by any process)
        /// at `first`, as SQS tells.
        fn receive(&mut self, messages: &[(&str, &str)], first: SystemTime) {
            let now = self.clock.now();
            for (id, path) in messages {
                self.core.handle(
                    Input::Event(SourceEvent::Received {
                        id: (*id).into(),
                        body: Body::new(format!(r#"{{"distribution":"www","paths":["{path}"]}}"#)),
                        received_at: now.instant,
                        first_received_at: Some(first),
                    }),
                    &now,
                );
            }
        }

        /// The reservation the crash left, as last written: still open.
        fn crashed_open(&self) -> bool {
            self.ledger
                .as_ref()
                .is_some_and(|l| l.reservations.contains_key(CRASHED))
        }

        /// `seconds` go by; the core's commands, and those they lead to,
        /// are answered at once (`answer` false: taken and left unanswered).
        async fn run(&mut self, seconds: u64, answer: bool) -> Vec<Command> {
            let mut unanswered = Vec::new();
            for _ in 0..seconds * 10 {
                tokio::time::advance(Duration::from_millis(100)).await;
                let now = self.clock.now();
                self.core.turn(&now);
                loop {
                    let commands = self.core.take_commands();
                    if commands.is_empty() {
                        break;
                    }
                    for command in commands {
                        match self.carry_out(command, &now, answer).await {
                            Ok(Some(input)) => self.core.handle(input, &now),
                            Ok(None) => {}
                            Err(command) => unanswered.push(command),
                        }
                    }
                }
            }
            unanswered
        }

        async fn carry_out(
            &mut self,
            command: Command,
            now: &Now,
            answer: bool,
        ) -> Result<Option<Input>, Command> {
            let cf = self.cf.clone();
            Ok(Some(match command {
                Command::Create {
                    alias,
                    target,
                    batch,
                    ..
                } => {
                    self.creates
                        .push(batch.paths.iter().map(|p| p.to_string()).collect());
                    let result = cf.create(&target, &batch.reference, &batch.paths).await;
                    Input::Created {
                        alias,
                        batch,
                        result,
                    }
                }
                Command::Poll { alias, target, ids } => Input::Checked {
                    checks: tracker::check(&cf, &target, ids).await,
                    alias,
                },
                Command::Reconcile {
                    alias,
                    target,
                    known,
                    scan,
                } => {
                    self.reconciles.push((
                        alias.clone(),
                        scan.as_ref().is_some_and(|s| s.resume.is_some()),
                    ));
                    if !answer {
                        return Err(Command::Reconcile {
                            alias,
                            target,
                            known,
                            scan,
                        });
                    }
                    let pages = if alias == "www" && !self.scans.is_empty() {
                        self.scans.remove(0)
                    } else {
                        Ok(usize::MAX)
                    };
                    let scan = match (scan, pages) {
                        (None, _) => None,
                        (Some(_), Err(e)) => Some(Err(e)),
                        (Some(basis), Ok(pages)) => Some(
                            external::scan(
                                &cf,
                                &target,
                                basis.month_start,
                                |id| basis.seen.contains(id),
                                pages,
                                basis.resume.as_ref(),
                                tokio::time::Instant::now() + Duration::from_secs(3600),
                            )
                            .await,
                        ),
                    };
                    Input::Looked {
                        result: tracker::look(&cf, &target, &known, MAX_LIST_ITEMS).await,
                        scan,
                        alias,
                    }
                }
                // One account, the default one: its ledger.
                Command::LoadLedger { account, epoch } => {
                    let result = match self.loads.is_empty() {
                        true => Ok(self.ledger.clone()),
                        false => self.loads.remove(0).map(|()| self.ledger.clone()),
                    };
                    Input::LedgerLoaded {
                        account,
                        epoch,
                        result,
                    }
                }
                Command::SaveLedger {
                    account,
                    epoch,
                    seq,
                    state,
                    ..
                } => {
                    self.ledger = Some(state);
                    Input::LedgerSaved {
                        account,
                        epoch,
                        seq,
                        result: Ok(()),
                    }
                }
                Command::Queue(Effect::Delete(ids)) => {
                    self.deleted.extend(ids.iter().map(|id| id.to_string()));
                    Input::Deleted(ids.len())
                }
                Command::Lease { call, wall, .. } => {
                    let Some(grant) = self.lease else {
                        return Ok(None);
                    };
                    Input::Lease(match (call, grant) {
                        (Call::Look, true) => Answer::Seen(None),
                        (Call::Look, false) => Answer::Seen(Some(Seen {
                            holder: Some("another".into()),
                            expires_at: wall + 10_000,
                            fencing: 7,
                        })),
                        (Call::Acquire, true) => Answer::Acquired { fencing: 8 },
                        (Call::Renew { .. }, true) => Answer::Renewed,
                        (Call::Release { .. }, _) => Answer::Released,
                        (_, false) => Answer::Refused,
                    })
                }
                Command::Release(ids) => {
                    self.released.extend(ids.iter().map(|id| id.to_string()));
                    return Ok(None);
                }
                _ => {
                    let _ = now;
                    return Ok(None);
                }
            }))
        }

        /// The outcome every case must end in: the redelivered message of
        /// the crashed batch is covered by it, not paid for again; the
        /// other one is paid for once; both deleted.
        fn assert_recovered(&self) {
            assert_eq!(
                self.creates,
                vec![vec!["/c.html".to_owned()]],
                "only what the crashed batch did not cover is paid for"
            );
            let mut deleted = self.deleted.clone();
            deleted.sort();
            assert_eq!(deleted, ["m-a", "m-c"]);
            assert!(!self.crashed_open(), "the crashed reservation is confirmed");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_scan_cut_short_keeps_the_gate_closed_and_the_next_goes_on_from_there() {
        // The crashed batch lies past the first page of www's listing.
        let mut world = World::after_a_crash(120).await;
        world.scans = vec![Ok(1)];
        world.run(1, true).await;
        assert!(world.creates.is_empty(), "{:?}", world.creates);
        assert!(world.crashed_open());
        assert_eq!(
            world.reconciles,
            [("img".to_owned(), false), ("www".to_owned(), false)]
        );
        // Only www is looked at again, from where its scan stopped.
        world.run(5, true).await;
        assert_eq!(world.reconciles[2], ("www".to_owned(), true));
        world.assert_recovered();
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_scan_keeps_the_gate_closed_until_one_goes_through() {
        let mut world = World::after_a_crash(0).await;
        world.scans = vec![
            Err(InvalidatorError::Timeout("no answer in time".into())),
            Err(InvalidatorError::Throttled("Rate exceeded".into())),
        ];
        world.run(3, true).await;
        assert!(world.creates.is_empty(), "{:?}", world.creates);
        assert!(world.crashed_open());
        world.run(5, true).await;
        assert_eq!(
            world.reconciles.iter().filter(|(a, _)| a == "img").count(),
            1,
            "a distribution looked at is not asked again before the gate opens"
        );
        world.assert_recovered();
    }

    #[tokio::test(start_paused = true)]
    async fn no_round_and_no_batch_while_the_ledger_is_not_open() {
        let mut world = World::after_a_crash(0).await;
        world.loads = vec![Err(LedgerError::Store("the disk is gone".into()))];
        world.run(3, true).await;
        assert!(world.reconciles.is_empty(), "{:?}", world.reconciles);
        assert!(world.creates.is_empty(), "{:?}", world.creates);
        world.run(30, true).await;
        world.assert_recovered();
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_before_the_first_round_submits_nothing_until_it_is_over() {
        let mut world = World::after_a_crash(0).await;
        // The first round is asked for and not answered yet when SIGTERM
        // comes: draining makes every batch due at once.
        let asked = world.run(1, false).await;
        assert_eq!(asked.len(), 2, "{asked:?}");
        world.core.begin_drain();
        let now = world.clock.now();
        world.core.turn(&now);
        assert!(
            !world
                .core
                .take_commands()
                .iter()
                .any(|c| matches!(c, Command::Create { .. })),
            "nothing goes out before the round is over"
        );
        // The round's answers come within the grace period: it opens the
        // gate, and the drain covers both messages, the crashed one by
        // the invalidation found.
        for command in asked {
            let input = world
                .carry_out(command, &now, true)
                .await
                .expect("answered");
            world.core.handle(input.expect("an answer"), &now);
        }
        world.run(3, true).await;
        world.assert_recovered();
        assert!(world.core.is_drained());
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_term_looks_first_at_what_is_new_while_an_earlier_cut_is_open() {
        // 220 newer than the crashed batch: two pages' worth and 20.
        let mut world = World::after_a_crash(220).await;
        world.core.set_replica(ReplicaState::new(
            "a".into(),
            Duration::from_secs(15),
            false,
        ));
        world.lease = Some(true);
        // Its first term: the scan is cut after two pages, the next ones
        // fail, and the gate is still closed when it loses the lease.
        world.scans = vec![Ok(2)];
        world
            .scans
            .extend((0..10).map(|_| Err(InvalidatorError::Timeout("no answer in time".into()))));
        world.run(1, true).await;
        assert!(world.creates.is_empty() && world.crashed_open());
        world.lease = Some(false);
        world.run(10, true).await;
        assert!(!world.core.is_leader(world.clock.now().mono));
        let mut released = world.released.clone();
        released.sort();
        assert_eq!(released, ["m-a", "m-c"]);
        // Meanwhile the other replica led, created a batch for /x.html and
        // crashed before committing it: its invalidation is the newest.
        let mut state = world.ledger.clone().expect("a ledger");
        let config = Config::from_parts(Some(CONFIG), "test", std::iter::empty()).expect("config");
        let store = MemoryStore::new();
        store.save(&state).expect("save");
        let mut budget = Budget::open(
            AnyStore::Memory(store.clone()),
            config.budget,
            SystemTime::now(),
        )
        .expect("ledger");
        budget
            .reserve(OTHER_CRASHED, "www", 1, SystemTime::now())
            .expect("reserve");
        drop(budget);
        state = store.load().expect("load").expect("a ledger");
        world.ledger = Some(state);
        let x_first = world.clock.now().wall;
        tokio::time::advance(Duration::from_secs(1)).await;
        world
            .cf
            .create("EWWW", OTHER_CRASHED, &[CfPath::parse("/x.html").unwrap()])
            .await
            .expect("create");
        // This replica leads again, and every message comes back to it.
        // Its first scan takes the newest page (the other batch and 99
        // seen), stops at the next (all seen), and goes on from the cut
        // (20 more and the crashed batch).
        world.scans.clear();
        world.lease = Some(true);
        world.run(1, true).await;
        assert!(world.core.is_leader(world.clock.now().mono));
        let first = world.first;
        world.receive(&[("m-a", "/a.html"), ("m-c", "/c.html")], first);
        world.receive(&[("m-x", "/x.html")], x_first);
        world.run(10, true).await;
        assert_eq!(
            world.creates,
            vec![vec!["/c.html".to_owned()]],
            "both crashed batches cover their messages"
        );
        let mut deleted = world.deleted.clone();
        deleted.sort();
        assert_eq!(deleted, ["m-a", "m-c", "m-x"]);
        let state = world.ledger.as_ref().expect("a ledger");
        assert!(state.reservations.is_empty(), "{:?}", state.reservations);
    }
}

/// Verification and warming after Completed, the daemon run whole on paused
/// time against the simulated CloudFront and a fake edge on loopback that
/// forgets a cached copy when CloudFront completes an invalidation of it
/// (unless told to ignore purges).
mod edge {
    use super::super::*;
    use crate::budget::MemoryStore;
    use crate::cloudfront::simulate::SimulatedCloudFront;
    use crate::edge::fake::{Behaviour, FakeEdge};
    use crate::source::local::LocalQueue;

    const DIST: &str = "E2ABCDEF123456";

    /// The budget of most tests: never in the way.
    const AMPLE: &str = "pacing = \"none\"\nmonthly_paths = 100000";

    fn config(edge: &FakeEdge, extra: &str, budget: &str) -> Config {
        let toml = format!(
            r#"
[source]
kind = "local"
visibility_timeout_seconds = 60
[distributions.www]
id = "{DIST}"
[distributions.www.verify]
domain = "{domain}"
scheme = "http"
sample = 3
per_second = 2
{extra}
[batching]
quiet_seconds = 2
max_delay_seconds = 10
max_batch_paths = 3000
[cloudfront]
mode = "simulate"
create_per_second = 100
create_burst = 100
poll_interval_seconds = 5
simulate_completion_seconds = 30
[budget]
{budget}
"#,
            domain = edge.domain()
        );
        Config::from_parts(Some(&toml), "test", std::iter::empty()).expect("config")
    }

    struct Run {
        queue: LocalQueue,
        cloudfront: SimulatedCloudFront,
        observers: Observers,
        cancel: CancellationToken,
        task: tokio::task::JoinHandle<Totals>,
    }

    impl Run {
        fn metric(&self, series: &str) -> f64 {
            let text = crate::metrics::encode(&self.observers.registry);
            text.lines()
                .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
                .unwrap_or_else(|| panic!("{series} missing from\n{text}"))
                .parse()
                .expect("a number")
        }

        fn verified(&self, result: &str) -> f64 {
            self.metric(&format!(
                "cfpurge_verify_total{{distribution=\"www\",result=\"{result}\"}}"
            ))
        }

        /// The invalidations created so far that purge `path`.
        fn purging(&self, path: &str) -> usize {
            let path = crate::path::CfPath::parse(path).expect("path");
            self.cloudfront
                .created()
                .iter()
                .filter(|(_, inv)| inv.paths.iter().any(|p| p.covers(&path)))
                .count()
        }

        async fn stop(self) -> Totals {
            self.cancel.cancel();
            self.task.await.expect("run ends")
        }
    }

    async fn start(extra: &str) -> (Run, FakeEdge) {
        start_with(extra, AMPLE).await
    }

    async fn start_with(extra: &str, budget: &str) -> (Run, FakeEdge) {
        let cloudfront = SimulatedCloudFront::new([DIST.to_owned()], Duration::from_secs(30));
        let edge = FakeEdge::start(Some((cloudfront.clone(), DIST))).await;
        let config = config(&edge, extra, budget);
        let queue = LocalQueue::new(Duration::from_secs(60));
        let daemon = Daemon::new(&config, queue.clone(), cloudfront.clone())
            .with_ledger(AnyStore::Memory(MemoryStore::new()));
        let observers = daemon.observers();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(daemon.run(cancel.clone()));
        let run = Run {
            queue,
            cloudfront,
            observers,
            cancel,
            task,
        };
        (run, edge)
    }

    #[tokio::test(start_paused = true)]
    async fn a_purge_that_took_is_fresh_one_the_edge_ignores_is_stale_and_purged_again_once() {
        let (run, edge) = start("reinvalidate_stale = true").await;
        // Viewers had both pages cached long before.
        edge.cache("/fresh.html");
        edge.cache("/ignored.html");
        tokio::time::sleep(Duration::from_secs(100)).await;

        run.queue.send("/fresh.html").await.expect("send");
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(run.verified("fresh"), 1.0);
        assert_eq!(run.verified("stale"), 0.0);
        assert!(run.queue.is_empty());

        edge.obey_purges(false);
        run.queue.send("/ignored.html").await.expect("send");
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(run.verified("stale"), 1.0);
        let status = run.observers.status.snapshot();
        let verify = status.distributions["www"]
            .verify
            .clone()
            .expect("verify shown");
        let last = verify.last_stale.expect("the stale path shown");
        assert_eq!(last.path, "/ignored.html");
        assert!(last.age_seconds >= 160, "{last:?}");
        // Purged again, once, and checked again: still stale, not a third
        // time.
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!(run.purging("/ignored.html"), 2);
        assert_eq!(run.verified("stale"), 2.0);
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!(run.purging("/ignored.html"), 2);
        assert_eq!(run.purging("/fresh.html"), 1);
        assert!(run.queue.is_empty());
        assert!(run.queue.dead_letters().is_empty());
        let totals = run.stop().await;
        assert_eq!(totals.messages_deleted, 2);
        assert_eq!(totals.invalidations, 3);
    }

    /// A cached page is purged, the edge keeps its copy, and the check
    /// finds it stale.
    async fn purge_the_edge_ignores(run: &Run, edge: &FakeEdge) {
        edge.cache("/ignored.html");
        edge.obey_purges(false);
        tokio::time::sleep(Duration::from_secs(100)).await;
        run.queue.send("/ignored.html").await.expect("send");
        tokio::time::sleep(Duration::from_secs(300)).await;
        assert_eq!(run.verified("stale"), 1.0);
    }

    #[tokio::test(start_paused = true)]
    async fn without_opting_in_a_stale_path_is_not_purged_again() {
        let (run, edge) = start("").await;
        purge_the_edge_ignores(&run, &edge).await;
        assert_eq!(run.purging("/ignored.html"), 1);
        run.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_path_is_not_purged_again_once_the_budget_is_spent() {
        // One path a month, spent by the purge the edge ignores. With
        // "overspend" a re-invalidation would be submitted at once if it
        // were made: only the check of the budget keeps it out.
        let (run, edge) = start_with(
            "reinvalidate_stale = true",
            "pacing = \"none\"\nmonthly_paths = 1\non_exhausted = \"overspend\"",
        )
        .await;
        purge_the_edge_ignores(&run, &edge).await;
        assert_eq!(run.purging("/ignored.html"), 1, "not purged again");
        let status = run.observers.status.snapshot();
        let verify = status.distributions["www"].verify.clone().expect("verify");
        assert_eq!((verify.stale, verify.reinvalidated), (1, 0));
        assert_eq!(status.budget.used, 1);
        // A request from a client still goes out: the budget stops only
        // cfpurge's own second purge.
        run.queue.send("/other.html").await.expect("send");
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(run.purging("/other.html"), 1);
        run.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_edge_that_hangs_or_fails_delays_no_purge_and_loses_no_message() {
        for behaviour in [Behaviour::Hang, Behaviour::Fail] {
            let (run, edge) = start("[distributions.www.warm]\nenabled = true").await;
            edge.behave(behaviour.clone());
            for i in 0..5 {
                let paths: Vec<String> = (0..4).map(|j| format!("\"/b{i}/p{j}.html\"")).collect();
                run.queue
                    .send(&format!(r#"{{"paths":[{}]}}"#, paths.join(",")))
                    .await
                    .expect("send");
                // Each is purged within its quiet window, whatever the edge
                // does with the checks of the ones before.
                tokio::time::sleep(Duration::from_secs(3)).await;
                assert_eq!(run.cloudfront.created().len(), i + 1, "{behaviour:?}");
                assert!(run.queue.is_empty(), "{behaviour:?}");
                tokio::time::sleep(Duration::from_secs(40)).await;
            }
            tokio::time::sleep(Duration::from_secs(120)).await;
            assert_eq!(run.verified("error"), 15.0, "{behaviour:?}");
            assert_eq!(run.verified("fresh") + run.verified("stale"), 0.0);
            assert_eq!(
                run.metric("cfpurge_warm_total{distribution=\"www\",result=\"error\"}"),
                5.0,
                "{behaviour:?}"
            );
            assert_eq!(
                run.metric("cfpurge_warm_total{distribution=\"www\",result=\"ok\"}"),
                0.0
            );
            // Shutdown does not wait for the edge either: what is under way
            // is dropped (a hanging request would hold it to the margin).
            run.queue.send("/last.html").await.expect("send");
            tokio::time::sleep(Duration::from_secs(36)).await;
            let stopped = tokio::time::Instant::now();
            let totals = run.stop().await;
            let took = stopped.elapsed();
            assert!(took < Duration::from_secs(3), "{behaviour:?}: {took:?}");
            assert_eq!(totals.messages_deleted, 6);
            assert_eq!(totals.invalidations, 6);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_edge_rates_hold_when_a_3000_path_invalidation_completes() {
        let (run, edge) =
            start("[distributions.www.warm]\nenabled = true\nper_second = 5\nmax_paths = 3000")
                .await;
        let paths: Vec<String> = (0..3000)
            .map(|i| format!("\"/d{}/p{i}.html\"", i % 10))
            .collect();
        run.queue
            .send(&format!(r#"{{"paths":[{}]}}"#, paths.join(",")))
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_secs(60)).await;
        // The planner sent wildcards; the edge is asked for the requested
        // paths they covered, never for a wildcard.
        let created = run.cloudfront.created();
        assert_eq!(created.len(), 1);
        assert!(
            created[0].1.paths.iter().all(|p| p.is_wildcard()),
            "{created:?}"
        );
        tokio::time::sleep(Duration::from_secs(700)).await;
        let seen = edge.seen();
        assert_eq!(seen.len(), 3000);
        let mut asked: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
        asked.sort_unstable();
        asked.dedup();
        assert_eq!(asked.len(), 3000, "each path once");
        assert!(asked.iter().all(|p| p.ends_with(".html")));
        // Per second of virtual time: at most 2 checks and 5 warming
        // requests.
        let most = seen
            .iter()
            .map(|s| {
                seen.iter()
                    .filter(|u| u.at >= s.at && u.at < s.at + Duration::from_secs(1))
                    .count()
            })
            .max()
            .expect("requests");
        assert!(most <= 7, "{most} requests in one second");
        let after_the_checks = seen
            .iter()
            .filter(|s| s.at >= seen[0].at + Duration::from_secs(2))
            .map(|s| {
                seen.iter()
                    .filter(|u| u.at >= s.at && u.at < s.at + Duration::from_secs(1))
                    .count()
            })
            .max()
            .expect("requests");
        assert_eq!(after_the_checks, 5);
        assert_eq!(run.verified("fresh"), 3.0);
        assert_eq!(
            run.metric("cfpurge_warm_total{distribution=\"www\",result=\"ok\"}"),
            2997.0
        );
        run.stop().await;
    }
}

mod shutdown {
    use super::super::*;
    use crate::budget::MemoryStore;
    use crate::cloudfront::simulate::SimulatedCloudFront;
    use crate::source::local::LocalQueue;

    const DIST: &str = "E2ABCDEF123456";

    /// Messages held when SIGTERM comes.
    const HELD: usize = 100_000;

    #[tokio::test(start_paused = true)]
    async fn a_backlog_of_a_hundred_thousand_held_messages_is_released_within_the_grace_period() {
        // The budget is spent by the first message and `hold` keeps the
        // rest waiting: nothing can be submitted at shutdown, everything
        // must be released.
        let toml = format!(
            r#"
[source]
kind = "local"
visibility_timeout_seconds = 60
max_pending_messages = {HELD}
[distributions.www]
id = "{DIST}"
[batching]
quiet_seconds = 1
max_delay_seconds = 5
[cloudfront]
mode = "simulate"
simulate_completion_seconds = 30
[budget]
monthly_paths = 1
pacing = "none"
on_exhausted = "hold"
[shutdown]
grace_seconds = 20
"#
        );
        let config = Config::from_parts(Some(&toml), "test", std::iter::empty()).expect("config");
        let queue = LocalQueue::new(Duration::from_secs(60));
        // Each batch call takes 20 ms, as SQS's do: 10,000 of them one
        // after the other would take 200 s.
        queue.set_call_latency(Duration::from_millis(20));
        let cloudfront = SimulatedCloudFront::new([DIST.to_owned()], Duration::from_secs(30));
        let daemon = Daemon::new(&config, queue.clone(), cloudfront.clone())
            .with_ledger(AnyStore::Memory(MemoryStore::new()));
        let cancel = CancellationToken::new();
        let run = tokio::spawn(daemon.run(cancel.clone()));
        queue.send("/spent.html").await.expect("send");
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(cloudfront.created().len(), 1);
        assert!(queue.is_empty());
        for i in 0..HELD {
            queue.send(&format!("/p/{i}.html")).await.expect("send");
        }
        for _ in 0..1_000 {
            if queue.depth_now().in_flight == HELD as u64 {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert_eq!(queue.depth_now().in_flight, HELD as u64, "not all held");
        // Held for a while: the extensions keep them hidden.
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!(queue.depth_now().in_flight, HELD as u64, "some came back");

        cancel.cancel();
        let at = tokio::time::Instant::now();
        let totals = run.await.expect("run ends");
        assert!(
            at.elapsed() <= Duration::from_secs(20),
            "ended {:?} after the signal",
            at.elapsed()
        );
        let depth = queue.depth_now();
        assert_eq!((depth.visible, depth.in_flight), (HELD as u64, 0));
        assert_eq!(totals.messages_deleted, 1);
        assert_eq!(cloudfront.created().len(), 1);
    }
}

/// CloudFront stops answering once the daemon has started: every call
/// fails as a refused connection does. What an operator looks at names the
/// error and what the pending paths wait for, and the budget shows the
/// reservation kept on doubt apart from what was spent; once CloudFront
/// answers again, the request goes out and the reservation is settled.
mod stuck {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::super::*;
    use crate::budget::MemoryStore;
    use crate::cloudfront::invalidator::{
        Invalidation, InvalidationSummary, InvalidatorError, Target,
    };
    use crate::cloudfront::simulate::SimulatedCloudFront;
    use crate::http::{HttpState, app};
    use crate::path::CfPath;
    use crate::source::local::LocalQueue;

    /// What the SDK reports when nothing listens at CloudFront's endpoint.
    const REFUSED: &str = "dispatch failure: io error: error trying to connect: \
                           tcp connect error: Connection refused (os error 111)";

    /// The simulated CloudFront, unreachable while `down` is set.
    #[derive(Clone, Debug)]
    struct Unreachable {
        inner: SimulatedCloudFront,
        down: Arc<AtomicBool>,
    }

    impl Unreachable {
        fn check(&self) -> Result<(), InvalidatorError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(InvalidatorError::ServerError(REFUSED.to_owned()));
            }
            Ok(())
        }
    }

    impl Invalidator for Unreachable {
        async fn create(
            &self,
            target: impl Into<Target> + Send,
            caller_reference: &str,
            paths: &[CfPath],
        ) -> Result<Invalidation, InvalidatorError> {
            self.check()?;
            self.inner.create(target, caller_reference, paths).await
        }
        async fn get(
            &self,
            target: impl Into<Target> + Send,
            id: &str,
        ) -> Result<Invalidation, InvalidatorError> {
            self.check()?;
            self.inner.get(target, id).await
        }
        async fn list(
            &self,
            target: impl Into<Target> + Send,
            marker: Option<&str>,
            max_items: i32,
        ) -> Result<(Vec<InvalidationSummary>, Option<String>), InvalidatorError> {
            self.check()?;
            self.inner.list(target, marker, max_items).await
        }
    }

    const CONFIG: &str = r#"
[source]
kind = "local"
visibility_timeout_seconds = 60
[distributions.www]
id = "EWWW"
[batching]
quiet_seconds = 2
[cloudfront]
mode = "simulate"
poll_interval_seconds = 5
simulate_completion_seconds = 30
[budget]
pacing = "none"
"#;

    async fn get(state: &HttpState, uri: &str) -> (StatusCode, String) {
        let response = app(state.clone())
            .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
            .await
            .expect("an answer");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, String::from_utf8(body.to_vec()).expect("utf-8"))
    }

    #[tokio::test(start_paused = true)]
    async fn status_page_and_cli_name_the_error_what_waits_and_the_kept_reservation() {
        let config = Config::from_parts(Some(CONFIG), "test", std::iter::empty()).expect("config");
        let queue = LocalQueue::new(Duration::from_secs(60));
        let simulated = SimulatedCloudFront::new(["EWWW".into()], Duration::from_secs(30));
        let down = Arc::new(AtomicBool::new(false));
        let cloudfront = Unreachable {
            inner: simulated.clone(),
            down: down.clone(),
        };
        let daemon = Daemon::new(&config, queue.clone(), cloudfront)
            .with_ledger(AnyStore::Memory(MemoryStore::new()));
        let observers = daemon.observers();
        let mut http = HttpState::new(
            observers.registry.clone(),
            crate::decode::Router::new(&config),
            queue.clone(),
            None,
        );
        http.status = observers.status.clone();
        http.readiness = observers.readiness.clone();
        let cancel = CancellationToken::new();
        let run = tokio::spawn(daemon.run(cancel.clone()));
        // Started: the first look at what is in flight went through.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            get(&http, "/readyz").await,
            (StatusCode::OK, "ready".into())
        );

        down.store(true, Ordering::SeqCst);
        queue.send(r#"{"paths":["/a.html"]}"#).await.expect("send");
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(simulated.created().is_empty());

        // /v1/status names the error and what waits.
        let (code, body) = get(&http, "/v1/status").await;
        assert_eq!(code, StatusCode::OK);
        let json: serde_json::Value = serde_json::from_str(&body).expect("json");
        let www = &json["distributions"]["www"];
        assert_eq!(www["pending_paths"], 1, "{www}");
        let error = &www["last_error"];
        assert_eq!(error["code"], "server_error", "{error}");
        assert_eq!(error["operation"], "CreateInvalidation", "{error}");
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.contains("Connection refused")),
            "{error}"
        );
        let failures = error["since_success"].as_u64().expect("a count");
        assert!(failures >= 3, "{error}");
        assert!(error["at"].as_str().is_some(), "{error}");
        let waiting = &www["waiting"];
        assert_eq!(waiting["on"], "retry", "{waiting}");
        assert!(waiting["until"].as_str().is_some(), "{waiting}");
        assert!(
            waiting["detail"]
                .as_str()
                .is_some_and(|d| d.contains("CreateInvalidation failed (server_error)")),
            "{waiting}"
        );
        // The Create's answer was lost: its path stays spent, shown apart
        // as reserved.
        assert_eq!(json["budget"]["used"], 1, "{}", json["budget"]);
        assert_eq!(json["budget"]["reserved"], 1, "{}", json["budget"]);
        assert_eq!(json["mode"]["source"], "local");
        assert_eq!(json["mode"]["cloudfront"], "simulate");

        // The page says the same, and the mode.
        let (code, page) = get(&http, "/").await;
        assert_eq!(code, StatusCode::OK);
        for text in [
            "Waiting for: retry</b> until <span class=\"nw\">",
            "CreateInvalidation failed (server_error)",
            "Last CloudFront error: server_error</b> on CreateInvalidation",
            "failed calls since the last success",
            "Connection refused (os error 111)",
            "<b>1</b><span>of them reserved on doubt</span>",
            "1 of the 1 paths used are reserved",
            "<span class=\"mode test\">local queue</span>",
            "<span class=\"mode test\">simulated CloudFront</span>",
        ] {
            assert!(page.contains(text), "{text:?} missing from {page}");
        }

        // So does `cfpurge status`.
        let status: crate::status::Status = serde_json::from_str(&body).expect("status");
        let mut out = Vec::new();
        crate::commands::status::write_text(&status, &mut out).expect("text");
        let text = String::from_utf8(out).expect("utf-8");
        for line in [
            "cfpurge ",
            "www: waiting for retry until ",
            "www: CloudFront error server_error on CreateInvalidation at ",
            "budget ",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(line)),
                "no line starting {line:?} in\n{text}"
            );
        }
        assert!(
            text.contains("used 1 of 1000 (1 reserved on doubt"),
            "{text}"
        );
        assert!(
            text.contains("(source local, cloudfront simulate)"),
            "{text}"
        );

        // Transient failures leave it ready, and /readyz says they happen.
        let (code, ready) = get(&http, "/readyz").await;
        assert_eq!(code, StatusCode::OK, "{ready}");
        assert!(
            ready.starts_with("ready\ncloudfront failing on www: "),
            "{ready}"
        );
        assert!(
            ready.contains("the last server_error on CreateInvalidation"),
            "{ready}"
        );

        // CloudFront answers again: the batch goes out under its reference,
        // the reservation is settled, nothing waits.
        down.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(65)).await;
        assert_eq!(simulated.created().len(), 1);
        let snapshot = observers.status.snapshot();
        let www = &snapshot.distributions["www"];
        assert_eq!(www.pending_paths, 0);
        assert_eq!(www.waiting, None);
        let last = www.last_error.as_ref().expect("kept after the recovery");
        assert_eq!(last.since_success, 0);
        assert_eq!((snapshot.budget.used, snapshot.budget.reserved), (1, 0));
        assert_eq!(
            get(&http, "/readyz").await,
            (StatusCode::OK, "ready".into())
        );
        cancel.cancel();
        run.await.expect("run ends");
    }

    /// What `alias` waits for now, as `/v1/status` says.
    fn waiting_on(observers: &Observers, alias: &str) -> Option<(String, String)> {
        let snapshot = observers.status.snapshot();
        let w = snapshot.distributions[alias].waiting.clone()?;
        Some((w.on, w.detail))
    }

    #[tokio::test(start_paused = true)]
    async fn the_start_up_gate_is_named_while_cloudfront_cannot_be_listed() {
        let config = Config::from_parts(Some(CONFIG), "test", std::iter::empty()).expect("config");
        let queue = LocalQueue::new(Duration::from_secs(60));
        let simulated = SimulatedCloudFront::new(["EWWW".into()], Duration::from_secs(30));
        let cloudfront = Unreachable {
            inner: simulated.clone(),
            down: Arc::new(AtomicBool::new(true)),
        };
        let daemon = Daemon::new(&config, queue.clone(), cloudfront)
            .with_ledger(AnyStore::Memory(MemoryStore::new()));
        let observers = daemon.observers();
        let cancel = CancellationToken::new();
        let run = tokio::spawn(daemon.run(cancel.clone()));
        queue.send(r#"{"paths":["/a.html"]}"#).await.expect("send");
        tokio::time::sleep(Duration::from_secs(20)).await;
        let (on, detail) = waiting_on(&observers, "www").expect("a wait");
        assert_eq!(on, "startup");
        assert!(detail.ends_with("not yet on www"), "{detail}");
        let snapshot = observers.status.snapshot();
        let error = snapshot.distributions["www"]
            .last_error
            .clone()
            .expect("an error");
        assert_eq!(error.operation, "ListInvalidations");
        // Tried again every 2 s.
        assert!(error.since_success >= 5, "{error:?}");
        // Nothing was sent: nothing is reserved.
        assert_eq!(snapshot.budget.reserved, 0);
        cancel.cancel();
        run.await.expect("run ends");
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_the_room_in_flight_and_the_budget_are_named() {
        let toml = r#"
[source]
kind = "local"
visibility_timeout_seconds = 60
[distributions.www]
id = "EWWW"
max_inflight_paths = 1
[distributions.img]
id = "EIMG"
[batching]
quiet_seconds = 10
[cloudfront]
mode = "simulate"
create_per_second = 100
create_burst = 100
poll_interval_seconds = 5
simulate_completion_seconds = 600
[budget]
pacing = "none"
monthly_paths = 2
on_exhausted = "hold"
"#;
        let config = Config::from_parts(Some(toml), "test", std::iter::empty()).expect("config");
        let queue = LocalQueue::new(Duration::from_secs(60));
        let simulated =
            SimulatedCloudFront::new(["EWWW".into(), "EIMG".into()], Duration::from_secs(600));
        let daemon = Daemon::new(&config, queue.clone(), simulated.clone())
            .with_ledger(AnyStore::Memory(MemoryStore::new()));
        let observers = daemon.observers();
        let cancel = CancellationToken::new();
        let run = tokio::spawn(daemon.run(cancel.clone()));
        tokio::time::sleep(Duration::from_secs(5)).await;
        queue
            .send(r#"{"distribution":"www","paths":["/a.html","/b.html"]}"#)
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_secs(3)).await;
        let snapshot = observers.status.snapshot();
        let wait = snapshot.distributions["www"]
            .waiting
            .clone()
            .expect("a wait");
        assert_eq!(wait.on, "quiet_window");
        assert!(wait.until.is_some(), "{wait:?}");
        assert_eq!(snapshot.distributions["img"].waiting, None);

        // One path in flight fills www's room: the other waits for it.
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(simulated.created().len(), 1);
        let (on, detail) = waiting_on(&observers, "www").expect("a wait");
        assert_eq!(on, "inflight_room", "{detail}");
        assert!(
            detail.contains("1 exact and 0 wildcard paths in progress"),
            "{detail}"
        );

        // img takes the budget's last path; its second path waits for the
        // budget (on_exhausted = "hold").
        queue
            .send(r#"{"distribution":"img","paths":["/x.png","/y.png"]}"#)
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_secs(15)).await;
        assert_eq!(simulated.created().len(), 2);
        let (on, detail) = waiting_on(&observers, "img").expect("a wait");
        assert_eq!(on, "budget", "{detail}");
        assert!(
            detail.contains("2 paths used, 2 allowed by now"),
            "{detail}"
        );
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(waiting_on(&observers, "img").expect("a wait").0, "budget");
        assert_eq!(observers.status.snapshot().budget.reserved, 0);
        cancel.cancel();
        run.await.expect("run ends");
    }
}
