//! What every [`LedgerStore`] must do, as checks any store's tests run:
//! the memory and file stores in this crate's unit tests, the DynamoDB
//! store against an emulator in the integration tests. Public only so that
//! those tests can reach it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Budget, LedgerState, LedgerStore, Month, MonthRecord, Reservation};
use crate::config::{BudgetConfig, Pacing};

/// 2026-11-10T00:00:00Z.
fn november() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_794_268_800)
}

/// A ledger with every field in use.
pub fn sample_state() -> LedgerState {
    let mut state = LedgerState::new(Month::of(november()));
    state.spent = 42;
    state.external = 3;
    state.reservations.insert(
        "cfpurge-1".to_owned(),
        Reservation {
            distribution: "www".to_owned(),
            paths: 12,
            at: 1_794_268_800,
        },
    );
    state.external_seen.insert("I2J3".to_owned());
    state.history.push(MonthRecord {
        month: "2026-10".parse().unwrap_or(state.month),
        spent: 900,
        external: 1,
    });
    state
}

/// The contract. `open` gives a new handle on the same, initially empty,
/// storage each time it is called (as a restarted process would get).
/// Panics with what is wrong.
pub fn check_store<S: LedgerStore>(open: &dyn Fn() -> S) {
    // Nothing saved yet: a fresh start, not an error.
    assert_eq!(open().load().expect("load of an empty store"), None);

    // Saves replace the whole state, and a new handle reads the last one.
    let store = open();
    assert_eq!(store.load().expect("load"), None);
    store.save(&sample_state()).expect("first save");
    assert_eq!(store.load().expect("load"), Some(sample_state()));
    let mut changed = sample_state();
    changed.spent = 43;
    changed.reservations.clear();
    store.save(&changed).expect("second save");
    assert_eq!(open().load().expect("load by a new handle"), Some(changed));
    drop(store);

    // A budget's steps are durable: a new handle sees each of them.
    let now = november();
    let config = BudgetConfig {
        monthly_paths: 1000,
        pacing: Pacing::None,
        ..BudgetConfig::default()
    };
    let mut budget = Budget::open(open(), config.clone(), now).expect("open");
    let before = budget.used();
    let (spent, external) = (budget.spent(), budget.external());
    budget.reserve("r1", "www", 10, now).expect("reserve r1");
    budget.commit("r1").expect("commit r1");
    budget.reserve("r2", "www", 5, now).expect("reserve r2");
    budget.reserve("r3", "img", 7, now).expect("reserve r3");
    budget.release("r3").expect("release r3");
    assert_eq!(budget.count_external("I9", 3, now).ok(), Some(true));
    assert_eq!(budget.count_external("I9", 3, now).ok(), Some(false));
    let saved = budget.state().clone();
    drop(budget);
    assert_eq!(open().load().expect("load"), Some(saved));

    // After a crash: the open reservation is spent and unconfirmed.
    let mut budget = Budget::open(open(), config.clone(), now).expect("reopen");
    assert_eq!(budget.used(), before + 10 + 5 + 3);
    assert_eq!(
        budget.unconfirmed(),
        vec![("r2".to_owned(), "www".to_owned(), 5)]
    );
    assert_eq!(budget.confirm("r2").ok(), Some(true));
    // The month turns: the old one goes to the history.
    let december = now + Duration::from_secs(30 * 86_400);
    assert_eq!(budget.rollover(december).ok(), Some(true));
    drop(budget);
    let budget = Budget::open(open(), config, december).expect("reopen in December");
    assert_eq!(budget.month(), Month::of(december));
    assert_eq!(budget.used(), 0);
    assert!(budget.unconfirmed().is_empty());
    let last = budget.history().last().cloned().expect("a closed month");
    assert_eq!(
        (last.month, last.spent, last.external),
        (Month::of(now), spent + 15, external + 3)
    );
}
