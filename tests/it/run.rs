//! `cfpurge run` as an operator starts it: the local configuration, no AWS
//! account, stopped by SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::support::moto::free_port;

#[test]
fn runs_with_the_local_configuration_until_sigterm_and_exits_0() {
    let ledger = tempfile::tempdir().expect("ledger folder");
    let mut child = local_run(ledger.path(), free_port())
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cfpurge");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let started = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("a first log line");
    assert!(started.contains("cfpurge running"), "{started}");
    // Still running a moment later.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "exited on its own"
    );
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "did not stop within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
}

/// Runs `cfpurge ARGS` and returns its output.
fn cfpurge(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cfpurge"))
        .args(args)
        .output()
        .expect("run cfpurge")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_counts_a_request_at_once_and_the_logs_are_plain_off_a_terminal() {
    let ledger = tempfile::tempdir().expect("ledger folder");
    let port = free_port();
    // As `docker logs` or a log file sees it: stderr is a pipe, and nothing
    // asks for plain output.
    let mut child = local_run(ledger.path(), port)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .env_remove("JOURNAL_STREAM")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cfpurge");
    let stderr = child.stderr.take().expect("stderr");
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut text).expect("read log");
        text
    });
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut up = false;
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("{url}/healthz")).send().await
            && r.status().is_success()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "cfpurge did not answer /healthz within 20 s");

    let sent = cfpurge(&["enqueue", "--url", &url, "/docs/", "/blog/"]);
    assert_eq!(sent.status.code(), Some(0), "{sent:?}");
    // Within the quiet window (2 s), before the daemon's next look at the
    // queue: the request is in the local queue, received or not.
    let shown = cfpurge(&["status", "--url", &url, "--format", "json"]);
    assert_eq!(shown.status.code(), Some(0), "{shown:?}");
    let status: serde_json::Value = serde_json::from_slice(&shown.stdout).expect("json");
    let queue = &status["queue"];
    assert_eq!(
        queue["visible"].as_u64().unwrap() + queue["in_flight"].as_u64().unwrap(),
        1,
        "{queue}"
    );

    // The status page shows the same, and loads nothing from elsewhere.
    let page = client.get(format!("{url}/")).send().await.expect("GET /");
    assert_eq!(page.status(), 200);
    let header = |name: &str| {
        page.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(header("content-type").starts_with("text/html"));
    assert!(header("content-security-policy").starts_with("default-src 'none'"));
    let html = page.text().await.expect("page");
    assert!(html.contains("<meta http-equiv=\"refresh\""), "{html}");
    assert!(html.contains("E1LOCALWWW0001"), "{html}");

    // A reader that stops early: cfpurge ends quietly.
    let mut reader = Command::new(env!("CARGO_BIN_EXE_cfpurge"))
        .args(["status", "--url", &url, "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cfpurge status");
    drop(reader.stdout.take());
    let out = reader.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");

    assert_eq!(stop(child), Some(0));
    let log = log.join().expect("log reader");
    assert!(log.contains("cfpurge running"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a piped log: {log}"
    );
}

#[test]
fn a_bad_configuration_exits_2_before_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[batching]\nquiet_seconds = 0\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_cfpurge"))
        .args(["run", "-c"])
        .arg(&file)
        .output()
        .expect("run cfpurge");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("batching.quiet_seconds"), "{err}");
}

/// `cfpurge run -c config/local.toml` from the repository root, listening
/// on `port`, its ledger in `folder`.
fn local_run(folder: &std::path::Path, port: u16) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cfpurge"));
    command
        .args(["run", "-c", "config/local.toml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CFPURGE__HTTP__LISTEN", format!("127.0.0.1:{port}"))
        .env("CFPURGE__BUDGET__LEDGER_PATH", folder.join("ledger.json"));
    command
}

