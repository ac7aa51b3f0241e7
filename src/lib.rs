//! cfpurge: a daemon that gathers CloudFront purge requests from SQS, coalesces
//! them per distribution into as few invalidation paths as the limits and the
//! monthly budget allow, and deletes each message only once CloudFront has
//! accepted an invalidation covering it.
//!
//! The modules follow the data flow of the design: `source` receives
//! messages and deletes them, `decode` turns a message body into purge
//! requests, `pending` holds what waits and decides when a message is
//! covered, `planner` turns pending entries into invalidation paths; `path`
//! is the CloudFront path model every stage shares and `config` the typed
//! configuration.
//! `commands` holds what the binary's subcommands do, so that `main.rs` only
//! parses arguments.
#![forbid(unsafe_code)]

pub mod aws;
pub mod budget;
pub mod catalog;
pub mod clock;
pub mod cloudfront;
pub mod commands;
pub mod config;
pub mod coordination;
pub mod daemon;
pub mod decode;
pub mod durable;
pub mod edge;
pub mod http;
pub mod memory;
pub mod metrics;
pub mod path;
pub mod pending;
pub mod pipeline;
pub mod planner;
pub mod regular_file;
pub mod replay;
pub mod source;
pub mod status;
pub mod status_page;
pub mod submitter;
pub mod tracker;
