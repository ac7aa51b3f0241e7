//! The daemon's slow effects, each in a task of its own so that the main
//! loop never waits on the network: CreateInvalidation calls, the polls and
//! reconciles of the tracker, the queue's depth, and the deletes and
//! rejects of messages. Every task reports back over one channel as a
//! [`Done`]; the loop owns the state and applies the reports.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::budget::{AnyStore, LedgerError, LedgerState, LedgerStore};
use crate::cloudfront::invalidator::{Invalidation, Invalidator, InvalidatorError, Target};
use crate::coordination::{Answer, AnyTable, Call, LeaseTable};
use crate::pending::MessageId;
use crate::pipeline::{self, Effect};
use crate::source::driver::Source;
use crate::source::queue::{Queue, QueueDepth, QueueError};
use crate::submitter::Batch;
use crate::tracker::external::{self, Found};
use crate::tracker::{PollReport, Tracker};

/// At most this many ListInvalidations pages per budget scan (100
/// invalidations each); the rest waits for the next scan.
const SCAN_PAGES: usize = 50;

/// What a task reports back to the loop.
#[derive(Debug)]
pub enum Done {
    /// A CreateInvalidation call's answer.
    Created {
        alias: String,
        batch: Batch,
        result: Result<Invalidation, InvalidatorError>,
    },
    /// A round of polls of invalidations in progress.
    Polled(PollReport),
    /// One distribution's reconcile, and the budget scan if one was asked.
    Reconciled {
        alias: String,
        result: Result<(), InvalidatorError>,
        scan: Option<Result<Vec<Found>, InvalidatorError>>,
    },
    /// A reconcile round is over (every distribution tried).
    RoundOver,
    /// Messages deleted by the queue task.
    Deleted(usize),
    /// The queue task has made every call asked of it and stopped.
    QueueClosed,
    /// The queue's depth, or why it could not be read.
    Depth(Result<QueueDepth, QueueError>),
    /// A distribution's catalog, built or not.
    Catalog {
        alias: String,
        result: Result<super::catalogs::Built, String>,
    },
    /// The answer to a call on the lease.
    Lease(Answer),
    /// The shared ledger as a standby read it, for its status.
    SharedLedger(Result<Option<LedgerState>, LedgerError>),
}

/// Until when this replica may call CreateInvalidation (tokio time);
/// `None` while it is not the leader. Shared with the create tasks, so a
/// call that was waiting when the lease ran out (a paused process) is not
/// made after it.
pub type LeaderUntil = Arc<std::sync::Mutex<Option<Instant>>>;

/// What a budget scan needs: the ids already looked at and where the month
/// starts.
pub struct ScanBasis {
    pub seen: HashSet<String>,
    pub month_start: SystemTime,
}

/// Starts the tasks.
pub struct Effects<Q, I> {
    tasks: TaskTracker,
    done: mpsc::UnboundedSender<Done>,
    queue_calls: Option<mpsc::UnboundedSender<Effect>>,
    invalidator: I,
    tracker: Arc<Tracker<I>>,
    source: Source<Q>,
    /// Calls started while draining give up at this moment.
    deadline: Option<Instant>,
    /// With coordination: until when creates may be made.
    leader_until: Option<LeaderUntil>,
}

impl<Q: Queue, I: Invalidator> Effects<Q, I> {
    /// The queue task starts at once; it deletes and rejects in the order
    /// asked, until [`Effects::close_queue`].
    pub fn start(
        tasks: TaskTracker,
        source: Source<Q>,
        invalidator: I,
        tracker: Arc<Tracker<I>>,
    ) -> (Self, mpsc::UnboundedReceiver<Done>) {
        let (done, reports) = mpsc::unbounded_channel();
        let (queue_calls, mut calls) = mpsc::unbounded_channel::<Effect>();
        let (queue_source, queue_done) = (source.clone(), done.clone());
        tasks.spawn(async move {
            while let Some(effect) = calls.recv().await {
                let deleted = pipeline::carry_out(&queue_source, effect).await;
                if deleted > 0 {
                    let _ = queue_done.send(Done::Deleted(deleted));
                }
            }
            let _ = queue_done.send(Done::QueueClosed);
        });
        let effects = Effects {
            tasks,
            done,
            queue_calls: Some(queue_calls),
            invalidator,
            tracker,
            source,
            deadline: None,
            leader_until: None,
        };
        (effects, reports)
    }

