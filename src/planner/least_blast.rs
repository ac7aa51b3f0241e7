//! `coalesce.strategy = "least_blast"`: among the covers of a batch that fit
//! the capacity, the one that minimises `billed + blast / blast_per_path`,
//! where the **blast** of a wildcard is the served objects it purges that no
//! entry asked for. Pure: the catalog and the price are handed in.
//!
//! The covers considered are the ones the threshold planner also chooses
//! from: each entry goes out as itself or inside `dir/*` for one of the
//! batch's directories (deep enough, see [`Settings`]). A cover is an
//! antichain of collapsed directories; its cost is
//!
//! - billed: one per collapsed directory, plus every entry outside them;
//! - blast: for each collapsed `dir`, the catalog's objects under `dir` that
//!   are not asked for (an exact entry the catalog knows, or an object under
//!   a requested `x/*` wildcard). A requested path the catalog does not know
//!   is a served object of its own that was asked for, so it adds nothing.
//!   A requested wildcard not ending in `/` (`/a/b*`) is taken as asking for
//!   nothing beyond itself: the catalog has no count for such a prefix, so
//!   the blast of a directory around it is over- rather than underestimated.
//!
//! # The dynamic programme
//!
//! For every directory, bottom-up, a table of what its subtree can be left
//! with: for each number `w` of wildcards (collapsed directories plus
//! requested wildcards), the Pareto set of (exact paths `e`, blast) pairs.
//! An open directory's table is the min-plus product of its own entries'
//! single point and its children's tables; collapsing adds the point
//! `(w = 1, e = 0, blast(dir))`. Tables are cut at the capacity: no point
//! with `w` over the wildcard slots, `e` over the exact slots, or `e + w`
//! over the budget, since a subtree's figures only grow on the way up.
//!
//! The wildcard count is a second dimension rather than a second price
//! because it is small (CloudFront allows 15) and a price would leave a
//! duality gap: with a price on wildcards, some slot counts are reached by
//! no price at all, and the plan would be feasible but not the cheapest.
//! Keeping `e` exact in the table rather than pricing it is what makes the
//! result exact for the exact slots and the budget as well. The Pareto sets
//! stay small in practice (a directory of pages each asked once has one
//! point per `w`), and points are also dropped when another point has no
//! more wildcards, exact paths and blast.
//!
//! Most batches fit the capacity without trying: first a single pass prices
//! every choice at `blast_per_path` per billed path (the unconstrained
//! optimum, linear in the entries); when that cover fits, it is the answer,
//! since no cover within the capacity can cost less than the best of all.
//! Only when it does not fit does the table above run.
//!
//! When no cover fits at all (more distinct entries than the slots can hold
//! even collapsed), there is no least-blast choice to make: the threshold
//! planner's fitting and its oldest-first deferral decide, as for the
//! threshold strategy. Whether any cover fits is known before the table is
//! built, from a far smaller one: for each directory and each number of
//! wildcards, only the fewest exact paths its subtree can be left with (a
//! row of at most 16 integers with CloudFront's limits, where the table
//! holds a Pareto set per number of wildcards). A cover fits exactly when
//! the root's row has a point within the capacity, so a batch that cannot
//! fit never pays for the table.
//!
//! Cache tags are a fixed cost: each is billed one path, takes an exact
//! slot and purges nothing a wildcard would. So the least-blast cover of a
//! batch with tags is the least-blast cover of its paths in the room the
//! tags leave, plus the tags.

use super::tree::{Branches, INF, MAX_EXACT_SEARCH_WILDCARDS, Rows, depth_below, min_plus};
use super::{
    Capacity, Dedup, Entry, Figures, Kept, Plan, Search, Settings, count_kinds, count_tags,
};
use crate::catalog::Catalog;
use crate::path::{CfPath, directory_of};

const NONE: u32 = u32::MAX;

/// One directory of the batch.
#[derive(Clone, Copy, Debug)]
struct Dir {
    parent: u32,
    /// One past the last directory of the subtree (arena in DFS order).
    end: u32,
    /// The kept entry whose path the directory's string is cut from.
    source: u32,
    len: u32,
    eligible: bool,
    /// Kept entries right in this directory.
    own_exact: u32,
    own_wildcard: u32,
    /// What `dir/*` would purge that nobody asked for.
    blast: u64,
}

