//! Inputs shared by the planner benchmark and the measurement examples: the
//! astro-docs trace in `benches/data` and larger sets generated in its shape.
#![allow(dead_code)] // each user takes what it needs

use std::path::PathBuf;

use cfpurge::path::CfPath;
use cfpurge::planner::Entry;

/// One purge request of the trace.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Request {
    /// Seconds since the first request.
    pub t: u64,
    pub paths: Vec<String>,
}

pub fn data_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("benches/data")
        .join(name)
}

/// The astro-docs trace, in time order.
pub fn trace() -> Vec<Request> {
    let text = std::fs::read_to_string(data_file("astro-docs-commits.jsonl")).expect("trace file");
    text.lines()
        .map(|l| serde_json::from_str(l).expect("trace line"))
        .collect()
}

/// Every path the site serves.
pub fn universe() -> Vec<CfPath> {
    let text = std::fs::read_to_string(data_file("astro-docs-tree.txt")).expect("tree file");
    text.lines()
        .map(|l| CfPath::parse(l).expect("tree path"))
        .collect()
}

/// Every path of every request as one batch, `since` = request time.
pub fn all_entries(trace: &[Request]) -> Vec<Entry> {
    trace
        .iter()
        .flat_map(|r| {
            r.paths
                .iter()
                .map(move |p| Entry::new(CfPath::parse(p).expect("path"), r.t))
        })
        .collect()
}

/// The trace cut into one batch per `window` seconds, a batch opening at its
/// first request (how the daemon's `max_delay_seconds` cuts a busy stream).
pub fn windows(trace: &[Request], window: u64) -> Vec<Vec<Entry>> {
    let mut batches: Vec<Vec<Entry>> = Vec::new();
    let mut opened = None;
    for r in trace {
        if opened.is_none_or(|start| r.t >= start + window) {
            opened = Some(r.t);
            batches.push(Vec::new());
        }
        let batch = batches.last_mut().expect("a batch was opened");
        batch.extend(
            r.paths
                .iter()
                .map(|p| Entry::new(CfPath::parse(p).expect("path"), r.t)),
        );
    }
    batches
}

/// `n` entries in the shape of the trace: paths drawn from the trace by its
/// own frequencies, the last segment of each given one of `n / 10` variants,
/// so directories keep their depth and grow wider, and about one entry in
/// ten repeats another.
pub fn generated(trace: &[Request], n: usize, seed: u64) -> Vec<Entry> {
    let pool: Vec<&str> = trace
        .iter()
        .flat_map(|r| r.paths.iter().map(String::as_str))
        .collect();
    let variants = (n / 10).max(1) as u64;
    let mut state = seed;
    (0..n)
        .map(|i| {
            let base = pool[(splitmix(&mut state) % pool.len() as u64) as usize];
            let v = splitmix(&mut state) % variants;
            Entry::new(
                CfPath::parse(&with_variant(base, v)).expect("generated path"),
                i as u64,
            )
        })
        .collect()
}

/// `/en/guides/x/` with variant 7 is `/en/guides/x-7/`; `/a.png` is `/a-7.png`.
fn with_variant(path: &str, v: u64) -> String {
    let trimmed = path.trim_end_matches('/');
    let slash = &path[trimmed.len()..];
    let cut = trimmed.rfind('/').map_or(0, |i| i + 1);
    let (dir, last) = trimmed.split_at(cut);
    match last.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!("{dir}{stem}-{v}.{ext}{slash}"),
        _ => format!("{dir}{last}-{v}{slash}"),
    }
}

/// splitmix64: a tiny, well-known generator; the sets only need to be the
/// same on every run.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `n` distinct served paths in the shape of the astro-docs site: every
/// path of its tree in turn, the last segment of each given a variant
/// number (`/en/guides/x-7/`) after the first round, so directories keep
/// their depth and grow wider.
pub fn site_paths(n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(data_file("astro-docs-tree.txt")).expect("tree file");
    let tree: Vec<&str> = text.lines().collect();
    (0..n)
        .map(|i| {
            let base = tree[i % tree.len()];
            match i / tree.len() {
                0 => base.to_owned(),
                v => with_variant(base, v as u64),
            }
        })
        .collect()
}

/// `n` entries drawn from [`site_paths`]`(catalog)`, so that requests fall
/// in the catalog as real ones do, `since` = position.
pub fn site_entries(catalog: usize, n: usize, seed: u64) -> Vec<Entry> {
    let text = std::fs::read_to_string(data_file("astro-docs-tree.txt")).expect("tree file");
    let tree: Vec<&str> = text.lines().collect();
    let rounds = catalog.div_ceil(tree.len()) as u64;
    let mut state = seed;
    (0..n)
        .map(|i| {
            let base = tree[(splitmix(&mut state) % tree.len() as u64) as usize];
            let path = match splitmix(&mut state) % rounds {
                0 => base.to_owned(),
                v => with_variant(base, v),
            };
            Entry::new(CfPath::parse(&path).expect("site path"), i as u64)
        })
        .collect()
}
