//! The contract between the daemon and CloudFront's invalidation API: what
//! a create, a get and a list promise, and what their errors mean. The SDK
//! adapter ([`super::aws::AwsInvalidator`]) and the in-memory model
//! ([`super::simulate::SimulatedCloudFront`]) both keep it, and the
//! submitter and tracker rely on nothing else.
//!
//! CloudFront is the source of truth for what is in flight: an invalidation
//! is `InProgress` after its create and `Completed` some minutes later, is
//! never cancelled and never removed from the list.

use std::fmt;
use std::future::Future;
use std::time::SystemTime;

use crate::path::CfPath;

/// ListInvalidations' largest page; a larger `max_items` is cut to it.
pub const MAX_LIST_ITEMS: i32 = 100;

/// What an invalidation is made on: a distribution (CreateInvalidation and
/// its Get/List), or one tenant of a multi-tenant distribution
/// (CreateInvalidationForDistributionTenant and its Get/List). Each
/// configured entry has one; the in-flight limits, the pending set and the
/// tracker's view are per entry, so two tenants of one distribution never
/// share them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// A distribution, by its id (`E2ABCDEF123456`).
    Distribution(String),
    /// A distribution tenant (`dt_...`) of the multi-tenant distribution
    /// `distribution`. Only the tenant id goes into the calls; the
    /// distribution id is for people reading logs and the status.
    Tenant {
        distribution: String,
        tenant: String,
    },
}

impl Target {
    /// The target a configured entry names: its tenant when it has
    /// `tenant_id`, else its distribution.
    pub fn of(config: &crate::config::DistributionConfig) -> Target {
        match &config.tenant_id {
            Some(tenant) => Target::Tenant {
                distribution: config.id.clone(),
                tenant: tenant.clone(),
            },
            None => Target::Distribution(config.id.clone()),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Distribution(id) => write!(f, "distribution {id}"),
            Target::Tenant {
                distribution,
                tenant,
            } => write!(
                f,
                "distribution tenant {tenant} of distribution {distribution}"
            ),
        }
    }
}

/// A bare id is a distribution: what most callers and tests pass.
impl From<&str> for Target {
    fn from(id: &str) -> Target {
        Target::Distribution(id.to_owned())
    }
}

impl From<&Target> for Target {
    fn from(target: &Target) -> Target {
        target.clone()
    }
}

/// Where an invalidation is in its life. Nothing else exists: CloudFront has
/// no cancel and no failed state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// Accepted; its paths still count against the distribution's in-flight
    /// limits.
    InProgress,
    /// Done; its paths no longer count.
    Completed,
}

impl Status {
    /// CloudFront's status text, compared case-insensitively and ignoring
    /// `_`, `-` and spaces: AWS says `InProgress` and `Completed`, moto says
    /// `COMPLETED`. `None` for anything else.
    pub fn parse(text: &str) -> Option<Status> {
        let squashed: String = text
            .chars()
            .filter(|c| !matches!(c, '_' | '-' | ' '))
            .map(|c| c.to_ascii_lowercase())
            .collect();
        match squashed.as_str() {
            "inprogress" => Some(Status::InProgress),
            "completed" => Some(Status::Completed),
            _ => None,
        }
    }

    /// The status as AWS writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::InProgress => "InProgress",
            Status::Completed => "Completed",
        }
    }

    pub fn is_completed(self) -> bool {
        self == Status::Completed
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One invalidation as CreateInvalidation or GetInvalidation return it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalidation {
    /// CloudFront's id (`I` and 13 upper-case letters and digits): what the
    /// tracker polls with [`Invalidator::get`].
    pub id: String,
    /// In progress or completed at the time of the answer.
    pub status: Status,
    /// When CloudFront created it: a message received after this time is
    /// not covered by it.
    pub created_at: SystemTime,
    /// The reference the batch was created with; tells the daemon's own
    /// invalidations (`cfpurge-` prefix) from other tools'.
    pub caller_reference: String,
    /// The batch's paths, as CloudFront holds them; what counts against the
    /// in-flight limits. Paths CloudFront returns that [`CfPath`] cannot
    /// parse (another tool's) are left out.
    pub paths: Vec<CfPath>,
}

/// One entry of a ListInvalidations page: no paths and no reference, so a
/// caller that needs them (to count another tool's paths in flight) follows
/// with [`Invalidator::get`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidationSummary {
    pub id: String,
    pub status: Status,
    pub created_at: SystemTime,
}

