//! The ledger as an item of the coordination table (`pk = "ledger"`), for
//! replicas and for containers without a durable disk.
//!
//! Every write is conditional: on the version last read or written (so two
//! writers never overwrite each other's figures unseen) and, once a fence
//! is set, on that replica still holding the lease with that fencing number
//! (one transaction with a condition check on the lease item), so a
//! deposed leader, paused and resumed, can never change the ledger.
//!
//! [`LedgerStore`] is synchronous, like the file's fsync: each call is
//! handed to a thread of the store's own, which makes the DynamoDB call
//! with a timeout, and the caller waits for the answer (the caller's
//! worker thread is marked as blocking meanwhile, so the runtime's other
//! tasks run on).

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, mpsc as sync_mpsc};
use std::time::Duration;

use aws_config::SdkConfig;
use tokio::sync::mpsc;

use super::ledger::{LEDGER_VERSION, LedgerError, LedgerState, LedgerStore};
use crate::aws;
use crate::config::AwsConfig;
use crate::coordination::dynamo::{DynamoTable, Fence, LEDGER_KEY, TableError};
use crate::coordination::fenced::FencedTable;

/// The longest one ledger call may take, the SDK's retries included.
const CALL_LIMIT: Duration = Duration::from_secs(6);

enum Job {
    Load(sync_mpsc::Sender<Result<Option<(String, u64)>, TableError>>),
    Save {
        state: String,
        expected: Option<u64>,
        fence: Option<Fence>,
        reply: sync_mpsc::Sender<Result<u64, TableError>>,
    },
}

struct Inner {
    jobs: mpsc::UnboundedSender<Job>,
    /// The ledger item's key: one item per account
    /// ([`crate::coordination::dynamo::ledger_key`]).
    key: String,
    /// The table's client and this replica's fence, shared with the other
    /// items kept in the table (a learned catalog's), whose writes follow
    /// the same fence.
    shared: FencedTable,
    /// The version last read or written; `None`: there was no item.
    rev: Mutex<Option<u64>>,
}

/// The ledger in DynamoDB. Clones share one connection, fence and version.
#[derive(Clone)]
pub struct DynamoStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoStore")
            .field("table", &self.inner.shared.table())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl DynamoStore {
    /// A store on `table`, reached with `sdk` and `aws`'s endpoints. With
    /// `fenced`, writes are refused until [`DynamoStore::set_fence`] names
    /// the lease this replica holds.
    pub fn new(
        sdk: SdkConfig,
        aws: &AwsConfig,
        table: &str,
        fenced: bool,
    ) -> Result<DynamoStore, LedgerError> {
        DynamoStore::at(sdk, aws, table, LEDGER_KEY, fenced)
    }

    /// [`DynamoStore::new`] for the ledger item at `key` (an account's,
    /// [`crate::coordination::dynamo::ledger_key`]).
    pub fn at(
        sdk: SdkConfig,
        aws: &AwsConfig,
        table: &str,
        key: &str,
        fenced: bool,
    ) -> Result<DynamoStore, LedgerError> {
        let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
        let item = key.to_owned();
        let client = aws::dynamodb(&sdk, aws);
        let aws = aws.clone();
        let name = table.to_owned();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| LedgerError::Store(format!("cannot start the ledger's runtime: {e}")))?;
        std::thread::Builder::new()
            .name("cfpurge-ledger".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let table = DynamoTable::new(aws::dynamodb(&sdk, &aws), name, CALL_LIMIT);
                    while let Some(job) = queue.recv().await {
                        match job {
                            Job::Load(reply) => {
                                let _ = reply.send(table.load_ledger_at(&item).await);
                            }
                            Job::Save {
                                state,
                                expected,
                                fence,
                                reply,
                            } => {
                                let saved = table
                                    .save_ledger_at(&item, &state, expected, fence.as_ref())
                                    .await;
                                let _ = reply.send(saved);
                            }
                        }
                    }
                });
            })
            .map_err(|e| LedgerError::Store(format!("cannot start the ledger's thread: {e}")))?;
        Ok(DynamoStore {
            inner: Arc::new(Inner {
                jobs,
                key: key.to_owned(),
                shared: FencedTable::new(client, table, fenced),
                rev: Mutex::new(None),
            }),
        })
    }

    /// The table.
    pub fn table(&self) -> &str {
        self.inner.shared.table()
    }

    /// From now on, writes hold only while `fence` holds the lease; `None`
    /// refuses every write (this replica stood down). Only for a store
    /// made with `fenced`.
    pub fn set_fence(&self, fence: Option<Fence>) {
        self.inner.shared.set_fence(fence);
    }

    /// A client of the table, for the other items kept in it.
    pub fn client(&self) -> aws_sdk_dynamodb::Client {
        self.inner.shared.client()
    }

    /// What a write must be conditional on now: `None`, the version only
    /// (no lease); the fence of the lease this replica holds; refused when
    /// it holds none (a standby, or a replica that stood down).
    pub fn write_fence(&self) -> Result<Option<Fence>, LedgerError> {
        self.inner
            .shared
            .write_fence()
            .map_err(|refused| LedgerError::Refused(refused.to_string()))
    }

    fn call<T>(
        &self,
        job: impl FnOnce(sync_mpsc::Sender<Result<T, TableError>>) -> Job,
    ) -> Result<T, LedgerError> {
        let (reply, answer) = sync_mpsc::channel();
        self.inner
            .jobs
            .send(job(reply))
            .map_err(|_| LedgerError::Store("the ledger's thread has stopped".to_owned()))?;
        // The daemon calls the store from blocking tasks of its own
        // (`spawn_blocking`), never from its loop, so waiting here holds up
        // no other work; the call itself runs on the ledger's thread.
        let answered = answer.recv_timeout(CALL_LIMIT + Duration::from_secs(1));
        let table = self.inner.shared.table();
        let why = if self.inner.shared.is_fenced() {
            "this replica no longer holds the lease, or another writer changed the ledger \
             since it was read"
        } else {
            "another writer changed the ledger since it was read"
        };
        match answered {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(TableError::Refused(_))) => Err(LedgerError::Refused(format!(
                "table {table}: the write was refused: {why}"
            ))),
            Ok(Err(e)) => Err(LedgerError::Store(format!("table {table}: {e}"))),
            Err(_) => Err(LedgerError::Store(format!(
                "table {table}: no answer within {CALL_LIMIT:?}"
            ))),
        }
    }
}

