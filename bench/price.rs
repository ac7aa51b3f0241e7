//! The budget's price against the offline optimum, month by month:
//! `cargo run --release --example monthly_price`.
//!
//! Each trace is replayed as `bench/monthly.rs` replays it (one batch per
//! day at the day's end, the real ledger, `pacing = "even"`,
//! `burst_paths = 100`, `on_exhausted = "hold"`, `blast_per_path = 50`),
//! once at the budget price controller's price and once at the old
//! `planner::price_for`, beside the least blast the same day batches could
//! have had within the same budget and pacing allowance
//! (`planner::optimum::paced`). The traces: astro-docs under 300 and 1,000
//! paths a month, and three generated months (`bench/optimum.rs`) of each
//! shape under 1,000. Prints Markdown.
//!
//! `--step`, `--floor`, `--ceiling` and `--rate-cap` replace the controller's tuning
//! (`budget::Tuning`), to compare tunings; `--months` prints every month.

use std::collections::BTreeMap;

use cfpurge::budget::{Month, Tuning};
use cfpurge::catalog::{self, Catalog};
use cfpurge::planner::Entry;

#[path = "../benches/common/mod.rs"]
mod common;
#[path = "monthly.rs"]
mod monthly;
#[path = "optimum.rs"]
mod optimum;

use monthly::{MonthFigures, Pricing, by_day, replay, total};
use optimum::{Shape, curves, generated, optima};

/// A trace to replay: its name, `monthly_paths`, and its day batches.
type Trace = (String, u64, BTreeMap<u64, Vec<Entry>>);

const BLAST_PER_PATH: f64 = 50.0;
const BURST: u64 = 100;
/// Deploys a day at the generated traces' steady rate.
const RATE: u64 = 1;

fn arg(name: &str) -> Option<f64> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1)?.parse().ok()
}

fn main() {
    let catalog =
        catalog::file::load(&common::data_file("astro-docs-tree.txt")).expect("catalog file");
    let default = Tuning::DEFAULT;
    let tuning = Tuning {
        step: arg("--step").unwrap_or(default.step),
        floor: arg("--floor").unwrap_or(default.floor),
        ceiling_factor: arg("--ceiling").unwrap_or(default.ceiling_factor),
        rate_cap: arg("--rate-cap").unwrap_or(default.rate_cap),
    };
    let months = std::env::args().any(|a| a == "--months");
    println!(
        "tuning: step {}, floor {}, ceiling {} x blast_per_path, rate cap {}\n",
        tuning.step, tuning.floor, tuning.ceiling_factor, tuning.rate_cap
    );
    println!(
        "| trace | monthly_paths | requested | billed: controller / price_for / paced optimum | \
         blast: controller / price_for / paced optimum | controller ÷ optimum | \
         price_for ÷ optimum | months over budget |"
    );
    println!("|---|---:|---:|---|---|---:|---:|---:|");
    let astro = common::trace();
    let astro_days = by_day(astro.iter().map(|r| (r.t, r.paths.as_slice())));
    let pages: Vec<String> = std::fs::read_to_string(common::data_file("astro-docs-tree.txt"))
        .expect("tree file")
        .lines()
        .map(str::to_owned)
        .collect();
    let mut traces: Vec<Trace> = vec![
        ("astro-docs".to_owned(), 300, astro_days.clone()),
        ("astro-docs".to_owned(), 1_000, astro_days),
    ];
    for shape in Shape::ALL {
        let requests = generated(shape, &pages, RATE);
        let days = by_day(requests.iter().map(|(t, p)| (*t, p.as_slice())));
        traces.push((shape.name().to_owned(), 1_000, days));
    }
    if let Some(i) = std::env::args().position(|a| a == "--dump-curves") {
        let file = std::env::args().nth(i + 1).expect("--dump-curves FILE");
        dump_curves(&traces, &catalog, &file);
        return;
    }
    for (name, monthly_paths, days) in &traces {
        row(name, *monthly_paths, days, &catalog, tuning, months);
    }
}

/// `--dump-curves FILE`: every trace's day batches as JSON (month,
/// allowance, curve), to study a pricing rule outside the replay.
fn dump_curves(traces: &[Trace], catalog: &Catalog, file: &str) {
    let out: Vec<serde_json::Value> = traces
        .iter()
        .map(|(name, monthly_paths, days)| {
            let by_month = curves(days, catalog, *monthly_paths, BURST);
            let months: Vec<serde_json::Value> = by_month
                .iter()
                .map(|(month, days)| {
                    let batches: Vec<serde_json::Value> = days
                        .iter()
                        .map(|d| serde_json::json!({"day": d.day, "allowed": d.allowed, "curve": d.curve}))
                        .collect();
                    serde_json::json!({"month": month.to_string(), "batches": batches})
                })
                .collect();
            serde_json::json!({"trace": name, "monthly_paths": monthly_paths, "months": months})
        })
        .collect();
    std::fs::write(file, serde_json::to_string(&out).expect("JSON")).expect("write the curves");
}

fn row(
    name: &str,
    monthly_paths: u64,
    days: &BTreeMap<u64, Vec<Entry>>,
    catalog: &Catalog,
    tuning: Tuning,
    print_months: bool,
) {
    let controlled = replay(
        days,
        catalog,
        Pricing::Controlled {
            blast_per_path: BLAST_PER_PATH,
            monthly_paths,
            burst_paths: BURST,
            tuning,
        },
    );
    let old = replay(
        days,
        catalog,
        Pricing::Paced {
            blast_per_path: BLAST_PER_PATH,
            monthly_paths,
            burst_paths: BURST,
        },
    );
    let curves = curves(days, catalog, monthly_paths, BURST);
    let best = optima(&curves, &controlled);
    let (c, o) = (total(&controlled), total(&old));
    let paced_blast: u64 = best.values().map(|m| m.paced_blast).sum();
    let paced_billed: u64 = best.values().map(|m| m.paced_billed).sum();
    let over = controlled
        .values()
        .chain(old.values())
        .filter(|m| m.billed > monthly_paths)
        .count();
    let ratio = |blast: u64| blast as f64 / paced_blast.max(1) as f64;
    println!(
        "| {name} | {monthly_paths} | {} | {} / {} / {paced_billed} | {} / {} / {paced_blast} | \
         {:.2} | {:.2} | {over} |",
        c.requested,
        c.billed,
        o.billed,
        c.blast,
        o.blast,
        ratio(c.blast),
        ratio(o.blast),
    );
    if print_months {
        print_by_month(&controlled, &old, &best);
    }
}

fn print_by_month(
    controlled: &BTreeMap<Month, MonthFigures>,
    old: &BTreeMap<Month, MonthFigures>,
    best: &BTreeMap<Month, optimum::MonthOptimum>,
) {
    for (month, m) in controlled {
        let o = old.get(month).copied().unwrap_or_default();
        let b = best.get(month).copied().unwrap_or_default();
        println!(
            "|   {month} | | {} | {} / {} / {} | {} / {} / {} (same spend {}) | price_end {:.4} | | |",
            m.requested,
            m.billed,
            o.billed,
            b.paced_billed,
            m.blast,
            o.blast,
            b.paced_blast,
            b.same_spend_blast,
            m.price_end
        );
    }
}
