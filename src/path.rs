//! CloudFront invalidation paths: the one place that decides what a valid
//! path is, how a requested path is encoded, and when one path covers
//! another. Every stage (decode, planner, pending set, submitter) works on
//! [`CfPath`] values, so a path that reaches CloudFront was checked here.
//!
//! The rules are CloudFront's: a path starts with `/`, has at most 4,000
//! characters, may end with one `*` (a wildcard matching zero or more
//! characters) and has no `*` elsewhere; non-ASCII characters and RFC 1738's
//! unsafe characters are percent-encoded (UTF-8, upper-case hex), an existing
//! `%XX` escape is kept as written, and nothing else is touched (encoding a
//! safe character makes the path miss the cached object). A query string is
//! kept and encoded by the same rule.
//!
//! A [`CfPath`] may also be a cache tag, `#name`: CloudFront purges every
//! object its origin tagged with `name` when `#name` is an item of an
//! ordinary invalidation batch. A tag is never a wildcard, never covered by
//! one and never covers a path; two tags cover each other when their names
//! are equal ignoring ASCII case, as CloudFront compares them. It counts
//! with the exact paths against the in-flight limits ([`PathKind::Exact`])
//! and is billed as one path.

use std::fmt;

use serde::{Serialize, Serializer};

/// CloudFront's limit on the length of one invalidation path, in characters
/// after encoding.
pub const MAX_PATH_LEN: usize = 4000;

/// CloudFront's limit on the length of a cache tag's name (without `#`).
pub const MAX_TAG_LEN: usize = 256;

/// CloudFront's limit on exact paths (cache tags included) in progress on
/// one distribution or tenant, over all its invalidations: also the most
/// one invalidation can hold.
pub const MAX_INFLIGHT_EXACT: usize = 3000;

/// CloudFront's limit on wildcard paths in progress on one distribution or
/// tenant, counted apart from the exact ones.
pub const MAX_INFLIGHT_WILDCARDS: usize = 15;

/// A path that CloudFront accepts in an invalidation batch, already encoded.
///
/// Stored as `Box<str>`: the planner may hold a million of them, and the
/// spare capacity of a `String` would cost 8 bytes each for nothing.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CfPath(Box<str>);

/// Whether a path names one object or a prefix; CloudFront limits the two
/// kinds separately while they are in progress. A cache tag is `Exact`: it
/// counts with the exact paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PathKind {
    Exact,
    Wildcard,
}

impl PathKind {
    /// The label value used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            PathKind::Exact => "exact",
            PathKind::Wildcard => "wildcard",
        }
    }
}

/// Why a requested path cannot be submitted. One variant per rule, so that a
/// rejection names exactly what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path is empty")]
    Empty,
    #[error("path must start with \"/\"")]
    MissingLeadingSlash,
    #[error("path is {len} characters once encoded; CloudFront allows at most {MAX_PATH_LEN}")]
    TooLong { len: usize },
    #[error("\"*\" is only allowed as the last character (found at character {position})")]
    WildcardNotLast { position: usize },
    #[error("control character U+{code:04X} at character {position}")]
    ControlCharacter { code: u32, position: usize },
}

/// Why a cache tag cannot be submitted: CloudFront's rules (1 to
/// [`MAX_TAG_LEN`] visible ASCII characters, no `,` and no `*`), and one of
/// cfpurge's own: a name does not start with `#`, since `"#x"` in `tags`
/// is nearly always the tag `x` written with its marker, and CloudFront
/// would accept `##x` and purge nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    #[error("tag is empty")]
    Empty,
    #[error("tag is {len} characters; CloudFront allows at most {MAX_TAG_LEN}")]
    TooLong { len: usize },
    #[error(
        "character {found:?} at character {position} is not allowed in a tag \
         (visible ASCII only, without \",\" and \"*\")"
    )]
    Character { found: char, position: usize },
    #[error(
        "a tag's name does not start with \"#\" (the tag x is \"x\" in \"tags\" and \"#x\" in \"paths\")"
    )]
    LeadingHash,
}

