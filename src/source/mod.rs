//! The `source` stage: where purge requests come from and where their
//! messages go once they are done with (deleted, re-queued or rejected).
//!
//! [`queue::Queue`] is the narrow contract the rest of the daemon relies on;
//! [`sqs::SqsQueue`] implements it on Amazon SQS and [`local::LocalQueue`]
//! in memory (for `source.kind = "local"` and as the fake in tests).
//! [`AnySource`] picks one at start-up, since the trait's `impl Future`
//! methods rule out `dyn Queue`.

pub mod driver;
pub mod local;
pub mod queue;
pub mod sqs;

use std::time::Duration;

use self::local::LocalQueue;
use self::queue::{Failed, Handle, Message, Queue, QueueDepth, QueueError};
use self::sqs::SqsQueue;

/// The queue chosen by `source.kind`, dispatching to the adapter inside.
#[derive(Clone, Debug)]
pub enum AnySource {
    /// `kind = "sqs"`.
    Sqs(SqsQueue),
    /// `kind = "local"`; clones share one queue, so `POST /v1/purge` and the
    /// pollers can hold the same one.
    Local(LocalQueue),
}

impl Queue for AnySource {
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Message>, QueueError> {
        match self {
            Self::Sqs(q) => q.receive(max, wait).await,
            Self::Local(q) => q.receive(max, wait).await,
        }
    }

    async fn set_visibility(
        &self,
        handles: &[Handle],
        timeout: Duration,
    ) -> Result<Vec<Failed>, QueueError> {
        match self {
            Self::Sqs(q) => q.set_visibility(handles, timeout).await,
            Self::Local(q) => q.set_visibility(handles, timeout).await,
        }
    }

    async fn delete(&self, handles: &[Handle]) -> Result<Vec<Failed>, QueueError> {
        match self {
            Self::Sqs(q) => q.delete(handles).await,
            Self::Local(q) => q.delete(handles).await,
        }
    }

    async fn reject(
        &self,
        message: &Message,
        reason: &str,
        detail: &str,
    ) -> Result<bool, QueueError> {
        match self {
            Self::Sqs(q) => q.reject(message, reason, detail).await,
            Self::Local(q) => q.reject(message, reason, detail).await,
        }
    }

    async fn requeue(&self, message: &Message) -> Result<(), QueueError> {
        match self {
            Self::Sqs(q) => q.requeue(message).await,
            Self::Local(q) => q.requeue(message).await,
        }
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        match self {
            Self::Sqs(q) => q.depth().await,
            Self::Local(q) => q.depth().await,
        }
    }

    async fn send(&self, body: &str) -> Result<String, QueueError> {
        match self {
            Self::Sqs(q) => q.send(body).await,
            Self::Local(q) => q.send(body).await,
        }
    }
}
