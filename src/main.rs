//! The `cfpurge` binary: parses the command line and calls into the library.
//! Exit status: 0 success, 1 runtime failure, 2 bad usage or configuration.
//! A reader that stops early (`cfpurge status --format json | head`) ends
//! the output quietly, with 0: the rest was not wanted.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use cfpurge::commands::plan::{Format, PlanOptions};
use cfpurge::commands::status::StatusError;
use cfpurge::commands::{self, check_config, enqueue, plan};
use cfpurge::config::{self, Config};

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
    /// paths the planner would submit. No AWS calls. A line "#name" (no
    /// space after "#") is the cache tag name: billed one path each, never
    /// inside a wildcard; a line "# ..." or a lone "#" is a comment.
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
        /// Catalog file (one served path per line): plan with it as the
        /// daemon does with a distribution's catalog, and report the blast
        /// (served paths the plan's wildcards purge that were not requested).
        #[arg(long)]
        catalog: Option<PathBuf>,
        /// Overrides coalesce.strategy (least_blast needs --catalog).
        #[arg(long, value_enum)]
        strategy: Option<StrategyArg>,
        /// Overrides coalesce.blast_per_path: unrequested objects purged
        /// that one billed path is worth.
        #[arg(long)]
        blast_per_path: Option<f64>,
        /// With --universe: also list the paths the wildcards reach without
        /// being requested.
        #[arg(long, requires = "universe")]
        show_overreach: bool,
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
    /// Build a distribution's catalog from its configured source once and
    /// print its figures (objects, directories, memory, time).
    Catalog {
        /// Configuration file (else $CFPURGE_CONFIG, else /etc/cfpurge/cfpurge.toml).
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Distribution alias or id.
        #[arg(long)]
        distribution: String,
        #[arg(long, value_enum, default_value = "text")]
        format: OutputFormat,
    },
    /// Send one purge request to the configured queue, or with --url to a
    /// running daemon's POST /v1/purge.
    Enqueue {
        /// Configuration file (else $CFPURGE_CONFIG, else
        /// /etc/cfpurge/cfpurge.toml); optional with --url, where it only
        /// adds a check of the distribution name.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Distribution alias or id (default: the default distribution).
        #[arg(long)]
        distribution: Option<String>,
        /// Skip the quiet window.
        #[arg(long)]
        urgent: bool,
        /// Free text for the daemon's logs (at most 256 characters).
        #[arg(long)]
        reason: Option<String>,
        /// Who asks, for the daemon's logs (at most 256 characters).
        #[arg(long)]
        requested_by: Option<String>,
        /// Read the paths from stdin, one per line, instead of the arguments.
        #[arg(long, conflicts_with = "paths")]
        stdin: bool,
        /// A cache tag to purge (its name, without "#"); repeat for more.
        /// Needs cache_tags = true on the distribution.
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// A daemon's HTTP listener, e.g. http://127.0.0.1:9470.
        #[arg(long)]
        url: Option<String>,
        /// Bearer token for --url (http.enqueue_token on the daemon).
        #[arg(long, env = "CFPURGE_ENQUEUE_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Paths to purge, e.g. /index.html /assets/* (none needed with --tag).
        #[arg(required_unless_present_any = ["stdin", "tags"])]
        paths: Vec<String>,
    },
    /// Run the daemon's own core on a virtual clock through a trace of
    /// purge requests (JSON lines), with the simulated CloudFront and the
    /// configuration's budget, pacing, planner and limits; print one row
    /// per month. No AWS calls.
    Replay {
        /// The trace: one JSON object a line, {"t": seconds since the start
        /// or an RFC 3339 time, "paths": [...], "tags": [...],
        /// "distribution": "alias"}.
        trace: PathBuf,
        /// Configuration file (else $CFPURGE_CONFIG, else /etc/cfpurge/cfpurge.toml).
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// What the site serves, one path per line: every distribution
        /// plans with it, and the table counts the blast.
        #[arg(long)]
        catalog: Option<PathBuf>,
        /// Write one JSON line per CreateInvalidation to this file.
        #[arg(long)]
        batches: Option<PathBuf>,
        /// Also compute, per month, the least blast the same batches could
        /// have had at the same spend and within the budget's even pacing
        /// (needs --catalog).
        #[arg(long, requires = "catalog")]
        optimum: bool,
        #[arg(long, value_enum, default_value = "text")]
        format: OutputFormat,
    },
    /// The budget ledger in the configured store (budget.store).
    Ledger {
        #[command(subcommand)]
        action: LedgerAction,
    },
    /// Print a running daemon's status (GET /v1/status).
    Status {
        /// The daemon's HTTP listener.
        #[arg(long, default_value = commands::status::DEFAULT_URL)]
        url: String,
        #[arg(long, value_enum, default_value = "text")]
        format: OutputFormat,
    },
}