/// Why an invalidation item (a path, or `#` and a tag) cannot be submitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemError {
    #[error(transparent)]
    Path(#[from] PathError),
    #[error(transparent)]
    Tag(#[from] TagError),
}

impl CfPath {
    /// Validates and encodes a requested path.
    ///
    /// Positions in errors count characters from 1, as a person reading the
    /// path would.
    pub fn parse(raw: &str) -> Result<CfPath, PathError> {
        if raw.is_empty() {
            return Err(PathError::Empty);
        }
        if !raw.starts_with('/') {
            return Err(PathError::MissingLeadingSlash);
        }
        let bytes = raw.as_bytes();
        let mut out = String::with_capacity(raw.len());
        let char_count = raw.chars().count();
        for (index, (offset, c)) in raw.char_indices().enumerate() {
            let position = index + 1;
            if c.is_control() {
                return Err(PathError::ControlCharacter {
                    code: c as u32,
                    position,
                });
            }
            if c == '*' && position != char_count {
                return Err(PathError::WildcardNotLast { position });
            }
            if c == '%' {
                let escape = bytes.get(offset + 1..offset + 3);
                if escape.is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) {
                    out.push('%');
                } else {
                    push_escaped(&mut out, b'%');
                }
            } else if c.is_ascii() {
                if is_unsafe_ascii(c as u8) {
                    push_escaped(&mut out, c as u8);
                } else {
                    out.push(c);
                }
            } else {
                let mut buf = [0u8; 4];
                for &b in c.encode_utf8(&mut buf).as_bytes() {
                    push_escaped(&mut out, b);
                }
            }
        }
        if out.len() > MAX_PATH_LEN {
            return Err(PathError::TooLong { len: out.len() });
        }
        Ok(CfPath(out.into_boxed_str()))
    }

    /// A cache tag from its name (without `#`), checked by CloudFront's
    /// rules: the item `#name`.
    pub fn tag(name: &str) -> Result<CfPath, TagError> {
        if name.is_empty() {
            return Err(TagError::Empty);
        }
        for (index, c) in name.chars().enumerate() {
            if !c.is_ascii_graphic() || c == ',' || c == '*' {
                return Err(TagError::Character {
                    found: c,
                    position: index + 1,
                });
            }
        }
        // Visible ASCII only: bytes are characters.
        if name.len() > MAX_TAG_LEN {
            return Err(TagError::TooLong { len: name.len() });
        }
        if name.starts_with('#') {
            return Err(TagError::LeadingHash);
        }
        let mut s = String::with_capacity(name.len() + 1);
        s.push('#');
        s.push_str(name);
        Ok(CfPath(s.into_boxed_str()))
    }

    /// An invalidation item as CloudFront takes it in `Paths.Items`: `#`
    /// and a tag's name, or a path ([`CfPath::parse`]).
    pub fn parse_item(raw: &str) -> Result<CfPath, ItemError> {
        match raw.strip_prefix('#') {
            Some(name) => Ok(CfPath::tag(name)?),
            None => Ok(CfPath::parse(raw)?),
        }
    }

    /// An item read back from CloudFront, as another tool may have sent
    /// it: [`CfPath::parse_item`], except that a tag whose name starts with
    /// `#` (`##x`), which CloudFront accepts and cfpurge refuses in requests
    /// as a likely mistake, is kept: it still takes an exact slot and was
    /// billed.
    pub fn read_item(raw: &str) -> Result<CfPath, ItemError> {
        match CfPath::parse_item(raw) {
            Err(ItemError::Tag(TagError::LeadingHash)) => Ok(CfPath(raw.into())),
            other => other,
        }
    }

    /// Validates and encodes a path that names one object literally, such as
    /// an S3 object key with the route's prefix: every `%` is a percent sign,
    /// every `*` an asterisk and every `?` a question mark in the name, so
    /// they are encoded (`%25`, `%2A`, `%3F`) and the result is always an
    /// exact path with no query string.
    pub fn literal(raw: &str) -> Result<CfPath, PathError> {
        if !raw.contains(['%', '*', '?']) {
            return CfPath::parse(raw);
        }
        let escaped = raw
            .replace('%', "%25")
            .replace('*', "%2A")
            .replace('?', "%3F");
        CfPath::parse(&escaped)
    }

    /// The wildcard `dir*` for a directory prefix taken from a valid path
    /// (it starts with `/` and ends with `/`), or `None` when the result
    /// would exceed CloudFront's length limit.
    pub(crate) fn directory_wildcard(dir: &str) -> Option<CfPath> {
        debug_assert!(dir.starts_with('/') && dir.ends_with('/') && !dir.contains('*'));
        if !CfPath::directory_wildcard_fits(dir.len()) {
            return None;
        }
        let mut s = String::with_capacity(dir.len() + 1);
        s.push_str(dir);
        s.push('*');
        Some(CfPath(s.into_boxed_str()))
    }

    /// Whether `dir*` stays within the length limit for a directory of
    /// `len` characters.
    pub(crate) fn directory_wildcard_fits(len: usize) -> bool {
        len < MAX_PATH_LEN
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn kind(&self) -> PathKind {
        if self.0.ends_with('*') {
            PathKind::Wildcard
        } else {
            PathKind::Exact
        }
    }

    pub fn is_wildcard(&self) -> bool {
        self.kind() == PathKind::Wildcard
    }

    /// Whether this is a cache tag (`#name`) rather than a path.
    pub fn is_tag(&self) -> bool {
        self.0.starts_with('#')
    }

    /// The form two items are told apart by: a tag's name in lower case
    /// (CloudFront compares tags ignoring ASCII case), a path as it is.
    pub fn canonical(&self) -> std::borrow::Cow<'_, CfPath> {
        if self.is_tag() && self.0.bytes().any(|b| b.is_ascii_uppercase()) {
            std::borrow::Cow::Owned(CfPath(self.0.to_ascii_lowercase().into_boxed_str()))
        } else {
            std::borrow::Cow::Borrowed(self)
        }
    }

    /// What the path matches the start of: the path without its trailing
    /// `*` for a wildcard, the whole path for an exact one.
    pub fn prefix(&self) -> &str {
        self.0.strip_suffix('*').unwrap_or(&self.0)
    }

    /// Whether invalidating `self` also invalidates `other`: the same path,
    /// or a wildcard whose prefix `other` starts with (`/a/*` covers
    /// `/a/b.js` and `/a/b/*`, but not `/a`; `/a*` covers all of those); a
    /// tag covers the same tag in any case, and nothing else.
    pub fn covers(&self, other: &CfPath) -> bool {
        if self.is_tag() {
            other.is_tag() && self.0.eq_ignore_ascii_case(&other.0)
        } else if self.is_wildcard() {
            other.0.starts_with(self.prefix())
        } else {
            self == other
        }
    }

    /// The directory that holds the path: everything up to and including the
    /// last `/` before any query string. `/a/b.js` and `/a/b.js?v=1` live in
    /// `/a/`; `/a/` lives in itself.
    pub fn directory(&self) -> &str {
        directory_of(self.prefix())
    }
}

