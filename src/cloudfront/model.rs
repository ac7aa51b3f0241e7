//! CloudFront's invalidation rules, written once: one account's
//! invalidations and what CreateInvalidation, GetInvalidation and
//! ListInvalidations (and their distribution-tenant forms) answer. No I/O
//! and no clock: every call that depends on time is given it.
//!
//! Two things speak these rules, so that they cannot disagree: the
//! simulated CloudFront of `cloudfront.mode = "simulate"` (also behind
//! replay and the daemon's paused-clock tests, [`super::simulate`]), and
//! the HTTP fake the integration tests run the real SDK against, which adds
//! only the REST-XML wire format, injected faults and call recording.
//!
//! The rules, from AWS's documentation, each proven by a test below:
//!
//! - an invalidation is `InProgress` from its creation for the completion
//!   time, then `Completed`; it is never removed;
//! - per distribution (or tenant) at most 3,000 exact and, independently,
//!   15 wildcard paths in progress ([`Limits::AWS`]), the new batch
//!   counted, else `TooManyInvalidationsInProgress`; a cache tag counts
//!   with the exact paths;
//! - CallerReference idempotency: the same reference and paths return the
//!   first invalidation (with its status now) and create nothing, even when
//!   the limits are full; other paths are `InvalidationBatchAlreadyExists`;
//! - a path starts with `/`, has `*` only last and at most 4,000
//!   characters; a `#` item is a cache tag of 1 to 256 visible ASCII
//!   characters without `,` or `*`; an empty batch or reference is refused;
//!   all `InvalidArgument`;
//! - an unknown distribution is `NoSuchDistribution`, an unknown tenant
//!   `EntityNotFound`, an unknown id `NoSuchInvalidation`; a distribution is
//!   reached only through the distribution calls and a tenant only through
//!   the tenant calls;
//! - ListInvalidations lists newest first, in pages of at most
//!   [`MAX_LIST_ITEMS`] (100 when none is asked), the marker being the last
//!   id of the previous page.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use super::invalidator::{InvalidatorError, MAX_LIST_ITEMS, Status, Target};
use crate::path::{
    MAX_INFLIGHT_EXACT, MAX_INFLIGHT_WILDCARDS, MAX_PATH_LEN, MAX_TAG_LEN, PathKind,
};

/// The most paths one distribution (or tenant) may have in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Exact paths and cache tags.
    pub exact: usize,
    /// Wildcard paths, counted apart from the exact ones.
    pub wildcard: usize,
}

impl Limits {
    /// AWS's documented limits.
    pub const AWS: Limits = Limits {
        exact: MAX_INFLIGHT_EXACT,
        wildcard: MAX_INFLIGHT_WILDCARDS,
    };
}

/// Paths in progress on one distribution or tenant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InFlight {
    /// Exact paths and cache tags.
    pub exact: usize,
    /// Wildcard paths.
    pub wildcard: usize,
}

impl InFlight {
    /// Counts items by their text: a wildcard ends with `*` (a tag cannot).
    fn count<P: AsRef<str>>(&mut self, items: &[P]) {
        for item in items {
            match kind_of(item.as_ref()) {
                PathKind::Exact => self.exact += 1,
                PathKind::Wildcard => self.wildcard += 1,
            }
        }
    }
}

/// Which calls a request came through: a distribution's by its id, or a
/// tenant's by the tenant id (the only id AWS's tenant calls carry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope<'a> {
    /// CreateInvalidation, GetInvalidation, ListInvalidations.
    Distribution(&'a str),
    /// Their `...ForDistributionTenant` forms.
    Tenant(&'a str),
}

impl Scope<'_> {
    fn id(&self) -> &str {
        match self {
            Scope::Distribution(id) | Scope::Tenant(id) => id,
        }
    }

    fn is_tenant(&self) -> bool {
        matches!(self, Scope::Tenant(_))
    }
}

impl<'a> From<&'a Target> for Scope<'a> {
    fn from(target: &'a Target) -> Scope<'a> {
        match target {
            Target::Distribution(id) => Scope::Distribution(id),
            Target::Tenant { tenant, .. } => Scope::Tenant(tenant),
        }
    }
}

/// One invalidation the account holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<P> {
    /// `I` and 13 upper-case letters and digits, as AWS's.
    pub id: String,
    /// The distribution's id, or the tenant's.
    pub owner: String,
    /// What a later create is compared with, to answer it with this one.
    pub caller_reference: String,
    /// The items as the batch gave them.
    pub paths: Vec<P>,
    /// CloudFront's CreateTime.
    pub created_at: SystemTime,
    /// From this moment on it is `Completed`.
    pub completes_at: SystemTime,
}

impl<P> Record<P> {
    /// `InProgress` until `completes_at`, then `Completed` for good.
    pub fn status(&self, now: SystemTime) -> Status {
        if now >= self.completes_at {
            Status::Completed
        } else {
            Status::InProgress
        }
    }
}

/// How a create that was not refused went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// A new invalidation.
    New,
    /// The reference was used before with the same paths: the first
    /// invalidation, nothing new (and nothing billed).
    Repeat,
}

