//! The daemon's shell: one event loop that owns the state (the pending set,
//! the submit core, the ledger, the tracker's view) and sleeps until the
//! next thing is due, and tasks that carry out the slow effects and report
//! back ([`effects`]). The decisions are the pure stages': the pipeline
//! decodes and adds, the submitter decides what to send, the planner plans,
//! the budget counts. Time is read once per turn of the loop and passed
//! down.
//!
//! The loop never awaits the network itself: a slow CreateInvalidation, a
//! slow delete or a hanging poll holds up only its own task, while other
//! distributions' batches go out on time and the watchdog keeps beating.

mod catalogs;
mod effects;
mod ledger;
mod observe;
mod replica;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::budget::{AnyStore, FileStore};
use crate::catalog::learned_store::{AnyLearnedStore, DynamoLearned};
use crate::clock::{Clock, Millis, Now};
use crate::cloudfront::invalidator::{Invalidation, Invalidator, InvalidatorError, Target};
use crate::config::BudgetConfig;
use crate::config::Config;
use crate::decode::{RejectReason, Router};
use crate::pending::{BatchRules, PendingSet};
use crate::pipeline::{self, Effect, Ingested};
use crate::planner::Settings;
use crate::source::driver::{Source, SourceSettings};
use crate::source::queue::Queue;
use crate::submitter::{Batch, RateLimit, Situation, Step, SubmitSettings, Submitter};
use crate::tracker::{InflightView, Tracker};

use self::catalogs::Catalogs;
use self::effects::{Done, Effects, ScanBasis};
use self::ledger::{Ledger, Recovered};
pub use self::observe::Observers;
use self::replica::Receivers;
pub use self::replica::Replica;

/// How often the queue's depth is asked for (GetQueueAttributes).
const DEPTH_INTERVAL: Duration = Duration::from_secs(30);

/// How soon a standby asks for the queue's depth again after a failure
/// (its readiness rests on that call: it does not receive).
const STANDBY_DEPTH_RETRY: Duration = Duration::from_secs(5);

/// The longest the loop sleeps: the gauges, the status snapshot and the
/// watchdog are refreshed at least this often.
const OBSERVE_INTERVAL: Duration = Duration::from_secs(1);

/// How long an invalidation a crashed process created keeps covering the
/// redeliveries of its messages: SQS keeps a message in flight for at most
/// 12 hours.
const RECOVERED_FOR: Duration = Duration::from_secs(12 * 3600);

/// The longest the learned catalogs' last writes may take at shutdown,
/// waiting for a write under way included.
const LAST_SAVES_LIMIT: Duration = Duration::from_secs(10);

/// The readiness component that holds until the queue first answers.
const STARTUP: &str = "startup";

/// What the daemon did, for tests and logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub invalidations: u64,
    pub paths_submitted: u64,
    pub messages_deleted: u64,
    pub create_errors: u64,
}

/// When the loop's own periodic work is next due.
#[derive(Clone, Copy, Debug, Default)]
struct Timers {
    poll: Millis,
    reconcile: Millis,
    depth: Millis,
    /// A task of that kind is under way: no second one.
    polling: bool,
    reconciling: bool,
    asking_depth: bool,
    /// When the gauges and the status are next refreshed.
    observe: Millis,
    /// The queue task has made every call asked of it (shutdown).
    queue_closed: bool,
    /// The first reconcile round is over: in-flight invalidations of an
    /// earlier run are known and reservations a crash left are confirmed,
    /// so nothing is paid for twice. Nothing is submitted before.
    started: bool,
    /// The replica's term the reconcile under way was started in.
    round_term: u64,
}

