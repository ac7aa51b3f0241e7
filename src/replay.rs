//! Replay: the daemon's own core ([`crate::daemon::Core`], the code `cfpurge
//! run` runs) driven on a virtual clock through a trace of purge requests,
//! with the simulated CloudFront and an in-memory ledger, as fast as the CPU
//! allows. The operator's way to ask "what would this configuration have
//! done with our traffic?", and the project's way to test pacing over
//! months in seconds.
//!
//! The clock is tokio's, paused ([`run`] must be awaited inside a runtime
//! whose time is paused): the driver moves it straight to the next moment
//! anything is due, so the simulated CloudFront (which reads the same
//! clock) completes invalidations on time. Each command the core returns is
//! answered at once: CloudFront's calls by the simulation, the ledger's
//! writes as done, the queue's deletes as made.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::budget::{Month, allowance};
use crate::catalog::Catalog;
use crate::clock::{Clock, Millis, Now};
use crate::cloudfront::invalidator::{Invalidator, MAX_LIST_ITEMS, Target};
use crate::cloudfront::simulate::SimulatedCloudFront;
use crate::config::Config;
use crate::daemon::Core;
use crate::daemon::core::{Command, CreatedRecord, Input, Mode};
use crate::path::CfPath;
use crate::pipeline::Effect;
use crate::planner::optimum::{self, Batch as OptimumBatch};
use crate::planner::{Capacity, Entry, Settings, least_blast};
use crate::source::driver::{Body, SourceEvent};
use crate::tracker;

/// One request of a trace.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceLine {
    /// When it was sent.
    pub at: SystemTime,
    pub paths: Vec<String>,
    pub tags: Vec<String>,
    /// Alias or id; `None` for the default distribution.
    pub distribution: Option<String>,
}

/// A line of a trace that could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadLine {
    pub line: usize,
    pub reason: String,
}

/// The shape of a trace line.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    t: serde_json::Value,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    distribution: Option<String>,
    /// The astro-docs trace names the commit each request came from.
    #[serde(default)]
    #[allow(dead_code)]
    commit: Option<String>,
}

/// Reads a trace: one JSON object a line (blank lines skipped). `t` is
/// seconds since the start, or an RFC 3339 time; a trace in seconds starts
/// at 00:00 UTC on the 1st of `now`'s month. Lines that cannot be read are
/// returned apart, with their number; the rest is kept, sorted by time.
pub fn read_trace(text: &str, now: SystemTime) -> (Vec<TraceLine>, Vec<BadLine>) {
    let origin = Month::of(now).start();
    let mut lines = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let raw: Raw = match serde_json::from_str(line) {
            Ok(raw) => raw,
            Err(e) => {
                bad.push(BadLine {
                    line: number,
                    reason: format!("not a trace line: {e}"),
                });
                continue;
            }
        };
        let at = match &raw.t {
            serde_json::Value::Number(n) => match n.as_f64() {
                Some(s) if (0.0..1e11).contains(&s) => origin + Duration::from_secs_f64(s),
                _ => {
                    bad.push(BadLine {
                        line: number,
                        reason: format!("\"t\" must be seconds from 0, or an RFC 3339 time: {n}"),
                    });
                    continue;
                }
            },
            serde_json::Value::String(s) => match crate::status::parse_time(s) {
                Some(at) => at,
                None => {
                    bad.push(BadLine {
                        line: number,
                        reason: format!("\"t\" is not an RFC 3339 time: {s:?}"),
                    });
                    continue;
                }
            },
            other => {
                bad.push(BadLine {
                    line: number,
                    reason: format!(
                        "\"t\" must be a number of seconds or an RFC 3339 time, not {other}"
                    ),
                });
                continue;
            }
        };
        if raw.paths.is_empty() && raw.tags.is_empty() {
            bad.push(BadLine {
                line: number,
                reason: "no \"paths\" and no \"tags\"".to_owned(),
            });
            continue;
        }
        lines.push(TraceLine {
            at,
            paths: raw.paths,
            tags: raw.tags,
            distribution: raw.distribution,
        });
    }
    lines.sort_by_key(|l| l.at);
    (lines, bad)
}

