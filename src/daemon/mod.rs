//! The daemon: a core that holds the state and decides ([`core::Core`]:
//! no I/O, no clock, no locks, no async) and a thin runner that owns it
//! ([`Daemon`]). The runner reads the time once per turn, hands the core
//! what came in, carries out the commands it returns, each in a task of its
//! own ([`effects`]), and sleeps until the core's next wake-up. Nothing it
//! awaits sits inside a turn: a slow CreateInvalidation, a slow ledger
//! write, a hanging poll of one distribution holds up only its own task,
//! while other distributions' batches go out on time and the heartbeat
//! keeps beating.

mod catalogs;
pub mod core;
mod edge;
mod effects;
mod ledger;
mod observe;

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::budget::{AnyStore, FileStore, LedgerStore, file_for_account};
use crate::catalog::learned_store::{AnyLearnedStore, DynamoLearned};
use crate::clock::{Clock, Now};
use crate::cloudfront::invalidator::Invalidator;
use crate::config::Config;
use crate::coordination::{Answer, AnyTable, LeaseTable};
use crate::source::driver::{BATCH_CALLS_AT_ONCE, Source, SourceSettings};
use crate::source::queue::Queue;

use self::core::{Command, ReplicaState, SourceView};
pub use self::core::{Core, Input, Mode, Totals};
use self::effects::Effects;
pub use self::observe::Observers;
pub(crate) use self::observe::Publisher;

/// How much longer than `shutdown.grace_seconds` the process may take to
/// end: answers to calls made before the deadline, the learned catalogs'
/// last writes and the lease's hand-back all fit in it.
pub const SHUTDOWN_MARGIN: Duration = Duration::from_secs(5);

/// What one `ChangeMessageVisibilityBatch` call is reckoned to take when
/// the grace period is shared between submitting and releasing: SQS
/// usually answers in tens of milliseconds.
const RELEASE_CALL: Duration = Duration::from_millis(50);

/// The end of the grace period kept for releasing `held` messages: their
/// batch calls at [`RELEASE_CALL`] each, [`BATCH_CALLS_AT_ONCE`] at a
/// time, and at most half the grace period, which leaves the other half to
/// submitting.
fn release_reserve(held: usize, grace: Duration) -> Duration {
    let calls = held.div_ceil(crate::source::queue::MAX_BATCH);
    let rounds = u32::try_from(calls.div_ceil(BATCH_CALLS_AT_ONCE)).unwrap_or(u32::MAX);
    RELEASE_CALL.saturating_mul(rounds).min(grace / 2)
}

/// This replica's part in a fleet: what the runner needs to carry out the
/// core's lease calls.
pub struct Replica {
    id: String,
    table: AnyTable,
    lease: Duration,
    /// The ledgers are the table's, shared by the fleet, and their writes
    /// follow the lease.
    shared_ledger: bool,
}

impl Replica {
    pub fn new(id: String, table: AnyTable, lease: Duration, shared_ledger: bool) -> Replica {
        Replica {
            id,
            table,
            lease,
            shared_ledger,
        }
    }
}

pub struct Daemon<Q, I> {
    core: Core,
    source: Source<Q>,
    invalidator: I,
    /// Each account's ledger store, by account name.
    stores: BTreeMap<String, AnyStore>,
    clock: Clock,
    grace: Duration,
    replica: Option<Replica>,
    /// Carries what the core shows over to the metrics, `/readyz` and
    /// `/v1/status` after each step.
    publisher: Publisher,
    /// The edge requests' client, built once from the configuration.
    edge: Result<crate::edge::EdgeClient, String>,
}

impl<Q: Queue, I: Invalidator> Daemon<Q, I> {
    pub fn new(config: &Config, queue: Q, invalidator: I) -> Daemon<Q, I> {
        let clock = Clock::new();
        let run = std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
            .to_string();
        let source = Source::new(queue, SourceSettings::from(&config.source));
        let mut core = Core::new(config, clock, run, Mode::Live);
        // The source counts the decoded entries in source.max_pending_bytes.
        core.set_meter(source.pending_meter());
        // Each account's ledger in a file of its own; the default
        // account's is `budget.ledger_path` itself.
        let stores: BTreeMap<String, AnyStore> = config
            .budget_accounts()
            .into_iter()
            .map(|account| {
                let file = file_for_account(&config.budget.ledger_path, &account);
                (account, AnyStore::File(FileStore::new(file)))
            })
            .collect();
        for (account, store) in &stores {
            core.set_ledger_location(account, store.location());
        }
        let publisher = Publisher::new(Observers::new(config));
        let edge = crate::edge::EdgeClient::new(config);
        if let Err(e) = &edge {
            tracing::error!(error = %e, "edge requests cannot be made; every check and warming request counts as an error");
        }
        Daemon {
            core,
            source,
            invalidator,
            stores,
            clock,
            grace: Duration::from_secs(config.shutdown.grace_seconds),
            replica: None,
            publisher,
            edge,
        }
    }