/// The table's client and fence, for the other items kept in it (a
/// learned catalog's), whose writes follow the ledger's fence.
impl AsRef<FencedTable> for DynamoStore {
    fn as_ref(&self) -> &FencedTable {
        &self.inner.shared
    }
}

impl LedgerStore for DynamoStore {
    fn location(&self) -> String {
        format!(
            "DynamoDB table {}, item pk = \"{}\"",
            self.inner.shared.table(),
            self.inner.key
        )
    }

    fn load(&self) -> Result<Option<LedgerState>, LedgerError> {
        let loaded = self.call(Job::Load)?;
        let table = self.inner.shared.table();
        let Some((json, rev)) = loaded else {
            *lock(&self.inner.rev) = None;
            return Ok(None);
        };
        let value: serde_json::Value = serde_json::from_str(&json).map_err(|e| {
            LedgerError::Store(format!(
                "table {table}: the ledger item is not valid JSON: {e}"
            ))
        })?;
        let version = value.get("version").and_then(serde_json::Value::as_u64);
        if version != Some(LEDGER_VERSION) {
            return Err(LedgerError::Store(format!(
                "table {table}: the ledger item has version {version:?}; \
                 this cfpurge reads version {LEDGER_VERSION} only"
            )));
        }
        let state = serde_json::from_value(value).map_err(|e| {
            LedgerError::Store(format!("table {table}: the ledger item is corrupt: {e}"))
        })?;
        *lock(&self.inner.rev) = Some(rev);
        Ok(Some(state))
    }

    fn save(&self, state: &LedgerState) -> Result<(), LedgerError> {
        let fence = self.write_fence()?;
        let json = serde_json::to_string(state)
            .map_err(|e| LedgerError::Store(format!("cannot encode the ledger: {e}")))?;
        let expected = *lock(&self.inner.rev);
        let rev = self.call(|reply| Job::Save {
            state: json,
            expected,
            fence,
            reply,
        })?;
        *lock(&self.inner.rev) = Some(rev);
        Ok(())
    }
}
