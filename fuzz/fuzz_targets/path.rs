//! CloudFront paths: any string through `CfPath::parse` and
//! `CfPath::literal`. Nothing panics; an accepted path is in its final form
//! (it re-parses to itself), fits the length limit, covers itself and lives
//! in a directory that is a prefix of it; a literal path is exact and has no
//! query string.

#![no_main]

use cfpurge::path::{CfPath, MAX_PATH_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);

    let parsed = CfPath::parse(&raw);
    if let Ok(p) = &parsed {
        check(p);
    }

    match CfPath::literal(&raw) {
        Ok(p) => {
            check(&p);
            assert!(!p.is_wildcard(), "literal {raw:?} gave wildcard {p:?}");
            assert!(
                !p.as_str().contains('?'),
                "literal {raw:?} gave query {p:?}"
            );
        }
        Err(e) => {
            // A literal is refused for the same reasons as a path, except
            // that `*` anywhere is fine and encoding may make it too long.
            if parsed.is_ok() {
                assert!(
                    matches!(e, cfpurge::path::PathError::TooLong { .. }),
                    "parse accepts {raw:?} but literal refuses it: {e}"
                );
            }
        }
    }
});

fn check(p: &CfPath) {
    let s = p.as_str();
    let again =
        CfPath::parse(s).unwrap_or_else(|e| panic!("accepted path {s:?} does not re-parse: {e}"));
    assert_eq!(&again, p, "accepted path changes when parsed again");
    assert!(s.starts_with('/'));
    assert!(s.len() <= MAX_PATH_LEN, "{} characters", s.len());
    assert!(p.covers(p), "{s:?} does not cover itself");
    let dir = p.directory();
    assert!(
        s.starts_with(dir),
        "directory {dir:?} is not a prefix of {s:?}"
    );
    assert!(
        dir.starts_with('/') && dir.ends_with('/'),
        "directory {dir:?}"
    );
    assert_eq!(p.is_wildcard(), s.ends_with('*'));
    assert!(!s[..s.len() - usize::from(p.is_wildcard())].contains('*'));
}
