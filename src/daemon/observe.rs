//! What the daemon shows of itself: its metrics, the `/v1/status` snapshot,
//! the readiness reasons and the heartbeat. The core keeps what its
//! decisions change as plain state ([`Shown`]); after each step the
//! runner's [`Publisher`] carries it over (the counters grow by what they
//! gained since the last publish, the readiness reasons are replaced whole)
//! and refreshes the gauges and the status snapshot from the core's state
//! ([`Publisher::show`]). The runner beats the heartbeat and pings
//! systemd's watchdog from the loop that does the work, so that a stuck
//! loop stops beating.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::clock::{Clock, Now};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pending::PendingSet;
use crate::source::queue::QueueDepth;
use crate::status::{self, BudgetStatus, Heartbeat, Readiness, Status, StatusBoard};
use crate::tracker::InflightView;

use super::catalogs::Catalogs;
use super::core::{Counts, DistributionCounts, Lead, Shown, SourceView};
use super::edge::Edges;

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
    /// Whether systemd expects watchdog pings (`WatchdogSec=`).
    watchdog: bool,
    /// The account whose budget is the status's `budget`
    /// ([`Config::main_account`]).
    main_account: String,
}

impl Observers {
    /// Fresh observers for `config`: a registry of its own with every
    /// metric at zero, the initial status, not ready until the queue
    /// answers, beating.
    pub fn new(config: &Config) -> Observers {
        let registry = prometheus::Registry::new();
        let aliases: Vec<&str> = config.distributions.keys().map(String::as_str).collect();
        // A fresh registry refuses a metric only when two share a name,
        // which the metrics module's own tests rule out.
        let metrics = Metrics::new(&registry, &aliases).expect("metric names are unique");
        for (alias, d) in &config.distributions {
            let verify = d.verify.as_ref().is_some_and(|v| v.sample > 0);
            let warm = d.verify.is_some() && d.warm.as_ref().is_some_and(|w| w.enabled);
            metrics.edge_configured(alias, verify, warm);
        }
        // The ledgers fill in used and allowed; the limits are known now.
        for account in config.budget_accounts() {
            let limit = config.budget_for(&account).monthly_paths;
            metrics.set_budget(&account, limit, 0, 0);
            metrics.set_budget_price(&account, config.coalesce.blast_per_path);
        }
        // Alone, this daemon is always the leader; a replica starts as a
        // standby. The core says the same at its first publish; this is
        // what a reader sees before it.
        if config.coordination.kind == crate::config::CoordinationKind::None {
            metrics.role().lead_alone();
        }
        // The role is read at each snapshot, never published stale.
        let status = StatusBoard::new(Status::initial(config)).with_role(metrics.role().clone());
        // Until the first publish, what a core shows at its start.
        let readiness = Readiness::new();
        readiness.replace(Shown::default().readiness);
        Observers {
            registry,
            metrics,
            status,
            readiness,
            heartbeat: Heartbeat::new(),
            watchdog: sd_notify::watchdog_enabled().is_some(),
            main_account: config.main_account(),
        }
    }

    /// The runner's part, after a refresh: the heartbeat, and systemd's
    /// watchdog when it expects pings.
    pub(super) fn beat(&self) {
        self.heartbeat.beat();
        if self.watchdog {
            notify(&[sd_notify::NotifyState::Watchdog]);
        }
    }
}

/// Carries what the core shows over to the [`Observers`]: owned by the
/// runner, alone, so what it remembers of the last publish needs no lock.
#[derive(Debug)]
pub struct Publisher {
    observers: Observers,
    /// The counters as last published: each grows by what it gained since.
    published: Counts,
    /// The readiness reasons as last published.
    readiness: Option<BTreeMap<String, String>>,
    /// Messages the source had received at the last refresh, so that the
    /// received counter grows by what came since, redeliveries included.
    received: u64,
}

impl Publisher {
    pub fn new(observers: Observers) -> Publisher {
        Publisher {
            observers,
            published: Counts::default(),
            readiness: None,
            received: 0,
        }
    }

    /// What it publishes to.
    pub fn observers(&self) -> &Observers {
        &self.observers
    }

