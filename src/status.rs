//! What the daemon shows of itself: the `/v1/status` snapshot, the readiness
//! reasons behind `/readyz` and the heartbeat behind `/healthz`. The daemon
//! writes them, the HTTP server reads them; each is cheap to clone and
//! clones share one state, so the two sides never wait on each other for
//! longer than a copy.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

pub use crate::budget::BudgetStatus;
use crate::config::Config;
use crate::source::queue::QueueDepth;

/// The body of `GET /v1/status`, in the shape docs/interface.md shows. Keys may be added
/// later, never renamed; reading ignores unknown keys and fills missing ones
/// with defaults so that `cfpurge status` works across versions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Status {
    /// The daemon's version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// Per distribution, by alias.
    pub distributions: BTreeMap<String, DistributionStatus>,
    /// The month's path budget (with `[accounts]`, the default account's
    /// while a distribution is in it, else the first account's by name:
    /// each is in `accounts`).
    pub budget: BudgetStatus,
    /// With `[accounts]`: each account's budget, and why its distributions
    /// are not ready, by account name. Left out without.
    #[serde(skip_serializing_if = "single_account")]
    pub accounts: BTreeMap<String, AccountStatus>,
    /// The source queue's depth and what the daemon holds of it.
    pub queue: QueueStatus,
    /// `leader` or `standby` with coordination, `single` without (the
    /// daemon always sets it; empty only in a hand-made status).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub role: String,
    /// This replica's id, with coordination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    /// Where requests come from and where they go: a local run or a
    /// rehearsal must not be mistaken for the real thing.
    pub mode: ModeStatus,
}

/// `source.kind` and `cloudfront.mode` in [`Status`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModeStatus {
    /// `sqs` or `local`.
    pub source: String,
    /// `aws` or `simulate`.
    pub cloudfront: String,
}

/// One distribution in [`Status`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DistributionStatus {
    /// The CloudFront distribution id (the multi-tenant one for a tenant).
    pub id: String,
    /// The distribution tenant this entry invalidates, when it is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// The `[accounts.NAME]` it lives in, with `[accounts]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Entries waiting to be submitted.
    pub pending_paths: u64,
    /// Age of the oldest waiting entry, in whole seconds; 0 when none waits.
    pub oldest_pending_seconds: u64,
    /// Exact paths in progress at CloudFront, others' included.
    pub inflight_exact: u64,
    /// Wildcard paths in progress at CloudFront, others' included.
    pub inflight_wildcard: u64,
    /// `max_inflight_paths` of the distribution, for the status page's
    /// bars. Not in `/v1/status`, whose keys are fixed: 0 when read from it.
    #[serde(skip)]
    pub max_inflight_exact: u64,
    /// `max_inflight_wildcards` of the distribution, as `max_inflight_exact`.
    #[serde(skip)]
    pub max_inflight_wildcard: u64,
    /// The latest invalidation this daemon created; `null` until the first.
    pub last_invalidation: Option<LastInvalidation>,
    /// What the distribution serves, when it has a catalog.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalog: Option<CatalogStatus>,
    /// The last CloudFront call on this distribution that failed; `null`
    /// until one does. Kept after a success (with `since_success` 0), so
    /// that an operator sees that it recovered and from what.
    pub last_error: Option<CallError>,
    /// What its pending paths wait for; `null` when none waits.
    pub waiting: Option<Waiting>,
    /// Edge checks after Completed, when `verify` is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyStatus>,
    /// Warming after Completed, when `warm` is enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warm: Option<WarmStatus>,
}

/// A distribution's edge checks in [`Status`], since the start.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VerifyStatus {
    /// Paths the edge served fresh after the purge.
    pub fresh: u64,
    /// Paths the edge still served from a copy older than the purge.
    pub stale: u64,
    /// Checks that got no answer to judge (timeout, 5xx, no `X-Cache`).
    pub error: u64,
    /// Checks waiting or under way.
    pub queued: u64,
    /// Paths not checked because too many waited.
    pub not_requested: u64,
    /// Stale paths purged again (`reinvalidate_stale`).
    pub reinvalidated: u64,
    /// The latest stale path; `null` until one.
    pub last_stale: Option<StalePath>,
}

