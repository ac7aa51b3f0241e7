//! `[shutdown]` and `[log]`: how the process stops and what it logs.

use serde::{Deserialize, Serialize};

use super::{Config, Validator, one_of};

/// `[shutdown]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// On SIGTERM: time to submit what is due before releasing the rest and
    /// exiting; keep it under the supervisor's stop timeout (systemd's
    /// `TimeoutStopSec`, the container runtime's stop grace) or it is killed.
    pub grace_seconds: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig { grace_seconds: 20 }
    }
}

/// `[log]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` for people and journald, `json` for log pipelines.
    pub format: LogFormat,
    /// A level (`trace`, `debug`, `info`, `warn`, `error`, `off`) or a filter
    /// such as `info,cfpurge=debug`; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

choice! {
    /// `log.format`
    pub enum LogFormat ("a log format") {
        /// Plain lines.
        Text = "text",
        /// One JSON object per line.
        Json = "json",
    }
}

impl Config {
    pub(super) fn check_log(&self, v: &mut Validator) {
        const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];
        let level = self.log.level.trim();
        let ok = if level.contains('=') || level.contains(',') {
            tracing_subscriber::EnvFilter::try_new(level).is_ok()
        } else {
            // A bare word would be read by EnvFilter as a target name, so
            // "verbose" would silently log nothing: only levels here.
            LEVELS.contains(&level.to_ascii_lowercase().as_str())
        };
        if !ok {
            v.push(
                "log.level",
                format!(
                    "{:?} is not a level ({}) or a filter such as \"info,cfpurge=debug\"",
                    self.log.level,
                    one_of(LEVELS)
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::minimal;

    #[test]
    fn log_level_accepts_levels_and_filters() {
        let mut cfg = minimal();
        for (level, ok) in [
            ("info", true),
            ("DEBUG", true),
            ("info,cfpurge=debug", true),
            ("verbose", false),
            ("", false),
        ] {
            cfg.log.level = level.into();
            assert_eq!(cfg.problems().is_empty(), ok, "{level:?}");
        }
    }
}
