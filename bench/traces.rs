//! Generated traces for `cfpurge replay --optimum`, beside the astro-docs
//! one: `cargo run --release --example traces -- DIR` writes one trace file
//! per shape into `DIR` (`steady.jsonl`, `storm-early.jsonl`,
//! `storm-late.jsonl`, `tenfold.jsonl`), three calendar months from
//! 2023-01-01 each, in RFC 3339 times. `--rate N` sets the steady rate of
//! deploys a day (1). Each deploy touches pages of the astro-docs site
//! (`benches/data/astro-docs-tree.txt`, the catalog to replay with), as a
//! change to a section's shared layout or a batch of edits would.
//! docs/least-blast.md replays them under `monthly_paths = 1000`.

use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

#[path = "../benches/common/mod.rs"]
mod common;

/// 2023-01-01T00:00:00Z, the traces' start.
const START: u64 = 1_672_531_200;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut rate = 1;
    let mut dir = None;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--rate" => {
                i += 1;
                rate = args
                    .get(i)
                    .and_then(|r| r.parse().ok())
                    .expect("--rate takes a whole number of deploys a day");
            }
            other => dir = Some(std::path::PathBuf::from(other)),
        }
        i += 1;
    }
    let dir = dir.expect("usage: traces DIR [--rate N]");
    std::fs::create_dir_all(&dir).expect("create the directory");
    let pages: Vec<String> = std::fs::read_to_string(common::data_file("astro-docs-tree.txt"))
        .expect("tree file")
        .lines()
        .map(str::to_owned)
        .collect();
    for shape in Shape::ALL {
        let path = dir.join(format!("{}.jsonl", shape.file()));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
        let requests = generated(shape, &pages, rate);
        for (t, paths) in &requests {
            let at = UNIX_EPOCH + Duration::from_secs(START + t);
            let line = serde_json::json!({
                "t": cfpurge::status::format_time(at),
                "paths": paths,
            });
            writeln!(out, "{line}").expect("write");
        }
        out.flush().expect("write");
        let paths: usize = requests.iter().map(|r| r.1.len()).sum();
        println!(
            "{}: {} requests, {paths} paths ({})",
            path.display(),
            requests.len(),
            shape.name()
        );
    }
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

    /// The trace's file name, without `.jsonl`.
    pub fn file(self) -> &'static str {
        match self {
            Shape::Steady => "steady",
            Shape::EarlyStorm => "storm-early",
            Shape::LateStorm => "storm-late",
            Shape::TenfoldMonth => "tenfold",
        }
    }

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
