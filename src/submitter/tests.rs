use proptest::prelude::*;
use proptest::strategy::Strategy;

use super::*;

const T0: Millis = 1_000_000;

fn p(s: &str) -> CfPath {
    CfPath::parse(s).unwrap()
}

fn entries(paths: &[&str]) -> Vec<Entry> {
    paths
        .iter()
        .enumerate()
        .map(|(i, s)| Entry::new(p(s), i as u64))
        .collect()
}

fn submitter(policy: OnExhausted) -> Submitter {
    Submitter::new(
        SubmitSettings {
            planner: Settings::default(),
            strategy: crate::config::Strategy::Threshold,
            on_exhausted: policy,
            recheck: Duration::from_secs(20),
        },
        RateLimit::new(100.0, 100),
        "1700000000000".to_owned(),
    )
}

fn due<'a>(entries: &'a [Entry], remaining: u64) -> Situation<'a> {
    Situation {
        due: true,
        entries,
        capacity: Some(Capacity::AWS),
        remaining: Some(remaining),
        catalog: None,
        price: 50.0,
    }
}

fn idle() -> Situation<'static> {
    Situation {
        due: false,
        entries: &[],
        capacity: Some(Capacity::AWS),
        remaining: Some(1000),
        catalog: None,
        price: 50.0,
    }
}

fn sent(step: Step) -> Batch {
    match step {
        Step::Send { batch, .. } => batch,
        other => panic!("expected a send, got {other:?}"),
    }
}

fn first_send(s: &mut Submitter, paths: &[&str]) -> Batch {
    let e = entries(paths);
    sent(s.next("www", T0, due(&e, 1000)))
}

#[test]
fn a_due_batch_is_sent_once_and_nothing_else_goes_while_its_call_is_under_way() {
    let mut s = submitter(OnExhausted::Hold);
    assert_eq!(s.next("www", T0, idle()), Step::Idle);
    let batch = first_send(&mut s, &["/a", "/b"]);
    assert_eq!(batch.paths, vec![p("/a"), p("/b")]);
    assert!(batch.reference.starts_with("cfpurge-www-1700000000000-1-"));
    assert_eq!((batch.attempts, batch.first_sent_at), (1, T0 + 1));
    assert!(s.is_calling());
    let e = entries(&["/c"]);
    assert_eq!(s.next("www", T0, due(&e, 1000)), Step::Idle);
    // Another distribution is not held up.
    assert!(matches!(
        s.next("img", T0, due(&e, 1000)),
        Step::Send { .. }
    ));
    s.created("www");
    let next = sent(s.next("www", T0 + 1, due(&e, 1000)));
    assert_ne!(next.reference, batch.reference);
}

#[test]
fn a_retry_goes_again_under_the_same_reference_after_its_backoff() {
    for error in [
        InvalidatorError::Throttled(String::new()),
        InvalidatorError::ServerError(String::new()),
        InvalidatorError::Timeout(String::new()),
        InvalidatorError::Other {
            code: "Odd".into(),
            message: String::new(),
        },
    ] {
        let mut s = submitter(OnExhausted::Hold);
        let batch = first_send(&mut s, &["/a"]);
        let after = s.failed("www", batch.clone(), &error, &[], T0 + 10, 0.5);
        assert!(matches!(after.action, Action::Retry(_)), "{error:?}");
        assert_eq!(
            after.release,
            matches!(error, InvalidatorError::Throttled(_)),
            "{error:?}"
        );
        let until = after.hold.expect("held");
        assert!(until > T0 + 10);
        assert_eq!(
            s.next("www", T0 + 11, idle()),
            Step::Wait {
                until,
                why: Wait::Backoff
            }
        );
        let again = sent(s.next("www", until, idle()));
        assert_eq!(again.reference, batch.reference);
        assert_eq!(again.paths, batch.paths);
        assert_eq!(again.attempts, 2);
        // Coverage counts from the first call, whichever is answered.
        assert_eq!(again.first_sent_at, T0 + 1);
    }
}

