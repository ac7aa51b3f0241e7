//! The distributions' catalogs, for the least-blast planner: what each
//! one serves, built in the background (an S3 listing, a file) and kept
//! current between listings from the S3 events the daemon receives anyway.
//! A `learned` catalog is the paths requested so far, read from the
//! budget's store ([`AnyLearnedStore`]: beside the ledger file, or in the
//! coordination table) at start-up and written back when it changed (at
//! most as often as its store says, [`LearnedStore::save_every`], and once
//! more at shutdown). As a replica, only the leader reads and writes it:
//! it is read afresh at every take-over, and forgotten on standing down.
//! Until a distribution's first build (or read) is done, it is planned with
//! the threshold strategy.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::catalog::learned::{self, Learned};
use crate::catalog::learned_store::{AnyLearnedStore, FileLearned, LearnedStore};
use crate::catalog::{Catalog, CatalogError, s3::routes};
use crate::clock::{Millis, Now};
use crate::config::{AwsConfig, CatalogSource, Config};
use crate::decode::KeyMapping;
use crate::path::CfPath;
use crate::status::CatalogStatus;

/// How often a `file` catalog's file is checked for a change.
const FILE_CHECK: Duration = Duration::from_secs(10);

/// How often a changed `learned` catalog is written to its file (the
/// store says: [`LearnedStore::save_every`]).
pub const LEARNED_SAVE: Duration = crate::catalog::learned_store::FILE_SAVE_EVERY;

/// How soon a failed build or read is tried again.
const RETRY: Duration = Duration::from_secs(60);

/// What to build a catalog from.
#[derive(Clone, Debug)]
pub enum Job {
    /// List these buckets, with `client` if given (else one built from
    /// `aws`).
    S3 {
        aws: AwsConfig,
        client: Option<aws_sdk_s3::Client>,
        routes: Vec<(String, KeyMapping)>,
        /// `catalog.max_bytes`.
        max_bytes: usize,
    },
    /// Read this file if it changed since `seen` (its modification time).
    File {
        path: PathBuf,
        seen: Option<SystemTime>,
        /// `catalog.max_bytes`.
        max_bytes: usize,
    },
    /// Read the learned paths kept in `store`.
    LoadLearned { store: AnyLearnedStore },
    /// Write the learned paths' stored form `json` to `store`, in `turn`
    /// after any write of the catalog under way; `stamp` tells which of
    /// its stored forms `json` is (a later one is greater).
    SaveLearned {
        store: AnyLearnedStore,
        json: Vec<u8>,
        turn: SaveTurn,
        stamp: u64,
    },
}

/// One catalog's writes, one at a time, each only if no later stored form
/// was written before it: the stamp of the last one written.
#[derive(Clone, Debug, Default)]
pub struct SaveTurn(Arc<tokio::sync::Mutex<u64>>);

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
    /// The learned paths kept (`None`: nothing was kept yet).
    Learned(Option<Learned>),
    /// The learned paths were written.
    Saved,
    /// The write was refused (no longer the leader, or the stored set
    /// changed since it was read): read it again, then write.
    Refused(String),
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
    /// `learned`: the paths learned (before the read, those learned since
    /// start-up), and whether the kept ones have been read.
    learned: Option<Learned>,
    loaded: bool,
    /// `learned`: its writes, one at a time, and the stamp of the last
    /// write asked for.
    saves: SaveTurn,
    stamp: u64,
    /// The build under way began before the last change of role: its
    /// outcome is not taken.
    discard: bool,
}

/// Every configured catalog.
#[derive(Debug)]
pub struct Catalogs {
    kept: HashMap<String, Kept>,
    /// Whether the learned catalogs are read and written: always alone,
    /// only while leading as a replica.
    leading: bool,
}

