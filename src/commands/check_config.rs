//! `cfpurge check-config`: load and validate the configuration, then print
//! the effective configuration (file, environment overrides and defaults
//! merged) as TOML with secrets redacted, so an operator sees exactly what
//! the daemon would run with.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::{Config, ConfigError};

/// Loads `path` with the process environment's overrides and writes the
/// effective configuration to `out`; returns the configuration's warnings
/// ([`Config::warnings`]), which the binary prints to stderr. The binary
/// maps an error to exit status 2 with the message on stderr.
pub fn check_config(path: &Path, out: &mut dyn Write) -> Result<Vec<String>, ConfigError> {
    let cfg = Config::load(path)?;
    write_effective(&cfg, path, out)?;
    write_accounts(&cfg, out)?;
    Ok(cfg.warnings())
}

/// With `[accounts]`: which account each distribution uses, and how it is
/// reached, as TOML comments after the configuration.
fn write_accounts(cfg: &Config, out: &mut dyn Write) -> Result<(), ConfigError> {
    if !cfg.has_accounts() {
        return Ok(());
    }
    let mut text =
        String::from("\n# accounts: the budget and the create rate are each account's own\n");
    for line in cfg.accounts_summary() {
        text.push_str(&format!("# {line}\n"));
    }
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| ConfigError::Print(e.to_string()))
}

/// Writes `cfg` as TOML, headed by a comment naming its file.
pub fn write_effective(cfg: &Config, path: &Path, out: &mut dyn Write) -> Result<(), ConfigError> {
    let text = toml::to_string(cfg).map_err(|e| ConfigError::Print(e.to_string()))?;
    write!(
        out,
        "# effective configuration: {} with environment overrides and defaults; secrets redacted\n{text}",
        path.display()
    )
    .and_then(|()| out.flush())
    .map_err(|e| ConfigError::Print(e.to_string()))
}

/// `cfpurge check-config`'s options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file (else $CFPURGE_CONFIG, else /etc/cfpurge/cfpurge.toml).
    #[arg(short, long)]
    config: Option<PathBuf>,
}

/// `cfpurge check-config`: the effective configuration on stdout, its
/// warnings on stderr.
pub fn main(args: Args) -> Result<u8, super::Failure> {
    let path = super::config_path(args.config.as_deref())?;
    let warnings =
        check_config(&path, &mut std::io::stdout().lock()).map_err(super::Failure::usage)?;
    for warning in warnings {
        eprintln!("{}: warning: {warning}", path.display());
    }
    Ok(0)
}
