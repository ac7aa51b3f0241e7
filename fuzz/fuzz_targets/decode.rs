//! Message bodies: any bytes through `decode_bytes` (and `decode_native`)
//! with a router built from a fixed configuration, which has a distribution
//! that takes cache tags, two distribution tenants of one multi-tenant
//! distribution and `routing.skip` patterns. Nothing panics; decoding is
//! deterministic; every request names a configured distribution and carries
//! 1 to 3,000 paths and tags (or only skipped paths) that are already in
//! CloudFront's encoded form (they re-parse to themselves); tags go only to
//! the distribution that takes them, once each ignoring case; no path kept
//! matches a skip pattern and every path skipped does; a rejection's detail
//! is one bounded line.
//!
//! An input starting with `N` is a native request built from the rest, so
//! that tags and names reach the router more often than from raw bytes:
//! its second byte picks the name (an alias, an id, a tenant id, the
//! multi-tenant distribution's id or an unknown name), each later line is a
//! path, or a tag when it starts with `t:`. The name must then route to the
//! entry it stands for or, for a name that stands for none, be refused.

#![no_main]

use std::sync::LazyLock;

use cfpurge::config::Config;
use cfpurge::decode::{
    MAX_PATHS_PER_MESSAGE, MAX_TEXT_CHARS, PurgeRequest, RejectReason, Rejection, Router,
    decode_bytes, decode_native,
};
use cfpurge::path::CfPath;
use libfuzzer_sys::fuzz_target;

/// Two distributions (`www` the default); the site bucket maps its whole
/// tree with index documents, the assets bucket splits by key prefix.
const CONFIG: &str = r#"
[source]
kind = "local"

[distributions.www]
id = "E2ABCDEF123456"

[distributions.docs]
id = "E3DOCS0000000"

[distributions.tagged]
id = "E5TAGS0000000"
cache_tags = true

[distributions.t1]
id = "E4MULTI000000"
tenant_id = "dt_1ab"

[distributions.t2]
id = "E4MULTI000000"
tenant_id = "dt_2cd"
cache_tags = true

[routing]
default_distribution = "www"
skip = ['^/private/', '\.map$']

[[routing.s3]]
bucket = "site-bucket"
distribution = "www"
index_document = "index.html"

[[routing.s3]]
bucket = "assets-bucket"
distribution = "www"
key_prefix = "public/"
path_prefix = "/static"

[[routing.s3]]
bucket = "assets-bucket"
distribution = "docs"
key_prefix = "docs/"
path_prefix = "/"
index_document = "index.html"
"#;

const ALIASES: [&str; 5] = ["www", "docs", "tagged", "t1", "t2"];

/// The distributions with `cache_tags = true`.
const TAGGED: [&str; 2] = ["tagged", "t2"];

/// The names a built native request may use, each with the alias it must
/// route to (`None`: refused as an unknown distribution).
const NAMES: [(&str, Option<&str>); 9] = [
    ("www", Some("www")),
    ("E2ABCDEF123456", Some("www")),
    ("tagged", Some("tagged")),
    ("t1", Some("t1")),
    ("dt_1ab", Some("t1")),
    ("dt_2cd", Some("t2")),
    // Shared by two tenants: names neither.
    ("E4MULTI000000", None),
    ("nope", None),
    ("DT_1AB", None),
];

/// Whether `routing.skip` (above) takes a path.
fn skipped_by_config(path: &str) -> bool {
    path.starts_with("/private/") || path.ends_with(".map")
}

/// More than any detail can be under the rejection's own limits: quoted
/// snippets of at most 120 characters and parser messages of at most 300,
/// each character escaped to at most 10 (`\u{10ffff}`), a few of them in
/// one detail.
const MAX_DETAIL_CHARS: usize = 8192;

static ROUTER: LazyLock<Router> = LazyLock::new(|| {
    let config = Config::from_parts(Some(CONFIG), "fuzz.toml", std::iter::empty())
        .expect("the fuzz configuration is valid");
    Router::new(&config)
});

