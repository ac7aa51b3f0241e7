//! The daemon's main loop: messages in from the source, into the pending
//! set; due batches planned with the tracker's capacity, rate limited,
//! submitted with a stable CallerReference; covered messages deleted; our
//! invalidations polled to completion and others' counted. One task owns
//! the pending set, so the decisions need no locks.

use std::collections::{HashMap, HashSet, VecDeque};
use std::num::NonZeroU32;
use std::time::{Duration, SystemTime};

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::budget::{AnyStore, Budget, FileStore};
use crate::cloudfront::invalidator::{Invalidator, InvalidatorError};
use crate::config::{BudgetConfig, Config, OnExhausted};
use crate::decode::{RejectReason, Router};
use crate::metrics::Metrics;
use crate::path::CfPath;
use crate::pending::{BatchRules, Millis, PendingSet};
use crate::pipeline::{Clock, Ingested, ingest};
use crate::planner::{self, Capacity, Settings};
use crate::source::driver::{QueueHealth, Source, SourceSettings};
use crate::source::queue::Queue;
use crate::status::{self, Heartbeat, Readiness, Status, StatusBoard};
use crate::submitter::{self, Action};
use crate::tracker::{InflightView, Tracker, external};

/// A batch being retried: the same paths under the same reference.
#[derive(Clone, Debug)]
struct Retry {
    batch: u64,
    paths: Vec<CfPath>,
    /// Requested entries the paths stand for (for the log).
    requested: usize,
    attempts: u32,
    /// When the first attempt was sent: the invalidation, if that attempt
    /// made one, was created after this, so only messages received before
    /// it count as covered.
    first_sent_at: Millis,
    /// Not to be sent before this time (backoff, rate limit).
    after: Millis,
}

/// How long to wait before trying a ledger that could not be opened or
/// written again.
const LEDGER_RETRY: Duration = Duration::from_secs(5);

/// At most this many ListInvalidations pages per budget scan (100
/// invalidations each); the rest waits for the next scan.
const SCAN_PAGES: usize = 50;

/// How often the queue's depth is asked for (GetQueueAttributes).
const DEPTH_INTERVAL: Duration = Duration::from_secs(30);

/// The readiness component that holds until the queue first answers.
const STARTUP: &str = "startup";

/// What the daemon shows of itself, for the HTTP server: its metrics (and
/// the registry they are in), the status snapshot, the readiness reasons and
/// the heartbeat of its main loop. Clones share the same state.
#[derive(Clone, Debug)]
pub struct Observers {
    pub registry: prometheus::Registry,
    pub metrics: Metrics,
    pub status: StatusBoard,
    pub readiness: Readiness,
    pub heartbeat: Heartbeat,
}

impl Observers {
    /// Fresh observers for `config`: a registry of its own with every
    /// metric at zero, the initial status, ready, beating.
    pub fn new(config: &Config) -> Observers {
        let registry = prometheus::Registry::new();
        let aliases: Vec<&str> = config.distributions.keys().map(String::as_str).collect();
        // A fresh registry refuses a metric only when two share a name,
        // which the metrics module's own tests rule out.
        let metrics = Metrics::new(&registry, &aliases).expect("metric names are unique");
        // The ledger fills in used and allowed; the limit is known now.
        metrics.set_budget(config.budget.monthly_paths, 0, 0);
        let readiness = Readiness::new();
        readiness.set(
            STARTUP,
            "starting: the queue has not answered yet".to_owned(),
        );
        Observers {
            registry,
            metrics,
            status: StatusBoard::new(Status::initial(config)),
            readiness,
            heartbeat: Heartbeat::new(),
        }
    }
}

/// Tells systemd (`NOTIFY_SOCKET`) about a state change; nothing outside
/// systemd.
fn notify(states: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "notifying the service manager failed");
    }
}

/// What the daemon did, for tests and logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub invalidations: u64,
    pub paths_submitted: u64,
    pub messages_deleted: u64,
    pub create_errors: u64,
}

pub struct Daemon<Q, I> {
    source: Source<Q>,
    invalidator: I,
    tracker: Tracker<I>,
    pending: PendingSet,
    router: Router,
    settings: Settings,
    ids: HashMap<String, String>,
    clock: Clock,
    limiter: DefaultDirectRateLimiter,
    poll_interval: Duration,
    reconcile_interval: Duration,
    grace: Duration,
    /// Distinguishes this process's CallerReferences from a previous run's.
    run: u64,
    next_batch: u64,
    /// Per distribution, the batches planned and not yet accepted, in the
    /// order they go out: one after a failure to retry, several while a
    /// refused batch is being split to find what CloudFront refuses. While a
    /// distribution has any, nothing new is planned for it.
    retries: HashMap<String, VecDeque<Retry>>,
    observers: Observers,
    /// The month's path budget; `None` until the ledger could be opened,
    /// and nothing is submitted until then.
    budget: Option<Budget<AnyStore>>,
    store: AnyStore,
    budget_config: BudgetConfig,
    /// When to try the ledger again after it failed.
    ledger_retry_at: Millis,
    /// Whether reservations a crash left open have been looked for at
    /// CloudFront since the ledger was opened.
    confirmed_leftovers: bool,
    /// When each distribution's deferral was last logged.
    deferral_logged: HashMap<String, Millis>,
    /// Whether systemd expects watchdog pings (`WatchdogSec=`).
    watchdog: bool,
    /// Distributions CloudFront refuses (NoSuchDistribution, AccessDenied).
    refused: HashSet<String>,
    /// The queue's counts as last asked for.
    depth: crate::source::queue::QueueDepth,
    totals: Totals,
}