/// One ListInvalidations page.
#[derive(Debug)]
pub struct Page<'m, P> {
    /// Newest first.
    pub items: Vec<&'m Record<P>>,
    /// The marker of the next page, when there is one.
    pub next_marker: Option<String>,
    /// The page size asked for, or the default when none was.
    pub max_items: i32,
}

/// Why CloudFront refuses a call. [`Refusal::code`] is AWS's error code;
/// the text is this model's own.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A distribution call naming no distribution (a tenant's id included).
    #[error("the specified distribution does not exist: {0}")]
    NoSuchDistribution(String),
    /// A tenant call naming no tenant (a distribution's id included).
    #[error("the distribution tenant {0} does not exist")]
    NoSuchTenant(String),
    /// An id that is not one of the scope's invalidations.
    #[error("the specified invalidation does not exist: {0}")]
    NoSuchInvalidation(String),
    #[error("caller reference is empty")]
    EmptyReference,
    #[error("an invalidation batch needs at least one path")]
    EmptyBatch,
    /// The first item of the batch that breaks the path or tag rules.
    #[error("one or more invalid invalidation paths: {path:?} {why}")]
    InvalidPath { path: String, why: &'static str },
    /// The reference was used for invalidation `id` with other paths.
    #[error("caller reference {reference} was used for invalidation {id} with other paths")]
    BatchAlreadyExists { reference: String, id: String },
    /// What would be in flight on `owner` with the batch, over `limits`.
    #[error(
        "{} exact and {} wildcard paths would be in progress on {owner}; at most {} and {}",
        would.exact, would.wildcard, limits.exact, limits.wildcard
    )]
    TooManyInProgress {
        owner: String,
        would: InFlight,
        limits: Limits,
    },
    #[error("max items {0}: must be at least 1")]
    InvalidMaxItems(i32),
    #[error("unknown marker {0:?}")]
    UnknownMarker(String),
}

impl Refusal {
    /// The error code AWS answers with.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NoSuchDistribution(_) => "NoSuchDistribution",
            Refusal::NoSuchTenant(_) => "EntityNotFound",
            Refusal::NoSuchInvalidation(_) => "NoSuchInvalidation",
            Refusal::EmptyReference
            | Refusal::EmptyBatch
            | Refusal::InvalidPath { .. }
            | Refusal::InvalidMaxItems(_)
            | Refusal::UnknownMarker(_) => "InvalidArgument",
            Refusal::BatchAlreadyExists { .. } => "InvalidationBatchAlreadyExists",
            Refusal::TooManyInProgress { .. } => "TooManyInvalidationsInProgress",
        }
    }
}

/// As [`super::aws`] reads the same codes from the SDK.
impl From<Refusal> for InvalidatorError {
    fn from(refusal: Refusal) -> InvalidatorError {
        let text = refusal.to_string();
        match refusal {
            Refusal::NoSuchDistribution(_) => InvalidatorError::NoSuchDistribution(text),
            // A missing tenant is a wrong `tenant_id`, as a missing
            // distribution is a wrong id; the text keeps AWS's code.
            Refusal::NoSuchTenant(_) => {
                InvalidatorError::NoSuchDistribution(format!("EntityNotFound: {text}"))
            }
            Refusal::NoSuchInvalidation(_) => InvalidatorError::NoSuchInvalidation(text),
            Refusal::EmptyReference
            | Refusal::EmptyBatch
            | Refusal::InvalidPath { .. }
            | Refusal::InvalidMaxItems(_)
            | Refusal::UnknownMarker(_) => InvalidatorError::InvalidArgument(text),
            Refusal::BatchAlreadyExists { .. } => InvalidatorError::BatchAlreadyExists(text),
            Refusal::TooManyInProgress { .. } => InvalidatorError::TooManyInProgress(text),
        }
    }
}

/// Characters of an invalidation id after its leading `I`.
const ID_DIGITS: usize = 13;

/// One CloudFront account's invalidations, over items of type `P` (the
/// simulation's [`crate::path::CfPath`]s, the fake's strings as sent),
/// whose text is all the rules look at.
#[derive(Debug)]
pub struct Model<P> {
    /// How long invalidations created from now on stay in progress.
    completion: Duration,
    limits: Limits,
    /// Mixed into ids, so that two simulations need not hand out the same.
    id_seed: u64,
    /// Every invalidation ever created, oldest first (AWS removes none).
    records: Vec<Record<P>>,
    /// Distributions and tenants by id.
    owners: HashMap<String, Owner>,
    /// Invalidation id to index into `records`.
    by_id: HashMap<String, usize>,
}

#[derive(Debug, Default)]
struct Owner {
    /// Reached only through the tenant calls (else only through the
    /// distribution calls).
    tenant: bool,
    /// Indices into `records`, oldest first.
    records: Vec<usize>,
    /// Indices of those that may still be in progress, pruned at each
    /// create: counting the limits costs what is in flight, not the history
    /// (a replayed month creates thousands).
    in_progress: Vec<usize>,
    /// Caller reference to the first invalidation made with it.
    references: HashMap<String, usize>,
}

