//! Typed configuration: the TOML file of docs/configuration.md plus `CFPURGE__SECTION__KEY`
//! environment overrides, merged by the `config` crate, deserialized with
//! unknown keys refused, and validated once at start-up so that no later stage
//! has to check a value again. Every error names the file, the key and what is
//! wrong.
//!
//! Key case: the `config` crate keeps the case of keys read from the file but
//! lowercases every key that comes from the environment. A distribution alias
//! is a key (`[distributions.www]`, `CFPURGE__DISTRIBUTIONS__WWW__ID`), so
//! aliases must be lowercase (`[a-z0-9_-]`) for every one of them to be
//! reachable from the environment; the validation says so when one is not.
//!
//! Environment values are handed to serde as strings and converted to the
//! field's type there (the crate's `try_parsing` is left off on purpose: it
//! guesses a type from the text, which turned a token `0012` into `12`, a hex
//! token `8e12345` into `inf` and rounded `quiet_seconds = 9.5` to 10).
//! `[[routing.s3]]` is a list and cannot be set from the environment.
//!
//! The file is also read on its own by the `toml` crate before the merge:
//! it is strict where the `config` crate converts (`quiet_seconds = 1.5`
//! would be rounded, `id = 5` taken as `"5"`), and it knows the line of a bad
//! key or value, which the merged tree has forgotten.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod edge;
pub use edge::{EdgeScheme, VerifyConfig, WarmConfig};
mod accounts;
pub use self::accounts::{AccountConfig, DEFAULT_ACCOUNT, session_name};

/// Where the configuration file is looked for when neither `-c` nor
/// `$CFPURGE_CONFIG` names one.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/cfpurge/cfpurge.toml";

/// Prefix of the environment variables that override keys:
/// `CFPURGE__SECTION__KEY`.
pub const ENV_PREFIX: &str = "CFPURGE";

/// Separator between the prefix, the section and the key in an override's name.
pub const ENV_SEPARATOR: &str = "__";

/// The configuration file: `-c FILE`, else `$CFPURGE_CONFIG` (when set and not
/// empty), else [`DEFAULT_CONFIG_PATH`].
pub fn config_path(cli: Option<&Path>) -> PathBuf {
    if let Some(path) = cli {
        return path.to_path_buf();
    }
    match std::env::var_os("CFPURGE_CONFIG") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(DEFAULT_CONFIG_PATH),
    }
}

/// The whole configuration. `Default` gives every section's defaults and no
/// distribution, which does not validate by itself: at least one
/// `[distributions.NAME]` is required.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the AWS clients connect; credentials never live here.
    pub aws: AwsConfig,
    /// Where purge requests come from.
    pub source: SourceConfig,
    /// The CloudFront distributions this daemon purges, by alias.
    pub distributions: BTreeMap<String, DistributionConfig>,
    /// The AWS accounts the distributions live in, by name (none: one
    /// account, the default credentials').
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub accounts: BTreeMap<String, AccountConfig>,
    /// Which distribution a request that names none, or an S3 event, goes to.
    pub routing: RoutingConfig,
    /// When a distribution's pending paths are planned into a batch.
    pub batching: BatchingConfig,
    /// How the planner collapses dense directories into wildcards.
    pub coalesce: CoalesceConfig,
    /// How CloudFront is called (or simulated).
    pub cloudfront: CloudFrontConfig,
    /// The monthly path budget and what happens when it is spent.
    pub budget: BudgetConfig,
    /// How the distributions' catalogs are kept.
    pub catalog: CatalogConfig,
    /// Whether several replicas share the work through a lease.
    pub coordination: CoordinationConfig,
    /// What SIGTERM may still do before the process exits.
    pub shutdown: ShutdownConfig,
    /// The HTTP listener for metrics, health, status and enqueueing.
    pub http: HttpConfig,
    /// How the daemon logs.
    pub log: LogConfig,
}

/// `[aws]`: endpoints only. With none set, the SDK's own `AWS_ENDPOINT_URL`,
/// `AWS_ENDPOINT_URL_SQS` and `AWS_ENDPOINT_URL_CLOUDFRONT` apply.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AwsConfig {
    /// Region for the SQS client; when unset the AWS provider chain decides,
    /// so one file can serve several regions' deployments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// One endpoint for both services, to run against an emulator (moto) in
    /// tests and local runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// SQS endpoint; overrides `endpoint_url` when only one service is
    /// emulated or reached through a VPC endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqs_endpoint_url: Option<String>,
    /// CloudFront endpoint; overrides `endpoint_url` for the same reasons.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloudfront_endpoint_url: Option<String>,
    /// S3 endpoint, for listing the buckets of `catalog = "s3"`
    /// distributions; overrides `endpoint_url` for the same reasons.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_endpoint_url: Option<String>,
    /// DynamoDB endpoint (the coordination table); overrides `endpoint_url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dynamodb_endpoint_url: Option<String>,
}

/// `[source]`: the queue the daemon reads purge requests from.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourceConfig {
    /// `sqs` in production; `local` runs an in-memory queue fed by
    /// `POST /v1/purge`, so the daemon runs without an AWS account.
    pub kind: SourceKind,
    /// The SQS queue to long-poll; required with `kind = "sqs"`, ignored
    /// with `local`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_url: Option<String>,
    /// Where rejected messages are forwarded with their reason before being
    /// deleted; without it they stay for the queue's own redrive policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter_queue_url: Option<String>,
    /// Concurrent long-poll loops: one receive returns at most 10 messages,
    /// so a busy queue needs several.
    pub pollers: u32,
    /// Long-poll wait per receive (SQS allows 0 to 20); longer means fewer
    /// empty receives, which SQS bills.
    pub wait_time_seconds: u64,
    /// Visibility given to a received message; the daemon extends it before
    /// it runs out while the message waits, so this bounds how soon a
    /// message reappears after a crash (SQS allows up to 43,200).
    pub visibility_timeout_seconds: u64,
    /// Receiving pauses while this many messages are held: backpressure so
    /// that a backlog stays in SQS rather than in memory.
    pub max_pending_messages: usize,
    /// ...or while the messages held take this many bytes (an estimate:
    /// bodies until decoded, then the decoded paths, and the receipts), so
    /// that memory is bounded by size and not only by count. With
    /// `kind = "local"`, the in-memory queue also refuses new requests (503)
    /// once it holds this many bytes or `max_pending_messages` messages.
    pub max_pending_bytes: u64,
}

/// `[distributions.ALIAS]`: one CloudFront distribution. The alias names it
/// in requests, metrics labels and logs.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistributionConfig {
    /// The CloudFront distribution id (`E2ABCDEF123456`); required. With
    /// `tenant_id`, the multi-tenant distribution the tenant belongs to.
    pub id: String,
    /// A distribution tenant (`dt_...`) of the multi-tenant distribution
    /// `id`: this entry is invalidated through the tenant's own calls
    /// (CreateInvalidationForDistributionTenant and its Get/List), with its
    /// own in-flight limits and pending set, and is named in requests by its
    /// alias or this id, never by `id`, which several entries share.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// Exact paths this daemon may keep in progress (AWS allows 3,000 per
    /// distribution, counting other tools'); lower it to leave room for them.
    pub max_inflight_paths: usize,
    /// Wildcard paths this daemon may keep in progress (AWS allows 15, counted
    /// apart from exact paths); lower it to leave room for others.
    pub max_inflight_wildcards: usize,
    /// What the site serves, for the least-blast planner to price a
    /// wildcard by what it purges beyond the request.
    pub catalog: CatalogSource,
    /// With `catalog = "file"`: one served path per line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalog_file: Option<PathBuf>,
    /// Whether the distribution has a CacheTagConfig, so that requests may
    /// purge by cache tag. Without it CloudFront accepts tag items and
    /// purges nothing, so requests with tags are rejected instead.
    pub cache_tags: bool,
    /// Checking at the edge that a completed purge took (off when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyConfig>,
    /// Refilling the cache after a completed purge (off when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warm: Option<WarmConfig>,
    /// The `[accounts.NAME]` this distribution lives in (unset: the default
    /// credentials' account), whose budget and create rate it shares.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

/// `[routing]`: where requests that do not name a distribution go.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// Alias used by plain-text requests and native ones without
    /// `distribution`. When unset and exactly one distribution is configured,
    /// that one; when unset with several, such requests are rejected as
    /// `unknown_distribution`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_distribution: Option<String>,
    /// `[[routing.s3]]`: which bucket's S3 events purge which distribution.
    pub s3: Vec<S3Route>,
    /// Regular expressions (the `regex` crate's syntax) of paths that never
    /// need purging, such as content-hashed assets that every deploy names
    /// anew: matched against each decoded path as it would be submitted
    /// (percent-encoded), a match is dropped and counted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skip: Vec<String>,
}

/// `[[routing.s3]]`: maps an S3 object key to a CloudFront path.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Route {
    /// Bucket whose events this route takes; required.
    pub bucket: String,
    /// Alias of the distribution to purge; required.
    pub distribution: String,
    /// Only keys under this prefix are routed; it is stripped before
    /// `path_prefix` is prepended, so a bucket folder can map to the site root.
    pub key_prefix: String,
    /// Prepended to the rest of the key to form the path; starts with `/`
    /// because every CloudFront path does.
    pub path_prefix: String,
    /// When set, a key `dir/index.html` also purges `/dir/` and `/dir`,
    /// because CloudFront caches those URLs separately.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_document: Option<String>,
}