/// Why an invalidation call failed. What each means for a batch (retried,
/// waiting for room, a configuration fault, ...) is decided in one place,
/// [`crate::submitter::action`]; the SDK has already retried throttling and
/// server errors a few times before they get here.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidatorError {
    /// `Throttling` ("Rate exceeded") or HTTP 429: the account's API rate
    /// is exceeded; retry later, slower.
    #[error("cloudfront throttled the call: {0}")]
    Throttled(String),
    /// A 5xx answer (`ServiceUnavailable` at peaks), a connection failure or
    /// an unreadable response: retry with backoff. A create may or may not
    /// have happened; retrying it with the same caller reference is safe.
    #[error("cloudfront unavailable: {0}")]
    ServerError(String),
    /// No answer in time: as [`InvalidatorError::ServerError`], the call may
    /// have taken effect.
    #[error("cloudfront call timed out: {0}")]
    Timeout(String),
    /// `TooManyInvalidationsInProgress`: the batch would take the
    /// distribution past 3,000 exact or 15 wildcard paths in progress
    /// (others' invalidations included). Not retried by the SDK; wait for
    /// capacity to come back, then plan again.
    #[error("too many invalidations in progress: {0}")]
    TooManyInProgress(String),
    /// `InvalidationBatchAlreadyExists`: the caller reference was used
    /// before with other paths. A bug in how references are made.
    #[error("caller reference already used for another batch: {0}")]
    BatchAlreadyExists(String),
    /// `NoSuchDistribution`: the configured distribution id is wrong; or,
    /// on a tenant's calls, `EntityNotFound`: the configured `tenant_id` is
    /// (the text says which).
    #[error("no such distribution: {0}")]
    NoSuchDistribution(String),
    /// `AccessDenied` or a credentials failure: fix the credentials or the
    /// policy.
    #[error("access to cloudfront denied: {0}")]
    AccessDenied(String),
    /// `InvalidArgument` (a path CloudFront refuses, a bad marker),
    /// `MissingBody` or `InconsistentQuantities`: the same request fails
    /// again.
    #[error("request refused by cloudfront: {0}")]
    InvalidArgument(String),
    /// `BatchTooLarge` (HTTP 413): split the batch.
    #[error("invalidation batch too large: {0}")]
    BatchTooLarge(String),
    /// `NoSuchInvalidation`: the id is not one of the distribution's.
    #[error("no such invalidation: {0}")]
    NoSuchInvalidation(String),
    /// Anything else: an unknown error code, or a request the SDK could not
    /// even build or send (bad endpoint, missing credentials configuration).
    #[error("cloudfront error {code}: {message}")]
    Other { code: String, message: String },
}

impl InvalidatorError {
    /// Every value [`InvalidatorError::code_label`] returns, for creating the
    /// metric's series at zero.
    pub const CODE_LABELS: &'static [&'static str] = &[
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

    /// The `code` label of `cfpurge_cloudfront_errors_total`: a fixed set
    /// ([`InvalidatorError::CODE_LABELS`]), never the error text.
    pub fn code_label(&self) -> &'static str {
        match self {
            Self::Throttled(_) => "throttling",
            Self::ServerError(_) => "server_error",
            Self::Timeout(_) => "timeout",
            Self::TooManyInProgress(_) => "too_many_in_progress",
            Self::NoSuchDistribution(_) => "no_such_distribution",
            Self::AccessDenied(_) => "access_denied",
            Self::InvalidArgument(_) => "invalid_argument",
            Self::BatchTooLarge(_) => "batch_too_large",
            Self::BatchAlreadyExists(_) | Self::NoSuchInvalidation(_) | Self::Other { .. } => {
                "other"
            }
        }
    }
}

