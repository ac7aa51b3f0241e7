//! A fake CloudFront endpoint (REST-XML, API `2020-05-31`) for tests that
//! run the real `aws-sdk-cloudfront` client.
//!
//! moto completes invalidations at once and enforces none of CloudFront's
//! rules. This fake answers by the library's model of them
//! ([`cfpurge::cloudfront::model`], the same the simulated CloudFront uses:
//! lifecycle, in-flight limits, CallerReference idempotency, path rules,
//! listing), with the model's time on tokio's clock so paused-time tests
//! work. What it adds is what the model has no business knowing: the
//! REST-XML wire format, faults on cue (Throttling, 503,
//! TooManyInvalidationsInProgress, BatchTooLarge, InvalidArgument,
//! InvalidationBatchAlreadyExists, refused paths, slow answers, a
//! create-rate limit), and a record of every call for the tests to inspect.
//!
//! It answers three operations only: CreateInvalidation, GetInvalidation and
//! ListInvalidations, and their `...ForDistributionTenant` forms for the
//! tenants added with [`FakeCloudFront::add_tenant`] (moto has none of
//! them). The XML shapes follow the SDK's deserializers
//! (`protocol_serde/shape_invalidation*.rs`,
//! `shape_*_for_distribution_tenant*.rs`, `rest_xml_wrapped_errors.rs`).
//! Its own tests are in `tests/it/fake_cloudfront.rs`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use aws_sdk_cloudfront::config::retry::RetryConfig;
use aws_sdk_cloudfront::config::{
    BehaviorVersion, Credentials, Region, StalledStreamProtectionConfig,
};
use aws_sdk_cloudfront::primitives::{DateTime, DateTimeFormat};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cfpurge::cloudfront::model::{Accepted, Limits, Model, Record, Refusal, Scope};
use cfpurge::path::CfPath;
use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng as _};
use tokio::time::Instant;

/// The XML namespace of every body CloudFront sends.
const XMLNS: &str = "http://cloudfront.amazonaws.com/doc/2020-05-31/";
/// Seed of the fault RNG unless a test sets another, and of the model's
/// ids: runs repeat.
const DEFAULT_SEED: u64 = 0x00C0_FFEE;

/// The operations the fake answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    CreateInvalidation,
    GetInvalidation,
    ListInvalidations,
    CreateInvalidationForDistributionTenant,
    GetInvalidationForDistributionTenant,
    ListInvalidationsForDistributionTenant,
}

impl Operation {
    /// CreateInvalidation or its tenant form: the create-specific faults
    /// and the create rate limit apply.
    pub fn is_create(self) -> bool {
        matches!(
            self,
            Operation::CreateInvalidation | Operation::CreateInvalidationForDistributionTenant
        )
    }

    /// One of the `...ForDistributionTenant` forms.
    pub fn is_tenant(self) -> bool {
        matches!(
            self,
            Operation::CreateInvalidationForDistributionTenant
                | Operation::GetInvalidationForDistributionTenant
                | Operation::ListInvalidationsForDistributionTenant
        )
    }
}

/// Which calls a request came through: a distribution's, or a tenant's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Distribution,
    Tenant,
}

impl Kind {
    /// (create, get, list) of this kind.
    fn operations(self) -> (Operation, Operation, Operation) {
        match self {
            Kind::Distribution => (
                Operation::CreateInvalidation,
                Operation::GetInvalidation,
                Operation::ListInvalidations,
            ),
            Kind::Tenant => (
                Operation::CreateInvalidationForDistributionTenant,
                Operation::GetInvalidationForDistributionTenant,
                Operation::ListInvalidationsForDistributionTenant,
            ),
        }
    }

    /// The URL segment before the id.
    fn segment(self) -> &'static str {
        match self {
            Kind::Distribution => "distribution",
            Kind::Tenant => "distribution-tenant",
        }
    }

    /// What the model calls the id from the URL.
    fn scope(self, id: &str) -> Scope<'_> {
        match self {
            Kind::Distribution => Scope::Distribution(id),
            Kind::Tenant => Scope::Tenant(id),
        }
    }
}

/// An error the fake can be told to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// 400 `Throttling` "Rate exceeded" (any operation; the SDK retries it).
    Throttling,
    /// 503 `ServiceUnavailable` (any operation; the SDK retries it).
    ServiceUnavailable,
    /// 400 `TooManyInvalidationsInProgress` (creates only, a tenant's too;
    /// likewise the three below).
    TooManyInvalidationsInProgress,
    /// 413 `BatchTooLarge` (CreateInvalidation only).
    BatchTooLarge,
    /// 400 `InvalidArgument` (CreateInvalidation only).
    InvalidArgument,
    /// 409 `InvalidationBatchAlreadyExists` (CreateInvalidation only).
    InvalidationBatchAlreadyExists,
}

