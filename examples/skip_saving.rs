//! What `routing.skip` saves on a bundler's deploy:
//! `cargo run --example skip_saving` (no timing: the figures are the same in any profile).
//!
//! The astro-docs trace cannot tell: its paths are pages. So this generates
//! a Vite-style `dist/` (122 HTML pages in `index.html` directories, and in
//! `assets/` a content-hashed chunk and source map per page, shared chunks,
//! styles, fonts and images: `name-XXXXXXXX.ext`), sends it through the
//! daemon's own decoder as one S3 event notification per uploaded object
//! (with and without the README's skip pattern), and plans the batch with
//! both strategies against a catalog of what the bucket then serves (the
//! pages, this deploy's assets and the previous deploy's, which a deploy
//! that does not delete keeps serving to open tabs). Two deploys: a full
//! upload of the build, and an incremental one (`aws s3 sync`) after five
//! pages changed. Prints a Markdown table for the README.

use cfpurge::catalog::Catalog;
use cfpurge::config::{Config, Strategy as Configured};
use cfpurge::decode::{Router, decode};
use cfpurge::planner::{Capacity, Entry, Settings, Strategy, plan_with};

/// The README's pattern for Vite's hashed assets.
const VITE: &str =
    r"^/assets/[^/]+-[A-Za-z0-9_-]{8}\.(js|mjs|css|woff2?|ttf|svg|png|jpe?g|webp|avif)(\.map)?$";

fn router(skip: bool) -> Router {
    let skip = if skip {
        format!("skip = ['{VITE}']")
    } else {
        String::new()
    };
    let toml = format!(
        "[source]\nkind = \"local\"\n[distributions.www]\nid = \"E2ABCDEF123456\"\n\
         [routing]\n{skip}\n[[routing.s3]]\nbucket = \"site\"\ndistribution = \"www\"\n\
         index_document = \"index.html\"\n"
    );
    let config = Config::from_parts(Some(&toml), "skip_saving", std::iter::empty())
        .expect("the example's configuration is valid");
    Router::new(&config)
}

/// Eight characters of Vite's hash alphabet, fixed by the name and the
/// content version.
fn hash(name: &str, version: u32) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ u64::from(version);
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (0..8)
        .map(|i| ALPHABET[((h >> (i * 6)) & 63) as usize] as char)
        .collect()
}

/// The pages: `(key, slug)`.
fn pages() -> Vec<(String, String)> {
    let mut out = vec![
        ("index.html".to_owned(), "home".to_owned()),
        ("404.html".to_owned(), "404".to_owned()),
    ];
    for (section, n) in [("guide", 60), ("blog", 40), ("reference", 20)] {
        for i in 0..n {
            out.push((
                format!("{section}/p{i}/index.html"),
                format!("{section}-p{i}"),
            ));
        }
    }
    out
}

/// The build's hashed assets, each page chunk at the version `version_of`
/// gives its page, the rest at `shared`.
fn assets(version_of: &dyn Fn(&str) -> u32, shared: u32) -> Vec<String> {
    let mut out = Vec::new();
    let mut chunk = |name: &str, version: u32| {
        let h = hash(name, version);
        out.push(format!("assets/{name}-{h}.js"));
        out.push(format!("assets/{name}-{h}.js.map"));
    };
    for (_, slug) in pages() {
        chunk(&slug, version_of(&slug));
    }
    chunk("index", shared);
    chunk("vendor", 0);
    for i in 0..10 {
        chunk(&format!("chunk{i}"), 0);
    }
    out.push(format!("assets/index-{}.css", hash("index.css", shared)));
    out.push(format!("assets/style-{}.css", hash("style.css", 0)));
    for w in [300, 400, 500, 600, 700, 800, 900, 1000] {
        let name = format!("inter-latin-{w}-normal");
        out.push(format!("assets/{name}-{}.woff2", hash(&name, 0)));
    }
    for i in 0..10 {
        out.push(format!(
            "assets/hero{i}-{}.webp",
            hash(&format!("hero{i}"), 0)
        ));
    }
    out
}

