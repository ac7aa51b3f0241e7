//! The tracker against the simulated CloudFront, on paused time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::*;
use crate::cloudfront::invalidator::{InvalidationSummary, Status, Target};
use crate::cloudfront::simulate::SimulatedCloudFront;
use crate::config::DistributionConfig;
use crate::path::CfPath;

const ALIAS: &str = "www";
const DIST: &str = "E1WWW";
/// A second distribution, only to read the simulator's wall clock.
const SPARE: &str = "E2SPARE";
const COMPLETION: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_secs(20);

/// The simulator, counting the calls made through it and failing lists on
/// cue.
#[derive(Clone, Debug)]
struct Counting {
    inner: SimulatedCloudFront,
    lists: Arc<AtomicUsize>,
    gets: Arc<AtomicUsize>,
    fail_lists: Arc<AtomicBool>,
}

impl Counting {
    fn lists(&self) -> usize {
        self.lists.load(Ordering::SeqCst)
    }

    fn gets(&self) -> usize {
        self.gets.load(Ordering::SeqCst)
    }
}

impl Invalidator for Counting {
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
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get(distribution_id, id).await
    }

    async fn list(
        &self,
        distribution_id: impl Into<Target> + Send,
        marker: Option<&str>,
        max_items: i32,
    ) -> Result<(Vec<InvalidationSummary>, Option<String>), InvalidatorError> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        if self.fail_lists.load(Ordering::SeqCst) {
            return Err(InvalidatorError::ServerError("injected".into()));
        }
        self.inner.list(distribution_id, marker, max_items).await
    }
}

fn setup() -> (Counting, Tracker<Counting>) {
    let cf = Counting {
        inner: SimulatedCloudFront::new([DIST.to_owned(), SPARE.to_owned()], COMPLETION),
        lists: Arc::default(),
        gets: Arc::default(),
        fail_lists: Arc::default(),
    };
    let config = DistributionConfig {
        id: DIST.into(),
        ..DistributionConfig::default()
    };
    let alias = ALIAS.to_owned();
    let view = InflightView::new([(&alias, &config)]);
    (cf.clone(), Tracker::new(cf, view, POLL))
}

fn paths(list: &[&str]) -> Vec<CfPath> {
    list.iter().map(|p| CfPath::parse(p).unwrap()).collect()
}

/// The simulator's wall-clock time now (its `created_at` follows tokio's
/// paused clock, not the system's).
async fn wall(cf: &Counting) -> SystemTime {
    let reference = format!("clock-{}", cf.inner.created().len());
    cf.inner
        .create(SPARE, &reference, &paths(&["/clock"]))
        .await
        .unwrap()
        .created_at
}

fn cap(exact: usize, wildcard: usize) -> Option<Capacity> {
    Some(Capacity {
        exact,
        wildcard,
        paths: usize::MAX,
    })
}

#[tokio::test(start_paused = true)]
async fn others_in_progress_take_capacity_until_they_complete() {
    let (cf, mut tracker) = setup();
    cf.create(
        DIST,
        "terraform-1",
        &paths(&["/a", "/b", "/c", "/x/*", "/y*"]),
    )
    .await
    .unwrap();
    assert_eq!(tracker.capacity(ALIAS), cap(3000, 15));

    let report = tracker
        .reconcile(ALIAS, Instant::now(), wall(&cf).await)
        .await
        .unwrap();
    assert_eq!(report.others, 1);
    assert!(report.adopted.is_empty());
    assert_eq!(tracker.capacity(ALIAS), cap(2997, 13));
    assert!(tracker.view().is_reconciled(ALIAS));
    assert_eq!(tracker.view().others_in_progress(ALIAS), 1);
    // Others are polled like ours, a poll interval after they were seen.
    assert!(
        tracker
            .view()
            .to_poll(ALIAS, Instant::now(), POLL)
            .is_empty()
    );
    assert_eq!(
        tracker
            .view()
            .to_poll(ALIAS, Instant::now() + POLL, POLL)
            .len(),
        1
    );
    assert_eq!(cf.gets(), 1);

    // Known others are not fetched again.
    tokio::time::advance(Duration::from_secs(30)).await;
    tracker
        .reconcile(ALIAS, Instant::now(), wall(&cf).await)
        .await
        .unwrap();
    assert_eq!(cf.gets(), 1);
    assert_eq!(tracker.capacity(ALIAS), cap(2997, 13));

    tokio::time::advance(Duration::from_secs(30)).await;
    let report = tracker
        .reconcile(ALIAS, Instant::now(), wall(&cf).await)
        .await
        .unwrap();
    assert_eq!(report.others, 0);
    assert_eq!(tracker.capacity(ALIAS), cap(3000, 15));
}

