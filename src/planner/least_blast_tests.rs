use std::collections::{BTreeSet, HashSet};

use proptest::prelude::*;

use super::*;
use crate::planner::{Strategy as Planned, plan_with};

fn p(s: &str) -> CfPath {
    CfPath::parse_item(s).unwrap()
}

fn entries(paths: &[&str]) -> Vec<Entry> {
    paths
        .iter()
        .enumerate()
        .map(|(i, s)| Entry::new(p(s), i as u64))
        .collect()
}

fn strs(paths: &[CfPath]) -> Vec<&str> {
    paths.iter().map(CfPath::as_str).collect()
}

/// `/docs/` serving `n` pages, `/blog/` serving 5, plus `/index.html`.
fn site(n: usize) -> Catalog {
    let mut c = Catalog::new();
    for i in 0..n {
        c.add(&format!("/docs/p{i}/"));
    }
    for i in 0..5 {
        c.add(&format!("/blog/b{i}.html"));
    }
    c.add("/index.html");
    c
}

fn docs(n: usize) -> Vec<Entry> {
    let paths: Vec<String> = (0..n).map(|i| format!("/docs/p{i}/")).collect();
    let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    entries(&refs)
}

#[test]
fn the_price_decides_between_exact_paths_and_a_wildcard() {
    let catalog = site(100);
    let batch = docs(10);
    // Ten exact paths at 5 each cost 50; /docs/* costs 5 + 90.
    let cheap = plan(&batch, Capacity::AWS, &Settings::default(), &catalog, 5.0);
    assert_eq!(cheap.figures.exact, 10);
    assert_eq!(cheap.figures.blast, 0);
    // At 20: 200 against 20 + 90.
    let dear = plan(&batch, Capacity::AWS, &Settings::default(), &catalog, 20.0);
    assert_eq!(strs(&dear.paths), ["/docs/*"]);
    assert_eq!(dear.figures.blast, 90);
    assert_eq!((dear.figures.requested, dear.figures.unique), (10, 10));
}

#[test]
fn requested_paths_the_catalog_does_not_know_are_no_blast() {
    // Nothing under /new/ is in the catalog: its wildcard purges only
    // what was asked.
    let catalog = site(10);
    let batch = entries(&["/new/a.js", "/new/b.js", "/new/c/", "/docs/p1/"]);
    let out = plan(&batch, Capacity::AWS, &Settings::default(), &catalog, 1.5);
    assert_eq!(strs(&out.paths), ["/docs/p1/", "/new/*"]);
    assert_eq!(out.figures.blast, 0);
}

#[test]
fn requested_wildcards_are_asked_for_and_forced() {
    let catalog = site(10);
    let batch = entries(&["/docs/p1/*", "/docs/p2/", "/docs/p1/x", "/docs/p3/"]);
    // /docs/* would purge p0 and p4..p9 (7 objects) for 1 path instead of 3.
    let out = plan(&batch, Capacity::AWS, &Settings::default(), &catalog, 2.0);
    assert_eq!(strs(&out.paths), ["/docs/p1/*", "/docs/p2/", "/docs/p3/"]);
    let out = plan(&batch, Capacity::AWS, &Settings::default(), &catalog, 4.0);
    assert_eq!(strs(&out.paths), ["/docs/*"]);
    assert_eq!(out.figures.blast, 7);
}

#[test]
fn the_wildcard_slots_go_where_they_save_most() {
    let mut catalog = Catalog::new();
    let mut paths = Vec::new();
    // Directory d{k} serves 10 pages; the batch asks for k + 2 of them.
    for k in 0..4 {
        for i in 0..10 {
            catalog.add(&format!("/d{k}/p{i}"));
        }
        for i in 0..k + 2 {
            paths.push(format!("/d{k}/p{i}"));
        }
    }
    let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    let batch = entries(&refs);
    let capacity = Capacity {
        wildcard: 2,
        ..Capacity::AWS
    };
    // At a price of 100 every directory is worth collapsing; two slots go
    // to the ones asking most.
    let out = plan(&batch, capacity, &Settings::default(), &catalog, 100.0);
    assert_eq!(out.figures.wildcard, 2);
    assert!(strs(&out.paths).contains(&"/d3/*"));
    assert!(strs(&out.paths).contains(&"/d2/*"));
    assert_eq!(out.figures.exact, 2 + 3);
    assert_eq!(out.figures.blast, (10 - 5) + (10 - 4));
}

