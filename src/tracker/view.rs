//! The pure half of the tracker: what each distribution has in progress,
//! ours and others', and the capacity left under the configured limits.
//! No I/O and no clock: every time is an argument, so the arithmetic is
//! tested without CloudFront.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::cloudfront::invalidator::{Invalidation, Status, Target};
use crate::cloudfront::reference::REFERENCE_PREFIX;
use crate::config::DistributionConfig;
use crate::path::{CfPath, PathKind};
use crate::planner::Capacity;

/// Ids of recently completed invalidations of ours remembered per
/// distribution, so that a reconcile which listed one as in progress just
/// before a poll completed it does not adopt it again (and report its
/// completion twice). A reconcile takes seconds, so a few hundred is plenty.
const RECENTLY_COMPLETED: usize = 256;

/// Whether an invalidation was made by a cfpurge process (this one or an
/// earlier run), by its CallerReference.
pub fn is_ours(caller_reference: &str) -> bool {
    caller_reference.starts_with(REFERENCE_PREFIX)
}

/// Exact and wildcard paths, counted apart because CloudFront limits them
/// apart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathCounts {
    pub exact: usize,
    pub wildcard: usize,
}

impl PathCounts {
    /// The counts of one batch of paths.
    pub fn of(paths: &[CfPath]) -> PathCounts {
        let mut counts = PathCounts::default();
        for path in paths {
            match path.kind() {
                PathKind::Exact => counts.exact += 1,
                PathKind::Wildcard => counts.wildcard += 1,
            }
        }
        counts
    }

    fn add(&mut self, other: PathCounts) {
        self.exact += other.exact;
        self.wildcard += other.wildcard;
    }
}

/// The latest invalidation of ours on a distribution, for the status page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastInvalidation {
    pub id: String,
    /// As last seen: `InProgress` until a poll finds it completed.
    pub status: Status,
    pub paths: Vec<CfPath>,
    /// CloudFront's creation time.
    pub created_at: SystemTime,
}

/// One invalidation of ours that has just been seen completed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    pub alias: String,
    pub id: String,
    /// CloudFront's creation time.
    pub created_at: SystemTime,
    /// The paths it no longer holds in flight.
    pub counts: PathCounts,
    /// From its creation (as seen locally: the create's answer, or for an
    /// adopted one CloudFront's `created_at` mapped onto the local clock) to
    /// the check that found it completed; what
    /// `cfpurge_invalidation_completion_seconds` observes. Late by up to a
    /// poll interval, by nature.
    pub took: Duration,
}

/// One invalidation of ours in progress.
#[derive(Clone, Debug)]
struct Ours {
    created_at: SystemTime,
    counts: PathCounts,
    /// Its creation on the local (tokio) clock, for [`Completion::took`].
    since: Instant,
    /// When it was last known in progress (created, adopted or polled):
    /// [`InflightView::to_poll`] waits a poll interval from there.
    checked: Instant,
}

/// One distribution's in-flight state.
#[derive(Clone, Debug)]
struct Distribution {
    /// What the calls name: the distribution, or the tenant.
    target: Target,
    /// `max_inflight_paths`: exact paths cfpurge lets be in progress,
    /// others' included.
    max_exact: usize,
    /// `max_inflight_wildcards`, likewise for wildcards.
    max_wildcard: usize,
    /// Ours in progress, by invalidation id.
    ours: BTreeMap<String, Ours>,
    /// Others' in progress at the last reconcile, by invalidation id. Only a
    /// reconcile adds to it; a poll (or a reconcile no longer listing
    /// them) removes those completed, so their room comes back when it
    /// really does.
    others: HashMap<String, PathCounts>,
    /// When each of `others` was last known in progress, for its polls.
    others_checked: HashMap<String, Instant>,
    /// See [`RECENTLY_COMPLETED`]; oldest first.
    recently_completed: VecDeque<String>,
    /// The newest invalidation of ours this process knows of.
    last: Option<LastInvalidation>,
    /// Whether a reconcile has succeeded: until then invalidations left by
    /// an earlier run or other tools are unknown, and the capacity is
    /// optimistic.
    reconciled: bool,
}

impl Distribution {
    /// See [`RECENTLY_COMPLETED`].
    fn remember_completed(&mut self, id: &str) {
        if self.recently_completed.len() == RECENTLY_COMPLETED {
            self.recently_completed.pop_front();
        }
        self.recently_completed.push_back(id.to_owned());
    }

