//! The configuration as operators meet it: the shipped files load, every
//! rule's message names the file and the key, unknown keys are refused,
//! environment overrides apply, secrets stay out of `check-config`, and the
//! binary's exit status follows docs/interface.md.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cfpurge::commands::check_config::check_config;
use cfpurge::config::{
    BatchingConfig, BudgetConfig, CatalogConfig, CatalogSource, CloudFrontConfig, CloudFrontMode,
    CoalesceConfig, Config, ConfigError, CoordinationConfig, CoordinationKind, DistributionConfig,
    HttpConfig, LogConfig, OnExhausted, Pacing, Problem, ShutdownConfig, SourceConfig, SourceKind,
    StoreKind, Strategy, config_path,
};

const ORIGIN: &str = "test.toml";
const DIST: &str = "[distributions.www]\nid = \"E2ABCDEF123456\"\n";

fn repo_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A valid base (one distribution, a local source unless the text has its
/// own `[source]`) plus `extra`.
fn text(extra: &str) -> String {
    let source = if extra.contains("[source]") {
        ""
    } else {
        "[source]\nkind = \"local\"\n"
    };
    let dist = if extra.contains("[distributions.") {
        ""
    } else {
        DIST
    };
    format!("{source}{dist}{extra}")
}

fn load(extra: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_parts(Some(&text(extra)), ORIGIN, env(vars))
}

fn problems(extra: &str, vars: &[(&str, &str)]) -> Vec<Problem> {
    match load(extra, vars) {
        Ok(_) => panic!("expected an error for:\n{}", text(extra)),
        Err(ConfigError::Invalid { origin, problems }) => {
            assert_eq!(origin, ORIGIN);
            problems
        }
        Err(e) => panic!("expected Invalid, got {e}"),
    }
}

/// The single problem of `extra`, which must be about `key`; its message.
fn only_problem(extra: &str, key: &str) -> String {
    let found = problems(extra, &[]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].key, key, "{found:?}");
    found[0].message.clone()
}

fn message(result: Result<Config, ConfigError>) -> String {
    result.expect_err("expected an error").to_string()
}

#[test]
fn example_config_loads_and_shows_the_defaults() {
    let cfg = Config::from_parts(
        Some(&std::fs::read_to_string(repo_file("config/cfpurge.example.toml")).unwrap()),
        "cfpurge.example.toml",
        [],
    )
    .unwrap();
    let same =
        |a: String, b: String, what: &str| assert_eq!(a, b, "{what} differs from its default");
    let mut source = cfg.source.clone();
    source.queue_url = None;
    same(ser(&source), ser(&SourceConfig::default()), "[source]");
    let mut www = cfg.distributions["www"].clone();
    www.id = String::new();
    same(
        ser(&www),
        ser(&DistributionConfig::default()),
        "[distributions.www]",
    );
    same(
        ser(&cfg.batching),
        ser(&BatchingConfig::default()),
        "[batching]",
    );
    same(
        ser(&cfg.coalesce),
        ser(&CoalesceConfig::default()),
        "[coalesce]",
    );
    same(
        ser(&cfg.cloudfront),
        ser(&CloudFrontConfig::default()),
        "[cloudfront]",
    );
    same(ser(&cfg.budget), ser(&BudgetConfig::default()), "[budget]");
    same(
        ser(&cfg.catalog),
        ser(&CatalogConfig::default()),
        "[catalog]",
    );
    same(
        ser(&cfg.shutdown),
        ser(&ShutdownConfig::default()),
        "[shutdown]",
    );
    same(
        ser(&cfg.coordination),
        ser(&CoordinationConfig::default()),
        "[coordination]",
    );
    same(ser(&cfg.http), ser(&HttpConfig::default()), "[http]");
    same(ser(&cfg.log), ser(&LogConfig::default()), "[log]");
    assert_eq!(cfg.routing.s3.len(), 1);
    assert_eq!(
        cfg.routing.s3[0].index_document.as_deref(),
        Some("index.html")
    );
}

/// A section as TOML, for comparisons.
fn ser<T: serde::Serialize>(section: &T) -> String {
    toml::to_string(section).unwrap()
}

#[test]
fn example_config_mentions_every_key() {
    let example = std::fs::read_to_string(repo_file("config/cfpurge.example.toml")).unwrap();
    let cfg = Config::from_parts(Some(&example), "x", []).unwrap();
    let full: toml::Table = toml::to_string(&cfg).unwrap().parse().unwrap();
    let mut keys = Vec::new();
    for (section, table) in &full {
        for (key, value) in table.as_table().unwrap() {
            match value {
                // [distributions.www]
                toml::Value::Table(t) if section == "distributions" => {
                    keys.extend(t.keys().cloned())
                }
                // [[routing.s3]]
                toml::Value::Array(routes) => {
                    assert!(example.contains(&format!("[[{section}.{key}]]")));
                    for route in routes {
                        keys.extend(route.as_table().unwrap().keys().cloned());
                    }
                }
                _ => keys.push(key.clone()),
            }
        }
    }
    // Keys without a default are not in the effective configuration.
    keys.extend(
        [
            "region",
            "endpoint_url",
            "sqs_endpoint_url",
            "cloudfront_endpoint_url",
            "s3_endpoint_url",
            "catalog_file",
            "dynamodb_endpoint_url",
            "replica_id",
            "dead_letter_queue_url",
            "enqueue_token",
            "skip",
            "account",
            "role_arn",
            "external_id",
        ]
        .map(String::from),
    );
    for key in keys {
        assert!(
            example.contains(&format!("{key} = ")),
            "config/cfpurge.example.toml does not show {key}"
        );
    }
}

