//! The planner: one distribution's pending entries and the room there is
//! (in-flight slots, budget) in, the invalidation paths to submit and the
//! entries to keep for later out. Pure and synchronous: no clock, no I/O.
//!
//! The steps, as the design lays them out:
//!
//! 1. Drop duplicates and entries covered by a requested wildcard.
//! 2. Bottom-up over the directory tree, a directory deep enough for a
//!    wildcard with at least `wildcard_threshold` paths under it (a collapsed
//!    child counts as one) becomes `dir/*`.
//! 3. While over capacity, collapse more, deepest directories first and,
//!    at one depth, the one that saves the most: first to fit the exact
//!    slots, then the budget, then merge wildcards into their parent to fit
//!    the wildcard slots.
//! 4. What still does not fit is deferred, the outputs covering the oldest
//!    entries kept first; an exact entry whose wildcard does not fit goes
//!    out as itself while exact slots and budget last.
//!
//! Cache tags (`#name` entries) take no part in the steps above: no
//! wildcard covers a tag, so each distinct tag (ignoring case, the first
//! spelling kept) is an output of its own, billed as one path and counted
//! with the exact paths. The paths are collapsed in the room the tags
//! leave; when even that does not fit, step 4 weighs tags and paths alike,
//! oldest first.
//!
//! Entries are sorted by their prefix once; after that every step is a
//! linear pass or a heap of directories, so planning grows with
//! `n log n` in the number of entries and needs no allocation per entry
//! beyond a few integers.

pub mod least_blast;
pub mod optimum;
mod tree;

use std::collections::HashSet;

use crate::catalog::Catalog;
use crate::path::{CfPath, MAX_INFLIGHT_EXACT, MAX_INFLIGHT_WILDCARDS, directory_depth};

/// One path waiting to be invalidated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub path: CfPath,
    /// When the entry arrived, in any monotonic unit (milliseconds, a
    /// sequence number). Only the order matters: smaller is older, and older
    /// entries are the last to be deferred.
    pub since: u64,
}

impl Entry {
    pub fn new(path: CfPath, since: u64) -> Entry {
        Entry { path, since }
    }
}

/// How much may be submitted now for one distribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    /// Exact paths that may still go in flight.
    pub exact: usize,
    /// Wildcard paths that may still go in flight.
    pub wildcard: usize,
    /// Paths (exact and wildcard, each billed as one) the budget allows.
    pub paths: usize,
}

impl Capacity {
    /// CloudFront's per-distribution in-flight limits with no budget limit:
    /// what an idle distribution can take in one invalidation.
    pub const AWS: Capacity = Capacity {
        exact: MAX_INFLIGHT_EXACT,
        wildcard: MAX_INFLIGHT_WILDCARDS,
        paths: usize::MAX,
    };

    /// Whether a set of `exact` and `wildcard` paths fits (cache tags
    /// count as exact paths).
    pub fn fits(&self, exact: usize, wildcard: usize) -> bool {
        exact <= self.exact && wildcard <= self.wildcard && exact + wildcard <= self.paths
    }

    /// The room left once `tags` cache tags are in: each takes an exact
    /// slot and a path of budget.
    pub fn without(&self, tags: usize) -> Capacity {
        Capacity {
            exact: self.exact.saturating_sub(tags),
            wildcard: self.wildcard,
            paths: self.paths.saturating_sub(tags),
        }
    }
}

/// How eagerly directories are collapsed into wildcards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// A directory with at least this many paths under it becomes `dir/*`.
    pub wildcard_threshold: usize,
    /// No wildcard is made for a directory shallower than this (`/a/*` has
    /// depth 1), except `/*` when `allow_root_wildcard` is set.
    pub min_wildcard_depth: usize,
    /// Whether the planner may emit `/*`.
    pub allow_root_wildcard: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            wildcard_threshold: 8,
            min_wildcard_depth: 1,
            allow_root_wildcard: false,
        }
    }
}

impl From<&crate::config::CoalesceConfig> for Settings {
    fn from(c: &crate::config::CoalesceConfig) -> Self {
        Settings {
            wildcard_threshold: c.wildcard_threshold,
            min_wildcard_depth: c.min_wildcard_depth,
            allow_root_wildcard: c.allow_root_wildcard,
        }
    }
}

