//! How close each coalescing policy comes to the least blast possible, on
//! the astro-docs trace: `cargo run --release --example least_blast`.
//!
//! The trace is cut into one batch per day (`floor(t / 86400)`), the site's
//! served paths (`benches/data/astro-docs-tree.txt`) are the catalog, and
//! each batch is planned with CloudFront's in-flight limits (3,000 exact,
//! 15 wildcards) and no budget limit. For every policy it prints the billed
//! paths and the blast (catalog objects purged that no request in the
//! batch asked for), beside the **frontier**: the least total blast any
//! planner could reach on the same batches billing no more paths, found by
//! an exact min-plus sum of every batch's own frontier. Prints Markdown.
//! With `--windows`, a batch is instead the 24 hours from its first
//! request.
//!
//! With `--speed`: the speed targets (a catalog of 1,000,000 paths from a
//! file, a 3,000-entry batch and 1,000,000 entries planned against it),
//! each timed several times with the threshold planner on the same batch
//! for a ratio, and the machine's load average before and after.

use cfpurge::catalog::{self, Catalog};
use cfpurge::path::CfPath;
use cfpurge::planner::least_blast;
use cfpurge::planner::{Capacity, Entry, Settings, Strategy, plan_with};

#[path = "../benches/common/mod.rs"]
mod common;

/// One batch's outcome.
#[derive(Default, Clone, Copy)]
struct Outcome {
    billed: u64,
    blast: u64,
}

fn main() {
    let trace = common::trace();
    let catalog =
        catalog::file::load(&common::data_file("astro-docs-tree.txt")).expect("catalog file");
    if std::env::args().any(|a| a == "--speed") {
        speed();
        return;
    }
    // `--windows`: a batch opens at its first request and takes the next
    // 24 hours, as the daemon's `max_delay_seconds` cuts a stream.
    let windows = std::env::args().any(|a| a == "--windows");
    let batches = if windows {
        common::windows(&trace, 86_400)
    } else {
        days(&trace)
    };
    let settings = Settings::default();
    let capacity = Capacity::AWS;
    let n = batches.len() as f64;
    let requested: usize = batches.iter().map(Vec::len).sum();

    let frontier = combined_frontier(&batches, capacity, &settings, &catalog);
    let at = |billed: u64| -> u64 {
        frontier[..=(billed as usize).min(frontier.len() - 1)]
            .iter()
            .copied()
            .min()
            .unwrap_or(u64::MAX)
    };

    println!(
        "{} batches ({}), {requested} requested paths, catalog of {} paths\n",
        batches.len(),
        if windows {
            "24-hour windows from each batch's first request"
        } else {
            "one per day, floor(t / 86400)"
        },
        catalog.objects()
    );
    println!(
        "| policy | billed paths | blast per batch | least blast per batch at that billed count (frontier) | over the frontier |"
    );
    println!("|---|---:|---:|---:|---:|");
    let row = |name: &str, o: Outcome| {
        let best = at(o.billed);
        let over = if best == 0 {
            if o.blast == 0 { 0.0 } else { f64::INFINITY }
        } else {
            (o.blast as f64 / best as f64 - 1.0) * 100.0
        };
        println!(
            "| {name} | {} | {:.1} | {:.1} | {over:+.1} % |",
            o.billed,
            o.blast as f64 / n,
            best as f64 / n
        );
    };

    let threshold = total(&batches, |b| {
        let p = plan_with(
            b,
            capacity,
            &settings,
            Strategy::Threshold {
                catalog: Some(&catalog),
            },
        );
        assert!(p.deferred.is_empty());
        Outcome {
            billed: p.figures.billed() as u64,
            blast: p.figures.blast,
        }
    });
    row(
        "threshold (`wildcard_threshold = 8`, the default)",
        threshold,
    );
    for bpp in [1.0, 5.0, 20.0, 50.0, 200.0] {
        let o = total(&batches, |b| {
            let p = plan_with(
                b,
                capacity,
                &settings,
                Strategy::LeastBlast {
                    catalog: &catalog,
                    price: bpp,
                },
            );
            assert!(p.deferred.is_empty());
            Outcome {
                billed: p.figures.billed() as u64,
                blast: p.figures.blast,
            }
        });
        row(&format!("least_blast, `blast_per_path = {bpp}`"), o);
    }
    let policy = |f: fn(&[Entry]) -> Vec<CfPath>| {
        total(&batches, |b| {
            let paths = f(b);
            Outcome {
                billed: paths.len() as u64,
                blast: least_blast::blast(&paths, b, &catalog),
            }
        })
    };
    row(
        "s3deploy: climb until ≤ 8 paths, else `/*`",
        policy(s3deploy),
    );
    row("C3: over 100 paths, `/*`", policy(c3));
    row(
        "63Klabs: per directory up to 3 paths, else its wildcard; over 10 wildcards, `/*`",
        policy(klabs),
    );

    println!(
        "\nThe frontier itself (least blast per batch reachable with at most that many billed paths):\n"
    );
    println!("| billed paths | least blast per batch |");
    println!("|---:|---:|");
    let unique: u64 = batches.iter().map(|b| distinct(b).len() as u64).sum();
    for billed in [
        1_500, 2_000, 2_500, 2_833, 3_000, 3_500, 4_000, 4_766, 5_140, 5_807, 6_500, 7_923, unique,
    ] {
        match at(billed) {
            u64::MAX => println!("| {billed} | none: no cover bills so few |"),
            best => println!("| {billed} | {:.1} |", best as f64 / n),
        }
    }
}

