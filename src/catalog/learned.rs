//! `catalog = "learned"`: every exact path the distribution was asked to
//! purge so far, as its catalog. A wildcard request adds nothing.
//!
//! Bounded: at most [`MAX_PATHS`] paths and [`MAX_BYTES`] bytes of path
//! text per distribution, and in memory, the paths and their catalog
//! together, at most `catalog.max_bytes` ([`Learned::memory_bytes`]); past
//! any, the path requested longest ago is forgotten first (a path
//! requested again counts as requested now). The memory bound is the one
//! that holds for deep paths: 100,000 paths in 8 MiB can make millions of
//! directories.
//!
//! With `budget.store = "dynamodb"` the same stored form is cut into items
//! of the coordination table ([`super::learned_store`]). With
//! `budget.store = "file"` it is kept beside the budget ledger: one JSON file
//! per distribution, `<ledger_path>.learned.<alias>`, replaced atomically
//! as the ledger is (temporary file, fsync, rename, folder fsync; a new file
//! is 0600; a symbolic link is followed). It holds the paths oldest first:
//! `{"version": 1, "paths": ["/a", "/b"]}`. A stored file larger than
//! [`MAX_FILE_BYTES`], not valid JSON, of another version or holding
//! something that is not an exact path is refused as a whole, with an
//! error naming the file and what is wrong.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Catalog, CatalogError};
use crate::path::CfPath;

/// The format this build reads and writes.
pub const LEARNED_VERSION: u64 = 1;
/// Paths kept per distribution.
pub const MAX_PATHS: usize = 100_000;
/// Bytes of path text kept per distribution.
pub const MAX_BYTES: usize = 8 << 20;
/// A stored file larger than this is refused unread: twice the text (JSON
/// escapes) and 8 bytes a path (quotes, comma, line break), with room.
pub const MAX_FILE_BYTES: u64 = (2 * MAX_BYTES + 8 * MAX_PATHS + 4096) as u64;
/// Heap one learned path takes beside its text (kept twice, once per
/// index): its slot in the hash index (24 bytes, at most 7/16 full just
/// after it doubles: 55), its share of a B-tree node (about 35) and the
/// allocator's header on each copy of the text (2 × 16), rounded up.
pub const PATH_BYTES: usize = 128;

/// One distribution's learned paths and the catalog they make.
#[derive(Debug)]
pub struct Learned {
    /// Path → when it was last requested (a sequence number).
    seen: HashMap<Box<str>, u64>,
    /// The same, by sequence number: oldest first.
    order: BTreeMap<u64, Box<str>>,
    next: u64,
    bytes: usize,
    catalog: Catalog,
    max_paths: usize,
    max_bytes: usize,
    /// Bound on [`Learned::memory_bytes`].
    max_memory: usize,
    changed: bool,
}

impl Default for Learned {
    fn default() -> Self {
        Learned::new()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    version: u64,
    paths: Vec<String>,
}

impl Learned {
    /// An empty set with the default bounds.
    pub fn new() -> Learned {
        Learned::within(super::DEFAULT_MAX_BYTES)
    }

    /// An empty set with the default bounds on paths and text, taking at
    /// most `max_memory` bytes (`catalog.max_bytes`).
    pub fn within(max_memory: usize) -> Learned {
        let mut l = Learned::with_bounds(MAX_PATHS, MAX_BYTES);
        l.max_memory = max_memory;
        l
    }

    /// An empty set keeping at most `max_paths` paths and `max_bytes` bytes
    /// of path text.
    pub fn with_bounds(max_paths: usize, max_bytes: usize) -> Learned {
        Learned {
            seen: HashMap::new(),
            order: BTreeMap::new(),
            next: 0,
            bytes: 0,
            catalog: Catalog::new(),
            max_paths,
            max_bytes,
            max_memory: usize::MAX,
            changed: false,
        }
    }

    /// What the set counts against its memory bound: each path's text
    /// twice and [`PATH_BYTES`], and its catalog's strings
    /// ([`Catalog::counted_bytes`]).
    pub fn memory_bytes(&self) -> usize {
        2 * self.bytes + PATH_BYTES * self.seen.len() + self.catalog.counted_bytes()
    }