/// A way to leave a subtree: `w` wildcards, `e` exact paths, `blast`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Point {
    w: u32,
    e: u32,
    blast: u64,
}

/// The capacity as bounds on a subtree's figures.
#[derive(Clone, Copy, Debug)]
struct Caps {
    w: u32,
    e: u32,
    billed: u64,
}

impl Caps {
    fn new(c: Capacity) -> Caps {
        let clamp = |n: usize| n.min(u32::MAX as usize - 1) as u32;
        Caps {
            w: clamp(c.wildcard.min(c.paths)),
            e: clamp(c.exact.min(c.paths)),
            billed: c.paths as u64,
        }
    }

    fn admits(&self, w: u32, e: u32) -> bool {
        w <= self.w && e <= self.e && u64::from(w) + u64::from(e) <= self.billed
    }
}

/// The batch's directory tree with each directory's blast.
struct Tree<'a> {
    kept: &'a [Kept<'a>],
    dirs: Vec<Dir>,
    /// For each kept entry, the directory that holds it.
    dir_of_kept: Vec<u32>,
}

impl<'a> Tree<'a> {
    fn build(kept: &'a [Kept<'a>], settings: &Settings, catalog: &Catalog) -> Tree<'a> {
        let mut tree = Tree {
            kept,
            dirs: Vec::new(),
            dir_of_kept: Vec::with_capacity(kept.len()),
        };
        // Asked-for catalog objects under each directory, summed up the
        // tree as directories close.
        let mut asked: Vec<u64> = Vec::new();
        let branches = Branches::new(kept);
        let mut to_open = Vec::new();
        // The open directories, innermost last, with their strings and
        // depths.
        let mut stack: Vec<(u32, &str, u32)> = Vec::new();
        let close = |tree: &mut Tree, asked: &mut Vec<u64>, d: u32| {
            let end = tree.dirs.len() as u32;
            let dir = &mut tree.dirs[d as usize];
            dir.end = end;
            let s = &kept[dir.source as usize].0[..dir.len as usize];
            dir.blast = catalog.under(s).saturating_sub(asked[d as usize]);
            if dir.parent != NONE {
                asked[dir.parent as usize] += asked[d as usize];
            }
        };
        for (k, &(path, _)) in kept.iter().enumerate() {
            let dir = directory_of(path);
            while let Some(&(top, top_str, _)) = stack.last() {
                if dir.starts_with(top_str) {
                    break;
                }
                close(&mut tree, &mut asked, top);
                stack.pop();
            }
            let from = stack.last().map_or(0, |(_, s, _)| s.len());
            branches.to_open(k, dir, from, &mut to_open);
            for &len in &to_open {
                let parent = stack.last().map_or(NONE, |&(p, _, _)| p);
                let depth = depth_below(stack.last().map(|&(_, s, d)| (d, s.len())), &dir[..len]);
                let eligible = if depth == 0 {
                    settings.allow_root_wildcard
                } else {
                    depth as usize >= settings.min_wildcard_depth
                } && CfPath::directory_wildcard_fits(len);
                tree.dirs.push(Dir {
                    parent,
                    end: NONE,
                    source: k as u32,
                    len: len as u32,
                    eligible,
                    own_exact: 0,
                    own_wildcard: 0,
                    blast: 0,
                });
                asked.push(0);
                stack.push((tree.dirs.len() as u32 - 1, &dir[..len], depth));
            }
            let Some(&(holder, _, _)) = stack.last() else {
                unreachable!("every valid path starts with '/', so the root is open");
            };
            let d = &mut tree.dirs[holder as usize];
            match path.strip_suffix('*') {
                Some(prefix) => {
                    d.own_wildcard += 1;
                    if prefix.ends_with('/') {
                        asked[holder as usize] += catalog.under(prefix);
                    }
                }
                None => {
                    d.own_exact += 1;
                    if catalog.contains(path) {
                        asked[holder as usize] += 1;
                    }
                }
            }
            tree.dir_of_kept.push(holder);
        }
        while let Some((top, _, _)) = stack.pop() {
            close(&mut tree, &mut asked, top);
        }
        tree
    }

    fn children(&self, d: usize) -> impl Iterator<Item = usize> + '_ {
        let end = self.dirs[d].end as usize;
        let mut next = d + 1;
        std::iter::from_fn(move || {
            let c = next;
            (c < end).then(|| {
                next = self.dirs[c].end as usize;
                c
            })
        })
    }

    /// Whether any cover of the batch fits `caps`, found without the
    /// tables: for every directory, the fewest exact paths its subtree can
    /// be left with for each number of wildcards (its own wildcards forced,
    /// min-plus products over its children, `(1, 0)` when it may collapse),
    /// then whether some number of wildcards at the root fits with its
    /// fewest exact paths. Exact: a cover with `w` wildcards and `e` exact
    /// paths fits only if the fewest exact paths for `w` also do. `None`
    /// when the wildcard slots are more than
    /// [`MAX_EXACT_SEARCH_WILDCARDS`]: the rows would grow with the batch,
    /// and only the tables tell.
    fn any_cover_fits(&self, caps: Caps) -> Option<bool> {
        let width = caps.w as usize;
        if width > MAX_EXACT_SEARCH_WILDCARDS {
            return None;
        }
        if self.dirs.is_empty() {
            return Some(caps.admits(0, 0));
        }
        let mut rows = Rows::with_dirs(self.dirs.len());
        let (mut open, mut scratch) = (Vec::new(), Vec::new());
        for d in (0..self.dirs.len()).rev() {
            let dir = &self.dirs[d];
            let own = dir.own_wildcard as usize;
            open.clear();
            open.resize(own.min(width) + 1, INF);
            if own <= width {
                open[own] = dir.own_exact;
            }
            for c in self.children(d) {
                min_plus(&open, rows.row(c), width, &mut scratch);
                std::mem::swap(&mut open, &mut scratch);
            }
            if dir.eligible && width >= 1 {
                if open.len() < 2 {
                    open.resize(2, INF);
                }
                open[1] = 0;
            }
            rows.set(d, &open);
        }
        let root = rows.row(0);
        Some(
            root.iter()
                .enumerate()
                .any(|(w, &e)| e != INF && caps.admits(w as u32, e)),
        )
    }

    fn dir_str(&self, d: usize) -> &'a str {
        let dir = &self.dirs[d];
        &self.kept[dir.source as usize].0[..dir.len as usize]
    }

    /// The unconstrained optimum at `price` per billed path: for each
    /// directory whether to collapse it, and the root's figures.
    fn priced(&self, price: f64) -> (Vec<bool>, Point) {
        let n = self.dirs.len();
        let mut best: Vec<(f64, Point)> = vec![
            (
                0.0,
                Point {
                    w: 0,
                    e: 0,
                    blast: 0
                }
            );
            n
        ];
        let mut collapse = vec![false; n];
        for d in (0..n).rev() {
            let dir = &self.dirs[d];
            let mut open = Point {
                w: dir.own_wildcard,
                e: dir.own_exact,
                blast: 0,
            };
            for c in self.children(d) {
                let p = best[c].1;
                open.w += p.w;
                open.e += p.e;
                open.blast += p.blast;
            }
            let open_cost = cost(price, open);
            let shut = Point {
                w: 1,
                e: 0,
                blast: dir.blast,
            };
            // Collapse only when strictly cheaper: at a tie the exact paths
            // purge less.
            best[d] = if dir.eligible && cost(price, shut) < open_cost {
                collapse[d] = true;
                (cost(price, shut), shut)
            } else {
                (open_cost, open)
            };
        }
        (
            collapse,
            best.first().map_or(
                Point {
                    w: 0,
                    e: 0,
                    blast: 0,
                },
                |b| b.1,
            ),
        )
    }
}