/// What a replay is given besides the configuration and the trace.
#[derive(Clone, Debug, Default)]
pub struct ReplayOptions {
    /// Plan every distribution with this catalog, and measure blast.
    pub catalog: Option<Catalog>,
    /// Compute each month's offline optimum (needs `catalog`).
    pub optimum: bool,
    /// The budget ledger to start from (none: an empty one), as a daemon
    /// restarted on it would.
    pub ledger: Option<crate::budget::LedgerState>,
}

/// One CreateInvalidation of a replay (`--batches`).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct BatchRecord {
    /// Seconds since the trace's start.
    pub t: f64,
    pub distribution: String,
    pub paths: Vec<String>,
    /// The requested paths this invalidation covered.
    pub covered: Vec<String>,
    pub price: f64,
    /// Billed paths and blast, for the monthly table.
    #[serde(skip)]
    pub billed: u64,
    #[serde(skip)]
    pub wildcards: u64,
    #[serde(skip)]
    pub blast: u64,
    #[serde(skip)]
    pub month: String,
}

/// One row of the monthly table.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct MonthRow {
    pub month: String,
    pub requested: u64,
    pub billed: u64,
    pub wildcards: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blast: Option<u64>,
    pub invalidations: u64,
    /// Request to CreateInvalidation, seconds, per requested path.
    pub delay_p50: f64,
    pub delay_p99: f64,
    pub held_at_end: u64,
    pub price_end: f64,
    /// With `--optimum`: the least blast the same batches could have had.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub optimum: Option<Optimum>,
}

/// A month's offline optimum (`--optimum`): the least blast the month's
/// batches could have had, each covered in full when cfpurge planned it,
/// given each one's exact least-blast curve. `None` (JSON `null`) where no
/// plan of the batches meets the limits (a month `on_exhausted` took past
/// its allowance).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Optimum {
    /// Billing no more in the month than cfpurge did.
    pub optimum_same_spend: Option<u64>,
    /// Billing up to each batch no more than the even pacing allowed at
    /// its time (so within the month's budget too).
    pub optimum_paced: Option<u64>,
    /// cfpurge's blast divided by each (1 when both are 0).
    pub optimum_same_spend_ratio: Option<f64>,
    pub optimum_paced_ratio: Option<f64>,
}

impl Optimum {
    fn of(blast: u64, same_spend: Option<u64>, paced: Option<u64>) -> Optimum {
        let ratio = |best: Option<u64>| match best? {
            0 if blast == 0 => Some(1.0),
            0 => None,
            best => Some(blast as f64 / best as f64),
        };
        Optimum {
            optimum_same_spend: same_spend,
            optimum_paced: paced,
            optimum_same_spend_ratio: ratio(same_spend),
            optimum_paced_ratio: ratio(paced),
        }
    }
}

/// What a replay did.
#[derive(Clone, Debug, Default)]
pub struct Replayed {
    pub months: Vec<MonthRow>,
    /// The months summed; its delays are the quantiles over every month.
    pub total: MonthRow,
    pub batches: Vec<BatchRecord>,
    /// Requests the daemon rejected (a path CloudFront's rules refuse, an
    /// unknown distribution), by line order.
    pub rejected: u64,
    /// The budget ledger as last written.
    pub ledger: Option<crate::budget::LedgerState>,
}

/// A requested path not yet covered, of a message received at `at`.
struct Asked {
    path: CfPath,
    at: Millis,
}

/// Per month, what the table is made of.
#[derive(Default)]
struct Tally {
    requested: u64,
    billed: u64,
    wildcards: u64,
    blast: u64,
    invalidations: u64,
    delays: Vec<f64>,
    held_at_end: u64,
    price_end: f64,
    /// With `--optimum`, the month's batches in order: each one's
    /// least-blast curve and the allowance when it was planned.
    curves: Vec<(Vec<(usize, u64)>, u64)>,
}

