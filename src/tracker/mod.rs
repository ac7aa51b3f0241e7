//! The tracker: the in-flight view per distribution that the submitter asks
//! for capacity. CloudFront is the source of truth (several replicas may
//! share a distribution, and other tools invalidate too), so the view is
//! kept from its answers: our own invalidations are polled with
//! GetInvalidation until they complete, and a periodic reconcile lists the
//! distribution's invalidations to count other tools' in progress and to
//! adopt ours left by an earlier run.
//!
//! [`view::InflightView`] holds the state and the arithmetic, pure, owned
//! by the daemon's core. The calls are split from what their answers
//! change: [`check`] and [`look`] only ask CloudFront (the runner runs
//! them in tasks, one distribution's hanging call delaying no other's),
//! [`apply_checks`] and [`apply_look`] change the view. [`Tracker`] puts
//! the two together for code that owns a view and may await.
//! Errors are returned as they are for the caller to classify (a missing
//! distribution or denied access means "not ready"); a failed reconcile
//! leaves the previous view in place.

pub mod external;
pub mod view;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::cloudfront::invalidator::{
    Invalidation, Invalidator, InvalidatorError, MAX_LIST_ITEMS, Target,
};
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

/// The answers of GetInvalidation for the ids a poll asked about: whether
/// each is completed, or why it could not be told.
pub type Checks = Vec<(String, Result<bool, InvalidatorError>)>;

/// What the view knew of a distribution when a reconcile began: the ids it
/// need not fetch again.
#[derive(Clone, Debug, Default)]
pub struct Known {
    /// Ours being polled.
    pub tracked: HashSet<String>,
    /// Other tools' in progress, whose paths do not change.
    pub others: HashMap<String, PathCounts>,
}

impl Known {
    /// A snapshot of `alias` in `view`.
    pub fn of(view: &InflightView, alias: &str) -> Known {
        view.known(alias)
    }
}

/// What a reconcile's calls found, before it is applied to the view.
#[derive(Clone, Debug, Default)]
pub struct Looked {
    pub pages: usize,
    /// Ours in progress that the view did not track.
    pub adopt: Vec<Invalidation>,
    /// Other tools' in progress, with their path counts.
    pub others: Vec<(String, PathCounts)>,
}

/// Asks CloudFront about each of `ids` (GetInvalidation), one after the
/// other; a failed call is reported and the others still go ahead.
pub async fn check<I: Invalidator>(invalidator: &I, target: &Target, ids: Vec<String>) -> Checks {
    let mut answers = Vec::with_capacity(ids.len());
    for id in ids {
        let answer = invalidator.get(target, &id).await;
        answers.push((id, answer.map(|got| got.status.is_completed())));
    }
    answers
}

/// Takes the answers of a [`check`] of `alias` at `now`: frees the
/// capacity of those completed; a failed check keeps its invalidation in
/// flight (counting it too long only delays a batch, forgetting it early
/// risks TooManyInvalidationsInProgress).
pub fn apply_checks(
    view: &mut InflightView,
    alias: &str,
    checks: Checks,
    now: Instant,
) -> PollReport {
    let mut report = PollReport::default();
    for (id, answer) in checks {
        match answer {
            Ok(true) => {
                if let Some(done) = view.completed(alias, &id, now) {
                    report.completed.push(done);
                }
            }
            Ok(false) => view.checked(alias, &id, now),
            Err(e) => {
                view.checked(alias, &id, now);
                report.failed.push((alias.to_owned(), id, e));
            }
        }
    }
    report
}

/// Lists `target`'s invalidations newest first, page by page, up to and
/// including the first page whose items are all completed (older ones are
/// completed too), and fetches each in-progress one that `known` does not
/// hold (GetInvalidation) for its CallerReference and paths. Any error ends
/// the look.
pub async fn look<I: Invalidator>(
    invalidator: &I,
    target: &Target,
    known: &Known,
    page_size: i32,
) -> Result<Looked, InvalidatorError> {
    let mut looked = Looked::default();
    let mut in_progress = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let (items, next) = invalidator
            .list(target, marker.as_deref(), page_size)
            .await?;
        looked.pages += 1;
        let all_completed = items.iter().all(|s| s.status.is_completed());
        in_progress.extend(items.into_iter().filter(|s| !s.status.is_completed()));
        match next {
            Some(next) if !all_completed => marker = Some(next),
            _ => break,
        }
    }
    for summary in in_progress {
        if known.tracked.contains(&summary.id) {
            continue;
        }
        // Another tool's paths do not change: no need to fetch them again
        // on every reconcile.
        if let Some(counts) = known.others.get(&summary.id) {
            looked.others.push((summary.id, *counts));
            continue;
        }
        let got = invalidator.get(target, &summary.id).await?;
        if got.status.is_completed() {
            continue;
        }
        if is_ours(&got.caller_reference) {
            looked.adopt.push(got);
        } else {
            looked.others.push((got.id, PathCounts::of(&got.paths)));
        }
    }
    Ok(looked)
}