fn cost(price: f64, p: Point) -> f64 {
    price * f64::from(p.w + p.e) + p.blast as f64
}

/// The exact tables, one per directory, in one arena.
struct Tables {
    points: Vec<Point>,
    span: Vec<(u32, u32)>,
    caps: Caps,
}

impl Tables {
    fn of(&self, d: usize) -> &[Point] {
        let (start, len) = self.span[d];
        &self.points[start as usize..(start + len) as usize]
    }

    fn compute(tree: &Tree, caps: Caps) -> Tables {
        let n = tree.dirs.len();
        let mut t = Tables {
            points: Vec::new(),
            span: vec![(0, 0); n],
            caps,
        };
        let mut bufs = Buffers::default();
        for d in (0..n).rev() {
            t.open(tree, d, &mut bufs, |_, _| {});
            t.add_collapse(tree, d, &mut bufs);
            t.span[d] = (t.points.len() as u32, bufs.out.len() as u32);
            t.points.extend_from_slice(&bufs.out);
        }
        t
    }

    /// The table of `d` left open, into `bufs.out`; `each` sees the
    /// product after every child (for rebuilding a choice).
    fn open(
        &self,
        tree: &Tree,
        d: usize,
        bufs: &mut Buffers,
        mut each: impl FnMut(usize, &[Point]),
    ) {
        let dir = &tree.dirs[d];
        bufs.out.clear();
        if self.caps.admits(dir.own_wildcard, dir.own_exact) {
            bufs.out.push(Point {
                w: dir.own_wildcard,
                e: dir.own_exact,
                blast: 0,
            });
        }
        for c in tree.children(d) {
            if bufs.out.is_empty() {
                return;
            }
            product(
                &bufs.out,
                self.of(c),
                self.caps,
                &mut bufs.all,
                &mut bufs.next,
            );
            std::mem::swap(&mut bufs.out, &mut bufs.next);
            each(c, &bufs.out);
        }
    }