fn s3_event(key: &str) -> String {
    serde_json::json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "site"}, "object": {"key": key}}}]})
    .to_string()
}

/// The CloudFront paths of some keys, by the route's mapping.
fn paths_of(keys: &[String], router: &Router) -> Vec<String> {
    keys.iter()
        .flat_map(|k| decode(&s3_event(k), router).expect("valid event"))
        .flat_map(|r| r.paths)
        .map(|p| p.to_string())
        .collect()
}

struct Row {
    billed: usize,
    wildcards: usize,
    blast: u64,
}

fn plan(uploaded: &[String], served: &Catalog, skip: bool, strategy: Configured) -> (usize, Row) {
    let router = router(skip);
    let entries: Vec<Entry> = uploaded
        .iter()
        .flat_map(|k| decode(&s3_event(k), &router).expect("valid event"))
        .flat_map(|r| r.paths)
        .enumerate()
        .map(|(i, p)| Entry::new(p, i as u64))
        .collect();
    let settings = Settings::default();
    let p = plan_with(
        &entries,
        Capacity::AWS,
        &settings,
        Strategy::new(strategy, Some(served), 50.0),
    );
    assert!(p.deferred.is_empty());
    (
        entries.len(),
        Row {
            billed: p.figures.billed(),
            wildcards: p.figures.wildcard,
            blast: p.figures.blast,
        },
    )
}

fn main() {
    let all = |_: &str| 1;
    let before = |_: &str| 0;
    let pages_keys: Vec<String> = pages().into_iter().map(|(k, _)| k).collect();
    let old_assets = assets(&before, 0);
    let new_assets = assets(&all, 1);
    let changed = [
        "guide-p3",
        "guide-p17",
        "blog-p0",
        "blog-p1",
        "reference-p9",
    ];
    let partly = |slug: &str| u32::from(changed.contains(&slug));
    let sync_assets = assets(&partly, 1);

    let plain = router(false);
    let mut deploys = Vec::new();
    // A full upload of the new build.
    let mut uploaded = pages_keys.clone();
    uploaded.extend(new_assets.iter().cloned());
    let mut served_keys = uploaded.clone();
    served_keys.extend(old_assets.iter().cloned());
    deploys.push(("full upload", uploaded, served_keys));
    // `aws s3 sync` after five pages changed: their HTML, their chunks and
    // maps, and the entry chunk and stylesheet whose hashes follow.
    let mut uploaded: Vec<String> = pages()
        .into_iter()
        .filter(|(_, slug)| changed.contains(&slug.as_str()))
        .map(|(k, _)| k)
        .collect();
    uploaded.extend(
        sync_assets
            .iter()
            .filter(|a| !old_assets.contains(a))
            .cloned(),
    );
    let mut served_keys = pages_keys.clone();
    served_keys.extend(old_assets.iter().cloned());
    served_keys.extend(
        uploaded
            .iter()
            .filter(|k| k.starts_with("assets/"))
            .cloned(),
    );
    deploys.push(("sync of 5 changed pages", uploaded, served_keys));

    println!(
        "| deploy | objects uploaded | strategy | routing.skip | paths planned | billed | wildcards | blast |"
    );
    println!("|---|---:|---|---|---:|---:|---:|---:|");
    for (name, uploaded, served_keys) in &deploys {
        let mut served = Catalog::new();
        for p in paths_of(served_keys, &plain) {
            served.add(&p);
        }
        for strategy in [Configured::Threshold, Configured::LeastBlast] {
            for skip in [false, true] {
                let (planned, row) = plan(uploaded, &served, skip, strategy);
                println!(
                    "| {name} | {} | {} | {} | {planned} | {} | {} | {} |",
                    uploaded.len(),
                    match strategy {
                        Configured::Threshold => "threshold",
                        Configured::LeastBlast => "least_blast",
                    },
                    if skip { "Vite pattern" } else { "none" },
                    row.billed,
                    row.wildcards,
                    row.blast
                );
            }
        }
    }
}
