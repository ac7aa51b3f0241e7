//! An in-memory queue with the SQS semantics the daemon depends on: the
//! queue behind `source.kind = "local"` (fed by `POST /v1/purge`) and the
//! fake that the pipeline's tests run against.
//!
//! What it models: message ids; a new receipt handle on every receive;
//! a visibility timeout after which an undeleted message is received again
//! with its receive count increased; visibility changes, including the
//! 12-hour cap counted from the receive; long polls that wake when a message
//! is sent or becomes visible; batch calls with per-entry failures; a
//! dead-letter list for rejected messages; approximate depth.
//!
//! Where it is stricter than SQS, on purpose: only the latest receipt handle
//! of a message is accepted. SQS documents that an older handle "may" work,
//! and moto 5.2.5 accepts any handle the message ever had (it even deletes
//! the message with a stale one); here a stale handle fails with
//! `ReceiptHandleIsInvalid`, so a test catches a caller that acts on an old
//! delivery. Deleting again with the handle that already deleted a message
//! succeeds, as in SQS.
//!
//! What it leaves out: delays, FIFO queues, redrive by receive count (a
//! message that is never deleted keeps coming back; reject it instead), the
//! 120,000 in-flight limit, message retention, and the lag of SQS's
//! approximate counts (depth here is exact).
//!
//! What it adds for tests: a time per call ([`LocalQueue::set_call_latency`]),
//! so that a test on paused time sees how many calls a piece of work
//! makes one after the other (SQS answers in milliseconds; a thousand calls
//! in a row take seconds).
//!
//! What it adds: a bound ([`LocalQueue::bounded`]). SQS stores a backlog on
//! disk; this queue holds it in memory, so with `source.kind = "local"` it
//! refuses a send ([`QueueError::Full`], which `POST /v1/purge` answers
//! 503) once it holds `max_pending_messages` messages or
//! `max_pending_bytes` bytes of bodies and attributes, visible or in
//! flight.
//!
//! Time is `tokio::time::Instant`, so tests with paused time
//! (`#[tokio::test(start_paused = true)]`) drive visibility and long polls
//! without sleeping; `first_received_at` follows the same clock.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::queue::{
    Failed, Handle, MAX_VISIBILITY, Message, Queue, QueueDepth, QueueError, check_body,
    check_receive, reject_attributes, visibility_seconds,
};

/// How many rejected messages [`LocalQueue::dead_letters`] keeps, oldest
/// dropped first: a long local run fed bad input must not grow without end.
pub const DEAD_LETTER_CAPACITY: usize = 1_000;

/// How many receipts of deleted messages are remembered, so that deleting
/// again with the same handle succeeds as in SQS.
const DELETED_RECEIPTS_REMEMBERED: usize = 10_000;

/// Error code for a receipt handle that is not the message's latest, or
/// names no message (SQS's code for a malformed or unknown one).
pub const RECEIPT_HANDLE_IS_INVALID: &str = "ReceiptHandleIsInvalid";

/// Error code for a visibility change past the 12-hour cap.
pub const INVALID_PARAMETER_VALUE: &str = "InvalidParameterValue";

/// A rejected message, as it would sit in a dead-letter queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// Id of the rejected message in the main queue.
    pub original_id: String,
    /// The body, unchanged.
    pub body: String,
    /// The attributes it was forwarded with (reason and detail included).
    pub attributes: BTreeMap<String, String>,
    /// The reason code given to [`Queue::reject`].
    pub reason: String,
    /// The detail, cut to one line as the attribute carries it.
    pub detail: String,
}

/// The in-memory queue. Clones share the same queue.
#[derive(Clone, Debug)]
pub struct LocalQueue {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    /// Woken when a message may have become receivable (sent, released), so
    /// that long polls return without waiting out their time.
    changed: Notify,
    /// Visibility given by a receive.
    visibility_timeout: Duration,
    /// Whether rejects go to the dead-letter list (a configured dead-letter
    /// queue) or are left in place (redrive policy).
    dead_letter_queue: bool,
    /// A point of the tokio clock and the wall-clock time it stood for, so
    /// that `first_received_at` moves with paused test time.
    epoch: (Instant, SystemTime),
    /// Most messages held before a send is refused.
    max_messages: usize,
    /// Most bytes of bodies and attributes held before a send is refused.
    max_bytes: usize,
    /// How long each call takes, in microseconds (0: none).
    call_latency_micros: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    /// Messages by sequence number (send order).
    messages: HashMap<u64, Stored>,
    /// (visible from, sequence) of every message: receive takes from the
    /// front, and the first entry says when the next one becomes visible.
    schedule: BTreeSet<(Instant, u64)>,
    /// Latest receipt handle of each received message.
    by_receipt: HashMap<String, u64>,
    /// Receipts that deleted a message, newest last, so that deleting again
    /// with one succeeds as in SQS; bounded by
    /// `DELETED_RECEIPTS_REMEMBERED`.
    deleted: VecDeque<String>,
    /// The same receipts, for lookup.
    deleted_set: HashSet<String>,
    /// Rejected messages, oldest first, bounded by [`DEAD_LETTER_CAPACITY`].
    dead_letters: VecDeque<DeadLetter>,
    /// Sequence number of the next message sent: receive order, and the
    /// tail of its id.
    next_seq: u64,
    /// Counter making every receipt handle unique.
    next_receipt: u64,
    /// Bytes of the messages' bodies and attributes.
    bytes: usize,
}

