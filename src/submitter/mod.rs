//! The submitter: what to send to CloudFront, when, and what to do with the
//! answer. [`Submitter`] is the pure core: given a distribution's due
//! batch, its capacity in flight, the budget left and the time, it returns
//! one [`Step`] (wait until, or send this batch), and it takes the outcome
//! of each call back ([`Submitter::created`], [`Submitter::failed`]). It does
//! no I/O and reads no clock, so every policy here (`on_exhausted`, the
//! rate limit, the retries, the capacity re-check of a retry, the split of
//! a refused batch) is unit-tested without a runtime.
//!
//! The daemon's shell carries the steps out: it reserves the batch in the
//! ledger, calls CreateInvalidation in a task of its own, and hands the
//! answer back here.

pub mod action;
pub mod rate;

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use crate::catalog::Catalog;
use crate::clock::Millis;
use crate::cloudfront::invalidator::InvalidatorError;
use crate::config::{OnExhausted, Strategy};
use crate::path::CfPath;
use crate::planner::{self, Capacity, Entry, Settings};
use crate::tracker::PathCounts;

pub use self::action::{Action, action, created_nothing};
pub use self::rate::RateLimit;
pub use crate::cloudfront::reference::{caller_reference, caller_reference_of};

/// How long a batch waits after the ledger could not record it.
pub const LEDGER_RETRY: Duration = Duration::from_secs(5);

/// One batch: the paths of one CreateInvalidation and its CallerReference,
/// kept the same across every retry of the batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Counts batches within the process; part of the reference.
    pub number: u64,
    pub reference: String,
    pub paths: Vec<CfPath>,
    /// Requested entries the paths stand for (for the log).
    pub requested: usize,
    /// Catalog objects the paths' wildcards purge that nobody requested
    /// (0 without a catalog).
    pub blast: u64,
    /// Calls made so far.
    pub attempts: u32,
    /// When the first call was made. An invalidation that call made was
    /// created after this, so only messages received before it count as
    /// covered, whichever attempt is answered.
    pub first_sent_at: Millis,
    /// Not to be sent before this moment (backoff, rate limit, ledger).
    pub after: Millis,
}

impl Batch {
    /// Exact and wildcard paths, for the capacity check.
    pub fn counts(&self) -> PathCounts {
        PathCounts::of(&self.paths)
    }
}

/// What the shell knows of one distribution at this moment.
#[derive(Clone, Copy, Debug)]
pub struct Situation<'a> {
    /// Whether its pending batch is due (window closed, urgent, flushing).
    pub due: bool,
    /// Its pending entries (read only when a new batch is planned).
    pub entries: &'a [Entry],
    /// Room in flight; `None` when the tracker does not know it.
    pub capacity: Option<Capacity>,
    /// Paths the budget allows now; `None` while the ledger is not open.
    pub remaining: Option<u64>,
    /// What the distribution serves, once its catalog is ready.
    pub catalog: Option<&'a Catalog>,
    /// With `least_blast`: unrequested objects one billed path is worth now.
    pub price: f64,
}

/// What to do now for one distribution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing: not due, or a call for it is already under way.
    Idle,
    /// Nothing before `until` (and the pending batch is not due before it).
    Wait { until: Millis, why: Wait },
    /// Reserve the batch in the ledger, then call CreateInvalidation. With
    /// `hold`, what the batch leaves behind waits until then.
    Send { batch: Batch, hold: Option<Millis> },
}

/// Why a distribution waits, for the logs and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// A retry's backoff, or a batch put back for the ledger.
    Backoff,
    /// The account's CreateInvalidation rate.
    Rate,
    /// Not enough room in flight for the batch.
    Capacity,
    /// The budget is spent and `on_exhausted = "hold"`.
    Budget,
    /// The ledger is not open.
    Ledger,
}

/// What the shell does after a failed call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AfterFailure {
    pub action: Action,
    /// Give the batch's reservation back: CloudFront certainly made nothing.
    pub release: bool,
    /// Keep the distribution's batch from being due before this.
    pub hold: Option<Millis>,
    /// Ask CloudFront what is in flight (it refused for lack of capacity, or
    /// the distribution may have come back).
    pub reconcile: bool,
    /// A requested path CloudFront refused: the messages asking for it go
    /// to the dead-letter queue.
    pub reject: Option<CfPath>,
}

/// The submitter's settings.
#[derive(Clone, Debug)]
pub struct SubmitSettings {
    pub planner: Settings,
    /// `coalesce.strategy`: `least_blast` applies where a catalog is ready.
    pub strategy: Strategy,
    pub on_exhausted: OnExhausted,
    /// How long a distribution waits when it cannot go now for lack of
    /// room (`cloudfront.poll_interval_seconds`: room comes back when a
    /// poll sees an invalidation complete).
    pub recheck: Duration,
}

