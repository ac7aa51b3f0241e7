//! The budget: the month's path spending, kept in a durable ledger that is
//! written before CreateInvalidation is called (the crash-safety guarantee in docs/interface.md).
//!
//! The submitter's steps, each one call that is durable before it returns:
//!
//! 1. [`Budget::reserve`] the batch's paths under its CallerReference; a
//!    reservation counts as spent at once, so [`Budget::used`] never
//!    under-counts whatever happens to the call.
//! 2. Call CreateInvalidation.
//! 3. Accepted: [`Budget::commit`] (the reservation becomes plain spending).
//!    Definitely refused (CloudFront answered an error that means nothing
//!    was created): [`Budget::release`] (the paths are given back). Outcome
//!    unknown (timeout, crash): nothing; the paths stay spent.
//!
//! After a crash, [`Budget::open`] lists the reservations that were open as
//! [`Budget::unconfirmed`]: still spent, to be reconciled with CloudFront by
//! CallerReference ([`Budget::confirm`], [`Budget::refund`]).
//!
//! Save failures: the in-memory state is replaced only after the store
//! confirmed the save, so memory always equals the last durable state. A
//! failed `reserve` therefore leaves nothing reserved (the daemon must not
//! call CloudFront); a failed `commit`, `release`, `refund`, `confirm` or
//! `count_external` leaves everything as it was (for `release` and
//! `refund` the paths stay spent, the safe direction) and may be retried; a
//! failed rollover keeps reporting the old month. If a store reports a
//! failure after all (the file was renamed but the folder fsync failed),
//! disk holds the newer state: a reservation the daemon then never used, a
//! release or commit that was true anyway; none of these under-counts.
//!
//! Months: spending is counted per UTC calendar month ([`Month`]). A
//! reservation counts in the month it was made in; one made within
//! [`CARRY_WINDOW`] before a month's end also counts in the next month,
//! because its call may reach CloudFront (and be billed) after midnight.
//! That over-counts at most the batches open at midnight, never
//! under-counts.
//!
//! [`LedgerStore`] hides where the ledger lives: [`FileStore`] for one
//! machine, a shared store (DynamoDB) later for several replicas.
//!
//! `Budget`'s methods are synchronous and, with [`FileStore`], block for
//! one small file write and two fsyncs; time is always passed in.

#[doc(hidden)]
pub mod contract;
mod dynamo;
mod file;
mod ledger;
mod month;
mod price;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{BudgetConfig, OnExhausted};

pub use self::dynamo::DynamoStore;
pub use self::file::{FileStore, file_for_account};
pub use self::ledger::{
    HISTORY_MONTHS, LEDGER_VERSION, LedgerError, LedgerState, LedgerStore, MemoryStore,
    MonthRecord, Reservation,
};
pub use self::month::{MAX_YEAR, MIN_YEAR, Month, ParseMonthError, allowance};
pub use self::price::{Ahead, PriceController, PriceState, Tuning, ahead_price, lower_hull};

/// The stores the daemon runs on: the file or DynamoDB in production,
/// memory in tests.
#[derive(Clone, Debug)]
pub enum AnyStore {
    File(FileStore),
    Memory(MemoryStore),
    Dynamo(DynamoStore),
}

impl LedgerStore for AnyStore {
    fn load(&self) -> Result<Option<LedgerState>, LedgerError> {
        match self {
            AnyStore::File(s) => s.load(),
            AnyStore::Memory(s) => s.load(),
            AnyStore::Dynamo(s) => s.load(),
        }
    }

    fn save(&self, state: &LedgerState) -> Result<(), LedgerError> {
        match self {
            AnyStore::File(s) => s.save(state),
            AnyStore::Memory(s) => s.save(state),
            AnyStore::Dynamo(s) => s.save(state),
        }
    }

    fn location(&self) -> String {
        match self {
            AnyStore::File(s) => s.location(),
            AnyStore::Memory(s) => s.location(),
            AnyStore::Dynamo(s) => s.location(),
        }
    }
}

