//! The directory tree of one batch's kept entries, built in one pass over
//! the sorted entries, and the collapses done on it.
//!
//! Directories live in an arena in depth-first order, so the subtree of a
//! directory is the index range `d..end[d]`, and a directory is described by
//! the entry whose path it was cut from plus a length: no string is copied.
//!
//! Only the directories a plan can need are built ([`Branches`]): the root,
//! each kept entry's own directory and each directory where kept entries
//! branch. A tree so has at most three directories per kept entry however
//! deep the paths are, so a batch of paths thousands of levels deep takes
//! no more memory to plan than as many flat ones.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::{Capacity, Entry, Kept, Settings};
use crate::path::{CfPath, directory_depth, directory_of};

const NONE: u32 = u32::MAX;
/// "No way to do it" in the exact search.
pub(super) const INF: u32 = u32::MAX;

/// The exact search's table has a column per wildcard slot; CloudFront
/// allows 15, so this bound only matters for `cfpurge plan` runs with a
/// larger `--max-wildcards`, where the greedy result stands.
pub const MAX_EXACT_SEARCH_WILDCARDS: usize = 64;

/// Min-plus product of two "fewest exact paths for w wildcards" rows, cut
/// at `width` wildcards, into `out`.
pub(super) fn min_plus(a: &[u32], b: &[u32], width: usize, out: &mut Vec<u32>) {
    let len = (a.len() + b.len() - 1).min(width + 1);
    out.clear();
    out.resize(len, INF);
    for (i, &x) in a.iter().enumerate().filter(|(_, x)| **x != INF) {
        for (j, &y) in b.iter().enumerate().take(len.saturating_sub(i)) {
            if y != INF {
                out[i + j] = out[i + j].min(x + y);
            }
        }
    }
}

/// One row per directory of the exact search, in one allocation: row `d`
/// holds, for each number of wildcards, the fewest exact paths its subtree
/// can be left with.
#[derive(Default)]
pub(super) struct Rows {
    data: Vec<u32>,
    span: Vec<(u32, u32)>,
}

impl Rows {
    /// Room for `n` directories' rows.
    pub(super) fn with_dirs(n: usize) -> Rows {
        Rows {
            data: Vec::new(),
            span: vec![(0, 0); n],
        }
    }

    pub(super) fn set(&mut self, d: usize, row: &[u32]) {
        self.span[d] = (self.data.len() as u32, row.len() as u32);
        self.data.extend_from_slice(row);
    }

    pub(super) fn row(&self, d: usize) -> &[u32] {
        let (start, len) = self.span[d];
        &self.data[start as usize..(start + len) as usize]
    }
}

/// Which directories of a batch the planners' trees build. Every directory
/// that holds a kept entry of its own or where kept entries branch is
/// built, and the root. A directory left out holds one subdirectory and
/// nothing else: collapsing it purges the same requested entries as
/// collapsing that subdirectory, for as many billed paths and at least as
/// much blast, and it is never deep enough for a wildcard when the
/// subdirectory is not (the root, always built, and a directory whose
/// wildcard would be too long, whose parent is built too, are the
/// exceptions). So no plan needs it, and leaving it out keeps a tree within
/// three directories per kept entry whatever the depth of the paths.
///
/// The kept entries are sorted by their prefix, so the entries under any
/// directory are a run, and the directory two of them share is the
/// shortest of the ones each neighbour pair between them shares: the
/// directories to open for an entry are those its later neighbours branch
/// at, found by following to each next smaller shared length.
pub(super) struct Branches {
    /// For each kept entry but the last, the length of the longest
    /// directory it shares with the next one.
    shared: Vec<u32>,
    /// For each position of `shared`, the next position with a smaller
    /// value (`shared.len()` when none).
    next_smaller: Vec<u32>,
    /// Build every directory (tests compare the plans with the full tree).
    every: bool,
}