/// The trace's requests grouped by day (`floor(t / 86400)`), `since` =
/// request time.
fn days(trace: &[common::Request]) -> Vec<Vec<Entry>> {
    let mut by_day: std::collections::BTreeMap<u64, Vec<Entry>> = Default::default();
    for r in trace {
        by_day.entry(r.t / 86_400).or_default().extend(
            r.paths
                .iter()
                .map(|p| Entry::new(CfPath::parse(p).expect("path"), r.t)),
        );
    }
    by_day.into_values().collect()
}

fn total(batches: &[Vec<Entry>], mut f: impl FnMut(&[Entry]) -> Outcome) -> Outcome {
    batches.iter().fold(Outcome::default(), |acc, b| {
        let o = f(b);
        Outcome {
            billed: acc.billed + o.billed,
            blast: acc.blast + o.blast,
        }
    })
}

/// For every total of billed paths, the least total blast reachable on all
/// batches together (`u64::MAX` where no combination bills exactly that):
/// the min-plus sum of the batches' frontiers.
fn combined_frontier(
    batches: &[Vec<Entry>],
    capacity: Capacity,
    settings: &Settings,
    catalog: &Catalog,
) -> Vec<u64> {
    let mut total = vec![0u64];
    for b in batches {
        let f = least_blast::frontier(b, capacity, settings, catalog);
        let max = f.iter().map(|p| p.0).max().unwrap_or(0);
        let mut next = vec![u64::MAX; total.len() + max];
        for (t, &have) in total.iter().enumerate() {
            if have == u64::MAX {
                continue;
            }
            for &(billed, blast) in &f {
                let slot = &mut next[t + billed];
                *slot = (*slot).min(have + blast);
            }
        }
        total = next;
    }
    total
}