/// Whether `state`'s history is one of closed months: each before the
/// ledger's month and after the one before it. A ledger this module wrote
/// always is; a hand-made one may not be, and merged as it is, its entries
/// for later months would push real ones out of the history ([`merge`]
/// keeps the last [`HISTORY_MONTHS`]). The error says which entry.
pub fn check_history(state: &LedgerState) -> Result<(), String> {
    let mut before: Option<Month> = None;
    for record in &state.history {
        if record.month >= state.month {
            return Err(format!(
                "its history has an entry for {}, which is not before the ledger's month {}",
                record.month, state.month
            ));
        }
        if let Some(previous) = before
            && record.month <= previous
        {
            return Err(format!(
                "its history has an entry for {} after the one for {}: entries must be \
                 oldest first, one a month",
                record.month, previous
            ));
        }
        before = Some(record.month);
    }
    Ok(())
}

/// `source` merged into `target` without lowering anything `target`
/// counts: both are first rolled to the later of their months, then each
/// figure is the larger of the two, open reservations and counted ids are
/// united, and each closed month keeps the larger figures (`cfpurge ledger
/// import`). Neither ledger's month may be ahead of the clock, and the
/// source's history must pass [`check_history`]: the caller checks both.
/// The history keeps the [`HISTORY_MONTHS`] months before the merged
/// month, as rolling over does; no entry of `target` within them is lost.
pub fn merge(target: &LedgerState, source: &LedgerState) -> LedgerState {
    let month = target.month.max(source.month);
    let (mut merged, mut other) = (target.clone(), source.clone());
    roll_to(&mut merged, month);
    roll_to(&mut other, month);
    merged.spent = merged.spent.max(other.spent);
    merged.external = merged.external.max(other.external);
    for (reference, r) in other.reservations {
        merged.reservations.entry(reference).or_insert(r);
    }
    merged.external_seen.extend(other.external_seen);
    for record in other.history {
        match merged.history.iter_mut().find(|r| r.month == record.month) {
            Some(mine) => {
                mine.spent = mine.spent.max(record.spent);
                mine.external = mine.external.max(record.external);
            }
            None => merged.history.push(record),
        }
    }
    merged.history.sort_by_key(|r| r.month);
    // The window before the merged month, not a count: an entry at or
    // after it (only a malformed source has one) must not push out a real
    // month.
    let oldest = (0..HISTORY_MONTHS).fold(month, |m, _| m.previous());
    merged
        .history
        .retain(|r| r.month >= oldest && r.month < month);
    // The price of whichever ledger was updated last.
    merged.price = [target.price, source.price]
        .into_iter()
        .flatten()
        .max_by_key(|p| (p.month, p.at));
    merged
}

/// The budget's figures as `/v1/status` shows them (its `budget` block, one
/// per account).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct BudgetStatus {
    /// The calendar month (UTC) the figures are for, `YYYY-MM`.
    pub month: String,
    /// `budget.monthly_paths`.
    pub limit: u64,
    /// Paths spent this month as the ledger knows them.
    pub used: u64,
    /// Paths the pacing allows to have been spent by now.
    pub allowed: u64,
    /// `budget.on_exhausted`: `hold`, `coalesce` or `overspend`.
    pub policy: String,
    /// The even pace by now: `monthly_paths` times the share of the month
    /// passed (`allowed` without `burst_paths`), what `used` is held to.
    pub pace: u64,
    /// Unrequested objects one billed path is worth for the batch planned
    /// now: the budget's price under `pacing = "even"`,
    /// `coalesce.blast_per_path` under `"none"`.
    pub price: f64,
    /// The part of `used` held by reservations whose CreateInvalidation is
    /// not known to have been created: a call under way, or one whose
    /// answer was lost (a timeout, a 5xx, a refused connection), kept as
    /// spent on doubt until CloudFront confirms it or a scan of the month
    /// proves it was never made. `used - reserved` is what CloudFront is
    /// known to have accepted (other tools' paths included).
    pub reserved: u64,
}

