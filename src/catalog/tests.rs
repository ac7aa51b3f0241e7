use std::io::Cursor;

use super::s3::{Lister, MemoryLister, build};
use super::*;
use crate::config::S3Route;
use crate::decode::KeyMapping;

fn catalog(paths: &[&str]) -> Catalog {
    let mut c = Catalog::new();
    for p in paths {
        assert!(c.add(p), "{p} added twice");
    }
    c
}

#[test]
fn counts_objects_under_every_directory() {
    let c = catalog(&["/a/b.js", "/a/c/", "/a/c/d.png", "/e.html", "/a/c/x?v=1"]);
    assert_eq!(c.objects(), 5);
    assert_eq!(c.under("/"), 5);
    assert_eq!(c.under("/a/"), 4);
    // A page that is a directory counts under itself.
    assert_eq!(c.under("/a/c/"), 3);
    assert_eq!(c.under("/b/"), 0);
    // "/", "/a/", "/a/c/".
    assert_eq!(c.directories(), 3);
    assert!(c.contains("/a/c/"));
    assert!(c.contains("/a/c/x?v=1"));
    assert!(!c.contains("/a/"));
    assert!(!c.contains("/a/c/x"));
}

#[test]
fn a_query_string_slash_is_not_a_directory() {
    let c = catalog(&["/a/x?next=/b/c"]);
    assert_eq!(c.under("/a/"), 1);
    assert_eq!(c.under("/a/x?next=/"), 0);
    assert_eq!(c.directories(), 2);
}

#[test]
fn adding_twice_and_removing_what_is_not_there_change_nothing() {
    let mut c = catalog(&["/a/b.js", "/a/c.js"]);
    assert!(!c.add("/a/b.js"));
    assert_eq!(c.under("/a/"), 2);
    assert!(!c.remove("/a/zzz.js"));
    assert!(!c.remove("/a/"));
    assert_eq!((c.objects(), c.under("/a/"), c.under("/")), (2, 2, 2));
    assert!(c.remove("/a/b.js"));
    assert!(!c.remove("/a/b.js"));
    assert_eq!((c.objects(), c.under("/a/"), c.directories()), (1, 1, 2));
}

#[test]
fn removing_everything_empties_the_table() {
    let paths = ["/a/", "/a/b/", "/a/b/c.js", "/x.txt", "/a/b/?q=/"];
    let mut c = catalog(&paths);
    for p in paths {
        assert!(c.remove(p));
    }
    assert_eq!((c.objects(), c.directories()), (0, 0));
    assert!(c.slots.is_empty(), "no slot is left behind");
}

#[test]
fn walking_fingerprints_prefixes_like_fingerprinting_them_whole() {
    let c = Catalog::new();
    let mut seen = Vec::new();
    walk(&c.keys, "/ab/cd/ef.js?x=/y", |f| seen.push(f));
    let whole: Vec<Fingerprint> = ["/", "/ab/", "/ab/cd/"]
        .iter()
        .map(|d| c.fingerprint(d))
        .collect();
    assert!(seen == whole);
}

#[test]
fn memory_is_twelve_bytes_a_slot_and_then_some() {
    let mut c = Catalog::new();
    for i in 0..10_000 {
        c.add(&format!("/d{}/p{i}.html", i % 10));
    }
    let bytes = c.memory_bytes();
    // 10,011 slots need 16,384 buckets of 13 bytes.
    assert_eq!(bytes, 16_384 * 13);
}

#[test]
fn a_file_is_read_with_comments_blanks_and_encoding() {
    let text = "# served\n/a/b.js\n\n  /caf\u{e9}/  \n/a/b.js\n";
    let c = file::read(Cursor::new(text), "tree.txt").unwrap();
    assert_eq!(c.objects(), 2);
    assert!(c.contains("/caf%C3%A9/"));
    assert_eq!(c.under("/caf%C3%A9/"), 1);
}

#[test]
fn a_bad_line_names_its_number() {
    let e = file::read(Cursor::new("/ok\n\nnope\n"), "tree.txt").unwrap_err();
    assert_eq!(
        e.to_string(),
        "tree.txt: line 3: path must start with \"/\""
    );
    let e = file::read(Cursor::new("/a/*\n"), "tree.txt").unwrap_err();
    assert_eq!(
        e.to_string(),
        "tree.txt: line 1: \"/a/*\" is a wildcard; a catalog lists served objects"
    );
}