/// `[batching]`: when a distribution's pending entries become a batch.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchingConfig {
    /// A batch is planned once no new path has arrived for this long, so
    /// that a deploy's burst of requests coalesces into one invalidation.
    pub quiet_seconds: u64,
    /// ...or once the oldest pending path has waited this long, so that a
    /// steady trickle cannot postpone a purge forever.
    pub max_delay_seconds: u64,
    /// ...or once this many entries are pending (CloudFront takes at most
    /// 3,000 paths in progress), to bound memory and latency under load.
    pub max_batch_paths: usize,
}

/// `[coalesce]`: the planner's wildcard settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoalesceConfig {
    /// `threshold` collapses by a count of entries; `least_blast` picks the
    /// cover that purges least beyond the request for what it bills, which
    /// needs the distribution's catalog (without one, `threshold` applies).
    pub strategy: Strategy,
    /// `least_blast`: how many unrequested objects purged one billed path
    /// is worth; the planner minimises billed + blast / blast_per_path.
    pub blast_per_path: f64,
    /// A directory with at least this many pending entries under it becomes
    /// `dir/*`: one billed path instead of many, at the price of purging
    /// objects nobody asked for.
    pub wildcard_threshold: usize,
    /// Never emit a wildcard shallower than this (`/a/*` has depth 1), which
    /// bounds how much of the site one wildcard can purge.
    pub min_wildcard_depth: usize,
    /// Whether `/*` may be emitted by coalescing; purging the whole site
    /// is a decision an operator makes explicitly.
    pub allow_root_wildcard: bool,
}

/// `[cloudfront]`: how invalidations are created and followed.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloudFrontConfig {
    /// `aws` calls CloudFront; `simulate` models invalidations in memory with
    /// AWS's limits, for local runs and rehearsals without an account.
    pub mode: CloudFrontMode,
    /// CreateInvalidation calls per second for the whole account (AWS
    /// throttles at a reported ~0.5/s), so the daemon stays under the limit
    /// instead of relying on retries.
    pub create_per_second: f64,
    /// Calls that may go at once after a quiet spell before the rate applies.
    pub create_burst: u32,
    /// How often an in-progress invalidation is checked with GetInvalidation;
    /// messages are deleted only once theirs is accepted, capacity returns
    /// once it completes.
    pub poll_interval_seconds: u64,
    /// How often ListInvalidations counts in-progress invalidations created by
    /// other tools, which share the per-distribution limits.
    pub reconcile_interval_seconds: u64,
    /// In `simulate` mode, how long a simulated invalidation stays in progress
    /// (AWS takes minutes); lets local runs show capacity being held.
    pub simulate_completion_seconds: u64,
}

/// `[catalog]`: how catalogs are kept current.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogConfig {
    /// How often an `s3` catalog is listed again in full; S3 events keep it
    /// current in between, the full listing catches what they missed.
    pub refresh_seconds: u64,
    /// Memory one distribution's catalog may take (its table, and for
    /// `learned` its paths too): a catalog source holding more is refused
    /// whole, a learned catalog forgets its oldest paths.
    pub max_bytes: u64,
    /// Memory all catalogs together may take: a configuration whose
    /// catalogs could take more (their number × `max_bytes`) is refused.
    pub max_total_bytes: u64,
}

/// `[budget]`: the month's path allowance.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetConfig {
    /// Paths the account may spend per calendar month (UTC); AWS bills every
    /// path past the first 1,000 a month.
    pub monthly_paths: u64,
    /// `even` keeps spending within the month's elapsed share (plus
    /// `burst_paths`) so an early storm cannot spend the whole month;
    /// `none` is first come, first served.
    pub pacing: Pacing,
    /// How far `even` pacing may run ahead of the elapsed share, so a normal
    /// deploy is never held.
    pub burst_paths: u64,
    /// What happens once the allowance is spent.
    pub on_exhausted: OnExhausted,
    /// The ledger file that survives restarts, so that spending is never
    /// under-counted; its folder must be writable.
    pub ledger_path: PathBuf,
    /// Count invalidation paths other tools create on the configured
    /// distributions, since AWS bills the account for them too.
    pub count_external: bool,
    /// Where the ledger lives: the file at `ledger_path`, or an item in
    /// `coordination.table` (for replicas, or a container without a disk).
    pub store: StoreKind,
}

/// `[coordination]`: replicas sharing one queue through a lease.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoordinationConfig {
    /// `none`: this daemon is alone; `dynamodb`: replicas share `table`.
    pub kind: CoordinationKind,
    /// The DynamoDB table (partition key `pk`, a string) holding the lease
    /// and, with `budget.store = "dynamodb"`, the ledger.
    pub table: String,
    /// How long a lease lasts without renewal. The leader renews every
    /// third of it and stands down at two thirds, so a standby taking a
    /// lapsed lease never finds the old leader still submitting.
    pub lease_seconds: u64,
    /// This replica's name in the lease and in its CallerReferences; when
    /// unset, the host name and process id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_id: Option<String>,
}

/// `[shutdown]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// On SIGTERM: time to submit what is due before releasing the rest and
    /// exiting; keep it under the supervisor's stop timeout (systemd's
    /// `TimeoutStopSec`, the container runtime's stop grace) or it is killed.
    pub grace_seconds: u64,
}

/// `[http]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address and port (an IP address, not a host name) for `/metrics`,
    /// `/healthz`, `/readyz`, `/v1/status` and `/v1/purge`; loopback by
    /// default because `/v1/purge` spends money.
    #[serde(deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
    /// When set, `POST /v1/purge` needs `Authorization: Bearer <token>`.
    /// Never printed: `check-config` and `Debug` show `<redacted>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enqueue_token: Option<Secret>,
    /// Connections served at once; further clients wait in the kernel's
    /// accept queue, costing the daemon no file descriptor. Lowered at
    /// start-up to leave a reserve below the open-file limit, so that a
    /// flood of connections can never take the descriptors the ledger and
    /// the AWS clients need.
    pub max_connections: usize,
    /// A client must send a request's headers within this long, or the
    /// connection is closed; the same timer closes a keep-alive connection
    /// that stays idle this long between requests.
    pub header_timeout_seconds: u64,
    /// A request, body included, must be read and answered within this
    /// long, or it is answered 408 and the connection closed.
    pub request_timeout_seconds: u64,
}

/// `[log]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` for people and journald, `json` for log pipelines.
    pub format: LogFormat,
    /// A level (`trace`, `debug`, `info`, `warn`, `error`, `off`) or a filter
    /// such as `info,cfpurge=debug`; `RUST_LOG` overrides it.
    pub level: String,
}

// Defaults: the only place they are written (docs/configuration.md and
// config/cfpurge.example.toml show the same values). `AwsConfig` and
// `RoutingConfig` derive theirs: nothing set, no S3 routes.

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            kind: SourceKind::Sqs,
            queue_url: None,
            dead_letter_queue_url: None,
            pollers: 2,
            wait_time_seconds: 20,
            visibility_timeout_seconds: 120,
            max_pending_messages: 50_000,
            max_pending_bytes: 256 * MIB,
        }
    }
}

impl DistributionConfig {
    /// The id a request may name this entry by, besides its alias: its
    /// `tenant_id` for a tenant, else its distribution id.
    pub fn routing_id(&self) -> &str {
        self.tenant_id.as_deref().unwrap_or(&self.id)
    }
}

impl Default for DistributionConfig {
    /// The id has no default: an empty one is reported as missing.
    fn default() -> Self {
        DistributionConfig {
            id: String::new(),
            tenant_id: None,
            max_inflight_paths: 3000,
            max_inflight_wildcards: 15,
            catalog: CatalogSource::None,
            catalog_file: None,
            cache_tags: false,
            verify: None,
            warm: None,
            account: None,
        }
    }
}

impl Default for S3Route {
    /// `bucket` and `distribution` have no default: empty ones are reported
    /// as missing.
    fn default() -> Self {
        S3Route {
            bucket: String::new(),
            distribution: String::new(),
            key_prefix: String::new(),
            path_prefix: "/".to_owned(),
            index_document: None,
        }
    }
}

impl Default for BatchingConfig {
    fn default() -> Self {
        BatchingConfig {
            quiet_seconds: 5,
            max_delay_seconds: 60,
            max_batch_paths: 3000,
        }
    }
}

impl Default for CoalesceConfig {
    fn default() -> Self {
        CoalesceConfig {
            strategy: Strategy::Threshold,
            blast_per_path: 50.0,
            wildcard_threshold: 8,
            min_wildcard_depth: 1,
            allow_root_wildcard: false,
        }
    }
}

impl Default for CloudFrontConfig {
    fn default() -> Self {
        CloudFrontConfig {
            mode: CloudFrontMode::Aws,
            create_per_second: 0.5,
            create_burst: 3,
            poll_interval_seconds: 20,
            reconcile_interval_seconds: 300,
            simulate_completion_seconds: 60,
        }
    }
}

impl Default for CatalogConfig {
    fn default() -> Self {
        CatalogConfig {
            refresh_seconds: 3600,
            max_bytes: crate::catalog::DEFAULT_MAX_BYTES as u64,
            max_total_bytes: 2048 * MIB,
        }
    }
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            monthly_paths: 1000,
            pacing: Pacing::Even,
            burst_paths: 100,
            on_exhausted: OnExhausted::Coalesce,
            ledger_path: PathBuf::from("/var/lib/cfpurge/ledger.json"),
            count_external: true,
            store: StoreKind::File,
        }
    }
}

