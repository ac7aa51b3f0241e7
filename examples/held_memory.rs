//! Memory a held message takes in the pending set, counted exactly by a
//! counting allocator: `cargo run --release --example held_memory`.
//!
//! 100,000 messages of 10 paths each, the paths of the benchmark's storm
//! (the trace's shape, 1,000,000 paths, one in ten repeated), message ids
//! as long as SQS's. It prints the bytes the pending set holds per message
//! against its own estimate (what `source.max_pending_bytes` counts), and
//! the peak of what one `batch` (the planner's input) allocates on top.

use std::sync::atomic::Ordering::Relaxed;

use cfpurge::decode::PurgeRequest;
use cfpurge::pending::{BatchRules, PendingSet};

#[path = "../benches/common/mod.rs"]
mod common;
#[path = "support/counting.rs"]
mod counting;

use counting::{LIVE, PEAK};

const MESSAGES: usize = 100_000;
const PATHS_PER_MESSAGE: usize = 10;

fn main() {
    let trace = common::trace();
    let entries = common::generated(&trace, MESSAGES * PATHS_PER_MESSAGE, 42);
    let requests: Vec<(String, Vec<PurgeRequest>)> = entries
        .chunks(PATHS_PER_MESSAGE)
        .enumerate()
        .map(|(i, chunk)| {
            // SQS's message ids are UUIDs: 36 characters.
            let id = format!("{i:08x}-0000-4000-8000-000000000000");
            let request = PurgeRequest {
                distribution: "www".to_owned(),
                paths: chunk.iter().map(|e| e.path.clone()).collect(),
                skipped: Vec::new(),
                urgent: false,
                reason: None,
                requested_by: None,
                s3_removed: None,
            };
            (id, vec![request])
        })
        .collect();
    let text: usize = entries.iter().map(|e| e.path.as_str().len()).sum();
    drop(entries);

    let mut set = PendingSet::new(BatchRules {
        quiet: 5_000,
        max_delay: 60_000,
        max_batch_paths: usize::MAX,
    });
    let before = LIVE.load(Relaxed);
    for (i, (id, request)) in requests.iter().enumerate() {
        set.add(id, i as u64, request);
    }
    let held = LIVE.load(Relaxed) - before;
    let distinct = set.pending_paths("www");

    let before = LIVE.load(Relaxed);
    PEAK.store(before, Relaxed);
    let batch = set.batch("www");
    let batch_peak = PEAK.load(Relaxed) - before;
    drop(batch);

    let per = |bytes: usize| bytes as f64 / MESSAGES as f64;
    println!(
        "{MESSAGES} messages, {} paths ({distinct} distinct, {:.1} bytes of text each on average)",
        MESSAGES * PATHS_PER_MESSAGE,
        text as f64 / (MESSAGES * PATHS_PER_MESSAGE) as f64,
    );
    println!(
        "pending set: {:.0} B per message measured, {:.0} B estimated (max_pending_bytes counts the estimate)",
        per(held),
        per(set.bytes()),
    );
    println!(
        "one batch for the planner: {:.0} B per message on top, at its peak",
        per(batch_peak)
    );
}