/// CloudFront's invalidation API, narrowed to what the daemon calls.
///
/// Shared by the submitter and the tracker, hence `Send + Sync + 'static`,
/// `&self` methods whose futures are `Send` (so that they can be
/// `tokio::spawn`ed), and `Clone` meant to be cheap (a client handle or an
/// `Arc`).
///
/// Common rules:
/// - Every call is one API request (the SDK may retry it on throttling and
///   5xx answers). Nothing is cached: each answer is CloudFront's view at
///   the time of the call.
/// - An error that does not prove a refusal
///   ([`crate::submitter::created_nothing`] is false) after a create
///   leaves the outcome unknown: the invalidation may exist. Repeating the
///   create with the same caller reference and the same paths is safe; it
///   returns the existing invalidation and creates (and bills) nothing new.
/// - Times are CloudFront's, in [`SystemTime`].
pub trait Invalidator: Clone + Send + Sync + 'static {
    /// Creates an invalidation of `paths` on `target` (CreateInvalidation,
    /// or CreateInvalidationForDistributionTenant for a tenant) and returns
    /// it, normally `InProgress`.
    ///
    /// `caller_reference` makes the call idempotent: the same reference with
    /// the same paths returns the invalidation made the first time (whatever
    /// its status now) and bills nothing; the same reference with other paths
    /// is [`InvalidatorError::BatchAlreadyExists`].
    ///
    /// Refused with [`InvalidatorError::TooManyInProgress`] when the paths in
    /// progress on the distribution, this batch included, would exceed
    /// 3,000 exact or 15 wildcard paths; with
    /// [`InvalidatorError::InvalidArgument`] when a path breaks CloudFront's
    /// rules or `paths` is empty; with
    /// [`InvalidatorError::NoSuchDistribution`] for an unknown distribution
    /// or tenant. A tenant has limits, references and invalidations of its
    /// own, apart from its distribution's and other tenants'.
    fn create(
        &self,
        target: impl Into<Target> + Send,
        caller_reference: &str,
        paths: &[CfPath],
    ) -> impl Future<Output = Result<Invalidation, InvalidatorError>> + Send;

    /// The invalidation `id` of `target` as it is now (GetInvalidation, or
    /// its tenant form), with its paths; the tracker polls it until
    /// [`Status::Completed`]. [`InvalidatorError::NoSuchInvalidation`] when
    /// the target has no such invalidation.
    fn get(
        &self,
        target: impl Into<Target> + Send,
        id: &str,
    ) -> impl Future<Output = Result<Invalidation, InvalidatorError>> + Send;

    /// One page of the target's invalidations (ListInvalidations, or its
    /// tenant form), newest first as AWS lists them, at most `max_items` (1 to
    /// [`MAX_LIST_ITEMS`]; more is cut to it, less is
    /// [`InvalidatorError::InvalidArgument`]). `marker` is the next marker
    /// of the previous page, `None` for the first page; the returned marker
    /// is `None` on the last page. Markers are opaque: pass them back
    /// unchanged. Every invalidation ever made is listed, so a caller looking
    /// for the ones in progress may stop paging once a whole page is
    /// completed and older than any in-progress one can be.
    fn list(
        &self,
        target: impl Into<Target> + Send,
        marker: Option<&str>,
        max_items: i32,
    ) -> impl Future<Output = Result<(Vec<InvalidationSummary>, Option<String>), InvalidatorError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_read_case_insensitively() {
        assert_eq!(Status::parse("InProgress"), Some(Status::InProgress));
        assert_eq!(Status::parse("IN_PROGRESS"), Some(Status::InProgress));
        assert_eq!(Status::parse("Completed"), Some(Status::Completed));
        assert_eq!(Status::parse("COMPLETED"), Some(Status::Completed));
        assert_eq!(Status::parse("completed"), Some(Status::Completed));
        assert_eq!(Status::parse("Failed"), None);
        assert_eq!(Status::parse(""), None);
        assert_eq!(Status::Completed.to_string(), "Completed");
    }

    #[test]
    fn labels_come_from_the_fixed_set() {
        let all = [
            InvalidatorError::Throttled(String::new()),
            InvalidatorError::ServerError(String::new()),
            InvalidatorError::Timeout(String::new()),
            InvalidatorError::TooManyInProgress(String::new()),
            InvalidatorError::BatchAlreadyExists(String::new()),
            InvalidatorError::NoSuchDistribution(String::new()),
            InvalidatorError::AccessDenied(String::new()),
            InvalidatorError::InvalidArgument(String::new()),
            InvalidatorError::BatchTooLarge(String::new()),
            InvalidatorError::NoSuchInvalidation(String::new()),
            InvalidatorError::Other {
                code: "X".into(),
                message: String::new(),
            },
        ];
        for e in &all {
            assert!(
                InvalidatorError::CODE_LABELS.contains(&e.code_label()),
                "{e:?}"
            );
        }
        assert_eq!(
            InvalidatorError::TooManyInProgress(String::new()).code_label(),
            "too_many_in_progress"
        );
    }
}