#[test]
fn local_config_loads_and_needs_no_aws() {
    let cfg = Config::load(&repo_file("config/local.toml")).unwrap();
    assert_eq!(cfg.source.kind, SourceKind::Local);
    assert_eq!(cfg.cloudfront.mode, CloudFrontMode::Simulate);
    assert_eq!(cfg.routing.default_distribution.as_deref(), Some("www"));
    assert!(cfg.budget.ledger_path.is_relative());
    assert_eq!(cfg.http.listen.to_string(), "127.0.0.1:9470");
}

#[test]
fn the_message_names_the_file_and_the_key() {
    assert_eq!(
        message(load("[batching]\nquiet_seconds = 0\n", &[])),
        "test.toml: batching.quiet_seconds must be ≥ 1 (got 0)"
    );
    assert_eq!(
        message(load("[routing]\ndefault_distribution = \"wwx\"\n", &[])),
        "test.toml: routing.default_distribution \"wwx\" is not a configured distribution (configured: \"www\")"
    );
}

#[test]
fn every_problem_is_reported_one_per_line() {
    let text = "[batching]\nquiet_seconds = 0\n[coalesce]\nwildcard_threshold = 1\n[shutdown]\ngrace_seconds = 9999\n";
    let msg = message(load(text, &[]));
    let lines: Vec<&str> = msg.lines().collect();
    assert_eq!(
        lines,
        [
            "test.toml: batching.quiet_seconds must be ≥ 1 (got 0)",
            "test.toml: coalesce.wildcard_threshold must be ≥ 2 (got 1)",
            "test.toml: shutdown.grace_seconds must be 0..=3600 (got 9999)",
        ]
    );
}

