//! The distributions' catalogs, for the least-blast planner: what each
//! one serves, built in the background (an S3 listing, a file) and kept
//! current between listings from the S3 events the daemon receives anyway.
//! Until a distribution's first build is done, it is planned with the
//! threshold strategy.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::catalog::{Catalog, s3::routes};
use crate::clock::{Millis, Now};
use crate::config::{AwsConfig, CatalogSource, Config};
use crate::decode::KeyMapping;
use crate::path::CfPath;
use crate::status::CatalogStatus;

/// How often a `file` catalog's file is checked for a change.
const FILE_CHECK: Duration = Duration::from_secs(10);

/// What to build a catalog from.
#[derive(Clone, Debug)]
pub enum Job {
    /// List these buckets, with `client` if given (else one built from
    /// `aws`).
    S3 {
        aws: AwsConfig,
        client: Option<aws_sdk_s3::Client>,
        routes: Vec<(String, KeyMapping)>,
    },
    /// Read this file if it changed since `seen` (its modification time).
    File {
        path: PathBuf,
        seen: Option<SystemTime>,
    },
}

/// A build's outcome.
#[derive(Debug)]
pub enum Built {
    /// A fresh catalog (with the file's modification time, for `file`).
    Fresh {
        catalog: Catalog,
        modified: Option<SystemTime>,
    },
    /// The file has not changed.
    Unchanged,
}

/// One distribution's catalog.
#[derive(Debug)]
struct Kept {
    source: CatalogSource,
    job: Job,
    every: Duration,
    catalog: Option<Catalog>,
    refreshed_at: Option<SystemTime>,
    next: Millis,
    building: bool,
}

/// Every configured catalog.
#[derive(Debug, Default)]
pub struct Catalogs {
    kept: HashMap<String, Kept>,
}

impl Catalogs {
    /// The catalogs `config` asks for, none built yet. `catalog =
    /// "learned"` builds nothing here: it is refused by the configuration.
    pub fn new(config: &Config) -> Catalogs {
        let mut kept = HashMap::new();
        for (alias, d) in &config.distributions {
            let (job, every) = match (d.catalog, &d.catalog_file) {
                (CatalogSource::S3, _) => (
                    Job::S3 {
                        aws: config.aws.clone(),
                        client: None,
                        routes: routes(config, alias),
                    },
                    Duration::from_secs(config.catalog.refresh_seconds),
                ),
                (CatalogSource::File, Some(path)) => (
                    Job::File {
                        path: path.clone(),
                        seen: None,
                    },
                    FILE_CHECK,
                ),
                _ => continue,
            };
            kept.insert(
                alias.clone(),
                Kept {
                    source: d.catalog,
                    job,
                    every,
                    catalog: None,
                    refreshed_at: None,
                    next: 0,
                    building: false,
                },
            );
        }
        Catalogs { kept }
    }

    /// Lists S3 with `client` instead of one built from the configuration.
    pub fn set_s3_client(&mut self, client: &aws_sdk_s3::Client) {
        for k in self.kept.values_mut() {
            if let Job::S3 { client: c, .. } = &mut k.job {
                *c = Some(client.clone());
            }
        }
    }

    /// The builds due at `now`, each marked under way.
    pub fn due(&mut self, now: &Now) -> Vec<(String, Job)> {
        self.kept
            .iter_mut()
            .filter(|(_, k)| !k.building && now.mono >= k.next)
            .map(|(alias, k)| {
                k.building = true;
                (alias.clone(), k.job.clone())
            })
            .collect()
    }

    /// The earliest moment a build is due.
    pub fn next_due(&self) -> Option<Millis> {
        self.kept
            .values()
            .filter(|k| !k.building)
            .map(|k| k.next)
            .min()
    }

    /// Takes a build's outcome.
    pub fn built(&mut self, alias: &str, result: Result<Built, String>, now: &Now) {
        let Some(k) = self.kept.get_mut(alias) else {
            return;
        };
        k.building = false;
        match result {
            Ok(Built::Fresh { catalog, modified }) => {
                tracing::info!(
                    distribution = %alias,
                    objects = catalog.objects(),
                    directories = catalog.directories(),
                    "catalog ready"
                );
                k.catalog = Some(catalog);
                k.refreshed_at = Some(now.wall);
                if let Job::File { seen, .. } = &mut k.job {
                    *seen = modified;
                }
                k.next = now.after(k.every);
            }
            Ok(Built::Unchanged) => k.next = now.after(k.every),
            Err(e) => {
                // Kept as it was (or the threshold strategy while there is
                // none); tried again sooner than a full refresh.
                tracing::warn!(distribution = %alias, error = %e, "building the catalog failed; planning goes on with what there is");
                k.next = now.after(k.every.min(Duration::from_secs(60)));
            }
        }
    }

    /// The catalog of `alias`, once built.
    pub fn get(&self, alias: &str) -> Option<&Catalog> {
        self.kept.get(alias)?.catalog.as_ref()
    }

    /// An S3 event's paths: created objects join an `s3` catalog, removed
    /// ones leave it.
    pub fn follow(&mut self, alias: &str, paths: &[CfPath], removed: &[CfPath]) {
        let Some(k) = self.kept.get_mut(alias) else {
            return;
        };
        if k.source != CatalogSource::S3 {
            return;
        }
        let Some(catalog) = k.catalog.as_mut() else {
            return;
        };
        for p in paths {
            if removed.contains(p) {
                catalog.remove(p.as_str());
            } else {
                catalog.add(p.as_str());
            }
        }
    }

    /// For `/v1/status`.
    pub fn status(&self, alias: &str) -> Option<CatalogStatus> {
        let k = self.kept.get(alias)?;
        Some(CatalogStatus {
            objects: k.catalog.as_ref().map_or(0, Catalog::objects),
            source: k.source.as_str().to_owned(),
            refreshed_at: k.refreshed_at.map(crate::status::format_time),
        })
    }
}

/// Builds a catalog: lists the buckets, or reads the file.
pub async fn build(job: Job) -> Result<Built, String> {
    match job {
        Job::S3 {
            aws,
            client,
            routes,
        } => {
            let client = match client {
                Some(c) => c,
                None => crate::catalog::s3::client_for(&aws).await,
            };
            let lister = crate::catalog::s3::SdkLister::new(client);
            let listed = crate::catalog::s3::build(&lister, &routes)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Built::Fresh {
                catalog: listed.catalog,
                modified: None,
            })
        }
        Job::File { path, seen } => tokio::task::spawn_blocking(move || {
            let modified = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if seen == Some(modified) {
                return Ok(Built::Unchanged);
            }
            let catalog = crate::catalog::file::load(&path).map_err(|e| e.to_string())?;
            Ok(Built::Fresh {
                catalog,
                modified: Some(modified),
            })
        })
        .await
        .map_err(|e| format!("reading the catalog file stopped: {e}"))?,
    }
}
