//! `cfpurge run` whose CloudFront answers a first purge and then refuses
//! every call (503 after the SDK's own retries): `/v1/status`, the
//! status page and `cfpurge status`, through the binary, name the error and
//! what the paths wait for, and show the reservation kept on doubt apart.
//! The daemon's own paused-time test covers the same in detail; this one
//! proves the binary's wiring (the AWS SDK's error, the HTTP server, the
//! command line).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::cli::cfpurge;
use crate::support::fake_cloudfront::{FakeCloudFront, Fault};
use crate::support::moto::free_port;

const DIST: &str = "E2ABCDEF123456";

/// Stops the daemon this test started, by its process id, whatever happens.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn get(url: &str) -> Option<String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .ok()?;
    client.get(url).send().await.ok()?.text().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_stuck_on_cloudfront_is_explained_everywhere() {
    let fake = FakeCloudFront::start(Duration::from_secs(60)).await;
    fake.add_distribution(DIST);
    let folder = tempfile::tempdir().expect("folder");
    let port = free_port();
    let config = format!(
        r#"
[aws]
region = "us-east-1"
cloudfront_endpoint_url = "{endpoint}"
[source]
kind = "local"
[distributions.www]
id = "{DIST}"
[budget]
ledger_path = "{ledger}"
[http]
listen = "127.0.0.1:{port}"
"#,
        endpoint = fake.endpoint(),
        ledger = folder.path().join("ledger.json").display(),
    );
    let file = folder.path().join("cfpurge.toml");
    std::fs::write(&file, config).expect("write the configuration");
    let _daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_cfpurge"))
            .args(["run", "-c"])
            .arg(&file)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start cfpurge"),
    );
    let url = format!("http://127.0.0.1:{port}");
    let status = || async { get(&format!("{url}/v1/status")).await };

    let enqueue = |paths: &[&str]| {
        let mut args = vec!["enqueue", "--url", &url, "--urgent"];
        args.extend_from_slice(paths);
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
        let (code, out, err) = cfpurge(&args);
        assert_eq!(code, Some(0), "{out}{err}");
    };

    // Started, and one purge went through: nothing holds a request sent
    // now but CloudFront.
    let deadline = Instant::now() + Duration::from_secs(30);
    while status().await.is_none() {
        assert!(Instant::now() < deadline, "cfpurge never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    enqueue(&["/first.html"]);
    while fake.invalidations(DIST).is_empty() {
        assert!(Instant::now() < deadline, "the first purge never went out");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fake.faults()
        .fail_with_probability(Fault::ServiceUnavailable, 1.0);
    enqueue(&["/docs/", "/pricing/"]);

    // Two failed creates (each after the SDK's three attempts).
    let deadline = Instant::now() + Duration::from_secs(60);
    let json = loop {
        let body = status().await.unwrap_or_default();
        let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let www = &json["distributions"]["www"];
        if www["last_error"]["since_success"].as_u64().unwrap_or(0) >= 2
            && www["waiting"]["on"] == "retry"
        {
            break json;
        }
        assert!(Instant::now() < deadline, "never stuck on a retry: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(fake.invalidations(DIST).len(), 1);
    let www = &json["distributions"]["www"];
    assert_eq!(www["pending_paths"], 2, "{www}");
    assert_eq!(www["last_error"]["code"], "server_error", "{www}");
    assert_eq!(
        www["last_error"]["operation"], "CreateInvalidation",
        "{www}"
    );
    assert!(
        www["last_error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("ServiceUnavailable")),
        "{www}"
    );
    // The first purge's path is spent; the two of the lost creates are
    // reserved.
    assert_eq!(json["budget"]["used"], 3, "{json}");
    assert_eq!(json["budget"]["reserved"], 2, "{json}");
    assert_eq!(
        json["mode"],
        serde_json::json!({"source": "local", "cloudfront": "aws"})
    );

    let page = get(&format!("{url}/")).await.expect("the page");
    for text in [
        "<span class=\"mode test\">local queue</span>",
        "<span class=\"mode\">AWS CloudFront</span>",
        "Last CloudFront error: server_error</b> on CreateInvalidation",
        "ServiceUnavailable",
        "<b>2</b><span>of them reserved on doubt</span>",
        "2 of the 3 paths used are reserved",
    ] {
        assert!(page.contains(text), "{text:?} missing from {page}");
    }
    assert!(page.contains("<b>Waiting for: "), "{page}");

    let (code, out, err) = cfpurge(&["status".as_ref(), "--url".as_ref(), url.as_ref()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with(&format!(
            "cfpurge {} (source local, cloudfront aws)\n",
            env!("CARGO_PKG_VERSION")
        )),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("www: CloudFront error server_error on CreateInvalidation at ")),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("www: waiting for ")),
        "{out}"
    );
    assert!(out.contains("used 3 of 1000 (2 reserved on doubt"), "{out}");

    // Ready all along, saying why the purges wait.
    let ready = get(&format!("{url}/readyz")).await.expect("/readyz");
    assert!(
        ready.starts_with("ready\ncloudfront failing on www: "),
        "{ready}"
    );
}
