//! How far the budget's price is from the offline optimum, and why:
//! the measurements behind "Where the gap comes from" in
//! docs/least-blast.md.
//!
//! ```sh
//! cargo run --release --example price_study -- dump TRACE MONTHLY OUT.json
//! cargo run --release --example price_study -- months OUT.json
//! cargo run --release --example price_study -- batches OUT.json 2027-06
//! cargo run --release --example price_study -- sim OUT.json MONTHLY daemon dual fixed:0.9 hindsight:35:1
//! ```
//!
//! - `dump` replays TRACE (as `cfpurge replay` does: the daemon's core, the
//!   astro-docs catalog, `blast_per_path = 50`, `monthly_paths = MONTHLY`,
//!   `burst_paths = 100`, `on_exhausted = "hold"`) and writes each
//!   invalidation: its time, billed paths, blast, price, the even-pacing
//!   allowance then, and the least-blast curve of what it covered.
//! - `months`: per month, cfpurge's spend and blast, the paced optimum of
//!   the same invalidations, the range of cfpurge's prices, and the best
//!   fixed price in hindsight (the one price that, planned at for every
//!   invalidation of the month within the allowance, purges least).
//! - `batches`: one month, invalidation by invalidation, cfpurge's choice
//!   beside the optimum's and the prices at which the optimum's choice is
//!   the least-cost point of the curve.
//! - `sim`: price controllers run on the dumped invalidations' curves, each
//!   planned at the controller's price within the allowance (a batch that
//!   does not fit waits for the next one): `daemon` (the daemon's
//!   controller), `tuned:…` (the same with another tuning: step, window in
//!   days, rate cap, floor, and the cost of spending ahead of the pace, its
//!   low, high and from; a low of 0 turns it off), `dual` (its dual descent
//!   alone), `fixed:P` (one price
//!   throughout) and `hindsight:DAYS:STEP` (the best fixed price over the
//!   last DAYS, taken as a month, moved by STEP e-folds per month's budget
//!   of lead on the even pace), `hahead:DAYS:STEP[:LOW:HIGH:FROM]` (the
//!   same with the cost of spending ahead of the pace), `mix:MODE:DAYS:STEP`
//!   (the model price and hindsight's, the lower, their geometric mean or
//!   the higher), `hd:DAYS:STEP[:WINDOW[:FRESH_RAMP[:LOW:HIGH:FROM]]]` (the
//!   daemon's controller with another hindsight window and step, model
//!   window, first-month ramp and cost of spending ahead; `hd:0:0:10:10` is
//!   the controller before the hindsight price) and `reserve:…` (the
//!   daemon's controller with a reserve for the rest of the month: see
//!   [`Reserve`]). `PRICE_STUDY_MONTHS=1` prints each month,
//!   `PRICE_STUDY_TRACE=YYYY-MM` each invalidation of that month. The
//!   invalidations are cfpurge's: another price would have held and merged
//!   others, so `sim` ranks controllers (poorly under a budget that binds
//!   all month: see docs/least-blast.md) and `cfpurge replay --optimum`
//!   measures the one chosen.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cfpurge::budget::{Ahead, Month, PriceController, Tuning, allowance};
use cfpurge::catalog;
use cfpurge::config::{BudgetConfig, Config};
use cfpurge::path::CfPath;
use cfpurge::planner::optimum::{self, Batch as OptimumBatch};
use cfpurge::planner::{Capacity, Entry, Settings, least_blast};
use cfpurge::replay::{self, ReplayOptions};
use serde::{Deserialize, Serialize};

#[path = "../benches/common/mod.rs"]
mod common;

/// One invalidation of a replay.
#[derive(Serialize, Deserialize, Clone)]
struct Invalidation {
    /// Unix seconds.
    at: u64,
    billed: u64,
    blast: u64,
    price: f64,
    allowance: u64,
    /// The least blast at each billed count of what it covered.
    curve: Vec<(usize, u64)>,
}

const BLAST_PER_PATH: f64 = 50.0;
/// The daemon's lowest and highest price at that `blast_per_path`.
const FLOOR: f64 = Tuning::DEFAULT.floor;
const CEILING: f64 = BLAST_PER_PATH * Tuning::DEFAULT.ceiling_factor;