/// A path found stale at the edge.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StalePath {
    /// As purged (percent-encoded).
    pub path: String,
    /// The invalidation that should have purged it.
    pub invalidation: String,
    /// The edge's `Age` of its copy.
    pub age_seconds: u64,
    /// When it was found, RFC 3339 UTC.
    pub at: String,
}

/// A distribution's warming in [`Status`], since the start.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WarmStatus {
    /// Paths requested and answered (any status below 500).
    pub ok: u64,
    /// Paths whose request failed or got a 5xx.
    pub error: u64,
    /// Requests waiting or under way.
    pub queued: u64,
    /// Paths not warmed because too many waited.
    pub not_requested: u64,
}

/// A failed CloudFront call, in [`DistributionStatus`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallError {
    /// The code of `cfpurge_cloudfront_errors_total` (`server_error`,
    /// `access_denied`, ...), so the status and the metric agree.
    pub code: String,
    /// The API call: `CreateInvalidation`, `GetInvalidation` or
    /// `ListInvalidations`.
    pub operation: String,
    /// What CloudFront or the connection said, on one line, shortened to
    /// [`ERROR_MESSAGE_CHARS`] characters.
    pub message: String,
    /// When the answer came; RFC 3339 UTC to the second.
    #[serde(with = "rfc3339")]
    pub at: SystemTime,
    /// Calls on this distribution that failed since the last one that
    /// went through (this one included); 0 once one has gone through.
    pub since_success: u64,
}

/// The longest [`CallError::message`]: enough for CloudFront's message and
/// the connection's cause, short enough for a status line.
pub const ERROR_MESSAGE_CHARS: usize = 200;

/// What a distribution's pending paths wait for, in [`DistributionStatus`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    /// One of a fixed set, for scripts: see [`WaitingOn`].
    pub on: String,
    /// Until when, when the daemon knows; RFC 3339 UTC to the second.
    pub until: Option<String>,
    /// The same for a person, on one line.
    pub detail: String,
}

/// The values of [`Waiting::on`]: what holds a distribution's pending
/// paths, the first that applies in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitingOn {
    /// A standby: the leader receives and submits.
    Lease,
    /// The budget ledger is not open (not read yet, or unreadable).
    Ledger,
    /// The start-up gate: the first reconcile has not yet looked at every
    /// distribution for what an earlier run left in flight.
    Startup,
    /// CloudFront refuses the distribution (missing, or access denied).
    Refused,
    /// The batch's reservation is being written to the ledger.
    Reservation,
    /// A CreateInvalidation call is under way.
    Call,
    /// A failed call's backoff before the same batch is sent again.
    Retry,
    /// Not enough room in flight (`max_inflight_paths` or
    /// `max_inflight_wildcards`, others' invalidations counted).
    InflightRoom,
    /// The budget: spent (or ahead of the pacing) with `on_exhausted =
    /// "hold"`.
    Budget,
    /// The account's CreateInvalidation rate (`create_per_second`).
    CreateRate,
    /// The batching window: `quiet_seconds` since the last path, at most
    /// `max_delay_seconds` since the oldest.
    QuietWindow,
}

impl WaitingOn {
    /// Every value, in the order they are judged.
    pub const ALL: [WaitingOn; 11] = [
        WaitingOn::Lease,
        WaitingOn::Ledger,
        WaitingOn::Startup,
        WaitingOn::Refused,
        WaitingOn::Reservation,
        WaitingOn::Call,
        WaitingOn::Retry,
        WaitingOn::InflightRoom,
        WaitingOn::Budget,
        WaitingOn::CreateRate,
        WaitingOn::QuietWindow,
    ];