impl Catalogs {
    /// The catalogs `config` asks for, none built yet.
    pub fn new(config: &Config) -> Catalogs {
        let mut kept = HashMap::new();
        let max_bytes = usize::try_from(config.catalog.max_bytes).unwrap_or(usize::MAX);
        for (alias, d) in &config.distributions {
            let (job, every) = match (d.catalog, &d.catalog_file) {
                (CatalogSource::S3, _) => (
                    Job::S3 {
                        aws: config.aws.clone(),
                        client: None,
                        routes: routes(config, alias),
                        max_bytes,
                    },
                    Duration::from_secs(config.catalog.refresh_seconds),
                ),
                (CatalogSource::File, Some(path)) => (
                    Job::File {
                        path: path.clone(),
                        seen: None,
                        max_bytes,
                    },
                    FILE_CHECK,
                ),
                (CatalogSource::Learned, _) => (
                    Job::LoadLearned {
                        store: AnyLearnedStore::File(FileLearned::new(learned::file_for(
                            &config.budget.ledger_path,
                            alias,
                        ))),
                    },
                    LEARNED_SAVE,
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
                    learned: (d.catalog == CatalogSource::Learned)
                        .then(|| Learned::within(max_bytes)),
                    loaded: false,
                    saves: SaveTurn::default(),
                    stamp: 0,
                    discard: false,
                },
            );
        }
        Catalogs {
            kept,
            leading: true,
        }
    }

    /// Keeps the learned catalogs in the stores `store_for` makes for each
    /// alias instead of the files beside the ledger.
    pub fn keep_learned_in(&mut self, store_for: impl Fn(&str) -> AnyLearnedStore) {
        for (alias, k) in &mut self.kept {
            if let Job::LoadLearned { store } = &mut k.job {
                *store = store_for(alias);
                k.every = store.save_every();
            }
        }
    }

    /// As a replica: the learned catalogs wait for the lease.
    pub fn follow_lease(&mut self) {
        self.leading = false;
    }

    /// A change of role. Becoming the leader, each learned catalog is read
    /// afresh (another leader may have written it meanwhile) and planning
    /// waits for it; standing down, what is learned is forgotten (the new
    /// leader's is the one that counts) and nothing more is written.
    pub fn set_leading(&mut self, leading: bool, now: &Now) {
        self.leading = leading;
        for k in self.kept.values_mut() {
            let Some(old) = &k.learned else {
                continue;
            };
            k.learned = Some(Learned::within(old.max_memory()));
            k.loaded = false;
            k.refreshed_at = None;
            k.next = now.mono;
            k.discard = k.building;
        }
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
        let mut due = Vec::new();
        for (alias, k) in &mut self.kept {
            if k.building || now.mono < k.next || (k.learned.is_some() && !self.leading) {
                continue;
            }
            let job = match (&mut k.learned, &k.job) {
                (Some(l), Job::LoadLearned { store }) if k.loaded => {
                    if !l.take_changed() {
                        k.next = now.after(k.every);
                        continue;
                    }
                    k.stamp += 1;
                    Job::SaveLearned {
                        store: store.clone(),
                        json: l.to_json(),
                        turn: k.saves.clone(),
                        stamp: k.stamp,
                    }
                }
                _ => k.job.clone(),
            };
            k.building = true;
            due.push((alias.clone(), job));
        }
        due
    }

    /// At shutdown: the writes of every learned catalog changed since it
    /// was last written, or with a write under way (which may fail: then
    /// this one, of the same stamp, writes the same paths). Each waits for
    /// the write under way and is made only if no later stored form was
    /// written meanwhile.
    pub fn last_saves(&mut self) -> Vec<(String, Job)> {
        let mut saves = Vec::new();
        for (alias, k) in &mut self.kept {
            let (Some(l), Job::LoadLearned { store }, true) =
                (&mut k.learned, &k.job, k.loaded && self.leading)
            else {
                continue;
            };
            // Loaded and building: only a write is under way.
            let under_way = k.building && !k.discard;
            if l.take_changed() {
                k.stamp += 1;
            } else if !under_way {
                continue;
            }
            saves.push((
                alias.clone(),
                Job::SaveLearned {
                    store: store.clone(),
                    json: l.to_json(),
                    turn: k.saves.clone(),
                    stamp: k.stamp,
                },
            ));
        }
        saves
    }

