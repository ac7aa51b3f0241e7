//! The core's part of verification and warming: which paths of a completed
//! invalidation are requested from the edge, when (each distribution's two
//! hard rates, a few requests at once), and what the answers mean. Pure, on
//! the time handed in, like the rest of the core; the runner makes the
//! requests ([`crate::edge::EdgeClient`]).
//!
//! Nothing here holds up a purge or a message: the messages were deleted
//! when CloudFront accepted the invalidation, and the edge's requests wait
//! in queues of their own, bounded so that an edge that hangs costs memory
//! for a bounded backlog and nothing else.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use crate::clock::Millis;
use crate::config::Config;
use crate::decode::{PurgeRequest, Router};
use crate::edge::{EdgeError, EdgeKind, EdgeRequest, Observed, Verdict, judge};
use crate::path::CfPath;
use crate::status::{StalePath, VerifyStatus, WarmStatus};

use super::core::Counts as ShownCounts;

/// Requests of one kind under way per distribution, at most: with a
/// request's timeout this bounds what a hanging edge holds.
pub const AT_ONCE: usize = 4;

/// Requests waiting per distribution and kind, at most; past it the paths
/// of a completed invalidation are not requested (and logged).
pub const MAX_QUEUED: usize = 10_000;

/// Paths kept per invalidation in progress to choose from at completion:
/// as many exact paths as CloudFront lets a distribution have in progress.
pub const MAX_CANDIDATES: usize = crate::path::MAX_INFLIGHT_EXACT;

/// How long an invalidation's paths are kept waiting for its completion:
/// CloudFront completes in minutes; one never seen completed is forgotten.
const KEEP_PURGED: Duration = Duration::from_secs(24 * 3600);

/// How long a path re-invalidated because it was found stale is not
/// re-invalidated again: once per finding, not in a loop with an edge
/// that keeps ignoring purges.
const REINVALIDATED_FOR: Duration = Duration::from_secs(3600);

/// Paths remembered as re-invalidated, at most.
const MAX_REINVALIDATED: usize = 10_000;

/// The prefix of the message ids a re-invalidation waits under in the
/// pending set: no queue's message id has a space.
pub const REINVALIDATION_ID: &str = "edge stale ";

/// Whether `id` is a re-invalidation's, not a queue message's.
pub fn is_reinvalidation(id: &str) -> bool {
    id.starts_with(REINVALIDATION_ID)
}

#[derive(Clone, Copy, Debug)]
struct VerifyRules {
    sample: usize,
    reinvalidate: bool,
}

#[derive(Clone, Copy, Debug)]
struct Rules {
    verify: Option<VerifyRules>,
    /// `warm.max_paths`, when warming.
    warm: Option<usize>,
}

/// An invalidation in progress whose paths will be requested once it
/// completes.
#[derive(Debug)]
struct Purged {
    alias: String,
    paths: Vec<CfPath>,
    asked_at: Millis,
    noted_at: Millis,
}

/// One distribution's requests of one kind: a queue, a hard rate.
#[derive(Debug)]
struct Lane {
    queue: VecDeque<EdgeRequest>,
    /// One request every this many milliseconds, never faster.
    interval: Millis,
    next_at: Millis,
    at_once: usize,
}