fn distinct(batch: &[Entry]) -> Vec<String> {
    let mut v: Vec<String> = batch.iter().map(|e| e.path.as_str().to_owned()).collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn path(s: &str) -> CfPath {
    CfPath::parse(s).expect("policy path")
}

/// s3deploy's `normalizeInvalidationPaths` with its threshold of 8: a page
/// `/a/b/` stands for the key `a/b/index.html`, which it turns back into
/// `/a/b/`; over 8 paths, every path deeper than k slashes is replaced by
/// the wildcard of its grandparent directory, k falling from the deepest
/// level to 1, until 8 or fewer remain; else `/*`.
fn s3deploy(batch: &[Entry]) -> Vec<CfPath> {
    const THRESHOLD: usize = 8;
    let mut normalized = distinct(batch);
    let levels = |p: &str| {
        // The key of a page ends in /index.html: one level more.
        p.matches('/').count() + usize::from(p.ends_with('/'))
    };
    let max = normalized.iter().map(|p| levels(p)).max().unwrap_or(0);
    if normalized.len() > THRESHOLD {
        for k in (1..=max).rev() {
            for p in &mut normalized {
                if levels(p) > k {
                    // path.Dir of the cleaned path, then one part less.
                    let clean = p.trim_end_matches('/').trim_end_matches('*');
                    let clean = clean.trim_end_matches('/');
                    let dir = &clean[..clean.rfind('/').unwrap_or(0)];
                    let mut parts: Vec<&str> = dir.trim_start_matches('/').split('/').collect();
                    if parts.len() > 1 {
                        parts.pop();
                    }
                    *p = format!("/{}/*", parts.join("/")).replace("//", "/");
                }
            }
            normalized.sort_unstable();
            normalized.dedup();
            if normalized.len() <= THRESHOLD {
                break;
            }
        }
        if normalized.len() > THRESHOLD {
            return vec![path("/*")];
        }
    }
    if normalized.iter().any(|p| p == "/*") {
        return vec![path("/*")];
    }
    normalized.iter().map(|p| path(p)).collect()
}

/// C3: the paths as they are, or `/*` when there are over 100.
fn c3(batch: &[Entry]) -> Vec<CfPath> {
    let d = distinct(batch);
    if d.len() > 100 {
        vec![path("/*")]
    } else {
        d.iter().map(|p| path(p)).collect()
    }
}

/// 63Klabs: per directory (a page `/a/b/` is in `/a/`), up to 3 paths as
/// they are, more as the directory's wildcard; more than 10 directory
/// wildcards, `/*`.
fn klabs(batch: &[Entry]) -> Vec<CfPath> {
    let mut by_dir: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for p in distinct(batch) {
        let trimmed = p.trim_end_matches('/');
        let dir = trimmed[..=trimmed.rfind('/').unwrap_or(0)].to_owned();
        by_dir.entry(dir).or_default().push(p);
    }
    let mut out = Vec::new();
    let mut wildcards = 0;
    for (dir, paths) in by_dir {
        if paths.len() <= 3 {
            out.extend(paths.iter().map(|p| path(p)));
        } else {
            wildcards += 1;
            out.push(path(&format!("{dir}*")));
        }
    }
    if wildcards > 10 || out.iter().any(|p| p.as_str() == "/*") {
        return vec![path("/*")];
    }
    out
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Seconds of each of `runs` calls of `f`, sorted.
fn timed(runs: usize, mut f: impl FnMut()) -> Vec<f64> {
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let started = std::time::Instant::now();
            f();
            started.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t
}

fn show(what: &str, t: &[f64], unit: f64, unit_name: &str) {
    let fmt: Vec<String> = t.iter().map(|x| format!("{:.2}", x * unit)).collect();
    println!(
        "{what}: median {:.2} {unit_name}, min {:.2}, runs [{}]",
        t[t.len() / 2] * unit,
        t[0] * unit,
        fmt.join(", ")
    );
}

/// `--speed`.
fn speed() {
    use std::hint::black_box;
    use std::io::Write;
    const OBJECTS: usize = 1_000_000;
    println!(
        "cores {}, load average (1, 5, 15 min) at start: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("site.txt");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
        for p in common::site_paths(OBJECTS) {
            writeln!(out, "{p}").expect("write");
        }
    }
    let t = timed(5, || {
        black_box(catalog::file::load(&path).expect("load"));
    });
    show("catalog of 1,000,000 paths from a file", &t, 1.0, "s");
    let catalog = catalog::file::load(&path).expect("load");
    let settings = Settings::default();
    let trace = common::trace();
    let batches = [
        (
            "3,000 entries drawn from the catalog",
            common::site_entries(OBJECTS, 3_000, 7),
            21,
            1e3,
            "ms",
        ),
        (
            "1,000,000 generated entries (the planner benchmark's set)",
            common::generated(&trace, 1_000_000, 42),
            5,
            1.0,
            "s",
        ),
        (
            "1,000,000 entries drawn from the catalog",
            common::site_entries(OBJECTS, 1_000_000, 7),
            3,
            1.0,
            "s",
        ),
    ];
    for (name, batch, runs, unit, unit_name) in &batches {
        let lb = timed(*runs, || {
            black_box(least_blast::plan(
                batch,
                Capacity::AWS,
                &settings,
                &catalog,
                50.0,
            ));
        });
        let th = timed(*runs, || {
            black_box(cfpurge::planner::plan(batch, Capacity::AWS, &settings));
        });
        show(&format!("least_blast, {name}"), &lb, *unit, unit_name);
        show(&format!("threshold, {name}"), &th, *unit, unit_name);
        println!(
            "  ratio least_blast / threshold (medians): {:.2}",
            lb[lb.len() / 2] / th[th.len() / 2]
        );
    }
    println!("load average at the end: {}", load_average());
}
