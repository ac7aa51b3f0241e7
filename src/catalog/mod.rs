//! What a distribution serves, as the least-blast planner needs it: for
//! every directory, how many served objects lie under it. That is enough to
//! price a wildcard (`dir/*` purges everything counted under `dir/`) without
//! keeping the object list, which for a large site is far bigger.
//!
//! The catalog is one hash table keyed by a 64-bit fingerprint of a path or
//! directory string (SipHash with keys drawn per catalog, so that nobody can
//! aim collisions at it): 12 bytes a slot, and a served page that is itself
//! a directory (`/en/guides/x/`) shares one slot with the directory it
//! names. Each slot says whether the string is a served object and how many
//! objects lie under it as a directory. Adding an object that is already
//! there, or removing one that is not, changes nothing, so S3 events that
//! overwrite an object keep the counts right.
//!
//! Memory is bounded by `catalog.max_bytes` per catalog, counted as
//! [`STRING_BYTES`] per string (a served path or a directory): a path
//! thousands of directories deep adds thousands of strings, so a bound on
//! paths or on their text would not bound the table. A catalog refuses a
//! path whose strings would take it past its bound ([`Catalog::refused`]);
//! a catalog built from a source is then refused as a whole, since one
//! silently missing part of the site would make wildcards look cheap.
//!
//! A fingerprint collision (about one in 2^64 per pair of strings) would
//! merge two counts; for a million strings the chance that any pair
//! collides is below one in ten million, and its effect is a wrong blast
//! estimate, never a wrong purge.
//!
//! Sources: [`file`] (one served path per line), [`s3`] (the buckets
//! routed to the distribution, listed through the same key-to-path mapping
//! as S3 events) and [`learned`] (the paths requested so far, kept in the
//! budget's store: [`learned_store`]).

pub mod file;
pub mod learned;
pub mod learned_store;
pub mod s3;

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};

use crate::path::CfPath;

/// A served object's or directory's fingerprint, stored as two `u32`s so
/// that a table slot (key and value) takes 12 bytes instead of 16.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Fingerprint([u32; 2]);

impl Fingerprint {
    fn new(h: u64) -> Fingerprint {
        Fingerprint([h as u32, (h >> 32) as u32])
    }
}

impl Hash for Fingerprint {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(u64::from(self.0[0]) | (u64::from(self.0[1]) << 32));
    }
}

/// The table's hasher: a fingerprint is already a uniform hash, so it is
/// used as it is.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is called (see `Fingerprint::hash`); this keeps
        // the hasher correct for any other use.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The slot's flag bit: the string is a served object.
const OBJECT: u32 = 1 << 31;
/// The rest of the slot: objects under the string as a directory. Counts
/// saturate here (two billion objects under one directory).
const COUNT: u32 = OBJECT - 1;

/// The most heap one string (a served path or a directory) takes in a
/// catalog's table, counted against `catalog.max_bytes`: a 12-byte slot and
/// a control byte, in a table at most 7/8 full that doubles when it fills
/// (so just after, 7/16 full: 29.7 bytes a string), and while it doubles
/// the old table is held beside the new one (half as much again: 44.6).
pub const STRING_BYTES: usize = 45;

/// `catalog.max_bytes` when the configuration does not say
/// ([`crate::config::DEFAULT_CATALOG_BYTES`]).
pub const DEFAULT_MAX_BYTES: usize = crate::config::DEFAULT_CATALOG_BYTES as usize;

/// One distribution's catalog. Cloned only by replay, which plans every
/// distribution with the same one.
#[derive(Clone)]
pub struct Catalog {
    slots: HashMap<Fingerprint, u32, BuildHasherDefault<Identity>>,
    keys: RandomState,
    objects: u64,
    directories: u64,
    /// Strings the table may hold: its bound in bytes / [`STRING_BYTES`].
    max_strings: usize,
    /// Paths not added because they would have passed `max_strings`.
    refused: u64,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog::new()
    }
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("objects", &self.objects)
            .field("directories", &self.directories)
            .finish()
    }
}