/// The directory part of an encoded path or prefix: up to the last `/` before
/// the first `?`.
pub(crate) fn directory_of(path: &str) -> &str {
    let path_part = path.split_once('?').map_or(path, |(p, _)| p);
    let end = path_part.rfind('/').map_or(0, |i| i + 1);
    &path[..end]
}

/// How deep a directory is: `/` is 0, `/a/` is 1, `/a/b/` is 2.
pub fn directory_depth(dir: &str) -> usize {
    dir.bytes().filter(|&b| b == b'/').count().saturating_sub(1)
}

/// RFC 1738's unsafe characters (and `%`, handled by the caller), which
/// CloudFront wants percent-encoded. `~` is among them, and a literal `~` is
/// reported to be refused by CloudFront.
fn is_unsafe_ascii(b: u8) -> bool {
    matches!(
        b,
        b' ' | b'#'
            | b'"'
            | b'<'
            | b'>'
            | b'{'
            | b'}'
            | b'|'
            | b'\\'
            | b'^'
            | b'['
            | b']'
            | b'`'
            | b'~'
    )
}

fn push_escaped(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[usize::from(b >> 4)] as char);
    out.push(HEX[usize::from(b & 0xF)] as char);
}

impl fmt::Display for CfPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CfPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// Paths compare and hash as their text, so maps keyed by `CfPath` can be
/// searched with a `&str` (and by prefix range).
impl std::borrow::Borrow<str> for CfPath {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for CfPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for CfPath {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl std::str::FromStr for CfPath {
    type Err = PathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CfPath::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(raw: &str) -> String {
        CfPath::parse(raw).unwrap().to_string()
    }

