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

use std::path::{Path, PathBuf};

use crate::config::{self, Config};

/// A command that failed: the exit status (1 at run time, 2 for bad usage
/// or configuration) and the message printed after `error: `.
#[derive(Debug, PartialEq, Eq)]
pub struct Failure {
    pub status: u8,
    pub message: String,
}

impl Failure {
    /// Bad usage or configuration: exit status 2.
    pub fn usage(message: impl ToString) -> Failure {
        Failure {
            status: 2,
            message: message.to_string(),
        }
    }

    /// A failure at run time: exit status 1.
    pub fn runtime(message: impl ToString) -> Failure {
        Failure {
            status: 1,
            message: message.to_string(),
        }
    }
}

/// The configuration file to load: `-c`, else `$CFPURGE_CONFIG`, else the
/// default place. When the default is all there is and it does not exist,
/// says how to name one instead of only that it cannot be read.
pub fn config_path(cli: Option<&Path>) -> Result<PathBuf, Failure> {
    let path = config::config_path(cli);
    let named = cli.is_some() || std::env::var_os("CFPURGE_CONFIG").is_some_and(|v| !v.is_empty());
    if !named && !path.exists() {
        return Err(Failure::usage(format!(
            "no configuration: {} does not exist; name a file with -c FILE or the \
             CFPURGE_CONFIG environment variable (config/local.toml in the repository \
             runs without an AWS account)",
            path.display()
        )));
    }
    Ok(path)
}

/// The configuration [`config_path`] names, loaded; an error is bad usage.
pub fn load_config(cli: Option<&Path>) -> Result<Config, Failure> {
    Config::load(&config_path(cli)?).map_err(Failure::usage)
}

/// The configuration for commands that can do without one: the named file
/// or `$CFPURGE_CONFIG` must load; the default file is used if it exists.
pub fn optional_config(cli: Option<&Path>) -> Result<Option<Config>, Failure> {
    let explicit = cli.is_some() || std::env::var_os("CFPURGE_CONFIG").is_some();
    let path = config::config_path(cli);
    if !explicit && !path.exists() {
        return Ok(None);
    }
    Config::load(&path).map(Some).map_err(Failure::usage)
}

/// A runtime for the commands that make one or two network calls.
pub fn current_thread() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Failure::runtime)
}