impl Fault {
    /// Every fault, in the order they are checked on a call.
    pub const ALL: [Fault; 6] = [
        Fault::Throttling,
        Fault::ServiceUnavailable,
        Fault::TooManyInvalidationsInProgress,
        Fault::BatchTooLarge,
        Fault::InvalidArgument,
        Fault::InvalidationBatchAlreadyExists,
    ];

    /// Whether this fault can hit `op`: AWS answers the create-specific
    /// errors only to CreateInvalidation.
    fn applies_to(self, op: Operation) -> bool {
        matches!(self, Fault::Throttling | Fault::ServiceUnavailable) || op.is_create()
    }

    fn error(self) -> ApiError {
        match self {
            Fault::Throttling => ApiError::throttling(),
            Fault::ServiceUnavailable => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "Service unavailable, please try again (injected)",
            ),
            Fault::TooManyInvalidationsInProgress => ApiError::new(
                StatusCode::BAD_REQUEST,
                "TooManyInvalidationsInProgress",
                "Processing your request will cause you to exceed the maximum number of \
                 in-progress wildcard invalidations (injected)",
            ),
            Fault::BatchTooLarge => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "BatchTooLarge",
                "Invalidation batch specified is too large (injected)",
            ),
            Fault::InvalidArgument => ApiError::new(
                StatusCode::BAD_REQUEST,
                "InvalidArgument",
                "Your request contains one or more invalid invalidation paths (injected)",
            ),
            Fault::InvalidationBatchAlreadyExists => ApiError::new(
                StatusCode::CONFLICT,
                "InvalidationBatchAlreadyExists",
                "The CallerReference is already in use (injected)",
            ),
        }
    }
}

/// How a recorded call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// CreateInvalidation made a new invalidation (201).
    Created { id: String },
    /// CreateInvalidation repeated a CallerReference with the same paths:
    /// the existing invalidation was returned (201), nothing new.
    Replayed { id: String },
    /// GetInvalidation or ListInvalidations answered 200.
    Ok,
    /// An error answer, injected or earned.
    Error { status: u16, code: String },
}

impl Outcome {
    /// `"Created"`, `"Replayed"`, `"Ok"` or the error code.
    pub fn code(&self) -> &str {
        match self {
            Outcome::Created { .. } => "Created",
            Outcome::Replayed { .. } => "Replayed",
            Outcome::Ok => "Ok",
            Outcome::Error { code, .. } => code,
        }
    }

    /// Whether the call was answered 2xx.
    pub fn is_success(&self) -> bool {
        !matches!(self, Outcome::Error { .. })
    }
}

/// One call the fake answered.
#[derive(Debug, Clone)]
pub struct Call {
    pub operation: Operation,
    /// The distribution id from the URL.
    pub distribution: String,
    /// When the call arrived, on tokio's clock.
    pub at: Instant,
    /// CreateInvalidation's CallerReference, when the body had one.
    pub caller_reference: Option<String>,
    /// CreateInvalidation's paths, as sent.
    pub paths: Vec<String>,
    /// The invalidation id of a GetInvalidation.
    pub invalidation_id: Option<String>,
    pub outcome: Outcome,
}

/// For each request (its paths, and when it was sent), the wait from the
/// send until every one of its paths is covered by an invalidation created
/// after it, or `None` when some path never is. The paths of one request may
/// be covered by different invalidations: a daemon may submit part of a
/// batch now and the rest later.
pub fn coverage<'a>(
    requests: impl IntoIterator<Item = (&'a [String], Instant)>,
    invalidations: &[Invalidation],
) -> Vec<Option<Duration>> {
    let mut covers: Vec<Cover> = invalidations.iter().map(Cover::new).collect();
    covers.sort_by_key(|c| c.created_at);
    requests
        .into_iter()
        .map(|(paths, at)| {
            let first_after = covers.partition_point(|c| c.created_at <= at);
            paths.iter().try_fold(Duration::ZERO, |latest, p| {
                let path = CfPath::parse_item(p).expect("requests hold valid paths and tags");
                let c = covers[first_after..].iter().find(|c| c.covers(&path))?;
                Some(latest.max(c.created_at - at))
            })
        })
        .collect()
}

/// An invalidation's paths, indexed for [`coverage`]: exact paths and tags
/// (a tag by its lower-case form: CloudFront compares tags ignoring case),
/// and wildcards, which cover paths only.
struct Cover {
    created_at: Instant,
    exact: HashSet<String>,
    wildcards: Vec<CfPath>,
}

impl Cover {
    fn new(inv: &Invalidation) -> Cover {
        let paths: Vec<CfPath> = inv
            .paths
            .iter()
            .map(|p| CfPath::parse_item(p).expect("the fake holds valid paths and tags"))
            .collect();
        Cover {
            created_at: inv.created_at,
            exact: paths
                .iter()
                .filter(|p| !p.is_wildcard())
                .map(|p| p.canonical().as_str().to_owned())
                .collect(),
            wildcards: paths.into_iter().filter(CfPath::is_wildcard).collect(),
        }
    }

    fn covers(&self, path: &CfPath) -> bool {
        self.exact.contains(path.canonical().as_str())
            || self.wildcards.iter().any(|w| w.covers(path))
    }
}