#[tokio::test(start_paused = true)]
async fn a_poll_frees_the_room_of_another_tools_invalidation_once_it_completes() {
    let (cf, mut tracker) = setup();
    let other = cf
        .create(DIST, "terraform-2", &paths(&["/a", "/x/*"]))
        .await
        .unwrap();
    tracker
        .reconcile(ALIAS, Instant::now(), wall(&cf).await)
        .await
        .unwrap();
    assert_eq!(tracker.capacity(ALIAS), cap(2999, 14));
    tokio::time::advance(POLL).await;
    let report = tracker.poll(ALIAS, Instant::now()).await;
    assert!(report.completed.is_empty() && report.failed.is_empty());
    assert_eq!(tracker.capacity(ALIAS), cap(2999, 14), "still in progress");
    tokio::time::advance(COMPLETION).await;
    let report = tracker.poll(ALIAS, Instant::now()).await;
    // Only ours are reported as completions (for the metric).
    assert!(report.completed.is_empty());
    assert_eq!(
        tracker.capacity(ALIAS),
        cap(3000, 15),
        "freed without a reconcile"
    );
    // A reconcile that still lists it as in progress does not bring it back.
    let counts = PathCounts::of(&other.paths);
    tracker
        .view_mut()
        .replace_others(ALIAS, [(other.id, counts)], Instant::now());
    assert_eq!(tracker.capacity(ALIAS), cap(3000, 15));
}

#[tokio::test(start_paused = true)]
async fn ours_from_a_previous_run_are_adopted_and_polled_until_done() {
    let (cf, mut tracker) = setup();
    let before = cf
        .create(
            DIST,
            "cfpurge-www-1700000000000-7-00ff",
            &paths(&["/old", "/old/*"]),
        )
        .await
        .unwrap();
    tokio::time::advance(Duration::from_secs(10)).await;

    let report = tracker
        .reconcile(ALIAS, Instant::now(), wall(&cf).await)
        .await
        .unwrap();
    assert_eq!(report.adopted, std::slice::from_ref(&before.id));
    assert_eq!(report.others, 0);
    assert_eq!(tracker.capacity(ALIAS), cap(2999, 14));
    assert_eq!(tracker.view().ours_in_progress(ALIAS), 1);
    assert_eq!(
        tracker
            .view()
            .last_invalidation(ALIAS)
            .map(|l| l.id.clone()),
        Some(before.id.clone())
    );

    // Adopted once: a second reconcile neither fetches nor adopts it again.
    let gets = cf.gets();
    let again = tracker
        .reconcile(ALIAS, Instant::now(), wall(&cf).await)
        .await
        .unwrap();
    assert!(again.adopted.is_empty());
    assert_eq!(cf.gets(), gets);

    tokio::time::advance(POLL).await;
    let report = tracker.poll_all(Instant::now()).await;
    assert!(report.completed.is_empty() && report.failed.is_empty());
    tokio::time::advance(Duration::from_secs(30)).await;
    let report = tracker.poll_all(Instant::now()).await;
    assert_eq!(report.completed.len(), 1);
    let done = &report.completed[0];
    assert_eq!(done.id, before.id);
    assert_eq!(done.alias, ALIAS);
    // Measured from CloudFront's creation time, not from the adoption.
    assert_eq!(done.took, Duration::from_secs(60));
    assert_eq!(tracker.capacity(ALIAS), cap(3000, 15));
}

