//! The pending set: per distribution, the paths waiting to be invalidated
//! and the messages waiting on them. It decides two things, both pure
//! functions of its state and the time passed in:
//!
//! - when a distribution's batch is due (quiet window, maximum delay, size,
//!   urgency), and
//! - which messages an accepted invalidation fully covers, and so may be
//!   deleted: every path of the message covered by an invalidation that was
//!   submitted after the message was received (invariant 1). A path that
//!   arrives in a message received after the invalidation was submitted stays
//!   pending, even if the same path is in that invalidation.
//!
//! Cache tags wait like paths, keyed by their lower-case form so that a tag
//! waits once whatever its case (CloudFront compares tags ignoring case),
//! and go out in the spelling first seen. An invalidation covers a tag
//! waiter only when it holds the same tag; a wildcard never covers a tag,
//! and a tag never covers a path.
//!
//! "Submitted" is the local time just before CreateInvalidation was called:
//! CloudFront creates the invalidation after that, so comparing it with the
//! local receive time needs no clock agreement with AWS.
//!
//! It also keeps an estimate of the heap it takes ([`PendingSet::bytes`]),
//! published to a shared [`Meter`] that the source reads to pause receiving
//! once the messages held take `source.max_pending_bytes`.

use std::collections::btree_map;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use crate::decode::PurgeRequest;
use crate::path::CfPath;
use crate::planner::Entry;

pub use crate::clock::Millis;

pub use crate::memory::{
    DISTRIBUTION_BYTES, ENTRY_BYTES, MESSAGE_BYTES, Meter, SPELLING_BYTES, WAITER_BYTES,
};
pub use crate::source::queue::MessageId;

/// When a distribution's batch is due; the `[batching]` settings in
/// milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchRules {
    /// Due once no new path has arrived for this long.
    pub quiet: Millis,
    /// Due once the oldest waiting path has waited this long.
    pub max_delay: Millis,
    /// Due once this many paths wait.
    pub max_batch_paths: usize,
}

impl From<&crate::config::BatchingConfig> for BatchRules {
    fn from(b: &crate::config::BatchingConfig) -> Self {
        BatchRules {
            quiet: b.quiet_seconds.saturating_mul(1000),
            max_delay: b.max_delay_seconds.saturating_mul(1000),
            max_batch_paths: b.max_batch_paths,
        }
    }
}

/// What `add` made of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Added {
    /// New paths now wait on the message.
    Pending { paths: usize },
    /// The message is already pending (a redelivery): nothing changed.
    Duplicate,
    /// The message asks for nothing: delete it.
    Empty,
}

/// A message waiting on one path.
#[derive(Clone, Debug)]
struct Waiter {
    message: MessageId,
    received_at: Millis,
    urgent: bool,
}

#[derive(Clone, Debug)]
struct Message {
    received_at: Millis,
    /// When the queue first handed the message to any consumer (SQS's
    /// `ApproximateFirstReceiveTimestamp`), if earlier than `received_at`:
    /// a process that crashed may have received it and covered it.
    first_received: Millis,
    /// Paths (over all distributions) of the message not yet covered.
    outstanding: usize,
}

#[derive(Clone, Debug, Default)]
struct Distribution {
    /// Keyed by [`CfPath::canonical`].
    entries: BTreeMap<CfPath, Vec<Waiter>>,
    /// The spelling first seen of each waiting tag whose key differs from
    /// it (a tag with upper-case letters).
    spellings: HashMap<CfPath, CfPath>,
    /// When a path last arrived.
    last_added: Millis,
    /// The earliest receive time among the waiters.
    oldest: Option<Millis>,
    /// Waiters from urgent requests.
    urgent: usize,
    /// Not due before this time (set after a deferral or a failure).
    not_before: Millis,
}

impl Distribution {
    fn recompute_oldest(&mut self) {
        self.oldest = self
            .entries
            .values()
            .flat_map(|ws| ws.iter().map(|w| w.received_at))
            .min();
    }

    fn is_due(&self, rules: &BatchRules, now: Millis, flushing: bool) -> bool {
        let Some(oldest) = self.oldest else {
            return false;
        };
        // Flushing, a batch is due at once, but a hold set since (the
        // submitter found no room or budget for it) still counts: without
        // it, a batch that cannot go would be planned again on every turn.
        now >= self.not_before
            && (flushing
                || self.urgent > 0
                || self.entries.len() >= rules.max_batch_paths
                || now.saturating_sub(self.last_added) >= rules.quiet
                || now.saturating_sub(oldest) >= rules.max_delay)
    }