/// The pure core. One per daemon; the shell owns it.
#[derive(Clone, Debug)]
pub struct Submitter {
    settings: SubmitSettings,
    /// Distinguishes this process's CallerReferences from another run's.
    run: String,
    /// The replica whose name starts every CallerReference, with
    /// coordination.
    owner: Option<String>,
    next_number: u64,
    /// Per distribution, the batches planned and not yet accepted, in the
    /// order they go out: one after a failure, several while a refused
    /// batch is split. While a distribution has any, nothing new is planned
    /// for it.
    queued: HashMap<String, VecDeque<Batch>>,
    /// Distributions with a CreateInvalidation under way: one at a time.
    calling: HashSet<String>,
    /// The CreateInvalidation rate each account starts with.
    rate: RateLimit,
    /// Alias → account: AWS limits CreateInvalidation per account, so each
    /// account has a rate of its own. An alias not named here is in the
    /// default account.
    accounts: HashMap<String, String>,
    /// Each account's rate, as calls took it.
    rates: HashMap<String, RateLimit>,
}

impl Submitter {
    /// `run` goes into every CallerReference after the distribution alias:
    /// the process's start time (and with replicas, the replica's id).
    pub fn new(settings: SubmitSettings, rate: RateLimit, run: String) -> Submitter {
        Submitter {
            settings,
            run,
            owner: None,
            next_number: 0,
            queued: HashMap::new(),
            calling: HashSet::new(),
            rate,
            accounts: HashMap::new(),
            rates: HashMap::new(),
        }
    }

    /// The accounts of the aliases (alias → account), each with its own
    /// CreateInvalidation rate.
    pub fn with_accounts(mut self, accounts: HashMap<String, String>) -> Submitter {
        self.accounts = accounts;
        self
    }

    /// Every CallerReference starts with `cfpurge-<owner>-` (a replica).
    pub fn with_owner(mut self, owner: String) -> Submitter {
        self.owner = Some(owner);
        self
    }

    /// Whether `alias` has a batch waiting to be retried.
    pub fn has_queued(&self, alias: &str) -> bool {
        self.queued.get(alias).is_some_and(|q| !q.is_empty())
    }

