//! The daemon's core: all of its state and every decision, with no I/O, no
//! clock, no locks and no async, in the manner of a protocol state machine.
//! It takes inputs ([`Input`]: messages received, the answers of the calls
//! it asked for) with the moment they arrive, and returns what to do
//! ([`Command`]) and when it next wants to be woken ([`Core::next_wake`]).
//! The runner ([`super::Daemon`]) carries the commands out; `cfpurge
//! replay` drives the same core on a virtual clock.
//!
//! The crash-safety rule is an ordering rule here: a CreateInvalidation is
//! asked for only once the write of the reservation it needs has been
//! answered as done ([`super::ledger`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use crate::budget::{LedgerError, LedgerState, status_of};
use crate::catalog::Catalog;
use crate::catalog::learned_store::AnyLearnedStore;
use crate::clock::{Clock, Millis, Now};
use crate::cloudfront::invalidator::{Invalidation, InvalidatorError, Target};
use crate::config::{Config, DEFAULT_ACCOUNT, OnExhausted, Pacing};
use crate::coordination::dynamo::Fence;
use crate::coordination::{Answer, Call, Change, Lease, Role};
use crate::decode::{RejectReason, Router};
use crate::edge::{EdgeError, EdgeRequest, Observed};
use crate::path::CfPath;
use crate::pending::{BatchRules, MessageId, Meter, PendingSet};
use crate::pipeline::{self, Effect, Ingested};
use crate::planner::Settings;
use crate::source::driver::{QueueHealth, SourceEvent};
use crate::source::queue::{QueueDepth, QueueError};
use crate::status::{BudgetStatus, CallError, ledger_component};
use crate::submitter::{Batch, RateLimit, Situation, Step, SubmitSettings, Submitter, Wait};
use crate::tracker::external::{Resume, Scanned};
use crate::tracker::{self, Checks, InflightView, Known, Looked};

use super::catalogs::{Built, Catalogs, Job};
use super::edge::{Edges, MAX_CANDIDATES, is_reinvalidation};
use super::ledger::{Ledger, Recovered, StoreCall, Written};
use super::observe::StatusView;

mod shown;
pub use shown::{Counts, DistributionCounts, Lead, Shown, Submitted};
mod why;
use why::{Hold, Operation};

/// How often the queue's depth is asked for (GetQueueAttributes).
const DEPTH_INTERVAL: Duration = Duration::from_secs(30);

/// How soon a standby asks for the queue's depth again after a failure
/// (its readiness rests on that call: it does not receive).
const STANDBY_DEPTH_RETRY: Duration = Duration::from_secs(5);

/// The longest the loop sleeps: the gauges, the status snapshot and the
/// watchdog are refreshed at least this often.
pub const OBSERVE_INTERVAL: Duration = Duration::from_secs(1);

/// How long an invalidation a crashed process created keeps covering the
/// redeliveries of its messages: SQS keeps a message in flight for at most
/// 12 hours.
const RECOVERED_FOR: Duration = Duration::from_secs(12 * 3600);

/// How soon the first reconcile round is tried again where it failed.
const FIRST_ROUND_RETRY: Duration = Duration::from_secs(2);

/// How often a standby reads the shared ledger for its status.
const LEDGER_READ_EVERY: Duration = Duration::from_secs(10);

/// The readiness component that holds until the queue first answers.
pub const STARTUP: &str = "startup";

/// The readiness component of the queue.
const QUEUE: &str = "queue";

/// The readiness component of the lease table.
const TABLE: &str = "coordination";

/// The readiness component of the lease item's validity.
const LEASE: &str = "lease";

/// What the daemon did, for tests and logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub invalidations: u64,
    pub paths_submitted: u64,
    pub messages_deleted: u64,
    pub create_errors: u64,
}

/// What comes into the core: a message, or the answer to a command.
#[derive(Debug)]
pub enum Input {
    /// From the source: a message received, or re-queued.
    Event(SourceEvent),
    /// A CreateInvalidation call's answer.
    Created {
        alias: String,
        batch: Batch,
        result: Result<Invalidation, InvalidatorError>,
    },
    /// The answers to a [`Command::Poll`].
    Checked { alias: String, checks: Checks },
    /// The answer to a [`Command::Reconcile`]: what CloudFront has in
    /// progress, and the budget scan if one was asked.
    Looked {
        alias: String,
        result: Result<Looked, InvalidatorError>,
        scan: Option<Result<Scanned, InvalidatorError>>,
    },
    /// The store's answer to [`Command::LoadLedger`].
    LedgerLoaded {
        account: String,
        epoch: u64,
        result: Result<Option<LedgerState>, LedgerError>,
    },
    /// The store's answer to [`Command::SaveLedger`].
    LedgerSaved {
        account: String,
        epoch: u64,
        seq: u64,
        result: Result<(), LedgerError>,
    },
    /// An account's shared ledger as a standby read it, for its status.
    SharedLedger {
        account: String,
        result: Result<Option<LedgerState>, LedgerError>,
    },
    /// The answer to a call on the lease.
    Lease(Answer),
    /// A distribution's catalog, built or not.
    Catalog {
        alias: String,
        result: Result<Built, String>,
    },
    /// Messages the queue task deleted.
    Deleted(usize),
    /// The queue's depth, or why it could not be read.
    Depth(Result<QueueDepth, QueueError>),
    /// What the edge answered to a [`Command::Edge`].
    Edge {
        request: EdgeRequest,
        result: Result<Observed, EdgeError>,
    },
}

/// What the core asks the runner to do.
#[derive(Debug)]
pub enum Command {
    /// Call CreateInvalidation for `batch`, not after `not_after` (the
    /// lease's end, with coordination): past it the call is not made and
    /// is answered as a timeout.
    Create {
        alias: String,
        target: Target,
        batch: Batch,
        not_after: Option<Millis>,
    },
    /// Ask CloudFront whether each of `ids` is completed.
    Poll {
        alias: String,
        target: Target,
        ids: Vec<String>,
    },
    /// List what is in progress on `alias` (fetching what `known` lacks),
    /// and scan its month for the budget with `scan`.
    Reconcile {
        alias: String,
        target: Target,
        known: Known,
        scan: Option<ScanBasis>,
    },
    /// Read an account's budget ledger from its store.
    LoadLedger { account: String, epoch: u64 },
    /// Write an account's budget ledger; with coordination, under `fence`
    /// (`None`: this replica may not write).
    SaveLedger {
        account: String,
        epoch: u64,
        seq: u64,
        state: LedgerState,
        fence: Option<Option<Fence>>,
    },
    /// Read an account's shared ledger (a standby's status).
    ReadSharedLedger { account: String },
    /// Delete or reject messages, after those asked before.
    Queue(Effect),
    /// Make held messages visible again at once.
    Release(Vec<MessageId>),
    /// Make a call on the lease.
    Lease {
        call: Call,
        wall: u64,
        lease_ms: u64,
    },
    /// Start (a new term) or stop receiving from the queue.
    Receive(bool),
    /// Build or write a distribution's catalog.
    Catalog { alias: String, job: Job },
    /// Ask for the queue's depth.
    Depth,
    /// Request a purged path from its distribution's edge (verification or
    /// warming).
    Edge(EdgeRequest),
}

/// What a budget scan needs: the ids already looked at, where the month
/// starts, and where the distribution's last scan was cut, if it was.
#[derive(Clone, Debug)]
pub struct ScanBasis {
    pub seen: HashSet<String>,
    pub month_start: std::time::SystemTime,
    pub resume: Option<Resume>,
}

/// What the source shows of itself, read by the runner for the status.
#[derive(Clone, Debug)]
pub struct SourceView {
    pub health: QueueHealth,
    /// Messages received since the start, redeliveries included.
    pub received: u64,
}

/// An invalidation as it was created, for `cfpurge replay`'s record.
#[derive(Clone, Debug)]
pub struct CreatedRecord {
    pub alias: String,
    pub batch: Batch,
    /// The price the planner used for it.
    pub price: f64,
    /// The messages it covered, with when each was received.
    pub covered: Vec<(MessageId, Millis)>,
    /// The pending entries it was planned from (empty for a batch split
    /// from a refused one).
    pub planned_from: Vec<crate::planner::Entry>,
}

