//! `cfpurge ledger show` and `cfpurge ledger import FILE`: the budget ledger
//! in the configured store (`budget.store`), printed, or filled from a file
//! ledger (the way from `store = "file"` to `"dynamodb"`) without ever
//! lowering what the store already counts.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::budget::{
    self, AnyStore, DynamoStore, FileStore, LedgerError, LedgerState, LedgerStore, Month,
};
use crate::config::{Config, StoreKind};

/// Why a ledger command failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerCommandError {
    #[error("{0}")]
    Ledger(#[from] LedgerError),
    #[error("{}: no ledger there", .0.display())]
    NoSource(std::path::PathBuf),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// The configured store of the main account's ledger (the default
/// account's while a distribution is in it): the one `ledger import` fills
/// without `--account`.
pub async fn store(config: &Config) -> Result<AnyStore, LedgerError> {
    store_of(config, &config.main_account()).await
}

/// The account `ledger import` fills: `named` (`--account`), which must be
/// an account some distribution is in (only those have a ledger), else the
/// main account.
pub fn import_account(config: &Config, named: Option<&str>) -> Result<String, String> {
    let accounts = config.budget_accounts();
    match named {
        None => Ok(config.main_account()),
        Some(name) if accounts.iter().any(|a| a == name) => Ok(name.to_owned()),
        Some(name) => Err(format!(
            "--account {name}: no distribution is in that account, so it has no ledger \
             (accounts with a ledger: {})",
            accounts.join(", ")
        )),
    }
}

/// Every account's ledger store, in account order.
pub async fn stores(config: &Config) -> Result<Vec<(String, AnyStore)>, LedgerError> {
    let mut stores = Vec::new();
    for account in config.budget_accounts() {
        let store = store_of(config, &account).await?;
        stores.push((account, store));
    }
    Ok(stores)
}

/// `account`'s store. The DynamoDB store is unfenced: these commands write
/// only with a condition on the ledger's version, so a running leader's
/// next write is refused and it reads the ledger again.
async fn store_of(config: &Config, account: &str) -> Result<AnyStore, LedgerError> {
    Ok(match config.budget.store {
        StoreKind::File => AnyStore::File(FileStore::new(budget::file_for_account(
            &config.budget.ledger_path,
            account,
        ))),
        StoreKind::Dynamodb => {
            let sdk = crate::aws::sdk_config(&config.aws).await;
            AnyStore::Dynamo(DynamoStore::at(
                sdk,
                &config.aws,
                &config.coordination.table,
                &crate::coordination::dynamo::ledger_key(account),
                false,
            )?)
        }
    })
}

/// Where `account`'s ledger is, as the commands print it.
fn where_(config: &Config, account: &str) -> String {
    match config.budget.store {
        StoreKind::File => format!(
            "file {}",
            budget::file_for_account(&config.budget.ledger_path, account).display()
        ),
        StoreKind::Dynamodb if account == crate::config::DEFAULT_ACCOUNT => {
            format!("DynamoDB table {}", config.coordination.table)
        }
        StoreKind::Dynamodb => format!(
            "DynamoDB table {}, item pk = \"{}\"",
            config.coordination.table,
            crate::coordination::dynamo::ledger_key(account)
        ),
    }
}

/// Prints the main account's ledger from `store`.
pub fn show(
    config: &Config,
    store: &AnyStore,
    out: &mut impl Write,
) -> Result<(), LedgerCommandError> {
    show_account(config, &config.main_account(), store, out)
}

/// Prints each account's ledger; with `[accounts]`, each under a line
/// naming its account.
pub fn show_all(
    config: &Config,
    stores: &[(String, AnyStore)],
    out: &mut impl Write,
) -> Result<(), LedgerCommandError> {
    for (i, (account, store)) in stores.iter().enumerate() {
        if config.has_accounts() {
            if i > 0 {
                writeln!(out)?;
            }
            writeln!(out, "account: {account}")?;
        }
        show_account(config, account, store, out)?;
    }
    Ok(())
}

fn show_account(
    config: &Config,
    account: &str,
    store: &AnyStore,
    out: &mut impl Write,
) -> Result<(), LedgerCommandError> {
    let Some(state) = store.load()? else {
        writeln!(
            out,
            "ledger: {} (empty: nothing spent yet)",
            where_(config, account)
        )?;
        return Ok(());
    };
    print_state(config, account, &state, out)
}

fn print_state(
    config: &Config,
    account: &str,
    state: &LedgerState,
    out: &mut impl Write,
) -> Result<(), LedgerCommandError> {
    writeln!(out, "ledger: {}", where_(config, account))?;
    writeln!(out, "month: {}", state.month)?;
    writeln!(
        out,
        "spent: {} (cfpurge {}, other tools {}) of {}",
        state.spent.saturating_add(state.external),
        state.spent,
        state.external,
        config.budget_for(account).monthly_paths
    )?;
    // Apart from what CloudFront is known to have created: a reservation
    // is a call under way when the ledger was read, or one whose answer
    // was lost, kept as spent on doubt.
    writeln!(
        out,
        "open reservations: {} ({} paths of the spent, not known to be created: kept as spent \
         until CloudFront confirms them or a scan of the month shows they were never made)",
        state.reservations.len(),
        crate::budget::reserved_paths(state)
    )?;
    for (reference, r) in &state.reservations {
        writeln!(
            out,
            "  {reference}: {} paths on {}",
            r.paths, r.distribution
        )?;
    }
    for record in state.history.iter().rev() {
        writeln!(out, "closed: {record}")?;
    }
    Ok(())
}

/// Copies the file ledger at `file` into `account`'s store, merged with
/// what the store holds so that nothing it counts goes down; prints the
/// result.
pub fn import(
    config: &Config,
    account: &str,
    store: &AnyStore,
    file: &Path,
    out: &mut impl Write,
) -> Result<(), LedgerCommandError> {
    import_at(config, account, store, file, SystemTime::now(), out)
}

/// [`import`] with the clock at `now`. Refused, writing nothing, when
/// either ledger is for a month `now` has not reached (the daemon refuses
/// such a ledger: merged in, it would close the current month into the
/// history and count it again from zero) or the file's history is not a
/// history of earlier months (its entries could push the store's own out).
pub fn import_at(
    config: &Config,
    account: &str,
    store: &AnyStore,
    file: &Path,
    now: SystemTime,
    out: &mut impl Write,
) -> Result<(), LedgerCommandError> {
    let source = FileStore::new(file)
        .load()?
        .ok_or_else(|| LedgerCommandError::NoSource(file.to_path_buf()))?;
    let clock = Month::of(now);
    if source.month > clock {
        return Err(LedgerError::AheadOfClock {
            location: file.display().to_string(),
            month: source.month,
            now: clock,
        }
        .into());
    }
    budget::check_history(&source).map_err(|detail| LedgerError::Corrupt {
        path: file.to_path_buf(),
        detail,
    })?;
    let merged = match store.load()? {
        Some(target) if target.month > clock => {
            return Err(LedgerError::AheadOfClock {
                location: store.location(),
                month: target.month,
                now: clock,
            }
            .into());
        }
        Some(target) => budget::merge(&target, &source),
        None => source,
    };
    store.save(&merged)?;
    writeln!(out, "imported {}", file.display())?;
    if config.has_accounts() {
        writeln!(out, "account: {account}")?;
    }
    print_state(config, account, &merged, out)
}

/// `cfpurge ledger`'s actions.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
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
        /// The [accounts.NAME] whose ledger it fills (else the default
        /// account's, or with no distribution in it the first account's by
        /// name).
        #[arg(long, value_name = "NAME")]
        account: Option<String>,
    },
}

