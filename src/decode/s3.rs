//! S3 object events, as S3 sends them to SQS or SNS (`{"Records": [...]}`)
//! and as EventBridge delivers them (`"source": "aws.s3"`). Each names a
//! bucket and an object key; the [`Router`] turns those into paths.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;
use serde::Deserialize;

use super::rejection::{Rejection, Snippet};
use super::route::Grouper;
use super::{PurgeRequest, Router, Str};

const NOTIFICATION: &str = "S3 event notification";
const EVENTBRIDGE: &str = "EventBridge event";

/// `{"Records": [...]}`; the fields S3 sends beyond these are not needed.
#[derive(Deserialize)]
#[serde(expecting = "an S3 event notification object")]
struct Notification<'a> {
    #[serde(rename = "Records", borrow)]
    records: Vec<Record<'a>>,
}

#[derive(Deserialize)]
struct Record<'a> {
    #[serde(rename = "eventSource", borrow)]
    event_source: Str<'a>,
    /// `ObjectCreated:Put`, `ObjectRemoved:Delete`, ...
    #[serde(rename = "eventName", borrow)]
    event_name: Str<'a>,
    #[serde(borrow)]
    s3: Entity<'a>,
}

#[derive(Deserialize)]
struct Entity<'a> {
    #[serde(borrow)]
    bucket: Bucket<'a>,
    #[serde(borrow)]
    object: Object<'a>,
}

#[derive(Deserialize)]
struct Bucket<'a> {
    #[serde(borrow)]
    name: Str<'a>,
}

#[derive(Deserialize)]
struct Object<'a> {
    #[serde(borrow)]
    key: Str<'a>,
}

/// An EventBridge event's `detail`, once `source` and `detail-type` have
/// said it is an S3 object event.
#[derive(Deserialize)]
#[serde(expecting = "an EventBridge event object")]
struct EventBridge<'a> {
    #[serde(borrow)]
    detail: Entity<'a>,
}

pub(super) fn decode_notification(
    body: &str,
    router: &Router,
) -> Result<Vec<PurgeRequest>, Rejection> {
    let n: Notification =
        serde_json::from_str(body).map_err(|e| Rejection::from_json(NOTIFICATION, &e))?;
    let mut out = Grouper::default();
    for (i, r) in n.records.iter().enumerate() {
        if &*r.event_source != "aws:s3" {
            return Err(Rejection::malformed(
                NOTIFICATION,
                format!(
                    "Records[{i}].eventSource is {}, not \"aws:s3\"",
                    Snippet::short(&r.event_source)
                ),
            ));
        }
        // Notification configurations spell the types `s3:ObjectCreated:*`;
        // records carry them without the `s3:`, but accept both.
        let name = r.event_name.strip_prefix("s3:").unwrap_or(&r.event_name);
        if !(name.starts_with("ObjectCreated:") || name.starts_with("ObjectRemoved:")) {
            tracing::debug!(event = name, "s3 event changes no content; skipped");
            continue;
        }
        out.removing = name.starts_with("ObjectRemoved:");
        let key = form_decode(&r.s3.object.key).ok_or_else(|| {
            Rejection::malformed(
                NOTIFICATION,
                format!(
                    "Records[{i}].s3.object.key {} is not UTF-8 once decoded",
                    Snippet::new(&r.s3.object.key)
                ),
            )
        })?;
        route(NOTIFICATION, &r.s3.bucket.name, &key, router, &mut out)?;
    }
    out.finish()
}

/// An EventBridge event whose `source` and `detail-type` the first pass
/// has read.
pub(super) fn decode_eventbridge(
    body: &str,
    source: Option<&str>,
    detail_type: Option<&str>,
    router: &Router,
) -> Result<Vec<PurgeRequest>, Rejection> {
    let (Some(source), Some(detail_type)) = (source, detail_type) else {
        return Err(Rejection::malformed(
            EVENTBRIDGE,
            "needs \"source\" and \"detail-type\" strings",
        ));
    };
    if source != "aws.s3" {
        return Err(Rejection::malformed(
            EVENTBRIDGE,
            format!(
                "source is {}; only \"aws.s3\" events are purge requests",
                Snippet::short(source)
            ),
        ));
    }
    if !matches!(detail_type, "Object Created" | "Object Deleted") {
        tracing::debug!(detail_type, "s3 event changes no content; skipped");
        return Ok(Vec::new());
    }
    let e: EventBridge =
        serde_json::from_str(body).map_err(|e| Rejection::from_json(EVENTBRIDGE, &e))?;
    let mut out = Grouper::default();
    out.removing = detail_type == "Object Deleted";
    // EventBridge gives the key as it is, not form-encoded.
    route(
        EVENTBRIDGE,
        &e.detail.bucket.name,
        &e.detail.object.key,
        router,
        &mut out,
    )?;
    out.finish()
}

fn route(
    format: &'static str,
    bucket: &str,
    key: &str,
    router: &Router,
    out: &mut Grouper,
) -> Result<(), Rejection> {
    // S3 has no object with an empty key; without this check it would
    // purge the route's path_prefix.
    if key.is_empty() {
        return Err(Rejection::malformed(format, "object key is empty"));
    }
    router.route_key(bucket, key, out)
}

/// S3 notification keys are form-URL-encoded: `+` is a space, `%XX` a
/// byte. `None` when the bytes are not UTF-8.
fn form_decode(key: &str) -> Option<Cow<'_, str>> {
    if !key.contains(['+', '%']) {
        return Some(Cow::Borrowed(key));
    }
    let spaced = key.replace('+', " ");
    let decoded = percent_decode_str(&spaced).decode_utf8().ok()?;
    Some(Cow::Owned(decoded.into_owned()))
}