// The price is always finite (the controller clamps it, and JSON has no
// NaN or infinity), so equality is an equivalence, as `Status`'s `Eq` needs.
impl Eq for BudgetStatus {}

/// The `budget` block of `/v1/status` for a ledger read from a store
/// without holding it (a standby): its figures as of `now`'s month.
pub fn status_of(
    config: &BudgetConfig,
    state: &LedgerState,
    now: SystemTime,
    blast_per_path: f64,
) -> BudgetStatus {
    let price = match (config.pacing, state.price) {
        (crate::config::Pacing::Even, Some(p)) => p.price,
        _ => blast_per_path,
    };
    let mut state = state.clone();
    roll_to(&mut state, Month::of(now));
    let now = now.max(state.month.start());
    BudgetStatus {
        month: state.month.to_string(),
        limit: config.monthly_paths,
        used: state.spent.saturating_add(state.external),
        allowed: allowance(config, now),
        policy: config.on_exhausted.as_str().to_owned(),
        pace: even_pace(config, state.month, now),
        price,
        reserved: reserved_paths(&state),
    }
}

/// Paths of `state`'s open reservations (counted in `spent` until settled).
pub fn reserved_paths(state: &LedgerState) -> u64 {
    state
        .reservations
        .values()
        .fold(0u64, |sum, r| sum.saturating_add(r.paths))
        .min(state.spent)
}

/// `monthly_paths` times the share of `month` passed at `now`: the even
/// pace without `burst_paths`.
fn even_pace(config: &BudgetConfig, month: Month, now: SystemTime) -> u64 {
    (config.monthly_paths as f64 * month.elapsed_fraction(now).clamp(0.0, 1.0)).floor() as u64
}

/// A reservation made this close before a month's end also counts in the
/// next month: its CreateInvalidation call (with the SDK's retries) may
/// reach CloudFront after midnight and be billed there.
pub const CARRY_WINDOW: Duration = Duration::from_secs(15 * 60);

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// The month a reservation was made in, and the month it also counts in
/// because it was made within [`CARRY_WINDOW`] of that month's end (the
/// same month when it was not).
fn counted_months(reservation: &Reservation) -> (Month, Month) {
    let at = UNIX_EPOCH + Duration::from_secs(reservation.at);
    (Month::of(at), Month::of(at + CARRY_WINDOW))
}

fn counts_in(reservation: &Reservation, month: Month) -> bool {
    let (made, carried) = counted_months(reservation);
    made == month || carried == month
}

/// Closes the ledger's months up to `target` (no-op when `target` is not
/// later). Each closed month goes to the history, months in between
/// included with zero spending (so the history has no gaps); the new month
/// starts with the reservations that count in it. Reservations older than
/// the history are forgotten: they can no longer change a figure the
/// ledger shows.
fn roll_to(state: &mut LedgerState, target: Month) {
    if target <= state.month {
        return;
    }
    while state.month < target {
        state.history.push(MonthRecord {
            month: state.month,
            spent: state.spent,
            external: state.external,
        });
        let month = state.month.next();
        state.month = month;
        state.spent = state
            .reservations
            .values()
            .filter(|r| counts_in(r, month))
            .map(|r| r.paths)
            .fold(0, u64::saturating_add);
        state.external = 0;
        state.external_seen.clear();
    }
    let excess = state.history.len().saturating_sub(HISTORY_MONTHS);
    state.history.drain(..excess);
    let oldest = state.history.first().map_or(state.month, |r| r.month);
    state
        .reservations
        .retain(|_, r| counted_months(r).1 >= oldest);
}

