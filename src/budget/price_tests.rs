use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;

use super::*;
use crate::budget::{Budget, MemoryStore};
use crate::catalog::Catalog;
use crate::config::{BudgetConfig, OnExhausted, Pacing};
use crate::path::CfPath;
use crate::planner::{Capacity, Entry, Settings, Strategy, plan_with};

/// 2026-11-01T00:00:00Z.
fn november() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_793_491_200)
}

fn day(n: f64) -> Duration {
    Duration::from_secs_f64(n * 86_400.0)
}

fn config(monthly: u64, pacing: Pacing) -> BudgetConfig {
    BudgetConfig {
        monthly_paths: monthly,
        burst_paths: 100,
        pacing,
        on_exhausted: OnExhausted::Hold,
        ..BudgetConfig::default()
    }
}

#[test]
fn without_pacing_the_price_is_blast_per_path() {
    let mut c = PriceController::new(&config(1000, Pacing::None), 50.0, None, november());
    c.advance(november() + day(10.0), 0);
    assert_eq!(c.price(), 50.0);
    c.advance(november() + day(11.0), 5000);
    assert_eq!(c.price(), 50.0);
}

#[test]
fn the_first_month_starts_from_blast_per_path() {
    let c = PriceController::new(&config(1000, Pacing::Even), 50.0, None, november());
    assert_eq!(c.price(), 50.0);
}

#[test]
fn a_budget_that_does_not_bind_brings_the_price_to_its_floor() {
    let mut c = PriceController::new(&config(1000, Pacing::Even), 50.0, None, november());
    // A tenth of the pace, batch after batch, for three weeks.
    let mut used = 0;
    for hour in 1..=21 * 24 {
        used += u64::from(hour % 7 == 0);
        c.advance(november() + Duration::from_secs(hour * 3600), used);
    }
    assert_eq!(c.price(), c.bounds().0, "{:?}", c.state());
    assert_eq!(c.bounds().0, 0.05);
}

#[test]
fn spending_on_the_pace_holds_the_price_and_ahead_of_it_raises_it() {
    let cfg = config(2880, Pacing::Even);
    let mut c = PriceController::new(&cfg, 5.0, None, november());
    // The budget left spread over the time left: 4 an hour in a 30-day
    // month, as long as the spending keeps to it.
    let mut used = 0;
    for hour in 1..=20 * 24 {
        used += 4;
        c.advance(november() + Duration::from_secs(hour * 3600), used);
    }
    assert!((c.price() / 5.0 - 1.0).abs() < 0.01, "{}", c.price());
    // 288 paths ahead: 8 × 288 / 2880 = 0.8 e-folds up.
    c.advance(november() + day(20.0), used + 288);
    assert!(
        (c.price() / (5.0 * 0.8f64.exp()) - 1.0).abs() < 0.01,
        "{}",
        c.price()
    );
}

#[test]
fn a_new_month_starts_from_the_price_the_last_one_ended_on() {
    let cfg = config(2880, Pacing::Even);
    let mut c = PriceController::new(&cfg, 5.0, None, november());
    // November spent on the pace to its last second.
    for hour in 1..=30 * 24 {
        c.advance(november() + Duration::from_secs(hour * 3600 - 1), hour * 4);
    }
    let ended = c.price();
    // Hourly steps lag the continuous pace a little near the month's end.
    assert!((ended / 5.0 - 1.0).abs() < 0.1, "{ended}");
    // December's first second: the price November ended on, moved only
    // by November's last second.
    c.advance(november() + day(30.0), 0);
    assert!((c.price() / ended - 1.0).abs() < 0.01, "{}", c.price());
    assert_eq!(c.state().month.to_string(), "2026-12");
    assert_eq!(c.state().counted, 0);
}