    /// The spelling in `/v1/status`.
    pub fn as_str(self) -> &'static str {
        match self {
            WaitingOn::Lease => "lease",
            WaitingOn::Ledger => "ledger",
            WaitingOn::Startup => "startup",
            WaitingOn::Refused => "refused",
            WaitingOn::Reservation => "reservation",
            WaitingOn::Call => "call",
            WaitingOn::Retry => "retry",
            WaitingOn::InflightRoom => "inflight_room",
            WaitingOn::Budget => "budget",
            WaitingOn::CreateRate => "create_rate",
            WaitingOn::QuietWindow => "quiet_window",
        }
    }
}

impl Waiting {
    /// A wait on `on`, until `until` when known.
    pub fn new(on: WaitingOn, until: Option<SystemTime>, detail: String) -> Waiting {
        Waiting {
            on: on.as_str().to_owned(),
            until: until.map(format_time),
            detail,
        }
    }
}

/// `message` on one line (runs of white space made one space), at most
/// [`ERROR_MESSAGE_CHARS`] characters, `…` marking a cut.
pub fn one_line(message: &str) -> String {
    let joined = message.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.chars().count() <= ERROR_MESSAGE_CHARS {
        return joined;
    }
    let mut cut: String = joined.chars().take(ERROR_MESSAGE_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// A distribution's catalog in [`Status`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CatalogStatus {
    /// Objects it counts (0 until the first build is done).
    pub objects: u64,
    /// `s3`, `file` or `learned`.
    pub source: String,
    /// When it was last built (`learned`: read), RFC 3339 UTC; `null`
    /// until then.
    pub refreshed_at: Option<String>,
}

/// The latest invalidation created on a distribution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastInvalidation {
    /// CloudFront's invalidation id.
    pub id: String,
    /// CloudFront's status: `InProgress` or `Completed`.
    pub status: String,
    /// Paths it holds (billed paths).
    pub paths: u64,
    /// When CloudFront created it; RFC 3339 UTC to the second
    /// (`2026-11-24T15:00:00Z`).
    #[serde(with = "rfc3339")]
    pub created_at: SystemTime,
}

/// One AWS account in [`Status`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AccountStatus {
    /// The account's budget, as [`Status::budget`].
    #[serde(flatten)]
    pub budget: BudgetStatus,
    /// The role assumed to reach it; `null` for the default credentials.
    pub role_arn: Option<String>,
    /// Why the account's ledger or distributions are not ready (a role
    /// that cannot be assumed, a ledger that cannot be written), as
    /// `/readyz` says it; empty when they are.
    pub not_ready: Vec<String>,
    /// The readiness components that concern the account.
    #[serde(skip)]
    pub components: Vec<String>,
}

/// The readiness component of `account`'s ledger: `ledger` for the default
/// account, as it always was.
pub fn ledger_component(account: &str) -> String {
    if account == crate::config::DEFAULT_ACCOUNT {
        "ledger".to_owned()
    } else {
        format!("ledger:{account}")
    }
}

/// Whether `accounts` holds only the default account: a daemon without
/// `[accounts]`, whose status reads as it always did.
pub(crate) fn single_account(accounts: &BTreeMap<String, AccountStatus>) -> bool {
    accounts.len() <= 1 && accounts.keys().all(|a| a == crate::config::DEFAULT_ACCOUNT)
}

/// The queue in [`Status`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueStatus {
    /// Messages available to receive (approximate, as SQS reports).
    pub visible: u64,
    /// Messages received and not yet deleted or visible again (approximate).
    pub in_flight: u64,
    /// Messages sent with a delay not yet passed (approximate).
    pub delayed: u64,
    /// Messages this daemon holds, received and not yet deleted.
    pub pending_messages: u64,
}