/// Gives a reservation's paths back in every month it counts in that the
/// ledger still shows (the current one, or a closed one in the history).
fn give_back(state: &mut LedgerState, reservation: &Reservation) {
    let (made, carried) = counted_months(reservation);
    let months: &[Month] = if made == carried {
        &[made]
    } else {
        &[made, carried]
    };
    for &month in months {
        if month == state.month {
            state.spent = state.spent.saturating_sub(reservation.paths);
        } else if let Some(record) = state.history.iter_mut().find(|r| r.month == month) {
            record.spent = record.spent.saturating_sub(reservation.paths);
        }
    }
}

/// The month's path budget: the ledger's state, the store that keeps it,
/// and the `[budget]` configuration that sets the allowance.
#[derive(Debug)]
pub struct Budget<S> {
    store: S,
    config: BudgetConfig,
    /// Always the state the store last saved successfully.
    state: LedgerState,
    /// References of the reservations found open by `open`: left by an
    /// earlier process, outcome unknown.
    unconfirmed: BTreeSet<String>,
    /// The price controller's memory waiting to go out with the next save
    /// ([`Budget::stage_price`]).
    staged_price: Option<PriceState>,
}

impl<S: LedgerStore> Budget<S> {
    /// Loads the ledger (or starts an empty one for `now`'s month), rolls
    /// it over to `now`'s month, and saves it once, so that a store that
    /// cannot be written fails here, at start-up, rather than at the first
    /// batch.
    ///
    /// Reservations found open were left by a crash: their outcome is
    /// unknown, so they stay counted as spent (in the month they were made
    /// in) and are listed by [`Budget::unconfirmed`].
    ///
    /// A ledger for a month after `now`'s is refused
    /// ([`LedgerError::AheadOfClock`]): it was saved while the clock was
    /// ahead, and taking it would under-count the current month.
    pub fn open(store: S, config: BudgetConfig, now: SystemTime) -> Result<Self, LedgerError> {
        let clock = Month::of(now);
        let mut state = match store.load()? {
            Some(state) if state.month > clock => {
                return Err(LedgerError::AheadOfClock {
                    location: store.location(),
                    month: state.month,
                    now: clock,
                });
            }
            Some(state) => state,
            None => LedgerState::new(clock),
        };
        // `reserve` adds to `spent` in the same save, so this changes nothing
        // for a ledger this module wrote; it guards a hand-edited one.
        let reserved = state
            .reservations
            .values()
            .filter(|r| counts_in(r, state.month))
            .map(|r| r.paths)
            .fold(0, u64::saturating_add);
        state.spent = state.spent.max(reserved);
        roll_to(&mut state, Month::of(now));
        store.save(&state)?;
        let unconfirmed = state.reservations.keys().cloned().collect();
        Ok(Budget {
            store,
            config,
            state,
            unconfirmed,
            staged_price: None,
        })
    }

    /// Saves `next` and, only once that succeeded, makes it the state.
    fn persist(&mut self, mut next: LedgerState) -> Result<(), LedgerError> {
        if let Some(price) = self.staged_price {
            next.price = Some(price);
        }
        self.store.save(&next)?;
        self.state = next;
        self.staged_price = None;
        Ok(())
    }

    /// Keeps the price controller's memory with the ledger. It goes out
    /// with the next save (the next reservation, commit or rollover), not
    /// on a write of its own: a controller resumed from an older state
    /// catches up on the spending and the time since
    /// ([`PriceController::advance`]), so a write per batch would buy
    /// little and cost a disk or DynamoDB write.
    pub fn stage_price(&mut self, price: PriceState) {
        self.staged_price = Some(price);
    }

    /// The price controller's memory: the one staged, else the one last
    /// saved (`None` in a ledger that never had one).
    pub fn price_state(&self) -> Option<PriceState> {
        self.staged_price.or(self.state.price)
    }

    /// Moves to `now`'s month if it is later than the ledger's: the
    /// month closes into the history and spending starts again from the
    /// reservations that count in the new month. A new month begins at
    /// 00:00:00 UTC on the first. Idempotent, and a no-op for an earlier
    /// or the same month (the ledger never goes back). A daemon that was
    /// down for several months records each of them, the empty ones with
    /// zero. Returns whether the month changed.
    pub fn rollover(&mut self, now: SystemTime) -> Result<bool, LedgerError> {
        let target = Month::of(now);
        if target <= self.state.month {
            return Ok(false);
        }
        let mut next = self.state.clone();
        roll_to(&mut next, target);
        self.persist(next)?;
        Ok(true)
    }