fn config(monthly: u64) -> Config {
    let text = format!(
        r#"
[source]
kind = "local"
[distributions.www]
id = "EWWW"
[routing]
default_distribution = "www"
[coalesce]
strategy = "least_blast"
blast_per_path = {BLAST_PER_PATH}
[cloudfront]
mode = "simulate"
[budget]
monthly_paths = {monthly}
burst_paths = 100
on_exhausted = "hold"
"#
    );
    Config::from_parts(Some(&text), "price_study", std::iter::empty()).expect("configuration")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> &str {
        args.get(i).map(String::as_str).unwrap_or_else(|| {
            panic!("usage: dump TRACE MONTHLY OUT | months FILE | batches FILE MONTH | sim FILE MONTHLY CONTROLLER...")
        })
    };
    let monthly = |i: usize| -> u64 { arg(i).parse().expect("MONTHLY is a number of paths") };
    match arg(0) {
        "dump" => dump(arg(1), monthly(2), arg(3)),
        "months" => months(&read(arg(1))),
        "batches" => batches(&read(arg(1)), arg(2)),
        "sim" => sim(&read(arg(1)), monthly(2), &args[3..]),
        other => panic!("unknown mode {other}"),
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The cost of spending ahead of the pace from a controller's figures
/// LOW, HIGH and FROM at `at` in `args`, the daemon's where they are left
/// out.
fn ahead_from(args: &[f64], at: usize) -> Ahead {
    let default = Tuning::DEFAULT.ahead;
    Ahead {
        low: args.get(at).copied().unwrap_or(default.low),
        high: args.get(at + 1).copied().unwrap_or(default.high),
        from: args.get(at + 2).copied().unwrap_or(default.from),
    }
}

fn time(at: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(at)
}

fn read(file: &str) -> Vec<Invalidation> {
    serde_json::from_str(&std::fs::read_to_string(file).expect("dump file")).expect("dump JSON")
}

fn dump(trace: &str, monthly: u64, out: &str) {
    let config = config(monthly);
    let text = std::fs::read_to_string(trace).expect("trace file");
    let (lines, bad) = replay::read_trace(&text, SystemTime::now());
    assert!(bad.is_empty(), "lines of the trace not read: {bad:?}");
    let catalog =
        catalog::file::load(&common::data_file("astro-docs-tree.txt")).expect("catalog file");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    let replayed = runtime.block_on(replay::run(
        &config,
        &lines,
        &ReplayOptions {
            catalog: Some(catalog.clone()),
            optimum: false,
            ledger: None,
        },
    ));
    let start = Month::of(lines[0].at).start();
    let settings = Settings::from(&config.coalesce);
    let capacity = Capacity {
        paths: usize::MAX,
        ..Capacity::AWS
    };
    let dumped: Vec<Invalidation> = replayed
        .batches
        .iter()
        .map(|b| {
            let at = start + Duration::from_secs_f64(b.t);
            let covered: Vec<Entry> = b
                .covered
                .iter()
                .map(|p| Entry::new(CfPath::parse(p).expect("a covered path"), 0))
                .collect();
            Invalidation {
                at: unix(at),
                billed: b.paths.len() as u64,
                blast: b.blast,
                price: b.price,
                allowance: allowance(&config.budget, at),
                curve: least_blast::frontier(&covered, capacity, &settings, &catalog),
            }
        })
        .collect();
    std::fs::write(out, serde_json::to_string(&dumped).expect("JSON")).expect("write the dump");
    for m in &replayed.months {
        println!(
            "{} requested {} billed {} blast {} price_end {:.3}",
            m.month,
            m.requested,
            m.billed,
            m.blast.unwrap_or(0),
            m.price_end
        );
    }
}

/// The invalidations by month, in order.
fn by_month(all: &[Invalidation]) -> Vec<(Month, Vec<&Invalidation>)> {
    let mut months: Vec<(Month, Vec<&Invalidation>)> = Vec::new();
    for b in all {
        let month = Month::of(time(b.at));
        match months.last_mut() {
            Some((m, v)) if *m == month => v.push(b),
            _ => months.push((month, vec![b])),
        }
    }
    months
}

fn paced_optimum(month: &[&Invalidation]) -> Option<optimum::Allocation> {
    let batches: Vec<OptimumBatch<'_>> = month
        .iter()
        .map(|b| OptimumBatch {
            curve: &b.curve,
            limit: b.allowance,
        })
        .collect();
    optimum::paced(&batches)
}

/// The prices at which point `k` of `curve` has the least
/// `price × billed + blast` (an empty range: at none).
fn price_range(curve: &[(usize, u64)], k: usize) -> (f64, f64) {
    let (billed, blast) = (curve[k].0 as f64, curve[k].1 as f64);
    let mut low: f64 = 0.0;
    let mut high = f64::INFINITY;
    for (j, &(b, f)) in curve.iter().enumerate() {
        let (b, f) = (b as f64, f as f64);
        if j > k {
            low = low.max((blast - f) / (b - billed));
        } else if j < k {
            high = high.min((f - blast) / (billed - b));
        }
    }
    (low, high)
}

/// The prices `fixed` tries: from 0.01 up, 5 % apart, to 100,000.
fn grid() -> impl Iterator<Item = f64> {
    std::iter::successors(Some(0.01f64), |p| Some(p * 1.05)).take_while(|p| *p < 1e5)
}

fn months(all: &[Invalidation]) {
    println!(
        "| month | invalidations | billed | blast | optimum_paced billed | optimum_paced | cfpurge's price (least, median, most) | best fixed price | its billed | its blast | left waiting |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|");
    let (mut blast, mut best_total, mut optimum_total) = (0, 0, 0);
    for (month, v) in by_month(all) {
        let optimum = paced_optimum(&v);
        let mut prices: Vec<f64> = v.iter().map(|b| b.price).collect();
        prices.sort_by(f64::total_cmp);
        // The best fixed price: the fewest left waiting at the month's end
        // (what waits is not purged, so not counted), then the least
        // blast, then the lowest price.
        let best = grid()
            .map(|p| {
                let run = run_month(&v, &mut Fixed(p), Vec::new());
                (run, p)
            })
            .min_by(|a, b| {
                (a.0.held.len(), a.0.blast)
                    .cmp(&(b.0.held.len(), b.0.blast))
                    .then(a.1.total_cmp(&b.1))
            })
            .expect("prices to try");
        let month_blast: u64 = v.iter().map(|b| b.blast).sum();
        blast += month_blast;
        best_total += best.0.blast;
        optimum_total += optimum.as_ref().map_or(0, |a| a.blast);
        println!(
            "| {month} | {} | {} | {month_blast} | {} | {} | {:.2}, {:.2}, {:.2} | {:.2} | {} | {} | {} |",
            v.len(),
            v.iter().map(|b| b.billed).sum::<u64>(),
            optimum.as_ref().map_or(0, |a| a.billed),
            optimum.as_ref().map_or(0, |a| a.blast),
            prices[0],
            prices[prices.len() / 2],
            prices[prices.len() - 1],
            best.1,
            best.0.billed,
            best.0.blast,
            best.0.held.len(),
        );
    }
    println!(
        "| total | | | {blast} | | {optimum_total} | | | | {best_total} | |\n\ncfpurge / optimum_paced {:.3}; best fixed price of each month / optimum_paced {:.3}",
        blast as f64 / optimum_total.max(1) as f64,
        best_total as f64 / optimum_total.max(1) as f64
    );
}

fn batches(all: &[Invalidation], which: &str) {
    let months = by_month(all);
    let (month, v) = months
        .iter()
        .find(|(m, _)| m.to_string() == which)
        .expect("a month of the dump");
    let optimum = paced_optimum(v).expect("the month's optimum");
    let start = unix(month.start());
    let (mut spent, mut optimum_spent) = (0, 0);
    println!(
        "day | allowance | spent | optimum spent | price | billed, blast | optimum's billed, blast | prices it is chosen at | fewest billed, blast"
    );
    for (b, &(billed, purged)) in v.iter().zip(&optimum.points) {
        spent += b.billed;
        optimum_spent += billed as u64;
        let k = b
            .curve
            .iter()
            .position(|q| *q == (billed, purged))
            .expect("a point of the curve");
        let (low, high) = price_range(&b.curve, k);
        println!(
            "{:6.2} | {:4} | {:4} | {:4} | {:8.2} | {:3}, {:5} | {:3}, {:5} | {low:.2} to {high:.2} | {}, {}",
            (b.at - start) as f64 / 86_400.0,
            b.allowance,
            spent,
            optimum_spent,
            b.price,
            b.billed,
            b.blast,
            billed,
            purged,
            b.curve[0].0,
            b.curve[0].1,
        );
    }
}

/// A price for each invalidation, learned as they come.
trait Controller {
    /// The price to plan `b` at, with `used` billed in its month so far.
    fn price(&mut self, b: &Invalidation, used: u64) -> f64;
    /// `b` was planned: `used` is billed now.
    fn planned(&mut self, _b: &Invalidation, _used: u64) {}
    /// The invalidation priced last did not fit: it waits.
    fn waits(&mut self) {}
    /// The most `b` may bill beyond what the allowance limits, with `used`
    /// billed in its month so far (`u64::MAX`: no more than the allowance).
    fn cap(&mut self, _b: &Invalidation, _used: u64) -> u64 {
        u64::MAX
    }
}

/// The daemon's controller, called as the daemon's core calls it.
struct Daemon(PriceController);

/// The daemon's controller with the batch's own curve kept out of the
/// price it is planned at (the model learns it after).
struct Past(PriceController);

impl Controller for Past {
    fn price(&mut self, b: &Invalidation, used: u64) -> f64 {
        self.0.advance(time(b.at), used);
        self.0.observe(time(b.at), &b.curve);
        self.0.batch_price(time(b.at), used)
    }
    fn planned(&mut self, b: &Invalidation, used: u64) {
        self.0.advance(time(b.at), used);
    }
    fn waits(&mut self) {
        self.0.forget_last();
    }
}

impl Controller for Daemon {
    fn price(&mut self, b: &Invalidation, used: u64) -> f64 {
        self.0.observe(time(b.at), &b.curve);
        self.0.advance(time(b.at), used);
        self.0.batch_price(time(b.at), used)
    }
    fn planned(&mut self, b: &Invalidation, used: u64) {
        self.0.advance(time(b.at), used);
    }
    fn waits(&mut self) {
        self.0.forget_last();
    }
}

struct Fixed(f64);

impl Controller for Fixed {
    fn price(&mut self, _b: &Invalidation, _used: u64) -> f64 {
        self.0
    }
}

/// The best fixed price over the last `window` seconds, taken as a month
/// of the budget under the even pacing (follow the leader), searched again
/// at each invalidation, moved by `step` e-folds per month's budget of lead
/// on the even pace.
struct Hindsight {
    window: u64,
    step: f64,
    monthly: f64,
    burst: f64,
    recent: VecDeque<(u64, Vec<(f64, f64)>)>,
}

impl Hindsight {
    /// `args`: the window in days, then the step (0 without it).
    fn new(args: &[f64], monthly: u64, burst: u64) -> Hindsight {
        Hindsight {
            window: (args[0] * 86_400.0) as u64,
            step: args.get(1).copied().unwrap_or(0.0),
            monthly: monthly as f64,
            burst: burst as f64,
            recent: VecDeque::new(),
        }
    }

    fn leader(&self, now: u64) -> f64 {
        let from = now.saturating_sub(self.window);
        let window = self.window as f64;
        let blast_at = |price: f64| -> f64 {
            let (mut used, mut blast) = (0.0, 0.0);
            for (at, hull) in &self.recent {
                let allowed = ((self.monthly * (at - from) as f64 / window).floor() + self.burst)
                    .min(self.monthly);
                let (billed, purged) = hull
                    .iter()
                    .filter(|p| p.0 <= allowed - used)
                    .min_by(|a, b| {
                        (price * a.0 + a.1)
                            .total_cmp(&(price * b.0 + b.1))
                            .then(a.0.total_cmp(&b.0))
                    })
                    .unwrap_or(&hull[0]);
                used += billed;
                blast += purged;
            }
            blast
        };
        let mut best = (f64::INFINITY, FLOOR);
        let mut price: f64 = FLOOR;
        while price < 2000.0 {
            let blast = blast_at(price);
            if blast < best.0 {
                best = (blast, price);
            }
            price *= 1.1;
        }
        best.1
    }
}

impl Controller for Hindsight {
    fn price(&mut self, b: &Invalidation, used: u64) -> f64 {
        self.recent
            .push_back((b.at, cfpurge::budget::lower_hull(&b.curve)));
        while self
            .recent
            .front()
            .is_some_and(|r| r.0 + self.window < b.at)
        {
            self.recent.pop_front();
        }
        let month = Month::of(time(b.at));
        let lead = (used as f64 - self.monthly * month.elapsed_fraction(time(b.at))) / self.monthly;
        (self.leader(b.at).ln() + self.step * lead)
            .exp()
            .clamp(FLOOR, CEILING)
    }
    fn waits(&mut self) {
        self.recent.pop_back();
    }
}

/// Another controller's price with the cost of spending ahead of the pace
/// on top, as the daemon's [`PriceController::batch_price`] adds it.
struct WithAhead {
    inner: Box<dyn Controller>,
    ahead: Ahead,
    monthly: u64,
}

impl Controller for WithAhead {
    fn price(&mut self, b: &Invalidation, used: u64) -> f64 {
        let price = self.inner.price(b, used);
        let hull = cfpurge::budget::lower_hull(&b.curve);
        cfpurge::budget::ahead_price(
            &hull,
            price,
            used,
            time(b.at),
            self.monthly,
            &self.ahead,
            (FLOOR, CEILING),
        )
    }
    fn planned(&mut self, b: &Invalidation, used: u64) {
        self.inner.planned(b, used);
    }
    fn waits(&mut self) {
        self.inner.waits();
    }
}

/// The daemon's model price and hindsight's, mixed (`mix:MODE:DAYS:STEP`:
/// MODE 0 the lower, 1 their geometric mean, 2 the higher).
struct Mix {
    model: PriceController,
    hindsight: Hindsight,
    mode: u8,
}

impl Controller for Mix {
    fn price(&mut self, b: &Invalidation, used: u64) -> f64 {
        self.model.observe(time(b.at), &b.curve);
        self.model.advance(time(b.at), used);
        let m = self.model.price();
        let h = self.hindsight.price(b, used);
        match self.mode {
            0 => m.min(h),
            1 => (m * h).sqrt(),
            _ => m.max(h),
        }
    }
    fn planned(&mut self, b: &Invalidation, used: u64) {
        self.model.advance(time(b.at), used);
    }
    fn waits(&mut self) {
        self.model.forget_last();
        self.hindsight.waits();
    }
}

/// The daemon's controller with a reserve for the rest of the month: a
/// batch may bill at most what is left less a forecast of what the rest of
/// the month's requests will need (`reserve:DAYS:SOURCE:STAT:SHARE:MODE[:FACTOR]`).
///
/// - DAYS: the forecast's look-back.
/// - SOURCE: 0 the paths billed, 1 the batches' fewest paths, 2 their
///   paths at the current price, 3 their exact paths (the curve's last
///   point).
/// - STAT: 0 the median of daily sums, 1 the mean of daily sums with the
///   busiest tenth of the days left out, 2 the mean with batches above
///   `burst_paths` left out, 3 the mean of daily sums, 4 the even pace
///   (the forecast is at most the even pace in any case).
/// - SHARE: reserve only when the batch alone takes more than this share
///   of what is left (0: always).
/// - FACTOR (optional, 1): the forecast times this.
/// - MODE: 0 cap = allowance left − reserve; 1 cap = month's budget left −
///   reserve (and the allowance); 2 and 3: the same, as a price (the
///   higher of the model's and the least at which the batch fits the cap).
struct Reserve {
    inner: Daemon,
    days: f64,
    source: u8,
    stat: u8,
    threshold: f64,
    mode: u8,
    /// The forecast times this.
    factor: f64,
    monthly: u64,
    burst: u64,
    /// `(at, paths)` of the batches planned in the look-back.
    history: VecDeque<(u64, f64)>,
    last_price: f64,
    /// Billed in the month when the last batch was priced.
    before: u64,
}

impl Reserve {
    fn paths_of(&self, b: &Invalidation, billed: u64) -> f64 {
        match self.source {
            0 => billed as f64,
            1 => b.curve[0].0 as f64,
            2 => {
                let hull = cfpurge::budget::lower_hull(&b.curve);
                hull.iter()
                    .map(|&(k, f)| (self.last_price * k + f, k))
                    .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)))
                    .map_or(0.0, |p| p.1)
            }
            _ => b.curve[b.curve.len() - 1].0 as f64,
        }
    }

    /// Paths a day the rest of the month is forecast to need.
    fn rate(&self, now: u64) -> f64 {
        let days = self.days.max(1.0) as usize;
        let mut daily = vec![0.0; days];
        for &(at, paths) in &self.history {
            if self.stat == 2 && paths > self.burst as f64 {
                continue;
            }
            let d = ((now - at) / 86_400) as usize;
            if d < days {
                daily[d] += paths;
            }
        }
        daily.sort_by(f64::total_cmp);
        let rate = match self.stat {
            0 => daily[days / 2],
            1 => {
                let kept = days - days / 10;
                daily[..kept].iter().sum::<f64>() / kept as f64
            }
            _ => daily.iter().sum::<f64>() / days as f64,
        };
        rate * self.factor
    }

    /// The most `b` may bill with `used` billed so far: what is left less
    /// the reserve.
    fn limit(&self, b: &Invalidation, used: u64) -> u64 {
        let month = Month::of(time(b.at));
        let days_left = (month
            .end()
            .duration_since(time(b.at))
            .map_or(0.0, |d| d.as_secs_f64()))
            / 86_400.0;
        let left_allowance = b.allowance.saturating_sub(used);
        let left_month = self.monthly.saturating_sub(used);
        // No more than the even pace: a larger reserve would starve the
        // batches of now for later ones the budget cannot pay for either.
        let pace = self.monthly as f64 / (month.length().as_secs_f64() / 86_400.0);
        let rate = if self.stat == 4 {
            pace
        } else {
            self.rate(b.at).min(pace)
        };
        let reserve = rate * days_left;
        let base = if matches!(self.mode, 0 | 2) {
            left_allowance
        } else {
            left_month
        };
        let cap = (base as f64 - reserve).max(0.0) as u64;
        let wants = b.curve[b.curve.len() - 1].0 as f64;
        if wants <= self.threshold * left_allowance as f64 {
            return u64::MAX;
        }
        cap.min(left_allowance)
    }
}

