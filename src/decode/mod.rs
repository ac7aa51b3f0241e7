//! Decode: an SQS message body in, the purge requests it asks for out (one
//! per distribution), or the reason the whole message is rejected. Pure and
//! synchronous: no I/O, no clock; the caller logs, counts and forwards.
//!
//! A body is recognised by its shape, as docs/interface.md lists the formats:
//!
//! - an SNS `Notification` envelope is unwrapped once and its `Message`
//!   decoded as any of the formats below;
//! - a body starting with `{` or `[` is JSON and never plain text: an S3
//!   event notification (`Records`), S3's `s3:TestEvent`, an EventBridge
//!   event (`source`, `detail-type`) or a native request (`paths`, ...);
//! - anything else is plain text, one path per line.
//!
//! A JSON body is read twice: a cheap first pass notes which top-level keys
//! are present and keeps the few strings that tell the formats apart
//! (`Type`, `Message`, `Event`, `source`, `detail-type`), skipping every
//! other value unread; then the body is read again into the one typed
//! structure its shape calls for, so that every error names what that
//! format expected.
//!
//! Requested paths (native, plain text) go through [`CfPath::parse`]; S3 object
//! keys name one object literally and go through [`CfPath::literal`] after
//! the [`Router`] has mapped them to a distribution and a path. Cache tags
//! (native requests only) go through [`CfPath::tag`].
//!
//! Last, whatever the format, every path matching one of `routing.skip`'s
//! patterns is moved out of the request's paths into its `skipped` list
//! ([`Router::skip`]): it is counted, never planned.

mod native;
mod rejection;
mod route;
mod s3;
mod text;

#[cfg(test)]
mod tests;

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::path::CfPath;

pub use rejection::{PathSource, RejectReason, Rejection, Snippet};
pub use route::{KeyMapping, Router};

/// SQS's limit on a message body; a larger body cannot have come from SQS
/// and is not parsed.
pub const MAX_BODY_BYTES: usize = 1_048_576;

/// At most this many paths in one message, all distributions together
/// (cache tags included, which count with exact paths): CloudFront's
/// in-flight limit for exact paths, so one message can always be covered
/// by one invalidation.
pub const MAX_PATHS_PER_MESSAGE: usize = crate::path::MAX_INFLIGHT_EXACT;

/// Longest `reason` or `requested_by`, in characters; they are logged, and a
/// log line should stay a line.
pub const MAX_TEXT_CHARS: usize = 256;

/// One purge request for one distribution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurgeRequest {
    /// The configured alias, also when the request named the distribution
    /// by its id: metrics and the pending set are keyed by alias.
    pub distribution: String,
    /// Validated and encoded paths, and the cache tags of a native request
    /// (`#name`, each tag once whatever its case, first spelling kept).
    /// Never empty unless `routing.skip` took every path (see `skipped`).
    pub paths: Vec<CfPath>,
    /// The paths `routing.skip` dropped: counted and logged, never planned.
    pub skipped: Vec<CfPath>,
    /// Skip the quiet window (native requests only).
    pub urgent: bool,
    /// Free text for the logs (native requests only); at most
    /// [`MAX_TEXT_CHARS`] characters, control characters replaced by spaces.
    pub reason: Option<String>,
    /// Who asked (native requests only); same limits as `reason`.
    pub requested_by: Option<String>,
    /// From S3 events: which of `paths` stand for objects deleted
    /// (`ObjectRemoved`); the others were created or overwritten. A
    /// distribution's catalog follows them between full listings.
    pub s3_removed: Option<Vec<CfPath>>,
}

/// Decodes an SQS message body into purge requests, one per distribution.
///
/// `Ok(vec![])` means there is nothing to purge and the message can be
/// deleted: an `s3:TestEvent`, S3 events for keys outside every route, event
/// types that change no content, a plain-text body of comments only. So does
/// a list of requests whose every path `routing.skip` took.
pub fn decode(body: &str, router: &Router) -> Result<Vec<PurgeRequest>, Rejection> {
    if body.len() > MAX_BODY_BYTES {
        return Err(Rejection::BodyTooLarge { bytes: body.len() });
    }
    let mut requests = decode_any(body, router, Envelope::Outer)?;
    for r in &mut requests {
        router.skip(r);
    }
    Ok(requests)
}

/// [`decode`] for a body as raw bytes; invalid UTF-8 is `malformed`.
pub fn decode_bytes(body: &[u8], router: &Router) -> Result<Vec<PurgeRequest>, Rejection> {
    decode(utf8(body)?, router)
}