impl Default for CoordinationConfig {
    fn default() -> Self {
        CoordinationConfig {
            kind: CoordinationKind::None,
            table: "cfpurge".to_owned(),
            lease_seconds: 15,
            replica_id: None,
        }
    }
}

impl CoordinationConfig {
    /// This replica's id: the configured one, else the host name and the
    /// process id (a restarted process is a new holder of the lease).
    pub fn replica(&self) -> String {
        if let Some(id) = &self.replica_id {
            return id.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_default();
        let host: String = host
            .trim()
            .chars()
            .filter(|c| replica_char(*c))
            .take(MAX_REPLICA_ID - 12)
            .collect();
        let host = if host.is_empty() {
            "cfpurge".to_owned()
        } else {
            host
        };
        format!("{host}-{}", std::process::id())
    }
}

/// The longest `coordination.replica_id`: it goes into every
/// CallerReference, which leaves room for the rest of the reference.
pub const MAX_REPLICA_ID: usize = 64;

/// Characters a replica id may hold: safe in a CallerReference, a log
/// line and a DynamoDB attribute, and free of the `-`-less ambiguity of
/// spaces or slashes.
fn replica_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig { grace_seconds: 20 }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 9470)),
            enqueue_token: None,
            max_connections: 256,
            header_timeout_seconds: 10,
            request_timeout_seconds: 30,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

/// Defines a string choice: its TOML spellings are listed once, serde reads
/// them through `TryFrom<String>` so that a wrong value is reported with the
/// accepted ones, and writes them back with `as_str`.
macro_rules! choice {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
        #[serde(try_from = "String")]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every accepted spelling, in the order of the contract.
            pub const ALL: &'static [&'static str] = &[$($text),+];

            /// The spelling used in the file.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;

            fn try_from(s: String) -> Result<Self, String> {
                match s.as_str() {
                    $( $text => Ok($name::$variant), )+
                    _ => Err(format!(
                        "{s:?} is not {}: expected {}",
                        $what,
                        one_of($name::ALL)
                    )),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

choice! {
    /// `source.kind`
    pub enum SourceKind ("a source kind") {
        /// Long-poll an SQS queue.
        Sqs = "sqs",
        /// An in-memory queue fed by `POST /v1/purge`.
        Local = "local",
    }
}

choice! {
    /// `coalesce.strategy`
    pub enum Strategy ("a coalesce strategy") {
        /// A directory with `wildcard_threshold` entries becomes `dir/*`.
        Threshold = "threshold",
        /// The cover with the least `billed + blast / blast_per_path`.
        LeastBlast = "least_blast",
    }
}

choice! {
    /// `distributions.NAME.catalog`
    pub enum CatalogSource ("a catalog source") {
        /// No catalog: the threshold planner.
        None = "none",
        /// The buckets routed to the distribution by `[[routing.s3]]`.
        S3 = "s3",
        /// `catalog_file`, one served path per line.
        File = "file",
        /// Every path requested so far.
        Learned = "learned",
    }
}

choice! {
    /// `cloudfront.mode`
    pub enum CloudFrontMode ("a CloudFront mode") {
        /// Call CloudFront.
        Aws = "aws",
        /// Model invalidations in memory; no AWS calls.
        Simulate = "simulate",
    }
}

choice! {
    /// `budget.pacing`
    pub enum Pacing ("a pacing") {
        /// Spending may not run ahead of the month's elapsed share plus
        /// `burst_paths`.
        Even = "even",
        /// First come, first served.
        None = "none",
    }
}

choice! {
    /// `budget.on_exhausted`
    pub enum OnExhausted ("an exhaustion policy") {
        /// Submit nothing; keep requests queued until allowance returns.
        Hold = "hold",
        /// At most one path per distribution per batch: its widest allowed
        /// wildcard.
        Coalesce = "coalesce",
        /// Plan as usual, count and alert.
        Overspend = "overspend",
    }
}

choice! {
    /// `coordination.kind`
    pub enum CoordinationKind ("a coordination kind") {
        /// This daemon is the only one.
        None = "none",
        /// Replicas share a DynamoDB table; the lease holder works.
        Dynamodb = "dynamodb",
    }
}

choice! {
    /// `budget.store`
    pub enum StoreKind ("a ledger store") {
        /// The file at `budget.ledger_path`.
        File = "file",
        /// An item in `coordination.table`.
        Dynamodb = "dynamodb",
    }
}

choice! {
    /// `log.format`
    pub enum LogFormat ("a log format") {
        /// Plain lines.
        Text = "text",
        /// One JSON object per line.
        Json = "json",
    }
}

/// `http.listen`, with a message that says what is expected.
fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(|_| {
        D::Error::custom(format!(
            "{s:?} is not an IP address and port such as \"127.0.0.1:9470\""
        ))
    })
}

fn one_of(choices: &[&str]) -> String {
    let quoted: Vec<String> = choices.iter().map(|c| format!("{c:?}")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// A secret string (`http.enqueue_token`): `Debug` and `Serialize` print
/// `<redacted>`, so it cannot leak through logs or `check-config`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    const REDACTED: &'static str = "<redacted>";

    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares with a candidate in time that depends only on the lengths,
    /// so that a client cannot find the token byte by byte from timings.
    pub fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), candidate.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Secret::REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(Secret::REDACTED)
    }
}

/// What is wrong with one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The key in dotted form (`batching.quiet_seconds`,
    /// `routing.s3[0].bucket`); empty when the problem has no single key.
    pub key: String,
    /// What is wrong, written to follow the key.
    pub message: String,
    /// The file's line (1-based) when the problem is a value written there
    /// that does not fit the schema.
    pub line: Option<usize>,
}

impl Problem {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            key: key.into(),
            message: message.into(),
            line: None,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{} {}", self.key, self.message)
        }
    }
}

/// Why the configuration could not be loaded. The binary exits with status 2
/// and prints the message, which names the file, the key and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{origin}: line {line}, column {column}: {message}")]
    Syntax {
        /// The file.
        origin: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What the TOML parser expected.
        message: String,
    },
    /// Keys or values are wrong; one problem per line.
    #[error("{}", problem_lines(origin, problems))]
    Invalid {
        /// The file.
        origin: String,
        /// Every problem found (at least one).
        problems: Vec<Problem>,
    },
    /// The effective configuration could not be printed.
    #[error("cannot print the configuration: {0}")]
    Print(String),
}

fn problem_lines(origin: &str, problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(|p| format!("{origin}: {p}")).collect();
    lines.join("\n")
}

/// The longest `coordination.lease_seconds`: a lease item whose expiry
/// lies further ahead than this was not written by a replica whose clock
/// agrees with the reader's.
pub const MAX_LEASE_SECONDS: u64 = 3600;

/// The largest configuration file read: a thousand distributions take
/// well under 1 MiB.
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