#[test]
fn a_retry_is_checked_against_the_room_in_flight_like_a_new_batch() {
    let mut s = submitter(OnExhausted::Hold);
    let batch = first_send(&mut s, &["/a", "/b/*"]);
    let after = s.failed(
        "www",
        batch.clone(),
        &InvalidatorError::ServerError(String::new()),
        &[],
        T0,
        0.0,
    );
    let until = after.hold.unwrap();
    let no_wildcard_room = Situation {
        capacity: Some(Capacity {
            wildcard: 0,
            ..Capacity::AWS
        }),
        ..idle()
    };
    let step = s.next("www", until, no_wildcard_room);
    assert_eq!(
        step,
        Step::Wait {
            until: until + 20_000,
            why: Wait::Capacity
        }
    );
    assert!(s.has_queued("www"));
    assert_eq!(s.next_after(), Some(until + 20_000));
    let unknown = Situation {
        capacity: None,
        ..idle()
    };
    assert!(matches!(
        s.next("www", until + 20_000, unknown),
        Step::Wait {
            why: Wait::Capacity,
            ..
        }
    ));
    let again = sent(s.next("www", until + 40_000, idle()));
    assert_eq!(again.reference, batch.reference);
}

#[test]
fn too_many_in_progress_drops_the_batch_and_asks_for_a_reconcile() {
    let mut s = submitter(OnExhausted::Hold);
    let batch = first_send(&mut s, &["/a"]);
    let after = s.failed(
        "www",
        batch,
        &InvalidatorError::TooManyInProgress(String::new()),
        &[],
        T0,
        0.5,
    );
    assert_eq!(after.action, Action::WaitForCapacity);
    assert!(after.release && after.reconcile);
    assert_eq!(after.hold, Some(T0 + 20_000));
    assert!(!s.has_queued("www"));
}

#[test]
fn a_reused_reference_is_replanned_under_a_new_one() {
    let mut s = submitter(OnExhausted::Hold);
    let batch = first_send(&mut s, &["/a"]);
    let after = s.failed(
        "www",
        batch.clone(),
        &InvalidatorError::BatchAlreadyExists(String::new()),
        &[],
        T0,
        0.5,
    );
    assert_eq!(after.action, Action::NewReference);
    assert!(after.release);
    let e = entries(&["/a"]);
    let next = sent(s.next("www", T0 + 1, due(&e, 1000)));
    assert_ne!(next.reference, batch.reference);
}

#[test]
fn a_configuration_fault_keeps_the_batch_for_a_minute_unless_the_distribution_comes_back() {
    for error in [
        InvalidatorError::NoSuchDistribution(String::new()),
        InvalidatorError::AccessDenied(String::new()),
    ] {
        let mut s = submitter(OnExhausted::Hold);
        let batch = first_send(&mut s, &["/a"]);
        let after = s.failed("www", batch.clone(), &error, &[], T0, 0.5);
        assert_eq!(
            after.action,
            Action::ConfigurationFault(action::CONFIGURATION_RETRY)
        );
        assert!(after.release);
        assert_eq!(after.hold, Some(T0 + 60_000));
        assert!(matches!(
            s.next("www", T0 + 1_000, idle()),
            Step::Wait {
                why: Wait::Backoff,
                ..
            }
        ));
        s.expedite("www", T0 + 1_000);
        assert_eq!(
            sent(s.next("www", T0 + 1_000, idle())).reference,
            batch.reference
        );
    }
}

#[test]
fn a_refused_batch_is_halved_until_the_offending_requested_path_is_found() {
    let mut s = submitter(OnExhausted::Hold);
    let pending = entries(&["/a", "/b", "/bad", "/c"]);
    let batch = sent(s.next("www", T0, due(&pending, 1000)));
    let refused = InvalidatorError::InvalidArgument(String::new());
    let after = s.failed("www", batch, &refused, &pending, T0, 0.5);
    assert_eq!(after.action, Action::Isolate);
    assert!(after.release);
    assert_eq!(after.reject, None);
    let first = sent(s.next("www", T0, idle()));
    assert_eq!(first.paths, vec![p("/a"), p("/b")]);
    s.created("www");
    let second = sent(s.next("www", T0, idle()));
    assert_eq!(second.paths, vec![p("/bad"), p("/c")]);
    s.failed("www", second, &refused, &pending, T0, 0.5);
    let bad = sent(s.next("www", T0, idle()));
    assert_eq!(bad.paths, vec![p("/bad")]);
    let after = s.failed("www", bad, &refused, &pending, T0, 0.5);
    assert_eq!(after.reject, Some(p("/bad")));
    assert_eq!(sent(s.next("www", T0, idle())).paths, vec![p("/c")]);
}