/// Decodes a body for `POST /v1/purge`, which takes only the native format:
/// the body goes through the same steps as an SQS message's (size, UTF-8,
/// byte-order mark, the first pass that tells the JSON formats apart, the
/// native parser), so it is refused exactly when [`decode`] would reject it,
/// and also when it is in another format than the native one (plain text,
/// an S3 event, an SNS envelope...) or empty.
pub fn decode_native(body: &[u8], router: &Router) -> Result<PurgeRequest, Rejection> {
    let body = utf8(body)?;
    let body = body.strip_prefix('\u{FEFF}').unwrap_or(body);
    if body.trim().is_empty() {
        return Err(Rejection::EmptyBody);
    }
    if !looks_like_json(body) {
        // Plain text for the queue; here, JSON that is not valid.
        return Err(match serde_json::from_str::<IgnoredAny>(body) {
            Err(e) => Rejection::InvalidJson(rejection::one_line(&e.to_string())),
            Ok(_) => Rejection::malformed(
                native::FORMAT,
                "the body is a JSON value, not an object; POST /v1/purge takes the native format only",
            ),
        });
    }
    let keys = first_pass(body)?;
    match keys.format() {
        Format::Native => native::decode(body, router).map(|mut r| {
            router.skip(&mut r);
            r
        }),
        Format::Unknown => Err(Rejection::UnknownShape {
            found: keys.describe(),
        }),
        other => Err(Rejection::malformed(
            native::FORMAT,
            format!(
                "the body is {}; POST /v1/purge takes the native format only",
                other.describe()
            ),
        )),
    }
}

/// The size check, then UTF-8: the order matters, so that an oversize body
/// is reported as `too_large` whatever its bytes.
fn utf8(body: &[u8]) -> Result<&str, Rejection> {
    if body.len() > MAX_BODY_BYTES {
        return Err(Rejection::BodyTooLarge { bytes: body.len() });
    }
    std::str::from_utf8(body).map_err(|e| Rejection::NotUtf8 {
        offset: e.valid_up_to(),
    })
}

/// Whether the body being decoded came out of an SNS envelope: the envelope
/// is unwrapped once, never twice.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Envelope {
    Outer,
    InsideSns,
}

fn decode_any(
    body: &str,
    router: &Router,
    envelope: Envelope,
) -> Result<Vec<PurgeRequest>, Rejection> {
    // Some tools put a byte-order mark in front of text; it is never part of
    // a path.
    let body = body.strip_prefix('\u{FEFF}').unwrap_or(body);
    if looks_like_json(body) {
        decode_json(body, router, envelope)
    } else {
        text::decode(body, router).map(|r| r.into_iter().collect())
    }
}

/// A body starting with `{` or `[` is JSON and never plain text.
fn looks_like_json(body: &str) -> bool {
    matches!(body.trim_start().chars().next(), Some('{' | '['))
}

/// The first pass over a JSON body: which keys tell its format.
fn first_pass(body: &str) -> Result<Keys<'_>, Rejection> {
    match serde_json::from_str::<Shape>(body) {
        Ok(Shape::Object(keys)) => Ok(keys),
        Ok(Shape::Array) => Err(Rejection::UnknownShape {
            found: "an array".into(),
        }),
        Err(e) => Err(Rejection::InvalidJson(rejection::one_line(&e.to_string()))),
    }
}

/// The JSON formats, in the order their keys are looked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Sns,
    S3Notification,
    S3TestEvent,
    EventBridge,
    Native,
    Unknown,
}

impl Format {
    fn describe(self) -> &'static str {
        match self {
            Format::Sns => "an SNS message",
            Format::S3Notification => "an S3 event notification",
            Format::S3TestEvent => "an S3 test event",
            Format::EventBridge => "an EventBridge event",
            Format::Native => "a native request",
            Format::Unknown => "of no known format",
        }
    }
}

fn decode_json(
    body: &str,
    router: &Router,
    envelope: Envelope,
) -> Result<Vec<PurgeRequest>, Rejection> {
    let keys = first_pass(body)?;
    match keys.format() {
        Format::Sns => {
            if envelope == Envelope::InsideSns {
                return Err(Rejection::malformed(
                    "SNS notification",
                    "its Message is itself an SNS envelope; only one is unwrapped",
                ));
            }
            let kind = keys.sns_type.as_deref().unwrap_or_default();
            match (kind, keys.sns_message) {
                ("Notification", Some(message)) => {
                    decode_any(&message, router, Envelope::InsideSns)
                }
                ("Notification", None) => Err(Rejection::malformed(
                    "SNS notification",
                    "has no \"Message\" string",
                )),
                // A subscription that needs confirming lands in the queue
                // once; rejecting it keeps its SubscribeURL in the
                // dead-letter queue where an operator can find it.
                (other, _) => Err(Rejection::malformed(
                    "SNS message",
                    format!(
                        "Type {} is not a Notification (confirm a subscription with its SubscribeURL)",
                        Snippet::short(other)
                    ),
                )),
            }
        }
        Format::S3Notification => s3::decode_notification(body, router),
        Format::S3TestEvent => {
            tracing::debug!("s3 test event; nothing to purge");
            Ok(Vec::new())
        }
        Format::EventBridge => s3::decode_eventbridge(
            body,
            keys.source.as_deref(),
            keys.detail_type.as_deref(),
            router,
        ),
        Format::Native => native::decode(body, router).map(|r| vec![r]),
        Format::Unknown => Err(Rejection::UnknownShape {
            found: keys.describe(),
        }),
    }
}