#[test]
fn a_resumed_controller_goes_on_as_the_one_it_was_saved_from() {
    let cfg = config(1000, Pacing::Even);
    let mut store = MemoryStore::new();
    let mut budget = Budget::open(store.clone(), cfg.clone(), november()).unwrap();
    let mut c = PriceController::new(&cfg, 50.0, budget.price_state(), november());
    let mut t = november();
    for i in 0..10 {
        t += day(1.5);
        c.advance(t, budget.used());
        budget.reserve(&format!("b{i}"), "www", 60, t).unwrap();
        c.advance(t, budget.used());
        budget.stage_price(c.state());
        budget.commit(&format!("b{i}")).unwrap();
    }
    // A restart: the ledger kept the price as of the last save.
    store = store.clone();
    let reopened = Budget::open(store, cfg.clone(), t).unwrap();
    let saved = reopened.price_state().expect("kept with the ledger");
    assert_eq!(saved, c.state());
    let mut resumed = PriceController::new(&cfg, 50.0, Some(saved), t);
    assert_eq!(resumed.price(), c.price());
    for step in 1..5u32 {
        let later = t + day(f64::from(step));
        c.advance(later, budget.used() + 10 * u64::from(step));
        resumed.advance(later, budget.used() + 10 * u64::from(step));
        assert_eq!(resumed.price(), c.price());
    }
}

/// A controller without the hindsight price fed a batch an hour for 12
/// days (more than a window), each with `curve`, while the spending keeps
/// to the pace exactly (so the dual descent does not move): the price the
/// model learned.
fn learned(curve: &[(usize, u64)]) -> f64 {
    learned_with(
        curve,
        Tuning {
            hindsight: 0,
            ..Tuning::DEFAULT
        },
    )
}

fn learned_with(curve: &[(usize, u64)], tuning: Tuning) -> f64 {
    // 3,000 a month: 100 a day, the budget left spread over the time left.
    let cfg = config(3000, Pacing::Even);
    let mut c = PriceController::with_tuning(&cfg, 50.0, None, november(), tuning);
    for hour in 1..=12 * 24u64 {
        let now = november() + Duration::from_secs(hour * 3600);
        c.observe(now, curve);
        // What the pace allows by now: the budget left spread over the
        // time left is 100 a day while on it.
        c.advance(now, hour * 100 / 24);
    }
    c.price()
}

#[test]
fn the_model_learns_the_price_at_which_the_recent_batches_spend_the_pace() {
    // One path with 100 unrequested objects, or 10 exact paths: 10 a batch
    // (240 a day) below a price of 100 / 9, 1 (24 a day) above. The pace
    // (100 a day) is met only above it: the least such price.
    let price = learned(&[(1, 100), (10, 0)]);
    assert!((price / (100.0 / 9.0) - 1.0).abs() < 0.05, "{price}");
    // Exact paths everywhere fit the pace (3 a batch, 72 a day): the floor.
    let floor = learned(&[(1, 100), (3, 0)]);
    assert!((floor / 0.05 - 1.0).abs() < 1e-9, "{floor}");
}

/// A controller fed, every 12 hours for `days`, two batches: one whose
/// 10 exact paths save 100 unrequested objects over 1 path (11.1 a path),
/// one whose save 20 (2.2 a path). With 800 paths a month, over a window
/// the budget pays for the first kind's exact paths, not for both.
fn two_kinds(days: u64) -> (PriceController, SystemTime) {
    let cfg = config(800, Pacing::Even);
    let mut c = PriceController::new(&cfg, 50.0, None, november());
    let mut now = november();
    for half_day in 1..=days * 2 {
        now = november() + Duration::from_secs(half_day * 43_200);
        c.observe(now, &[(1, 100), (10, 0)]);
        c.observe(now, &[(1, 20), (10, 0)]);
        c.advance(now, 0);
    }
    (c, now)
}

/// What the pace allows `now` in a month of `monthly` paths.
fn on_the_pace(monthly: u64, now: SystemTime) -> u64 {
    (monthly as f64 * Month::of(now).elapsed_fraction(now)) as u64
}

