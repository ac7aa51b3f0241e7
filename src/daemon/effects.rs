//! The runner's hands: each command of the core carried out in a task of
//! its own, every AWS call bounded in time, and the answer sent back over
//! one channel as a [`Report`]. CloudFront polls of different
//! distributions run side by side (at most [`POLLS_AT_ONCE`]), so that one
//! hanging GetInvalidation delays no other distribution's completions. The
//! ledger's store is called from blocking tasks (a file's fsync, or the
//! DynamoDB store's own thread), never from the loop.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::catalogs::{self, Job};
use super::core::{Command, Input};
use crate::budget::{AnyStore, LedgerError, LedgerStore};
use crate::clock::Clock;
use crate::cloudfront::invalidator::{Invalidator, InvalidatorError, MAX_LIST_ITEMS};
use crate::coordination::{AnyTable, LeaseTable};
use crate::edge::{EdgeClient, EdgeError};
use crate::pipeline::{self, Effect};
use crate::source::driver::{Source, SourceEvent};
use crate::source::queue::Queue;
use crate::tracker::{self, external};

/// At most this many ListInvalidations pages per budget scan (100
/// invalidations each); the rest waits for the next scan.
const SCAN_PAGES: usize = 50;

/// Distributions polled at the same time, at most.
pub const POLLS_AT_ONCE: usize = 8;

/// The longest one CloudFront call of a poll or a reconcile may take: past
/// it, the call counts as failed and its distribution is asked again at
/// the next round.
const CALL_LIMIT: Duration = Duration::from_secs(30);

/// What a task reports back to the loop.
// One at a time through a channel: boxing the answers would only add an
// allocation to each.
#[allow(clippy::large_enum_variant)]
pub enum Report {
    /// An answer for the core.
    Input(Input),
    /// The queue task has made every call asked of it and stopped.
    QueueClosed,
    /// A call of the ledger's store panicked: the daemon stops as a
    /// crashed process would, never going on past a write it cannot
    /// account for.
    Panicked(Box<dyn std::any::Any + Send>),
}

impl std::fmt::Debug for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Report::Input(input) => f.debug_tuple("Input").field(input).finish(),
            Report::QueueClosed => f.write_str("QueueClosed"),
            Report::Panicked(_) => f.write_str("Panicked"),
        }
    }
}

/// Starts the tasks.
pub struct Effects<Q, I> {
    tasks: TaskTracker,
    done: mpsc::UnboundedSender<Report>,
    queue_calls: Option<mpsc::UnboundedSender<Effect>>,
    queue_closed: bool,
    invalidator: I,
    source: Source<Q>,
    /// Each account's ledger store.
    stores: BTreeMap<String, AnyStore>,
    /// Where a term's pollers send what they receive.
    events: mpsc::Sender<SourceEvent>,
    /// The pollers of the current term stop when this fires.
    receiving: Option<CancellationToken>,
    /// With coordination: the lease table and this replica's id, and
    /// whether the ledgers are the table's, which a standby reads for its
    /// status.
    lease: Option<(AnyTable, String)>,
    shared: bool,
    polls: Arc<Semaphore>,
    /// The edge requests of verification and warming; `Err` says why the
    /// client could not be built (each request is answered with it).
    edge: Result<EdgeClient, String>,
    /// Fires at shutdown: the edge's requests are dropped, never waited for.
    edge_stop: CancellationToken,
    /// Calls started while draining give up at this moment.
    deadline: Option<Instant>,
}

impl<Q: Queue, I: Invalidator> Effects<Q, I> {
    /// The queue task starts at once; it deletes and rejects in the order
    /// asked, until [`Effects::close_queue`].
    pub fn start(
        tasks: TaskTracker,
        source: Source<Q>,
        invalidator: I,
        stores: BTreeMap<String, AnyStore>,
        events: mpsc::Sender<SourceEvent>,
        lease: Option<(AnyTable, String)>,
        shared: bool,
    ) -> (Self, mpsc::UnboundedReceiver<Report>) {
        let (done, reports) = mpsc::unbounded_channel();
        let (queue_calls, mut calls) = mpsc::unbounded_channel::<Effect>();
        let (queue_source, queue_done) = (source.clone(), done.clone());
        tasks.spawn(async move {
            while let Some(effect) = calls.recv().await {
                let deleted = pipeline::carry_out(&queue_source, effect).await;
                if deleted > 0 {
                    let _ = queue_done.send(Report::Input(Input::Deleted(deleted)));
                }
            }
            let _ = queue_done.send(Report::QueueClosed);
        });
        let effects = Effects {
            tasks,
            done,
            queue_calls: Some(queue_calls),
            queue_closed: false,
            invalidator,
            source,
            stores,
            events,
            receiving: None,
            lease,
            shared,
            polls: Arc::new(Semaphore::new(POLLS_AT_ONCE)),
            edge: Err("no distribution has an edge configured".to_owned()),
            edge_stop: CancellationToken::new(),
            deadline: None,
        };
        (effects, reports)
    }