    /// From now on, calls give up at `deadline` (shutdown).
    pub fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = Some(deadline);
    }

    /// Deletes or rejects on the queue, after those asked before.
    pub fn queue(&self, effect: Effect) {
        if let Some(calls) = &self.queue_calls
            && calls.send(effect).is_err()
        {
            tracing::error!(
                "the queue task has stopped; the message comes back when its visibility runs out"
            );
        }
    }

    /// No more queue calls: the queue task ends once it has made those
    /// asked.
    pub fn close_queue(&mut self) {
        self.queue_calls = None;
    }

    /// Creates are made only within the lease (coordination).
    pub fn set_leader_until(&mut self, until: LeaderUntil) {
        self.leader_until = Some(until);
    }

    /// Calls CreateInvalidation (or its tenant form) for `batch`.
    pub fn create(&self, alias: &str, target: &Target, batch: Batch) {
        let (invalidator, done, deadline) =
            (self.invalidator.clone(), self.done.clone(), self.deadline);
        let leader_until = self.leader_until.clone();
        let (alias, target) = (alias.to_owned(), target.clone());
        self.tasks.spawn(async move {
            let result = match lease_bound(leader_until.as_ref(), deadline) {
                Ok(deadline) => {
                    let call = invalidator.create(&target, &batch.reference, &batch.paths);
                    within(deadline, call).await
                }
                Err(e) => Err(e),
            };
            let _ = done.send(Done::Created {
                alias,
                batch,
                result,
            });
        });
    }

    /// Checks the invalidations in progress that are due a check at `now`.
    pub fn poll(&self, now: Instant) {
        let (tracker, done) = (self.tracker.clone(), self.done.clone());
        self.tasks.spawn(async move {
            let report = tracker.poll_all(now).await;
            let _ = done.send(Done::Polled(report));
        });
    }

    /// Reconciles every distribution in `aliases` with CloudFront, one
    /// after the other, and scans their month for the budget with `scan`.
    pub fn reconcile(
        &self,
        aliases: Vec<(String, Target)>,
        now: Instant,
        wall: SystemTime,
        scan: Option<ScanBasis>,
    ) {
        let (tracker, invalidator, done) = (
            self.tracker.clone(),
            self.invalidator.clone(),
            self.done.clone(),
        );
        let deadline = self.deadline;
        self.tasks.spawn(async move {
            for (alias, target) in aliases {
                let result = within(deadline, tracker.reconcile(&alias, now, wall))
                    .await
                    .map(|_| ());
                let scan = match &scan {
                    Some(basis) => Some(
                        within(
                            deadline,
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
                let _ = done.send(Done::Reconciled {
                    alias,
                    result,
                    scan,
                });
            }
            let _ = done.send(Done::RoundOver);
        });
    }

    /// Builds a distribution's catalog.
    pub fn catalog(&self, alias: String, job: super::catalogs::Job) {
        let done = self.done.clone();
        self.tasks.spawn(async move {
            let result = super::catalogs::build(job).await;
            let _ = done.send(Done::Catalog { alias, result });
        });
    }

    /// Makes a call on the lease.
    pub fn lease(&self, table: &AnyTable, replica: &str, call: Call, wall: u64, lease_ms: u64) {
        let (table, replica, done) = (table.clone(), replica.to_owned(), self.done.clone());
        self.tasks.spawn(async move {
            let answer = table.call(&replica, call, wall, lease_ms).await;
            let _ = done.send(Done::Lease(answer));
        });
    }

    /// Makes held messages visible again at once (a replica standing down).
    pub fn release(&self, ids: Vec<MessageId>) {
        let source = self.source.clone();
        self.tasks.spawn(async move { source.release(&ids).await });
    }

    /// Reads the shared ledger (a standby's status).
    pub fn read_ledger(&self, store: &AnyStore) {
        let (store, done) = (store.clone(), self.done.clone());
        self.tasks.spawn(async move {
            let read = tokio::task::spawn_blocking(move || store.load())
                .await
                .unwrap_or_else(|e| Err(LedgerError::Store(e.to_string())));
            let _ = done.send(Done::SharedLedger(read));
        });
    }

    /// Asks for the queue's depth.
    pub fn depth(&self) {
        let (source, done) = (self.source.clone(), self.done.clone());
        self.tasks.spawn(async move {
            let _ = done.send(Done::Depth(source.depth().await));
        });
    }
}

/// The deadline of a create under coordination: the lease's end, or the
/// shutdown's if earlier. Past the lease, the call is not made at all
/// (reported as a timeout: the batch stays reserved, the safe side).
fn lease_bound(
    leader_until: Option<&LeaderUntil>,
    deadline: Option<Instant>,
) -> Result<Option<Instant>, InvalidatorError> {
    let Some(until) = leader_until else {
        return Ok(deadline);
    };
    let until = *until
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match until {
        Some(at) if Instant::now() < at => Ok(Some(deadline.map_or(at, |d| d.min(at)))),
        _ => Err(InvalidatorError::Timeout(
            "not made: this replica is no longer the leader".to_owned(),
        )),
    }
}

/// A CloudFront call, given up at `deadline` (if any) as a timeout: its
/// outcome is then unknown, as with any timeout.
async fn within<T>(
    deadline: Option<Instant>,
    call: impl Future<Output = Result<T, InvalidatorError>>,
) -> Result<T, InvalidatorError> {
    match deadline {
        None => call.await,
        Some(at) => tokio::time::timeout_at(at, call).await.unwrap_or_else(|_| {
            Err(InvalidatorError::Timeout(
                "no answer before the shutdown deadline".to_owned(),
            ))
        }),
    }
}

/// How often a round of polls runs: each invalidation is still checked once
/// per poll interval, but one created just after a round is not left
/// waiting for almost two.
pub fn poll_round(poll_interval: Duration) -> Duration {
    (poll_interval / 4).max(Duration::from_secs(1))
}