#[test]
fn full_exact_slots_force_the_least_blast_collapse() {
    // Files, not pages: a page `/docs/p0/` could go out as `/docs/p0/*`
    // for no blast, which would dodge the exact slots.
    let mut catalog = Catalog::new();
    for i in 0..20 {
        catalog.add(&format!("/docs/f{i}.html"));
    }
    for i in 0..5 {
        catalog.add(&format!("/blog/b{i}.html"));
    }
    let batch = entries(&[
        "/docs/f0.html",
        "/docs/f1.html",
        "/docs/f2.html",
        "/docs/f3.html",
        "/blog/b0.html",
        "/blog/b1.html",
    ]);
    let capacity = Capacity {
        exact: 3,
        ..Capacity::AWS
    };
    // Exact paths are cheapest at this price, but only three fit: /blog/*
    // (blast 3) frees two slots, /docs/* (blast 16) would free four.
    let out = plan(&batch, capacity, &Settings::default(), &catalog, 1.0);
    assert!(out.deferred.is_empty());
    assert_eq!(out.figures.blast, 16);
    assert_eq!(
        strs(&out.paths),
        ["/blog/b0.html", "/blog/b1.html", "/docs/*"]
    );
    let capacity = Capacity {
        exact: 4,
        ..Capacity::AWS
    };
    let out = plan(&batch, capacity, &Settings::default(), &catalog, 1.0);
    assert_eq!(out.figures.blast, 3);
}

#[test]
fn a_page_can_go_out_as_its_own_wildcard_when_exact_slots_are_full() {
    let catalog = site(20);
    let capacity = Capacity {
        exact: 3,
        ..Capacity::AWS
    };
    // `/docs/p3/*` purges only the page itself: no blast, one wildcard slot.
    let out = plan(&docs(4), capacity, &Settings::default(), &catalog, 1.0);
    assert_eq!((out.figures.exact, out.figures.wildcard), (3, 1));
    assert_eq!(out.figures.blast, 0);
}

#[test]
fn depth_rules_hold() {
    let mut catalog = Catalog::new();
    catalog.add("/a.html");
    let batch = entries(&[
        "/x.html",
        "/y.html",
        "/z.html",
        "/d/e/f.html",
        "/d/e/g.html",
    ]);
    let settings = Settings {
        min_wildcard_depth: 2,
        ..Settings::default()
    };
    let out = plan(&batch, Capacity::AWS, &settings, &catalog, 1000.0);
    assert_eq!(
        strs(&out.paths),
        ["/d/e/*", "/x.html", "/y.html", "/z.html"]
    );
    let settings = Settings {
        allow_root_wildcard: true,
        ..Settings::default()
    };
    let out = plan(&batch, Capacity::AWS, &settings, &catalog, 1000.0);
    assert_eq!(strs(&out.paths), ["/*"]);
    assert_eq!(out.figures.blast, 1);
}

#[test]
fn when_nothing_fits_the_oldest_go_first_as_with_threshold() {
    let catalog = site(10);
    let batch = entries(&["/b.html", "/a.html", "/c.html"]);
    let capacity = Capacity {
        exact: 2,
        wildcard: 0,
        paths: 10,
    };
    let out = plan(&batch, capacity, &Settings::default(), &catalog, 50.0);
    assert_eq!(out.deferred, [2]);
    assert_eq!(strs(&out.paths), ["/a.html", "/b.html"]);
    assert_eq!(out.figures.deferred, 1);
}