/// The planner's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The invalidation paths to submit, sorted. They cover every entry that
    /// is not deferred and fit the capacity.
    pub paths: Vec<CfPath>,
    /// Indices into the input of the entries left for a later batch,
    /// in input order.
    pub deferred: Vec<usize>,
    pub figures: Figures,
}

/// What a plan did, for logs, metrics and `cfpurge plan`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Figures {
    /// Entries given.
    pub requested: usize,
    /// Distinct paths among them.
    pub unique: usize,
    /// Exact paths in the output (tags apart).
    pub exact: usize,
    /// Wildcard paths in the output.
    pub wildcard: usize,
    /// Cache tags in the output: billed one each, and in flight counted
    /// with the exact paths.
    pub tags: usize,
    /// Entries deferred.
    pub deferred: usize,
    /// Catalog objects the plan's wildcards purge that no entry asked for
    /// (0 when planned without a catalog).
    pub blast: u64,
}

impl Figures {
    /// Paths CloudFront bills for the plan: every path, a wildcard as one,
    /// a tag as one.
    pub fn billed(&self) -> usize {
        self.exact + self.wildcard + self.tags
    }
}

/// Plans one batch. See the module documentation for the steps.
pub fn plan(entries: &[Entry], capacity: Capacity, settings: &Settings) -> Plan {
    if entries.is_empty() {
        return Plan {
            paths: Vec::new(),
            deferred: Vec::new(),
            figures: Figures::default(),
        };
    }
    plan_deduplicated(
        entries,
        &Dedup::new(entries),
        capacity,
        settings,
        Search::Exact,
    )
}

/// Whether step 3 ends with the exact search when the greedy collapses do
/// not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Search {
    Exact,
    /// The caller has already found that no cover fits the room (the
    /// least-blast planner's exact check): the search would find nothing.
    KnownNotToFit,
}

/// [`plan`] once step 1 is done (the least-blast planner hands in its own
/// when it falls back here).
fn plan_deduplicated(
    entries: &[Entry],
    dedup: &Dedup<'_>,
    capacity: Capacity,
    settings: &Settings,
    search: Search,
) -> Plan {
    let requested = entries.len();
    let room = capacity.without(dedup.tags.len());
    let mut tree = tree::Tree::build(&dedup.kept, settings);
    tree.fit(room);
    if !tree.fits(room) && search == Search::Exact {
        tree.rescue(room);
    }
    let mut outputs = tree.outputs(entries);
    // Each tag is its own output, after the tree's.
    for &(_, i) in &dedup.tags {
        outputs.of_kept.push(outputs.paths.len() as u32);
        outputs.paths.push(entries[i as usize].path.clone());
    }

    // Every input entry maps to the output that covers it, through the kept
    // entry that stands for it.
    let output_of_entry: Vec<u32> = dedup
        .representative
        .iter()
        .map(|&k| outputs.of_kept[k as usize])
        .collect();

    let (exact, wildcard) = count_kinds(&outputs.paths);
    let (mut paths, deferred) = if capacity.fits(exact, wildcard) {
        (outputs.paths, Vec::new())
    } else {
        oldest_first_that_fit(outputs.paths, entries, &output_of_entry, capacity)
    };
    paths.sort_unstable();
    let (exact, wildcard) = count_kinds(&paths);
    let tags = count_tags(&paths);
    Plan {
        figures: Figures {
            requested,
            unique: dedup.unique,
            exact: exact - tags,
            wildcard,
            tags,
            deferred: deferred.len(),
            blast: 0,
        },
        paths,
        deferred,
    }
}

/// How to pick a batch's cover: `coalesce.strategy`, with what it needs.
#[derive(Clone, Copy, Debug)]
pub enum Strategy<'a> {
    /// Collapse by `wildcard_threshold`; the catalog, when there is one,
    /// only measures the blast.
    Threshold { catalog: Option<&'a Catalog> },
    /// The cover with the least `billed + blast / price` within capacity.
    LeastBlast {
        catalog: &'a Catalog,
        /// Unrequested objects purged that one billed path is worth:
        /// `coalesce.blast_per_path`, or the budget's price
        /// ([`crate::budget::PriceController`]) under even pacing.
        price: f64,
    },
}