/// Replays `trace` through the core with `config`. Must run on a runtime
/// whose time is paused.
pub async fn run(config: &Config, trace: &[TraceLine], options: &ReplayOptions) -> Replayed {
    let start_wall = match trace.first() {
        Some(first) => Month::of(first.at).start(),
        None => Month::of(SystemTime::now()).start(),
    };
    let clock = Clock::following_tokio(start_wall);
    let mut ids = Vec::new();
    let mut tenants = Vec::new();
    for d in config.distributions.values() {
        match Target::of(d) {
            Target::Distribution(id) => ids.push(id),
            Target::Tenant { tenant, .. } => tenants.push(tenant),
        }
    }
    let completion = Duration::from_secs(config.cloudfront.simulate_completion_seconds);
    let cloudfront = SimulatedCloudFront::new(ids, completion)
        .with_tenants(tenants)
        .starting_at(start_wall);
    let mut core = Core::new(config, clock, "replay".to_owned(), Mode::Replay);
    match &options.catalog {
        Some(catalog) => {
            for alias in config.distributions.keys() {
                core.set_catalog(alias, catalog.clone());
            }
        }
        None => core.learn_in_memory(),
    }
    let mut driver = Driver {
        core,
        cloudfront,
        clock,
        start_wall,
        asked: HashMap::new(),
        tallies: BTreeMap::new(),
        batches: Vec::new(),
        rejected: 0,
        ledgers: options
            .ledger
            .clone()
            .map(|ledger| (config.main_account(), ledger))
            .into_iter()
            .collect(),
        main_account: config.main_account(),
        with_blast: options.catalog.is_some(),
        optimum: match (&options.catalog, options.optimum) {
            (Some(catalog), true) => Some(OptimumBasis {
                catalog: catalog.clone(),
                settings: Settings::from(&config.coalesce),
                capacities: config
                    .distributions
                    .iter()
                    .map(|(alias, d)| {
                        (
                            alias.clone(),
                            Capacity {
                                exact: d.max_inflight_paths,
                                wildcard: d.max_inflight_wildcards,
                                paths: usize::MAX,
                            },
                        )
                    })
                    .collect(),
                budget: config.budget.clone(),
            }),
            _ => None,
        },
    };
    driver.drive(trace).await;
    driver.finish()
}

struct Driver {
    core: Core,
    cloudfront: SimulatedCloudFront,
    clock: Clock,
    start_wall: SystemTime,
    /// Per distribution alias, the requested paths not yet covered.
    asked: HashMap<String, VecDeque<Asked>>,
    tallies: BTreeMap<Month, Tally>,
    batches: Vec<BatchRecord>,
    rejected: u64,
    /// Each account's ledger as last written (read back by a load); the
    /// ledger handed in and returned is the main account's
    /// ([`crate::config::Config::main_account`]).
    ledgers: BTreeMap<String, crate::budget::LedgerState>,
    main_account: String,
    with_blast: bool,
    optimum: Option<OptimumBasis>,
}

/// What the offline optimum is computed with.
struct OptimumBasis {
    catalog: Catalog,
    settings: Settings,
    /// Per distribution, its in-flight limits: what one invalidation may
    /// hold at most.
    capacities: HashMap<String, Capacity>,
    budget: crate::config::BudgetConfig,
}

impl OptimumBasis {
    /// The least-blast curve of the entries of `planned_from` that `paths`
    /// cover (what the batch purged of what it was planned from; what it
    /// deferred goes into a later batch's curve), and the allowance at
    /// `now`.
    fn curve(
        &self,
        alias: &str,
        planned_from: &[Entry],
        paths: &[CfPath],
        now: SystemTime,
    ) -> (Vec<(usize, u64)>, u64) {
        let covered: Vec<Entry> = planned_from
            .iter()
            .filter(|e| paths.iter().any(|p| p.covers(&e.path)))
            .cloned()
            .collect();
        let capacity = self.capacities.get(alias).copied().unwrap_or(Capacity::AWS);
        let curve = least_blast::frontier(&covered, capacity, &self.settings, &self.catalog);
        (curve, allowance(&self.budget, now))
    }
}