impl<Q: Queue, I: Invalidator> Daemon<Q, I> {
    pub fn new(config: &Config, queue: Q, invalidator: I) -> Daemon<Q, I> {
        let cf = &config.cloudfront;
        let period = Duration::from_secs_f64(1.0 / cf.create_per_second);
        let burst = NonZeroU32::new(cf.create_burst).unwrap_or(NonZeroU32::MIN);
        // Validation keeps create_per_second within (0, 100], so a period
        // always exists; fall back to one a second all the same.
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        let poll_interval = Duration::from_secs(cf.poll_interval_seconds);
        let source = Source::new(queue, SourceSettings::from(&config.source));
        // The source counts the decoded entries in source.max_pending_bytes.
        let pending =
            PendingSet::new(BatchRules::from(&config.batching)).with_meter(source.pending_meter());
        Daemon {
            source,
            tracker: Tracker::new(
                invalidator.clone(),
                InflightView::new(config.distributions.iter()),
                poll_interval,
            ),
            invalidator,
            pending,
            router: Router::new(config),
            settings: Settings::from(&config.coalesce),
            ids: config
                .distributions
                .iter()
                .map(|(alias, d)| (alias.clone(), d.id.clone()))
                .collect(),
            clock: Clock::new(),
            limiter: RateLimiter::direct(quota),
            poll_interval,
            reconcile_interval: Duration::from_secs(cf.reconcile_interval_seconds),
            grace: Duration::from_secs(config.shutdown.grace_seconds),
            run: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            next_batch: 0,
            retries: HashMap::new(),
            observers: Observers::new(config),
            budget: None,
            store: AnyStore::File(FileStore::new(config.budget.ledger_path.clone())),
            budget_config: config.budget.clone(),
            ledger_retry_at: 0,
            confirmed_leftovers: false,
            deferral_logged: HashMap::new(),
            watchdog: sd_notify::watchdog_enabled().is_some(),
            refused: HashSet::new(),
            depth: Default::default(),
            totals: Totals::default(),
        }
    }