    /// Publishes `shown` as the core left it: the counters grow by what
    /// they gained since the last publish, however many steps ago that
    /// was; the readiness reasons, the role and the lease's validity are
    /// replaced. `clock` turns the end of the lead into the instant its
    /// readers compare with.
    pub fn publish(&mut self, shown: &Shown, clock: &Clock) {
        let metrics = &self.observers.metrics;
        if shown.counts != self.published {
            publish_counts(metrics, &shown.counts, &self.published);
            self.published.clone_from(&shown.counts);
        }
        if self.readiness.as_ref() != Some(&shown.readiness) {
            self.observers.readiness.replace(shown.readiness.clone());
            self.readiness = Some(shown.readiness.clone());
        }
        let role = metrics.role();
        match shown.lead {
            Lead::Alone => role.lead_alone(),
            Lead::Until(until) => role.lead_until(clock.instant(until)),
            Lead::Standby => role.stand_down(),
        }
        metrics.set_lease_invalid(shown.lease_invalid);
    }
}

/// Adds to `metrics`' counters what each counter of `now` gained since
/// `before`. A counter that did not move is not touched, so that no
/// labelled series appears that was not there (a warming result of a
/// distribution that does not warm).
fn publish_counts(metrics: &Metrics, now: &Counts, before: &Counts) {
    if let Some(n) = gained(now.deleted, before.deleted) {
        metrics.deleted(n);
    }
    if let Some(n) = gained(now.leader_changes, before.leader_changes) {
        metrics.leader_changes(n);
    }
    for (&reason, &count) in &now.rejected {
        let was = before.rejected.get(&reason).copied().unwrap_or(0);
        if let Some(n) = gained(count, was) {
            metrics.rejected(reason, n);
        }
    }
    let none = DistributionCounts::default();
    for (alias, now) in &now.distributions {
        let before = before.distributions.get(alias).unwrap_or(&none);
        if let Some(n) = gained(now.requested, before.requested) {
            metrics.paths_requested(alias, n);
        }
        if let Some(n) = gained(now.skipped, before.skipped) {
            metrics.paths_skipped(alias, n);
        }
        if now.submitted != before.submitted {
            let (now, before) = (now.submitted, before.submitted);
            metrics.paths_submitted(
                alias,
                now.exact.saturating_sub(before.exact),
                now.wildcard.saturating_sub(before.wildcard),
                now.tags.saturating_sub(before.tags),
            );
        }
        if let Some(n) = gained(now.blast, before.blast) {
            metrics.paths_blast(alias, n);
        }
        if let Some(n) = gained(now.created, before.created) {
            metrics.invalidations_created(alias, n);
        }
        if let Some(n) = gained(now.completed, before.completed) {
            metrics.invalidations_completed(alias, n);
        }
        for (&code, &count) in &now.cloudfront_errors {
            let was = before.cloudfront_errors.get(code).copied().unwrap_or(0);
            if let Some(n) = gained(count, was) {
                metrics.cloudfront_errors(alias, code, n);
            }
        }
        for (&result, &count) in &now.verify {
            if let Some(n) = gained(count, before.verify.get(result).copied().unwrap_or(0)) {
                metrics.verify(alias, result, n);
            }
        }
        for (&result, &count) in &now.warm {
            if let Some(n) = gained(count, before.warm.get(result).copied().unwrap_or(0)) {
                metrics.warm(alias, result, n);
            }
        }
        if now.request_to_invalidation != before.request_to_invalidation {
            metrics.set_request_to_invalidation(alias, &now.request_to_invalidation);
        }
        if now.invalidation_completion != before.invalidation_completion {
            metrics.set_invalidation_completion(alias, &now.invalidation_completion);
        }
    }
}

/// What a counter at `now` gained since it was `before`, if anything.
fn gained(now: u64, before: u64) -> Option<u64> {
    Some(now.saturating_sub(before)).filter(|&n| n > 0)
}

/// Tells systemd (`NOTIFY_SOCKET`) about a state change; nothing outside
/// systemd.
pub(super) fn notify(states: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "notifying the service manager failed");
    }
}

/// Why a distribution's work does not move, as the core judged it.
pub(super) struct Why {
    pub waiting: Option<status::Waiting>,
    pub last_error: Option<status::CallError>,
}