/// How the core is driven.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// As `cfpurge run`: the gauges refreshed every second, the queue's
    /// depth asked for, catalogs built and written.
    #[default]
    Live,
    /// As `cfpurge replay`: no status, no queue depth, no catalog jobs
    /// (catalogs are handed in), and the invalidations created recorded.
    Replay,
}

/// When the core's own periodic work is next due.
#[derive(Clone, Copy, Debug, Default)]
struct Timers {
    poll: Millis,
    reconcile: Millis,
    depth: Millis,
    asking_depth: bool,
    /// When the gauges and the status are next refreshed.
    observe: Millis,
    /// The first reconcile round is over: in-flight invalidations of an
    /// earlier run are known and reservations a crash left are confirmed,
    /// so nothing is paid for twice. Nothing is submitted before.
    started: bool,
}

/// A reconcile round under way: the term it began in and the
/// distributions not yet answered.
#[derive(Clone, Debug)]
struct Round {
    term: u64,
    left: usize,
    /// The accounts whose budget scan was asked of every distribution of
    /// theirs.
    scanned: Vec<String>,
    /// A distribution's reconcile or scan failed in this round.
    failed: bool,
}

/// A batch whose reservation is being written: its call waits.
#[derive(Debug)]
struct Awaiting {
    /// The account whose ledger holds the reservation.
    account: String,
    seq: u64,
    alias: String,
    target: Target,
    batch: Batch,
}

/// This replica's part in a fleet (coordination): the lease machine and
/// what hangs on the role.
#[derive(Debug)]
pub struct ReplicaState {
    id: String,
    lease: Lease,
    lease_ms: u64,
    /// The ledger is the table's (DynamoDB), shared by the fleet.
    shared_ledger: bool,
    /// Each account's budget as a standby last read it from the table.
    shared_budget: BTreeMap<String, BudgetStatus>,
    next_ledger_read: Millis,
    /// Reads of the accounts' shared ledgers still unanswered.
    reading_ledger: usize,
    /// Terms begun, to tell a reconcile round of an earlier term.
    term: u64,
    /// The fence the ledger's writes carry while leading.
    fence: Option<Fence>,
}

impl ReplicaState {
    pub fn new(id: String, lease: Duration, shared_ledger: bool) -> ReplicaState {
        ReplicaState {
            id,
            lease: Lease::new(lease, 0),
            lease_ms: lease.as_millis() as u64,
            shared_ledger,
            shared_budget: BTreeMap::new(),
            next_ledger_read: 0,
            reading_ledger: 0,
            term: 0,
            fence: None,
        }
    }
}

/// The daemon's state and decisions.
pub struct Core {
    mode: Mode,
    pending: PendingSet,
    router: Router,
    submitter: Submitter,
    /// Each account's budget ledger, by account name: AWS bills and paces
    /// every account on its own ([`DEFAULT_ACCOUNT`] alone without
    /// `[accounts]`).
    ledgers: BTreeMap<String, Ledger>,
    /// The account replay's monthly table and price are of
    /// ([`Config::main_account`]).
    main_account: String,
    /// Alias → the account it belongs to.
    accounts: HashMap<String, String>,
    /// Accounts whose ledger was not open when the gate opened: their
    /// distributions submit once it is open and a reconcile round has
    /// looked for what a crash left in it, so that one account's ledger
    /// holds only its own account.
    late: HashSet<String>,
    view: InflightView,
    /// Alias → what its calls name: a distribution, or a tenant.
    targets: HashMap<String, Target>,
    /// Converts the source's instants; never read for the time.
    clock: Clock,
    poll_interval: Duration,
    reconcile_interval: Duration,
    /// What it shows of itself: counters, readiness, the role. The
    /// decisions write here; the runner publishes it.
    shown: Shown,
    /// Distributions CloudFront refuses (NoSuchDistribution, AccessDenied).
    refused: HashSet<String>,
    /// Per distribution, the last CloudFront call that failed, with the
    /// failures since the last success.
    last_errors: HashMap<String, CallError>,
    /// Per distribution, the last hold the submitter decided on (room,
    /// budget, rate, a retry's backoff), for the status.
    holds: HashMap<String, Hold>,
    /// Invalidations a crashed process created, covering redeliveries.
    recovered: Vec<Recovered>,
    /// Per distribution with a call under way, how long what its batch
    /// left behind waits once the answer is in.
    calls_hold: HashMap<String, Option<Millis>>,
    /// The price each batch under way was planned at.
    prices: HashMap<String, f64>,
    /// What the distributions serve, for the least-blast planner.
    catalogs: Catalogs,
    /// Verification and warming at the edge after Completed.
    edges: Edges,
    /// `coalesce.blast_per_path`: the price under `pacing = "none"`.
    blast_per_path: f64,
    totals: Totals,
    replica: Option<ReplicaState>,
    /// What a new term's submitter and pending set are made with.
    submit_settings: SubmitSettings,
    create_rate: (f64, u32),
    batch_rules: BatchRules,
    /// Whether `pacing = "even"` (every account paces alike).
    pacing: Pacing,
    meter: Option<Meter>,
    timers: Timers,
    /// Distributions with a poll under way.
    polling: HashSet<String>,
    round: Option<Round>,
    /// Before the gate opens: the distributions whose look (and budget
    /// scan, when one is wanted) went through in this term's rounds.
    looked_ok: HashSet<String>,
    /// Per distribution whose last scan was cut short, where the next one
    /// goes on from.
    scan_resume: HashMap<String, Resume>,
    awaiting: Vec<Awaiting>,
    /// Shutting down: the lease is renewed, never taken.
    draining: bool,
    out: Vec<Command>,
    created: Vec<CreatedRecord>,
    /// In replay, the pending entries each batch under way was planned
    /// from (`cfpurge replay --optimum`).
    planned_from: HashMap<String, Vec<crate::planner::Entry>>,
}

impl Core {
    /// A core for `config`, alone (no replicas), with the file ledger's
    /// location as configured. `run` distinguishes this process's
    /// CallerReferences from another run's.
    pub fn new(config: &Config, clock: Clock, run: String, mode: Mode) -> Core {
        let cf = &config.cloudfront;
        let poll_interval = Duration::from_secs(cf.poll_interval_seconds);
        let submit_settings = SubmitSettings {
            planner: Settings::from(&config.coalesce),
            strategy: config.coalesce.strategy,
            on_exhausted: config.budget.on_exhausted,
            recheck: poll_interval,
        };
        let batch_rules = BatchRules::from(&config.batching);
        let accounts: HashMap<String, String> = config
            .distributions
            .keys()
            .map(|alias| (alias.clone(), config.account_of(alias).to_owned()))
            .collect();
        Core {
            mode,
            pending: PendingSet::new(batch_rules),
            router: Router::new(config),
            submitter: Submitter::new(
                submit_settings.clone(),
                RateLimit::new(cf.create_per_second, cf.create_burst),
                run,
            )
            .with_accounts(accounts.clone()),
            ledgers: config
                .budget_accounts()
                .into_iter()
                .map(|account| {
                    let ledger = Ledger::new(
                        account.clone(),
                        ledger_location(config, &account),
                        config.budget_for(&account),
                        config.coalesce.blast_per_path,
                    );
                    (account, ledger)
                })
                .collect(),
            main_account: config.main_account(),
            accounts,
            late: HashSet::new(),
            view: InflightView::new(config.distributions.iter()),
            targets: config
                .distributions
                .iter()
                .map(|(alias, d)| (alias.clone(), Target::of(d)))
                .collect(),
            clock,
            poll_interval,
            reconcile_interval: Duration::from_secs(cf.reconcile_interval_seconds),
            shown: Shown::default(),
            refused: HashSet::new(),
            last_errors: HashMap::new(),
            holds: HashMap::new(),
            recovered: Vec::new(),
            calls_hold: HashMap::new(),
            prices: HashMap::new(),
            catalogs: Catalogs::new(config),
            // A replay makes no requests, to the edge or anywhere.
            edges: match mode {
                Mode::Live => Edges::new(config),
                Mode::Replay => Edges::default(),
            },
            blast_per_path: config.coalesce.blast_per_path,
            totals: Totals::default(),
            replica: None,
            submit_settings,
            create_rate: (cf.create_per_second, cf.create_burst),
            batch_rules,
            pacing: config.budget.pacing,
            meter: None,
            timers: Timers::default(),
            polling: HashSet::new(),
            round: None,
            looked_ok: HashSet::new(),
            scan_resume: HashMap::new(),
            awaiting: Vec::new(),
            draining: false,
            out: Vec::new(),
            created: Vec::new(),
            planned_from: HashMap::new(),
        }
    }