impl Status {
    /// The status before the daemon has done anything: every configured
    /// distribution with zero counts, the budget's limit and policy, this
    /// build's version. The month is left empty for the daemon to fill.
    pub fn initial(config: &Config) -> Status {
        Status {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            distributions: config
                .distributions
                .iter()
                .map(|(alias, d)| {
                    (
                        alias.clone(),
                        DistributionStatus {
                            id: d.id.clone(),
                            tenant_id: d.tenant_id.clone(),
                            account: config
                                .has_accounts()
                                .then(|| config.account_of(alias).to_owned()),
                            max_inflight_exact: d.max_inflight_paths as u64,
                            max_inflight_wildcard: d.max_inflight_wildcards as u64,
                            verify: d
                                .verify
                                .as_ref()
                                .filter(|v| v.sample > 0)
                                .map(|_| VerifyStatus::default()),
                            warm: d
                                .warm
                                .as_ref()
                                .filter(|w| w.enabled && d.verify.is_some())
                                .map(|_| WarmStatus::default()),
                            ..DistributionStatus::default()
                        },
                    )
                })
                .collect(),
            budget: BudgetStatus {
                limit: config.budget_for(&config.main_account()).monthly_paths,
                policy: config.budget.on_exhausted.as_str().to_owned(),
                ..BudgetStatus::default()
            },
            accounts: config
                .budget_accounts()
                .into_iter()
                .map(|account| {
                    let mut components = vec![ledger_component(&account)];
                    components.extend(
                        config
                            .distributions
                            .keys()
                            .filter(|alias| config.account_of(alias) == account)
                            .map(|alias| format!("distribution:{alias}")),
                    );
                    let status = AccountStatus {
                        budget: BudgetStatus {
                            limit: config.budget_for(&account).monthly_paths,
                            policy: config.budget.on_exhausted.as_str().to_owned(),
                            ..BudgetStatus::default()
                        },
                        role_arn: config.account(&account).and_then(|a| a.role_arn.clone()),
                        not_ready: Vec::new(),
                        components,
                    };
                    (account, status)
                })
                .collect(),
            queue: QueueStatus::default(),
            role: match config.coordination.kind {
                crate::config::CoordinationKind::None => "single".to_owned(),
                crate::config::CoordinationKind::Dynamodb => "standby".to_owned(),
            },
            replica: (config.coordination.kind == crate::config::CoordinationKind::Dynamodb)
                .then(|| config.coordination.replica()),
            mode: ModeStatus {
                source: config.source.kind.as_str().to_owned(),
                cloudfront: config.cloudfront.mode.as_str().to_owned(),
            },
        }
    }
}

/// An RFC 3339 time, or `None` when `text` is not one.
pub fn parse_time(text: &str) -> Option<SystemTime> {
    use aws_sdk_cloudfront::primitives::{DateTime, DateTimeFormat};
    let parsed = DateTime::from_str(text, DateTimeFormat::DateTime).ok()?;
    SystemTime::try_from(parsed).ok()
}

/// `created_at` as RFC 3339 in UTC, whole seconds.
mod rfc3339 {
    use std::time::{SystemTime, UNIX_EPOCH};

    use aws_sdk_cloudfront::primitives::{DateTime, DateTimeFormat};
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*time))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(d)?;
        let parsed = DateTime::from_str(&text, DateTimeFormat::DateTime)
            .map_err(|e| D::Error::custom(format_args!("{text:?} is not an RFC 3339 time: {e}")))?;
        SystemTime::try_from(parsed)
            .map_err(|e| D::Error::custom(format_args!("{text:?} is out of range: {e}")))
    }

    /// Whole seconds, so the text reads like docs/interface.md's example; times
    /// before 1970 do not occur and print as the epoch.
    pub fn format(time: SystemTime) -> String {
        let secs = time
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        DateTime::from_secs(secs)
            .fmt(DateTimeFormat::DateTime)
            // Formatting fails only for years past 9999.
            .unwrap_or_else(|_| "9999-12-31T23:59:59Z".to_owned())
    }
}

/// `time` as `/v1/status` writes it: RFC 3339 UTC to the second.
pub fn format_time(time: SystemTime) -> String {
    rfc3339::format(time)
}