impl Config {
    /// Reads `file`, applies the `CFPURGE__SECTION__KEY` variables of the
    /// process environment and validates the result.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let text =
            crate::regular_file::read_to_string(file, MAX_CONFIG_BYTES).map_err(|source| {
                ConfigError::Read {
                    path: file.to_path_buf(),
                    source,
                }
            })?;
        let origin = file.display().to_string();
        let mut env = Vec::new();
        for (name, value) in std::env::vars_os() {
            // Only our variables matter; others may hold anything.
            let Some(name) = name.to_str().filter(|n| is_ours(n)).map(str::to_owned) else {
                continue;
            };
            match value.into_string() {
                Ok(value) => env.push((name, value)),
                Err(_) => {
                    return Err(ConfigError::Invalid {
                        origin,
                        problems: vec![Problem::new(
                            "",
                            format!("environment variable {name} is not valid UTF-8"),
                        )],
                    });
                }
            }
        }
        let config = Config::from_parts(Some(&text), &origin, env)?;
        let problems = config.check_files();
        if !problems.is_empty() {
            return Err(ConfigError::Invalid { origin, problems });
        }
        Ok(config)
    }

    /// The files the configuration names that cfpurge reads, looked at
    /// (not opened): one that exists must be a regular file, links
    /// followed. A device or a FIFO would be read for ever or block the
    /// read (the reads refuse them too; this names the key at start-up).
    /// A file that is not there yet is not a problem here: a ledger is
    /// created, and a catalog file's absence is reported when it is read.
    fn check_files(&self) -> Vec<Problem> {
        let mut files = Vec::new();
        for (alias, d) in &self.distributions {
            if let (CatalogSource::File, Some(file)) = (d.catalog, &d.catalog_file) {
                files.push((format!("distributions.{alias}.catalog_file"), file));
            }
        }
        if self.budget.store == StoreKind::File {
            files.push(("budget.ledger_path".to_owned(), &self.budget.ledger_path));
        }
        files
            .into_iter()
            .filter_map(|(key, file)| {
                let e = crate::regular_file::check(file).err()?;
                Some(Problem::new(
                    key,
                    format!("{:?}: {e}", file.display().to_string()),
                ))
            })
            .collect()
    }

    /// Builds the configuration from the file's text (`None`: defaults only)
    /// and environment variables given as name and value pairs (only those
    /// starting with `CFPURGE_` are looked at), then validates it. `origin`
    /// names the file in messages. [`Config::load`] calls this with the
    /// process environment; tests call it with their own.
    pub fn from_parts(
        toml_text: Option<&str>,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let invalid = |problems: Vec<Problem>| ConfigError::Invalid {
            origin: origin.to_owned(),
            problems,
        };

        let mut overrides = config::Map::new();
        let mut problems = Vec::new();
        for (name, value) in env {
            if !is_ours(&name) {
                continue;
            }
            if let Some(hint) = misspelt_override(&name) {
                problems.push(Problem::new("", hint));
                continue;
            }
            overrides.insert(name, value);
        }
        if !problems.is_empty() {
            return Err(invalid(problems));
        }

        let mut builder = config::Config::builder();
        if let Some(text) = toml_text {
            // The file alone is read strictly first: the toml crate gives
            // the line, and it refuses `quiet_seconds = 1.5` or `id = 5`,
            // which the config crate would round or turn into a string.
            if let Err(e) = text.parse::<toml::Table>() {
                let (line, column) = e
                    .span()
                    .map(|span| line_column(text, span.start))
                    .unwrap_or((1, 1));
                return Err(ConfigError::Syntax {
                    origin: origin.to_owned(),
                    line,
                    column,
                    message: e.message().trim_end().to_owned(),
                });
            }
            if let Err(e) = toml::from_str::<Config>(text) {
                return Err(invalid(vec![from_toml_error(e, text)]));
            }
            builder = builder.add_source(config::File::from_str(text, config::FileFormat::Toml));
        }
        let env_source = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator(ENV_SEPARATOR)
            .separator(ENV_SEPARATOR)
            .source(Some(overrides.clone()));
        let merged = builder
            .add_source(env_source)
            .build()
            .map_err(|e| invalid(vec![from_config_error(e, &overrides)]))?;
        let mut cfg: Config = merged
            .try_deserialize()
            .map_err(|e| invalid(vec![from_config_error(e, &overrides)]))?;

        cfg.resolve();
        let mut problems = cfg.problems();
        if problems.is_empty() {
            return Ok(cfg);
        }
        for p in &mut problems {
            if let Some(var) = env_var_for(&p.key, &overrides) {
                p.message.push_str(&format!(" (set by {var})"));
            }
        }
        Err(invalid(problems))
    }

    /// The distribution a request names: by alias, else by id (a tenant
    /// entry by its `tenant_id`, never by its distribution's id, which
    /// several entries share).
    pub fn distribution(&self, name: &str) -> Option<(&str, &DistributionConfig)> {
        self.distributions
            .get_key_value(name)
            .or_else(|| {
                self.distributions
                    .iter()
                    .find(|(_, d)| d.routing_id() == name)
            })
            .map(|(alias, d)| (alias.as_str(), d))
    }

    /// The distribution for requests that name none, if there is one.
    pub fn default_distribution(&self) -> Option<(&str, &DistributionConfig)> {
        let alias = self.routing.default_distribution.as_deref()?;
        self.distributions
            .get_key_value(alias)
            .map(|(alias, d)| (alias.as_str(), d))
    }

    /// Fills in what follows from other keys, before validation.
    fn resolve(&mut self) {
        if self.routing.default_distribution.is_none() && self.distributions.len() == 1 {
            self.routing.default_distribution = self.distributions.keys().next().cloned();
        }
    }

    /// Every problem with the values, in key order of the file.
    fn problems(&self) -> Vec<Problem> {
        let mut v = Validator::default();
        self.check_aws(&mut v);
        self.check_source(&mut v);
        self.check_distributions(&mut v);
        self.check_accounts(&mut v);
        self.check_routing(&mut v);
        self.check_batching(&mut v);
        self.check_coalesce(&mut v);
        self.check_cloudfront(&mut v);
        self.check_budget(&mut v);
        self.check_coordination(&mut v);
        v.range(
            "catalog.refresh_seconds",
            self.catalog.refresh_seconds,
            1,
            7 * 86_400,
        );
        self.check_catalog_memory(&mut v);
        v.range(
            "shutdown.grace_seconds",
            self.shutdown.grace_seconds,
            0,
            3600,
        );
        self.check_http(&mut v);
        self.check_log(&mut v);
        v.problems
    }

    fn check_aws(&self, v: &mut Validator) {
        let aws = &self.aws;
        if let Some(region) = &aws.region {
            let ok = !region.is_empty()
                && region
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                v.push(
                    "aws.region",
                    format!("{region:?} is not a region name such as \"us-east-1\""),
                );
            }
        }
        v.url("aws.endpoint_url", aws.endpoint_url.as_deref());
        v.url("aws.sqs_endpoint_url", aws.sqs_endpoint_url.as_deref());
        v.url(
            "aws.cloudfront_endpoint_url",
            aws.cloudfront_endpoint_url.as_deref(),
        );
        v.url("aws.s3_endpoint_url", aws.s3_endpoint_url.as_deref());
        v.url(
            "aws.dynamodb_endpoint_url",
            aws.dynamodb_endpoint_url.as_deref(),
        );
    }

    fn check_coordination(&self, v: &mut Validator) {
        let c = &self.coordination;
        let dynamodb = c.kind == CoordinationKind::Dynamodb;
        if dynamodb && self.budget.store != StoreKind::Dynamodb {
            v.push(
                "budget.store",
                "must be \"dynamodb\" with coordination.kind = \"dynamodb\": \
                 replicas share one ledger (move a file ledger there with `cfpurge ledger import`)",
            );
        }
        if dynamodb && self.source.kind != SourceKind::Sqs {
            v.push(
                "coordination.kind",
                "\"dynamodb\" needs source.kind = \"sqs\": replicas share one queue",
            );
        }
        if dynamodb || self.budget.store == StoreKind::Dynamodb {
            let t = &c.table;
            let ok = (3..=255).contains(&t.len())
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            if !ok {
                v.push(
                    "coordination.table",
                    format!(
                        "{t:?} is not a DynamoDB table name (3 to 255 of a-z, A-Z, 0-9, _, - and .)"
                    ),
                );
            }
        }
        // Renewing every third of the lease needs a second at least.
        v.range(
            "coordination.lease_seconds",
            c.lease_seconds,
            3,
            MAX_LEASE_SECONDS,
        );
        if let Some(id) = &c.replica_id {
            if id.is_empty() {
                v.push(
                    "coordination.replica_id",
                    "must not be empty (or leave it unset for host name and process id)",
                );
            } else if id.len() > MAX_REPLICA_ID || !id.chars().all(replica_char) {
                v.push(
                    "coordination.replica_id",
                    format!(
                        "{id:?} must be 1 to {MAX_REPLICA_ID} of A-Z, a-z, 0-9, -, _ and . \
                         (it goes into CallerReferences)"
                    ),
                );
            }
        }
    }

    fn check_source(&self, v: &mut Validator) {
        let s = &self.source;
        if s.kind == SourceKind::Sqs {
            match s.queue_url.as_deref() {
                None | Some("") => v.push(
                    "source.queue_url",
                    "is required with source.kind = \"sqs\" (or set kind = \"local\")",
                ),
                url => v.url("source.queue_url", url),
            }
        }
        v.url(
            "source.dead_letter_queue_url",
            s.dead_letter_queue_url.as_deref(),
        );
        if s.kind == SourceKind::Sqs
            && s.dead_letter_queue_url.is_some()
            && s.dead_letter_queue_url == s.queue_url
        {
            v.push(
                "source.dead_letter_queue_url",
                "is the same queue as source.queue_url: rejected messages would come back",
            );
        }
        v.range("source.pollers", s.pollers.into(), 1, 64);
        v.range("source.wait_time_seconds", s.wait_time_seconds, 0, 20);
        v.range(
            "source.visibility_timeout_seconds",
            s.visibility_timeout_seconds,
            1,
            43_200,
        );
        v.range(
            "source.max_pending_messages",
            s.max_pending_messages as u64,
            1,
            MAX_PENDING_MESSAGES,
        );
        // One message of the largest size must fit.
        v.range(
            "source.max_pending_bytes",
            s.max_pending_bytes,
            MIB,
            MAX_PENDING_BYTES,
        );
    }

    fn check_distributions(&self, v: &mut Validator) {
        if self.distributions.is_empty() {
            v.push(
                "distributions",
                "must configure at least one distribution, e.g. [distributions.www] id = \"E2ABCDEF123456\"",
            );
        }
        let mut ids: BTreeMap<&str, &str> = BTreeMap::new();
        let mut tenants: BTreeMap<&str, &str> = BTreeMap::new();
        for (alias, d) in &self.distributions {
            let key = format!("distributions.{alias}");
            if !valid_alias(alias) {
                v.push(
                    &key,
                    "has an invalid alias: use 1 to 64 of a-z, 0-9, _ and - without \"__\" \
                     (aliases are lowercase because environment overrides \
                     CFPURGE__DISTRIBUTIONS__ALIAS__KEY reach only lowercase keys)",
                );
            }
            let id_key = format!("{key}.id");
            if d.id.is_empty() {
                v.push(
                    &id_key,
                    "is required (the CloudFront distribution id, e.g. \"E2ABCDEF123456\")",
                );
            } else if !valid_distribution_id(&d.id) {
                v.push(
                    &id_key,
                    format!(
                        "{:?} is not a CloudFront distribution id (upper-case letters and digits, e.g. \"E2ABCDEF123456\")",
                        d.id
                    ),
                );
            } else if d.tenant_id.is_none()
                && let Some(other) = ids.insert(&d.id, alias)
            {
                // Tenant entries share their distribution's id: each has
                // its own tenant, limits and invalidations.
                v.push(
                    &id_key,
                    format!(
                        "{:?} is also the id of distributions.{other}: one distribution may have only one alias, \
                         or its in-flight limits would be counted twice",
                        d.id
                    ),
                );
            }
            if let Some(tenant) = &d.tenant_id {
                let tenant_key = format!("{key}.tenant_id");
                if !valid_tenant_id(tenant) {
                    v.push(
                        &tenant_key,
                        format!(
                            "{tenant:?} is not a CloudFront distribution tenant id (\"dt_\" and letters and digits, \
                             e.g. \"dt_2AbCdEfGh\")"
                        ),
                    );
                } else if let Some(other) = tenants.insert(tenant, alias) {
                    v.push(
                        &tenant_key,
                        format!(
                            "{tenant:?} is also the tenant_id of distributions.{other}: one tenant may have only one alias, \
                             or its in-flight limits would be counted twice"
                        ),
                    );
                }
            }
            v.range(
                &format!("{key}.max_inflight_paths"),
                d.max_inflight_paths as u64,
                1,
                3000,
            );
            v.range(
                &format!("{key}.max_inflight_wildcards"),
                d.max_inflight_wildcards as u64,
                1,
                15,
            );
            self.check_catalog(v, &key, alias, d);
            let token = self.http.enqueue_token.as_ref();
            for (key, message) in edge::problems(alias, d.verify.as_ref(), d.warm.as_ref(), token) {
                v.push(&key, message);
            }
        }
        self.check_names(v);
    }

    /// A request names an entry by its alias, its `tenant_id`, or (for an
    /// ordinary distribution) its `id`; a multi-tenant distribution's `id`
    /// is answered with the tenants to name instead. A name that is one
    /// entry's alias and another entry's id or tenant id would mean two
    /// targets, and routing would pick one silently (the alias): refused,
    /// naming both. (Ids shared by two entries are checked above.)
    fn check_names(&self, v: &mut Validator) {
        for (alias, d) in &self.distributions {
            let names = [("id", Some(&d.id)), ("tenant_id", d.tenant_id.as_ref())];
            for (field, name) in names {
                let Some(name) = name else { continue };
                if name == alias || !self.distributions.contains_key(name) {
                    continue;
                }
                v.push(
                    &format!("distributions.{alias}.{field}"),
                    format!(
                        "{name:?} is also the alias of distributions.{name}: a request naming \
                         {name:?} could mean either entry; rename one of them"
                    ),
                );
            }
        }
    }

    fn check_catalog(&self, v: &mut Validator, key: &str, alias: &str, d: &DistributionConfig) {
        let file_key = format!("{key}.catalog_file");
        match (d.catalog, &d.catalog_file) {
            (CatalogSource::File, None) => v.push(
                &file_key,
                "is required with catalog = \"file\" (one served path per line)",
            ),
            (CatalogSource::File, Some(f)) if f.as_os_str().is_empty() => {
                v.push(&file_key, "must not be empty")
            }
            (other, Some(_)) if other != CatalogSource::File => v.push(
                &file_key,
                format!(
                    "is only read with catalog = \"file\" (catalog is \"{}\")",
                    other.as_str()
                ),
            ),
            _ => {}
        }
        if d.catalog == CatalogSource::S3
            && !self.routing.s3.iter().any(|r| r.distribution == alias)
        {
            v.push(
                &format!("{key}.catalog"),
                format!(
                    "is \"s3\" but no [[routing.s3]] route has distribution = {alias:?}: \
                     there is no bucket to list"
                ),
            );
        }
    }

    /// Each catalog may take `catalog.max_bytes`, so the catalogs together
    /// may take that many times their number: refused when that passes
    /// `catalog.max_total_bytes`, so what is configured always fits.
    fn check_catalog_memory(&self, v: &mut Validator) {
        let c = &self.catalog;
        v.range("catalog.max_bytes", c.max_bytes, MIB, MAX_CATALOG_BYTES);
        v.range(
            "catalog.max_total_bytes",
            c.max_total_bytes,
            MIB,
            MAX_CATALOG_BYTES,
        );
        let catalogs = self
            .distributions
            .values()
            .filter(|d| d.catalog != CatalogSource::None)
            .count() as u64;
        let all = catalogs.saturating_mul(c.max_bytes);
        if c.max_bytes <= MAX_CATALOG_BYTES && all > c.max_total_bytes {
            v.push(
                "catalog.max_total_bytes",
                format!(
                    "{catalogs} distributions have a catalog, each may take catalog.max_bytes \
                     ({} MiB): {} MiB in all, more than the {} MiB allowed; raise \
                     catalog.max_total_bytes, lower catalog.max_bytes or give fewer \
                     distributions a catalog",
                    c.max_bytes / MIB,
                    all / MIB,
                    c.max_total_bytes / MIB
                ),
            );
        }
    }

    fn check_routing(&self, v: &mut Validator) {
        if let Some(name) = &self.routing.default_distribution {
            self.check_alias_ref(v, "routing.default_distribution", name);
        }
        for (i, route) in self.routing.s3.iter().enumerate() {
            let key = format!("routing.s3[{i}]");
            if route.bucket.is_empty() {
                v.push(&format!("{key}.bucket"), "is required");
            } else if route.bucket.contains('/') || route.bucket.chars().any(char::is_whitespace) {
                v.push(
                    &format!("{key}.bucket"),
                    format!(
                        "{:?} is not a bucket name (no \"/\" or spaces)",
                        route.bucket
                    ),
                );
            }
            if route.distribution.is_empty() {
                v.push(&format!("{key}.distribution"), "is required");
            } else {
                self.check_alias_ref(v, &format!("{key}.distribution"), &route.distribution);
            }
            if !route.path_prefix.starts_with('/') {
                v.push(
                    &format!("{key}.path_prefix"),
                    format!("{:?} must start with \"/\"", route.path_prefix),
                );
            }
            if let Some(index) = &route.index_document
                && (index.is_empty() || index.contains('/'))
            {
                v.push(
                    &format!("{key}.index_document"),
                    format!("{index:?} must be a file name such as \"index.html\""),
                );
            }
        }
        for (i, pattern) in self.routing.skip.iter().enumerate() {
            if let Err(e) = regex::Regex::new(pattern) {
                // The regex crate's message spans lines (the pattern, a
                // caret, the error): one line here.
                let detail = e
                    .to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                v.push(
                    &format!("routing.skip[{i}]"),
                    format!("{pattern:?} is not a valid regular expression: {detail}"),
                );
            } else if pattern.is_empty() {
                v.push(
                    &format!("routing.skip[{i}]"),
                    "is empty: it would match every path and purge nothing",
                );
            }
        }
        // Each may compile and the set still not (its size limit counts
        // them all): the daemon uses the set.
        if self
            .routing
            .skip
            .iter()
            .all(|p| regex::Regex::new(p).is_ok())
            && let Err(e) = regex::RegexSet::new(&self.routing.skip)
        {
            let detail = e
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            v.push(
                "routing.skip",
                format!("the patterns cannot be compiled together: {detail}"),
            );
        }
    }

    fn check_alias_ref(&self, v: &mut Validator, key: &str, name: &str) {
        if self.distributions.contains_key(name) {
            return;
        }
        match self.distribution(name) {
            Some((alias, _)) => v.push(
                key,
                format!("{name:?} is a distribution id: name its alias {alias:?}"),
            ),
            None => {
                let aliases: Vec<&str> = self.distributions.keys().map(String::as_str).collect();
                v.push(
                    key,
                    format!(
                        "{name:?} is not a configured distribution (configured: {})",
                        one_of(&aliases)
                    ),
                );
            }
        }
    }

    fn check_batching(&self, v: &mut Validator) {
        let b = &self.batching;
        v.at_least("batching.quiet_seconds", b.quiet_seconds, 1);
        if b.max_delay_seconds < b.quiet_seconds {
            v.push(
                "batching.max_delay_seconds",
                format!(
                    "must be ≥ batching.quiet_seconds ({}) (got {})",
                    b.quiet_seconds, b.max_delay_seconds
                ),
            );
        } else {
            // A message cannot stay in flight past SQS's 12 hours.
            v.range("batching.max_delay_seconds", b.max_delay_seconds, 1, 43_200);
        }
        v.range(
            "batching.max_batch_paths",
            b.max_batch_paths as u64,
            1,
            3000,
        );
    }

    fn check_coalesce(&self, v: &mut Validator) {
        let c = &self.coalesce;
        v.at_least(
            "coalesce.wildcard_threshold",
            c.wildcard_threshold as u64,
            2,
        );
        v.at_least(
            "coalesce.min_wildcard_depth",
            c.min_wildcard_depth as u64,
            1,
        );
        // The upper bound catches a value meant for something else; past a
        // billion every wildcard is free anyway.
        if !(c.blast_per_path > 0.0 && c.blast_per_path <= 1e9) {
            v.push(
                "coalesce.blast_per_path",
                format!("must be > 0 and ≤ 1000000000 (got {})", c.blast_per_path),
            );
        }
    }

    fn check_cloudfront(&self, v: &mut Validator) {
        let c = &self.cloudfront;
        // The upper bound catches a rate written per minute or per hour; the
        // lower one keeps the interval between calls, times the burst, a
        // number the rate limiter can hold (1e-300 made it overflow).
        if !(MIN_CREATE_PER_SECOND..=100.0).contains(&c.create_per_second) {
            v.push(
                "cloudfront.create_per_second",
                format!(
                    "must be ≥ {MIN_CREATE_PER_SECOND} (one call in 11.6 days) and ≤ 100 (got {:?}); \
                     AWS throttles at about 0.5",
                    c.create_per_second
                ),
            );
        }
        v.range("cloudfront.create_burst", c.create_burst.into(), 1, 100);
        v.range(
            "cloudfront.poll_interval_seconds",
            c.poll_interval_seconds,
            1,
            3600,
        );
        v.range(
            "cloudfront.reconcile_interval_seconds",
            c.reconcile_interval_seconds,
            1,
            86_400,
        );
        v.range(
            "cloudfront.simulate_completion_seconds",
            c.simulate_completion_seconds,
            0,
            86_400,
        );
    }

    fn check_budget(&self, v: &mut Validator) {
        let b = &self.budget;
        v.at_least("budget.monthly_paths", b.monthly_paths, 1);
        // Any burst is fine; only the TOML limit applies.
        v.at_least("budget.burst_paths", b.burst_paths, 0);
        if b.ledger_path.as_os_str().is_empty() {
            v.push("budget.ledger_path", "must not be empty");
        } else if b.ledger_path.to_str().is_none() {
            v.push("budget.ledger_path", "must be valid UTF-8");
        }
    }

    fn check_http(&self, v: &mut Validator) {
        let h = &self.http;
        if let Some(token) = &h.enqueue_token
            && let Err(why) = token_problem(token.expose())
        {
            // The value itself is never printed.
            v.push("http.enqueue_token", why);
        }
        v.range(
            "http.max_connections",
            h.max_connections as u64,
            1,
            MAX_HTTP_CONNECTIONS,
        );
        v.range(
            "http.header_timeout_seconds",
            h.header_timeout_seconds,
            1,
            3600,
        );
        v.range(
            "http.request_timeout_seconds",
            h.request_timeout_seconds,
            1,
            3600,
        );
    }

    /// What is allowed but probably a mistake, one line each: `check-config`
    /// prints them and `run` logs them at start-up.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if !self.http.listen.ip().is_loopback() && self.http.enqueue_token.is_none() {
            warnings.push(format!(
                "http.listen {} is reachable from other machines and http.enqueue_token is not \
                 set: anyone who reaches it can spend the invalidation budget through \
                 POST /v1/purge; set a token (CFPURGE__HTTP__ENQUEUE_TOKEN) or listen on 127.0.0.1",
                self.http.listen
            ));
        }
        warnings.extend(self.account_warnings());
        warnings
    }

    fn check_log(&self, v: &mut Validator) {
        const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];
        let level = self.log.level.trim();
        let ok = if level.contains('=') || level.contains(',') {
            tracing_subscriber::EnvFilter::try_new(level).is_ok()
        } else {
            // A bare word would be read by EnvFilter as a target name, so
            // "verbose" would silently log nothing: only levels here.
            LEVELS.contains(&level.to_ascii_lowercase().as_str())
        };
        if !ok {
            v.push(
                "log.level",
                format!(
                    "{:?} is not a level ({}) or a filter such as \"info,cfpurge=debug\"",
                    self.log.level,
                    one_of(LEVELS)
                ),
            );
        }
    }
}