/// One invalidation the fake holds (they are never removed, like AWS's),
/// as the model has it, with its times on tokio's clock.
#[derive(Debug, Clone)]
pub struct Invalidation {
    pub id: String,
    /// The distribution's id, or the tenant's.
    pub distribution: String,
    pub caller_reference: String,
    pub paths: Vec<String>,
    /// Creation time on tokio's clock.
    pub created_at: Instant,
    /// Added by [`FakeCloudFront::add_external`], not through the API.
    pub external: bool,
}

/// A token bucket like the one AWS reportedly applies to CreateInvalidation
/// (~0.5/s, Throttling after 6–7 quick calls).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Tokens added per second.
    pub per_second: f64,
    /// Bucket size: how many creates may come at once after a quiet spell.
    pub burst: u32,
}

impl RateLimit {
    /// AWS's reported rate: 0.5 creates a second, burst of 6.
    pub const AWS: RateLimit = RateLimit {
        per_second: 0.5,
        burst: 6,
    };
}

/// Faults and slowness, changeable while the fake runs.
#[derive(Debug)]
struct FaultConfig {
    /// The next calls (that the fault applies to) answer with the fault.
    counts: BTreeMap<Fault, u32>,
    /// Chance, 0.0–1.0, that a call (that the fault applies to) answers it.
    probabilities: BTreeMap<Fault, f64>,
    /// Seeded so runs repeat.
    rng: StdRng,
    /// Wait before handling a call (a slow answer with no effect yet).
    delay_before: Duration,
    /// Wait after a call took effect, before answering (a slow answer whose
    /// effect already happened, e.g. a client timeout after the create).
    delay_after: Duration,
    /// The next CreateInvalidation calls that take effect answer this late
    /// (count, delay): a client timeout after the create happened.
    late_creates: (u32, Duration),
    /// CreateInvalidation rate limit, off unless set.
    rate_limit: Option<Bucket>,
    /// Paths CloudFront refuses with InvalidArgument whatever else is in the
    /// batch (a rule cfpurge's validation does not know about).
    refused_paths: Vec<String>,
}

#[derive(Debug)]
struct Bucket {
    limit: RateLimit,
    tokens: f64,
    refilled_at: Instant,
}

impl Bucket {
    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * self.limit.per_second).min(f64::from(self.limit.burst));
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Handle on the fake's faults; cheap to clone, changes apply to the next
/// call.
#[derive(Clone)]
pub struct Faults {
    shared: Arc<Shared>,
}

impl Faults {
    fn config(&self) -> MutexGuard<'_, FaultConfig> {
        self.shared.faults.lock().expect("fault config lock")
    }

    /// The next `n` calls that `fault` applies to answer with it.
    pub fn fail_next(&self, fault: Fault, n: u32) {
        self.config().counts.insert(fault, n);
    }

    /// Each call that `fault` applies to answers with it with chance `p`.
    pub fn fail_with_probability(&self, fault: Fault, p: f64) {
        assert!((0.0..=1.0).contains(&p), "probability {p} not in 0..=1");
        self.config().probabilities.insert(fault, p);
    }

    /// Reseeds the RNG behind the probabilities.
    pub fn seed(&self, seed: u64) {
        self.config().rng = StdRng::seed_from_u64(seed);
    }

    /// Every call waits this long before it is handled.
    pub fn set_delay(&self, delay: Duration) {
        self.config().delay_before = delay;
    }

    /// Every call waits this long after taking effect, before answering.
    pub fn set_delay_after_effect(&self, delay: Duration) {
        self.config().delay_after = delay;
    }

    /// The next `n` CreateInvalidation calls that take effect answer only
    /// after `delay`.
    pub fn set_late_creates(&self, n: u32, delay: Duration) {
        self.config().late_creates = (n, delay);
    }

    /// Turns the CreateInvalidation rate limit on (full bucket) or off.
    pub fn set_rate_limit(&self, limit: Option<RateLimit>) {
        self.config().rate_limit = limit.map(|limit| Bucket {
            limit,
            tokens: f64::from(limit.burst),
            refilled_at: Instant::now(),
        });
    }

    /// Every CreateInvalidation whose batch holds `path` answers
    /// InvalidArgument naming it, until `clear`.
    pub fn refuse_path(&self, path: &str) {
        self.config().refused_paths.push(path.to_owned());
    }

    /// No injected faults, no delays, no rate limit, no refused paths.
    pub fn clear(&self) {
        let mut config = self.config();
        config.refused_paths.clear();
        config.counts.clear();
        config.probabilities.clear();
        config.delay_before = Duration::ZERO;
        config.delay_after = Duration::ZERO;
        config.late_creates = (0, Duration::ZERO);
        config.rate_limit = None;
    }
}

