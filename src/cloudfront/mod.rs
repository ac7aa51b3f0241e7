//! The CloudFront stage: the calls the submitter and the tracker make.
//! The submitter creates invalidations (CreateInvalidation, with a
//! CallerReference that makes retries idempotent); the tracker follows them
//! to completion (GetInvalidation) and counts what other tools have in
//! flight (ListInvalidations), since CloudFront's per-distribution limits
//! are shared.
//!
//! [`invalidator::Invalidator`] is the narrow contract the rest of the
//! daemon relies on; [`aws::AwsInvalidator`] implements it on CloudFront
//! through the AWS SDK and [`simulate::SimulatedCloudFront`] in memory (for
//! `cloudfront.mode = "simulate"` and as the fake in tests), by the rules
//! of [`model::Model`], the one statement of CloudFront's rules.
//! [`AnyInvalidator`] picks one at start-up, since the trait's
//! `impl Future` methods rule out `dyn Invalidator`.

pub mod accounts;
pub mod aws;
pub mod invalidator;
pub mod model;
pub mod reference;
pub mod simulate;

use std::time::Duration;

use self::accounts::{AccountsInvalidator, AssumeSettings};
use self::aws::AwsInvalidator;
use self::invalidator::{Invalidation, InvalidationSummary, Invalidator, InvalidatorError, Target};
use self::simulate::SimulatedCloudFront;
use crate::config::{CloudFrontMode, Config};
use crate::path::CfPath;

/// The invalidator chosen by `cloudfront.mode`, dispatching to the one
/// inside.
#[derive(Clone, Debug)]
pub enum AnyInvalidator {
    /// `mode = "aws"`.
    Aws(AwsInvalidator),
    /// `mode = "aws"` with accounts reached through roles: one client per
    /// account.
    Accounts(AccountsInvalidator),
    /// `mode = "simulate"`; clones share one simulated account.
    Simulate(SimulatedCloudFront),
}

/// The invalidator `config.cloudfront.mode` asks for: the AWS SDK with
/// `[aws]`'s endpoints, or a simulation holding the configured
/// distributions' ids and tenants, whose invalidations complete after
/// `cloudfront.simulate_completion_seconds`.
pub async fn from_config(config: &Config) -> AnyInvalidator {
    match config.cloudfront.mode {
        CloudFrontMode::Aws if config.accounts.values().any(|a| a.role_arn.is_some()) => {
            let sdk = crate::aws::sdk_config(&config.aws).await;
            let settings = AssumeSettings { session: None };
            AnyInvalidator::Accounts(AccountsInvalidator::new(config, &sdk, settings).await)
        }
        CloudFrontMode::Aws => {
            let sdk = crate::aws::sdk_config(&config.aws).await;
            AnyInvalidator::Aws(AwsInvalidator::new(crate::aws::cloudfront(
                &sdk,
                &config.aws,
            )))
        }
        CloudFrontMode::Simulate => AnyInvalidator::Simulate(
            SimulatedCloudFront::new(
                config.distributions.values().map(|d| d.id.clone()),
                Duration::from_secs(config.cloudfront.simulate_completion_seconds),
            )
            .with_tenants(
                config
                    .distributions
                    .values()
                    .filter_map(|d| d.tenant_id.clone()),
            ),
        ),
    }
}

impl Invalidator for AnyInvalidator {
    async fn create(
        &self,
        target: impl Into<Target> + Send,
        caller_reference: &str,
        paths: &[CfPath],
    ) -> Result<Invalidation, InvalidatorError> {
        let target = target.into();
        match self {
            Self::Aws(c) => c.create(target, caller_reference, paths).await,
            Self::Accounts(c) => c.create(target, caller_reference, paths).await,
            Self::Simulate(c) => c.create(target, caller_reference, paths).await,
        }
    }

    async fn get(
        &self,
        target: impl Into<Target> + Send,
        id: &str,
    ) -> Result<Invalidation, InvalidatorError> {
        let target = target.into();
        match self {
            Self::Aws(c) => c.get(target, id).await,
            Self::Accounts(c) => c.get(target, id).await,
            Self::Simulate(c) => c.get(target, id).await,
        }
    }

    async fn list(
        &self,
        target: impl Into<Target> + Send,
        marker: Option<&str>,
        max_items: i32,
    ) -> Result<(Vec<InvalidationSummary>, Option<String>), InvalidatorError> {
        let target = target.into();
        match self {
            Self::Aws(c) => c.list(target, marker, max_items).await,
            Self::Accounts(c) => c.list(target, marker, max_items).await,
            Self::Simulate(c) => c.list(target, marker, max_items).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudfront::invalidator::Status;
    use crate::config::DistributionConfig;

    #[tokio::test(start_paused = true)]
    async fn simulate_mode_holds_the_configured_distributions() {
        let mut config = Config::default();
        config.cloudfront.mode = CloudFrontMode::Simulate;
        config.cloudfront.simulate_completion_seconds = 30;
        config.distributions.insert(
            "www".into(),
            DistributionConfig {
                id: "E1WWW".into(),
                ..DistributionConfig::default()
            },
        );
        let cf = from_config(&config).await;
        assert!(matches!(cf, AnyInvalidator::Simulate(_)));
        let paths = [CfPath::parse("/a").unwrap()];
        let created = cf.create("E1WWW", "cfpurge-1", &paths).await.unwrap();
        assert_eq!(created.status, Status::InProgress);
        let err = cf.create("www", "cfpurge-2", &paths).await.unwrap_err();
        assert!(matches!(err, InvalidatorError::NoSuchDistribution(_)));
        tokio::time::advance(Duration::from_secs(30)).await;
        let got = cf.get("E1WWW", &created.id).await.unwrap();
        assert_eq!(got.status, Status::Completed);
        let (listed, _) = cf.list("E1WWW", None, 10).await.unwrap();
        assert_eq!(listed.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn simulate_mode_holds_the_configured_tenants() {
        let mut config = Config::default();
        config.cloudfront.mode = CloudFrontMode::Simulate;
        config.distributions.insert(
            "shop".into(),
            DistributionConfig {
                id: "E3MULTI".into(),
                tenant_id: Some("dt_2Shop".into()),
                ..DistributionConfig::default()
            },
        );
        let cf = from_config(&config).await;
        let target = Target::of(&config.distributions["shop"]);
        let paths = [CfPath::parse("/a").unwrap()];
        let created = cf.create(&target, "cfpurge-1", &paths).await.unwrap();
        assert_eq!(cf.get(&target, &created.id).await.unwrap().id, created.id);
        // The tenant's invalidations are not the distribution's.
        let (listed, _) = cf.list("E3MULTI", None, 10).await.unwrap();
        assert!(listed.is_empty());
    }

    #[tokio::test]
    async fn aws_mode_builds_an_sdk_client() {
        let mut config = Config::default();
        config.aws.region = Some("us-east-1".into());
        config.aws.cloudfront_endpoint_url = Some("http://127.0.0.1:9".into());
        assert!(matches!(from_config(&config).await, AnyInvalidator::Aws(_)));
    }
}