impl<'a> Strategy<'a> {
    /// The strategy the configuration asks for, given the distribution's
    /// catalog if it has one ready: `least_blast` needs one and falls back
    /// to `threshold` without it (as while the first listing runs).
    pub fn new(
        configured: crate::config::Strategy,
        catalog: Option<&'a Catalog>,
        price: f64,
    ) -> Strategy<'a> {
        match (configured, catalog) {
            (crate::config::Strategy::LeastBlast, Some(catalog)) => {
                Strategy::LeastBlast { catalog, price }
            }
            _ => Strategy::Threshold { catalog },
        }
    }

    /// The name reported in logs and `cfpurge plan`.
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Threshold { .. } => "threshold",
            Strategy::LeastBlast { .. } => "least_blast",
        }
    }
}

/// Plans one batch by `strategy`: the one call the daemon and `cfpurge plan`
/// make. With a catalog, `figures.blast` says what the plan purges beyond
/// the request.
pub fn plan_with(
    entries: &[Entry],
    capacity: Capacity,
    settings: &Settings,
    strategy: Strategy<'_>,
) -> Plan {
    match strategy {
        Strategy::Threshold { catalog: None } => plan(entries, capacity, settings),
        Strategy::Threshold {
            catalog: Some(catalog),
        } => {
            if entries.is_empty() {
                return plan(entries, capacity, settings);
            }
            // One sort of the batch serves the plan and its blast.
            let dedup = Dedup::new(entries);
            let mut p = plan_deduplicated(entries, &dedup, capacity, settings, Search::Exact);
            p.figures.blast = least_blast::blast_of_kept(&p.paths, &dedup.kept, catalog);
            p
        }
        Strategy::LeastBlast { catalog, price } => {
            least_blast::plan(entries, capacity, settings, catalog, price)
        }
    }
}

/// Exact (cache tags included, as CloudFront's limits count them) and
/// wildcard paths.
fn count_kinds(paths: &[CfPath]) -> (usize, usize) {
    let wildcard = paths.iter().filter(|p| p.is_wildcard()).count();
    (paths.len() - wildcard, wildcard)
}

fn count_tags(paths: &[CfPath]) -> usize {
    paths.iter().filter(|p| p.is_tag()).count()
}

/// Step 4, when not every output fits: entries oldest first, each covered
/// by its output if that output is kept or still fits. An exact entry whose
/// output is a wildcard that does not fit goes out as itself while exact
/// slots and budget last, so that when the wildcard slots are what is short,
/// the oldest entries of a directory the planner would collapse do not wait
/// behind newer ones elsewhere. Returns the paths and the deferred entries.
fn oldest_first_that_fit(
    outputs: Vec<CfPath>,
    entries: &[Entry],
    output_of_entry: &[u32],
    capacity: Capacity,
) -> (Vec<CfPath>, Vec<usize>) {
    #[derive(Clone, Copy, PartialEq)]
    enum Choice {
        Open,
        Kept,
        Dropped,
    }
    let output = |i: usize| &outputs[output_of_entry[i] as usize];
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_unstable_by(|&a, &b| {
        (entries[a].since, output(a), a).cmp(&(entries[b].since, output(b), b))
    });
    let mut choice = vec![Choice::Open; outputs.len()];
    let (mut exact, mut wildcard) = (0, 0);
    // Exact entries going out as themselves, instead of their wildcard.
    let mut alone: HashSet<&str> = HashSet::new();
    let mut deferred = Vec::new();
    for i in order {
        let o = output_of_entry[i] as usize;
        if choice[o] == Choice::Open {
            let (e, w) = if outputs[o].is_wildcard() {
                (exact, wildcard + 1)
            } else {
                (exact + 1, wildcard)
            };
            choice[o] = if capacity.fits(e, w) {
                (exact, wildcard) = (e, w);
                Choice::Kept
            } else {
                Choice::Dropped
            };
        }
        if choice[o] == Choice::Kept {
            continue;
        }
        let path = entries[i].path.as_str();
        if outputs[o].is_wildcard() && !entries[i].path.is_wildcard() {
            if alone.contains(path) {
                continue;
            }
            if capacity.fits(exact + 1, wildcard) {
                exact += 1;
                alone.insert(path);
                continue;
            }
        }
        deferred.push(i);
    }
    deferred.sort_unstable();
    let mut paths: Vec<CfPath> = outputs
        .into_iter()
        .zip(choice)
        .filter_map(|(p, c)| (c == Choice::Kept).then_some(p))
        .collect();
    // One owned copy of each: `remove` skips later duplicates.
    paths.extend(
        entries
            .iter()
            .filter(|e| alone.remove(e.path.as_str()))
            .map(|e| e.path.clone()),
    );
    (paths, deferred)
}

