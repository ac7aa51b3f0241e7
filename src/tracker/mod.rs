//! The tracker: the in-flight view per distribution that the submitter asks
//! for capacity. CloudFront is the source of truth (several replicas may
//! share a distribution, and other tools invalidate too), so the view is
//! kept from its answers: our own invalidations are polled with
//! GetInvalidation until they complete, and a periodic reconcile lists the
//! distribution's invalidations to count other tools' in progress and to
//! adopt ours left by an earlier run.
//!
//! [`view::InflightView`] holds the state and the arithmetic, pure;
//! [`Tracker`] is the async shell that moves CloudFront's answers into it.
//! Errors are returned as they are for the caller to classify (a missing
//! distribution or denied access means "not ready"); a failed reconcile
//! leaves the previous view in place.

pub mod external;
pub mod view;

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::cloudfront::invalidator::{Invalidation, Invalidator, InvalidatorError, MAX_LIST_ITEMS};
use crate::planner::Capacity;

pub use self::view::{Completion, InflightView, LastInvalidation, PathCounts, is_ours};

/// What one round of polls found.
#[derive(Debug, Default)]
pub struct PollReport {
    /// Ours that completed, with how long they took.
    pub completed: Vec<Completion>,
    /// (alias, invalidation id, error) of the checks that failed; those
    /// invalidations stay in flight and are checked again a poll interval
    /// later.
    pub failed: Vec<(String, String, InvalidatorError)>,
}

/// What a reconcile found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// ListInvalidations pages read.
    pub pages: usize,
    /// Other tools' invalidations in progress now counted.
    pub others: usize,
    /// Ids of ours in progress that this process did not know and now polls.
    pub adopted: Vec<String>,
}

/// The in-flight view behind a lock, and the invalidator that feeds it.
/// The daemon shares it in an `Arc` between its loop and the tasks that
/// poll and reconcile; the lock is never held across a call to
/// CloudFront.
#[derive(Debug)]
pub struct Tracker<I> {
    invalidator: I,
    view: Mutex<InflightView>,
    /// How long an invalidation of ours goes unchecked
    /// (`cloudfront.poll_interval_seconds`).
    poll_interval: Duration,
}

impl<I: Invalidator> Tracker<I> {
    pub fn new(invalidator: I, view: InflightView, poll_interval: Duration) -> Self {
        Tracker {
            invalidator,
            view: Mutex::new(view),
            poll_interval,
        }
    }

    /// The view, for reading capacity, counts and the last invalidation.
    /// Hold the guard briefly and never across an `.await`.
    pub fn view(&self) -> MutexGuard<'_, InflightView> {
        // Nothing panics while holding the lock, so a poisoned lock still
        // holds a consistent view.
        self.view
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// See [`InflightView::capacity`].
    pub fn capacity(&self, alias: &str) -> Option<Capacity> {
        self.view().capacity(alias)
    }

    /// See [`InflightView::record_created`].
    pub fn record_created(&self, alias: &str, invalidation: &Invalidation, now: Instant) {
        self.view().record_created(alias, invalidation, now);
    }

    /// Checks every invalidation of ours, on every distribution, that is due
    /// a check at `now`.
    pub async fn poll_all(&self, now: Instant) -> PollReport {
        let aliases: Vec<String> = self.view().aliases().map(str::to_owned).collect();
        let mut report = PollReport::default();
        for alias in aliases {
            let one = self.poll(&alias, now).await;
            report.completed.extend(one.completed);
            report.failed.extend(one.failed);
        }
        report
    }

