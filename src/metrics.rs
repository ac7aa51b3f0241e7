//! Prometheus metrics: one [`Metrics`] registers every series of docs/interface.md
//! into a registry handed in by the caller, and the stages record into it
//! through small typed methods. Label values come from fixed sets only (the
//! configured aliases, [`RejectReason`], [`InvalidatorError::code_label`],
//! [`PathKind`], the SQS queue states), never from paths or error text.
//!
//! Names carry the `cfpurge_` prefix themselves so that the registry stays
//! unprefixed and the process collector keeps its standard names
//! (`process_cpu_seconds_total`), which the usual dashboards expect.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{
    GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::cloudfront::invalidator::InvalidatorError;
use crate::decode::RejectReason;
use crate::path::PathKind;
use crate::status::RoleWatch;

/// The `Content-Type` of [`encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// Both path kinds, so that their series exist from the start.
const KINDS: [PathKind; 2] = [PathKind::Exact, PathKind::Wildcard];

/// The third `kind` of `cfpurge_paths_submitted_total`: cache tags, billed
/// like paths. In flight they count as exact paths (CloudFront's limits),
/// so `cfpurge_inflight_paths` has no such kind.
const TAG_KIND: &str = "tag";

/// The `state` label values of `cfpurge_queue_messages`.
const QUEUE_STATES: [&str; 3] = ["visible", "in_flight", "delayed"];

/// The `account` label of the budget of distributions that name no
/// account: the only one without `[accounts]`.
pub use crate::config::DEFAULT_ACCOUNT;

/// Request to accepted invalidation: coalescing waits from well under a
/// second up to hours when the budget or CloudFront's in-flight limits hold
/// paths back.
const REQUEST_TO_INVALIDATION_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
    14400.0,
];

/// Created to Completed: CloudFront takes seconds to minutes, rarely longer.
const COMPLETION_BUCKETS: &[f64] = &[
    5.0, 10.0, 15.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
    7200.0,
];

/// Every cfpurge metric, registered into one registry.
///
/// Handles are reference-counted, so a clone records into the same series.
/// A distribution alias not given to [`Metrics::new`] does not panic: its
/// series are created on first use (aliases come from the configuration, so
/// their number stays bounded).
#[derive(Clone, Debug)]
pub struct Metrics {
    /// `cfpurge_messages_received_total`
    messages_received: IntCounter,
    /// `cfpurge_messages_deleted_total`
    messages_deleted: IntCounter,
    /// `cfpurge_messages_rejected_total{reason}`
    messages_rejected: IntCounterVec,
    /// `cfpurge_paths_requested_total{distribution}`
    paths_requested: IntCounterVec,
    /// `cfpurge_paths_submitted_total{distribution,kind}`
    paths_submitted: IntCounterVec,
    /// `cfpurge_paths_skipped_total{distribution}`
    paths_skipped: IntCounterVec,
    /// `cfpurge_paths_blast_total{distribution}`
    paths_blast: IntCounterVec,
    /// `cfpurge_catalog_objects{distribution}`
    catalog_objects: IntGaugeVec,
    /// `cfpurge_invalidations_created_total{distribution}`
    invalidations_created: IntCounterVec,
    /// `cfpurge_invalidations_completed_total{distribution}`
    invalidations_completed: IntCounterVec,
    /// `cfpurge_cloudfront_errors_total{distribution,code}`
    cloudfront_errors: IntCounterVec,
    /// `cfpurge_pending_paths{distribution}`
    pending_paths: IntGaugeVec,
    /// `cfpurge_pending_messages`
    pending_messages: IntGauge,
    /// `cfpurge_oldest_pending_seconds{distribution}`; a float gauge because
    /// sub-second ages matter when batching windows are short.
    oldest_pending_seconds: GaugeVec,
    /// `cfpurge_inflight_paths{distribution,kind}`
    inflight_paths: IntGaugeVec,
    /// `cfpurge_queue_messages{state}`
    queue_messages: IntGaugeVec,
    /// `cfpurge_budget_paths_limit{account}`
    budget_paths_limit: IntGaugeVec,
    /// `cfpurge_budget_paths_used{account}`
    budget_paths_used: IntGaugeVec,
    /// `cfpurge_budget_paths_allowed{account}`
    budget_paths_allowed: IntGaugeVec,
    /// `cfpurge_budget_price{account}`
    budget_price: GaugeVec,
    /// `cfpurge_request_to_invalidation_seconds{distribution}`
    request_to_invalidation: ShownHistogram,
    /// `cfpurge_invalidation_completion_seconds{distribution}`
    invalidation_completion: ShownHistogram,
    /// `cfpurge_leader`, worked out at each scrape.
    leader: LeaderGauge,
    /// `cfpurge_leader_changes_total`
    leader_changes: IntCounter,
    /// `cfpurge_lease_invalid`
    lease_invalid: IntGauge,
    /// `cfpurge_verify_total{distribution,result}`
    verify: IntCounterVec,
    /// `cfpurge_warm_total{distribution,result}`
    warm: IntCounterVec,
}

/// The `result` values of `cfpurge_verify_total`.
pub const VERIFY_RESULTS: [&str; 3] = ["fresh", "stale", "error"];

/// The `result` values of `cfpurge_warm_total`.
pub const WARM_RESULTS: [&str; 2] = ["ok", "error"];

