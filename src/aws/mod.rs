//! Everything cfpurge says to AWS starts here: the one SDK configuration
//! (the provider chain's credentials and region, `aws.region` when set),
//! one client builder per service with its endpoint, timeouts and retries,
//! and ([`error`]) the one classifier of the SDK's errors.
//!
//! Every client sets its timeouts explicitly: the SDK sets only a connect
//! timeout by default, and a call that hangs would hold its caller forever.
//! The SDK retries throttling and 5xx answers itself (standard mode); the
//! operation timeout covers all of a call's attempts.

pub mod error;

use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;

use crate::config::AwsConfig;

/// How long one service's calls may take, and how often the SDK tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallLimits {
    /// A reachable endpoint accepts a connection well within it.
    pub connect: Duration,
    /// One attempt.
    pub attempt: Duration,
    /// Attempts per call: the SDK's standard retry mode, stated here so
    /// that the operation timeout stays consistent with it.
    pub attempts: u32,
    /// Added to `attempt * attempts` for the whole call: the backoff
    /// between attempts.
    pub backoff: Duration,
}

impl CallLimits {
    /// The longest one call takes, retries and their backoff included.
    pub fn operation(&self) -> Duration {
        self.attempt * self.attempts + self.backoff
    }

    pub fn timeouts(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(self.connect)
            .operation_attempt_timeout(self.attempt)
            .operation_timeout(self.operation())
            .build()
    }

    fn retries(&self) -> RetryConfig {
        RetryConfig::standard().with_max_attempts(self.attempts)
    }
}

/// CloudFront answers its calls in well under a second; a create carrying
/// 3,000 paths is still a small request.
pub const CLOUDFRONT: CallLimits = CallLimits {
    connect: Duration::from_secs(5),
    attempt: Duration::from_secs(15),
    attempts: 3,
    backoff: Duration::from_secs(10),
};

/// S3 answers a ListObjectsV2 page in well under a second; a stalled one is
/// retried by the SDK, then fails the listing, which the next refresh
/// repeats.
pub const S3: CallLimits = CallLimits {
    connect: Duration::from_secs(5),
    attempt: Duration::from_secs(30),
    attempts: 3,
    backoff: Duration::ZERO,
};

/// DynamoDB answers item calls in milliseconds; the lease must hear back
/// well within its own length.
pub const DYNAMODB: CallLimits = CallLimits {
    connect: Duration::from_secs(2),
    attempt: Duration::from_secs(2),
    attempts: 2,
    backoff: Duration::from_secs(1),
};

/// SQS's limits for a client whose receives wait up to `long_poll_wait`
/// (at most SQS's 20 s): SQS answers an empty long poll right at the end
/// of the wait, so an attempt needs the wait plus a round trip's margin;
/// one shorter than the wait would cut every empty receive.
pub fn sqs_limits(long_poll_wait: Duration) -> CallLimits {
    CallLimits {
        connect: Duration::from_secs(5),
        attempt: long_poll_wait.min(SQS_MAX_WAIT) + SQS_ATTEMPT_MARGIN,
        attempts: 3,
        backoff: Duration::ZERO,
    }
}

/// SQS's longest long-poll wait (`WaitTimeSeconds`).
pub const SQS_MAX_WAIT: Duration = Duration::from_secs(20);

/// Margin of an SQS attempt over the long-poll wait.
pub const SQS_ATTEMPT_MARGIN: Duration = Duration::from_secs(10);

/// The SDK configuration from the AWS provider chain, in `aws.region` when
/// set (CloudFront is global; the region then only signs).
pub async fn sdk_config(aws: &AwsConfig) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &aws.region {
        loader = loader.region(Region::new(region.clone()));
    }
    loader.load().await
}

/// Builds a client of `$sdk` from an [`SdkConfig`] with `aws.region`, the
/// endpoint (the service's own key, else `aws.endpoint_url`, else the SDK's
/// `AWS_ENDPOINT_URL_*` variables) and the [`CallLimits`]: the four
/// services' config builders share these methods but no trait.
macro_rules! client {
    ($sdk:ident, $config:expr, $aws:expr, $endpoint:expr, $limits:expr) => {{
        let limits: CallLimits = $limits;
        let mut builder = $sdk::config::Builder::from($config)
            .timeout_config(limits.timeouts())
            .retry_config(limits.retries());
        if let Some(region) = &$aws.region {
            builder = builder.region(Region::new(region.clone()));
        }
        if let Some(url) = $endpoint.or($aws.endpoint_url.as_ref()) {
            builder = builder.endpoint_url(url.clone());
        }
        builder
    }};
}

