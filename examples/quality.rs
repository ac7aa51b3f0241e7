//! What coalescing buys on the astro-docs trace, and what it reaches beyond
//! the request: `cargo run --release --example quality [WINDOW_SECONDS]`.
//!
//! The trace is cut into batches of `WINDOW_SECONDS` (default 60) from each
//! batch's first request, each batch planned with CloudFront's in-flight
//! limits, and over-reach counted against every path the site serves.
//! Prints a Markdown table for the README.

use cfpurge::path::CfPath;
use cfpurge::planner::{Capacity, Settings, overreach, plan};

#[path = "../benches/common/mod.rs"]
mod common;

fn main() {
    let window: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("WINDOW_SECONDS is a whole number"))
        .unwrap_or(60);
    let trace = common::trace();
    let universe = common::universe();
    let batches = common::windows(&trace, window);
    let requested: usize = trace.iter().map(|r| r.paths.len()).sum();

    println!(
        "| coalescing | requested paths | distinct per batch | billed paths | CreateInvalidation calls | over-reach |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| none: one invalidation per request | {requested} | – | {requested} | {} | 0 |",
        trace.len()
    );
    for threshold in [None, Some(32), Some(16), Some(8), Some(4)] {
        let settings = Settings {
            wildcard_threshold: threshold.unwrap_or(usize::MAX),
            ..Settings::default()
        };
        let (mut unique, mut billed, mut calls, mut reach) = (0, 0, 0, 0);
        for batch in &batches {
            let p = plan(batch, Capacity::AWS, &settings);
            assert!(
                p.deferred.is_empty(),
                "a batch of the trace fits CloudFront's limits"
            );
            let asked: Vec<CfPath> = batch.iter().map(|e| e.path.clone()).collect();
            unique += p.figures.unique;
            billed += p.figures.billed();
            calls += usize::from(!p.paths.is_empty());
            reach += overreach(&p.paths, &asked, &universe);
        }
        let label = match threshold {
            None => format!("{window} s window, duplicates only"),
            Some(t) => format!("{window} s window, `wildcard_threshold = {t}`"),
        };
        println!("| {label} | {requested} | {unique} | {billed} | {calls} | {reach} |");
    }
}