impl Catalog {
    /// A catalog without a bound (tests, and the tools that plan with a
    /// file given on the command line through [`file::load`], which bounds
    /// it).
    pub fn new() -> Catalog {
        Catalog::within(usize::MAX)
    }

    /// A catalog whose table may take at most `max_bytes`, counted as
    /// [`STRING_BYTES`] a string.
    pub fn within(max_bytes: usize) -> Catalog {
        Catalog {
            slots: HashMap::default(),
            keys: RandomState::new(),
            objects: 0,
            directories: 0,
            max_strings: max_bytes / STRING_BYTES,
            refused: 0,
        }
    }

    /// A catalog of `paths` (exact paths; wildcards are skipped).
    pub fn of<'a>(paths: impl IntoIterator<Item = &'a CfPath>) -> Catalog {
        let mut c = Catalog::new();
        for p in paths {
            if !p.is_wildcard() {
                c.add(p.as_str());
            }
        }
        c
    }

    fn fingerprint(&self, s: &str) -> Fingerprint {
        fingerprint(&self.keys, s)
    }

    /// Adds a served object (an exact path as CloudFront sees it, already
    /// encoded). Returns false when it was already there.
    /// Returns false too when the path's strings would take the table
    /// past its bound: then nothing is added and [`Catalog::refused`]
    /// counts it.
    pub fn add(&mut self, path: &str) -> bool {
        let object = self.fingerprint(path);
        // A path adds at most one string per character (its directories
        // and itself): only near the bound are its new strings counted.
        if self.slots.len().saturating_add(path.len()) > self.max_strings
            && self.slots.len() + self.new_strings(object, path) > self.max_strings
        {
            self.refused += 1;
            return false;
        }
        let slot = self.slots.entry(object).or_insert(0);
        if *slot & OBJECT != 0 {
            return false;
        }
        *slot |= OBJECT;
        self.objects += 1;
        let Catalog {
            slots,
            keys,
            directories,
            ..
        } = self;
        walk(keys, path, |dir| {
            let slot = slots.entry(dir).or_insert(0);
            if *slot & COUNT == 0 {
                *directories += 1;
            }
            if *slot & COUNT != COUNT {
                *slot += 1;
            }
        });
        true
    }

    /// The strings adding `path` (whose fingerprint is `object`) would
    /// put in the table; 0 when it is already there.
    fn new_strings(&self, object: Fingerprint, path: &str) -> usize {
        let own = match self.slots.get(&object) {
            Some(slot) if slot & OBJECT != 0 => return 0,
            Some(_) => 0,
            None => 1,
        };
        let mut dirs = 0;
        walk(&self.keys, path, |dir| {
            // A page that is its own directory is one string.
            if dir != object && !self.slots.contains_key(&dir) {
                dirs += 1;
            }
        });
        own + dirs
    }

    /// Paths refused because the table was at its bound.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Strings (served paths and directories) in the table.
    pub fn strings(&self) -> usize {
        self.slots.len()
    }

    /// What the table's strings count for against its bound:
    /// [`STRING_BYTES`] each.
    pub fn counted_bytes(&self) -> usize {
        self.slots.len() * STRING_BYTES
    }

    /// The bound in bytes ([`Catalog::within`]).
    pub fn max_bytes(&self) -> usize {
        self.max_strings.saturating_mul(STRING_BYTES)
    }

    /// Removes a served object. Returns false when it was not there.
    pub fn remove(&mut self, path: &str) -> bool {
        let object = self.fingerprint(path);
        match self.slots.get_mut(&object) {
            Some(slot) if *slot & OBJECT != 0 => {
                *slot &= !OBJECT;
                if *slot == 0 {
                    self.slots.remove(&object);
                }
            }
            _ => return false,
        }
        self.objects -= 1;
        let Catalog {
            slots,
            keys,
            directories,
            ..
        } = self;
        walk(keys, path, |dir| {
            let Some(slot) = slots.get_mut(&dir) else {
                return;
            };
            // A saturated count stays saturated: it no longer knows how
            // many it stands for.
            if *slot & COUNT != COUNT {
                *slot -= 1;
            }
            if *slot & COUNT == 0 {
                *directories -= 1;
                if *slot == 0 {
                    slots.remove(&dir);
                }
            }
        });
        true
    }

    /// Whether `path` is a served object.
    pub fn contains(&self, path: &str) -> bool {
        self.slots
            .get(&self.fingerprint(path))
            .is_some_and(|s| s & OBJECT != 0)
    }

    /// Served objects whose path starts with `dir` (a directory, ending in
    /// `/`): what `dir*` purges.
    pub fn under(&self, dir: &str) -> u64 {
        debug_assert!(dir.ends_with('/'), "{dir:?} is not a directory");
        self.slots
            .get(&self.fingerprint(dir))
            .map_or(0, |s| u64::from(s & COUNT))
    }

    /// Served objects.
    pub fn objects(&self) -> u64 {
        self.objects
    }

    /// Directories with at least one served object under them.
    pub fn directories(&self) -> u64 {
        self.directories
    }

    /// Bytes the catalog's table takes (slots, control bytes, spare room).
    pub fn memory_bytes(&self) -> usize {
        // The table keeps at most 7/8 of its buckets full, and a bucket is
        // a slot plus one control byte.
        let buckets = (self.slots.capacity() * 8).div_ceil(7).next_power_of_two();
        buckets * (size_of::<(Fingerprint, u32)>() + 1)
    }

    /// Makes room for `additional` more strings (objects and directories),
    /// so that building from a source of known size grows the table once.
    pub fn reserve(&mut self, additional: usize) {
        self.slots.reserve(additional);
    }
}

