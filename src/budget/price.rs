//! The price of a billed path under `pacing = "even"`: the budget's
//! shadow price, learned online. Each batch is planned to minimise
//! `blast + price × billed`; the best price for a month is the one at which
//! its batches spend the budget, which is not known until the month is
//! over. Three estimates:
//!
//! - **The model price.** Each batch's least-blast curve (the least blast
//!   at every billed count) is handed in before it is planned
//!   ([`PriceController::observe`]) and kept for [`Tuning::window`] (10
//!   days). The price is the least one at which those batches, each planned
//!   at it, would have billed no more than the pace allows over as long.
//!   The pace is the budget left spread over the month left (at most
//!   [`Tuning::rate_cap`] months' budget a month): a month that lags is not
//!   kept in debt, what it did not spend lowers the price of the rest. A
//!   batch's choice at a price is a point of its curve's lower convex hull,
//!   so the spending falls as the price rises, and the price is found by
//!   bisection. Where even the ceiling leaves the batches above the pace,
//!   the price is the least at which each takes its fewest paths (no
//!   higher: beyond it a price only makes the next batch purge more).
//! - **The hindsight price.** The one price which, each batch of the last
//!   [`Tuning::hindsight`] (45 days) planned at it within the even-pacing
//!   allowance of a month as long, would have purged least; moved by
//!   [`Tuning::hindsight_step`] e-folds per month's budget of lead on the
//!   even pace. Until a whole window has been seen, the days seen (at
//!   least one) stand for it, with their share of the budget. The price
//!   is the lower of the two: the model asks for the pace to be met, the
//!   hindsight only for what meeting it saves (batches alike in what a
//!   path saves are rationed by the allowance as well as by a price, and
//!   at the floor more of them get their exact paths).
//! - **Dual descent**, the memory: the price that was kept with the ledger
//!   ([`PriceState`]), its logarithm moved by `step × (spent − paced) /
//!   monthly_paths` as spending and time pass (the online mirror descent of
//!   Balseiro, Lu and Mirrokni for allocation under a budget, with the
//!   entropy mirror map). A restart or a new leader resumes it; the first
//!   month starts from `blast_per_path`.
//!
//! The price leans on the memory while the models have seen little, their
//! weight (in logarithm) growing from 0 to 1 over [`Tuning::ramp`] (10
//! days) after a restart, as the curves are not kept with the ledger and a
//! week of history learned again beats a guess from one batch; and over
//! [`Tuning::fresh_ramp`] (2.4 hours) for a first month, whose
//! `blast_per_path` is a configured guess, not a learned price. At most
//! [`MAX_RECENT`] batches are kept. Measured with `cfpurge replay
//! --optimum` against the offline optimum (docs/least-blast.md): a model
//! window of 10 days did better than 3, 7, 14, 21 or 28 on the traces
//! measured (with the hindsight price, 4 to 6 days did a little better,
//! but the price no longer settled where the budget binds all month), a
//! hindsight window of 45 days better than 30, 35, 40, 50, 60 or 90, and
//! adding the dual descent's lead as a correction to the model price made
//! the steady trace worse.
//!
//! One price for the month still lets one large batch spend at it what
//! the rest of the month needs, so a batch is planned at
//! [`PriceController::batch_price`]: the price, or more where its choice
//! would take the month's spending ahead of the even pace
//! ([`Tuning::ahead`]). Measured the same way, that cut the blast of the
//! astro-docs trace under 1,000 paths a month by 30 % and changed the
//! generated traces by under 1 %.
//!
//! The price only steers: the even-pacing allowance (with `burst_paths`)
//! stays the hard limit the planner's capacity enforces. Bounds:
//!
//! - **Floor** [`Tuning::floor`] (1/20 blast per path): at that price a
//!   wildcard is only chosen where it saves at least 20 billed paths per
//!   unrequested object it purges, so where the budget does not bind the
//!   free paths go to exact paths and the blast is near zero.
//! - **Ceiling** `blast_per_path ×` [`Tuning::ceiling_factor`] (1,024).
//!
//! Under `pacing = "none"` the price is `blast_per_path` and never moves.
//!
//! The daemon's core keeps one controller per budget with the ledger
//! (distributions sharing a budget share its price); before planning each
//! batch it hands in the batch's curve and calls
//! [`PriceController::advance`] with the ledger's [`super::Budget::used`],
//! and again after reserving it; [`PriceController::batch_price`] is the
//! price to plan the batch at. Pure: time, spending and curves are handed
//! in.

