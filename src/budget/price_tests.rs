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
            c.advance(now, budget.used());
            let price = c.price();
            prop_assert!((floor..=ceiling).contains(&price), "{price}");
            let entries: Vec<Entry> = picks
                .iter()
                .map(|&(d, p)| Entry::new(CfPath::parse(&format!("/s/d{d}/p{p}/")).unwrap(), 0))
                .collect();
            let remaining = budget.remaining(now);
            let plan = plan_with(
                &entries,
                Capacity { paths: remaining as usize, ..Capacity::AWS },
                &Settings::default(),
                Strategy::LeastBlast { catalog: &catalog, price },
            );
            let billed = plan.figures.billed() as u64;
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
