//! The yardstick for the budget's price: each month of a trace, the least
//! blast its day batches could have had (`planner::optimum`), within the
//! month's budget and the even-pacing allowance at each batch's time, and
//! at the same spend as a run; and the generated traces the price is
//! judged on besides the astro-docs one. Shared by `cargo run --release
//! --example monthly_price` and `tests/it/monthly_budget.rs`; each uses
//! part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use cfpurge::budget::{Month, allowance};
use cfpurge::catalog::Catalog;
use cfpurge::config::{BudgetConfig, Pacing};
use cfpurge::planner::optimum::{self, Batch};
use cfpurge::planner::{Capacity, Entry, Settings, least_blast};

use super::monthly::{MonthFigures, START};

/// One day batch of a month: the allowance when it is planned (the day's
/// end, as the replay plans it) and its least-blast curve.
pub struct DayCurve {
    /// Days since [`START`].
    pub day: u64,
    pub allowed: u64,
    pub curve: Vec<(usize, u64)>,
}

/// Every day's batch (as `monthly::by_day` cuts the trace) by month, with
/// CloudFront's in-flight limits and no budget limit on the curve.
pub fn curves(
    days: &BTreeMap<u64, Vec<Entry>>,
    catalog: &Catalog,
    monthly_paths: u64,
    burst_paths: u64,
) -> BTreeMap<Month, Vec<DayCurve>> {
    let config = BudgetConfig {
        monthly_paths,
        burst_paths,
        pacing: Pacing::Even,
        ..BudgetConfig::default()
    };
    let settings = Settings::default();
    let mut out: BTreeMap<Month, Vec<DayCurve>> = BTreeMap::new();
    for (day, entries) in days {
        let now = UNIX_EPOCH + Duration::from_secs(START + day * 86_400 + 86_399);
        out.entry(Month::of(now)).or_default().push(DayCurve {
            day: *day,
            allowed: allowance(&config, now),
            curve: least_blast::frontier(entries, Capacity::AWS, &settings, catalog),
        });
    }
    out
}

/// One month's optimum.
#[derive(Clone, Copy, Debug, Default)]
pub struct MonthOptimum {
    /// The least blast within the budget and the pacing allowance.
    pub paced_blast: u64,
    pub paced_billed: u64,
    /// The least blast billing no more than the run did.
    pub same_spend_blast: u64,
}

/// Each month's optimum beside a run's figures (`run`, by month).
pub fn optima(
    curves: &BTreeMap<Month, Vec<DayCurve>>,
    run: &BTreeMap<Month, MonthFigures>,
) -> BTreeMap<Month, MonthOptimum> {
    curves
        .iter()
        .map(|(month, days)| {
            let batches: Vec<Batch<'_>> = days
                .iter()
                .map(|d| Batch {
                    curve: &d.curve,
                    limit: d.allowed,
                })
                .collect();
            let paced = optimum::paced(&batches)
                .unwrap_or_else(|| panic!("{month}: no plan of its batches meets the pacing"));
            let refs: Vec<&[(usize, u64)]> = days.iter().map(|d| d.curve.as_slice()).collect();
            let spend = run.get(month).map_or(0, |m| m.billed);
            // A run that deferred entries into the month may bill less than
            // the cheapest cover of its own batches: no plan of them does.
            let same = optimum::at_spend(&refs, spend).map_or(u64::MAX, |a| a.blast);
            (
                *month,
                MonthOptimum {
                    paced_blast: paced.blast,
                    paced_billed: paced.billed,
                    same_spend_blast: same,
                },
            )
        })
        .collect()
}

/// The generated traffic shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// The same rate of deploys every day for three months.
    Steady,
    /// Every month, eight times the rate in its first five days.
    EarlyStorm,
    /// Every month, eight times the rate in its last five days.
    LateStorm,
    /// A month at the steady rate, then one at ten times it, then the
    /// steady rate again.
    TenfoldMonth,
}

impl Shape {
    pub const ALL: [Shape; 4] = [
        Shape::Steady,
        Shape::EarlyStorm,
        Shape::LateStorm,
        Shape::TenfoldMonth,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Shape::Steady => "steady",
            Shape::EarlyStorm => "storm early in each month",
            Shape::LateStorm => "storm late in each month",
            Shape::TenfoldMonth => "a month with 10x the traffic",
        }
    }

    /// Deploys on `day` (0 = 2023-01-01) at `rate` a day.
    fn deploys(self, day: u64, rate: u64) -> u64 {
        // 2023-01, 2023-02, 2023-03: days 0..31, 31..59, 59..90.
        let (start, length) = match day {
            0..31 => (0, 31),
            31..59 => (31, 28),
            _ => (59, 31),
        };
        let of_month = day - start;
        match self {
            Shape::Steady => rate,
            Shape::EarlyStorm if of_month < 5 => rate * 8,
            Shape::LateStorm if of_month >= length - 5 => rate * 8,
            Shape::TenfoldMonth if start == 31 => rate * 10,
            _ => rate,
        }
    }
}

/// splitmix64: a fixed, seedable sequence, so a generated trace is the
/// same on every run.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Three months of deploys on the site `pages` (sorted served paths):
/// each deploy picks a page, goes up one to three directories from it,
/// and touches each page under that directory with probability 1/4 (at
/// least the picked one), as a change to a section's shared layout or
/// a batch of edits would. `rate` deploys a day at the steady rate, each
/// at a random second of its day.
pub fn generated(shape: Shape, pages: &[String], rate: u64) -> Vec<(u64, Vec<String>)> {
    let mut random = Random(0x00C0_FFEE ^ shape as u64);
    let mut requests = Vec::new();
    for day in 0..90u64 {
        for _ in 0..shape.deploys(day, rate) {
            let pick = &pages[random.below(pages.len() as u64) as usize];
            // The directories of the page, deepest first, without the root.
            let dirs: Vec<usize> = pick
                .trim_end_matches('/')
                .match_indices('/')
                .map(|(i, _)| i + 1)
                .filter(|&i| i > 1)
                .collect();
            let up = 1 + random.below(3) as usize;
            let cut = dirs.len().saturating_sub(up);
            // A page at the top holds no directory: it goes alone.
            let dir = dirs.get(cut).map_or(pick.as_str(), |&i| &pick[..i]);
            let from = pages.partition_point(|p| p.as_str() < dir);
            let under = pages[from..]
                .iter()
                .take_while(|p| p.starts_with(dir))
                .filter(|p| *p == pick || random.below(4) == 0)
                .cloned()
                .collect();
            requests.push((day * 86_400 + random.below(86_400), under));
        }
    }
    requests.sort_by_key(|r| r.0);
    requests
}
