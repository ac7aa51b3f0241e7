//! The glue between the source and the pending set: one received message
//! is decoded, rejected, deleted at once (nothing to purge) or added to the
//! pending set. [`accept`] decides and changes the pending set only; the
//! queue calls it asks for come back as an [`Effect`], which the daemon
//! hands to a task of its own ([`carry_out`]) so that a slow queue never
//! holds up its loop. The daemon and the ingestion tests both go through
//! here, so they cannot drift apart.

use crate::decode::{self, RejectReason, Router};
use crate::pending::{Added, MessageId, PendingSet};
use crate::source::driver::{Body, Source, SourceEvent};
use crate::source::queue::Queue;

pub use crate::clock::{Clock, Now};

/// Per distribution, the paths of an S3 event's objects (those
/// `routing.skip` took included: the site serves them all the same) and
/// those of them whose objects were deleted, for the catalog.
pub type S3Objects = Vec<(String, Vec<crate::path::CfPath>, Vec<crate::path::CfPath>)>;

/// What became of one source event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ingested {
    /// Its paths now wait in the pending set. `requested` counts the
    /// request's paths (and tags) per distribution alias, duplicates
    /// included, those `routing.skip` took apart: they are in `skipped`.
    Pending {
        paths: usize,
        requested: Vec<(String, usize)>,
        skipped: Vec<(String, usize)>,
        s3_objects: S3Objects,
        /// Per distribution, the paths of the other requests (for a
        /// `learned` catalog).
        asked: Vec<(String, Vec<crate::path::CfPath>)>,
    },
    /// Already pending: nothing changed.
    Duplicate,
    /// Nothing to purge (an S3 test event, only keys outside every route,
    /// only paths `routing.skip` takes, counted in `skipped` per alias):
    /// deleted. The objects of an S3 event whose paths were all skipped are
    /// still served: the catalog follows them.
    Deleted {
        skipped: Vec<(String, usize)>,
        s3_objects: S3Objects,
    },
    /// Bad input: rejected with this reason.
    Rejected(RejectReason),
    /// A message re-queued as a fresh copy: forgotten here.
    Forgotten,
    /// The source is full: the waiting batches are due at once.
    SourceFull,
}

/// A queue call that ingesting asks for.
#[derive(Debug)]
pub enum Effect {
    /// Delete these messages (covered, or nothing to purge).
    Delete(Vec<MessageId>),
    /// Reject one message: to the dead-letter queue with the reason.
    Reject {
        id: MessageId,
        reason: RejectReason,
        detail: String,
        /// The body, while the message is being decoded: held until the
        /// reject is made, so that it is forwarded at once (without it, the
        /// message is made visible again and forwarded when next received).
        body: Option<Body>,
    },
}

/// Carries one effect out on the queue; returns how many messages were
/// deleted.
pub async fn carry_out<Q: Queue>(source: &Source<Q>, effect: Effect) -> usize {
    match effect {
        Effect::Delete(ids) => source.delete(&ids).await,
        Effect::Reject {
            id,
            reason,
            detail,
            body,
        } => {
            source.reject(&id, reason.as_str(), &detail).await;
            drop(body);
            0
        }
    }
}

/// Handles one event from the source: decides, changes the pending set, and
/// returns what to do on the queue.
pub fn accept(
    router: &Router,
    pending: &mut PendingSet,
    clock: &Clock,
    now: &Now,
    event: SourceEvent,
) -> (Ingested, Option<Effect>) {
    match event {
        SourceEvent::Requeued { id } => {
            pending.remove(&id);
            (Ingested::Forgotten, None)
        }
        SourceEvent::Full => {
            pending.source_full();
            (Ingested::SourceFull, None)
        }
        SourceEvent::Received {
            id,
            body,
            received_at,
            first_received_at,
        } => match decode::decode(&body, router) {
            Err(rejection) => {
                let reason = rejection.reason();
                let effect = Effect::Reject {
                    id,
                    reason,
                    detail: rejection.to_string(),
                    body: Some(body),
                };
                (Ingested::Rejected(reason), Some(effect))
            }
            Ok(requests) => match pending.add(&id, clock.at(received_at), &requests) {
                Added::Duplicate => (Ingested::Duplicate, None),
                Added::Empty => (
                    Ingested::Deleted {
                        skipped: skipped(&id, &requests),
                        s3_objects: by_origin(requests).0,
                    },
                    Some(Effect::Delete(vec![id])),
                ),
                Added::Pending { paths } => {
                    if let Some(first) = first_received_at {
                        pending.set_first_received(&id, now.mono_of(first));
                    }
                    for r in &requests {
                        if r.reason.is_some() || r.requested_by.is_some() {
                            tracing::info!(
                                message = %id,
                                distribution = %r.distribution,
                                paths = r.paths.len(),
                                reason = r.reason.as_deref().unwrap_or(""),
                                requested_by = r.requested_by.as_deref().unwrap_or(""),
                                "purge request"
                            );
                        }
                    }
                    let requested = requests
                        .iter()
                        .filter(|r| !r.paths.is_empty())
                        .map(|r| (r.distribution.clone(), r.paths.len()))
                        .collect();
                    let skipped = skipped(&id, &requests);
                    let (s3_objects, asked) = by_origin(requests);
                    let ingested = Ingested::Pending {
                        paths,
                        requested,
                        skipped,
                        s3_objects,
                        asked,
                    };
                    (ingested, None)
                }
            },
        },
    }
}