    /// When the batch becomes due if nothing else happens.
    fn due_at(&self, rules: &BatchRules, flushing: bool) -> Option<Millis> {
        // Flushing too: a hold set since the flush began still counts.
        let by_rules = self.window_closes(rules, flushing)?;
        Some(by_rules.max(self.not_before))
    }

    /// When the batch becomes due by the batching rules alone, holds aside.
    fn window_closes(&self, rules: &BatchRules, flushing: bool) -> Option<Millis> {
        let by_time = self.closes_by_time(rules)?;
        if flushing || self.urgent > 0 || self.entries.len() >= rules.max_batch_paths {
            return Some(0);
        }
        Some(by_time)
    }

    /// When the quiet window or the oldest path's delay closes the window.
    fn closes_by_time(&self, rules: &BatchRules) -> Option<Millis> {
        let oldest = self.oldest?;
        Some((self.last_added + rules.quiet).min(oldest + rules.max_delay))
    }
}

/// Everything waiting, for all distributions.
#[derive(Clone, Debug)]
pub struct PendingSet {
    rules: BatchRules,
    distributions: BTreeMap<String, Distribution>,
    messages: HashMap<MessageId, Message>,
    /// Shutting down: everything is due.
    flushing: bool,
    /// The source holds all it may and receives nothing more until some of
    /// it is deleted: every batch is due at once, holds apart, until a
    /// message arrives again (see [`PendingSet::source_full`]).
    full: bool,
    /// The heap estimate, kept up to date by every change.
    bytes: usize,
    /// Where `bytes` is published.
    meter: Option<Meter>,
}

impl PendingSet {
    pub fn new(rules: BatchRules) -> PendingSet {
        PendingSet {
            rules,
            distributions: BTreeMap::new(),
            messages: HashMap::new(),
            flushing: false,
            full: false,
            bytes: 0,
            meter: None,
        }
    }

    /// Publishes [`PendingSet::bytes`] to `meter` after every change.
    pub fn with_meter(mut self, meter: Meter) -> PendingSet {
        meter.set(self.bytes);
        self.meter = Some(meter);
        self
    }

    /// An estimate of the heap the pending paths and messages take, from
    /// the per-item figures above ([`ENTRY_BYTES`], ...) and the lengths of
    /// the paths, ids and aliases.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// [`PendingSet::bytes`] counted afresh from the contents, to check
    /// that the running figure is kept right.
    pub fn recount_bytes(&self) -> usize {
        let messages: usize = self
            .messages
            .keys()
            .map(|id| MESSAGE_BYTES + id.len())
            .sum();
        let distributions: usize = self
            .distributions
            .iter()
            .map(|(alias, d)| {
                DISTRIBUTION_BYTES
                    + alias.len()
                    + d.entries
                        .iter()
                        .map(|(path, ws)| {
                            ENTRY_BYTES + path.as_str().len() + WAITER_BYTES * ws.len()
                        })
                        .sum::<usize>()
                    + d.spellings
                        .values()
                        .map(|s| SPELLING_BYTES + s.as_str().len())
                        .sum::<usize>()
            })
            .sum();
        messages + distributions
    }

    fn publish(&self) {
        if let Some(meter) = &self.meter {
            meter.set(self.bytes);
        }
    }