    /// Checks the invalidations of ours on `alias` that are due a check at
    /// `now` (GetInvalidation) and frees the capacity of those completed.
    /// A failed check is reported and the others still go ahead.
    pub async fn poll(&self, alias: &str, now: Instant) -> PollReport {
        let (target, due) = {
            let view = self.view();
            let Some(target) = view.target(alias) else {
                return PollReport::default();
            };
            (target.clone(), view.to_poll(alias, now, self.poll_interval))
        };
        let mut report = PollReport::default();
        for id in due {
            let answer = self.invalidator.get(&target, &id).await;
            let mut view = self.view();
            match answer {
                Ok(got) if got.status.is_completed() => {
                    if let Some(done) = view.completed(alias, &id, now) {
                        report.completed.push(done);
                    }
                }
                Ok(_) => view.checked(alias, &id, now),
                Err(e) => {
                    // Kept in flight: counting it too long only delays a
                    // batch, forgetting it early risks
                    // TooManyInvalidationsInProgress.
                    view.checked(alias, &id, now);
                    report.failed.push((alias.to_owned(), id, e));
                }
            }
        }
        report
    }

    /// Refreshes `alias`'s view from ListInvalidations, 100 a page.
    /// See [`Tracker::reconcile_with_page_size`].
    pub async fn reconcile(
        &self,
        alias: &str,
        now: Instant,
        wall: SystemTime,
    ) -> Result<ReconcileReport, InvalidatorError> {
        self.reconcile_with_page_size(alias, now, wall, MAX_LIST_ITEMS)
            .await
    }

    /// Refreshes `alias`'s view from CloudFront: lists its invalidations
    /// newest first, page by page, up to and including the first page whose
    /// items are all completed (older ones are completed too); fetches each
    /// in-progress one not already known (GetInvalidation) for its
    /// CallerReference and paths; counts other tools' against the limits
    /// (replacing the previous set) and adopts ours left by an earlier run,
    /// to be polled until done. `now` and `wall` are the same moment on the
    /// local (tokio) clock and the wall clock, to place an adopted
    /// invalidation's creation on the local clock.
    ///
    /// Any error ends the reconcile with the view as it was.
    pub async fn reconcile_with_page_size(
        &self,
        alias: &str,
        now: Instant,
        wall: SystemTime,
        page_size: i32,
    ) -> Result<ReconcileReport, InvalidatorError> {
        let target = self.view().target(alias).cloned().ok_or_else(|| {
            InvalidatorError::NoSuchDistribution(format!("no distribution aliased {alias}"))
        })?;

        let mut report = ReconcileReport::default();
        let mut in_progress = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let (items, next) = self
                .invalidator
                .list(&target, marker.as_deref(), page_size)
                .await?;
            report.pages += 1;
            let all_completed = items.iter().all(|s| s.status.is_completed());
            in_progress.extend(items.into_iter().filter(|s| !s.status.is_completed()));
            match next {
                Some(next) if !all_completed => marker = Some(next),
                _ => break,
            }
        }

        let mut others = Vec::new();
        let mut adopt = Vec::new();
        for summary in in_progress {
            {
                let view = self.view();
                if view.is_tracked(alias, &summary.id) {
                    continue;
                }
                // Another tool's paths do not change: no need to fetch them
                // again on every reconcile.
                if let Some(counts) = view.others_counts(alias, &summary.id) {
                    others.push((summary.id, counts));
                    continue;
                }
            }
            let got = self.invalidator.get(&target, &summary.id).await?;
            if got.status.is_completed() {
                continue;
            }
            if is_ours(&got.caller_reference) {
                adopt.push(got);
            } else {
                others.push((got.id, PathCounts::of(&got.paths)));
            }
        }

        let mut view = self.view();
        for got in adopt {
            let age = wall.duration_since(got.created_at).unwrap_or_default();
            let since = now.checked_sub(age).unwrap_or(now);
            // A poll or the submitter may have learnt of it meanwhile.
            if view.is_tracked(alias, &got.id) {
                continue;
            }
            view.adopt(alias, &got, since, now);
            if view.is_tracked(alias, &got.id) {
                tracing::info!(
                    distribution = %alias,
                    invalidation = %got.id,
                    "adopted an invalidation of ours in progress from an earlier run"
                );
                report.adopted.push(got.id);
            }
        }
        report.others = others.len();
        view.replace_others(alias, others, now);
        Ok(report)
    }
}

#[cfg(test)]
mod tests;