    /// Adds collapsing `d` to its open table in `bufs.out`.
    fn add_collapse(&self, tree: &Tree, d: usize, bufs: &mut Buffers) {
        let dir = &tree.dirs[d];
        if dir.eligible && self.caps.admits(1, 0) {
            bufs.all.clear();
            bufs.all.extend_from_slice(&bufs.out);
            bufs.all.push(Point {
                w: 1,
                e: 0,
                blast: dir.blast,
            });
            prune(&mut bufs.all, &mut bufs.out);
        }
    }
}

/// Work space reused from one directory to the next.
#[derive(Default)]
struct Buffers {
    out: Vec<Point>,
    next: Vec<Point>,
    all: Vec<Point>,
}

/// Min-plus product of two tables, cut at the capacity and pruned, into
/// `out`; `all` is work space.
fn product(a: &[Point], b: &[Point], caps: Caps, all: &mut Vec<Point>, out: &mut Vec<Point>) {
    all.clear();
    for p in a {
        for q in b {
            let (w, e) = (p.w + q.w, p.e + q.e);
            if caps.admits(w, e) {
                all.push(Point {
                    w,
                    e,
                    blast: p.blast + q.blast,
                });
            }
        }
    }
    prune(all, out);
}

/// Keeps the points no other point beats on every count (no more
/// wildcards, exact paths and blast), sorted by `w` then `e`; of equal
/// points one.
fn prune(all: &mut [Point], out: &mut Vec<Point>) {
    out.clear();
    if all.len() <= 1 {
        out.extend_from_slice(all);
        return;
    }
    all.sort_unstable_by_key(|p| (p.w, p.e, p.blast));
    // Start of each `w`'s run in `out`, to look up smaller `w`s.
    let mut runs: Vec<(u32, usize, usize)> = Vec::new();
    for &p in all.iter() {
        if runs.last().is_none_or(|r| r.0 != p.w) {
            if let Some(last) = runs.last_mut() {
                last.2 = out.len();
            }
            runs.push((p.w, out.len(), out.len()));
        }
        let start = runs[runs.len() - 1].1;
        // Within a run, `e` grows: a point must bring less blast than the
        // last one kept.
        if out.len() > start && out[out.len() - 1].blast <= p.blast {
            continue;
        }
        // Against smaller `w`: the least blast with at most this `e`.
        let beaten = runs[..runs.len() - 1].iter().any(|&(_, s, end)| {
            let run = &out[s..end];
            let i = run.partition_point(|q| q.e <= p.e);
            i > 0 && run[i - 1].blast <= p.blast
        });
        if !beaten {
            out.push(p);
        }
    }
}

