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
//!
//! One submodule per section, each holding the section's types, their
//! defaults (the only place they are written: docs/configuration.md and
//! config/cfpurge.example.toml show the same values) and their checks;
//! `load` reads and merges, `validate` runs the checks in key order. Every
//! type is re-exported here, so callers name `config::X`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ::serde::Deserialize)]
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
                        $crate::config::one_of($name::ALL)
                    )),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

mod accounts;
mod aws;
mod batching;
mod budget;
mod catalog;
mod cloudfront;
mod coordination;
mod distributions;
mod edge;
mod http;
mod load;
mod process;
mod routing;
mod source;
mod validate;

pub use accounts::{AccountConfig, DEFAULT_ACCOUNT, session_name};
pub use aws::AwsConfig;
pub use batching::{BatchingConfig, CoalesceConfig, Strategy};
pub use budget::{BudgetConfig, OnExhausted, Pacing, StoreKind};
pub use catalog::{CatalogConfig, CatalogSource, DEFAULT_CATALOG_BYTES};
pub use cloudfront::{CloudFrontConfig, CloudFrontMode};
pub use coordination::{CoordinationConfig, CoordinationKind, MAX_LEASE_SECONDS, MAX_REPLICA_ID};
pub use distributions::DistributionConfig;
pub use edge::{EdgeScheme, VerifyConfig, WarmConfig};
pub use http::{HttpConfig, Secret};
pub use load::{ConfigError, MAX_CONFIG_BYTES, Problem};
pub use process::{LogConfig, LogFormat, ShutdownConfig};
pub use routing::{RoutingConfig, S3Route, skip_pattern, skip_set};
pub use source::{SourceConfig, SourceKind};
use validate::Validator;

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

/// A mebibyte.
const MIB: u64 = 1 << 20;

fn one_of(choices: &[&str]) -> String {
    let quoted: Vec<String> = choices.iter().map(|c| format!("{c:?}")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn minimal() -> Config {
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

    pub(super) fn keys(cfg: &Config) -> Vec<String> {
        cfg.problems().into_iter().map(|p| p.key).collect()
    }

    #[test]
    pub(super) fn minimal_is_valid_and_gets_its_default_distribution() {
        let cfg = minimal();
        assert_eq!(cfg.problems(), vec![]);
        assert_eq!(cfg.routing.default_distribution.as_deref(), Some("www"));
    }
}
