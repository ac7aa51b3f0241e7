//! `cfpurge plan` as a user runs it: the binary, stdin in, stdout and stderr
//! and the exit status out.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn cfpurge(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cfpurge"))
        .args(args)
        // No configuration from the environment of whoever runs the tests.
        .env_remove("CFPURGE_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cfpurge");
    // A command that fails before reading its input closes the pipe early;
    // what it printed is the test, not whether it read everything.
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes());
    child.wait_with_output().expect("wait for cfpurge")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8 stdout")
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("utf-8 stderr")
}

const DENSE: &str = "/docs/a/\n/docs/b/\n/docs/c/\n/docs/d/\n/index.html\n/docs/a/\n";

#[test]
fn text_output_lists_paths_then_a_summary() {
    let o = cfpurge(&["plan", "--wildcard-threshold", "4"], DENSE);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "/docs/*\n/index.html\n\
         # requested 6, unique 5, submitted 1 exact + 1 wildcard = 2 billed, deferred 0\n"
    );
}

#[test]
fn the_text_output_plans_to_itself() {
    let first = stdout(&cfpurge(&["plan", "--wildcard-threshold", "4"], DENSE));
    let again = stdout(&cfpurge(&["plan", "--wildcard-threshold", "4"], &first));
    let paths = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(paths(&again), paths(&first));
}

#[test]
fn json_output_has_the_contract_keys() {
    let o = cfpurge(
        &["plan", "--format", "json", "--wildcard-threshold", "4"],
        DENSE,
    );
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(v["paths"], serde_json::json!(["/docs/*", "/index.html"]));
    assert_eq!(v["deferred"], serde_json::json!([]));
    assert_eq!(v["requested"], 6);
    assert_eq!(v["unique"], 5);
    assert_eq!(v["exact"], 1);
    assert_eq!(v["wildcard"], 1);
    assert_eq!(v["billed"], 2);
    assert!(
        v.get("overreach").is_none(),
        "overreach only with --universe"
    );
}

#[test]
fn bad_lines_are_reported_by_number_and_the_rest_is_planned() {
    let input = "/ok.html\nno-slash.html\n\n# a comment\n/a/*/b\n/fine/caf\u{e9}.png\n";
    let o = cfpurge(&["plan"], input);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("line 2: path must start with \"/\""), "{err}");
    assert!(
        err.contains("line 5: \"*\" is only allowed as the last character"),
        "{err}"
    );
    assert_eq!(
        stdout(&o).lines().take(2).collect::<Vec<_>>(),
        ["/fine/caf%C3%A9.png", "/ok.html"]
    );
}

#[test]
fn capacity_flags_defer_what_cannot_fit() {
    let o = cfpurge(
        &["plan", "--max-exact", "1", "--format", "json"],
        "/b\n/a\n",
    );
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(v["paths"], serde_json::json!(["/b"]));
    assert_eq!(v["deferred"], serde_json::json!(["/a"]));
    let o = cfpurge(&["plan", "--budget", "1"], "/d/1\n/d/2\n");
    assert_eq!(stdout(&o).lines().next(), Some("/d/*"));
}

#[test]
fn universe_reports_overreach() {
    let dir = tempfile::tempdir().expect("tempdir");
    let universe = dir.path().join("tree.txt");
    std::fs::write(
        &universe,
        "/docs/a/\n/docs/b/\n/docs/c/\n/docs/d/\n/docs/e/\n/docs/f/\n/other/\nnot-a-path\n",
    )
    .expect("write universe");
    let u = universe.to_str().expect("utf-8 path");
    let o = cfpurge(
        &[
            "plan",
            "--wildcard-threshold",
            "4",
            "--universe",
            u,
            "--format",
            "json",
        ],
        DENSE,
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(
        v["overreach"], 2,
        "/docs/e/ and /docs/f/ were not asked for"
    );
    assert!(
        stderr(&o).contains("1 line(s) skipped, first at line 8"),
        "{}",
        stderr(&o)
    );
    let text = stdout(&cfpurge(
        &["plan", "--wildcard-threshold", "4", "--universe", u],
        DENSE,
    ));
    assert!(text.contains(", over-reach 2\n"), "{text}");
}

#[test]
fn show_overreach_lists_the_pages_the_wildcards_reach_unasked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let universe = dir.path().join("tree.txt");
    std::fs::write(
        &universe,
        "/docs/f/\n/docs/a/\n/docs/e/\n/docs/e/\n/other/\n/docs/b/\n",
    )
    .expect("write universe");
    let u = universe.to_str().expect("utf-8 path");
    let args = ["plan", "--wildcard-threshold", "4", "--universe", u];
    let o = cfpurge(&[&args[..], &["--show-overreach"]].concat(), DENSE);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "/docs/*\n/index.html\n\
         # requested 6, unique 5, submitted 1 exact + 1 wildcard = 2 billed, deferred 0, over-reach 2\n\
         # over-reach /docs/e/\n\
         # over-reach /docs/f/\n"
    );
    let o = cfpurge(
        &[&args[..], &["--show-overreach", "--format", "json"]].concat(),
        DENSE,
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(v["overreach"], 2);
    assert_eq!(
        v["overreach_paths"],
        serde_json::json!(["/docs/e/", "/docs/f/"])
    );
    // Listed only when asked for.
    let o = cfpurge(&[&args[..], &["--format", "json"]].concat(), DENSE);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert!(v.get("overreach_paths").is_none(), "{v}");
    // It needs a universe to list from.
    let o = cfpurge(&["plan", "--show-overreach"], DENSE);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--universe"), "{}", stderr(&o));
}

#[test]
fn a_reader_that_stops_early_ends_the_plan_quietly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cfpurge"))
        .args(["plan"])
        .env_remove("CFPURGE_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cfpurge");
    // Closed before cfpurge writes anything (it reads all its input first).
    drop(child.stdout.take());
    let input: String = (0..2000).map(|i| format!("/p/{i}.html\n")).collect();
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write the paths");
    let o = child.wait_with_output().expect("wait for cfpurge");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stderr(&o), "");
}

#[test]
fn a_missing_universe_file_is_a_runtime_error() {
    let o = cfpurge(&["plan", "--universe", "/nonexistent/tree.txt"], DENSE);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot read the universe file /nonexistent/tree.txt"));
}

#[test]
fn an_unknown_distribution_in_a_configuration_is_bad_usage() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/local.toml");
    let o = cfpurge(&["plan", "-c", config, "--distribution", "nope"], DENSE);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--distribution \"nope\" is not a configured distribution"));
    let o = cfpurge(&["plan", "-c", config, "--distribution", "www"], DENSE);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn a_named_configuration_that_does_not_load_is_bad_usage() {
    let o = cfpurge(&["plan", "-c", "/nonexistent/cfpurge.toml"], DENSE);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).starts_with("error: "), "{}", stderr(&o));
}
