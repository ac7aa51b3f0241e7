use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

const RULES: BatchRules = BatchRules {
    quiet: 5_000,
    max_delay: 60_000,
    max_batch_paths: 100,
};

fn p(s: &str) -> CfPath {
    CfPath::parse_item(s).unwrap()
}

fn req(dist: &str, paths: &[&str]) -> PurgeRequest {
    PurgeRequest {
        distribution: dist.to_owned(),
        paths: paths.iter().map(|s| p(s)).collect(),
        skipped: Vec::new(),
        urgent: false,
        reason: None,
        requested_by: None,
        s3_removed: None,
    }
}

fn urgent(dist: &str, paths: &[&str]) -> PurgeRequest {
    PurgeRequest {
        urgent: true,
        ..req(dist, paths)
    }
}

fn ids(v: Vec<MessageId>) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|m| m.to_string()).collect();
    v.sort();
    v
}

#[test]
fn a_message_is_covered_only_when_all_its_paths_are() {
    let mut set = PendingSet::new(RULES);
    assert_eq!(
        set.add("m1", 100, &[req("www", &["/a/1", "/b/2"])]),
        Added::Pending { paths: 2 }
    );
    assert!(set.apply("www", &[p("/a/1")], 200).is_empty());
    assert!(set.contains("m1"));
    assert_eq!(ids(set.apply("www", &[p("/b/*")], 300)), ["m1"]);
    assert!(!set.contains("m1"));
    assert_eq!(set.pending_messages(), 0);
    assert!(set.due(1_000_000).is_empty());
}

#[test]
fn an_invalidation_submitted_before_the_message_arrived_does_not_cover_it() {
    let mut set = PendingSet::new(RULES);
    set.add("early", 100, &[req("www", &["/x"])]);
    set.add("late", 500, &[req("www", &["/x"])]);
    assert_eq!(ids(set.apply("www", &[p("/x")], 300)), ["early"]);
    assert!(set.contains("late"));
    assert_eq!(set.pending_paths("www"), 1);
    // Submitted at the very millisecond of receipt is not "after".
    assert!(set.apply("www", &[p("/x")], 500).is_empty());
    assert_eq!(ids(set.apply("www", &[p("/x")], 501)), ["late"]);
}

#[test]
fn a_recovered_invalidation_covers_only_messages_first_received_before_it() {
    let mut set = PendingSet::new(RULES);
    // Both received by this process at 1000; "redelivered" was first
    // handed to a process that crashed, at 100.
    set.add("redelivered", 1_000, &[req("www", &["/x", "/y"])]);
    set.set_first_received("redelivered", 100);
    set.add("new", 1_000, &[req("www", &["/x"])]);
    // A later first receive changes nothing.
    set.set_first_received("new", 5_000);
    assert_eq!(
        ids(set.apply_recovered("www", &[p("/x")], 200)),
        Vec::<String>::new()
    );
    assert_eq!(
        ids(set.apply_recovered("www", &[p("/y")], 200)),
        ["redelivered"]
    );
    assert!(set.contains("new"), "first received after the invalidation");
    assert_eq!(set.pending_paths("www"), 1);
}

#[test]
fn a_message_spanning_distributions_needs_both() {
    let mut set = PendingSet::new(RULES);
    set.add("m", 0, &[req("www", &["/a"]), req("img", &["/b"])]);
    assert!(set.apply("www", &[p("/a")], 10).is_empty());
    assert!(set.apply("other", &[p("/*")], 10).is_empty());
    assert_eq!(ids(set.apply("img", &[p("/*")], 10)), ["m"]);
}

#[test]
fn duplicates_are_not_counted_twice() {
    let mut set = PendingSet::new(RULES);
    assert_eq!(
        set.add("m", 0, &[req("www", &["/a", "/a"]), req("www", &["/a"])]),
        Added::Pending { paths: 1 }
    );
    assert_eq!(set.add("m", 50, &[req("www", &["/zzz"])]), Added::Duplicate);
    assert_eq!(set.pending_paths("www"), 1);
    assert_eq!(set.received_at("m"), Some(0));
    assert_eq!(ids(set.apply("www", &[p("/a")], 10)), ["m"]);

    // Behind another message on the same path, with paths between the
    // repeats and a tag spelt two ways: still one wait each.
    assert_eq!(
        set.add("n", 60, &[req("www", &["/a"])]),
        Added::Pending { paths: 1 }
    );
    assert_eq!(
        set.add(
            "o",
            70,
            &[
                req("www", &["/a", "/b", "#Tag", "/a"]),
                req("www", &["#tag", "/b"])
            ]
        ),
        Added::Pending { paths: 3 }
    );
    assert_eq!(set.pending_paths("www"), 3);
    assert_eq!(ids(set.apply("www", &[p("/a")], 100)), ["n"]);
    assert_eq!(ids(set.apply("www", &[p("/b"), p("#tag")], 100)), ["o"]);
}