/// What the fake knows, behind one lock (never held across an await).
#[derive(Debug)]
struct Store {
    /// CloudFront's state and rules.
    model: Model<String>,
    /// Ids of the invalidations [`FakeCloudFront::add_external`] made.
    external: HashSet<String>,
    calls: Vec<Call>,
    /// Peak (exact, wildcard) paths in progress per distribution.
    peaks: HashMap<String, (usize, usize)>,
    next_request: u64,
}

impl Store {
    /// (exact, wildcard) paths in progress on `dist` at `now` (wall time).
    fn inflight(&self, dist: &str, now: SystemTime) -> (usize, usize) {
        let counts = self.model.in_flight(dist, now);
        (counts.exact, counts.wildcard)
    }

    /// Raises `dist`'s peak to what is in flight at `now` (wall time).
    fn note_peak(&mut self, dist: &str, now: SystemTime) {
        let (exact, wildcard) = self.inflight(dist, now);
        let peak = self.peaks.entry(dist.to_owned()).or_default();
        peak.0 = peak.0.max(exact);
        peak.1 = peak.1.max(wildcard);
    }
}

struct Shared {
    store: Mutex<Store>,
    faults: Mutex<FaultConfig>,
    endpoint: String,
    /// Wall-clock time at start, and tokio's clock then: the model's time
    /// (and CreateTime) is derived from tokio's clock so paused-time tests
    /// see consistent times.
    epoch: (SystemTime, Instant),
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().expect("fake store lock")
    }

    /// Tokio's `at` as the model's wall time.
    fn wall(&self, at: Instant) -> SystemTime {
        self.epoch.0 + at.saturating_duration_since(self.epoch.1)
    }

    /// Now as the model's wall time.
    fn now(&self) -> SystemTime {
        self.wall(Instant::now())
    }

    /// The model's wall time on tokio's clock.
    fn instant(&self, wall: SystemTime) -> Instant {
        self.epoch.1 + wall.duration_since(self.epoch.0).unwrap_or_default()
    }

    /// A record as the tests see it.
    fn view(&self, record: &Record<String>, external: &HashSet<String>) -> Invalidation {
        Invalidation {
            id: record.id.clone(),
            distribution: record.owner.clone(),
            caller_reference: record.caller_reference.clone(),
            paths: record.paths.clone(),
            created_at: self.instant(record.created_at),
            external: external.contains(&record.id),
        }
    }

    fn record(&self, call: Call) {
        self.store().calls.push(call);
    }
}