#[test]
fn the_hindsight_price_is_the_fixed_price_that_would_have_purged_least() {
    let (c, now) = two_kinds(29);
    let month = Month::of(now);
    let h = c.hindsight(month, on_the_pace(800, now)).unwrap();
    // Below 2.2 both kinds take their exact paths and the allowance runs
    // out; above 11.1 neither does. In between the first kind takes them.
    assert!(h > 20.0 / 9.0 && h < 100.0 / 9.0, "{h}");
    // A month's budget ahead of the pace: one e-fold dearer.
    let ahead = c.hindsight(month, on_the_pace(800, now) + 800).unwrap();
    assert!(
        (ahead / (h * std::f64::consts::E) - 1.0).abs() < 1e-9,
        "{ahead} {h}"
    );
    // The price the batches are planned at is no higher.
    assert!(c.price() <= h * 1.000_001, "{} {h}", c.price());
    // Without it, none.
    let off = PriceController::with_tuning(
        &config(800, Pacing::Even),
        50.0,
        None,
        november(),
        Tuning {
            hindsight: 0,
            ..Tuning::DEFAULT
        },
    );
    assert_eq!(off.hindsight(month, 0), None);
}

#[test]
fn before_a_whole_hindsight_window_the_days_seen_stand_for_it() {
    // Three days of the two kinds: taken as 35 days with a month's budget,
    // the budget would not bind and the price would be the floor; as three
    // days with three days' share of it, it binds as it will.
    let (c, now) = two_kinds(3);
    let h = c.hindsight(Month::of(now), on_the_pace(800, now)).unwrap();
    assert!(h > 20.0 / 9.0 && h < 100.0 / 9.0, "{h}");
}

#[test]
fn a_first_month_leaves_blast_per_path_within_hours_a_resumed_price_within_days() {
    // Batches whose exact paths fit the budget many times over: the
    // models say the floor.
    let cfg = config(3000, Pacing::Even);
    let fresh = |hours: u64| {
        let mut c = PriceController::new(&cfg, 50.0, None, november());
        for h in 1..=hours {
            let now = november() + Duration::from_secs(h * 3600);
            c.observe(now, &[(1, 100), (3, 0)]);
            c.advance(now, h);
        }
        c.price()
    };
    // An hour in, still well above the floor; after the ramp, at it.
    assert!(fresh(1) > 1.0, "{}", fresh(1));
    assert!((fresh(3) / 0.05 - 1.0).abs() < 1e-9, "{}", fresh(3));
    // A stored price is leaned on for days (see the test below).
    assert_eq!(Tuning::DEFAULT.ramp, 10 * 86_400);
    assert_eq!(Tuning::DEFAULT.fresh_ramp, 8_640);
}

#[test]
fn identical_batches_the_allowance_rations_are_planned_at_the_floor() {
    // The model alone asks 100 / 9, at which every batch takes one path
    // and 100 unrequested objects and the pace goes unspent. At the floor
    // each takes its exact paths while the allowance lasts: less blast, so
    // the hindsight price is the floor, and so is the price.
    let price = learned_with(&[(1, 100), (10, 0)], Tuning::DEFAULT);
    assert!((price / 0.05 - 1.0).abs() < 1e-9, "{price}");
}

#[test]
fn the_batches_kept_are_bounded_whatever_the_traffic() {
    let cfg = config(1000, Pacing::Even);
    let mut c = PriceController::new(&cfg, 50.0, None, november());
    // A batch a second: far more than the bound within one window.
    for s in 0..(MAX_RECENT as u64 + 10) {
        c.observe(november() + Duration::from_secs(s), &[(1, 5), (2, 0)]);
    }
    assert_eq!(c.recent.len(), MAX_RECENT);
    // The newest are kept.
    assert_eq!(
        c.recent.back().unwrap().at,
        unix_seconds(november()) + MAX_RECENT as u64 + 9
    );
}