    /// Adds a decoded message received at `received_at`. A message already
    /// pending is not added again (invariant 5).
    pub fn add(&mut self, id: &str, received_at: Millis, requests: &[PurgeRequest]) -> Added {
        if self.messages.contains_key(id) {
            return Added::Duplicate;
        }
        // Room was made: batching goes by its window again.
        self.full = false;
        let message: MessageId = Arc::from(id);
        let mut outstanding = 0;
        for request in requests {
            let dist = match self.distributions.entry(request.distribution.clone()) {
                btree_map::Entry::Occupied(d) => d.into_mut(),
                btree_map::Entry::Vacant(d) => {
                    self.bytes += DISTRIBUTION_BYTES + request.distribution.len();
                    d.insert(Distribution::default())
                }
            };
            for path in &request.paths {
                let key = path.canonical();
                // A path already waiting (the common case under load) is
                // found without making an owned key.
                let waiters = if dist.entries.contains_key(key.as_str()) {
                    dist.entries
                        .get_mut(key.as_str())
                        .expect("just found in the map")
                } else {
                    self.bytes += ENTRY_BYTES + key.as_str().len();
                    if *key != *path {
                        self.bytes += SPELLING_BYTES + path.as_str().len();
                        dist.spellings
                            .insert(key.clone().into_owned(), path.clone());
                    }
                    // Most paths wait on one message: room for just that
                    // one (a first push would make room for four, 96 bytes
                    // unused per path).
                    dist.entries
                        .entry(key.into_owned())
                        .or_insert_with(|| Vec::with_capacity(1))
                };
                // The same path twice in one message waits once. Waiters
                // are only ever appended (and retained in order), and this
                // message's are appended right here, so if it already
                // waits on the path it is the last waiter: one pointer
                // comparison, not a scan of every message waiting on a
                // popular path.
                if waiters
                    .last()
                    .is_some_and(|w| Arc::ptr_eq(&w.message, &message))
                {
                    continue;
                }
                self.bytes += WAITER_BYTES;
                waiters.push(Waiter {
                    message: message.clone(),
                    received_at,
                    urgent: request.urgent,
                });
                outstanding += 1;
                dist.urgent += usize::from(request.urgent);
                dist.last_added = dist.last_added.max(received_at);
                dist.oldest = Some(dist.oldest.map_or(received_at, |o| o.min(received_at)));
            }
        }
        // A request without paths (decode never makes one) leaves nothing.
        self.drop_empty_distributions();
        if outstanding == 0 {
            self.publish();
            return Added::Empty;
        }
        self.bytes += MESSAGE_BYTES + message.len();
        self.messages.insert(
            message,
            Message {
                received_at,
                first_received: received_at,
                outstanding,
            },
        );
        self.publish();
        Added::Pending { paths: outstanding }
    }

    /// Records when the queue first handed a pending message to any
    /// consumer, for [`PendingSet::apply_recovered`]; a time after this
    /// process's own receive changes nothing.
    pub fn set_first_received(&mut self, id: &str, at: Millis) {
        if let Some(m) = self.messages.get_mut(id) {
            m.first_received = m.first_received.min(at);
        }
    }

    /// Whether a message is pending.
    pub fn contains(&self, id: &str) -> bool {
        self.messages.contains_key(id)
    }

    /// When a pending message was received.
    pub fn received_at(&self, id: &str) -> Option<Millis> {
        self.messages.get(id).map(|m| m.received_at)
    }

    /// The ids of all pending messages.
    pub fn message_ids(&self) -> impl Iterator<Item = &MessageId> {
        self.messages.keys()
    }

    pub fn pending_messages(&self) -> usize {
        self.messages.len()
    }

    /// Distinct paths waiting for a distribution.
    pub fn pending_paths(&self, distribution: &str) -> usize {
        self.distributions
            .get(distribution)
            .map_or(0, |d| d.entries.len())
    }

    /// How long the oldest waiting path of a distribution has waited.
    pub fn oldest_age(&self, distribution: &str, now: Millis) -> Option<Millis> {
        let oldest = self.distributions.get(distribution)?.oldest?;
        Some(now.saturating_sub(oldest))
    }

