//! `[source]`: the queue purge requests are read from, and how much of it
//! may be held at once.

use serde::{Deserialize, Serialize};

use super::{Config, MIB, Validator};

/// `[source]`: the queue the daemon reads purge requests from.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourceConfig {
    /// `sqs` in production; `local` runs an in-memory queue fed by
    /// `POST /v1/purge`, so the daemon runs without an AWS account.
    pub kind: SourceKind,
    /// The SQS queue to long-poll; required with `kind = "sqs"`, ignored
    /// with `local`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_url: Option<String>,
    /// Where rejected messages are forwarded with their reason before being
    /// deleted; without it they stay for the queue's own redrive policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter_queue_url: Option<String>,
    /// Concurrent long-poll loops: one receive returns at most 10 messages,
    /// so a busy queue needs several.
    pub pollers: u32,
    /// Long-poll wait per receive (SQS allows 0 to 20); longer means fewer
    /// empty receives, which SQS bills.
    pub wait_time_seconds: u64,
    /// Visibility given to a received message; the daemon extends it before
    /// it runs out while the message waits, so this bounds how soon a
    /// message reappears after a crash (SQS allows up to 43,200).
    pub visibility_timeout_seconds: u64,
    /// Receiving pauses while this many messages are held: backpressure so
    /// that a backlog stays in SQS rather than in memory.
    pub max_pending_messages: usize,
    /// ...or while the messages held take this many bytes (an estimate:
    /// bodies until decoded, then the decoded paths, and the receipts), so
    /// that memory is bounded by size and not only by count. With
    /// `kind = "local"`, the in-memory queue also refuses new requests (503)
    /// once it holds this many bytes or `max_pending_messages` messages.
    pub max_pending_bytes: u64,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            kind: SourceKind::Sqs,
            queue_url: None,
            dead_letter_queue_url: None,
            pollers: 2,
            wait_time_seconds: 20,
            visibility_timeout_seconds: 120,
            max_pending_messages: 50_000,
            max_pending_bytes: 256 * MIB,
        }
    }
}

choice! {
    /// `source.kind`
    pub enum SourceKind ("a source kind") {
        /// Long-poll an SQS queue.
        Sqs = "sqs",
        /// An in-memory queue fed by `POST /v1/purge`.
        Local = "local",
    }
}

/// Most `source.max_pending_messages`: SQS keeps at most 120,000 messages in
/// flight per queue.
const MAX_PENDING_MESSAGES: u64 = 120_000;

/// Most `source.max_pending_bytes` (1 TiB): far above any machine's memory,
/// and small enough to add to without overflow.
const MAX_PENDING_BYTES: u64 = 1 << 40;

impl Config {
    pub(super) fn check_source(&self, v: &mut Validator) {
        let s = &self.source;
        if s.kind == SourceKind::Sqs {
            match s.queue_url.as_deref() {
                None | Some("") => v.push(
                    "source.queue_url",
                    "is required with source.kind = \"sqs\" (or set kind = \"local\")",
                ),
                url => v.url("source.queue_url", url),
            }
        }
        v.url(
            "source.dead_letter_queue_url",
            s.dead_letter_queue_url.as_deref(),
        );
        if s.kind == SourceKind::Sqs
            && s.dead_letter_queue_url.is_some()
            && s.dead_letter_queue_url == s.queue_url
        {
            v.push(
                "source.dead_letter_queue_url",
                "is the same queue as source.queue_url: rejected messages would come back",
            );
        }
        v.range("source.pollers", s.pollers.into(), 1, 64);
        v.range("source.wait_time_seconds", s.wait_time_seconds, 0, 20);
        v.range(
            "source.visibility_timeout_seconds",
            s.visibility_timeout_seconds,
            1,
            43_200,
        );
        v.range(
            "source.max_pending_messages",
            s.max_pending_messages as u64,
            1,
            MAX_PENDING_MESSAGES,
        );
        // One message of the largest size must fit.
        v.range(
            "source.max_pending_bytes",
            s.max_pending_bytes,
            MIB,
            MAX_PENDING_BYTES,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{keys, minimal};

    #[test]
    fn sqs_needs_a_queue_url_and_local_does_not() {
        let mut cfg = minimal();
        cfg.source.queue_url = None;
        assert_eq!(keys(&cfg), ["source.queue_url"]);
        cfg.source.queue_url = Some("sqs.example".into());
        assert_eq!(keys(&cfg), ["source.queue_url"]);
        cfg.source.kind = SourceKind::Local;
        cfg.source.queue_url = None;
        assert_eq!(cfg.problems(), vec![]);
    }

    #[test]
    fn dead_letter_queue_must_differ() {
        let mut cfg = minimal();
        cfg.source.dead_letter_queue_url = cfg.source.queue_url.clone();
        assert_eq!(keys(&cfg), ["source.dead_letter_queue_url"]);
    }
}