/// What the gauges and the status are refreshed from: the core's state,
/// borrowed for the refresh ([`super::Core::observe`]).
pub struct StatusView<'a> {
    /// Per distribution.
    pub(super) why: std::collections::HashMap<String, Why>,
    pub(super) now: &'a Now,
    pub(super) source: &'a SourceView,
    pub(super) pending: &'a PendingSet,
    pub(super) view: &'a InflightView,
    pub(super) catalogs: &'a Catalogs,
    pub(super) edges: &'a Edges,
    /// Why the daemon is not ready, by component.
    pub(super) readiness: &'a BTreeMap<String, String>,
    /// The queue's counts as last answered.
    pub(super) depth: QueueDepth,
    /// Each account's budget, where its ledger is open.
    pub(super) budgets: BTreeMap<String, BudgetStatus>,
    /// Each account's budget as a standby last read it.
    pub(super) shared_budgets: BTreeMap<String, BudgetStatus>,
}

impl Publisher {
    /// Refreshes the gauges and the status snapshot from the core's state,
    /// and the received counter from the source's.
    pub fn show(&mut self, shown: StatusView<'_>) {
        let StatusView {
            mut why,
            now,
            source,
            pending,
            view,
            catalogs,
            edges,
            readiness,
            depth,
            mut budgets,
            shared_budgets,
        } = shown;
        let Observers {
            metrics, status, ..
        } = &self.observers;
        metrics.received(source.received.saturating_sub(self.received));
        self.received = source.received;
        let mut snapshot = status.snapshot().as_ref().clone();
        for (alias, d) in &mut snapshot.distributions {
            let paths = pending.pending_paths(alias) as u64;
            let oldest = Duration::from_millis(pending.oldest_age(alias, now.mono).unwrap_or(0));
            let inflight = view.inflight(alias).unwrap_or_default();
            metrics.set_pending(alias, paths, oldest);
            metrics.set_inflight(alias, inflight.exact as u64, inflight.wildcard as u64);
            d.pending_paths = paths;
            d.oldest_pending_seconds = oldest.as_secs();
            d.inflight_exact = inflight.exact as u64;
            d.inflight_wildcard = inflight.wildcard as u64;
            d.catalog = catalogs.status(alias);
            if let Some(why) = why.remove(alias) {
                d.waiting = why.waiting;
                d.last_error = why.last_error;
            }
            (d.verify, d.warm) = edges.status(alias);
            if let Some(c) = &d.catalog {
                metrics.set_catalog_objects(alias, c.objects);
            }
            d.last_invalidation =
                view.last_invalidation(alias)
                    .map(|last| status::LastInvalidation {
                        id: last.id.clone(),
                        status: last.status.as_str().to_owned(),
                        paths: last.paths.len() as u64,
                        created_at: last.created_at,
                    });
        }
        let messages = pending.pending_messages() as u64;
        metrics.set_pending_messages(messages);
        metrics.set_queue(depth.visible, depth.in_flight, depth.delayed);
        snapshot.queue = status::QueueStatus {
            visible: depth.visible,
            in_flight: depth.in_flight,
            delayed: depth.delayed,
            pending_messages: messages,
        };
        for (account, budget) in shared_budgets {
            budgets.entry(account).or_insert(budget);
        }
        let month = status::format_time(now.wall)
            .get(..7)
            .unwrap_or_default()
            .to_owned();
        for (account, shown) in snapshot.accounts.iter_mut() {
            match budgets.get(account) {
                Some(budget) => {
                    metrics.set_budget(account, budget.limit, budget.used, budget.allowed);
                    metrics.set_budget_price(account, budget.price);
                    shown.budget = budget.clone();
                }
                None => shown.budget.month.clone_from(&month),
            }
            shown.not_ready = status::reasons_of(readiness, &shown.components);
        }
        // `budget` is the main account's: the default account's whenever a
        // distribution is in it, as it always was without `[accounts]`.
        if let Some(main) = snapshot.accounts.get(&self.observers.main_account) {
            snapshot.budget = main.budget.clone();
        }
        status.publish(snapshot);
    }
}