/// Takes what a [`look`] of `alias` found: counts other tools' against the
/// limits (replacing the previous set) and adopts ours left by an earlier
/// run, to be polled until done. `now` and `wall` are the same moment on
/// the local clock and the wall clock, to place an adopted invalidation's
/// creation on the local clock.
pub fn apply_look(
    view: &mut InflightView,
    alias: &str,
    looked: Looked,
    now: Instant,
    wall: SystemTime,
) -> ReconcileReport {
    let mut report = ReconcileReport {
        pages: looked.pages,
        ..ReconcileReport::default()
    };
    for got in looked.adopt {
        let age = wall.duration_since(got.created_at).unwrap_or_default();
        let since = now.checked_sub(age).unwrap_or(now);
        // A poll or a create may have told of it meanwhile.
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
    report.others = looked.others.len();
    view.replace_others(alias, looked.others, now);
    report
}

/// A view and the invalidator that feeds it, for code that owns both and
/// may await (tests, tools). The daemon does not use it: its core owns the
/// view and its runner makes the calls.
#[derive(Debug)]
pub struct Tracker<I> {
    invalidator: I,
    view: InflightView,
    /// How long an invalidation of ours goes unchecked
    /// (`cloudfront.poll_interval_seconds`).
    poll_interval: Duration,
}

impl<I: Invalidator> Tracker<I> {
    pub fn new(invalidator: I, view: InflightView, poll_interval: Duration) -> Self {
        Tracker {
            invalidator,
            view,
            poll_interval,
        }
    }

    pub fn view(&self) -> &InflightView {
        &self.view
    }

    pub fn view_mut(&mut self) -> &mut InflightView {
        &mut self.view
    }

    /// See [`InflightView::capacity`].
    pub fn capacity(&self, alias: &str) -> Option<Capacity> {
        self.view.capacity(alias)
    }

    /// See [`InflightView::record_created`].
    pub fn record_created(&mut self, alias: &str, invalidation: &Invalidation, now: Instant) {
        self.view.record_created(alias, invalidation, now);
    }

    /// Checks every invalidation of ours, on every distribution, that is due
    /// a check at `now`.
    pub async fn poll_all(&mut self, now: Instant) -> PollReport {
        let aliases: Vec<String> = self.view.aliases().map(str::to_owned).collect();
        let mut report = PollReport::default();
        for alias in aliases {
            let one = self.poll(&alias, now).await;
            report.completed.extend(one.completed);
            report.failed.extend(one.failed);
        }
        report
    }

    /// Checks the invalidations on `alias` that are due a check at `now`.
    pub async fn poll(&mut self, alias: &str, now: Instant) -> PollReport {
        let Some(target) = self.view.target(alias).cloned() else {
            return PollReport::default();
        };
        let due = self.view.to_poll(alias, now, self.poll_interval);
        let checks = check(&self.invalidator, &target, due).await;
        apply_checks(&mut self.view, alias, checks, now)
    }

    /// Refreshes `alias`'s view from ListInvalidations, 100 a page.
    pub async fn reconcile(
        &mut self,
        alias: &str,
        now: Instant,
        wall: SystemTime,
    ) -> Result<ReconcileReport, InvalidatorError> {
        self.reconcile_with_page_size(alias, now, wall, MAX_LIST_ITEMS)
            .await
    }

    /// [`look`] then [`apply_look`], with `page_size` items a page.
    pub async fn reconcile_with_page_size(
        &mut self,
        alias: &str,
        now: Instant,
        wall: SystemTime,
        page_size: i32,
    ) -> Result<ReconcileReport, InvalidatorError> {
        let target = self.view.target(alias).cloned().ok_or_else(|| {
            InvalidatorError::NoSuchDistribution(format!("no distribution aliased {alias}"))
        })?;
        let known = Known::of(&self.view, alias);
        let looked = look(&self.invalidator, &target, &known, page_size).await?;
        Ok(apply_look(&mut self.view, alias, looked, now, wall))
    }
}

#[cfg(test)]
mod tests;
