//! The `cfpurge` binary: parses the command line and calls into the library
//! (`cfpurge::commands`, one module per subcommand).
//! Exit status: 0 success, 1 runtime failure, 2 bad usage or configuration.
//! A reader that stops early (`cfpurge status --format json | head`) ends
//! the output quietly, with 0: the rest was not wanted.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use cfpurge::commands::{
    Failure, catalog, check_config, enqueue, ledger, plan, replay, run, status,
};

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
    Run(run::Args),
    /// Load and validate the configuration; print it with secrets redacted.
    CheckConfig(check_config::Args),
    /// Read paths from stdin (one per line) and print the invalidation
    /// paths the planner would submit. No AWS calls. A line "#name" (no
    /// space after "#") is the cache tag name: billed one path each, never
    /// inside a wildcard; a line "# ..." or a lone "#" is a comment.
    Plan(plan::Args),
    /// Build a distribution's catalog from its configured source once and
    /// print its figures (objects, directories, memory, time).
    Catalog(catalog::Args),
    /// Send one purge request to the configured queue, or with --url to a
    /// running daemon's POST /v1/purge.
    Enqueue(enqueue::Args),
    /// Run the daemon's own core on a virtual clock through a trace of
    /// purge requests (JSON lines), with the simulated CloudFront and the
    /// configuration's budget, pacing, planner and limits; print one row
    /// per month. No AWS calls.
    Replay(replay::Args),
    /// The budget ledger in the configured store (budget.store).
    Ledger {
        #[command(subcommand)]
        action: ledger::Action,
    },
    /// Print a running daemon's status (GET /v1/status).
    Status(status::Args),
}

fn main() -> ExitCode {
    let done = match Cli::parse().command {
        Command::Run(args) => run::main(args),
        Command::CheckConfig(args) => check_config::main(args),
        Command::Plan(args) => plan::main(args),
        Command::Catalog(args) => catalog::main(args),
        Command::Enqueue(args) => enqueue::main(args),
        Command::Replay(args) => replay::main(args),
        Command::Ledger { action } => ledger::main(action),
        Command::Status(args) => status::main(args),
    };
    match done {
        Ok(status) => ExitCode::from(status),
        Err(Failure { status, message }) => {
            let _ = writeln!(io::stderr(), "error: {message}");
            ExitCode::from(status)
        }
    }
}
