//! The glue between the source and the pending set: one received message
//! is decoded, rejected, deleted at once (nothing to purge) or added to the
//! pending set; and covered messages are deleted. The daemon's main loop
//! and the ingestion tests both go through here, so they cannot drift apart.

use tokio::time::Instant;

use crate::decode::{self, RejectReason, Router};
use crate::pending::{Added, Millis, PendingSet};
use crate::source::driver::{Source, SourceEvent};
use crate::source::queue::Queue;

/// The process's clock for the pure stages: milliseconds since start-up,
/// on tokio's clock so that tests can pause and advance it.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            start: Instant::now(),
        }
    }

    pub fn now(&self) -> Millis {
        self.at(Instant::now())
    }

    pub fn at(&self, t: Instant) -> Millis {
        t.saturating_duration_since(self.start).as_millis() as Millis
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// What became of one source event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ingested {
    /// Its paths now wait in the pending set. `requested` counts the
    /// request's paths per distribution alias, duplicates included.
    Pending {
        paths: usize,
        requested: Vec<(String, usize)>,
    },
    /// Already pending: nothing changed.
    Duplicate,
    /// Nothing to purge (an S3 test event, only skipped keys): deleted.
    Deleted,
    /// Bad input: rejected with this reason.
    Rejected(RejectReason),
    /// A message re-queued as a fresh copy: forgotten here.
    Forgotten,
}

/// Handles one event from the source.
pub async fn ingest<Q: Queue>(
    source: &Source<Q>,
    router: &Router,
    pending: &mut PendingSet,
    clock: &Clock,
    event: SourceEvent,
) -> Ingested {
    match event {
        SourceEvent::Requeued { id } => {
            pending.remove(&id);
            Ingested::Forgotten
        }
        SourceEvent::Received {
            id,
            body,
            received_at,
        } => match decode::decode(&body, router) {
            Err(rejection) => {
                let reason = rejection.reason();
                source
                    .reject(&id, reason.as_str(), &rejection.to_string())
                    .await;
                Ingested::Rejected(reason)
            }
            Ok(requests) => match pending.add(&id, clock.at(received_at), &requests) {
                Added::Pending { paths } => Ingested::Pending {
                    paths,
                    requested: requests
                        .iter()
                        .map(|r| (r.distribution.clone(), r.paths.len()))
                        .collect(),
                },
                Added::Duplicate => Ingested::Duplicate,
                Added::Empty => {
                    source.delete(std::slice::from_ref(&id)).await;
                    Ingested::Deleted
                }
            },
        },
    }
}