/// The metrics docs/interface.md lists: name, type, label names (histograms without `le`).
const CONTRACT_METRICS: &[(&str, &str, &[&str])] = &[
    ("cfpurge_build_info", "gauge", &["version"]),
    ("cfpurge_messages_received_total", "counter", &[]),
    ("cfpurge_messages_deleted_total", "counter", &[]),
    ("cfpurge_messages_rejected_total", "counter", &["reason"]),
    (
        "cfpurge_paths_requested_total",
        "counter",
        &["distribution"],
    ),
    (
        "cfpurge_paths_submitted_total",
        "counter",
        &["distribution", "kind"],
    ),
    (
        "cfpurge_invalidations_created_total",
        "counter",
        &["distribution"],
    ),
    (
        "cfpurge_invalidations_completed_total",
        "counter",
        &["distribution"],
    ),
    (
        "cfpurge_cloudfront_errors_total",
        "counter",
        &["code", "distribution"],
    ),
    ("cfpurge_pending_paths", "gauge", &["distribution"]),
    ("cfpurge_pending_messages", "gauge", &[]),
    ("cfpurge_oldest_pending_seconds", "gauge", &["distribution"]),
    ("cfpurge_inflight_paths", "gauge", &["distribution", "kind"]),
    ("cfpurge_queue_messages", "gauge", &["state"]),
    ("cfpurge_budget_paths_limit", "gauge", &["account"]),
    ("cfpurge_budget_paths_used", "gauge", &["account"]),
    ("cfpurge_budget_paths_allowed", "gauge", &["account"]),
    (
        "cfpurge_request_to_invalidation_seconds",
        "histogram",
        &["distribution"],
    ),
    (
        "cfpurge_invalidation_completion_seconds",
        "histogram",
        &["distribution"],
    ),
];

/// The label names of a sample line (`name{a="x",b="y"} 1`).
fn label_names(line: &str) -> Vec<String> {
    let Some(start) = line.find('{') else {
        return Vec::new();
    };
    let end = line.rfind('}').expect("closing brace");
    let mut names: Vec<String> = line[start + 1..end]
        .split("\",")
        .filter_map(|pair| {
            pair.split_once('=')
                .map(|(k, _)| k.trim_matches(',').to_owned())
        })
        .filter(|k| k != "le")
        .collect();
    names.sort();
    names
}

/// The value of one series, e.g. `cfpurge_messages_received_total`.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} missing from\n{text}"))
        .parse()
        .expect("a number")
}

/// Starts `cfpurge run -c config/local.toml` on a free port and returns the
/// child and its base URL once `/healthz` answers.
async fn start_local(
    ledger: &std::path::Path,
    extra_env: &[(&str, &str)],
) -> (std::process::Child, String) {
    let port = free_port();
    let mut command = local_run(ledger, port);
    command
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in extra_env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("start cfpurge");
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("{url}/healthz")).send().await
            && r.status().is_success()
        {
            return (child, url);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("cfpurge did not answer /healthz within 20 s");
}