#[test]
fn before_a_window_is_seen_the_price_leans_on_the_one_resumed_from() {
    let cfg = config(3000, Pacing::Even);
    let stored = PriceState {
        month: Month::of(november()),
        price: 7.0,
        at: 1_793_491_200,
        counted: 0,
    };
    let mut c = PriceController::new(&cfg, 50.0, Some(stored), november());
    // The first batch after a restart: the model would say the floor, the
    // price is still the stored one.
    c.observe(november(), &[(1, 100), (3, 0)]);
    c.advance(november(), 0);
    assert!((c.price() / 7.0 - 1.0).abs() < 1e-9, "{}", c.price());
    // Half a window later, on the pace (the budget left spread over the
    // time left: 3,000 × ln(30 / 25) paths), halfway in logarithm.
    let half = november() + day(5.0);
    c.observe(half, &[(1, 100), (3, 0)]);
    c.advance(half, 547);
    let expected = (0.5 * 7.0f64.ln() + 0.5 * 0.05f64.ln()).exp();
    assert!((c.price() / expected - 1.0).abs() < 0.05, "{}", c.price());
}

#[test]
fn a_stored_price_out_of_bounds_is_brought_within_them() {
    let cfg = config(1000, Pacing::Even);
    let stored = PriceState {
        month: Month::of(november()),
        price: 1e12,
        at: 0,
        counted: 0,
    };
    let c = PriceController::new(&cfg, 50.0, Some(stored), november());
    assert_eq!(c.price(), 50.0 * 1024.0);
}

#[test]
fn a_ledger_without_a_price_still_loads_and_one_with_it_round_trips() {
    let old = r#"{"version":1,"month":"2026-11","spent":3,"external":0,
        "reservations":{},"external_seen":[],"history":[]}"#;
    let state: crate::budget::LedgerState = serde_json::from_str(old).unwrap();
    assert_eq!(state.price, None);
    let mut with = state.clone();
    with.price = Some(PriceState {
        month: Month::of(november()),
        price: 2.5,
        at: 1_793_491_200,
        counted: 3,
    });
    let text = serde_json::to_string(&with).unwrap();
    assert!(text.contains("\"price\""), "{text}");
    assert_eq!(
        serde_json::from_str::<crate::budget::LedgerState>(&text).unwrap(),
        with
    );
    // Written without one, the ledger has no such key.
    assert!(!serde_json::to_string(&state).unwrap().contains("price"));
}

/// A site of `dirs` directories of 12 pages each.
/// A controller at its floor (three weeks at a tenth of the pace) with
/// `used` spent, on the month's day `at`, and a batch observed there.
fn at_the_floor_with(at: f64, used: u64, curve: &[(usize, u64)]) -> (PriceController, SystemTime) {
    let mut c = PriceController::new(&config(1000, Pacing::Even), 50.0, None, november());
    let mut spent = 0;
    for hour in 1..=(at * 24.0) as u64 {
        spent = (spent + u64::from(hour % 7 == 0)).min(used);
        c.advance(november() + Duration::from_secs(hour * 3600), spent);
    }
    let now = november() + day(at);
    c.observe(now, curve);
    c.advance(now, used);
    assert!(
        (c.price() / c.bounds().0 - 1.0).abs() < 1e-9,
        "{:?}",
        c.state()
    );
    (c, now)
}

/// A burst on day 20.9 with 100 paths spent (the even pace: 697): a wildcard
/// purging 5,000, 500 paths with 60, or 700 exact paths.
const BURST: [(usize, u64); 3] = [(1, 5000), (500, 60), (700, 0)];

#[test]
fn a_batch_that_would_spend_ahead_of_the_pace_is_planned_at_a_higher_price() {
    let (c, now) = at_the_floor_with(20.9, 100, &BURST);
    let hull = lower_hull(&BURST);
    // At the floor it would take all 700, 100 ahead of the pace, leaving
    // the rest of the month little.
    assert_eq!(billed_at(&hull, c.price()), 700.0);
    let price = c.batch_price(now, 100);
    assert_eq!(billed_at(&hull, price), 500.0, "{price}");
    // Strictly between the hull's slopes on either side of 500 paths.
    assert!(price > 60.0 / 200.0 && price < 4940.0 / 499.0, "{price}");
}