impl Metrics {
    /// Registers every metric (and, on Linux, the standard process
    /// collector) into `registry`, sets `cfpurge_build_info` to 1 and creates
    /// each labelled series at zero for every alias in `distributions` and
    /// every fixed label value, so that `rate()` works from the first scrape.
    ///
    /// Fails if a name is already registered in `registry`, e.g. when called
    /// twice on the same registry.
    pub fn new(registry: &Registry, distributions: &[&str]) -> Result<Metrics, prometheus::Error> {
        let build_info = register(
            registry,
            IntGaugeVec::new(
                Opts::new("cfpurge_build_info", "Always 1; the version is a label."),
                &["version"],
            )?,
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        let metrics = Metrics {
            messages_received: register(
                registry,
                IntCounter::new(
                    "cfpurge_messages_received_total",
                    "SQS messages received, duplicates included.",
                )?,
            )?,
            messages_deleted: register(
                registry,
                IntCounter::new(
                    "cfpurge_messages_deleted_total",
                    "Messages deleted after their paths were covered.",
                )?,
            )?,
            messages_rejected: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "cfpurge_messages_rejected_total",
                        "Messages rejected, by reason.",
                    ),
                    &["reason"],
                )?,
            )?,
            paths_requested: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "cfpurge_paths_requested_total",
                        "Paths in accepted requests.",
                    ),
                    &["distribution"],
                )?,
            )?,
            paths_submitted: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "cfpurge_paths_submitted_total",
                        "Paths sent in CreateInvalidation (billed).",
                    ),
                    &["distribution", "kind"],
                )?,
            )?,
            paths_skipped: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "cfpurge_paths_skipped_total",
                        "Requested paths dropped by routing.skip.",
                    ),
                    &["distribution"],
                )?,
            )?,
            paths_blast: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "cfpurge_paths_blast_total",
                        "Catalog objects purged by submitted wildcards that nobody requested.",
                    ),
                    &["distribution"],
                )?,
            )?,
            catalog_objects: register(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "cfpurge_catalog_objects",
                        "Objects in the distribution's catalog.",
                    ),
                    &["distribution"],
                )?,
            )?,
            invalidations_created: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "cfpurge_invalidations_created_total",
                        "Invalidations CloudFront accepted.",
                    ),
                    &["distribution"],
                )?,
            )?,
            invalidations_completed: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "cfpurge_invalidations_completed_total",
                        "Invalidations seen Completed.",
                    ),
                    &["distribution"],
                )?,
            )?,
            cloudfront_errors: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "cfpurge_cloudfront_errors_total",
                        "Failed CloudFront calls, by error code.",
                    ),
                    &["distribution", "code"],
                )?,
            )?,
            pending_paths: register(
                registry,
                IntGaugeVec::new(
                    Opts::new("cfpurge_pending_paths", "Entries waiting to be submitted."),
                    &["distribution"],
                )?,
            )?,
            pending_messages: register(
                registry,
                IntGauge::new(
                    "cfpurge_pending_messages",
                    "Received messages not yet deleted.",
                )?,
            )?,
            leader: register(
                registry,
                LeaderGauge {
                    gauge: IntGauge::new(
                        "cfpurge_leader",
                        "1 while this replica holds the lease (always 1 without coordination).",
                    )?,
                    // A replica until told otherwise: 0 rather than a
                    // leader that is not.
                    role: RoleWatch::standby(),
                },
            )?,
            leader_changes: register(
                registry,
                IntCounter::new(
                    "cfpurge_leader_changes_total",
                    "Times this replica became leader or stood down.",
                )?,
            )?,
            lease_invalid: register(
                registry,
                IntGauge::new(
                    "cfpurge_lease_invalid",
                    "1 while the lease item is one no replica can take over (expiry too far ahead, last fencing number).",
                )?,
            )?,
            oldest_pending_seconds: register(
                registry,
                GaugeVec::new(
                    Opts::new(
                        "cfpurge_oldest_pending_seconds",
                        "Age of the oldest waiting entry.",
                    ),
                    &["distribution"],
                )?,
            )?,
            inflight_paths: register(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "cfpurge_inflight_paths",
                        "Paths in progress at CloudFront, others' included.",
                    ),
                    &["distribution", "kind"],
                )?,
            )?,
            queue_messages: register(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "cfpurge_queue_messages",
                        "SQS approximate message counts, by state.",
                    ),
                    &["state"],
                )?,
            )?,
            budget_paths_limit: register(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "cfpurge_budget_paths_limit",
                        "Configured monthly path budget, by AWS account.",
                    ),
                    &["account"],
                )?,
            )?,
            budget_paths_used: register(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "cfpurge_budget_paths_used",
                        "Paths spent this month (ledger), by AWS account.",
                    ),
                    &["account"],
                )?,
            )?,
            budget_paths_allowed: register(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "cfpurge_budget_paths_allowed",
                        "Paths the pacing allows to have been spent by now, by AWS account.",
                    ),
                    &["account"],
                )?,
            )?,
            budget_price: register(
                registry,
                GaugeVec::new(
                    Opts::new(
                        "cfpurge_budget_price",
                        "Blast one billed path is worth for the batch planned now (the budget's price).",
                    ),
                    &["account"],
                )?,
            )?,
            request_to_invalidation: register(
                registry,
                ShownHistogram::new(
                    "cfpurge_request_to_invalidation_seconds",
                    "From receive to CreateInvalidation accepted.",
                    REQUEST_TO_INVALIDATION_BUCKETS,
                )?,
            )?,
            invalidation_completion: register(
                registry,
                ShownHistogram::new(
                    "cfpurge_invalidation_completion_seconds",
                    "From invalidation created to Completed.",
                    COMPLETION_BUCKETS,
                )?,
            )?,
            verify: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "cfpurge_verify_total",
                        "Edge checks of purged paths after Completed, by result (fresh, stale, error).",
                    ),
                    &["distribution", "result"],
                )?,
            )?,
            warm: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "cfpurge_warm_total",
                        "Warming requests of purged paths after Completed, by result (ok, error).",
                    ),
                    &["distribution", "result"],
                )?,
            )?,
        };

        register_process_collector(registry)?;

        for reason in RejectReason::ALL {
            metrics
                .messages_rejected
                .with_label_values(&[reason.as_str()]);
        }
        for state in QUEUE_STATES {
            metrics.queue_messages.with_label_values(&[state]);
        }
        metrics.budget_price.with_label_values(&[DEFAULT_ACCOUNT]);
        for gauge in [
            &metrics.budget_paths_limit,
            &metrics.budget_paths_used,
            &metrics.budget_paths_allowed,
        ] {
            gauge.with_label_values(&[DEFAULT_ACCOUNT]);
        }
        for &alias in distributions {
            metrics.create_distribution(alias);
        }
        Ok(metrics)
    }

    /// Creates every series of one distribution at zero.
    fn create_distribution(&self, alias: &str) {
        self.paths_requested.with_label_values(&[alias]);
        self.paths_skipped.with_label_values(&[alias]);
        self.paths_blast.with_label_values(&[alias]);
        self.catalog_objects.with_label_values(&[alias]);
        self.invalidations_created.with_label_values(&[alias]);
        self.invalidations_completed.with_label_values(&[alias]);
        self.pending_paths.with_label_values(&[alias]);
        self.oldest_pending_seconds.with_label_values(&[alias]);
        self.request_to_invalidation.create(alias);
        self.invalidation_completion.create(alias);
        for kind in KINDS {
            self.paths_submitted
                .with_label_values(&[alias, kind.as_str()]);
            self.inflight_paths
                .with_label_values(&[alias, kind.as_str()]);
        }
        self.paths_submitted.with_label_values(&[alias, TAG_KIND]);
        for &code in InvalidatorError::CODE_LABELS {
            self.cloudfront_errors.with_label_values(&[alias, code]);
        }
    }

    /// `n` SQS messages received, duplicates included.
    pub fn received(&self, n: u64) {
        self.messages_received.inc_by(n);
    }

    /// `n` messages deleted after their paths were covered.
    pub fn deleted(&self, n: u64) {
        self.messages_deleted.inc_by(n);
    }

    /// `n` messages rejected for `reason`.
    pub fn rejected(&self, reason: RejectReason, n: u64) {
        self.messages_rejected
            .with_label_values(&[reason.as_str()])
            .inc_by(n);
    }

    /// `n` paths in an accepted request for `alias`.
    pub fn paths_requested(&self, alias: &str, n: u64) {
        self.paths_requested.with_label_values(&[alias]).inc_by(n);
    }

    /// Paths sent in a CreateInvalidation that CloudFront accepted (billed):
    /// exact paths, wildcards and cache tags.
    pub fn paths_submitted(&self, alias: &str, exact: u64, wildcard: u64, tags: u64) {
        self.paths_submitted
            .with_label_values(&[alias, PathKind::Exact.as_str()])
            .inc_by(exact);
        self.paths_submitted
            .with_label_values(&[alias, PathKind::Wildcard.as_str()])
            .inc_by(wildcard);
        self.paths_submitted
            .with_label_values(&[alias, TAG_KIND])
            .inc_by(tags);
    }

    /// `n` requested paths for `alias` dropped by `routing.skip`.
    pub fn paths_skipped(&self, alias: &str, n: u64) {
        self.paths_skipped.with_label_values(&[alias]).inc_by(n);
    }

    /// The blast of an invalidation CloudFront accepted for `alias`: the
    /// catalog objects its wildcards purge that nobody requested (the
    /// plan's `figures.blast`). Call with the paths submitted.
    pub fn paths_blast(&self, alias: &str, blast: u64) {
        self.paths_blast.with_label_values(&[alias]).inc_by(blast);
    }

    /// Objects in `alias`'s catalog, after each listing, reload or update.
    pub fn set_catalog_objects(&self, alias: &str, objects: u64) {
        self.catalog_objects
            .with_label_values(&[alias])
            .set(to_i64(objects));
    }

    /// `n` invalidations accepted by CloudFront for `alias`.
    pub fn invalidations_created(&self, alias: &str, n: u64) {
        self.invalidations_created
            .with_label_values(&[alias])
            .inc_by(n);
    }

    /// `n` invalidations of `alias` seen Completed.
    pub fn invalidations_completed(&self, alias: &str, n: u64) {
        self.invalidations_completed
            .with_label_values(&[alias])
            .inc_by(n);
    }

    /// `n` failed CloudFront calls for `alias` with the error code label
    /// `code` (one of [`InvalidatorError::CODE_LABELS`]).
    pub fn cloudfront_errors(&self, alias: &str, code: &str, n: u64) {
        self.cloudfront_errors
            .with_label_values(&[alias, code])
            .inc_by(n);
    }

    /// The times from a request's receipt to the accepted
    /// CreateInvalidation that covered it, of every request of `alias`
    /// so far: the histogram shows `samples` as they are.
    pub fn set_request_to_invalidation(&self, alias: &str, samples: &Samples) {
        self.request_to_invalidation.set(alias, samples);
    }

    /// The times from created to Completed of every invalidation of
    /// `alias` seen Completed so far.
    pub fn set_invalidation_completion(&self, alias: &str, samples: &Samples) {
        self.invalidation_completion.set(alias, samples);
    }

    /// Entries of `alias` waiting to be submitted, and the age of the oldest
    /// (zero when none wait).
    pub fn set_pending(&self, alias: &str, paths: u64, oldest: Duration) {
        self.pending_paths
            .with_label_values(&[alias])
            .set(to_i64(paths));
        self.oldest_pending_seconds
            .with_label_values(&[alias])
            .set(oldest.as_secs_f64());
    }

    /// This daemon's role, which `cfpurge_leader` reads at each scrape:
    /// the daemon records in it until when it may lead.
    pub fn role(&self) -> &RoleWatch {
        &self.leader.role
    }

    /// This replica became leader or stood down, `n` times.
    pub fn leader_changes(&self, n: u64) {
        self.leader_changes.inc_by(n);
    }

    /// Whether the lease item, as last looked at, is one no replica can
    /// take over.
    pub fn set_lease_invalid(&self, invalid: bool) {
        self.lease_invalid.set(i64::from(invalid));
    }

    /// Received messages not yet deleted.
    pub fn set_pending_messages(&self, n: u64) {
        self.pending_messages.set(to_i64(n));
    }

    /// Paths of `alias` in progress at CloudFront, others' included.
    pub fn set_inflight(&self, alias: &str, exact: u64, wildcard: u64) {
        self.inflight_paths
            .with_label_values(&[alias, PathKind::Exact.as_str()])
            .set(to_i64(exact));
        self.inflight_paths
            .with_label_values(&[alias, PathKind::Wildcard.as_str()])
            .set(to_i64(wildcard));
    }

    /// SQS's approximate message counts.
    pub fn set_queue(&self, visible: u64, in_flight: u64, delayed: u64) {
        for (state, n) in QUEUE_STATES.into_iter().zip([visible, in_flight, delayed]) {
            self.queue_messages
                .with_label_values(&[state])
                .set(to_i64(n));
        }
    }

    /// The monthly budget, the paths spent this month and the paths the
    /// pacing allows to have been spent by now.
    pub fn set_budget(&self, account: &str, limit: u64, used: u64, allowed: u64) {
        self.budget_paths_limit
            .with_label_values(&[account])
            .set(to_i64(limit));
        self.budget_paths_used
            .with_label_values(&[account])
            .set(to_i64(used));
        self.budget_paths_allowed
            .with_label_values(&[account])
            .set(to_i64(allowed));
    }

    /// Creates the edge series of `alias` at zero: those of verification
    /// and of warming, for each that is configured.
    pub fn edge_configured(&self, alias: &str, verify: bool, warm: bool) {
        if verify {
            for result in VERIFY_RESULTS {
                self.verify.with_label_values(&[alias, result]);
            }
        }
        if warm {
            for result in WARM_RESULTS {
                self.warm.with_label_values(&[alias, result]);
            }
        }
    }

    /// `n` edge checks of purged paths of `alias`; `result` is one of
    /// [`VERIFY_RESULTS`].
    pub fn verify(&self, alias: &str, result: &str, n: u64) {
        self.verify.with_label_values(&[alias, result]).inc_by(n);
    }

    /// `n` warming requests of `alias`; `result` is one of
    /// [`WARM_RESULTS`].
    pub fn warm(&self, alias: &str, result: &str, n: u64) {
        self.warm.with_label_values(&[alias, result]).inc_by(n);
    }

    /// The price the budget of `account` plans batches at now.
    pub fn set_budget_price(&self, account: &str, price: f64) {
        self.budget_price.with_label_values(&[account]).set(price);
    }
}

