//! All integration tests in one binary (one link step, shared helpers).

mod config;
mod fake_cloudfront;
mod ingest;
mod plan;
mod run;
mod sqs;
mod support;
