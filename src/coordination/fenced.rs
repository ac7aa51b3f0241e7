//! One replica's writes to the shared table: the table's client and the
//! fence every write is conditional on. The ledger's store
//! ([`crate::budget::DynamoStore`]) and the learned catalogs
//! ([`crate::catalog::learned_store`]) share one, so that a replica that
//! stands down stops writing all of its items at once.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use aws_sdk_dynamodb::Client;

use super::dynamo::Fence;

/// The shared table as this replica writes it. Clones share one client
/// and one fence.
#[derive(Clone)]
pub struct FencedTable {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    table: String,
    /// With a fence, writes hold only while it holds the lease; `fenced`
    /// without one refuses every write (a standby).
    fence: Mutex<Fencing>,
}

#[derive(Clone, Debug)]
enum Fencing {
    /// Writes conditional on the version only (one daemon, no lease).
    Unfenced,
    /// Writes conditional on holding the lease too; `None` while this
    /// replica is not the leader: every write is refused.
    Fenced(Option<Fence>),
}

/// A write refused before it is made: this replica holds no lease.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("this replica is not the leader: it does not write to the table")]
pub struct NotLeader;

impl fmt::Debug for FencedTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FencedTable")
            .field("table", &self.inner.table)
            .finish_non_exhaustive()
    }
}

impl AsRef<FencedTable> for FencedTable {
    fn as_ref(&self) -> &FencedTable {
        self
    }
}

impl FencedTable {
    /// `table` reached with `client`. With `fenced`, writes are refused
    /// until [`FencedTable::set_fence`] names the lease this replica holds.
    pub fn new(client: Client, table: &str, fenced: bool) -> FencedTable {
        FencedTable {
            inner: Arc::new(Inner {
                client,
                table: table.to_owned(),
                fence: Mutex::new(if fenced {
                    Fencing::Fenced(None)
                } else {
                    Fencing::Unfenced
                }),
            }),
        }
    }

    /// The table.
    pub fn table(&self) -> &str {
        &self.inner.table
    }

    /// A client of the table.
    pub fn client(&self) -> Client {
        self.inner.client.clone()
    }

    /// Whether writes follow a lease (replicas), not only versions.
    pub fn is_fenced(&self) -> bool {
        matches!(*self.fence(), Fencing::Fenced(_))
    }

    /// From now on, writes hold only while `fence` holds the lease; `None`
    /// refuses every write (this replica stood down). Only for a table
    /// made with `fenced`.
    pub fn set_fence(&self, fence: Option<Fence>) {
        if let Fencing::Fenced(f) = &mut *self.fence() {
            *f = fence;
        }
    }

    /// What a write must be conditional on now: `None`, the version only
    /// (no lease); the fence of the lease this replica holds; refused when
    /// it holds none (a standby, or a replica that stood down).
    pub fn write_fence(&self) -> Result<Option<Fence>, NotLeader> {
        match self.fence().clone() {
            Fencing::Unfenced => Ok(None),
            Fencing::Fenced(Some(fence)) => Ok(Some(fence)),
            Fencing::Fenced(None) => Err(NotLeader),
        }
    }

    fn fence(&self) -> MutexGuard<'_, Fencing> {
        self.inner
            .fence
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .build();
        Client::from_conf(config)
    }

    #[test]
    fn a_fenced_table_writes_only_under_the_lease_it_was_given() {
        let fence = Fence {
            replica: "a".to_owned(),
            fencing: 7,
        };
        let unfenced = FencedTable::new(client(), "cfpurge", false);
        assert_eq!(unfenced.write_fence(), Ok(None));
        unfenced.set_fence(None);
        assert_eq!(
            unfenced.write_fence(),
            Ok(None),
            "no lease, nothing to lose"
        );

        let fenced = FencedTable::new(client(), "cfpurge", true);
        let shared = fenced.clone();
        assert_eq!(fenced.write_fence(), Err(NotLeader), "a standby");
        fenced.set_fence(Some(fence.clone()));
        assert_eq!(shared.write_fence(), Ok(Some(fence)), "clones share it");
        shared.set_fence(None);
        assert_eq!(fenced.write_fence(), Err(NotLeader), "stood down");
        assert!(fenced.is_fenced() && !unfenced.is_fenced());
    }
}
