//! Why a distribution's work does not move, for `/v1/status`, the status
//! page and `cfpurge status`: what its pending paths wait for, and the last
//! CloudFront call that failed on it.
//!
//! The wait is read from the core's state when the status is refreshed
//! (the lease, the ledger, the start-up gate, the calls under way, the
//! batching window), in the order in which they hold a batch back. Only
//! what the submitter decided and the state does not keep (a hold for room
//! in flight, the budget, the create rate or a retry's backoff) is
//! remembered where the decision is taken, with the moment it ends.

use std::time::{Duration, SystemTime};

use crate::clock::{Millis, Now};
use crate::cloudfront::invalidator::{InvalidatorError, Target};
use crate::status::{CallError, Waiting, WaitingOn, one_line};
use crate::submitter::Wait;

use super::Core;

/// The CloudFront calls the daemon makes, as the status names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Operation {
    Create,
    Get,
    List,
}

impl Operation {
    /// The API's name; a tenant's calls are their `...ForDistributionTenant`
    /// forms.
    fn name(self, tenant: bool) -> &'static str {
        match (self, tenant) {
            (Operation::Create, false) => "CreateInvalidation",
            (Operation::Get, false) => "GetInvalidation",
            (Operation::List, false) => "ListInvalidations",
            (Operation::Create, true) => "CreateInvalidationForDistributionTenant",
            (Operation::Get, true) => "GetInvalidationForDistributionTenant",
            (Operation::List, true) => "ListInvalidationsForDistributionTenant",
        }
    }
}

/// A hold the submitter decided on: why, and until when.
#[derive(Clone, Copy, Debug)]
pub(super) struct Hold {
    pub why: Wait,
    pub until: Millis,
}

impl Core {
    /// Takes the outcome of one CloudFront call on `alias`: a failure is
    /// counted in the metric and becomes the distribution's last error; a
    /// success resets the count of failures since the last success.
    pub(super) fn cloudfront_answered(
        &mut self,
        alias: &str,
        operation: Operation,
        outcome: Result<(), &InvalidatorError>,
        now: &Now,
    ) {
        match outcome {
            Ok(()) => {
                if let Some(last) = self.last_errors.get_mut(alias) {
                    last.since_success = 0;
                }
            }
            Err(e) => {
                self.shown.counts.cloudfront_error(alias, e.code_label());
                let tenant = matches!(self.targets.get(alias), Some(Target::Tenant { .. }));
                let since = self
                    .last_errors
                    .get(alias)
                    .map_or(0, |last| last.since_success);
                self.last_errors.insert(
                    alias.to_owned(),
                    CallError {
                        code: e.code_label().to_owned(),
                        operation: operation.name(tenant).to_owned(),
                        message: one_line(&e.to_string()),
                        at: now.wall,
                        since_success: since + 1,
                    },
                );
            }
        }
    }

    /// The last failed CloudFront call on `alias`, if any.
    pub(super) fn last_error(&self, alias: &str) -> Option<CallError> {
        self.last_errors.get(alias).cloned()
    }