/// This daemon's role as its readers see it (`/v1/status`, the page,
/// `cfpurge_leader`), worked out at the moment of reading. A replica's
/// core records until when its lease lets it lead, and a reader compares
/// that deadline with the clock, so a leader paused past its lease
/// (SIGSTOP, a frozen VM) and resumed reads as a standby from its first
/// answer, before its own loop has run again and stood down. On tokio's
/// clock, so that paused-time tests drive it. Clones share it.
#[derive(Clone, Debug)]
pub struct RoleWatch {
    lead: Arc<Mutex<Lead>>,
}

/// What a [`RoleWatch`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lead {
    /// Alone: always the leader.
    Single,
    /// A replica that leads until this instant (exclusive).
    Until(Instant),
    /// A replica that does not lead.
    Standby,
}

impl RoleWatch {
    /// The role of a replica that does not lead (yet).
    pub fn standby() -> RoleWatch {
        RoleWatch {
            lead: Arc::new(Mutex::new(Lead::Standby)),
        }
    }

    /// The daemon runs alone: it always leads.
    pub fn lead_alone(&self) {
        *self.lock() = Lead::Single;
    }

    /// A replica leads until `deadline`, when its lease's own measure runs
    /// out unless renewed; readers at or after it see a standby.
    pub fn lead_until(&self, deadline: Instant) {
        *self.lock() = Lead::Until(deadline);
    }

    /// A replica no longer leads.
    pub fn stand_down(&self) {
        *self.lock() = Lead::Standby;
    }

    /// Whether this daemon leads now.
    pub fn is_leader(&self) -> bool {
        self.name() != "standby"
    }

    /// The role now, as `/v1/status` names it: `single`, `leader` or
    /// `standby`.
    pub fn name(&self) -> &'static str {
        let lead = *self.lock();
        match lead {
            Lead::Single => "single",
            Lead::Until(deadline) if Instant::now() < deadline => "leader",
            Lead::Until(_) | Lead::Standby => "standby",
        }
    }

    fn lock(&self) -> MutexGuard<'_, Lead> {
        self.lead.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The latest [`Status`]: the daemon publishes, the HTTP server reads.
/// Clones share the board.
#[derive(Clone, Default)]
pub struct StatusBoard {
    current: Arc<RwLock<Arc<Status>>>,
    /// When set, [`StatusBoard::snapshot`] takes the queue's counts from it
    /// at the moment of reading instead of from the last publish.
    live_queue: Option<Arc<LiveQueue>>,
    /// When set, [`StatusBoard::snapshot`] takes the role from it at the
    /// moment of reading.
    role: Option<RoleWatch>,
}

/// Reads a queue's depth at once.
type LiveQueue = dyn Fn() -> QueueDepth + Send + Sync;

impl std::fmt::Debug for StatusBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusBoard")
            .field("current", &self.current)
            .field("live_queue", &self.live_queue.is_some())
            .field("role", &self.role)
            .finish()
    }
}

impl StatusBoard {
    /// A board showing `initial` until the first publish.
    pub fn new(initial: Status) -> StatusBoard {
        StatusBoard {
            current: Arc::new(RwLock::new(Arc::new(initial))),
            live_queue: None,
            role: None,
        }
    }

    /// This board, with the role read from `role` at each snapshot rather
    /// than from the last publish, which a paused process may have made
    /// while it still led. Every clone of the board made after this shares
    /// it.
    pub fn with_role(mut self, role: RoleWatch) -> StatusBoard {
        self.role = Some(role);
        self
    }

    /// This board, with the queue's visible and in-flight counts read from
    /// `depth` at each snapshot. For a queue held in the process (the local
    /// one): a request just sent shows in the status at once, not at the
    /// daemon's next depth poll, half a minute later. Meant for the
    /// readers' clone; the daemon's keeps publishing what it knows.
    pub fn with_live_queue(
        mut self,
        depth: impl Fn() -> QueueDepth + Send + Sync + 'static,
    ) -> StatusBoard {
        self.live_queue = Some(Arc::new(depth));
        self
    }

