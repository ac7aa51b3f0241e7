//! The ledger as one JSON file (`budget.ledger_path`), replaced atomically
//! on every save.
//!
//! A symlinked ledger is followed: the file it points to is replaced and the
//! link stays (writing over the link itself would turn it into a regular
//! file carrying the link's mode, 0777, and leave its target stale). The
//! replacement keeps the mode of the file it replaces; a new ledger is
//! created 0600, as it is nobody else's business.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// The largest ledger file read. A month's ledger holds its open
/// reservations and the ids of other tools' invalidations it counted: a
/// few hundred KiB at most (the DynamoDB store's item cannot pass 400 KB).
pub const MAX_LEDGER_BYTES: u64 = 16 << 20;

use super::ledger::{LEDGER_VERSION, LedgerError, LedgerState, LedgerStore};
use crate::durable::replace_file;

/// The ledger file of `account`: `ledger_path` itself for the default
/// account (a single-account daemon's file, unchanged), else a sibling
/// named after the account (`ledger.json` → `ledger.prod.json`), so that
/// each account's ledger is written on its own and one account's
/// failing write holds up only its own batches.
pub fn file_for_account(ledger_path: &Path, account: &str) -> PathBuf {
    if account == crate::config::DEFAULT_ACCOUNT {
        return ledger_path.to_path_buf();
    }
    let stem = ledger_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ledger".to_owned());
    let name = match ledger_path.extension() {
        Some(ext) => format!("{stem}.{account}.{}", ext.to_string_lossy()),
        None => format!("{stem}.{account}"),
    };
    ledger_path.with_file_name(name)
}

/// The ledger in one file. `save` writes the whole state to a temporary file
/// in the same folder (`.NAME.XXXXXX`), fsyncs it, renames it over the
/// ledger and fsyncs the folder (the `atomic-write-file` crate), so a crash
/// leaves either the old ledger or the new one. `load` reads only the
/// ledger's own name: a temporary file left by a crash is never read.
#[derive(Clone, Debug)]
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    /// A store for the ledger at `path`; nothing is touched until the first
    /// `load` or `save`.
    pub fn new(path: impl Into<PathBuf>) -> FileStore {
        FileStore { path: path.into() }
    }

    /// The ledger file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, action: &'static str) -> impl FnOnce(std::io::Error) -> LedgerError + '_ {
        move |source| LedgerError::Io {
            path: self.path.clone(),
            action,
            source,
        }
    }

    fn corrupt(&self, detail: String) -> LedgerError {
        LedgerError::Corrupt {
            path: self.path.clone(),
            detail,
        }
    }

    /// Parses a ledger's bytes: the version first, so that a newer format
    /// is reported as such rather than as corruption.
    fn parse(&self, bytes: &[u8]) -> Result<LedgerState, LedgerError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(self.corrupt("the file is empty".to_owned()));
        }
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| self.corrupt(format!("not valid JSON: {e}")))?;
        let version = value
            .get("version")
            .ok_or_else(|| self.corrupt("no \"version\" key".to_owned()))?;
        let found = version
            .as_u64()
            .ok_or_else(|| self.corrupt(format!("\"version\" is {version}, not a whole number")))?;
        if found != LEDGER_VERSION {
            return Err(LedgerError::Version {
                path: self.path.clone(),
                found,
            });
        }
        serde_json::from_slice(bytes).map_err(|e| self.corrupt(e.to_string()))
    }
}

impl LedgerStore for FileStore {
    fn load(&self) -> Result<Option<LedgerState>, LedgerError> {
        match crate::regular_file::read(&self.path, MAX_LEDGER_BYTES) {
            Ok(bytes) => self.parse(&bytes).map(Some),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io("read the ledger")(e)),
        }
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn save(&self, state: &LedgerState) -> Result<(), LedgerError> {
        let mut bytes = serde_json::to_vec_pretty(state)
            .map_err(|e| LedgerError::Store(format!("cannot encode the ledger: {e}")))?;
        bytes.push(b'\n');
        replace_file(&self.path, &bytes, "ledger").map_err(|(path, action, source)| {
            LedgerError::Io {
                path,
                action,
                source,
            }
        })
    }
}
#[cfg(test)]
mod account_tests {
    use super::*;

    #[test]
    fn each_account_has_its_own_file_beside_the_default_one() {
        let p = Path::new("/var/lib/cfpurge/ledger.json");
        assert_eq!(file_for_account(p, "default"), p);
        assert_eq!(
            file_for_account(p, "prod"),
            Path::new("/var/lib/cfpurge/ledger.prod.json")
        );
        assert_eq!(
            file_for_account(Path::new("/x/ledger"), "prod"),
            Path::new("/x/ledger.prod")
        );
    }
}
