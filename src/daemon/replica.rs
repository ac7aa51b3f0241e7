//! The daemon as one of several replicas: the lease machine's calls and
//! changes of role carried out. On becoming leader: the ledger is read
//! again from the table under the new fencing number, a fresh submitter
//! names the replica and the term in its CallerReferences, a reconcile
//! round (which confirms the previous leader's open reservations) comes
//! before the first submission, and the pollers start. On standing down:
//! the pollers stop, held messages are released (visibility 0), the ledger
//! refuses writes, nothing more is submitted.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::effects::{Effects, LeaderUntil};
use super::{Daemon, Timers};
use crate::budget::{AnyStore, DynamoStore};
use crate::clock::{Millis, Now};
use crate::cloudfront::invalidator::Invalidator;
use crate::coordination::dynamo::Fence;
use crate::coordination::{AnyTable, Call, Change, Lease, Role};
use crate::pending::PendingSet;
use crate::source::driver::SourceEvent;
use crate::source::queue::Queue;
use crate::status::BudgetStatus;
use crate::submitter::{RateLimit, Submitter};

/// How often a standby reads the shared ledger for its status.
const LEDGER_READ_EVERY: Duration = Duration::from_secs(10);

/// The readiness component of the lease table.
const TABLE: &str = "coordination";

/// This replica's part in the fleet.
pub struct Replica {
    pub(super) id: String,
    pub(super) lease: Lease,
    table: AnyTable,
    lease_ms: u64,
    /// The shared ledger, whose writes follow the lease.
    store: Option<DynamoStore>,
    pub(super) leader_until: LeaderUntil,
    /// The current term's pollers stop when this fires.
    stop_receiving: CancellationToken,
    /// The budget as a standby last read it from the table.
    pub(super) shared_budget: Option<BudgetStatus>,
    next_ledger_read: Millis,
    reading_ledger: bool,
    /// Terms begun, to tell a reconcile round of an earlier term.
    pub(super) term: u64,
}

impl Replica {
    pub fn new(
        id: String,
        table: AnyTable,
        lease: Duration,
        store: Option<DynamoStore>,
    ) -> Replica {
        Replica {
            id,
            lease: Lease::new(lease, 0),
            table,
            lease_ms: lease.as_millis() as u64,
            store,
            leader_until: Arc::new(std::sync::Mutex::new(None)),
            stop_receiving: CancellationToken::new(),
            shared_budget: None,
            next_ledger_read: 0,
            reading_ledger: false,
            term: 0,
        }
    }
}

/// Where the pollers of a new term send their events.
pub struct Receivers {
    pub tasks: TaskTracker,
    pub tx: mpsc::Sender<SourceEvent>,
}