#[test]
fn a_batch_that_stays_behind_the_pace_is_planned_at_the_price() {
    // On day 25 the pace is 833: 700 paths from nothing stay more than a
    // tenth of the budget behind it, so the last 200, which save only
    // 0.15 objects each, cost no more than the price.
    let behind = [(1, 5000), (500, 30), (700, 0)];
    let (c, now) = at_the_floor_with(25.0, 0, &behind);
    assert_eq!(billed_at(&lower_hull(&behind), c.price()), 700.0);
    assert_eq!(c.batch_price(now, 0), c.price());
    // Without a cost of spending ahead, the burst of day 20.9 too.
    let tuning = Tuning {
        ahead: Ahead {
            low: 0.0,
            ..Tuning::DEFAULT.ahead
        },
        ..Tuning::DEFAULT
    };
    let mut c =
        PriceController::with_tuning(&config(1000, Pacing::Even), 50.0, None, november(), tuning);
    let now = november() + day(20.9);
    c.observe(now, &BURST);
    c.advance(now, 100);
    assert_eq!(c.batch_price(now, 100), c.price());
    // Nor once the batch was forgotten (it waits).
    let (mut c, now) = at_the_floor_with(20.9, 100, &BURST);
    c.forget_last();
    assert_eq!(c.batch_price(now, 100), c.price());
}

#[test]
fn without_pacing_a_batch_is_planned_at_blast_per_path() {
    let mut c = PriceController::new(&config(1000, Pacing::None), 50.0, None, november());
    let now = november() + day(20.9);
    c.observe(now, &BURST);
    c.advance(now, 990);
    assert_eq!(c.batch_price(now, 990), 50.0);
}

fn site(dirs: usize) -> Catalog {
    let mut c = Catalog::new();
    for d in 0..dirs {
        for p in 0..12 {
            c.add(&format!("/s/d{d}/p{p}/"));
        }
    }
    c
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever the traffic (bursts, silences, several months), planned
    /// at the controller's price within what the allowance leaves, no
    /// batch bills past the allowance and the price stays within its
    /// bounds.
    #[test]
    fn the_allowance_holds_and_the_price_stays_within_its_bounds(
        batches in proptest::collection::vec(
            (0u64..6 * 86_400, proptest::collection::vec((0usize..8, 0usize..12), 0..60)),
            1..40,
        ),
        monthly in 0u64..400,
        blast_per_path in 0.01f64..500.0,
    ) {
        let cfg = config(monthly, Pacing::Even);
        let catalog = site(8);
        let mut budget = Budget::open(MemoryStore::new(), cfg.clone(), november()).unwrap();
        let mut c = PriceController::new(&cfg, blast_per_path, None, november());
        let (floor, ceiling) = c.bounds();
        let mut now = november();
        for (i, (gap, picks)) in batches.iter().enumerate() {
            now += Duration::from_secs(*gap);
            budget.rollover(now).unwrap();
            let entries: Vec<Entry> = picks
                .iter()
                .map(|&(d, p)| Entry::new(CfPath::parse(&format!("/s/d{d}/p{p}/")).unwrap(), 0))
                .collect();
            // The model learns from every batch's curve, as the daemon's.
            let curve = crate::planner::least_blast::frontier(
                &entries,
                Capacity::AWS,
                &Settings::default(),
                &catalog,
            );
            c.observe(now, &curve);
            c.advance(now, budget.used());
            let price = c.price();
            prop_assert!((floor..=ceiling).contains(&price), "{price}");
            // A batch that would spend ahead of the pace is planned at
            // more, never at less, and so never bills more.
            let planned_at = c.batch_price(now, budget.used());
            prop_assert!((price..=ceiling).contains(&planned_at), "{planned_at} against {price}");
            let remaining = budget.remaining(now);
            let plan_at = |price: f64| plan_with(
                &entries,
                Capacity { paths: remaining as usize, ..Capacity::AWS },
                &Settings::default(),
                Strategy::LeastBlast { catalog: &catalog, price },
            );
            let plan = plan_at(planned_at);
            let billed = plan.figures.billed() as u64;
            prop_assert!(billed <= plan_at(price).figures.billed() as u64);
            prop_assert!(billed <= remaining, "billed {billed} > remaining {remaining}");
            if billed > 0 {
                budget.reserve(&format!("b{i}"), "www", billed, now).unwrap();
            }
            prop_assert!(budget.used() <= budget.allowed(now));
            c.advance(now, budget.used());
            let price = c.price();
            prop_assert!((floor..=ceiling).contains(&price), "{price}");
        }
    }
}

