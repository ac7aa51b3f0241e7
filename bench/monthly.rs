//! A month-by-month replay of a trace under a monthly budget, planned as
//! the daemon plans: every day's requests are one batch at the day's end;
//! the budget is the real ledger (`cfpurge::budget::Budget` on a memory
//! store) with `on_exhausted = "hold"`; with even pacing the batch may spend
//! what the allowance leaves (`Budget::remaining`) and the price of a
//! billed path follows the budget (`planner::price_for`, `burst_paths` as
//! the scale), as `Daemon::submit` computes it. What a batch cannot take
//! waits for the next day's batch.
//!
//! Shared by `cargo run --release --example least_blast -- --monthly` and
//! the test that no month goes over its budget.

#![allow(dead_code)] // each user takes the pricings it needs

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cfpurge::budget::{Budget, MemoryStore, Month, PriceController, Tuning};
use cfpurge::catalog::Catalog;
use cfpurge::config::{BudgetConfig, OnExhausted, Pacing};
use cfpurge::planner::{Capacity, Entry, Settings, Strategy, plan_with, price_for};

/// Trace time 0 (2023-01-01T00:00:00Z), so that months are calendar months.
pub const START: u64 = 1_672_531_200;

/// One month's figures.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MonthFigures {
    pub billed: u64,
    pub blast: u64,
    pub requested: u64,
    /// Entries still waiting at the month's last batch.
    pub waiting: u64,
    /// The price the month's last batch was planned at.
    pub price_end: f64,
}

/// How the replay prices and limits each batch.
#[derive(Clone, Copy, Debug)]
pub enum Pricing {
    /// Even pacing under `monthly_paths` (with `burst_paths`): the batch
    /// may spend what remains of the allowance, at `price_for`'s price.
    Paced {
        blast_per_path: f64,
        monthly_paths: u64,
        burst_paths: u64,
    },
    /// A fixed price and no budget limit.
    Fixed { blast_per_path: f64 },
    /// Even pacing as `Paced`, at the price controller's price.
    Controlled {
        blast_per_path: f64,
        monthly_paths: u64,
        burst_paths: u64,
        tuning: Tuning,
    },
}

/// Replays `days` (day number since [`START`] → that day's entries, whose
/// `since` is seconds since [`START`]) and returns every month's figures,
/// in order.
pub fn replay(
    days: &BTreeMap<u64, Vec<Entry>>,
    catalog: &Catalog,
    pricing: Pricing,
) -> BTreeMap<Month, MonthFigures> {
    let settings = Settings::default();
    let config = match pricing {
        Pricing::Paced {
            monthly_paths,
            burst_paths,
            ..
        }
        | Pricing::Controlled {
            monthly_paths,
            burst_paths,
            ..
        } => BudgetConfig {
            monthly_paths,
            burst_paths,
            pacing: Pacing::Even,
            on_exhausted: OnExhausted::Hold,
            ..BudgetConfig::default()
        },
        Pricing::Fixed { .. } => BudgetConfig {
            monthly_paths: u64::MAX / 4,
            pacing: Pacing::None,
            ..BudgetConfig::default()
        },
    };
    let at = |secs: u64| UNIX_EPOCH + Duration::from_secs(START + secs);
    let first = *days.keys().next().unwrap_or(&0);
    let mut budget =
        Budget::open(MemoryStore::new(), config.clone(), at(first * 86_400)).expect("ledger");
    let mut controller = match pricing {
        Pricing::Controlled {
            blast_per_path,
            tuning,
            ..
        } => Some(PriceController::with_tuning(
            &config,
            blast_per_path,
            None,
            at(first * 86_400),
            tuning,
        )),
        _ => None,
    };
    let mut months: BTreeMap<Month, MonthFigures> = BTreeMap::new();
    let mut waiting: Vec<Entry> = Vec::new();
    let last = *days.keys().last().unwrap_or(&0);
    let mut day = first;
    // Bounded: past the trace's last day, only while something waits, and
    // at most ten years of days.
    while day <= last || (!waiting.is_empty() && day < last + 3_650) {
        let new = days.get(&day);
        if new.is_none() && waiting.is_empty() {
            day += 1;
            continue;
        }
        let now: SystemTime = at(day * 86_400 + 86_399);
        budget.rollover(now).expect("rollover");
        let month = Month::of(now);
        let figures = months.entry(month).or_default();
        let mut entries = std::mem::take(&mut waiting);
        if let Some(new) = new {
            figures.requested += new.len() as u64;
            entries.extend(new.iter().cloned());
        }
        let (capacity, price) = match pricing {
            Pricing::Paced {
                blast_per_path,
                burst_paths,
                ..
            } => {
                let burst = burst_paths as f64;
                let price = price_for(
                    blast_per_path,
                    budget.used() as f64,
                    budget.allowed(now) as f64 - burst,
                    burst,
                );
                let remaining = budget.remaining(now) as usize;
                (
                    Capacity {
                        paths: remaining,
                        ..Capacity::AWS
                    },
                    price,
                )
            }
            Pricing::Fixed { blast_per_path } => (Capacity::AWS, blast_per_path),
            Pricing::Controlled { .. } => {
                let controller = controller.as_mut().expect("made for this pricing");
                controller.advance(now, budget.used());
                let remaining = budget.remaining(now) as usize;
                (
                    Capacity {
                        paths: remaining,
                        ..Capacity::AWS
                    },
                    controller.price(),
                )
            }
        };
        figures.price_end = price;
        let plan = plan_with(
            &entries,
            capacity,
            &settings,
            Strategy::LeastBlast { catalog, price },
        );
        let billed = plan.figures.billed() as u64;
        if billed > 0 {
            let reference = format!("replay-{day}");
            budget
                .reserve(&reference, "www", billed, now)
                .expect("reserve");
            budget.commit(&reference).expect("commit");
        }
        if let Some(controller) = controller.as_mut() {
            controller.advance(now, budget.used());
        }
        figures.billed += billed;
        figures.blast += plan.figures.blast;
        waiting = plan.deferred.iter().map(|&i| entries[i].clone()).collect();
        figures.waiting = waiting.len() as u64;
        day += 1;
    }
    months
}

/// The entries of `requests` (seconds since [`START`], paths) by day.
pub fn by_day<'a>(
    requests: impl IntoIterator<Item = (u64, &'a [String])>,
) -> BTreeMap<u64, Vec<Entry>> {
    let mut days: BTreeMap<u64, Vec<Entry>> = BTreeMap::new();
    for (t, paths) in requests {
        days.entry(t / 86_400).or_default().extend(
            paths
                .iter()
                .map(|p| Entry::new(cfpurge::path::CfPath::parse(p).expect("trace path"), t)),
        );
    }
    days
}

/// Totals over the months.
pub fn total(months: &BTreeMap<Month, MonthFigures>) -> MonthFigures {
    months
        .values()
        .fold(MonthFigures::default(), |a, m| MonthFigures {
            billed: a.billed + m.billed,
            blast: a.blast + m.blast,
            requested: a.requested + m.requested,
            waiting: m.waiting,
            price_end: m.price_end,
        })
}