#[derive(Debug)]
struct Stored {
    /// `Message::id`, fixed at send.
    id: String,
    /// The body as sent.
    body: String,
    /// Message attributes as sent (copied by requeue).
    attributes: BTreeMap<String, String>,
    /// Receives so far.
    receive_count: u32,
    /// Wall-clock time of the first receive.
    first_received_at: Option<SystemTime>,
    /// When a receive may take it (now or past: visible); mirrored in
    /// `State::schedule`.
    visible_at: Instant,
    /// Latest receipt handle and when that receive happened (the 12-hour
    /// cap counts from it).
    receipt: Option<(String, Instant)>,
}

impl LocalQueue {
    /// The exact depth now, without waiting: what [`Queue::depth`] answers,
    /// for readers that cannot await (the status board).
    pub fn depth_now(&self) -> QueueDepth {
        let now = Instant::now();
        let state = self.state();
        let total = state.schedule.len() as u64;
        let visible = state
            .schedule
            .iter()
            .take_while(|&&(at, _)| at <= now)
            .count() as u64;
        QueueDepth {
            visible,
            in_flight: total - visible,
            delayed: 0,
        }
    }

    /// An empty queue whose receives hide a message for
    /// `visibility_timeout`, with rejects kept in [`Self::dead_letters`]
    /// (as with a dead-letter queue configured).
    pub fn new(visibility_timeout: Duration) -> Self {
        Self::build(visibility_timeout, true, usize::MAX, usize::MAX)
    }

    /// Like [`Self::new`], refusing sends ([`QueueError::Full`]) while it
    /// holds `max_messages` messages or `max_bytes` bytes of bodies and
    /// attributes. A re-queue, which replaces a message, is never refused.
    pub fn bounded(visibility_timeout: Duration, max_messages: usize, max_bytes: usize) -> Self {
        Self::build(visibility_timeout, true, max_messages, max_bytes)
    }

    /// Like [`Self::new`] but without a dead-letter queue: [`Queue::reject`]
    /// leaves the message in place and returns `Ok(false)`.
    pub fn without_dead_letter_queue(visibility_timeout: Duration) -> Self {
        Self::build(visibility_timeout, false, usize::MAX, usize::MAX)
    }

