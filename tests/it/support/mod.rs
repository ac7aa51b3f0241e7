//! Helpers shared by the integration tests.

pub mod cli;
pub mod fake_cloudfront;
pub mod moto;
pub mod proxy;
