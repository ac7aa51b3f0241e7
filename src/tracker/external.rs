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

/// Lists `target`'s invalidations (a tenant's through the tenant calls) created at or after
/// `month_start`, newest first, and fetches those `seen` does not know.
/// Stops at the first page that holds an invalidation older than the month
/// or holds only seen ones (newer ones were seen first, so older ones
/// were too), or after `max_pages` pages (the rest waits for the next scan).
pub async fn scan<I: Invalidator>(
    invalidator: &I,
    target: &Target,
    month_start: SystemTime,
    seen: impl Fn(&str) -> bool,
    max_pages: usize,
) -> Result<Vec<Found>, InvalidatorError> {
    let mut fresh = Vec::new();
    let mut marker: Option<String> = None;
    for _ in 0..max_pages {
        let (items, next) = invalidator
            .list(target, marker.as_deref(), MAX_LIST_ITEMS)
            .await?;
        let mut stop = items.iter().all(|s| seen(&s.id));
        for summary in items {
            if summary.created_at < month_start {
                stop = true;
                continue;
            }
            if !seen(&summary.id) {
                fresh.push(summary.id);
            }
        }
        match next {
            Some(next) if !stop => marker = Some(next),
            _ => break,
        }
    }
    let mut found = Vec::with_capacity(fresh.len());
    for id in fresh {
        let got = invalidator.get(target, &id).await?;
        let ours = is_ours(&got.caller_reference);
        found.push(Found {
            id: got.id,
            paths: got.paths.len() as u64,
            created_at: got.created_at,
            ours,
            caller_reference: got.caller_reference,
            items: if ours { got.paths } else { Vec::new() },
        });
    }
    Ok(found)
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
        let found = scan(&cf, &DIST.into(), month_start, |_| false, 10)
            .await
            .expect("scan");
        assert_eq!(found.len(), 2);
        let other = found.iter().find(|f| !f.ours).expect("another tool's");
        assert_eq!(other.paths, 2);
        assert!(found.iter().any(|f| f.ours && f.paths == 1));

        // Seen ones are not fetched again.
        let seen: HashSet<String> = found.iter().map(|f| f.id.clone()).collect();
        let again = scan(&cf, &DIST.into(), month_start, |id| seen.contains(id), 10)
            .await
            .expect("scan");
        assert!(again.is_empty());
        cf.create(DIST, "deploy-tool-2", &paths(&["/d"]))
            .await
            .expect("create");
        let newer = scan(&cf, &DIST.into(), month_start, |id| seen.contains(id), 10)
            .await
            .expect("scan");
        assert_eq!(newer.len(), 1);
        assert!(!newer[0].ours);
    }

    #[tokio::test(start_paused = true)]
    async fn invalidations_before_the_month_are_not_counted() {
        let cf = SimulatedCloudFront::new([DIST.to_owned()], Duration::from_secs(1));
        cf.create(DIST, "deploy-tool-1", &paths(&["/a"]))
            .await
            .expect("create");
        let later = SystemTime::now() + Duration::from_secs(3600);
        let found = scan(&cf, &DIST.into(), later, |_| false, 10)
            .await
            .expect("scan");
        assert!(found.is_empty());
    }
}