    #[test]
    fn plain_paths_are_kept_as_they_are() {
        for p in [
            "/",
            "/index.html",
            "/a/b/c.js",
            "/images/*",
            "/images*",
            "/*",
            "/a-b_c.d!$&'()+,;=:@/",
        ] {
            assert_eq!(enc(p), p);
        }
    }

    #[test]
    fn must_start_with_a_slash() {
        assert_eq!(
            CfPath::parse("index.html"),
            Err(PathError::MissingLeadingSlash)
        );
        assert_eq!(CfPath::parse("*"), Err(PathError::MissingLeadingSlash));
        assert_eq!(CfPath::parse(""), Err(PathError::Empty));
    }

    #[test]
    fn wildcard_only_as_the_last_character() {
        assert_eq!(
            CfPath::parse("/a/*/b"),
            Err(PathError::WildcardNotLast { position: 4 })
        );
        assert_eq!(
            CfPath::parse("/a/**"),
            Err(PathError::WildcardNotLast { position: 4 })
        );
        assert!(CfPath::parse("/img.jpg*").unwrap().is_wildcard());
    }

    #[test]
    fn length_limit_counts_the_encoded_form() {
        let ok = format!("/{}", "a".repeat(MAX_PATH_LEN - 1));
        assert_eq!(enc(&ok).len(), MAX_PATH_LEN);
        let long = format!("/{}", "a".repeat(MAX_PATH_LEN));
        assert_eq!(
            CfPath::parse(&long),
            Err(PathError::TooLong {
                len: MAX_PATH_LEN + 1
            })
        );
        // 1,000 spaces are 1,001 characters raw but 3,001 encoded.
        let spaces = format!("/{}", " ".repeat(1400));
        assert_eq!(
            CfPath::parse(&spaces),
            Err(PathError::TooLong { len: 1 + 3 * 1400 })
        );
    }

    #[test]
    fn unsafe_characters_are_encoded_upper_case() {
        assert_eq!(enc("/my file.html"), "/my%20file.html");
        assert_eq!(enc("/a#b"), "/a%23b");
        assert_eq!(enc("/\"<>{}|\\^[]`"), "/%22%3C%3E%7B%7D%7C%5C%5E%5B%5D%60");
        assert_eq!(enc("/~user/"), "/%7Euser/");
    }

    #[test]
    fn non_ascii_is_utf8_percent_encoded() {
        assert_eq!(enc("/café"), "/caf%C3%A9");
        assert_eq!(enc("/日本"), "/%E6%97%A5%E6%9C%AC");
        assert_eq!(enc("/😀*"), "/%F0%9F%98%80*");
    }

