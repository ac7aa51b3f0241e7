//! The source's moving parts around a [`Queue`]: the long-poll loops, the
//! register of received messages with their latest receipt handles, the
//! visibility extension that keeps waiting messages hidden, deletes with
//! retries, rejects and backpressure.
//!
//! The register is the one place that knows which messages cfpurge holds.
//! A message received again while held (SQS may deliver a message twice, or
//! again after its visibility ran out) only updates its receipt handle: it is
//! not passed on twice (invariant 5).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::queue::{Handle, Message, Queue, QueueDepth, QueueError};
use crate::pending::MessageId;

/// How the source runs; from `[source]`.
#[derive(Clone, Debug)]
pub struct SourceSettings {
    pub pollers: usize,
    pub wait: Duration,
    pub visibility: Duration,
    pub max_pending_messages: usize,
    /// A message held this long since its first receive is re-queued as a
    /// fresh copy: SQS refuses to keep a message in flight past 12 hours.
    pub requeue_after: Duration,
}

impl From<&crate::config::SourceConfig> for SourceSettings {
    fn from(c: &crate::config::SourceConfig) -> Self {
        SourceSettings {
            pollers: c.pollers as usize,
            wait: Duration::from_secs(c.wait_time_seconds),
            visibility: Duration::from_secs(c.visibility_timeout_seconds),
            max_pending_messages: c.max_pending_messages,
            requeue_after: Duration::from_secs(11 * 3600 + 30 * 60),
        }
    }
}

/// What the source hands to the pipeline.
#[derive(Debug)]
pub enum SourceEvent {
    /// A message seen for the first time (or again after it was let go).
    Received {
        id: MessageId,
        body: String,
        received_at: Instant,
        /// When the queue first handed it to any consumer, if it says.
        first_received_at: Option<std::time::SystemTime>,
    },
    /// A held message was re-queued as a fresh copy (which will arrive as a
    /// new message): forget the old one.
    Requeued { id: MessageId },
}

/// Whether the queue can be used, for `/readyz`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueHealth {
    Ready,
    /// Not usable, and why (a missing queue, denied access, or repeated
    /// failures to reach it).
    NotReady(String),
}

/// A message cfpurge holds.
#[derive(Debug)]
struct Held {
    message: Message,
    /// When it was first received by this process.
    first_seen: Instant,
    /// When its current visibility timeout runs out.
    visible_at: Instant,
    /// A delete is under way. It is still extended (a slow delete must not
    /// let the message be delivered again, which would make the handle the
    /// delete holds stale), and the extension may be refused once the
    /// delete went through: that refusal is expected, not worth a warning.
    deleting: bool,
}

#[derive(Debug, Default)]
struct Register {
    held: HashMap<MessageId, Held>,
    /// Room taken by receives under way, so that pollers together never
    /// hold more than `max_pending_messages`.
    reserved: usize,
}

/// Counts for metrics and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SourceCounts {
    /// Messages received, redeliveries included.
    pub received: u64,
    /// Receives of a message already held.
    pub redelivered: u64,
    pub deleted: u64,
    pub rejected: u64,
    pub requeued: u64,
    /// Deletes that still failed after the retries.
    pub delete_failures: u64,
}

struct Shared<Q> {
    queue: Q,
    settings: SourceSettings,
    register: Mutex<Register>,
    /// Signalled when held messages go, so paused pollers look again.
    room: Notify,
    health: Mutex<QueueHealth>,
    counts: Mutex<SourceCounts>,
}

/// The source: clone it freely, all clones share one register.
pub struct Source<Q> {
    shared: Arc<Shared<Q>>,
}

impl<Q> Clone for Source<Q> {
    fn clone(&self) -> Self {
        Source {
            shared: self.shared.clone(),
        }
    }
}

