//! Finding the invalidations of this month that the budget has not yet
//! looked at: other tools' paths are billed to the same account, so with
//! `budget.count_external` the ledger counts them, once each.
//!
//! ListInvalidations gives only ids, statuses and creation times, newest
//! first; the CallerReference and the paths need a GetInvalidation. So the
//! scan lists until it reaches invalidations older than the month or a page
//! of ids all already looked at, and fetches each new one once. Our own
//! invalidations are reported too (marked `ours`), so that the caller can
//! remember their ids as looked at without counting them twice.

use std::time::SystemTime;

use tokio::time::Instant;

use crate::cloudfront::invalidator::{Invalidator, InvalidatorError, MAX_LIST_ITEMS, Target};

use super::is_ours;

/// One invalidation of the month not looked at before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub id: String,
    /// Billed paths: every path in the batch, wildcards counting one each.
    pub paths: u64,
    pub created_at: SystemTime,
    /// Made by cfpurge (CallerReference `cfpurge-…`): already counted when
    /// it was reserved.
    pub ours: bool,
    /// Its CallerReference, to match a reservation left open by a crash.
    pub caller_reference: String,
    /// Its paths, for ours only (to cover what a crashed process's batch
    /// covered); empty for others', whose count is all that matters.
    pub items: Vec<crate::path::CfPath>,
}

/// Where a scan cut short goes on from: the marker of the first page it
/// had not finished (`None`: the newest page). From there a later scan
/// lists on to the start of the month, whatever it has seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resume {
    pub marker: Option<String>,
}

/// What a scan found, and whether it got to the end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scanned {
    pub found: Vec<Found>,
    /// Set when the scan was cut short (its pages or its time ran out)
    /// before it reached the start of the month: the invalidations past
    /// this point were not looked at, and a scan that starts again from
    /// the newest would stop before them, at a page it has seen.
    pub resume: Option<Resume>,
}

/// Lists `target`'s invalidations (a tenant's through the tenant calls)
/// created at or after `month_start`, newest first, and fetches those
/// `seen` does not know, page by page.
///
/// First from the newest page, down to the first page that holds an
/// invalidation older than the month or only seen ones: what is new since
/// the last scan (newer ones were seen first, so older ones were too, but
/// for what a cut scan left). Then, when an earlier scan was cut (`from`),
/// on from where it stopped to the month's start: seen pages there tell
/// nothing of what follows.
///
/// It lists at most `max_pages` pages and starts no fetch after `until`;
/// cut so, it returns what it found with where to go on from: from a cut
/// among the newest pages, a later scan lists down past `from` as well.
pub async fn scan<I: Invalidator>(
    invalidator: &I,
    target: &Target,
    month_start: SystemTime,
    seen: impl Fn(&str) -> bool,
    max_pages: usize,
    from: Option<&Resume>,
    until: Instant,
) -> Result<Scanned, InvalidatorError> {
    let mut walk = Walk {
        invalidator,
        target,
        month_start,
        seen: &seen,
        pages: max_pages,
        until,
        found: Vec::new(),
    };
    let mut resume = walk.from(None).await?;
    if resume.is_none()
        && let Some(from) = from
    {
        resume = walk.from(Some(from)).await?;
    }
    Ok(Scanned {
        found: walk.found,
        resume,
    })
}

/// One scan's listing, within its pages and its time.
struct Walk<'a, I, F> {
    invalidator: &'a I,
    target: &'a Target,
    month_start: SystemTime,
    seen: &'a F,
    /// Pages it may still list.
    pages: usize,
    until: Instant,
    found: Vec<Found>,
}