pub struct Daemon<Q, I> {
    source: Source<Q>,
    tracker: Arc<Tracker<I>>,
    invalidator: I,
    pending: PendingSet,
    router: Router,
    submitter: Submitter,
    ledger: Ledger,
    /// Alias → what its calls name: a distribution, or a tenant.
    targets: HashMap<String, Target>,
    clock: Clock,
    poll_interval: Duration,
    reconcile_interval: Duration,
    grace: Duration,
    observers: Observers,
    /// Distributions CloudFront refuses (NoSuchDistribution, AccessDenied).
    refused: HashSet<String>,
    /// Invalidations a crashed process created, covering redeliveries.
    recovered: Vec<Recovered>,
    /// Per distribution with a call under way, how long what its batch
    /// left behind waits once the answer is in.
    calls_hold: HashMap<String, Option<Millis>>,
    /// What the distributions serve, for the least-blast planner.
    catalogs: Catalogs,
    /// `coalesce.blast_per_path`, and whether its price follows the budget
    /// (even pacing), with `burst_paths` as the lead that doubles it.
    blast_per_path: f64,
    price_follows_budget: Option<f64>,
    totals: Totals,
    /// With coordination: the lease and this replica's part.
    replica: Option<Replica>,
    /// What a new term's submitter and pending set are made with.
    submit_settings: SubmitSettings,
    create_rate: (f64, u32),
    batch_rules: BatchRules,
    budget_config: BudgetConfig,
    /// Where a new term's pollers send (set while running).
    receivers: Option<Receivers>,
}

impl<Q: Queue, I: Invalidator> Daemon<Q, I> {
    pub fn new(config: &Config, queue: Q, invalidator: I) -> Daemon<Q, I> {
        let cf = &config.cloudfront;
        let poll_interval = Duration::from_secs(cf.poll_interval_seconds);
        let clock = Clock::new();
        let started = clock.now();
        let run = started
            .wall
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
            .to_string();
        let source = Source::new(queue, SourceSettings::from(&config.source));
        // The source counts the decoded entries in source.max_pending_bytes.
        let pending =
            PendingSet::new(BatchRules::from(&config.batching)).with_meter(source.pending_meter());
        let submit_settings = SubmitSettings {
            planner: Settings::from(&config.coalesce),
            strategy: config.coalesce.strategy,
            on_exhausted: config.budget.on_exhausted,
            recheck: poll_interval,
        };
        Daemon {
            source,
            tracker: Arc::new(Tracker::new(
                invalidator.clone(),
                InflightView::new(config.distributions.iter()),
                poll_interval,
            )),
            invalidator,
            pending,
            router: Router::new(config),
            submitter: Submitter::new(
                submit_settings.clone(),
                RateLimit::new(cf.create_per_second, cf.create_burst),
                run,
            ),
            ledger: Ledger::new(
                AnyStore::File(FileStore::new(config.budget.ledger_path.clone())),
                config.budget.clone(),
            ),
            targets: config
                .distributions
                .iter()
                .map(|(alias, d)| (alias.clone(), Target::of(d)))
                .collect(),
            clock,
            poll_interval,
            reconcile_interval: Duration::from_secs(cf.reconcile_interval_seconds),
            grace: Duration::from_secs(config.shutdown.grace_seconds),
            observers: Observers::new(config),
            refused: HashSet::new(),
            recovered: Vec::new(),
            calls_hold: HashMap::new(),
            catalogs: Catalogs::new(config),
            blast_per_path: config.coalesce.blast_per_path,
            price_follows_budget: (config.budget.pacing == crate::config::Pacing::Even)
                .then_some(config.budget.burst_paths as f64),
            totals: Totals::default(),
            replica: None,
            submit_settings,
            create_rate: (cf.create_per_second, cf.create_burst),
            batch_rules: BatchRules::from(&config.batching),
            budget_config: config.budget.clone(),
            receivers: None,
        }
    }

    /// Runs as one of several replicas: receives and submits only while
    /// holding the lease.
    pub fn with_replica(mut self, replica: Replica) -> Self {
        self.replica = Some(replica);
        self.catalogs.follow_lease();
        self
    }