/// Delete attempts per message before giving up on it (it will then be
/// delivered again and be covered again: a wasted path, never a lost one).
const DELETE_ATTEMPTS: u32 = 4;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind,
    // still consistent enough to carry on with.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<Q: Queue> Source<Q> {
    pub fn new(queue: Q, settings: SourceSettings) -> Source<Q> {
        Source {
            shared: Arc::new(Shared {
                queue,
                settings,
                register: Mutex::new(Register::default()),
                room: Notify::new(),
                health: Mutex::new(QueueHealth::Ready),
                counts: Mutex::new(SourceCounts::default()),
            }),
        }
    }

    pub fn queue(&self) -> &Q {
        &self.shared.queue
    }

    /// Starts the pollers and the visibility keeper. Events arrive on the
    /// returned channel until `stop_receiving` fires; held messages are
    /// kept hidden until `stop_keeping` fires, which the daemon does only
    /// once each has been deleted or released (shutdown included).
    pub fn start(
        &self,
        tasks: &TaskTracker,
        stop_receiving: &CancellationToken,
        stop_keeping: &CancellationToken,
    ) -> mpsc::Receiver<SourceEvent> {
        let (tx, rx) = self.start_keeping(tasks, stop_keeping);
        self.start_receiving(tasks, &tx, stop_receiving);
        rx
    }

    /// Starts only the visibility keeper; events go to the returned
    /// channel, whose sender [`Source::start_receiving`] takes. A replica
    /// starts receiving when it becomes the leader, and stops when it
    /// stands down.
    pub fn start_keeping(
        &self,
        tasks: &TaskTracker,
        stop_keeping: &CancellationToken,
    ) -> (mpsc::Sender<SourceEvent>, mpsc::Receiver<SourceEvent>) {
        let (tx, rx) = mpsc::channel(1024);
        let (me, cancel, keeper_tx) = (self.clone(), stop_keeping.clone(), tx.clone());
        tasks.spawn(async move { me.keep_loop(keeper_tx, cancel).await });
        (tx, rx)
    }

    /// Starts the pollers, sending to `tx` until `stop_receiving` fires.
    pub fn start_receiving(
        &self,
        tasks: &TaskTracker,
        tx: &mpsc::Sender<SourceEvent>,
        stop_receiving: &CancellationToken,
    ) {
        for n in 0..self.shared.settings.pollers.max(1) {
            let (me, tx, cancel) = (self.clone(), tx.clone(), stop_receiving.clone());
            tasks.spawn(async move { me.poll_loop(n, tx, cancel).await });
        }
    }

    pub fn health(&self) -> QueueHealth {
        lock(&self.shared.health).clone()
    }

    pub fn counts(&self) -> SourceCounts {
        *lock(&self.shared.counts)
    }

    /// The queue's approximate counts (GetQueueAttributes).
    pub async fn depth(&self) -> Result<QueueDepth, QueueError> {
        self.shared.queue.depth().await
    }

    /// Messages received and not yet deleted, rejected or released.
    pub fn held(&self) -> usize {
        lock(&self.shared.register).held.len()
    }

    fn set_health(&self, h: QueueHealth) {
        let mut current = lock(&self.shared.health);
        if *current != h {
            match &h {
                QueueHealth::Ready => tracing::info!("queue reachable again"),
                QueueHealth::NotReady(why) => tracing::error!(reason = %why, "queue not usable"),
            }
            *current = h;
        }
    }

    async fn poll_loop(self, n: usize, tx: mpsc::Sender<SourceEvent>, cancel: CancellationToken) {
        let settings = self.shared.settings.clone();
        let mut failures: u32 = 0;
        loop {
            // Backpressure: wait for room before asking for more, and ask
            // for no more than there is room for.
            let room = loop {
                let room = self.reserve(settings.max_pending_messages);
                if room > 0 {
                    break room;
                }
                let notified = self.shared.room.notified();
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = notified => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            };
            let received = tokio::select! {
                () = cancel.cancelled() => {
                    self.unreserve(room);
                    return;
                }
                r = self.shared.queue.receive(room, settings.wait) => r,
            };
            let received = received.map(|messages| self.register_received(messages, room));
            if received.is_err() {
                self.unreserve(room);
            }
            match received {
                Ok(events) => {
                    failures = 0;
                    self.set_health(QueueHealth::Ready);
                    for event in events {
                        if tx.send(event).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    failures += 1;
                    let delay = backoff(&e, failures);
                    if !e.is_transient() || failures >= 3 {
                        self.set_health(QueueHealth::NotReady(e.to_string()));
                    }
                    tracing::warn!(poller = n, error = %e, retry_in_ms = delay.as_millis() as u64, "receive failed");
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Takes room for up to ten messages; returns how many.
    fn reserve(&self, max: usize) -> usize {
        let mut register = lock(&self.shared.register);
        let used = register.held.len() + register.reserved;
        let room = max.saturating_sub(used).min(10);
        register.reserved += room;
        room
    }

    fn unreserve(&self, room: usize) {
        lock(&self.shared.register).reserved -= room;
    }

    /// Records received messages, giving back the room reserved for them;
    /// returns the events for the new ones.
    fn register_received(&self, messages: Vec<Message>, reserved: usize) -> Vec<SourceEvent> {
        let now = Instant::now();
        let visible_at = now + self.shared.settings.visibility;
        let mut events = Vec::new();
        let mut register = lock(&self.shared.register);
        register.reserved -= reserved;
        let mut counts = lock(&self.shared.counts);
        for m in messages {
            counts.received += 1;
            if let Some(held) = register.held.get_mut(m.id.as_str()) {
                // The latest receipt handle is the one that deletes.
                counts.redelivered += 1;
                held.message.receipt = m.receipt;
                held.message.receive_count = m.receive_count;
                held.visible_at = visible_at;
                continue;
            }
            let id: MessageId = Arc::from(m.id.as_str());
            events.push(SourceEvent::Received {
                id: id.clone(),
                body: m.body.clone(),
                received_at: now,
                first_received_at: m.first_received_at,
            });
            register.held.insert(
                id,
                Held {
                    message: m,
                    first_seen: now,
                    visible_at,
                    deleting: false,
                },
            );
        }
        events
    }

    /// Keeps held messages invisible: extends each one when a third of its
    /// visibility timeout is left, and re-queues those near SQS's 12-hour
    /// limit.
    async fn keep_loop(self, tx: mpsc::Sender<SourceEvent>, cancel: CancellationToken) {
        let visibility = self.shared.settings.visibility;
        let period = (visibility / 6).clamp(Duration::from_millis(200), Duration::from_secs(10));
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(period) => {}
            }
            let now = Instant::now();
            let (extend, requeue) = {
                let register = lock(&self.shared.register);
                let mut extend = Vec::new();
                let mut requeue = Vec::new();
                for (id, h) in &register.held {
                    if now.duration_since(h.first_seen) >= self.shared.settings.requeue_after {
                        requeue.push((id.clone(), h.message.clone()));
                    } else if h.visible_at.saturating_duration_since(now) <= visibility / 3 {
                        extend.push(Handle {
                            id: id.to_string(),
                            receipt: h.message.receipt.clone(),
                        });
                    }
                }
                (extend, requeue)
            };
            if !extend.is_empty() {
                match self.shared.queue.set_visibility(&extend, visibility).await {
                    Ok(failed) => {
                        let refused: HashSet<&str> = failed.iter().map(|f| f.id.as_str()).collect();
                        let mut register = lock(&self.shared.register);
                        for h in &extend {
                            if refused.contains(h.id.as_str()) {
                                continue;
                            }
                            if let Some(held) = register.held.get_mut(h.id.as_str()) {
                                held.visible_at = now + visibility;
                            }
                        }
                        // Refusals of messages deleted meanwhile are the
                        // delete racing the extension. The others are said
                        // once per code, not per message: a failed batch
                        // call refuses ten at once.
                        let mut by_code: BTreeMap<&str, (usize, &str)> = BTreeMap::new();
                        for f in &failed {
                            let gone = register.held.get(f.id.as_str()).is_none_or(|h| h.deleting);
                            if gone {
                                tracing::debug!(message = %f.id, code = %f.code, "extension refused: deleted meanwhile");
                                continue;
                            }
                            by_code
                                .entry(f.code.as_str())
                                .or_insert((0, f.id.as_str()))
                                .0 += 1;
                        }
                        drop(register);
                        for (code, (messages, example)) in by_code {
                            tracing::warn!(code, messages, example, "visibility extension refused");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, messages = extend.len(), "visibility extension failed")
                    }
                }
            }
            for (id, message) in requeue {
                match self.shared.queue.requeue(&message).await {
                    Ok(()) => {
                        lock(&self.shared.register).held.remove(&id);
                        lock(&self.shared.counts).requeued += 1;
                        self.shared.room.notify_waiters();
                        tracing::info!(message = %id, "re-queued a message near the 12-hour in-flight limit");
                        if tx.send(SourceEvent::Requeued { id }).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::warn!(message = %id, error = %e, "re-queue failed"),
                }
            }
        }
    }

    /// Deletes messages whose paths are covered, with their latest receipt
    /// handles; failed entries are retried with fresh handles. Returns how
    /// many were deleted.
    pub async fn delete(&self, ids: &[MessageId]) -> usize {
        let mut todo: Vec<MessageId> = ids.to_vec();
        let mut deleted = 0;
        {
            let mut register = lock(&self.shared.register);
            for id in &todo {
                if let Some(held) = register.held.get_mut(id) {
                    held.deleting = true;
                }
            }
        }
        for attempt in 1..=DELETE_ATTEMPTS {
            let handles = self.handles(&todo);
            if handles.is_empty() {
                break;
            }
            let failed = match self.shared.queue.delete(&handles).await {
                Ok(failed) => failed,
                Err(e) => {
                    tracing::warn!(error = %e, messages = handles.len(), attempt, "delete failed");
                    handles
                        .iter()
                        .map(|h| super::queue::Failed {
                            id: h.id.clone(),
                            code: super::queue::REQUEST_FAILED.to_owned(),
                            sender_fault: false,
                        })
                        .collect()
                }
            };
            let gone: Vec<MessageId> = todo
                .iter()
                .filter(|id| {
                    handles.iter().any(|h| h.id == ***id) && !failed.iter().any(|f| f.id == ***id)
                })
                .cloned()
                .collect();
            deleted += gone.len();
            self.forget(&gone);
            todo.retain(|id| failed.iter().any(|f| f.id == **id));
            if todo.is_empty() {
                break;
            }
            for f in &failed {
                tracing::debug!(message = %f.id, code = %f.code, attempt, "delete entry failed");
            }
            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        }
        if !todo.is_empty() {
            tracing::error!(
                messages = todo.len(),
                "could not delete covered messages; they will be delivered again"
            );
            lock(&self.shared.counts).delete_failures += todo.len() as u64;
            self.forget(&todo);
        }
        lock(&self.shared.counts).deleted += deleted as u64;
        deleted
    }

    /// Rejects a message: forwarded to the dead-letter queue with the
    /// reason, or left for the queue's redrive policy.
    pub async fn reject(&self, id: &MessageId, reason: &str, detail: &str) {
        let message = lock(&self.shared.register)
            .held
            .get(id)
            .map(|h| h.message.clone());
        let Some(message) = message else {
            return;
        };
        match self.shared.queue.reject(&message, reason, detail).await {
            Ok(forwarded) => {
                tracing::warn!(message = %id, reason, detail, forwarded, "message rejected");
                lock(&self.shared.counts).rejected += 1;
                self.forget(std::slice::from_ref(id));
            }
            // Forgotten all the same: no longer extended, it becomes visible
            // again when its timeout runs out and is rejected again then.
            Err(e) => {
                tracing::warn!(message = %id, error = %e, "reject failed; the message will come back");
                self.forget(std::slice::from_ref(id));
            }
        }
    }

    /// Makes messages visible again at once (shutdown) and lets them go.
    pub async fn release(&self, ids: &[MessageId]) {
        let handles = self.handles(ids);
        if handles.is_empty() {
            return;
        }
        match self
            .shared
            .queue
            .set_visibility(&handles, Duration::ZERO)
            .await
        {
            Ok(failed) if !failed.is_empty() => {
                tracing::warn!(
                    messages = failed.len(),
                    "some messages could not be released; they reappear when their timeout runs out"
                );
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "release failed; messages reappear when their timeout runs out")
            }
        }
        self.forget(ids);
    }

    /// The latest receipt handle of a held message.
    pub fn receipt(&self, id: &str) -> Option<String> {
        lock(&self.shared.register)
            .held
            .get(id)
            .map(|h| h.message.receipt.clone())
    }

    fn handles(&self, ids: &[MessageId]) -> Vec<Handle> {
        let register = lock(&self.shared.register);
        ids.iter()
            .filter_map(|id| {
                register.held.get(id).map(|h| Handle {
                    id: id.to_string(),
                    receipt: h.message.receipt.clone(),
                })
            })
            .collect()
    }

    fn forget(&self, ids: &[MessageId]) {
        let mut register = lock(&self.shared.register);
        for id in ids {
            register.held.remove(id);
        }
        drop(register);
        self.shared.room.notify_waiters();
    }
}

/// The delay before the next receive after `failures` failures in a row:
/// the crate's one retry policy ([`crate::aws_error::backoff`]), slower for
/// faults that waiting alone will not fix (a missing queue, denied access).
fn backoff(e: &QueueError, failures: u32) -> Duration {
    let (base, cap) = if e.is_transient() {
        (Duration::from_millis(200), Duration::from_secs(20))
    } else {
        (Duration::from_secs(5), Duration::from_secs(60))
    };
    crate::aws_error::backoff(failures, rand::random::<f64>(), base, cap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::local::LocalQueue;
    use crate::source::queue::Failed;

    fn settings() -> SourceSettings {
        SourceSettings {
            pollers: 2,
            wait: Duration::from_secs(20),
            visibility: Duration::from_secs(30),
            max_pending_messages: 100,
            requeue_after: Duration::from_secs(3600),
        }
    }

    async fn next(events: &mut mpsc::Receiver<SourceEvent>) -> SourceEvent {
        tokio::time::timeout(Duration::from_secs(7200), events.recv())
            .await
            .expect("an event in time")
            .expect("channel open")
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_message_stays_hidden_for_as_long_as_it_waits() {
        let queue = LocalQueue::new(Duration::from_secs(30));
        queue.send("/a").await.expect("send");
        let source = Source::new(queue.clone(), settings());
        let (tasks, cancel) = (TaskTracker::new(), CancellationToken::new());
        let mut events = source.start(&tasks, &cancel, &cancel);
        let SourceEvent::Received { id, .. } = next(&mut events).await else {
            panic!("expected a message");
        };
        // Ten visibility timeouts later nobody else can take it, and it was
        // not passed on again.
        tokio::time::sleep(Duration::from_secs(300)).await;
        assert!(
            queue
                .receive(10, Duration::ZERO)
                .await
                .expect("receive")
                .is_empty()
        );
        assert!(events.try_recv().is_err());
        assert_eq!(source.counts().received, 1);
        assert_eq!(source.delete(&[id]).await, 1);
        assert!(queue.is_empty());
        cancel.cancel();
        tasks.close();
        tasks.wait().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_near_the_in_flight_limit_is_requeued_as_a_fresh_copy() {
        let queue = LocalQueue::new(Duration::from_secs(30));
        queue.send("/old").await.expect("send");
        let source = Source::new(queue.clone(), settings());
        let (tasks, cancel) = (TaskTracker::new(), CancellationToken::new());
        let mut events = source.start(&tasks, &cancel, &cancel);
        let SourceEvent::Received { id: first, .. } = next(&mut events).await else {
            panic!("expected a message");
        };
        let SourceEvent::Requeued { id } = next(&mut events).await else {
            panic!("expected the re-queue");
        };
        assert_eq!(id, first);
        let SourceEvent::Received { id: copy, body, .. } = next(&mut events).await else {
            panic!("expected the copy");
        };
        assert_ne!(copy, first);
        assert_eq!(body, "/old");
        assert_eq!(source.counts().requeued, 1);
        assert_eq!(source.held(), 1);
        assert_eq!(queue.len(), 1, "the original is gone, the copy is there");
        cancel.cancel();
        tasks.close();
        tasks.wait().await;
    }

    #[tokio::test(start_paused = true)]
    async fn rejects_go_to_the_dead_letter_queue_and_free_their_room() {
        let queue = LocalQueue::new(Duration::from_secs(30));
        queue.send("not a path").await.expect("send");
        let source = Source::new(queue.clone(), settings());
        let (tasks, cancel) = (TaskTracker::new(), CancellationToken::new());
        let mut events = source.start(&tasks, &cancel, &cancel);
        let SourceEvent::Received { id, .. } = next(&mut events).await else {
            panic!("expected a message");
        };
        source
            .reject(&id, "invalid_path", "line 1: path must start with \"/\"")
            .await;
        assert_eq!(source.held(), 0);
        assert_eq!(source.counts().rejected, 1);
        let dead = queue.dead_letters();
        assert_eq!(dead.len(), 1);
        assert!(queue.is_empty());
        cancel.cancel();
        tasks.close();
        tasks.wait().await;
    }

    /// The local queue, with deletes that take `delay` and a record of the
    /// messages whose visibility was changed.
    struct SlowDeletes {
        inner: LocalQueue,
        delay: Duration,
        extended: Mutex<Vec<String>>,
    }

    impl Queue for SlowDeletes {
        async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Message>, QueueError> {
            self.inner.receive(max, wait).await
        }
        async fn set_visibility(
            &self,
            handles: &[Handle],
            timeout: Duration,
        ) -> Result<Vec<Failed>, QueueError> {
            lock(&self.extended).extend(handles.iter().map(|h| h.id.clone()));
            self.inner.set_visibility(handles, timeout).await
        }
        async fn delete(&self, handles: &[Handle]) -> Result<Vec<Failed>, QueueError> {
            tokio::time::sleep(self.delay).await;
            self.inner.delete(handles).await
        }
        async fn reject(
            &self,
            message: &Message,
            reason: &str,
            detail: &str,
        ) -> Result<bool, QueueError> {
            self.inner.reject(message, reason, detail).await
        }
        async fn requeue(&self, message: &Message) -> Result<(), QueueError> {
            self.inner.requeue(message).await
        }
        async fn depth(&self) -> Result<QueueDepth, QueueError> {
            self.inner.depth().await
        }
        async fn send(&self, body: &str) -> Result<String, QueueError> {
            self.inner.send(body).await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_is_extended_while_a_slow_delete_runs() {
        // A delete slower than the visibility timeout: were the message not
        // extended meanwhile, it would be delivered again, and the handle the
        // delete holds would be stale.
        let inner = LocalQueue::new(Duration::from_secs(30));
        inner.send("/a").await.expect("send");
        let queue = SlowDeletes {
            inner: inner.clone(),
            delay: Duration::from_secs(45),
            extended: Mutex::default(),
        };
        let source = Source::new(queue, settings());
        let (tasks, cancel) = (TaskTracker::new(), CancellationToken::new());
        let mut events = source.start(&tasks, &cancel, &cancel);
        let SourceEvent::Received { id, .. } = next(&mut events).await else {
            panic!("expected a message");
        };
        assert_eq!(source.delete(std::slice::from_ref(&id)).await, 1);
        assert!(lock(&source.queue().extended).contains(&id.to_string()));
        assert_eq!(source.counts().redelivered, 0);
        assert!(events.try_recv().is_err(), "not delivered again");
        assert!(inner.is_empty());
        cancel.cancel();
        tasks.close();
        tasks.wait().await;
    }

    #[test]
    fn backoff_grows_and_stays_within_its_cap() {
        let transient = QueueError::Transient("503".into());
        let denied = QueueError::AccessDenied("no".into());
        for failures in 1..30 {
            assert!(backoff(&transient, failures) <= Duration::from_secs(20));
            assert!(backoff(&denied, failures) <= Duration::from_secs(60));
        }
        assert!(backoff(&transient, 1) <= Duration::from_millis(200));
        assert!(backoff(&denied, 1) <= Duration::from_secs(5));
    }
}
