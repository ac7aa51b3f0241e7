//! An in-memory CloudFront for `cloudfront.mode = "simulate"`: local runs
//! and rehearsals with no AWS account, and the fake behind the submitter's
//! and tracker's tests. It keeps CloudFront's documented rules, each proven by a test
//! below, so that a run against it cannot succeed where AWS would refuse:
//!
//! - an invalidation is `InProgress` for the configured completion time,
//!   then `Completed` (on tokio's clock, so paused-time tests can step it);
//! - per distribution at most 3,000 exact and 15 wildcard paths in progress,
//!   the new batch counted, else `TooManyInvalidationsInProgress`;
//! - CallerReference idempotency: the same reference and paths return the
//!   first invalidation and create nothing; other paths are
//!   `InvalidationBatchAlreadyExists`;
//! - path rules checked again on the text: `/` first, `*` only last, at most
//!   4,000 characters, else `InvalidArgument`; a `#` item is a cache tag
//!   (1 to 256 visible ASCII characters without `,` and `*`), counted with
//!   the exact paths;
//! - unknown distribution `NoSuchDistribution`, unknown id
//!   `NoSuchInvalidation`;
//! - ListInvalidations newest first, paged with markers;
//! - distribution tenants ([`SimulatedCloudFront::with_tenants`]) through
//!   the same rules, each with limits, references and invalidations of its
//!   own; an unknown tenant is `EntityNotFound` (as
//!   [`InvalidatorError::NoSuchDistribution`]).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::invalidator::{
    Invalidation, InvalidationSummary, Invalidator, InvalidatorError, MAX_LIST_ITEMS, Status,
    Target,
};
use crate::path::{CfPath, MAX_PATH_LEN, MAX_TAG_LEN, PathKind};

/// Exact paths one distribution may have in progress.
pub const MAX_INFLIGHT_EXACT: usize = 3000;

/// Wildcard paths one distribution may have in progress.
pub const MAX_INFLIGHT_WILDCARD: usize = 15;

/// Characters of an invalidation id after its leading `I`.
const ID_DIGITS: usize = 13;

/// A simulated CloudFront account holding a fixed set of distributions.
/// Clones share the same state.
#[derive(Clone, Debug)]
pub struct SimulatedCloudFront {
    inner: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    /// How long an invalidation stays in progress.
    completion: Duration,
    /// The wall-clock time matching `origin`, so that `created_at` moves with
    /// tokio's (possibly paused) clock instead of the system's.
    origin_wall: SystemTime,
    origin: Instant,
    /// Mixed into ids so that two runs do not hand out the same ones.
    id_seed: u64,
    /// Every invalidation ever created, oldest first (AWS never removes one).
    records: Vec<Record>,
    /// Per distribution or tenant (by its id), indices into `records`,
    /// oldest first.
    distributions: HashMap<String, Vec<usize>>,
    /// The ids in `distributions` that are tenants, reachable only through
    /// the tenant calls.
    tenants: HashSet<String>,
    /// Invalidation id to index into `records`.
    by_id: HashMap<String, usize>,
    /// (distribution, caller reference) to index into `records`.
    by_reference: HashMap<(String, String), usize>,
}

#[derive(Debug)]
struct Record {
    /// The distribution's id, or the tenant's.
    distribution: String,
    id: String,
    caller_reference: String,
    paths: Vec<CfPath>,
    created: Instant,
    created_at: SystemTime,
}

impl SimulatedCloudFront {
    /// A CloudFront with the given distributions, whose invalidations stay
    /// in progress for `completion` after their creation.
    pub fn new(distribution_ids: impl IntoIterator<Item = String>, completion: Duration) -> Self {
        let distributions = distribution_ids
            .into_iter()
            .map(|id| (id, Vec::new()))
            .collect();
        Self {
            inner: Arc::new(Mutex::new(State {
                completion,
                origin_wall: SystemTime::now(),
                origin: Instant::now(),
                id_seed: rand::random(),
                records: Vec::new(),
                distributions,
                tenants: HashSet::new(),
                by_id: HashMap::new(),
                by_reference: HashMap::new(),
            })),
        }
    }

