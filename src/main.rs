//! The `cfpurge` binary: parses the command line and calls into the library.
//! Exit status: 0 success, 1 runtime failure, 2 bad usage or configuration.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use cfpurge::commands::plan::{Format, PlanOptions};
use cfpurge::commands::{self, check_config, plan};
use cfpurge::config::{self, Config};
use cfpurge::planner::{Capacity, Settings};

#[derive(Parser)]
#[command(
    name = "cfpurge",
    version,
    about = "Coalescing CloudFront invalidation daemon"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon until SIGTERM or SIGINT.
    Run {
        /// Configuration file (else $CFPURGE_CONFIG, else /etc/cfpurge/cfpurge.toml).
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Load and validate the configuration; print it with secrets redacted.
    CheckConfig {
        /// Configuration file (else $CFPURGE_CONFIG, else /etc/cfpurge/cfpurge.toml).
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Read paths from stdin (one per line) and print the invalidation
    /// paths the planner would submit. No AWS calls.
    Plan {
        /// Configuration file for the coalesce settings and distribution
        /// limits; without one (and with no file at the default place),
        /// the defaults apply.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Distribution alias or id: its configured in-flight limits become
        /// the capacity.
        #[arg(long)]
        distribution: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: OutputFormat,
        /// File with every path the site serves, one per line: reports how
        /// many of them the plan's wildcards reach without being requested.
        #[arg(long)]
        universe: Option<PathBuf>,
        /// Exact paths that may go in flight (default: the distribution's
        /// limit, else CloudFront's 3,000).
        #[arg(long)]
        max_exact: Option<usize>,
        /// Wildcard paths that may go in flight (default: the
        /// distribution's limit, else CloudFront's 15).
        #[arg(long)]
        max_wildcards: Option<usize>,
        /// Paths the budget allows in this plan (default: no limit).
        #[arg(long)]
        budget: Option<usize>,
        /// Overrides coalesce.wildcard_threshold.
        #[arg(long)]
        wildcard_threshold: Option<usize>,
        /// Overrides coalesce.min_wildcard_depth.
        #[arg(long)]
        min_wildcard_depth: Option<usize>,
        /// Overrides coalesce.allow_root_wildcard.
        #[arg(long)]
        allow_root_wildcard: Option<bool>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Text,
    Json,
}

/// A failure with its exit status.
struct Failure {
    status: u8,
    message: String,
}

impl Failure {
    fn usage(message: impl ToString) -> Failure {
        Failure {
            status: 2,
            message: message.to_string(),
        }
    }

    fn runtime(message: impl ToString) -> Failure {
        Failure {
            status: 1,
            message: message.to_string(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(status) => ExitCode::from(status),
        Err(f) => {
            let _ = writeln!(io::stderr(), "error: {}", f.message);
            ExitCode::from(f.status)
        }
    }
}

fn run(cli: Cli) -> Result<u8, Failure> {
    match cli.command {
        Command::Run { config } => {
            let path = config::config_path(config.as_deref());
            let config = Config::load(&path).map_err(Failure::usage)?;
            commands::run::init_logging(&config);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(Failure::runtime)?;
            runtime
                .block_on(commands::run::run(config))
                .map_err(Failure::runtime)?;
            Ok(0)
        }
        Command::CheckConfig { config } => {
            let path = config::config_path(config.as_deref());
            check_config::check_config(&path, &mut io::stdout().lock()).map_err(Failure::usage)?;
            Ok(0)
        }
        Command::Plan {
            config,
            distribution,
            format,
            universe,
            max_exact,
            max_wildcards,
            budget,
            wildcard_threshold,
            min_wildcard_depth,
            allow_root_wildcard,
        } => {
            let loaded = optional_config(config.as_deref())?;
            let mut capacity = Capacity::AWS;
            let mut settings = Settings::default();
            if let Some(cfg) = &loaded {
                settings = Settings::from(&cfg.coalesce);
                if let Some(name) = &distribution {
                    let d = cfg
                        .distributions
                        .iter()
                        .find(|(alias, d)| *alias == name || d.id == *name)
                        .map(|(_, d)| d)
                        .ok_or_else(|| {
                            Failure::usage(format!(
                                "--distribution {name:?} is not a configured distribution"
                            ))
                        })?;
                    capacity.exact = d.max_inflight_paths;
                    capacity.wildcard = d.max_inflight_wildcards;
                }
            }
            capacity.exact = max_exact.unwrap_or(capacity.exact);
            capacity.wildcard = max_wildcards.unwrap_or(capacity.wildcard);
            capacity.paths = budget.unwrap_or(capacity.paths);
            settings.wildcard_threshold = wildcard_threshold.unwrap_or(settings.wildcard_threshold);
            settings.min_wildcard_depth = min_wildcard_depth.unwrap_or(settings.min_wildcard_depth);
            settings.allow_root_wildcard =
                allow_root_wildcard.unwrap_or(settings.allow_root_wildcard);
            if settings.wildcard_threshold < 2 {
                return Err(Failure::usage("--wildcard-threshold must be ≥ 2"));
            }
            let options = PlanOptions {
                distribution,
                format: match format {
                    OutputFormat::Text => Format::Text,
                    OutputFormat::Json => Format::Json,
                },
                universe,
                capacity,
                settings,
            };
            let bad = plan::run(
                &options,
                io::stdin().lock(),
                &mut io::stdout().lock(),
                &mut io::stderr().lock(),
            )
            .map_err(Failure::runtime)?;
            Ok(if bad > 0 { 1 } else { 0 })
        }
    }
}

/// The configuration for commands that can do without one: the named file
/// or `$CFPURGE_CONFIG` must load; the default file is used if it exists.
fn optional_config(cli: Option<&Path>) -> Result<Option<Config>, Failure> {
    let explicit = cli.is_some() || std::env::var_os("CFPURGE_CONFIG").is_some();
    let path = config::config_path(cli);
    if !explicit && !path.exists() {
        return Ok(None);
    }
    Config::load(&path).map(Some).map_err(Failure::usage)
}