#[tokio::test(start_paused = true)]
async fn poll_reports_completion_after_the_simulated_time() {
    let (cf, mut tracker) = setup();
    let t0 = Instant::now();
    let created = cf
        .create(DIST, "cfpurge-www-1-1-ab", &paths(&["/a", "/b", "/c/*"]))
        .await
        .unwrap();
    tracker.record_created(ALIAS, &created, t0);
    assert_eq!(tracker.capacity(ALIAS), cap(2998, 14));
    assert_eq!(
        tracker.view().inflight(ALIAS),
        Some(PathCounts {
            exact: 2,
            wildcard: 1
        })
    );

    // Not due yet: no call.
    tokio::time::advance(Duration::from_secs(19)).await;
    let report = tracker.poll(ALIAS, Instant::now()).await;
    assert!(report.completed.is_empty());
    assert_eq!(cf.gets(), 0);

    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(
        tracker
            .poll(ALIAS, Instant::now())
            .await
            .completed
            .is_empty()
    );
    assert_eq!(cf.gets(), 1);
    tokio::time::advance(Duration::from_secs(20)).await;
    assert!(
        tracker
            .poll(ALIAS, Instant::now())
            .await
            .completed
            .is_empty()
    );
    assert_eq!(cf.gets(), 2);
    assert_eq!(tracker.capacity(ALIAS), cap(2998, 14));

    tokio::time::advance(Duration::from_secs(20)).await;
    let report = tracker.poll(ALIAS, Instant::now()).await;
    assert_eq!(cf.gets(), 3);
    assert_eq!(report.completed.len(), 1);
    let done = &report.completed[0];
    assert_eq!(done.id, created.id);
    assert_eq!(done.took, COMPLETION);
    assert_eq!(done.created_at, created.created_at);
    assert_eq!(tracker.capacity(ALIAS), cap(3000, 15));
    assert_eq!(
        tracker.view().last_invalidation(ALIAS).map(|l| l.status),
        Some(Status::Completed)
    );

    // Nothing left to check.
    tokio::time::advance(POLL).await;
    tracker.poll(ALIAS, Instant::now()).await;
    assert_eq!(cf.gets(), 3);
}

#[tokio::test(start_paused = true)]
async fn ours_created_here_are_not_fetched_by_a_reconcile() {
    let (cf, mut tracker) = setup();
    let created = cf
        .create(DIST, "cfpurge-www-1-1-ab", &paths(&["/a"]))
        .await
        .unwrap();
    tracker.record_created(ALIAS, &created, Instant::now());
    let report = tracker
        .reconcile(ALIAS, Instant::now(), wall(&cf).await)
        .await
        .unwrap();
    assert!(report.adopted.is_empty());
    assert_eq!(report.others, 0);
    assert_eq!(cf.gets(), 0);
    assert_eq!(tracker.capacity(ALIAS), cap(2999, 15));
}

#[tokio::test(start_paused = true)]
async fn listing_stops_after_the_first_all_completed_page() {
    let (cf, mut tracker) = setup();
    for i in 0..4 {
        cf.create(DIST, &format!("old-{i}"), &paths(&[&format!("/old/{i}")]))
            .await
            .unwrap();
    }
    tokio::time::advance(COMPLETION * 2).await;
    for i in 0..3 {
        cf.create(DIST, &format!("new-{i}"), &paths(&[&format!("/new/{i}")]))
            .await
            .unwrap();
    }
    // Newest first, two a page: [new2 new1] [new0 old3] [old2 old1] [old0].
    let report = tracker
        .reconcile_with_page_size(ALIAS, Instant::now(), wall(&cf).await, 2)
        .await
        .unwrap();
    assert_eq!(report.pages, 3);
    assert_eq!(cf.lists(), 3);
    assert_eq!(report.others, 3);
    assert_eq!(cf.gets(), 3);
    assert_eq!(tracker.capacity(ALIAS), cap(2997, 15));
}