/// The collapsed directories behind one point of the root's table.
fn rebuild(tree: &Tree, tables: &Tables, root: Point) -> Vec<bool> {
    let mut collapse = vec![false; tree.dirs.len()];
    let mut todo = vec![(0usize, root)];
    let mut bufs = Buffers::default();
    while let Some((d, target)) = todo.pop() {
        // The products after each child, to split the target among them.
        let mut prefixes: Vec<Vec<Point>> = Vec::new();
        let mut children = Vec::new();
        tables.open(tree, d, &mut bufs, |c, table| {
            children.push(c);
            prefixes.push(table.to_vec());
        });
        // Stopped early when nothing fits: then only collapsing does.
        let full: &[Point] = if children.len() < tree.children(d).count() {
            &[]
        } else {
            &bufs.out
        };
        if !full.contains(&target) {
            debug_assert!(tree.dirs[d].eligible && target.w == 1 && target.e == 0);
            collapse[d] = true;
            continue;
        }
        let dir = &tree.dirs[d];
        let own = Point {
            w: dir.own_wildcard,
            e: dir.own_exact,
            blast: 0,
        };
        let mut rest = target;
        for i in (0..children.len()).rev() {
            let before: &[Point] = if i == 0 {
                std::slice::from_ref(&own)
            } else {
                &prefixes[i - 1]
            };
            let child = tables.of(children[i]);
            let split = child.iter().find_map(|q| {
                let p = Point {
                    w: rest.w.checked_sub(q.w)?,
                    e: rest.e.checked_sub(q.e)?,
                    blast: rest.blast.checked_sub(q.blast)?,
                };
                before.contains(&p).then_some((p, *q))
            });
            let Some((p, q)) = split else {
                unreachable!("a point of a min-plus product comes from a pair of points");
            };
            todo.push((children[i], q));
            rest = p;
        }
    }
    collapse
}

/// Plans one batch with least blast at `price` blast per billed path.
pub fn plan(
    entries: &[Entry],
    capacity: Capacity,
    settings: &Settings,
    catalog: &Catalog,
    price: f64,
) -> Plan {
    if entries.is_empty() {
        return Plan {
            paths: Vec::new(),
            deferred: Vec::new(),
            figures: Figures::default(),
        };
    }
    let price = if price.is_finite() && price > 0.0 {
        price
    } else {
        f64::MIN_POSITIVE
    };
    let dedup = Dedup::new(entries);
    let tags = dedup.tags.len();
    // No cover fits: the threshold planner defers oldest first.
    let threshold = |dedup: &Dedup, search: Search| {
        let mut plan = super::plan_deduplicated(entries, dedup, capacity, settings, search);
        plan.figures.blast = blast_of_kept(&plan.paths, &dedup.kept, catalog);
        plan
    };
    if tags > capacity.exact.min(capacity.paths) {
        // The tags alone do not fit: nothing to choose.
        return threshold(&dedup, Search::Exact);
    }
    let tree = Tree::build(&dedup.kept, settings, catalog);
    let caps = Caps::new(capacity.without(tags));
    let (mut collapse, best) = tree.priced(price);
    if !caps.admits(best.w, best.e) {
        if tree.any_cover_fits(caps) == Some(false) {
            drop(tree);
            return threshold(&dedup, Search::KnownNotToFit);
        }
        let tables = Tables::compute(&tree, caps);
        let root = tables.of(0).iter().copied().min_by(|a, b| {
            cost(price, *a)
                .total_cmp(&cost(price, *b))
                .then(a.blast.cmp(&b.blast))
                .then(a.w.cmp(&b.w))
        });
        let Some(root) = root else {
            drop(tables);
            drop(tree);
            return threshold(&dedup, Search::KnownNotToFit);
        };
        collapse = rebuild(&tree, &tables, root);
    }
    let mut paths = outputs(&tree, &collapse, entries);
    paths.extend(
        dedup
            .tags
            .iter()
            .map(|&(_, i)| entries[i as usize].path.clone()),
    );
    paths.sort_unstable();
    let (exact, wildcard) = count_kinds(&paths);
    let tags = count_tags(&paths);
    let blast = collapsed_blast(&tree, &collapse);
    Plan {
        paths,
        deferred: Vec::new(),
        figures: Figures {
            requested: entries.len(),
            unique: dedup.unique,
            exact: exact - tags,
            wildcard,
            tags,
            deferred: 0,
            blast,
        },
    }
}

/// The blast of the outermost collapsed directories.
fn collapsed_blast(tree: &Tree, collapse: &[bool]) -> u64 {
    let mut total = 0;
    let mut d = 0;
    while d < tree.dirs.len() {
        if collapse[d] {
            total += tree.dirs[d].blast;
            d = tree.dirs[d].end as usize;
        } else {
            d += 1;
        }
    }
    total
}

