//! `cfpurge replay` as an operator runs it: the monthly table, its JSON
//! form, the batches file, and a trace with lines it cannot accept.

use std::ffi::OsStr;
use std::fs;

use crate::support::cli::cfpurge;

const CONFIG: &str = r#"
[source]
kind = "local"
[distributions.docs]
id = "E3DOCS000000001"
[cloudfront]
mode = "simulate"
[budget]
monthly_paths = 1000
"#;

/// Two months of requests (RFC 3339 times), one line that is not JSON and
/// one without paths.
const TRACE: &str = r#"{"t": "2026-01-05T10:00:00Z", "paths": ["/a/1.html", "/a/2.html"]}
{"t": "2026-01-05T10:00:01Z", "paths": ["/a/3.html"], "distribution": "docs"}
not json
{"t": "2026-01-20T08:00:00Z", "paths": []}
{"t": "2026-02-02T12:00:00Z", "paths": ["/b/1.html"]}
"#;

fn files() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("cfpurge.toml");
    fs::write(&config, CONFIG).expect("config");
    let trace = dir.path().join("trace.jsonl");
    fs::write(&trace, TRACE).expect("trace");
    (dir, config, trace)
}

#[test]
fn replay_prints_a_row_per_month_and_names_the_lines_it_refused() {
    let (dir, config, trace) = files();
    let batches = dir.path().join("batches.jsonl");
    let (code, out, err) = cfpurge(&[
        OsStr::new("replay"),
        trace.as_os_str(),
        OsStr::new("-c"),
        config.as_os_str(),
        OsStr::new("--batches"),
        batches.as_os_str(),
    ]);
    assert_eq!(code, Some(1), "bad lines make the exit status 1: {err}");
    assert!(
        err.contains("trace.jsonl:3:") && err.contains("trace.jsonl:4:"),
        "{err}"
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        [
            "month",
            "requested",
            "billed",
            "wildcards",
            "invalidations",
            "delay_p50",
            "delay_p99",
            "held_at_end",
            "price_end"
        ],
        "{out}"
    );
    let row = |month: &str| -> Vec<String> {
        lines
            .iter()
            .find(|l| l.starts_with(month))
            .unwrap_or_else(|| panic!("no row {month} in\n{out}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    // January: 3 paths in one batch (the two requests a second apart),
    // February: 1.
    assert_eq!(row("2026-01")[1..5], ["3", "3", "0", "1"], "{out}");
    assert_eq!(row("2026-02")[1..5], ["1", "1", "0", "1"], "{out}");
    assert_eq!(row("total")[1..5], ["4", "4", "0", "2"], "{out}");

    let written = fs::read_to_string(&batches).expect("batches file");
    let batches: Vec<serde_json::Value> = written
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(batches.len(), 2, "{written}");
    assert_eq!(batches[0]["distribution"], "docs");
    assert_eq!(
        batches[0]["paths"],
        serde_json::json!(["/a/1.html", "/a/2.html", "/a/3.html"])
    );
    assert_eq!(batches[0]["covered"].as_array().map(Vec::len), Some(3));
    assert!(batches[0]["t"].as_f64().is_some() && batches[0]["price"].as_f64().is_some());
}

#[test]
fn replay_json_has_the_months_and_the_total() {
    let (_dir, config, trace) = files();
    let (code, out, err) = cfpurge(&[
        OsStr::new("replay"),
        trace.as_os_str(),
        OsStr::new("-c"),
        config.as_os_str(),
        OsStr::new("--format"),
        OsStr::new("json"),
    ]);
    assert_eq!(code, Some(1), "{err}");
    let value: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let months = value["months"].as_array().expect("months");
    assert_eq!(months.len(), 2, "{out}");
    for key in [
        "month",
        "requested",
        "billed",
        "wildcards",
        "invalidations",
        "delay_p50",
        "delay_p99",
        "held_at_end",
        "price_end",
    ] {
        assert!(months[0].get(key).is_some(), "{key} missing: {out}");
    }
    assert_eq!(value["total"]["billed"], 4, "{out}");
}

#[test]
fn replay_of_a_missing_trace_is_a_runtime_error() {
    let (dir, config, _trace) = files();
    let missing = dir.path().join("nope.jsonl");
    let (code, _out, err) = cfpurge(&[
        OsStr::new("replay"),
        missing.as_os_str(),
        OsStr::new("-c"),
        config.as_os_str(),
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("nope.jsonl"), "{err}");
}

#[test]
fn replay_optimum_prints_the_optima_beside_the_blast() {
    let (dir, config, trace) = files();
    let catalog = dir.path().join("catalog.txt");
    fs::write(
        &catalog,
        "/a/1.html\n/a/2.html\n/a/3.html\n/a/4.html\n/b/1.html\n/b/2.html\n",
    )
    .expect("catalog");
    let (code, out, err) = cfpurge(&[
        OsStr::new("replay"),
        trace.as_os_str(),
        OsStr::new("-c"),
        config.as_os_str(),
        OsStr::new("--catalog"),
        catalog.as_os_str(),
        OsStr::new("--optimum"),
        OsStr::new("--format"),
        OsStr::new("json"),
    ]);
    assert_eq!(code, Some(1), "{err}");
    let value: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    for row in value["months"]
        .as_array()
        .expect("months")
        .iter()
        .chain([&value["total"]])
    {
        // The budget does not bind: every path exact, no blast, and the
        // optimum has none either.
        assert_eq!(row["blast"], 0, "{out}");
        assert_eq!(row["optimum_same_spend"], 0, "{out}");
        assert_eq!(row["optimum_paced"], 0, "{out}");
        assert_eq!(row["optimum_same_spend_ratio"], 1.0, "{out}");
        assert_eq!(row["optimum_paced_ratio"], 1.0, "{out}");
    }
    let (code, out, _) = cfpurge(&[
        OsStr::new("replay"),
        trace.as_os_str(),
        OsStr::new("-c"),
        config.as_os_str(),
        OsStr::new("--catalog"),
        catalog.as_os_str(),
        OsStr::new("--optimum"),
    ]);
    assert_eq!(code, Some(1));
    let header: Vec<&str> = out
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert!(
        header.ends_with(&[
            "price_end",
            "optimum_same_spend",
            "optimum_paced",
            "optimum_same_spend_ratio",
            "optimum_paced_ratio"
        ]),
        "{out}"
    );
    // Without a catalog there is no blast to compare: bad usage.
    let (code, _, err) = cfpurge(&[
        OsStr::new("replay"),
        trace.as_os_str(),
        OsStr::new("-c"),
        config.as_os_str(),
        OsStr::new("--optimum"),
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--catalog"), "{err}");
}