impl Controller for Reserve {
    fn price(&mut self, b: &Invalidation, used: u64) -> f64 {
        let price = self.inner.price(b, used);
        self.last_price = price;
        self.before = used;
        if self.mode < 2 {
            return price;
        }
        let cap = self.limit(b, used) as f64;
        // The least price at which the batch's choice fits the cap.
        let hull = cfpurge::budget::lower_hull(&b.curve);
        let fits = |p: f64| {
            hull.iter()
                .map(|&(k, f)| (p * k + f, k))
                .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)))
                .map_or(0.0, |q| q.1)
                <= cap
        };
        if fits(price) {
            return price;
        }
        let (mut low, mut high) = (price.ln(), CEILING.ln());
        for _ in 0..40 {
            let mid = 0.5 * (low + high);
            if fits(mid.exp()) {
                high = mid;
            } else {
                low = mid;
            }
        }
        high.exp()
    }
    fn planned(&mut self, b: &Invalidation, used: u64) {
        self.inner.planned(b, used);
        let billed = used - self.before;
        let paths = self.paths_of(b, billed);
        self.history.push_back((b.at, paths));
        let from = b.at.saturating_sub((self.days * 86_400.0) as u64);
        while self.history.front().is_some_and(|h| h.0 < from) {
            self.history.pop_front();
        }
    }
    fn waits(&mut self) {
        self.inner.waits();
    }
    fn cap(&mut self, b: &Invalidation, used: u64) -> u64 {
        if self.mode >= 2 {
            return u64::MAX;
        }
        self.limit(b, used)
    }
}