    /// Replaces the snapshot.
    pub fn publish(&self, status: Status) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(status);
    }

    /// Changes part of the snapshot, for writers that own one section
    /// (e.g. a queue-depth poller filling `queue`).
    pub fn update(&self, change: impl FnOnce(&mut Status)) {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        change(Arc::make_mut(&mut current));
    }

    /// The current snapshot; readers never hold the lock while they use it.
    pub fn snapshot(&self) -> Arc<Status> {
        let current = Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner));
        if self.live_queue.is_none() && self.role.is_none() {
            return current;
        }
        let mut status = current.as_ref().clone();
        if let Some(live) = &self.live_queue {
            let depth = live();
            status.queue.visible = depth.visible;
            status.queue.in_flight = depth.in_flight;
            status.queue.delayed = depth.delayed;
        }
        if let Some(role) = &self.role {
            status.role = role.name().to_owned();
        }
        Arc::new(status)
    }
}

/// Why the daemon is not ready, by component (`queue`, `ledger`,
/// `distribution:www`, ...). Ready when no component has a reason. Clones
/// share the set.
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    reasons: Arc<Mutex<BTreeMap<String, String>>>,
}

impl Readiness {
    /// Ready: no reason set.
    pub fn new() -> Readiness {
        Readiness::default()
    }

    /// Marks `component` not ready for `reason`, replacing its earlier one.
    pub fn set(&self, component: &str, reason: String) {
        self.lock().insert(component.to_owned(), reason);
    }

    /// Marks `component` ready again; a no-op when it had no reason.
    pub fn clear(&self, component: &str) {
        self.lock().remove(component);
    }

    /// Every reason as `component: reason`, sorted by component.
    pub fn reasons(&self) -> Vec<String> {
        self.lock()
            .iter()
            .map(|(component, reason)| format!("{component}: {reason}"))
            .collect()
    }

    /// The reasons of `components` (those that have one), as
    /// [`Readiness::reasons`] writes them.
    pub fn reasons_of(&self, components: &[String]) -> Vec<String> {
        reasons_of(&self.lock(), components)
    }

    /// Replaces every reason at once with `reasons` (component to
    /// reason): a reader sees the set before or the set after.
    pub fn replace(&self, reasons: BTreeMap<String, String>) {
        *self.lock() = reasons;
    }