#[test]
fn every_rule_names_its_key() {
    let src = "[source]\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/1/q\"\n";
    let cases: Vec<(String, &str, &str)> = vec![
        // [aws]
        ("[aws]\nregion = \"US East\"\n".into(), "aws.region", "region name"),
        ("[aws]\nendpoint_url = \"127.0.0.1:5000\"\n".into(), "aws.endpoint_url", "http://"),
        ("[aws]\nsqs_endpoint_url = \"\"\n".into(), "aws.sqs_endpoint_url", "http://"),
        ("[aws]\ncloudfront_endpoint_url = \"ftp://x\"\n".into(), "aws.cloudfront_endpoint_url", "http://"),
        ("[aws]\ns3_endpoint_url = \"s3.local\"\n".into(), "aws.s3_endpoint_url", "http://"),
        // [source]
        ("[source]\nkind = \"sqs\"\n".into(), "source.queue_url", "is required"),
        ("[source]\nqueue_url = \"\"\n".into(), "source.queue_url", "is required"),
        ("[source]\nqueue_url = \"my-queue\"\n".into(), "source.queue_url", "http://"),
        (format!("{src}dead_letter_queue_url = \"https://sqs.us-east-1.amazonaws.com/1/q\"\n"), "source.dead_letter_queue_url", "same queue"),
        (format!("{src}pollers = 0\n"), "source.pollers", "must be 1..=64 (got 0)"),
        (format!("{src}pollers = 65\n"), "source.pollers", "must be 1..=64 (got 65)"),
        (format!("{src}wait_time_seconds = 21\n"), "source.wait_time_seconds", "must be 0..=20 (got 21)"),
        (format!("{src}visibility_timeout_seconds = 0\n"), "source.visibility_timeout_seconds", "must be 1..=43200 (got 0)"),
        (format!("{src}visibility_timeout_seconds = 43201\n"), "source.visibility_timeout_seconds", "(got 43201)"),
        (format!("{src}max_pending_messages = 0\n"), "source.max_pending_messages", "must be 1..=120000 (got 0)"),
        (format!("{src}max_pending_bytes = 1000\n"), "source.max_pending_bytes", "must be 1048576..=1099511627776 (got 1000)"),
        ("[source]\nkind = \"sqsx\"\n".into(), "source.kind", "\"sqsx\" is not a source kind: expected \"sqs\" or \"local\""),
        // [distributions]
        ("[distributions.www]\nid = \"\"\n".into(), "distributions.www.id", "is required"),
        ("[distributions.www]\nmax_inflight_paths = 10\n".into(), "distributions.www.id", "is required"),
        ("[distributions.www]\nid = \"e2abcdef123456\"\n".into(), "distributions.www.id", "not a CloudFront distribution id"),
        (format!("{DIST}max_inflight_paths = 0\n"), "distributions.www.max_inflight_paths", "must be 1..=3000 (got 0)"),
        (format!("{DIST}max_inflight_paths = 3001\n"), "distributions.www.max_inflight_paths", "must be 1..=3000 (got 3001)"),
        (format!("{DIST}max_inflight_wildcards = 0\n"), "distributions.www.max_inflight_wildcards", "must be 1..=15 (got 0)"),
        (format!("{DIST}max_inflight_wildcards = 16\n"), "distributions.www.max_inflight_wildcards", "must be 1..=15 (got 16)"),
        (format!("{DIST}catalog = \"sitemap\"\n"), "distributions.www.catalog", "\"sitemap\" is not a catalog source: expected \"none\", \"s3\", \"file\" or \"learned\""),
        (format!("{DIST}catalog = \"file\"\n"), "distributions.www.catalog_file", "is required with catalog = \"file\""),
        (format!("{DIST}catalog = \"file\"\ncatalog_file = \"\"\n"), "distributions.www.catalog_file", "must not be empty"),
        (format!("{DIST}catalog_file = \"/etc/paths.txt\"\n"), "distributions.www.catalog_file", "only read with catalog = \"file\" (catalog is \"none\")"),
        (format!("{DIST}catalog = \"s3\"\n"), "distributions.www.catalog", "no [[routing.s3]] route has distribution = \"www\""),
        (format!("{DIST}catalog = \"s3\"\n[[routing.s3]]\nbucket = \"b\"\ndistribution = \"www\"\n[distributions.api]\nid = \"EAPI\"\ncatalog = \"s3\"\n"), "distributions.api.catalog", "no [[routing.s3]] route has distribution = \"api\""),
        ("[distributions.WWW]\nid = \"E2ABCDEF123456\"\n".into(), "distributions.WWW", "lowercase"),
        ("[distributions.\"a b\"]\nid = \"E2ABCDEF123456\"\n".into(), "distributions.a b", "invalid alias"),
        (format!("{DIST}[distributions.www2]\nid = \"E2ABCDEF123456\"\n"), "distributions.www2.id", "also the id of distributions.www"),
        // [routing]
        ("[routing]\ndefault_distribution = \"E2ABCDEF123456\"\n".into(), "routing.default_distribution", "name its alias \"www\""),
        ("[[routing.s3]]\nbucket = \"b\"\ndistribution = \"api\"\n".into(), "routing.s3[0].distribution", "\"api\" is not a configured distribution"),
        ("[[routing.s3]]\nbucket = \"b\"\n".into(), "routing.s3[0].distribution", "is required"),
        ("[[routing.s3]]\ndistribution = \"www\"\n".into(), "routing.s3[0].bucket", "is required"),
        ("[[routing.s3]]\nbucket = \"b/c\"\ndistribution = \"www\"\n".into(), "routing.s3[0].bucket", "not a bucket name"),
        ("[[routing.s3]]\nbucket = \"b\"\ndistribution = \"www\"\npath_prefix = \"site\"\n".into(), "routing.s3[0].path_prefix", "must start with \"/\""),
        ("[[routing.s3]]\nbucket = \"b\"\ndistribution = \"www\"\n[[routing.s3]]\nbucket = \"c\"\ndistribution = \"www\"\nindex_document = \"a/index.html\"\n".into(), "routing.s3[1].index_document", "file name"),
        // [batching]
        ("[batching]\nquiet_seconds = 0\n".into(), "batching.quiet_seconds", "must be ≥ 1 (got 0)"),
        ("[batching]\nquiet_seconds = 30\nmax_delay_seconds = 20\n".into(), "batching.max_delay_seconds", "must be ≥ batching.quiet_seconds (30) (got 20)"),
        ("[batching]\nmax_delay_seconds = 50000\n".into(), "batching.max_delay_seconds", "must be 1..=43200"),
        ("[batching]\nmax_batch_paths = 0\n".into(), "batching.max_batch_paths", "must be 1..=3000 (got 0)"),
        ("[batching]\nmax_batch_paths = 3001\n".into(), "batching.max_batch_paths", "must be 1..=3000 (got 3001)"),
        // [coalesce]
        ("[coalesce]\nwildcard_threshold = 1\n".into(), "coalesce.wildcard_threshold", "must be ≥ 2 (got 1)"),
        ("[coalesce]\nmin_wildcard_depth = 0\n".into(), "coalesce.min_wildcard_depth", "must be ≥ 1 (got 0)"),
        ("[coalesce]\nstrategy = \"cheapest\"\n".into(), "coalesce.strategy", "expected \"threshold\" or \"least_blast\""),
        ("[coalesce]\nblast_per_path = 0\n".into(), "coalesce.blast_per_path", "must be > 0"),
        ("[coalesce]\nblast_per_path = -5\n".into(), "coalesce.blast_per_path", "must be > 0"),
        ("[coalesce]\nblast_per_path = \"lots\"\n".into(), "coalesce.blast_per_path", "wrong type"),
        // [catalog]
        ("[catalog]\nrefresh_seconds = 0\n".into(), "catalog.refresh_seconds", "must be 1..=604800 (got 0)"),
        // [cloudfront]
        ("[cloudfront]\ncreate_per_second = 0\n".into(), "cloudfront.create_per_second", "must be ≥ 0.000001"),
        ("[cloudfront]\ncreate_per_second = -1.5\n".into(), "cloudfront.create_per_second", "must be ≥ 0.000001"),
        ("[cloudfront]\ncreate_per_second = 1e-300\n".into(), "cloudfront.create_per_second", "(got 1e-300)"),
        ("[cloudfront]\ncreate_per_second = 1e-9\n".into(), "cloudfront.create_per_second", "one call in 11.6 days"),
        ("[cloudfront]\ncreate_per_second = nan\n".into(), "cloudfront.create_per_second", "(got NaN)"),
        ("[cloudfront]\ncreate_per_second = inf\n".into(), "cloudfront.create_per_second", "(got inf)"),
        ("[cloudfront]\ncreate_per_second = 1800\n".into(), "cloudfront.create_per_second", "≤ 100"),
        ("[cloudfront]\ncreate_burst = 0\n".into(), "cloudfront.create_burst", "must be 1..=100 (got 0)"),
        ("[cloudfront]\npoll_interval_seconds = 0\n".into(), "cloudfront.poll_interval_seconds", "must be 1..=3600 (got 0)"),
        ("[cloudfront]\nreconcile_interval_seconds = 0\n".into(), "cloudfront.reconcile_interval_seconds", "must be 1..=86400 (got 0)"),
        ("[cloudfront]\nsimulate_completion_seconds = 86401\n".into(), "cloudfront.simulate_completion_seconds", "must be 0..=86400"),
        ("[cloudfront]\nmode = \"fake\"\n".into(), "cloudfront.mode", "expected \"aws\" or \"simulate\""),
        // [budget]
        ("[budget]\nmonthly_paths = 0\n".into(), "budget.monthly_paths", "must be ≥ 1 (got 0)"),
        ("[budget]\nledger_path = \"\"\n".into(), "budget.ledger_path", "must not be empty"),
        ("[budget]\npacing = \"fast\"\n".into(), "budget.pacing", "expected \"even\" or \"none\""),
        ("[budget]\non_exhausted = \"panic\"\n".into(), "budget.on_exhausted", "expected \"hold\", \"coalesce\" or \"overspend\""),
        // [coordination]
        ("[aws]\ndynamodb_endpoint_url = \"localhost\"\n".into(), "aws.dynamodb_endpoint_url", "http://"),
        (format!("{src}[budget]\nstore = \"dynamodb\"\n[coordination]\nkind = \"dynamodb\"\nlease_seconds = 2\n"), "coordination.lease_seconds", "must be 3..=3600 (got 2)"),
        ("[coordination]\nlease_seconds = 3601\n".into(), "coordination.lease_seconds", "(got 3601)"),
        (format!("{src}[coordination]\nkind = \"dynamodb\"\n"), "budget.store", "must be \"dynamodb\""),
        ("[budget]\nstore = \"dynamodb\"\n[coordination]\nkind = \"dynamodb\"\n".into(), "coordination.kind", "source.kind = \"sqs\""),
        ("[budget]\nstore = \"dynamodb\"\n[coordination]\ntable = \"a b\"\n".into(), "coordination.table", "not a DynamoDB table name"),
        ("[coordination]\nreplica_id = \"\"\n".into(), "coordination.replica_id", "must not be empty"),
        ("[coordination]\nreplica_id = \"web 1\"\n".into(), "coordination.replica_id", "A-Z, a-z, 0-9"),
        (format!("[coordination]\nreplica_id = \"{}\"\n", "r".repeat(65)), "coordination.replica_id", "1 to 64"),
        ("[coordination]\nkind = \"zookeeper\"\n".into(), "coordination.kind", "expected \"none\" or \"dynamodb\""),
        ("[budget]\nstore = \"s3\"\n".into(), "budget.store", "expected \"file\" or \"dynamodb\""),
        // [shutdown]
        ("[shutdown]\ngrace_seconds = 3601\n".into(), "shutdown.grace_seconds", "must be 0..=3600 (got 3601)"),
        // [http]
        ("[http]\nlisten = \"localhost:9470\"\n".into(), "http.listen", "is not an IP address and port"),
        ("[http]\nlisten = \"127.0.0.1\"\n".into(), "http.listen", "is not an IP address and port"),
        ("[http]\nenqueue_token = \"\"\n".into(), "http.enqueue_token", "must not be empty"),
        ("[http]\nenqueue_token = \" s3cret\"\n".into(), "http.enqueue_token", "must not start or end with white space"),
        ("[http]\nenqueue_token = \"s3cret\\n\"\n".into(), "http.enqueue_token", "must not start or end with white space"),
        ("[http]\nenqueue_token = \"s3 cret\"\n".into(), "http.enqueue_token", "visible ASCII"),
        ("[http]\nenqueue_token = \"sécret\"\n".into(), "http.enqueue_token", "visible ASCII"),
        ("[http]\nmax_connections = 0\n".into(), "http.max_connections", "must be 1..=65536 (got 0)"),
        ("[http]\nheader_timeout_seconds = 0\n".into(), "http.header_timeout_seconds", "must be 1..=3600 (got 0)"),
        ("[http]\nrequest_timeout_seconds = 3601\n".into(), "http.request_timeout_seconds", "must be 1..=3600 (got 3601)"),
        // [log]
        ("[log]\nformat = \"xml\"\n".into(), "log.format", "expected \"text\" or \"json\""),
        ("[log]\nlevel = \"loud\"\n".into(), "log.level", "is not a level"),
        // types
        ("[batching]\nquiet_seconds = \"5s\"\n".into(), "batching.quiet_seconds", "wrong type"),
        ("[batching]\nquiet_seconds = -1\n".into(), "batching.quiet_seconds", "got integer `-1`, expected a whole number"),
        ("[batching]\nquiet_seconds = 1.5\n".into(), "batching.quiet_seconds", "got floating point `1.5`, expected a whole number"),
        ("[budget]\nmonthly_paths = 1e3\n".into(), "budget.monthly_paths", "wrong type"),
        ("[distributions.www]\nid = 5\n".into(), "distributions.www.id", "wrong type"),
        ("[routing]\ns3 = 5\n".into(), "routing.s3", "expected a list"),
        ("[log]\nlevel = 3\n".into(), "log.level", "wrong type"),
        ("[coalesce]\nallow_root_wildcard = \"maybe\"\n".into(), "coalesce.allow_root_wildcard", "maybe"),
    ];
    let mut failures = Vec::new();
    for (extra, key, fragment) in &cases {
        let found = match load(extra, &[]) {
            Ok(_) => vec![],
            Err(ConfigError::Invalid { problems, .. }) => problems,
            Err(e) => {
                failures.push(format!("{key}: unexpected error {e}"));
                continue;
            }
        };
        let ok = found.len() == 1 && found[0].key == *key && found[0].message.contains(fragment);
        if !ok {
            failures.push(format!(
                "{key} / {fragment:?}: got {:?}",
                found.iter().map(ToString::to_string).collect::<Vec<_>>()
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn catalogs_load_with_their_sources() {
    let cfg = load(
        "[coalesce]\nstrategy = \"least_blast\"\nblast_per_path = 20\n\
         [distributions.www]\nid = \"E2ABCDEF123456\"\ncatalog = \"s3\"\n\
         [distributions.docs]\nid = \"E3DOCS\"\ncatalog = \"file\"\ncatalog_file = \"/etc/docs.txt\"\n\
         [routing]\ndefault_distribution = \"www\"\n\
         [[routing.s3]]\nbucket = \"site\"\ndistribution = \"www\"\n",
        &[],
    )
    .unwrap();
    assert_eq!(cfg.coalesce.strategy, Strategy::LeastBlast);
    assert_eq!(cfg.coalesce.blast_per_path, 20.0);
    assert_eq!(cfg.distributions["www"].catalog, CatalogSource::S3);
    assert_eq!(
        cfg.distributions["docs"].catalog_file.as_deref(),
        Some(Path::new("/etc/docs.txt"))
    );
    let defaults = load("", &[]).unwrap();
    assert_eq!(defaults.coalesce.strategy, Strategy::Threshold);
    assert_eq!(defaults.coalesce.blast_per_path, 50.0);
    assert_eq!(defaults.distributions["www"].catalog, CatalogSource::None);
    assert_eq!(defaults.catalog.refresh_seconds, 3600);
}

#[test]
fn a_token_problem_never_shows_the_token() {
    let found = problems("[http]\nenqueue_token = \" hunter2 \"\n", &[]);
    assert_eq!(found.len(), 1);
    assert!(!found[0].to_string().contains("hunter2"), "{}", found[0]);
}

#[test]
fn an_exposed_listener_without_a_token_is_warned_about() {
    let warnings = |extra: &str| load(extra, &[]).expect("valid").warnings();
    for listen in ["0.0.0.0:9470", "10.1.2.3:9470", "[::]:9470"] {
        let w = warnings(&format!("[http]\nlisten = \"{listen}\"\n"));
        assert_eq!(w.len(), 1, "{listen}: {w:?}");
        assert!(w[0].contains("http.enqueue_token is not set"), "{w:?}");
        assert!(
            w[0].contains(listen.trim_start_matches('[').split(']').next().unwrap()),
            "{w:?}"
        );
    }
    for quiet in [
        "[http]\nlisten = \"127.0.0.1:9470\"\n",
        "[http]\nlisten = \"[::1]:9470\"\n",
        "[http]\nlisten = \"0.0.0.0:9470\"\nenqueue_token = \"s3cret\"\n",
        "",
    ] {
        assert!(warnings(quiet).is_empty(), "{quiet}");
    }
}

#[test]
fn no_distribution_is_an_error() {
    let msg = message(Config::from_parts(
        Some("[source]\nkind = \"local\"\n"),
        ORIGIN,
        [],
    ));
    assert!(
        msg.starts_with("test.toml: distributions must configure at least one"),
        "{msg}"
    );
}

#[test]
fn unknown_keys_are_refused_by_name() {
    let found = match Config::from_parts(Some(&format!("bogus = 1\n{}", text(""))), ORIGIN, []) {
        Err(ConfigError::Invalid { problems, .. }) => problems,
        other => panic!("{other:?}"),
    };
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].key, "bogus");
    let m = &found[0].message;
    assert!(
        m.starts_with("is not a known key (expected one of `aws`"),
        "{m}"
    );
    let m = only_problem("[batching]\nquiet_secs = 3\n", "batching.quiet_secs");
    assert!(m.contains("quiet_seconds"), "{m}");
    only_problem("[batch]\nquiet_seconds = 3\n", "batch");
    only_problem(&format!("{DIST}idd = \"x\"\n"), "distributions.www.idd");
    only_problem(
        "[[routing.s3]]\nbucket = \"b\"\ndistribution = \"www\"\nprefix = \"/\"\n",
        "routing.s3[0].prefix",
    );
    assert_eq!(
        message(load("[http]\ntoken = \"x\"\n", &[])),
        "test.toml: line 6: http.token is not a known key (expected one of `listen`, `enqueue_token`, `max_connections`, `header_timeout_seconds`, `request_timeout_seconds`)"
    );
}

#[test]
fn a_value_that_does_not_fit_gives_the_line() {
    let text = "[source]\nkind = \"local\"\n[distributions.www]\nid = \"E2ABCDEF123456\"\n\
                [[routing.s3]]\nbucket = \"a\"\ndistribution = \"www\"\n\
                [[routing.s3]]\nbucket = \"b\"\ndistribution = \"www\"\nkey_prefx = \"x/\"\n";
    let msg = message(Config::from_parts(Some(text), ORIGIN, []));
    assert!(
        msg.starts_with("test.toml: line 11: routing.s3[1].key_prefx is not a known key"),
        "{msg}"
    );
}

#[test]
fn a_syntax_error_gives_the_line() {
    let msg = message(Config::from_parts(
        Some("[source]\nkind = \"local\"\n\n[oops\n"),
        ORIGIN,
        [],
    ));
    assert!(msg.starts_with("test.toml: line 4, column "), "{msg}");
    assert_eq!(msg.lines().count(), 1, "{msg}");
    let msg = message(Config::from_parts(
        Some("[source]\nkind = \"local\"\nkind = \"sqs\"\n"),
        ORIGIN,
        [],
    ));
    assert!(msg.starts_with("test.toml: line 3, column 1: "), "{msg}");
}

#[test]
fn env_overrides_numbers_floats_bools_and_choices() {
    let cfg = load(
        "",
        &[
            ("CFPURGE__BATCHING__QUIET_SECONDS", "9"),
            ("CFPURGE__CLOUDFRONT__CREATE_PER_SECOND", "2.5"),
            ("CFPURGE__COALESCE__ALLOW_ROOT_WILDCARD", "true"),
            ("CFPURGE__BUDGET__PACING", "none"),
            ("CFPURGE__BUDGET__ON_EXHAUSTED", "hold"),
            ("CFPURGE__HTTP__LISTEN", "0.0.0.0:9999"),
            ("CFPURGE__AWS__REGION", "eu-west-1"),
            ("CFPURGE__COALESCE__STRATEGY", "least_blast"),
            ("CFPURGE__COALESCE__BLAST_PER_PATH", "12.5"),
            ("CFPURGE__CATALOG__REFRESH_SECONDS", "600"),
        ],
    )
    .unwrap();
    assert_eq!(cfg.coalesce.strategy, Strategy::LeastBlast);
    assert_eq!(cfg.coalesce.blast_per_path, 12.5);
    assert_eq!(cfg.catalog.refresh_seconds, 600);
    assert_eq!(cfg.batching.quiet_seconds, 9);
    assert_eq!(cfg.cloudfront.create_per_second, 2.5);
    assert!(cfg.coalesce.allow_root_wildcard);
    assert_eq!(cfg.budget.pacing, Pacing::None);
    assert_eq!(cfg.budget.on_exhausted, OnExhausted::Hold);
    assert_eq!(cfg.http.listen.to_string(), "0.0.0.0:9999");
    assert_eq!(cfg.aws.region.as_deref(), Some("eu-west-1"));
}

#[test]
fn a_learned_catalog_is_kept_in_either_budget_store() {
    let dist = "[distributions.www]\nid = \"E2ABCDEF123456\"\ncatalog = \"learned\"\n";
    let cfg = load(dist, &[]).expect("learned with budget.store = \"file\"");
    assert_eq!(cfg.distributions["www"].catalog, CatalogSource::Learned);
    assert_eq!(cfg.budget.store, StoreKind::File);
    // With the ledger in DynamoDB, alone or with replicas.
    let cfg = load(&format!("{dist}[budget]\nstore = \"dynamodb\"\n"), &[])
        .expect("learned with budget.store = \"dynamodb\"");
    assert_eq!(cfg.distributions["www"].catalog, CatalogSource::Learned);
    assert_eq!(cfg.budget.store, StoreKind::Dynamodb);
    let cfg = load(
        &format!(
            "[source]\nqueue_url = \"https://sqs.eu-west-1.amazonaws.com/123456789012/q\"\n\
             {dist}[budget]\nstore = \"dynamodb\"\n[coordination]\nkind = \"dynamodb\"\n"
        ),
        &[],
    )
    .expect("learned with replicas");
    assert_eq!(cfg.coordination.kind, CoordinationKind::Dynamodb);
}

#[test]
fn env_overrides_beat_the_file() {
    let cfg = load(
        "[batching]\nquiet_seconds = 3\n",
        &[("CFPURGE__BATCHING__QUIET_SECONDS", "9")],
    )
    .unwrap();
    assert_eq!(cfg.batching.quiet_seconds, 9);
    assert_eq!(
        cfg.batching.max_delay_seconds, 60,
        "other keys keep their default"
    );
}

#[test]
fn env_overrides_reach_into_the_distribution_map() {
    let cfg = load(
        "",
        &[
            ("CFPURGE__DISTRIBUTIONS__WWW__ID", "E9ZZZZZZZZZZZZ"),
            ("CFPURGE__DISTRIBUTIONS__WWW__MAX_INFLIGHT_WILDCARDS", "5"),
            ("CFPURGE__DISTRIBUTIONS__API__ID", "E3APIAPIAPIAPI"),
            ("CFPURGE__ROUTING__DEFAULT_DISTRIBUTION", "api"),
        ],
    )
    .unwrap();
    assert_eq!(cfg.distributions["www"].id, "E9ZZZZZZZZZZZZ");
    assert_eq!(cfg.distributions["www"].max_inflight_wildcards, 5);
    assert_eq!(cfg.distributions["www"].max_inflight_paths, 3000);
    assert_eq!(cfg.distributions["api"].id, "E3APIAPIAPIAPI");
    assert_eq!(cfg.default_distribution().map(|(a, _)| a), Some("api"));
}

#[test]
fn env_alone_is_enough_without_a_file() {
    let cfg = Config::from_parts(
        None,
        "(environment)",
        env(&[
            ("CFPURGE__SOURCE__KIND", "local"),
            ("CFPURGE__DISTRIBUTIONS__WWW__ID", "E2ABCDEF123456"),
        ]),
    )
    .unwrap();
    assert_eq!(cfg.routing.default_distribution.as_deref(), Some("www"));
}

#[test]
fn env_strings_are_taken_verbatim() {
    // The config crate's try_parsing would turn these into 12 and inf.
    for token in ["0012", "8e12345", "true", "1.50"] {
        let cfg = load("", &[("CFPURGE__HTTP__ENQUEUE_TOKEN", token)]).unwrap();
        assert_eq!(cfg.http.enqueue_token.unwrap().expose(), token);
    }
}

#[test]
fn bad_env_values_name_the_variable() {
    let found = problems("", &[("CFPURGE__BATCHING__QUIET_SECONDS", "abc")]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].key, "batching.quiet_seconds");
    assert!(
        found[0]
            .message
            .contains("CFPURGE__BATCHING__QUIET_SECONDS"),
        "{}",
        found[0]
    );

    let found = problems("", &[("CFPURGE__BATCHING__QUIET_SECONDS", "9.5")]);
    assert_eq!(found[0].key, "batching.quiet_seconds", "no silent rounding");

    let found = problems("", &[("CFPURGE__BATCHING__QUIET_SECONDS", "0")]);
    assert_eq!(
        found[0].to_string(),
        "batching.quiet_seconds must be ≥ 1 (got 0) (set by CFPURGE__BATCHING__QUIET_SECONDS)"
    );

    let found = problems("", &[("CFPURGE__BATCHING__QUIET_SECS", "3")]);
    assert_eq!(found[0].key, "batching.quiet_secs");
    assert!(
        found[0].message.contains("CFPURGE__BATCHING__QUIET_SECS"),
        "{}",
        found[0]
    );

    let found = problems("", &[("CFPURGE__SOURCE_QUEUE_URL", "https://x")]);
    assert_eq!(found[0].key, "source_queue_url");
    assert!(
        found[0].message.contains("is not a known key"),
        "{}",
        found[0]
    );
}

#[test]
fn single_underscore_overrides_are_not_silently_ignored() {
    let found = problems("", &[("CFPURGE_BATCHING_QUIET_SECONDS", "9")]);
    assert_eq!(found.len(), 1);
    assert!(
        found[0]
            .message
            .contains("CFPURGE__BATCHING__QUIET_SECONDS"),
        "{}",
        found[0]
    );
    // Not configuration keys: left alone.
    load(
        "",
        &[
            ("CFPURGE_CONFIG", "/x.toml"),
            ("CFPURGE_URL", "http://x"),
            ("OTHER__BATCHING__QUIET_SECONDS", "0"),
        ],
    )
    .unwrap();
}

#[test]
fn env_keys_are_lowercased_so_upper_case_aliases_are_refused() {
    // The file's "WWW" and the environment's "www" would be two distributions.
    let found = problems(
        "[distributions.WWW]\nid = \"E2ABCDEF123456\"\n",
        &[("CFPURGE__DISTRIBUTIONS__WWW__MAX_INFLIGHT_PATHS", "10")],
    );
    let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
    assert!(keys.contains(&"distributions.WWW"), "{found:?}");
}

#[test]
fn coordination_defaults_to_none_and_replicas_need_the_shared_ledger() {
    let cfg = load("", &[]).unwrap();
    assert_eq!(cfg.coordination.kind, CoordinationKind::None);
    assert_eq!(cfg.coordination.table, "cfpurge");
    assert_eq!(cfg.coordination.lease_seconds, 15);
    assert_eq!(cfg.budget.store, StoreKind::File);
    // The default replica id: host name and process id, usable in a
    // CallerReference.
    let id = cfg.coordination.replica();
    assert!(id.ends_with(&format!("-{}", std::process::id())), "{id}");
    assert!(
        id.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
        "{id}"
    );
    // The shared ledger alone, for one daemon without a disk.
    let alone = load("[budget]\nstore = \"dynamodb\"\n", &[]).unwrap();
    assert_eq!(alone.budget.store, StoreKind::Dynamodb);
    assert_eq!(alone.coordination.kind, CoordinationKind::None);
    // Replicas, set from the environment as a container would.
    let sqs = "[source]\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/1/q\"\n";
    let replicas = load(
        sqs,
        &[
            ("CFPURGE__COORDINATION__KIND", "dynamodb"),
            ("CFPURGE__COORDINATION__REPLICA_ID", "pod-a.1"),
            ("CFPURGE__COORDINATION__LEASE_SECONDS", "3"),
            ("CFPURGE__BUDGET__STORE", "dynamodb"),
            (
                "CFPURGE__AWS__DYNAMODB_ENDPOINT_URL",
                "http://127.0.0.1:5000",
            ),
        ],
    )
    .unwrap();
    assert_eq!(replicas.coordination.kind, CoordinationKind::Dynamodb);
    assert_eq!(replicas.coordination.replica(), "pod-a.1");
    assert_eq!(replicas.coordination.lease_seconds, 3);
    assert_eq!(
        replicas.aws.dynamodb_endpoint_url.as_deref(),
        Some("http://127.0.0.1:5000")
    );
    let hint = message(load("", &[("CFPURGE_COORDINATION_KIND", "dynamodb")]));
    assert!(hint.contains("CFPURGE__COORDINATION__KIND"), "{hint}");
}

#[test]
fn config_path_prefers_the_command_line() {
    assert_eq!(
        config_path(Some(Path::new("a.toml"))),
        PathBuf::from("a.toml")
    );
}

#[test]
fn check_config_redacts_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        text("[http]\nlisten = \"127.0.0.1:1\"\nenqueue_token = \"hunter2\"\n"),
    )
    .unwrap();
    let mut out = Vec::new();
    check_config(&file, &mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("enqueue_token = \"<redacted>\""), "{out}");
    assert!(!out.contains("hunter2"), "{out}");

    let cfg = Config::load(&file).unwrap();
    assert!(!format!("{cfg:?}").contains("hunter2"));
    assert!(cfg.http.enqueue_token.unwrap().matches("hunter2"));
}