    /// Keeps the budget ledger in `store` instead of the configured file
    /// (tests use memory). In DynamoDB, the learned catalogs go there too.
    pub fn with_ledger(mut self, store: AnyStore) -> Self {
        if let AnyStore::Dynamo(table) = &store {
            self.catalogs
                .keep_learned_in(|alias| AnyLearnedStore::Dynamo(DynamoLearned::new(table, alias)));
        }
        self.ledger.set_store(store);
        self
    }

    /// Runs on `clock` instead of the system's (tests whose paused time
    /// also moves the wall clock).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Lists the buckets of `catalog = "s3"` distributions with `client`
    /// (tests give one with their credentials).
    pub fn with_s3_client(mut self, client: &aws_sdk_s3::Client) -> Self {
        self.catalogs.set_s3_client(client);
        self
    }

    /// The daemon's metrics, status, readiness and heartbeat, to serve.
    pub fn observers(&self) -> Observers {
        self.observers.clone()
    }

    pub fn source(&self) -> &Source<Q> {
        &self.source
    }

    /// Runs until `cancel` fires, then drains within the grace period:
    /// everything pending is due at once, what cannot be submitted in time
    /// is made visible again.
    pub async fn run(mut self, cancel: CancellationToken) -> Totals {
        let tasks = TaskTracker::new();
        let stop_receiving = CancellationToken::new();
        let stop_keeping = CancellationToken::new();
        let (events_tx, mut events) = self.source.start_keeping(&tasks, &stop_keeping);
        if self.replica.is_none() {
            self.source
                .start_receiving(&tasks, &events_tx, &stop_receiving);
        }
        self.receivers = Some(Receivers {
            tasks: tasks.clone(),
            tx: events_tx,
        });
        let (mut effects, mut reports) = Effects::start(
            tasks.clone(),
            self.source.clone(),
            self.invalidator.clone(),
            self.tracker.clone(),
        );
        if let Some(replica) = &self.replica {
            effects.set_leader_until(replica.leader_until.clone());
        }
        let mut timers = Timers::default();
        // Under systemd (Type=notify) the start is over once the loop runs;
        // outside it this does nothing.
        observe::notify(&[sd_notify::NotifyState::Ready]);
        let mut now = self.clock.now();
        loop {
            self.lease_turn(&now, &mut timers, &effects, true);
            self.turn(&now, &mut timers, &effects);
            let wake = self.clock.instant(self.next_wake(&now, &timers));
            tokio::select! {
                () = cancel.cancelled() => break,
                Some(event) = events.recv() => {
                    now = self.clock.now();
                    // First the lease: a process resumed after a pause must
                    // not take in what it may no longer work on.
                    self.lease_turn(&now, &mut timers, &effects, true);
                    self.ingest_as_leader(event, &now, &effects);
                }
                Some(done) = reports.recv() => {
                    now = self.clock.now();
                    self.lease_turn(&now, &mut timers, &effects, true);
                    self.apply(done, &now, &mut timers, &effects);
                }
                () = tokio::time::sleep_until(wake) => now = self.clock.now(),
            }
        }

        // Shutdown: stop receiving, submit what can be, release the rest.
        observe::notify(&[
            sd_notify::NotifyState::Stopping,
            sd_notify::NotifyState::Status("draining"),
        ]);
        stop_receiving.cancel();
        self.stop_receiving();
        let deadline = Instant::now() + self.grace;
        effects.set_deadline(deadline);
        now = self.clock.now();
        while let Ok(event) = events.try_recv() {
            self.ingest_as_leader(event, &now, &effects);
        }
        self.pending.flush_all();
        // Whatever the first reconcile has not confirmed by now stays spent.
        timers.started = true;
        loop {
            // The lease is still renewed while draining, never taken.
            self.lease_turn(&now, &mut timers, &effects, false);
            self.turn(&now, &mut timers, &effects);
            if self.pending.pending_messages() == 0 && !self.submitter.is_calling() {
                break;
            }
            let wake = self
                .clock
                .instant(self.next_wake(&now, &timers))
                .min(deadline);
            tokio::select! {
                Some(done) = reports.recv() => {
                    now = self.clock.now();
                    self.apply(done, &now, &mut timers, &effects);
                }
                () = tokio::time::sleep_until(wake) => {}
            }
            now = self.clock.now();
            if now.instant >= deadline {
                break;
            }
        }
        let left: Vec<_> = self.pending.message_ids().cloned().collect();
        if !left.is_empty() {
            tracing::info!(
                messages = left.len(),
                "releasing messages not covered before the grace period ended"
            );
            self.source.release(&left).await;
            // A create still under way may yet be accepted: its spending is
            // recorded, but these messages are no longer ours to delete.
            for id in &left {
                self.pending.remove(id);
            }
        }
        // Deletes already asked for still go, and messages stay hidden
        // (extended) until they are done; answers to creates still under
        // way are recorded in the ledger.
        effects.close_queue();
        tasks.close();
        let late = deadline.max(Instant::now() + Duration::from_secs(2));
        while !timers.queue_closed || self.submitter.is_calling() {
            let Ok(Some(done)) = tokio::time::timeout_at(late, reports.recv()).await else {
                tracing::warn!("some calls were still under way at the end of the grace period");
                break;
            };
            let now = self.clock.now();
            self.apply(done, &now, &mut timers, &effects);
        }
        // What the learned catalogs took in since their last write: each
        // after the write of it still under way, if any (one at a time).
        let last_saves = async {
            for (alias, job) in self.catalogs.last_saves() {
                match catalogs::build(job).await {
                    Ok(catalogs::Built::Refused(e)) | Err(e) => {
                        tracing::warn!(distribution = %alias, error = %e, "writing the learned catalog at shutdown failed");
                    }
                    Ok(_) => {}
                }
            }
        };
        if tokio::time::timeout(LAST_SAVES_LIMIT, last_saves)
            .await
            .is_err()
        {
            tracing::warn!(
                "writing the learned catalogs at shutdown took longer than {LAST_SAVES_LIMIT:?};                  the paths learned since their last write are lost"
            );
        }
        // Every answer is in and recorded: the lease goes back, so that a
        // standby takes over now rather than when it lapses.
        self.hand_back().await;
        stop_keeping.cancel();
        drop(effects);
        let _ = tokio::time::timeout_at(late + Duration::from_secs(1), tasks.wait()).await;
        timers.observe = 0;
        self.observe(&self.clock.now(), &mut timers);
        self.totals
    }

