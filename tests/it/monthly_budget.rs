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
    replayed_on(config, trace, None)
}

/// [`replayed`] without the offline optimum, which costs more than the
/// replay itself.
fn replayed_alone(config: &Config, trace: &[TraceLine]) -> Replayed {
    replay_with(config, trace, None, false)
}

/// A replay starting on `ledger`, as a daemon restarted on it.
fn replayed_on(
    config: &Config,
    trace: &[TraceLine],
    ledger: Option<cfpurge::budget::LedgerState>,
) -> Replayed {
    replay_with(config, trace, ledger, true)
}

fn replay_with(
    config: &Config,
    trace: &[TraceLine],
    ledger: Option<cfpurge::budget::LedgerState>,
    optimum: bool,
) -> Replayed {
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
            optimum,
            ledger,
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
        let Some(optimum) = m.optimum.as_ref() else {
            continue;
        };
        let paced = optimum
            .optimum_paced
            .expect("cfpurge's own plans meet the pacing");
        let same = optimum
            .optimum_same_spend
            .expect("cfpurge's own spend is feasible");
        let blast = m.blast.expect("with a catalog");
        assert!(paced <= blast && same <= blast, "{m:?}");
    }
    assert_eq!(
        replayed.total.held_at_end, 0,
        "everything is purged in the end"
    );
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
    assert!(
        replayed.months.len() >= 6,
        "{} months",
        replayed.months.len()
    );
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
    // 400 distinct served pages a day for 45 days: 18,000 paths, 12 times
    // a budget of 1,000 a month.
    let tree = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/data/astro-docs-tree.txt"
    ))
    .unwrap();
    let pages: Vec<String> = tree.lines().map(str::to_owned).collect();
    let trace: Vec<TraceLine> = (0..45u64)
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
    let replayed = replayed_alone(&config(1_000), &trace);
    assert!(replayed.months.iter().filter(|m| m.requested > 0).count() >= 2);
    assert_within(&replayed, 1_000);
    // A budget that binds this hard is spent: every month but the last
    // (which only follows what is held) bills near its budget.
    for m in &replayed.months[..replayed.months.len() - 1] {
        assert!(m.billed >= 900, "{}: billed only {}", m.month, m.billed);
    }
}

/// Two months of deploys that bind a budget of 1,000: every two hours one
/// touches a section of the site (up to 40 of its pages), about 3 times
/// what the pace allows.
fn binding_trace() -> Vec<TraceLine> {
    let tree = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/data/astro-docs-tree.txt"
    ))
    .unwrap();
    let pages: Vec<&str> = tree.lines().collect();
    let sections: Vec<&str> = {
        let mut s: Vec<&str> = pages
            .iter()
            .filter_map(|p| p.match_indices('/').nth(2).map(|(i, _)| &p[..=i]))
            .collect();
        s.dedup();
        s
    };
    (0..59 * 12u64)
        .map(|i| {
            let section = sections[(i as usize * 7919) % sections.len()];
            let paths: Vec<String> = pages
                .iter()
                .filter(|p| p.starts_with(section))
                .enumerate()
                .filter(|(k, _)| (k + i as usize).is_multiple_of(3))
                .map(|(_, p)| (*p).to_owned())
                .take(40)
                .collect();
            TraceLine {
                at: start() + Duration::from_secs(i * 7_200 + 60),
                paths,
                tags: Vec::new(),
                distribution: None,
            }
        })
        .filter(|l| !l.paths.is_empty())
        .collect()
}