    /// What `alias`'s pending paths wait for at `now`; `None` when none
    /// waits. The first reason that applies, in the order they hold a
    /// batch back.
    pub(super) fn waiting(&self, alias: &str, now: &Now) -> Option<Waiting> {
        if self.pending.pending_paths(alias) == 0 {
            return None;
        }
        let wall = |at: Millis| wall_of(now, at);
        if !self.is_leader(now.mono) {
            return Some(Waiting::new(
                WaitingOn::Lease,
                None,
                "this replica is a standby: the leader receives and submits".to_owned(),
            ));
        }
        let ledger = self.ledger_of(alias);
        if ledger.and_then(|l| l.budget()).is_none() {
            let detail = match ledger.and_then(|l| l.error()) {
                Some(e) => format!("the budget ledger is not usable: {e}"),
                None => "the budget ledger is being read".to_owned(),
            };
            return Some(Waiting::new(WaitingOn::Ledger, None, detail));
        }
        if !self.timers.started {
            let mut left: Vec<&str> = self
                .targets
                .keys()
                .filter(|a| !self.looked_ok.contains(*a))
                .map(String::as_str)
                .collect();
            left.sort_unstable();
            let detail = if left.is_empty() {
                "start-up: the first look at what is in flight is being finished".to_owned()
            } else {
                format!(
                    "start-up: nothing is submitted until the invalidations in flight have been \
                     listed on every distribution; not yet on {}",
                    left.join(", ")
                )
            };
            return Some(Waiting::new(WaitingOn::Startup, None, detail));
        }
        let hold = self
            .holds
            .get(alias)
            .filter(|h| h.until > now.mono && h.until != Millis::MAX);
        if self.refused.contains(alias) {
            let detail = match self.last_errors.get(alias) {
                Some(e) => format!(
                    "CloudFront refuses the distribution ({}): fix the configured id or the \
                     IAM policy; tried again now and then",
                    e.code
                ),
                None => "CloudFront refuses the distribution: fix the configured id or the IAM \
                         policy"
                    .to_owned(),
            };
            return Some(Waiting::new(
                WaitingOn::Refused,
                hold.map(|h| wall(h.until)),
                detail,
            ));
        }
        if self.awaiting.iter().any(|a| a.alias == alias) {
            return Some(Waiting::new(
                WaitingOn::Reservation,
                None,
                "the batch's reservation is being written to the budget ledger".to_owned(),
            ));
        }
        if self.submitter.is_calling_on(alias) {
            return Some(Waiting::new(
                WaitingOn::Call,
                None,
                "a CreateInvalidation call is under way".to_owned(),
            ));
        }
        if let Some(hold) = hold {
            return Some(self.held(alias, *hold, now));
        }
        match self.pending.window_closes(alias) {
            Some(closes) if closes > now.mono => Some(Waiting::new(
                WaitingOn::QuietWindow,
                Some(wall(closes)),
                "batching: due once no new path has come for quiet_seconds, or \
                 max_delay_seconds after the oldest"
                    .to_owned(),
            )),
            // Due: the next turn plans it (the status is refreshed between
            // two turns only when a hold has just run out).
            _ => None,
        }
    }

    /// The wait of a hold the submitter decided on.
    fn held(&self, alias: &str, hold: Hold, now: &Now) -> Waiting {
        let until = Some(wall_of(now, hold.until));
        match hold.why {
            Wait::Backoff => {
                let attempt = self.submitter.queued_attempts(alias).unwrap_or(0) + 1;
                let detail = match self.last_errors.get(alias) {
                    Some(e) if e.since_success > 0 => format!(
                        "{} failed ({}); the same batch is sent again (attempt {attempt}) under \
                         its CallerReference",
                        e.operation, e.code
                    ),
                    _ => format!("the batch is sent again (attempt {attempt})"),
                };
                Waiting::new(WaitingOn::Retry, until, detail)
            }
            Wait::Capacity => {
                let inflight = self.view.inflight(alias).unwrap_or_default();
                let detail = match self.view.capacity(alias) {
                    Some(room) => format!(
                        "not enough room in flight: {} exact and {} wildcard paths in progress, \
                         room for {} and {} more (others' invalidations counted)",
                        inflight.exact, inflight.wildcard, room.exact, room.wildcard
                    ),
                    None => "the paths in flight are not known yet".to_owned(),
                };
                Waiting::new(WaitingOn::InflightRoom, until, detail)
            }
            Wait::Budget => {
                let detail = match self.ledger_of(alias).and_then(|l| l.budget()) {
                    Some(b) => format!(
                        "the budget: {} paths used, {} allowed by now (on_exhausted = \"{}\")",
                        b.used(),
                        b.allowed(now.wall),
                        b.policy()
                    ),
                    None => "the budget".to_owned(),
                };
                Waiting::new(WaitingOn::Budget, until, detail)
            }
            Wait::Rate => Waiting::new(
                WaitingOn::CreateRate,
                until,
                "the account's CreateInvalidation rate (cloudfront.create_per_second)".to_owned(),
            ),
            Wait::Ledger => Waiting::new(
                WaitingOn::Ledger,
                until,
                match self.ledger_of(alias).and_then(|l| l.error()) {
                    Some(e) => format!("the batch could not be reserved in the ledger: {e}"),
                    None => "the batch could not be reserved in the ledger".to_owned(),
                },
            ),
        }
    }
}

/// The wall-clock time of the core's moment `at`.
fn wall_of(now: &Now, at: Millis) -> SystemTime {
    if at >= now.mono {
        now.wall + Duration::from_millis(at - now.mono)
    } else {
        now.wall
            .checked_sub(Duration::from_millis(now.mono - at))
            .unwrap_or(now.wall)
    }
}