    /// Makes the edge requests with `edge`.
    pub fn set_edge(&mut self, edge: Result<EdgeClient, String>) {
        self.edge = edge;
    }

    /// Shutdown: the edge's requests under way are dropped. They decide
    /// nothing a purge or a message waits on, so they are not worth any of
    /// the grace period.
    pub fn stop_edge(&self) {
        self.edge_stop.cancel();
    }

    /// From now on, calls give up at `deadline` (shutdown).
    pub fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = Some(deadline);
    }

    /// No more queue calls: the queue task ends once it has made those
    /// asked.
    pub fn close_queue(&mut self) {
        self.queue_calls = None;
    }

    /// Whether the queue task has ended (noted from its report).
    pub fn queue_closed(&self) -> bool {
        self.queue_closed
    }

    /// Notes a report the runner saw that concerns the tasks themselves;
    /// a panic of a ledger call goes on in the loop.
    pub fn note(&mut self, report: Report) -> Option<Input> {
        match report {
            Report::Input(input) => Some(input),
            Report::QueueClosed => {
                self.queue_closed = true;
                None
            }
            Report::Panicked(payload) => std::panic::resume_unwind(payload),
        }
    }

    /// Makes `ids` visible again now, waiting for it until `end` at most.
    pub async fn release_now(&self, ids: Vec<crate::pending::MessageId>, end: Instant) {
        if tokio::time::timeout_at(end, self.source.release(&ids))
            .await
            .is_err()
        {
            tracing::warn!(
                messages = ids.len(),
                "making the messages visible again took too long; they come back when their visibility runs out"
            );
        }
    }

    /// Starts what `command` asks.
    pub fn carry_out(&mut self, command: Command, clock: &Clock) {
        match command {
            Command::Create {
                alias,
                target,
                batch,
                not_after,
            } => {
                let (invalidator, done, deadline) =
                    (self.invalidator.clone(), self.done.clone(), self.deadline);
                let lease_end = not_after.map(|at| clock.instant(at));
                self.tasks.spawn(async move {
                    let result = match bound(lease_end, deadline) {
                        Ok(deadline) => {
                            let call = invalidator.create(&target, &batch.reference, &batch.paths);
                            within(deadline, call).await
                        }
                        Err(e) => Err(e),
                    };
                    let _ = done.send(Report::Input(Input::Created {
                        alias,
                        batch,
                        result,
                    }));
                });
            }
            Command::Poll { alias, target, ids } => {
                let (invalidator, done, polls) = (
                    self.invalidator.clone(),
                    self.done.clone(),
                    self.polls.clone(),
                );
                let deadline = self.deadline;
                self.tasks.spawn(async move {
                    let _permit = polls.acquire_owned().await;
                    let checks = match within(limit(deadline), async {
                        Ok(tracker::check(&invalidator, &target, ids.clone()).await)
                    })
                    .await
                    {
                        Ok(checks) => checks,
                        Err(e) => ids.into_iter().map(|id| (id, Err(e.clone()))).collect(),
                    };
                    let _ = done.send(Report::Input(Input::Checked { alias, checks }));
                });
            }
            Command::Reconcile {
                alias,
                target,
                known,
                scan,
            } => {
                let (invalidator, done) = (self.invalidator.clone(), self.done.clone());
                let deadline = self.deadline;
                self.tasks.spawn(async move {
                    let result = within(
                        limit(deadline),
                        tracker::look(&invalidator, &target, &known, MAX_LIST_ITEMS),
                    )
                    .await;
                    let scan = match &scan {
                        Some(basis) => Some(
                            within(
                                limit(deadline),
                                external::scan(
                                    &invalidator,
                                    &target,
                                    basis.month_start,
                                    |id| basis.seen.contains(id),
                                    SCAN_PAGES,
                                ),
                            )
                            .await,
                        ),
                        None => None,
                    };
                    let _ = done.send(Report::Input(Input::Looked {
                        alias,
                        result,
                        scan,
                    }));
                });
            }
            Command::LoadLedger { account, epoch } => {
                let Some(store) = self.stores.get(&account).cloned() else {
                    return;
                };
                let done = self.done.clone();
                self.tasks.spawn(async move {
                    let report = blocking(
                        move || store.load(),
                        |result| Input::LedgerLoaded {
                            account,
                            epoch,
                            result,
                        },
                    )
                    .await;
                    let _ = done.send(report);
                });
            }
            Command::SaveLedger {
                account,
                epoch,
                seq,
                state,
                fence,
            } => {
                let Some(store) = self.stores.get(&account).cloned() else {
                    return;
                };
                let done = self.done.clone();
                self.tasks.spawn(async move {
                    let report = blocking(
                        move || {
                            if let (Some(fence), AnyStore::Dynamo(table)) = (fence, &store) {
                                table.set_fence(fence);
                            }
                            store.save(&state)
                        },
                        |result| Input::LedgerSaved {
                            account,
                            epoch,
                            seq,
                            result,
                        },
                    )
                    .await;
                    let _ = done.send(report);
                });
            }
            Command::ReadSharedLedger { account } => {
                let Some(store) = self.stores.get(&account).filter(|_| self.shared).cloned() else {
                    return;
                };
                let done = self.done.clone();
                self.tasks.spawn(async move {
                    let report = blocking(
                        move || store.load(),
                        |result| Input::SharedLedger { account, result },
                    )
                    .await;
                    let _ = done.send(report);
                });
            }
            Command::Queue(effect) => {
                if let Some(calls) = &self.queue_calls
                    && calls.send(effect).is_err()
                {
                    tracing::error!(
                        "the queue task has stopped; the message comes back when its visibility runs out"
                    );
                }
            }
            Command::Release(ids) => {
                let source = self.source.clone();
                self.tasks.spawn(async move { source.release(&ids).await });
            }
            Command::Lease {
                call,
                wall,
                lease_ms,
            } => {
                let Some((table, replica)) = self.lease.clone() else {
                    return;
                };
                let done = self.done.clone();
                self.tasks.spawn(async move {
                    let answer = table.call(&replica, call, wall, lease_ms).await;
                    let _ = done.send(Report::Input(Input::Lease(answer)));
                });
            }
            Command::Receive(true) => {
                if let Some(old) = self.receiving.take() {
                    old.cancel();
                }
                let token = CancellationToken::new();
                self.source
                    .start_receiving(&self.tasks, &self.events, &token);
                self.receiving = Some(token);
            }
            Command::Receive(false) => {
                if let Some(token) = self.receiving.take() {
                    token.cancel();
                }
            }
            Command::Catalog { alias, job } => {
                let done = self.done.clone();
                self.tasks.spawn(async move {
                    let result = catalogs::build(job).await;
                    let _ = done.send(Report::Input(Input::Catalog { alias, result }));
                });
            }
            Command::Edge(request) => {
                let (edge, done, stop) =
                    (self.edge.clone(), self.done.clone(), self.edge_stop.clone());
                self.tasks.spawn(async move {
                    // The request bounds its own time (connect and total).
                    let result = match &edge {
                        Ok(client) => {
                            let Some(result) =
                                stop.run_until_cancelled(client.fetch(&request)).await
                            else {
                                return;
                            };
                            result
                        }
                        Err(why) => Err(EdgeError::Request(why.clone())),
                    };
                    let _ = done.send(Report::Input(Input::Edge { request, result }));
                });
            }
            Command::Depth => {
                let (source, done) = (self.source.clone(), self.done.clone());
                self.tasks.spawn(async move {
                    let _ = done.send(Report::Input(Input::Depth(source.depth().await)));
                });
            }
        }
    }
}