/// A running fake CloudFront on `127.0.0.1`, stopped when dropped.
pub struct FakeCloudFront {
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeCloudFront {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeCloudFront {
    /// Starts the fake on a free loopback port, in the current tokio
    /// runtime. New invalidations stay `InProgress` for `in_progress_for`.
    pub async fn start(in_progress_for: Duration) -> FakeCloudFront {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake cloudfront");
        let addr = listener.local_addr().expect("fake cloudfront address");
        let shared = Arc::new(Shared {
            store: Mutex::new(Store {
                model: Model::new(in_progress_for, Limits::AWS, DEFAULT_SEED),
                external: HashSet::new(),
                calls: Vec::new(),
                peaks: HashMap::new(),
                next_request: 0,
            }),
            faults: Mutex::new(FaultConfig {
                counts: BTreeMap::new(),
                probabilities: BTreeMap::new(),
                rng: StdRng::seed_from_u64(DEFAULT_SEED),
                delay_before: Duration::ZERO,
                delay_after: Duration::ZERO,
                late_creates: (0, Duration::ZERO),
                rate_limit: None,
                refused_paths: Vec::new(),
            }),
            endpoint: format!("http://{addr}"),
            epoch: (SystemTime::now(), Instant::now()),
        });
        let app = Router::new()
            .route(
                "/2020-05-31/distribution/{dist}/invalidation",
                get(list_invalidations).post(create_invalidation),
            )
            .route(
                "/2020-05-31/distribution/{dist}/invalidation/{id}",
                get(get_invalidation),
            )
            .route(
                "/2020-05-31/distribution-tenant/{tenant}/invalidation",
                get(list_invalidations_for_tenant).post(create_invalidation_for_tenant),
            )
            .route(
                "/2020-05-31/distribution-tenant/{tenant}/invalidation/{id}",
                get(get_invalidation_for_tenant),
            )
            .with_state(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("fake cloudfront server");
        });
        FakeCloudFront { shared, server }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        self.shared.endpoint.clone()
    }

    /// Makes `id` (`dt_...`) a known distribution tenant, reached only
    /// through the tenant calls (others answer EntityNotFound), with its
    /// own in-flight limits. Its invalidations, in-flight counts and peaks
    /// are read by its id with the methods below, as a distribution's.
    pub fn add_tenant(&self, id: &str) {
        self.shared.store().model.add_tenant(id);
    }

    /// Makes `id` a known distribution (others answer NoSuchDistribution).
    pub fn add_distribution(&self, id: &str) {
        self.shared.store().model.add_distribution(id);
    }

    /// How long invalidations created from now on stay in progress.
    pub fn set_in_progress_for(&self, duration: Duration) {
        self.shared.store().model.set_completion(duration);
    }

    /// Per-distribution in-flight limits (exact, wildcard); AWS's
    /// ([`Limits::AWS`]) are the default.
    pub fn set_limits(&self, exact: usize, wildcard: usize) {
        self.shared
            .store()
            .model
            .set_limits(Limits { exact, wildcard });
    }

    /// Completes every invalidation now.
    pub fn complete_all(&self) {
        let now = self.shared.now();
        self.shared.store().model.complete_all(now);
    }

    /// Someone else's invalidation, in progress, occupying capacity. It
    /// bypasses the limits, path rules and faults. Panics on an unknown
    /// distribution or tenant.
    pub fn add_external(&self, dist: &str, paths: &[&str], caller_reference: &str) -> Invalidation {
        assert!(
            !caller_reference.starts_with("cfpurge-"),
            "external invalidations must not look like cfpurge's"
        );
        let now = self.shared.now();
        let paths = paths.iter().map(|p| (*p).to_owned()).collect();
        let mut store = self.shared.store();
        let record = store
            .model
            .add_unchecked(dist, caller_reference, paths, now)
            .unwrap_or_else(|| panic!("unknown distribution {dist}"))
            .clone();
        store.external.insert(record.id.clone());
        store.note_peak(dist, now);
        self.shared.view(&record, &store.external)
    }

    /// The fault handle.
    pub fn faults(&self) -> Faults {
        Faults {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Every call answered so far, oldest first.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.store().calls.clone()
    }

    /// Calls of one operation, oldest first.
    pub fn calls_of(&self, operation: Operation) -> Vec<Call> {
        self.shared
            .store()
            .calls
            .iter()
            .filter(|c| c.operation == operation)
            .cloned()
            .collect()
    }

    /// The invalidations of a distribution, oldest first, externals included.
    pub fn invalidations(&self, dist: &str) -> Vec<Invalidation> {
        let store = self.shared.store();
        store
            .model
            .records_of(dist)
            .map(|r| self.shared.view(r, &store.external))
            .collect()
    }

    /// How many invalidations were made (through the API or as externals)
    /// with each CallerReference, over all distributions.
    pub fn invalidations_per_caller_reference(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for record in self.shared.store().model.records() {
            *counts.entry(record.caller_reference.clone()).or_default() += 1;
        }
        counts
    }

    /// (exact, wildcard) paths in progress on `dist` now.
    pub fn inflight(&self, dist: &str) -> (usize, usize) {
        let now = self.shared.now();
        self.shared.store().inflight(dist, now)
    }

    /// The most (exact, wildcard) paths ever in progress at once on `dist`,
    /// externals included.
    pub fn peak_inflight(&self, dist: &str) -> (usize, usize) {
        self.shared
            .store()
            .peaks
            .get(dist)
            .copied()
            .unwrap_or_default()
    }

    /// When each CreateInvalidation answered 201 (new or replayed), oldest
    /// first, to check a daemon's pace.
    pub fn accepted_create_times(&self) -> Vec<Instant> {
        self.shared
            .store()
            .calls
            .iter()
            .filter(|c| c.operation.is_create() && c.outcome.is_success())
            .map(|c| c.at)
            .collect()
    }

    /// A client of this fake that does not retry: each SDK call is one HTTP
    /// call, so injected faults reach the caller.
    pub fn client(&self) -> aws_sdk_cloudfront::Client {
        self.client_with(RetryConfig::standard().with_max_attempts(1))
    }

    /// A client with the SDK's default retries (3 attempts, Throttling and
    /// 503 retried).
    pub fn client_with_retries(&self) -> aws_sdk_cloudfront::Client {
        self.client_with(RetryConfig::standard())
    }

    /// A client that does not retry and gives up on a call after
    /// `timeout`, as the daemon's own client does after its timeouts.
    pub fn client_with_timeout(&self, timeout: Duration) -> aws_sdk_cloudfront::Client {
        let config = self
            .config_with(RetryConfig::standard().with_max_attempts(1))
            .timeout_config(
                aws_sdk_cloudfront::config::timeout::TimeoutConfig::builder()
                    .operation_timeout(timeout)
                    .build(),
            )
            .build();
        aws_sdk_cloudfront::Client::from_conf(config)
    }

    fn client_with(&self, retry: RetryConfig) -> aws_sdk_cloudfront::Client {
        aws_sdk_cloudfront::Client::from_conf(self.config_with(retry).build())
    }

    fn config_with(&self, retry: RetryConfig) -> aws_sdk_cloudfront::config::Builder {
        aws_sdk_cloudfront::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(
                "AKIDFAKE",
                "fake-secret",
                None,
                None,
                "fake",
            ))
            .endpoint_url(self.endpoint())
            .retry_config(retry)
            // The fake is local; with paused tokio time the throughput
            // checks could misfire.
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
    }
}

/// A CloudFront error answer.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn throttling() -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "Throttling", "Rate exceeded")
    }

    fn invalid_argument(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "InvalidArgument", message)
    }

    /// The model's refusal with the HTTP status AWS answers its code with.
    fn refused(refusal: &Refusal) -> ApiError {
        let status = match refusal {
            Refusal::NoSuchDistribution(_)
            | Refusal::NoSuchTenant(_)
            | Refusal::NoSuchInvalidation(_) => StatusCode::NOT_FOUND,
            Refusal::BatchAlreadyExists { .. } => StatusCode::CONFLICT,
            Refusal::EmptyReference
            | Refusal::EmptyBatch
            | Refusal::InvalidPath { .. }
            | Refusal::TooManyInProgress { .. }
            | Refusal::InvalidMaxItems(_)
            | Refusal::UnknownMarker(_) => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, refusal.code(), refusal.to_string())
    }

    fn outcome(&self) -> Outcome {
        Outcome::Error {
            status: self.status.as_u16(),
            code: self.code.to_owned(),
        }
    }

    fn into_response(self, request_id: &str) -> Response {
        let kind = if self.status.is_server_error() {
            "Receiver"
        } else {
            "Sender"
        };
        let body = format!(
            "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"{XMLNS}\"><Error><Type>{kind}</Type>\
             <Code>{}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
            self.code,
            escape(&self.message),
            escape(request_id),
        );
        xml_response(self.status, request_id, body)
    }
}