#[cfg(test)]
thread_local! {
    /// Makes [`Branches`] open every directory, as the planners did before
    /// trees were pruned, so that tests can compare the two.
    pub(super) static EVERY_DIRECTORY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Branches {
    pub(super) fn new(kept: &[Kept<'_>]) -> Branches {
        #[cfg(test)]
        let every = EVERY_DIRECTORY.with(std::cell::Cell::get);
        #[cfg(not(test))]
        let every = false;
        let shared: Vec<u32> = kept
            .windows(2)
            .map(|pair| {
                let (a, b) = (directory_of(pair[0].0), directory_of(pair[1].0));
                let common = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
                a.as_bytes()[..common]
                    .iter()
                    .rposition(|&c| c == b'/')
                    .map_or(0, |i| i as u32 + 1)
            })
            .collect();
        let mut next_smaller = vec![shared.len() as u32; shared.len()];
        let mut stack: Vec<usize> = Vec::new();
        for i in (0..shared.len()).rev() {
            while stack.last().is_some_and(|&j| shared[j] >= shared[i]) {
                stack.pop();
            }
            if let Some(&j) = stack.last() {
                next_smaller[i] = j as u32;
            }
            stack.push(i);
        }
        Branches {
            shared,
            next_smaller,
            every,
        }
    }

    /// The lengths of the directories of `dir` (kept entry `k`'s own) to
    /// open below the innermost open one, `open` characters long (0 when
    /// none is), shortest first, into `out`.
    pub(super) fn to_open(&self, k: usize, dir: &str, open: usize, out: &mut Vec<usize>) {
        out.clear();
        if self.every {
            out.extend(dir[open..].match_indices('/').map(|(i, _)| open + i + 1));
            return;
        }
        if open == 0 {
            out.push(1);
        }
        let floor = open.max(1);
        // Where later entries branch off this one's directory: strictly
        // shorter at each step, so each one found is opened.
        let mut j = k;
        while j < self.shared.len() && self.shared[j] as usize > floor {
            out.push(self.shared[j] as usize);
            j = self.next_smaller[j] as usize;
        }
        if dir.len() > floor {
            out.push(dir.len());
            if !CfPath::directory_wildcard_fits(dir.len()) {
                // Its wildcard would be too long: its parent's is the
                // deepest that covers it.
                let parent = dir[..dir.len() - 1].rfind('/').map_or(0, |i| i + 1);
                if parent > floor {
                    out.push(parent);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
    }
}

/// The depth of the directory `dir` opened below `parent` (its depth and
/// length), or as the first directory of a tree.
pub(super) fn depth_below(parent: Option<(u32, usize)>, dir: &str) -> u32 {
    match parent {
        Some((depth, len)) => depth + dir[len..].bytes().filter(|&b| b == b'/').count() as u32,
        None => directory_depth(dir) as u32,
    }
}

/// One directory and the outputs currently under it.
#[derive(Clone, Copy, Debug)]
struct Dir {
    parent: u32,
    /// One past the last directory of the subtree.
    end: u32,
    /// The kept entry whose path starts with this directory.
    source: u32,
    /// Length of the directory's string, ending in `/`.
    len: u32,
    depth: u32,
    /// Exact output paths under the directory.
    exact: u32,
    /// Wildcard output paths under the directory (a collapsed directory is
    /// one wildcard).
    wildcard: u32,
    /// Kept entries right in this directory, exact and wildcard: what the
    /// exact search in [`Tree::rescue`] starts from.
    own_exact: u32,
    own_wildcard: u32,
    eligible: bool,
    collapsed: bool,
    /// Inside a collapsed directory: nothing under it is emitted.
    absorbed: bool,
}

impl Dir {
    fn outputs(&self) -> u32 {
        self.exact + self.wildcard
    }
}

pub(super) struct Tree<'a> {
    kept: &'a [Kept<'a>],
    dirs: Vec<Dir>,
    /// For each kept entry, the directory that holds it.
    dir_of_kept: Vec<u32>,
    exact: usize,
    wildcard: usize,
}

/// The outputs of a tree, and which output covers each kept entry.
pub(super) struct Outputs {
    pub paths: Vec<CfPath>,
    pub of_kept: Vec<u32>,
}

impl<'a> Tree<'a> {
    /// Builds the tree from the kept entries (sorted by prefix) and applies
    /// the threshold collapse bottom-up as each directory is closed.
    pub fn build(kept: &'a [Kept<'a>], settings: &Settings) -> Tree<'a> {
        let mut tree = Tree {
            kept,
            dirs: Vec::new(),
            dir_of_kept: Vec::with_capacity(kept.len()),
            exact: 0,
            wildcard: 0,
        };
        let branches = Branches::new(kept);
        let mut to_open = Vec::new();
        // The open directories, innermost last, with their strings.
        let mut stack: Vec<(u32, &str)> = Vec::new();
        for (k, &(path, _)) in kept.iter().enumerate() {
            let dir = directory_of(path);
            while let Some(&(top, top_str)) = stack.last() {
                if dir.starts_with(top_str) {
                    break;
                }
                tree.close(top, settings);
                stack.pop();
            }
            // Open the directories a plan can need between the innermost
            // open one and the entry's own.
            let from = stack.last().map_or(0, |(_, s)| s.len());
            branches.to_open(k, dir, from, &mut to_open);
            for &len in &to_open {
                let (parent, depth) = match stack.last() {
                    Some(&(p, s)) => (
                        p,
                        depth_below(Some((tree.dirs[p as usize].depth, s.len())), &dir[..len]),
                    ),
                    None => (NONE, depth_below(None, &dir[..len])),
                };
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
                    depth,
                    exact: 0,
                    wildcard: 0,
                    own_exact: 0,
                    own_wildcard: 0,
                    eligible,
                    collapsed: false,
                    absorbed: false,
                });
                stack.push((tree.dirs.len() as u32 - 1, &dir[..len]));
            }
            let Some(&(holder, _)) = stack.last() else {
                unreachable!("every valid path starts with '/', so the root is open");
            };
            let d = &mut tree.dirs[holder as usize];
            if path.ends_with('*') {
                d.wildcard += 1;
                d.own_wildcard += 1;
            } else {
                d.exact += 1;
                d.own_exact += 1;
            }
            tree.dir_of_kept.push(holder);
        }
        while let Some((top, _)) = stack.pop() {
            tree.close(top, settings);
        }
        let root = tree.dirs.first().copied();
        if let Some(root) = root {
            tree.exact = root.exact as usize;
            tree.wildcard = root.wildcard as usize;
        }
        tree
    }

    /// Directories built: what the tree's memory grows with.
    #[cfg(test)]
    pub fn directories(&self) -> usize {
        self.dirs.len()
    }

    fn dir_str(&self, d: u32) -> &'a str {
        let dir = &self.dirs[d as usize];
        &self.kept[dir.source as usize].0[..dir.len as usize]
    }

    /// Closes a directory once everything under it is known: the threshold
    /// collapse, then its outputs are added to its parent's.
    fn close(&mut self, d: u32, settings: &Settings) {
        let end = self.dirs.len() as u32;
        let dir = &mut self.dirs[d as usize];
        dir.end = end;
        let collapse = dir.eligible && dir.outputs() as usize >= settings.wildcard_threshold;
        if collapse {
            dir.exact = 0;
            dir.wildcard = 1;
        }
        let (exact, wildcard, parent) = (dir.exact, dir.wildcard, dir.parent);
        if parent != NONE {
            let p = &mut self.dirs[parent as usize];
            p.exact += exact;
            p.wildcard += wildcard;
        }
        if collapse {
            self.mark_collapsed(d);
        }
    }

    /// Step 3: collapses more directories until the outputs fit, or until
    /// nothing more can be collapsed.
    pub fn fit(&mut self, capacity: Capacity) {
        // Exact slots: each collapse removes the exact paths under a
        // directory for one wildcard.
        self.collapse_while(|t| t.exact > capacity.exact, |d| d.exact);
        // Budget: each collapse removes all but one of the paths under it.
        self.collapse_while(
            |t| t.exact + t.wildcard > capacity.paths,
            |d| d.outputs().saturating_sub(1),
        );
        // Wildcard slots: merge wildcards into a parent wildcard.
        self.collapse_while(
            |t| t.wildcard > capacity.wildcard,
            |d| d.wildcard.saturating_sub(1),
        );
    }

    /// Whether the outputs fit.
    pub fn fits(&self, capacity: Capacity) -> bool {
        capacity.fits(self.exact, self.wildcard)
    }

    /// When the greedy collapses do not fit, an exact search: for every
    /// directory, the fewest exact paths its subtree can be left with for
    /// each number of wildcards (a min-plus product over its children), then
    /// the cheapest root choice that fits, rebuilt top-down preferring to
    /// collapse deeper. Threshold collapses are not kept: they are a saving,
    /// not a requirement. Returns false when no choice of collapses fits, so
    /// that deferral happens only when covering everything is impossible
    /// (up to [`MAX_EXACT_SEARCH_WILDCARDS`] wildcard slots).
    pub fn rescue(&mut self, capacity: Capacity) -> bool {
        let width = capacity.wildcard.min(MAX_EXACT_SEARCH_WILDCARDS);
        let mut best = Rows::with_dirs(self.dirs.len());
        let (mut open, mut scratch) = (Vec::new(), Vec::new());
        for d in (0..self.dirs.len()).rev() {
            self.keep_open(d, &best, width, &mut open, &mut scratch);
            if self.dirs[d].eligible && width >= 1 {
                if open.len() < 2 {
                    open.resize(2, INF);
                }
                open[1] = 0;
            }
            best.set(d, &open);
        }
        if self.dirs.is_empty() {
            return true;
        }
        let root = best.row(0);
        let choice = (0..root.len())
            .filter(|&w| root[w] != INF && capacity.fits(root[w] as usize, w))
            .min_by_key(|&w| (root[w] as usize + w, root[w]));
        let Some(w) = choice else {
            return false;
        };
        self.exact = root[w] as usize;
        self.wildcard = w;
        for dir in &mut self.dirs {
            dir.collapsed = false;
            dir.absorbed = false;
        }
        self.assign(0, w, &best, width);
        true
    }

    /// The children of a directory, in order.
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

    /// The row of `d`'s own entries alone: its wildcards are forced, its
    /// exact paths stay.
    fn own_row(&self, d: usize, width: usize, row: &mut Vec<u32>) {
        let dir = &self.dirs[d];
        let own = dir.own_wildcard as usize;
        row.clear();
        row.resize(own.min(width) + 1, INF);
        if own <= width {
            row[own] = dir.own_exact;
        }
    }

    /// The fewest exact paths left under `d` for each number of wildcards
    /// when `d` itself stays open: the min-plus product of its own row and
    /// its children's rows, into `open`.
    fn keep_open(
        &self,
        d: usize,
        best: &Rows,
        width: usize,
        open: &mut Vec<u32>,
        scratch: &mut Vec<u32>,
    ) {
        self.own_row(d, width, open);
        for c in self.children(d) {
            min_plus(open, best.row(c), width, scratch);
            std::mem::swap(open, scratch);
        }
    }

    /// Rebuilds the choice behind `best[d][w]`.
    fn assign(&mut self, d: usize, w: usize, best: &Rows, width: usize) {
        // The products after each child, to find how `w` was split.
        let children: Vec<usize> = self.children(d).collect();
        let mut prefixes = vec![Vec::new()];
        self.own_row(d, width, &mut prefixes[0]);
        for &c in &children {
            let mut next = Vec::new();
            min_plus(&prefixes[prefixes.len() - 1], best.row(c), width, &mut next);
            prefixes.push(next);
        }
        let open = prefixes
            .last()
            .and_then(|p| p.get(w))
            .copied()
            .unwrap_or(INF);
        if open != best.row(d)[w] {
            self.mark_collapsed(d as u32);
            return;
        }
        let mut rest = w;
        for (i, &c) in children.iter().enumerate().rev() {
            let target = prefixes[i + 1][rest];
            let row = best.row(c);
            let split = (0..=rest.min(row.len() - 1)).find(|&wc| {
                prefixes[i]
                    .get(rest - wc)
                    .is_some_and(|&b| b != INF && row[wc] != INF && b + row[wc] == target)
            });
            let Some(wc) = split else {
                unreachable!("a min-plus product value comes from some split");
            };
            self.assign(c, wc, best, width);
            rest -= wc;
        }
    }

    fn mark_collapsed(&mut self, d: u32) {
        let dir = &mut self.dirs[d as usize];
        dir.collapsed = true;
        let end = dir.end;
        for child in &mut self.dirs[d as usize + 1..end as usize] {
            child.absorbed = true;
        }
    }

    /// Collapses directories, deepest first and then the one with the
    /// greatest `gain`, while `over` holds. A directory's gain never grows
    /// as others collapse, so a heap with lazy updates finds the best one.
    ///
    /// Between equal gains, the directory that already holds more wildcards
    /// goes first: collapsing it costs fewer wildcard slots.
    fn collapse_while(&mut self, over: impl Fn(&Self) -> bool, gain: impl Fn(&Dir) -> u32) {
        if !over(self) {
            return;
        }
        let live = |d: &Dir| d.eligible && !d.collapsed && !d.absorbed;
        let key = |d: &Dir| (d.depth, gain(d), d.wildcard);
        let mut heap: BinaryHeap<((u32, u32, u32), Reverse<u32>)> = self
            .dirs
            .iter()
            .enumerate()
            .filter(|(_, d)| live(d) && gain(d) > 0)
            .map(|(i, d)| (key(d), Reverse(i as u32)))
            .collect();
        while over(self) {
            let Some((stale, Reverse(d))) = heap.pop() else {
                return;
            };
            let dir = &self.dirs[d as usize];
            if !live(dir) {
                continue;
            }
            let current = key(dir);
            if current != stale {
                if gain(dir) > 0 {
                    heap.push((current, Reverse(d)));
                }
                continue;
            }
            self.collapse(d);
        }
    }

    fn collapse(&mut self, d: u32) {
        let dir = self.dirs[d as usize];
        let (removed_exact, removed_wildcard) = (dir.exact, dir.wildcard);
        let mut a = dir.parent;
        while a != NONE {
            let anc = &mut self.dirs[a as usize];
            anc.exact -= removed_exact;
            anc.wildcard = anc.wildcard + 1 - removed_wildcard;
            a = anc.parent;
        }
        self.exact -= removed_exact as usize;
        self.wildcard = self.wildcard + 1 - removed_wildcard as usize;
        let dir = &mut self.dirs[d as usize];
        dir.exact = 0;
        dir.wildcard = 1;
        self.mark_collapsed(d);
    }

    /// The output paths: each collapsed directory not inside another, and
    /// each kept entry not inside a collapsed directory.
    pub fn outputs(&self, entries: &[Entry]) -> Outputs {
        let kept = self.kept;
        let mut paths = Vec::with_capacity(self.exact + self.wildcard);
        let mut output_of_dir = vec![NONE; self.dirs.len()];
        for (d, dir) in self.dirs.iter().enumerate() {
            if dir.collapsed && !dir.absorbed {
                output_of_dir[d] = paths.len() as u32;
                let s = self.dir_str(d as u32);
                let Some(w) = CfPath::directory_wildcard(s) else {
                    unreachable!("only directories whose wildcard fits are eligible");
                };
                paths.push(w);
            } else if dir.absorbed {
                output_of_dir[d] = output_of_dir[dir.parent as usize];
            }
        }
        let mut of_kept = Vec::with_capacity(kept.len());
        for (k, &(_, i)) in kept.iter().enumerate() {
            let o = output_of_dir[self.dir_of_kept[k] as usize];
            if o != NONE {
                of_kept.push(o);
            } else {
                of_kept.push(paths.len() as u32);
                paths.push(entries[i as usize].path.clone());
            }
        }
        Outputs { paths, of_kept }
    }
}