use std::cell::Cell;
use std::collections::VecDeque;
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
    /// Seconds of recent batches the model price is learned from (0: no
    /// model, dual descent alone).
    pub window: u64,
    /// Seconds of recent batches the hindsight price is learned from (0:
    /// none, the model price alone).
    pub hindsight: u64,
    /// E-folds the hindsight price moves by per `monthly_paths` paths of
    /// lead (or lag) on the even pace.
    pub hindsight_step: f64,
    /// Seconds over which the models' weight grows from 0 to 1 after the
    /// controller resumes a stored price: until then the price leans on
    /// the one it resumed from.
    pub ramp: u64,
    /// The same for a controller with no stored price, which starts from
    /// `blast_per_path`: a configured guess, not a learned price.
    pub fresh_ramp: u64,
    /// What a path costs at least when it takes the month's spending ahead
    /// of the even pace (see [`PriceController::batch_price`]; a `low` of
    /// 0: nothing beyond the price).
    pub ahead: Ahead,
}

/// The least price of a path that takes the month's spending to `u`
/// months' budget ahead of the even pace (without `burst_paths`): none up
/// to `from` (below 0: a share behind the pace), then from `low` rising
/// geometrically to `high` at a whole month's budget ahead. In blast per
/// billed path, like the price.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ahead {
    pub from: f64,
    pub low: f64,
    pub high: f64,
}

impl Ahead {
    /// The least price of the path that brings the spending to `u` ahead.
    fn at(&self, u: f64) -> f64 {
        if self.low <= 0.0 || u <= self.from {
            return 0.0;
        }
        let rise = ((u - self.from) / (1.0 - self.from)).min(1.0);
        self.low * (self.high / self.low).powf(rise)
    }
}

impl Tuning {
    /// The tuning the daemon runs with.
    pub const DEFAULT: Tuning = Tuning {
        step: 8.0,
        floor: 0.05,
        ceiling_factor: 1024.0,
        rate_cap: 4.0,
        window: 10 * 86_400,
        hindsight: 45 * 86_400,
        hindsight_step: 1.0,
        ramp: 10 * 86_400,
        fresh_ramp: 8_640,
        ahead: Ahead {
            from: -0.1,
            low: 0.4,
            high: 10.0,
        },
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

/// The most batches the models keep: past it the oldest are forgotten
/// before their window ends (at one batch a minute, 45 days are 64,800).
pub const MAX_RECENT: usize = 5_000;

/// A recent batch as the model sees it.
#[derive(Clone, Debug)]
struct Recent {
    /// Unix seconds it was planned at.
    at: u64,
    /// The lower convex hull of its least-blast curve, `(billed, blast)`
    /// with billed rising: the points some price picks.
    hull: Vec<(f64, f64)>,
    /// The point of `hull` each price of the hindsight grid picks (empty
    /// when the hindsight price is off).
    picks: Vec<u32>,
}

/// The price of a path for one budget, with its memory.
#[derive(Clone, Debug)]
pub struct PriceController {
    state: PriceState,
    blast_per_path: f64,
    monthly_paths: u64,
    burst_paths: u64,
    pacing: Pacing,
    tuning: Tuning,
    /// The batches of the last [`Tuning::window`], oldest first; not kept
    /// with the ledger (a restart learns them again).
    recent: VecDeque<Recent>,
    /// The hull of the batch observed last, until it is planned or
    /// forgotten: what [`PriceController::batch_price`] prices.
    last: Option<Vec<(f64, f64)>>,
    /// The price by dual descent alone, from the stored one: what the
    /// price is while the model has not seen a window of batches yet.
    dual: f64,
    /// Unix seconds the controller started learning at: the models'
    /// weight grows from 0 to 1 over `ramp` seconds after it.
    since: u64,
    /// [`Tuning::ramp`], or [`Tuning::fresh_ramp`] without a stored price.
    ramp: u64,
    /// The prices the hindsight price is searched among: from the floor,
    /// 10 % apart, up to the ceiling.
    grid: Vec<f64>,
    /// The best of them, searched again after each batch observed or
    /// forgotten (so at each batch's own time); `None` until then.
    leader: Cell<Option<f64>>,
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
            burst_paths: config.burst_paths,
            pacing: config.pacing,
            tuning,
            recent: VecDeque::new(),
            last: None,
            dual: 0.0,
            since: 0,
            ramp: if stored.is_some() {
                tuning.ramp
            } else {
                tuning.fresh_ramp
            },
            grid: Vec::new(),
            leader: Cell::new(None),
        };
        let (floor, ceiling) = controller.bounds();
        // A floor of 0 (a `blast_per_path` of 0, which the configuration
        // refuses) would never reach the ceiling: no grid, the floor.
        let mut price = floor;
        while price > 0.0 && price <= ceiling && controller.grid.len() < 1_000 {
            controller.grid.push(price);
            price *= 1.1;
        }
        // Learning starts now, or where the stored state was left if that
        // is later (a replay's clock starts at the month's start).
        controller.since = unix_seconds(now).max(controller.state.at);
        controller.state.price = controller.clamp(controller.state.price);
        controller.dual = controller.state.price;
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
        self.model(month, used);
    }