impl Driver {
    async fn drive(&mut self, trace: &[TraceLine]) {
        let mut next = 0;
        let mut month = Month::of(self.start_wall);
        let last = trace.last().map_or(self.start_wall, |l| l.at);
        // After the last request, what is held is followed to the end of
        // the month after the last request's at most.
        let end = Month::of(Month::of(last).end()).end();
        loop {
            let now = self.clock.now();
            let this_month = Month::of(now.wall);
            if this_month != month {
                self.close_month(month);
                month = this_month;
            }
            while next < trace.len() && trace[next].at <= now.wall {
                self.send(next, &trace[next], &now);
                next += 1;
            }
            self.core.turn(&now);
            self.answer(&now).await;
            if next == trace.len() && (self.core.held_messages() == 0 || now.wall >= end) {
                self.close_month(month);
                return;
            }
            let mut wake = self.core.next_wake(&now);
            if let Some(line) = trace.get(next) {
                wake = wake.min(now.mono_of(line.at).max(now.mono + 1));
            }
            wake = wake.min(now.mono_of(this_month.end()).max(now.mono + 1));
            let step = Duration::from_millis(wake.saturating_sub(now.mono).max(1));
            tokio::time::advance(step).await;
        }
    }

    /// A trace line arrives as a message in the native format.
    fn send(&mut self, number: usize, line: &TraceLine, now: &Now) {
        let mut body = serde_json::json!({ "paths": line.paths });
        if !line.tags.is_empty() {
            body["tags"] = serde_json::json!(line.tags);
        }
        if let Some(d) = &line.distribution {
            body["distribution"] = serde_json::json!(d);
        }
        let id = format!("trace-{number}");
        let alias = self.alias_of(line.distribution.as_deref());
        if let Some(alias) = &alias {
            let queue = self.asked.entry(alias.clone()).or_default();
            let tags = line
                .tags
                .iter()
                .map(|t| format!("#{}", t.trim_start_matches('#')));
            for text in line.paths.iter().cloned().chain(tags) {
                if let Ok(path) = CfPath::parse(&text) {
                    queue.push_back(Asked { path, at: now.mono });
                }
            }
        }
        self.tally(now).requested += (line.paths.len() + line.tags.len()) as u64;
        self.core.handle(
            Input::Event(SourceEvent::Received {
                id: id.into(),
                body: Body::new(body.to_string()),
                received_at: now.instant,
                first_received_at: None,
            }),
            now,
        );
    }

    /// The alias a request names (alias or id), or the default one.
    fn alias_of(&self, named: Option<&str>) -> Option<String> {
        self.core.alias_of(named).map(str::to_owned)
    }

    fn tally(&mut self, now: &Now) -> &mut Tally {
        self.tallies.entry(Month::of(now.wall)).or_default()
    }

    fn close_month(&mut self, month: Month) {
        let held = self.core.held_messages() as u64;
        let price = self.core.current_price();
        let tally = self.tallies.entry(month).or_default();
        tally.held_at_end = held;
        tally.price_end = price;
    }

    /// Carries out the core's commands, each answered at once, until it
    /// asks for nothing more.
    async fn answer(&mut self, now: &Now) {
        loop {
            let commands = self.core.take_commands();
            if commands.is_empty() {
                break;
            }
            for command in commands {
                if let Some(input) = self.carry_out(command, now).await {
                    self.core.handle(input, now);
                }
            }
            for record in self.core.take_created() {
                self.record(record, now);
            }
        }
    }