    fn build(
        visibility_timeout: Duration,
        dead_letter_queue: bool,
        max_messages: usize,
        max_bytes: usize,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                changed: Notify::new(),
                visibility_timeout: visibility_timeout.min(MAX_VISIBILITY),
                dead_letter_queue,
                epoch: (Instant::now(), SystemTime::now()),
                max_messages,
                max_bytes,
                call_latency_micros: AtomicU64::new(0),
            }),
        }
    }

    /// Makes every call take `latency` before it acts: a receive, a send,
    /// and each ten entries of a visibility change or a delete (SQS's batch
    /// calls take ten; this queue takes any number in one call, as if made
    /// one after the other).
    pub fn set_call_latency(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.inner
            .call_latency_micros
            .store(micros, Ordering::Relaxed);
    }

    /// Waits out the time of the calls `entries` take.
    async fn take_time(&self, entries: usize) {
        let micros = self.inner.call_latency_micros.load(Ordering::Relaxed);
        if micros > 0 && entries > 0 {
            let calls = entries.div_ceil(super::queue::MAX_BATCH) as u64;
            tokio::time::sleep(Duration::from_micros(micros.saturating_mul(calls))).await;
        }
    }

    /// The rejected messages, oldest first (at most
    /// [`DEAD_LETTER_CAPACITY`]).
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.state().dead_letters.iter().cloned().collect()
    }

    /// Messages in the queue, visible or in flight.
    pub fn len(&self) -> usize {
        self.state().messages.len()
    }

    /// True when no message is in the queue.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sends a message with attributes; what [`Queue::send`] and
    /// [`Queue::requeue`] do.
    pub fn send_with_attributes(
        &self,
        body: &str,
        attributes: BTreeMap<String, String>,
    ) -> Result<String, QueueError> {
        self.store(body, attributes, true)
    }

    /// Bytes of the bodies and attributes held, visible or in flight.
    pub fn bytes(&self) -> usize {
        self.state().bytes
    }

    fn store(
        &self,
        body: &str,
        attributes: BTreeMap<String, String>,
        bounded: bool,
    ) -> Result<String, QueueError> {
        check_body(body)?;
        let size = stored_size(body, &attributes);
        let now = Instant::now();
        let id = {
            let mut state = self.state();
            if bounded && state.messages.len() >= self.inner.max_messages {
                return Err(QueueError::Full(format!(
                    "{} messages wait (source.max_pending_messages)",
                    state.messages.len()
                )));
            }
            if bounded && state.bytes.saturating_add(size) > self.inner.max_bytes {
                return Err(QueueError::Full(format!(
                    "{} bytes wait and this message has {size} (source.max_pending_bytes = {})",
                    state.bytes, self.inner.max_bytes
                )));
            }
            state.bytes += size;
            let seq = state.next_seq;
            state.next_seq += 1;
            let id = message_id(seq);
            state.messages.insert(
                seq,
                Stored {
                    id: id.clone(),
                    body: body.to_owned(),
                    attributes,
                    receive_count: 0,
                    first_received_at: None,
                    visible_at: now,
                    receipt: None,
                },
            );
            state.schedule.insert((now, seq));
            id
        };
        self.inner.changed.notify_waiters();
        Ok(id)
    }

    /// The queue's state. A panic while the lock was held cannot leave it
    /// half-updated in a way later calls would trip on (every update is a
    /// few map operations), so a poisoned lock is used as it is.
    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn wall_clock(&self, at: Instant) -> SystemTime {
        let (instant, system) = self.inner.epoch;
        system + at.saturating_duration_since(instant)
    }

    /// Takes up to `max` visible messages, giving each a new receipt.
    fn take_visible(&self, state: &mut State, now: Instant, max: usize) -> Vec<Message> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(&(visible_at, seq)) = state.schedule.first() else {
                break;
            };
            if visible_at > now {
                break;
            }
            state.schedule.remove(&(visible_at, seq));
            let receipt = format!(
                "local-{seq}-{}-{:016x}",
                state.next_receipt,
                rand::random::<u64>()
            );
            state.next_receipt += 1;
            let Some(stored) = state.messages.get_mut(&seq) else {
                continue;
            };
            let old = stored.receipt.replace((receipt.clone(), now));
            stored.receive_count = stored.receive_count.saturating_add(1);
            let first = *stored
                .first_received_at
                .get_or_insert_with(|| self.wall_clock(now));
            stored.visible_at = now + self.inner.visibility_timeout;
            let message = Message {
                id: stored.id.clone(),
                receipt: receipt.clone(),
                body: stored.body.clone(),
                receive_count: stored.receive_count,
                first_received_at: Some(first),
                attributes: stored.attributes.clone(),
            };
            let visible_at = stored.visible_at;
            if let Some((old, _)) = old {
                state.by_receipt.remove(&old);
            }
            state.by_receipt.insert(receipt, seq);
            state.schedule.insert((visible_at, seq));
            out.push(message);
        }
        out
    }

    fn delete_one(&self, state: &mut State, handle: &Handle) -> Option<Failed> {
        if state.deleted_set.contains(&handle.receipt) {
            return None;
        }
        let Some(seq) = state.by_receipt.remove(&handle.receipt) else {
            return Some(invalid_receipt(handle));
        };
        if let Some(stored) = state.messages.remove(&seq) {
            state.schedule.remove(&(stored.visible_at, seq));
            state.bytes -= stored_size(&stored.body, &stored.attributes);
        }
        state.deleted_set.insert(handle.receipt.clone());
        state.deleted.push_back(handle.receipt.clone());
        if state.deleted.len() > DELETED_RECEIPTS_REMEMBERED
            && let Some(oldest) = state.deleted.pop_front()
        {
            state.deleted_set.remove(&oldest);
        }
        None
    }

    fn delete_handles(&self, handles: &[Handle]) -> Vec<Failed> {
        let mut state = self.state();
        handles
            .iter()
            .filter_map(|handle| self.delete_one(&mut state, handle))
            .collect()
    }
}