/// The learned catalogs' last writes at shutdown, one after the other.
pub async fn last_saves(saves: Vec<(String, Job)>) {
    for (alias, job) in saves {
        match catalogs::build(job).await {
            Ok(catalogs::Built::Refused(e)) | Err(e) => {
                tracing::warn!(distribution = %alias, error = %e, "writing the learned catalog at shutdown failed");
            }
            Ok(_) => {}
        }
    }
}

/// Runs a call of the ledger's store on a blocking thread; its answer, or
/// the report of its panic.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, LedgerError> + Send + 'static,
    answer: impl FnOnce(Result<T, LedgerError>) -> Input,
) -> Report {
    match tokio::task::spawn_blocking(call).await {
        Ok(result) => Report::Input(answer(result)),
        Err(e) if e.is_panic() => Report::Panicked(e.into_panic()),
        Err(e) => Report::Input(answer(Err(LedgerError::Store(format!(
            "the ledger call did not finish: {e}"
        ))))),
    }
}

/// The deadline of a create under coordination: the lease's end, or the
/// shutdown's if earlier. Past the lease, the call is not made at all
/// (reported as a timeout: the batch stays reserved, the safe side).
fn bound(
    lease_end: Option<Instant>,
    deadline: Option<Instant>,
) -> Result<Option<Instant>, InvalidatorError> {
    let Some(at) = lease_end else {
        return Ok(deadline);
    };
    if Instant::now() < at {
        Ok(Some(deadline.map_or(at, |d| d.min(at))))
    } else {
        Err(InvalidatorError::Timeout(
            "not made: this replica is no longer the leader".to_owned(),
        ))
    }
}

/// A poll's or reconcile's deadline: [`CALL_LIMIT`] from now, or the
/// shutdown's if earlier.
fn limit(deadline: Option<Instant>) -> Option<Instant> {
    let at = Instant::now() + CALL_LIMIT;
    Some(deadline.map_or(at, |d| d.min(at)))
}

/// A CloudFront call, given up at `deadline` (if any) as a timeout: its
/// outcome is then unknown, as with any timeout.
async fn within<T>(
    deadline: Option<Instant>,
    call: impl Future<Output = Result<T, InvalidatorError>>,
) -> Result<T, InvalidatorError> {
    match deadline {
        None => call.await,
        Some(at) => tokio::time::timeout_at(at, call)
            .await
            .unwrap_or_else(|_| Err(InvalidatorError::Timeout("no answer in time".to_owned()))),
    }
}