/// Lowest `cloudfront.create_per_second`: one call in 11.6 days. The rate
/// limiter keeps the interval times the burst (up to 100) in nanoseconds in
/// 64 bits, which this leaves room for.
const MIN_CREATE_PER_SECOND: f64 = 1e-6;

/// Why a bearer token cannot work, if it cannot: a client sends it in an
/// `Authorization` header, whose value is trimmed and must be visible ASCII.
fn token_problem(token: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err("must not be empty (leave it unset for no token)".into());
    }
    if token.trim() != token {
        return Err(
            "must not start or end with white space: a client's header value is trimmed, so it would never match"
                .into(),
        );
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(
            "must be visible ASCII characters only (no spaces or control characters), as an HTTP header carries it"
                .into(),
        );
    }
    Ok(())
}

/// A mebibyte.
const MIB: u64 = 1 << 20;

/// Most `source.max_pending_messages`: SQS keeps at most 120,000 messages in
/// flight per queue.
const MAX_PENDING_MESSAGES: u64 = 120_000;

/// Most `source.max_pending_bytes` (1 TiB): far above any machine's memory,
/// and small enough to add to without overflow.
const MAX_PENDING_BYTES: u64 = 1 << 40;

/// Most `catalog.max_bytes` and `catalog.max_total_bytes` (1 TiB), as for
/// `source.max_pending_bytes`.
const MAX_CATALOG_BYTES: u64 = 1 << 40;

