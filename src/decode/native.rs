//! The native format: `{"distribution": "www", "paths": [...], "urgent":
//! false, "reason": "...", "requested_by": "..."}`, sent by `cfpurge
//! enqueue`, client services and `POST /v1/purge`.

use serde::Deserialize;

use crate::path::CfPath;

use super::rejection::{PathSource, Rejection, Snippet};
use super::{MAX_PATHS_PER_MESSAGE, MAX_TEXT_CHARS, PurgeRequest, Router, Str};

pub(super) const FORMAT: &str = "native request";

/// Unknown fields are refused: a misspelt `"urgnet": true` or `"path"`
/// would otherwise be dropped without a word.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a native purge request object")]
struct Native<'a> {
    /// Alias or id; `None` (absent or null) for the default distribution.
    #[serde(default, borrow)]
    distribution: Option<Str<'a>>,
    #[serde(borrow)]
    paths: Vec<Str<'a>>,
    #[serde(default)]
    urgent: bool,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    requested_by: Option<String>,
}

pub(super) fn decode(body: &str, router: &Router) -> Result<PurgeRequest, Rejection> {
    let req: Native = serde_json::from_str(body).map_err(|e| Rejection::from_json(FORMAT, &e))?;
    if req.paths.is_empty() {
        return Err(Rejection::malformed(
            FORMAT,
            format!("\"paths\" is empty; a request needs 1 to {MAX_PATHS_PER_MESSAGE} paths"),
        ));
    }
    if req.paths.len() > MAX_PATHS_PER_MESSAGE {
        return Err(Rejection::TooManyPaths {
            count: req.paths.len(),
        });
    }
    let reason = free_text("reason", req.reason)?;
    let requested_by = free_text("requested_by", req.requested_by)?;
    let distribution = router.distribution(req.distribution.as_deref())?.to_owned();
    let paths = req
        .paths
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            CfPath::parse(raw).map_err(|error| Rejection::InvalidPath {
                location: PathSource::Entry(i),
                path: Snippet::new(raw),
                error,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PurgeRequest {
        distribution,
        paths,
        urgent: req.urgent,
        reason,
        requested_by,
        s3_removed: None,
    })
}

/// A `reason` or `requested_by`: at most [`MAX_TEXT_CHARS`] characters, and
/// control characters become spaces so that the text stays on its log line.
fn free_text(field: &'static str, text: Option<String>) -> Result<Option<String>, Rejection> {
    let Some(text) = text else {
        return Ok(None);
    };
    let chars = text.chars().count();
    if chars > MAX_TEXT_CHARS {
        return Err(Rejection::TextTooLong { field, chars });
    }
    if text.contains(char::is_control) {
        return Ok(Some(
            text.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect(),
        ));
    }
    Ok(Some(text))
}