    /// Bounds the set's memory to `max_memory` from now on, forgetting the
    /// paths requested longest ago until it fits (a set read from the
    /// store, then bounded as configured).
    pub fn set_max_memory(&mut self, max_memory: usize) {
        self.max_memory = max_memory;
        while self.memory_bytes() > self.max_memory && !self.seen.is_empty() {
            self.forget_oldest();
        }
    }

    /// The bound on [`Learned::memory_bytes`].
    pub fn max_memory(&self) -> usize {
        self.max_memory
    }

    fn over(&self) -> bool {
        self.seen.len() > self.max_paths
            || self.bytes > self.max_bytes
            || self.memory_bytes() > self.max_memory
    }

    /// Learns a requested path (a wildcard or a cache tag is skipped: it
    /// names no one object). Returns true when the path was not known.
    pub fn learn(&mut self, path: &CfPath) -> bool {
        if path.is_wildcard() || path.is_tag() {
            return false;
        }
        self.learn_str(path.as_str())
    }

    fn learn_str(&mut self, path: &str) -> bool {
        let seq = self.next;
        self.next += 1;
        self.changed = true;
        if let Some(old) = self.seen.get_mut(path) {
            let key = self.order.remove(old).expect("order holds every seen path");
            *old = seq;
            self.order.insert(seq, key);
            return false;
        }
        // A path that alone would pass a bound is not kept (a path adds
        // at most one string per character to the catalog).
        let alone = 2 * path.len() + PATH_BYTES + path.len() * super::STRING_BYTES;
        if path.len() > self.max_bytes || self.max_paths == 0 || alone > self.max_memory {
            return false;
        }
        let key: Box<str> = path.into();
        self.catalog.add(&key);
        self.bytes += key.len();
        self.seen.insert(key.clone(), seq);
        self.order.insert(seq, key);
        while self.over() {
            self.forget_oldest();
        }
        true
    }

    fn forget_oldest(&mut self) {
        let Some((_, key)) = self.order.pop_first() else {
            return;
        };
        self.seen.remove(&key);
        self.catalog.remove(&key);
        self.bytes -= key.len();
    }

    /// The catalog of the learned paths.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The catalog, without the paths.
    pub fn into_catalog(self) -> Catalog {
        self.catalog
    }

    /// Paths kept.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Bytes of path text kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The paths, requested longest ago first.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.order.values().map(|k| &**k)
    }

    /// Whether anything was learned since the last call.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Marks the set as changed (a write of it failed).
    pub fn mark_changed(&mut self) {
        self.changed = true;
    }

    /// Learns `newer`'s paths after this set's own (a set loaded from the
    /// store, then what was learned while it was being read).
    pub fn absorb(&mut self, newer: &Learned) {
        for p in newer.paths() {
            self.learn_str(p);
        }
    }

    /// The stored form.
    pub fn to_json(&self) -> Vec<u8> {
        let stored = Stored {
            version: LEARNED_VERSION,
            paths: self.paths().map(str::to_owned).collect(),
        };
        let mut bytes = serde_json::to_vec(&stored).expect("strings always encode");
        bytes.push(b'\n');
        bytes
    }

    /// Reads the stored form; `name` names it in errors. Every stored
    /// path must be an exact path as cfpurge would submit it.
    pub fn from_json(bytes: &[u8], name: &str) -> Result<Learned, CatalogError> {
        let bad = |message: String| CatalogError::Stored {
            path: name.to_owned(),
            message,
        };
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        match value.get("version").map(serde_json::Value::as_u64) {
            Some(Some(LEARNED_VERSION)) => {}
            Some(Some(found)) => {
                return Err(bad(format!(
                    "version {found}; this cfpurge reads version {LEARNED_VERSION} only"
                )));
            }
            _ => return Err(bad("no whole-number \"version\"".to_owned())),
        }
        let stored: Stored = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        let mut learned = Learned::new();
        for (i, text) in stored.paths.iter().enumerate() {
            let path = CfPath::parse(text)
                .map_err(|e| bad(format!("paths[{i}] {text:?} is not a path: {e}")))?;
            if path.is_wildcard() || path.as_str() != text {
                return Err(bad(format!(
                    "paths[{i}] {text:?} is not an exact path as cfpurge stores it"
                )));
            }
            learned.learn_str(text);
        }
        learned.changed = false;
        Ok(learned)
    }
}