    /// Keeps the budget ledger in `store` instead of the configured file
    /// (tests use memory).
    pub fn with_ledger(mut self, store: AnyStore) -> Self {
        self.store = store;
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
        let stop_source = CancellationToken::new();
        self.open_budget();
        let mut events = self.source.start(&tasks, &stop_source);
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut poll = tokio::time::interval(self.poll_interval);
        let mut reconcile = tokio::time::interval(self.reconcile_interval);
        let mut depth = tokio::time::interval(DEPTH_INTERVAL);
        // Under systemd (Type=notify) the start is over once the loop runs;
        // outside it this does nothing.
        notify(&[sd_notify::NotifyState::Ready]);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                Some(event) = events.recv() => {
                    let ingested = ingest(&self.source, &self.router, &mut self.pending, &self.clock, event).await;
                    self.count(&ingested);
                }
                _ = tick.tick() => {
                    self.keep_budget();
                    self.submit_due().await;
                    self.observe();
                }
                _ = poll.tick() => self.poll().await,
                _ = reconcile.tick() => self.reconcile().await,
                _ = depth.tick() => self.ask_depth().await,
            }
        }
        // Shutdown: stop receiving, submit what can be, release the rest.
        notify(&[
            sd_notify::NotifyState::Stopping,
            sd_notify::NotifyState::Status("draining"),
        ]);
        stop_source.cancel();
        tasks.close();
        while let Ok(event) = events.try_recv() {
            let ingested = ingest(
                &self.source,
                &self.router,
                &mut self.pending,
                &self.clock,
                event,
            )
            .await;
            self.count(&ingested);
        }
        self.pending.flush_all();
        let deadline = Instant::now() + self.grace;
        while Instant::now() < deadline && self.pending.pending_messages() > 0 {
            let before = self.totals.invalidations;
            self.submit_due().await;
            if self.totals.invalidations == before {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        let left: Vec<_> = self.pending.message_ids().cloned().collect();
        if !left.is_empty() {
            tracing::info!(
                messages = left.len(),
                "releasing messages not covered before the grace period ended"
            );
            self.source.release(&left).await;
        }
        tasks.wait().await;
        self.observe();
        self.totals
    }

    /// Counts one ingested message in the metrics.
    fn count(&self, ingested: &Ingested) {
        let metrics = &self.observers.metrics;
        match ingested {
            Ingested::Forgotten => return,
            Ingested::Pending { requested, .. } => {
                for (alias, n) in requested {
                    metrics.paths_requested(alias, *n as u64);
                }
            }
            Ingested::Rejected(reason) => metrics.rejected(*reason),
            Ingested::Deleted => metrics.deleted(1),
            Ingested::Duplicate => {}
        }
        metrics.received(1);
    }

    /// Refreshes the gauges, readiness and the status snapshot from the
    /// pending set, the tracker and the source, and beats the heartbeat.
    fn observe(&self) {
        let Observers {
            metrics,
            status,
            readiness,
            heartbeat,
            ..
        } = &self.observers;
        heartbeat.beat();
        // From the loop that does the work: a stuck loop stops pinging.
        if self.watchdog {
            notify(&[sd_notify::NotifyState::Watchdog]);
        }
        match self.source.health() {
            QueueHealth::Ready => readiness.clear("queue"),
            QueueHealth::NotReady(reason) => readiness.set("queue", reason),
        }
        let now = self.clock.now();
        let view = self.tracker.view();
        let mut snapshot = status.snapshot().as_ref().clone();
        for (alias, d) in &mut snapshot.distributions {
            let paths = self.pending.pending_paths(alias) as u64;
            let oldest = Duration::from_millis(self.pending.oldest_age(alias, now).unwrap_or(0));
            let inflight = view.inflight(alias).unwrap_or_default();
            metrics.set_pending(alias, paths, oldest);
            metrics.set_inflight(alias, inflight.exact as u64, inflight.wildcard as u64);
            d.pending_paths = paths;
            d.oldest_pending_seconds = oldest.as_secs();
            d.inflight_exact = inflight.exact as u64;
            d.inflight_wildcard = inflight.wildcard as u64;
            d.last_invalidation =
                view.last_invalidation(alias)
                    .map(|last| status::LastInvalidation {
                        id: last.id.clone(),
                        status: last.status.as_str().to_owned(),
                        paths: last.paths.len() as u64,
                        created_at: last.created_at,
                    });
        }
        drop(view);
        let messages = self.pending.pending_messages() as u64;
        metrics.set_pending_messages(messages);
        snapshot.queue = status::QueueStatus {
            visible: self.depth.visible,
            in_flight: self.depth.in_flight,
            delayed: self.depth.delayed,
            pending_messages: messages,
        };
        if let Some(budget) = &self.budget {
            let wall = SystemTime::now();
            snapshot.budget = budget.status(wall);
            metrics.set_budget(budget.limit(), budget.used(), budget.allowed(wall));
        } else {
            snapshot.budget.month = status::format_time(SystemTime::now())
                .get(..7)
                .unwrap_or_default()
                .to_owned();
        }
        status.publish(snapshot);
    }

    async fn ask_depth(&mut self) {
        match self.source.depth().await {
            Ok(depth) => {
                self.observers.readiness.clear(STARTUP);
                self.depth = depth;
                self.observers
                    .metrics
                    .set_queue(depth.visible, depth.in_flight, depth.delayed);
            }
            Err(e) => tracing::warn!(error = %e, "asking for the queue's depth failed"),
        }
    }

    /// Marks a distribution not ready while CloudFront refuses it as
    /// configured (missing, or access denied), ready again otherwise. When
    /// a refused distribution is accepted again (a reconcile got through),
    /// its held batch goes out now instead of after the slow retry.
    fn judge_distribution(&mut self, alias: &str, outcome: Result<(), &InvalidatorError>) {
        let component = format!("distribution:{alias}");
        match outcome {
            Err(
                e @ (InvalidatorError::NoSuchDistribution(_) | InvalidatorError::AccessDenied(_)),
            ) => {
                self.refused.insert(alias.to_owned());
                self.observers.readiness.set(
                    &component,
                    format!("CloudFront refuses distribution {alias}: {e}"),
                );
            }
            Err(_) => {}
            Ok(()) => {
                if self.refused.remove(alias) {
                    tracing::info!(distribution = %alias, "CloudFront accepts the distribution again");
                    let now = self.clock.now();
                    self.pending.hold(alias, now);
                    for retry in self.retries.get_mut(alias).into_iter().flatten() {
                        retry.after = retry.after.min(now);
                    }
                }
                self.observers.readiness.clear(&component);
            }
        }
    }

    /// Opens the ledger (at start, and again after a failure); not ready
    /// while it cannot be read or written.
    fn open_budget(&mut self) {
        let now = self.clock.now();
        if self.budget.is_some() || now < self.ledger_retry_at {
            return;
        }
        match Budget::open(
            self.store.clone(),
            self.budget_config.clone(),
            SystemTime::now(),
        ) {
            Ok(budget) => {
                let leftovers = budget.unconfirmed();
                if !leftovers.is_empty() {
                    tracing::warn!(
                        reservations = leftovers.len(),
                        paths = leftovers.iter().map(|(_, _, p)| p).sum::<u64>(),
                        "the ledger holds reservations a crash left open; counted as spent"
                    );
                }
                tracing::info!(month = %budget.month(), used = budget.used(), limit = budget.limit(), "budget ledger open");
                self.observers.readiness.clear("ledger");
                self.confirmed_leftovers = leftovers.is_empty();
                self.budget = Some(budget);
            }
            Err(e) => self.ledger_failed(&e),
        }
    }

    fn ledger_failed(&mut self, error: &crate::budget::LedgerError) {
        tracing::error!(error = %error, "budget ledger not usable; submitting nothing until it is");
        self.observers.readiness.set(
            "ledger",
            format!("the budget ledger is not usable: {error}"),
        );
        self.ledger_retry_at = self.clock.now() + LEDGER_RETRY.as_millis() as Millis;
    }

    /// Opens the ledger if it is not yet, and rolls the month over when it
    /// has turned.
    fn keep_budget(&mut self) {
        self.open_budget();
        let rolled = match &mut self.budget {
            Some(budget) => budget.rollover(SystemTime::now()),
            None => return,
        };
        match rolled {
            Ok(true) => tracing::info!("a new month: the budget starts again"),
            Ok(false) => {}
            Err(e) => self.ledger_failed(&e),
        }
    }

    /// Counts other tools' invalidations of this month on `alias` into the
    /// ledger (with `count_external`), and confirms reservations a crash
    /// left open whose invalidation CloudFront shows.
    async fn scan_budget(&mut self, alias: &str) {
        let confirm = !self.confirmed_leftovers;
        let Some(budget) = &self.budget else {
            return;
        };
        if !self.budget_config.count_external && !confirm {
            return;
        }
        let Some(id) = self.ids.get(alias) else {
            return;
        };
        let seen = &budget.state().external_seen;
        let found = external::scan(
            &self.invalidator,
            id,
            budget.month().start(),
            |id| seen.contains(id),
            SCAN_PAGES,
        )
        .await;
        let found = match found {
            Ok(found) => found,
            Err(e) => {
                self.observers.metrics.cloudfront_error(alias, &e);
                tracing::warn!(distribution = %alias, error = %e, "listing this month's invalidations failed");
                return;
            }
        };
        let Some(budget) = &mut self.budget else {
            return;
        };
        let leftovers: HashSet<String> = budget
            .unconfirmed()
            .into_iter()
            .map(|(reference, _, _)| reference)
            .collect();
        for f in found {
            let result = if f.ours {
                if leftovers.contains(&f.caller_reference) {
                    tracing::info!(distribution = %alias, invalidation = %f.id, paths = f.paths, "a reservation left by a crash was created: confirmed");
                    if let Err(e) = budget.confirm(&f.caller_reference) {
                        tracing::warn!(error = %e, "confirming a reservation failed");
                    }
                }
                budget.count_external(&f.id, 0, f.created_at)
            } else {
                let counted = budget.count_external(&f.id, f.paths, f.created_at);
                if matches!(counted, Ok(true)) {
                    tracing::info!(distribution = %alias, invalidation = %f.id, paths = f.paths, "counted another tool's invalidation in the budget");
                }
                counted
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "counting an invalidation in the ledger failed; it is counted at the next scan");
                break;
            }
        }
    }

    async fn poll(&mut self) {
        let report = self.tracker.poll_all(Instant::now()).await;
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

    async fn reconcile(&mut self) {
        let aliases: Vec<String> = self.ids.keys().cloned().collect();
        for alias in &aliases {
            self.reconcile_one(alias).await;
            self.scan_budget(alias).await;
        }
        if self.budget.is_some() {
            // Whatever a crash left and CloudFront did not show stays spent.
            self.confirmed_leftovers = true;
        }
    }

    async fn reconcile_one(&mut self, alias: &str) {
        let result = self
            .tracker
            .reconcile(alias, Instant::now(), SystemTime::now())
            .await;
        match &result {
            Ok(_) => self.judge_distribution(alias, Ok(())),
            Err(e) => {
                self.observers.metrics.cloudfront_error(alias, e);
                self.judge_distribution(alias, Err(e));
                tracing::warn!(distribution = %alias, error = %e, "counting invalidations in flight failed");
            }
        }
    }

    /// Plans and submits every due batch, and every batch waiting to be
    /// retried (each of those has a retry entry, so `submit` takes it from
    /// there and never replans a distribution that is not due).
    async fn submit_due(&mut self) {
        let mut due = self.pending.due(self.clock.now());
        due.extend(
            self.retries
                .iter()
                .filter(|(a, q)| !q.is_empty() && !due.contains(a))
                .map(|(a, _)| a.clone())
                .collect::<Vec<_>>(),
        );
        for alias in due {
            self.submit(&alias).await;
        }
    }

    async fn submit(&mut self, alias: &str) {
        let now = self.clock.now();
        let Some(id) = self.ids.get(alias).cloned() else {
            return;
        };
        let queued = self.retries.get_mut(alias).and_then(VecDeque::pop_front);
        let retry = match queued {
            Some(r) if r.after > now => {
                self.requeue_front(alias, r);
                return;
            }
            Some(r) => r,
            None => {
                let Some(capacity) = self.tracker.capacity(alias) else {
                    return;
                };
                let Some(remaining) = self.budget.as_ref().map(|b| b.remaining(SystemTime::now()))
                else {
                    // No ledger: nothing may be spent.
                    return;
                };
                let Some((paths, requested)) = self.plan_batch(alias, capacity, remaining, now)
                else {
                    return;
                };
                Retry {
                    requested,
                    ..self.new_batch(paths, now)
                }
            }
        };
        if let Err(not_until) = self.limiter.check() {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let after = now + wait.as_millis() as Millis + 1;
            self.pending.hold(alias, after);
            self.requeue_front(alias, Retry { after, ..retry });
            return;
        }
        let reference = submitter::caller_reference(alias, self.run, retry.batch, &retry.paths);
        // The reservation is on disk before CloudFront is called.
        let reserved = match &mut self.budget {
            Some(budget) => budget
                .reserve(
                    &reference,
                    alias,
                    retry.paths.len() as u64,
                    SystemTime::now(),
                )
                .map_err(|e| e.to_string()),
            None => Err("the budget ledger is not open".to_owned()),
        };
        if let Err(e) = reserved {
            tracing::error!(distribution = %alias, error = %e, "could not reserve the batch in the ledger; not submitting it");
            self.observers
                .readiness
                .set("ledger", format!("the budget ledger is not usable: {e}"));
            let after = now + LEDGER_RETRY.as_millis() as Millis;
            self.pending.hold(alias, after);
            self.requeue_front(alias, Retry { after, ..retry });
            return;
        }
        self.observers.readiness.clear("ledger");
        let sent_at = if retry.attempts == 0 {
            self.clock.now()
        } else {
            retry.first_sent_at
        };
        match self.invalidator.create(&id, &reference, &retry.paths).await {
            Ok(invalidation) => {
                // A crash here: created, still only reserved in the ledger.
                fail::fail_point!("daemon::after_create");
                if let Some(budget) = &mut self.budget {
                    // Should the commit fail, the reservation stays: spent.
                    if let Err(e) = budget.commit(&reference) {
                        tracing::warn!(error = %e, "recording the spending failed; the reservation counts as spent");
                    }
                    // Ours: a later scan of the month must not count it.
                    let _ = budget.count_external(&invalidation.id, 0, invalidation.created_at);
                }
                self.tracker
                    .record_created(alias, &invalidation, Instant::now());
                self.judge_distribution(alias, Ok(()));
                let accepted_at = self.clock.now();
                let covered = self.pending.apply_timed(alias, &retry.paths, sent_at);
                let metrics = &self.observers.metrics;
                for (_, received_at) in &covered {
                    let waited = accepted_at.saturating_sub(*received_at);
                    metrics.request_to_invalidation(alias, Duration::from_millis(waited));
                }
                let wildcards = retry.paths.iter().filter(|p| p.is_wildcard()).count() as u64;
                metrics.paths_submitted(alias, retry.paths.len() as u64 - wildcards, wildcards);
                metrics.invalidation_created(alias);
                let covered: Vec<_> = covered.into_iter().map(|(id, _)| id).collect();
                let deleted = self.source.delete(&covered).await;
                metrics.deleted(deleted as u64);
                self.totals.invalidations += 1;
                self.totals.paths_submitted += retry.paths.len() as u64;
                self.totals.messages_deleted += deleted as u64;
                tracing::info!(
                    distribution = %alias,
                    invalidation = %invalidation.id,
                    requested = retry.requested,
                    billed = retry.paths.len(),
                    wildcards = retry.paths.iter().filter(|p| p.is_wildcard()).count(),
                    messages_deleted = deleted,
                    "invalidation created"
                );
            }
            Err(e) => {
                self.totals.create_errors += 1;
                if submitter::created_nothing(&e)
                    && let Some(budget) = &mut self.budget
                    && let Err(le) = budget.release(&reference)
                {
                    tracing::warn!(error = %le, "giving a refused batch's reservation back failed; it stays spent");
                }
                self.observers.metrics.cloudfront_error(alias, &e);
                self.judge_distribution(alias, Err(&e));
                let attempts = retry.attempts + 1;
                let action = submitter::action(&e, attempts, rand::random::<f64>());
                tracing::warn!(distribution = %alias, error = %e, ?action, "CreateInvalidation failed");
                let later = |d: Duration| now + d.as_millis() as Millis;
                // The same batch again after `d`, under the same reference.
                let again = |d: Duration| Retry {
                    attempts,
                    first_sent_at: sent_at,
                    after: later(d),
                    ..retry.clone()
                };
                match action {
                    Action::Retry(d) => {
                        self.pending.hold(alias, later(d));
                        self.requeue_front(alias, again(d));
                    }
                    Action::WaitForCapacity => {
                        self.reconcile_one(alias).await;
                        self.pending.hold(alias, later(self.poll_interval));
                    }
                    Action::NewReference => {
                        tracing::error!(distribution = %alias, reference = %reference, "CallerReference reused with other paths: a bug; replanning under a new reference");
                    }
                    Action::ConfigurationFault(d) => {
                        // The batch waits as it is: when the fault is fixed
                        // it goes out under the same reference.
                        self.pending.hold(alias, later(d));
                        self.requeue_front(alias, again(d));
                    }
                    Action::Isolate | Action::Split => {
                        self.split_refused(alias, retry.paths, &e.to_string(), now)
                            .await;
                    }
                }
            }
        }
    }

    /// Plans `alias`'s pending entries within the in-flight `capacity` and
    /// the budget's `remaining` paths, following `on_exhausted` once the
    /// budget is spent. Returns the paths and how many requested entries
    /// they stand for, or `None` when nothing goes out now (the
    /// distribution is then held for a poll interval).
    fn plan_batch(
        &mut self,
        alias: &str,
        capacity: Capacity,
        remaining: u64,
        now: Millis,
    ) -> Option<(Vec<CfPath>, usize)> {
        let entries = self.pending.batch(alias);
        let later = now + self.poll_interval.as_millis() as Millis;
        let policy = self.budget_config.on_exhausted;
        if remaining == 0 {
            match policy {
                OnExhausted::Hold => {
                    tracing::debug!(distribution = %alias, waiting = entries.len(), "budget spent: holding");
                    self.pending.hold(alias, later);
                    return None;
                }
                OnExhausted::Coalesce => {
                    let path = planner::single_covering(&entries, &self.settings)?;
                    let (exact, wildcard) = if path.is_wildcard() { (0, 1) } else { (1, 0) };
                    if !capacity.fits(exact, wildcard) {
                        self.pending.hold(alias, later);
                        return None;
                    }
                    tracing::warn!(distribution = %alias, path = %path, requested = entries.len(), "budget spent: one path covers the batch (overspending by one)");
                    return Some((vec![path], entries.len()));
                }
                OnExhausted::Overspend => {}
            }
        }
        let budgeted = Capacity {
            paths: usize::try_from(remaining).unwrap_or(usize::MAX),
            ..capacity
        };
        let mut plan = if remaining == 0 {
            planner::plan(&entries, capacity, &self.settings)
        } else {
            planner::plan(&entries, budgeted, &self.settings)
        };
        if remaining == 0 || !plan.deferred.is_empty() && policy == OnExhausted::Overspend {
            if remaining > 0 {
                plan = planner::plan(&entries, capacity, &self.settings);
            }
            if plan.figures.billed() as u64 > remaining {
                tracing::warn!(distribution = %alias, billed = plan.figures.billed(), remaining, "budget spent: overspending as configured");
            }
        }
        if !plan.deferred.is_empty() {
            // Said once a minute per distribution at most: while room is
            // short the same batch is planned again every round.
            if self
                .deferral_logged
                .get(alias)
                .is_none_or(|&at| now >= at + 60_000)
            {
                self.deferral_logged.insert(alias.to_owned(), now);
                tracing::info!(distribution = %alias, deferred = plan.deferred.len(), remaining, "not enough room in flight or budget; the rest waits");
            }
            self.pending.hold(alias, later);
        }
        if plan.paths.is_empty() {
            return None;
        }
        Some((plan.paths, entries.len() - plan.deferred.len()))
    }

    fn new_batch(&mut self, paths: Vec<CfPath>, now: Millis) -> Retry {
        self.next_batch += 1;
        Retry {
            batch: self.next_batch,
            requested: paths.len(),
            paths,
            attempts: 0,
            first_sent_at: now,
            after: now,
        }
    }

    fn requeue_front(&mut self, alias: &str, retry: Retry) {
        self.retries
            .entry(alias.to_owned())
            .or_default()
            .push_front(retry);
    }

    /// CloudFront refused a batch that passed validation (InvalidArgument),
    /// or found it too large (BatchTooLarge). Halves go out as batches of
    /// their own, so a bad path is found in a logarithmic number of calls
    /// while the good ones are submitted. A single refused path that was
    /// requested is the offender: the messages asking for it go to the
    /// dead-letter queue. A single refused wildcard the planner made goes
    /// out again as the requested paths under it.
    async fn split_refused(&mut self, alias: &str, paths: Vec<CfPath>, error: &str, now: Millis) {
        let mut parts: Vec<Vec<CfPath>> = Vec::new();
        if paths.len() > 1 {
            let mut first = paths;
            let second = first.split_off(first.len() / 2);
            parts.push(first);
            parts.push(second);
        } else if let Some(path) = paths.into_iter().next() {
            let requested: Vec<CfPath> = self
                .pending
                .batch(alias)
                .into_iter()
                .map(|e| e.path)
                .filter(|p| path.covers(p))
                .collect();
            if requested.contains(&path) {
                let offenders = self
                    .pending
                    .messages_waiting_on(alias, std::slice::from_ref(&path));
                tracing::error!(distribution = %alias, messages = offenders.len(), error, "CloudFront refused a requested path that passed validation; rejecting the messages that ask for it");
                let detail = format!("CloudFront refused the path: {error}");
                for id in offenders {
                    self.pending.remove(&id);
                    self.observers.metrics.rejected(RejectReason::InvalidPath);
                    self.source
                        .reject(&id, RejectReason::InvalidPath.as_str(), &detail)
                        .await;
                }
                // Other requests under a refused wildcard are planned anew.
            } else if !requested.is_empty() {
                tracing::warn!(distribution = %alias, paths = requested.len(), error, "CloudFront refused a wildcard; submitting the requested paths under it instead");
                parts.push(requested);
            }
        }
        let batches: Vec<Retry> = parts.into_iter().map(|p| self.new_batch(p, now)).collect();
        for batch in batches.into_iter().rev() {
            self.requeue_front(alias, batch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudfront::simulate::SimulatedCloudFront;
    use crate::source::local::LocalQueue;

    const CONFIG: &str = r#"
[source]
kind = "local"
visibility_timeout_seconds = 60
[distributions.www]
id = "E2ABCDEF123456"
[batching]
quiet_seconds = 2
max_delay_seconds = 10
[cloudfront]
mode = "simulate"
create_per_second = 100
create_burst = 100
poll_interval_seconds = 5
simulate_completion_seconds = 30
[budget]
pacing = "none"
"#;

    #[tokio::test(start_paused = true)]
    async fn requests_end_covered_by_invalidations_and_the_queue_ends_empty() {
        let config = Config::from_parts(Some(CONFIG), "test", std::iter::empty()).expect("config");
        let queue = LocalQueue::new(Duration::from_secs(60));
        let cloudfront =
            SimulatedCloudFront::new(["E2ABCDEF123456".to_owned()], Duration::from_secs(30));
        let mut asked = Vec::new();
        for i in 0..40 {
            let path = format!("/docs/{}/page-{i}/", i % 4);
            queue
                .send(&format!(r#"{{"paths":["{path}"]}}"#))
                .await
                .expect("send");
            asked.push(CfPath::parse(&path).expect("path"));
        }
        queue.send("not a path").await.expect("send");
        let daemon = Daemon::new(&config, queue.clone(), cloudfront.clone())
            .with_ledger(AnyStore::Memory(crate::budget::MemoryStore::new()));
        let observers = daemon.observers();
        let cancel = CancellationToken::new();
        let run = tokio::spawn(daemon.run(cancel.clone()));
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(queue.is_empty(), "{} messages left", queue.len());
        let created = cloudfront.created();
        for p in &asked {
            assert!(
                created
                    .iter()
                    .any(|(_, inv)| inv.paths.iter().any(|q| q.covers(p))),
                "{p} not covered"
            );
        }
        assert_eq!(queue.dead_letters().len(), 1);
        cancel.cancel();
        let totals = run.await.expect("run ends");
        assert_eq!(totals.messages_deleted, 40);
        assert_eq!(totals.invalidations as usize, created.len());
        assert!(
            created
                .iter()
                .all(|(_, inv)| inv.caller_reference.starts_with("cfpurge-www-"))
        );

        // The metrics and the status tell the same story.
        let text = crate::metrics::encode(&observers.registry);
        let value = |series: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
                .unwrap_or_else(|| panic!("{series} missing from\n{text}"))
                .parse()
                .expect("a number")
        };
        let billed: usize = created.iter().map(|(_, inv)| inv.paths.len()).sum();
        let wildcards = created
            .iter()
            .flat_map(|(_, inv)| &inv.paths)
            .filter(|p| p.is_wildcard())
            .count();
        assert_eq!(value("cfpurge_messages_received_total"), 41.0);
        assert_eq!(value("cfpurge_messages_deleted_total"), 40.0);
        assert_eq!(
            value("cfpurge_paths_requested_total{distribution=\"www\"}"),
            40.0
        );
        assert_eq!(
            value("cfpurge_invalidations_created_total{distribution=\"www\"}"),
            created.len() as f64
        );
        assert_eq!(
            value("cfpurge_paths_submitted_total{distribution=\"www\",kind=\"exact\"}")
                + value("cfpurge_paths_submitted_total{distribution=\"www\",kind=\"wildcard\"}"),
            billed as f64
        );
        assert_eq!(
            value("cfpurge_paths_submitted_total{distribution=\"www\",kind=\"wildcard\"}"),
            wildcards as f64
        );
        let rejected: f64 = text
            .lines()
            .filter(|l| l.starts_with("cfpurge_messages_rejected_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert_eq!(rejected, 1.0);
        assert_eq!(
            value("cfpurge_request_to_invalidation_seconds_count{distribution=\"www\"}"),
            40.0
        );
        assert_eq!(value("cfpurge_pending_messages"), 0.0);
        let snapshot = observers.status.snapshot();
        let www = &snapshot.distributions["www"];
        let last = www.last_invalidation.as_ref().expect("a last invalidation");
        assert!(created.iter().any(|(_, inv)| inv.id == last.id));
        assert_eq!(www.pending_paths, 0);
        assert!(observers.readiness.is_ready());
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_submits_what_is_pending_within_the_grace_period() {
        let config = Config::from_parts(Some(CONFIG), "test", std::iter::empty()).expect("config");
        let queue = LocalQueue::new(Duration::from_secs(60));
        let cloudfront =
            SimulatedCloudFront::new(["E2ABCDEF123456".to_owned()], Duration::from_secs(30));
        queue.send("/late.html").await.expect("send");
        let daemon = Daemon::new(&config, queue.clone(), cloudfront.clone())
            .with_ledger(AnyStore::Memory(crate::budget::MemoryStore::new()));
        let cancel = CancellationToken::new();
        let run = tokio::spawn(daemon.run(cancel.clone()));
        // Received, but the quiet window has not closed.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(cloudfront.created().is_empty());
        cancel.cancel();
        let totals = run.await.expect("run ends");
        assert_eq!(totals.invalidations, 1);
        assert_eq!(totals.messages_deleted, 1);
        assert!(queue.is_empty());
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;
    use crate::budget::{LedgerStore as _, MemoryStore};
    use crate::cloudfront::simulate::SimulatedCloudFront;
    use crate::source::local::LocalQueue;

    const DIST: &str = "E2ABCDEF123456";

    fn config(monthly: u64, policy: &str) -> Config {
        let toml = format!(
            r#"
[source]
kind = "local"
visibility_timeout_seconds = 60
[distributions.www]
id = "{DIST}"
[batching]
quiet_seconds = 1
max_delay_seconds = 5
[cloudfront]
mode = "simulate"
create_per_second = 100
create_burst = 100
poll_interval_seconds = 5
simulate_completion_seconds = 30
[budget]
monthly_paths = {monthly}
pacing = "none"
on_exhausted = "{policy}"
"#
        );
        Config::from_parts(Some(&toml), "test", std::iter::empty()).expect("config")
    }

    struct Run {
        queue: LocalQueue,
        cloudfront: SimulatedCloudFront,
        store: MemoryStore,
        cancel: CancellationToken,
        task: tokio::task::JoinHandle<Totals>,
    }

    fn start(config: &Config) -> Run {
        let queue = LocalQueue::new(Duration::from_secs(60));
        let cloudfront = SimulatedCloudFront::new([DIST.to_owned()], Duration::from_secs(30));
        let store = MemoryStore::new();
        let daemon = Daemon::new(config, queue.clone(), cloudfront.clone())
            .with_ledger(AnyStore::Memory(store.clone()));
        let cancel = CancellationToken::new();
        let task = tokio::spawn(daemon.run(cancel.clone()));
        Run {
            queue,
            cloudfront,
            store,
            cancel,
            task,
        }
    }

    impl Run {
        async fn send(&self, paths: &[&str]) {
            for p in paths {
                self.queue
                    .send(&format!(r#"{{"paths":["{p}"]}}"#))
                    .await
                    .expect("send");
            }
        }

        fn created(&self) -> Vec<Vec<String>> {
            self.cloudfront
                .created()
                .into_iter()
                .map(|(_, inv)| inv.paths.iter().map(|p| p.as_str().to_owned()).collect())
                .collect()
        }

        fn spent(&self) -> u64 {
            let state = self.store.load().expect("load").expect("a ledger");
            state.spent + state.external
        }

        async fn stop(self) -> Totals {
            self.cancel.cancel();
            self.task.await.expect("run ends")
        }
    }

    #[tokio::test(start_paused = true)]
    async fn hold_spends_no_more_than_the_budget_and_keeps_the_rest_queued() {
        let run = start(&config(5, "hold"));
        run.send(&[
            "/a/1.html",
            "/b/1.html",
            "/c/1.html",
            "/d/1.html",
            "/e/1.html",
        ])
        .await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(run.created().len(), 1);
        assert_eq!(run.spent(), 5);
        // Spent: later requests wait, neither deleted nor rejected.
        run.send(&["/f/1.html", "/g/1.html"]).await;
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!(run.created().len(), 1, "{:?}", run.created());
        assert_eq!(run.queue.len(), 2);
        assert!(run.queue.dead_letters().is_empty());
        assert_eq!(run.spent(), 5);
        // Shutdown releases them for another consumer.
        let totals = run.stop().await;
        assert_eq!(totals.messages_deleted, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_binding_budget_makes_the_planner_coalesce_harder() {
        let run = start(&config(3, "hold"));
        // Seven files in one directory: seven exact paths would fit the
        // in-flight limits, but only three paths are left to spend.
        let paths: Vec<String> = (1..=7).map(|i| format!("/docs/{i}.html")).collect();
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        run.send(&refs).await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(run.created(), vec![vec!["/docs/*".to_owned()]]);
        assert_eq!(run.spent(), 1);
        assert!(run.queue.is_empty());
        run.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn coalesce_sends_one_covering_path_once_spent() {
        let run = start(&config(2, "coalesce"));
        run.send(&["/a/1.html", "/b/1.html"]).await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(run.spent(), 2);
        run.send(&["/docs/en/a.html", "/docs/de/b.html", "/docs/c.html"])
            .await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let created = run.created();
        assert_eq!(created.len(), 2, "{created:?}");
        assert!(created.contains(&vec!["/docs/*".to_owned()]), "{created:?}");
        assert_eq!(run.spent(), 3, "the overspend is counted");
        assert!(run.queue.is_empty());
        // Requests with nothing in common beyond the root: `/*`, allowed
        // here though allow_root_wildcard is off.
        run.send(&["/x/1.html", "/y/1.html"]).await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(
            run.created().contains(&vec!["/*".to_owned()]),
            "{:?}",
            run.created()
        );
        run.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn overspend_plans_as_usual_and_counts_it() {
        let run = start(&config(2, "overspend"));
        run.send(&["/a/1.html", "/b/1.html", "/c/1.html", "/d/1.html"])
            .await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let created = run.created();
        let billed: usize = created.iter().map(Vec::len).sum();
        assert_eq!(billed, 4, "{created:?}");
        assert_eq!(run.spent(), 4);
        assert!(run.queue.is_empty());
        run.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_ledger_that_cannot_be_written_submits_nothing_and_is_not_ready() {
        let config = config(100, "hold");
        let queue = LocalQueue::new(Duration::from_secs(60));
        let cloudfront = SimulatedCloudFront::new([DIST.to_owned()], Duration::from_secs(30));
        let store = MemoryStore::new();
        store.fail_saves(1000);
        let daemon = Daemon::new(&config, queue.clone(), cloudfront.clone())
            .with_ledger(AnyStore::Memory(store.clone()));
        let observers = daemon.observers();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(daemon.run(cancel.clone()));
        queue.send("/a.html").await.expect("send");
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(cloudfront.created().is_empty());
        assert!(
            observers
                .readiness
                .reasons()
                .iter()
                .any(|r| r.starts_with("ledger: ")),
            "{:?}",
            observers.readiness.reasons()
        );
        assert_eq!(queue.len(), 1);
        // Writable again: ready, and the request goes out.
        store.fail_saves(0);
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(cloudfront.created().len(), 1);
        assert!(queue.is_empty());
        assert!(
            !observers
                .readiness
                .reasons()
                .iter()
                .any(|r| r.starts_with("ledger")),
            "{:?}",
            observers.readiness.reasons()
        );
        cancel.cancel();
        task.await.expect("run ends");
    }
}
