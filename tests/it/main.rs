//! All integration tests in one binary (one link step, shared helpers).

mod accounts;
mod aws_stack;
mod catalog;
mod chaos;
mod config;
mod daemon;
mod docs;
mod edge;
mod fake_cloudfront;
mod hardening;
mod hardening_ledger;
mod http;
mod ingest;
mod monthly_budget;
mod ops;
mod plan;
mod replay;
mod replay_cli;
mod replicas;
mod run;
mod shutdown;
mod sqs;
mod stuck;
mod support;
mod tags;
mod tenants;
