//! What things cost in memory: the estimates by which the pending set and
//! the source count the heap they hold against `max_pending_bytes`, and the
//! [`Meter`] through which the pending set publishes its figure to the
//! source, which stops receiving while the total is over the bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Estimated heap bytes of one pending message's record (its id apart):
/// the map slot, the shared id's counts and the allocator's overhead.
pub const MESSAGE_BYTES: usize = 128;
/// ... of one distribution's record (its alias apart).
pub const DISTRIBUTION_BYTES: usize = 256;
/// ... of one waiting path (the path's own bytes apart): the tree's slot,
/// the path's allocation and its waiter list's first allocation.
pub const ENTRY_BYTES: usize = 256;
/// ... of one message waiting on one path (its share of a waiter list that
/// may be up to twice as large as needed).
pub const WAITER_BYTES: usize = 64;
/// ... of the first spelling of a tag kept beside its lower-case key (the
/// spelling's own bytes apart).
pub const SPELLING_BYTES: usize = 64;

/// Where a [`PendingSet`] publishes its [`PendingSet::bytes`]; a clone
/// reads the same figure.
#[derive(Clone, Debug, Default)]
pub struct Meter(Arc<AtomicUsize>);

impl Meter {
    /// The last figure published.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    pub(crate) fn set(&self, bytes: usize) {
        self.0.store(bytes, Ordering::Relaxed);
    }

    /// Sets the figure as a pending set would (tests of the source).
    #[cfg(test)]
    pub(crate) fn set_for_test(&self, bytes: usize) {
        self.set(bytes);
    }
}
