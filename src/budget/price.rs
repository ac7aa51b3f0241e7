//! The price of a billed path under `pacing = "even"`: the budget's
//! shadow price, learned online. Each batch is planned to minimise
//! `blast + price × billed`; the best price for a month is the one at which
//! its batches spend the budget, which is not known until the month is
//! over. So the price is a Lagrange multiplier updated by dual descent (the
//! online mirror descent of Balseiro, Lu and Mirrokni for online allocation
//! with budgets, with the entropy mirror map, so the steps are
//! multiplicative): as spending and time pass, its logarithm moves by
//! `step × (spent − paced) / monthly_paths`. `paced` is what the budget
//! left would allow over the same time if spread evenly over the rest of
//! the month (`(monthly_paths − used) × elapsed / time left`, at most
//! [`Tuning::rate_cap`] months' budget per month): spending ahead of that
//! pace raises the price, lagging lowers it. Measured against what is left
//! rather than against the month's even share, a month that lags is not
//! kept in debt: what it did not spend raises the pace of the rest, so the
//! price falls until the month's budget is spent where it saves the most,
//! instead of being left over at the month's end. Pure: time and the
//! ledger's figures are handed in.
//!
//! The memory is what sets it apart from a price computed from the
//! instantaneous lead alone: the price is clamped to its bounds on every
//! update, and a month starts from the price the last one ended on, kept
//! with the ledger ([`PriceState`]), so a restart or a new leader resumes
//! it. The first month starts from `blast_per_path`.
//!
//! The price only steers: the even-pacing allowance (with `burst_paths`)
//! stays the hard limit the planner's capacity enforces. That makes a price
//! too low cheap (a batch that wants more than the allowance leaves gets
//! the least-blast cover within it) and a price too high dear (the budget
//! left at the month's end is lost), so the bounds sit far below
//! `blast_per_path` and moderately above it:
//!
//! - **Floor** [`Tuning::floor`] (1/20 blast per path): at that price a
//!   wildcard is only chosen where it saves at least 20 billed paths per
//!   unrequested object it purges, so where the budget does not bind the
//!   free paths go to exact paths and the blast is near zero. A lower floor
//!   made things worse on the traces measured: where a month that had run
//!   at the floor then met a storm, the price took longer to climb back.
//! - **Ceiling** `blast_per_path ×` [`Tuning::ceiling_factor`] (1,024).
//!
//! The step, [`Tuning::step`], is 8 e-folds of the price per
//! `monthly_paths` of lead: 1/8 of the month's budget spent ahead of the
//! pace multiplies the price by e. Chosen on the astro-docs trace and
//! generated traces (steady, storms early and late in the month, a month of
//! ten times the traffic) against the offline optimum
//! (`planner::optimum`): half of it left the price too slow to leave
//! `blast_per_path` in a first month that does not bind, twice of it made
//! it swing with the day-to-day traffic of the astro trace.
//!
//! Under `pacing = "none"` the price is `blast_per_path` and never moves.
//!
//! The runner keeps one controller per budget (distributions sharing a
//! budget share its price) and calls [`PriceController::advance`] with the
//! ledger's [`super::Budget::used`] before planning each batch and after
//! reserving it; [`PriceController::price`] is the price to plan at.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::month::Month;
use crate::config::{BudgetConfig, Pacing};

/// How fast and how far the price moves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tuning {
    /// E-folds of the price per `monthly_paths` paths of lead (or lag)
    /// against the even pace.
    pub step: f64,
    /// The lowest price, in blast per billed path.
    pub floor: f64,
    /// The highest price, as a multiple of `blast_per_path`.
    pub ceiling_factor: f64,
    /// The fastest pace the budget left is measured against, in months'
    /// budgets per month: near the month's end the budget left spread over
    /// the time left grows without bound, and so would the fall of the
    /// price.
    pub rate_cap: f64,
}

impl Tuning {
    /// The tuning the daemon runs with.
    pub const DEFAULT: Tuning = Tuning {
        step: 8.0,
        floor: 0.05,
        ceiling_factor: 1024.0,
        rate_cap: 4.0,
    };
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning::DEFAULT
    }
}

/// The controller's memory, kept with the ledger
/// ([`super::LedgerState::price`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceState {
    /// The month `counted` is for.
    pub month: Month,
    /// The price, in unrequested objects purged per billed path.
    pub price: f64,
    /// Unix seconds up to which the pace has been taken into account.
    pub at: u64,
    /// The month's spending (the ledger's `used`) already taken into
    /// account.
    pub counted: u64,
}

// The price is always finite: the controller clamps it and JSON has no NaN
// or infinity, so equality is an equivalence, as the ledger's `Eq` needs.
impl Eq for PriceState {}

