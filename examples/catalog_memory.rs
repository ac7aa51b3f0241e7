//! Memory and time to build a catalog of 1,000,000 served paths of the
//! astro-docs shape from a file, counted by a counting allocator:
//! `cargo run --release --example catalog_memory [OBJECTS]`.

use std::io::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use cfpurge::catalog::file;

#[path = "../benches/common/mod.rs"]
mod common;
#[path = "support/counting.rs"]
mod counting;

use counting::{LIVE, PEAK};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("OBJECTS is a whole number"))
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("site.txt");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
        for p in common::site_paths(n) {
            writeln!(out, "{p}").expect("write");
        }
    }
    let bytes = std::fs::metadata(&path).expect("metadata").len();
    let before = LIVE.load(Relaxed);
    PEAK.store(before, Relaxed);
    let started = Instant::now();
    let catalog = file::load(&path).expect("load");
    let took = started.elapsed();
    let peak = PEAK.load(Relaxed) - before;
    let kept = LIVE.load(Relaxed) - before;
    println!(
        "{} objects ({:.1} MB file), {} directories: built in {:.2} s, \
         peak {:.1} MB allocated while building, {:.1} MB kept ({:.1} bytes an object; \
         memory_bytes() says {:.1} MB)",
        catalog.objects(),
        bytes as f64 / 1e6,
        catalog.directories(),
        took.as_secs_f64(),
        peak as f64 / 1e6,
        kept as f64 / 1e6,
        kept as f64 / catalog.objects() as f64,
        catalog.memory_bytes() as f64 / 1e6,
    );
}