    /// True when no component has a reason.
    pub fn is_ready(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, String>> {
        self.reasons.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The reasons of `components` among `reasons` (component to reason), as
/// [`Readiness::reasons`] writes them.
pub fn reasons_of(reasons: &BTreeMap<String, String>, components: &[String]) -> Vec<String> {
    components
        .iter()
        .filter_map(|c| Some(format!("{c}: {}", reasons.get(c)?)))
        .collect()
}

/// The daemon loop's sign of life. Created beating, so that a daemon still
/// starting counts as alive for one threshold. On tokio's clock, so that
/// paused-time tests drive it. Clones share it.
#[derive(Clone, Debug)]
pub struct Heartbeat {
    last: Arc<Mutex<Instant>>,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat::new()
    }
}

impl Heartbeat {
    /// A heartbeat whose first beat is now.
    pub fn new() -> Heartbeat {
        Heartbeat {
            last: Arc::new(Mutex::new(Instant::now())),
        }
    }

    /// Records that the loop ran.
    pub fn beat(&self) {
        *self.lock() = Instant::now();
    }

    /// Time since the last beat.
    pub fn age(&self) -> Duration {
        self.lock().elapsed()
    }

    /// True while the last beat is at most `max_age` old.
    pub fn is_alive(&self, max_age: Duration) -> bool {
        self.age() <= max_age
    }

    fn lock(&self) -> MutexGuard<'_, Instant> {
        self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `42s`, `3m05s`, `2h07m`.
pub fn age(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTRACT_EXAMPLE: &str = r#"{"version": "0.1.0",
 "distributions": {"www": {"id": "E2ABCDEF123456", "pending_paths": 0, "oldest_pending_seconds": 0,
                           "inflight_exact": 0, "inflight_wildcard": 0,
                           "last_invalidation": {"id": "I2J3...", "status": "InProgress",
                                                 "paths": 12, "created_at": "2026-11-24T15:00:00Z"}}},
 "budget": {"month": "2026-11", "limit": 1000, "used": 12, "allowed": 140, "policy": "coalesce"},
 "queue": {"visible": 0, "in_flight": 0, "delayed": 0, "pending_messages": 0}}"#;

    fn example() -> Status {
        let mut status = Status {
            version: "0.1.0".into(),
            ..Status::default()
        };
        status.distributions.insert(
            "www".into(),
            DistributionStatus {
                id: "E2ABCDEF123456".into(),
                tenant_id: None,
                last_invalidation: Some(LastInvalidation {
                    id: "I2J3...".into(),
                    status: "InProgress".into(),
                    paths: 12,
                    // 2026-11-24T15:00:00Z
                    created_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_532_400),
                }),
                ..DistributionStatus::default()
            },
        );
        status.budget = BudgetStatus {
            month: "2026-11".into(),
            limit: 1000,
            used: 12,
            allowed: 140,
            policy: "coalesce".into(),
            ..BudgetStatus::default()
        };
        status
    }

    #[test]
    fn serializes_to_the_contract_example() {
        let expected: serde_json::Value = serde_json::from_str(CONTRACT_EXAMPLE).unwrap();
        let mut example = example();
        example.budget.pace = 130;
        example.budget.price = 4.5;
        let mut value = serde_json::to_value(example).unwrap();
        // Keys added since the contract's example (more may be added,
        // none renamed): the budget's price, the even pace and the paths
        // reserved; the mode; per distribution the last error and what
        // waits (null here).
        let budget = value["budget"].as_object_mut().unwrap();
        assert_eq!(budget.remove("pace"), Some(serde_json::json!(130)));
        assert_eq!(budget.remove("price"), Some(serde_json::json!(4.5)));
        assert_eq!(budget.remove("reserved"), Some(serde_json::json!(0)));
        let top = value.as_object_mut().unwrap();
        assert_eq!(
            top.remove("mode"),
            Some(serde_json::json!({"source": "", "cloudfront": ""}))
        );
        let www = value["distributions"]["www"].as_object_mut().unwrap();
        assert_eq!(www.remove("last_error"), Some(serde_json::Value::Null));
        assert_eq!(www.remove("waiting"), Some(serde_json::Value::Null));
        assert_eq!(value, expected);
    }

    #[test]
    fn reads_the_contract_example_back() {
        let read: Status = serde_json::from_str(CONTRACT_EXAMPLE).unwrap();
        assert_eq!(read, example());
    }

    #[test]
    fn last_invalidation_is_null_until_the_first() {
        let mut status = example();
        status
            .distributions
            .get_mut("www")
            .unwrap()
            .last_invalidation = None;
        let value = serde_json::to_value(&status).unwrap();
        assert_eq!(
            value["distributions"]["www"]["last_invalidation"],
            serde_json::Value::Null
        );
        assert_eq!(serde_json::from_value::<Status>(value).unwrap(), status);
    }

    #[test]
    fn unknown_keys_are_ignored_and_missing_ones_default() {
        let read: Status =
            serde_json::from_str(r#"{"version": "9.9.9", "new_section": {"x": 1}}"#).unwrap();
        assert_eq!(read.version, "9.9.9");
        assert!(read.distributions.is_empty());
    }

    #[test]
    fn an_error_message_is_one_short_line() {
        assert_eq!(one_line("a\n  b\tc "), "a b c");
        let long = "x".repeat(ERROR_MESSAGE_CHARS + 1);
        let cut = one_line(&long);
        assert_eq!(cut.chars().count(), ERROR_MESSAGE_CHARS);
        assert!(cut.ends_with('…'));
        assert_eq!(one_line(&long[1..]), long[1..]);
    }

    #[test]
    fn times_print_to_the_second() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_532_400_750);
        assert_eq!(format_time(t), "2026-11-24T15:00:00Z");
    }