impl<P: AsRef<str> + Clone> Model<P> {
    /// An account with no distributions yet, whose invalidations stay in
    /// progress for `completion`. `id_seed` varies the ids handed out.
    pub fn new(completion: Duration, limits: Limits, id_seed: u64) -> Self {
        Model {
            completion,
            limits,
            id_seed,
            records: Vec::new(),
            owners: HashMap::new(),
            by_id: HashMap::new(),
        }
    }

    /// Adds a distribution (nothing if it exists).
    pub fn add_distribution(&mut self, id: &str) {
        self.owners.entry(id.to_owned()).or_default();
    }

    /// Adds a distribution tenant (`dt_...`), reached only through the
    /// tenant calls, with limits, references and invalidations of its own.
    pub fn add_tenant(&mut self, id: &str) {
        self.owners.entry(id.to_owned()).or_default().tenant = true;
    }

    /// How long invalidations created from now on stay in progress.
    pub fn set_completion(&mut self, completion: Duration) {
        self.completion = completion;
    }

    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Completes every invalidation at `now` at the latest.
    pub fn complete_all(&mut self, now: SystemTime) {
        for record in &mut self.records {
            record.completes_at = record.completes_at.min(now);
        }
    }

    /// CreateInvalidation (or its tenant form) at `now`.
    pub fn create(
        &mut self,
        scope: Scope<'_>,
        caller_reference: &str,
        paths: &[P],
        now: SystemTime,
    ) -> Result<(Accepted, &Record<P>), Refusal> {
        self.owner(scope)?;
        if caller_reference.is_empty() {
            return Err(Refusal::EmptyReference);
        }
        if paths.is_empty() {
            return Err(Refusal::EmptyBatch);
        }
        for path in paths {
            check_item(path.as_ref())?;
        }
        let repeat = self.owner(scope)?.references.get(caller_reference).copied();
        if let Some(i) = repeat {
            let first = &self.records[i];
            // Compared as a multiset: AWS documents neither whether order
            // counts nor repeats, and the daemon sends sorted distinct ones.
            if sorted(&first.paths) == sorted(paths) {
                return Ok((Accepted::Repeat, first));
            }
            return Err(Refusal::BatchAlreadyExists {
                reference: caller_reference.to_owned(),
                id: first.id.clone(),
            });
        }
        let records = &self.records;
        let owner = self
            .owners
            .get_mut(scope.id())
            .ok_or_else(|| missing(scope))?;
        owner
            .in_progress
            .retain(|&i| records[i].status(now) == Status::InProgress);
        let mut would = in_flight(records, &owner.in_progress, now);
        let mut asked = InFlight::default();
        asked.count(paths);
        would.exact += asked.exact;
        would.wildcard += asked.wildcard;
        // Each limit binds only a batch that adds to it: a wildcard batch is
        // not refused because exact paths are over theirs.
        if (asked.exact > 0 && would.exact > self.limits.exact)
            || (asked.wildcard > 0 && would.wildcard > self.limits.wildcard)
        {
            return Err(Refusal::TooManyInProgress {
                owner: scope.id().to_owned(),
                would,
                limits: self.limits,
            });
        }
        let record = self.insert(scope.id(), caller_reference, paths.to_vec(), now);
        Ok((Accepted::New, record))
    }

    /// An invalidation made without the create's rules (no limits, no path
    /// rules, no reference check), on any distribution or tenant: what a
    /// test sets up as another tool's. `None` for an unknown id.
    pub fn add_unchecked(
        &mut self,
        owner: &str,
        caller_reference: &str,
        paths: Vec<P>,
        now: SystemTime,
    ) -> Option<&Record<P>> {
        if !self.owners.contains_key(owner) {
            return None;
        }
        Some(self.insert(owner, caller_reference, paths, now))
    }

    /// GetInvalidation (or its tenant form): only the scope's own.
    pub fn get(&self, scope: Scope<'_>, id: &str) -> Result<&Record<P>, Refusal> {
        self.owner(scope)?;
        match self.by_id.get(id).map(|&i| &self.records[i]) {
            Some(record) if record.owner == scope.id() => Ok(record),
            _ => Err(Refusal::NoSuchInvalidation(id.to_owned())),
        }
    }