fn xml_response(status: StatusCode, request_id: &str, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("x-amz-request-id", value);
    }
    response
}

impl FaultConfig {
    /// The injected fault this call answers with, if any. Counts go before
    /// probabilities; both in [`Fault::ALL`]'s order.
    fn roll(&mut self, op: Operation) -> Option<Fault> {
        for fault in Fault::ALL.into_iter().filter(|f| f.applies_to(op)) {
            if let Some(n) = self.counts.get_mut(&fault).filter(|n| **n > 0) {
                *n -= 1;
                return Some(fault);
            }
        }
        for fault in Fault::ALL.into_iter().filter(|f| f.applies_to(op)) {
            let p = self.probabilities.get(&fault).copied().unwrap_or(0.0);
            if p > 0.0 && self.rng.random_bool(p) {
                return Some(fault);
            }
        }
        None
    }
}

/// What every call does first: `delay_before`, then an injected fault,
/// then (creates only) the rate limit.
async fn preamble(shared: &Shared, op: Operation) -> Result<(), ApiError> {
    let delay = shared
        .faults
        .lock()
        .expect("fault config lock")
        .delay_before;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut config = shared.faults.lock().expect("fault config lock");
    if let Some(fault) = config.roll(op) {
        return Err(fault.error());
    }
    let throttled = op.is_create()
        && config
            .rate_limit
            .as_mut()
            .is_some_and(|bucket| !bucket.take(Instant::now()));
    if throttled {
        return Err(ApiError::throttling());
    }
    Ok(())
}

/// Waits `delay_after`: the call's effect has happened, the answer is late.
async fn postamble(shared: &Shared) {
    let delay = shared.faults.lock().expect("fault config lock").delay_after;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

/// A create's [`postamble`], plus the late answers of `late_creates`.
async fn create_postamble(shared: &Shared, took_effect: bool) {
    let late = {
        let mut config = shared.faults.lock().expect("fault config lock");
        let (n, delay) = config.late_creates;
        if took_effect && n > 0 {
            config.late_creates.0 -= 1;
            delay
        } else {
            Duration::ZERO
        }
    };
    postamble(shared).await;
    if !late.is_zero() {
        tokio::time::sleep(late).await;
    }
}

fn request_id(shared: &Shared) -> String {
    let mut store = shared.store();
    store.next_request += 1;
    format!("fake-request-{:08}", store.next_request)
}

/// A CreateInvalidation body, as far as it could be read.
#[derive(Debug, Default)]
struct Batch {
    caller_reference: Option<String>,
    quantity: Option<String>,
    paths: Vec<String>,
}

/// Reads the few elements of an `InvalidationBatch` the fake needs. The SDK
/// writes flat, attribute-free elements, so a search for tags suffices.
fn parse_batch(body: &[u8]) -> Result<Batch, ApiError> {
    if body.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "MissingBody",
            "This operation requires a body.",
        ));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::invalid_argument("The body is not UTF-8."))?;
    let paths_el = elements(text, "Paths").into_iter().next().unwrap_or("");
    Ok(Batch {
        caller_reference: elements(text, "CallerReference")
            .into_iter()
            .next()
            .map(unescape),
        quantity: elements(paths_el, "Quantity")
            .into_iter()
            .next()
            .map(|q| q.trim().to_owned()),
        paths: elements(paths_el, "Path")
            .into_iter()
            .map(unescape)
            .collect(),
    })
}