impl Lane {
    fn new(per_second: f64) -> Lane {
        Lane {
            queue: VecDeque::new(),
            // Rounded up: a hard rate is never exceeded by rounding.
            interval: (1000.0 / per_second).ceil() as Millis,
            next_at: 0,
            at_once: 0,
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    fresh: u64,
    stale: u64,
    error: u64,
    warmed: u64,
    warm_errors: u64,
    /// Paths not requested because the queue was full, per kind.
    dropped: HashMap<EdgeKind, u64>,
    reinvalidated: u64,
    last_stale: Option<StalePath>,
    /// The invalidation whose warming last logged a failure: one warning
    /// per invalidation, not one per path of a failing edge.
    warm_warned: Option<String>,
}

/// A stale path to purge again, once.
#[derive(Debug, PartialEq, Eq)]
pub struct Reinvalidate {
    /// The pending set's message id it waits under.
    pub id: String,
    pub request: PurgeRequest,
}

/// Verification and warming state of every distribution.
#[derive(Debug, Default)]
pub struct Edges {
    rules: HashMap<String, Rules>,
    purged: HashMap<String, Purged>,
    lanes: HashMap<(String, EdgeKind), Lane>,
    reinvalidated: HashMap<(String, CfPath), Millis>,
    counts: HashMap<String, Counts>,
    made: u64,
}

impl Edges {
    /// For `config`'s distributions with `verify` or `warm` configured.
    pub fn new(config: &Config) -> Edges {
        let mut edges = Edges::default();
        for (alias, d) in &config.distributions {
            let Some(verify) = &d.verify else { continue };
            let warm = d.warm.as_ref().filter(|w| w.enabled);
            let rules = Rules {
                verify: (verify.sample > 0).then_some(VerifyRules {
                    sample: verify.sample as usize,
                    reinvalidate: verify.reinvalidate_stale,
                }),
                warm: warm.map(|w| w.max_paths as usize),
            };
            if rules.verify.is_none() && rules.warm.is_none() {
                continue;
            }
            if rules.verify.is_some() {
                edges.lanes.insert(
                    (alias.clone(), EdgeKind::Verify),
                    Lane::new(verify.per_second),
                );
            }
            if let Some(w) = warm {
                edges
                    .lanes
                    .insert((alias.clone(), EdgeKind::Warm), Lane::new(w.per_second));
            }
            edges.rules.insert(alias.clone(), rules);
            edges.counts.insert(alias.clone(), Counts::default());
        }
        edges
    }

    /// Whether `alias` requests anything from its edge.
    pub fn wants(&self, alias: &str) -> bool {
        self.rules.contains_key(alias)
    }

    /// An invalidation of `alias` was created, asked for first at
    /// `asked_at`: `paths` are its exact paths and the requested paths its
    /// wildcards cover. Tags, wildcards and what `routing.skip` matches are
    /// never requested.
    pub fn created(
        &mut self,
        router: &Router,
        alias: &str,
        id: &str,
        paths: Vec<CfPath>,
        asked_at: Millis,
        now: Millis,
    ) {
        if !self.wants(alias) {
            return;
        }
        let keep = KEEP_PURGED.as_millis() as Millis;
        self.purged
            .retain(|_, p| now.saturating_sub(p.noted_at) < keep);
        let mut request = PurgeRequest {
            distribution: alias.to_owned(),
            paths: paths
                .into_iter()
                .filter(|p| !p.is_wildcard() && !p.is_tag())
                .collect(),
            skipped: Vec::new(),
            urgent: false,
            reason: None,
            requested_by: None,
            s3_removed: None,
        };
        router.skip(&mut request);
        let mut paths = request.paths;
        paths.sort();
        paths.dedup();
        if paths.is_empty() {
            return;
        }
        self.purged.insert(
            id.to_owned(),
            Purged {
                alias: alias.to_owned(),
                paths: spread(&paths, MAX_CANDIDATES),
                asked_at,
                noted_at: now,
            },
        );
    }

    /// An invalidation was seen completed at `now`: its sample is queued
    /// for verification and its paths for warming.
    pub fn completed(&mut self, id: &str, now: Millis) {
        let Some(purged) = self.purged.remove(id) else {
            return;
        };
        let Some(rules) = self.rules.get(&purged.alias).copied() else {
            return;
        };
        let request = |path: &CfPath, kind| EdgeRequest {
            alias: purged.alias.clone(),
            kind,
            path: path.clone(),
            invalidation: id.to_owned(),
            asked_at: purged.asked_at,
            completed_at: now,
        };
        let mut sampled = HashSet::new();
        if let Some(verify) = rules.verify {
            let sample = spread(&purged.paths, verify.sample);
            let requests = sample
                .iter()
                .map(|p| request(p, EdgeKind::Verify))
                .collect();
            self.enqueue(&purged.alias, EdgeKind::Verify, requests, id);
            sampled.extend(sample);
        }
        if let Some(max_paths) = rules.warm {
            // A path just checked was just requested: the edge holds it.
            let rest: Vec<CfPath> = purged
                .paths
                .iter()
                .filter(|p| !sampled.contains(*p))
                .cloned()
                .collect();
            let requests = spread(&rest, max_paths)
                .iter()
                .map(|p| request(p, EdgeKind::Warm))
                .collect();
            self.enqueue(&purged.alias, EdgeKind::Warm, requests, id);
        }
    }

    fn enqueue(&mut self, alias: &str, kind: EdgeKind, requests: Vec<EdgeRequest>, id: &str) {
        let Some(lane) = self.lanes.get_mut(&(alias.to_owned(), kind)) else {
            return;
        };
        let room = MAX_QUEUED.saturating_sub(lane.queue.len());
        let dropped = requests.len().saturating_sub(room);
        lane.queue.extend(requests.into_iter().take(room));
        if dropped > 0 {
            if let Some(c) = self.counts.get_mut(alias) {
                *c.dropped.entry(kind).or_default() += dropped as u64;
            }
            tracing::warn!(
                distribution = %alias,
                invalidation = %id,
                kind = kind.as_str(),
                paths = dropped,
                queued = MAX_QUEUED,
                "the edge's requests are behind; these paths are not requested"
            );
        }
    }

    /// The requests whose turn has come at `now`: at most one per lane per
    /// interval, and [`AT_ONCE`] under way per lane.
    pub fn due(&mut self, now: Millis) -> Vec<EdgeRequest> {
        let mut out = Vec::new();
        for lane in self.lanes.values_mut() {
            if lane.queue.is_empty() || lane.at_once >= AT_ONCE || now < lane.next_at {
                continue;
            }
            if let Some(request) = lane.queue.pop_front() {
                lane.at_once += 1;
                lane.next_at = now.saturating_add(lane.interval);
                out.push(request);
            }
        }
        out
    }

    /// When the next request may go, if one waits and may.
    pub fn next_wake(&self) -> Option<Millis> {
        self.lanes
            .values()
            .filter(|l| !l.queue.is_empty() && l.at_once < AT_ONCE)
            .map(|l| l.next_at)
            .min()
    }

    /// An answer came at `now` (the wall time `wall`, for the status):
    /// counted, logged, and for a stale path whose distribution opted in,
    /// the re-invalidation to make, when `may_spend` (the budget has room).
    pub fn answered(
        &mut self,
        request: EdgeRequest,
        answer: Result<Observed, EdgeError>,
        now: Millis,
        wall: std::time::SystemTime,
        may_spend: bool,
        shown: &mut ShownCounts,
    ) -> Option<Reinvalidate> {
        let alias = request.alias.as_str();
        if let Some(lane) = self.lanes.get_mut(&(alias.to_owned(), request.kind)) {
            lane.at_once = lane.at_once.saturating_sub(1);
        }
        let counts = self.counts.entry(alias.to_owned()).or_default();
        let path = request.path.as_str();
        if request.kind == EdgeKind::Warm {
            let result = match &answer {
                Ok(seen) if seen.status < 500 => "ok",
                _ => "error",
            };
            shown.warmed(alias, result);
            if result == "ok" {
                counts.warmed += 1;
                tracing::debug!(distribution = %alias, path, "warmed");
            } else {
                counts.warm_errors += 1;
                let why = match &answer {
                    Ok(seen) => format!("the edge answered {}", seen.status),
                    Err(e) => e.to_string(),
                };
                if counts.warm_warned.as_deref() == Some(request.invalidation.as_str()) {
                    tracing::debug!(distribution = %alias, path, error = %why, "warming a path failed");
                } else {
                    counts.warm_warned = Some(request.invalidation.clone());
                    tracing::warn!(distribution = %alias, invalidation = %request.invalidation, path, error = %why, "warming a path failed (the invalidation's further failures are logged at debug level)");
                }
            }
            return None;
        }
        let verdict = judge(&answer, request.asked_at, now);
        shown.verified(alias, verdict.label());
        let after_completion = now.saturating_sub(request.completed_at) / 1000;
        let seen = answer.as_ref().ok();
        let x_cache = seen.and_then(|s| s.x_cache.as_deref()).unwrap_or("");
        let etag = seen.and_then(|s| s.etag.as_deref()).unwrap_or("");
        let modified = seen.and_then(|s| s.last_modified.as_deref()).unwrap_or("");
        match &verdict {
            Verdict::Fresh => {
                counts.fresh += 1;
                tracing::info!(distribution = %alias, invalidation = %request.invalidation, path, x_cache, etag, last_modified = modified, "the edge serves the path fresh after the purge");
                None
            }
            Verdict::Error(why) => {
                counts.error += 1;
                tracing::warn!(distribution = %alias, invalidation = %request.invalidation, path, error = %why, "checking a purged path at the edge failed");
                None
            }
            Verdict::Stale { age } => {
                counts.stale += 1;
                counts.last_stale = Some(StalePath {
                    path: path.to_owned(),
                    invalidation: request.invalidation.clone(),
                    age_seconds: *age,
                    at: crate::status::format_time(wall),
                });
                tracing::warn!(
                    distribution = %alias,
                    invalidation = %request.invalidation,
                    path,
                    age_seconds = age,
                    seconds_after_completion = after_completion,
                    x_cache,
                    etag,
                    last_modified = modified,
                    "the edge still serves a copy from before the purge: stale"
                );
                let reinvalidate = self
                    .rules
                    .get(alias)
                    .and_then(|r| r.verify)
                    .is_some_and(|v| v.reinvalidate);
                if reinvalidate {
                    self.reinvalidate(request, now, may_spend)
                } else {
                    None
                }
            }
        }
    }

    fn reinvalidate(
        &mut self,
        request: EdgeRequest,
        now: Millis,
        may_spend: bool,
    ) -> Option<Reinvalidate> {
        let memory = REINVALIDATED_FOR.as_millis() as Millis;
        self.reinvalidated
            .retain(|_, at| now.saturating_sub(*at) < memory);
        let key = (request.alias.clone(), request.path.clone());
        let path = request.path.as_str();
        if self.reinvalidated.contains_key(&key) {
            tracing::warn!(distribution = %request.alias, path, "stale again after being purged again; not purging it a third time");
            return None;
        }
        if !may_spend {
            tracing::warn!(distribution = %request.alias, path, "not purging the stale path again: the budget has no room");
            return None;
        }
        if self.reinvalidated.len() >= MAX_REINVALIDATED {
            return None;
        }
        self.reinvalidated.insert(key, now);
        if let Some(c) = self.counts.get_mut(&request.alias) {
            c.reinvalidated += 1;
        }
        self.made += 1;
        tracing::info!(distribution = %request.alias, path, "purging the stale path again, once");
        Some(Reinvalidate {
            id: format!("{REINVALIDATION_ID}{}", self.made),
            request: PurgeRequest {
                distribution: request.alias,
                paths: vec![request.path],
                skipped: Vec::new(),
                urgent: false,
                reason: Some("stale at the edge after the purge".to_owned()),
                requested_by: None,
                s3_removed: None,
            },
        })
    }

    /// What `alias`'s status shows of its verification and warming, each
    /// when configured.
    pub fn status(&self, alias: &str) -> (Option<VerifyStatus>, Option<WarmStatus>) {
        let (Some(rules), Some(counts)) = (self.rules.get(alias), self.counts.get(alias)) else {
            return (None, None);
        };
        let queued = |kind| {
            self.lanes
                .get(&(alias.to_owned(), kind))
                .map_or(0, |l: &Lane| (l.queue.len() + l.at_once) as u64)
        };
        let dropped = |kind| counts.dropped.get(&kind).copied().unwrap_or(0);
        (
            rules.verify.map(|_| VerifyStatus {
                fresh: counts.fresh,
                stale: counts.stale,
                error: counts.error,
                queued: queued(EdgeKind::Verify),
                not_requested: dropped(EdgeKind::Verify),
                reinvalidated: counts.reinvalidated,
                last_stale: counts.last_stale.clone(),
            }),
            rules.warm.map(|_| WarmStatus {
                ok: counts.warmed,
                error: counts.warm_errors,
                queued: queued(EdgeKind::Warm),
                not_requested: dropped(EdgeKind::Warm),
            }),
        )
    }
}

/// At most `n` of `paths`, spread evenly over them (sorted, so over the
/// site's directories) rather than the first `n`.
fn spread(paths: &[CfPath], n: usize) -> Vec<CfPath> {
    if paths.len() <= n {
        return paths.to_vec();
    }
    (0..n).map(|i| paths[i * paths.len() / n].clone()).collect()
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    const CONFIG: &str = r#"
[source]
kind = "local"
[distributions.www]
id = "E2ABCDEF123456"
[distributions.www.verify]
domain = "www.example.com"
sample = 3
per_second = 2
reinvalidate_stale = true
[distributions.www.warm]
enabled = true
per_second = 5
max_paths = 3000
[distributions.plain]
id = "E2PLAIN"
[routing]
default_distribution = "www"
skip = ['\.[0-9a-f]{8}\.js$']
"#;

    fn config(text: &str) -> Config {
        Config::from_parts(Some(text), "test", std::iter::empty()).expect("config")
    }

    fn paths(n: usize) -> Vec<CfPath> {
        (0..n)
            .map(|i| CfPath::parse(&format!("/d{}/p{i}.html", i % 7)).expect("path"))
            .collect()
    }

    fn hit(age: u64) -> Result<Observed, EdgeError> {
        Ok(Observed {
            status: 200,
            x_cache: Some("Hit from cloudfront".to_owned()),
            age: Some(age),
            ..Observed::default()
        })
    }

    /// Drives the edges from `start` until nothing waits, answering each
    /// request `answer_after` ms after it went; returns every request with
    /// the moment it went.
    fn drive(edges: &mut Edges, start: Millis, answer_after: Millis) -> Vec<(Millis, EdgeRequest)> {
        let mut counts = ShownCounts::default();
        let mut went = Vec::new();
        let mut answers: Vec<(Millis, EdgeRequest)> = Vec::new();
        let mut now = start;
        for _ in 0..100_000 {
            answers.sort_by_key(|(at, _)| *at);
            let next_answer = answers.first().map(|(at, _)| *at);
            let wake = match (edges.next_wake(), next_answer) {
                (Some(w), Some(a)) => w.min(a),
                (Some(w), None) => w,
                (None, Some(a)) => a,
                (None, None) => return went,
            };
            now = now.max(wake);
            while answers.first().is_some_and(|(at, _)| *at <= now) {
                let (_, request) = answers.remove(0);
                let answer = Ok(Observed {
                    status: 200,
                    x_cache: Some("Miss from cloudfront".to_owned()),
                    ..Observed::default()
                });
                edges.answered(
                    request,
                    answer,
                    now,
                    SystemTime::UNIX_EPOCH,
                    true,
                    &mut counts,
                );
            }
            for request in edges.due(now) {
                answers.push((now + answer_after, request.clone()));
                went.push((now, request));
            }
        }
        panic!("still requesting after 100,000 turns");
    }

    /// The most requests of `kind` that went in any one second.
    fn most_in_a_second(went: &[(Millis, EdgeRequest)], kind: EdgeKind) -> usize {
        let times: Vec<Millis> = went
            .iter()
            .filter(|(_, r)| r.kind == kind)
            .map(|(t, _)| *t)
            .collect();
        times
            .iter()
            .map(|&t| times.iter().filter(|&&u| u >= t && u < t + 1000).count())
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn the_rates_hold_under_a_3000_path_invalidation() {
        let config = config(CONFIG);
        let router = Router::new(&config);
        let mut edges = Edges::new(&config);
        edges.created(&router, "www", "I1", paths(3000), 1_000, 1_500);
        edges.completed("I1", 60_000);
        let went = drive(&mut edges, 60_000, 50);
        let verified = went
            .iter()
            .filter(|(_, r)| r.kind == EdgeKind::Verify)
            .count();
        let warmed = went
            .iter()
            .filter(|(_, r)| r.kind == EdgeKind::Warm)
            .count();
        assert_eq!(verified, 3);
        // Every path once: those checked are not warmed again.
        assert_eq!(warmed, 2997);
        assert_eq!(most_in_a_second(&went, EdgeKind::Verify), 2);
        assert_eq!(most_in_a_second(&went, EdgeKind::Warm), 5);
        // 2,997 at 5 a second take ten minutes.
        let last = went.iter().map(|(t, _)| *t).max().expect("requests");
        assert!(last - 60_000 >= 599_000, "{last}");
        let (verify, warm) = edges.status("www");
        assert_eq!(verify.expect("verify").fresh, 3);
        assert_eq!(warm.expect("warm").ok, 2997);
    }

    #[test]
    fn an_edge_that_never_answers_holds_a_few_requests_and_nothing_else() {
        let config = config(CONFIG);
        let router = Router::new(&config);
        let mut edges = Edges::new(&config);
        edges.created(&router, "www", "I1", paths(100), 0, 0);
        edges.completed("I1", 10_000);
        let mut went = 0;
        let mut now = 10_000;
        while let Some(wake) = edges.next_wake() {
            now = now.max(wake);
            went += edges.due(now).len();
            assert!(now < 100_000_000);
        }
        // The sample's 3 checks, and warming's first few.
        assert_eq!(
            went,
            3 + AT_ONCE,
            "at most {AT_ONCE} under way of each kind"
        );
        let (verify, warm) = edges.status("www");
        assert_eq!(verify.expect("verify").queued, 3);
        assert_eq!(warm.expect("warm").queued, 97);
    }

    #[test]
    fn only_exact_requested_paths_go_never_wildcards_tags_or_skipped_paths() {
        let config = config(CONFIG);
        let router = Router::new(&config);
        let mut edges = Edges::new(&config);
        let purged = ["/a/*", "#tag", "/app.0123abcd.js", "/a/one.html", "/b.html"]
            .map(|p| CfPath::parse_item(p).expect("item"));
        edges.created(&router, "www", "I1", purged.to_vec(), 0, 0);
        edges.completed("I1", 1000);
        let went = drive(&mut edges, 1000, 10);
        let mut asked: Vec<&str> = went.iter().map(|(_, r)| r.path.as_str()).collect();
        asked.sort_unstable();
        assert_eq!(asked, ["/a/one.html", "/b.html"]);
        // A distribution without an edge is never asked.
        edges.created(&router, "plain", "I2", purged.to_vec(), 0, 0);
        edges.completed("I2", 2000);
        assert!(edges.due(2000).is_empty());
        assert!(edges.status("plain").0.is_none());
    }

    #[test]
    fn a_sample_spreads_over_the_paths() {
        let all = paths(9);
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(
            spread(&sorted, 3),
            vec![sorted[0].clone(), sorted[3].clone(), sorted[6].clone()]
        );
        assert_eq!(spread(&sorted, 20).len(), 9);
    }

    fn stale_request(edges: &mut Edges, now: Millis) -> EdgeRequest {
        let request = edges
            .due(now)
            .into_iter()
            .find(|r| r.kind == EdgeKind::Verify);
        request.expect("a verification is due")
    }

    #[test]
    fn a_stale_path_is_purged_again_once_and_only_with_budget() {
        let config = config(&CONFIG.replace(
            "[distributions.www.warm]\nenabled = true",
            "[distributions.www.warm]\nenabled = false",
        ));
        let router = Router::new(&config);
        let mut counts = ShownCounts::default();
        let mut edges = Edges::new(&config);
        let one = vec![CfPath::parse("/one.html").expect("path")];
        edges.created(&router, "www", "I1", one.clone(), 100_000, 100_000);
        edges.completed("I1", 130_000);
        let request = stale_request(&mut edges, 130_000);
        // Cached 500 s ago, asked for 30 s ago: stale.
        let again = edges
            .answered(
                request,
                hit(500),
                130_000,
                SystemTime::UNIX_EPOCH,
                true,
                &mut counts,
            )
            .expect("purged again");
        assert!(is_reinvalidation(&again.id));
        assert_eq!(again.request.paths, one);
        assert_eq!(again.request.distribution, "www");

        // The second purge did not take either: not a third time.
        edges.created(&router, "www", "I2", one.clone(), 140_000, 140_000);
        edges.completed("I2", 170_000);
        let request = stale_request(&mut edges, 170_000);
        assert_eq!(
            edges.answered(
                request,
                hit(540),
                170_000,
                SystemTime::UNIX_EPOCH,
                true,
                &mut counts
            ),
            None
        );
        let (verify, _) = edges.status("www");
        let verify = verify.expect("verify");
        assert_eq!((verify.stale, verify.reinvalidated), (2, 1));
        assert_eq!(verify.last_stale.expect("last stale").path, "/one.html");

        // Another path, with the budget spent: counted, not purged again.
        let two = vec![CfPath::parse("/two.html").expect("path")];
        edges.created(&router, "www", "I3", two, 200_000, 200_000);
        edges.completed("I3", 230_000);
        let request = stale_request(&mut edges, 230_000);
        assert_eq!(
            edges.answered(
                request,
                hit(900),
                230_000,
                SystemTime::UNIX_EPOCH,
                false,
                &mut counts
            ),
            None
        );
        // An hour on, the first path may be purged again if found stale.
        edges.created(&router, "www", "I4", one, 4_000_000, 4_000_000);
        edges.completed("I4", 4_030_000);
        let request = stale_request(&mut edges, 4_030_000);
        assert!(
            edges
                .answered(
                    request,
                    hit(9_000),
                    4_030_000,
                    SystemTime::UNIX_EPOCH,
                    true,
                    &mut counts
                )
                .is_some()
        );
    }

    #[test]
    fn without_opting_in_a_stale_path_is_only_counted() {
        let config =
            config(&CONFIG.replace("reinvalidate_stale = true", "reinvalidate_stale = false"));
        let router = Router::new(&config);
        let mut edges = Edges::new(&config);
        edges.created(
            &router,
            "www",
            "I1",
            vec![CfPath::parse("/x").expect("path")],
            0,
            0,
        );
        edges.completed("I1", 30_000);
        let request = stale_request(&mut edges, 30_000);
        let mut counts = ShownCounts::default();
        assert_eq!(
            edges.answered(
                request,
                hit(999),
                30_000,
                SystemTime::UNIX_EPOCH,
                true,
                &mut counts
            ),
            None
        );
        assert_eq!(edges.status("www").0.expect("verify").stale, 1);
    }
}