    /// Paths the distribution was asked to purge: a `learned` catalog
    /// learns the exact ones.
    pub fn learn<'a>(&mut self, alias: &str, paths: impl IntoIterator<Item = &'a CfPath>) {
        if let Some(l) = self.kept.get_mut(alias).and_then(|k| k.learned.as_mut()) {
            for p in paths {
                l.learn(p);
            }
        }
    }

    /// The earliest moment a build is due.
    pub fn next_due(&self) -> Option<Millis> {
        self.kept
            .values()
            .filter(|k| !k.building && (k.learned.is_none() || self.leading))
            .map(|k| k.next)
            .min()
    }

    /// Takes a build's outcome.
    pub fn built(&mut self, alias: &str, result: Result<Built, String>, now: &Now) {
        let Some(k) = self.kept.get_mut(alias) else {
            return;
        };
        k.building = false;
        if std::mem::take(&mut k.discard) {
            k.next = now.mono;
            return;
        }
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
            Ok(Built::Unchanged | Built::Saved) => k.next = now.after(k.every),
            Ok(Built::Refused(e)) => {
                // Read again at once; what is learned here joins what is
                // read, and the whole is written at the next turn.
                tracing::warn!(distribution = %alias, error = %e, "the learned catalog's write was refused; reading it again");
                if let Some(l) = &mut k.learned {
                    l.mark_changed();
                }
                k.loaded = false;
                k.next = now.mono;
            }
            Ok(Built::Learned(kept)) => {
                let mut all = kept.unwrap_or_default();
                let since = k.learned.take().unwrap_or_default();
                all.set_max_memory(since.max_memory());
                all.absorb(&since);
                tracing::info!(
                    distribution = %alias,
                    paths = all.len(),
                    learned_since_start = since.len(),
                    "learned catalog read"
                );
                k.learned = Some(all);
                k.loaded = true;
                k.refreshed_at = Some(now.wall);
                k.next = now.after(k.every);
            }
            Err(e) if k.loaded => {
                // A write failed: what is learned stays, written later.
                tracing::warn!(distribution = %alias, error = %e, "writing the learned catalog failed; tried again later");
                if let Some(l) = &mut k.learned {
                    l.mark_changed();
                }
                k.next = now.after(k.every.min(RETRY));
            }
            Err(e) if k.learned.is_some() => {
                tracing::error!(distribution = %alias, error = %e, "the learned catalog cannot be read; planning with the threshold strategy (paths are still learned in memory; it is read again in a minute)");
                k.next = now.after(RETRY);
            }
            Err(e) => {
                // Kept as it was (or the threshold strategy while there is
                // none); tried again sooner than a full refresh.
                tracing::warn!(distribution = %alias, error = %e, "building the catalog failed; planning goes on with what there is");
                k.next = now.after(k.every.min(RETRY));
            }
        }
    }

    /// Plans `alias` with `catalog`, ready now and never rebuilt (replay).
    pub fn set_ready(&mut self, alias: &str, catalog: Catalog) {
        self.kept.insert(
            alias.to_owned(),
            Kept {
                source: CatalogSource::File,
                job: Job::File {
                    path: PathBuf::new(),
                    seen: None,
                    max_bytes: catalog.max_bytes(),
                },
                every: Duration::MAX,
                catalog: Some(catalog),
                refreshed_at: None,
                next: Millis::MAX,
                building: false,
                learned: None,
                loaded: true,
                saves: SaveTurn::default(),
                stamp: 0,
                discard: false,
            },
        );
    }

    /// The `learned` catalogs learn in memory from the start, with nothing
    /// read or written (replay).
    pub fn learn_in_memory(&mut self) {
        for k in self.kept.values_mut() {
            if k.learned.is_some() {
                k.loaded = true;
                k.next = Millis::MAX;
            }
        }
    }

    /// The catalog of `alias`, once built.
    pub fn get(&self, alias: &str) -> Option<&Catalog> {
        let k = self.kept.get(alias)?;
        match &k.learned {
            Some(l) => k.loaded.then(|| l.catalog()),
            None => k.catalog.as_ref(),
        }
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
            objects: self.get(alias).map_or(0, Catalog::objects),
            source: k.source.as_str().to_owned(),
            refreshed_at: k.refreshed_at.map(crate::status::format_time),
        })
    }
}

