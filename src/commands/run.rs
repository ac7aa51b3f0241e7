//! `cfpurge run`: builds the queue and CloudFront side the configuration
//! names, runs the daemon until SIGTERM, SIGINT or SIGHUP, and drains within
//! the grace period. A second signal ends the process at once.
//!
//! SIGHUP drains like SIGTERM rather than re-reading the configuration: a
//! restart by the supervisor gives the same result with one code path, and
//! a daemon that dies on SIGHUP (the default action) would drop what it
//! holds without releasing it.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::budget::{AnyStore, DynamoStore};
use crate::cloudfront;
use crate::config::{Config, CoordinationKind, LogFormat, SourceKind, StoreKind};
use crate::coordination::AnyTable;
use crate::coordination::dynamo::DynamoTable;
use crate::daemon::{Daemon, Replica};
use crate::decode::Router;
use crate::http::{self, HttpLimits, HttpState};
use crate::source::AnySource;
use crate::source::local::LocalQueue;
use crate::source::sqs::SqsQueue;

/// Sets up logging to stderr from `[log]`; `RUST_LOG` overrides the level.
/// Colour only when stderr is a terminal and `NO_COLOR` is unset: a log
/// file or `docker logs` gets plain text. Under systemd (`JOURNAL_STREAM`
/// set) lines carry no timestamp either: the journal adds its own.
pub fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let result = match (config.log.format, journal) {
        (LogFormat::Json, _) => builder.json().try_init(),
        (LogFormat::Text, true) => builder.without_time().try_init(),
        (LogFormat::Text, false) => builder.try_init(),
    };
    // Already set (a second call in one process): keep the first.
    let _ = result;
}

