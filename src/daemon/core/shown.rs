//! What the core shows of itself, kept as plain state of its own: counters
//! that only grow, the histograms' observations as counts per bucket, the
//! readiness reasons, the role and the lease item's validity, the queue's
//! depth. The decisions only add to it; the runner reads it after each step
//! and publishes it to the metrics, `/readyz` and `/v1/status`
//! (`super::super::observe::Publisher`). Nothing here is shared, locked or
//! read from a clock, so a replay or a test reads it as it is.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::clock::Millis;
use crate::decode::RejectReason;
use crate::metrics::Samples;
use crate::source::queue::QueueDepth;

/// Everything the core shows that its decisions change.
#[derive(Clone, Debug, PartialEq)]
pub struct Shown {
    pub counts: Counts,
    /// Why the daemon is not ready, by component (`queue`, `ledger`,
    /// `distribution:www`, ...): ready when empty.
    pub readiness: BTreeMap<String, String>,
    pub lead: Lead,
    /// The lease item, as last looked at, is one no replica can take over.
    pub lease_invalid: bool,
    /// The queue's counts as last answered.
    pub depth: QueueDepth,
}

/// Whether, and until when, this daemon leads. The readers of the role
/// compare the deadline with the time they read at, so that a process
/// resumed after a pause past its lease reads as a standby before its loop
/// has run again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lead {
    /// Alone: always the leader.
    Alone,
    /// A replica that leads until this moment (exclusive).
    Until(Millis),
    /// A replica that does not lead.
    Standby,
}

/// Counters that only grow, from the start of the process.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counts {
    /// Messages deleted after their paths were covered.
    pub deleted: u64,
    /// Messages rejected, by reason.
    pub rejected: HashMap<RejectReason, u64>,
    /// Times this replica became leader or stood down.
    pub leader_changes: u64,
    /// Per distribution alias.
    pub distributions: BTreeMap<String, DistributionCounts>,
}

/// The counters of one distribution.
#[derive(Clone, Debug, PartialEq)]
pub struct DistributionCounts {
    /// Paths in accepted requests.
    pub requested: u64,
    /// Requested paths dropped by `routing.skip`.
    pub skipped: u64,
    /// Paths sent in CreateInvalidation calls CloudFront accepted.
    pub submitted: Submitted,
    /// Catalog objects purged by accepted wildcards that nobody requested.
    pub blast: u64,
    /// Invalidations CloudFront accepted.
    pub created: u64,
    /// Invalidations seen Completed.
    pub completed: u64,
    /// Failed CloudFront calls, by error code label.
    pub cloudfront_errors: BTreeMap<&'static str, u64>,
    /// Edge checks after Completed, by result.
    pub verify: BTreeMap<&'static str, u64>,
    /// Warming requests after Completed, by result.
    pub warm: BTreeMap<&'static str, u64>,
    /// From receive to the accepted CreateInvalidation, per request.
    pub request_to_invalidation: Samples,
    /// From created to Completed, per invalidation.
    pub invalidation_completion: Samples,
}

/// Billed paths by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Submitted {
    pub exact: u64,
    pub wildcard: u64,
    pub tags: u64,
}

impl Default for DistributionCounts {
    fn default() -> Self {
        DistributionCounts {
            requested: 0,
            skipped: 0,
            submitted: Submitted::default(),
            blast: 0,
            created: 0,
            completed: 0,
            cloudfront_errors: BTreeMap::new(),
            verify: BTreeMap::new(),
            warm: BTreeMap::new(),
            request_to_invalidation: Samples::request_to_invalidation(),
            invalidation_completion: Samples::invalidation_completion(),
        }
    }
}

impl Default for Shown {
    /// At the start: not ready until the queue first answers; leading,
    /// as a daemon alone does (a replica stands by until it takes the
    /// lease: [`super::Core::set_replica`]).
    fn default() -> Shown {
        let mut readiness = BTreeMap::new();
        readiness.insert(
            super::STARTUP.to_owned(),
            "starting: the queue has not answered yet".to_owned(),
        );
        Shown {
            counts: Counts::default(),
            readiness,
            lead: Lead::Alone,
            lease_invalid: false,
            depth: QueueDepth::default(),
        }
    }
}

impl Shown {
    /// Marks `component` not ready for `reason`, replacing its earlier one.
    pub fn not_ready(&mut self, component: &str, reason: String) {
        self.readiness.insert(component.to_owned(), reason);
    }

    /// Marks `component` ready again; a no-op when it had no reason.
    pub fn ready(&mut self, component: &str) {
        self.readiness.remove(component);
    }
}

impl Counts {
    /// `alias`'s counters, created at zero on first use.
    pub fn of(&mut self, alias: &str) -> &mut DistributionCounts {
        // Looked up before inserting: a message's paths are counted on
        // every message, and the alias exists after the first.
        if !self.distributions.contains_key(alias) {
            self.distributions
                .insert(alias.to_owned(), DistributionCounts::default());
        }
        self.distributions
            .get_mut(alias)
            .expect("inserted just above")
    }

    /// One message rejected for `reason`.
    pub fn rejected(&mut self, reason: RejectReason) {
        *self.rejected.entry(reason).or_default() += 1;
    }

    /// One failed CloudFront call on `alias`, under its code label.
    pub fn cloudfront_error(&mut self, alias: &str, code: &'static str) {
        *self.of(alias).cloudfront_errors.entry(code).or_default() += 1;
    }

    /// One edge check of `alias`'s purged path, with its `result`.
    pub fn verified(&mut self, alias: &str, result: &'static str) {
        *self.of(alias).verify.entry(result).or_default() += 1;
    }

    /// One warming request of `alias`, with its `result`.
    pub fn warmed(&mut self, alias: &str, result: &'static str) {
        *self.of(alias).warm.entry(result).or_default() += 1;
    }

    /// One invalidation of `alias` seen Completed, `took` after it was
    /// created.
    pub fn completed(&mut self, alias: &str, took: Duration) {
        let counts = self.of(alias);
        counts.completed += 1;
        counts.invalidation_completion.observe(took);
    }
}
