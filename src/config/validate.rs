//! Checking a loaded configuration: each section's checks live beside the
//! section; this runs them in the file's key order, collecting every
//! problem rather than stopping at the first.

use super::{Config, Problem};

impl Config {
    /// Fills in what follows from other keys, before validation.
    pub(super) fn resolve(&mut self) {
        if self.routing.default_distribution.is_none() && self.distributions.len() == 1 {
            self.routing.default_distribution = self.distributions.keys().next().cloned();
        }
    }

    /// Every problem with the values, in key order of the file.
    pub(super) fn problems(&self) -> Vec<Problem> {
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
}

/// The largest integer TOML has (a signed 64-bit one).
pub(super) const TOML_INTEGER_MAX: u64 = i64::MAX as u64;

/// Collects problems; each check adds what it finds and goes on.
#[derive(Default)]
pub(super) struct Validator {
    problems: Vec<Problem>,
}

impl Validator {
    pub(super) fn push(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(Problem::new(key, message));
    }

    /// `min` or more, and no more than a TOML file can hold: an override
    /// can set more, but `check-config` would then print a file that does
    /// not load.
    pub(super) fn at_least(&mut self, key: &str, value: u64, min: u64) {
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

    pub(super) fn range(&mut self, key: &str, value: u64, min: u64, max: u64) {
        if value < min || value > max {
            self.push(key, format!("must be {min}..={max} (got {value})"));
        }
    }

    pub(super) fn url(&mut self, key: &str, value: Option<&str>) {
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

#[cfg(test)]
mod tests {
    use crate::config::tests::{keys, minimal};

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
}
