//! What each `cfpurge` subcommand does, as library functions that take their
//! input and output streams so that tests can drive them.

pub mod catalog;
pub mod check_config;
pub mod enqueue;
pub mod ledger;
pub mod plan;
pub mod replay;
pub mod run;
pub mod status;