#[test]
fn an_empty_message_is_reported_empty() {
    let mut set = PendingSet::new(RULES);
    assert_eq!(set.add("m", 0, &[]), Added::Empty);
    assert_eq!(set.add("n", 0, &[req("www", &[])]), Added::Empty);
    assert!(!set.contains("m"));
}

#[test]
fn batches_are_due_by_quiet_window_delay_size_and_urgency() {
    let mut set = PendingSet::new(RULES);
    set.add("a", 0, &[req("www", &["/1"])]);
    assert!(set.due(4_999).is_empty());
    assert_eq!(set.due(5_000), ["www"]);
    assert_eq!(set.next_due(), Some(5_000));
    // A steady trickle keeps the quiet window from closing, until the
    // maximum delay.
    for t in (4_000..60_000).step_by(4_000) {
        set.add(&format!("m{t}"), t, &[req("www", &[&format!("/p{t}")])]);
        assert!(set.due(t + 1).is_empty(), "at {t}");
    }
    assert_eq!(set.due(60_000), ["www"]);

    let mut set = PendingSet::new(RULES);
    let many: Vec<String> = (0..100).map(|i| format!("/{i}")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    set.add("big", 0, &[req("www", &refs)]);
    assert_eq!(set.due(0), ["www"]);

    let mut set = PendingSet::new(RULES);
    set.add("u", 0, &[urgent("www", &["/now"])]);
    set.add("n", 0, &[req("img", &["/later"])]);
    assert_eq!(set.due(0), ["www"]);
    assert_eq!(set.next_due(), Some(0));
}

#[test]
fn urgency_ends_when_the_urgent_path_is_covered() {
    let mut set = PendingSet::new(RULES);
    set.add("u", 0, &[urgent("www", &["/now"])]);
    set.add("n", 1, &[req("www", &["/later"])]);
    set.apply("www", &[p("/now")], 2);
    assert!(set.due(2).is_empty());
    assert_eq!(set.next_due(), Some(5_001));
}

#[test]
fn hold_delays_a_due_batch() {
    let mut set = PendingSet::new(RULES);
    set.add("a", 0, &[urgent("www", &["/1"])]);
    set.hold("www", 30_000);
    assert!(set.due(29_999).is_empty());
    assert_eq!(set.next_due(), Some(30_000));
    assert_eq!(set.due(30_000), ["www"]);
}

#[test]
fn flush_all_makes_everything_due() {
    let mut set = PendingSet::new(RULES);
    set.add("a", 1_000, &[req("www", &["/1"])]);
    set.hold("www", 99_000);
    set.flush_all();
    assert_eq!(set.due(1_001), ["www"]);
}

#[test]
fn a_hold_set_while_flushing_counts() {
    let mut set = PendingSet::new(RULES);
    set.add("a", 1_000, &[req("www", &["/1"])]);
    set.flush_all();
    // The submitter found no room: not due again before the recheck, so
    // that the batch is not planned anew on every turn of the drain.
    set.hold("www", 6_000);
    assert!(set.due(1_001).is_empty());
    assert_eq!(set.next_due(), Some(6_000));
    assert_eq!(set.due(6_000), ["www"]);
}

#[test]
fn take_all_lets_every_message_go_at_once() {
    let mut set = PendingSet::new(RULES);
    set.add("a", 1_000, &[req("www", &["/1", "/2"])]);
    set.add("b", 1_001, &[req("www", &["/2"]), req("api", &["/3"])]);
    let mut ids: Vec<String> = set.take_all().iter().map(|id| id.to_string()).collect();
    ids.sort();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(set.pending_messages(), 0);
    assert_eq!(set.pending_paths("www"), 0);
    assert_eq!(set.bytes(), 0);
    assert_eq!(set.recount_bytes(), 0);
    assert!(set.due(u64::MAX).is_empty());
}

#[test]
fn batch_entries_carry_the_earliest_receive_time() {
    let mut set = PendingSet::new(RULES);
    set.add("late", 50, &[req("www", &["/x", "/y"])]);
    set.add("early", 10, &[req("www", &["/x"])]);
    let batch = set.batch("www");
    let by_path: BTreeMap<&str, u64> = batch.iter().map(|e| (e.path.as_str(), e.since)).collect();
    assert_eq!(by_path, BTreeMap::from([("/x", 10), ("/y", 50)]));
    assert_eq!(set.oldest_age("www", 100), Some(90));
}

#[test]
fn a_tag_waits_once_whatever_its_case_and_goes_out_as_first_spelt() {
    let mut set = PendingSet::new(RULES);
    set.add("m1", 100, &[req("www", &["#Blog", "/blog"])]);
    set.add("m2", 200, &[req("www", &["#BLOG", "#blog"])]);
    assert_eq!(set.pending_paths("www"), 2);
    let batch: Vec<String> = set
        .batch("www")
        .iter()
        .map(|e| e.path.to_string())
        .collect();
    assert_eq!(batch, ["#Blog", "/blog"]);
    assert_eq!(set.bytes(), set.recount_bytes());
    // Neither a wildcard nor a path covers a tag; a tag covers no path.
    assert!(set.apply("www", &[p("/*"), p("/%23Blog")], 300).is_empty());
    assert_eq!(set.pending_paths("www"), 1);
    assert!(set.apply("www", &[p("#other")], 300).is_empty());
    // The same tag in any case covers every waiter on it.
    assert_eq!(ids(set.apply("www", &[p("#bLoG")], 300)), ["m1", "m2"]);
    assert_eq!(set.pending_paths("www"), 0);
    assert_eq!(set.bytes(), 0);
    // A tag refused by CloudFront finds the messages waiting on it.
    set.add("m3", 400, &[req("www", &["#Blog"])]);
    assert_eq!(ids(set.messages_waiting_on("www", &[p("#blog")])), ["m3"]);
    assert!(set.remove("m3"));
    assert_eq!(set.bytes(), 0);
}

#[test]
fn removing_a_message_drops_what_only_it_waited_on() {
    let mut set = PendingSet::new(RULES);
    set.add("bad", 0, &[urgent("www", &["/x", "/only-bad"])]);
    set.add("good", 5, &[req("www", &["/x"])]);
    assert_eq!(
        ids(set.messages_waiting_on("www", &[p("/only-bad")])),
        ["bad"]
    );
    assert!(set.remove("bad"));
    assert!(!set.remove("bad"));
    assert_eq!(set.pending_paths("www"), 1);
    assert_eq!(set.oldest_age("www", 5), Some(0));
    assert!(
        set.due(5).is_empty(),
        "urgency left with the removed message"
    );
    assert_eq!(ids(set.apply("www", &[p("/x")], 6)), ["good"]);
}

// ---- properties ----

#[derive(Clone, Debug)]
enum Op {
    Add { dist: usize, paths: Vec<String> },
    Apply { dist: usize, paths: Vec<String> },
    Redeliver(usize),
    Tick(u64),
}

fn arb_path() -> impl Strategy<Value = String> {
    let seg = prop::sample::select(vec!["a", "b"]);
    let leaf = prop::sample::select(vec!["x", "y", "*", ""]);
    let path = (prop::collection::vec(seg, 0..3), leaf).prop_map(|(dirs, leaf)| {
        let mut s = String::from("/");
        for d in dirs {
            s.push_str(d);
            s.push('/');
        }
        s.push_str(leaf);
        s
    });
    // Cache tags, in two spellings of one tag, and one named like a path.
    let tag = prop::sample::select(vec!["#x", "#X", "#a/x"]).prop_map(str::to_owned);
    prop_oneof![4 => path, 1 => tag]
}

fn arb_op() -> impl Strategy<Value = Op> {
    let dist = 0usize..2;
    prop_oneof![
        3 => (dist.clone(), prop::collection::vec(arb_path(), 0..4)).prop_map(|(dist, paths)| Op::Add { dist, paths }),
        3 => (dist, prop::collection::vec(arb_path(), 1..4)).prop_map(|(dist, paths)| Op::Apply { dist, paths }),
        1 => (0usize..20).prop_map(Op::Redeliver),
        2 => (0u64..3).prop_map(Op::Tick),
    ]
}

const DISTS: [&str; 2] = ["www", "img"];

/// The model's record of a message: id, receive time, (distribution, path).
type Sent = (String, Millis, Vec<(usize, CfPath)>);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Invariant 1 and its converse: a message is reported covered exactly
    /// when every one of its paths is covered by an invalidation submitted
    /// after it was received; and never twice.
    #[test]
    fn covered_means_covered_by_a_later_invalidation(ops in prop::collection::vec(arb_op(), 1..60)) {
        let mut set = PendingSet::new(RULES);
        let mut now: Millis = 0;
        // The model: each message's paths and receive time; each applied
        // invalidation with its time.
        let mut sent: Vec<Sent> = Vec::new();
        let mut applied: Vec<(usize, Vec<CfPath>, Millis)> = Vec::new();
        let mut reported: BTreeSet<String> = BTreeSet::new();
        let covered_by_model = |paths: &[(usize, CfPath)], received: Millis, applied: &[(usize, Vec<CfPath>, Millis)]| {
            paths.iter().all(|(d, path)| {
                applied.iter().any(|(ad, ps, t)| ad == d && *t > received && ps.iter().any(|q| q.covers(path)))
            })
        };
        for op in ops {
            match op {
                Op::Add { dist, paths } => {
                    let id = format!("m{}", sent.len());
                    let r = req(DISTS[dist], &paths.iter().map(String::as_str).collect::<Vec<_>>());
                    let added = set.add(&id, now, std::slice::from_ref(&r));
                    let paths: Vec<(usize, CfPath)> = r.paths.iter().map(|p| (dist, p.clone())).collect();
                    if paths.is_empty() {
                        prop_assert_eq!(added, Added::Empty);
                    } else {
                        prop_assert!(matches!(added, Added::Pending { .. }), "added {:?}", added);
                    }
                    sent.push((id, now, paths));
                }
                Op::Redeliver(i) => {
                    // A redelivery of a pending message changes nothing.
                    if let Some((id, _, _)) = sent.get(i).filter(|(id, _, _)| set.contains(id)) {
                        let before = (set.pending_messages(), set.pending_paths("www"), set.pending_paths("img"));
                        prop_assert_eq!(set.add(id, now, &[req("www", &["/redelivered"])]), Added::Duplicate);
                        prop_assert_eq!(before, (set.pending_messages(), set.pending_paths("www"), set.pending_paths("img")));
                    }
                }
                Op::Apply { dist, paths } => {
                    let ps: Vec<CfPath> = paths.iter().map(|s| p(s)).collect();
                    applied.push((dist, ps.clone(), now));
                    for id in set.apply(DISTS[dist], &ps, now) {
                        let (_, received, paths) = sent.iter().find(|(m, _, _)| **m == *id).expect("known id");
                        prop_assert!(covered_by_model(paths, *received, &applied), "{id} reported covered too early");
                        prop_assert!(reported.insert(id.to_string()), "{id} reported twice");
                    }
                }
                Op::Tick(d) => now += d,
            }
            prop_assert_eq!(set.bytes(), set.recount_bytes());
        }
        for (id, received, paths) in &sent {
            if !paths.is_empty() && covered_by_model(paths, *received, &applied) {
                prop_assert!(reported.contains(id), "{id} covered but never reported");
            }
            if reported.contains(id) {
                prop_assert!(!set.contains(id));
            }
        }
    }

    /// The heap estimate follows every change, removals included, and is
    /// published to the meter.
    #[test]
    fn bytes_follow_every_change(ops in prop::collection::vec((arb_op(), 0usize..8), 1..60)) {
        let meter = Meter::default();
        let mut set = PendingSet::new(RULES).with_meter(meter.clone());
        let mut now: Millis = 0;
        let mut next = 0;
        for (op, pick) in ops {
            match op {
                Op::Add { dist, paths } => {
                    let r = req(DISTS[dist], &paths.iter().map(String::as_str).collect::<Vec<_>>());
                    set.add(&format!("message-{next}"), now, &[r]);
                    next += 1;
                }
                Op::Apply { dist, paths } => {
                    let ps: Vec<CfPath> = paths.iter().map(|s| p(s)).collect();
                    set.apply(DISTS[dist], &ps, now);
                }
                Op::Redeliver(_) => {
                    set.remove(&format!("message-{pick}"));
                }
                Op::Tick(d) => now += d,
            }
            prop_assert_eq!(set.bytes(), set.recount_bytes());
            prop_assert_eq!(meter.get(), set.bytes());
        }
        let ids: Vec<MessageId> = set.message_ids().cloned().collect();
        for id in ids {
            set.remove(&id);
        }
        prop_assert_eq!(set.bytes(), 0);
        prop_assert_eq!(meter.get(), 0);
    }

    /// The due rules, checked against their definition at every time.
    #[test]
    fn due_follows_the_rules(
        adds in prop::collection::vec((0u64..20_000, any::<bool>(), 0usize..3), 1..20),
        probe in 0u64..100_000,
    ) {
        let rules = BatchRules { quiet: 5_000, max_delay: 30_000, max_batch_paths: 8 };
        let mut set = PendingSet::new(rules);
        let mut times: Vec<u64> = adds.iter().map(|a| a.0).collect();
        times.sort_unstable();
        let mut paths = 0;
        let mut any_urgent = false;
        for (i, (t, is_urgent, n)) in times.iter().zip(adds.iter().map(|a| (a.1, a.2))).map(|(t, (u, n))| (*t, u, n)).enumerate() {
            let ps: Vec<String> = (0..n).map(|k| format!("/{i}/{k}")).collect();
            let refs: Vec<&str> = ps.iter().map(String::as_str).collect();
            let mut r = req("www", &refs);
            r.urgent = is_urgent;
            set.add(&format!("m{i}"), t, &[r]);
            paths += n;
            any_urgent |= is_urgent && n > 0;
        }
        let now = times[times.len() - 1] + probe;
        let has = paths > 0;
        let first = times.iter().zip(adds.iter()).filter(|(_, a)| a.2 > 0).map(|(t, _)| *t).min();
        let last = times.iter().zip(adds.iter()).filter(|(_, a)| a.2 > 0).map(|(t, _)| *t).max();
        let expected = has
            && (any_urgent
                || paths >= 8
                || now - last.unwrap_or(0) >= 5_000
                || now - first.unwrap_or(0) >= 30_000);
        prop_assert_eq!(set.due(now) == ["www"], expected);
        if let Some(at) = set.next_due() {
            prop_assert!(set.due(at.max(now)) == ["www"]);
        }
    }
}