    /// One turn of the loop: the ledger, due batches, periodic tasks, the
    /// gauges.
    fn turn(&mut self, now: &Now, timers: &mut Timers, effects: &Effects<Q, I>) {
        let leader = self.is_leader(now);
        if leader {
            self.keep_ledger(now);
        }
        if leader && timers.started {
            self.submit_due(now, effects);
        }
        if leader && !timers.polling && now.mono >= timers.poll {
            timers.polling = true;
            effects.poll(now.instant);
        }
        if leader && !timers.reconciling && now.mono >= timers.reconcile {
            self.start_reconcile(now, timers, effects);
        }
        if !timers.asking_depth && now.mono >= timers.depth {
            timers.asking_depth = true;
            effects.depth();
        }
        for (alias, job) in self.catalogs.due(now) {
            effects.catalog(alias, job);
        }
        self.observe(now, timers);
    }

    /// The next moment something is due.
    fn next_wake(&self, now: &Now, timers: &Timers) -> Millis {
        let mut wake = timers.observe.max(now.mono + 1);
        let mut due = |at: Option<Millis>| {
            if let Some(at) = at {
                wake = wake.min(at.max(now.mono + 1));
            }
        };
        let leader = self.is_leader(now);
        if leader && timers.started {
            due(self.pending.next_due());
            due(self.submitter.next_after());
        }
        due((leader && !timers.polling).then_some(timers.poll));
        due((leader && !timers.reconciling).then_some(timers.reconcile));
        due((!timers.asking_depth).then_some(timers.depth));
        due(self.catalogs.next_due());
        due(self.lease_wake());
        wake
    }