    /// The pending set counts its bytes in `meter` (the source's
    /// `max_pending_bytes`).
    pub fn set_meter(&mut self, meter: Meter) {
        self.pending = PendingSet::new(self.batch_rules).with_meter(meter.clone());
        self.meter = Some(meter);
    }

    /// Where the store keeps `account`'s ledger, for messages.
    pub fn set_ledger_location(&mut self, account: &str, location: String) {
        if let Some(ledger) = self.ledgers.get_mut(account) {
            ledger.set_location(location);
        }
    }

    /// The account whose budget stands for all where one must
    /// ([`Config::main_account`]).
    pub fn main_account(&self) -> &str {
        &self.main_account
    }

    /// The account `alias` belongs to.
    fn account(&self, alias: &str) -> &str {
        self.accounts
            .get(alias)
            .map_or(DEFAULT_ACCOUNT, String::as_str)
    }

    /// The ledger of `alias`'s account.
    fn ledger_of(&self, alias: &str) -> Option<&Ledger> {
        self.ledgers.get(self.account(alias))
    }

    fn ledger_of_mut(&mut self, alias: &str) -> Option<&mut Ledger> {
        let account = self.account(alias).to_owned();
        self.ledgers.get_mut(&account)
    }

    /// Whether some account's ledger is open: the first reconcile round
    /// needs one to confirm what a crash left in it.
    fn any_ledger_open(&self) -> bool {
        self.ledgers.values().any(|l| l.budget().is_some())
    }

    /// The learned catalogs are kept in the table's stores.
    pub fn keep_learned_in(&mut self, store_for: impl Fn(&str) -> AnyLearnedStore) {
        self.catalogs.keep_learned_in(store_for);
    }

    /// Runs as one of several replicas: receives and submits only while
    /// holding the lease.
    pub fn set_replica(&mut self, replica: ReplicaState) {
        self.replica = Some(replica);
        self.catalogs.follow_lease();
        self.shown.lead = Lead::Standby;
    }

    /// Converts the source's instants with `clock` (tests whose paused
    /// time also moves the wall clock).
    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    /// At shutdown: the learned catalogs' last writes.
    pub fn last_saves(&mut self) -> Vec<(String, Job)> {
        self.catalogs.last_saves()
    }

    /// Lists the buckets of `catalog = "s3"` distributions with `client`.
    pub fn set_s3_client(&mut self, client: &aws_sdk_s3::Client) {
        self.catalogs.set_s3_client(client);
    }

    /// Plans `alias` with `catalog` (replay).
    pub fn set_catalog(&mut self, alias: &str, catalog: Catalog) {
        self.catalogs.set_ready(alias, catalog);
    }

    /// The `learned` catalogs learn in memory, never read or written
    /// (replay without a catalog).
    pub fn learn_in_memory(&mut self) {
        self.catalogs.learn_in_memory();
    }

    /// The alias a request's `distribution` names (or the default's).
    pub fn alias_of(&self, named: Option<&str>) -> Option<&str> {
        self.router.alias_of(named)
    }