#[test]
fn a_path_one_message_waits_on_keeps_room_for_one_waiter() {
    // A million held paths, nearly all with one waiter each: room for four
    // (what a first push makes) would take 96 bytes more per path.
    let mut set = PendingSet::new(RULES);
    set.add("a", 1_000, &[req("www", &["/1", "/2"])]);
    let www = &set.distributions["www"];
    assert!(www.entries.values().all(|w| w.capacity() == 1));
    set.add("b", 1_001, &[req("www", &["/1"])]);
    assert_eq!(
        set.distributions["www"]
            .entries
            .values()
            .map(Vec::len)
            .sum::<usize>(),
        3
    );
}

#[test]
fn a_full_source_makes_the_batches_due_at_once_until_a_message_arrives_again() {
    let mut set = PendingSet::new(RULES);
    set.add("m1", 100, &[req("www", &["/a"])]);
    set.add("m2", 100, &[req("img", &["/b"])]);
    assert!(set.due(200).is_empty());
    set.source_full();
    // No quiet window to wait for: nothing more can arrive.
    assert_eq!(set.due(200), ["img", "www"]);
    assert_eq!(set.next_due(), Some(0));
    // A hold (no room in CloudFront, no budget) still counts.
    set.hold("www", 1_000);
    assert_eq!(set.due(500), ["img"]);
    assert_eq!(set.due(1_000), ["img", "www"]);
    // A message arriving means room was made: the window counts again.
    set.add("m3", 1_100, &[req("www", &["/c"])]);
    assert!(set.due(1_200).is_empty());
    assert_eq!(set.due(6_100), ["img", "www"]);
}