    /// Distributions with a batch waiting to be retried.
    pub fn queued_aliases(&self) -> impl Iterator<Item = &str> {
        self.queued
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(a, _)| a.as_str())
    }

    /// Whether a call for `alias` is under way.
    pub fn is_calling_on(&self, alias: &str) -> bool {
        self.calling.contains(alias)
    }

    /// The calls already made for `alias`'s next queued batch (a retry's
    /// attempt is this plus one); `None` when none is queued.
    pub fn queued_attempts(&self, alias: &str) -> Option<u32> {
        self.queued.get(alias)?.front().map(|b| b.attempts)
    }

    /// Whether any call is under way.
    pub fn is_calling(&self) -> bool {
        !self.calling.is_empty()
    }

    /// The earliest moment a queued batch may go, if any is queued.
    pub fn next_after(&self) -> Option<Millis> {
        self.queued
            .iter()
            .filter(|(alias, _)| !self.calling.contains(*alias))
            .filter_map(|(_, q)| q.front().map(|b| b.after))
            .min()
    }

    /// A distribution's batch became moot (the distribution came back after
    /// a configuration fault): its queued batches may go at once.
    pub fn expedite(&mut self, alias: &str, now: Millis) {
        for b in self.queued.get_mut(alias).into_iter().flatten() {
            b.after = b.after.min(now);
        }
    }

    /// Decides what to do for `alias` at `now`.
    pub fn next(&mut self, alias: &str, now: Millis, s: Situation<'_>) -> Step {
        if self.calling.contains(alias) {
            return Step::Idle;
        }
        let recheck = now.saturating_add(self.settings.recheck.as_millis() as Millis);
        let (mut batch, hold) = match self.queued.get_mut(alias).and_then(VecDeque::pop_front) {
            Some(b) => {
                let wait = if b.after > now {
                    Some((b.after, Wait::Backoff))
                } else {
                    // Room may have gone since the batch was planned: a
                    // retry is checked like a new batch.
                    let counts = b.counts();
                    match s.capacity {
                        Some(c) if c.fits(counts.exact, counts.wildcard) => None,
                        _ => Some((recheck, Wait::Capacity)),
                    }
                };
                if let Some((until, why)) = wait {
                    let b = Batch { after: until, ..b };
                    self.put_back(alias, b);
                    return Step::Wait { until, why };
                }
                (b, None)
            }
            None => {
                if !s.due {
                    return Step::Idle;
                }
                let Some(capacity) = s.capacity else {
                    return Step::Wait {
                        until: recheck,
                        why: Wait::Capacity,
                    };
                };
                let Some(remaining) = s.remaining else {
                    return Step::Wait {
                        until: now.saturating_add(LEDGER_RETRY.as_millis() as Millis),
                        why: Wait::Ledger,
                    };
                };
                let strategy = planner::Strategy::new(self.settings.strategy, s.catalog, s.price);
                match self.plan(s.entries, capacity, remaining, strategy) {
                    Planned::Paths {
                        paths,
                        requested,
                        deferred,
                        blast,
                    } => {
                        let mut b = self.new_batch(alias, paths, now);
                        b.requested = requested;
                        b.blast = blast;
                        (b, deferred.then_some(recheck))
                    }
                    Planned::Nothing(why) => {
                        return Step::Wait {
                            until: recheck,
                            why,
                        };
                    }
                }
            }
        };
        let account = self
            .accounts
            .get(alias)
            .map_or(crate::config::DEFAULT_ACCOUNT, String::as_str);
        let rate = match self.rates.get_mut(account) {
            Some(rate) => rate,
            None => self
                .rates
                .entry(account.to_owned())
                .or_insert_with(|| self.rate.clone()),
        };
        if let Err(until) = rate.take(now) {
            batch.after = until;
            self.put_back(alias, batch);
            return Step::Wait {
                until,
                why: Wait::Rate,
            };
        }
        if batch.attempts == 0 {
            // The call goes out after everything this turn has taken in,
            // and a message received within this millisecond was sent to
            // the queue before the call starts: it counts as received
            // before the invalidation.
            batch.first_sent_at = now + 1;
        }
        batch.attempts += 1;
        self.calling.insert(alias.to_owned());
        Step::Send { batch, hold }
    }

    /// The ledger could not reserve the batch: it waits, unsent.
    pub fn not_reserved(&mut self, alias: &str, mut batch: Batch, now: Millis) -> Millis {
        self.calling.remove(alias);
        batch.attempts -= 1;
        batch.after = now.saturating_add(LEDGER_RETRY.as_millis() as Millis);
        let after = batch.after;
        self.put_back(alias, batch);
        after
    }

    /// CloudFront accepted the batch.
    pub fn created(&mut self, alias: &str) {
        self.calling.remove(alias);
    }

    /// CloudFront refused the batch, or gave no answer. `entries` are the
    /// distribution's pending entries (to tell a requested path from one the
    /// planner made); `jitter` is uniform in `[0, 1)`.
    pub fn failed(
        &mut self,
        alias: &str,
        batch: Batch,
        error: &InvalidatorError,
        entries: &[Entry],
        now: Millis,
        jitter: f64,
    ) -> AfterFailure {
        self.calling.remove(alias);
        let action = action(error, batch.attempts, jitter);
        let mut after = AfterFailure {
            action,
            release: created_nothing(error),
            hold: None,
            reconcile: false,
            reject: None,
        };
        let later = |d: Duration| now.saturating_add(d.as_millis() as Millis);
        match action {
            Action::Retry(d) | Action::ConfigurationFault(d) => {
                // The same batch again under the same reference: should the
                // failed call have created it, the retry finds it.
                after.hold = Some(later(d));
                self.put_back(
                    alias,
                    Batch {
                        after: later(d),
                        ..batch
                    },
                );
            }
            Action::WaitForCapacity => {
                // Dropped: the entries are still pending and are planned
                // again with the room the reconcile finds.
                after.reconcile = true;
                after.hold = Some(later(self.settings.recheck));
            }
            Action::NewReference => {
                tracing::error!(distribution = %alias, reference = %batch.reference, "CallerReference reused with other paths: a bug; replanning under a new reference");
            }
            Action::Isolate | Action::Split => {
                after.reject = self.split(alias, batch.paths, entries, now);
            }
        }
        after
    }

    /// Plans a new batch from `entries` within `capacity` and `remaining`
    /// budget, following `on_exhausted` once the budget is spent.
    fn plan(
        &self,
        entries: &[Entry],
        capacity: Capacity,
        remaining: u64,
        strategy: planner::Strategy<'_>,
    ) -> Planned {
        let settings = &self.settings.planner;
        let policy = self.settings.on_exhausted;
        if remaining == 0 {
            match policy {
                OnExhausted::Hold => return Planned::Nothing(Wait::Budget),
                OnExhausted::Coalesce => {
                    let Some(path) = planner::single_covering(entries, settings) else {
                        return Planned::Nothing(Wait::Capacity);
                    };
                    let (exact, wildcard) = if path.is_wildcard() { (0, 1) } else { (1, 0) };
                    if !capacity.fits(exact, wildcard) {
                        return Planned::Nothing(Wait::Capacity);
                    }
                    // No path covers a tag: what it does not cover waits.
                    let covered = entries.iter().filter(|e| path.covers(&e.path)).count();
                    tracing::warn!(path = %path, requested = covered, "budget spent: one path covers the batch (overspending by one)");
                    let blast = match strategy {
                        planner::Strategy::Threshold { catalog: Some(c) }
                        | planner::Strategy::LeastBlast { catalog: c, .. } => {
                            planner::least_blast::blast(std::slice::from_ref(&path), entries, c)
                        }
                        planner::Strategy::Threshold { catalog: None } => 0,
                    };
                    return Planned::Paths {
                        paths: vec![path],
                        requested: covered,
                        deferred: covered < entries.len(),
                        blast,
                    };
                }
                OnExhausted::Overspend => {}
            }
        }
        let budgeted = Capacity {
            paths: usize::try_from(remaining).unwrap_or(usize::MAX),
            ..capacity
        };
        let mut plan = planner::plan_with(entries, budgeted, settings, strategy);
        if policy == OnExhausted::Coalesce
            && capacity.wildcard > 0
            && plan.figures.wildcard == capacity.wildcard
        {
            // Once the budget is spent, a batch can only go as one covering
            // wildcard, and a narrow wildcard in the last slot would hold it
            // back for a whole invalidation's time in progress: keep that
            // slot for it. Always, not only in the batch that spends the
            // budget: a batch that takes every slot and leaves a little
            // budget is followed by one that spends the rest on exact
            // paths, and the cover then finds no slot.
            let kept = Capacity {
                wildcard: capacity.wildcard - 1,
                ..budgeted
            };
            plan = planner::plan_with(entries, kept, settings, strategy);
        }
        if policy == OnExhausted::Overspend && (remaining == 0 || !plan.deferred.is_empty()) {
            plan = planner::plan_with(entries, capacity, settings, strategy);
            if plan.figures.billed() as u64 > remaining {
                tracing::warn!(
                    billed = plan.figures.billed(),
                    remaining,
                    "budget spent: overspending as configured"
                );
            }
        }
        if plan.paths.is_empty() {
            return Planned::Nothing(Wait::Capacity);
        }
        Planned::Paths {
            requested: entries.len() - plan.deferred.len(),
            deferred: !plan.deferred.is_empty(),
            blast: plan.figures.blast,
            paths: plan.paths,
        }
    }

    fn new_batch(&mut self, alias: &str, paths: Vec<CfPath>, now: Millis) -> Batch {
        self.next_number += 1;
        Batch {
            number: self.next_number,
            reference: caller_reference_of(
                self.owner.as_deref(),
                alias,
                &self.run,
                self.next_number,
                &paths,
            ),
            requested: paths.len(),
            paths,
            blast: 0,
            attempts: 0,
            first_sent_at: now,
            after: now,
        }
    }

    fn put_back(&mut self, alias: &str, batch: Batch) {
        self.queued
            .entry(alias.to_owned())
            .or_default()
            .push_front(batch);
    }

    /// CloudFront refused a batch that passed validation (InvalidArgument),
    /// or found it too large (BatchTooLarge). Halves go out as batches of
    /// their own, so a bad path is found in a logarithmic number of calls
    /// while the good ones are submitted. A single refused path that was
    /// requested is the offender (returned, for its messages to be
    /// rejected). A single refused wildcard the planner made goes out again
    /// as the requested paths under it.
    fn split(
        &mut self,
        alias: &str,
        paths: Vec<CfPath>,
        entries: &[Entry],
        now: Millis,
    ) -> Option<CfPath> {
        let mut parts: Vec<Vec<CfPath>> = Vec::new();
        let mut offender = None;
        if paths.len() > 1 {
            let mut first = paths;
            let second = first.split_off(first.len() / 2);
            parts.push(first);
            parts.push(second);
        } else if let Some(path) = paths.into_iter().next() {
            let requested: Vec<CfPath> = entries
                .iter()
                .map(|e| e.path.clone())
                .filter(|p| path.covers(p))
                .collect();
            // Requested itself (a tag in any case: the two cover each
            // other): the offender.
            if requested.iter().any(|p| p.covers(&path)) {
                // Other requests under a refused wildcard are planned anew.
                offender = Some(path);
            } else if !requested.is_empty() {
                tracing::warn!(distribution = %alias, paths = requested.len(), "CloudFront refused a wildcard; submitting the requested paths under it instead");
                parts.push(requested);
            }
        }
        let batches: Vec<Batch> = parts
            .into_iter()
            .map(|p| self.new_batch(alias, p, now))
            .collect();
        for b in batches.into_iter().rev() {
            self.put_back(alias, b);
        }
        offender
    }
}

/// What planning a new batch gave.
enum Planned {
    Paths {
        paths: Vec<CfPath>,
        requested: usize,
        /// Some entries did not fit and wait.
        deferred: bool,
        blast: u64,
    },
    Nothing(Wait),
}

#[cfg(test)]
mod tests;