/// The paths of a choice of collapses: each outermost collapsed directory's
/// wildcard, and each kept entry outside them.
fn outputs(tree: &Tree, collapse: &[bool], entries: &[Entry]) -> Vec<CfPath> {
    let mut paths = Vec::new();
    // For each directory, whether it lies inside a collapsed one.
    let mut covered = vec![false; tree.dirs.len()];
    for d in 0..tree.dirs.len() {
        let dir = &tree.dirs[d];
        let inside = dir.parent != NONE && covered[dir.parent as usize];
        if inside {
            covered[d] = true;
        } else if collapse[d] {
            covered[d] = true;
            let Some(w) = CfPath::directory_wildcard(tree.dir_str(d)) else {
                unreachable!("only directories whose wildcard fits are eligible");
            };
            paths.push(w);
        }
    }
    for (k, &(_, i)) in tree.kept.iter().enumerate() {
        if !covered[tree.dir_of_kept[k] as usize] {
            paths.push(entries[i as usize].path.clone());
        }
    }
    paths
}

/// The least blast for every number of billed paths a cover of the batch
/// can have within `capacity`: points `(billed, blast)` with billed rising
/// and blast falling, each the least blast of any cover billing that many
/// (so a cover billing more but not purging less is left out). Empty when
/// no cover fits.
pub fn frontier(
    entries: &[Entry],
    capacity: Capacity,
    settings: &Settings,
    catalog: &Catalog,
) -> Vec<(usize, u64)> {
    if entries.is_empty() {
        return vec![(0, 0)];
    }
    let dedup = Dedup::new(entries);
    // Tags are billed one each in every cover.
    let tags = dedup.tags.len();
    if tags > capacity.exact.min(capacity.paths) {
        return Vec::new();
    }
    if dedup.kept.is_empty() {
        return vec![(tags, 0)];
    }
    let tree = Tree::build(&dedup.kept, settings, catalog);
    let tables = Tables::compute(&tree, Caps::new(capacity.without(tags)));
    let mut points: Vec<(usize, u64)> = tables
        .of(0)
        .iter()
        .map(|p| ((p.w + p.e) as usize + tags, p.blast))
        .collect();
    points.sort_unstable();
    let mut out: Vec<(usize, u64)> = Vec::new();
    for p in points {
        if out.last().is_none_or(|last| p.1 < last.1) {
            out.push(p);
        }
    }
    out
}

/// The blast of any plan's paths: catalog objects under its wildcards that
/// the entries did not ask for, by the rules of the module documentation
/// (a wildcard that is itself an entry purges only what was asked; one
/// whose prefix does not end in `/` is counted for its directory).
pub fn blast(paths: &[CfPath], entries: &[Entry], catalog: &Catalog) -> u64 {
    blast_of_kept(paths, &Dedup::new(entries).kept, catalog)
}

/// [`blast`] once the entries are deduplicated (`kept` sorted by
/// [`super::sort_key`]): the planners that have done step 1 hand theirs in
/// rather than sort the batch a second time.
pub(super) fn blast_of_kept(paths: &[CfPath], kept: &[Kept<'_>], catalog: &Catalog) -> u64 {
    let requested: std::collections::HashSet<&str> = kept
        .iter()
        .filter(|k| k.0.ends_with('*'))
        .map(|k| k.0)
        .collect();
    let mut prefixes: Vec<&str> = paths
        .iter()
        .filter(|p| p.is_wildcard() && !requested.contains(p.as_str()))
        .map(CfPath::prefix)
        .collect();
    prefixes.sort_unstable();
    let mut total = 0;
    let mut last: Option<&str> = None;
    for p in prefixes {
        if last.is_some_and(|l| p.starts_with(l)) {
            continue;
        }
        last = Some(p);
        let dir = directory_of(p);
        // Kept entries are sorted by prefix: those under `p` are a run.
        let start = kept.partition_point(|k| super::sort_key(k.0).0 < p);
        let asked: u64 = kept[start..]
            .iter()
            .take_while(|k| k.0.starts_with(p))
            .map(|k| match k.0.strip_suffix('*') {
                Some(prefix) if prefix.ends_with('/') => catalog.under(prefix),
                Some(_) => 0,
                None => u64::from(catalog.contains(k.0)),
            })
            .sum();
        total += catalog.under(dir).saturating_sub(asked);
    }
    total
}

#[cfg(test)]
#[path = "least_blast_tests.rs"]
mod tests;