    #[test]
    fn existing_escapes_are_kept_and_stray_percents_encoded() {
        assert_eq!(enc("/a%2Fb"), "/a%2Fb");
        assert_eq!(enc("/a%2fb"), "/a%2fb");
        assert_eq!(enc("/100%"), "/100%25");
        assert_eq!(enc("/100%zz"), "/100%25zz");
        assert_eq!(enc("/a%2"), "/a%252");
    }

    #[test]
    fn query_strings_are_kept_and_encoded_by_the_same_rule() {
        assert_eq!(enc("/img.jpg?a=1&b=2"), "/img.jpg?a=1&b=2");
        assert_eq!(enc("/search?q=a b"), "/search?q=a%20b");
        assert_eq!(enc("/img.jpg?v=*"), "/img.jpg?v=*");
        assert_eq!(CfPath::parse("/img.jpg?v=1").unwrap().directory(), "/");
        assert_eq!(CfPath::parse("/a/x?p=/b/c").unwrap().directory(), "/a/");
    }

    #[test]
    fn literal_names_encode_percent_and_asterisk() {
        let lit = |s: &str| CfPath::literal(s).unwrap().to_string();
        assert_eq!(lit("/a%41.png"), "/a%2541.png");
        assert_eq!(lit("/a*b*"), "/a%2Ab%2A");
        assert_eq!(lit("/a?b.txt"), "/a%3Fb.txt");
        assert_eq!(lit("/my file+x.png"), "/my%20file+x.png");
        assert_eq!(lit("/caf\u{e9}"), "/caf%C3%A9");
        assert_eq!(CfPath::literal("x"), Err(PathError::MissingLeadingSlash));
        assert!(!CfPath::literal("/dir/*").unwrap().is_wildcard());
    }

    #[test]
    fn control_characters_are_refused() {
        assert_eq!(
            CfPath::parse("/a\nb"),
            Err(PathError::ControlCharacter {
                code: 0x0A,
                position: 3
            })
        );
        assert!(matches!(
            CfPath::parse("/a\u{7f}"),
            Err(PathError::ControlCharacter { code: 0x7F, .. })
        ));
        assert!(matches!(
            CfPath::parse("/a\u{85}"),
            Err(PathError::ControlCharacter { code: 0x85, .. })
        ));
    }

    #[test]
    fn a_directory_wildcard_and_a_prefix_wildcard_differ() {
        let p = |s: &str| CfPath::parse(s).unwrap();
        let dir = p("/images/*");
        let prefix = p("/images*");
        assert!(dir.covers(&p("/images/a.png")));
        assert!(dir.covers(&p("/images/sub/a.png")));
        assert!(dir.covers(&p("/images/")));
        assert!(!dir.covers(&p("/images")));
        assert!(!dir.covers(&p("/images.html")));
        assert!(prefix.covers(&p("/images")));
        assert!(prefix.covers(&p("/images.html")));
        assert!(prefix.covers(&p("/images-old/a.png")));
        assert!(prefix.covers(&dir));
        assert!(!dir.covers(&prefix));
        assert!(p("/*").covers(&p("/anything/at/all?x=1")));
    }

    #[test]
    fn an_exact_path_covers_only_itself_and_case_matters() {
        let p = |s: &str| CfPath::parse(s).unwrap();
        assert!(p("/a.js").covers(&p("/a.js")));
        assert!(!p("/a.js").covers(&p("/A.js")));
        assert!(!p("/a.js").covers(&p("/a.js?v=2")));
        assert!(!p("/a").covers(&p("/a*")));
    }

    #[test]
    fn directories_and_depths() {
        assert_eq!(CfPath::parse("/").unwrap().directory(), "/");
        assert_eq!(CfPath::parse("/a.js").unwrap().directory(), "/");
        assert_eq!(CfPath::parse("/a/").unwrap().directory(), "/a/");
        assert_eq!(CfPath::parse("/a/b*").unwrap().directory(), "/a/");
        assert_eq!(directory_depth("/"), 0);
        assert_eq!(directory_depth("/a/"), 1);
        assert_eq!(directory_depth("/a/b/"), 2);
        assert_eq!(CfPath::directory_wildcard("/a/").unwrap().as_str(), "/a/*");
    }