/// The file keeping the learned paths of distribution `alias`, beside the
/// ledger at `ledger`: `<ledger>.learned.<alias>`, the alias's bytes other
/// than letters, digits, `-` and `_` written `%XX`.
pub fn file_for(ledger: &Path, alias: &str) -> PathBuf {
    let mut name = ledger.as_os_str().to_owned();
    name.push(".learned.");
    let mut encoded = String::new();
    for b in alias.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    name.push(encoded);
    PathBuf::from(name)
}

/// Reads the learned paths kept at `path`; `None` when there is no file
/// yet.
pub fn load(path: &Path) -> Result<Option<Learned>, CatalogError> {
    let name = path.display().to_string();
    let read = |source| CatalogError::Read {
        path: name.clone(),
        source,
    };
    let size = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read(e)),
    };
    if size > MAX_FILE_BYTES {
        return Err(CatalogError::Stored {
            path: name,
            message: format!(
                "{size} bytes, more than the {MAX_FILE_BYTES} a learned catalog can take; \
                 not read"
            ),
        });
    }
    let bytes = crate::regular_file::read(path, MAX_FILE_BYTES).map_err(read)?;
    Learned::from_json(&bytes, &name).map(Some)
}

/// Replaces the file at `path` with `json` ([`Learned::to_json`]).
pub fn save(path: &Path, json: &[u8]) -> Result<(), CatalogError> {
    crate::durable::replace_file(path, json, "learned catalog").map_err(|(path, action, source)| {
        CatalogError::Write {
            path: path.display().to_string(),
            action,
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> CfPath {
        CfPath::parse(s).unwrap()
    }

    #[test]
    fn learns_exact_paths_and_skips_wildcards() {
        let mut l = Learned::new();
        assert!(l.learn(&p("/en/a/")));
        assert!(l.learn(&p("/en/b.html")));
        assert!(!l.learn(&p("/en/a/")));
        assert!(!l.learn(&p("/en/*")));
        assert!(!l.learn(&CfPath::parse_item("#product-42").unwrap()));
        assert_eq!(l.len(), 2);
        assert_eq!(l.catalog().objects(), 2);
        assert_eq!(l.catalog().under("/en/"), 2);
        assert!(!l.catalog().contains("/en/*"));
    }

    #[test]
    fn the_path_requested_longest_ago_is_forgotten_first() {
        let mut l = Learned::with_bounds(3, usize::MAX);
        for s in ["/a", "/b", "/c"] {
            l.learn(&p(s));
        }
        // /a again: now the newest, so /b goes first.
        l.learn(&p("/a"));
        l.learn(&p("/d"));
        assert_eq!(l.paths().collect::<Vec<_>>(), ["/c", "/a", "/d"]);
        assert!(!l.catalog().contains("/b"));
        assert_eq!(l.catalog().objects(), 3);
        assert_eq!(l.catalog().under("/"), 3);
    }

    #[test]
    fn the_byte_bound_holds() {
        let mut l = Learned::with_bounds(usize::MAX, 10);
        l.learn(&p("/aaaa")); // 5
        l.learn(&p("/bbbb")); // 10
        l.learn(&p("/cc")); // 13: /aaaa goes
        assert_eq!(l.bytes(), 8);
        assert_eq!(l.paths().collect::<Vec<_>>(), ["/bbbb", "/cc"]);
        // A path longer than the bound alone is not kept.
        l.learn(&p("/0123456789"));
        assert_eq!(l.paths().collect::<Vec<_>>(), ["/bbbb", "/cc"]);
    }

    #[test]
    fn the_default_bounds_fit_the_file_limit() {
        // Every kept path at its worst escaping must fit MAX_FILE_BYTES.
        assert!(((2 * MAX_BYTES + 8 * MAX_PATHS + 64) as u64) < MAX_FILE_BYTES);
    }

    #[test]
    fn round_trips_in_order() {
        let mut l = Learned::new();
        for s in ["/x/1", "/x/2", "/y/", "/x/1", "/q?a=1"] {
            l.learn(&p(s));
        }
        let back = Learned::from_json(&l.to_json(), "t").unwrap();
        assert_eq!(
            back.paths().collect::<Vec<_>>(),
            l.paths().collect::<Vec<_>>()
        );
        assert_eq!(back.catalog().under("/x/"), 2);
        assert_eq!(back.catalog().objects(), 4);
    }

    #[test]
    fn absorb_keeps_the_newer_order() {
        let mut loaded = Learned::with_bounds(2, usize::MAX);
        loaded.learn(&p("/old"));
        loaded.learn(&p("/mid"));
        let mut fresh = Learned::new();
        fresh.learn(&p("/new"));
        loaded.absorb(&fresh);
        assert_eq!(loaded.paths().collect::<Vec<_>>(), ["/mid", "/new"]);
    }

    #[test]
    fn corrupt_stored_forms_are_refused_by_name() {
        for (bytes, says) in [
            (&b""[..], "not valid JSON"),
            (b"{\"paths\": []}", "version"),
            (b"{\"version\": 2, \"paths\": []}", "version 2"),
            (b"{\"version\": 1, \"paths\": [\"/a/*\"]}", "paths[0]"),
            (
                b"{\"version\": 1, \"paths\": [\"/ok\", \"no-slash\"]}",
                "paths[1]",
            ),
            (
                b"{\"version\": 1, \"paths\": [], \"x\": 1}",
                "unknown field",
            ),
        ] {
            let e = Learned::from_json(bytes, "/var/x.learned.www").unwrap_err();
            let text = e.to_string();
            assert!(text.contains("/var/x.learned.www"), "{text}");
            assert!(text.contains(says), "{text} lacks {says}");
        }
    }

    #[test]
    fn file_round_trip_mode_and_oversize() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ledger = dir.path().join("ledger.json");
        let file = file_for(&ledger, "w/w");
        assert_eq!(
            file.file_name().unwrap().to_str().unwrap(),
            "ledger.json.learned.w%2Fw"
        );
        assert!(load(&file).unwrap().is_none());
        let mut l = Learned::new();
        l.learn(&p("/a/b"));
        save(&file, &l.to_json()).unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = load(&file).unwrap().unwrap();
        assert_eq!(back.paths().collect::<Vec<_>>(), ["/a/b"]);

        // Through a symbolic link: the target is replaced, the link stays.
        let target = dir.path().join("elsewhere");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        save(&link, &l.to_json()).unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(load(&target).unwrap().is_some());

        let big = std::fs::File::create(&file).unwrap();
        big.set_len(MAX_FILE_BYTES + 1).unwrap();
        let e = load(&file).unwrap_err().to_string();
        assert!(
            e.contains("more than") && e.contains("learned.w%2Fw"),
            "{e}"
        );
    }
}

#[cfg(test)]
mod memory_tests {
    use super::*;

    #[test]
    fn deep_paths_are_bounded_by_memory_not_text() {
        // 2,000 paths of 1,990 directories: 7.6 MiB of text, within the
        // text bound, but 4 million catalog strings.
        let max = 8 << 20;
        let mut l = Learned::within(max);
        for i in 0..2000 {
            let path = CfPath::parse(&format!("/u{i}/{}f", "a/".repeat(1990))).unwrap();
            l.learn(&path);
            assert!(l.memory_bytes() <= max, "{} bytes", l.memory_bytes());
        }
        // The newest are kept: each of 3,988 characters, with 1,992
        // strings of its own (the root is shared).
        let each = 2 * 3988 + PATH_BYTES + 1992 * super::super::STRING_BYTES;
        assert_eq!(l.len(), (max - super::super::STRING_BYTES) / each);
        assert!(l.paths().last().unwrap().starts_with("/u1999/"));
        assert_eq!(l.catalog().objects(), l.len() as u64);
    }

    #[test]
    fn a_set_read_is_cut_to_the_bound_configured() {
        let mut l = Learned::new();
        for i in 0..10 {
            l.learn(&CfPath::parse(&format!("/u{i}/{}f", "a/".repeat(1990))).unwrap());
        }
        assert_eq!(l.len(), 10);
        l.set_max_memory(300_000);
        // 1,992 strings a path: three fit.
        assert_eq!(l.len(), 3);
        assert!(l.memory_bytes() <= 300_000);
        assert!(l.paths().next().unwrap().starts_with("/u7/"));
    }
}