/// The price of a path for one budget, with its memory.
#[derive(Clone, Debug)]
pub struct PriceController {
    state: PriceState,
    blast_per_path: f64,
    monthly_paths: u64,
    pacing: Pacing,
    tuning: Tuning,
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

fn time_of(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

impl PriceController {
    /// The controller for a budget configured by `config`, with
    /// `coalesce.blast_per_path`, resuming `stored` (the ledger's
    /// [`super::LedgerState::price`]) when there is one, at `now`. A stored
    /// price outside the bounds (another tuning, another `blast_per_path`)
    /// is brought within them; one for a later month than `now`'s (a clock
    /// that went back) is taken as it is and not advanced until the clock
    /// reaches that month.
    pub fn new(
        config: &BudgetConfig,
        blast_per_path: f64,
        stored: Option<PriceState>,
        now: SystemTime,
    ) -> PriceController {
        PriceController::with_tuning(config, blast_per_path, stored, now, Tuning::DEFAULT)
    }

    /// [`PriceController::new`] with another tuning (for replays that
    /// compare tunings).
    pub fn with_tuning(
        config: &BudgetConfig,
        blast_per_path: f64,
        stored: Option<PriceState>,
        now: SystemTime,
        tuning: Tuning,
    ) -> PriceController {
        let month = Month::of(now);
        let fresh = PriceState {
            month,
            price: blast_per_path,
            at: unix_seconds(now.max(month.start())),
            counted: 0,
        };
        let mut controller = PriceController {
            state: stored.unwrap_or(fresh),
            blast_per_path,
            monthly_paths: config.monthly_paths,
            pacing: config.pacing,
            tuning,
        };
        controller.state.price = controller.clamp(controller.state.price);
        controller
    }

    /// The lowest and highest price.
    pub fn bounds(&self) -> (f64, f64) {
        let floor = self.tuning.floor.min(self.blast_per_path);
        let ceiling = self.blast_per_path * self.tuning.ceiling_factor.max(1.0);
        (floor, ceiling)
    }

    fn clamp(&self, price: f64) -> f64 {
        let (floor, ceiling) = self.bounds();
        if price.is_nan() {
            return self.blast_per_path.clamp(floor, ceiling);
        }
        price.clamp(floor, ceiling)
    }

    /// The price to plan the next batch at: `blast_per_path` under
    /// `pacing = "none"`.
    pub fn price(&self) -> f64 {
        match self.pacing {
            Pacing::None => self.blast_per_path,
            Pacing::Even => self.state.price,
        }
    }

    /// The memory to keep with the ledger.
    pub fn state(&self) -> PriceState {
        self.state
    }

    /// Takes the time up to `now` and the month's spending `used` (the
    /// ledger's [`super::Budget::used`], rolled over to `now`'s month) into
    /// account. Call it before planning a batch and after reserving one;
    /// calling it more often changes nothing but where the price meets its
    /// bounds. When `now` is in a later month than the last call's, the rest
    /// of that month counts as lag on what it had spent by the last call,
    /// and the new month starts from the price it ended on.
    pub fn advance(&mut self, now: SystemTime, used: u64) {
        if self.pacing == Pacing::None {
            return;
        }
        let month = Month::of(now);
        if month < self.state.month {
            return;
        }
        if month > self.state.month {
            let end = unix_seconds(self.state.month.end());
            let lag = self.paced(self.state.month, self.state.counted, self.state.at, end);
            self.step(-lag);
            self.state.month = month;
            self.state.at = unix_seconds(month.start());
            self.state.counted = 0;
        }
        let at = unix_seconds(now).max(self.state.at);
        let paced = self.paced(month, self.state.counted, self.state.at, at);
        // A release gives paths back: spending below what was counted.
        let spent = used as f64 - self.state.counted as f64;
        self.step(spent - paced);
        self.state.at = at;
        self.state.counted = used;
    }

    /// Paths the pace allows in `month` from `from` to `to` (Unix
    /// seconds) with `used` spent at `from`: the budget left spread evenly
    /// over the time left, `(monthly − used) / (1 − s)` per month at the
    /// share `s` of the month passed, at most `rate_cap × monthly`. Its
    /// integral, so the answer does not depend on how often it is asked:
    /// `left × ln((1 − a) / (1 − b))` while under the cap, then the cap.
    fn paced(&self, month: Month, used: u64, from: u64, to: u64) -> f64 {
        let share = |s: u64| month.elapsed_fraction(time_of(s));
        let (a, b) = (share(from), share(to));
        if b <= a {
            return 0.0;
        }
        let monthly = self.monthly_paths as f64;
        let left = (monthly - used as f64).max(0.0);
        let cap = self.tuning.rate_cap.max(1.0) * monthly;
        // Where the spread of what is left reaches the cap.
        let capped_from = if cap > 0.0 { 1.0 - left / cap } else { 0.0 };
        let mut paced = 0.0;
        let end = b.min(capped_from);
        if left > 0.0 && end > a {
            paced += left * ((1.0 - a) / (1.0 - end)).ln();
        }
        let start = a.max(capped_from);
        if b > start {
            paced += cap * (b - start);
        }
        paced
    }

    fn step(&mut self, lead: f64) {
        let scale = self.monthly_paths.max(1) as f64;
        let moved = self.state.price.ln() + self.tuning.step * lead / scale;
        self.state.price = self.clamp(moved.exp());
    }
}

#[cfg(test)]
#[path = "price_tests.rs"]
mod tests;