    /// What it shows of itself, as its decisions left it: the runner
    /// publishes it after each step.
    pub fn shown(&self) -> &Shown {
        &self.shown
    }

    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// The commands asked for since the last call, in order.
    pub fn take_commands(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.out)
    }

    /// The invalidations created since the last call (replay only).
    pub fn take_created(&mut self) -> Vec<CreatedRecord> {
        std::mem::take(&mut self.created)
    }

    /// Whether anything still waits to be covered or answered (shutdown).
    pub fn is_drained(&self) -> bool {
        self.pending.pending_messages() == 0
            && !self.submitter.is_calling()
            && self.awaiting.is_empty()
    }

    /// Whether a CreateInvalidation or a ledger write is under way.
    pub fn is_calling(&self) -> bool {
        self.submitter.is_calling() || self.ledgers.values().any(Ledger::is_writing)
    }

    /// Messages still held.
    pub fn pending_messages(&self) -> usize {
        self.pending.pending_messages()
    }

    /// Whether this daemon may receive and submit at `now`: always alone,
    /// only while holding the lease as a replica.
    pub fn is_leader(&self, now: Millis) -> bool {
        self.replica
            .as_ref()
            .is_none_or(|r| matches!(r.lease.role(now), Role::Leader { .. }))
    }

    /// Takes one input at `now`, then does whatever is due.
    pub fn handle(&mut self, input: Input, now: &Now) {
        // First the lease: a process resumed after a pause must not take
        // in what it may no longer work on.
        self.lease_turn(now);
        self.apply(input, now);
        self.turn(now);
    }

    /// Does whatever is due at `now`: the lease, the ledger, due batches,
    /// polls, reconciles, the queue's depth, catalogs, the gauges.
    pub fn turn(&mut self, now: &Now) {
        self.lease_turn(now);
        let leader = self.is_leader(now.mono);
        if leader {
            let calls: Vec<_> = self
                .ledgers
                .iter_mut()
                .filter_map(|(account, l)| Some((account.clone(), l.keep(now)?)))
                .collect();
            for (account, call) in calls {
                self.ledger_call(account, call);
            }
            self.judge_ledgers();
        }
        if leader && self.timers.started {
            self.submit_due(now);
        }
        if leader && now.mono >= self.timers.poll {
            self.poll(now);
        }
        if leader
            && self.round.is_none()
            && now.mono >= self.timers.reconcile
            && self.may_reconcile()
        {
            self.start_reconcile(now);
        }
        if !self.draining {
            for request in self.edges.due(now.mono) {
                self.out.push(Command::Edge(request));
            }
        }
        if self.mode == Mode::Live {
            if !self.timers.asking_depth && now.mono >= self.timers.depth {
                self.timers.asking_depth = true;
                self.out.push(Command::Depth);
            }
            for (alias, job) in self.catalogs.due(now) {
                self.out.push(Command::Catalog { alias, job });
            }
        }
        self.flush_ledgers();
    }

    /// Asks for the write of every ledger with changes its store lacks.
    fn flush_ledgers(&mut self) {
        let calls: Vec<_> = self
            .ledgers
            .iter_mut()
            .filter_map(|(account, l)| Some((account.clone(), l.flush()?)))
            .collect();
        for (account, call) in calls {
            self.ledger_call(account, call);
        }
    }

    /// The next moment something is due.
    pub fn next_wake(&self, now: &Now) -> Millis {
        let mut wake = Millis::MAX;
        let mut due = |at: Option<Millis>| {
            if let Some(at) = at {
                wake = wake.min(at.max(now.mono + 1));
            }
        };
        if self.mode == Mode::Live {
            due(Some(self.timers.observe));
            due((!self.timers.asking_depth).then_some(self.timers.depth));
            due(self.catalogs.next_due());
        }
        if !self.draining {
            due(self.edges.next_wake());
        }
        let leader = self.is_leader(now.mono);
        if leader {
            if self.timers.started {
                due(self.pending.next_due());
                due(self.submitter.next_after());
            }
            due(self.view.any_to_poll().then_some(self.timers.poll));
            due((self.round.is_none() && self.may_reconcile()).then_some(self.timers.reconcile));
            for ledger in self.ledgers.values() {
                due(ledger.next_wake());
            }
        }
        due(self.lease_wake());
        wake
    }

    /// Whether a reconcile round may begin: not while draining, once the
    /// gate is open; and the first round only with a ledger open, since it
    /// must confirm what a crash left in it. (One account's ledger that
    /// cannot be opened holds only its own account: see `late`.)
    fn may_reconcile(&self) -> bool {
        if self.timers.started {
            !self.draining
        } else {
            self.any_ledger_open()
        }
    }

    fn ledger_call(&mut self, account: String, call: StoreCall) {
        let fence = self.replica.as_ref().map(|r| r.fence.clone());
        self.out.push(match call {
            StoreCall::Load { epoch } => Command::LoadLedger { account, epoch },
            StoreCall::Save { epoch, seq, state } => Command::SaveLedger {
                account,
                epoch,
                seq,
                state,
                fence,
            },
        });
    }

    fn judge_ledgers(&mut self) {
        let shown = &mut self.shown;
        for (account, ledger) in &self.ledgers {
            let component = ledger_component(account);
            match ledger.error() {
                Some(e) => shown.not_ready(&component, ledger.not_usable(e)),
                None if ledger.budget().is_some() => shown.ready(&component),
                None => {}
            }
        }
    }

    /// Shutdown begins: nothing more is received, everything pending is
    /// due at once, and whatever the first reconcile has not confirmed
    /// stays spent.
    ///
    /// The gate stays as it is: before the first reconcile round is over,
    /// nothing is submitted (what a crash left may cover it); the round
    /// still under way, or begun now, may open it within the grace period.
    pub fn begin_drain(&mut self) {
        self.draining = true;
        self.pending.flush_all();
    }

    /// Shutdown: the messages still held, no longer this daemon's (the
    /// runner makes them visible again).
    pub fn let_go(&mut self) -> Vec<MessageId> {
        queue_messages(self.pending.take_all())
    }

    // --- Ingesting ---

    fn ingest(&mut self, event: SourceEvent, now: &Now) {
        if !self.is_leader(now.mono) {
            // It stood down while the event was on its way: let it go.
            if let SourceEvent::Received { id, .. } = event {
                self.out.push(Command::Release(vec![id]));
            }
            return;
        }
        let (ingested, effect) =
            pipeline::accept(&self.router, &mut self.pending, &self.clock, now, event);
        if let Some(effect) = effect {
            self.out.push(Command::Queue(effect));
        }
        let counts = &mut self.shown.counts;
        match &ingested {
            Ingested::Pending {
                requested,
                skipped,
                s3_objects,
                asked,
                ..
            } => {
                for (alias, n) in requested {
                    counts.of(alias).requested += *n as u64;
                }
                for (alias, n) in skipped {
                    counts.of(alias).skipped += *n as u64;
                }
                self.follow_s3(s3_objects);
                for (alias, paths) in asked {
                    self.catalogs.learn(alias, paths);
                }
                self.cover_recovered(now);
            }
            Ingested::Rejected(reason) => counts.rejected(*reason),
            Ingested::Deleted {
                skipped,
                s3_objects,
            } => {
                for (alias, n) in skipped {
                    counts.of(alias).skipped += *n as u64;
                }
                self.follow_s3(s3_objects);
            }
            Ingested::Forgotten | Ingested::Duplicate | Ingested::SourceFull => {}
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
    fn cover_recovered(&mut self, now: &Now) {
        let keep = RECOVERED_FOR.as_millis() as Millis;
        self.recovered
            .retain(|r| now.mono.saturating_sub(r.created_at) < keep);
        for r in &self.recovered {
            let covered = self
                .pending
                .apply_recovered(&r.alias, &r.paths, r.created_at);
            let covered = queue_messages(covered);
            if !covered.is_empty() {
                tracing::info!(distribution = %r.alias, messages = covered.len(), "redelivered messages covered by an invalidation made before a crash");
                self.out.push(Command::Queue(Effect::Delete(covered)));
            }
        }
    }

    // --- Submitting ---

    /// Plans and submits every due batch, and every batch waiting to be
    /// retried.
    fn submit_due(&mut self, now: &Now) {
        let mut aliases = self.pending.due(now.mono);
        for alias in self.submitter.queued_aliases() {
            if !aliases.iter().any(|a| a == alias) {
                aliases.push(alias.to_owned());
            }
        }
        for alias in aliases {
            self.submit(&alias, now);
        }
    }

    /// Takes the least-blast curve of the batch about to be planned from
    /// `entries` into the budget's price (under even pacing, with the
    /// least-blast planner and a catalog). Returns whether it did.
    fn observe_curve(
        &mut self,
        alias: &str,
        entries: &[crate::planner::Entry],
        capacity: Option<crate::planner::Capacity>,
        now: &Now,
    ) -> bool {
        if entries.is_empty()
            || self.pacing != Pacing::Even
            || self.submit_settings.strategy != crate::config::Strategy::LeastBlast
            || self
                .ledger_of(alias)
                .and_then(Ledger::budget)
                .is_none_or(|b| b.remaining(now.wall) == 0)
        {
            // Nothing is planned at a price with the budget spent: it is
            // held, or one path covers the batch.
            return false;
        }
        let (Some(catalog), Some(capacity)) = (self.catalogs.get(alias), capacity) else {
            return false;
        };
        let curve = crate::planner::least_blast::frontier(
            entries,
            capacity,
            &self.submit_settings.planner,
            catalog,
        );
        self.ledger_of_mut(alias)
            .is_some_and(|l| l.observe_curve(now, &curve))
    }

    fn submit(&mut self, alias: &str, now: &Now) {
        let Some(target) = self.targets.get(alias).cloned() else {
            return;
        };
        let account = self.account(alias).to_owned();
        let Some(ledger) = self.ledgers.get(&account) else {
            return;
        };
        if self.late.contains(&account) {
            if !ledger.settled() {
                self.pending.hold(alias, now.after(FIRST_ROUND_RETRY));
                return;
            }
            tracing::info!(account = %account, "the account's budget ledger is open and settled: its distributions submit again");
            self.late.remove(&account);
        }
        let due = self.pending.due(now.mono).iter().any(|a| a == alias);
        let new_batch = due && !self.submitter.has_queued(alias);
        // Once the budget is spent under `coalesce`, a batch goes as one
        // covering path whatever its size, and each such path is billed
        // past the budget and purges the whole distribution: reaching
        // `max_batch_paths` does not make it due, its window does.
        let covering = self.submit_settings.on_exhausted == OnExhausted::Coalesce
            && ledger.budget().is_some_and(|b| b.remaining(now.wall) == 0);
        if new_batch
            && covering
            && let Some(until) = self.pending.due_by_size_alone(alias, now.mono)
        {
            self.pending.hold(alias, until);
            return;
        }
        let entries = if new_batch {
            self.pending.batch(alias)
        } else {
            Vec::new()
        };
        let capacity = self.view.capacity(alias);
        // The budget's price (one for every distribution sharing the
        // account's budget), learned from the recent batches' least-blast
        // curves and this one's, and brought up to now before the batch is
        // planned.
        let observed = self.observe_curve(alias, &entries, capacity, now);
        let ledger = self
            .ledgers
            .get_mut(&account)
            .expect("every account has a ledger from the start: none is removed");
        ledger.advance_price(now);
        let price = if observed {
            ledger.batch_price(now)
        } else {
            ledger.price()
        };
        let budget = self.ledgers.get(&account).and_then(Ledger::budget);
        let situation = Situation {
            due,
            entries: &entries,
            capacity,
            remaining: budget.map(|b| b.remaining(now.wall)),
            catalog: self.catalogs.get(alias),
            price,
        };
        let step = self.submitter.next(alias, now.mono, situation);
        if observed && !matches!(step, Step::Send { .. }) {
            // Not planned after all (the budget holds it, or no cover
            // fits): its curve is taken when it is.
            if let Some(l) = self.ledgers.get_mut(&account) {
                l.forget_last_curve();
            }
        }
        match step {
            Step::Idle => {}
            Step::Wait { until, why } => {
                tracing::trace!(distribution = %alias, ?why, "waiting");
                self.holds.insert(alias.to_owned(), Hold { why, until });
                self.pending.hold(alias, until);
            }
            Step::Send { batch, hold } => {
                self.holds.remove(alias);
                if self.mode == Mode::Replay && !entries.is_empty() {
                    self.planned_from
                        .insert(batch.reference.clone(), entries.clone());
                }
                if let Some(until) = hold {
                    tracing::info!(distribution = %alias, "not enough room in flight or budget; the rest waits");
                    // The plan was cut to the budget when it spends all
                    // that is left, else to the room in flight.
                    let left = self.ledger_of(alias).and_then(Ledger::budget);
                    let why = match left.map(|b| b.remaining(now.wall)) {
                        Some(left) if left <= batch.paths.len() as u64 => Wait::Budget,
                        _ => Wait::Capacity,
                    };
                    self.holds.insert(alias.to_owned(), Hold { why, until });
                    self.pending.hold(alias, until);
                }
                // The reservation is written before CloudFront is called.
                let ledger = self
                    .ledgers
                    .get_mut(&account)
                    .expect("every account has a ledger from the start: none is removed");
                let reserved =
                    ledger.reserve(&batch.reference, alias, batch.paths.len() as u64, now);
                let seq = match reserved {
                    Ok(seq) => {
                        // The spending moves the price at once: the next
                        // batch of the account this turn is planned at it.
                        ledger.advance_price(now);
                        seq
                    }
                    Err(e) => {
                        tracing::error!(distribution = %alias, account = %account, error = %e, "could not reserve the batch in the ledger; not submitting it");
                        let why = ledger.not_usable(&e);
                        self.shown.not_ready(&ledger_component(&account), why);
                        let until = self.submitter.not_reserved(alias, batch, now.mono);
                        let why = Wait::Ledger;
                        self.holds.insert(alias.to_owned(), Hold { why, until });
                        self.pending.hold(alias, until);
                        return;
                    }
                };
                // Not due again while its call is under way; the answer
                // says when.
                self.pending.hold(alias, Millis::MAX);
                self.calls_hold.insert(alias.to_owned(), hold);
                self.prices.insert(batch.reference.clone(), price);
                self.awaiting.push(Awaiting {
                    account,
                    seq,
                    alias: alias.to_owned(),
                    target,
                    batch,
                });
                self.flush_ledgers();
            }
        }
    }

    /// A write of `account`'s ledger was answered: the batches whose
    /// reservation it made durable go to CloudFront; if it failed, they
    /// wait, unsent.
    fn ledger_written(&mut self, account: &str, written: Written, now: &Now) {
        match written {
            Written::Stale => {}
            Written::UpTo(seq) => {
                let not_after = self
                    .replica
                    .as_ref()
                    .map(|r| r.lease.leader_until().unwrap_or(0));
                let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.awaiting)
                    .into_iter()
                    .partition(|a| a.account == account && a.seq <= seq);
                self.awaiting = waiting;
                for a in ready {
                    self.out.push(Command::Create {
                        alias: a.alias,
                        target: a.target,
                        batch: a.batch,
                        not_after,
                    });
                }
            }
            Written::Failed(why) => {
                if let Some(ledger) = self.ledgers.get(account) {
                    self.shown
                        .not_ready(&ledger_component(account), ledger.not_usable(&why));
                }
                let (failed, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.awaiting)
                    .into_iter()
                    .partition(|a| a.account == account);
                self.awaiting = waiting;
                for a in failed {
                    tracing::error!(distribution = %a.alias, error = %why, "the batch's reservation could not be written; not submitting it");
                    self.prices.remove(&a.batch.reference);
                    self.planned_from.remove(&a.batch.reference);
                    self.calls_hold.remove(&a.alias);
                    let until = self.submitter.not_reserved(&a.alias, a.batch, now.mono);
                    let why = Wait::Ledger;
                    self.holds.insert(a.alias.clone(), Hold { why, until });
                    self.pending.hold(&a.alias, until);
                }
            }
        }
    }

    // --- Applying answers ---

    fn apply(&mut self, input: Input, now: &Now) {
        self.timers.observe = 0;
        match input {
            Input::Event(event) => self.ingest(event, now),
            Input::Created {
                alias,
                batch,
                result: Ok(invalidation),
            } => self.created(&alias, batch, &invalidation, now),
            Input::Created {
                alias,
                batch,
                result: Err(e),
            } => self.create_failed(&alias, batch, &e, now),
            Input::Checked { alias, checks } => {
                self.polling.remove(&alias);
                for (_, answer) in &checks {
                    let outcome = answer.as_ref().map(|_| ());
                    self.cloudfront_answered(&alias, Operation::Get, outcome, now);
                }
                let report = tracker::apply_checks(&mut self.view, &alias, checks, now.instant);
                let freed = !report.completed.is_empty();
                for c in report.completed {
                    self.shown.counts.completed(&c.alias, c.took);
                    tracing::info!(distribution = %c.alias, invalidation = %c.id, seconds = c.took.as_secs(), "invalidation completed");
                    self.edges.completed(&c.id, now.mono);
                }
                if freed {
                    self.room_freed(&alias, now);
                }
                for (alias, id, e) in report.failed {
                    tracing::warn!(distribution = %alias, invalidation = %id, error = %e, "checking an invalidation failed");
                }
            }
            Input::Looked {
                alias,
                result,
                scan,
            } => self.looked(&alias, result, scan, now),
            Input::LedgerLoaded {
                account,
                epoch,
                result,
            } => {
                if let Some(ledger) = self.ledgers.get_mut(&account) {
                    ledger.loaded(epoch, result, now);
                    if self.late.contains(&account) && !ledger.settled() {
                        // What a crash left in it is looked for soon, not
                        // at the next interval.
                        self.timers.reconcile = self.timers.reconcile.min(now.mono);
                    }
                }
                self.judge_ledgers();
            }
            Input::LedgerSaved {
                account,
                epoch,
                seq,
                result,
            } => {
                let refused = matches!(result, Err(LedgerError::Refused(_)));
                let Some(ledger) = self.ledgers.get_mut(&account) else {
                    return;
                };
                let written = ledger.saved(epoch, seq, result, now);
                if refused {
                    tracing::warn!(
                        "the ledger's write was refused: someone else wrote it, or the lease moved; reading it again"
                    );
                }
                self.ledger_written(&account, written, now);
                self.judge_ledgers();
            }
            Input::SharedLedger { account, result } => self.ledger_read(&account, result, now),
            Input::Lease(answer) => self.lease_answered(answer, now),
            Input::Catalog { alias, result } => self.catalogs.built(&alias, result, now),
            Input::Deleted(n) => {
                self.shown.counts.deleted += n as u64;
                self.totals.messages_deleted += n as u64;
            }
            Input::Depth(result) => self.depth(result, now),
            Input::Edge { request, result } => self.edge_answered(request, result, now),
        }
    }

    /// The edge answered: counted and shown; a stale path of a
    /// distribution that opted in is purged again, once, while the budget
    /// has room, through the pending set like any request.
    fn edge_answered(
        &mut self,
        request: EdgeRequest,
        result: Result<Observed, EdgeError>,
        now: &Now,
    ) {
        let may_spend = self
            .ledger_of(&request.alias)
            .and_then(Ledger::budget)
            .is_some_and(|b| b.remaining(now.wall) > 0);
        let again = self.edges.answered(
            request,
            result,
            now.mono,
            now.wall,
            may_spend,
            &mut self.shown.counts,
        );
        if let Some(again) = again
            && self.is_leader(now.mono)
            && !self.draining
        {
            // Not counted as requested: no client asked for it.
            self.pending.add(&again.id, now.mono, &[again.request]);
        }
    }

    fn depth(&mut self, result: Result<QueueDepth, QueueError>, now: &Now) {
        self.timers.asking_depth = false;
        self.timers.depth = now.after(DEPTH_INTERVAL);
        let standby = self.replica.is_some() && !self.is_leader(now.mono);
        if standby && result.is_err() {
            // Its readiness rests on this call alone: ask again soon.
            self.timers.depth = now.after(STANDBY_DEPTH_RETRY);
        }
        match result {
            Ok(depth) => {
                self.shown.ready(STARTUP);
                if standby {
                    self.shown.ready(QUEUE);
                }
                self.shown.depth = depth;
            }
            Err(e) => {
                tracing::warn!(error = %e, "asking for the queue's depth failed");
                if standby {
                    self.shown.not_ready(QUEUE, e.to_string());
                }
            }
        }
    }

    fn poll(&mut self, now: &Now) {
        self.timers.poll = now.after(poll_round(self.poll_interval));
        let aliases: Vec<String> = self.view.aliases().map(str::to_owned).collect();
        for alias in aliases {
            if self.polling.contains(&alias) {
                // A call still under way: it holds up only its own
                // distribution.
                continue;
            }
            // While a batch waits for room in flight, what takes the room
            // is checked every round rather than every poll interval: its
            // completion is what the batch waits for.
            let every = match self.holds.get(&alias) {
                Some(h) if h.why == Wait::Capacity && h.until >= now.mono => {
                    poll_round(self.poll_interval)
                }
                _ => self.poll_interval,
            };
            let ids = self.view.to_poll(&alias, now.instant, every);
            let Some(target) = self.view.target(&alias).cloned() else {
                continue;
            };
            if ids.is_empty() {
                continue;
            }
            self.polling.insert(alias.clone());
            self.out.push(Command::Poll { alias, target, ids });
        }
    }

    fn start_reconcile(&mut self, now: &Now) {
        let gate_open = self.timers.started;
        // Each account's ledger asks for its own scan.
        let scans: HashMap<&str, ScanBasis> = self
            .ledgers
            .iter()
            .filter(|(_, l)| l.wants_scan())
            .filter_map(|(account, l)| {
                let (seen, month_start) = l.scan_basis()?;
                Some((
                    account.as_str(),
                    ScanBasis {
                        seen,
                        month_start,
                        resume: None,
                    },
                ))
            })
            .collect();
        // Before the gate opens, only the distributions not yet looked at.
        let mut aliases: Vec<(&String, &Target)> = self
            .targets
            .iter()
            .filter(|(a, _)| gate_open || !self.looked_ok.contains(*a))
            .collect();
        aliases.sort_by(|a, b| a.0.cmp(b.0));
        let term = self.replica.as_ref().map_or(0, |r| r.term);
        self.round = Some(Round {
            term,
            left: aliases.len(),
            scanned: scans.keys().map(|a| (*a).to_owned()).collect(),
            failed: false,
        });
        for (alias, target) in aliases {
            let account = self
                .accounts
                .get(alias)
                .map_or(DEFAULT_ACCOUNT, String::as_str);
            self.out.push(Command::Reconcile {
                alias: alias.clone(),
                target: target.clone(),
                known: self.view.known(alias),
                scan: scans.get(account).cloned().map(|basis| ScanBasis {
                    resume: self.scan_resume.get(alias.as_str()).cloned(),
                    ..basis
                }),
            });
        }
        if self.round.as_ref().is_some_and(|r| r.left == 0) {
            self.round_over(now);
        }
    }

    fn looked(
        &mut self,
        alias: &str,
        result: Result<Looked, InvalidatorError>,
        scan: Option<Result<Scanned, InvalidatorError>>,
        now: &Now,
    ) {
        // A distribution CloudFront refuses (missing, access denied) has
        // nothing to look at and takes nothing: it does not hold the gate
        // for the others.
        let unknown = |e: &InvalidatorError| {
            !matches!(
                e,
                InvalidatorError::NoSuchDistribution(_) | InvalidatorError::AccessDenied(_)
            )
        };
        // A scan cut short has not looked at the whole month: what a crash
        // left may be past where it stopped, so it counts as failed here,
        // and the next goes on from there.
        let cut = matches!(&scan, Some(Ok(s)) if s.resume.is_some());
        let failed = result.as_ref().err().is_some_and(unknown)
            || matches!(&scan, Some(Err(e)) if unknown(e))
            || cut;
        if failed && let Some(round) = &mut self.round {
            round.failed = true;
        }
        let wants_scan = self.ledger_of(alias).is_some_and(Ledger::wants_scan);
        if !failed && (scan.is_some() || !wants_scan) {
            self.looked_ok.insert(alias.to_owned());
        }
        match result {
            Ok(looked) => {
                self.cloudfront_answered(alias, Operation::List, Ok(()), now);
                tracker::apply_look(&mut self.view, alias, looked, now.instant, now.wall);
                self.judge_distribution(alias, Ok(()), now);
            }
            Err(e) => {
                self.cloudfront_answered(alias, Operation::List, Err(&e), now);
                self.judge_distribution(alias, Err(&e), now);
                tracing::warn!(distribution = %alias, error = %e, "counting invalidations in flight failed");
            }
        }
        match scan {
            Some(Ok(Scanned { found, resume })) => {
                self.cloudfront_answered(alias, Operation::List, Ok(()), now);
                match resume {
                    Some(resume) => {
                        tracing::info!(distribution = %alias, found = found.len(), "listing this month's invalidations was cut short; the next scan goes on from there");
                        self.scan_resume.insert(alias.to_owned(), resume);
                    }
                    None => {
                        self.scan_resume.remove(alias);
                    }
                }
                let recovered = self
                    .ledger_of_mut(alias)
                    .map(|l| l.take_scan(alias, found, now))
                    .unwrap_or_default();
                if !recovered.is_empty() {
                    self.recovered.extend(recovered);
                    self.cover_recovered(now);
                }
            }
            Some(Err(e)) => {
                self.cloudfront_answered(alias, Operation::List, Err(&e), now);
                tracing::warn!(distribution = %alias, error = %e, "listing this month's invalidations failed");
            }
            None => {}
        }
        if let Some(round) = &mut self.round {
            round.left = round.left.saturating_sub(1);
            if round.left == 0 {
                self.round_over(now);
            }
        }
    }

    fn round_over(&mut self, now: &Now) {
        let Some(round) = self.round.take() else {
            return;
        };
        if round.term != self.replica.as_ref().map_or(0, |r| r.term) {
            // A round of an earlier term: this term needs its own.
            self.timers.reconcile = now.mono;
            return;
        }
        if !self.timers.started {
            // The gate opens once this term's rounds have looked, on every
            // distribution, for what a crash left in the ledger; until
            // then the next round comes soon, for the distributions that
            // are left.
            let recovered =
                self.any_ledger_open() && self.targets.keys().all(|a| self.looked_ok.contains(a));
            if !recovered {
                tracing::warn!(
                    "the first reconcile could not yet look everywhere for what an earlier run left; nothing is submitted until it has"
                );
                self.timers.reconcile = now.after(FIRST_ROUND_RETRY);
                return;
            }
            self.timers.started = true;
            self.ledgers.values_mut().for_each(Ledger::round_over);
            self.late = self
                .ledgers
                .iter()
                .filter(|(_, l)| l.budget().is_none())
                .map(|(account, _)| account.clone())
                .collect();
            for account in &self.late {
                tracing::warn!(account = %account, "the account's budget ledger is not open: its distributions submit nothing until it is");
            }
        } else if !round.failed {
            // Only a scan that went through everywhere settles what a
            // crash left in an account's ledger: the next one tries again.
            for account in &round.scanned {
                if let Some(l) = self.ledgers.get_mut(account) {
                    l.round_over();
                }
            }
        }
        self.timers.reconcile = now.after(self.reconcile_interval);
    }

    /// An invalidation of `alias` completed: what waits for room in flight
    /// is looked at again now rather than at its recheck, up to a poll
    /// interval later. Not while a call of `alias` is under way: its
    /// answer decides what waits.
    fn room_freed(&mut self, alias: &str, now: &Now) {
        if self.calls_hold.contains_key(alias) {
            return;
        }
        if let Some(hold) = self.holds.get_mut(alias)
            && hold.why == Wait::Capacity
            && hold.until > now.mono
        {
            hold.until = now.mono;
            self.pending.hold(alias, now.mono);
            self.submitter.expedite(alias, now.mono);
        }
    }

    fn created(&mut self, alias: &str, batch: Batch, invalidation: &Invalidation, now: &Now) {
        // A crash here: created, still only reserved in the ledger.
        fail::fail_point!("daemon::after_create");
        self.submitter.created(alias);
        self.cloudfront_answered(alias, Operation::Create, Ok(()), now);
        let hold = self.calls_hold.remove(alias).flatten();
        self.pending.hold(alias, hold.unwrap_or(now.mono));
        if let Some(l) = self.ledger_of_mut(alias) {
            l.commit(&batch.reference, &invalidation.id, invalidation.created_at);
        }
        self.view.record_created(alias, invalidation, now.instant);
        self.judge_distribution(alias, Ok(()), now);
        if self.edges.wants(alias) {
            // Before the coverage takes them: what its wildcards cover of
            // what was asked for by name.
            let mut purged: Vec<CfPath> = batch.paths.clone();
            purged.extend(
                self.pending
                    .exact_under(alias, &batch.paths, MAX_CANDIDATES),
            );
            self.edges.created(
                &self.router,
                alias,
                &invalidation.id,
                purged,
                batch.first_sent_at,
                now.mono,
            );
        }
        let covered = self
            .pending
            .apply_timed(alias, &batch.paths, batch.first_sent_at);
        let counts = self.shown.counts.of(alias);
        for (_, received_at) in &covered {
            let waited = now.mono.saturating_sub(*received_at);
            counts
                .request_to_invalidation
                .observe(Duration::from_millis(waited));
        }
        let wildcards = batch.paths.iter().filter(|p| p.is_wildcard()).count() as u64;
        let tags = batch.paths.iter().filter(|p| p.is_tag()).count() as u64;
        counts.submitted.exact += batch.paths.len() as u64 - wildcards - tags;
        counts.submitted.wildcard += wildcards;
        counts.submitted.tags += tags;
        counts.created += 1;
        counts.blast += batch.blast;
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
        let price = self
            .prices
            .remove(&batch.reference)
            .unwrap_or(self.blast_per_path);
        let to_delete = queue_messages(covered.iter().map(|(id, _)| id.clone()).collect());
        if !to_delete.is_empty() {
            self.out.push(Command::Queue(Effect::Delete(to_delete)));
        }
        if self.mode == Mode::Replay {
            let planned_from = self
                .planned_from
                .remove(&batch.reference)
                .unwrap_or_default();
            self.created.push(CreatedRecord {
                alias: alias.to_owned(),
                batch,
                price,
                covered,
                planned_from,
            });
        }
    }

    fn create_failed(&mut self, alias: &str, batch: Batch, e: &InvalidatorError, now: &Now) {
        self.totals.create_errors += 1;
        self.cloudfront_answered(alias, Operation::Create, Err(e), now);
        self.judge_distribution(alias, Err(e), now);
        let reference = batch.reference.clone();
        let entries = self.pending.batch(alias);
        let after = self.submitter.failed(
            alias,
            batch,
            e,
            &entries,
            now.mono,
            jitter(&reference, now.mono),
        );
        tracing::warn!(distribution = %alias, error = %e, action = ?after.action, "CreateInvalidation failed");
        if after.release {
            if let Some(l) = self.ledger_of_mut(alias) {
                l.release(&reference);
            }
            self.prices.remove(&reference);
            self.planned_from.remove(&reference);
        }
        let hold = self.calls_hold.remove(alias).flatten();
        if let Some(until) = after.hold {
            let why = match after.action {
                crate::submitter::Action::WaitForCapacity => Wait::Capacity,
                _ => Wait::Backoff,
            };
            self.holds.insert(alias.to_owned(), Hold { why, until });
        }
        self.pending
            .hold(alias, after.hold.or(hold).unwrap_or(now.mono));
        if after.reconcile && self.round.is_none() && self.is_leader(now.mono) {
            self.start_reconcile(now);
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
                self.shown.counts.rejected(reason);
                self.out.push(Command::Queue(Effect::Reject {
                    id,
                    reason,
                    detail: detail.clone(),
                    body: None,
                }));
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
                self.shown.not_ready(
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
                self.shown.ready(&component);
            }
        }
    }

    // --- The lease ---

    /// The lease's turn: stand down if its time ran out, and make the call
    /// that is due. While draining the lease is renewed, never taken.
    fn lease_turn(&mut self, now: &Now) {
        let may_lead = !self.draining;
        // A new term only once the last one's creates are answered, so that
        // a fresh submitter never meets an old call's answer.
        let may_lead = may_lead && !self.submitter.is_calling() && self.awaiting.is_empty();
        let Some(replica) = &mut self.replica else {
            return;
        };
        let change = replica.lease.check(now.mono);
        if let Some(call) = replica.lease.next_call(now.mono, may_lead) {
            self.out.push(Command::Lease {
                call,
                wall: unix_ms(now),
                lease_ms: replica.lease_ms,
            });
        }
        if !replica.lease.is_calling()
            && !matches!(replica.lease.role(now.mono), Role::Leader { .. })
            && replica.reading_ledger == 0
            && now.mono >= replica.next_ledger_read
            && replica.shared_ledger
        {
            replica.reading_ledger = self.ledgers.len();
            for account in self.ledgers.keys() {
                self.out.push(Command::ReadSharedLedger {
                    account: account.clone(),
                });
            }
        }
        if let Some(change) = change {
            self.role_changed(change, now);
        }
        self.show_role();
    }

    /// Records until when this replica may lead, for the readers of its
    /// role (`/v1/status`, the page, `cfpurge_leader`): they compare it
    /// with the time they read at, so a process resumed after a pause past
    /// its lease reads as a standby before this loop has run again.
    fn show_role(&mut self) {
        let Some(replica) = &self.replica else {
            return;
        };
        self.shown.lead = match replica.lease.leader_until() {
            Some(until) => Lead::Until(until),
            None => Lead::Standby,
        };
    }

    /// When the lease next needs the loop.
    fn lease_wake(&self) -> Option<Millis> {
        let replica = self.replica.as_ref()?;
        let mut wake = replica.lease.next_wake();
        if replica.shared_ledger && replica.reading_ledger == 0 {
            wake = Some(wake.map_or(replica.next_ledger_read, |w| {
                w.min(replica.next_ledger_read)
            }));
        }
        wake
    }

    fn lease_answered(&mut self, answer: Answer, now: &Now) {
        let Some(replica) = &mut self.replica else {
            return;
        };
        match &answer {
            Answer::Failed(e) => {
                tracing::warn!(error = %e, "a call on the lease failed");
                // The error says what failed: no answer, no table, or an
                // item that cannot be read.
                self.shown
                    .not_ready(TABLE, format!("a call on the lease failed: {e}"));
            }
            _ => self.shown.ready(TABLE),
        }
        let was_invalid = replica.lease.invalid().map(|i| i.seen.clone());
        let change = replica.lease.answered(answer, now.mono, unix_ms(now));
        // A lease item no replica can take over: this replica can never
        // lead, so it is not ready; logged once per item found so.
        let invalid = replica.lease.invalid();
        self.shown.lease_invalid = invalid.is_some();
        match invalid {
            Some(why) => {
                if was_invalid.as_ref() != Some(&why.seen) {
                    tracing::error!(
                        replica = %replica.id,
                        holder = ?why.seen.holder,
                        expires_at = why.seen.expires_at,
                        fencing = why.seen.fencing,
                        reason = %why,
                        "the lease item is invalid: no replica can take it over"
                    );
                }
                self.shown.not_ready(LEASE, why.to_string());
            }
            None => {
                if was_invalid.is_some() {
                    tracing::info!(replica = %replica.id, "the lease item is valid again");
                }
                self.shown.ready(LEASE);
            }
        }
        if let Some(change) = change {
            self.role_changed(change, now);
        }
        self.show_role();
    }

    /// A standby's read of `account`'s shared ledger.
    fn ledger_read(
        &mut self,
        account: &str,
        read: Result<Option<LedgerState>, LedgerError>,
        now: &Now,
    ) {
        let Some(replica) = &mut self.replica else {
            return;
        };
        replica.reading_ledger = replica.reading_ledger.saturating_sub(1);
        if replica.reading_ledger == 0 {
            replica.next_ledger_read = now.after(LEDGER_READ_EVERY);
        }
        let Some(ledger) = self.ledgers.get(account) else {
            return;
        };
        let component = ledger_component(account);
        match read {
            Ok(Some(state)) => {
                replica.shared_budget.insert(
                    account.to_owned(),
                    status_of(ledger.config(), &state, now.wall, self.blast_per_path),
                );
                self.shown.ready(&component);
            }
            Ok(None) => {
                replica.shared_budget.remove(account);
            }
            Err(e) => {
                tracing::warn!(account = %account, error = %e, "reading the shared ledger failed");
                self.shown.not_ready(
                    &component,
                    format!(
                        "the shared ledger{} is not readable: {e}",
                        ledger.of_account()
                    ),
                );
            }
        }
    }

    fn role_changed(&mut self, change: Change, now: &Now) {
        let Some(replica) = &mut self.replica else {
            return;
        };
        self.shown.counts.leader_changes += 1;
        match change {
            Change::BecameLeader { fencing } => {
                tracing::info!(replica = %replica.id, fencing, "became the leader");
                replica.term += 1;
                replica.shared_budget.clear();
                replica.fence = Some(Fence {
                    replica: replica.id.clone(),
                    fencing,
                });
                // The ledgers as the last leader left them, read under this
                // fencing number.
                self.ledgers.values_mut().for_each(Ledger::reset);
                // So are the learned catalogs, before planning with them.
                self.catalogs.set_leading(true, now);
                self.submitter = Submitter::new(
                    self.submit_settings.clone(),
                    RateLimit::new(self.create_rate.0, self.create_rate.1),
                    format!("f{fencing}"),
                )
                .with_accounts(self.accounts.clone())
                .with_owner(replica.id.clone());
                // Nothing goes out before a reconcile round of this term.
                self.timers.started = false;
                self.late.clear();
                self.looked_ok.clear();
                self.timers.reconcile = now.mono;
                self.timers.poll = now.mono;
                self.out.push(Command::Receive(true));
            }
            Change::StoodDown { fencing, why } => {
                tracing::warn!(replica = %replica.id, fencing, reason = why, "stood down: no longer the leader");
                self.out.push(Command::Receive(false));
                replica.fence = None;
                replica.next_ledger_read = now.mono;
                self.ledgers.values_mut().for_each(Ledger::reset);
                self.catalogs.set_leading(false, now);
                for account in self.ledgers.keys() {
                    self.shown.ready(&ledger_component(account));
                }
                let held = queue_messages(self.pending.message_ids().cloned().collect());
                if !held.is_empty() {
                    tracing::info!(
                        messages = held.len(),
                        "releasing held messages for the next leader"
                    );
                    self.out.push(Command::Release(held));
                }
                self.pending = PendingSet::new(self.batch_rules);
                if let Some(meter) = &self.meter {
                    self.pending = PendingSet::new(self.batch_rules).with_meter(meter.clone());
                }
                self.calls_hold.clear();
                self.holds.clear();
                // Their reservations stay spent; their calls are not made.
                for a in std::mem::take(&mut self.awaiting) {
                    self.submitter.created(&a.alias);
                }
            }
        }
    }

    /// Shutdown: gives the lease back. Returns the call to make, if any.
    pub fn hand_back(&mut self) -> Option<(Call, u64)> {
        let replica = self.replica.as_mut()?;
        let (call, change) = replica.lease.close();
        replica.fence = None;
        self.shown.lead = Lead::Standby;
        if let Some(Change::StoodDown { .. }) = change {
            self.shown.counts.leader_changes += 1;
            if let Some(call @ Call::Release { .. }) = call {
                return Some((call, replica.lease_ms));
            }
        }
        None
    }

    /// This replica's id, with coordination.
    pub fn replica_id(&self) -> Option<&str> {
        self.replica.as_ref().map(|r| r.id.as_str())
    }

    // --- What it shows ---

    /// What the gauges and the status snapshot are refreshed from, once
    /// per [`OBSERVE_INTERVAL`] (or at once after an answer); `None` when
    /// no refresh is due, and always in replay. The queue's readiness is
    /// judged here, from what the source shows.
    pub fn observe<'a>(
        &'a mut self,
        now: &'a Now,
        source: &'a SourceView,
    ) -> Option<StatusView<'a>> {
        if self.mode == Mode::Replay || now.mono < self.timers.observe {
            return None;
        }
        self.timers.observe = now.after(OBSERVE_INTERVAL);
        // The pollers tell whether the queue is usable; a standby has none,
        // and the answers to its depth calls tell instead.
        if self.replica.is_none() || self.is_leader(now.mono) {
            match &source.health {
                QueueHealth::Ready => self.shown.ready(QUEUE),
                QueueHealth::NotReady(reason) => self.shown.not_ready(QUEUE, reason.clone()),
            }
        }
        let why = self
            .targets
            .keys()
            .map(|alias| {
                let diagnosis = super::observe::Why {
                    waiting: self.waiting(alias, now),
                    last_error: self.last_error(alias),
                };
                (alias.clone(), diagnosis)
            })
            .collect();
        Some(StatusView {
            why,
            now,
            source,
            pending: &self.pending,
            view: &self.view,
            catalogs: &self.catalogs,
            edges: &self.edges,
            readiness: &self.shown.readiness,
            depth: self.shown.depth,
            budgets: self
                .ledgers
                .iter()
                .filter_map(|(account, l)| {
                    let status = l.budget()?.status(now.wall, l.price());
                    Some((account.clone(), status))
                })
                .collect(),
            shared_budgets: self
                .replica
                .as_ref()
                .map(|r| r.shared_budget.clone())
                .unwrap_or_default(),
        })
    }

    /// Forces the next [`Core::observe`] to refresh.
    pub fn observe_now(&mut self) {
        self.timers.observe = 0;
    }

    /// The budget ledger's state of the main account
    /// ([`Config::main_account`]), while open: replay's monthly table.
    pub fn budget_status(&self, now: &Now) -> Option<BudgetStatus> {
        let l = self.ledgers.get(&self.main_account)?;
        l.budget().map(|b| b.status(now.wall, l.price()))
    }

    /// Each account's budget, while its ledger is open.
    pub fn budget_statuses(&self, now: &Now) -> BTreeMap<String, BudgetStatus> {
        self.ledgers
            .iter()
            .filter_map(|(account, l)| {
                Some((account.clone(), l.budget()?.status(now.wall, l.price())))
            })
            .collect()
    }

    /// The price the next batch of the main account would be planned at
    /// (as last advanced).
    pub fn current_price(&self) -> f64 {
        self.ledgers
            .get(&self.main_account)
            .map_or(self.blast_per_path, Ledger::price)
    }

    /// Messages held per distribution (replay's `held_at_end`).
    pub fn held_messages(&self) -> usize {
        self.pending.pending_messages()
    }
}

/// The ids among `ids` that stand for queue messages: a re-invalidation of
/// a stale path waits in the pending set like a message, but there is no
/// message to delete or release.
fn queue_messages(mut ids: Vec<MessageId>) -> Vec<MessageId> {
    ids.retain(|id| !is_reinvalidation(id));
    ids
}

/// Where `account`'s ledger lives with the configured store, for messages
/// until the runner names its store.
fn ledger_location(config: &Config, account: &str) -> String {
    crate::budget::file_for_account(&config.budget.ledger_path, account)
        .display()
        .to_string()
}

fn unix_ms(now: &Now) -> u64 {
    now.wall
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The jitter of a retry's backoff, uniform in `[0, 1)`: derived from the
/// batch and the moment, so that a replay is repeatable while two
/// distributions' retries still spread.
fn jitter(reference: &str, now: Millis) -> f64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    reference.hash(&mut h);
    now.hash(&mut h);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// How often a round of polls runs: each invalidation is still checked once
/// per poll interval, but one created just after a round is not left
/// waiting for almost two.
pub fn poll_round(poll_interval: Duration) -> Duration {
    (poll_interval / 4).max(Duration::from_secs(1))
}