#[test]
fn a_refused_wildcard_goes_out_as_the_requested_paths_under_it() {
    let mut s = submitter(OnExhausted::Hold);
    let pending = entries(&["/d/1", "/d/2", "/e"]);
    let batch = Batch {
        paths: vec![p("/d/*")],
        ..first_send(&mut s, &["/d/1", "/d/2"])
    };
    let after = s.failed(
        "www",
        batch,
        &InvalidatorError::BatchTooLarge(String::new()),
        &pending,
        T0,
        0.5,
    );
    assert_eq!(after.action, Action::Split);
    assert_eq!(after.reject, None);
    assert_eq!(
        sent(s.next("www", T0, idle())).paths,
        vec![p("/d/1"), p("/d/2")]
    );
}

#[test]
fn hold_waits_once_the_budget_is_spent() {
    let mut s = submitter(OnExhausted::Hold);
    let e = entries(&["/a", "/b"]);
    assert_eq!(
        s.next("www", T0, due(&e, 0)),
        Step::Wait {
            until: T0 + 20_000,
            why: Wait::Budget
        }
    );
    // What is left is spent where it covers most.
    let many = entries(&["/d/1", "/d/2", "/d/3"]);
    assert_eq!(
        sent(s.next("www", T0, due(&many, 1))).paths,
        vec![p("/d/*")]
    );
}

#[test]
fn coalesce_sends_one_covering_path_once_the_budget_is_spent() {
    let mut s = submitter(OnExhausted::Coalesce);
    let e = entries(&["/docs/en/a", "/docs/de/b"]);
    assert_eq!(
        sent(s.next("www", T0, due(&e, 0))).paths,
        vec![p("/docs/*")]
    );
    s.created("www");
    let no_room = Situation {
        capacity: Some(Capacity {
            wildcard: 0,
            ..Capacity::AWS
        }),
        ..due(&e, 0)
    };
    assert!(matches!(
        s.next("www", T0, no_room),
        Step::Wait {
            why: Wait::Capacity,
            ..
        }
    ));
}

#[test]
fn overspend_plans_as_if_the_budget_were_not_there() {
    let mut s = submitter(OnExhausted::Overspend);
    let e = entries(&["/a/1", "/b/1", "/c/1"]);
    assert_eq!(sent(s.next("www", T0, due(&e, 0))).paths.len(), 3);
    s.created("www");
    assert_eq!(sent(s.next("www", T0, due(&e, 1))).paths.len(), 3);
}

#[test]
fn without_a_ledger_nothing_is_planned() {
    let mut s = submitter(OnExhausted::Overspend);
    let e = entries(&["/a"]);
    let no_ledger = Situation {
        remaining: None,
        ..due(&e, 0)
    };
    assert_eq!(
        s.next("www", T0, no_ledger),
        Step::Wait {
            until: T0 + 5_000,
            why: Wait::Ledger
        }
    );
}

#[test]
fn a_batch_the_ledger_could_not_reserve_waits_and_keeps_its_reference() {
    let mut s = submitter(OnExhausted::Hold);
    let batch = first_send(&mut s, &["/a"]);
    let until = s.not_reserved("www", batch.clone(), T0);
    assert_eq!(until, T0 + 5_000);
    assert!(!s.is_calling());
    let again = sent(s.next("www", until, idle()));
    assert_eq!((again.reference, again.attempts), (batch.reference, 1));
}