    /// The distributions whose batch is due at `now`.
    pub fn due(&self, now: Millis) -> Vec<String> {
        self.distributions
            .iter()
            .filter(|(_, d)| d.is_due(&self.rules, now, self.flushing || self.full))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The earliest time a batch becomes due, if anything waits.
    pub fn next_due(&self) -> Option<Millis> {
        self.distributions
            .values()
            .filter_map(|d| d.due_at(&self.rules, self.flushing || self.full))
            .min()
    }

    /// When a distribution's batching window closes (quiet window, oldest
    /// path's delay, size, urgency), holds aside; `None` when nothing
    /// waits.
    pub fn window_closes(&self, distribution: &str) -> Option<Millis> {
        self.distributions
            .get(distribution)?
            .window_closes(&self.rules, self.flushing || self.full)
    }

    /// When `distribution`'s batch is due at `now` by its size alone
    /// (`max_batch_paths` reached; the quiet window, the oldest path's
    /// delay, urgency, a full source and shutdown all not), the time its
    /// window closes by quiet and delay; `None` otherwise. Size makes a
    /// batch due so that it fits one invalidation: a batch that goes as
    /// one covering path (a spent budget under `coalesce`) needs no such
    /// cut.
    pub fn due_by_size_alone(&self, distribution: &str, now: Millis) -> Option<Millis> {
        let d = self.distributions.get(distribution)?;
        let by_time = d.closes_by_time(&self.rules)?;
        if self.flushing || self.full || d.urgent > 0 || now < d.not_before {
            return None;
        }
        (d.entries.len() >= self.rules.max_batch_paths && now < by_time).then_some(by_time)
    }

    /// The source holds as many messages (or bytes) as it may: nothing new
    /// arrives until some are deleted, so waiting for the quiet window
    /// only delays the invalidation that frees them. Every batch is due at
    /// once (a hold for room or budget still counts) until the next message
    /// is added.
    pub fn source_full(&mut self) {
        self.full = true;
    }

    /// From now on every waiting batch is due at once, holds included
    /// (shutdown: submit what can be submitted within the grace period).
    pub fn flush_all(&mut self) {
        self.flushing = true;
        for d in self.distributions.values_mut() {
            d.not_before = 0;
        }
    }

    /// Keeps a distribution's batch from being due before `until`: after a
    /// deferral for lack of capacity, or a failure to submit.
    pub fn hold(&mut self, distribution: &str, until: Millis) {
        if let Some(d) = self.distributions.get_mut(distribution) {
            d.not_before = until;
        }
    }

    /// The waiting entries of a distribution, for the planner; `since` is
    /// the earliest receive time of the messages waiting on the path.
    pub fn batch(&self, distribution: &str) -> Vec<Entry> {
        let Some(d) = self.distributions.get(distribution) else {
            return Vec::new();
        };
        d.entries
            .iter()
            .map(|(key, ws)| {
                let since = ws.iter().map(|w| w.received_at).min().unwrap_or(0);
                let path = d.spellings.get(key).unwrap_or(key);
                Entry::new(path.clone(), since)
            })
            .collect()
    }

    /// The waiting exact paths (as first spelt) that `wildcards` cover, at
    /// most `limit`: what of a wildcard's reach was asked for by name, the
    /// only part of it the edge may be asked for after the purge.
    pub fn exact_under(
        &self,
        distribution: &str,
        wildcards: &[CfPath],
        limit: usize,
    ) -> Vec<CfPath> {
        let Some(d) = self.distributions.get(distribution) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for w in wildcards.iter().filter(|w| w.is_wildcard()) {
            let prefix = w.prefix();
            let under = d
                .entries
                .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
                .take_while(|(k, _)| k.as_str().starts_with(prefix))
                .map(|(k, _)| d.spellings.get(k).unwrap_or(k))
                .filter(|p| !p.is_wildcard() && !p.is_tag());
            for p in under {
                if found.len() >= limit {
                    return found;
                }
                found.push(p.clone());
            }
        }
        found
    }

    /// Records an invalidation accepted by CloudFront for `distribution`,
    /// submitted at `submitted_at`: the waiters it covers that were received
    /// before it are done. Returns the messages now fully covered, which are
    /// no longer pending and may be deleted.
    pub fn apply(
        &mut self,
        distribution: &str,
        paths: &[CfPath],
        submitted_at: Millis,
    ) -> Vec<MessageId> {
        self.apply_timed(distribution, paths, submitted_at)
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    /// As [`PendingSet::apply`], with each covered message's receive time
    /// (for the request-to-invalidation latency).
    pub fn apply_timed(
        &mut self,
        distribution: &str,
        paths: &[CfPath],
        submitted_at: Millis,
    ) -> Vec<(MessageId, Millis)> {
        self.apply_where(distribution, paths, |w, _| w.received_at < submitted_at)
    }

    /// An invalidation that a process before this one created at
    /// `created_at` (CloudFront's time, on this clock) and that this one
    /// found confirmed in the ledger after a crash: it covers the waiters of
    /// messages first handed out (to the crashed process) before it was
    /// created, so their redelivery is not paid for twice. Returns the
    /// messages now fully covered.
    pub fn apply_recovered(
        &mut self,
        distribution: &str,
        paths: &[CfPath],
        created_at: Millis,
    ) -> Vec<MessageId> {
        self.apply_where(distribution, paths, |_, m| {
            m.is_some_and(|m| m.first_received < created_at)
        })
        .into_iter()
        .map(|(id, _)| id)
        .collect()
    }

    /// Covers the waiters on `paths` for which `covers` holds.
    fn apply_where(
        &mut self,
        distribution: &str,
        paths: &[CfPath],
        covers: impl Fn(&Waiter, Option<&Message>) -> bool,
    ) -> Vec<(MessageId, Millis)> {
        let Some(dist) = self.distributions.get_mut(distribution) else {
            return Vec::new();
        };
        let mut covered_paths: Vec<CfPath> = Vec::new();
        for p in paths {
            if p.is_wildcard() {
                let prefix = p.prefix();
                covered_paths.extend(
                    dist.entries
                        .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
                        .take_while(|(k, _)| k.as_str().starts_with(prefix))
                        .map(|(k, _)| k.clone()),
                );
            } else {
                let key = p.canonical();
                if dist.entries.contains_key(key.as_str()) {
                    covered_paths.push(key.into_owned());
                }
            }
        }
        let mut done = Vec::new();
        let mut freed = 0;
        for path in covered_paths {
            let Some(waiters) = dist.entries.get_mut(path.as_str()) else {
                continue; // covered twice by this invalidation
            };
            waiters.retain(|w| {
                if !covers(w, self.messages.get(&w.message)) {
                    return true;
                }
                freed += WAITER_BYTES;
                dist.urgent -= usize::from(w.urgent);
                if let Some(m) = self.messages.get_mut(&w.message) {
                    m.outstanding -= 1;
                    if m.outstanding == 0 {
                        done.push(w.message.clone());
                    }
                }
                false
            });
            if waiters.is_empty() {
                dist.entries.remove(path.as_str());
                freed += ENTRY_BYTES + path.as_str().len();
                if let Some(spelling) = dist.spellings.remove(path.as_str()) {
                    freed += SPELLING_BYTES + spelling.as_str().len();
                }
            }
        }
        dist.recompute_oldest();
        let done = done
            .into_iter()
            .filter_map(|id| {
                let m = self.messages.remove(&id)?;
                freed += MESSAGE_BYTES + id.len();
                Some((id, m.received_at))
            })
            .collect();
        if dist.entries.is_empty() {
            self.distributions.remove(distribution);
            freed += DISTRIBUTION_BYTES + distribution.len();
        }
        self.bytes -= freed;
        self.publish();
        done
    }

    /// Drops every message and path at once (shutdown lets them all go),
    /// returning the messages' ids. [`PendingSet::remove`] looks through
    /// every path for one message; done message by message, letting go of
    /// 100,000 would take minutes.
    pub fn take_all(&mut self) -> Vec<MessageId> {
        let ids = self.messages.drain().map(|(id, _)| id).collect();
        self.distributions.clear();
        self.bytes = 0;
        self.publish();
        ids
    }

    /// Drops a message and every path only it waits on: it was rejected
    /// after it was added. Returns whether it was pending.
    pub fn remove(&mut self, id: &str) -> bool {
        if self.messages.remove(id).is_none() {
            return false;
        }
        let mut freed = MESSAGE_BYTES + id.len();
        self.distributions.retain(|alias, dist| {
            let mut touched = false;
            dist.entries.retain(|path, waiters| {
                waiters.retain(|w| {
                    let keep = &*w.message != id;
                    if !keep {
                        touched = true;
                        freed += WAITER_BYTES;
                        dist.urgent -= usize::from(w.urgent);
                    }
                    keep
                });
                if waiters.is_empty() {
                    freed += ENTRY_BYTES + path.as_str().len();
                    if let Some(spelling) = dist.spellings.remove(path.as_str()) {
                        freed += SPELLING_BYTES + spelling.as_str().len();
                    }
                }
                !waiters.is_empty()
            });
            if touched {
                dist.recompute_oldest();
            }
            if dist.entries.is_empty() {
                freed += DISTRIBUTION_BYTES + alias.len();
            }
            !dist.entries.is_empty()
        });
        self.bytes -= freed;
        self.publish();
        true
    }

    /// Drops distributions left without entries.
    fn drop_empty_distributions(&mut self) {
        let mut freed = 0;
        self.distributions.retain(|alias, d| {
            if d.entries.is_empty() {
                freed += DISTRIBUTION_BYTES + alias.len();
            }
            !d.entries.is_empty()
        });
        self.bytes -= freed;
    }

    /// The messages waiting on any of `paths` in a distribution (to find
    /// which messages asked for a path CloudFront refused).
    pub fn messages_waiting_on(&self, distribution: &str, paths: &[CfPath]) -> Vec<MessageId> {
        let Some(d) = self.distributions.get(distribution) else {
            return Vec::new();
        };
        let mut ids: Vec<MessageId> = paths
            .iter()
            .filter_map(|p| d.entries.get(p.canonical().as_str()))
            .flat_map(|ws| ws.iter().map(|w| w.message.clone()))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The distributions with something pending.
    pub fn distributions(&self) -> impl Iterator<Item = &str> {
        self.distributions.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests;
