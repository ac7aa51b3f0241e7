//! Plain text: one path per line for the default distribution, the easiest
//! thing to send from a shell (`aws sqs send-message --message-body`).
//! Blank lines and `#` comments are skipped; surrounding white space is
//! trimmed.

use crate::path::CfPath;

use super::rejection::{PathSource, Rejection, Snippet};
use super::{MAX_PATHS_PER_MESSAGE, PurgeRequest, Router};

/// `None` when the body holds no path at all.
pub(super) fn decode(body: &str, router: &Router) -> Result<Option<PurgeRequest>, Rejection> {
    let mut paths = Vec::new();
    let mut count = 0;
    for (i, line) in body.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        count += 1;
        // Past the limit the message is rejected anyway: only count, so the
        // detail can say by how much.
        if count > MAX_PATHS_PER_MESSAGE {
            continue;
        }
        let path = CfPath::parse(line).map_err(|error| Rejection::InvalidPath {
            location: PathSource::Line(i + 1),
            path: Snippet::new(line),
            error,
        })?;
        paths.push(path);
    }
    if count > MAX_PATHS_PER_MESSAGE {
        return Err(Rejection::TooManyPaths { count });
    }
    if paths.is_empty() {
        return Ok(None);
    }
    Ok(Some(PurgeRequest {
        distribution: router.distribution(None)?.to_owned(),
        paths,
        skipped: Vec::new(),
        urgent: false,
        reason: None,
        requested_by: None,
        s3_removed: None,
    }))
}