#[test]
fn the_frontier_lists_the_least_blast_for_each_billed_count() {
    let catalog = site(20);
    let mut batch = docs(4);
    batch.extend(entries(&["/blog/b0.html", "/blog/b1.html"]));
    let f = frontier(&batch, Capacity::AWS, &Settings::default(), &catalog);
    // 6 exact; /blog/* for 2 (blast 3); /docs/* for 4 (blast 16); both.
    assert_eq!(f, [(2, 19), (3, 16), (5, 3), (6, 0)]);
    let tight = Capacity {
        wildcard: 1,
        ..Capacity::AWS
    };
    let f = frontier(&batch, tight, &Settings::default(), &catalog);
    assert_eq!(f, [(3, 16), (5, 3), (6, 0)]);
}

#[test]
fn the_strategy_falls_back_to_threshold_without_a_catalog() {
    let batch = docs(10);
    let threshold = crate::planner::plan(&batch, Capacity::AWS, &Settings::default());
    let s = Planned::new(crate::config::Strategy::LeastBlast, None, 50.0);
    assert_eq!(s.name(), "threshold");
    assert_eq!(
        plan_with(&batch, Capacity::AWS, &Settings::default(), s),
        threshold
    );
    let catalog = site(100);
    let s = Planned::new(crate::config::Strategy::Threshold, Some(&catalog), 50.0);
    let measured = plan_with(&batch, Capacity::AWS, &Settings::default(), s);
    assert_eq!(measured.paths, threshold.paths);
    assert_eq!(strs(&measured.paths), ["/docs/*"]);
    assert_eq!(measured.figures.blast, 90);
    let s = Planned::new(crate::config::Strategy::LeastBlast, Some(&catalog), 5.0);
    assert_eq!(s.name(), "least_blast");
    assert_eq!(
        plan_with(&batch, Capacity::AWS, &Settings::default(), s)
            .figures
            .exact,
        10
    );
}

#[test]
fn the_threshold_strategy_with_a_catalog_reports_its_blast() {
    let catalog = site(100);
    let batch = docs(10);
    let threshold = crate::planner::plan(&batch, Capacity::AWS, &Settings::default());
    let s = Planned::Threshold {
        catalog: Some(&catalog),
    };
    let out = plan_with(&batch, Capacity::AWS, &Settings::default(), s);
    assert_eq!(out.paths, threshold.paths);
    assert_eq!(strs(&out.paths), ["/docs/*"]);
    // 100 pages under /docs/, 10 asked for.
    assert_eq!(out.figures.blast, 90);
}

#[test]
fn blast_counts_each_outermost_wildcard_once() {
    let catalog = site(10);
    let batch = entries(&["/docs/p1/", "/docs/p2/*", "/blog/*"]);
    let paths = [
        p("/docs/*"),
        p("/docs/p3/*"),
        p("/blog/*"),
        p("/index.html"),
    ];
    // /docs/*: 10 pages less p1 (asked) and p2 (under an asked wildcard);
    // /blog/* was itself asked for.
    assert_eq!(blast(&paths, &batch, &catalog), 8);
}

#[test]
fn the_quick_check_leaves_wide_wildcard_slots_to_the_tables() {
    let catalog = site(10);
    let batch = docs(3);
    let dedup = Dedup::new(&batch);
    let tree = Tree::build(&dedup.kept, &Settings::default(), &catalog);
    let wide = |wildcard| {
        Caps::new(Capacity {
            exact: 0,
            wildcard,
            paths: usize::MAX,
        })
    };
    assert_eq!(
        tree.any_cover_fits(wide(MAX_EXACT_SEARCH_WILDCARDS)),
        Some(true)
    );
    assert_eq!(
        tree.any_cover_fits(wide(MAX_EXACT_SEARCH_WILDCARDS + 1)),
        None
    );
    // With no wildcard slot, three pages need three exact slots.
    assert_eq!(tree.any_cover_fits(wide(0)), Some(false));
}