/// A kept entry: its path, and its index in the input.
type Kept<'a> = (&'a str, u32);

/// Step 1: the distinct entries not covered by a requested wildcard, in the
/// order the tree is built in, and which of them stands for each input entry.
struct Dedup<'a> {
    /// The kept paths, sorted by [`sort_key`]; no tags.
    kept: Vec<Kept<'a>>,
    /// The distinct cache tags, each the first entry of its name ignoring
    /// case, sorted by that name.
    tags: Vec<Kept<'a>>,
    /// For each input entry, the position in `kept` of the entry that covers
    /// it (itself, its first duplicate, or a wildcard); for a tag,
    /// `kept.len()` plus its position in `tags`.
    representative: Vec<u32>,
    /// Distinct paths in the input (tags ignoring case).
    unique: usize,
}

/// Two tags' order by name ignoring ASCII case.
fn cmp_ignore_case(a: &str, b: &str) -> std::cmp::Ordering {
    a.bytes()
        .map(|c| c.to_ascii_lowercase())
        .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
}

/// Sorting by prefix, wildcards before exact paths of the same prefix, puts
/// every path that a wildcard covers right after it, so one pass finds them.
fn sort_key(path: &str) -> (&str, bool) {
    match path.strip_suffix('*') {
        Some(prefix) => (prefix, false),
        None => (path, true),
    }
}

impl<'a> Dedup<'a> {
    fn new(entries: &'a [Entry]) -> Dedup<'a> {
        // The strings sit next to their index so that sorting touches each
        // path once per comparison, not the entry and then the path.
        let (mut tags, mut sorted): (Vec<Kept<'a>>, Vec<Kept<'a>>) = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.path.as_str(), i as u32))
            .partition(|(path, _)| path.starts_with('#'));
        sorted.sort_unstable_by(|a, b| sort_key(a.0).cmp(&sort_key(b.0)).then(a.1.cmp(&b.1)));
        let mut representative = vec![0u32; entries.len()];
        let mut unique = 0;
        let mut previous: Option<&str> = None;
        // The kept wildcard whose prefix the current run of paths starts with.
        let mut covering: Option<(&str, u32)> = None;
        let mut kept_len = 0;
        for at in 0..sorted.len() {
            let (path, i) = sorted[at];
            if previous != Some(path) {
                unique += 1;
            }
            previous = Some(path);
            if let Some((prefix, k)) = covering
                && path.starts_with(prefix)
            {
                representative[i as usize] = k;
                continue;
            }
            if kept_len > 0 && sorted[kept_len - 1].0 == path {
                representative[i as usize] = kept_len as u32 - 1;
                continue;
            }
            let k = kept_len as u32;
            sorted[kept_len] = (path, i);
            kept_len += 1;
            representative[i as usize] = k;
            if let Some(prefix) = path.strip_suffix('*') {
                covering = Some((prefix, k));
            }
        }
        sorted.truncate(kept_len);
        sorted.shrink_to_fit();
        // Tags: the first of each name ignoring case stands for the others.
        tags.sort_unstable_by(|a, b| cmp_ignore_case(a.0, b.0).then(a.1.cmp(&b.1)));
        let mut tags_len = 0;
        for at in 0..tags.len() {
            let (tag, i) = tags[at];
            if tags_len > 0 && tags[tags_len - 1].0.eq_ignore_ascii_case(tag) {
                representative[i as usize] = (kept_len + tags_len - 1) as u32;
                continue;
            }
            unique += 1;
            tags[tags_len] = (tag, i);
            representative[i as usize] = (kept_len + tags_len) as u32;
            tags_len += 1;
        }
        tags.truncate(tags_len);
        Dedup {
            kept: sorted,
            tags,
            representative,
            unique,
        }
    }
}