    /// Takes a batch's least-blast curve (`(billed, blast)` points with
    /// billed rising and blast falling, as
    /// [`crate::planner::least_blast::frontier`] gives them) into the model,
    /// as planned at `now`. Call it before [`PriceController::advance`] for
    /// the batch, so that its price accounts for it. Returns whether it
    /// was taken (not under `pacing = "none"`, nor an empty curve: a batch
    /// no cover fits).
    pub fn observe(&mut self, now: SystemTime, curve: &[(usize, u64)]) -> bool {
        if self.pacing == Pacing::None || self.tuning.window == 0 || curve.is_empty() {
            return false;
        }
        let at = unix_seconds(now);
        let hull = lower_hull(curve);
        self.last = Some(hull.clone());
        let picks = if self.tuning.hindsight == 0 {
            Vec::new()
        } else {
            self.grid.iter().map(|&price| pick(&hull, price)).collect()
        };
        self.recent.push_back(Recent { at, hull, picks });
        self.leader.set(None);
        self.forget_before(at.saturating_sub(self.kept()));
        // Bounded in memory and in the time a price takes, whatever the
        // traffic: the oldest go first.
        while self.recent.len() > MAX_RECENT {
            self.recent.pop_front();
        }
        true
    }

    /// Takes back the last [`PriceController::observe`]: its batch was not
    /// planned after all (it waits, and is observed again when it is).
    pub fn forget_last(&mut self) {
        self.recent.pop_back();
        self.leader.set(None);
        self.last = None;
    }

    /// The price to plan the batch observed last at, `now`, with `used`
    /// spent in the month: [`PriceController::price`], or more where the
    /// batch's choice at it would take the month's spending ahead of the
    /// even pace. Each path the batch bills costs at least what
    /// [`Tuning::ahead`] asks of the spending it brings the month to, so a
    /// burst that the price would let spend the whole allowance at once
    /// keeps some of it for the rest of the month. The batch's choice under
    /// those rising costs is a point of its hull; the price returned is
    /// one at which a plan at a single price takes that point: just above
    /// the blast one more path would have saved (strictly between the
    /// hull's slopes on either side of the point). Without an
    /// observed batch (none, or `pacing = "none"`), the price.
    pub fn batch_price(&self, now: SystemTime, used: u64) -> f64 {
        let price = self.price();
        let Some(hull) = self.last.as_deref().filter(|h| !h.is_empty()) else {
            return price;
        };
        if self.pacing == Pacing::None {
            return price;
        }
        ahead_price(
            hull,
            price,
            used,
            now,
            self.monthly_paths,
            &self.tuning.ahead,
            self.bounds(),
        )
    }

    /// Seconds of batches kept: the longer of the two windows.
    fn kept(&self) -> u64 {
        self.tuning.window.max(self.tuning.hindsight)
    }

    fn forget_before(&mut self, from: u64) {
        while self.recent.front().is_some_and(|r| r.at < from) {
            self.recent.pop_front();
        }
    }