#[test]
fn a_ledger_import_keeps_the_price_updated_last() {
    let month = Month::of(november());
    let price = |price: f64, at: u64| PriceState {
        month,
        price,
        at,
        counted: 0,
    };
    let mut older = crate::budget::LedgerState::new(month);
    older.price = Some(price(3.0, 100));
    let mut newer = crate::budget::LedgerState::new(month);
    newer.price = Some(price(0.5, 200));
    assert_eq!(crate::budget::merge(&older, &newer).price, newer.price);
    assert_eq!(crate::budget::merge(&newer, &older).price, newer.price);
    let none = crate::budget::LedgerState::new(month);
    assert_eq!(crate::budget::merge(&none, &older).price, older.price);
}

proptest! {
    /// The point the hindsight grid keeps for a price is the one a batch
    /// planned at that price takes, the fewest billed where two cost the
    /// same (at a price equal to a hull segment's slope).
    #[test]
    fn a_kept_pick_is_the_point_the_price_takes(
        steps in proptest::collection::vec((1usize..20, 0u64..25), 1..30),
        price in 0.01f64..5000.0,
        on_a_slope in any::<Option<proptest::sample::Index>>(),
    ) {
        // A curve with billed rising and blast falling, by whole blast per
        // path, so that a slope is an integer and ties are exact.
        let mut curve = Vec::new();
        let total: u64 = steps.iter().map(|&(more, per)| more as u64 * per).sum();
        let (mut billed, mut blast) = (0usize, total);
        for &(more, per) in &steps {
            billed += more;
            blast -= more as u64 * per;
            curve.push((billed, blast));
        }
        let hull = lower_hull(&curve);
        let price = match on_a_slope {
            Some(index) if hull.len() > 1 => {
                let i = index.index(hull.len() - 1);
                (hull[i].1 - hull[i + 1].1) / (hull[i + 1].0 - hull[i].0)
            }
            _ => price,
        };
        // The least cost, the fewest billed among equals.
        let takes = hull
            .iter()
            .map(|&(billed, blast)| (price * billed + blast, billed))
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)))
            .map(|p| p.1);
        prop_assert_eq!(Some(hull[pick(&hull, price) as usize].0), takes);
    }
}

#[test]
fn a_blast_per_path_of_zero_neither_hangs_nor_panics() {
    // The configuration refuses it; the controller must still not loop
    // for ever building its grid of prices.
    let cfg = config(100, Pacing::Even);
    let mut c = PriceController::new(&cfg, 0.0, None, november());
    c.observe(november() + day(1.0), &[(1, 5), (2, 0)]);
    c.advance(november() + day(1.0), 1);
    assert_eq!(c.price(), 0.0);
    assert!(c.grid.is_empty(), "{} grid prices of 0", c.grid.len());
}

#[test]
fn a_blast_per_path_past_any_ceiling_bounds_the_grid() {
    // Its ceiling is infinite: the grid stops at 1,000 prices.
    let cfg = config(100, Pacing::Even);
    let mut c = PriceController::new(&cfg, f64::MAX, None, november());
    assert_eq!(c.grid.len(), 1_000);
    c.observe(november() + day(1.0), &[(1, 5), (2, 0)]);
    c.advance(november() + day(1.0), 1);
    assert!(c.price().is_finite(), "{}", c.price());
}