/// Most `http.max_connections`: far more than an operations endpoint needs,
/// and below any sensible open-file limit.
const MAX_HTTP_CONNECTIONS: u64 = 65_536;

/// The largest integer TOML has (a signed 64-bit one).
const TOML_INTEGER_MAX: u64 = i64::MAX as u64;

/// Collects problems; each check adds what it finds and goes on.
#[derive(Default)]
struct Validator {
    problems: Vec<Problem>,
}

impl Validator {
    fn push(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(Problem::new(key, message));
    }

    /// `min` or more, and no more than a TOML file can hold: an override
    /// can set more, but `check-config` would then print a file that does
    /// not load.
    fn at_least(&mut self, key: &str, value: u64, min: u64) {
        if value < min {
            self.push(key, format!("must be ≥ {min} (got {value})"));
        } else if value > TOML_INTEGER_MAX {
            self.push(
                key,
                format!(
                    "must be ≤ {TOML_INTEGER_MAX}, the largest number a TOML file holds (got {value})"
                ),
            );
        }
    }

    fn range(&mut self, key: &str, value: u64, min: u64, max: u64) {
        if value < min || value > max {
            self.push(key, format!("must be {min}..={max} (got {value})"));
        }
    }

    fn url(&mut self, key: &str, value: Option<&str>) {
        if let Some(url) = value {
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"));
            if !rest.is_some_and(|r| !r.is_empty() && !r.contains(char::is_whitespace)) {
                self.push(key, format!("{url:?} is not an http:// or https:// URL"));
            }
        }
    }
}