    fn inflight(&self) -> PathCounts {
        let mut total = PathCounts::default();
        for o in self.ours.values() {
            total.add(o.counts);
        }
        for &c in self.others.values() {
            total.add(c);
        }
        total
    }

    fn was_completed(&self, id: &str) -> bool {
        self.recently_completed.iter().any(|done| done == id)
    }

    /// Keeps `last` on the newest invalidation of ours.
    fn note_last(&mut self, invalidation: &Invalidation) {
        let newer = self
            .last
            .as_ref()
            .is_none_or(|l| l.id == invalidation.id || l.created_at <= invalidation.created_at);
        if newer {
            self.last = Some(LastInvalidation {
                id: invalidation.id.clone(),
                status: invalidation.status,
                paths: invalidation.paths.clone(),
                created_at: invalidation.created_at,
            });
        }
    }
}

/// What every configured distribution has in progress, keyed by alias.
#[derive(Clone, Debug, Default)]
pub struct InflightView {
    distributions: BTreeMap<String, Distribution>,
}

impl InflightView {
    /// An empty view of the configured distributions (alias to config).
    pub fn new<'a>(
        distributions: impl IntoIterator<Item = (&'a String, &'a DistributionConfig)>,
    ) -> Self {
        let distributions = distributions
            .into_iter()
            .map(|(alias, config)| {
                let d = Distribution {
                    target: Target::of(config),
                    max_exact: config.max_inflight_paths,
                    max_wildcard: config.max_inflight_wildcards,
                    ours: BTreeMap::new(),
                    others: HashMap::new(),
                    others_checked: HashMap::new(),
                    recently_completed: VecDeque::new(),
                    last: None,
                    reconciled: false,
                };
                (alias.clone(), d)
            })
            .collect();
        InflightView { distributions }
    }

    /// The aliases known, in order.
    pub fn aliases(&self) -> impl Iterator<Item = &str> {
        self.distributions.keys().map(String::as_str)
    }

    /// What the calls for `alias` name: its distribution, or its tenant.
    pub fn target(&self, alias: &str) -> Option<&Target> {
        self.distributions.get(alias).map(|d| &d.target)
    }

    /// An invalidation of ours CloudFront has just accepted (`now`). A
    /// repeat (an idempotent retry answered with the same id) changes
    /// nothing; one already completed is only noted as the last.
    pub fn record_created(&mut self, alias: &str, invalidation: &Invalidation, now: Instant) {
        let Some(d) = self.distributions.get_mut(alias) else {
            return;
        };
        if d.was_completed(&invalidation.id) {
            return;
        }
        d.note_last(invalidation);
        if invalidation.status.is_completed() || d.ours.contains_key(&invalidation.id) {
            return;
        }
        d.others.remove(&invalidation.id);
        d.others_checked.remove(&invalidation.id);
        d.ours.insert(
            invalidation.id.clone(),
            Ours {
                created_at: invalidation.created_at,
                counts: PathCounts::of(&invalidation.paths),
                since: now,
                checked: now,
            },
        );
    }

    /// An invalidation of ours that this process did not create (left by an
    /// earlier run, or by another replica) and found in progress; `since` is
    /// its creation on the local clock, as well as it can be told. Followed
    /// by polls like the ones created here.
    pub fn adopt(
        &mut self,
        alias: &str,
        invalidation: &Invalidation,
        since: Instant,
        now: Instant,
    ) {
        let Some(d) = self.distributions.get_mut(alias) else {
            return;
        };
        if invalidation.status.is_completed()
            || d.ours.contains_key(&invalidation.id)
            || d.was_completed(&invalidation.id)
        {
            return;
        }
        d.note_last(invalidation);
        d.others.remove(&invalidation.id);
        d.others_checked.remove(&invalidation.id);
        d.ours.insert(
            invalidation.id.clone(),
            Ours {
                created_at: invalidation.created_at,
                counts: PathCounts::of(&invalidation.paths),
                since,
                checked: now,
            },
        );
    }

    /// An invalidation found completed at `now`: its paths leave the
    /// in-flight count. The [`Completion`] of one of ours; `None` for
    /// another tool's, or one not in progress here.
    pub fn completed(&mut self, alias: &str, id: &str, now: Instant) -> Option<Completion> {
        let d = self.distributions.get_mut(alias)?;
        if d.others.remove(id).is_some() {
            d.others_checked.remove(id);
            d.remember_completed(id);
            return None;
        }
        let ours = d.ours.remove(id)?;
        d.remember_completed(id);
        if let Some(last) = d.last.as_mut().filter(|l| l.id == id) {
            last.status = Status::Completed;
        }
        Some(Completion {
            alias: alias.to_owned(),
            id: id.to_owned(),
            created_at: ours.created_at,
            counts: ours.counts,
            took: now.saturating_duration_since(ours.since),
        })
    }

    /// An invalidation checked at `now` and still in progress (or whose
    /// check failed): not due again for a poll interval.
    pub fn checked(&mut self, alias: &str, id: &str, now: Instant) {
        let Some(d) = self.distributions.get_mut(alias) else {
            return;
        };
        if let Some(o) = d.ours.get_mut(id) {
            o.checked = now;
        } else if let Some(at) = d.others_checked.get_mut(id) {
            *at = now;
        }
    }

    /// Whether `id` is ours and in progress on `alias`.
    pub fn is_tracked(&self, alias: &str, id: &str) -> bool {
        self.distributions
            .get(alias)
            .is_some_and(|d| d.ours.contains_key(id))
    }

    /// What a reconcile need not fetch again on `alias`: ours being
    /// polled, and other tools' known in progress.
    pub fn known(&self, alias: &str) -> super::Known {
        let Some(d) = self.distributions.get(alias) else {
            return super::Known::default();
        };
        super::Known {
            tracked: d.ours.keys().cloned().collect(),
            others: d.others.clone(),
        }
    }

    /// Whether anything on any distribution is in progress and polled.
    pub fn any_to_poll(&self) -> bool {
        self.distributions
            .values()
            .any(|d| !d.ours.is_empty() || !d.others_checked.is_empty())
    }

    /// The path counts of `id` when it is known as another tool's in
    /// progress, so that a reconcile need not fetch it again.
    pub fn others_counts(&self, alias: &str, id: &str) -> Option<PathCounts> {
        self.distributions.get(alias)?.others.get(id).copied()
    }

    /// Replaces the others' invalidations in progress on `alias` with what a
    /// reconcile found at `now`, and marks the distribution reconciled. Ids
    /// that are ours, or that a poll saw complete, are ignored.
    pub fn replace_others(
        &mut self,
        alias: &str,
        others: impl IntoIterator<Item = (String, PathCounts)>,
        now: Instant,
    ) {
        let Some(d) = self.distributions.get_mut(alias) else {
            return;
        };
        d.others = others
            .into_iter()
            .filter(|(id, _)| !d.ours.contains_key(id) && !d.was_completed(id))
            .collect();
        let checked = std::mem::take(&mut d.others_checked);
        d.others_checked = d
            .others
            .keys()
            .map(|id| (id.clone(), checked.get(id).copied().unwrap_or(now)))
            .collect();
        d.reconciled = true;
    }

    /// Whether a reconcile of `alias` has succeeded at least once.
    pub fn is_reconciled(&self, alias: &str) -> bool {
        self.distributions.get(alias).is_some_and(|d| d.reconciled)
    }

    /// What may still go in flight on `alias`: the configured limits less
    /// everything in progress (ours and others'), never below zero. The
    /// budget is not the tracker's, so `paths` is unlimited.
    pub fn capacity(&self, alias: &str) -> Option<Capacity> {
        let d = self.distributions.get(alias)?;
        let inflight = d.inflight();
        Some(Capacity {
            exact: d.max_exact.saturating_sub(inflight.exact),
            wildcard: d.max_wildcard.saturating_sub(inflight.wildcard),
            paths: usize::MAX,
        })
    }

    /// Paths in progress on `alias`, ours and others', for metrics and the
    /// status page.
    pub fn inflight(&self, alias: &str) -> Option<PathCounts> {
        self.distributions.get(alias).map(Distribution::inflight)
    }

    /// Invalidations of ours in progress on `alias`.
    pub fn ours_in_progress(&self, alias: &str) -> usize {
        self.distributions.get(alias).map_or(0, |d| d.ours.len())
    }

    /// Invalidations of other tools in progress on `alias` at the last
    /// reconcile.
    pub fn others_in_progress(&self, alias: &str) -> usize {
        self.distributions.get(alias).map_or(0, |d| d.others.len())
    }

    /// The newest invalidation of ours on `alias`, for the status page.
    pub fn last_invalidation(&self, alias: &str) -> Option<&LastInvalidation> {
        self.distributions.get(alias)?.last.as_ref()
    }

    /// Invalidations in progress on `alias`, ours (in id order) then
    /// others', not checked for `poll_interval` at `now`.
    pub fn to_poll(&self, alias: &str, now: Instant, poll_interval: Duration) -> Vec<String> {
        let Some(d) = self.distributions.get(alias) else {
            return Vec::new();
        };
        let due = |checked: Instant| now.saturating_duration_since(checked) >= poll_interval;
        let mut ids: Vec<String> = d
            .ours
            .iter()
            .filter(|(_, o)| due(o.checked))
            .map(|(id, _)| id.clone())
            .collect();
        let mut others: Vec<String> = d
            .others_checked
            .iter()
            .filter(|(_, at)| due(**at))
            .map(|(id, _)| id.clone())
            .collect();
        others.sort_unstable();
        ids.extend(others);
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALIAS: &str = "www";

    fn view(max_exact: usize, max_wildcard: usize) -> InflightView {
        let config = DistributionConfig {
            id: "E1WWW".into(),
            max_inflight_paths: max_exact,
            max_inflight_wildcards: max_wildcard,
            ..DistributionConfig::default()
        };
        let alias = ALIAS.to_owned();
        InflightView::new([(&alias, &config)])
    }

    fn paths(list: &[&str]) -> Vec<CfPath> {
        list.iter().map(|p| CfPath::parse(p).unwrap()).collect()
    }

    fn inv(id: &str, list: &[&str], secs: u64) -> Invalidation {
        Invalidation {
            id: id.into(),
            status: Status::InProgress,
            created_at: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
            caller_reference: format!("cfpurge-{id}"),
            paths: paths(list),
        }
    }

    fn cap(exact: usize, wildcard: usize) -> Option<Capacity> {
        Some(Capacity {
            exact,
            wildcard,
            paths: usize::MAX,
        })
    }

    #[test]
    fn counts_split_exact_and_wildcard() {
        let c = PathCounts::of(&paths(&["/a", "/b/*", "/c*", "/d.html"]));
        assert_eq!(
            c,
            PathCounts {
                exact: 2,
                wildcard: 2
            }
        );
        assert!(is_ours("cfpurge-www-1-2-abc"));
        assert!(!is_ours("terraform-123"));
        assert!(!is_ours("CFPURGE-x"));
    }

    #[test]
    fn capacity_is_the_limits_less_ours_and_others() {
        let now = Instant::now();
        let mut v = view(10, 3);
        assert_eq!(v.capacity(ALIAS), cap(10, 3));
        assert_eq!(v.capacity("nope"), None);
        v.record_created(ALIAS, &inv("I1", &["/a", "/b", "/c/*"], 1), now);
        assert_eq!(v.capacity(ALIAS), cap(8, 2));
        v.replace_others(
            ALIAS,
            [(
                "IOTHER".to_owned(),
                PathCounts {
                    exact: 4,
                    wildcard: 1,
                },
            )],
            Instant::now(),
        );
        assert_eq!(v.capacity(ALIAS), cap(4, 1));
        assert_eq!(
            v.inflight(ALIAS),
            Some(PathCounts {
                exact: 6,
                wildcard: 2
            })
        );
        assert_eq!(v.ours_in_progress(ALIAS), 1);
        assert_eq!(v.others_in_progress(ALIAS), 1);
    }

    #[test]
    fn capacity_saturates_at_zero() {
        // Limits lowered below what is already in progress (others' work, or
        // a config change after a restart).
        let mut v = view(2, 1);
        v.replace_others(
            ALIAS,
            [(
                "IOTHER".to_owned(),
                PathCounts {
                    exact: 5,
                    wildcard: 4,
                },
            )],
            Instant::now(),
        );
        assert_eq!(v.capacity(ALIAS), cap(0, 0));
    }

    #[test]
    fn completion_frees_capacity_once() {
        let t0 = Instant::now();
        let mut v = view(10, 3);
        let created = inv("I1", &["/a", "/b/*"], 100);
        v.record_created(ALIAS, &created, t0);
        // An idempotent retry answers the same invalidation: not counted twice.
        v.record_created(ALIAS, &created, t0);
        assert_eq!(v.capacity(ALIAS), cap(9, 2));
        let done = v
            .completed(ALIAS, "I1", t0 + Duration::from_secs(90))
            .unwrap();
        assert_eq!(done.took, Duration::from_secs(90));
        assert_eq!(
            done.counts,
            PathCounts {
                exact: 1,
                wildcard: 1
            }
        );
        assert_eq!(done.created_at, created.created_at);
        assert_eq!(v.capacity(ALIAS), cap(10, 3));
        assert_eq!(v.completed(ALIAS, "I1", t0), None);
        // A late retry's answer or a reconcile's stale listing must not bring
        // it back.
        v.record_created(ALIAS, &created, t0);
        assert_eq!(
            v.last_invalidation(ALIAS).unwrap().status,
            Status::Completed
        );
        v.adopt(ALIAS, &created, t0, t0);
        v.replace_others(
            ALIAS,
            [("I1".to_owned(), PathCounts::of(&created.paths))],
            Instant::now(),
        );
        assert_eq!(v.capacity(ALIAS), cap(10, 3));
    }

    #[test]
    fn an_invalidation_already_completed_is_not_in_flight() {
        let mut v = view(10, 3);
        let mut done = inv("I1", &["/a"], 1);
        done.status = Status::Completed;
        v.record_created(ALIAS, &done, Instant::now());
        assert_eq!(v.capacity(ALIAS), cap(10, 3));
        assert_eq!(
            v.last_invalidation(ALIAS).unwrap().status,
            Status::Completed
        );
    }

    #[test]
    fn last_invalidation_is_the_newest_of_ours() {
        let now = Instant::now();
        let mut v = view(10, 3);
        assert_eq!(v.last_invalidation(ALIAS), None);
        v.record_created(ALIAS, &inv("I2", &["/b"], 200), now);
        // An older one adopted later does not replace it.
        v.adopt(ALIAS, &inv("I1", &["/a"], 100), now, now);
        let last = v.last_invalidation(ALIAS).unwrap();
        assert_eq!(last.id, "I2");
        assert_eq!(last.paths, paths(&["/b"]));
        assert_eq!(last.status, Status::InProgress);
        assert_eq!(
            last.created_at,
            SystemTime::UNIX_EPOCH + Duration::from_secs(200)
        );
        v.completed(ALIAS, "I2", now);
        assert_eq!(
            v.last_invalidation(ALIAS).unwrap().status,
            Status::Completed
        );
        v.record_created(ALIAS, &inv("I3", &["/c"], 300), now);
        assert_eq!(v.last_invalidation(ALIAS).unwrap().id, "I3");
    }

    #[test]
    fn to_poll_waits_a_poll_interval_from_the_last_check() {
        let t0 = Instant::now();
        let every = Duration::from_secs(20);
        let mut v = view(10, 3);
        v.record_created(ALIAS, &inv("I1", &["/a"], 1), t0);
        v.record_created(ALIAS, &inv("I2", &["/b"], 2), t0 + Duration::from_secs(5));
        assert!(
            v.to_poll(ALIAS, t0 + Duration::from_secs(19), every)
                .is_empty()
        );
        assert_eq!(v.to_poll(ALIAS, t0 + every, every), ["I1"]);
        assert_eq!(
            v.to_poll(ALIAS, t0 + Duration::from_secs(25), every),
            ["I1", "I2"]
        );
        v.checked(ALIAS, "I1", t0 + Duration::from_secs(25));
        assert_eq!(
            v.to_poll(ALIAS, t0 + Duration::from_secs(44), every),
            ["I2"]
        );
        v.completed(ALIAS, "I2", t0 + Duration::from_secs(44));
        assert_eq!(
            v.to_poll(ALIAS, t0 + Duration::from_secs(45), every),
            ["I1"]
        );
        assert!(v.to_poll("nope", t0, every).is_empty());
    }

    #[test]
    fn replace_others_drops_the_ones_gone_and_marks_reconciled() {
        let mut v = view(10, 3);
        assert!(!v.is_reconciled(ALIAS));
        let one = PathCounts {
            exact: 1,
            wildcard: 0,
        };
        v.replace_others(
            ALIAS,
            [("IA".to_owned(), one), ("IB".to_owned(), one)],
            Instant::now(),
        );
        assert!(v.is_reconciled(ALIAS));
        assert_eq!(v.others_counts(ALIAS, "IA"), Some(one));
        v.replace_others(ALIAS, [("IB".to_owned(), one)], Instant::now());
        assert_eq!(v.others_counts(ALIAS, "IA"), None);
        assert_eq!(v.capacity(ALIAS), cap(9, 3));
    }
}