/// Writes `json`, the stored form of stamp `stamp`, to `store` once the
/// write of the catalog under way (if any) is done; not at all if one of
/// this stamp or a later one was written meanwhile.
pub async fn save_in_turn<S: LearnedStore>(
    turn: &SaveTurn,
    stamp: u64,
    store: &S,
    json: Vec<u8>,
) -> Result<Built, String> {
    let mut written = turn.0.lock().await;
    if *written >= stamp {
        return Ok(Built::Saved);
    }
    match store.save(json).await {
        Ok(()) => {
            *written = stamp;
            Ok(Built::Saved)
        }
        Err(e @ CatalogError::Refused { .. }) => Ok(Built::Refused(e.to_string())),
        Err(e) => Err(e.to_string()),
    }
}

/// Builds a catalog: lists the buckets, or reads the file.
pub async fn build(job: Job) -> Result<Built, String> {
    match job {
        Job::S3 {
            aws,
            client,
            routes,
            max_bytes,
        } => {
            let client = match client {
                Some(c) => c,
                None => crate::aws::s3(&crate::aws::sdk_config(&aws).await, &aws),
            };
            let lister = crate::catalog::s3::SdkLister::new(client);
            let listed = crate::catalog::s3::build_within(&lister, &routes, max_bytes)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Built::Fresh {
                catalog: listed.catalog,
                modified: None,
            })
        }
        Job::LoadLearned { store } => store
            .load()
            .await
            .map(Built::Learned)
            .map_err(|e| e.to_string()),
        Job::SaveLearned {
            store,
            json,
            turn,
            stamp,
        } => save_in_turn(&turn, stamp, &store, json).await,
        Job::File {
            path,
            seen,
            max_bytes,
        } => tokio::task::spawn_blocking(move || {
            let modified = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if seen == Some(modified) {
                return Ok(Built::Unchanged);
            }
            let catalog =
                crate::catalog::file::load_within(&path, max_bytes).map_err(|e| e.to_string())?;
            Ok(Built::Fresh {
                catalog,
                modified: Some(modified),
            })
        })
        .await
        .map_err(|e| format!("reading the catalog file stopped: {e}"))?,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now(mono: Millis) -> Now {
        Now {
            mono,
            instant: tokio::time::Instant::now(),
            wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        }
    }

    fn learned_config() -> Config {
        let toml = "[source]\nkind = \"local\"\n[distributions.www]\nid = \"E2ABCDEF123456\"\ncatalog = \"learned\"\n\
                    [budget]\nledger_path = \"/var/lib/x/ledger.json\"\n";
        Config::from_parts(Some(toml), "test", std::iter::empty()).unwrap()
    }

    fn paths(list: &[&str]) -> Vec<CfPath> {
        list.iter().map(|p| CfPath::parse(p).unwrap()).collect()
    }

    #[test]
    fn a_learned_catalog_is_used_only_once_read_and_written_only_when_changed() {
        let mut c = Catalogs::new(&learned_config());
        let due = c.due(&now(0));
        let [(alias, Job::LoadLearned { store })] = &due[..] else {
            panic!("{due:?}");
        };
        assert_eq!(alias, "www");
        assert_eq!(
            store.location(),
            "/var/lib/x/ledger.json.learned.www".to_owned()
        );
        // Not read yet: no catalog (the threshold strategy), but learning.
        c.learn("www", &paths(&["/new/a", "/new/*"]));
        assert!(c.get("www").is_none());
        let mut kept = Learned::new();
        kept.learn(&CfPath::parse("/old/b").unwrap());
        c.built("www", Ok(Built::Learned(Some(kept))), &now(1));
        let catalog = c.get("www").expect("read");
        assert_eq!(catalog.objects(), 2);
        assert!(catalog.contains("/old/b") && catalog.contains("/new/a"));
        // Changed by what was learned before the read: written when due.
        assert!(c.due(&now(2)).is_empty());
        let at = LEARNED_SAVE.as_millis() as Millis + 1;
        let due = c.due(&now(at));
        let [(_, Job::SaveLearned { json, .. })] = &due[..] else {
            panic!("{due:?}");
        };
        let written = Learned::from_json(json, "t").unwrap();
        assert_eq!(written.paths().collect::<Vec<_>>(), ["/old/b", "/new/a"]);
        c.built("www", Ok(Built::Saved), &now(at));
        // Nothing new: nothing to write, at the next turn or at shutdown.
        assert!(c.due(&now(3 * at)).is_empty());
        assert!(c.last_saves().is_empty());
        c.learn("www", &paths(&["/new/c"]));
        assert_eq!(c.last_saves().len(), 1);
    }

    #[test]
    fn a_learned_catalog_that_cannot_be_read_leaves_the_threshold_strategy_and_is_not_written() {
        let mut c = Catalogs::new(&learned_config());
        c.due(&now(0));
        c.learn("www", &paths(&["/a/1"]));
        c.built("www", Err("corrupt".to_owned()), &now(1));
        assert!(c.get("www").is_none());
        assert!(c.last_saves().is_empty());
        // Read again a minute later, not sooner; never a write meanwhile.
        assert!(c.due(&now(2)).is_empty());
        let due = c.due(&now(RETRY.as_millis() as Millis + 1));
        assert!(
            matches!(&due[..], [(_, Job::LoadLearned { .. })]),
            "{due:?}"
        );
        c.built(
            "www",
            Ok(Built::Learned(None)),
            &now(RETRY.as_millis() as Millis + 2),
        );
        assert_eq!(c.get("www").unwrap().objects(), 1);
    }

    fn learned_of(list: &[&str]) -> Learned {
        let mut l = Learned::new();
        for p in paths(list) {
            l.learn(&p);
        }
        l
    }

    #[test]
    fn a_replica_reads_the_learned_catalog_only_as_leader_and_afresh_at_each_take_over() {
        let mut c = Catalogs::new(&learned_config());
        c.follow_lease();
        // A standby neither reads nor writes.
        assert!(c.due(&now(0)).is_empty());
        assert_eq!(c.next_due(), None);
        c.set_leading(true, &now(1));
        assert_eq!(c.next_due(), Some(1));
        let due = c.due(&now(1));
        assert!(
            matches!(&due[..], [(_, Job::LoadLearned { .. })]),
            "{due:?}"
        );
        // Stood down while the read was under way: its outcome is dropped.
        c.set_leading(false, &now(2));
        c.built(
            "www",
            Ok(Built::Learned(Some(learned_of(&["/a"])))),
            &now(3),
        );
        assert!(c.get("www").is_none());
        assert!(c.due(&now(4)).is_empty());
        // Leader again: read afresh, planned with only once read.
        c.set_leading(true, &now(5));
        let due = c.due(&now(5));
        assert!(
            matches!(&due[..], [(_, Job::LoadLearned { .. })]),
            "{due:?}"
        );
        assert!(c.get("www").is_none());
        c.built(
            "www",
            Ok(Built::Learned(Some(learned_of(&["/a"])))),
            &now(6),
        );
        assert_eq!(c.get("www").unwrap().objects(), 1);
        c.learn("www", &paths(&["/mine"]));
        let at = 6 + LEARNED_SAVE.as_millis() as Millis;
        let due = c.due(&now(at));
        assert!(
            matches!(&due[..], [(_, Job::SaveLearned { .. })]),
            "{due:?}"
        );
        // Refused (another writer wrote since): read again at once, and
        // what was learned here joins what is read.
        c.built("www", Ok(Built::Refused("refused".into())), &now(at));
        assert!(c.get("www").is_none());
        let due = c.due(&now(at));
        assert!(
            matches!(&due[..], [(_, Job::LoadLearned { .. })]),
            "{due:?}"
        );
        c.built(
            "www",
            Ok(Built::Learned(Some(learned_of(&["/a", "/theirs"])))),
            &now(at + 1),
        );
        let catalog = c.get("www").unwrap();
        assert!(catalog.contains("/theirs") && catalog.contains("/mine"));
        let due = c.due(&now(at + 1 + LEARNED_SAVE.as_millis() as Millis));
        let [(_, Job::SaveLearned { json, .. })] = &due[..] else {
            panic!("{due:?}");
        };
        assert_eq!(Learned::from_json(json, "t").unwrap().len(), 3);
        c.built("www", Ok(Built::Saved), &now(at + 2));
        // Stood down: forgotten, and nothing written at shutdown.
        c.set_leading(false, &now(at + 3));
        c.learn("www", &paths(&["/late"]));
        assert!(c.get("www").is_none());
        assert!(c.last_saves().is_empty());
    }

    #[test]
    fn a_learned_catalog_in_the_table_is_written_at_the_tables_pace() {
        use crate::catalog::learned_store::{DynamoLearned, TABLE_SAVE_EVERY};
        let ledger = crate::budget::DynamoStore::new(
            aws_config::SdkConfig::builder()
                .behavior_version(aws_config::BehaviorVersion::latest())
                .build(),
            &crate::config::AwsConfig::default(),
            "cfpurge",
            false,
        )
        .unwrap();
        let mut c = Catalogs::new(&learned_config());
        c.keep_learned_in(|alias| AnyLearnedStore::Dynamo(DynamoLearned::new(&ledger, alias)));
        let due = c.due(&now(0));
        let [(_, Job::LoadLearned { store })] = &due[..] else {
            panic!("{due:?}");
        };
        assert_eq!(
            store.location(),
            "DynamoDB table cfpurge, item pk = \"learned#www\""
        );
        c.built("www", Ok(Built::Learned(None)), &now(0));
        c.learn("www", &paths(&["/a"]));
        assert!(
            c.due(&now(LEARNED_SAVE.as_millis() as Millis + 1))
                .is_empty()
        );
        let due = c.due(&now(TABLE_SAVE_EVERY.as_millis() as Millis));
        assert!(
            matches!(&due[..], [(_, Job::SaveLearned { .. })]),
            "{due:?}"
        );
    }

    /// A store whose first write is held until `release`: how many writes
    /// are inside at once, and what was written, in order.
    #[derive(Clone, Default)]
    struct Gated(Arc<GatedInner>);

    #[derive(Default)]
    struct GatedInner {
        calls: std::sync::atomic::AtomicUsize,
        inside: std::sync::atomic::AtomicUsize,
        overlapped: std::sync::atomic::AtomicBool,
        fail_first: std::sync::atomic::AtomicBool,
        entered: tokio::sync::Notify,
        gate: tokio::sync::Notify,
        written: std::sync::Mutex<Vec<Vec<u8>>>,
    }

    impl Gated {
        fn written(&self) -> Vec<Vec<u8>> {
            self.0.written.lock().unwrap().clone()
        }
    }

    impl LearnedStore for Gated {
        fn location(&self) -> String {
            "gated".to_owned()
        }

        fn save_every(&self) -> Duration {
            LEARNED_SAVE
        }

        async fn load(&self) -> Result<Option<Learned>, CatalogError> {
            Ok(None)
        }

        async fn save(&self, json: Vec<u8>) -> Result<(), CatalogError> {
            use std::sync::atomic::Ordering::SeqCst;
            let g = &self.0;
            if g.inside.fetch_add(1, SeqCst) > 0 {
                g.overlapped.store(true, SeqCst);
            }
            if g.calls.fetch_add(1, SeqCst) == 0 {
                g.entered.notify_one();
                g.gate.notified().await;
                if g.fail_first.load(SeqCst) {
                    g.inside.fetch_sub(1, SeqCst);
                    return Err(CatalogError::Table {
                        path: self.location(),
                        message: "timed out".to_owned(),
                    });
                }
            }
            g.written.lock().unwrap().push(json);
            g.inside.fetch_sub(1, SeqCst);
            Ok(())
        }
    }

    fn save_of(job: &Job) -> (SaveTurn, u64, Vec<u8>) {
        match job {
            Job::SaveLearned {
                turn, stamp, json, ..
            } => (turn.clone(), *stamp, json.clone()),
            other => panic!("{other:?}"),
        }
    }

    /// Read, learned `learned`, and its write due: the job.
    fn a_write_under_way(c: &mut Catalogs, learned: &[&str]) -> Job {
        c.due(&now(0));
        c.built("www", Ok(Built::Learned(None)), &now(1));
        c.learn("www", &paths(learned));
        let mut due = c.due(&now(LEARNED_SAVE.as_millis() as Millis + 1));
        assert_eq!(due.len(), 1, "{due:?}");
        due.remove(0).1
    }

    fn spawn_save(store: &Gated, job: &Job) -> tokio::task::JoinHandle<Result<Built, String>> {
        let (turn, stamp, json) = save_of(job);
        let store = store.clone();
        tokio::spawn(async move { save_in_turn(&turn, stamp, &store, json).await })
    }

    /// Lets every other task run until it waits.
    async fn let_others_run() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn the_write_at_shutdown_waits_for_the_one_under_way_and_writes_the_newest() {
        let mut c = Catalogs::new(&learned_config());
        let store = Gated::default();
        let routine = a_write_under_way(&mut c, &["/a"]);
        let first = spawn_save(&store, &routine);
        store.0.entered.notified().await;
        // Learned while that write is held; then the shutdown's write.
        c.learn("www", &paths(&["/b"]));
        let last = c.last_saves();
        let [(_, job)] = &last[..] else {
            panic!("{last:?}");
        };
        let second = spawn_save(&store, job);
        let_others_run().await;
        store.0.gate.notify_one();
        assert!(matches!(first.await.unwrap(), Ok(Built::Saved)));
        assert!(matches!(second.await.unwrap(), Ok(Built::Saved)));
        assert!(!store.0.overlapped.load(std::sync::atomic::Ordering::SeqCst));
        let written = store.written();
        assert_eq!(written.len(), 2);
        let newest = Learned::from_json(written.last().unwrap(), "t").unwrap();
        assert_eq!(newest.paths().collect::<Vec<_>>(), ["/a", "/b"]);
        // An older stored form that comes late is not written over it.
        let late = spawn_save(&store, &routine).await.unwrap();
        assert!(matches!(late, Ok(Built::Saved)));
        assert_eq!(store.written().len(), 2);
    }

    #[tokio::test]
    async fn with_nothing_new_the_write_at_shutdown_is_made_only_if_the_one_under_way_was_not() {
        for fails in [false, true] {
            nothing_new_at_shutdown(fails).await;
        }
    }

    async fn nothing_new_at_shutdown(first_fails: bool) {
        let mut c = Catalogs::new(&learned_config());
        let store = Gated::default();
        store
            .0
            .fail_first
            .store(first_fails, std::sync::atomic::Ordering::SeqCst);
        let routine = a_write_under_way(&mut c, &["/a"]);
        let first = spawn_save(&store, &routine);
        store.0.entered.notified().await;
        // Nothing learned since, but that write may yet fail.
        let last = c.last_saves();
        let [(_, job)] = &last[..] else {
            panic!("{last:?}");
        };
        let second = spawn_save(&store, job);
        let_others_run().await;
        store.0.gate.notify_one();
        assert_eq!(first.await.unwrap().is_err(), first_fails);
        assert!(matches!(second.await.unwrap(), Ok(Built::Saved)));
        // Made: the same paths are not written twice; failed: written now.
        let written = store.written();
        assert_eq!(written.len(), 1, "first fails: {first_fails}");
        let stored = Learned::from_json(&written[0], "t").unwrap();
        assert_eq!(stored.paths().collect::<Vec<_>>(), ["/a"]);
    }
}