/// The raw contents of every `<name>…</name>` in `text` (also `<name/>`).
fn elements<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let empty = format!("<{name}/>");
    let mut found = Vec::new();
    let mut rest = text;
    loop {
        let next_open = rest.find(&open);
        let next_empty = rest.find(&empty);
        match (next_open, next_empty) {
            (Some(o), e) if e.is_none_or(|e| o < e) => {
                let start = o + open.len();
                let Some(len) = rest[start..].find(&close) else {
                    break;
                };
                found.push(&rest[start..start + len]);
                rest = &rest[start + len + close.len()..];
            }
            (_, Some(e)) => {
                found.push("");
                rest = &rest[e + empty.len()..];
            }
            _ => break,
        }
    }
    found
}

/// Undoes XML escaping: the five named entities and numeric references
/// (the SDK writes control characters as `&#xA;`).
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest.find(';') else {
            break;
        };
        let entity = &rest[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .map(|hex| u32::from_str_radix(hex, 16))
                .or_else(|| entity.strip_prefix('#').map(str::parse::<u32>))
                .and_then(Result::ok)
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Escapes text for an XML element.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The wire's own checks of a parsed batch: `Paths/Quantity` present and
/// matching the items. CloudFront's rules on the batch are the model's.
fn check_quantity(batch: &Batch) -> Result<(), ApiError> {
    let quantity: usize = batch
        .quantity
        .as_deref()
        .and_then(|q| q.parse().ok())
        .ok_or_else(|| ApiError::invalid_argument("Paths/Quantity is missing or invalid."))?;
    if quantity != batch.paths.len() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "InconsistentQuantities",
            "The value of Quantity and the size of Items don't match.",
        ));
    }
    Ok(())
}

/// The effect of a CreateInvalidation once faults and the rate limit let it
/// through: the model's answer, unless a refused path (a fault) is in the
/// batch.
fn create(
    shared: &Shared,
    kind: Kind,
    dist: &str,
    batch: &Batch,
) -> Result<(Record<String>, Accepted), ApiError> {
    let scope = kind.scope(dist);
    shared
        .store()
        .model
        .check_scope(scope)
        .map_err(|r| ApiError::refused(&r))?;
    check_quantity(batch)?;
    let refused = {
        let faults = shared.faults.lock().expect("fault config lock");
        batch
            .paths
            .iter()
            .find(|p| faults.refused_paths.iter().any(|r| r == *p))
            .cloned()
    };
    if let Some(path) = refused {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            format!("The path {path} is not valid."),
        ));
    }
    let now = shared.now();
    let mut store = shared.store();
    let reference = batch.caller_reference.as_deref().unwrap_or("");
    let (accepted, record) = store
        .model
        .create(scope, reference, &batch.paths, now)
        .map(|(accepted, record)| (accepted, record.clone()))
        .map_err(|r| ApiError::refused(&r))?;
    if accepted == Accepted::New {
        store.note_peak(dist, now);
    }
    Ok((record, accepted))
}

/// An `Invalidation` body, with the status at `now` (wall time).
fn invalidation_xml(record: &Record<String>, now: SystemTime) -> String {
    let items: String = record
        .paths
        .iter()
        .map(|p| format!("<Path>{}</Path>", escape(p)))
        .collect();
    format!(
        "<?xml version=\"1.0\"?>\n<Invalidation xmlns=\"{XMLNS}\"><Id>{}</Id><Status>{}</Status>\
         <CreateTime>{}</CreateTime><InvalidationBatch><Paths><Quantity>{}</Quantity>\
         <Items>{items}</Items></Paths><CallerReference>{}</CallerReference>\
         </InvalidationBatch></Invalidation>",
        escape(&record.id),
        record.status(now),
        create_time(record),
        record.paths.len(),
        escape(&record.caller_reference),
    )
}

fn create_time(record: &Record<String>) -> String {
    DateTime::from(record.created_at)
        .fmt(DateTimeFormat::DateTime)
        .expect("a time after the epoch formats")
}

async fn create_invalidation(
    State(shared): State<Arc<Shared>>,
    Path(dist): Path<String>,
    body: Bytes,
) -> Response {
    create_for(shared, Kind::Distribution, dist, body).await
}

