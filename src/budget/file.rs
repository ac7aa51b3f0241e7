//! The ledger as one JSON file (`budget.ledger_path`), replaced atomically
//! on every save.
//!
//! A symlinked ledger is followed: the file it points to is replaced and the
//! link stays (writing over the link itself would turn it into a regular
//! file carrying the link's mode, 0777, and leave its target stale). The
//! replacement keeps the mode of the file it replaces; a new ledger is
//! created 0600, as it is nobody else's business.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use atomic_write_file::AtomicWriteFile;
use atomic_write_file::unix::OpenOptionsExt as _;
use std::os::unix::fs::OpenOptionsExt as _;

/// Mode of a new ledger file (before the umask).
const NEW_LEDGER_MODE: u32 = 0o600;

/// The largest ledger file read. A month's ledger holds its open
/// reservations and the ids of other tools' invalidations it counted: a
/// few hundred KiB at most (the DynamoDB store's item cannot pass 400 KB).
pub const MAX_LEDGER_BYTES: u64 = 16 << 20;

/// Links followed before giving up, as the kernel does (`ELOOP`).
const MAX_SYMLINKS: usize = 40;

use super::ledger::{LEDGER_VERSION, LedgerError, LedgerState, LedgerStore};

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

/// What [`replace_file`] could not do: the file or folder, the step, the
/// error.
pub(crate) type ReplaceError = (PathBuf, &'static str, std::io::Error);

/// Replaces the file at `path` (symbolic links followed) with `bytes`,
/// atomically: a temporary file in the same folder, fsynced, renamed over
/// it, the folder fsynced. A new file is created 0600; a replaced one keeps
/// its mode. `what` names the file in the steps of an error (`"ledger"`).
pub(crate) fn replace_file(path: &Path, bytes: &[u8], what: &str) -> Result<(), ReplaceError> {
    let step = |action: &'static str| move |source| (path.to_path_buf(), action, source);
    let target = follow_links(path).map_err(step(if what == "ledger" {
        "follow the ledger's symlink"
    } else {
        "follow the file's symlink"
    }))?;
    if let Some(folder) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder).map_err(|source| {
            (
                folder.to_path_buf(),
                if what == "ledger" {
                    "create the ledger's folder"
                } else {
                    "create the file's folder"
                },
                source,
            )
        })?;
    }
    // preserve_mode (the default) copies the mode of the file replaced.
    let mut file = AtomicWriteFile::options()
        .mode(NEW_LEDGER_MODE)
        .preserve_mode(true)
        .open(&target)
        .map_err(step("create a temporary file in its folder"))?;
    file.write_all(bytes)
        .map_err(step("write the temporary file"))?;
    if what == "ledger" {
        // A crash here leaves the old ledger and a temporary file.
        fail::fail_point!("ledger::before_rename");
    }
    // fsync the file, rename it over the old one, fsync the folder.
    file.commit().map_err(step(if what == "ledger" {
        "replace the ledger"
    } else {
        "replace the file"
    }))?;
    if what == "ledger" {
        fail::fail_point!("ledger::after_rename");
    }
    Ok(())
}

/// The file `path` names once symbolic links are followed (also a dangling
/// link's target, which the save then creates); `path` itself when it is
/// not a link or does not exist.
fn follow_links(path: &Path) -> std::io::Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..MAX_SYMLINKS {
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let link = std::fs::read_link(&current)?;
                current = match current.parent() {
                    Some(folder) if link.is_relative() => folder.join(link),
                    _ => link,
                };
            }
            // Not a link, or not there (yet): the save's own steps report
            // a folder that cannot be made or written.
            _ => return Ok(current),
        }
    }
    Err(std::io::Error::other(format!(
        "more than {MAX_SYMLINKS} symbolic links to follow"
    )))
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