#[tokio::test(start_paused = true)]
async fn listing_reads_to_the_last_page_when_all_are_in_progress() {
    let (cf, mut tracker) = setup();
    for i in 0..5 {
        cf.create(DIST, &format!("other-{i}"), &paths(&[&format!("/o/{i}/*")]))
            .await
            .unwrap();
    }
    let report = tracker
        .reconcile_with_page_size(ALIAS, Instant::now(), wall(&cf).await, 2)
        .await
        .unwrap();
    assert_eq!(report.pages, 3);
    assert_eq!(report.others, 5);
    assert_eq!(tracker.capacity(ALIAS), cap(3000, 10));
}

#[tokio::test(start_paused = true)]
async fn a_failed_reconcile_leaves_the_previous_view() {
    let (cf, mut tracker) = setup();
    cf.create(DIST, "other-1", &paths(&["/a", "/b"]))
        .await
        .unwrap();
    tracker
        .reconcile(ALIAS, Instant::now(), wall(&cf).await)
        .await
        .unwrap();
    assert_eq!(tracker.capacity(ALIAS), cap(2998, 15));

    cf.fail_lists.store(true, Ordering::SeqCst);
    tokio::time::advance(COMPLETION).await;
    let err = tracker
        .reconcile(ALIAS, Instant::now(), wall(&cf).await)
        .await
        .unwrap_err();
    assert!(matches!(err, InvalidatorError::ServerError(_)), "{err:?}");
    assert_eq!(tracker.capacity(ALIAS), cap(2998, 15));
}

#[tokio::test(start_paused = true)]
async fn a_wrong_distribution_id_is_returned_for_the_caller_to_classify() {
    let cf = SimulatedCloudFront::new([DIST.to_owned()], COMPLETION);
    let config = DistributionConfig {
        id: "E9MISSING".into(),
        ..DistributionConfig::default()
    };
    let alias = ALIAS.to_owned();
    let mut tracker = Tracker::new(cf, InflightView::new([(&alias, &config)]), POLL);
    let err = tracker
        .reconcile(ALIAS, Instant::now(), SystemTime::now())
        .await
        .unwrap_err();
    assert!(matches!(err, InvalidatorError::NoSuchDistribution(_)));
    assert!(!tracker.view().is_reconciled(ALIAS));
    let err = tracker
        .reconcile("unknown", Instant::now(), SystemTime::now())
        .await
        .unwrap_err();
    assert!(matches!(err, InvalidatorError::NoSuchDistribution(_)));
}

#[tokio::test(start_paused = true)]
async fn a_failed_check_keeps_the_invalidation_in_flight() {
    let (cf, mut tracker) = setup();
    // An id the distribution does not have: GetInvalidation fails.
    let mut ghost = cf
        .create(DIST, "cfpurge-www-1-1-ab", &paths(&["/a"]))
        .await
        .unwrap();
    ghost.id = "INOSUCHONE0000".into();
    tracker.record_created(ALIAS, &ghost, Instant::now());
    tokio::time::advance(COMPLETION).await;
    let report = tracker.poll(ALIAS, Instant::now()).await;
    assert!(report.completed.is_empty());
    assert_eq!(report.failed.len(), 1);
    assert!(matches!(
        report.failed[0].2,
        InvalidatorError::NoSuchInvalidation(_)
    ));
    assert_eq!(tracker.capacity(ALIAS), cap(2999, 15));
    // Checked again only a poll interval later.
    assert!(tracker.poll(ALIAS, Instant::now()).await.failed.is_empty());
}
