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

/// A site: /docs/ serves 20 pages, /blog/ 4, and the home page.
fn site(dir: &std::path::Path) -> String {
    let mut text = String::from("# served paths\n/index.html\n");
    for i in 0..20 {
        text.push_str(&format!("/docs/p{i}/\n"));
    }
    for i in 0..4 {
        text.push_str(&format!("/blog/b{i}.html\n"));
    }
    let path = dir.join("site.txt");
    std::fs::write(&path, text).expect("write catalog");
    path.to_str().expect("utf-8 path").to_owned()
}

/// Ten docs pages and three blog posts.
const BATCH: &str = "/docs/p0/\n/docs/p1/\n/docs/p2/\n/docs/p3/\n/docs/p4/\n/docs/p5/\n\
                     /docs/p6/\n/docs/p7/\n/docs/p8/\n/docs/p9/\n/blog/b0.html\n/blog/b1.html\n/blog/b2.html\n";

#[test]
fn a_catalog_reports_the_blast_of_the_threshold_plan() {
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog = site(dir.path());
    let o = cfpurge(&["plan", "--catalog", &catalog, "--format", "json"], BATCH);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    // /docs/* purges the 10 pages nobody asked for; the blog stays exact.
    assert_eq!(
        v["paths"],
        serde_json::json!(["/blog/b0.html", "/blog/b1.html", "/blog/b2.html", "/docs/*"])
    );
    assert_eq!(v["blast"], 10);
    assert_eq!(v["strategy"], "threshold");
    let text = stdout(&cfpurge(&["plan", "--catalog", &catalog], BATCH));
    assert!(text.ends_with(", blast 10 (threshold)\n"), "{text}");
}