    async fn carry_out(&mut self, command: Command, now: &Now) -> Option<Input> {
        let cf = &self.cloudfront;
        Some(match command {
            Command::Create {
                alias,
                target,
                batch,
                ..
            } => {
                let result = cf.create(&target, &batch.reference, &batch.paths).await;
                Input::Created {
                    alias,
                    batch,
                    result,
                }
            }
            Command::Poll { alias, target, ids } => Input::Checked {
                checks: tracker::check(cf, &target, ids).await,
                alias,
            },
            Command::Reconcile {
                alias,
                target,
                known,
                scan,
            } => Input::Looked {
                result: tracker::look(cf, &target, &known, MAX_LIST_ITEMS).await,
                // Nothing but the replay creates invalidations: a scan
                // finds nothing it has not counted.
                scan: scan.map(|_| Ok(Default::default())),
                alias,
            },
            Command::LoadLedger { account, epoch } => Input::LedgerLoaded {
                result: Ok(self.ledgers.get(&account).cloned()),
                account,
                epoch,
            },
            Command::SaveLedger {
                account,
                epoch,
                seq,
                state,
                ..
            } => {
                self.ledgers.insert(account.clone(), state);
                Input::LedgerSaved {
                    account,
                    epoch,
                    seq,
                    result: Ok(()),
                }
            }
            Command::Queue(Effect::Delete(ids)) => Input::Deleted(ids.len()),
            Command::Queue(Effect::Reject { .. }) => {
                self.rejected += 1;
                return None;
            }
            Command::Release(_)
            | Command::ReadSharedLedger { .. }
            | Command::Lease { .. }
            | Command::Receive(_)
            | Command::Catalog { .. }
            // The replay's core asks for no edge requests (Mode::Replay).
            | Command::Edge(_)
            | Command::Depth => {
                let _ = now;
                return None;
            }
        })
    }

    fn record(&mut self, record: CreatedRecord, now: &Now) {
        let CreatedRecord {
            alias,
            batch,
            price,
            planned_from,
            ..
        } = record;
        let curve = self
            .optimum
            .as_ref()
            .map(|o| o.curve(&alias, &planned_from, &batch.paths, now.wall));
        let mut covered = Vec::new();
        let mut delays = Vec::new();
        if let Some(queue) = self.asked.get_mut(&alias) {
            let exact: HashSet<&CfPath> = batch.paths.iter().filter(|p| !p.is_wildcard()).collect();
            let wildcards: Vec<&CfPath> = batch.paths.iter().filter(|p| p.is_wildcard()).collect();
            queue.retain(|a| {
                let hit = a.at < batch.first_sent_at
                    && (exact.contains(&a.path) || wildcards.iter().any(|w| w.covers(&a.path)));
                if hit {
                    covered.push(a.path.to_string());
                    delays.push(now.mono.saturating_sub(a.at) as f64 / 1000.0);
                }
                !hit
            });
        }
        let wildcards = batch.paths.iter().filter(|p| p.is_wildcard()).count() as u64;
        let month = Month::of(now.wall);
        let t = now
            .wall
            .duration_since(self.start_wall)
            .unwrap_or_default()
            .as_secs_f64();
        let tally = self.tally(now);
        tally.billed += batch.paths.len() as u64;
        tally.wildcards += wildcards;
        tally.blast += batch.blast;
        tally.invalidations += 1;
        tally.delays.extend(delays);
        tally.curves.extend(curve);
        self.batches.push(BatchRecord {
            t,
            distribution: alias,
            paths: batch.paths.iter().map(CfPath::to_string).collect(),
            covered,
            price,
            billed: batch.paths.len() as u64,
            wildcards,
            blast: batch.blast,
            month: month.to_string(),
        });
    }

