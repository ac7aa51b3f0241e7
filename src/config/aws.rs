//! `[aws]`: where the AWS clients connect.

use serde::{Deserialize, Serialize};

use super::{Config, Validator};

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

impl Config {
    pub(super) fn check_aws(&self, v: &mut Validator) {
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
}