/// The price controller through the daemon's core, on a virtual clock,
/// with the default even pacing and a budget that binds: the month's
/// spending follows the pace within `burst_paths`, the price settles, and
/// a restart in the middle of a month resumes from the price kept with
/// the ledger.
#[test]
fn the_price_follows_the_pace_settles_and_resumes_after_a_restart() {
    let config = config(1_000);
    assert_eq!(
        config.budget.pacing,
        cfpurge::config::Pacing::Even,
        "the default"
    );
    let trace = binding_trace();
    let whole = replayed(&config, &trace);
    assert_within(&whole, 1_000);
    let month_start = |t: f64| {
        if t < 31.0 * 86_400.0 {
            0.0
        } else {
            31.0 * 86_400.0
        }
    };
    let length = |t: f64| if t < 31.0 * 86_400.0 { 31.0 } else { 28.0 } * 86_400.0;
    let mut used = 0;
    let mut month = 0.0;
    for b in &whole.batches {
        if month_start(b.t) != month {
            month = month_start(b.t);
            used = 0;
        }
        used += b.paths.len() as u64;
        let pace = 1_000.0 * (b.t - month) / length(b.t);
        assert!(
            used as f64 <= pace + 100.0 + 1.0,
            "{:.2} days: {used} spent, the pace {pace:.0} + 100",
            b.t / 86_400.0
        );
        // Once learned (the first month starts from blast_per_path, far
        // above this traffic's price, and catches up on what it did not
        // spend over the rest of the month), never more than burst_paths
        // behind the pace.
        if month > 0.0 {
            assert!(
                used as f64 >= pace - 100.0,
                "{:.2} days: {used} spent, the pace {pace:.0} - 100",
                b.t / 86_400.0
            );
        }
    }
    for m in &whole.months[..2] {
        assert!(m.billed >= 900, "{}: billed {}", m.month, m.billed);
    }
    // Settled: over the second month's 10th to 24th days, within a
    // factor of 4 (in its last days the budget left falls due, and the
    // price falls to spend it).
    let late: Vec<f64> = whole
        .batches
        .iter()
        .filter(|b| b.t >= 40.0 * 86_400.0 && b.t < 55.0 * 86_400.0)
        .map(|b| b.price)
        .collect();
    let (low, high) = late
        .iter()
        .fold((f64::MAX, 0.0f64), |(l, h), p| (l.min(*p), h.max(*p)));
    assert!(high / low <= 4.0, "the price swings from {low} to {high}");

    // A restart on 15 February: the first half, then the rest on the
    // ledger it left.
    let cut = start() + Duration::from_secs(45 * 86_400);
    let (before, after): (Vec<TraceLine>, Vec<TraceLine>) =
        trace.iter().cloned().partition(|l| l.at < cut);
    let first = replayed(&config, &before);
    let ledger = first.ledger.clone().expect("the ledger was written");
    let stored = ledger
        .price
        .expect("the price is kept with the ledger")
        .price;
    let resumed = replayed_on(&config, &after, Some(ledger));
    let fresh = replayed_on(&config, &after, None);
    let first_price = |r: &Replayed| r.batches.first().expect("a batch").price;
    assert!(
        (first_price(&resumed) / stored).ln().abs() < 0.25,
        "resumed at {}, stored {stored}",
        first_price(&resumed)
    );
    // Without the stored price, the same batch is planned at another one
    // (blast_per_path, moved by the half month it did not see spent).
    assert!(
        (first_price(&fresh) / first_price(&resumed)).ln().abs() > 0.5,
        "fresh {}, resumed {}",
        first_price(&fresh),
        first_price(&resumed)
    );
}

/// `config(1_000)` with a second distribution, `img`, under the same
/// budget, paced by `pacing`.
fn shared_config(pacing: &str) -> Config {
    let toml = format!(
        r#"
[source]
kind = "local"
[distributions.www]
id = "EWWW"
[distributions.img]
id = "EIMG"
[routing]
default_distribution = "www"
[coalesce]
strategy = "least_blast"
blast_per_path = 50
[cloudfront]
mode = "simulate"
[budget]
monthly_paths = 1000
burst_paths = 100
on_exhausted = "hold"
pacing = "{pacing}"
"#
    );
    Config::from_parts(Some(&toml), "monthly", std::iter::empty()).expect("config")
}

/// Two months of light traffic for `img`: every six hours two pages of
/// one section, 240 paths a month against a budget of 1,000.
fn light_trace() -> Vec<TraceLine> {
    let tree = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/data/astro-docs-tree.txt"
    ))
    .unwrap();
    let pages: Vec<&str> = tree.lines().collect();
    (0..59 * 4u64)
        .map(|i| {
            let first = (i as usize * 7) % (pages.len() - 1);
            TraceLine {
                at: start() + Duration::from_secs(i * 21_600 + 1_800),
                paths: vec![pages[first].to_owned(), pages[first + 1].to_owned()],
                tags: Vec::new(),
                distribution: Some("img".to_owned()),
            }
        })
        .collect()
}

const FEBRUARY: f64 = 31.0 * 86_400.0;

/// The prices `distribution`'s batches were planned at in February.
fn february_prices(replayed: &Replayed, distribution: &str) -> Vec<f64> {
    replayed
        .batches
        .iter()
        .filter(|b| b.distribution == distribution && b.t >= FEBRUARY)
        .map(|b| b.price)
        .collect()
}

