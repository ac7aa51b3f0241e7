//! The native format: `{"distribution": "www", "paths": [...], "tags":
//! [...], "urgent": false, "reason": "...", "requested_by": "..."}`, sent
//! by `cfpurge enqueue`, client services and `POST /v1/purge`.
//!
//! Cache tags come from `tags` (names without `#`) and from entries of
//! `paths` that start with `#`; with tags, `paths` may be empty or absent.
//! Paths and tags together are 1 to [`MAX_PATHS_PER_MESSAGE`] entries. The
//! request holds each tag once, ignoring case, in the spelling seen first
//! (`paths` before `tags`).

use std::collections::HashSet;

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
    /// `None` when absent: allowed when `tags` has some.
    #[serde(default, borrow)]
    paths: Option<Vec<Str<'a>>>,
    #[serde(default, borrow)]
    tags: Option<Vec<Str<'a>>>,
    #[serde(default)]
    urgent: bool,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    requested_by: Option<String>,
}

pub(super) fn decode(body: &str, router: &Router) -> Result<PurgeRequest, Rejection> {
    // The field a wrong value is in is named (`"paths": invalid type:
    // string "/docs/", expected a sequence`): serde_json's own message
    // gives only a column.
    let mut json = serde_json::Deserializer::from_str(body);
    let req: Native = serde_path_to_error::deserialize(&mut json)
        .map_err(|e| Rejection::from_json_at(FORMAT, &e.path().to_string(), e.inner()))?;
    // What `serde_json::from_str` checks after the value: only white space.
    json.end().map_err(|e| Rejection::from_json(FORMAT, &e))?;
    let raw_paths = req.paths.as_deref().unwrap_or_default();
    let raw_tags = req.tags.as_deref().unwrap_or_default();
    let entries = raw_paths.len() + raw_tags.len();
    if entries == 0 {
        let detail = match (&req.paths, &req.tags) {
            (_, Some(_)) => format!(
                "\"paths\" and \"tags\" are empty; a request needs 1 to {MAX_PATHS_PER_MESSAGE} \
                 paths and tags together"
            ),
            (Some(_), None) => {
                format!("\"paths\" is empty; a request needs 1 to {MAX_PATHS_PER_MESSAGE} paths")
            }
            (None, None) => format!(
                "\"paths\" is missing; a request needs 1 to {MAX_PATHS_PER_MESSAGE} paths (or \"tags\")"
            ),
        };
        return Err(Rejection::malformed(FORMAT, detail));
    }
    if entries > MAX_PATHS_PER_MESSAGE {
        let tags = raw_tags.len() + raw_paths.iter().filter(|p| p.starts_with('#')).count();
        return Err(if tags == 0 {
            Rejection::TooManyPaths { count: entries }
        } else {
            Rejection::TooManyEntries {
                paths: entries - tags,
                tags,
            }
        });
    }
    let reason = free_text("reason", req.reason)?;
    let requested_by = free_text("requested_by", req.requested_by)?;
    let distribution = router.distribution(req.distribution.as_deref())?.to_owned();
    let mut paths = Vec::with_capacity(entries);
    let mut tags = Tags::default();
    for (i, raw) in raw_paths.iter().enumerate() {
        match raw.strip_prefix('#') {
            Some(name) => tags.add(name, raw, PathSource::Entry(i), &mut paths)?,
            None => paths.push(CfPath::parse(raw).map_err(|error| Rejection::InvalidPath {
                location: PathSource::Entry(i),
                path: Snippet::new(raw),
                error,
            })?),
        }
    }
    for (i, raw) in raw_tags.iter().enumerate() {
        tags.add(raw, raw, PathSource::TagEntry(i), &mut paths)?;
    }
    if !tags.seen.is_empty() && !router.tags_enabled(&distribution) {
        return Err(Rejection::TagsNotEnabled { distribution });
    }
    Ok(PurgeRequest {
        distribution,
        paths,
        skipped: Vec::new(),
        urgent: req.urgent,
        reason,
        requested_by,
        s3_removed: None,
    })
}

/// The tags of one request seen so far, by lower-case name.
#[derive(Default)]
struct Tags {
    seen: HashSet<String>,
}

impl Tags {
    /// Checks the tag `name` (written `raw` at `location`) and adds it to
    /// `out` unless a tag equal but for case came first.
    fn add(
        &mut self,
        name: &str,
        raw: &str,
        location: PathSource,
        out: &mut Vec<CfPath>,
    ) -> Result<(), Rejection> {
        let tag = CfPath::tag(name).map_err(|error| Rejection::InvalidTag {
            location,
            tag: Snippet::new(raw),
            error,
        })?;
        if self.seen.insert(name.to_ascii_lowercase()) {
            out.push(tag);
        }
        Ok(())
    }
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
