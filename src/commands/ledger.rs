//! `cfpurge ledger show` and `cfpurge ledger import FILE`: the budget ledger
//! in the configured store (`budget.store`), printed, or filled from a file
//! ledger (the way from `store = "file"` to `"dynamodb"`) without ever
//! lowering what the store already counts.

use std::io::Write;
use std::path::Path;

use crate::budget::{
    self, AnyStore, DynamoStore, FileStore, LedgerError, LedgerState, LedgerStore,
};
use crate::config::{Config, StoreKind};
use crate::coordination::dynamo;

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

/// The configured store. The DynamoDB store is unfenced: these commands
/// write only with a condition on the ledger's version, so a running
/// leader's next write is refused and it reads the ledger again.
pub async fn store(config: &Config) -> Result<AnyStore, LedgerError> {
    Ok(match config.budget.store {
        StoreKind::File => AnyStore::File(FileStore::new(config.budget.ledger_path.clone())),
        StoreKind::Dynamodb => {
            let sdk = dynamo::sdk_config(&config.aws).await;
            AnyStore::Dynamo(DynamoStore::new(
                sdk,
                &config.aws,
                &config.coordination.table,
                false,
            )?)
        }
    })
}

fn where_(config: &Config) -> String {
    match config.budget.store {
        StoreKind::File => format!("file {}", config.budget.ledger_path.display()),
        StoreKind::Dynamodb => format!("DynamoDB table {}", config.coordination.table),
    }
}

/// Prints the ledger of the configured store.
pub fn show(
    config: &Config,
    store: &AnyStore,
    out: &mut impl Write,
) -> Result<(), LedgerCommandError> {
    let Some(state) = store.load()? else {
        writeln!(out, "ledger: {} (empty: nothing spent yet)", where_(config))?;
        return Ok(());
    };
    print_state(config, &state, out)
}

fn print_state(
    config: &Config,
    state: &LedgerState,
    out: &mut impl Write,
) -> Result<(), LedgerCommandError> {
    writeln!(out, "ledger: {}", where_(config))?;
    writeln!(out, "month: {}", state.month)?;
    writeln!(
        out,
        "spent: {} (cfpurge {}, other tools {}) of {}",
        state.spent.saturating_add(state.external),
        state.spent,
        state.external,
        config.budget.monthly_paths
    )?;
    writeln!(out, "open reservations: {}", state.reservations.len())?;
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

/// Copies the file ledger at `file` into the configured store, merged with
/// what the store holds so that nothing it counts goes down; prints the
/// result.
pub fn import(
    config: &Config,
    store: &AnyStore,
    file: &Path,
    out: &mut impl Write,
) -> Result<(), LedgerCommandError> {
    let source = FileStore::new(file)
        .load()?
        .ok_or_else(|| LedgerCommandError::NoSource(file.to_path_buf()))?;
    let merged = match store.load()? {
        Some(target) => budget::merge(&target, &source),
        None => source,
    };
    store.save(&merged)?;
    writeln!(out, "imported {}", file.display())?;
    print_state(config, &merged, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::{MemoryStore, Month, MonthRecord, Reservation};

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
        import(&config(), &store, &file, &mut out).unwrap();
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
        import(&config(), &store, &old, &mut out).unwrap();
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
            &store,
            &dir.path().join("nope.json"),
            &mut Vec::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("nope.json"), "{e}");
    }
}