#[test]
fn creates_keep_to_the_rate_and_the_burst() {
    let mut s = Submitter::new(
        SubmitSettings {
            planner: Settings::default(),
            strategy: crate::config::Strategy::Threshold,
            on_exhausted: OnExhausted::Hold,
            recheck: Duration::from_secs(20),
        },
        RateLimit::new(0.5, 2),
        "r".to_owned(),
    );
    let e = entries(&["/a"]);
    for alias in ["a", "b"] {
        assert!(matches!(
            s.next(alias, T0, due(&e, 1000)),
            Step::Send { .. }
        ));
    }
    assert_eq!(
        s.next("c", T0, due(&e, 1000)),
        Step::Wait {
            until: T0 + 2_000,
            why: Wait::Rate
        }
    );
    // The planned batch waits, queued, and goes at that moment.
    assert_eq!(s.next_after(), Some(T0 + 2_000));
    assert!(matches!(s.next("c", T0 + 2_000, idle()), Step::Send { .. }));
}

fn any_entries() -> impl Strategy<Value = Vec<Entry>> {
    proptest::collection::vec((0u8..4, 0u8..4, 0u8..12), 1..40).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (a, b, c))| Entry::new(p(&format!("/{a}/{b}/{c}.html")), i as u64))
            .collect()
    })
}

proptest! {
    /// With `hold`, a batch never bills more paths than the budget has left
    /// (the daemon's policy, whatever the ledger would accept).
    #[test]
    fn hold_never_sends_more_than_the_budget_allows(
        e in any_entries(),
        remaining in 0u64..30,
        exact in 0usize..40,
        wildcard in 0usize..16,
    ) {
        let mut s = submitter(OnExhausted::Hold);
        let situation = Situation {
            capacity: Some(Capacity { exact, wildcard, paths: usize::MAX }),
            ..due(&e, remaining)
        };
        match s.next("www", T0, situation) {
            Step::Send { batch, .. } => {
                prop_assert!(batch.paths.len() as u64 <= remaining);
                let c = batch.counts();
                prop_assert!(c.exact <= exact && c.wildcard <= wildcard);
            }
            Step::Wait { .. } => {}
            Step::Idle => prop_assert!(false, "a due batch is never idle"),
        }
    }
}

#[test]
fn with_a_catalog_least_blast_weighs_what_a_wildcard_purges() {
    let mut s = Submitter::new(
        SubmitSettings {
            planner: Settings::default(),
            strategy: crate::config::Strategy::LeastBlast,
            on_exhausted: OnExhausted::Hold,
            recheck: Duration::from_secs(20),
        },
        RateLimit::new(100.0, 100),
        "r".to_owned(),
    );
    let wanted: Vec<String> = (0..8).map(|i| format!("/d/{i}.html")).collect();
    let served: Vec<CfPath> = (0..100).map(|i| p(&format!("/d/{i}.html"))).collect();
    let catalog = Catalog::of(&served);
    let refs: Vec<&str> = wanted.iter().map(String::as_str).collect();
    let e = entries(&refs);
    // Without a catalog ready: the threshold strategy makes a wildcard.
    assert_eq!(
        sent(s.next("www", T0, due(&e, 1000))).paths,
        vec![p("/d/*")]
    );
    s.created("www");
    // With it, at one path worth 1 object, 92 unrequested objects cost
    // more than 7 more paths.
    let cheap_paths = Situation {
        catalog: Some(&catalog),
        price: 1.0,
        ..due(&e, 1000)
    };
    let b = sent(s.next("www", T0, cheap_paths));
    assert_eq!((b.paths.len(), b.blast), (8, 0));
    s.created("www");
    let dear_paths = Situation {
        catalog: Some(&catalog),
        price: 1000.0,
        ..due(&e, 1000)
    };
    let b = sent(s.next("www", T0, dear_paths));
    assert_eq!((b.paths, b.blast), (vec![p("/d/*")], 92));
}

