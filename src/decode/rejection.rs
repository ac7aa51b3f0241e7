//! Why a message is rejected: a typed reason for the metric label and the
//! `cfpurge-reject-reason` attribute, and a one-line detail (the `Display`)
//! for the log and `cfpurge-reject-detail`. Text taken from the message is
//! quoted, escaped and cut short, so the detail stays one bounded line
//! whatever the body holds.

use std::fmt;

use crate::path::{PathError, TagError};

use super::{MAX_BODY_BYTES, MAX_PATHS_PER_MESSAGE, MAX_TEXT_CHARS};

/// The reason codes of `cfpurge_messages_rejected_total{reason}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    Malformed,
    InvalidPath,
    UnknownDistribution,
    UnroutedBucket,
    TooLarge,
    InvalidTag,
    TagsNotEnabled,
}

impl RejectReason {
    /// Every reason, so that metrics can be registered at zero.
    pub const ALL: [RejectReason; 7] = [
        RejectReason::Malformed,
        RejectReason::InvalidPath,
        RejectReason::UnknownDistribution,
        RejectReason::UnroutedBucket,
        RejectReason::TooLarge,
        RejectReason::InvalidTag,
        RejectReason::TagsNotEnabled,
    ];

    /// The label value and message attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Malformed => "malformed",
            RejectReason::InvalidPath => "invalid_path",
            RejectReason::UnknownDistribution => "unknown_distribution",
            RejectReason::UnroutedBucket => "unrouted_bucket",
            RejectReason::TooLarge => "too_large",
            RejectReason::InvalidTag => "invalid_tag",
            RejectReason::TagsNotEnabled => "tags_not_enabled",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a bad path came from, so the detail points at it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathSource {
    /// Index into a native request's `paths` (from 0, as in JSON).
    Entry(usize),
    /// Index into a native request's `tags` (from 0).
    TagEntry(usize),
    /// Line of a plain-text body (from 1, as an editor counts).
    Line(usize),
    /// An S3 object key (as decoded) and its bucket.
    Key { bucket: Snippet, key: Snippet },
}

impl fmt::Display for PathSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathSource::Entry(i) => write!(f, "paths[{i}]"),
            PathSource::TagEntry(i) => write!(f, "tags[{i}]"),
            PathSource::Line(n) => write!(f, "line {n}"),
            PathSource::Key { bucket, key } => {
                write!(f, "key {key} in bucket {bucket} makes path")
            }
        }
    }
}

/// Why a whole message is rejected. `Display` is one line naming what is
/// wrong; [`Rejection::reason`] is the code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("body is {bytes} bytes; the limit is {MAX_BODY_BYTES}")]
    BodyTooLarge { bytes: usize },
    /// Nothing but white space (only `POST /v1/purge` refuses it: for the
    /// queue an empty plain-text body asks for nothing).
    #[error("body is empty")]
    EmptyBody,
    #[error("body is not valid UTF-8 (first bad byte at offset {offset})")]
    NotUtf8 { offset: usize },
    #[error("body is not valid JSON: {0}")]
    InvalidJson(String),
    /// Valid JSON of none of the known shapes.
    #[error(
        "body is {found}: expected a native request {{\"paths\": [...]}}, an S3 event notification \
         {{\"Records\": [...]}}, an EventBridge S3 event or an SNS notification"
    )]
    UnknownShape { found: String },
    /// The shape was recognised but does not hold what that format needs.
    #[error("{format}: {detail}")]
    Malformed {
        format: &'static str,
        detail: String,
    },
    #[error("{location} {path}: {error}")]
    InvalidPath {
        location: PathSource,
        path: Snippet,
        error: PathError,
    },
    /// A cache tag that breaks CloudFront's rules, from `tags` or a `#`
    /// entry of `paths`.
    #[error("{location} {tag}: {error}")]
    InvalidTag {
        location: PathSource,
        tag: Snippet,
        error: TagError,
    },
    /// Tags for a distribution without `cache_tags = true`: CloudFront would
    /// accept them and purge nothing.
    #[error(
        "the request has cache tags, but distribution {distribution} does not have \
         cache_tags = true (without a CacheTagConfig CloudFront purges nothing by tag)"
    )]
    TagsNotEnabled { distribution: String },
    #[error("distribution {name} is neither a configured alias nor a configured id")]
    UnknownDistribution { name: Snippet },
    #[error(
        "distribution {name} is a multi-tenant distribution: name one of its tenant entries \
         ({tenants}) by its alias or tenant_id"
    )]
    MultiTenantDistribution { name: Snippet, tenants: String },
    #[error(
        "the request names no distribution and none is the default ([routing] default_distribution)"
    )]
    NoDefaultDistribution,
    #[error("bucket {bucket} has no [[routing.s3]] route")]
    UnroutedBucket { bucket: Snippet },
    #[error("{count} paths; at most {MAX_PATHS_PER_MESSAGE} are allowed in one message")]
    TooManyPaths { count: usize },
    #[error(
        "{paths} paths and {tags} tags; at most {MAX_PATHS_PER_MESSAGE} together are allowed in one message"
    )]
    TooManyEntries { paths: usize, tags: usize },
    #[error("{field} is {chars} characters; at most {MAX_TEXT_CHARS} are allowed")]
    TextTooLong { field: &'static str, chars: usize },
}

