//! The contract between the daemon and its message queue: what a receive,
//! a visibility change, a delete, a reject and a re-queue promise, and what
//! their errors mean. The SQS adapter ([`super::sqs::SqsQueue`]) and the
//! in-memory queue ([`super::local::LocalQueue`]) both keep it, and the rest
//! of the daemon relies on nothing else.
//!
//! Delivery is at-least-once, as in SQS: a message may be received again
//! (same [`Message::id`], new [`Message::receipt`]) when its visibility runs
//! out, and even after a delete on a standard queue. The caller must
//! therefore treat a repeated id as the same request and always act with the
//! latest receipt it was given.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Most messages one receive may return (SQS's `MaxNumberOfMessages`).
pub const MAX_RECEIVE: usize = 10;

/// Longest long-poll wait (SQS's `WaitTimeSeconds`).
pub const MAX_WAIT: Duration = crate::aws::SQS_MAX_WAIT;

/// Entries per batch call (SQS's limit for every `*Batch` action).
pub const MAX_BATCH: usize = 10;

/// Longest visibility timeout, and the longest a message may stay in flight
/// after the receive that returned it (12 hours).
pub const MAX_VISIBILITY: Duration = Duration::from_secs(43_200);

/// Largest message, body and message attributes counted together (1 MiB).
pub const MAX_MESSAGE_BYTES: usize = 1_048_576;

/// Most message attributes one message may carry.
pub const MAX_MESSAGE_ATTRIBUTES: usize = 10;

/// Message attribute naming why a forwarded message was rejected: a reason
/// code from `cfpurge_messages_rejected_total`'s list.
pub const REJECT_REASON_ATTRIBUTE: &str = "cfpurge-reject-reason";

/// Message attribute with one line of detail on a rejection.
pub const REJECT_DETAIL_ATTRIBUTE: &str = "cfpurge-reject-detail";

/// Longest [`REJECT_DETAIL_ATTRIBUTE`] value, in characters.
pub const MAX_REJECT_DETAIL_CHARS: usize = 256;

/// A message's identity: its SQS MessageId, shared by every record of
/// the message.
pub type MessageId = Arc<str>;

/// One received message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// SQS `MessageId`: stable across redeliveries, so a second delivery of
    /// the same request is recognised and not counted twice.
    pub id: String,
    /// Receipt handle of this delivery: every later call on the message needs
    /// the latest one, which changes on each receive.
    pub receipt: String,
    /// The body exactly as sent; decoding is the next stage's job.
    pub body: String,
    /// `ApproximateReceiveCount`: 1 on the first delivery; shows a message
    /// that keeps coming back.
    pub receive_count: u32,
    /// `ApproximateFirstReceiveTimestamp`: when any consumer first received
    /// it; bounds how long the message has been in flight, for the 12-hour
    /// limit. `None` if the queue did not say.
    pub first_received_at: Option<SystemTime>,
    /// Message attributes with a string value (`String` and `Number` types),
    /// by name; binary attributes are left out. Carried over by
    /// [`Queue::requeue`] and [`Queue::reject`].
    pub attributes: BTreeMap<String, String>,
}

impl Message {
    /// The handle naming this delivery, for [`Queue::set_visibility`] and
    /// [`Queue::delete`].
    pub fn handle(&self) -> Handle {
        Handle {
            id: self.id.clone(),
            receipt: self.receipt.clone(),
        }
    }
}

/// Names one delivery of a message in the batch calls.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Handle {
    /// The message's id, echoed back in [`Failed::id`] so that a failure can
    /// be matched to the message.
    pub id: String,
    /// The receipt handle of the delivery being acted on.
    pub receipt: String,
}

/// The [`Failed::code`] of entries whose whole call failed (an error, not a
/// partial failure): a batch among several, or a retry's bookkeeping.
pub const REQUEST_FAILED: &str = "RequestFailed";

/// One entry of a batch call that the queue refused while the call itself
/// succeeded (SQS answers such partial failures with HTTP 200).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failed {
    /// The [`Handle::id`] of the entry, i.e. the message id.
    pub id: String,
    /// The queue's error code, e.g. `ReceiptHandleIsInvalid`,
    /// `InvalidParameterValue`, `InternalError`.
    pub code: String,
    /// True when the request was at fault (retrying the same entry will fail
    /// again); false when the queue was (retrying may succeed).
    pub sender_fault: bool,
}

