//! The core's hold on the budget ledger: the month's arithmetic in memory
//! ([`crate::budget::Budget`] over a store that only remembers), and the
//! reads and writes of the real store asked of the runner as commands.
//!
//! Every change to the ledger's state is counted. The core asks for one
//! write at a time, always of the newest state; a write that succeeded
//! makes every change up to its count durable. A CreateInvalidation waits
//! for the write of its reservation: crash safety is an ordering rule here,
//! not a blocking call. A write that failed (the disk, or a DynamoDB
//! condition: someone else wrote, or the lease moved) forgets the state in
//! memory, which is read again from the store: what the store holds is the
//! last state written, and whatever was not written errs on the safe side
//! (a reservation not yet committed stays spent).

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use crate::budget::{Budget, LedgerError, LedgerState, LedgerStore, Month, PriceController};
use crate::clock::{Millis, Now};
use crate::config::{BudgetConfig, DEFAULT_ACCOUNT};
use crate::path::CfPath;
use crate::tracker::external::Found;

/// How long to wait before trying a ledger that could not be opened or
/// written again.
pub const LEDGER_RETRY: Duration = crate::submitter::LEDGER_RETRY;

/// An invalidation a crashed process created for a reservation it left
/// open: what it covered, and when CloudFront created it.
#[derive(Clone, Debug)]
pub struct Recovered {
    pub alias: String,
    pub paths: Vec<CfPath>,
    pub created_at: Millis,
}

/// The budget's store as the core sees it: the state last read (handed to
/// [`Budget::open`]); writes only succeed in memory, the runner makes them
/// durable.
#[derive(Debug)]
pub struct Book {
    loaded: Option<LedgerState>,
    location: String,
}

impl LedgerStore for Book {
    fn load(&self) -> Result<Option<LedgerState>, LedgerError> {
        Ok(self.loaded.clone())
    }

    fn save(&self, _state: &LedgerState) -> Result<(), LedgerError> {
        Ok(())
    }

    fn location(&self) -> String {
        self.location.clone()
    }
}

/// What the ledger asks of the store.
#[derive(Clone, Debug, PartialEq)]
pub enum StoreCall {
    /// Read the ledger. `epoch` comes back with the answer.
    Load { epoch: u64 },
    /// Write `state`, which holds every change up to `seq`.
    Save {
        epoch: u64,
        seq: u64,
        state: LedgerState,
    },
}

/// What a write's answer means for the batches waiting on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Written {
    /// Every change up to this count is durable.
    UpTo(u64),
    /// The write failed: nothing since the last durable write holds, and
    /// the ledger is read again.
    Failed(String),
    /// The answer of a ledger since forgotten.
    Stale,
}

/// The ledger, once open.
#[derive(Debug)]
pub struct Ledger {
    /// The account whose budget this is.
    account: String,
    config: BudgetConfig,
    /// Where the real store keeps it, for messages.
    location: String,
    budget: Option<Budget<Book>>,
    retry_at: Millis,
    /// Whether reservations a crash left open have been looked for at
    /// CloudFront since the ledger was opened.
    confirmed_leftovers: bool,
    /// Changes made in memory since the process started, and how many of
    /// them the store holds; the write under way, if any, and its count.
    changes: u64,
    written: u64,
    writing: Option<u64>,
    loading: bool,
    /// Counts the openings: answers meant for an earlier one are dropped.
    epoch: u64,
    /// Why the ledger is not usable, while it is not.
    error: Option<String>,
    /// `coalesce.blast_per_path`: where the price starts.
    blast_per_path: f64,
    /// The budget's price, while the ledger is open: made from the price
    /// state the ledger keeps, so a restart or a new leader resumes it.
    price: Option<PriceController>,
}

impl Ledger {
    pub fn new(
        account: String,
        location: String,
        config: BudgetConfig,
        blast_per_path: f64,
    ) -> Ledger {
        Ledger {
            account,
            blast_per_path,
            price: None,
            config,
            location,
            budget: None,
            retry_at: 0,
            confirmed_leftovers: false,
            changes: 0,
            written: 0,
            writing: None,
            loading: false,
            epoch: 0,
            error: None,
        }
    }

