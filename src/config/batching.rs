//! `[batching]` and `[coalesce]`: when a distribution's pending paths
//! become a batch, and how the planner collapses them into wildcards.

use serde::{Deserialize, Serialize};

use super::{Config, Validator};
use crate::path::MAX_INFLIGHT_EXACT;

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

impl Default for BatchingConfig {
    fn default() -> Self {
        BatchingConfig {
            quiet_seconds: 5,
            max_delay_seconds: 60,
            max_batch_paths: MAX_INFLIGHT_EXACT,
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

choice! {
    /// `coalesce.strategy`
    pub enum Strategy ("a coalesce strategy") {
        /// A directory with `wildcard_threshold` entries becomes `dir/*`.
        Threshold = "threshold",
        /// The cover with the least `billed + blast / blast_per_path`.
        LeastBlast = "least_blast",
    }
}

impl Config {
    pub(super) fn check_batching(&self, v: &mut Validator) {
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
            MAX_INFLIGHT_EXACT as u64,
        );
    }

    pub(super) fn check_coalesce(&self, v: &mut Validator) {
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
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{keys, minimal};

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
}