impl Failed {
    /// The error this entry's failure amounts to when a single-message
    /// operation ([`Queue::reject`], [`Queue::requeue`]) depended on it.
    pub fn into_error(self) -> QueueError {
        let text = format!("{} for message {}", self.code, self.id);
        if self.sender_fault {
            QueueError::Invalid(text)
        } else {
            QueueError::Transient(text)
        }
    }
}

/// Approximate message counts, as SQS reports them (they lag by up to a
/// minute on a real queue).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Messages available to receive (`ApproximateNumberOfMessages`).
    pub visible: u64,
    /// Messages received and neither deleted nor visible again
    /// (`ApproximateNumberOfMessagesNotVisible`).
    pub in_flight: u64,
    /// Messages sent with a delay that has not passed yet
    /// (`ApproximateNumberOfMessagesDelayed`).
    pub delayed: u64,
}

/// Why a queue call failed as a whole. Every variant says what to do next:
/// only [`QueueError::Transient`] is worth retrying as it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// Throttling, a 5xx answer, a timeout, a connection failure or an
    /// unreadable response: retry with backoff. The call may or may not have
    /// taken effect, which is safe because every call is idempotent with the
    /// latest receipt (sends excepted: see [`Queue::send`]).
    #[error("queue temporarily unavailable: {0}")]
    Transient(String),
    /// The queue does not exist (`QueueDoesNotExist`): configuration is wrong
    /// or the queue was deleted; retrying will not help until it is created.
    #[error("queue not found: {0}")]
    NotFound(String),
    /// The credentials are missing, wrong or lack permission
    /// (`AccessDenied`, `InvalidClientTokenId`, `SignatureDoesNotMatch`, ...).
    #[error("access to the queue denied: {0}")]
    AccessDenied(String),
    /// A request the queue will refuse again if repeated: an argument out of
    /// range, a body it does not accept, a stale or unknown receipt in a
    /// single-message operation.
    #[error("request refused by the queue: {0}")]
    Invalid(String),
    /// A send to the in-memory queue while it holds as many messages or
    /// bytes as it may: retry once the daemon has caught up.
    #[error("the queue is full: {0}")]
    Full(String),
}

impl QueueError {
    /// True when the same call may succeed if made again later.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_) | Self::Full(_))
    }
}