    pub fn set_location(&mut self, location: String) {
        self.location = location;
    }

    /// `[budget]` as this account applies it.
    pub fn config(&self) -> &BudgetConfig {
        &self.config
    }

    /// " of account NAME", for messages; nothing for the default account,
    /// whose messages read as they did before accounts.
    pub fn of_account(&self) -> String {
        if self.account == DEFAULT_ACCOUNT {
            String::new()
        } else {
            format!(" of account {}", self.account)
        }
    }

    /// The readiness reason of a ledger that cannot be used because of
    /// `why`.
    pub fn not_usable(&self, why: &str) -> String {
        format!(
            "the budget ledger{} is not usable: {why}",
            self.of_account()
        )
    }

    /// Forgets the open ledger: it is read again from the store (a replica
    /// that became leader, or stood down, or whose write failed). Writes
    /// and reads under way are answered into the void.
    pub fn reset(&mut self) {
        self.budget = None;
        self.price = None;
        self.retry_at = 0;
        self.confirmed_leftovers = false;
        self.loading = false;
        self.writing = None;
        self.written = self.changes;
        self.epoch += 1;
    }

    pub fn budget(&self) -> Option<&Budget<Book>> {
        self.budget.as_ref()
    }

    /// Why the ledger cannot be used now, if it cannot.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Whether the ledger is open and what a crash left in it has been
    /// looked for (or it held nothing to look for).
    pub fn settled(&self) -> bool {
        self.budget.is_some() && self.confirmed_leftovers
    }

    /// Whether a write of the ledger is under way.
    pub fn is_writing(&self) -> bool {
        self.writing.is_some()
    }

    /// When the ledger wants the loop: its retry, while it is not open.
    pub fn next_wake(&self) -> Option<Millis> {
        (self.budget.is_none() && !self.loading).then_some(self.retry_at)
    }

    /// Whether a scan of CloudFront is wanted: to count other tools' paths,
    /// or to confirm reservations a crash left open.
    pub fn wants_scan(&self) -> bool {
        self.budget.is_some() && (self.config.count_external || !self.confirmed_leftovers)
    }

    /// Asks for the ledger if it is not open and its retry time has come,
    /// rolls the month over when it has turned, and asks for the write of
    /// what changed (one write at a time).
    pub fn keep(&mut self, now: &Now) -> Option<StoreCall> {
        if self.budget.is_none() {
            if self.loading || now.mono < self.retry_at {
                return None;
            }
            self.loading = true;
            return Some(StoreCall::Load { epoch: self.epoch });
        }
        let rolled = self.budget.as_mut().map(|b| b.rollover(now.wall));
        if let Some(Ok(true)) = rolled {
            tracing::info!("a new month: the budget starts again");
            self.changed();
        }
        self.flush()
    }

    /// The write of the newest state, if it has changes the store lacks and
    /// no write is under way.
    pub fn flush(&mut self) -> Option<StoreCall> {
        let budget = self.budget.as_ref()?;
        if self.writing.is_some() || self.changes == self.written {
            return None;
        }
        self.writing = Some(self.changes);
        Some(StoreCall::Save {
            epoch: self.epoch,
            seq: self.changes,
            state: budget.state().clone(),
        })
    }

    fn changed(&mut self) -> u64 {
        self.changes += 1;
        self.changes
    }