#[test]
fn check_config_output_loads_again() {
    let mut out = Vec::new();
    check_config(&repo_file("config/cfpurge.example.toml"), &mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    let again = Config::from_parts(Some(&out), "effective", []).unwrap();
    assert_eq!(
        toml::to_string(&again).unwrap(),
        out.split_once('\n').unwrap().1
    );
}

#[test]
fn check_config_reports_a_missing_file() {
    let err = check_config(Path::new("/nonexistent/cfpurge.toml"), &mut Vec::new()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/nonexistent/cfpurge.toml: cannot read: "),
        "{err}"
    );
}

/// Runs the binary with no inherited `CFPURGE_*` variables plus `vars`.
fn cfpurge(args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cfpurge"));
    cmd.args(args);
    for (name, _) in std::env::vars_os() {
        if name
            .to_string_lossy()
            .to_ascii_uppercase()
            .starts_with("CFPURGE")
        {
            cmd.env_remove(name);
        }
    }
    cmd.envs(vars.iter().copied());
    cmd.output().unwrap()
}

#[test]
fn binary_check_config_prints_the_effective_toml() {
    let example = repo_file("config/cfpurge.example.toml");
    let out = cfpurge(
        &["check-config", "-c", example.to_str().unwrap()],
        &[
            ("CFPURGE__BATCHING__QUIET_SECONDS", "9"),
            ("CFPURGE__HTTP__ENQUEUE_TOKEN", "hunter2"),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table: toml::Table = stdout.parse().unwrap();
    assert_eq!(table["batching"]["quiet_seconds"].as_integer(), Some(9));
    assert_eq!(table["http"]["enqueue_token"].as_str(), Some("<redacted>"));
    assert!(!stdout.contains("hunter2"));
}

#[test]
fn binary_check_config_uses_cfpurge_config() {
    let local = repo_file("config/local.toml");
    let out = cfpurge(
        &["check-config"],
        &[("CFPURGE_CONFIG", local.to_str().unwrap())],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("mode = \"simulate\""));
}

#[test]
fn binary_check_config_exits_2_on_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, text("[batching]\nquiet_seconds = 0\n")).unwrap();
    let out = cfpurge(&["check-config", "-c", file.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: {}: batching.quiet_seconds must be ≥ 1 (got 0)",
            file.display()
        )
    );

    let out = cfpurge(&["check-config", "-c", "/nonexistent/cfpurge.toml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent/cfpurge.toml: cannot read")
    );

    let out = cfpurge(
        &[
            "check-config",
            "-c",
            repo_file("config/local.toml").to_str().unwrap(),
        ],
        &[("CFPURGE__SOURCE__POLLERS", "0")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("source.pollers must be 1..=64 (got 0) (set by CFPURGE__SOURCE__POLLERS)")
    );
}

#[test]
fn binary_without_any_configuration_says_how_to_name_one() {
    let default = std::path::Path::new(cfpurge::config::DEFAULT_CONFIG_PATH);
    assert!(
        !default.exists(),
        "{} exists on this machine: the test needs it absent",
        default.display()
    );
    for args in [&["run"][..], &["check-config"], &["enqueue", "/x"]] {
        let out = cfpurge(args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(cfpurge::config::DEFAULT_CONFIG_PATH)
                && stderr.contains("-c FILE")
                && stderr.contains("CFPURGE_CONFIG"),
            "{args:?}: {stderr}"
        );
    }
    // A file named and missing is reported as such, without the hint.
    let out = cfpurge(
        &["check-config"],
        &[("CFPURGE_CONFIG", "/nonexistent/c.toml")],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/c.toml: cannot read"),
        "{stderr}"
    );
    assert!(!stderr.contains("-c FILE"), "{stderr}");
}