/// What a controller did in a month.
struct MonthRun {
    billed: u64,
    blast: u64,
    /// Invalidations that did not fit by the month's end.
    held: Vec<Invalidation>,
}

/// Plans a month's invalidations at the controller's prices, within the
/// allowance: one that does not fit waits and is tried again before each
/// later one (at its time and allowance), `waiting` first.
fn run_month(
    month: &[&Invalidation],
    controller: &mut dyn Controller,
    waiting: Vec<Invalidation>,
) -> MonthRun {
    let mut run = MonthRun {
        billed: 0,
        blast: 0,
        held: waiting,
    };
    for b in month {
        let mut queue = std::mem::take(&mut run.held);
        queue.push((*b).clone());
        for mut w in queue {
            w.at = b.at;
            w.allowance = b.allowance;
            let price = controller.price(&w, run.billed);
            let room = w.allowance.saturating_sub(run.billed);
            // A reserve never makes a batch that fits the allowance wait:
            // at worst it takes its fewest paths.
            let room = room.min(controller.cap(&w, run.billed).max(w.curve[0].0 as u64));
            let choice = w
                .curve
                .iter()
                .filter(|p| p.0 as u64 <= room)
                .min_by(|a, b| {
                    (price * a.0 as f64 + a.1 as f64)
                        .total_cmp(&(price * b.0 as f64 + b.1 as f64))
                        .then(a.0.cmp(&b.0))
                });
            match choice {
                Some(&(billed, purged)) => {
                    if std::env::var("PRICE_STUDY_TRACE")
                        .is_ok_and(|m| Month::of(time(w.at)).to_string() == m)
                    {
                        let month = Month::of(time(w.at));
                        let day = (w.at - unix(month.start())) as f64 / 86_400.0;
                        println!(
                            "    {day:6.2} price {price:8.2} room {room:4} billed {billed:4} blast {purged:5} fewest {:?} exact {:?}",
                            w.curve[0],
                            w.curve[w.curve.len() - 1]
                        );
                    }
                    run.billed += billed as u64;
                    run.blast += purged;
                    controller.planned(&w, run.billed);
                }
                None => {
                    controller.waits();
                    run.held.push(w);
                }
            }
        }
    }
    run
}