    /// Its wall clock reads `wall` now (a replay's virtual start), and
    /// moves with tokio's clock from here.
    pub fn starting_at(self, wall: SystemTime) -> Self {
        {
            let mut state = self.lock();
            state.origin_wall = wall;
            state.origin = Instant::now();
        }
        self
    }

    /// Adds distribution tenants (`dt_...`), reached through the tenant
    /// calls ([`Target::Tenant`]); which multi-tenant distribution a call
    /// names does not matter, as on AWS, whose tenant calls carry only the
    /// tenant id.
    pub fn with_tenants(self, tenant_ids: impl IntoIterator<Item = String>) -> Self {
        {
            let mut state = self.lock();
            for id in tenant_ids {
                state.distributions.entry(id.clone()).or_default();
                state.tenants.insert(id);
            }
        }
        self
    }

    /// Every invalidation created so far with its distribution id (a
    /// tenant's id for a tenant's), oldest
    /// first, with its status now: what tests and the status page check
    /// against. Idempotent repeats of a create do not appear twice.
    pub fn created(&self) -> Vec<(String, Invalidation)> {
        let state = self.lock();
        let now = Instant::now();
        state
            .records
            .iter()
            .map(|r| (r.distribution.clone(), state.invalidation(r, now)))
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No code panics while holding the lock, so a poisoned lock still
        // holds consistent state.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn status(&self, record: &Record, now: Instant) -> Status {
        if now >= record.created + self.completion {
            Status::Completed
        } else {
            Status::InProgress
        }
    }

    fn invalidation(&self, record: &Record, now: Instant) -> Invalidation {
        Invalidation {
            id: record.id.clone(),
            status: self.status(record, now),
            created_at: record.created_at,
            caller_reference: record.caller_reference.clone(),
            paths: record.paths.clone(),
        }
    }

    /// The key of `target`'s invalidations and their indices: a
    /// distribution only through the distribution calls, a tenant only
    /// through the tenant calls.
    fn distribution<'t>(
        &self,
        target: &'t Target,
    ) -> Result<(&'t str, &[usize]), InvalidatorError> {
        let (key, tenant) = match target {
            Target::Distribution(id) => (id.as_str(), false),
            Target::Tenant { tenant, .. } => (tenant.as_str(), true),
        };
        match self.distributions.get(key) {
            Some(indices) if self.tenants.contains(key) == tenant => Ok((key, indices)),
            _ if tenant => Err(InvalidatorError::NoSuchDistribution(format!(
                "EntityNotFound: the distribution tenant {key} does not exist"
            ))),
            _ => Err(InvalidatorError::NoSuchDistribution(format!(
                "the specified distribution does not exist: {key}"
            ))),
        }
    }

    /// Exact and wildcard paths in progress on a distribution.
    fn in_flight(&self, indices: &[usize], now: Instant) -> (usize, usize) {
        let (mut exact, mut wildcard) = (0, 0);
        // Completion takes the same time for every invalidation, so once one
        // is completed all older ones are too.
        for &i in indices.iter().rev() {
            let record = &self.records[i];
            if self.status(record, now).is_completed() {
                break;
            }
            for path in &record.paths {
                match path.kind() {
                    PathKind::Exact => exact += 1,
                    PathKind::Wildcard => wildcard += 1,
                }
            }
        }
        (exact, wildcard)
    }

    /// An id like AWS's: `I` and 13 upper-case letters and digits, unique
    /// within this simulation (a bijective mix of a counter, in base 36).
    fn next_id(&self) -> String {
        let mut n = mix(self.id_seed.wrapping_add(self.records.len() as u64));
        let mut digits = [b'0'; ID_DIGITS];
        for d in digits.iter_mut().rev() {
            *d = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[(n % 36) as usize];
            n /= 36;
        }
        // 36^13 > 2^64, so every u64 has its own 13 digits.
        let mut id = String::with_capacity(1 + ID_DIGITS);
        id.push('I');
        id.extend(digits.iter().map(|&b| b as char));
        id
    }
}

