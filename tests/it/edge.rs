//! Verification and warming as operators configure them: off by default,
//! the example shows every key, each mistake is named by its key, header
//! values never printed.

use std::path::{Path, PathBuf};

use cfpurge::commands::check_config::check_config;
use cfpurge::config::{Config, ConfigError, EdgeScheme, VerifyConfig, WarmConfig};

fn repo_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

const BASE: &str = "[source]\nkind = \"local\"\n[distributions.www]\nid = \"E2ABCDEF123456\"\n";

fn load(extra: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    Config::from_parts(Some(&format!("{BASE}{extra}")), "test.toml", env)
}

/// Every `key: message` line of the error `extra` gives.
fn problems(extra: &str, vars: &[(&str, &str)]) -> Vec<(String, String)> {
    match load(extra, vars) {
        Err(ConfigError::Invalid { problems, .. }) => {
            problems.into_iter().map(|p| (p.key, p.message)).collect()
        }
        other => panic!("expected problems, got {other:?}"),
    }
}

/// The example with its verify and warm sections uncommented.
fn example_with_edge() -> String {
    let example = std::fs::read_to_string(repo_file("config/cfpurge.example.toml")).unwrap();
    let mut on = false;
    example
        .lines()
        .map(|line| {
            if line.starts_with("# [distributions.www.verify]") {
                on = true;
            } else if !line.starts_with('#') && !line.starts_with(' ') {
                on = false;
            }
            match line.strip_prefix("# ") {
                Some(rest) if on => rest.to_owned(),
                _ => line.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn off_by_default() {
    let cfg = load("", &[]).expect("config");
    assert!(cfg.distributions["www"].verify.is_none());
    assert!(cfg.distributions["www"].warm.is_none());
    let example = std::fs::read_to_string(repo_file("config/cfpurge.example.toml")).unwrap();
    let cfg = Config::from_parts(Some(&example), "example", []).expect("example");
    assert!(
        cfg.distributions
            .values()
            .all(|d| d.verify.is_none() && d.warm.is_none())
    );
}

#[test]
fn the_example_shows_every_key_with_its_default() {
    let text = example_with_edge();
    let cfg =
        Config::from_parts(Some(&text), "example", []).expect("the example's edge sections load");
    let www = &cfg.distributions["www"];
    let verify = www.verify.as_ref().expect("verify");
    assert_eq!(verify.domain, "www.example.com");
    assert_eq!(verify.scheme, EdgeScheme::Https);
    let defaults = VerifyConfig::default();
    assert_eq!(
        (verify.sample, verify.per_second),
        (defaults.sample, defaults.per_second)
    );
    assert_eq!(verify.reinvalidate_stale, defaults.reinvalidate_stale);
    let warm = www.warm.as_ref().expect("warm");
    let defaults = WarmConfig::default();
    assert_eq!(
        (warm.enabled, warm.per_second, warm.max_paths),
        (defaults.enabled, defaults.per_second, defaults.max_paths)
    );
    // Every key either table has is shown.
    let shown: toml::Table = toml::to_string(&cfg).unwrap().parse().unwrap();
    let www = shown["distributions"]["www"].as_table().unwrap();
    for section in ["verify", "warm"] {
        for key in www[section].as_table().unwrap().keys() {
            assert!(
                text.contains(&format!("{key} = ")),
                "{section}.{key} not shown"
            );
        }
    }
    assert!(text.contains("headers = "));
}

#[test]
fn each_mistake_is_named_by_its_key() {
    let found = problems(
        "[distributions.www.verify]\nsample = 500\nper_second = 0\n\
         [distributions.www.warm]\nenabled = true\nmax_paths = 5000\n",
        &[],
    );
    let keys: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "distributions.www.verify.domain",
            "distributions.www.verify.sample",
            "distributions.www.verify.per_second",
            "distributions.www.warm.max_paths",
        ],
        "{found:?}"
    );
    assert!(found[0].1.contains("is required"), "{found:?}");

    let found = problems(
        "[distributions.www.verify]\ndomain = \"https://www.example.com/\"\n",
        &[],
    );
    assert!(found[0].1.contains("not a host name"), "{found:?}");
    let found = problems(
        "[distributions.www.verify]\ndomain = \"www.example.com\"\nscheme = \"http\"\n",
        &[],
    );
    assert_eq!(found[0].0, "distributions.www.verify.scheme", "{found:?}");
    let found = problems("[distributions.www.warm]\nenabled = true\n", &[]);
    assert_eq!(found[0].0, "distributions.www.warm.enabled", "{found:?}");
    let found = problems(
        "[distributions.www.verify]\ndomain = \"www.example.com\"\n\
         headers = { Authorization = \"Bearer t0ken-value\" }\n\
         [http]\nenqueue_token = \"t0ken-value\"\n",
        &[],
    );
    assert_eq!(
        found[0].0, "distributions.www.verify.headers.Authorization",
        "{found:?}"
    );
    // A key the tables do not have is refused, not ignored.
    let err = load("[distributions.www.warm]\nenable = true\n", &[]).unwrap_err();
    assert!(err.to_string().contains("enable"), "{err}");
}

#[test]
fn environment_overrides_reach_the_edge_keys() {
    let cfg = load(
        "[distributions.www.verify]\ndomain = \"www.example.com\"\n",
        &[
            ("CFPURGE__DISTRIBUTIONS__WWW__VERIFY__PER_SECOND", "0.5"),
            (
                "CFPURGE__DISTRIBUTIONS__WWW__VERIFY__REINVALIDATE_STALE",
                "true",
            ),
        ],
    )
    .expect("config");
    let verify = cfg.distributions["www"].verify.as_ref().unwrap();
    assert_eq!(verify.per_second, 0.5);
    assert!(verify.reinvalidate_stale);
    let found = problems(
        "[distributions.www.verify]\ndomain = \"www.example.com\"\n",
        &[("CFPURGE__DISTRIBUTIONS__WWW__VERIFY__SAMPLE", "1000")],
    );
    assert!(
        found[0]
            .1
            .contains("CFPURGE__DISTRIBUTIONS__WWW__VERIFY__SAMPLE"),
        "{found:?}"
    );
}

#[test]
fn check_config_never_prints_a_header_value() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cfpurge.toml");
    std::fs::write(
        &file,
        format!(
            "{BASE}[distributions.www.verify]\ndomain = \"www.example.com\"\n\
             headers = {{ X-Origin-Secret = \"s3cr3t-header-value\" }}\n"
        ),
    )
    .unwrap();
    let mut out = Vec::new();
    check_config(&file, &mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(!out.contains("s3cr3t-header-value"), "{out}");
    assert!(out.contains("X-Origin-Secret = \"<redacted>\""), "{out}");
}
