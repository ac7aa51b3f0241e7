//! `[coordination]`: replicas sharing one queue through a lease in a
//! DynamoDB table.

use serde::{Deserialize, Serialize};

use super::{Config, SourceKind, StoreKind, Validator};

/// `[coordination]`: replicas sharing one queue through a lease.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoordinationConfig {
    /// `none`: this daemon is alone; `dynamodb`: replicas share `table`.
    pub kind: CoordinationKind,
    /// The DynamoDB table (partition key `pk`, a string) holding the lease
    /// and, with `budget.store = "dynamodb"`, the ledger.
    pub table: String,
    /// How long a lease lasts without renewal. The leader renews every
    /// third of it and stands down at two thirds, so a standby taking a
    /// lapsed lease never finds the old leader still submitting.
    pub lease_seconds: u64,
    /// This replica's name in the lease and in its CallerReferences; when
    /// unset, the host name and process id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_id: Option<String>,
}

impl Default for CoordinationConfig {
    fn default() -> Self {
        CoordinationConfig {
            kind: CoordinationKind::None,
            table: "cfpurge".to_owned(),
            lease_seconds: 15,
            replica_id: None,
        }
    }
}

impl CoordinationConfig {
    /// This replica's id: the configured one, else the host name and the
    /// process id (a restarted process is a new holder of the lease).
    pub fn replica(&self) -> String {
        if let Some(id) = &self.replica_id {
            return id.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_default();
        let host: String = host
            .trim()
            .chars()
            .filter(|c| replica_char(*c))
            .take(MAX_REPLICA_ID - 12)
            .collect();
        let host = if host.is_empty() {
            "cfpurge".to_owned()
        } else {
            host
        };
        format!("{host}-{}", std::process::id())
    }
}

/// The longest `coordination.replica_id`: it goes into every
/// CallerReference, which leaves room for the rest of the reference.
pub const MAX_REPLICA_ID: usize = 64;

/// Characters a replica id may hold: safe in a CallerReference, a log
/// line and a DynamoDB attribute, and free of the `-`-less ambiguity of
/// spaces or slashes.
fn replica_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// The longest `coordination.lease_seconds`: a lease item whose expiry
/// lies further ahead than this was not written by a replica whose clock
/// agrees with the reader's.
pub const MAX_LEASE_SECONDS: u64 = 3600;

choice! {
    /// `coordination.kind`
    pub enum CoordinationKind ("a coordination kind") {
        /// This daemon is the only one.
        None = "none",
        /// Replicas share a DynamoDB table; the lease holder works.
        Dynamodb = "dynamodb",
    }
}

impl Config {
    pub(super) fn check_coordination(&self, v: &mut Validator) {
        let c = &self.coordination;
        let dynamodb = c.kind == CoordinationKind::Dynamodb;
        if dynamodb && self.budget.store != StoreKind::Dynamodb {
            v.push(
                "budget.store",
                "must be \"dynamodb\" with coordination.kind = \"dynamodb\": \
                 replicas share one ledger (move a file ledger there with `cfpurge ledger import`)",
            );
        }
        if dynamodb && self.source.kind != SourceKind::Sqs {
            v.push(
                "coordination.kind",
                "\"dynamodb\" needs source.kind = \"sqs\": replicas share one queue",
            );
        }
        if dynamodb || self.budget.store == StoreKind::Dynamodb {
            let t = &c.table;
            let ok = (3..=255).contains(&t.len())
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            if !ok {
                v.push(
                    "coordination.table",
                    format!(
                        "{t:?} is not a DynamoDB table name (3 to 255 of a-z, A-Z, 0-9, _, - and .)"
                    ),
                );
            }
        }
        // Renewing every third of the lease needs a second at least.
        v.range(
            "coordination.lease_seconds",
            c.lease_seconds,
            3,
            MAX_LEASE_SECONDS,
        );
        if let Some(id) = &c.replica_id {
            if id.is_empty() {
                v.push(
                    "coordination.replica_id",
                    "must not be empty (or leave it unset for host name and process id)",
                );
            } else if id.len() > MAX_REPLICA_ID || !id.chars().all(replica_char) {
                v.push(
                    "coordination.replica_id",
                    format!(
                        "{id:?} must be 1 to {MAX_REPLICA_ID} of A-Z, a-z, 0-9, -, _ and . \
                         (it goes into CallerReferences)"
                    ),
                );
            }
        }
    }
}
