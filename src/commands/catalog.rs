//! `cfpurge catalog`: builds one distribution's catalog from its configured
//! source, once, and prints its figures, so that an operator can check the
//! source (a file's syntax, the S3 listing's rights and mapping) and the
//! catalog's size before the daemon relies on it.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use crate::budget::DynamoStore;
use crate::catalog::learned_store::{AnyLearnedStore, DynamoLearned, FileLearned, LearnedStore};
use crate::catalog::{self, Catalog, CatalogError};
use crate::config::{CatalogSource, Config, StoreKind};

/// Output format of `cfpurge catalog`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// Why `cfpurge catalog` failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogCommandError {
    /// The command or the configuration does not name a catalog to build
    /// (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The source could not be read (exit 1).
    #[error(transparent)]
    Source(#[from] CatalogError),
    #[error("cannot write: {0}")]
    Output(#[source] io::Error),
}

impl CatalogCommandError {
    /// The process exit status for this error.
    pub fn exit_status(&self) -> u8 {
        match self {
            CatalogCommandError::Usage(_) => 2,
            _ => 1,
        }
    }
}

#[derive(Serialize)]
struct Figures<'a> {
    distribution: &'a str,
    source: &'static str,
    objects: u64,
    directories: u64,
    memory_bytes: usize,
    seconds: f64,
}

/// Builds the catalog of distribution `name` (alias or id) as configured.
/// Returns its alias, the source's name and the catalog.
pub async fn build<'c>(
    config: &'c Config,
    name: &str,
) -> Result<(&'c str, CatalogSource, Catalog), CatalogCommandError> {
    let (alias, d) = config.distribution(name).ok_or_else(|| {
        CatalogCommandError::Usage(format!(
            "--distribution {name:?} is not a configured distribution"
        ))
    })?;
    let max_bytes = usize::try_from(config.catalog.max_bytes).unwrap_or(usize::MAX);
    let catalog = match d.catalog {
        CatalogSource::None => {
            return Err(CatalogCommandError::Usage(format!(
                "distributions.{alias}.catalog is \"none\": there is no catalog to build"
            )));
        }
        CatalogSource::Learned => {
            // What the daemon has learned and written so far (nothing yet:
            // an empty catalog), from the budget's store.
            learned_store(config, alias)
                .await?
                .load()
                .await?
                .map(|mut learned| {
                    // As the daemon keeps it: within catalog.max_bytes.
                    learned.set_max_memory(max_bytes);
                    learned.into_catalog()
                })
                .unwrap_or_default()
        }
        CatalogSource::File => {
            let Some(file) = &d.catalog_file else {
                return Err(CatalogCommandError::Usage(format!(
                    "distributions.{alias}.catalog_file is required with catalog = \"file\""
                )));
            };
            catalog::file::load_within(file, max_bytes)?
        }
        CatalogSource::S3 => {
            let routes = catalog::s3::routes(config, alias);
            if routes.is_empty() {
                return Err(CatalogError::NoRoute(alias.to_owned()).into());
            }
            let client = crate::aws::s3(&crate::aws::sdk_config(&config.aws).await, &config.aws);
            let lister = catalog::s3::SdkLister::new(client);
            catalog::s3::build_within(&lister, &routes, max_bytes)
                .await?
                .catalog
        }
    };
    Ok((alias, d.catalog, catalog))
}

/// Where the daemon keeps the learned catalog of `alias`.
async fn learned_store(config: &Config, alias: &str) -> Result<AnyLearnedStore, CatalogError> {
    match config.budget.store {
        StoreKind::File => Ok(AnyLearnedStore::File(FileLearned::new(
            catalog::learned::file_for(&config.budget.ledger_path, alias),
        ))),
        StoreKind::Dynamodb => {
            let sdk = crate::aws::sdk_config(&config.aws).await;
            let table = &config.coordination.table;
            // Only read: no fence needed.
            let ledger = DynamoStore::new(sdk, &config.aws, table, false).map_err(|e| {
                CatalogError::Table {
                    path: format!("DynamoDB table {table}"),
                    message: e.to_string(),
                }
            })?;
            Ok(AnyLearnedStore::Dynamo(DynamoLearned::new(&ledger, alias)))
        }
    }
}

/// Builds and describes the catalog on `out`.
pub async fn run(
    config: &Config,
    name: &str,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), CatalogCommandError> {
    let started = Instant::now();
    let (alias, source, catalog) = build(config, name).await?;
    let figures = Figures {
        distribution: alias,
        source: source.as_str(),
        objects: catalog.objects(),
        directories: catalog.directories(),
        memory_bytes: catalog.memory_bytes(),
        seconds: started.elapsed().as_secs_f64(),
    };
    let written = match format {
        Format::Json => serde_json::to_writer_pretty(&mut *out, &figures)
            .map_err(io::Error::from)
            .and_then(|()| writeln!(out)),
        Format::Text => writeln!(
            out,
            "distribution {}: catalog from {}\nobjects {}\ndirectories {}\nmemory {:.1} MiB (estimate)\ntime {:.3} s",
            figures.distribution,
            figures.source,
            figures.objects,
            figures.directories,
            figures.memory_bytes as f64 / (1024.0 * 1024.0),
            figures.seconds
        ),
    };
    written.map_err(CatalogCommandError::Output)
}

/// `cfpurge catalog`'s options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file (else $CFPURGE_CONFIG, else /etc/cfpurge/cfpurge.toml).
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// Distribution alias or id.
    #[arg(long)]
    distribution: String,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

/// `cfpurge catalog`: builds the distribution's catalog once and prints
/// its figures on stdout.
pub fn main(args: Args) -> Result<u8, super::Failure> {
    let path = crate::config::config_path(args.config.as_deref());
    let config = Config::load(&path).map_err(super::Failure::usage)?;
    super::current_thread()?
        .block_on(run(
            &config,
            &args.distribution,
            args.format,
            &mut io::stdout().lock(),
        ))
        .map_err(|e| super::Failure {
            status: e.exit_status(),
            message: e.to_string(),
        })?;
    Ok(0)
}