fn fingerprint(keys: &RandomState, s: &str) -> Fingerprint {
    let mut h = keys.build_hasher();
    h.write(s.as_bytes());
    Fingerprint::new(h.finish())
}

/// Calls `each_dir` with the fingerprint of every directory holding `path`
/// (`/`, `/a/`, `/a/b/` for `/a/b/c.js`; directories end before any query
/// string): one pass of the hasher over the string, cloned at each `/`.
/// The hasher is a stream, so each equals [`fingerprint`] of the prefix.
fn walk(keys: &RandomState, path: &str, mut each_dir: impl FnMut(Fingerprint)) {
    let end = path.find('?').unwrap_or(path.len());
    let mut h = keys.build_hasher();
    let mut from = 0;
    for (i, _) in path[..end].match_indices('/') {
        h.write(&path.as_bytes()[from..=i]);
        from = i + 1;
        each_dir(Fingerprint::new(h.clone().finish()));
    }
}

/// Why a catalog could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: line {line}: {message}")]
    Line {
        path: String,
        line: usize,
        message: String,
    },
    #[error("listing s3://{bucket}/{prefix}: {message}")]
    List {
        bucket: String,
        prefix: String,
        message: String,
    },
    #[error("{path}: {message}")]
    Stored { path: String, message: String },
    #[error("{path}: cannot {action}: {source}")]
    Write {
        path: String,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A call on the table that keeps a learned catalog failed.
    #[error("{path}: {message}")]
    Table { path: String, message: String },
    /// A write of a learned catalog was refused: this replica no longer
    /// holds the lease, or another writer changed the stored set since it
    /// was read (read it again, then write).
    #[error("{path}: the write was refused: {message}")]
    Refused { path: String, message: String },
    /// The source holds more than the catalog's memory bound allows.
    #[error(
        "{source_name}: more served paths and directories than catalog.max_bytes \
         ({max_bytes} bytes, {STRING_BYTES} bytes each) holds; {after}; raise \
         catalog.max_bytes or serve the catalog fewer paths"
    )]
    TooLarge {
        source_name: String,
        max_bytes: usize,
        /// Where it was found out (a line, keys listed).
        after: String,
    },
    #[error("distribution {0} has no [[routing.s3]] route to list")]
    NoRoute(String),
}

#[cfg(test)]
mod tests;