/// The observations of one histogram series as plain numbers: how many
/// fell at or under each bucket's bound (and not under the one before),
/// how many in all, and their sum. Whoever observes keeps it, with no
/// lock or Prometheus type; [`Metrics`] shows it as it is
/// ([`Metrics::set_request_to_invalidation`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Samples {
    bounds: &'static [f64],
    /// Per bound, the observations in its bucket alone (not cumulative);
    /// those above the last bound are in `count` only (`+Inf`).
    buckets: Vec<u64>,
    count: u64,
    sum: f64,
}

impl Samples {
    /// No observation yet, in `cfpurge_request_to_invalidation_seconds`'s
    /// buckets.
    pub fn request_to_invalidation() -> Samples {
        Samples::with_bounds(REQUEST_TO_INVALIDATION_BUCKETS)
    }

    /// No observation yet, in `cfpurge_invalidation_completion_seconds`'s
    /// buckets.
    pub fn invalidation_completion() -> Samples {
        Samples::with_bounds(COMPLETION_BUCKETS)
    }

    fn with_bounds(bounds: &'static [f64]) -> Samples {
        Samples {
            bounds,
            buckets: vec![0; bounds.len()],
            count: 0,
            sum: 0.0,
        }
    }

    /// One observation of `took`, in seconds as Prometheus's own
    /// histogram takes it: in the first bucket whose bound it does not
    /// exceed.
    pub fn observe(&mut self, took: Duration) {
        let seconds = took.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|&bound| seconds <= bound) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    fn proto(&self) -> proto::Histogram {
        let mut histogram = proto::Histogram::default();
        histogram.set_sample_count(self.count);
        histogram.set_sample_sum(self.sum);
        let mut cumulative = 0;
        let buckets = self
            .bounds
            .iter()
            .zip(&self.buckets)
            .map(|(&bound, &n)| {
                cumulative += n;
                let mut bucket = proto::Bucket::default();
                bucket.set_upper_bound(bound);
                bucket.set_cumulative_count(cumulative);
                bucket
            })
            .collect();
        histogram.set_bucket(buckets);
        histogram
    }
}