    fn finish(mut self) -> Replayed {
        let with_blast = self.with_blast;
        let with_optimum = self.optimum.is_some();
        let mut all = Tally::default();
        let mut all_optimum: (Option<u64>, Option<u64>) = (Some(0), Some(0));
        let months = self
            .tallies
            .into_iter()
            .map(|(month, mut t)| {
                t.delays.sort_by(f64::total_cmp);
                all.requested += t.requested;
                all.billed += t.billed;
                all.wildcards += t.wildcards;
                all.blast += t.blast;
                all.invalidations += t.invalidations;
                all.delays.extend_from_slice(&t.delays);
                all.held_at_end = t.held_at_end;
                all.price_end = t.price_end;
                let optimum = with_optimum.then(|| {
                    let (same, paced) = month_optimum(&t.curves, t.billed);
                    let add = |sum: Option<u64>, one: Option<u64>| Some(sum? + one?);
                    all_optimum = (add(all_optimum.0, same), add(all_optimum.1, paced));
                    Optimum::of(t.blast, same, paced)
                });
                MonthRow {
                    month: month.to_string(),
                    requested: t.requested,
                    billed: t.billed,
                    wildcards: t.wildcards,
                    blast: with_blast.then_some(t.blast),
                    invalidations: t.invalidations,
                    delay_p50: quantile(&t.delays, 0.50),
                    delay_p99: quantile(&t.delays, 0.99),
                    held_at_end: t.held_at_end,
                    price_end: t.price_end,
                    optimum,
                }
            })
            .collect();
        all.delays.sort_by(f64::total_cmp);
        let total = MonthRow {
            month: "total".to_owned(),
            requested: all.requested,
            billed: all.billed,
            wildcards: all.wildcards,
            blast: with_blast.then_some(all.blast),
            invalidations: all.invalidations,
            delay_p50: quantile(&all.delays, 0.50),
            delay_p99: quantile(&all.delays, 0.99),
            held_at_end: all.held_at_end,
            price_end: all.price_end,
            optimum: with_optimum.then(|| Optimum::of(all.blast, all_optimum.0, all_optimum.1)),
        };
        Replayed {
            months,
            total,
            batches: self.batches,
            rejected: self.rejected,
            ledger: self.ledgers.remove(&self.main_account),
        }
    }
}

/// A month's optima: at cfpurge's own spend `billed`, and within each
/// batch's allowance.
fn month_optimum(curves: &[(Vec<(usize, u64)>, u64)], billed: u64) -> (Option<u64>, Option<u64>) {
    let refs: Vec<&[(usize, u64)]> = curves.iter().map(|(c, _)| c.as_slice()).collect();
    let same = optimum::at_spend(&refs, billed).map(|a| a.blast);
    let batches: Vec<OptimumBatch<'_>> = curves
        .iter()
        .map(|(curve, limit)| OptimumBatch {
            curve,
            limit: *limit,
        })
        .collect();
    let paced = optimum::paced(&batches).map(|a| a.blast);
    (same, paced)
}

/// The `q` quantile of sorted `values` (nearest rank), 0 when empty.
fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

#[cfg(test)]
mod tests {
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::budget::{AnyStore, MemoryStore};
    use crate::daemon::Daemon;
    use crate::source::local::LocalQueue;
    use crate::source::queue::Queue;

    const CONFIG: &str = r#"
[source]
kind = "local"
visibility_timeout_seconds = 600
[distributions.www]
id = "EWWW"
[distributions.img]
id = "EIMG"
[routing]
default_distribution = "www"
[batching]
quiet_seconds = 5
max_delay_seconds = 30
[coalesce]
wildcard_threshold = 4
[cloudfront]
mode = "simulate"
poll_interval_seconds = 20
simulate_completion_seconds = 60
[budget]
monthly_paths = 60
burst_paths = 10
"#;

    /// A day of requests: bursts that coalesce, quiet gaps, two
    /// distributions, and a budget that binds before the end.
    fn trace() -> Vec<TraceLine> {
        let start = Month::of(SystemTime::now()).start() + Duration::from_secs(3 * 86_400);
        let mut lines = Vec::new();
        for i in 0..40u64 {
            let at = start + Duration::from_secs(i * 300 + (i % 3) * 2);
            let dir = i % 5;
            let paths = (0..(i % 4 + 1))
                .map(|j| format!("/docs/{dir}/page-{i}-{j}.html"))
                .collect();
            lines.push(TraceLine {
                at,
                paths,
                tags: Vec::new(),
                distribution: (i % 7 == 3).then(|| "img".to_owned()),
            });
        }
        lines
    }