#[test]
fn a_batch_too_large_for_any_cover_is_planned_as_by_threshold() {
    // 40 top-level files: no wildcard may hold them (min_wildcard_depth =
    // 1), and 40 are more than the exact slots.
    let mut catalog = site(30);
    let names: Vec<String> = (0..40).map(|i| format!("/f{i}.html")).collect();
    for n in &names {
        catalog.add(n);
    }
    let mut refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let pages: Vec<String> = (0..20).map(|i| format!("/docs/p{i}/")).collect();
    refs.extend(pages.iter().map(String::as_str));
    let batch = entries(&refs);
    let capacity = Capacity {
        exact: 30,
        wildcard: 2,
        paths: usize::MAX,
    };
    let settings = Settings::default();
    let out = plan(&batch, capacity, &settings, &catalog, 50.0);
    let mut expected = crate::planner::plan(&batch, capacity, &settings);
    expected.figures.blast = blast(&expected.paths, &batch, &catalog);
    assert_eq!(out, expected);
    // The 30 oldest files take the exact slots, the pages go out as
    // /docs/* (10 of its 30 pages unasked), the 10 newest files wait.
    assert!(out.paths.contains(&p("/docs/*")));
    assert_eq!(out.figures.blast, 10);
    assert_eq!(out.deferred, (30..40).collect::<Vec<_>>());
}

// Property tests against brute force on small trees.

/// Paths of a small site: directories a, b, c two deep, files x and y,
/// pages (directories served as themselves).
fn site_path() -> impl Strategy<Value = String> {
    let seg = prop::sample::select(vec!["a", "b", "c"]);
    let leaf = prop::sample::select(vec!["x", "y", ""]);
    (prop::collection::vec(seg, 0..=2), leaf).prop_map(|(dirs, leaf)| {
        let mut s = String::from("/");
        for d in dirs {
            s.push_str(d);
            s.push('/');
        }
        s.push_str(leaf);
        s
    })
}

fn requested() -> impl Strategy<Value = (String, bool)> {
    (site_path(), prop::bool::weighted(0.15)).prop_map(|(s, wildcard)| {
        if wildcard {
            // A directory wildcard: the path's directory.
            let dir = &s[..s.rfind('/').unwrap_or(0) + 1];
            (format!("{dir}*"), true)
        } else {
            (s, false)
        }
    })
}

fn capacity() -> impl Strategy<Value = Capacity> {
    (0usize..6, 0usize..4, prop::option::of(0usize..8)).prop_map(|(e, w, b)| Capacity {
        exact: e,
        wildcard: w,
        paths: b.unwrap_or(usize::MAX),
    })
}

fn settings() -> impl Strategy<Value = Settings> {
    (1usize..3, any::<bool>()).prop_map(|(depth, root)| Settings {
        wildcard_threshold: 8,
        min_wildcard_depth: depth,
        allow_root_wildcard: root,
    })
}

/// A cover evaluated from scratch: billed, blast, and whether it fits.
struct Eval {
    exact: usize,
    wildcard: usize,
    blast: u64,
}

impl Eval {
    fn billed(&self) -> usize {
        self.exact + self.wildcard
    }

    fn cost(&self, price: f64) -> f64 {
        price * self.billed() as f64 + self.blast as f64
    }
}

/// Evaluates `paths` as a cover of `batch` against the served objects
/// (the catalog's, plus requested exact paths it does not know).
fn evaluate(paths: &[CfPath], batch: &[Entry], served: &BTreeSet<String>) -> Eval {
    let asked = |o: &str| {
        batch.iter().any(|e| {
            if e.path.is_wildcard() {
                o.starts_with(e.path.prefix())
            } else {
                e.path.as_str() == o
            }
        })
    };
    let blast = served
        .iter()
        .filter(|o| {
            paths
                .iter()
                .any(|p| p.is_wildcard() && o.starts_with(p.prefix()))
                && !asked(o)
        })
        .count() as u64;
    let wildcard = paths.iter().filter(|p| p.is_wildcard()).count();
    Eval {
        exact: paths.len() - wildcard,
        wildcard,
        blast,
    }
}