/// A histogram with a `distribution` label whose series are set whole from
/// [`Samples`] rather than observed one value at a time: the daemon's core
/// keeps the observations, and the runner shows them after each step.
/// Exposed exactly as a `HistogramVec` with the same buckets would be.
/// Clones share the series.
#[derive(Clone, Debug)]
struct ShownHistogram {
    desc: Desc,
    bounds: &'static [f64],
    series: Arc<Mutex<BTreeMap<String, Samples>>>,
}

impl ShownHistogram {
    fn new(
        name: &str,
        help: &str,
        bounds: &'static [f64],
    ) -> Result<ShownHistogram, prometheus::Error> {
        let desc = Desc::new(
            name.to_owned(),
            help.to_owned(),
            vec!["distribution".to_owned()],
            HashMap::new(),
        )?;
        Ok(ShownHistogram {
            desc,
            bounds,
            series: Arc::default(),
        })
    }

    /// `alias`'s series, at zero unless it has one.
    fn create(&self, alias: &str) {
        self.lock()
            .entry(alias.to_owned())
            .or_insert_with(|| Samples::with_bounds(self.bounds));
    }

    fn set(&self, alias: &str, samples: &Samples) {
        debug_assert_eq!(samples.bounds, self.bounds, "{}", self.desc.fq_name);
        let mut series = self.lock();
        match series.get_mut(alias) {
            Some(shown) => shown.clone_from(samples),
            None => {
                series.insert(alias.to_owned(), samples.clone());
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Samples>> {
        self.series.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Collector for ShownHistogram {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let metrics = self
            .lock()
            .iter()
            .map(|(alias, samples)| {
                let mut label = proto::LabelPair::default();
                label.set_name("distribution".to_owned());
                label.set_value(alias.clone());
                let mut metric = proto::Metric::from_label(vec![label]);
                metric.set_histogram(samples.proto());
                metric
            })
            .collect();
        let mut family = MetricFamily::default();
        family.set_name(self.desc.fq_name.clone());
        family.set_help(self.desc.help.clone());
        family.set_field_type(MetricType::HISTOGRAM);
        family.set_metric(metrics);
        vec![family]
    }
}

/// `cfpurge_leader`: set from the role at the moment it is collected, so a
/// scrape of a process resumed after a pause past its lease reads 0 before
/// the daemon's loop has run again.
#[derive(Clone, Debug)]
struct LeaderGauge {
    gauge: IntGauge,
    role: RoleWatch,
}

impl Collector for LeaderGauge {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.gauge.set(i64::from(self.role.is_leader()));
        self.gauge.collect()
    }
}

/// Everything in `registry` in the Prometheus text format.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    // The registry drops empty families and writing to a String cannot
    // fail, so an error here means a broken collector: serve what was
    // written rather than nothing.
    if let Err(error) = TextEncoder::new().encode_utf8(&registry.gather(), &mut text) {
        tracing::error!(%error, "metrics encoding failed");
    }
    text
}

/// Registers a clone of `collector` and hands back the original; the two
/// share their series.
fn register<C: Collector + Clone + 'static>(
    registry: &Registry,
    collector: C,
) -> Result<C, prometheus::Error> {
    registry.register(Box::new(collector.clone()))?;
    Ok(collector)
}

/// The standard `process_*` metrics; the `prometheus` crate has them on
/// Linux only.
#[cfg(target_os = "linux")]
fn register_process_collector(registry: &Registry) -> Result<(), prometheus::Error> {
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))
}