/// A CloudFront client, with `aws.cloudfront_endpoint_url`.
pub fn cloudfront(sdk: &SdkConfig, aws: &AwsConfig) -> aws_sdk_cloudfront::Client {
    let builder = client!(
        aws_sdk_cloudfront,
        sdk,
        aws,
        aws.cloudfront_endpoint_url.as_ref(),
        CLOUDFRONT
    );
    aws_sdk_cloudfront::Client::from_conf(builder.build())
}

/// An SQS client whose receives wait up to `long_poll_wait`, with
/// `aws.sqs_endpoint_url`.
pub fn sqs(sdk: &SdkConfig, aws: &AwsConfig, long_poll_wait: Duration) -> aws_sdk_sqs::Client {
    let builder = client!(
        aws_sdk_sqs,
        sdk,
        aws,
        aws.sqs_endpoint_url.as_ref(),
        sqs_limits(long_poll_wait)
    );
    aws_sdk_sqs::Client::from_conf(builder.build())
}

/// An S3 client for listing, with `aws.s3_endpoint_url`; path-style
/// addressing when an endpoint is set, which emulators need.
pub fn s3(sdk: &SdkConfig, aws: &AwsConfig) -> aws_sdk_s3::Client {
    let endpoint = aws.s3_endpoint_url.as_ref().or(aws.endpoint_url.as_ref());
    let builder = client!(aws_sdk_s3, sdk, aws, aws.s3_endpoint_url.as_ref(), S3)
        .force_path_style(endpoint.is_some());
    aws_sdk_s3::Client::from_conf(builder.build())
}

/// A DynamoDB client, with `aws.dynamodb_endpoint_url`.
pub fn dynamodb(sdk: &SdkConfig, aws: &AwsConfig) -> aws_sdk_dynamodb::Client {
    let builder = client!(
        aws_sdk_dynamodb,
        sdk,
        aws,
        aws.dynamodb_endpoint_url.as_ref(),
        DYNAMODB
    );
    aws_sdk_dynamodb::Client::from_conf(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn static_sdk() -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .build()
    }

    #[test]
    fn every_timeout_is_set_and_covers_every_attempt() {
        for limits in [
            CLOUDFRONT,
            S3,
            DYNAMODB,
            sqs_limits(Duration::from_secs(20)),
        ] {
            let t = limits.timeouts();
            assert_eq!(t.connect_timeout(), Some(limits.connect));
            assert_eq!(t.operation_attempt_timeout(), Some(limits.attempt));
            let op = t.operation_timeout().unwrap();
            assert!(op >= limits.attempt * limits.attempts, "{limits:?}");
        }
    }

    #[test]
    fn an_sqs_attempt_outlasts_the_long_poll_even_past_sqs_maximum() {
        assert_eq!(
            sqs_limits(Duration::from_secs(20)).attempt,
            Duration::from_secs(30)
        );
        // SQS never waits more than 20 s, so neither does the attempt.
        assert_eq!(
            sqs_limits(Duration::from_secs(600)).attempt,
            Duration::from_secs(30)
        );
        assert_eq!(sqs_limits(Duration::ZERO).attempt, SQS_ATTEMPT_MARGIN);
    }

    #[test]
    fn clients_take_the_region_the_service_endpoint_and_the_limits() {
        let aws = AwsConfig {
            region: Some("eu-west-1".into()),
            endpoint_url: Some("http://127.0.0.1:1".into()),
            cloudfront_endpoint_url: Some("http://127.0.0.1:2".into()),
            ..AwsConfig::default()
        };
        let sdk = static_sdk();
        let cf = cloudfront(&sdk, &aws);
        let config = cf.config();
        assert_eq!(config.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert_eq!(
            config.timeout_config().unwrap().operation_timeout(),
            Some(CLOUDFRONT.operation())
        );
        assert_eq!(config.retry_config().unwrap().max_attempts(), 3);
        // The others fall back to `aws.endpoint_url`.
        let db = dynamodb(&sdk, &aws);
        assert_eq!(db.config().retry_config().unwrap().max_attempts(), 2);
        let s3 = s3(&sdk, &aws);
        assert_eq!(
            s3.config()
                .timeout_config()
                .unwrap()
                .operation_attempt_timeout(),
            Some(S3.attempt)
        );
        let q = sqs(&sdk, &aws, Duration::from_secs(5));
        assert_eq!(
            q.config()
                .timeout_config()
                .unwrap()
                .operation_attempt_timeout(),
            Some(Duration::from_secs(15))
        );
    }
}