    /// Sets `paths` aside for the batch with CallerReference `reference` on
    /// `distribution`, durably; they count as spent from now on. Rolls the
    /// month over first when `now` is in a later one. Call it before
    /// CreateInvalidation, and call CloudFront only if it returned `Ok`.
    ///
    /// It does not check the allowance: the caller decides with
    /// [`Budget::remaining`] and its `on_exhausted` policy. Reserving again
    /// a reference that is open with the same distribution and paths (a
    /// retry of the same batch) changes nothing; with other figures it is
    /// [`LedgerError::ReferenceInUse`].
    pub fn reserve(
        &mut self,
        reference: &str,
        distribution: &str,
        paths: u64,
        now: SystemTime,
    ) -> Result<(), LedgerError> {
        let mut next = self.state.clone();
        roll_to(&mut next, Month::of(now));
        if let Some(open) = next.reservations.get(reference) {
            if open.distribution != distribution || open.paths != paths {
                return Err(LedgerError::ReferenceInUse {
                    reference: reference.to_owned(),
                    distribution: open.distribution.clone(),
                    paths: open.paths,
                });
            }
            if next != self.state {
                self.persist(next)?;
            }
            // The daemon is settling it now, like any live reservation.
            self.unconfirmed.remove(reference);
            return Ok(());
        }
        // A clock that went back still reserves in the ledger's month.
        let at = unix_seconds(now.max(next.month.start()));
        next.reservations.insert(
            reference.to_owned(),
            Reservation {
                distribution: distribution.to_owned(),
                paths,
                at,
            },
        );
        next.spent = next.spent.saturating_add(paths);
        self.persist(next)
    }

    /// CloudFront accepted the batch: the reservation becomes plain
    /// spending (its entry is removed, the count stays). Returns `false`,
    /// saving nothing, when no reservation has this reference (already
    /// settled, or older than the history).
    pub fn commit(&mut self, reference: &str) -> Result<bool, LedgerError> {
        if !self.state.reservations.contains_key(reference) {
            return Ok(false);
        }
        let mut next = self.state.clone();
        next.reservations.remove(reference);
        self.persist(next)?;
        self.unconfirmed.remove(reference);
        Ok(true)
    }

    /// CloudFront definitely refused the batch (nothing was created): the
    /// paths are given back, in every month they were counted in. Returns
    /// `false`, saving nothing, when no reservation has this reference.
    /// Never call it when the outcome is unknown: then the paths stay spent.
    pub fn release(&mut self, reference: &str) -> Result<bool, LedgerError> {
        let Some(reservation) = self.state.reservations.get(reference) else {
            return Ok(false);
        };
        let mut next = self.state.clone();
        give_back(&mut next, reservation);
        next.reservations.remove(reference);
        self.persist(next)?;
        self.unconfirmed.remove(reference);
        Ok(true)
    }

    /// Reservations left open by an earlier process (found by
    /// [`Budget::open`]), not yet confirmed or refunded, as (CallerReference,
    /// distribution alias, paths), sorted by reference. Their paths count
    /// as spent.
    pub fn unconfirmed(&self) -> Vec<(String, String, u64)> {
        self.unconfirmed
            .iter()
            .filter_map(|reference| {
                let r = self.state.reservations.get(reference)?;
                Some((reference.clone(), r.distribution.clone(), r.paths))
            })
            .collect()
    }

    /// An unconfirmed reservation was found at CloudFront (or the daemon
    /// gives up looking): it leaves the list and stays spent. Returns
    /// `false` when the reference is not unconfirmed.
    pub fn confirm(&mut self, reference: &str) -> Result<bool, LedgerError> {
        if !self.unconfirmed.contains(reference) {
            return Ok(false);
        }
        self.commit(reference)
    }