/// A message queue with SQS's semantics.
///
/// Shared by several tasks (the `pollers` receive loops, the daemon's queue
/// task that deletes and rejects, the visibility keeper), hence `Send + Sync + 'static` and `&self` methods
/// whose futures are `Send`, so that they can be `tokio::spawn`ed.
///
/// Common rules:
/// - A call that returns `Err` may still have taken effect in part (a
///   timeout after the request reached the queue, or a later batch of 10
///   failing after earlier ones succeeded). Making the same call again is
///   safe: deleting an already deleted message with its latest receipt and
///   setting the same visibility again both succeed.
/// - Batch calls ([`Queue::set_visibility`], [`Queue::delete`]) take any
///   number of handles and split them into calls of at most
///   [`MAX_BATCH`], made one after the other. A call that fails as a whole
///   refuses its own entries (listed in [`Failed`] with [`REQUEST_FAILED`])
///   and the other calls still go; only when every call fails is the
///   operation's result that error. Entries the queue refused
///   individually come back as [`Failed`], in no particular order; every
///   handle not listed there succeeded. An empty slice makes no call.
/// - Handles must be the latest receipt of each message. Real SQS (and moto)
///   may accept an older one; [`super::local::LocalQueue`] refuses it with
///   `ReceiptHandleIsInvalid`, so that tests catch a stale receipt.
pub trait Queue: Send + Sync + 'static {
    /// Long-polls for up to `max` (1..=[`MAX_RECEIVE`]) messages, waiting up
    /// to `wait` (at most [`MAX_WAIT`], whole seconds; 0 returns at once) for
    /// the first one to arrive. Returns as soon as at least one message is
    /// available; an empty vector when none came within `wait`. Each
    /// returned message is invisible to other receivers for the queue's
    /// visibility timeout, from this call.
    ///
    /// `max` or `wait` out of range: [`QueueError::Invalid`], without a call.
    fn receive(
        &self,
        max: usize,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<Message>, QueueError>> + Send;

    /// Makes each message invisible for `timeout` from now (rounded up to a
    /// whole second; zero makes it visible at once, to release it).
    /// `ChangeMessageVisibilityBatch` in batches of [`MAX_BATCH`]; returns the
    /// entries the queue refused, e.g. `ReceiptHandleIsInvalid` (the message
    /// was deleted or, locally, received again) or `InvalidParameterValue`
    /// (the new timeout would keep it in flight past 12 hours after its
    /// receive: [`Queue::requeue`] it instead).
    ///
    /// `timeout` over [`MAX_VISIBILITY`]: [`QueueError::Invalid`], without a
    /// call.
    fn set_visibility(
        &self,
        handles: &[Handle],
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<Failed>, QueueError>> + Send;

    /// Deletes the messages: `DeleteMessageBatch` in batches of
    /// [`MAX_BATCH`]. Returns the entries the queue refused; always read
    /// them, a refused delete leaves the message to come back.
    fn delete(
        &self,
        handles: &[Handle],
    ) -> impl Future<Output = Result<Vec<Failed>, QueueError>> + Send;

    /// Takes a message the daemon will never be able to act on out of the
    /// way.
    ///
    /// With a dead-letter queue configured: sends the body there byte for
    /// byte, with the message attributes [`REJECT_REASON_ATTRIBUTE`]
    /// (`reason`) and [`REJECT_DETAIL_ATTRIBUTE`] (`detail` cut to one line of
    /// at most [`MAX_REJECT_DETAIL_CHARS`] characters) plus the message's own
    /// attributes as far as SQS's limits allow (see [`reject_attributes`]),
    /// then deletes the original; `Ok(true)`. The send comes first, so a
    /// failure in between leaves the message in place and a retry may put a
    /// second copy in the dead-letter queue, never none.
    ///
    /// Without one: does nothing, so that the queue's redrive policy moves
    /// the message once its receive count runs out; `Ok(false)`. The caller
    /// should then stop extending its visibility.
    fn reject(
        &self,
        message: &Message,
        reason: &str,
        detail: &str,
    ) -> impl Future<Output = Result<bool, QueueError>> + Send;

    /// Sends a fresh copy of the message (same body and attributes, new id,
    /// receive count 0) to the same queue, then deletes the original: for a
    /// message nearing the 12-hour in-flight limit, which no visibility
    /// change can extend. If the delete fails the error is returned and both
    /// copies exist, which at-least-once delivery allows.
    fn requeue(&self, message: &Message) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// The queue's approximate depth (`GetQueueAttributes`).
    fn depth(&self) -> impl Future<Output = Result<QueueDepth, QueueError>> + Send;

    /// Sends a new message and returns its id. Not idempotent: a
    /// [`QueueError::Transient`] error may hide a send that happened, so a
    /// retry may deliver the request twice (harmless for a purge request).
    /// A body that is empty, over [`MAX_MESSAGE_BYTES`] or holds characters
    /// SQS refuses (see [`check_body`]) is [`QueueError::Invalid`].
    fn send(&self, body: &str) -> impl Future<Output = Result<String, QueueError>> + Send;
}

/// Checks `max` and `wait` against [`Queue::receive`]'s ranges.
pub(crate) fn check_receive(max: usize, wait: Duration) -> Result<(), QueueError> {
    if !(1..=MAX_RECEIVE).contains(&max) {
        return Err(QueueError::Invalid(format!(
            "receive of {max} messages: must be 1 to {MAX_RECEIVE}"
        )));
    }
    if wait > MAX_WAIT {
        return Err(QueueError::Invalid(format!(
            "long-poll wait of {wait:?}: must be at most {MAX_WAIT:?}"
        )));
    }
    Ok(())
}

/// [`Queue::set_visibility`]'s timeout in whole seconds, rounded up so that
/// an extension is never shorter than asked.
pub(crate) fn visibility_seconds(timeout: Duration) -> Result<u32, QueueError> {
    if timeout > MAX_VISIBILITY {
        return Err(QueueError::Invalid(format!(
            "visibility timeout of {timeout:?}: must be at most {MAX_VISIBILITY:?}"
        )));
    }
    let whole = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
    // At most 43,200 after the check above, so it fits.
    Ok(u32::try_from(whole).unwrap_or(u32::MAX))
}

/// Checks a body the way SQS does: 1 byte to [`MAX_MESSAGE_BYTES`], and only
/// the characters SQS accepts (tab, line feed, carriage return, and U+0020
/// upwards except U+FFFE and U+FFFF; Rust strings hold no surrogates).
pub fn check_body(body: &str) -> Result<(), QueueError> {
    if body.is_empty() {
        return Err(QueueError::Invalid("empty message body".into()));
    }
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(QueueError::Invalid(format!(
            "message body of {} bytes: at most {MAX_MESSAGE_BYTES}",
            body.len()
        )));
    }
    if let Some((at, c)) = body.char_indices().find(|&(_, c)| !sqs_allows(c)) {
        return Err(QueueError::Invalid(format!(
            "message body holds U+{:04X} at byte {at}, which SQS refuses",
            u32::from(c)
        )));
    }
    Ok(())
}