    /// Ingests an event while leading; a replica that is not (it stood
    /// down while the event was on its way) lets the message go at once.
    fn ingest_as_leader(
        &mut self,
        event: crate::source::driver::SourceEvent,
        now: &Now,
        effects: &Effects<Q, I>,
    ) {
        if self.is_leader(now) {
            self.ingest(event, now, effects);
        } else if let crate::source::driver::SourceEvent::Received { id, .. } = event {
            effects.release(vec![id]);
        }
    }

    fn ingest(
        &mut self,
        event: crate::source::driver::SourceEvent,
        now: &Now,
        effects: &Effects<Q, I>,
    ) {
        let (ingested, effect) =
            pipeline::accept(&self.router, &mut self.pending, &self.clock, now, event);
        if let Some(effect) = effect {
            effects.queue(effect);
        }
        let metrics = &self.observers.metrics;
        match &ingested {
            Ingested::Pending {
                requested,
                skipped,
                s3_objects,
                asked,
                ..
            } => {
                for (alias, n) in requested {
                    metrics.paths_requested(alias, *n as u64);
                }
                for (alias, n) in skipped {
                    metrics.paths_skipped(alias, *n as u64);
                }
                self.follow_s3(s3_objects);
                for (alias, paths) in asked {
                    self.catalogs.learn(alias, paths);
                }
                self.cover_recovered(now, effects);
            }
            Ingested::Rejected(reason) => metrics.rejected(*reason),
            Ingested::Deleted {
                skipped,
                s3_objects,
            } => {
                for (alias, n) in skipped {
                    metrics.paths_skipped(alias, *n as u64);
                }
                self.follow_s3(s3_objects);
            }
            Ingested::Forgotten | Ingested::Duplicate => {}
        }
    }

    /// The catalogs follow an S3 event's objects: created ones are added
    /// (and learned), deleted ones removed.
    fn follow_s3(&mut self, s3_objects: &pipeline::S3Objects) {
        for (alias, paths, removed) in s3_objects {
            self.catalogs.follow(alias, paths, removed);
            let created = paths.iter().filter(|p| !removed.contains(p));
            self.catalogs.learn(alias, created);
        }
    }

    /// Messages first handed to a process that crashed after creating
    /// their invalidation are covered by it: deleted without another.
    fn cover_recovered(&mut self, now: &Now, effects: &Effects<Q, I>) {
        let keep = RECOVERED_FOR.as_millis() as Millis;
        self.recovered
            .retain(|r| now.mono.saturating_sub(r.created_at) < keep);
        for r in &self.recovered {
            let covered = self
                .pending
                .apply_recovered(&r.alias, &r.paths, r.created_at);
            if !covered.is_empty() {
                tracing::info!(distribution = %r.alias, messages = covered.len(), "redelivered messages covered by an invalidation made before a crash");
                effects.queue(Effect::Delete(covered));
            }
        }
    }

    /// Opens the ledger if it is not yet, and rolls the month over.
    fn keep_ledger(&mut self, now: &Now) {
        match self.ledger.keep(now) {
            Ok(()) if self.ledger.budget().is_some() => self.observers.readiness.clear("ledger"),
            Ok(()) => {}
            Err(e) => self
                .observers
                .readiness
                .set("ledger", format!("the budget ledger is not usable: {e}")),
        }
    }

    fn start_reconcile(&mut self, now: &Now, timers: &mut Timers, effects: &Effects<Q, I>) {
        timers.reconciling = true;
        timers.round_term = self.replica.as_ref().map_or(0, |r| r.term);
        let scan = if self.ledger.wants_scan() {
            self.ledger
                .scan_basis()
                .map(|(seen, month_start)| ScanBasis { seen, month_start })
        } else {
            None
        };
        let aliases = self
            .targets
            .iter()
            .map(|(a, target)| (a.clone(), target.clone()))
            .collect();
        effects.reconcile(aliases, now.instant, now.wall, scan);
    }

