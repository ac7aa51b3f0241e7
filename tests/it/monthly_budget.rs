//! No month goes over its budget when least blast plans under
//! `monthly_paths` with the default even pacing, through the daemon's own
//! core on a virtual clock (`cfpurge replay`): on the astro-docs trace where
//! the budget binds, and on a storm far beyond the budget. And the offline
//! optimum `cfpurge replay --optimum` prints is a lower bound that the
//! controller's own plans are measured against.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cfpurge::catalog::{self, Catalog};
use cfpurge::config::Config;
use cfpurge::replay::{self, ReplayOptions, Replayed, TraceLine};

fn astro_catalog() -> Catalog {
    catalog::file::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/data/astro-docs-tree.txt"
    )))
    .expect("catalog file")
}

/// 2023-01-01T00:00:00Z.
fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_672_531_200)
}

fn config(monthly_paths: u64) -> Config {
    let toml = format!(
        r#"
[source]
kind = "local"
[distributions.www]
id = "EWWW"
[routing]
default_distribution = "www"
[coalesce]
strategy = "least_blast"
blast_per_path = 50
[cloudfront]
mode = "simulate"
[budget]
monthly_paths = {monthly_paths}
burst_paths = 100
on_exhausted = "hold"
"#
    );
    Config::from_parts(Some(&toml), "monthly", std::iter::empty()).expect("config")
}

fn replayed(config: &Config, trace: &[TraceLine]) -> Replayed {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    runtime.block_on(replay::run(
        config,
        trace,
        &ReplayOptions {
            catalog: Some(astro_catalog()),
            optimum: true,
        },
    ))
}

fn assert_within(replayed: &Replayed, monthly_paths: u64) {
    for m in &replayed.months {
        assert!(
            m.billed <= monthly_paths,
            "{}: billed {} > {monthly_paths}",
            m.month,
            m.billed
        );
        let optimum = m.optimum.as_ref().expect("--optimum");
        let paced = optimum.optimum_paced.expect("cfpurge's own plans meet the pacing");
        let same = optimum.optimum_same_spend.expect("cfpurge's own spend is feasible");
        let blast = m.blast.expect("with a catalog");
        assert!(paced <= blast && same <= blast, "{m:?}");
    }
    assert_eq!(replayed.total.held_at_end, 0, "everything is purged in the end");
}

#[test]
fn the_astro_trace_month_by_month_stays_within_its_budget() {
    let trace: Vec<TraceLine> = crate::replay::load_trace(Some(1_200))
        .into_iter()
        .map(|r| TraceLine {
            at: start() + Duration::from_secs_f64(r.t),
            paths: r.paths,
            tags: Vec::new(),
            distribution: None,
        })
        .collect();
    let replayed = replayed(&config(300), &trace);
    assert!(replayed.months.len() >= 6, "{} months", replayed.months.len());
    // The budget binds: some month spends all of it.
    assert!(
        replayed.months.iter().any(|m| m.billed > 250),
        "{:?}",
        replayed.months
    );
    assert_within(&replayed, 300);
}

#[test]
fn a_storm_of_requests_is_held_to_the_budget_every_month() {
    // 400 distinct served pages a day for 70 days: 28,000 paths, 12 times
    // a budget of 1,000 a month.
    let tree = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/data/astro-docs-tree.txt"
    ))
    .unwrap();
    let pages: Vec<String> = tree.lines().map(str::to_owned).collect();
    let trace: Vec<TraceLine> = (0..70u64)
        .map(|day| {
            let from = (day as usize * 400) % pages.len();
            TraceLine {
                at: start() + Duration::from_secs(day * 86_400 + 3_600),
                paths: (0..400)
                    .map(|i| pages[(from + i * 7) % pages.len()].clone())
                    .collect(),
                tags: Vec::new(),
                distribution: None,
            }
        })
        .collect();
    let replayed = replayed(&config(1_000), &trace);
    assert!(replayed.months.iter().filter(|m| m.requested > 0).count() >= 3);
    assert_within(&replayed, 1_000);
    // A budget that binds this hard is spent: every month but the last
    // (which only follows what is held) bills near its budget.
    for m in &replayed.months[..replayed.months.len() - 1] {
        assert!(m.billed >= 900, "{}: billed only {}", m.month, m.billed);
    }
}