    /// ListInvalidations (or its tenant form): the page after `marker`,
    /// newest first, of at most `max_items` ([`MAX_LIST_ITEMS`] when
    /// `None`, and never more).
    pub fn list(
        &self,
        scope: Scope<'_>,
        marker: Option<&str>,
        max_items: Option<i32>,
    ) -> Result<Page<'_, P>, Refusal> {
        let indices = &self.owner(scope)?.records;
        let max_items = max_items.unwrap_or(MAX_LIST_ITEMS);
        if max_items < 1 {
            return Err(Refusal::InvalidMaxItems(max_items));
        }
        let page = max_items.min(MAX_LIST_ITEMS) as usize;
        let start = match marker {
            None => 0,
            Some(marker) => {
                let at = indices
                    .iter()
                    .rev()
                    .position(|&i| self.records[i].id == marker)
                    .ok_or_else(|| Refusal::UnknownMarker(marker.to_owned()))?;
                at + 1
            }
        };
        let items: Vec<&Record<P>> = indices
            .iter()
            .rev()
            .skip(start)
            .take(page)
            .map(|&i| &self.records[i])
            .collect();
        let next_marker = if start + items.len() < indices.len() {
            items.last().map(|r| r.id.clone())
        } else {
            None
        };
        Ok(Page {
            items,
            next_marker,
            max_items,
        })
    }

    /// Paths in progress on a distribution or tenant at `now` (nothing for
    /// an unknown id).
    pub fn in_flight(&self, owner: &str, now: SystemTime) -> InFlight {
        self.owners
            .get(owner)
            .map(|o| in_flight(&self.records, &o.in_progress, now))
            .unwrap_or_default()
    }

    /// Every invalidation, oldest first.
    pub fn records(&self) -> &[Record<P>] {
        &self.records
    }

    /// A distribution's or tenant's invalidations, oldest first.
    pub fn records_of(&self, owner: &str) -> impl Iterator<Item = &Record<P>> {
        self.owners
            .get(owner)
            .into_iter()
            .flat_map(|o| o.records.iter().map(|&i| &self.records[i]))
    }

    /// Whether this kind of call reaches the distribution or tenant the
    /// scope names: the first thing each call checks.
    pub fn check_scope(&self, scope: Scope<'_>) -> Result<(), Refusal> {
        self.owner(scope).map(|_| ())
    }

    /// The distribution or tenant the scope names, if this kind of call
    /// reaches it.
    fn owner(&self, scope: Scope<'_>) -> Result<&Owner, Refusal> {
        self.owners
            .get(scope.id())
            .filter(|o| o.tenant == scope.is_tenant())
            .ok_or_else(|| missing(scope))
    }

    fn insert(
        &mut self,
        owner: &str,
        caller_reference: &str,
        paths: Vec<P>,
        now: SystemTime,
    ) -> &Record<P> {
        let index = self.records.len();
        let record = Record {
            id: self.next_id(),
            owner: owner.to_owned(),
            caller_reference: caller_reference.to_owned(),
            paths,
            created_at: now,
            completes_at: now + self.completion,
        };
        self.by_id.insert(record.id.clone(), index);
        if let Some(o) = self.owners.get_mut(owner) {
            o.records.push(index);
            o.in_progress.push(index);
            o.references
                .entry(caller_reference.to_owned())
                .or_insert(index);
        }
        self.records.push(record);
        &self.records[index]
    }

    /// An id like AWS's: `I` and 13 upper-case letters and digits, unique
    /// within this model (a bijective mix of a counter, in base 36).
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

fn missing(scope: Scope<'_>) -> Refusal {
    match scope {
        Scope::Distribution(id) => Refusal::NoSuchDistribution(id.to_owned()),
        Scope::Tenant(id) => Refusal::NoSuchTenant(id.to_owned()),
    }
}

fn in_flight<P: AsRef<str>>(records: &[Record<P>], indices: &[usize], now: SystemTime) -> InFlight {
    let mut counts = InFlight::default();
    for &i in indices {
        if records[i].status(now) == Status::InProgress {
            counts.count(&records[i].paths);
        }
    }
    counts
}

fn sorted<P: AsRef<str>>(items: &[P]) -> Vec<&str> {
    let mut texts: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    texts.sort_unstable();
    texts
}