impl<I: Invalidator, F: Fn(&str) -> bool> Walk<'_, I, F> {
    /// Lists from the newest page (`going_on` is `None`: down to a page
    /// seen whole) or from where a cut scan stopped (down to the month's
    /// start). Returns where it was cut, if it was.
    async fn from(
        &mut self,
        going_on: Option<&Resume>,
    ) -> Result<Option<Resume>, InvalidatorError> {
        let mut marker = going_on.and_then(|r| r.marker.clone());
        loop {
            if self.pages == 0 {
                return Ok(Some(Resume { marker }));
            }
            self.pages -= 1;
            let (items, next) = self
                .invalidator
                .list(self.target, marker.as_deref(), MAX_LIST_ITEMS)
                .await?;
            let mut stop = going_on.is_none() && items.iter().all(|s| (self.seen)(&s.id));
            for summary in items {
                if summary.created_at < self.month_start {
                    stop = true;
                    continue;
                }
                if (self.seen)(&summary.id) || self.found.iter().any(|f| f.id == summary.id) {
                    continue;
                }
                if Instant::now() >= self.until {
                    // Out of time within this page: a later scan lists it
                    // again and skips what was found here, as seen by then.
                    return Ok(Some(Resume { marker }));
                }
                let got = self.invalidator.get(self.target, &summary.id).await?;
                let ours = is_ours(&got.caller_reference);
                self.found.push(Found {
                    id: got.id,
                    paths: got.paths.len() as u64,
                    created_at: got.created_at,
                    ours,
                    caller_reference: got.caller_reference,
                    items: if ours { got.paths } else { Vec::new() },
                });
            }
            match next {
                Some(next) if !stop => marker = Some(next),
                _ => return Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::Duration;

    use super::*;
    use crate::cloudfront::simulate::SimulatedCloudFront;
    use crate::path::CfPath;

    const DIST: &str = "E2ABCDEF123456";

    fn paths(v: &[&str]) -> Vec<CfPath> {
        v.iter().map(|p| CfPath::parse(p).expect("path")).collect()
    }

    /// A time limit no scan here reaches.
    fn later() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    /// `n` invalidations by another tool, one path each.
    async fn others(cf: &SimulatedCloudFront, n: usize) {
        for i in 0..n {
            cf.create(
                DIST,
                &format!("deploy-tool-{i}"),
                &paths(&[&format!("/p{i}")]),
            )
            .await
            .expect("create");
        }
    }

    /// Scans as the daemon does round after round: what one scan found is
    /// seen by the next, which goes on from where the last was cut.
    /// Returns what each scan found.
    async fn rounds<I: Invalidator>(cf: &I, max_pages: usize, time: Duration) -> Vec<usize> {
        let mut seen = HashSet::new();
        let mut resume = None;
        let mut counts = Vec::new();
        loop {
            let until = Instant::now() + time;
            let scanned = scan(
                cf,
                &DIST.into(),
                SystemTime::UNIX_EPOCH,
                |id| seen.contains(id),
                max_pages,
                resume.as_ref(),
                until,
            )
            .await
            .expect("scan");
            for f in &scanned.found {
                assert!(seen.insert(f.id.clone()), "{} found twice", f.id);
            }
            counts.push(scanned.found.len());
            resume = scanned.resume;
            if resume.is_none() || counts.len() > 20 {
                return counts;
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_scan_cut_by_its_pages_goes_on_where_it_stopped() {
        let cf = SimulatedCloudFront::new([DIST.to_owned()], Duration::from_secs(1));
        others(&cf, 350).await;
        let scan_of = |seen: HashSet<String>, from: Option<Resume>| {
            let cf = cf.clone();
            async move {
                scan(
                    &cf,
                    &DIST.into(),
                    SystemTime::UNIX_EPOCH,
                    |id| seen.contains(id),
                    2,
                    from.as_ref(),
                    later(),
                )
                .await
                .expect("scan")
            }
        };
        // Two pages a scan: the first sees the newest 200; a scan from the
        // newest page alone stops at the first (all seen) and never sees
        // the 150 older ones.
        let first = scan_of(HashSet::new(), None).await;
        assert_eq!(first.found.len(), 200);
        let seen: HashSet<String> = first.found.iter().map(|f| f.id.clone()).collect();
        let resume = first.resume.expect("cut after two pages");
        let again = scan_of(seen.clone(), None).await;
        assert_eq!((again.found.len(), again.resume), (0, None));
        // Going on from the cut: one page for what is new (nothing), one
        // past the cut.
        let on = scan_of(seen, Some(resume)).await;
        assert_eq!(on.found.len(), 100);
        assert!(on.resume.is_some());
        // Round after round, every one of them once, and then done.
        assert_eq!(
            rounds(&cf, 2, Duration::from_secs(3600)).await,
            [200, 100, 50]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_scan_going_on_from_a_cut_first_takes_what_is_new() {
        let cf = SimulatedCloudFront::new([DIST.to_owned()], Duration::from_secs(1));
        others(&cf, 250).await;
        let first = scan(
            &cf,
            &DIST.into(),
            SystemTime::UNIX_EPOCH,
            |_| false,
            2,
            None,
            later(),
        )
        .await
        .expect("scan");
        let mut seen: HashSet<String> = first.found.iter().map(|f| f.id.clone()).collect();
        // Newer ones come (a crashed run's batch among them) before the
        // scan goes on: the next takes them, and goes on past the cut.
        cf.create(DIST, "cfpurge-www-1-1-0", &paths(&["/new"]))
            .await
            .expect("create");
        let on = scan(
            &cf,
            &DIST.into(),
            SystemTime::UNIX_EPOCH,
            |id| seen.contains(id),
            50,
            first.resume.as_ref(),
            later(),
        )
        .await
        .expect("scan");
        assert_eq!((on.found.len(), on.resume), (51, None));
        assert!(
            on.found
                .iter()
                .any(|f| f.ours && f.items == paths(&["/new"]))
        );
        seen.extend(on.found.iter().map(|f| f.id.clone()));
        assert_eq!(seen.len(), 251);
    }

    /// The simulated CloudFront, a second per GetInvalidation.
    #[derive(Clone, Debug)]
    struct SlowGets(SimulatedCloudFront);

    impl Invalidator for SlowGets {
        async fn create(
            &self,
            target: impl Into<Target> + Send,
            caller_reference: &str,
            paths: &[CfPath],
        ) -> Result<crate::cloudfront::invalidator::Invalidation, InvalidatorError> {
            self.0.create(target, caller_reference, paths).await
        }
        async fn get(
            &self,
            target: impl Into<Target> + Send,
            id: &str,
        ) -> Result<crate::cloudfront::invalidator::Invalidation, InvalidatorError> {
            tokio::time::sleep(Duration::from_secs(1)).await;
            self.0.get(target, id).await
        }
        async fn list(
            &self,
            target: impl Into<Target> + Send,
            marker: Option<&str>,
            max_items: i32,
        ) -> Result<
            (
                Vec<crate::cloudfront::invalidator::InvalidationSummary>,
                Option<String>,
            ),
            InvalidatorError,
        > {
            self.0.list(target, marker, max_items).await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_scan_cut_by_its_time_within_a_page_goes_on_from_that_page() {
        let cf = SimulatedCloudFront::new([DIST.to_owned()], Duration::from_secs(1));
        others(&cf, 150).await;
        // 40 fetches fit in a scan's time: the first page is cut twice,
        // each time gone on with from its start.
        assert_eq!(
            rounds(&SlowGets(cf), 50, Duration::from_secs(40)).await,
            [40, 40, 40, 30]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn finds_each_new_invalidation_once_and_tells_ours_from_others() {
        let cf = SimulatedCloudFront::new([DIST.to_owned()], Duration::from_secs(1));
        cf.create(DIST, "deploy-tool-1", &paths(&["/a", "/b/*"]))
            .await
            .expect("create");
        cf.create(DIST, "cfpurge-www-1-1-0", &paths(&["/c"]))
            .await
            .expect("create");
        let month_start = SystemTime::UNIX_EPOCH;
        let found = scan(&cf, &DIST.into(), month_start, |_| false, 10, None, later())
            .await
            .expect("scan")
            .found;
        assert_eq!(found.len(), 2);
        let other = found.iter().find(|f| !f.ours).expect("another tool's");
        assert_eq!(other.paths, 2);
        assert!(found.iter().any(|f| f.ours && f.paths == 1));

        // Seen ones are not fetched again.
        let seen: HashSet<String> = found.iter().map(|f| f.id.clone()).collect();
        let again = scan(
            &cf,
            &DIST.into(),
            month_start,
            |id| seen.contains(id),
            10,
            None,
            later(),
        )
        .await
        .expect("scan");
        assert!(again.found.is_empty() && again.resume.is_none());
        cf.create(DIST, "deploy-tool-2", &paths(&["/d"]))
            .await
            .expect("create");
        let newer = scan(
            &cf,
            &DIST.into(),
            month_start,
            |id| seen.contains(id),
            10,
            None,
            later(),
        )
        .await
        .expect("scan")
        .found;
        assert_eq!(newer.len(), 1);
        assert!(!newer[0].ours);
    }

    #[tokio::test(start_paused = true)]
    async fn invalidations_before_the_month_are_not_counted() {
        let cf = SimulatedCloudFront::new([DIST.to_owned()], Duration::from_secs(1));
        cf.create(DIST, "deploy-tool-1", &paths(&["/a"]))
            .await
            .expect("create");
        let month_start = SystemTime::now() + Duration::from_secs(3600);
        let found = scan(&cf, &DIST.into(), month_start, |_| false, 10, None, later())
            .await
            .expect("scan");
        assert_eq!(found, Scanned::default());
    }
}