    /// Takes the store's answer to a read: opens the ledger on it (rolled
    /// over to `now`'s month; its first write follows), or notes why not.
    pub fn loaded(
        &mut self,
        epoch: u64,
        result: Result<Option<LedgerState>, LedgerError>,
        now: &Now,
    ) {
        if epoch != self.epoch || !self.loading {
            return;
        }
        self.loading = false;
        let book = |loaded| Book {
            loaded,
            location: self.location.clone(),
        };
        let opened =
            result.and_then(|state| Budget::open(book(state), self.config.clone(), now.wall));
        let budget = match opened {
            Ok(budget) => budget,
            Err(e) => return self.failed(&e.to_string(), now),
        };
        let leftovers = budget.unconfirmed();
        if !leftovers.is_empty() {
            tracing::warn!(
                reservations = leftovers.len(),
                paths = leftovers.iter().map(|(_, _, p)| p).sum::<u64>(),
                "the ledger holds reservations a crash left open; counted as spent"
            );
        }
        tracing::info!(account = %self.account, month = %budget.month(), used = budget.used(), limit = budget.limit(), "budget ledger open");
        self.confirmed_leftovers = leftovers.is_empty();
        self.price = Some(PriceController::new(
            &self.config,
            self.blast_per_path,
            budget.price_state(),
            now.wall,
        ));
        self.budget = Some(budget);
        // Written once at opening, so that a store that cannot be written
        // is found out before the first batch waits on it.
        self.changed();
    }

    /// Takes the store's answer to a write.
    pub fn saved(
        &mut self,
        epoch: u64,
        seq: u64,
        result: Result<(), LedgerError>,
        now: &Now,
    ) -> Written {
        if epoch != self.epoch || self.writing != Some(seq) {
            return Written::Stale;
        }
        self.writing = None;
        match result {
            Ok(()) => {
                self.written = seq;
                self.error = None;
                Written::UpTo(seq)
            }
            Err(e) => {
                let why = e.to_string();
                self.failed(&why, now);
                Written::Failed(why)
            }
        }
    }

    fn failed(&mut self, why: &str, now: &Now) {
        tracing::error!(account = %self.account, error = %why, "budget ledger not usable; submitting nothing for its account until it is");
        self.reset();
        self.retry_at = now.after(LEDGER_RETRY);
        self.error = Some(why.to_owned());
    }

    /// The price a batch is planned at now: the controller's, advanced to
    /// `now` and the month's spending; `blast_per_path` while the ledger is
    /// not open (nothing is planned then) and under `pacing = "none"`.
    pub fn price(&self) -> f64 {
        self.price
            .as_ref()
            .map_or(self.blast_per_path, PriceController::price)
    }

    /// The price the batch whose curve was observed last is planned at
    /// `now` ([`crate::budget::PriceController::batch_price`]): the
    /// price, or more where the batch would take the month's spending
    /// ahead of the even pace.
    pub fn batch_price(&self, now: &Now) -> f64 {
        match (&self.budget, &self.price) {
            (Some(budget), Some(price)) => price.batch_price(now.wall, used_in_month(budget, now)),
            _ => self.price(),
        }
    }

    /// Takes a batch's least-blast curve into the price's model, until
    /// [`Ledger::forget_last_curve`]. Returns whether it was taken.
    pub fn observe_curve(&mut self, now: &Now, curve: &[(usize, u64)]) -> bool {
        self.price
            .as_mut()
            .is_some_and(|price| price.observe(now.wall, curve))
    }

    /// The batch of the last curve was not planned.
    pub fn forget_last_curve(&mut self) {
        if let Some(price) = &mut self.price {
            price.forget_last();
        }
    }

    /// Takes the time up to `now` and the month's spending into the
    /// price, and stages its state into the ledger: it is written with the
    /// next change (the reservation or the commit that follows), not on a
    /// write of its own. A controller resumed from an older state catches
    /// up on the spending and the time since, so a lost staging costs
    /// nothing but where the price met its bounds.
    pub fn advance_price(&mut self, now: &Now) {
        let (Some(budget), Some(price)) = (&mut self.budget, &mut self.price) else {
            return;
        };
        price.advance(now.wall, used_in_month(budget, now));
        budget.stage_price(price.state());
    }