/// SplitMix64's finaliser: a bijection on u64, so distinct counters give
/// distinct ids.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// CloudFront's path rules on the text itself, so that the simulation does
/// not trust [`CfPath`] to have enforced them.
fn check_path(path: &str) -> Result<(), InvalidatorError> {
    let invalid = |why: &str| {
        Err(InvalidatorError::InvalidArgument(format!(
            "one or more invalid invalidation paths: {path:?} {why}"
        )))
    };
    if let Some(tag) = path.strip_prefix('#') {
        let visible = tag
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b',' && b != b'*');
        if tag.is_empty() || tag.len() > MAX_TAG_LEN || !visible {
            return invalid(
                "is not a cache tag (1 to 256 visible ASCII characters without \",\" or \"*\")",
            );
        }
        return Ok(());
    }
    if !path.starts_with('/') {
        return invalid("does not start with \"/\"");
    }
    if path.chars().count() > MAX_PATH_LEN {
        return invalid("is longer than 4000 characters");
    }
    if path.find('*').is_some_and(|at| at != path.len() - 1) {
        return invalid("has \"*\" before its last character");
    }
    Ok(())
}

impl Invalidator for SimulatedCloudFront {
    async fn create(
        &self,
        target: impl Into<Target> + Send,
        caller_reference: &str,
        paths: &[CfPath],
    ) -> Result<Invalidation, InvalidatorError> {
        let target = target.into();
        let mut state = self.lock();
        let now = Instant::now();
        let (distribution_id, indices) = state.distribution(&target)?;
        if paths.is_empty() {
            return Err(InvalidatorError::InvalidArgument(
                "an invalidation batch needs at least one path".into(),
            ));
        }
        if caller_reference.is_empty() {
            return Err(InvalidatorError::InvalidArgument(
                "caller reference is empty".into(),
            ));
        }
        for path in paths {
            check_path(path.as_str())?;
        }
        let key = (distribution_id.to_owned(), caller_reference.to_owned());
        if let Some(&i) = state.by_reference.get(&key) {
            let record = &state.records[i];
            // The batch is compared as a set of paths: AWS does not document
            // whether order counts, and the daemon always sends sorted ones.
            let before: BTreeSet<&CfPath> = record.paths.iter().collect();
            let now_asked: BTreeSet<&CfPath> = paths.iter().collect();
            if before == now_asked {
                return Ok(state.invalidation(record, now));
            }
            return Err(InvalidatorError::BatchAlreadyExists(format!(
                "caller reference {caller_reference} was used for invalidation {} with other paths",
                record.id
            )));
        }
        let (mut exact, mut wildcard) = state.in_flight(indices, now);
        for path in paths {
            match path.kind() {
                PathKind::Exact => exact += 1,
                PathKind::Wildcard => wildcard += 1,
            }
        }
        if exact > MAX_INFLIGHT_EXACT || wildcard > MAX_INFLIGHT_WILDCARD {
            return Err(InvalidatorError::TooManyInProgress(format!(
                "{exact} exact and {wildcard} wildcard paths would be in progress on \
                 {distribution_id}; at most {MAX_INFLIGHT_EXACT} and {MAX_INFLIGHT_WILDCARD}"
            )));
        }
        let record = Record {
            distribution: distribution_id.to_owned(),
            id: state.next_id(),
            caller_reference: caller_reference.to_owned(),
            paths: paths.to_vec(),
            created: now,
            created_at: state.origin_wall + now.saturating_duration_since(state.origin),
        };
        let invalidation = state.invalidation(&record, now);
        let index = state.records.len();
        state.by_id.insert(record.id.clone(), index);
        state.by_reference.insert(key, index);
        if let Some(indices) = state.distributions.get_mut(distribution_id) {
            indices.push(index);
        }
        state.records.push(record);
        Ok(invalidation)
    }