    fn body(line: &TraceLine) -> String {
        let mut body = serde_json::json!({ "paths": line.paths });
        if let Some(d) = &line.distribution {
            body["distribution"] = serde_json::json!(d);
        }
        body.to_string()
    }

    /// `cfpurge replay` runs the daemon's own core: for the same trace and
    /// configuration it creates exactly the invalidations `cfpurge run`
    /// creates with the simulated CloudFront on a paused clock.
    #[tokio::test(start_paused = true)]
    async fn replay_creates_what_the_daemon_creates() {
        let config = Config::from_parts(Some(CONFIG), "test", std::iter::empty()).expect("config");
        let trace = trace();
        let replayed = run(&config, &trace, &ReplayOptions::default()).await;
        let from_replay: Vec<(String, Vec<String>)> = replayed
            .batches
            .iter()
            .map(|b| (b.distribution.clone(), b.paths.clone()))
            .collect();
        assert!(from_replay.len() > 5, "{from_replay:?}");
        assert!(
            from_replay
                .iter()
                .any(|(_, p)| p.iter().any(|p| p.ends_with('*'))),
            "the trace makes wildcards: {from_replay:?}"
        );

        // The daemon itself, fed the same requests at the same moments.
        let start = Month::of(trace[0].at).start();
        let queue = LocalQueue::new(Duration::from_secs(600));
        let cloudfront =
            SimulatedCloudFront::new(["EWWW".into(), "EIMG".into()], Duration::from_secs(60))
                .starting_at(start);
        let daemon = Daemon::new(&config, queue.clone(), cloudfront.clone())
            .with_ledger(AnyStore::Memory(MemoryStore::new()))
            .with_clock(Clock::following_tokio(start));
        let cancel = CancellationToken::new();
        let running = tokio::spawn(daemon.run(cancel.clone()));
        let origin = tokio::time::Instant::now();
        for line in &trace {
            let offset = line.at.duration_since(start).expect("after the start");
            tokio::time::sleep_until(origin + offset).await;
            queue.send(&body(line)).await.expect("send");
        }
        tokio::time::sleep(Duration::from_secs(3_600)).await;
        cancel.cancel();
        running.await.expect("the daemon ends");
        let aliases: HashMap<&str, &str> = [("EWWW", "www"), ("EIMG", "img")].into();
        let from_daemon: Vec<(String, Vec<String>)> = cloudfront
            .created()
            .into_iter()
            .map(|(id, inv)| {
                (
                    aliases[id.as_str()].to_owned(),
                    inv.paths.iter().map(CfPath::to_string).collect(),
                )
            })
            .collect();
        assert_eq!(from_replay, from_daemon);
    }

    #[test]
    fn trace_lines_in_seconds_or_times_and_bad_lines_with_their_number() {
        // 11 December 2026.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_083_200 + 10 * 86_400);
        let text = concat!(
            "{\"t\": 10, \"paths\": [\"/a\"]}\n",
            "\n",
            "{\"t\": \"2026-12-01T00:00:05Z\", \"paths\": [\"/b\"], \"distribution\": \"img\"}\n",
            "{\"t\": -1, \"paths\": [\"/c\"]}\n",
            "{\"t\": 3, \"paths\": []}\n",
            "not json\n",
            "{\"t\": 4, \"tags\": [\"product-1\"], \"commit\": \"abc\"}\n",
        );
        let (lines, bad) = read_trace(text, now);
        let start = Month::of(now).start();
        assert_eq!(
            lines.iter().map(|l| l.at).collect::<Vec<_>>(),
            vec![
                start + Duration::from_secs(4),
                start + Duration::from_secs(5),
                start + Duration::from_secs(10)
            ]
        );
        assert_eq!(lines[1].distribution.as_deref(), Some("img"));
        assert_eq!(
            bad.iter().map(|b| b.line).collect::<Vec<_>>(),
            vec![4, 5, 6],
            "{bad:?}"
        );
    }
}