async fn create_invalidation_for_tenant(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Response {
    create_for(shared, Kind::Tenant, tenant, body).await
}

async fn create_for(shared: Arc<Shared>, kind: Kind, dist: String, body: Bytes) -> Response {
    let (operation, _, _) = kind.operations();
    let at = Instant::now();
    let request_id = request_id(&shared);
    let batch = parse_batch(&body);
    let result = match preamble(&shared, operation).await {
        Ok(()) => batch
            .as_ref()
            .map_err(|e| ApiError::new(e.status, e.code, e.message.clone()))
            .and_then(|batch| create(&shared, kind, &dist, batch)),
        Err(e) => Err(e),
    };
    let batch = batch.unwrap_or_default();
    let outcome = match &result {
        Ok((record, Accepted::New)) => Outcome::Created {
            id: record.id.clone(),
        },
        Ok((record, Accepted::Repeat)) => Outcome::Replayed {
            id: record.id.clone(),
        },
        Err(e) => e.outcome(),
    };
    shared.record(Call {
        operation,
        distribution: dist.clone(),
        at,
        caller_reference: batch.caller_reference,
        paths: batch.paths,
        invalidation_id: None,
        outcome,
    });
    create_postamble(&shared, result.is_ok()).await;
    match result {
        Ok((record, _)) => {
            let body = invalidation_xml(&record, shared.now());
            let mut response = xml_response(StatusCode::CREATED, &request_id, body);
            let location = format!(
                "{}/2020-05-31/{}/{dist}/invalidation/{}",
                shared.endpoint,
                kind.segment(),
                record.id
            );
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
        Err(e) => e.into_response(&request_id),
    }
}

async fn get_invalidation(
    State(shared): State<Arc<Shared>>,
    Path((dist, id)): Path<(String, String)>,
) -> Response {
    get_for(shared, Kind::Distribution, dist, id).await
}

async fn get_invalidation_for_tenant(
    State(shared): State<Arc<Shared>>,
    Path((tenant, id)): Path<(String, String)>,
) -> Response {
    get_for(shared, Kind::Tenant, tenant, id).await
}

async fn get_for(shared: Arc<Shared>, kind: Kind, dist: String, id: String) -> Response {
    let (_, operation, _) = kind.operations();
    let at = Instant::now();
    let request_id = request_id(&shared);
    let result = preamble(&shared, operation).await.and_then(|()| {
        shared
            .store()
            .model
            .get(kind.scope(&dist), &id)
            .cloned()
            .map_err(|r| ApiError::refused(&r))
    });
    shared.record(Call {
        operation,
        distribution: dist,
        at,
        caller_reference: None,
        paths: Vec::new(),
        invalidation_id: Some(id),
        outcome: result
            .as_ref()
            .map_or_else(ApiError::outcome, |_| Outcome::Ok),
    });
    postamble(&shared).await;
    match result {
        Ok(record) => {
            let body = invalidation_xml(&record, shared.now());
            xml_response(StatusCode::OK, &request_id, body)
        }
        Err(e) => e.into_response(&request_id),
    }
}

async fn list_invalidations(
    State(shared): State<Arc<Shared>>,
    Path(dist): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    list_for(shared, Kind::Distribution, dist, query).await
}

async fn list_invalidations_for_tenant(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    list_for(shared, Kind::Tenant, tenant, query).await
}

async fn list_for(
    shared: Arc<Shared>,
    kind: Kind,
    dist: String,
    query: HashMap<String, String>,
) -> Response {
    let (_, _, operation) = kind.operations();
    let at = Instant::now();
    let request_id = request_id(&shared);
    let result = match preamble(&shared, operation).await {
        Ok(()) => list(&shared, kind, &dist, &query),
        Err(e) => Err(e),
    };
    shared.record(Call {
        operation,
        distribution: dist,
        at,
        caller_reference: None,
        paths: Vec::new(),
        invalidation_id: None,
        outcome: result
            .as_ref()
            .map_or_else(ApiError::outcome, |_| Outcome::Ok),
    });
    postamble(&shared).await;
    match result {
        Ok(body) => xml_response(StatusCode::OK, &request_id, body),
        Err(e) => e.into_response(&request_id),
    }
}

/// One ListInvalidations page as the model cuts it; `Marker` is the id
/// of the last invalidation of the previous page (its `NextMarker`), and an
/// empty one is none.
fn list(
    shared: &Shared,
    kind: Kind,
    dist: &str,
    query: &HashMap<String, String>,
) -> Result<String, ApiError> {
    let max_items = match query.get("MaxItems") {
        None => None,
        Some(text) => Some(
            text.parse::<i32>()
                .map_err(|_| ApiError::invalid_argument("MaxItems must be an integer."))?,
        ),
    };
    let marker = query.get("Marker").map(String::as_str).unwrap_or("");
    let now = shared.now();
    let store = shared.store();
    let page = store
        .model
        .list(
            kind.scope(dist),
            Some(marker).filter(|m| !m.is_empty()),
            max_items,
        )
        .map_err(|r| ApiError::refused(&r))?;
    let items: String = page
        .items
        .iter()
        .map(|record| {
            format!(
                "<InvalidationSummary><Id>{}</Id><CreateTime>{}</CreateTime>\
                 <Status>{}</Status></InvalidationSummary>",
                escape(&record.id),
                create_time(record),
                record.status(now),
            )
        })
        .collect();
    let truncated = page.next_marker.is_some();
    let next_marker = match &page.next_marker {
        Some(next) => format!("<NextMarker>{}</NextMarker>", escape(next)),
        None => String::new(),
    };
    Ok(format!(
        "<?xml version=\"1.0\"?>\n<InvalidationList xmlns=\"{XMLNS}\"><Marker>{}</Marker>\
         {next_marker}<MaxItems>{}</MaxItems><IsTruncated>{truncated}</IsTruncated>\
         <Quantity>{}</Quantity><Items>{items}</Items></InvalidationList>",
        escape(marker),
        page.max_items,
        page.items.len(),
    ))
}