/// The top level of a JSON body, as much as is needed to pick its format.
enum Shape<'a> {
    Object(Keys<'a>),
    Array,
}

/// Which of the keys that tell the formats apart a JSON object has.
#[derive(Default)]
struct Keys<'a> {
    /// `Type`, when a string: an SNS envelope.
    sns_type: Option<Cow<'a, str>>,
    /// `Message`, when a string: the SNS payload.
    sns_message: Option<Cow<'a, str>>,
    /// `Records`: an S3 event notification.
    records: bool,
    /// `Event` is `"s3:TestEvent"`.
    s3_test_event: bool,
    /// `source` or `detail-type` present: an EventBridge event.
    eventbridge: bool,
    /// `source`, when a string.
    source: Option<Cow<'a, str>>,
    /// `detail-type`, when a string.
    detail_type: Option<Cow<'a, str>>,
    /// Any key of the native format.
    native: bool,
    /// The first few other keys, to say what the body looked like.
    others: Vec<Snippet>,
    /// How many other keys there were.
    other_count: usize,
}

/// How many unknown keys a rejection quotes.
const QUOTED_KEYS: usize = 3;

impl Keys<'_> {
    /// The format these keys make the body, in the queue decoder's order.
    fn format(&self) -> Format {
        if self.sns_type.is_some() {
            Format::Sns
        } else if self.records {
            Format::S3Notification
        } else if self.s3_test_event {
            Format::S3TestEvent
        } else if self.eventbridge {
            Format::EventBridge
        } else if self.native {
            Format::Native
        } else {
            Format::Unknown
        }
    }

    fn describe(&self) -> String {
        if self.other_count == 0 {
            return "an empty JSON object".into();
        }
        let mut s = String::from("a JSON object with keys ");
        for (i, k) in self.others.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            s.push_str(k.as_str());
        }
        if self.other_count > self.others.len() {
            s.push_str(&format!(
                " and {} more",
                self.other_count - self.others.len()
            ));
        }
        s
    }
}

impl<'de> Deserialize<'de> for Shape<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ShapeVisitor)
    }
}

struct ShapeVisitor;

impl<'de> Visitor<'de> for ShapeVisitor {
    type Value = Shape<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object or array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Shape::Array)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape<'de>, A::Error> {
        let mut keys = Keys::default();
        while let Some(key) = map.next_key::<Str>()? {
            match &*key {
                "Type" => keys.sns_type = map.next_value::<MaybeString>()?.0,
                "Message" => keys.sns_message = map.next_value::<MaybeString>()?.0,
                "Records" => {
                    map.next_value::<IgnoredAny>()?;
                    keys.records = true;
                }
                "Event" => {
                    let event = map.next_value::<MaybeString>()?.0;
                    keys.s3_test_event = event.as_deref() == Some("s3:TestEvent");
                }
                "source" => {
                    keys.source = map.next_value::<MaybeString>()?.0;
                    keys.eventbridge = true;
                }
                "detail-type" => {
                    keys.detail_type = map.next_value::<MaybeString>()?.0;
                    keys.eventbridge = true;
                }
                "distribution" | "paths" | "tags" | "urgent" | "reason" | "requested_by" => {
                    map.next_value::<IgnoredAny>()?;
                    keys.native = true;
                }
                other => {
                    map.next_value::<IgnoredAny>()?;
                    keys.other_count += 1;
                    if keys.others.len() < QUOTED_KEYS {
                        keys.others.push(Snippet::short(other));
                    }
                }
            }
        }
        Ok(Shape::Object(keys))
    }
}

/// A JSON value kept when it is a string (borrowed from the body when it
/// has no escapes) and skipped otherwise: the first pass must accept any
/// value so that a wrong type is reported by the format's own parser, which
/// knows what it expected.
struct MaybeString<'a>(Option<Cow<'a, str>>);

impl<'de> Deserialize<'de> for MaybeString<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MaybeStringVisitor)
    }
}

struct MaybeStringVisitor;

impl<'de> Visitor<'de> for MaybeStringVisitor {
    type Value = MaybeString<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(MaybeString(Some(Cow::Borrowed(v))))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(MaybeString(Some(Cow::Owned(v.to_owned()))))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(MaybeString(Some(Cow::Owned(v))))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(MaybeString(None))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(MaybeString(None))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(MaybeString(None))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(MaybeString(None))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(MaybeString(None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(MaybeString(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(MaybeString(None))
    }
}

/// A JSON string, borrowed from the body when it has no escapes: paths and
/// keys are read without a copy in the common case.
struct Str<'a>(Cow<'a, str>);

impl std::ops::Deref for Str<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor)
    }
}

struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Str<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Str(Cow::Owned(v)))
    }
}