fn sim(all: &[Invalidation], monthly: u64, controllers: &[String]) {
    let months = by_month(all);
    let optima: Vec<u64> = months
        .iter()
        .map(|(_, v)| paced_optimum(v).map_or(0, |a| a.blast))
        .collect();
    let optimum: u64 = optima.iter().sum();
    let config = config(monthly);
    let budget: &BudgetConfig = &config.budget;
    let start = months.first().map_or(UNIX_EPOCH, |(m, _)| m.start());
    for name in controllers {
        let mut parts = name.split(':');
        let kind = parts.next().unwrap_or_default();
        let args: Vec<f64> = parts
            .map(|a| a.parse().expect("a controller's figures are numbers"))
            .collect();
        let mut controller: Box<dyn Controller> = match kind {
            "daemon" => Box::new(Daemon(PriceController::new(
                budget,
                BLAST_PER_PATH,
                None,
                start,
            ))),
            "dual" => Box::new(Daemon(PriceController::with_tuning(
                budget,
                BLAST_PER_PATH,
                None,
                start,
                Tuning {
                    window: 0,
                    ..Tuning::DEFAULT
                },
            ))),
            "fixed" => Box::new(Fixed(args[0])),
            "past" => Box::new(Past(PriceController::with_tuning(
                budget,
                BLAST_PER_PATH,
                None,
                start,
                Tuning {
                    ahead: ahead_from(&args, 0),
                    ..Tuning::DEFAULT
                },
            ))),
            // The daemon's controller with another tuning:
            // `tuned:STEP:WINDOW_DAYS[:RATE_CAP[:FLOOR[:AHEAD_LOW:AHEAD_HIGH:AHEAD_FROM]]]`
            // (an AHEAD_LOW of 0: no cost of spending ahead of the pace).
            "tuned" => Box::new(Daemon(PriceController::with_tuning(
                budget,
                BLAST_PER_PATH,
                None,
                start,
                Tuning {
                    step: args[0],
                    window: (args[1] * 86_400.0) as u64,
                    rate_cap: args.get(2).copied().unwrap_or(Tuning::DEFAULT.rate_cap),
                    floor: args.get(3).copied().unwrap_or(Tuning::DEFAULT.floor),
                    ahead: ahead_from(&args, 4),
                    ..Tuning::DEFAULT
                },
            ))),
            "hindsight" => Box::new(Hindsight::new(&args[..], monthly, budget.burst_paths)),
            // `hd:DAYS:STEP[:WINDOW_DAYS[:FRESH_RAMP_DAYS[:LOW:HIGH:FROM]]]`:
            // the daemon's controller with another hindsight window and step
            // (DAYS 0: none), model window, first-month ramp and cost of
            // spending ahead of the pace.
            "hd" => Box::new(Daemon(PriceController::with_tuning(
                budget,
                BLAST_PER_PATH,
                None,
                start,
                Tuning {
                    hindsight: (args[0] * 86_400.0) as u64,
                    hindsight_step: args[1],
                    window: args
                        .get(2)
                        .map_or(Tuning::DEFAULT.window, |d| (d * 86_400.0) as u64),
                    fresh_ramp: args
                        .get(3)
                        .map_or(Tuning::DEFAULT.fresh_ramp, |d| (d * 86_400.0) as u64),
                    ahead: ahead_from(&args, 4),
                    ..Tuning::DEFAULT
                },
            ))),
            // `hahead:DAYS:STEP[:LOW:HIGH:FROM]`: hindsight with the cost of
            // spending ahead of the pace.
            "hahead" => Box::new(WithAhead {
                inner: Box::new(Hindsight::new(&args[..], monthly, budget.burst_paths)),
                ahead: ahead_from(&args, 2),
                monthly,
            }),
            "mix" => Box::new(WithAhead {
                inner: Box::new(Mix {
                    model: PriceController::new(budget, BLAST_PER_PATH, None, start),
                    hindsight: Hindsight::new(&args[1..], monthly, budget.burst_paths),
                    mode: args[0] as u8,
                }),
                ahead: Tuning::DEFAULT.ahead,
                monthly,
            }),
            "reserve" => Box::new(Reserve {
                inner: Daemon(PriceController::new(budget, BLAST_PER_PATH, None, start)),
                days: args[0],
                source: args[1] as u8,
                stat: args[2] as u8,
                threshold: args[3],
                mode: args[4] as u8,
                factor: args.get(5).copied().unwrap_or(1.0),
                monthly,
                burst: budget.burst_paths,
                history: VecDeque::new(),
                last_price: BLAST_PER_PATH,
                before: 0,
            }),
            other => panic!("unknown controller {other}"),
        };
        let (mut billed, mut blast, mut most) = (0, 0, 0);
        let mut waiting = Vec::new();
        for ((month, v), best) in months.iter().zip(&optima) {
            let run = run_month(v, controller.as_mut(), waiting);
            if std::env::var_os("PRICE_STUDY_MONTHS").is_some() {
                println!(
                    "  {month}: billed {} blast {} optimum_paced {best} waiting at the end {}",
                    run.billed,
                    run.blast,
                    run.held.len()
                );
            }
            billed += run.billed;
            blast += run.blast;
            most = most.max(run.billed);
            waiting = run.held;
        }
        println!(
            "{name}: billed {billed} (most in a month {most}), blast {blast}, optimum_paced {optimum}, ratio {:.3}, waiting at the end {}",
            blast as f64 / optimum.max(1) as f64,
            waiting.len()
        );
    }
}