fn median(mut values: Vec<f64>) -> f64 {
    assert!(!values.is_empty());
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Through the daemon's core: a budget that does not bind brings the price
/// to its floor and the blast to nothing (the free paths buy exact paths);
/// distributions under one budget share its price, so what `www` spends
/// ahead of the pace raises the price `img`'s batches are planned at; under
/// `pacing = "none"` every batch is planned at `blast_per_path`.
#[test]
fn distributions_share_the_price_which_a_budget_that_does_not_bind_keeps_at_its_floor() {
    let light = light_trace();
    let alone = replayed(&shared_config("even"), &light);
    assert_within(&alone, 1_000);
    let floor = 0.05;
    let prices = february_prices(&alone, "img");
    assert!(prices.len() > 50, "{}", prices.len());
    assert!(
        prices.iter().all(|p| (p - floor).abs() < 1e-9),
        "the price is at its floor: {prices:?}"
    );
    assert_eq!(alone.months[1].blast, Some(0), "{:?}", alone.months[1]);

    let mut both = binding_trace();
    both.extend(light.iter().cloned());
    both.sort_by_key(|l| l.at);
    let shared = replayed(&shared_config("even"), &both);
    assert_within(&shared, 1_000);
    let img = median(february_prices(&shared, "img"));
    let www = median(february_prices(&shared, "www"));
    assert!(
        img > 20.0 * floor,
        "img is planned at the price www's spending raised: {img}"
    );
    assert!(
        (img / www).ln().abs() < 2f64.ln(),
        "one price for both: img {img}, www {www}"
    );

    let unpaced = replayed(&shared_config("none"), &both);
    assert!(unpaced.batches.len() > 100);
    assert!(
        unpaced.batches.iter().all(|b| b.price == 50.0),
        "{:?}",
        unpaced.batches.iter().map(|b| b.price).collect::<Vec<_>>()
    );
}

/// Through the daemon's core: a burst that the price (at its floor, the
/// budget not binding so far) would let take the month's spending well
/// ahead of the even pace is planned at a higher price, so it keeps part
/// of the allowance for the rest of the month; the light batches before it
/// and a burst that stays behind the pace are planned at the price.
#[test]
fn a_burst_ahead_of_the_pace_is_planned_at_more_than_the_price() {
    let tree = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/data/astro-docs-tree.txt"
    ))
    .unwrap();
    let pages: Vec<&str> = tree.lines().collect();
    // Every page of two languages but one in five: 600-odd exact paths,
    // or wildcards that purge the pages left out.
    let burst: Vec<String> = pages
        .iter()
        .filter(|p| p.starts_with("/en/") || p.starts_with("/fr/"))
        .enumerate()
        .filter(|(k, _)| k % 5 != 0)
        .map(|(_, p)| (*p).to_owned())
        .collect();
    let light = |days: u64| -> Vec<TraceLine> {
        (0..days * 4)
            .map(|i| {
                let first = (i as usize * 7) % (pages.len() - 1);
                TraceLine {
                    at: start() + Duration::from_secs(i * 21_600 + 1_800),
                    paths: vec![pages[first].to_owned()],
                    tags: Vec::new(),
                    distribution: None,
                }
            })
            .collect()
    };
    let burst_on = |day: f64| TraceLine {
        at: start() + Duration::from_secs_f64(day * 86_400.0),
        paths: burst.clone(),
        tags: Vec::new(),
        distribution: None,
    };
    let config = config(1_000);
    let floor = 0.05;
    let price_of_burst = |trace: &[TraceLine], day: f64| -> (f64, u64) {
        let replayed = replayed_alone(&config, trace);
        assert_within(&replayed, 1_000);
        let b = replayed
            .batches
            .iter()
            .find(|b| (b.t - day * 86_400.0).abs() < 60.0)
            .expect("the burst is one batch");
        assert!(
            replayed
                .batches
                .iter()
                .filter(|b| b.t > 12.0 * 86_400.0 && b.t < day * 86_400.0)
                .all(|b| (b.price - floor).abs() < 1e-9),
            "once the model has seen 10 days, the light batches are planned at the floor"
        );
        (b.price, b.billed)
    };
    // Day 20.9, with about 80 spent: the even pace is 674, the allowance
    // 774; the burst's exact paths fit the allowance but would take the
    // spending past the pace.
    let mut trace = light(20);
    trace.push(burst_on(20.9));
    let (price, billed) = price_of_burst(&trace, 20.9);
    // On day 28 the same burst stays behind the pace (903): the price.
    let mut trace = light(27);
    trace.push(burst_on(28.0));
    let (behind, billed_behind) = price_of_burst(&trace, 28.0);
    assert!((behind - floor).abs() < 1e-9, "{behind}");
    assert!(
        (600..690).contains(&burst.len()) && price > 2.0 * floor,
        "{} paths planned at {price}",
        burst.len()
    );
    // Ahead of the pace, wildcards keep paths for the rest of the month.
    assert!(
        billed + 50 < billed_behind,
        "{billed} ahead of the pace, {billed_behind} behind it, of {}",
        burst.len()
    );
}
