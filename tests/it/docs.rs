//! The documentation keeps up with the code: every metric the code
//! registers is in the interface page, every configuration key it accepts
//! is in the configuration page (whose key listing is the example
//! configuration itself), and every page under `docs/` is reachable from the
//! README. Nothing points outside the repository.

use std::fs;

use cfpurge::config::Config;
use cfpurge::metrics::Metrics;

fn repo_file(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

fn read(path: &str) -> String {
    fs::read_to_string(repo_file(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn every_registered_metric_is_documented() {
    let registry = prometheus::Registry::new();
    Metrics::new(&registry, &["www"]).expect("metrics");
    let names: Vec<String> = registry
        .gather()
        .iter()
        .map(|family| family.name().to_owned())
        .filter(|name| name.starts_with("cfpurge_"))
        .collect();
    assert!(names.len() >= 20, "{names:?}");
    let page = read("docs/interface.md");
    let missing: Vec<&String> = names
        .iter()
        .filter(|name| !page.contains(&format!("| `{name}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/interface.md's metric table lacks {missing:?}"
    );
}

#[test]
fn every_configuration_key_is_documented() {
    let example = read("config/cfpurge.example.toml");
    let page = read("docs/configuration.md");
    // The listing is the example file itself, which another test checks
    // against the keys the code accepts.
    assert!(
        page.contains(&format!("```toml\n{}\n```", example.trim_end())),
        "docs/configuration.md's \"Every key\" block differs from config/cfpurge.example.toml"
    );
    let cfg = Config::from_parts(Some(&example), "x", []).expect("the example loads");
    let full: toml::Table = toml::to_string(&cfg).unwrap().parse().unwrap();
    for (section, table) in &full {
        assert!(
            page.contains(&format!("[{section}")) || section == "distributions",
            "docs/configuration.md does not show [{section}]"
        );
        for (key, value) in table.as_table().unwrap() {
            let keys: Vec<String> = match value {
                toml::Value::Table(t) if section == "distributions" => t.keys().cloned().collect(),
                toml::Value::Array(items) => items
                    .iter()
                    .flat_map(|i| i.as_table().unwrap().keys().cloned())
                    .collect(),
                _ => vec![key.clone()],
            };
            for key in keys {
                assert!(
                    page.contains(&format!("{key} = ")),
                    "docs/configuration.md does not show {section}.{key}"
                );
            }
        }
    }
}

#[test]
fn every_page_is_reachable_from_the_readme_and_nothing_points_outside() {
    let readme = read("README.md");
    let mut pages: Vec<String> = fs::read_dir(repo_file("docs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".md"))
        .collect();
    pages.sort();
    assert!(pages.len() >= 5, "{pages:?}");
    for page in &pages {
        assert!(
            readme.contains(&format!("(docs/{page})")),
            "README.md does not link docs/{page}"
        );
    }
    for file in pages
        .iter()
        .map(|p| format!("docs/{p}"))
        .chain(["README.md".to_owned()])
    {
        let text = read(&file);
        for outside in ["../shared", "CONTRACT.md", "DESIGN.md", "AWS_FACTS.md"] {
            assert!(!text.contains(outside), "{file} points at {outside}");
        }
        // Every relative link to a file of the repository leads somewhere.
        for link in text.split("](").skip(1) {
            let target = link.split(')').next().unwrap_or("");
            if target.starts_with("http") || target.starts_with('#') || target.is_empty() {
                continue;
            }
            let target = target.split('#').next().unwrap();
            let base = if file.starts_with("docs/") {
                "docs/"
            } else {
                ""
            };
            let path = repo_file(&format!("{base}{target}"));
            assert!(path.exists(), "{file}: the link {target} leads nowhere");
        }
    }
}