impl Queue for LocalQueue {
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Message>, QueueError> {
        check_receive(max, wait)?;
        self.take_time(1).await;
        // SQS counts the wait in whole seconds.
        let deadline = Instant::now() + Duration::from_secs(wait.as_secs());
        loop {
            // Registered before looking, so that a send between the look and
            // the wait still wakes this poll.
            let mut changed = pin!(self.inner.changed.notified());
            changed.as_mut().enable();
            let now = Instant::now();
            let next_visible = {
                let mut state = self.state();
                let messages = self.take_visible(&mut state, now, max);
                if !messages.is_empty() {
                    return Ok(messages);
                }
                state.schedule.first().map(|&(at, _)| at)
            };
            if now >= deadline {
                return Ok(Vec::new());
            }
            let wake = next_visible.map_or(deadline, |at| at.min(deadline));
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    async fn set_visibility(
        &self,
        handles: &[Handle],
        timeout: Duration,
    ) -> Result<Vec<Failed>, QueueError> {
        let seconds = Duration::from_secs(u64::from(visibility_seconds(timeout)?));
        self.take_time(handles.len()).await;
        let now = Instant::now();
        let mut failed = Vec::new();
        {
            let mut state = self.state();
            for handle in handles {
                let Some(&seq) = state.by_receipt.get(&handle.receipt) else {
                    failed.push(invalid_receipt(handle));
                    continue;
                };
                let Some(stored) = state.messages.get_mut(&seq) else {
                    failed.push(invalid_receipt(handle));
                    continue;
                };
                // Releasing (zero) is always allowed; an extension may not
                // reach past 12 hours after the receive.
                let received_at = stored.receipt.as_ref().map_or(now, |(_, at)| *at);
                if !seconds.is_zero() && now + seconds > received_at + MAX_VISIBILITY {
                    failed.push(Failed {
                        id: handle.id.clone(),
                        code: INVALID_PARAMETER_VALUE.into(),
                        sender_fault: true,
                    });
                    continue;
                }
                let old = stored.visible_at;
                stored.visible_at = now + seconds;
                let new = stored.visible_at;
                state.schedule.remove(&(old, seq));
                state.schedule.insert((new, seq));
            }
        }
        // A message may now be visible sooner than a waiting poll planned.
        self.inner.changed.notify_waiters();
        Ok(failed)
    }

    async fn delete(&self, handles: &[Handle]) -> Result<Vec<Failed>, QueueError> {
        self.take_time(handles.len()).await;
        Ok(self.delete_handles(handles))
    }

    async fn reject(
        &self,
        message: &Message,
        reason: &str,
        detail: &str,
    ) -> Result<bool, QueueError> {
        if !self.inner.dead_letter_queue {
            return Ok(false);
        }
        let attributes: BTreeMap<String, String> = reject_attributes(message, reason, detail)
            .into_iter()
            .collect();
        let detail = attributes
            .get(super::queue::REJECT_DETAIL_ATTRIBUTE)
            .cloned()
            .unwrap_or_default();
        {
            // Forwarded before the delete, as the SQS adapter does, so a
            // stale receipt leaves a copy in both places.
            let mut state = self.state();
            state.dead_letters.push_back(DeadLetter {
                original_id: message.id.clone(),
                body: message.body.clone(),
                attributes,
                reason: reason.to_owned(),
                detail,
            });
            if state.dead_letters.len() > DEAD_LETTER_CAPACITY {
                state.dead_letters.pop_front();
            }
        }
        match self.delete_handles(&[message.handle()]).pop() {
            None => Ok(true),
            Some(failed) => Err(failed.into_error()),
        }
    }

    async fn requeue(&self, message: &Message) -> Result<(), QueueError> {
        // A copy replacing the original: allowed past the bound, which it
        // leaves as it was once the original is deleted.
        self.store(&message.body, message.attributes.clone(), false)?;
        match self.delete_handles(&[message.handle()]).pop() {
            None => Ok(()),
            Some(failed) => Err(failed.into_error()),
        }
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        Ok(self.depth_now())
    }

    async fn send(&self, body: &str) -> Result<String, QueueError> {
        self.send_with_attributes(body, BTreeMap::new())
    }
}

/// What a message counts against `max_bytes`: body and attributes.
fn stored_size(body: &str, attributes: &BTreeMap<String, String>) -> usize {
    body.len()
        + attributes
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

fn invalid_receipt(handle: &Handle) -> Failed {
    Failed {
        id: handle.id.clone(),
        code: RECEIPT_HANDLE_IS_INVALID.into(),
        sender_fault: true,
    }
}

/// A message id shaped like SQS's (a version-4 UUID); the sequence number in
/// its last group keeps ids unique within the queue.
fn message_id(seq: u64) -> String {
    let high: u64 = rand::random();
    let low: u16 = rand::random();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        high >> 32,
        (high >> 16) & 0xffff,
        high & 0xfff,
        0x8000 | (low & 0x3fff),
        seq & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const VISIBILITY: Duration = Duration::from_secs(30);

    fn handles(messages: &[Message]) -> Vec<Handle> {
        messages.iter().map(Message::handle).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn send_then_receive_gives_the_body_and_a_first_delivery() {
        let q = LocalQueue::new(VISIBILITY);
        let id = q.send("/index.html").await.unwrap();
        let got = q.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].id, id);
        assert_eq!(got[0].body, "/index.html");
        assert_eq!(got[0].receive_count, 1);
        assert!(got[0].first_received_at.is_some());
        assert!(got[0].attributes.is_empty());
        // In flight now: nothing more to receive.
        assert!(q.receive(10, Duration::ZERO).await.unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn ids_and_receipts_are_unique() {
        let q = LocalQueue::new(VISIBILITY);
        for i in 0..50 {
            q.send(&format!("/{i}")).await.unwrap();
        }
        let mut ids = HashSet::new();
        let mut receipts = HashSet::new();
        loop {
            let got = q.receive(10, Duration::ZERO).await.unwrap();
            if got.is_empty() {
                break;
            }
            for m in got {
                assert!(ids.insert(m.id));
                assert!(receipts.insert(m.receipt));
            }
        }
        assert_eq!(ids.len(), 50);
    }

    #[tokio::test(start_paused = true)]
    async fn receive_returns_at_most_max_in_send_order() {
        let q = LocalQueue::new(VISIBILITY);
        for i in 0..13 {
            q.send(&format!("/{i}")).await.unwrap();
        }
        let first = q.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(first.len(), 10);
        assert_eq!(first[0].body, "/0");
        assert_eq!(first[9].body, "/9");
        let rest = q.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(rest.len(), 3);
        assert!(matches!(
            q.receive(0, Duration::ZERO).await,
            Err(QueueError::Invalid(_))
        ));
        assert!(matches!(
            q.receive(11, Duration::ZERO).await,
            Err(QueueError::Invalid(_))
        ));
        assert!(matches!(
            q.receive(1, Duration::from_secs(21)).await,
            Err(QueueError::Invalid(_))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn an_undeleted_message_comes_back_after_its_visibility_with_a_new_receipt() {
        let q = LocalQueue::new(VISIBILITY);
        let id = q.send("/a").await.unwrap();
        let first = q.receive(1, Duration::ZERO).await.unwrap().remove(0);
        tokio::time::advance(VISIBILITY - Duration::from_millis(1)).await;
        assert!(q.receive(1, Duration::ZERO).await.unwrap().is_empty());
        tokio::time::advance(Duration::from_millis(1)).await;
        let second = q.receive(1, Duration::ZERO).await.unwrap().remove(0);
        assert_eq!(second.id, id);
        assert_eq!(second.receive_count, 2);
        assert_ne!(second.receipt, first.receipt);
        assert_eq!(second.first_received_at, first.first_received_at);
        tokio::time::advance(VISIBILITY).await;
        let third = q.receive(1, Duration::ZERO).await.unwrap().remove(0);
        assert_eq!(third.receive_count, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn first_received_at_follows_the_tokio_clock() {
        let q = LocalQueue::new(VISIBILITY);
        q.send("/a").await.unwrap();
        let before = q.wall_clock(Instant::now());
        tokio::time::advance(Duration::from_secs(3600)).await;
        let m = q.receive(1, Duration::ZERO).await.unwrap().remove(0);
        let at = m.first_received_at.unwrap();
        assert_eq!(
            at.duration_since(before).unwrap(),
            Duration::from_secs(3600)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn delete_removes_and_a_stale_receipt_is_refused() {
        let q = LocalQueue::new(VISIBILITY);
        q.send("/a").await.unwrap();
        let first = q.receive(1, Duration::ZERO).await.unwrap().remove(0);
        tokio::time::advance(VISIBILITY).await;
        let second = q.receive(1, Duration::ZERO).await.unwrap().remove(0);

        // The first delivery's handle is stale: refused, message kept.
        let failed = q.delete(&[first.handle()]).await.unwrap();
        assert_eq!(
            failed,
            vec![Failed {
                id: first.id.clone(),
                code: RECEIPT_HANDLE_IS_INVALID.into(),
                sender_fault: true,
            }]
        );
        assert_eq!(q.len(), 1);
        let failed = q
            .set_visibility(&[first.handle()], Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(failed[0].code, RECEIPT_HANDLE_IS_INVALID);

        // The latest one deletes; deleting again with it still succeeds.
        assert!(q.delete(&[second.handle()]).await.unwrap().is_empty());
        assert!(q.is_empty());
        assert!(q.delete(&[second.handle()]).await.unwrap().is_empty());
        // ... but the message cannot be made visible again.
        let failed = q
            .set_visibility(&[second.handle()], Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(failed[0].code, RECEIPT_HANDLE_IS_INVALID);
        tokio::time::advance(VISIBILITY * 2).await;
        assert!(q.receive(10, Duration::ZERO).await.unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_handles_are_reported_and_the_rest_still_deleted() {
        let q = LocalQueue::new(VISIBILITY);
        q.send("/a").await.unwrap();
        q.send("/b").await.unwrap();
        let got = q.receive(10, Duration::ZERO).await.unwrap();
        let mut batch = handles(&got);
        batch.insert(
            1,
            Handle {
                id: "nope".into(),
                receipt: "garbage".into(),
            },
        );
        let failed = q.delete(&batch).await.unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].id, "nope");
        assert_eq!(failed[0].code, RECEIPT_HANDLE_IS_INVALID);
        assert!(failed[0].sender_fault);
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn batches_of_any_size() {
        let q = LocalQueue::new(VISIBILITY);
        for i in 0..25 {
            q.send(&format!("/{i}")).await.unwrap();
        }
        let mut got = Vec::new();
        while got.len() < 25 {
            got.extend(q.receive(10, Duration::ZERO).await.unwrap());
        }
        let all = handles(&got);
        assert!(
            q.set_visibility(&all, Duration::from_secs(600))
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            q.set_visibility(&[], Duration::ZERO)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(q.delete(&[]).await.unwrap().is_empty());
        assert!(q.delete(&all).await.unwrap().is_empty());
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn set_visibility_extends_and_releases() {
        let q = LocalQueue::new(VISIBILITY);
        q.send("/a").await.unwrap();
        let m = q.receive(1, Duration::ZERO).await.unwrap().remove(0);

        // Extended from now: still hidden past the original timeout.
        tokio::time::advance(Duration::from_secs(20)).await;
        assert!(
            q.set_visibility(&[m.handle()], Duration::from_secs(60))
                .await
                .unwrap()
                .is_empty()
        );
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(q.receive(1, Duration::ZERO).await.unwrap().is_empty());
        assert_eq!(
            q.depth().await.unwrap(),
            QueueDepth {
                visible: 0,
                in_flight: 1,
                delayed: 0
            }
        );

        // Released: visible at once, to the next receive.
        assert!(
            q.set_visibility(&[m.handle()], Duration::ZERO)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            q.depth().await.unwrap(),
            QueueDepth {
                visible: 1,
                in_flight: 0,
                delayed: 0
            }
        );
        let again = q.receive(1, Duration::ZERO).await.unwrap().remove(0);
        assert_eq!(again.receive_count, 2);

        assert!(matches!(
            q.set_visibility(&[again.handle()], MAX_VISIBILITY + Duration::from_secs(1))
                .await,
            Err(QueueError::Invalid(_))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_latency_is_taken_per_call_and_per_ten_entries() {
        let q = LocalQueue::new(Duration::from_secs(30));
        for i in 0..25 {
            q.send(&format!("/{i}")).await.expect("send");
        }
        let mut got = Vec::new();
        while got.len() < 25 {
            got.extend(q.receive(10, Duration::ZERO).await.expect("receive"));
        }
        q.set_call_latency(Duration::from_millis(20));
        let at = Instant::now();
        q.receive(10, Duration::ZERO).await.expect("receive");
        assert_eq!(at.elapsed(), Duration::from_millis(20));
        let at = Instant::now();
        let failed = q
            .set_visibility(&handles(&got), Duration::ZERO)
            .await
            .expect("release");
        assert!(failed.is_empty());
        // 25 entries: three batch calls of SQS's ten.
        assert_eq!(at.elapsed(), Duration::from_millis(60));
        assert_eq!(q.depth_now().visible, 25);
        let at = Instant::now();
        q.set_visibility(&[], Duration::ZERO)
            .await
            .expect("no call");
        assert_eq!(at.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn visibility_cannot_reach_past_twelve_hours_after_the_receive() {
        let q = LocalQueue::new(VISIBILITY);
        q.send("/a").await.unwrap();
        let m = q.receive(1, Duration::ZERO).await.unwrap().remove(0);
        assert!(
            q.set_visibility(&[m.handle()], MAX_VISIBILITY)
                .await
                .unwrap()
                .is_empty()
        );
        tokio::time::advance(Duration::from_secs(3600)).await;
        let failed = q
            .set_visibility(&[m.handle()], MAX_VISIBILITY)
            .await
            .unwrap();
        assert_eq!(failed[0].code, INVALID_PARAMETER_VALUE);
        // Up to the cap is fine.
        let left = MAX_VISIBILITY - Duration::from_secs(3600);
        assert!(
            q.set_visibility(&[m.handle()], left)
                .await
                .unwrap()
                .is_empty()
        );
        // Past the cap the message is visible again; releasing it is fine.
        tokio::time::advance(MAX_VISIBILITY).await;
        assert!(
            q.set_visibility(&[m.handle()], Duration::ZERO)
                .await
                .unwrap()
                .is_empty()
        );
        // A fresh copy starts a new clock.
        q.requeue(&m).await.unwrap();
        let copy = q.receive(1, Duration::ZERO).await.unwrap().remove(0);
        assert!(
            q.set_visibility(&[copy.handle()], MAX_VISIBILITY)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn long_poll_wakes_on_send() {
        let q = LocalQueue::new(VISIBILITY);
        let poller = {
            let q = q.clone();
            tokio::spawn(async move {
                let start = Instant::now();
                let got = q.receive(10, Duration::from_secs(20)).await.unwrap();
                (got, start.elapsed())
            })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        q.send("/late").await.unwrap();
        let (got, waited) = poller.await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].body, "/late");
        assert_eq!(waited, Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn long_poll_wakes_when_a_message_becomes_visible_again() {
        let q = LocalQueue::new(Duration::from_secs(7));
        q.send("/a").await.unwrap();
        q.receive(1, Duration::ZERO).await.unwrap();
        let start = Instant::now();
        let got = q.receive(1, Duration::from_secs(20)).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(start.elapsed(), Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn long_poll_wakes_on_release() {
        let q = LocalQueue::new(VISIBILITY);
        q.send("/a").await.unwrap();
        let m = q.receive(1, Duration::ZERO).await.unwrap().remove(0);
        let poller = {
            let q = q.clone();
            tokio::spawn(async move { q.receive(1, Duration::from_secs(20)).await.unwrap() })
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        q.set_visibility(&[m.handle()], Duration::ZERO)
            .await
            .unwrap();
        let got = poller.await.unwrap();
        assert_eq!(got[0].id, m.id);
    }

    #[tokio::test(start_paused = true)]
    async fn long_poll_gives_up_after_wait() {
        let q = LocalQueue::new(VISIBILITY);
        let start = Instant::now();
        assert!(
            q.receive(10, Duration::from_secs(20))
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(start.elapsed(), Duration::from_secs(20));
        let start = Instant::now();
        assert!(q.receive(10, Duration::ZERO).await.unwrap().is_empty());
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn reject_with_a_dead_letter_queue_forwards_and_deletes() {
        let q = LocalQueue::new(VISIBILITY);
        let body = "{\"paths\": [\"no-slash\"]}\r\n";
        q.send(body).await.unwrap();
        let m = q.receive(1, Duration::ZERO).await.unwrap().remove(0);
        assert!(
            q.reject(&m, "invalid_path", "path 1:\nmust start with /")
                .await
                .unwrap()
        );
        assert!(q.is_empty());
        let dead = q.dead_letters();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].original_id, m.id);
        assert_eq!(dead[0].body, body);
        assert_eq!(dead[0].reason, "invalid_path");
        assert_eq!(dead[0].detail, "path 1: must start with /");
        assert_eq!(dead[0].attributes["cfpurge-reject-reason"], "invalid_path");
        assert_eq!(
            dead[0].attributes["cfpurge-reject-detail"],
            "path 1: must start with /"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn reject_with_a_stale_receipt_fails_after_forwarding() {
        let q = LocalQueue::new(VISIBILITY);
        q.send("x").await.unwrap();
        let first = q.receive(1, Duration::ZERO).await.unwrap().remove(0);
        tokio::time::advance(VISIBILITY).await;
        q.receive(1, Duration::ZERO).await.unwrap();
        assert!(matches!(
            q.reject(&first, "malformed", "").await,
            Err(QueueError::Invalid(_))
        ));
        assert_eq!(q.dead_letters().len(), 1);
        assert_eq!(q.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn reject_without_a_dead_letter_queue_leaves_the_message() {
        let q = LocalQueue::without_dead_letter_queue(VISIBILITY);
        q.send("x").await.unwrap();
        let m = q.receive(1, Duration::ZERO).await.unwrap().remove(0);
        assert!(!q.reject(&m, "malformed", "not JSON").await.unwrap());
        assert_eq!(q.len(), 1);
        assert!(q.dead_letters().is_empty());
        tokio::time::advance(VISIBILITY).await;
        assert_eq!(
            q.receive(1, Duration::ZERO).await.unwrap()[0].receive_count,
            2
        );
    }

    #[tokio::test(start_paused = true)]
    async fn dead_letters_are_bounded() {
        let q = LocalQueue::new(VISIBILITY);
        for i in 0..DEAD_LETTER_CAPACITY + 5 {
            q.send(&format!("{i}")).await.unwrap();
            let m = q.receive(1, Duration::ZERO).await.unwrap().remove(0);
            q.reject(&m, "malformed", "").await.unwrap();
        }
        let dead = q.dead_letters();
        assert_eq!(dead.len(), DEAD_LETTER_CAPACITY);
        assert_eq!(dead[0].body, "5");
    }

    #[tokio::test(start_paused = true)]
    async fn a_bounded_queue_refuses_sends_past_its_messages_or_bytes() {
        let q = LocalQueue::bounded(VISIBILITY, 3, 100);
        for body in ["/a", "/b", "/c"] {
            q.send(body).await.unwrap();
        }
        let full = q.send("/d").await.unwrap_err();
        assert!(
            matches!(&full, QueueError::Full(why) if why.contains("max_pending_messages")),
            "{full}"
        );
        assert!(full.is_transient());
        // Room again once one is deleted, in flight or not.
        let m = q.receive(1, Duration::ZERO).await.unwrap().remove(0);
        q.delete(&[m.handle()]).await.unwrap();
        q.send("/d").await.unwrap();

        let q = LocalQueue::bounded(VISIBILITY, 100, 100);
        let body = format!("/{}", "x".repeat(59));
        q.send(&body).await.unwrap();
        assert_eq!(q.bytes(), 60);
        let full = q.send(&body).await.unwrap_err();
        assert!(
            matches!(&full, QueueError::Full(why) if why.contains("max_pending_bytes")),
            "{full}"
        );
        q.send(&"/y".repeat(20)).await.unwrap();
        assert_eq!(q.bytes(), 100);
        // A re-queue replaces a message: never refused.
        let m = q.receive(1, Duration::ZERO).await.unwrap().remove(0);
        q.requeue(&m).await.unwrap();
        assert_eq!((q.len(), q.bytes()), (2, 100));
    }

    #[tokio::test(start_paused = true)]
    async fn requeue_sends_a_fresh_copy_and_deletes_the_original() {
        let q = LocalQueue::new(VISIBILITY);
        let attributes = BTreeMap::from([("trace".to_owned(), "t-1".to_owned())]);
        let id = q.send_with_attributes("/a", attributes.clone()).unwrap();
        let first = q.receive(1, Duration::ZERO).await.unwrap().remove(0);
        tokio::time::advance(VISIBILITY).await;
        let m = q.receive(1, Duration::ZERO).await.unwrap().remove(0);
        assert_eq!(m.receive_count, 2);
        q.requeue(&m).await.unwrap();
        assert_eq!(q.len(), 1);
        let copy = q.receive(1, Duration::ZERO).await.unwrap().remove(0);
        assert_ne!(copy.id, id);
        assert_eq!(copy.body, "/a");
        assert_eq!(copy.attributes, attributes);
        assert_eq!(copy.receive_count, 1);
        // With a stale receipt the delete is refused after the copy is sent:
        // two copies rather than none.
        assert!(matches!(
            q.requeue(&first).await,
            Err(QueueError::Invalid(_))
        ));
        assert_eq!(q.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn depth_counts_visible_and_in_flight() {
        let q = LocalQueue::new(VISIBILITY);
        assert_eq!(q.depth().await.unwrap(), QueueDepth::default());
        for i in 0..5 {
            q.send(&format!("/{i}")).await.unwrap();
        }
        q.receive(2, Duration::ZERO).await.unwrap();
        assert_eq!(
            q.depth().await.unwrap(),
            QueueDepth {
                visible: 3,
                in_flight: 2,
                delayed: 0
            }
        );
        tokio::time::advance(VISIBILITY).await;
        assert_eq!(
            q.depth().await.unwrap(),
            QueueDepth {
                visible: 5,
                in_flight: 0,
                delayed: 0
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn send_refuses_what_sqs_refuses() {
        let q = LocalQueue::new(VISIBILITY);
        assert!(matches!(q.send("").await, Err(QueueError::Invalid(_))));
        assert!(matches!(
            q.send("a\u{1}b").await,
            Err(QueueError::Invalid(_))
        ));
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn clones_share_the_queue() {
        let q = LocalQueue::new(VISIBILITY);
        let other = q.clone();
        other.send("/a").await.unwrap();
        assert_eq!(q.receive(1, Duration::ZERO).await.unwrap().len(), 1);
    }
}