fn unix_ms(now: &Now) -> u64 {
    now.wall
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl<Q: Queue, I: Invalidator> Daemon<Q, I> {
    /// Whether this daemon may receive and submit at `now`: always alone,
    /// only while holding the lease as a replica.
    pub(super) fn is_leader(&self, now: &Now) -> bool {
        self.replica
            .as_ref()
            .is_none_or(|r| matches!(r.lease.role(now.mono), Role::Leader { .. }))
    }

    /// The lease's turn: stand down if its time ran out, and make the call
    /// that is due. `may_lead` is false while shutting down.
    pub(super) fn lease_turn(
        &mut self,
        now: &Now,
        timers: &mut Timers,
        effects: &Effects<Q, I>,
        may_lead: bool,
    ) {
        let Some(replica) = &mut self.replica else {
            return;
        };
        let change = replica.lease.check(now.mono);
        // A new term only once the last one's creates are answered, so that
        // a fresh submitter never meets an old call's answer.
        let may_lead = may_lead && !self.submitter.is_calling();
        let call = replica.lease.next_call(now.mono, may_lead);
        if let Some(call) = call {
            effects.lease(
                &replica.table,
                &replica.id,
                call,
                unix_ms(now),
                replica.lease_ms,
            );
        }
        if !replica.lease.is_calling()
            && !matches!(replica.lease.role(now.mono), Role::Leader { .. })
            && !replica.reading_ledger
            && now.mono >= replica.next_ledger_read
            && let Some(store) = &replica.store
        {
            replica.reading_ledger = true;
            effects.read_ledger(&AnyStore::Dynamo(store.clone()));
        }
        if let Some(change) = change {
            self.role_changed(change, now, timers, effects);
        }
    }

    /// When the lease next needs the loop.
    pub(super) fn lease_wake(&self) -> Option<Millis> {
        let replica = self.replica.as_ref()?;
        let mut wake = replica.lease.next_wake();
        if replica.store.is_some() && !replica.reading_ledger {
            wake = Some(wake.map_or(replica.next_ledger_read, |w| {
                w.min(replica.next_ledger_read)
            }));
        }
        wake
    }

    /// Takes the answer to a lease call.
    pub(super) fn lease_answered(
        &mut self,
        answer: crate::coordination::Answer,
        now: &Now,
        timers: &mut Timers,
        effects: &Effects<Q, I>,
    ) {
        let Some(replica) = &mut self.replica else {
            return;
        };
        match &answer {
            crate::coordination::Answer::Failed(e) => {
                tracing::warn!(error = %e, "a call on the lease failed");
                self.observers.readiness.set(
                    TABLE,
                    format!("the coordination table is not reachable: {e}"),
                );
            }
            _ => self.observers.readiness.clear(TABLE),
        }
        let change = replica.lease.answered(answer, now.mono, unix_ms(now));
        let until = replica
            .lease
            .leader_until()
            .map(|at| self.clock.instant(at));
        *replica
            .leader_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = until;
        if let Some(change) = change {
            self.role_changed(change, now, timers, effects);
        }
    }

    /// A standby's read of the shared ledger.
    pub(super) fn ledger_read(
        &mut self,
        read: Result<Option<crate::budget::LedgerState>, crate::budget::LedgerError>,
        now: &Now,
    ) {
        let config = self.budget_config.clone();
        let Some(replica) = &mut self.replica else {
            return;
        };
        replica.reading_ledger = false;
        replica.next_ledger_read = now.after(LEDGER_READ_EVERY);
        match read {
            Ok(Some(state)) => {
                replica.shared_budget = Some(crate::budget::status_of(&config, &state, now.wall));
                self.observers.readiness.clear("ledger");
            }
            Ok(None) => replica.shared_budget = None,
            Err(e) => {
                tracing::warn!(error = %e, "reading the shared ledger failed");
                self.observers
                    .readiness
                    .set("ledger", format!("the shared ledger is not readable: {e}"));
            }
        }
    }

    fn role_changed(
        &mut self,
        change: Change,
        now: &Now,
        timers: &mut Timers,
        effects: &Effects<Q, I>,
    ) {
        let Some(replica) = &mut self.replica else {
            return;
        };
        let metrics = &self.observers.metrics;
        metrics.leader_changed();
        match change {
            Change::BecameLeader { fencing } => {
                tracing::info!(replica = %replica.id, fencing, "became the leader");
                metrics.set_leader(true);
                replica.term += 1;
                replica.shared_budget = None;
                if let Some(store) = &replica.store {
                    store.set_fence(Some(Fence {
                        replica: replica.id.clone(),
                        fencing,
                    }));
                }
                let until = replica
                    .lease
                    .leader_until()
                    .map(|at| self.clock.instant(at));
                *replica
                    .leader_until
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = until;
                // The ledger as the last leader left it, read under this
                // fencing number.
                self.ledger.reset();
                // So are the learned catalogs, before planning with them.
                self.catalogs.set_leading(true, now);
                self.submitter = Submitter::new(
                    self.submit_settings.clone(),
                    RateLimit::new(self.create_rate.0, self.create_rate.1),
                    format!("f{fencing}"),
                )
                .with_owner(replica.id.clone());
                // Nothing goes out before a reconcile round of this term.
                timers.started = false;
                timers.reconcile = now.mono;
                timers.poll = now.mono;
                replica.stop_receiving = CancellationToken::new();
                if let Some(receivers) = &self.receivers {
                    self.source.start_receiving(
                        &receivers.tasks,
                        &receivers.tx,
                        &replica.stop_receiving,
                    );
                }
            }
            Change::StoodDown { fencing, why } => {
                tracing::warn!(replica = %replica.id, fencing, reason = why, "stood down: no longer the leader");
                metrics.set_leader(false);
                replica.stop_receiving.cancel();
                *replica
                    .leader_until
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
                if let Some(store) = &replica.store {
                    store.set_fence(None);
                }
                replica.next_ledger_read = now.mono;
                self.ledger.reset();
                self.catalogs.set_leading(false, now);
                self.observers.readiness.clear("ledger");
                let held: Vec<_> = self.pending.message_ids().cloned().collect();
                if !held.is_empty() {
                    tracing::info!(
                        messages = held.len(),
                        "releasing held messages for the next leader"
                    );
                    effects.release(held);
                }
                self.pending = PendingSet::new(self.batch_rules);
                self.calls_hold.clear();
            }
        }
    }

    /// Shutdown: the pollers stop (the caller stops its own token too).
    pub(super) fn stop_receiving(&self) {
        if let Some(replica) = &self.replica {
            replica.stop_receiving.cancel();
        }
    }

    /// Shutdown: hands the lease back (a standby takes it at its next
    /// look) and waits a little for the answer.
    pub(super) async fn hand_back(&mut self) {
        let Some(replica) = &mut self.replica else {
            return;
        };
        let (call, change) = replica.lease.close();
        if let Some(store) = &replica.store {
            store.set_fence(None);
        }
        if let Some(Change::StoodDown { fencing, .. }) = change {
            self.observers.metrics.set_leader(false);
            self.observers.metrics.leader_changed();
            if let Some(call @ Call::Release { .. }) = call {
                let answer = crate::coordination::LeaseTable::call(
                    &replica.table,
                    &replica.id,
                    call,
                    0,
                    replica.lease_ms,
                );
                match tokio::time::timeout(Duration::from_secs(2), answer).await {
                    Ok(crate::coordination::Answer::Released) => {
                        tracing::info!(replica = %replica.id, fencing, "lease handed back")
                    }
                    Ok(other) => {
                        tracing::warn!(replica = %replica.id, fencing, answer = ?other, "handing the lease back failed; it lapses by itself")
                    }
                    Err(_) => {
                        tracing::warn!(replica = %replica.id, fencing, "handing the lease back took too long; it lapses by itself")
                    }
                }
            }
        }
    }
}