/// Every cover made of the batch's eligible directory wildcards plus the
/// entries they leave uncovered.
fn all_covers(batch: &[Entry], settings: &Settings) -> Vec<Vec<CfPath>> {
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    for e in batch {
        let d = e.path.directory();
        for (i, _) in d.match_indices('/') {
            dirs.insert(d[..=i].to_owned());
        }
    }
    let eligible: Vec<String> = dirs
        .into_iter()
        .filter(|d| {
            let depth = crate::path::directory_depth(d);
            if depth == 0 {
                settings.allow_root_wildcard
            } else {
                depth >= settings.min_wildcard_depth
            }
        })
        .collect();
    assert!(eligible.len() <= 14, "brute force stays small");
    let mut covers = Vec::new();
    for mask in 0u32..(1 << eligible.len()) {
        let chosen: Vec<&String> = (0..eligible.len())
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| &eligible[i])
            .collect();
        // An antichain: no chosen directory inside another.
        let nested = chosen
            .iter()
            .any(|a| chosen.iter().any(|b| a != b && a.starts_with(b.as_str())));
        if nested {
            continue;
        }
        let mut paths: BTreeSet<CfPath> = chosen.iter().map(|d| p(&format!("{d}*"))).collect();
        for e in batch {
            let covered = paths.iter().any(|q| q.covers(&e.path))
                || batch
                    .iter()
                    .any(|o| o.path != e.path && o.path.is_wildcard() && o.path.covers(&e.path));
            if !covered {
                paths.insert(e.path.clone());
            }
        }
        covers.push(paths.into_iter().collect());
    }
    covers
}

fn covered(plan_paths: &[CfPath], e: &Entry) -> bool {
    plan_paths.iter().any(|q| q.covers(&e.path))
}

fn case() -> impl Strategy<Value = (Vec<(String, bool)>, Vec<String>, Capacity, Settings, u32)> {
    (
        prop::collection::vec(requested(), 1..8),
        prop::collection::vec(site_path(), 0..14),
        capacity(),
        settings(),
        1u32..40,
    )
}