/// `cfpurge ledger show` (every account's ledger) or `cfpurge ledger
/// import FILE [--account NAME]` (into that account's store).
pub fn main(action: Action) -> Result<u8, super::Failure> {
    let (config, file, account) = match &action {
        Action::Show { config } => (config, None, None),
        Action::Import {
            file,
            config,
            account,
        } => (config, Some(file), account.as_deref()),
    };
    let path = crate::config::config_path(config.as_deref());
    let config = Config::load(&path).map_err(super::Failure::usage)?;
    let runtime = super::current_thread()?;
    let out = &mut std::io::stdout().lock();
    match file {
        None => {
            let all = runtime
                .block_on(stores(&config))
                .map_err(super::Failure::runtime)?;
            show_all(&config, &all, out)
        }
        Some(file) => {
            let account = import_account(&config, account).map_err(super::Failure::usage)?;
            let store = runtime
                .block_on(store_of(&config, &account))
                .map_err(super::Failure::runtime)?;
            import(&config, &account, &store, file, out)
        }
    }
    .map_err(super::Failure::runtime)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::{MemoryStore, Month, MonthRecord, Reservation};
    use crate::config::DEFAULT_ACCOUNT;

    fn config() -> Config {
        Config::from_parts(
            Some("[source]\nkind = \"local\"\n[distributions.www]\nid = \"E2ABCDEF123456\"\n"),
            "test",
            Vec::new(),
        )
        .unwrap()
    }

    fn state(month: &str, spent: u64, external: u64) -> LedgerState {
        let mut s = LedgerState::new(month.parse::<Month>().unwrap());
        s.spent = spent;
        s.external = external;
        s
    }

    #[test]
    fn show_counts_the_reservations_kept_on_doubt_apart() {
        let mut s = state("2026-11", 12, 3);
        for (reference, paths) in [("cfpurge-a", 2), ("cfpurge-b", 3)] {
            s.reservations.insert(
                reference.into(),
                Reservation {
                    distribution: "www".into(),
                    paths,
                    at: 1_794_268_800,
                },
            );
        }
        let mut out = Vec::new();
        print_state(&config(), crate::config::DEFAULT_ACCOUNT, &s, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("spent: 15 (cfpurge 12, other tools 3) of 1000\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "open reservations: 2 (5 paths of the spent, not known to be created: kept as \
                 spent until CloudFront confirms them or a scan of the month shows they were \
                 never made)\n  cfpurge-a: 2 paths on www\n  cfpurge-b: 3 paths on www\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn import_never_lowers_what_the_target_counts() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ledger.json");
        let mut source = state("2026-11", 40, 1);
        source.reservations.insert(
            "cfpurge-a".into(),
            Reservation {
                distribution: "www".into(),
                paths: 5,
                at: 1_794_268_800,
            },
        );
        source.history.push(MonthRecord {
            month: "2026-10".parse().unwrap(),
            spent: 7,
            external: 0,
        });
        FileStore::new(&file).save(&source).unwrap();
        let mut target = state("2026-11", 30, 9);
        target.history.push(MonthRecord {
            month: "2026-10".parse().unwrap(),
            spent: 100,
            external: 2,
        });
        let memory = MemoryStore::with_state(target);
        let store = AnyStore::Memory(memory.clone());
        let mut out = Vec::new();
        import(&config(), DEFAULT_ACCOUNT, &store, &file, &mut out).unwrap();
        let merged = memory.state().unwrap();
        assert_eq!((merged.spent, merged.external), (40, 9));
        assert!(merged.reservations.contains_key("cfpurge-a"));
        assert_eq!(
            (merged.history[0].spent, merged.history[0].external),
            (100, 2)
        );
        // A source from an earlier month rolls into the target's.
        let old = dir.path().join("old.json");
        FileStore::new(&old)
            .save(&state("2026-09", 500, 0))
            .unwrap();
        import(&config(), DEFAULT_ACCOUNT, &store, &old, &mut out).unwrap();
        let merged = memory.state().unwrap();
        assert_eq!(merged.month, "2026-11".parse().unwrap());
        assert_eq!(merged.spent, 40);
        assert!(merged.history.iter().any(|r| r.spent == 500));
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("spent: 49 (cfpurge 40, other tools 9) of 1000"),
            "{text}"
        );
        // A missing file is an error naming it.
        let e = import(
            &config(),
            DEFAULT_ACCOUNT,
            &store,
            &dir.path().join("nope.json"),
            &mut Vec::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("nope.json"), "{e}");
    }

    /// 2026-11-10T00:00:00Z.
    fn november() -> SystemTime {
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_794_268_800)
    }

    fn record(month: &str, spent: u64) -> MonthRecord {
        MonthRecord {
            month: month.parse().unwrap(),
            spent,
            external: 0,
        }
    }

    /// What `import_at` says when it refuses `file` into `store` in
    /// November 2026.
    fn refused(store: &AnyStore, file: &std::path::Path) -> String {
        import_at(
            &config(),
            DEFAULT_ACCOUNT,
            store,
            file,
            november(),
            &mut Vec::new(),
        )
        .unwrap_err()
        .to_string()
    }

    #[test]
    fn import_refuses_a_month_ahead_of_the_clock_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut target = state("2026-11", 42, 0);
        target.history.push(record("2026-10", 7));
        let memory = MemoryStore::with_state(target.clone());
        let store = AnyStore::Memory(memory.clone());
        let future = dir.path().join("future.json");
        FileStore::new(&future)
            .save(&state("2099-01", 5, 0))
            .unwrap();
        let e = refused(&store, &future);
        assert!(
            e.contains("future.json is for 2099-01") && e.contains("clock (2026-11)"),
            "{e}"
        );
        // A history with months at or after its own ledger's, or out of
        // order.
        let mut odd = state("2026-11", 1, 0);
        odd.history.push(record("2026-12", 1));
        let odd_file = dir.path().join("odd.json");
        FileStore::new(&odd_file).save(&odd).unwrap();
        let e = refused(&store, &odd_file);
        assert!(
            e.contains("odd.json is corrupt") && e.contains("entry for 2026-12"),
            "{e}"
        );
        odd.history = vec![record("2026-09", 1), record("2026-08", 1)];
        FileStore::new(&odd_file).save(&odd).unwrap();
        let e = refused(&store, &odd_file);
        assert!(e.contains("2026-08 after the one for 2026-09"), "{e}");
        assert_eq!(memory.state(), Some(target));
        assert_eq!(memory.saves(), 0);
        // A store ahead of the clock is refused too: the daemon would not
        // take it, and merged it would stay ahead.
        let ahead = MemoryStore::with_state(state("2026-12", 3, 0));
        let fine = dir.path().join("fine.json");
        FileStore::new(&fine).save(&state("2026-11", 1, 0)).unwrap();
        let e = refused(&AnyStore::Memory(ahead.clone()), &fine);
        assert!(e.contains("(in memory) is for 2026-12"), "{e}");
        assert_eq!(ahead.saves(), 0);
    }

    #[test]
    fn a_merge_keeps_every_month_of_the_target_within_the_history() {
        let mut target = state("2026-11", 42, 0);
        let mut m: Month = "2025-11".parse().unwrap();
        while m < target.month {
            target.history.push(MonthRecord {
                month: m,
                spent: 100,
                external: 0,
            });
            m = m.next();
        }
        assert_eq!(target.history.len(), crate::budget::HISTORY_MONTHS);
        // Entries later than the ledger's own month (a hand-made file that
        // was not checked) take no place in the merged history.
        let mut source = state("2026-11", 1, 0);
        source.history = ["2026-12", "2027-01", "2027-02"]
            .iter()
            .map(|m| record(m, 1))
            .collect();
        let merged = budget::merge(&target, &source);
        assert_eq!(merged.history, target.history);
        assert_eq!(merged.spent, 42);
        // A source a month later: the target's month closes into the
        // history with its spending, the oldest month leaves it.
        let later = budget::merge(&target, &state("2026-12", 1, 0));
        assert_eq!(later.history.last(), Some(&record("2026-11", 42)));
        assert_eq!(later.history.first(), Some(&record("2025-12", 100)));
        assert_eq!(later.history.len(), crate::budget::HISTORY_MONTHS);
    }
}