    /// The model price: the least price at which the recent batches would
    /// have spent no more than the pace allows over as long (the budget
    /// left spread over the time left, as in [`PriceController::paced`]).
    fn model(&mut self, month: Month, used: u64) {
        self.forget_before(self.state.at.saturating_sub(self.kept()));
        let from = self.state.at.saturating_sub(self.tuning.window);
        if !self.recent.iter().any(|r| r.at >= from) {
            return;
        }
        let window = self.tuning.window as f64;
        let share = month.elapsed_fraction(time_of(self.state.at)).min(1.0);
        let monthly = self.monthly_paths as f64;
        let left = (monthly - used as f64).max(0.0);
        let per_month = if share < 1.0 {
            (left / (1.0 - share)).min(self.tuning.rate_cap.max(1.0) * monthly)
        } else {
            self.tuning.rate_cap.max(1.0) * monthly
        };
        let target = per_month * window / month.length().as_secs_f64();
        let (floor, ceiling) = self.bounds();
        let spends = |price: f64| -> f64 {
            self.recent
                .iter()
                .filter(|r| r.at >= from)
                .map(|r| billed_at(&r.hull, price))
                .sum()
        };
        // Where even the dearest price leaves the batches above the pace,
        // each takes its fewest paths: the least price at which they do
        // (a price beyond the batches' last choice would only tell the next
        // batch to purge more for nothing).
        let target = target.max(spends(ceiling));
        let model = if spends(floor) <= target {
            floor
        } else {
            // The spending falls as the price rises: bisect its logarithm.
            let (mut low, mut high) = (floor.ln(), ceiling.ln());
            for _ in 0..40 {
                let mid = 0.5 * (low + high);
                if spends(mid.exp()) <= target {
                    high = mid;
                } else {
                    low = mid;
                }
            }
            high.exp()
        };
        let model = match self.hindsight(month, used) {
            Some(hindsight) => model.min(hindsight),
            None => model,
        };
        // What the model has seen since the controller started: until a
        // whole window, the price leans on the one it resumed from.
        let ramp = self.ramp.max(1) as f64;
        let weight = (self.state.at.saturating_sub(self.since) as f64 / ramp).clamp(0.0, 1.0);
        let blended = weight * self.clamp(model).ln() + (1.0 - weight) * self.dual.ln();
        self.state.price = self.clamp(blended.exp());
    }

    /// The hindsight price: the one price which, each batch of the last
    /// [`Tuning::hindsight`] planned at it within the even-pacing allowance
    /// of a month as long (`burst_paths` included), would have purged
    /// least, moved by [`Tuning::hindsight_step`] e-folds per month's
    /// budget of lead on the even pace. `None` when it is off.
    fn hindsight(&self, month: Month, used: u64) -> Option<f64> {
        if self.tuning.hindsight == 0 {
            return None;
        }
        let now = self.state.at;
        let window = self.tuning.hindsight as f64;
        // Until a whole window has been seen, what was seen (at least a
        // day) stands for it, with the budget of as long.
        let span = now
            .saturating_sub(self.since)
            .clamp(86_400, self.tuning.hindsight);
        let from = now.saturating_sub(span);
        let monthly = self.monthly_paths as f64;
        let cap = monthly * span as f64 / window;
        let leader = match self.leader.get() {
            Some(leader) => leader,
            None => {
                let leader = self.search(from, window, cap);
                self.leader.set(Some(leader));
                leader
            }
        };
        let lead = (used as f64 - monthly * month.elapsed_fraction(time_of(now)).min(1.0))
            / monthly.max(1.0);
        Some(self.clamp((leader.ln() + self.tuning.hindsight_step * lead).exp()))
    }

    /// The grid price at which the batches since `from` (Unix seconds),
    /// each planned at it within an allowance growing by `monthly_paths`
    /// a `window` (seconds) from `burst_paths`, at most `cap`, purge least:
    /// the lowest of equals.
    fn search(&self, from: u64, window: f64, cap: f64) -> f64 {
        let monthly = self.monthly_paths as f64;
        let burst = self.burst_paths as f64;
        let blast_at = |g: usize| -> f64 {
            let (mut spent, mut blast) = (0.0, 0.0);
            for r in self.recent.iter().filter(|r| r.at >= from) {
                let allowed = ((monthly * (r.at - from) as f64 / window).floor() + burst).min(cap);
                let room = allowed - spent;
                // The point the price picks, if it fits; else the best
                // that fits, or the fewest paths when none does. Along a
                // convex hull the cost falls up to the pick, so the best
                // that fits is the last one before it.
                let picked = r.picks[g] as usize;
                let fits = r.hull[..=picked].iter().rposition(|p| p.0 <= room);
                let (billed, purged) = r.hull[fits.unwrap_or(0)];
                spent += billed;
                blast += purged;
            }
            blast
        };
        let (floor, _) = self.bounds();
        let mut best = (f64::INFINITY, floor);
        for g in 0..self.grid.len() {
            let blast = blast_at(g);
            if blast < best.0 {
                best = (blast, self.grid[g]);
            }
        }
        best.1
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
        let moved = self.dual.ln() + self.tuning.step * lead / scale;
        self.dual = self.clamp(moved.exp());
        self.state.price = self.dual;
    }
}

