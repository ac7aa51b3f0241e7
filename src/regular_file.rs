//! Reading a file a user named (the configuration, a catalog file, a ledger
//! to import, the ledger itself): only a regular file, and only up to a
//! size limit, so that a device (`/dev/zero` is endless), a FIFO (whose
//! open blocks until a writer comes, and which no signal handler can
//! interrupt) or a huge file never exhausts memory or keeps the process
//! from exiting.
//!
//! The path is looked at first (symbolic links followed) and anything but
//! a regular file is refused without being opened: opening some devices
//! has effects of its own. The file is then opened without blocking and
//! looked at again through the open descriptor, so a file swapped for a
//! FIFO in between is refused too. Errors are `std::io::Error`s, so that
//! each caller reports them as it reports any other read failure (a
//! missing file keeps `ErrorKind::NotFound`).

use std::fs::{File, Metadata};
use std::io::{self, ErrorKind, Read};
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::Path;

/// What a file that is not a regular file is, for messages.
fn kind(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

fn not_regular(path: &Path, meta: &Metadata) -> io::Error {
    let through_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    io::Error::new(
        ErrorKind::InvalidInput,
        format!(
            "not a regular file: it is {}{}; cfpurge reads only regular files",
            kind(meta),
            if through_link {
                " (reached through a symbolic link)"
            } else {
                ""
            }
        ),
    )
}

/// `limit` for messages: whole MiB or KiB when it is one.
fn size(limit: u64) -> String {
    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;
    if limit >= MIB && limit.is_multiple_of(MIB) {
        format!("{} MiB", limit / MIB)
    } else if limit >= KIB && limit.is_multiple_of(KIB) {
        format!("{} KiB", limit / KIB)
    } else {
        format!("{limit} bytes")
    }
}

fn too_large(limit: u64) -> io::Error {
    io::Error::new(
        ErrorKind::FileTooLarge,
        format!("larger than the {} cfpurge reads from it", size(limit)),
    )
}

/// Whether `path` names a regular file (links followed). `Ok` also when
/// there is nothing at `path`, which the read reports when it comes to it;
/// an error for anything else. Opens nothing.
pub fn check(path: &Path) -> io::Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(meta) => Err(not_regular(path, &meta)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// A regular file opened for reading; reads fail with
/// `ErrorKind::FileTooLarge` once more than its limit would be read.
#[derive(Debug)]
pub struct Limited {
    file: io::Take<File>,
    limit: u64,
}

impl Read for Limited {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        // `take` allows one byte more than the limit: reading it proves
        // the file is larger.
        if self.file.limit() == 0 && n > 0 {
            return Err(too_large(self.limit));
        }
        Ok(n)
    }
}

/// Opens `path` if it is a regular file of at most `limit` bytes (links
/// followed); reading more than `limit` bytes from it fails.
pub fn open(path: &Path, limit: u64) -> io::Result<Limited> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(not_regular(path, &meta));
    }
    // Without blocking: a FIFO put there since the look above would
    // otherwise wait for a writer. No effect on reading a regular file.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_regular(path, &meta));
    }
    if meta.len() > limit {
        return Err(too_large(limit));
    }
    Ok(Limited {
        file: file.take(limit.saturating_add(1)),
        limit,
    })
}

/// The whole of the regular file at `path`, if it has at most `limit`
/// bytes.
pub fn read(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let mut file = open(path, limit)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// [`read`] as UTF-8 text.
pub fn read_to_string(path: &Path, limit: u64) -> io::Result<String> {
    String::from_utf8(read(path, limit)?)
        .map_err(|_| io::Error::new(ErrorKind::InvalidData, "stream did not contain valid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mkfifo(path: &Path) {
        let status = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success());
    }

    #[test]
    fn regular_files_are_read_up_to_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"0123456789").unwrap();
        assert_eq!(read(&file, 10).unwrap(), b"0123456789");
        let e = read(&file, 9).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::FileTooLarge);
        assert_eq!(
            e.to_string(),
            "larger than the 9 bytes cfpurge reads from it"
        );
        assert_eq!(read_to_string(&file, 64).unwrap(), "0123456789");
        check(&file).unwrap();
        // A file that grows after it was opened is cut off at the limit.
        let mut open = open(&file, 12).unwrap();
        std::fs::write(&file, vec![b'x'; 4096]).unwrap();
        let mut bytes = Vec::new();
        let e = open.read_to_end(&mut bytes).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::FileTooLarge);
        assert!(bytes.len() <= 13, "{}", bytes.len());
        // Missing: NotFound for the read, nothing for the check.
        let missing = dir.path().join("missing");
        assert_eq!(read(&missing, 1).unwrap_err().kind(), ErrorKind::NotFound);
        check(&missing).unwrap();
        assert_eq!(size(4 << 20), "4 MiB");
        assert_eq!(size(400 << 10), "400 KiB");
    }

    #[test]
    fn devices_fifos_and_directories_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        let link = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        for (path, what) in [
            (Path::new("/dev/zero"), "it is a character device; "),
            (
                link.as_path(),
                "a character device (reached through a symbolic link)",
            ),
            (fifo.as_path(), "a FIFO (named pipe)"),
            (dir.path(), "a directory"),
        ] {
            let e = read(path, 1 << 20).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{path:?}");
            let text = e.to_string();
            assert!(
                text.starts_with("not a regular file") && text.contains(what),
                "{text}"
            );
            assert_eq!(check(path).unwrap_err().to_string(), text);
            assert!(open(path, 1).is_err());
        }
    }
}