#[test]
fn a_missing_file_is_a_read_error() {
    let e = file::load(std::path::Path::new("/nonexistent/tree.txt")).unwrap_err();
    assert!(matches!(e, CatalogError::Read { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with("/nonexistent/tree.txt: cannot read")
    );
}

fn block<T>(f: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn mapping(key_prefix: &str, path_prefix: &str, index: Option<&str>) -> KeyMapping {
    KeyMapping::new(&S3Route {
        bucket: "b".into(),
        distribution: "www".into(),
        key_prefix: key_prefix.into(),
        path_prefix: path_prefix.into(),
        index_document: index.map(str::to_owned),
    })
}

#[test]
fn the_fake_lists_in_pages_under_a_prefix() {
    let mut l = MemoryLister::new(2);
    for k in ["a/1", "a/2", "a/3", "b/1", "a"] {
        l.put("bucket", k);
    }
    let mut pages = Vec::new();
    block(l.list("bucket", "a/", &mut |p| pages.push(p.to_vec()))).unwrap();
    assert_eq!(pages, [vec!["a/1", "a/2"], vec!["a/3"]]);
    let mut all = 0;
    block(l.list("bucket", "", &mut |p| all += p.len())).unwrap();
    assert_eq!(all, 5);
    assert!(block(l.list("other", "", &mut |_| {})).is_err());
    l.deny("bucket");
    let e = block(l.list("bucket", "", &mut |_| {})).unwrap_err();
    assert!(e.starts_with("AccessDenied"), "{e}");
}

#[test]
fn a_listing_maps_keys_like_s3_events() {
    let mut l = MemoryLister::new(3);
    for k in [
        "site/index.html",
        "site/docs/index.html",
        "site/docs/a.html",
        "site/docs/b c.html",
        "site/docs/50%.html",
        "other/x.html",
    ] {
        l.put("www-bucket", k);
    }
    l.put("assets-bucket", "logo.png");
    let routes = vec![
        (
            "www-bucket".to_owned(),
            mapping("site/", "/", Some("index.html")),
        ),
        ("assets-bucket".to_owned(), mapping("", "/static", None)),
    ];
    let listed = block(build(&l, &routes)).unwrap();
    let c = &listed.catalog;
    // Listed: five keys under site/ and one in the assets bucket.
    assert_eq!(listed.keys, 6);
    for p in [
        "/index.html",
        "/",
        "/docs/index.html",
        "/docs/",
        "/docs",
        "/docs/a.html",
        "/docs/b%20c.html",
        "/docs/50%25.html",
        "/static/logo.png",
    ] {
        assert!(c.contains(p), "{p}");
    }
    assert!(!c.contains("/other/x.html"));
    assert_eq!(c.objects(), 9);
    // index.html, the directory itself, a, b c and 50%.
    assert_eq!(c.under("/docs/"), 5);
}

#[test]
fn a_failed_listing_names_the_bucket_and_prefix() {
    let mut l = MemoryLister::new(10);
    l.put("www-bucket", "a");
    l.deny("www-bucket");
    let routes = vec![("www-bucket".to_owned(), mapping("site/", "/", None))];
    let e = block(build(&l, &routes)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "listing s3://www-bucket/site/: AccessDenied: Access Denied"
    );
}

/// `/u<i>/` then `levels` directories `a/`, then `f`: `levels + 2`
/// strings of its own (itself and its directories but the root).
fn deep_path(i: usize, levels: usize) -> String {
    format!("/u{i}/{}f", "a/".repeat(levels))
}

#[test]
fn a_catalog_stays_within_its_bound_in_strings_counted() {
    let mut c = Catalog::within(MIB);
    let max_strings = MIB / STRING_BYTES;
    let mut added = 0;
    for i in 0..100 {
        if c.add(&deep_path(i, 1990)) {
            added += 1;
        }
        assert!(c.counted_bytes() <= MIB, "{} strings", c.strings());
    }
    // 1,992 strings a path, 23,301 fit: the 12th path did not.
    assert_eq!(added, (max_strings - 1) / 1992);
    assert_eq!(c.refused(), 100 - added as u64);
    // What is in is counted right, and a path already in is no refusal.
    assert_eq!(c.objects(), added as u64);
    assert_eq!(c.under("/"), added as u64);
    assert!(!c.add(&deep_path(0, 1990)));
    assert_eq!(c.refused(), 100 - added as u64);
    // A path sharing every directory still fits: one string.
    assert!(c.add(&format!("/u0/{}g", "a/".repeat(1990))));
}

#[test]
fn a_catalog_file_larger_than_its_bound_is_refused_by_line() {
    let text: String = (0..20).map(|i| deep_path(i, 1990) + "\n").collect();
    let e = file::read_within(Cursor::new(text.as_str()), "deep.txt", MIB).unwrap_err();
    let said = e.to_string();
    assert!(
        said.starts_with(
            "deep.txt: more served paths and directories than catalog.max_bytes (1048576 bytes"
        ) && said.contains("full at line 12"),
        "{said}"
    );
    // The default bound takes it: 20 paths of 1,992 strings.
    assert_eq!(
        file::read(Cursor::new(text.as_str()), "deep.txt")
            .unwrap()
            .objects(),
        20
    );
}

#[test]
fn a_listing_larger_than_its_bound_is_refused() {
    let mut l = MemoryLister::new(1000);
    for i in 0..20 {
        l.put("www-bucket", &deep_path(i, 1990)[1..]);
    }
    let routes = vec![("www-bucket".to_owned(), mapping("", "/", None))];
    let e = block(super::s3::build_within(&l, &routes, MIB)).unwrap_err();
    let said = e.to_string();
    assert!(
        said.starts_with("listing s3://www-bucket: more served paths")
            && said.contains("9 paths from the 20 keys listed did not fit"),
        "{said}"
    );
}

const MIB: usize = 1 << 20;