#[test]
fn least_blast_trades_billed_paths_for_blast_by_the_price() {
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog = site(dir.path());
    let run = |price: &str| {
        let o = cfpurge(
            &[
                "plan",
                "--catalog",
                &catalog,
                "--strategy",
                "least_blast",
                "--blast-per-path",
                price,
                "--format",
                "json",
            ],
            BATCH,
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        serde_json::from_str::<serde_json::Value>(&stdout(&o)).expect("json")
    };
    // At half an object per path, nothing is worth purging beyond the
    // request (/blog/* would cost 0.5 + 1 / 0.5 for its three paths' 1.5).
    let v = run("0.5");
    assert_eq!(
        (v["billed"].as_u64(), v["blast"].as_u64()),
        (Some(13), Some(0))
    );
    assert_eq!(v["strategy"], "least_blast");
    // At 2: /docs/* saves 9 paths for 10 objects (cost 1 + 10/2 < 10),
    // /blog/* saves 2 for 1 (1 + 1/2 < 3).
    let v = run("2");
    assert_eq!(v["paths"], serde_json::json!(["/blog/*", "/docs/*"]));
    assert_eq!(v["blast"], 11);
    // A higher price never bills more.
    assert!(run("1000")["billed"].as_u64() <= Some(2));
}

#[test]
fn least_blast_without_a_catalog_plans_with_threshold_and_says_so() {
    let o = cfpurge(&["plan", "--strategy", "least_blast"], BATCH);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("least_blast needs a catalog"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stdout(&o).lines().next(), Some("/blog/b0.html"));
    assert!(!stdout(&o).contains("blast"), "{}", stdout(&o));
}

#[test]
fn a_catalog_that_cannot_be_read_is_a_runtime_error_with_its_line() {
    let o = cfpurge(&["plan", "--catalog", "/nonexistent/site.txt"], BATCH);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot read the catalog: /nonexistent/site.txt: cannot read"),
        "{}",
        stderr(&o)
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "/a.html\n\n/b/*\n").expect("write");
    let o = cfpurge(&["plan", "--catalog", bad.to_str().expect("utf-8")], BATCH);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("bad.txt: line 3: \"/b/*\" is a wildcard"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_strategy_or_price_is_bad_usage() {
    let o = cfpurge(&["plan", "--strategy", "cheapest"], BATCH);
    assert_eq!(o.status.code(), Some(2));
    let o = cfpurge(&["plan", "--blast-per-path", "0"], BATCH);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--blast-per-path must be > 0"),
        "{}",
        stderr(&o)
    );
}

fn config_with(dir: &std::path::Path, distribution: &str) -> String {
    let path = dir.join("cfpurge.toml");
    std::fs::write(&path, format!("[source]\nkind = \"local\"\n{distribution}"))
        .expect("write config");
    path.to_str().expect("utf-8").to_owned()
}

#[test]
fn the_catalog_command_describes_a_file_catalog() {
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog = site(dir.path());
    let config = config_with(
        dir.path(),
        &format!(
            "[distributions.www]\nid = \"E2ABCDEF123456\"\ncatalog = \"file\"\ncatalog_file = \"{catalog}\"\n"
        ),
    );
    let o = cfpurge(&["catalog", "-c", &config, "--distribution", "www"], "");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.starts_with(
            "distribution www: catalog from file\nobjects 25\ndirectories 23\nmemory "
        ),
        "{text}"
    );
    assert!(text.contains("\ntime "), "{text}");
    let o = cfpurge(
        &[
            "catalog",
            "-c",
            &config,
            "--distribution",
            "E2ABCDEF123456",
            "--format",
            "json",
        ],
        "",
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(v["distribution"], "www");
    assert_eq!(v["source"], "file");
    assert_eq!(v["objects"], 25);
    // "/", "/docs/", "/blog/" and each page.
    assert_eq!(v["directories"], 23);
    assert!(v["memory_bytes"].as_u64() > Some(0));
    assert!(v["seconds"].as_f64().is_some());
}

#[test]
fn the_catalog_command_fails_by_cause() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_with(
        dir.path(),
        "[distributions.www]\nid = \"E2ABCDEF123456\"\ncatalog = \"file\"\ncatalog_file = \"/nonexistent/site.txt\"\n\
         [distributions.api]\nid = \"E3API\"\n",
    );
    // The source cannot be read: 1.
    let o = cfpurge(&["catalog", "-c", &config, "--distribution", "www"], "");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("/nonexistent/site.txt: cannot read"),
        "{}",
        stderr(&o)
    );
    // Nothing to build, or no such distribution: 2.
    let o = cfpurge(&["catalog", "-c", &config, "--distribution", "api"], "");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("distributions.api.catalog is \"none\""),
        "{}",
        stderr(&o)
    );
    let o = cfpurge(&["catalog", "-c", &config, "--distribution", "nope"], "");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("\"nope\" is not a configured distribution"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn tag_lines_are_planned_as_tags_and_comments_stay_comments() {
    let input = "#Blog\n/docs/a/\n/docs/b/\n#blog\n# a comment\n#\n#news\n#bad,tag\n";
    let o = cfpurge(&["plan", "--wildcard-threshold", "2"], input);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("line 8: character ',' at character 4 is not allowed in a tag"),
        "{err}"
    );
    assert_eq!(
        stdout(&o),
        "#Blog\n#news\n/docs/*\n\
         # requested 5, unique 4, submitted 0 exact + 1 wildcard + 2 tag = 3 billed, deferred 0\n"
    );
    // The output plans to itself: its summary is a comment.
    let again = cfpurge(&["plan", "--wildcard-threshold", "2"], &stdout(&o));
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(stdout(&again).starts_with("#Blog\n#news\n/docs/*\n"));
    let json = cfpurge(&["plan", "--format", "json"], "#a\n/x\n");
    let v: serde_json::Value = serde_json::from_str(&stdout(&json)).expect("json");
    assert_eq!(v["tags"], 1);
    assert_eq!(v["exact"], 1);
    assert_eq!(v["billed"], 2);
    let help = cfpurge(&["plan", "--help"], "");
    assert!(stdout(&help).contains("cache tag"), "{}", stdout(&help));
}