/// `[a-z0-9_-]{1,64}` without `__`, which would split the environment
/// variable's name at the wrong place.
fn valid_alias(alias: &str) -> bool {
    (1..=64).contains(&alias.len())
        && !alias.contains("__")
        && alias
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Distribution tenant ids are `dt_` and letters and digits
/// (`dt_2wjDZi3hD1ivOXf6rpZJO1AB`).
fn valid_tenant_id(id: &str) -> bool {
    id.strip_prefix("dt_").is_some_and(|rest| {
        (1..=128).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// CloudFront ids are upper-case letters and digits (`E2ABCDEF123456`).
fn valid_distribution_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

const SECTIONS: &[&str] = &[
    "aws",
    "source",
    "distributions",
    "accounts",
    "routing",
    "batching",
    "coalesce",
    "cloudfront",
    "budget",
    "catalog",
    "coordination",
    "shutdown",
    "http",
    "log",
];

/// Whether an environment variable is meant for the configuration: a
/// `CFPURGE_` name other than `CFPURGE_CONFIG`, which names the file.
fn is_ours(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    upper.starts_with("CFPURGE_") && upper != "CFPURGE_CONFIG"
}

/// A hint when a variable looks like an override spelt with single
/// underscores after the prefix (`CFPURGE_SOURCE_QUEUE_URL`), which the
/// config crate would otherwise ignore without a word.
fn misspelt_override(name: &str) -> Option<String> {
    let upper = name.to_ascii_uppercase();
    let rest = upper.strip_prefix("CFPURGE_")?;
    if rest.starts_with('_') {
        return None;
    }
    let section = SECTIONS
        .iter()
        .find(|s| rest.starts_with(&format!("{}_", s.to_ascii_uppercase())))?;
    let key = &rest[section.len()..].trim_start_matches('_');
    Some(format!(
        "environment variable {name} is not an override: they are spelt with double underscores, \
         CFPURGE__{}__{key}",
        section.to_ascii_uppercase()
    ))
}

/// The override variable that sets `key`, if one does.
fn env_var_for(key: &str, overrides: &config::Map<String, String>) -> Option<String> {
    if key.is_empty() {
        return None;
    }
    let wanted = format!(
        "{ENV_PREFIX}{ENV_SEPARATOR}{}",
        key.replace('.', ENV_SEPARATOR)
    )
    .to_ascii_uppercase();
    overrides
        .keys()
        .find(|name| name.to_ascii_uppercase() == wanted)
        .cloned()
}

/// Turns the toml crate's error about the file into a problem naming the
/// key and the line.
fn from_toml_error(mut err: toml::de::Error, text: &str) -> Problem {
    let start = err.span().map(|s| s.start);
    // Without the input, Display ends with "in `a.b`": the only way the
    // crate tells the key path.
    err.set_input(None);
    let shown = err.to_string();
    let mut key = shown
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("in `").and_then(|k| k.strip_suffix('`')))
        .unwrap_or_default()
        .to_owned();
    let offset = start.unwrap_or(0);
    // Arrays lose their index in that path; count the headers before.
    if let Some(rest) = key.strip_prefix("routing.s3") {
        let headers = text[..offset.min(text.len())]
            .lines()
            .filter(|l| l.replace(' ', "").starts_with("[[routing.s3]]"))
            .count();
        if headers > 0 {
            key = format!("routing.s3[{}]{rest}", headers - 1);
        }
    }
    let mut p = describe(&key, err.message());
    p.line = start.map(|s| line_column(text, s).0);
    p
}

/// Turns the config crate's error (a value from the environment) into a
/// problem naming the key and the variable.
fn from_config_error(err: config::ConfigError, overrides: &config::Map<String, String>) -> Problem {
    let mut p = match err {
        config::ConfigError::NotFound(key) => Problem::new(key, "is required"),
        config::ConfigError::Type {
            unexpected,
            expected,
            key,
            ..
        } => describe(
            &key.unwrap_or_default(),
            &format!("invalid type: {unexpected}, expected {expected}"),
        ),
        config::ConfigError::At { error, key, .. } => {
            let inner = match *error {
                config::ConfigError::Message(m) => m,
                other => other.to_string(),
            };
            describe(&key.unwrap_or_default(), &inner)
        }
        config::ConfigError::Message(m) => describe("", &m),
        other => Problem::new("", other.to_string()),
    };
    if let Some(var) = env_var_for(&p.key, overrides) {
        p.message
            .push_str(&format!(" (from environment variable {var})"));
    }
    p
}

/// Rewrites serde's messages so that they read after the full key
/// ("batching.quiet_secs is not a known key", "... has the wrong type");
/// messages written here (choices, addresses) are kept as they are.
fn describe(key: &str, message: &str) -> Problem {
    let join = |field: &str| {
        if key.is_empty() {
            field.to_owned()
        } else {
            format!("{key}.{field}")
        }
    };
    let field_and_rest = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split_once('`'))
            .map(|(field, rest)| {
                (
                    field.to_owned(),
                    rest.trim_start_matches(',').trim().to_owned(),
                )
            })
    };
    if let Some((field, hint)) = field_and_rest("unknown field `") {
        let message = if hint.is_empty() {
            "is not a known key".to_owned()
        } else {
            format!("is not a known key ({hint})")
        };
        return Problem::new(join(&field), message);
    }
    if let Some((field, _)) = field_and_rest("missing field `") {
        return Problem::new(join(&field), "is required");
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        return Problem::new(
            key,
            format!("has the wrong type: got {}", plain_types(rest)),
        );
    }
    if let Some(rest) = message.strip_prefix("invalid value: ") {
        return Problem::new(key, format!("has a wrong value: got {}", plain_types(rest)));
    }
    Problem::new(key, message)
}

/// Says "a whole number" and "a table" where serde names Rust types.
fn plain_types(message: &str) -> String {
    let mut out = message
        .replace("expected u64", "expected a whole number")
        .replace("expected u32", "expected a whole number")
        .replace("expected usize", "expected a whole number")
        .replace("expected f64", "expected a number")
        .replace("expected a sequence", "expected a list")
        .replace("expected a map", "expected a table");
    if let Some(at) = out.find("expected struct ") {
        out.replace_range(at.., "expected a table");
    }
    out
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> Config {
        let mut cfg = Config::default();
        cfg.source.queue_url = Some("https://sqs.us-east-1.amazonaws.com/123456789012/q".into());
        cfg.distributions.insert(
            "www".into(),
            DistributionConfig {
                id: "E2ABCDEF123456".into(),
                ..DistributionConfig::default()
            },
        );
        cfg.resolve();
        cfg
    }

    fn keys(cfg: &Config) -> Vec<String> {
        cfg.problems().into_iter().map(|p| p.key).collect()
    }

    #[test]
    fn catalogs_that_could_take_more_than_their_total_are_refused() {
        let mut cfg = minimal();
        for i in 0..3000 {
            cfg.distributions.insert(
                format!("t{i}"),
                DistributionConfig {
                    id: "E2ABCDEF123456".into(),
                    tenant_id: Some(format!("dt_{i}")),
                    catalog: CatalogSource::Learned,
                    ..DistributionConfig::default()
                },
            );
        }
        let problems: Vec<Problem> = cfg
            .problems()
            .into_iter()
            .filter(|p| p.key.starts_with("catalog."))
            .collect();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "catalog.max_total_bytes");
        assert_eq!(
            problems[0].message,
            "3000 distributions have a catalog, each may take catalog.max_bytes (128 MiB): \
             384000 MiB in all, more than the 2048 MiB allowed; raise catalog.max_total_bytes, \
             lower catalog.max_bytes or give fewer distributions a catalog"
        );
        // 1 MiB each, 3 GiB in all: fits. Less than 1 MiB each is refused
        // (a catalog that small holds some 23,000 strings).
        cfg.catalog.max_bytes = MIB;
        cfg.catalog.max_total_bytes = 3 * 1024 * MIB;
        assert!(
            cfg.problems()
                .iter()
                .all(|p| !p.key.starts_with("catalog."))
        );
        cfg.catalog.max_bytes = MIB / 2;
        assert!(cfg.problems().iter().any(|p| p.key == "catalog.max_bytes"));
    }

    #[test]
    fn minimal_is_valid_and_gets_its_default_distribution() {
        let cfg = minimal();
        assert_eq!(cfg.problems(), vec![]);
        assert_eq!(cfg.routing.default_distribution.as_deref(), Some("www"));
    }

    #[test]
    fn no_distribution_is_a_problem() {
        let mut cfg = minimal();
        cfg.distributions.clear();
        cfg.routing.default_distribution = None;
        assert_eq!(keys(&cfg), ["distributions"]);
    }

    #[test]
    fn several_distributions_leave_the_default_unset() {
        let mut cfg = Config::default();
        cfg.source.kind = SourceKind::Local;
        for (alias, id) in [("www", "EAAA"), ("api", "EBBB")] {
            cfg.distributions.insert(
                alias.into(),
                DistributionConfig {
                    id: id.into(),
                    ..DistributionConfig::default()
                },
            );
        }
        cfg.resolve();
        assert_eq!(cfg.routing.default_distribution, None);
        assert_eq!(cfg.problems(), vec![]);
        assert_eq!(cfg.distribution("EBBB").map(|(a, _)| a), Some("api"));
        assert_eq!(
            cfg.distribution("api").map(|(_, d)| d.id.as_str()),
            Some("EBBB")
        );
        assert!(cfg.distribution("nope").is_none());
    }

    #[test]
    fn ranges_name_the_key_and_the_value() {
        let mut cfg = minimal();
        cfg.batching.quiet_seconds = 0;
        let problems = cfg.problems();
        assert_eq!(problems.len(), 1);
        assert_eq!(
            problems[0].to_string(),
            "batching.quiet_seconds must be ≥ 1 (got 0)"
        );
    }

    #[test]
    fn max_delay_below_quiet_is_a_problem() {
        let mut cfg = minimal();
        cfg.batching.quiet_seconds = 30;
        cfg.batching.max_delay_seconds = 10;
        assert_eq!(keys(&cfg), ["batching.max_delay_seconds"]);
        cfg.batching.max_delay_seconds = 30;
        assert_eq!(keys(&cfg), Vec::<String>::new());
    }

    #[test]
    fn boundaries_are_inclusive() {
        let mut cfg = minimal();
        cfg.source.wait_time_seconds = 20;
        cfg.source.visibility_timeout_seconds = 43_200;
        cfg.source.pollers = 64;
        cfg.batching.max_batch_paths = 3000;
        cfg.coalesce.wildcard_threshold = 2;
        cfg.cloudfront.create_per_second = 100.0;
        assert_eq!(cfg.problems(), vec![]);
        cfg.source.wait_time_seconds = 21;
        cfg.source.visibility_timeout_seconds = 43_201;
        cfg.source.pollers = 65;
        cfg.batching.max_batch_paths = 3001;
        cfg.coalesce.wildcard_threshold = 1;
        cfg.cloudfront.create_per_second = 100.5;
        assert_eq!(
            keys(&cfg),
            [
                "source.pollers",
                "source.wait_time_seconds",
                "source.visibility_timeout_seconds",
                "batching.max_batch_paths",
                "coalesce.wildcard_threshold",
                "cloudfront.create_per_second",
            ]
        );
    }

    #[test]
    fn nan_rate_is_a_problem() {
        let mut cfg = minimal();
        cfg.cloudfront.create_per_second = f64::NAN;
        assert_eq!(keys(&cfg), ["cloudfront.create_per_second"]);
    }

    #[test]
    fn aliases_must_be_lowercase() {
        for (alias, ok) in [
            ("www", true),
            ("www-eu_2", true),
            ("WWW", false),
            ("a__b", false),
            ("a.b", false),
            ("", false),
        ] {
            assert_eq!(valid_alias(alias), ok, "{alias:?}");
        }
    }

    #[test]
    fn distribution_ids_look_like_cloudfront_ids() {
        for (id, ok) in [
            ("E2ABCDEF123456", true),
            ("e2abcdef123456", false),
            ("E2-ABC", false),
            ("", false),
        ] {
            assert_eq!(valid_distribution_id(id), ok, "{id:?}");
        }
    }

    #[test]
    fn duplicate_ids_are_a_problem() {
        let mut cfg = minimal();
        cfg.distributions.insert(
            "www2".into(),
            DistributionConfig {
                id: "E2ABCDEF123456".into(),
                ..DistributionConfig::default()
            },
        );
        let problems = cfg.problems();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "distributions.www2.id");
        assert!(
            problems[0].message.contains("distributions.www"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn tenant_entries_share_their_distributions_id() {
        let mut cfg = minimal();
        let tenant = |tenant: &str| DistributionConfig {
            id: "E3MULTITENANT".into(),
            tenant_id: Some(tenant.into()),
            ..DistributionConfig::default()
        };
        cfg.distributions
            .insert("shop-a".into(), tenant("dt_2AaAa"));
        cfg.distributions
            .insert("shop-b".into(), tenant("dt_2BbBb"));
        // An ordinary entry may name the multi-tenant distribution too.
        cfg.distributions.insert(
            "all-shops".into(),
            DistributionConfig {
                id: "E3MULTITENANT".into(),
                ..DistributionConfig::default()
            },
        );
        assert!(cfg.problems().is_empty(), "{:?}", cfg.problems());
        // A tenant entry is named by its alias or tenant id; the shared id
        // names the ordinary entry, never a tenant.
        assert_eq!(cfg.distribution("dt_2BbBb").map(|(a, _)| a), Some("shop-b"));
        assert_eq!(cfg.distribution("shop-a").map(|(a, _)| a), Some("shop-a"));
        assert_eq!(
            cfg.distribution("E3MULTITENANT").map(|(a, _)| a),
            Some("all-shops")
        );
        cfg.distributions.remove("all-shops");
        assert_eq!(cfg.distribution("E3MULTITENANT").map(|(a, _)| a), None);

        // Two entries for one tenant, and ids that are no tenant ids.
        cfg.distributions
            .insert("shop-a2".into(), tenant("dt_2AaAa"));
        cfg.distributions
            .insert("bad1".into(), tenant("E2ABCDEF123456"));
        cfg.distributions.insert("bad2".into(), tenant("dt_"));
        cfg.distributions.insert("bad3".into(), tenant("dt_a-b"));
        let problems: Vec<String> = cfg.problems().iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(
            problems[0].starts_with("distributions.bad1.tenant_id \"E2ABCDEF123456\" is not a CloudFront distribution tenant id"),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("distributions.bad2.tenant_id"),
            "{problems:?}"
        );
        assert!(
            problems[2].starts_with("distributions.bad3.tenant_id"),
            "{problems:?}"
        );
        assert!(
            problems[3].starts_with(
                "distributions.shop-a2.tenant_id \"dt_2AaAa\" is also the tenant_id of distributions.shop-a"
            ),
            "{problems:?}"
        );
    }

    #[test]
    fn a_name_may_mean_one_entry_only() {
        let entry = |id: &str, tenant: Option<&str>| DistributionConfig {
            id: id.into(),
            tenant_id: tenant.map(Into::into),
            ..DistributionConfig::default()
        };
        let mut cfg = minimal();
        cfg.distributions
            .insert("dt_1a".into(), entry("E5ORDINARY", None));
        cfg.distributions
            .insert("shop".into(), entry("E3MULTI", Some("dt_1a")));
        // An alias equal to another entry's id (ids of digits only are
        // valid aliases), and to a multi-tenant distribution's id.
        cfg.distributions
            .insert("123".into(), entry("E6OTHER", None));
        cfg.distributions
            .insert("456".into(), entry("E7OTHER", None));
        cfg.distributions.insert("plain".into(), entry("123", None));
        cfg.distributions
            .insert("tenant".into(), entry("456", Some("dt_2Bb")));
        // An entry whose alias is its own id means one entry.
        cfg.distributions.insert("789".into(), entry("789", None));
        let problems: Vec<String> = cfg.problems().iter().map(ToString::to_string).collect();
        assert_eq!(
            problems,
            [
                "distributions.plain.id \"123\" is also the alias of distributions.123: \
                 a request naming \"123\" could mean either entry; rename one of them",
                "distributions.shop.tenant_id \"dt_1a\" is also the alias of distributions.dt_1a: \
                 a request naming \"dt_1a\" could mean either entry; rename one of them",
                "distributions.tenant.id \"456\" is also the alias of distributions.456: \
                 a request naming \"456\" could mean either entry; rename one of them",
            ]
        );
    }

    #[test]
    fn routing_must_name_an_alias() {
        let mut cfg = minimal();
        cfg.routing.default_distribution = Some("E2ABCDEF123456".into());
        cfg.routing.s3.push(S3Route {
            bucket: "b".into(),
            distribution: "wwx".into(),
            path_prefix: "site/".into(),
            ..S3Route::default()
        });
        let problems: Vec<String> = cfg.problems().iter().map(ToString::to_string).collect();
        assert_eq!(
            problems,
            [
                "routing.default_distribution \"E2ABCDEF123456\" is a distribution id: name its alias \"www\"",
                "routing.s3[0].distribution \"wwx\" is not a configured distribution (configured: \"www\")",
                "routing.s3[0].path_prefix \"site/\" must start with \"/\"",
            ]
        );
    }

    #[test]
    fn skip_patterns_are_compiled_at_load_and_named_by_index() {
        let mut cfg = minimal();
        cfg.routing.skip = vec![
            r"\.[0-9a-f]{8}\.js$".into(),
            "(".into(),
            String::new(),
            "[z-a]".into(),
        ];
        let problems: Vec<String> = cfg.problems().iter().map(|p| p.to_string()).collect();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems[0].starts_with(
                "routing.skip[1] \"(\" is not a valid regular expression: regex parse error:"
            ),
            "{problems:?}"
        );
        assert!(!problems[0].contains('\n'));
        assert_eq!(
            problems[1],
            "routing.skip[2] is empty: it would match every path and purge nothing"
        );
        assert!(
            problems[2].starts_with("routing.skip[3] \"[z-a]\""),
            "{problems:?}"
        );
        cfg.routing.skip.truncate(1);
        assert!(cfg.problems().is_empty());
    }

    #[test]
    fn sqs_needs_a_queue_url_and_local_does_not() {
        let mut cfg = minimal();
        cfg.source.queue_url = None;
        assert_eq!(keys(&cfg), ["source.queue_url"]);
        cfg.source.queue_url = Some("sqs.example".into());
        assert_eq!(keys(&cfg), ["source.queue_url"]);
        cfg.source.kind = SourceKind::Local;
        cfg.source.queue_url = None;
        assert_eq!(cfg.problems(), vec![]);
    }

    #[test]
    fn dead_letter_queue_must_differ() {
        let mut cfg = minimal();
        cfg.source.dead_letter_queue_url = cfg.source.queue_url.clone();
        assert_eq!(keys(&cfg), ["source.dead_letter_queue_url"]);
    }

    #[test]
    fn log_level_accepts_levels_and_filters() {
        let mut cfg = minimal();
        for (level, ok) in [
            ("info", true),
            ("DEBUG", true),
            ("info,cfpurge=debug", true),
            ("verbose", false),
            ("", false),
        ] {
            cfg.log.level = level.into();
            assert_eq!(cfg.problems().is_empty(), ok, "{level:?}");
        }
    }

    #[test]
    fn choices_name_the_accepted_values() {
        assert_eq!(
            Pacing::try_from("fast".to_owned()).unwrap_err(),
            "\"fast\" is not a pacing: expected \"even\" or \"none\""
        );
        assert_eq!(
            OnExhausted::try_from("x".to_owned()).unwrap_err(),
            "\"x\" is not an exhaustion policy: expected \"hold\", \"coalesce\" or \"overspend\""
        );
        assert_eq!(
            OnExhausted::try_from("hold".to_owned()),
            Ok(OnExhausted::Hold)
        );
    }

    #[test]
    fn secret_is_redacted_and_compares() {
        let s = Secret::new("s3cret");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"<redacted>\"");
        assert!(s.matches("s3cret"));
        assert!(!s.matches("s3creT"));
        assert!(!s.matches("s3cre"));
        assert_eq!(s.expose(), "s3cret");
    }

    #[test]
    fn misspelt_overrides_are_caught() {
        assert!(
            misspelt_override("CFPURGE_SOURCE_QUEUE_URL")
                .unwrap()
                .contains("CFPURGE__SOURCE__QUEUE_URL")
        );
        assert!(misspelt_override("CFPURGE__SOURCE__QUEUE_URL").is_none());
        assert!(misspelt_override("CFPURGE_URL").is_none());
    }

    /// Found by fuzzing (fuzz/regressions/config/): an override may set a
    /// number above TOML's integer range, and `check-config` then printed a
    /// file that does not load ("u64 value was too large").
    #[test]
    fn overrides_above_the_toml_integer_range_are_a_problem() {
        let text = "[source]\nkind = \"local\"\n[distributions.www]\nid = \"E2ABCDEF123456\"\n";
        for key in [
            "BUDGET__MONTHLY_PATHS",
            "BUDGET__BURST_PATHS",
            "COALESCE__WILDCARD_THRESHOLD",
        ] {
            let env = [(format!("CFPURGE__{key}"), "18446744073709551615".to_owned())];
            let Err(ConfigError::Invalid { problems, .. }) =
                Config::from_parts(Some(text), "t.toml", env)
            else {
                panic!("{key} = u64::MAX was accepted");
            };
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert!(
                problems[0]
                    .message
                    .starts_with("must be ≤ 9223372036854775807"),
                "{problems:?}"
            );
        }
        let env = [(
            "CFPURGE__BUDGET__MONTHLY_PATHS".to_owned(),
            "9223372036854775807".to_owned(),
        )];
        let cfg = Config::from_parts(Some(text), "t.toml", env).unwrap();
        let printed = toml::to_string(&cfg).unwrap();
        Config::from_parts(Some(&printed), "printed.toml", []).unwrap();
    }

    #[test]
    fn line_column_counts_from_one() {
        assert_eq!(line_column("a\nbc\nd", 0), (1, 1));
        assert_eq!(line_column("a\nbc\nd", 3), (2, 2));
        assert_eq!(line_column("a\nbc\nd", 5), (3, 1));
    }
}