fn sqs_allows(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// `detail` as one line of at most [`MAX_REJECT_DETAIL_CHARS`] characters:
/// control characters (line breaks included) become spaces, runs of spaces
/// one, and an over-long text is cut with `…`. Never empty, since SQS refuses
/// an empty attribute value.
pub fn one_line(detail: &str) -> String {
    let mut line = String::with_capacity(detail.len().min(4 * MAX_REJECT_DETAIL_CHARS));
    for c in detail.chars() {
        let c = if c.is_control() || !sqs_allows(c) {
            ' '
        } else {
            c
        };
        if c == ' ' && (line.is_empty() || line.ends_with(' ')) {
            continue;
        }
        line.push(c);
    }
    let line = line.trim_end();
    if line.is_empty() {
        return "-".into();
    }
    if line.chars().count() <= MAX_REJECT_DETAIL_CHARS {
        return line.to_owned();
    }
    let mut cut: String = line.chars().take(MAX_REJECT_DETAIL_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// The message attributes a rejected message is forwarded with, all of type
/// `String`: the reason and the detail first, then the message's own
/// attributes (by name) while SQS's limits allow: at most
/// [`MAX_MESSAGE_ATTRIBUTES`], and body plus attributes within
/// [`MAX_MESSAGE_BYTES`]. If even the reason and detail do not fit beside the
/// body, the detail goes, then the reason: the body byte for byte matters
/// more than the note.
pub fn reject_attributes(message: &Message, reason: &str, detail: &str) -> Vec<(String, String)> {
    const STRING_TYPE_BYTES: usize = "String".len();
    let size = |name: &str, value: &str| name.len() + STRING_TYPE_BYTES + value.len();
    let mut room = MAX_MESSAGE_BYTES.saturating_sub(message.body.len());
    let mut out = Vec::new();
    let reason = if reason.is_empty() {
        "unknown".to_owned()
    } else {
        one_line(reason)
    };
    for (name, value) in [
        (REJECT_REASON_ATTRIBUTE, reason),
        (REJECT_DETAIL_ATTRIBUTE, one_line(detail)),
    ] {
        let bytes = size(name, &value);
        if bytes <= room {
            room -= bytes;
            out.push((name.to_owned(), value));
        }
    }
    for (name, value) in &message.attributes {
        if out.len() >= MAX_MESSAGE_ATTRIBUTES {
            break;
        }
        if name == REJECT_REASON_ATTRIBUTE || name == REJECT_DETAIL_ATTRIBUTE || value.is_empty() {
            continue;
        }
        let bytes = size(name, value);
        if bytes <= room {
            room -= bytes;
            out.push((name.clone(), value.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body: &str, attributes: &[(&str, &str)]) -> Message {
        Message {
            id: "m-1".into(),
            receipt: "r-1".into(),
            body: body.into(),
            receive_count: 1,
            first_received_at: None,
            attributes: attributes
                .iter()
                .map(|&(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }

    #[test]
    fn one_line_flattens_and_cuts() {
        assert_eq!(one_line("bad path\n  at line 3\r\n"), "bad path at line 3");
        assert_eq!(one_line(""), "-");
        assert_eq!(one_line("\n\t"), "-");
        let long = "é".repeat(300);
        let cut = one_line(&long);
        assert_eq!(cut.chars().count(), MAX_REJECT_DETAIL_CHARS);
        assert!(cut.ends_with('…'));
        assert_eq!(one_line(&"x".repeat(256)), "x".repeat(256));
    }

    #[test]
    fn check_body_follows_sqs_rules() {
        assert!(check_body("{\"paths\":[\"/a\"]}\n").is_ok());
        assert!(check_body("tab\there, émoji 🦀").is_ok());
        assert!(matches!(check_body(""), Err(QueueError::Invalid(_))));
        assert!(matches!(check_body("nul\0"), Err(QueueError::Invalid(_))));
        assert!(matches!(
            check_body("\u{FFFF}"),
            Err(QueueError::Invalid(_))
        ));
        assert!(check_body(&"a".repeat(MAX_MESSAGE_BYTES)).is_ok());
        assert!(matches!(
            check_body(&"a".repeat(MAX_MESSAGE_BYTES + 1)),
            Err(QueueError::Invalid(_))
        ));
    }

    #[test]
    fn receive_and_visibility_ranges() {
        assert!(check_receive(1, Duration::ZERO).is_ok());
        assert!(check_receive(10, MAX_WAIT).is_ok());
        assert!(check_receive(0, Duration::ZERO).is_err());
        assert!(check_receive(11, Duration::ZERO).is_err());
        assert!(check_receive(1, MAX_WAIT + Duration::from_millis(1)).is_err());
        assert_eq!(visibility_seconds(Duration::ZERO), Ok(0));
        assert_eq!(visibility_seconds(Duration::from_millis(1500)), Ok(2));
        assert_eq!(visibility_seconds(MAX_VISIBILITY), Ok(43_200));
        assert!(visibility_seconds(MAX_VISIBILITY + Duration::from_millis(1)).is_err());
    }

    #[test]
    fn reject_attributes_put_the_reason_first_and_keep_to_limits() {
        let many: Vec<(String, String)> =
            (0..12).map(|i| (format!("a{i:02}"), "v".into())).collect();
        let refs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let m = message("body", &refs);
        let attrs = reject_attributes(&m, "invalid_path", "path 3: no leading slash");
        assert_eq!(attrs.len(), MAX_MESSAGE_ATTRIBUTES);
        assert_eq!(
            attrs[0],
            (REJECT_REASON_ATTRIBUTE.into(), "invalid_path".into())
        );
        assert_eq!(
            attrs[1],
            (
                REJECT_DETAIL_ATTRIBUTE.into(),
                "path 3: no leading slash".into()
            )
        );
        assert_eq!(attrs[2].0, "a00");

        // An earlier rejection's notes are replaced, not repeated.
        let m = message(
            "body",
            &[(REJECT_REASON_ATTRIBUTE, "old"), ("trace", "t-1")],
        );
        let attrs = reject_attributes(&m, "malformed", "");
        assert_eq!(
            attrs,
            vec![
                (REJECT_REASON_ATTRIBUTE.into(), "malformed".into()),
                (REJECT_DETAIL_ATTRIBUTE.into(), "-".into()),
                ("trace".into(), "t-1".into()),
            ]
        );
    }

    #[test]
    fn reject_attributes_give_way_to_a_full_size_body() {
        let reason_bytes = REJECT_REASON_ATTRIBUTE.len() + "String".len() + "too_large".len();
        let body = "a".repeat(MAX_MESSAGE_BYTES - reason_bytes);
        let m = message(&body, &[("trace", "t")]);
        let attrs = reject_attributes(&m, "too_large", "a long detail that does not fit");
        assert_eq!(
            attrs,
            vec![(REJECT_REASON_ATTRIBUTE.into(), "too_large".into())]
        );
        let m = message(&"a".repeat(MAX_MESSAGE_BYTES), &[]);
        assert!(reject_attributes(&m, "too_large", "x").is_empty());
    }
}