    async fn get(
        &self,
        target: impl Into<Target> + Send,
        id: &str,
    ) -> Result<Invalidation, InvalidatorError> {
        let target = target.into();
        let state = self.lock();
        let (distribution_id, _) = state.distribution(&target)?;
        match state.by_id.get(id).map(|&i| &state.records[i]) {
            Some(record) if record.distribution == distribution_id => {
                Ok(state.invalidation(record, Instant::now()))
            }
            _ => Err(InvalidatorError::NoSuchInvalidation(format!(
                "the specified invalidation does not exist: {id}"
            ))),
        }
    }

    async fn list(
        &self,
        target: impl Into<Target> + Send,
        marker: Option<&str>,
        max_items: i32,
    ) -> Result<(Vec<InvalidationSummary>, Option<String>), InvalidatorError> {
        let target = target.into();
        let state = self.lock();
        let (_, indices) = state.distribution(&target)?;
        if max_items < 1 {
            return Err(InvalidatorError::InvalidArgument(format!(
                "max items {max_items}: must be at least 1"
            )));
        }
        let page = max_items.min(MAX_LIST_ITEMS) as usize;
        // The marker is the id of the last invalidation of the previous
        // page; newest first means walking the indices backwards.
        let newest_first = indices.iter().rev().map(|&i| &state.records[i]);
        let start = match marker {
            None => 0,
            Some(marker) => {
                let at = indices
                    .iter()
                    .rev()
                    .position(|&i| state.records[i].id == marker)
                    .ok_or_else(|| {
                        InvalidatorError::InvalidArgument(format!("unknown marker {marker:?}"))
                    })?;
                at + 1
            }
        };
        let now = Instant::now();
        let items: Vec<InvalidationSummary> = newest_first
            .skip(start)
            .take(page)
            .map(|r| InvalidationSummary {
                id: r.id.clone(),
                status: state.status(r, now),
                created_at: r.created_at,
            })
            .collect();
        let next = if start + items.len() < indices.len() {
            items.last().map(|s| s.id.clone())
        } else {
            None
        };
        Ok((items, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIST: &str = "E1SIMULATED";
    const COMPLETION: Duration = Duration::from_secs(60);

    fn cf() -> SimulatedCloudFront {
        SimulatedCloudFront::new([DIST.to_owned(), "E2OTHER".to_owned()], COMPLETION)
    }

    fn paths(list: &[&str]) -> Vec<CfPath> {
        list.iter().map(|p| CfPath::parse(p).unwrap()).collect()
    }

    fn exact(n: usize, tag: &str) -> Vec<CfPath> {
        (0..n)
            .map(|i| CfPath::parse(&format!("/{tag}/{i}.html")).unwrap())
            .collect()
    }

    fn wildcards(n: usize, tag: &str) -> Vec<CfPath> {
        (0..n)
            .map(|i| CfPath::parse(&format!("/{tag}/{i}/*")).unwrap())
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn an_invalidation_is_in_progress_then_completed() {
        let cf = cf();
        let created = cf.create(DIST, "ref-1", &paths(&["/a.js"])).await.unwrap();
        assert_eq!(created.status, Status::InProgress);
        assert_eq!(created.caller_reference, "ref-1");
        assert_eq!(created.paths, paths(&["/a.js"]));
        tokio::time::advance(COMPLETION - Duration::from_millis(1)).await;
        let got = cf.get(DIST, &created.id).await.unwrap();
        assert_eq!(got.status, Status::InProgress);
        assert_eq!(got.created_at, created.created_at);
        tokio::time::advance(Duration::from_millis(1)).await;
        let got = cf.get(DIST, &created.id).await.unwrap();
        assert_eq!(got.status, Status::Completed);
        assert_eq!(got.paths, created.paths);
    }

    #[tokio::test(start_paused = true)]
    async fn created_at_follows_the_paused_clock() {
        let cf = cf();
        let first = cf.create(DIST, "r1", &paths(&["/a"])).await.unwrap();
        tokio::time::advance(Duration::from_secs(90)).await;
        let second = cf.create(DIST, "r2", &paths(&["/b"])).await.unwrap();
        assert_eq!(
            second.created_at.duration_since(first.created_at).unwrap(),
            Duration::from_secs(90)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn ids_look_like_aws_ids_and_are_unique() {
        let cf = cf();
        let mut seen = BTreeSet::new();
        for i in 0..200 {
            let inv = cf
                .create(DIST, &format!("r{i}"), &paths(&["/x"]))
                .await
                .unwrap();
            assert_eq!(inv.id.len(), 14, "{}", inv.id);
            assert!(inv.id.starts_with('I'));
            assert!(
                inv.id[1..]
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()),
                "{}",
                inv.id
            );
            assert!(seen.insert(inv.id));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn exact_paths_in_progress_are_capped_at_3000_counting_the_new_batch() {
        let cf = cf();
        cf.create(DIST, "r1", &exact(2000, "a")).await.unwrap();
        cf.create(DIST, "r2", &exact(1000, "b")).await.unwrap();
        let err = cf.create(DIST, "r3", &exact(1, "c")).await.unwrap_err();
        assert!(
            matches!(err, InvalidatorError::TooManyInProgress(_)),
            "{err:?}"
        );
        // Nothing was created by the refused call.
        assert_eq!(cf.created().len(), 2);
        // The limit is per distribution.
        cf.create("E2OTHER", "r3", &exact(3000, "c")).await.unwrap();
        // Wildcards are counted separately.
        cf.create(DIST, "r4", &wildcards(15, "w")).await.unwrap();
        // Capacity comes back once the batches complete.
        tokio::time::advance(COMPLETION).await;
        cf.create(DIST, "r5", &exact(3000, "d")).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn one_batch_over_the_exact_limit_is_refused() {
        let cf = cf();
        let err = cf.create(DIST, "r1", &exact(3001, "a")).await.unwrap_err();
        assert!(matches!(err, InvalidatorError::TooManyInProgress(_)));
        cf.create(DIST, "r2", &exact(3000, "a")).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn wildcard_paths_in_progress_are_capped_at_15() {
        let cf = cf();
        cf.create(DIST, "r1", &wildcards(10, "a")).await.unwrap();
        let err = cf.create(DIST, "r2", &wildcards(6, "b")).await.unwrap_err();
        assert!(matches!(err, InvalidatorError::TooManyInProgress(_)));
        // A mixed batch is refused on its wildcards alone.
        let mut mixed = wildcards(6, "b");
        mixed.extend(exact(1, "e"));
        let err = cf.create(DIST, "r2", &mixed).await.unwrap_err();
        assert!(matches!(err, InvalidatorError::TooManyInProgress(_)));
        cf.create(DIST, "r3", &wildcards(5, "c")).await.unwrap();
        let err = cf.create(DIST, "r4", &paths(&["/*"])).await.unwrap_err();
        assert!(matches!(err, InvalidatorError::TooManyInProgress(_)));
        // Exact paths still go through.
        cf.create(DIST, "r5", &exact(3000, "x")).await.unwrap();
        tokio::time::advance(COMPLETION).await;
        cf.create(DIST, "r6", &wildcards(15, "d")).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn the_same_reference_and_paths_return_the_first_invalidation() {
        let cf = cf();
        let first = cf
            .create(DIST, "ref", &paths(&["/a", "/b/*"]))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(5)).await;
        let again = cf
            .create(DIST, "ref", &paths(&["/b/*", "/a"]))
            .await
            .unwrap();
        assert_eq!(again, first);
        assert_eq!(cf.created().len(), 1);
        // Its status is the current one.
        tokio::time::advance(COMPLETION).await;
        let later = cf
            .create(DIST, "ref", &paths(&["/a", "/b/*"]))
            .await
            .unwrap();
        assert_eq!(later.id, first.id);
        assert_eq!(later.status, Status::Completed);
        assert_eq!(cf.created().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_repeat_is_returned_even_when_the_limits_are_full() {
        let cf = cf();
        let first = cf.create(DIST, "ref", &exact(3000, "a")).await.unwrap();
        let again = cf.create(DIST, "ref", &exact(3000, "a")).await.unwrap();
        assert_eq!(again.id, first.id);
    }

    #[tokio::test(start_paused = true)]
    async fn the_same_reference_with_other_paths_is_refused() {
        let cf = cf();
        cf.create(DIST, "ref", &paths(&["/a"])).await.unwrap();
        let err = cf
            .create(DIST, "ref", &paths(&["/a", "/b"]))
            .await
            .unwrap_err();
        assert!(
            matches!(err, InvalidatorError::BatchAlreadyExists(_)),
            "{err:?}"
        );
        assert_eq!(err.code_label(), "other");
        assert_eq!(cf.created().len(), 1);
        // References are per distribution.
        cf.create("E2OTHER", "ref", &paths(&["/b"])).await.unwrap();
    }

    /// `CfPath` cannot hold a path that breaks the rules, so the check the
    /// simulation runs on each path's text is tested on the text itself.
    #[tokio::test(start_paused = true)]
    async fn path_rules_are_checked_on_the_text() {
        assert!(check_path("/a/b.js").is_ok());
        assert!(check_path("/a/*").is_ok());
        assert!(check_path("/*").is_ok());
        assert!(check_path(&format!("/{}", "a".repeat(MAX_PATH_LEN - 1))).is_ok());
        for bad in [
            "a.js".to_owned(),
            "*".to_owned(),
            String::new(),
            "/a/*/b".to_owned(),
            "/a**".to_owned(),
            format!("/{}", "a".repeat(MAX_PATH_LEN)),
        ] {
            let err = check_path(&bad).unwrap_err();
            assert!(
                matches!(err, InvalidatorError::InvalidArgument(_)),
                "{bad:?}"
            );
        }
        // An encoded literal asterisk is an ordinary character.
        let literal = CfPath::literal("/a*b").unwrap();
        cf().create(DIST, "r", &[literal]).await.unwrap();
    }

    /// Cache tags go in an ordinary batch, by their own rules, and count
    /// with the exact paths in flight.
    #[tokio::test(start_paused = true)]
    async fn tags_are_items_counted_with_exact_paths() {
        assert!(check_path("#blog").is_ok());
        assert!(check_path(&format!("#{}", "t".repeat(MAX_TAG_LEN))).is_ok());
        for bad in [
            "#".to_owned(),
            "#a,b".to_owned(),
            "#a*".to_owned(),
            "#a b".to_owned(),
            format!("#{}", "t".repeat(MAX_TAG_LEN + 1)),
        ] {
            assert!(
                matches!(check_path(&bad), Err(InvalidatorError::InvalidArgument(_))),
                "{bad:?}"
            );
        }
        let cf = cf();
        let mut batch = exact(2999, "e");
        batch.push(CfPath::tag("blog").unwrap());
        let created = cf.create(DIST, "r1", &batch).await.unwrap();
        assert_eq!(created.paths.len(), 3000);
        let err = cf
            .create(DIST, "r2", &[CfPath::tag("news").unwrap()])
            .await
            .unwrap_err();
        assert!(matches!(err, InvalidatorError::TooManyInProgress(_)));
        // Wildcards are counted apart.
        cf.create(DIST, "r3", &wildcards(1, "w")).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_batch_or_reference_is_an_invalid_argument() {
        let cf = cf();
        let err = cf.create(DIST, "r", &[]).await.unwrap_err();
        assert!(matches!(err, InvalidatorError::InvalidArgument(_)));
        let err = cf.create(DIST, "", &paths(&["/a"])).await.unwrap_err();
        assert!(matches!(err, InvalidatorError::InvalidArgument(_)));
        assert!(cf.created().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_distributions_and_ids_are_refused() {
        let cf = cf();
        let err = cf.create("ENOPE", "r", &paths(&["/a"])).await.unwrap_err();
        assert!(matches!(err, InvalidatorError::NoSuchDistribution(_)));
        assert_eq!(err.code_label(), "no_such_distribution");
        let err = cf.get("ENOPE", "I123").await.unwrap_err();
        assert!(matches!(err, InvalidatorError::NoSuchDistribution(_)));
        let err = cf.list("ENOPE", None, 10).await.unwrap_err();
        assert!(matches!(err, InvalidatorError::NoSuchDistribution(_)));
        let err = cf.get(DIST, "I0000000000000").await.unwrap_err();
        assert!(matches!(err, InvalidatorError::NoSuchInvalidation(_)));
        // An id of another distribution is not found on this one.
        let other = cf.create("E2OTHER", "r", &paths(&["/a"])).await.unwrap();
        let err = cf.get(DIST, &other.id).await.unwrap_err();
        assert!(matches!(err, InvalidatorError::NoSuchInvalidation(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn list_pages_newest_first_with_markers() {
        let cf = cf();
        let mut ids = Vec::new();
        for i in 0..5 {
            let inv = cf
                .create(DIST, &format!("r{i}"), &paths(&["/a"]))
                .await
                .unwrap();
            ids.push(inv.id);
            tokio::time::advance(Duration::from_secs(20)).await;
        }
        cf.create("E2OTHER", "x", &paths(&["/a"])).await.unwrap();
        ids.reverse();

        let (page1, marker) = cf.list(DIST, None, 2).await.unwrap();
        assert_eq!(
            page1.iter().map(|s| &s.id).collect::<Vec<_>>(),
            [&ids[0], &ids[1]]
        );
        let marker = marker.expect("more pages");
        let (page2, marker) = cf.list(DIST, Some(&marker), 2).await.unwrap();
        assert_eq!(
            page2.iter().map(|s| &s.id).collect::<Vec<_>>(),
            [&ids[2], &ids[3]]
        );
        let (page3, marker) = cf.list(DIST, marker.as_deref(), 2).await.unwrap();
        assert_eq!(page3.iter().map(|s| &s.id).collect::<Vec<_>>(), [&ids[4]]);
        assert_eq!(marker, None);

        // Statuses as of now, 100 s after the first create: with a 60 s
        // completion, those created at 0, 20 and 40 s have completed (the
        // last one exactly now), those at 60 and 80 s have not.
        let (all, marker) = cf.list(DIST, None, 100).await.unwrap();
        assert_eq!(marker, None);
        let statuses: Vec<Status> = all.iter().map(|s| s.status).collect();
        use Status::{Completed, InProgress};
        assert_eq!(
            statuses,
            [InProgress, InProgress, Completed, Completed, Completed]
        );
        assert!(all.windows(2).all(|w| w[0].created_at > w[1].created_at));

        // A page exactly at the end has no next marker.
        let (page, marker) = cf.list(DIST, None, 5).await.unwrap();
        assert_eq!(page.len(), 5);
        assert_eq!(marker, None);
    }

    #[tokio::test(start_paused = true)]
    async fn list_refuses_bad_arguments_and_caps_the_page() {
        let cf = cf();
        for i in 0..(MAX_LIST_ITEMS + 5) {
            cf.create(DIST, &format!("r{i}"), &paths(&["/a"]))
                .await
                .unwrap();
        }
        let (page, marker) = cf.list(DIST, None, 1000).await.unwrap();
        assert_eq!(page.len(), MAX_LIST_ITEMS as usize);
        assert!(marker.is_some());
        let err = cf.list(DIST, None, 0).await.unwrap_err();
        assert!(matches!(err, InvalidatorError::InvalidArgument(_)));
        let err = cf.list(DIST, Some("Inotamarker"), 10).await.unwrap_err();
        assert!(matches!(err, InvalidatorError::InvalidArgument(_)));
        let (empty, marker) = cf.list("E2OTHER", None, 10).await.unwrap();
        assert!(empty.is_empty());
        assert_eq!(marker, None);
    }

    #[tokio::test(start_paused = true)]
    async fn clones_share_one_account() {
        let cf = cf();
        let clone = cf.clone();
        let inv = clone.create(DIST, "r", &paths(&["/a"])).await.unwrap();
        assert_eq!(cf.get(DIST, &inv.id).await.unwrap().id, inv.id);
        let created = cf.created();
        assert_eq!(created.len(), 1);
        assert_eq!(created[0].0, DIST);
        assert_eq!(created[0].1, inv);
    }

    fn tenant(id: &str) -> Target {
        Target::Tenant {
            distribution: DIST.into(),
            tenant: id.into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn tenants_keep_the_same_rules_each_on_its_own() {
        let cf = cf().with_tenants(["dt_a".to_owned(), "dt_b".to_owned()]);
        let (a, b) = (tenant("dt_a"), tenant("dt_b"));
        // Limits per tenant, apart from the distribution's and each other's.
        cf.create(&a, "r1", &exact(3000, "a")).await.unwrap();
        let err = cf.create(&a, "r2", &exact(1, "a")).await.unwrap_err();
        assert!(matches!(err, InvalidatorError::TooManyInProgress(_)));
        cf.create(&b, "r2", &exact(3000, "b")).await.unwrap();
        cf.create(DIST, "r2", &exact(3000, "d")).await.unwrap();
        // References per tenant: the same with the same paths replays,
        // with others is refused.
        let first = cf.create(&b, "ref", &wildcards(15, "w")).await.unwrap();
        assert_eq!(
            cf.create(&b, "ref", &wildcards(15, "w")).await.unwrap(),
            first
        );
        let err = cf.create(&b, "ref", &paths(&["/x"])).await.unwrap_err();
        assert!(matches!(err, InvalidatorError::BatchAlreadyExists(_)));
        // Invalidations are the tenant's only.
        assert!(cf.get(&b, &first.id).await.is_ok());
        let err = cf.get(&a, &first.id).await.unwrap_err();
        assert!(matches!(err, InvalidatorError::NoSuchInvalidation(_)));
        let err = cf.get(DIST, &first.id).await.unwrap_err();
        assert!(matches!(err, InvalidatorError::NoSuchInvalidation(_)));
        let (listed, _) = cf.list(&a, None, 100).await.unwrap();
        assert_eq!(listed.len(), 1);
        let (listed, _) = cf.list(&b, None, 100).await.unwrap();
        assert_eq!(listed.len(), 2);
        // The lifecycle is the same.
        tokio::time::advance(COMPLETION).await;
        assert_eq!(
            cf.get(&b, &first.id).await.unwrap().status,
            Status::Completed
        );
        cf.create(&a, "r3", &exact(3000, "c")).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn an_unknown_tenant_is_entity_not_found_and_ids_do_not_cross() {
        let cf = cf().with_tenants(["dt_a".to_owned()]);
        let err = cf
            .create(&tenant("dt_nope"), "r", &paths(&["/a"]))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, InvalidatorError::NoSuchDistribution(t) if t.contains("EntityNotFound")),
            "{err:?}"
        );
        assert!(cf.list(&tenant("dt_nope"), None, 10).await.is_err());
        // A distribution is no tenant, and a tenant no distribution.
        assert!(cf.list(&tenant(DIST), None, 10).await.is_err());
        let err = cf.create("dt_a", "r", &paths(&["/a"])).await.unwrap_err();
        assert!(matches!(err, InvalidatorError::NoSuchDistribution(_)));
        assert!(cf.created().is_empty());
    }
}