    /// Runs as one of several replicas: receives and submits only while
    /// holding the lease.
    pub fn with_replica(mut self, replica: Replica) -> Self {
        self.core.set_replica(ReplicaState::new(
            replica.id.clone(),
            replica.lease,
            replica.shared_ledger,
        ));
        self.replica = Some(replica);
        self
    }

    /// Keeps the budget ledger of the main account (the default
    /// account's while a distribution is in it) in `store` instead of the
    /// configured file (tests use memory). In DynamoDB, the learned
    /// catalogs go there too.
    pub fn with_ledger(self, store: AnyStore) -> Self {
        let account = self.core.main_account().to_owned();
        self.with_account_ledger(&account, store)
    }

    /// Keeps `account`'s budget ledger in `store`, as
    /// [`Daemon::with_ledger`].
    pub fn with_account_ledger(mut self, account: &str, store: AnyStore) -> Self {
        if let AnyStore::Dynamo(table) = &store {
            self.core
                .keep_learned_in(|alias| AnyLearnedStore::Dynamo(DynamoLearned::new(table, alias)));
        }
        self.core.set_ledger_location(account, store.location());
        self.stores.insert(account.to_owned(), store);
        self
    }

    /// Runs on `clock` instead of the system's (tests whose paused time
    /// also moves the wall clock).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self.core.set_clock(clock);
        self
    }

    /// Lists the buckets of `catalog = "s3"` distributions with `client`
    /// (tests give one with their credentials).
    pub fn with_s3_client(mut self, client: &aws_sdk_s3::Client) -> Self {
        self.core.set_s3_client(client);
        self
    }

    /// The daemon's metrics, status, readiness and heartbeat, to serve.
    pub fn observers(&self) -> Observers {
        self.publisher.observers().clone()
    }

    pub fn source(&self) -> &Source<Q> {
        &self.source
    }

    fn source_view(&self) -> SourceView {
        SourceView {
            health: self.source.health(),
            received: self.source.counts().received,
        }
    }

    /// One turn: the core does what is due, its commands are started, and
    /// what it shows is published (the gauges and the status snapshot
    /// when their refresh is due).
    fn turn(&mut self, now: &Now, effects: &mut Effects<Q, I>) {
        self.core.turn(now);
        self.carry_out(effects);
        self.observe(now);
    }

    /// Publishes what the core shows, and refreshes the gauges and the
    /// status when due (then beats the heartbeat).
    fn observe(&mut self, now: &Now) {
        self.publisher.publish(self.core.shown(), &self.clock);
        let source = self.source_view();
        if let Some(view) = self.core.observe(now, &source) {
            self.publisher.show(view);
            self.publisher.observers().beat();
        }
    }

    fn carry_out(&mut self, effects: &mut Effects<Q, I>) {
        for command in self.core.take_commands() {
            effects.carry_out(command, &self.clock);
        }
    }

    /// Runs until `cancel` fires, then drains within the grace period:
    /// everything pending is due at once, what cannot be submitted in time
    /// is made visible again. The process is done within
    /// `grace_seconds` + [`SHUTDOWN_MARGIN`].
    pub async fn run(mut self, cancel: CancellationToken) -> Totals {
        let tasks = TaskTracker::new();
        let stop_keeping = CancellationToken::new();
        let (events_tx, mut events) = self.source.start_keeping(&tasks, &stop_keeping);
        let (mut effects, mut reports) = Effects::start(
            tasks.clone(),
            self.source.clone(),
            self.invalidator.clone(),
            self.stores.clone(),
            events_tx,
            self.replica
                .as_ref()
                .map(|r| (r.table.clone(), r.id.clone())),
            self.replica.as_ref().is_some_and(|r| r.shared_ledger),
        );
        effects.set_edge(self.edge.clone());
        if self.replica.is_none() {
            effects.carry_out(Command::Receive(true), &self.clock);
        }
        // Under systemd (Type=notify) the start is over once the loop runs;
        // outside it this does nothing.
        observe::notify(&[sd_notify::NotifyState::Ready]);
        let mut now = self.clock.now();
        loop {
            self.turn(&now, &mut effects);
            let wake = self.clock.instant(self.core.next_wake(&now));
            tokio::select! {
                () = cancel.cancelled() => break,
                Some(event) = events.recv() => {
                    now = self.clock.now();
                    self.core.handle(Input::Event(event), &now);
                }
                Some(report) = reports.recv() => {
                    now = self.clock.now();
                    if let Some(input) = effects.note(report) {
                        self.core.handle(input, &now);
                    }
                }
                () = tokio::time::sleep_until(wake) => now = self.clock.now(),
            }
        }

        // Shutdown: stop receiving, submit what can be, release the rest.
        observe::notify(&[
            sd_notify::NotifyState::Stopping,
            sd_notify::NotifyState::Status("draining"),
        ]);
        effects.carry_out(Command::Receive(false), &self.clock);
        effects.stop_edge();
        let deadline = Instant::now() + self.grace;
        let end = deadline + SHUTDOWN_MARGIN;
        effects.set_deadline(deadline);
        now = self.clock.now();
        while let Ok(event) = events.try_recv() {
            self.core.handle(Input::Event(event), &now);
        }
        self.core.begin_drain();
        // Submitting stops in time for the release of what is left to end
        // within the grace period too.
        let submit_until = deadline - release_reserve(self.core.pending_messages(), self.grace);
        loop {
            self.turn(&now, &mut effects);
            if self.core.is_drained() {
                break;
            }
            let wake = self
                .clock
                .instant(self.core.next_wake(&now))
                .min(submit_until);
            tokio::select! {
                Some(report) = reports.recv() => {
                    now = self.clock.now();
                    if let Some(input) = effects.note(report) {
                        self.core.handle(input, &now);
                    }
                }
                () = tokio::time::sleep_until(wake) => {}
            }
            now = self.clock.now();
            if now.instant >= submit_until {
                break;
            }
        }
        let left = self.core.let_go();
        if !left.is_empty() {
            tracing::info!(
                messages = left.len(),
                "releasing messages not covered before the grace period ended"
            );
            // A create still under way may yet be accepted: its spending is
            // recorded, but these messages are no longer ours to delete.
            effects.release_now(left, end).await;
        }
        // Deletes already asked for still go, and messages stay hidden
        // (extended) until they are done; answers to creates and ledger
        // writes still under way are recorded, until the margin runs out.
        effects.close_queue();
        tasks.close();
        let late = deadline
            .max(Instant::now() + Duration::from_secs(2))
            .min(end);
        while !effects.queue_closed() || self.core.is_calling() {
            let Ok(Some(input)) = tokio::time::timeout_at(late, reports.recv()).await else {
                tracing::warn!("some calls were still under way at the end of the grace period");
                break;
            };
            if let Some(input) = effects.note(input) {
                let now = self.clock.now();
                self.core.handle(input, &now);
                self.carry_out(&mut effects);
                self.publisher.publish(self.core.shown(), &self.clock);
            }
        }
        // What the learned catalogs took in since their last write, within
        // what is left of the margin.
        let saves = self.core.last_saves();
        if tokio::time::timeout_at(end - Duration::from_secs(1), effects::last_saves(saves))
            .await
            .is_err()
        {
            tracing::warn!(
                "writing the learned catalogs at shutdown did not finish in time; \
                 the paths learned since their last write are lost"
            );
        }
        // Every answer is in and recorded: the lease goes back, so that a
        // standby takes over now rather than when it lapses.
        self.hand_back(end).await;
        stop_keeping.cancel();
        drop(effects);
        let _ = tokio::time::timeout_at(end, tasks.wait()).await;
        self.core.observe_now();
        let now = self.clock.now();
        self.observe(&now);
        self.core.totals()
    }

    /// Shutdown: hands the lease back (a standby takes it at its next
    /// look) and waits for the answer until `end` at most.
    async fn hand_back(&mut self, end: Instant) {
        let handed = self.core.hand_back();
        // It no longer leads: its readers say so at once.
        self.publisher.publish(self.core.shown(), &self.clock);
        let (Some(replica), Some((call, lease_ms))) = (&self.replica, handed) else {
            return;
        };
        for store in self.stores.values() {
            if let AnyStore::Dynamo(store) = store {
                store.set_fence(None);
            }
        }
        let answer = replica.table.call(&replica.id, call, 0, lease_ms);
        let wait = end.min(Instant::now() + Duration::from_secs(2));
        match tokio::time::timeout_at(wait, answer).await {
            Ok(Answer::Released) => tracing::info!(replica = %replica.id, "lease handed back"),
            Ok(other) => {
                tracing::warn!(replica = %replica.id, answer = ?other, "handing the lease back failed; it lapses by itself")
            }
            Err(_) => {
                tracing::warn!(replica = %replica.id, "handing the lease back took too long; it lapses by itself")
            }
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod accounts_tests;

#[cfg(test)]
mod shown_tests;