#[test]
fn a_batch_due_by_its_size_alone_says_when_its_window_closes() {
    let mut set = PendingSet::new(RULES);
    let paths: Vec<String> = (0..100).map(|i| format!("/p{i}")).collect();
    let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    set.add("m1", 1_000, &[req("www", &refs[..50])]);
    // Not due at all: not due by size either.
    assert_eq!(set.due_by_size_alone("www", 2_000), None);
    set.add("m2", 3_000, &[req("www", &refs[50..])]);
    // Due by size: the window closes 5 s after the last arrival.
    assert_eq!(set.due(3_000), ["www"]);
    assert_eq!(set.due_by_size_alone("www", 3_000), Some(8_000));
    // Past the quiet window it is due by the window too.
    assert_eq!(set.due_by_size_alone("www", 8_000), None);
    // The oldest path's delay bounds the window under steady arrivals.
    // (arrivals 4 s apart, the last at 59 s: its quiet window would
    // close at 64 s, the oldest path's 60 s at 61 s).
    for i in 0..15 {
        set.add(
            &format!("n{i}"),
            3_000 + i * 4_000,
            &[req("www", &["/late"])],
        );
    }
    assert_eq!(set.due_by_size_alone("www", 59_500), Some(61_000));
    // A full source or an urgent request makes it due at once.
    set.source_full();
    assert_eq!(set.due_by_size_alone("www", 60_000), None);
    set.add(
        "u",
        60_500,
        &[PurgeRequest {
            urgent: true,
            ..req("www", &["/u"])
        }],
    );
    assert_eq!(set.due_by_size_alone("www", 60_500), None);
    assert_eq!(set.due_by_size_alone("other", 60_500), None);
}