/// A message's requests split by where they came from: the objects of S3
/// events (see [`S3Objects`]) and, per distribution, the paths of the other
/// requests (for a `learned` catalog).
fn by_origin(
    requests: Vec<crate::decode::PurgeRequest>,
) -> (S3Objects, Vec<(String, Vec<crate::path::CfPath>)>) {
    let (mut s3_objects, mut asked) = (Vec::new(), Vec::new());
    for r in requests {
        match r.s3_removed {
            Some(removed) => {
                let mut objects = r.paths;
                objects.extend(r.skipped);
                s3_objects.push((r.distribution, objects, removed));
            }
            None => asked.push((r.distribution, r.paths)),
        }
    }
    (s3_objects, asked)
}

/// The paths `routing.skip` took from a newly added message, per
/// distribution, each logged at debug (a redelivery of a pending message
/// never gets here, so nothing is counted twice).
fn skipped(id: &str, requests: &[crate::decode::PurgeRequest]) -> Vec<(String, usize)> {
    requests
        .iter()
        .filter(|r| !r.skipped.is_empty())
        .map(|r| {
            for path in &r.skipped {
                tracing::debug!(message = %id, distribution = %r.distribution, path = %path, "path matches routing.skip; not purged");
            }
            (r.distribution.clone(), r.skipped.len())
        })
        .collect()
}

/// [`accept`] and [`carry_out`] in one, for callers without a task for the
/// queue's calls.
pub async fn ingest<Q: Queue>(
    source: &Source<Q>,
    router: &Router,
    pending: &mut PendingSet,
    clock: &Clock,
    event: SourceEvent,
) -> Ingested {
    let (ingested, effect) = accept(router, pending, clock, &clock.now(), event);
    if let Some(effect) = effect {
        carry_out(source, effect).await;
    }
    ingested
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::pending::BatchRules;

    const CONFIG: &str = r#"
[source]
kind = "local"
[distributions.www]
id = "E2ABCDEF123456"
[routing]
skip = ['\.[0-9a-f]{8}\.js$']
[[routing.s3]]
bucket = "site-bucket"
distribution = "www"
"#;

    fn s3_put(key: &str) -> String {
        serde_json::json!({"Records": [{
            "eventSource": "aws:s3",
            "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "site-bucket"}, "object": {"key": key}}
        }]})
        .to_string()
    }

    fn accept_body(router: &Router, pending: &mut PendingSet, id: &str, body: &str) -> Ingested {
        let clock = Clock::new();
        let now = clock.now();
        let event = SourceEvent::Received {
            id: id.into(),
            body: Body::new(body),
            received_at: now.instant,
            first_received_at: None,
        };
        accept(router, pending, &clock, &now, event).0
    }

    /// An S3 event whose every path `routing.skip` takes is deleted, and
    /// its object still reaches the catalog: the site serves it.
    #[test]
    fn an_all_skipped_s3_event_is_deleted_and_its_object_still_followed() {
        let config = Config::from_parts(Some(CONFIG), "test", std::iter::empty()).unwrap();
        let router = Router::new(&config);
        let mut pending = PendingSet::new(BatchRules::from(&config.batching));
        let asset = crate::path::CfPath::parse("/app.3f8a2c1d.js").unwrap();
        match accept_body(&router, &mut pending, "m1", &s3_put("app.3f8a2c1d.js")) {
            Ingested::Deleted {
                skipped,
                s3_objects,
            } => {
                assert_eq!(skipped, [("www".to_owned(), 1)]);
                assert_eq!(s3_objects, [("www".to_owned(), vec![asset], vec![])]);
            }
            other => panic!("{other:?}"),
        }
        // A page of the same deploy waits to be purged; its catalog entry
        // comes the same way.
        let page = crate::path::CfPath::parse("/index.html").unwrap();
        match accept_body(&router, &mut pending, "m2", &s3_put("index.html")) {
            Ingested::Pending { s3_objects, .. } => {
                assert_eq!(s3_objects, [("www".to_owned(), vec![page], vec![])]);
            }
            other => panic!("{other:?}"),
        }
    }
}