#[test]
fn coalesce_keeps_the_last_wildcard_slot_for_the_cover_a_spent_budget_needs() {
    // Twenty directories of ten files: the threshold would make twenty
    // wildcards, more than the fifteen slots, and the budget (30 paths)
    // runs out within the storm.
    let names: Vec<String> = (0..20)
        .flat_map(|d| (0..10).map(move |f| format!("/d{d}/f{f}.html")))
        .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut left = entries(&refs);
    let mut s = submitter(OnExhausted::Coalesce);
    let mut room = Capacity::AWS;
    let mut remaining: u64 = 30;
    let mut batches = Vec::new();
    while !left.is_empty() && batches.len() < 10 {
        let situation = Situation {
            capacity: Some(room),
            ..due(&left, remaining)
        };
        let batch = match s.next("www", T0, situation) {
            Step::Send { batch, .. } => batch,
            other => panic!(
                "after {batches:?}, {} entries wait and nothing goes: {other:?}",
                left.len()
            ),
        };
        s.created("www");
        let counts = batch.counts();
        room.exact -= counts.exact;
        room.wildcard -= counts.wildcard;
        remaining = remaining.saturating_sub(batch.paths.len() as u64);
        left.retain(|e| !batch.paths.iter().any(|p| p.covers(&e.path)));
        batches.push(batch.paths);
    }
    assert!(left.is_empty(), "{} left after {batches:?}", left.len());
    assert_eq!(batches.last(), Some(&vec![p("/*")]), "{batches:?}");
    assert!(
        batches[0].iter().filter(|p| p.is_wildcard()).count() < 15,
        "{batches:?}"
    );
}

#[test]
fn coalesce_keeps_the_last_wildcard_slot_even_with_budget_to_spare_and_hold_does_not() {
    let names: Vec<String> = (0..20)
        .flat_map(|d| (0..10).map(move |f| format!("/d{d}/f{f}.html")))
        .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let e = entries(&refs);
    let mut s = submitter(OnExhausted::Coalesce);
    let batch = sent(s.next("www", T0, due(&e, 1_000)));
    assert_eq!(batch.counts().wildcard, 14, "{:?}", batch.paths);
    // Holding, a spent budget sends nothing: every slot is the batches'.
    let mut s = submitter(OnExhausted::Hold);
    let batch = sent(s.next("www", T0, due(&e, 1_000)));
    assert_eq!(batch.counts().wildcard, 15, "{:?}", batch.paths);
}

#[test]
fn a_cover_finds_a_slot_after_a_batch_with_budget_to_spare_and_one_that_spends_the_rest() {
    // As in a storm on the 1st of the month: 118 paths allowed. The first
    // batch (dense directories) bills a few paths and leaves most of the
    // allowance; the second (files in as many directories) spends the
    // rest on exact paths; the third can only go as one covering path.
    let mut s = submitter(OnExhausted::Coalesce);
    let mut room = Capacity::AWS;
    let mut remaining: u64 = 118;
    let dense: Vec<String> = (0..15)
        .flat_map(|d| (0..10).map(move |f| format!("/d{d}/f{f}.html")))
        .collect();
    let sparse: Vec<String> = (0..200).map(|i| format!("/s{i}/only.html")).collect();
    let late: Vec<String> = (0..50).map(|i| format!("/late{i}/x.html")).collect();
    let mut covers = Vec::new();
    for wave in [&dense, &sparse, &late] {
        let refs: Vec<&str> = wave.iter().map(String::as_str).collect();
        let e = entries(&refs);
        let situation = Situation {
            capacity: Some(room),
            ..due(&e, remaining)
        };
        let batch = match s.next("www", T0, situation) {
            Step::Send { batch, .. } => batch,
            other => panic!("after {covers:?}, nothing goes: {other:?}"),
        };
        s.created("www");
        let counts = batch.counts();
        room.exact -= counts.exact;
        room.wildcard -= counts.wildcard;
        remaining = remaining.saturating_sub(batch.paths.len() as u64);
        covers.push(batch.paths);
    }
    assert!(covers[0].len() < 30, "{:?}", covers[0]);
    assert_eq!(remaining, 0, "{covers:?}");
    assert_eq!(covers[2], vec![p("/*")], "{covers:?}");
}