fn setup(req: &[(String, bool)], cat: &[String]) -> (Vec<Entry>, Catalog, BTreeSet<String>) {
    let batch: Vec<Entry> = req
        .iter()
        .enumerate()
        .map(|(i, (s, _))| Entry::new(p(s), i as u64))
        .collect();
    let mut catalog = Catalog::new();
    let mut served = BTreeSet::new();
    for s in cat {
        catalog.add(s);
        served.insert(s.clone());
    }
    for e in &batch {
        if !e.path.is_wildcard() {
            served.insert(e.path.as_str().to_owned());
        }
    }
    (batch, catalog, served)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn the_plan_is_the_cheapest_cover_that_fits(
        (req, cat, cap, settings, price) in case()
    ) {
        let (batch, catalog, served) = setup(&req, &cat);
        let price = f64::from(price) / 4.0;
        let out = plan(&batch, cap, &settings, &catalog, price);
        prop_assert!(cap.fits(out.figures.exact, out.figures.wildcard));
        prop_assert_eq!(out.figures.billed(), out.paths.len());
        let deferred: HashSet<usize> = out.deferred.iter().copied().collect();
        for (i, e) in batch.iter().enumerate() {
            prop_assert!(deferred.contains(&i) || covered(&out.paths, e), "{:?} uncovered", e.path);
        }
        let best = all_covers(&batch, &settings)
            .into_iter()
            .map(|c| evaluate(&c, &batch, &served))
            .filter(|e| cap.fits(e.exact, e.wildcard))
            .map(|e| e.cost(price))
            .min_by(f64::total_cmp);
        match best {
            Some(best) => {
                prop_assert!(out.deferred.is_empty(), "a cover fits, nothing may wait");
                let got = evaluate(&out.paths, &batch, &served);
                prop_assert_eq!(got.blast, out.figures.blast);
                prop_assert!(
                    (got.cost(price) - best).abs() < 1e-9,
                    "cost {} against the best {}: {:?}", got.cost(price), best, out.paths
                );
            }
            None => prop_assert!(!out.deferred.is_empty(), "no cover fits, something waits"),
        }
    }

    #[test]
    fn the_frontier_matches_brute_force((req, cat, cap, settings, _price) in case()) {
        let (batch, catalog, served) = setup(&req, &cat);
        let mut least: std::collections::BTreeMap<usize, u64> = Default::default();
        for c in all_covers(&batch, &settings) {
            let e = evaluate(&c, &batch, &served);
            if cap.fits(e.exact, e.wildcard) {
                let b = least.entry(e.billed()).or_insert(u64::MAX);
                *b = (*b).min(e.blast);
            }
        }
        let mut expected = Vec::new();
        for (b, blast) in least {
            if expected.last().is_none_or(|&(_, last)| blast < last) {
                expected.push((b, blast));
            }
        }
        prop_assert_eq!(frontier(&batch, cap, &settings, &catalog), expected);
    }

    /// Tags are a fixed cost: the plan of paths and tags is the plan of the
    /// paths in the room the tags leave, plus each tag once, billed one
    /// path each and never inside a wildcard.
    #[test]
    fn tags_are_a_fixed_cost_beside_the_least_blast_cover(
        (req, cat, cap, settings, price) in case(),
        tags in prop::collection::vec(prop::sample::select(vec!["#t", "#T", "#u", "#a/x"]), 0..4),
    ) {
        let (batch, catalog, _) = setup(&req, &cat);
        let price = f64::from(price) / 4.0;
        let mut with = batch.clone();
        with.extend(tags.iter().enumerate().map(|(i, t)| Entry::new(p(t), 100 + i as u64)));
        let distinct: BTreeSet<String> = tags.iter().map(|t| t.to_ascii_lowercase()).collect();
        let out = plan(&with, cap, &settings, &catalog, price);
        prop_assert!(cap.fits(out.figures.exact + out.figures.tags, out.figures.wildcard));
        prop_assert_eq!(out.figures.billed(), out.paths.len());
        for o in out.paths.iter().filter(|o| o.is_wildcard()) {
            prop_assert!(!with.iter().any(|e| e.path.is_tag() && o.covers(&e.path)));
        }
        let alone = plan(&batch, cap.without(distinct.len()), &settings, &catalog, price);
        if distinct.len() <= cap.exact.min(cap.paths) && alone.deferred.is_empty() {
            prop_assert!(out.deferred.is_empty());
            prop_assert_eq!(out.figures.tags, distinct.len());
            prop_assert_eq!(out.figures.blast, alone.figures.blast);
            let mut expected: Vec<CfPath> = alone.paths.clone();
            for t in &distinct {
                let first = tags.iter().find(|x| x.to_ascii_lowercase() == *t).unwrap();
                expected.push(p(first));
            }
            expected.sort_unstable();
            prop_assert_eq!(&out.paths, &expected);
        } else {
            prop_assert!(!out.deferred.is_empty(), "the tags or the paths do not fit: something waits");
        }
        // The frontier shifts by the tags.
        let shifted: Vec<(usize, u64)> = if distinct.len() > cap.exact.min(cap.paths) {
            Vec::new()
        } else if batch.is_empty() {
            vec![(distinct.len(), 0)]
        } else {
            frontier(&batch, cap.without(distinct.len()), &settings, &catalog)
                .into_iter()
                .map(|(b, blast)| (b + distinct.len(), blast))
                .collect()
        };
        if !tags.is_empty() {
            prop_assert_eq!(frontier(&with, cap, &settings, &catalog), shifted);
        }
    }

    /// The rows that tell whether any cover fits agree with the full
    /// tables: the table at the root is empty exactly when they say no.
    #[test]
    fn the_quick_check_agrees_with_the_tables((req, cat, cap, settings, _price) in case()) {
        let (batch, catalog, _) = setup(&req, &cat);
        let dedup = Dedup::new(&batch);
        let tree = Tree::build(&dedup.kept, &settings, &catalog);
        let caps = Caps::new(cap);
        let tables = Tables::compute(&tree, caps);
        prop_assert_eq!(tree.any_cover_fits(caps), Some(!tables.of(0).is_empty()));
    }

    /// When no cover fits, what is planned is the threshold planner's plan
    /// of the same batch (its fitting, its oldest-first deferral), with
    /// that plan's blast.
    #[test]
    fn when_no_cover_fits_the_plan_is_the_threshold_plan(
        (req, cat, _, settings, price) in case(),
        (exact, wildcard, paths) in (0usize..3, 0usize..2, prop::option::of(0usize..4)),
    ) {
        // Tight room, so that most cases have no cover that fits.
        let cap = Capacity { exact, wildcard, paths: paths.unwrap_or(usize::MAX) };
        let (batch, catalog, served) = setup(&req, &cat);
        let fits = all_covers(&batch, &settings)
            .into_iter()
            .map(|c| evaluate(&c, &batch, &served))
            .any(|e| cap.fits(e.exact, e.wildcard));
        prop_assume!(!fits);
        let out = plan(&batch, cap, &settings, &catalog, f64::from(price));
        let mut expected = crate::planner::plan(&batch, cap, &settings);
        expected.figures.blast = blast(&expected.paths, &batch, &catalog);
        prop_assert_eq!(out, expected);
    }

    #[test]
    fn a_higher_price_never_bills_more(
        (req, cat, cap, settings, price) in case(), more in 1u32..40
    ) {
        let (batch, catalog, _) = setup(&req, &cat);
        let low = plan(&batch, cap, &settings, &catalog, f64::from(price));
        let high = plan(&batch, cap, &settings, &catalog, f64::from(price + more));
        if low.deferred.is_empty() && high.deferred.is_empty() {
            prop_assert!(high.figures.billed() <= low.figures.billed());
            prop_assert!(high.figures.blast >= low.figures.blast);
        }
    }
}

