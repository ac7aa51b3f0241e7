//! The ledger's state (one small versioned JSON document) and the
//! [`LedgerStore`] trait that keeps it durable. The file backend is in
//! `file.rs`; [`MemoryStore`] is the test double. A shared backend (a
//! DynamoDB item with conditional updates, for several replicas) implements
//! the same trait without touching the budget logic or the pipeline.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

use super::month::Month;
use super::price::PriceState;

/// The version this build reads and writes; any other is refused.
pub const LEDGER_VERSION: u64 = 1;

/// Closed months kept in [`LedgerState::history`].
pub const HISTORY_MONTHS: usize = 12;

/// Everything the ledger keeps, as written to the store.
///
/// `spent` already includes the paths of the reservations counted in
/// `month` (reserved = spent until released), so `spent + external` never
/// under-counts whatever the fate of the open calls.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerState {
    /// Always [`LEDGER_VERSION`] when written by this build.
    pub version: u64,
    /// The month the figures are for.
    pub month: Month,
    /// Paths cfpurge spent or holds reserved this month.
    pub spent: u64,
    /// Paths other tools spent on the configured distributions this month.
    pub external: u64,
    /// Reservations whose CreateInvalidation outcome is not settled yet, by
    /// CallerReference.
    pub reservations: BTreeMap<String, Reservation>,
    /// Invalidation ids of other tools already counted in `external` this
    /// month, so that each is counted once.
    pub external_seen: BTreeSet<String>,
    /// The last [`HISTORY_MONTHS`] closed months, oldest first.
    pub history: Vec<MonthRecord>,
    /// The price controller's memory under even pacing, so that a restart
    /// or a new leader resumes the price instead of starting over. Absent
    /// in ledgers written before it existed, and until the first save
    /// after a batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<PriceState>,
}

/// Paths set aside for one CreateInvalidation call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reservation {
    /// The distribution's alias.
    pub distribution: String,
    /// Paths in the batch (each billed as one).
    pub paths: u64,
    /// When it was made, Unix seconds; decides the month it counts in.
    pub at: u64,
}

/// One closed month.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonthRecord {
    /// The month.
    pub month: Month,
    /// cfpurge's paths, reservations open at its end included.
    pub spent: u64,
    /// Other tools' paths.
    pub external: u64,
}

impl LedgerState {
    /// An empty ledger for `month`.
    pub fn new(month: Month) -> LedgerState {
        LedgerState {
            version: LEDGER_VERSION,
            month,
            spent: 0,
            external: 0,
            reservations: BTreeMap::new(),
            external_seen: BTreeSet::new(),
            history: Vec::new(),
            price: None,
        }
    }
}

/// Why the ledger could not be read or written. Never a reason to start
/// from zero: that would under-count.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// A file-system call failed (permission denied, disk full, ...).
    #[error("ledger {}: cannot {action}: {source}", path.display())]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// What was being done, e.g. `write the ledger`.
        action: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The ledger exists but cannot be understood.
    #[error(
        "ledger {} is corrupt: {detail}; repair it or move it aside \
         (cfpurge never resets it by itself, that would under-count spending)",
        path.display()
    )]
    Corrupt {
        /// The ledger file.
        path: PathBuf,
        /// What is wrong, with the JSON position when known.
        detail: String,
    },
    /// The ledger was written by a build with another format.
    #[error(
        "ledger {} has version {found}; this cfpurge reads version {LEDGER_VERSION} only",
        path.display()
    )]
    Version {
        /// The ledger file.
        path: PathBuf,
        /// The version found.
        found: u64,
    },
    /// The ledger is for a month the clock has not reached: it was saved
    /// while the clock was ahead (stepped over a month's end, then put
    /// back). Counting from it would start the current month at zero and
    /// ignore what it spent, and it would not roll over before its own
    /// month came; so it is refused until the clock gets there or an
    /// operator repairs it.
    #[error(
        "ledger {location} is for {month}, which the clock ({now}) has not reached: it was saved \
         while the clock was ahead, and using it would count {now}'s spending from zero; check \
         the clock, and if it is right repair the ledger: set \"month\" to \"{now}\", add the \
         \"spent\" and \"external\" of its history entry for {now} (if there is one) to the \
         top-level ones and delete that entry (cfpurge never rewrites it by itself)"
    )]
    AheadOfClock {
        /// The ledger file, or the store's name.
        location: String,
        /// The ledger's month.
        month: Month,
        /// The clock's month.
        now: Month,
    },
    /// A backend other than the file failed (the test store on cue, a
    /// shared store later).
    #[error("ledger store failed: {0}")]
    Store(String),
    /// The shared store refused a conditional write: this replica lost the
    /// lease, or another writer changed the ledger since it was read. The
    /// ledger must be read again before it is written.
    #[error("ledger write refused: {0}")]
    Refused(String),
    /// `reserve` with a CallerReference that is open with other figures.
    #[error(
        "reservation {reference} is already open for {distribution} with {paths} paths; \
         a CallerReference names one batch"
    )]
    ReferenceInUse {
        /// The CallerReference.
        reference: String,
        /// The distribution of the open reservation.
        distribution: String,
        /// The paths of the open reservation.
        paths: u64,
    },
}