fuzz_target!(|data: &[u8]| {
    let router = &*ROUTER;
    if let [b'N', pick, rest @ ..] = data {
        built_native(*pick, rest, router);
    }

    let decoded = decode_bytes(data, router);
    assert_eq!(
        decoded,
        decode_bytes(data, router),
        "decode is deterministic"
    );
    match &decoded {
        Ok(requests) => {
            let total: usize = requests
                .iter()
                .map(|r| r.paths.len() + r.skipped.len())
                .sum();
            assert!(
                total <= MAX_PATHS_PER_MESSAGE,
                "{total} paths in one message"
            );
            let mut seen = Vec::new();
            for r in requests {
                check_request(r);
                assert!(
                    !seen.contains(&r.distribution),
                    "two requests for {}",
                    r.distribution
                );
                seen.push(r.distribution.clone());
            }
        }
        Err(e) => check_rejection(e),
    }

    let native = decode_native(data, router);
    assert_eq!(
        native,
        decode_native(data, router),
        "decode_native is deterministic"
    );
    match &native {
        Ok(r) => check_request(r),
        Err(e) => check_rejection(e),
    }
});

/// A native request naming `NAMES[pick]`, with the lines of `rest` as
/// paths and (`t:...`) tags.
fn built_native(pick: u8, rest: &[u8], router: &Router) {
    let (name, alias) = NAMES[usize::from(pick) % NAMES.len()];
    let text = String::from_utf8_lossy(rest);
    let (mut paths, mut tags) = (Vec::new(), Vec::new());
    for line in text.lines() {
        match line.strip_prefix("t:") {
            Some(tag) => tags.push(tag),
            None => paths.push(line),
        }
    }
    let body = serde_json::json!({"distribution": name, "paths": paths, "tags": tags});
    let body = body.to_string();
    let decoded = decode_native(body.as_bytes(), router);
    match (&decoded, alias) {
        (Ok(r), Some(alias)) => {
            assert_eq!(r.distribution, alias, "{name} routed to {}", r.distribution);
            check_request(r);
        }
        (Ok(r), None) => panic!("{name} is no distribution, routed to {}", r.distribution),
        // Refused, as unknown or for what else is wrong with it.
        (Err(e), None) => check_rejection(e),
        (Err(e), Some(_)) => {
            assert_ne!(e.reason(), RejectReason::UnknownDistribution, "{name}: {e}");
            check_rejection(e);
        }
    }
    // The queue takes the same body to the same request.
    match (decode_bytes(body.as_bytes(), router), decoded) {
        (Ok(from_queue), Ok(r)) => assert_eq!(from_queue, [r], "the queue decodes it otherwise"),
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!("the queue and POST /v1/purge disagree: {a:?} / {b:?}"),
    }
}

fn check_request(r: &PurgeRequest) {
    assert!(
        ALIASES.contains(&r.distribution.as_str()),
        "unknown distribution {:?}",
        r.distribution
    );
    assert!(
        !r.paths.is_empty() || !r.skipped.is_empty(),
        "a request without paths"
    );
    assert!(r.paths.len() + r.skipped.len() <= MAX_PATHS_PER_MESSAGE);
    let mut tags: Vec<String> = Vec::new();
    for p in &r.paths {
        if p.is_tag() {
            assert!(
                TAGGED.contains(&r.distribution.as_str()),
                "tag {p:?} for {}, which takes none",
                r.distribution
            );
            let again = CfPath::parse_item(p.as_str())
                .unwrap_or_else(|e| panic!("decoded tag {p:?} does not re-parse: {e}"));
            assert_eq!(&again, p, "decoded tag changes when parsed again");
            let key = p.as_str().to_ascii_lowercase();
            assert!(!tags.contains(&key), "tag {p:?} twice");
            tags.push(key);
            continue;
        }
        let again = CfPath::parse(p.as_str())
            .unwrap_or_else(|e| panic!("decoded path {p:?} does not re-parse: {e}"));
        assert_eq!(&again, p, "decoded path changes when parsed again");
        assert!(!skipped_by_config(p.as_str()), "{p:?} should be skipped");
    }
    for p in &r.skipped {
        assert!(!p.is_tag(), "tag {p:?} skipped");
        assert!(skipped_by_config(p.as_str()), "{p:?} skipped for nothing");
    }
    for text in [&r.reason, &r.requested_by].into_iter().flatten() {
        assert!(text.chars().count() <= MAX_TEXT_CHARS, "{text:?} too long");
        assert!(
            !text.contains(char::is_control),
            "{text:?} has a control character"
        );
    }
}

fn check_rejection(e: &Rejection) {
    let _ = e.reason();
    let detail = e.to_string();
    assert!(
        !detail.contains(|c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')),
        "rejection detail is not one line: {detail:?}"
    );
    assert!(
        detail.chars().count() <= MAX_DETAIL_CHARS,
        "rejection detail is {} characters",
        detail.chars().count()
    );
}