impl Rejection {
    /// The reason code for metrics and the dead-letter attribute.
    pub fn reason(&self) -> RejectReason {
        match self {
            Rejection::BodyTooLarge { .. }
            | Rejection::TooManyPaths { .. }
            | Rejection::TooManyEntries { .. }
            | Rejection::TextTooLong { .. } => RejectReason::TooLarge,
            Rejection::NotUtf8 { .. }
            | Rejection::EmptyBody
            | Rejection::InvalidJson(_)
            | Rejection::UnknownShape { .. }
            | Rejection::Malformed { .. } => RejectReason::Malformed,
            Rejection::InvalidPath { .. } => RejectReason::InvalidPath,
            Rejection::UnknownDistribution { .. }
            | Rejection::MultiTenantDistribution { .. }
            | Rejection::NoDefaultDistribution => RejectReason::UnknownDistribution,
            Rejection::UnroutedBucket { .. } => RejectReason::UnroutedBucket,
            Rejection::InvalidTag { .. } => RejectReason::InvalidTag,
            Rejection::TagsNotEnabled { .. } => RejectReason::TagsNotEnabled,
        }
    }

    pub(super) fn malformed(format: &'static str, detail: impl Into<String>) -> Rejection {
        Rejection::Malformed {
            format,
            detail: detail.into(),
        }
    }

    /// A serde_json error while reading `format`: a syntax error is about
    /// the JSON itself, anything else about the format's fields.
    pub(super) fn from_json(format: &'static str, e: &serde_json::Error) -> Rejection {
        let text = one_line(&e.to_string());
        if e.is_data() {
            Rejection::Malformed {
                format,
                detail: text,
            }
        } else {
            Rejection::InvalidJson(text)
        }
    }

    /// As [`Rejection::from_json`], for an error in the value at `path`
    /// (`paths`, `paths[2]`; `.` for the top level): a wrong value names
    /// its field. An unknown field's message already names it.
    pub(super) fn from_json_at(
        format: &'static str,
        path: &str,
        e: &serde_json::Error,
    ) -> Rejection {
        match Rejection::from_json(format, e) {
            Rejection::Malformed { format, detail }
                if path != "." && !detail.starts_with("unknown field") =>
            {
                Rejection::Malformed {
                    format,
                    detail: format!("\"{path}\": {detail}"),
                }
            }
            other => other,
        }
    }
}

/// Text from a message as a rejection shows it: quoted and escaped
/// (`"a\nb"`), and cut to a bounded length with the original length noted.
/// Kept rendered, so that a [`Rejection`] stays small.
#[derive(Clone, PartialEq, Eq)]
pub struct Snippet(Box<str>);

/// Characters of a path or key quoted in a detail.
const SNIPPET_CHARS: usize = 120;
/// Characters of a key name, bucket or distribution name quoted in a detail.
const SHORT_CHARS: usize = 40;
/// Characters of a parser message kept in a detail.
const MESSAGE_CHARS: usize = 300;

impl Snippet {
    pub fn new(raw: &str) -> Snippet {
        Snippet::cut(raw, SNIPPET_CHARS)
    }

    pub(super) fn short(raw: &str) -> Snippet {
        Snippet::cut(raw, SHORT_CHARS)
    }

    fn cut(raw: &str, limit: usize) -> Snippet {
        let rendered = match raw.char_indices().nth(limit) {
            None => format!("{raw:?}"),
            Some((end, _)) => format!("{:?}... ({} characters)", &raw[..end], raw.chars().count()),
        };
        Snippet(rendered.into_boxed_str())
    }

    /// The text as shown, quotes included.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Snippet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Snippet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A parser's message made safe for a one-line detail: control characters
/// escaped (serde quotes field names from the input as they are), length
/// bounded.
pub(super) fn one_line(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MESSAGE_CHARS + 8));
    for (i, c) in message.chars().enumerate() {
        if i == MESSAGE_CHARS {
            out.push_str("...");
            break;
        }
        if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}