/// Runs the daemon until a signal.
pub async fn run(config: Config) -> std::io::Result<()> {
    // Handlers first, so that a signal during start-up is not fatal.
    let mut signals = Signals::install()?;
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let queue = match config.source.kind {
        SourceKind::Local => AnySource::Local(LocalQueue::bounded(
            Duration::from_secs(config.source.visibility_timeout_seconds),
            config.source.max_pending_messages,
            // Validation keeps it within 1 TiB.
            usize::try_from(config.source.max_pending_bytes).unwrap_or(usize::MAX),
        )),
        SourceKind::Sqs => {
            let wait = Duration::from_secs(config.source.wait_time_seconds);
            let client = crate::aws::sqs(
                &crate::aws::sdk_config(&config.aws).await,
                &config.aws,
                wait,
            );
            AnySource::Sqs(
                SqsQueue::new(
                    client,
                    config.source.queue_url.clone().unwrap_or_default(),
                    config.source.dead_letter_queue_url.clone(),
                )
                .with_visibility_timeout(Duration::from_secs(
                    config.source.visibility_timeout_seconds,
                )),
            )
        }
    };
    // Bound before anything runs, so that a port in use fails the start.
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(|e| {
            std::io::Error::new(e.kind(), format!("http.listen {}: {e}", config.http.listen))
        })?;
    let invalidator = cloudfront::from_config(&config).await;
    let mut daemon = Daemon::new(&config, queue.clone(), invalidator);
    let coordinated = config.coordination.kind == CoordinationKind::Dynamodb;
    if coordinated || config.budget.store == StoreKind::Dynamodb {
        let sdk = crate::aws::sdk_config(&config.aws).await;
        let table = &config.coordination.table;
        // One ledger item per account, each written on its own.
        for account in config.budget_accounts() {
            let key = crate::coordination::dynamo::ledger_key(&account);
            let store = DynamoStore::at(sdk.clone(), &config.aws, table, &key, coordinated)
                .map_err(std::io::Error::other)?;
            daemon = daemon.with_account_ledger(&account, AnyStore::Dynamo(store));
        }
        if coordinated {
            let lease = Duration::from_secs(config.coordination.lease_seconds);
            // A lease call that takes a third of the lease is as good as
            // failed: the next renewal is due.
            let client = crate::aws::dynamodb(&sdk, &config.aws);
            let table = DynamoTable::new(client, table.clone(), lease / 3);
            let replica = config.coordination.replica();
            tracing::info!(replica = %replica, table = %config.coordination.table, lease_seconds = config.coordination.lease_seconds, "standing by for the lease");
            daemon =
                daemon.with_replica(Replica::new(replica, AnyTable::Dynamo(table), lease, true));
        }
    }
    let observers = daemon.observers();
    // The local queue is in this process: the status counts what it holds
    // at each read, so a request just sent never looks lost.
    let board = match &queue {
        AnySource::Local(local) => {
            let local = local.clone();
            observers.status.with_live_queue(move || local.depth_now())
        }
        AnySource::Sqs(_) => observers.status,
    };
    let mut state = HttpState::new(
        observers.registry,
        Router::new(&config),
        queue,
        config.http.enqueue_token.clone(),
    );
    state.status = board;
    state.readiness = observers.readiness;
    state.heartbeat = observers.heartbeat;
    state.request_timeout = Duration::from_secs(config.http.request_timeout_seconds);
    let configured = HttpLimits::from(&config.http);
    let limits = configured.within(http::open_file_limit());
    if limits.max_connections < configured.max_connections {
        tracing::warn!(
            configured = configured.max_connections,
            serving = limits.max_connections,
            reserve = http::DESCRIPTOR_RESERVE,
            "http.max_connections lowered to keep descriptors in reserve below the open-file limit (raise LimitNOFILE or ulimit -n)"
        );
    }
    // The server outlives the daemon's drain, so that status stays
    // readable while it runs; what is left of the grace period then bounds
    // its own drain.
    let grace = Duration::from_secs(config.shutdown.grace_seconds);
    let signalled: Arc<OnceLock<tokio::time::Instant>> = Arc::default();
    let stop_http = CancellationToken::new();
    let http_stop = {
        let (stop_http, signalled) = (stop_http.clone(), signalled.clone());
        async move {
            stop_http.cancelled().await;
            let now = tokio::time::Instant::now();
            signalled.get().map_or(now, |at| (*at + grace).max(now))
        }
    };
    let server = tokio::spawn(http::serve_with(listener, state, limits, http_stop));
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        signals.next().await;
        let _ = signalled.set(tokio::time::Instant::now());
        tracing::info!("stopping: submitting what is due, releasing the rest");
        stop.cancel();
        signals.next().await;
        tracing::warn!("second signal: exiting at once");
        std::process::exit(1);
    });
    tracing::info!(
        source = config.source.kind.as_str(),
        cloudfront = config.cloudfront.mode.as_str(),
        distributions = config.distributions.len(),
        http = %config.http.listen,
        "cfpurge running"
    );
    let totals = daemon.run(cancel).await;
    stop_http.cancel();
    if let Err(e) = server.await {
        tracing::warn!(error = %e, "the HTTP server task failed");
    }
    tracing::info!(
        invalidations = totals.invalidations,
        paths = totals.paths_submitted,
        messages_deleted = totals.messages_deleted,
        "stopped"
    );
    Ok(())
}

/// SIGTERM, SIGINT and SIGHUP, all meaning "stop" (see the module's
/// comment for SIGHUP).
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
            _ = self.hup.recv() => {}
        }
    }
}

/// `cfpurge run`'s options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file (else $CFPURGE_CONFIG, else /etc/cfpurge/cfpurge.toml).
    #[arg(short, long)]
    config: Option<PathBuf>,
}

/// `cfpurge run`: loads the configuration, starts logging and runs the
/// daemon on a multi-threaded runtime until it has drained.
pub fn main(args: Args) -> Result<u8, super::Failure> {
    let config = super::load_config(args.config.as_deref())?;
    init_logging(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(super::Failure::runtime)?;
    runtime
        .block_on(run(config))
        .map_err(super::Failure::runtime)?;
    Ok(0)
}
