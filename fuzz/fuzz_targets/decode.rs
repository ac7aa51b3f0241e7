//! Message bodies: any bytes through `decode_bytes` (and `decode_native`)
//! with a router built from a fixed configuration. Nothing panics; decoding
//! is deterministic; every request names a configured distribution and
//! carries 1 to 3,000 paths that are already in CloudFront's encoded form
//! (they re-parse to themselves); a rejection's detail is one bounded line.

#![no_main]

use std::sync::LazyLock;

use cfpurge::config::Config;
use cfpurge::decode::{
    MAX_PATHS_PER_MESSAGE, MAX_TEXT_CHARS, PurgeRequest, Rejection, Router, decode_bytes,
    decode_native,
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

[routing]
default_distribution = "www"

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

const ALIASES: [&str; 2] = ["www", "docs"];

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

    let decoded = decode_bytes(data, router);
    assert_eq!(
        decoded,
        decode_bytes(data, router),
        "decode is deterministic"
    );
    match &decoded {
        Ok(requests) => {
            let total: usize = requests.iter().map(|r| r.paths.len()).sum();
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

fn check_request(r: &PurgeRequest) {
    assert!(
        ALIASES.contains(&r.distribution.as_str()),
        "unknown distribution {:?}",
        r.distribution
    );
    assert!(!r.paths.is_empty(), "a request without paths");
    assert!(r.paths.len() <= MAX_PATHS_PER_MESSAGE);
    for p in &r.paths {
        let again = CfPath::parse(p.as_str())
            .unwrap_or_else(|e| panic!("decoded path {p:?} does not re-parse: {e}"));
        assert_eq!(&again, p, "decoded path changes when parsed again");
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
