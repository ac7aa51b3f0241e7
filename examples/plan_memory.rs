//! Memory the planner needs, counted exactly by a counting allocator:
//! `cargo run --release --example plan_memory`.
//!
//! For each input it prints the bytes the entries themselves take and the
//! peak of what `plan` allocates on top of them, each per entry, plus one
//! wall-clock time (the criterion benchmark is the careful timing).

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use cfpurge::planner::{Capacity, Entry, Settings, plan};

#[path = "../benches/common/mod.rs"]
mod common;
#[path = "support/counting.rs"]
mod counting;

use counting::{LIVE, PEAK};

/// Builds the batches with `make`, counting what they take, then plans each.
fn measure(name: &str, make: impl FnOnce() -> Vec<Vec<Entry>>) {
    let before_input = LIVE.load(Relaxed);
    let batches = make();
    let input = LIVE.load(Relaxed) - before_input;
    let entries: usize = batches.iter().map(Vec::len).sum();
    let mut peak_extra = 0;
    let mut billed = 0;
    let started = Instant::now();
    for batch in &batches {
        let before = LIVE.load(Relaxed);
        PEAK.store(before, Relaxed);
        let p = plan(batch, Capacity::AWS, &Settings::default());
        billed += p.figures.billed();
        peak_extra = peak_extra.max(PEAK.load(Relaxed) - before);
        drop(p);
    }
    let elapsed = started.elapsed();
    let largest = batches.iter().map(Vec::len).max().unwrap_or(0).max(1);
    println!(
        "{name:<24} entries {entries:>9}  batches {:>5}  billed {billed:>6}  input {:>6.1} B/entry  \
         planner peak {:>6.1} B/entry of the largest batch  time {:>8.2} ms",
        batches.len(),
        input as f64 / entries.max(1) as f64,
        peak_extra as f64 / largest as f64,
        elapsed.as_secs_f64() * 1e3,
    );
}

fn main() {
    let trace = common::trace();
    measure("astro all, one batch", || vec![common::all_entries(&trace)]);
    measure("astro each day a batch", || common::windows(&trace, 86_400));
    measure("generated 1,000,000", || {
        vec![common::generated(&trace, 1_000_000, 42)]
    });
}