    /// Plans and submits every due batch, and every batch waiting to be
    /// retried.
    fn submit_due(&mut self, now: &Now, effects: &Effects<Q, I>) {
        let mut aliases = self.pending.due(now.mono);
        for alias in self.submitter.queued_aliases() {
            if !aliases.iter().any(|a| a == alias) {
                aliases.push(alias.to_owned());
            }
        }
        for alias in aliases {
            self.submit(&alias, now, effects);
        }
    }

    fn submit(&mut self, alias: &str, now: &Now, effects: &Effects<Q, I>) {
        let Some(target) = self.targets.get(alias).cloned() else {
            return;
        };
        let due = self.pending.due(now.mono).iter().any(|a| a == alias);
        let entries = if due && !self.submitter.has_queued(alias) {
            self.pending.batch(alias)
        } else {
            Vec::new()
        };
        let budget = self.ledger.budget();
        let price = match (self.price_follows_budget, budget) {
            (Some(burst), Some(b)) => crate::planner::price_for(
                self.blast_per_path,
                b.used() as f64,
                b.allowed(now.wall) as f64 - burst,
                burst,
            ),
            _ => self.blast_per_path,
        };
        let situation = Situation {
            due,
            entries: &entries,
            capacity: self.tracker.capacity(alias),
            remaining: budget.map(|b| b.remaining(now.wall)),
            catalog: self.catalogs.get(alias),
            price,
        };
        match self.submitter.next(alias, now.mono, situation) {
            Step::Idle => {}
            Step::Wait { until, why } => {
                tracing::trace!(distribution = %alias, ?why, "waiting");
                self.pending.hold(alias, until);
            }
            Step::Send { batch, hold } => {
                if let Some(until) = hold {
                    tracing::info!(distribution = %alias, "not enough room in flight or budget; the rest waits");
                    self.pending.hold(alias, until);
                }
                // The reservation is on disk before CloudFront is called.
                let reserved =
                    self.ledger
                        .reserve(&batch.reference, alias, batch.paths.len() as u64, now);
                if let Err(e) = reserved {
                    tracing::error!(distribution = %alias, error = %e, "could not reserve the batch in the ledger; not submitting it");
                    self.observers
                        .readiness
                        .set("ledger", format!("the budget ledger is not usable: {e}"));
                    let until = self.submitter.not_reserved(alias, batch, now.mono);
                    self.pending.hold(alias, until);
                    return;
                }
                self.observers.readiness.clear("ledger");
                // Not due again while its call is under way; the answer
                // says when.
                self.pending.hold(alias, Millis::MAX);
                self.calls_hold.insert(alias.to_owned(), hold);
                effects.create(alias, &target, batch);
            }
        }
    }

