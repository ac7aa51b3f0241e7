//! Durable file writes: a file replaced whole or not at all, surviving a
//! crash or a power loss at any moment (the ledger, learned catalogs).

use std::io::Write;
use std::path::{Path, PathBuf};

use atomic_write_file::AtomicWriteFile;
use atomic_write_file::unix::OpenOptionsExt as _;
use std::os::unix::fs::OpenOptionsExt as _;

/// Mode of a new file (before the umask): it may hold what only cfpurge
/// should read.
const NEW_FILE_MODE: u32 = 0o600;

/// Links followed before giving up, as the kernel does (`ELOOP`).
const MAX_SYMLINKS: usize = 40;

/// What [`replace_file`] could not do: the file or folder, the step, the
/// error.
pub type ReplaceError = (PathBuf, &'static str, std::io::Error);

/// Replaces the file at `path` (symbolic links followed) with `bytes`,
/// atomically: a temporary file in the same folder, fsynced, renamed over
/// it, the folder fsynced. A new file is created 0600; a replaced one keeps
/// its mode. `what` names the file in the steps of an error (`"ledger"`).
pub fn replace_file(path: &Path, bytes: &[u8], what: &str) -> Result<(), ReplaceError> {
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
        .mode(NEW_FILE_MODE)
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