    #[test]
    fn a_tenant_entry_shows_its_tenant_id() {
        let config = Config::from_parts(
            Some(
                "[source]\nkind = \"local\"\n[distributions.www]\nid = \"E2ABCDEF123456\"\n\
                 [distributions.shop]\nid = \"E3MULTI\"\ntenant_id = \"dt_2Shop\"\n",
            ),
            "test",
            Vec::new(),
        )
        .unwrap();
        let json = serde_json::to_value(Status::initial(&config)).unwrap();
        let shop = &json["distributions"]["shop"];
        assert_eq!(shop["id"], "E3MULTI");
        assert_eq!(shop["tenant_id"], "dt_2Shop");
        // An ordinary distribution's keys are as they were.
        assert!(json["distributions"]["www"].get("tenant_id").is_none());
    }

    #[test]
    fn initial_lists_the_configured_distributions() {
        let config = Config::from_parts(
            Some("[source]\nkind = \"local\"\n[distributions.www]\nid = \"E2ABCDEF123456\"\n"),
            "test",
            Vec::new(),
        )
        .unwrap();
        let status = Status::initial(&config);
        assert_eq!(status.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(status.distributions["www"].id, "E2ABCDEF123456");
        assert_eq!(status.distributions["www"].last_invalidation, None);
        assert_eq!(status.distributions["www"].max_inflight_exact, 3000);
        assert_eq!(status.distributions["www"].max_inflight_wildcard, 15);
        assert_eq!(status.budget.limit, 1000);
        assert_eq!(status.budget.policy, "coalesce");
    }

    #[test]
    fn board_publishes_and_updates() {
        let board = StatusBoard::new(Status::default());
        let reader = board.clone();
        let before = reader.snapshot();
        board.publish(example());
        assert_eq!(*reader.snapshot(), example());
        board.update(|s| s.queue.visible = 7);
        assert_eq!(reader.snapshot().queue.visible, 7);
        // A snapshot taken earlier is not changed under its reader.
        assert_eq!(*before, Status::default());
    }

    #[test]
    fn a_live_queue_is_read_at_each_snapshot() {
        let depth = Arc::new(Mutex::new(QueueDepth::default()));
        let board = StatusBoard::new(example());
        let source = Arc::clone(&depth);
        let reader = board
            .clone()
            .with_live_queue(move || *source.lock().unwrap());
        board.update(|s| s.queue.visible = 9);
        assert_eq!(reader.snapshot().queue.visible, 0);
        *depth.lock().unwrap() = QueueDepth {
            visible: 1,
            in_flight: 2,
            delayed: 3,
        };
        let read = reader.snapshot();
        assert_eq!((read.queue.visible, read.queue.in_flight), (1, 2));
        assert_eq!(read.queue.delayed, 3);
        // The rest is the published status; the writer's clone is unchanged.
        assert_eq!(read.budget, example().budget);
        assert_eq!(board.snapshot().queue.visible, 9);
    }

    #[test]
    fn readiness_sets_and_clears_reasons() {
        let readiness = Readiness::new();
        assert!(readiness.is_ready());
        readiness.set("queue", "queue not found".into());
        readiness.set("distribution:www", "NoSuchDistribution".into());
        readiness.set("queue", "access denied".into());
        let shared = readiness.clone();
        assert!(!shared.is_ready());
        assert_eq!(
            shared.reasons(),
            [
                "distribution:www: NoSuchDistribution",
                "queue: access denied"
            ]
        );
        readiness.clear("queue");
        readiness.clear("ledger");
        assert_eq!(shared.reasons(), ["distribution:www: NoSuchDistribution"]);
        readiness.clear("distribution:www");
        assert!(shared.is_ready());
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeat_goes_stale_without_beats() {
        let threshold = Duration::from_secs(30);
        let heartbeat = Heartbeat::new();
        let watcher = heartbeat.clone();
        assert!(watcher.is_alive(threshold));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(watcher.is_alive(threshold));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!watcher.is_alive(threshold));
        heartbeat.beat();
        assert!(watcher.is_alive(threshold));
        assert_eq!(watcher.age(), Duration::ZERO);
    }
}