    /// Applies one task's report. What a report changes shows in the
    /// gauges and the status at once; ingesting waits for the next refresh.
    fn apply(&mut self, done: Done, now: &Now, timers: &mut Timers, effects: &Effects<Q, I>) {
        timers.observe = 0;
        match done {
            Done::Created {
                alias,
                batch,
                result: Ok(invalidation),
            } => self.created(&alias, batch, &invalidation, now, effects),
            Done::Created {
                alias,
                batch,
                result: Err(e),
            } => self.create_failed(&alias, batch, &e, now, timers, effects),
            Done::Polled(report) => {
                timers.polling = false;
                timers.poll = now.after(effects::poll_round(self.poll_interval));
                for c in report.completed {
                    self.observers
                        .metrics
                        .invalidation_completed(&c.alias, c.took);
                    tracing::info!(distribution = %c.alias, invalidation = %c.id, seconds = c.took.as_secs(), "invalidation completed");
                }
                for (alias, id, e) in report.failed {
                    self.observers.metrics.cloudfront_error(&alias, &e);
                    tracing::warn!(distribution = %alias, invalidation = %id, error = %e, "checking an invalidation failed");
                }
            }
            Done::Reconciled {
                alias,
                result,
                scan,
            } => {
                match &result {
                    Ok(()) => self.judge_distribution(&alias, Ok(()), now),
                    Err(e) => {
                        self.observers.metrics.cloudfront_error(&alias, e);
                        self.judge_distribution(&alias, Err(e), now);
                        tracing::warn!(distribution = %alias, error = %e, "counting invalidations in flight failed");
                    }
                }
                match scan {
                    Some(Ok(found)) => {
                        let recovered = self.ledger.take_scan(&alias, found, now);
                        if !recovered.is_empty() {
                            self.recovered.extend(recovered);
                            self.cover_recovered(now, effects);
                        }
                    }
                    Some(Err(e)) => {
                        self.observers.metrics.cloudfront_error(&alias, &e);
                        tracing::warn!(distribution = %alias, error = %e, "listing this month's invalidations failed");
                    }
                    None => {}
                }
            }
            Done::RoundOver => {
                timers.reconciling = false;
                if timers.round_term != self.replica.as_ref().map_or(0, |r| r.term) {
                    // A round of an earlier term: this term needs its own.
                    timers.reconcile = now.mono;
                    return;
                }
                timers.reconcile = now.after(self.reconcile_interval);
                self.ledger.round_over();
                timers.started = true;
            }
            Done::Lease(answer) => self.lease_answered(answer, now, timers, effects),
            Done::SharedLedger(read) => self.ledger_read(read, now),
            Done::QueueClosed => timers.queue_closed = true,
            Done::Catalog { alias, result } => self.catalogs.built(&alias, result, now),
            Done::Deleted(n) => {
                self.observers.metrics.deleted(n as u64);
                self.totals.messages_deleted += n as u64;
            }
            Done::Depth(result) => {
                timers.asking_depth = false;
                timers.depth = now.after(DEPTH_INTERVAL);
                let standby = self.replica.is_some() && !self.is_leader(now);
                if standby && result.is_err() {
                    // Its readiness rests on this call alone: ask again soon.
                    timers.depth = now.after(STANDBY_DEPTH_RETRY);
                }
                match result {
                    Ok(depth) => {
                        self.observers.readiness.clear(STARTUP);
                        if standby {
                            self.observers.readiness.clear("queue");
                        }
                        self.observers.set_depth(depth);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "asking for the queue's depth failed");
                        if standby {
                            self.observers.readiness.set("queue", e.to_string());
                        }
                    }
                }
            }
        }
    }

    fn created(
        &mut self,
        alias: &str,
        batch: Batch,
        invalidation: &Invalidation,
        now: &Now,
        effects: &Effects<Q, I>,
    ) {
        // A crash here: created, still only reserved in the ledger.
        fail::fail_point!("daemon::after_create");
        self.submitter.created(alias);
        let hold = self.calls_hold.remove(alias).flatten();
        self.pending.hold(alias, hold.unwrap_or(now.mono));
        self.ledger
            .commit(&batch.reference, &invalidation.id, invalidation.created_at);
        self.tracker
            .record_created(alias, invalidation, now.instant);
        self.judge_distribution(alias, Ok(()), now);
        let covered = self
            .pending
            .apply_timed(alias, &batch.paths, batch.first_sent_at);
        let metrics = &self.observers.metrics;
        for (_, received_at) in &covered {
            let waited = now.mono.saturating_sub(*received_at);
            metrics.request_to_invalidation(alias, Duration::from_millis(waited));
        }
        let wildcards = batch.paths.iter().filter(|p| p.is_wildcard()).count() as u64;
        let tags = batch.paths.iter().filter(|p| p.is_tag()).count() as u64;
        metrics.paths_submitted(
            alias,
            batch.paths.len() as u64 - wildcards - tags,
            wildcards,
            tags,
        );
        metrics.invalidation_created(alias);
        metrics.paths_blast(alias, batch.blast);
        self.totals.invalidations += 1;
        self.totals.paths_submitted += batch.paths.len() as u64;
        tracing::info!(
            distribution = %alias,
            invalidation = %invalidation.id,
            requested = batch.requested,
            billed = batch.paths.len(),
            wildcards,
            tags,
            blast = batch.blast,
            messages_covered = covered.len(),
            "invalidation created"
        );
        if !covered.is_empty() {
            effects.queue(Effect::Delete(
                covered.into_iter().map(|(id, _)| id).collect(),
            ));
        }
    }

    fn create_failed(
        &mut self,
        alias: &str,
        batch: Batch,
        e: &InvalidatorError,
        now: &Now,
        timers: &mut Timers,
        effects: &Effects<Q, I>,
    ) {
        self.totals.create_errors += 1;
        self.observers.metrics.cloudfront_error(alias, e);
        self.judge_distribution(alias, Err(e), now);
        let reference = batch.reference.clone();
        let entries = self.pending.batch(alias);
        let after =
            self.submitter
                .failed(alias, batch, e, &entries, now.mono, rand::random::<f64>());
        tracing::warn!(distribution = %alias, error = %e, action = ?after.action, "CreateInvalidation failed");
        if after.release {
            self.ledger.release(&reference);
        }
        let hold = self.calls_hold.remove(alias).flatten();
        self.pending
            .hold(alias, after.hold.or(hold).unwrap_or(now.mono));
        if after.reconcile && !timers.reconciling && self.is_leader(now) {
            self.start_reconcile(now, timers, effects);
        }
        if let Some(path) = after.reject {
            let offenders = self
                .pending
                .messages_waiting_on(alias, std::slice::from_ref(&path));
            tracing::error!(distribution = %alias, messages = offenders.len(), error = %e, "CloudFront refused a requested path that passed validation; rejecting the messages that ask for it");
            let (reason, what) = if path.is_tag() {
                (RejectReason::InvalidTag, "tag")
            } else {
                (RejectReason::InvalidPath, "path")
            };
            let detail = format!("CloudFront refused the {what}: {e}");
            for id in offenders {
                self.pending.remove(&id);
                self.observers.metrics.rejected(reason);
                effects.queue(Effect::Reject {
                    id,
                    reason,
                    detail: detail.clone(),
                    body: None,
                });
            }
        }
    }

    /// Marks a distribution not ready while CloudFront refuses it as
    /// configured (missing, or access denied), ready again otherwise. When
    /// a refused distribution is accepted again, its held batch goes out
    /// now instead of after the slow retry.
    fn judge_distribution(
        &mut self,
        alias: &str,
        outcome: Result<(), &InvalidatorError>,
        now: &Now,
    ) {
        let component = format!("distribution:{alias}");
        match outcome {
            Err(
                e @ (InvalidatorError::NoSuchDistribution(_) | InvalidatorError::AccessDenied(_)),
            ) => {
                self.refused.insert(alias.to_owned());
                let what = match self.targets.get(alias) {
                    Some(target @ Target::Tenant { .. }) => format!("{alias} ({target})"),
                    _ => alias.to_owned(),
                };
                self.observers.readiness.set(
                    &component,
                    format!("CloudFront refuses distribution {what}: {e}"),
                );
            }
            Err(_) => {}
            Ok(()) => {
                if self.refused.remove(alias) {
                    tracing::info!(distribution = %alias, "CloudFront accepts the distribution again");
                    self.pending.hold(alias, now.mono);
                    self.submitter.expedite(alias, now.mono);
                }
                self.observers.readiness.clear(&component);
            }
        }
    }
}

#[cfg(test)]
mod tests;