    #[test]
    fn tags_follow_cloudfronts_rules() {
        let tag = CfPath::tag("release-42").unwrap();
        assert_eq!(tag.as_str(), "#release-42");
        assert!(tag.is_tag());
        assert_eq!(tag.kind(), PathKind::Exact);
        assert!(!tag.is_wildcard());
        // Every visible ASCII character but `,` and `*`, `#` inside.
        let all: String = (33u8..=126)
            .map(char::from)
            .filter(|c| !matches!(c, ',' | '*' | '#'))
            .collect();
        assert!(CfPath::tag(&all).is_ok());
        assert!(CfPath::tag("a#b").is_ok());
        assert_eq!(
            CfPath::tag(&"t".repeat(MAX_TAG_LEN))
                .unwrap()
                .as_str()
                .len(),
            MAX_TAG_LEN + 1
        );
        assert_eq!(
            CfPath::tag(&"t".repeat(MAX_TAG_LEN + 1)),
            Err(TagError::TooLong {
                len: MAX_TAG_LEN + 1
            })
        );
        assert_eq!(CfPath::tag(""), Err(TagError::Empty));
        for (bad, found, position) in [
            ("a,b", ',', 2),
            ("a*", '*', 2),
            ("a b", ' ', 2),
            ("caf\u{e9}", '\u{e9}', 4),
            ("\tx", '\t', 1),
            ("x\u{7f}", '\u{7f}', 2),
        ] {
            assert_eq!(
                CfPath::tag(bad),
                Err(TagError::Character { found, position }),
                "{bad:?}"
            );
        }
        assert_eq!(CfPath::tag("#x"), Err(TagError::LeadingHash));
        // Read back from CloudFront, another tool's `##x` is a tag all the
        // same; anything else is read by the request's rules.
        let other = CfPath::read_item("##x").unwrap();
        assert!(other.is_tag() && !other.is_wildcard());
        assert_eq!(other.as_str(), "##x");
        assert_eq!(CfPath::read_item("#a b"), CfPath::parse_item("#a b"));
        assert_eq!(CfPath::read_item("/a/*"), CfPath::parse_item("/a/*"));
    }

    #[test]
    fn items_are_paths_or_tags() {
        assert_eq!(CfPath::parse_item("#a").unwrap(), CfPath::tag("a").unwrap());
        assert_eq!(
            CfPath::parse_item("/a b").unwrap(),
            CfPath::parse("/a b").unwrap()
        );
        assert_eq!(
            CfPath::parse_item("#"),
            Err(ItemError::Tag(TagError::Empty))
        );
        assert_eq!(
            CfPath::parse_item("a"),
            Err(ItemError::Path(PathError::MissingLeadingSlash))
        );
        // A path never reads as a tag: `#` in a path is encoded.
        assert!(!CfPath::parse("/#a").unwrap().is_tag());
    }

    #[test]
    fn a_tag_covers_the_same_tag_in_any_case_and_nothing_else() {
        let p = |s: &str| CfPath::parse_item(s).unwrap();
        assert!(p("#Blog").covers(&p("#blog")));
        assert!(p("#blog").covers(&p("#BLOG")));
        assert!(!p("#blog").covers(&p("#blog2")));
        assert!(!p("#blog").covers(&p("/blog")));
        assert!(!p("/blog").covers(&p("#blog")));
        assert!(!p("/*").covers(&p("#blog")));
        assert!(!p("/%23blog").covers(&p("#blog")));
        assert_eq!(p("#Blog").canonical().as_str(), "#blog");
        assert_eq!(p("#blog").canonical().as_str(), "#blog");
        // Paths keep their case.
        assert_eq!(p("/Blog").canonical().as_str(), "/Blog");
    }
}