/// The price to plan a batch with lower hull `hull` at, `now`, with
/// `used` spent in the month of `monthly` paths: `price`, or more where its
/// choice at `price` would take the spending ahead of the even pace, as
/// [`PriceController::batch_price`] describes. Within `bounds`.
pub fn ahead_price(
    hull: &[(f64, f64)],
    price: f64,
    used: u64,
    now: SystemTime,
    monthly: u64,
    ahead: &Ahead,
    bounds: (f64, f64),
) -> f64 {
    if hull.is_empty() || ahead.low <= 0.0 {
        return price;
    }
    let monthly = monthly.max(1) as f64;
    let month = Month::of(now);
    let paced = monthly * month.elapsed_fraction(now).min(1.0);
    // The cost of each hull point: its blast and, path by path, the
    // higher of the price and what the spending it reaches asks.
    let mut best = (0, f64::INFINITY);
    let (mut billed, mut paid) = (0.0, 0.0);
    for (i, &(k, blast)) in hull.iter().enumerate() {
        while billed < k {
            billed += 1.0;
            let u = (used as f64 + billed - paced) / monthly;
            paid += price.max(ahead.at(u));
        }
        if paid + blast < best.1 {
            best = (i, paid + blast);
        }
    }
    let i = best.0;
    if billed_at(hull, price) <= hull[i].0 {
        return price;
    }
    // Blast saved per path on either side of the point: the price is
    // just above the slope past it (what one more path would have
    // saved), within the slope before it.
    let slope = |a: usize, b: usize| (hull[a].1 - hull[b].1) / (hull[b].0 - hull[a].0);
    let right = slope(i, i + 1);
    let (floor, ceiling) = bounds;
    let left = if i == 0 {
        ceiling.max(2.0 * right)
    } else {
        slope(i - 1, i)
    };
    (right * 1.01)
        .min((right * left).sqrt())
        .clamp(floor, ceiling)
}

/// The lower convex hull of a least-blast curve: the points that minimise
/// `price × billed + blast` for some price.
pub fn lower_hull(curve: &[(usize, u64)]) -> Vec<(f64, f64)> {
    let mut hull: Vec<(f64, f64)> = Vec::with_capacity(curve.len());
    for &(billed, blast) in curve {
        let p = (billed as f64, blast as f64);
        while hull.len() >= 2 {
            let (a, b) = (hull[hull.len() - 2], hull[hull.len() - 1]);
            // b is not below the segment from a to p.
            if (b.1 - a.1) * (p.0 - a.0) >= (p.1 - a.1) * (b.0 - a.0) {
                hull.pop();
            } else {
                break;
            }
        }
        hull.push(p);
    }
    hull
}

/// The index of the point of `hull` a batch planned at `price` takes: the
/// least `price × billed + blast`, the fewest billed among equals (the
/// first, as billed rises along the hull).
fn pick(hull: &[(f64, f64)], price: f64) -> u32 {
    let mut best = (0, f64::INFINITY);
    for (i, &(billed, blast)) in hull.iter().enumerate() {
        let cost = price * billed + blast;
        if cost < best.1 {
            best = (i, cost);
        }
    }
    // Past u32::MAX points (never: a curve has one per billed path up to
    // 3,000), the fewest paths.
    u32::try_from(best.0).unwrap_or(0)
}

/// Paths billed by the point of `hull` a batch planned at `price` takes:
/// the one with the least `billed + blast / price` (the fewest billed
/// among equals).
fn billed_at(hull: &[(f64, f64)], price: f64) -> f64 {
    hull.get(pick(hull, price) as usize).map_or(0.0, |p| p.0)
}

#[cfg(test)]
#[path = "price_tests.rs"]
mod tests;