#[cfg(not(target_os = "linux"))]
fn register_process_collector(_registry: &Registry) -> Result<(), prometheus::Error> {
    Ok(())
}

/// Gauges are `i64`; a count beyond `i64::MAX` cannot happen, but saturate
/// rather than wrap to a negative number if it ever did.
fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// Every metric of docs/interface.md: name, type, label names.
    const CONTRACT: &[(&str, &str, &[&str])] = &[
        ("cfpurge_build_info", "gauge", &["version"]),
        ("cfpurge_messages_received_total", "counter", &[]),
        ("cfpurge_messages_deleted_total", "counter", &[]),
        ("cfpurge_messages_rejected_total", "counter", &["reason"]),
        (
            "cfpurge_paths_requested_total",
            "counter",
            &["distribution"],
        ),
        (
            "cfpurge_paths_submitted_total",
            "counter",
            &["distribution", "kind"],
        ),
        ("cfpurge_paths_skipped_total", "counter", &["distribution"]),
        ("cfpurge_paths_blast_total", "counter", &["distribution"]),
        ("cfpurge_catalog_objects", "gauge", &["distribution"]),
        (
            "cfpurge_invalidations_created_total",
            "counter",
            &["distribution"],
        ),
        (
            "cfpurge_invalidations_completed_total",
            "counter",
            &["distribution"],
        ),
        (
            "cfpurge_cloudfront_errors_total",
            "counter",
            &["distribution", "code"],
        ),
        ("cfpurge_pending_paths", "gauge", &["distribution"]),
        ("cfpurge_pending_messages", "gauge", &[]),
        ("cfpurge_leader", "gauge", &[]),
        ("cfpurge_leader_changes_total", "counter", &[]),
        ("cfpurge_lease_invalid", "gauge", &[]),
        ("cfpurge_oldest_pending_seconds", "gauge", &["distribution"]),
        ("cfpurge_inflight_paths", "gauge", &["distribution", "kind"]),
        ("cfpurge_queue_messages", "gauge", &["state"]),
        ("cfpurge_budget_paths_limit", "gauge", &["account"]),
        ("cfpurge_budget_paths_used", "gauge", &["account"]),
        ("cfpurge_budget_paths_allowed", "gauge", &["account"]),
        ("cfpurge_budget_price", "gauge", &["account"]),
        (
            "cfpurge_request_to_invalidation_seconds",
            "histogram",
            &["distribution"],
        ),
        (
            "cfpurge_invalidation_completion_seconds",
            "histogram",
            &["distribution"],
        ),
    ];

    /// The error codes docs/interface.md lists for `cfpurge_cloudfront_errors_total`.
    const CONTRACT_CODES: [&str; 9] = [
        "throttling",
        "too_many_in_progress",
        "access_denied",
        "no_such_distribution",
        "invalid_argument",
        "batch_too_large",
        "server_error",
        "timeout",
        "other",
    ];

    fn setup(aliases: &[&str]) -> (Registry, Metrics) {
        let registry = Registry::new();
        let metrics = Metrics::new(&registry, aliases).expect("registers");
        (registry, metrics)
    }

    /// `# TYPE` lines of the exposition: name to type.
    fn types(text: &str) -> BTreeMap<String, String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| {
                let (name, ty) = l.split_once(' ').expect("TYPE line has a type");
                (name.to_owned(), ty.to_owned())
            })
            .collect()
    }

    /// Sample lines as (series, value), series being the name with its
    /// labels exactly as exposed.
    fn samples(text: &str) -> BTreeMap<String, f64> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').expect("sample has a value");
                (series.to_owned(), value.parse().expect("numeric value"))
            })
            .collect()
    }

    /// The value of one series; fails the test if it is absent.
    fn value(registry: &Registry, series: &str) -> f64 {
        let all = samples(&encode(registry));
        *all.get(series)
            .unwrap_or_else(|| panic!("{series} missing from:\n{all:#?}"))
    }

    /// Label names of a sample line, in order.
    fn label_names(series: &str) -> Vec<String> {
        let Some((_, labels)) = series.split_once('{') else {
            return Vec::new();
        };
        labels
            .trim_end_matches('}')
            .split(',')
            .map(|kv| kv.split_once('=').expect("label=value").0.to_owned())
            .collect()
    }

    #[test]
    fn every_contract_metric_is_exposed_with_its_type_and_labels() {
        let (registry, _metrics) = setup(&["www"]);
        let text = encode(&registry);
        let types = types(&text);
        let samples = samples(&text);
        for &(name, ty, labels) in CONTRACT {
            assert_eq!(types.get(name).map(String::as_str), Some(ty), "{name}");
            let series: Vec<&String> = samples
                .keys()
                .filter(|s| {
                    let base = s.split('{').next().unwrap_or_default();
                    if ty == "histogram" {
                        base == format!("{name}_count")
                    } else {
                        base == name
                    }
                })
                .collect();
            assert!(!series.is_empty(), "{name} has no series");
            // The exposition sorts labels by name; the contract does not.
            let mut want: Vec<&str> = labels.to_vec();
            want.sort_unstable();
            for s in series {
                assert_eq!(label_names(s), want, "{s}");
            }
        }
        // Nothing under the prefix that the contract does not name.
        let contract_names: Vec<&str> = CONTRACT.iter().map(|c| c.0).collect();
        for name in types.keys().filter(|n| n.starts_with("cfpurge_")) {
            assert!(contract_names.contains(&name.as_str()), "extra {name}");
        }
    }

    #[test]
    fn build_info_carries_the_crate_version() {
        let (registry, _metrics) = setup(&[]);
        let series = format!(
            "cfpurge_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(value(&registry, &series), 1.0);
    }

    #[test]
    fn contract_codes_are_the_invalidator_code_labels() {
        assert_eq!(InvalidatorError::CODE_LABELS, CONTRACT_CODES);
    }

    #[test]
    fn labelled_series_exist_at_zero_from_the_start() {
        let (registry, _metrics) = setup(&["www", "api"]);
        let all = samples(&encode(&registry));
        let mut expected = Vec::new();
        for reason in RejectReason::ALL {
            expected.push(format!(
                "cfpurge_messages_rejected_total{{reason=\"{}\"}}",
                reason.as_str()
            ));
        }
        for state in ["visible", "in_flight", "delayed"] {
            expected.push(format!("cfpurge_queue_messages{{state=\"{state}\"}}"));
        }
        for alias in ["www", "api"] {
            let d = format!("distribution=\"{alias}\"");
            for name in [
                "cfpurge_paths_requested_total",
                "cfpurge_paths_skipped_total",
                "cfpurge_paths_blast_total",
                "cfpurge_catalog_objects",
                "cfpurge_invalidations_created_total",
                "cfpurge_invalidations_completed_total",
                "cfpurge_pending_paths",
                "cfpurge_oldest_pending_seconds",
                "cfpurge_request_to_invalidation_seconds_count",
                "cfpurge_invalidation_completion_seconds_count",
            ] {
                expected.push(format!("{name}{{{d}}}"));
            }
            for kind in ["exact", "wildcard"] {
                expected.push(format!(
                    "cfpurge_paths_submitted_total{{{d},kind=\"{kind}\"}}"
                ));
                expected.push(format!("cfpurge_inflight_paths{{{d},kind=\"{kind}\"}}"));
            }
            expected.push(format!("cfpurge_paths_submitted_total{{{d},kind=\"tag\"}}"));
            for code in CONTRACT_CODES {
                expected.push(format!(
                    "cfpurge_cloudfront_errors_total{{code=\"{code}\",{d}}}"
                ));
            }
        }
        for series in expected {
            assert_eq!(all.get(&series), Some(&0.0), "{series}");
        }
    }

    #[test]
    fn counters_move_their_own_series() {
        let (registry, metrics) = setup(&["www", "api"]);
        metrics.received(3);
        metrics.deleted(2);
        metrics.rejected(RejectReason::InvalidPath, 1);
        metrics.rejected(RejectReason::InvalidPath, 1);
        metrics.paths_requested("www", 7);
        metrics.paths_submitted("www", 4, 1, 2);
        metrics.paths_skipped("www", 5);
        metrics.paths_blast("www", 90);
        metrics.paths_blast("www", 10);
        metrics.invalidations_created("www", 1);
        let throttled = InvalidatorError::Throttled("slow".into());
        metrics.cloudfront_errors("api", throttled.code_label(), 1);
        let other = InvalidatorError::Other {
            code: "Weird".into(),
            message: "text".into(),
        };
        metrics.cloudfront_errors("api", other.code_label(), 1);

        let r = &registry;
        assert_eq!(
            value(r, "cfpurge_paths_blast_total{distribution=\"www\"}"),
            100.0
        );
        assert_eq!(
            value(r, "cfpurge_paths_blast_total{distribution=\"api\"}"),
            0.0
        );
        assert_eq!(value(r, "cfpurge_messages_received_total"), 3.0);
        assert_eq!(value(r, "cfpurge_messages_deleted_total"), 2.0);
        assert_eq!(
            value(
                r,
                "cfpurge_messages_rejected_total{reason=\"invalid_path\"}"
            ),
            2.0
        );
        assert_eq!(
            value(r, "cfpurge_messages_rejected_total{reason=\"malformed\"}"),
            0.0
        );
        assert_eq!(
            value(r, "cfpurge_paths_requested_total{distribution=\"www\"}"),
            7.0
        );
        assert_eq!(
            value(r, "cfpurge_paths_requested_total{distribution=\"api\"}"),
            0.0
        );
        assert_eq!(
            value(
                r,
                "cfpurge_paths_submitted_total{distribution=\"www\",kind=\"exact\"}"
            ),
            4.0
        );
        assert_eq!(
            value(
                r,
                "cfpurge_paths_submitted_total{distribution=\"www\",kind=\"wildcard\"}"
            ),
            1.0
        );
        assert_eq!(
            value(
                r,
                "cfpurge_paths_submitted_total{distribution=\"www\",kind=\"tag\"}"
            ),
            2.0
        );
        assert_eq!(
            value(r, "cfpurge_paths_skipped_total{distribution=\"www\"}"),
            5.0
        );
        assert_eq!(
            value(r, "cfpurge_paths_skipped_total{distribution=\"api\"}"),
            0.0
        );
        assert_eq!(
            value(
                r,
                "cfpurge_invalidations_created_total{distribution=\"www\"}"
            ),
            1.0
        );
        assert_eq!(
            value(
                r,
                "cfpurge_cloudfront_errors_total{code=\"throttling\",distribution=\"api\"}"
            ),
            1.0
        );
        assert_eq!(
            value(
                r,
                "cfpurge_cloudfront_errors_total{code=\"other\",distribution=\"api\"}"
            ),
            1.0
        );
        assert_eq!(
            value(
                r,
                "cfpurge_cloudfront_errors_total{code=\"throttling\",distribution=\"www\"}"
            ),
            0.0
        );
    }

    #[test]
    fn gauges_are_set_not_added() {
        let (registry, metrics) = setup(&["www"]);
        metrics.set_pending("www", 10, Duration::from_millis(2500));
        metrics.set_pending("www", 4, Duration::from_millis(1500));
        metrics.set_pending_messages(6);
        metrics.set_inflight("www", 120, 3);
        metrics.set_queue(11, 5, 2);
        metrics.set_budget(DEFAULT_ACCOUNT, 1000, 300, 400);
        metrics.set_catalog_objects("www", 2705);
        metrics.set_catalog_objects("www", 2704);

        let r = &registry;
        assert_eq!(
            value(r, "cfpurge_catalog_objects{distribution=\"www\"}"),
            2704.0
        );
        assert_eq!(value(r, "cfpurge_pending_paths{distribution=\"www\"}"), 4.0);
        assert_eq!(
            value(r, "cfpurge_oldest_pending_seconds{distribution=\"www\"}"),
            1.5
        );
        assert_eq!(value(r, "cfpurge_pending_messages"), 6.0);
        assert_eq!(
            value(
                r,
                "cfpurge_inflight_paths{distribution=\"www\",kind=\"exact\"}"
            ),
            120.0
        );
        assert_eq!(
            value(
                r,
                "cfpurge_inflight_paths{distribution=\"www\",kind=\"wildcard\"}"
            ),
            3.0
        );
        assert_eq!(value(r, "cfpurge_queue_messages{state=\"visible\"}"), 11.0);
        assert_eq!(value(r, "cfpurge_queue_messages{state=\"in_flight\"}"), 5.0);
        assert_eq!(value(r, "cfpurge_queue_messages{state=\"delayed\"}"), 2.0);
        assert_eq!(
            value(r, "cfpurge_budget_paths_limit{account=\"default\"}"),
            1000.0
        );
        assert_eq!(
            value(r, "cfpurge_budget_paths_used{account=\"default\"}"),
            300.0
        );
        assert_eq!(
            value(r, "cfpurge_budget_paths_allowed{account=\"default\"}"),
            400.0
        );

        metrics.set_pending_messages(u64::MAX);
        assert_eq!(value(r, "cfpurge_pending_messages"), i64::MAX as f64);
    }

    #[test]
    fn histograms_observe_seconds_into_their_buckets() {
        let (registry, metrics) = setup(&["www"]);
        let mut waited = Samples::request_to_invalidation();
        waited.observe(Duration::from_millis(300));
        waited.observe(Duration::from_secs(40));
        metrics.set_request_to_invalidation("www", &waited);
        let mut took = Samples::invalidation_completion();
        took.observe(Duration::from_secs(70));
        metrics.invalidations_completed("www", 1);
        metrics.set_invalidation_completion("www", &took);

        let r = &registry;
        let req = "cfpurge_request_to_invalidation_seconds";
        assert_eq!(
            value(r, &format!("{req}_count{{distribution=\"www\"}}")),
            2.0
        );
        let sum = value(r, &format!("{req}_sum{{distribution=\"www\"}}"));
        assert!((sum - 40.3).abs() < 1e-9, "{sum}");
        assert_eq!(
            value(
                r,
                &format!("{req}_bucket{{distribution=\"www\",le=\"0.1\"}}")
            ),
            0.0
        );
        assert_eq!(
            value(
                r,
                &format!("{req}_bucket{{distribution=\"www\",le=\"0.5\"}}")
            ),
            1.0
        );
        assert_eq!(
            value(
                r,
                &format!("{req}_bucket{{distribution=\"www\",le=\"60\"}}")
            ),
            2.0
        );
        assert_eq!(
            value(
                r,
                &format!("{req}_bucket{{distribution=\"www\",le=\"14400\"}}")
            ),
            2.0
        );

        let done = "cfpurge_invalidation_completion_seconds";
        assert_eq!(
            value(
                r,
                "cfpurge_invalidations_completed_total{distribution=\"www\"}"
            ),
            1.0
        );
        assert_eq!(
            value(r, &format!("{done}_count{{distribution=\"www\"}}")),
            1.0
        );
        assert_eq!(
            value(
                r,
                &format!("{done}_bucket{{distribution=\"www\",le=\"5\"}}")
            ),
            0.0
        );
        assert_eq!(
            value(
                r,
                &format!("{done}_bucket{{distribution=\"www\",le=\"60\"}}")
            ),
            0.0
        );
        assert_eq!(
            value(
                r,
                &format!("{done}_bucket{{distribution=\"www\",le=\"90\"}}")
            ),
            1.0
        );
    }

    #[test]
    fn shown_samples_read_exactly_as_prometheus_histograms() {
        let (registry, metrics) = setup(&["www", "api"]);
        let reference = Registry::new();
        let observed = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new(
                "cfpurge_request_to_invalidation_seconds",
                "From receive to CreateInvalidation accepted.",
            )
            .buckets(REQUEST_TO_INVALIDATION_BUCKETS.to_vec()),
            &["distribution"],
        )
        .expect("histogram");
        reference
            .register(Box::new(observed.clone()))
            .expect("registers");
        let mut samples = Samples::request_to_invalidation();
        // On a bound, between bounds, past the last, and zero.
        for ms in [100, 101, 0, 2_500, 59_999, 86_400_000, 333] {
            let took = Duration::from_millis(ms);
            samples.observe(took);
            observed
                .with_label_values(&["www"])
                .observe(took.as_secs_f64());
        }
        observed.with_label_values(&["api"]);
        metrics.set_request_to_invalidation("www", &samples);
        let family = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| l.contains("cfpurge_request_to_invalidation_seconds"))
                .map(str::to_owned)
                .collect()
        };
        let shown = family(&encode(&registry));
        assert_eq!(shown, family(&encode(&reference)));
        assert!(
            shown.contains(
                &"cfpurge_request_to_invalidation_seconds_bucket{distribution=\"www\",le=\"+Inf\"} 7"
                    .to_owned()
            ),
            "{shown:#?}"
        );
    }

    #[test]
    fn an_unknown_alias_gets_its_series_on_first_use() {
        let (registry, metrics) = setup(&["www"]);
        metrics.paths_requested("later", 2);
        metrics.set_inflight("later", 1, 0);
        assert_eq!(
            value(
                &registry,
                "cfpurge_paths_requested_total{distribution=\"later\"}"
            ),
            2.0
        );
        assert_eq!(
            value(
                &registry,
                "cfpurge_inflight_paths{distribution=\"later\",kind=\"exact\"}"
            ),
            1.0
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_metrics_keep_their_standard_names() {
        let (registry, _metrics) = setup(&[]);
        let types = types(&encode(&registry));
        assert_eq!(
            types.get("process_cpu_seconds_total").map(String::as_str),
            Some("counter")
        );
        assert!(types.contains_key("process_resident_memory_bytes"));
        assert!(!types.keys().any(|n| n.starts_with("cfpurge_process_")));
    }

    #[test]
    fn two_registries_do_not_share_series() {
        let (first_registry, first) = setup(&["www"]);
        let (second_registry, second) = setup(&["www"]);
        first.received(5);
        second.paths_requested("www", 9);
        assert_eq!(
            value(&first_registry, "cfpurge_messages_received_total"),
            5.0
        );
        assert_eq!(
            value(&second_registry, "cfpurge_messages_received_total"),
            0.0
        );
        assert_eq!(
            value(
                &first_registry,
                "cfpurge_paths_requested_total{distribution=\"www\"}"
            ),
            0.0
        );
        assert_eq!(
            value(
                &second_registry,
                "cfpurge_paths_requested_total{distribution=\"www\"}"
            ),
            9.0
        );
    }

    #[test]
    fn registering_twice_in_one_registry_fails() {
        let (registry, _metrics) = setup(&["www"]);
        assert!(Metrics::new(&registry, &["www"]).is_err());
    }

    #[test]
    fn encode_is_the_text_format() {
        assert_eq!(CONTENT_TYPE, "text/plain; version=0.0.4");
        let (registry, _metrics) = setup(&[]);
        assert!(encode(&registry).contains("# TYPE cfpurge_messages_received_total counter\n"));
    }
}