/// Where the ledger lives. Implementations must make `save` durable before
/// it returns `Ok` (a crash right after must find the saved state), and
/// atomic (a crash during it finds the previous state or the new one, never
/// a mix). `load` returns `Ok(None)` only when no ledger was ever saved; a
/// ledger that exists and cannot be read is an error.
pub trait LedgerStore {
    /// The last saved state, or `None` if there is none yet.
    fn load(&self) -> Result<Option<LedgerState>, LedgerError>;
    /// Replaces the saved state with `state`, durably.
    fn save(&self, state: &LedgerState) -> Result<(), LedgerError>;
    /// Where the ledger lives, for messages (the file's path).
    fn location(&self) -> String {
        "(in memory)".to_owned()
    }
}

/// An in-memory [`LedgerStore`] for tests: clones share one state, so a
/// test keeps a clone to inspect it or to reopen a `Budget` after a
/// simulated crash. It can fail saves on cue to simulate a crash or a full
/// disk; a failed save leaves the stored state as it was.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<MemoryInner>>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    state: Option<LedgerState>,
    fail_saves: usize,
    saves: usize,
    /// The next save blocks its caller this long first, as a DynamoDB
    /// call that hangs does.
    hang_next_save: Option<std::time::Duration>,
}

impl MemoryStore {
    /// An empty store: `load` gives `None`.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// A store holding `state`, as if saved earlier.
    pub fn with_state(state: LedgerState) -> MemoryStore {
        let store = MemoryStore::default();
        store.lock().state = Some(state);
        store
    }

    fn lock(&self) -> MutexGuard<'_, MemoryInner> {
        // A panicking test thread cannot leave the plain data half-updated.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next save fails and stores nothing.
    pub fn fail_next_save(&self) {
        self.fail_saves(1);
    }

    /// The next `count` saves fail and store nothing.
    pub fn fail_saves(&self, count: usize) {
        self.lock().fail_saves = count;
    }

    /// The next save blocks its caller for `d` before it is made.
    pub fn hang_next_save(&self, d: std::time::Duration) {
        self.lock().hang_next_save = Some(d);
    }

    /// The stored state, as a reopened process would load it.
    pub fn state(&self) -> Option<LedgerState> {
        self.lock().state.clone()
    }

    /// Saves that succeeded so far.
    pub fn saves(&self) -> usize {
        self.lock().saves
    }
}

impl LedgerStore for MemoryStore {
    fn load(&self) -> Result<Option<LedgerState>, LedgerError> {
        Ok(self.lock().state.clone())
    }

    fn save(&self, state: &LedgerState) -> Result<(), LedgerError> {
        let hang = self.lock().hang_next_save.take();
        if let Some(d) = hang {
            std::thread::sleep(d);
        }
        let mut inner = self.lock();
        if inner.fail_saves > 0 {
            inner.fail_saves -= 1;
            return Err(LedgerError::Store("simulated save failure".to_owned()));
        }
        inner.state = Some(state.clone());
        inner.saves += 1;
        Ok(())
    }
}

impl fmt::Display for MonthRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} spent, {} external",
            self.month, self.spent, self.external
        )
    }
}
