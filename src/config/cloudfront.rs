//! `[cloudfront]`: how invalidations are created and followed, or
//! simulated.

use serde::{Deserialize, Serialize};

use super::{Config, Validator};

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

choice! {
    /// `cloudfront.mode`
    pub enum CloudFrontMode ("a CloudFront mode") {
        /// Call CloudFront.
        Aws = "aws",
        /// Model invalidations in memory; no AWS calls.
        Simulate = "simulate",
    }
}

/// Lowest `cloudfront.create_per_second`: one call in 11.6 days. The rate
/// limiter keeps the interval times the burst (up to 100) in nanoseconds in
/// 64 bits, which this leaves room for.
const MIN_CREATE_PER_SECOND: f64 = 1e-6;

impl Config {
    pub(super) fn check_cloudfront(&self, v: &mut Validator) {
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
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{keys, minimal};

    #[test]
    fn nan_rate_is_a_problem() {
        let mut cfg = minimal();
        cfg.cloudfront.create_per_second = f64::NAN;
        assert_eq!(keys(&cfg), ["cloudfront.create_per_second"]);
    }
}