#[derive(Subcommand)]
enum LedgerAction {
    /// Print the ledger: the month's spending, open reservations, closed
    /// months.
    Show {
        /// Configuration file (else $CFPURGE_CONFIG, else /etc/cfpurge/cfpurge.toml).
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Copy a file ledger into the configured store, never lowering what
    /// the store already counts.
    Import {
        /// The file ledger (budget.ledger_path of the daemon it came from).
        file: PathBuf,
        /// Configuration file (else $CFPURGE_CONFIG, else /etc/cfpurge/cfpurge.toml).
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum StrategyArg {
    Threshold,
    #[value(name = "least_blast", alias = "least-blast")]
    LeastBlast,
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
            let path = config_path(config.as_deref())?;
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
            let path = config_path(config.as_deref())?;
            let warnings = check_config::check_config(&path, &mut io::stdout().lock())
                .map_err(Failure::usage)?;
            for warning in warnings {
                eprintln!("{}: warning: {warning}", path.display());
            }
            Ok(0)
        }
        Command::Plan {
            config,
            distribution,
            format,
            universe,
            catalog,
            strategy,
            blast_per_path,
            show_overreach,
            max_exact,
            max_wildcards,
            budget,
            wildcard_threshold,
            min_wildcard_depth,
            allow_root_wildcard,
        } => {
            let loaded = optional_config(config.as_deref())?;
            let overrides = plan::Overrides {
                distribution: distribution.clone(),
                strategy: strategy.map(|s| match s {
                    StrategyArg::Threshold => config::Strategy::Threshold,
                    StrategyArg::LeastBlast => config::Strategy::LeastBlast,
                }),
                blast_per_path,
                max_exact,
                max_wildcards,
                budget,
                wildcard_threshold,
                min_wildcard_depth,
                allow_root_wildcard,
            };
            let settled = plan::settle(loaded.as_ref(), &overrides).map_err(Failure::usage)?;
            let options = PlanOptions {
                distribution,
                format: match format {
                    OutputFormat::Text => Format::Text,
                    OutputFormat::Json => Format::Json,
                },
                universe,
                catalog,
                strategy: settled.strategy,
                blast_per_path: settled.blast_per_path,
                show_overreach,
                capacity: settled.capacity,
                settings: settled.settings,
            };
            let bad = match plan::run(
                &options,
                io::stdin().lock(),
                &mut io::stdout().lock(),
                &mut io::stderr().lock(),
            ) {
                Ok(bad) => bad,
                Err(plan::PlanError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
                    return Ok(0);
                }
                Err(e) => return Err(Failure::runtime(e)),
            };
            Ok(if bad > 0 { 1 } else { 0 })
        }
        Command::Catalog {
            config,
            distribution,
            format,
        } => {
            let path = config::config_path(config.as_deref());
            let config = Config::load(&path).map_err(Failure::usage)?;
            let format = match format {
                OutputFormat::Text => commands::catalog::Format::Text,
                OutputFormat::Json => commands::catalog::Format::Json,
            };
            current_thread()?
                .block_on(commands::catalog::run(
                    &config,
                    &distribution,
                    format,
                    &mut io::stdout().lock(),
                ))
                .map_err(|e| Failure {
                    status: e.exit_status(),
                    message: e.to_string(),
                })?;
            Ok(0)
        }
        Command::Enqueue {
            config,
            distribution,
            urgent,
            reason,
            requested_by,
            stdin,
            tags,
            url,
            token,
            paths,
        } => {
            let paths = if stdin {
                enqueue::read_paths(io::stdin().lock())
                    .map_err(|e| Failure::runtime(format!("cannot read the paths: {e}")))?
            } else {
                paths
            };
            if paths.is_empty() && tags.is_empty() {
                return Err(Failure::usage("no paths or tags to purge"));
            }
            let loaded = match &url {
                Some(_) => optional_config(config.as_deref())?,
                None => {
                    let path = config_path(config.as_deref())?;
                    Some(Config::load(&path).map_err(Failure::usage)?)
                }
            };
            let request = enqueue::EnqueueRequest {
                distribution,
                paths,
                tags,
                urgent,
                reason,
                requested_by,
            };
            let body = request.to_body();
            let decoded = enqueue::validate(&body, loaded.as_ref()).map_err(Failure::usage)?;
            let target = match (&url, &loaded) {
                (Some(url), _) => enqueue::Target::Url {
                    url,
                    token: token.as_deref(),
                },
                (None, Some(cfg)) => enqueue::Target::Queue(cfg),
                // Loaded above whenever there is no URL.
                (None, None) => return Err(Failure::usage("no configuration")),
            };
            let accepted = current_thread()?
                .block_on(enqueue::send(&body, decoded.paths.len(), target))
                .map_err(|e| Failure {
                    status: e.exit_status(),
                    message: e.to_string(),
                })?;
            let _ = writeln!(
                io::stdout(),
                "accepted {accepted} path{}",
                if accepted == 1 { "" } else { "s" }
            );
            Ok(0)
        }
        Command::Replay {
            trace,
            config,
            catalog,
            batches,
            optimum,
            format,
        } => {
            let path = config_path(config.as_deref())?;
            let config = Config::load(&path).map_err(Failure::usage)?;
            let options = commands::replay::Options {
                trace,
                catalog,
                batches,
                optimum,
                format: match format {
                    OutputFormat::Text => commands::replay::Format::Text,
                    OutputFormat::Json => commands::replay::Format::Json,
                },
            };
            let bad = match commands::replay::run(
                &config,
                &options,
                &mut io::stdout().lock(),
                &mut io::stderr().lock(),
            ) {
                Ok(bad) => bad,
                Err(commands::replay::ReplayError::Output(e))
                    if e.kind() == io::ErrorKind::BrokenPipe =>
                {
                    return Ok(0);
                }
                Err(e) => return Err(Failure::runtime(e)),
            };
            Ok(if bad > 0 { 1 } else { 0 })
        }
        Command::Ledger { action } => {
            let (config, file) = match &action {
                LedgerAction::Show { config } => (config, None),
                LedgerAction::Import { file, config } => (config, Some(file)),
            };
            let path = config::config_path(config.as_deref());
            let config = Config::load(&path).map_err(Failure::usage)?;
            let runtime = current_thread()?;
            let out = &mut io::stdout().lock();
            match file {
                None => {
                    let stores = runtime
                        .block_on(commands::ledger::stores(&config))
                        .map_err(Failure::runtime)?;
                    commands::ledger::show_all(&config, &stores, out)
                }
                Some(file) => {
                    let store = runtime
                        .block_on(commands::ledger::store(&config))
                        .map_err(Failure::runtime)?;
                    commands::ledger::import(&config, &store, file, out)
                }
            }
            .map_err(Failure::runtime)?;
            Ok(0)
        }
        Command::Status { url, format } => {
            let format = match format {
                OutputFormat::Text => commands::status::Format::Text,
                OutputFormat::Json => commands::status::Format::Json,
            };
            let shown = current_thread()?.block_on(commands::status::run(
                &url,
                format,
                &mut io::stdout().lock(),
            ));
            match shown {
                Ok(()) => Ok(0),
                Err(StatusError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(0),
                Err(e) => Err(Failure {
                    status: e.exit_status(),
                    message: e.to_string(),
                }),
            }
        }
    }
}

/// The configuration file to load: `-c`, else `$CFPURGE_CONFIG`, else the
/// default place. When the default is all there is and it does not exist,
/// says how to name one instead of only that it cannot be read.
fn config_path(cli: Option<&Path>) -> Result<PathBuf, Failure> {
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

/// A runtime for the commands that make one or two network calls.
fn current_thread() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Failure::runtime)
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
