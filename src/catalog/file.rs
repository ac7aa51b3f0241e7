//! `catalog = "file"`: one served path per line, as CloudFront would be
//! asked to purge it (made from a sitemap, a build's output listing, ...).
//! Blank lines and lines starting with `#` are skipped; paths are encoded
//! by the same rules as requested paths, so that both compare equal.

use std::io::{BufRead, BufReader};
use std::path::Path;

use super::{Catalog, CatalogError, DEFAULT_MAX_BYTES};
use crate::path::CfPath;

/// The largest catalog file read: a million paths of a hundred characters
/// take about 100 MiB.
pub const MAX_FILE_BYTES: u64 = 256 << 20;

/// Builds a catalog from the file at `path`, a regular file of at most
/// [`MAX_FILE_BYTES`]. The first line that is not a served path fails the
/// whole build with its line number: a catalog silently missing part of
/// the site would make wildcards look cheap. Within [`DEFAULT_MAX_BYTES`];
/// [`load_within`] takes the bound.
pub fn load(path: &Path) -> Result<Catalog, CatalogError> {
    load_within(path, DEFAULT_MAX_BYTES)
}

/// [`load`] within `max_bytes` (`catalog.max_bytes`): a file holding more
/// than fits is refused as a whole, as a line that is not a path is.
pub fn load_within(path: &Path, max_bytes: usize) -> Result<Catalog, CatalogError> {
    let name = path.display().to_string();
    let file =
        crate::regular_file::open(path, MAX_FILE_BYTES).map_err(|source| CatalogError::Read {
            path: name.clone(),
            source,
        })?;
    read_within(BufReader::with_capacity(1 << 16, file), &name, max_bytes)
}

/// Builds a catalog from `input`; `name` names it in errors.
pub fn read(input: impl BufRead, name: &str) -> Result<Catalog, CatalogError> {
    read_within(input, name, DEFAULT_MAX_BYTES)
}

/// [`read`] within `max_bytes`.
pub fn read_within(
    mut input: impl BufRead,
    name: &str,
    max_bytes: usize,
) -> Result<Catalog, CatalogError> {
    let mut catalog = Catalog::within(max_bytes);
    let mut line = String::new();
    let mut number = 0;
    loop {
        line.clear();
        let read = input
            .read_line(&mut line)
            .map_err(|source| CatalogError::Read {
                path: name.to_owned(),
                source,
            })?;
        if read == 0 {
            return Ok(catalog);
        }
        number += 1;
        let text = line.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let bad = |message: String| CatalogError::Line {
            path: name.to_owned(),
            line: number,
            message,
        };
        let path = CfPath::parse(text).map_err(|e| bad(e.to_string()))?;
        if path.is_wildcard() {
            return Err(bad(format!(
                "{text:?} is a wildcard; a catalog lists served objects"
            )));
        }
        catalog.add(path.as_str());
        if catalog.refused() > 0 {
            return Err(CatalogError::TooLarge {
                source_name: name.to_owned(),
                max_bytes,
                after: format!("full at line {number}"),
            });
        }
    }
}
