//! What the daemon shows of itself: its metrics, the `/v1/status` snapshot,
//! the readiness reasons and the heartbeat. The core refreshes them from
//! its state ([`Observers::show`]); the runner beats the heartbeat and
//! pings systemd's watchdog from the loop that does the work, so that a
//! stuck loop stops beating.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::clock::Now;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pending::PendingSet;
use crate::source::driver::QueueHealth;
use crate::source::queue::QueueDepth;
use crate::status::{self, BudgetStatus, Heartbeat, Readiness, Status, StatusBoard};
use crate::tracker::InflightView;

use super::catalogs::Catalogs;
use super::core::{STARTUP, SourceView};
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
    /// Messages the source had received at the last refresh, so that the
    /// received counter grows by what came since, redeliveries included.
    received: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// The queue's counts as last asked for.
    depth: std::sync::Arc<std::sync::Mutex<QueueDepth>>,
    /// Whether systemd expects watchdog pings (`WatchdogSec=`).
    watchdog: bool,
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
        // standby.
        if config.coordination.kind == crate::config::CoordinationKind::None {
            metrics.role().lead_alone();
        }
        // The role is read at each snapshot, never published stale.
        let status = StatusBoard::new(Status::initial(config)).with_role(metrics.role().clone());
        let readiness = Readiness::new();
        readiness.set(
            STARTUP,
            "starting: the queue has not answered yet".to_owned(),
        );
        Observers {
            registry,
            metrics,
            status,
            readiness,
            heartbeat: Heartbeat::new(),
            received: Default::default(),
            depth: Default::default(),
            watchdog: sd_notify::watchdog_enabled().is_some(),
        }
    }

    pub(super) fn set_depth(&self, depth: QueueDepth) {
        *self.depth.lock().unwrap_or_else(|p| p.into_inner()) = depth;
        self.metrics
            .set_queue(depth.visible, depth.in_flight, depth.delayed);
    }
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

/// What the gauges and the status are refreshed from.
pub(super) struct Shown<'a> {
    /// Per distribution.
    pub why: std::collections::HashMap<String, Why>,
    pub now: &'a Now,
    pub source: &'a SourceView,
    pub leader: bool,
    pub replica: bool,
    pub pending: &'a PendingSet,
    pub view: &'a InflightView,
    pub catalogs: &'a Catalogs,
    pub edges: &'a Edges,
    /// Each account's budget, where its ledger is open.
    pub budgets: BTreeMap<String, BudgetStatus>,
    /// Each account's budget as a standby last read it.
    pub shared_budgets: BTreeMap<String, BudgetStatus>,
}

impl Observers {
    /// The runner's part, after a refresh: the heartbeat, and systemd's
    /// watchdog when it expects pings.
    pub(super) fn beat(&self) {
        self.heartbeat.beat();
        if self.watchdog {
            notify(&[sd_notify::NotifyState::Watchdog]);
        }
    }

    /// Refreshes the gauges, readiness and the status snapshot.
    pub(super) fn show(&self, shown: Shown<'_>) {
        let Shown {
            mut why,
            now,
            source,
            leader,
            replica,
            pending,
            view,
            catalogs,
            edges,
            mut budgets,
            shared_budgets,
        } = shown;
        let Observers {
            metrics,
            status,
            readiness,
            received,
            depth,
            ..
        } = self;
        // The pollers tell whether the queue is usable; a standby has none,
        // and the answers to its depth calls tell instead.
        if !replica || leader {
            match &source.health {
                QueueHealth::Ready => readiness.clear("queue"),
                QueueHealth::NotReady(reason) => readiness.set("queue", reason.clone()),
            }
        }
        let before = received.swap(source.received, std::sync::atomic::Ordering::Relaxed);
        metrics.received(source.received.saturating_sub(before));
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
        let depth = *depth.lock().unwrap_or_else(|p| p.into_inner());
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
            shown.not_ready = readiness.reasons_of(&shown.components);
        }
        // `budget` is the first account's: the default account's alone
        // without `[accounts]`, as it always was.
        if let Some(first) = snapshot.accounts.values().next() {
            snapshot.budget = first.budget.clone();
        }
        status.publish(snapshot);
    }
}