fn kind_of(item: &str) -> PathKind {
    if item.ends_with('*') {
        PathKind::Wildcard
    } else {
        PathKind::Exact
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

/// CloudFront's rules on one item's text: the simulation does not trust
/// [`crate::path::CfPath`] to have kept them, and the fake gets whatever a
/// test sends.
fn check_item(item: &str) -> Result<(), Refusal> {
    let invalid = |why: &'static str| {
        Err(Refusal::InvalidPath {
            path: item.to_owned(),
            why,
        })
    };
    if let Some(tag) = item.strip_prefix('#') {
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
    if !item.starts_with('/') {
        return invalid("does not start with \"/\"");
    }
    if item.chars().count() > MAX_PATH_LEN {
        return invalid("is longer than 4000 characters");
    }
    if item.find('*').is_some_and(|at| at != item.len() - 1) {
        return invalid("has \"*\" before its last character");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIST: &str = "E1MODEL";
    const OTHER: &str = "E2OTHER";
    const COMPLETION: Duration = Duration::from_secs(60);

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn at(secs: u64) -> SystemTime {
        t0() + Duration::from_secs(secs)
    }

    fn model() -> Model<String> {
        let mut m = Model::new(COMPLETION, Limits::AWS, 7);
        m.add_distribution(DIST);
        m.add_distribution(OTHER);
        m
    }

    fn d(id: &str) -> Scope<'_> {
        Scope::Distribution(id)
    }

    fn items(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn exact(n: usize, tag: &str) -> Vec<String> {
        (0..n).map(|i| format!("/{tag}/{i}.html")).collect()
    }

    fn wildcards(n: usize, tag: &str) -> Vec<String> {
        (0..n).map(|i| format!("/{tag}/{i}/*")).collect()
    }

    /// Creates and returns the new record's id; panics on anything else.
    fn new(
        m: &mut Model<String>,
        scope: Scope<'_>,
        r: &str,
        p: &[String],
        now: SystemTime,
    ) -> String {
        match m.create(scope, r, p, now) {
            Ok((Accepted::New, record)) => record.id.clone(),
            other => panic!("expected a new invalidation, got {other:?}"),
        }
    }

    fn too_many(result: Result<(Accepted, &Record<String>), Refusal>) -> bool {
        matches!(result, Err(Refusal::TooManyInProgress { .. }))
    }

    #[test]
    fn an_invalidation_is_in_progress_for_the_completion_time_then_completed() {
        let mut m = model();
        let id = new(&mut m, d(DIST), "r", &items(&["/a.js"]), t0());
        let record = m.get(d(DIST), &id).unwrap();
        assert_eq!(record.created_at, t0());
        assert_eq!(record.caller_reference, "r");
        assert_eq!(record.paths, items(&["/a.js"]));
        assert_eq!(record.status(t0()), Status::InProgress);
        let just_before = t0() + COMPLETION - Duration::from_nanos(1);
        assert_eq!(record.status(just_before), Status::InProgress);
        assert_eq!(record.status(t0() + COMPLETION), Status::Completed);
    }

    #[test]
    fn completion_time_and_complete_all_change_the_lifecycle() {
        let mut m = model();
        let slow = new(&mut m, d(DIST), "r1", &exact(1, "a"), t0());
        m.set_completion(Duration::from_secs(5));
        let fast = new(&mut m, d(DIST), "r2", &exact(1, "b"), t0());
        // The new time applies to later invalidations only.
        assert_eq!(
            m.get(d(DIST), &fast).unwrap().status(at(5)),
            Status::Completed
        );
        assert_eq!(
            m.get(d(DIST), &slow).unwrap().status(at(5)),
            Status::InProgress
        );
        assert_eq!(
            m.in_flight(DIST, at(5)),
            InFlight {
                exact: 1,
                wildcard: 0
            }
        );
        m.complete_all(at(10));
        assert_eq!(
            m.get(d(DIST), &slow).unwrap().status(at(10)),
            Status::Completed
        );
        assert_eq!(m.in_flight(DIST, at(10)), InFlight::default());
        // Already completed ones keep their earlier completion.
        assert_eq!(m.get(d(DIST), &fast).unwrap().completes_at, at(5));
    }

    #[test]
    fn ids_look_like_aws_ids_and_are_unique() {
        let mut m = model();
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..200 {
            let id = new(&mut m, d(DIST), &format!("r{i}"), &items(&["/x"]), t0());
            assert_eq!(id.len(), 14, "{id}");
            assert!(id.starts_with('I'));
            assert!(
                id[1..]
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()),
                "{id}"
            );
            assert!(seen.insert(id));
        }
    }

    #[test]
    fn exact_paths_in_progress_are_capped_at_3000_counting_the_new_batch() {
        let mut m = model();
        new(&mut m, d(DIST), "r1", &exact(2000, "a"), t0());
        new(&mut m, d(DIST), "r2", &exact(1000, "b"), t0());
        assert!(too_many(m.create(d(DIST), "r3", &exact(1, "c"), t0())));
        // Nothing was created by the refused call.
        assert_eq!(m.records().len(), 2);
        // The limit is per distribution.
        new(&mut m, d(OTHER), "r3", &exact(3000, "c"), t0());
        // Wildcards are counted apart.
        new(&mut m, d(DIST), "r4", &wildcards(15, "w"), t0());
        assert_eq!(
            m.in_flight(DIST, t0()),
            InFlight {
                exact: 3000,
                wildcard: 15
            }
        );
        // Capacity comes back once the batches complete.
        new(&mut m, d(DIST), "r5", &exact(3000, "d"), t0() + COMPLETION);
    }

    #[test]
    fn one_batch_over_a_limit_is_refused_even_when_idle() {
        let mut m = model();
        let err = m
            .create(d(DIST), "r1", &exact(3001, "a"), t0())
            .unwrap_err();
        assert_eq!(err.code(), "TooManyInvalidationsInProgress");
        assert!(too_many(m.create(d(DIST), "r1", &wildcards(16, "a"), t0())));
        new(&mut m, d(DIST), "r2", &exact(3000, "a"), t0());
        new(&mut m, d(DIST), "r3", &wildcards(15, "a"), t0());
    }

    #[test]
    fn wildcard_paths_in_progress_are_capped_at_15() {
        let mut m = model();
        new(&mut m, d(DIST), "r1", &wildcards(10, "a"), t0());
        assert!(too_many(m.create(d(DIST), "r2", &wildcards(6, "b"), t0())));
        // A mixed batch is refused on its wildcards alone.
        let mut mixed = wildcards(6, "b");
        mixed.extend(exact(1, "e"));
        assert!(too_many(m.create(d(DIST), "r2", &mixed, t0())));
        new(&mut m, d(DIST), "r3", &wildcards(5, "c"), t0());
        assert!(too_many(m.create(d(DIST), "r4", &items(&["/*"]), t0())));
        // Exact paths still go through.
        new(&mut m, d(DIST), "r5", &exact(3000, "x"), t0());
        new(
            &mut m,
            d(DIST),
            "r6",
            &wildcards(15, "d"),
            t0() + COMPLETION,
        );
    }

    /// The two limits are independent: a kind over its limit (others'
    /// invalidations, or limits lowered) refuses only batches that add to it.
    #[test]
    fn each_limit_binds_only_batches_that_add_to_it() {
        let mut m = model();
        m.add_unchecked(DIST, "console", exact(3005, "theirs"), t0())
            .unwrap();
        assert!(too_many(m.create(d(DIST), "r1", &exact(1, "a"), t0())));
        new(&mut m, d(DIST), "r1", &wildcards(15, "w"), t0());
        m.set_limits(Limits {
            exact: 5000,
            wildcard: 1,
        });
        new(&mut m, d(DIST), "r2", &exact(1, "a"), t0());
        assert!(too_many(m.create(d(DIST), "r3", &wildcards(1, "v"), t0())));
    }

    #[test]
    fn others_invalidations_take_capacity_and_complete() {
        let mut m = model();
        let mut theirs = exact(2990, "theirs");
        theirs.extend(wildcards(14, "theirs"));
        let external = m
            .add_unchecked(DIST, "console", theirs, t0())
            .unwrap()
            .id
            .clone();
        assert!(too_many(m.create(d(DIST), "r1", &exact(11, "ours"), t0())));
        new(&mut m, d(DIST), "r1", &exact(10, "ours"), t0());
        assert!(too_many(m.create(
            d(DIST),
            "r2",
            &wildcards(2, "ours"),
            t0()
        )));
        new(&mut m, d(DIST), "r2", &wildcards(1, "ours"), t0());
        assert_eq!(
            m.get(d(DIST), &external).unwrap().status(t0() + COMPLETION),
            Status::Completed
        );
        assert!(m.add_unchecked("ENOPE", "x", exact(1, "a"), t0()).is_none());
    }

    #[test]
    fn the_same_reference_and_paths_return_the_first_invalidation() {
        let mut m = model();
        let first = new(&mut m, d(DIST), "ref", &items(&["/a", "/b/*"]), t0());
        let (accepted, again) = m
            .create(d(DIST), "ref", &items(&["/b/*", "/a"]), at(5))
            .unwrap();
        assert_eq!(accepted, Accepted::Repeat);
        assert_eq!(again.id, first);
        // The first one as it was made, not remade now.
        assert_eq!(again.created_at, t0());
        assert_eq!(m.records().len(), 1);
    }

    #[test]
    fn a_repeat_is_returned_even_when_the_limits_are_full() {
        let mut m = model();
        let first = new(&mut m, d(DIST), "ref", &exact(3000, "a"), t0());
        let (accepted, again) = m.create(d(DIST), "ref", &exact(3000, "a"), t0()).unwrap();
        assert_eq!(
            (accepted, again.id.as_str()),
            (Accepted::Repeat, first.as_str())
        );
    }

    #[test]
    fn the_same_reference_with_other_paths_is_refused() {
        let mut m = model();
        let first = new(&mut m, d(DIST), "ref", &items(&["/a"]), t0());
        let err = m
            .create(d(DIST), "ref", &items(&["/a", "/b"]), t0())
            .unwrap_err();
        assert_eq!(
            err,
            Refusal::BatchAlreadyExists {
                reference: "ref".into(),
                id: first
            }
        );
        assert_eq!(err.code(), "InvalidationBatchAlreadyExists");
        // A repeated path is another batch too.
        let err = m
            .create(d(DIST), "ref", &items(&["/a", "/a"]), t0())
            .unwrap_err();
        assert_eq!(err.code(), "InvalidationBatchAlreadyExists");
        assert_eq!(m.records().len(), 1);
        // References are per distribution.
        new(&mut m, d(OTHER), "ref", &items(&["/b"]), t0());
    }

    #[test]
    fn path_rules_are_checked_on_the_text() {
        for good in [
            "/",
            "/a/b.js",
            "/a/*",
            "/*",
            "/a*",
            "/a b&c<d>'\"",
            &format!("/{}", "a".repeat(MAX_PATH_LEN - 1)),
            // Two characters of UTF-8 each: the limit counts characters.
            &format!("/{}", "é".repeat(MAX_PATH_LEN - 1)),
        ] {
            assert_eq!(check_item(good), Ok(()), "{good:?}");
        }
        for bad in [
            "a.js".to_owned(),
            "no-slash".to_owned(),
            "*".to_owned(),
            String::new(),
            "/a/*/b".to_owned(),
            "/a*b".to_owned(),
            "/a**".to_owned(),
            format!("/{}", "a".repeat(MAX_PATH_LEN)),
        ] {
            let err = check_item(&bad).unwrap_err();
            assert_eq!(err.code(), "InvalidArgument", "{bad:?}");
        }
        // One bad item refuses the batch, and nothing is made.
        let mut m = model();
        let err = m
            .create(d(DIST), "r", &items(&["/ok", "bad"]), t0())
            .unwrap_err();
        assert!(
            matches!(err, Refusal::InvalidPath { ref path, .. } if path == "bad"),
            "{err:?}"
        );
        assert!(m.records().is_empty());
    }

    /// Cache tags go in an ordinary batch, by their own rules, and count
    /// with the exact paths in flight.
    #[test]
    fn tags_are_items_counted_with_exact_paths() {
        assert_eq!(check_item("#blog"), Ok(()));
        assert_eq!(check_item("##x"), Ok(()));
        assert_eq!(check_item(&format!("#{}", "t".repeat(MAX_TAG_LEN))), Ok(()));
        for bad in [
            "#".to_owned(),
            "#a,b".to_owned(),
            "#a*".to_owned(),
            "#a b".to_owned(),
            "#caf\u{e9}".to_owned(),
            format!("#{}", "t".repeat(MAX_TAG_LEN + 1)),
        ] {
            assert_eq!(
                check_item(&bad).unwrap_err().code(),
                "InvalidArgument",
                "{bad:?}"
            );
        }
        let mut m = model();
        let mut batch = exact(2999, "e");
        batch.push("#blog".into());
        new(&mut m, d(DIST), "r1", &batch, t0());
        assert_eq!(
            m.in_flight(DIST, t0()),
            InFlight {
                exact: 3000,
                wildcard: 0
            }
        );
        assert!(too_many(m.create(d(DIST), "r2", &items(&["#news"]), t0())));
        new(&mut m, d(DIST), "r3", &wildcards(1, "w"), t0());
    }

    #[test]
    fn an_empty_batch_or_reference_is_an_invalid_argument() {
        let mut m = model();
        assert_eq!(
            m.create(d(DIST), "r", &[], t0()).unwrap_err(),
            Refusal::EmptyBatch
        );
        assert_eq!(
            m.create(d(DIST), "", &items(&["/a"]), t0()).unwrap_err(),
            Refusal::EmptyReference
        );
        assert_eq!(Refusal::EmptyBatch.code(), "InvalidArgument");
        assert_eq!(Refusal::EmptyReference.code(), "InvalidArgument");
        assert!(m.records().is_empty());
    }

    #[test]
    fn unknown_distributions_and_ids_are_refused() {
        let mut m = model();
        let err = m
            .create(d("ENOPE"), "r", &items(&["/a"]), t0())
            .unwrap_err();
        assert_eq!(err.code(), "NoSuchDistribution");
        assert_eq!(
            m.get(d("ENOPE"), "I1").unwrap_err().code(),
            "NoSuchDistribution"
        );
        assert_eq!(
            m.list(d("ENOPE"), None, None).unwrap_err().code(),
            "NoSuchDistribution"
        );
        let err = m.get(d(DIST), "I0000000000000").unwrap_err();
        assert_eq!(err.code(), "NoSuchInvalidation");
        // An id of another distribution is not found on this one.
        let other = new(&mut m, d(OTHER), "r", &items(&["/a"]), t0());
        assert_eq!(
            m.get(d(DIST), &other).unwrap_err().code(),
            "NoSuchInvalidation"
        );
    }

    #[test]
    fn list_pages_newest_first_with_markers() {
        let mut m = model();
        let mut ids: Vec<String> = (0..5)
            .map(|i| {
                new(
                    &mut m,
                    d(DIST),
                    &format!("r{i}"),
                    &items(&["/a"]),
                    at(20 * i),
                )
            })
            .collect();
        new(&mut m, d(OTHER), "x", &items(&["/a"]), t0());
        ids.reverse();
        let page_ids = |page: &Page<'_, String>| -> Vec<String> {
            page.items.iter().map(|r| r.id.clone()).collect()
        };

        let page1 = m.list(d(DIST), None, Some(2)).unwrap();
        assert_eq!(page_ids(&page1), ids[..2]);
        assert_eq!(page1.max_items, 2);
        let marker = page1.next_marker.clone().expect("more pages");
        assert_eq!(marker, ids[1]);
        let page2 = m.list(d(DIST), Some(&marker), Some(2)).unwrap();
        assert_eq!(page_ids(&page2), ids[2..4]);
        let page3 = m
            .list(d(DIST), page2.next_marker.as_deref(), Some(2))
            .unwrap();
        assert_eq!(page_ids(&page3), ids[4..]);
        assert_eq!(page3.next_marker, None);
        // A page exactly at the end has no next marker.
        let all = m.list(d(DIST), None, Some(5)).unwrap();
        assert_eq!(page_ids(&all), ids);
        assert_eq!(all.next_marker, None);
        assert!(
            all.items
                .windows(2)
                .all(|w| w[0].created_at > w[1].created_at)
        );
    }

    #[test]
    fn list_refuses_bad_arguments_and_caps_the_page() {
        let mut m = model();
        for i in 0..(MAX_LIST_ITEMS + 5) {
            new(&mut m, d(DIST), &format!("r{i}"), &items(&["/a"]), t0());
        }
        let page = m.list(d(DIST), None, Some(1000)).unwrap();
        assert_eq!(page.items.len(), MAX_LIST_ITEMS as usize);
        assert!(page.next_marker.is_some());
        let default = m.list(d(DIST), None, None).unwrap();
        assert_eq!((default.items.len(), default.max_items), (100, 100));
        assert_eq!(
            m.list(d(DIST), None, Some(0)).unwrap_err(),
            Refusal::InvalidMaxItems(0)
        );
        let err = m.list(d(DIST), Some("Inotamarker"), Some(10)).unwrap_err();
        assert_eq!(err.code(), "InvalidArgument");
        let empty = m.list(d(OTHER), None, Some(10)).unwrap();
        assert!(empty.items.is_empty());
        assert_eq!(empty.next_marker, None);
    }

    #[test]
    fn tenants_keep_the_same_rules_each_on_its_own() {
        let mut m = model();
        m.add_tenant("dt_a");
        m.add_tenant("dt_b");
        let (a, b) = (Scope::Tenant("dt_a"), Scope::Tenant("dt_b"));
        // Limits per tenant, apart from the distribution's and each other's.
        new(&mut m, a, "r1", &exact(3000, "a"), t0());
        assert!(too_many(m.create(a, "r2", &exact(1, "a"), t0())));
        new(&mut m, b, "r2", &exact(3000, "b"), t0());
        new(&mut m, d(DIST), "r2", &exact(3000, "d"), t0());
        // References per tenant.
        let first = new(&mut m, b, "ref", &wildcards(15, "w"), t0());
        let (accepted, again) = m.create(b, "ref", &wildcards(15, "w"), t0()).unwrap();
        assert_eq!(
            (accepted, again.id.as_str()),
            (Accepted::Repeat, first.as_str())
        );
        let err = m.create(b, "ref", &items(&["/x"]), t0()).unwrap_err();
        assert_eq!(err.code(), "InvalidationBatchAlreadyExists");
        // Invalidations are the tenant's only.
        assert!(m.get(b, &first).is_ok());
        assert_eq!(m.get(a, &first).unwrap_err().code(), "NoSuchInvalidation");
        assert_eq!(
            m.get(d(DIST), &first).unwrap_err().code(),
            "NoSuchInvalidation"
        );
        assert_eq!(m.list(a, None, None).unwrap().items.len(), 1);
        assert_eq!(m.list(b, None, None).unwrap().items.len(), 2);
        assert_eq!(m.records_of("dt_b").count(), 2);
        // The lifecycle is the same.
        new(&mut m, a, "r3", &exact(3000, "c"), t0() + COMPLETION);
    }

    #[test]
    fn an_unknown_tenant_is_entity_not_found_and_kinds_do_not_cross() {
        let mut m = model();
        m.add_tenant("dt_a");
        let err = m
            .create(Scope::Tenant("dt_nope"), "r", &items(&["/a"]), t0())
            .unwrap_err();
        assert_eq!(err.code(), "EntityNotFound");
        assert!(m.list(Scope::Tenant("dt_nope"), None, None).is_err());
        // A distribution is no tenant, and a tenant no distribution.
        let err = m.list(Scope::Tenant(DIST), None, None).unwrap_err();
        assert_eq!(err.code(), "EntityNotFound");
        let err = m.create(d("dt_a"), "r", &items(&["/a"]), t0()).unwrap_err();
        assert_eq!(err.code(), "NoSuchDistribution");
        assert!(m.records().is_empty());
    }

    #[test]
    fn refusals_become_the_errors_the_sdk_adapter_gives_for_their_codes() {
        use InvalidatorError as E;
        let err = |refusal: Refusal| E::from(refusal);
        assert!(matches!(
            err(Refusal::NoSuchDistribution("E".into())),
            E::NoSuchDistribution(_)
        ));
        assert!(matches!(
            err(Refusal::NoSuchTenant("dt".into())),
            E::NoSuchDistribution(t) if t.contains("EntityNotFound")
        ));
        assert!(matches!(
            err(Refusal::NoSuchInvalidation("I".into())),
            E::NoSuchInvalidation(_)
        ));
        assert!(matches!(err(Refusal::EmptyBatch), E::InvalidArgument(_)));
        assert!(matches!(
            err(Refusal::UnknownMarker("m".into())),
            E::InvalidArgument(_)
        ));
        let reused = Refusal::BatchAlreadyExists {
            reference: "r".into(),
            id: "I".into(),
        };
        assert!(matches!(err(reused), E::BatchAlreadyExists(_)));
        let full = Refusal::TooManyInProgress {
            owner: "E".into(),
            would: InFlight::default(),
            limits: Limits::AWS,
        };
        assert!(matches!(err(full), E::TooManyInProgress(_)));
    }
}