    /// What a scan must skip: the invalidations already looked at this
    /// month, and where the month starts.
    pub fn scan_basis(&self) -> Option<(HashSet<String>, SystemTime)> {
        let budget = self.budget.as_ref()?;
        Some((
            budget.state().external_seen.iter().cloned().collect(),
            budget.month().start(),
        ))
    }

    /// Takes what a scan of `alias` found: other tools' paths counted once,
    /// ours remembered as seen, and reservations a crash left open
    /// confirmed. Returns the invalidations of those confirmed reservations.
    pub fn take_scan(&mut self, alias: &str, found: Vec<Found>, now: &Now) -> Vec<Recovered> {
        let mut recovered = Vec::new();
        let Some(budget) = &mut self.budget else {
            return recovered;
        };
        let leftovers: HashSet<String> = budget
            .unconfirmed()
            .into_iter()
            .map(|(reference, _, _)| reference)
            .collect();
        let mut changed = false;
        for f in found {
            let result = if f.ours {
                if leftovers.contains(&f.caller_reference) {
                    tracing::info!(distribution = %alias, invalidation = %f.id, paths = f.paths, "a reservation left by a crash was created: confirmed");
                    changed |= matches!(budget.confirm(&f.caller_reference), Ok(true));
                    recovered.push(Recovered {
                        alias: alias.to_owned(),
                        paths: f.items,
                        created_at: now.mono_of(f.created_at),
                    });
                }
                budget.count_external(&f.id, 0, f.created_at)
            } else {
                let counted = budget.count_external(&f.id, f.paths, f.created_at);
                if matches!(counted, Ok(true)) {
                    tracing::info!(distribution = %alias, invalidation = %f.id, paths = f.paths, "counted another tool's invalidation in the budget");
                }
                counted
            };
            match result {
                Ok(c) => changed |= c,
                Err(e) => {
                    tracing::warn!(error = %e, "counting an invalidation in the ledger failed; it is counted at the next scan");
                    break;
                }
            }
        }
        if changed {
            self.changed();
        }
        recovered
    }

    /// A reconcile round is over: whatever a crash left and CloudFront did
    /// not show stays spent.
    pub fn round_over(&mut self) {
        if self.budget.is_some() {
            self.confirmed_leftovers = true;
        }
    }

    /// Reserves `paths` under `reference` in memory; returns the count of
    /// changes whose write makes it durable. CloudFront is called only once
    /// that write succeeded.
    pub fn reserve(
        &mut self,
        reference: &str,
        alias: &str,
        paths: u64,
        now: &Now,
    ) -> Result<u64, String> {
        let reserved = match &mut self.budget {
            Some(budget) => budget.reserve(reference, alias, paths, now.wall),
            None => return Err("the budget ledger is not open".to_owned()),
        };
        match reserved {
            Ok(()) => Ok(self.changed()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The batch was created: the reservation becomes spending, and the
    /// invalidation is ours (a later scan must not count it).
    pub fn commit(&mut self, reference: &str, id: &str, created_at: SystemTime) {
        let Some(budget) = &mut self.budget else {
            return;
        };
        // Should the commit not be written, the reservation stays: spent.
        if let Err(e) = budget.commit(reference) {
            tracing::warn!(error = %e, "recording the spending failed; the reservation counts as spent");
        }
        if let Err(e) = budget.count_external(id, 0, created_at) {
            tracing::debug!(error = %e, "remembering our invalidation failed; a scan skips it by its reference");
        }
        self.changed();
    }

    /// CloudFront certainly created nothing: the reservation goes back.
    pub fn release(&mut self, reference: &str) {
        let Some(budget) = &mut self.budget else {
            return;
        };
        match budget.release(reference) {
            Ok(true) => {
                self.changed();
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "giving a refused batch's reservation back failed; it stays spent")
            }
        }
    }
}

/// What `budget` has spent in `now`'s month: before the month's rollover
/// is written, nothing counts in it yet.
fn used_in_month(budget: &Budget<Book>, now: &Now) -> u64 {
    if budget.month() < Month::of(now.wall) {
        0
    } else {
        budget.used()
    }
}