/// Paths up to six directories deep over two names: chains of directories
/// with one subdirectory each are common.
fn deep_site_path() -> impl Strategy<Value = String> {
    let seg = prop::sample::select(vec!["a", "b"]);
    let leaf = prop::sample::select(vec!["x", "y", ""]);
    (prop::collection::vec(seg, 0..6), leaf).prop_map(|(dirs, leaf)| {
        let mut s = String::from("/");
        for d in dirs {
            s.push_str(d);
            s.push('/');
        }
        s.push_str(leaf);
        s
    })
}

fn with_every_directory<T>(f: impl FnOnce() -> T) -> T {
    crate::planner::tree::EVERY_DIRECTORY.with(|e| e.set(true));
    let out = f();
    crate::planner::tree::EVERY_DIRECTORY.with(|e| e.set(false));
    out
}

#[test]
fn deep_paths_build_a_few_directories_per_entry() {
    let batch: Vec<Entry> = (0..200)
        .map(|i| Entry::new(p(&format!("/u{i}/{}f", "a/".repeat(1990))), i))
        .collect();
    let catalog = Catalog::of(batch.iter().map(|e| &e.path));
    let dedup = super::super::Dedup::new(&batch);
    let tree = Tree::build(&dedup.kept, &Settings::default(), &catalog);
    assert!(
        tree.dirs.len() <= 2 * batch.len() + 1,
        "{} directories for {} entries",
        tree.dirs.len(),
        batch.len()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    /// The pruned tree plans exactly as the tree of every directory, and
    /// finds the same frontier.
    #[test]
    fn pruning_the_tree_changes_no_plan(
        req in prop::collection::vec(deep_site_path(), 1..10),
        cat in prop::collection::vec(deep_site_path(), 0..16),
        cap in capacity(),
        settings in settings(),
        price in 1u32..40,
    ) {
        let req: Vec<(String, bool)> = req.into_iter().map(|s| (s, false)).collect();
        let (batch, catalog, _) = setup(&req, &cat);
        let price = f64::from(price);
        let pruned = plan(&batch, cap, &settings, &catalog, price);
        let full = with_every_directory(|| plan(&batch, cap, &settings, &catalog, price));
        prop_assert_eq!(pruned, full);
        let pruned = frontier(&batch, cap, &settings, &catalog);
        let full = with_every_directory(|| frontier(&batch, cap, &settings, &catalog));
        prop_assert_eq!(pruned, full);
    }
}