    /// The daemon proved that an unconfirmed reservation was never created
    /// (no invalidation with its CallerReference exists): its paths are
    /// given back. The daemon may choose never to call this and keep the
    /// paths spent, which is always safe. Returns `false` when the reference
    /// is not unconfirmed.
    pub fn refund(&mut self, reference: &str) -> Result<bool, LedgerError> {
        if !self.unconfirmed.contains(reference) {
            return Ok(false);
        }
        self.release(reference)
    }

    /// Counts `paths` of another tool's invalidation `invalidation_id`,
    /// created at `created_at`, durably. Counted once per id, and only when
    /// it was created in the ledger's month (an earlier month is closed; a
    /// later one is counted by the first reconcile after the rollover).
    /// Does nothing with `count_external = false`. Returns whether it was
    /// counted now.
    pub fn count_external(
        &mut self,
        invalidation_id: &str,
        paths: u64,
        created_at: SystemTime,
    ) -> Result<bool, LedgerError> {
        if !self.config.count_external
            || Month::of(created_at) != self.state.month
            || self.state.external_seen.contains(invalidation_id)
        {
            return Ok(false);
        }
        let mut next = self.state.clone();
        next.external = next.external.saturating_add(paths);
        next.external_seen.insert(invalidation_id.to_owned());
        self.persist(next)?;
        Ok(true)
    }

    /// Paths spent this month as the ledger knows them: cfpurge's (open
    /// reservations included) plus other tools'.
    pub fn used(&self) -> u64 {
        self.state.spent.saturating_add(self.state.external)
    }

    /// cfpurge's own paths this month, open reservations included.
    pub fn spent(&self) -> u64 {
        self.state.spent
    }

    /// Other tools' paths counted this month.
    pub fn external(&self) -> u64 {
        self.state.external
    }

    /// Paths the pacing allows to have been spent by `now` ([`allowance`]).
    /// A `now` before the ledger's month (a clock that went back) counts
    /// as its start. Roll over first for a `now` in a later month, or the
    /// allowance of the new month is set against the old month's spending.
    pub fn allowed(&self, now: SystemTime) -> u64 {
        allowance(&self.config, now.max(self.state.month.start()))
    }

    /// Paths that may still be spent by `now`: [`Budget::allowed`] minus
    /// [`Budget::used`], zero when spending is ahead.
    pub fn remaining(&self, now: SystemTime) -> u64 {
        self.allowed(now).saturating_sub(self.used())
    }

    /// The month the figures are for.
    pub fn month(&self) -> Month {
        self.state.month
    }

    /// `budget.monthly_paths`.
    pub fn limit(&self) -> u64 {
        self.config.monthly_paths
    }

    /// `budget.on_exhausted`.
    pub fn policy(&self) -> OnExhausted {
        self.config.on_exhausted
    }

    /// The closed months, oldest first, at most [`HISTORY_MONTHS`].
    pub fn history(&self) -> &[MonthRecord] {
        &self.state.history
    }

    /// Open reservations (live and unconfirmed).
    pub fn open_reservations(&self) -> usize {
        self.state.reservations.len()
    }

    /// The ledger as last saved.
    pub fn state(&self) -> &LedgerState {
        &self.state
    }

    /// The store the ledger is saved to.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The `budget` block of `/v1/status` at `now`.
    /// The ledger's figures for the status; `price` is the price the
    /// caller plans at.
    pub fn status(&self, now: SystemTime, price: f64) -> BudgetStatus {
        BudgetStatus {
            month: self.state.month.to_string(),
            limit: self.limit(),
            used: self.used(),
            allowed: self.allowed(now),
            policy: self.config.on_exhausted.as_str().to_owned(),
            pace: even_pace(
                &self.config,
                self.state.month,
                now.max(self.state.month.start()),
            ),
            price,
            reserved: reserved_paths(&self.state),
        }
    }
}