/// The one path that covers every entry, for `on_exhausted = "coalesce"`
/// once the budget is spent: the entry itself when there is one distinct
/// path, else the wildcard of the deepest directory holding them all when
/// that directory is at least `min_wildcard_depth` deep, else `/*` (allowed
/// here whatever `allow_root_wildcard` says). `None` for no entries.
///
/// No path covers a cache tag: when the oldest entry is a tag, that tag
/// alone is the answer; otherwise the answer covers the paths, and the
/// tags wait for a later batch.
pub fn single_covering(entries: &[Entry], settings: &Settings) -> Option<CfPath> {
    let oldest = entries.iter().min_by_key(|e| e.since)?;
    if oldest.path.is_tag() {
        return Some(oldest.path.clone());
    }
    let paths: Vec<&Entry> = entries.iter().filter(|e| !e.path.is_tag()).collect();
    let entries = &paths[..];
    let first = entries.first()?;
    if entries.iter().all(|e| e.path == first.path) {
        return Some(first.path.clone());
    }
    // The longest common directory prefix: shorten the first entry's
    // directory until every other entry lies under it.
    let mut dir: &str = first.path.directory();
    for e in &entries[1..] {
        let own = e.path.directory();
        while !own.starts_with(dir) {
            let parent = dir[..dir.len() - 1].rfind('/').map_or(0, |i| i + 1);
            dir = &dir[..parent];
        }
    }
    let root = || CfPath::parse("/*").ok();
    if dir.len() <= 1 || directory_depth(dir) < settings.min_wildcard_depth.max(1) {
        return root();
    }
    CfPath::directory_wildcard(dir).or_else(root)
}

/// Over-reach of a plan: how many paths of `universe` (what the site serves)
/// the plan's wildcards invalidate although no entry asked for them.
pub fn overreach(plan_paths: &[CfPath], requested: &[CfPath], universe: &[CfPath]) -> usize {
    let plan_cover = Cover::new(plan_paths);
    let requested_cover = Cover::new(requested);
    universe
        .iter()
        .collect::<HashSet<_>>()
        .into_iter()
        .filter(|u| plan_cover.covers(u) && !requested_cover.covers(u))
        .count()
}

/// The paths behind [`overreach`]'s count: each path of `universe` that the
/// plan's wildcards invalidate although no entry asked for it, once, sorted.
pub fn overreach_paths<'u>(
    plan_paths: &[CfPath],
    requested: &[CfPath],
    universe: &'u [CfPath],
) -> Vec<&'u CfPath> {
    let plan_cover = Cover::new(plan_paths);
    let requested_cover = Cover::new(requested);
    let mut reached: Vec<&CfPath> = universe
        .iter()
        .filter(|u| plan_cover.covers(u) && !requested_cover.covers(u))
        .collect();
    reached.sort_unstable();
    reached.dedup();
    reached
}

/// A set of paths that answers "is this path covered" in `log n`.
struct Cover<'a> {
    exact: HashSet<&'a str>,
    /// Prefixes of wildcards, sorted, none covering another.
    prefixes: Vec<&'a str>,
}

impl<'a> Cover<'a> {
    fn new(paths: &'a [CfPath]) -> Cover<'a> {
        let exact = paths
            .iter()
            .filter(|p| !p.is_wildcard())
            .map(CfPath::as_str)
            .collect();
        let mut all: Vec<&str> = paths
            .iter()
            .filter(|p| p.is_wildcard())
            .map(CfPath::prefix)
            .collect();
        all.sort_unstable();
        let mut prefixes: Vec<&str> = Vec::with_capacity(all.len());
        for p in all {
            if prefixes.last().is_none_or(|last| !p.starts_with(last)) {
                prefixes.push(p);
            }
        }
        Cover { exact, prefixes }
    }

    fn covers(&self, path: &CfPath) -> bool {
        let s = path.as_str();
        if self.exact.contains(s) {
            return true;
        }
        // Non-nested prefixes: only the greatest prefix not above `s` can be
        // a prefix of it.
        let i = self.prefixes.partition_point(|p| *p <= s);
        i > 0 && s.starts_with(self.prefixes[i - 1])
    }
}

#[cfg(test)]
mod tests;