fn stop(mut child: std::process::Child) -> Option<i32> {
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("did not stop within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_run_exposes_every_contract_metric_and_counts_what_happened() {
    let ledger = tempfile::tempdir().expect("ledger folder");
    let (child, url) =
        start_local(ledger.path(), &[("CFPURGE__BATCHING__QUIET_SECONDS", "1")]).await;
    let client = reqwest::Client::new();
    let bodies = [
        r#"{"paths": ["/docs/a.html", "/docs/b.html"]}"#,
        r#"{"paths": ["/docs/c.html"]}"#,
        r#"{"paths": ["/img/1.png", "/img/2.png"], "reason": "deploy"}"#,
    ];
    for body in bodies {
        let r = client
            .post(format!("{url}/v1/purge"))
            .body(body)
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 202, "{body}");
    }
    let bad = client
        .post(format!("{url}/v1/purge"))
        .body(r#"{"paths": ["no-slash"]}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(bad.status(), 400);
    // Wait for every message to be covered and deleted.
    let mut text = String::new();
    for _ in 0..100 {
        text = client
            .get(format!("{url}/metrics"))
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("text");
        if value(&text, "cfpurge_messages_deleted_total") >= 3.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let code = stop(child);
    assert_eq!(code, Some(0));

    for (name, kind, labels) in CONTRACT_METRICS {
        assert!(
            text.lines().any(|l| l == format!("# TYPE {name} {kind}")),
            "{name} is not a {kind}"
        );
        let sample = if *kind == "histogram" {
            format!("{name}_bucket")
        } else {
            (*name).to_owned()
        };
        let samples: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(&sample) && l[sample.len()..].starts_with([' ', '{']))
            .collect();
        assert!(!samples.is_empty(), "no samples of {name}");
        for line in samples {
            assert_eq!(label_names(line), *labels, "labels of {line}");
        }
    }
    // The standard process metrics keep their names.
    assert!(text.contains("\nprocess_cpu_seconds_total "));
    // What this run did.
    assert_eq!(value(&text, "cfpurge_messages_received_total"), 3.0);
    assert_eq!(value(&text, "cfpurge_messages_deleted_total"), 3.0);
    assert_eq!(
        value(&text, "cfpurge_paths_requested_total{distribution=\"www\"}"),
        5.0
    );
    let created = value(
        &text,
        "cfpurge_invalidations_created_total{distribution=\"www\"}",
    );
    assert!((1.0..=3.0).contains(&created), "{created} invalidations");
    let billed = value(
        &text,
        "cfpurge_paths_submitted_total{distribution=\"www\",kind=\"exact\"}",
    ) + value(
        &text,
        "cfpurge_paths_submitted_total{distribution=\"www\",kind=\"wildcard\"}",
    );
    assert!((1.0..=5.0).contains(&billed), "{billed} billed");
    assert_eq!(
        value(
            &text,
            "cfpurge_request_to_invalidation_seconds_count{distribution=\"www\"}"
        ),
        3.0
    );
    assert_eq!(value(&text, "cfpurge_pending_messages"), 0.0);
    assert_eq!(
        value(
            &text,
            "cfpurge_messages_rejected_total{reason=\"invalid_path\"}"
        ),
        0.0,
        "HTTP refuses bad input before it is queued"
    );
    assert_eq!(
        value(&text, "cfpurge_budget_paths_limit{account=\"default\"}"),
        1000.0
    );
    // The ledger counts exactly what was billed.
    assert_eq!(
        value(&text, "cfpurge_budget_paths_used{account=\"default\"}"),
        billed
    );
    assert!(value(&text, "cfpurge_budget_paths_allowed{account=\"default\"}") >= billed);
}

#[test]
fn under_systemd_it_says_ready_pings_the_watchdog_and_says_stopping() {
    use std::os::unix::net::UnixDatagram;

    let folder = tempfile::tempdir().expect("socket folder");
    let socket_path = folder.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut child = local_run(folder.path(), free_port())
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "2000000")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start cfpurge");
    let mut buf = [0u8; 512];
    let mut next = || -> String {
        match socket.recv(&mut buf) {
            Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
            Err(e) => format!("<{e}>"),
        }
    };
    let first = next();
    assert!(first.lines().any(|l| l == "READY=1"), "{first:?}");
    let mut pings = 0;
    for _ in 0..20 {
        if next().lines().any(|l| l == "WATCHDOG=1") {
            pings += 1;
        }
        if pings >= 3 {
            break;
        }
    }
    assert!(pings >= 3, "{pings} watchdog pings");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    let mut stopping = false;
    for _ in 0..50 {
        let m = next();
        if m.lines().any(|l| l == "STOPPING=1") {
            stopping = true;
            break;
        }
        if m.starts_with('<') {
            break;
        }
    }
    let status = child.wait().expect("wait");
    assert!(stopping, "no STOPPING=1");
    assert_eq!(status.code(), Some(0));
}
