//! Stopping `cfpurge run` with SIGTERM, as systemd and container runtimes
//! do, against moto's SQS and the fake CloudFront: what is due is submitted
//! before the exit, what cannot be is made visible again at once, and the
//! process exits 0 within the grace period.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cfpurge::source::queue::Queue;
use cfpurge::source::sqs::SqsQueue;

use crate::support::fake_cloudfront::FakeCloudFront;
use crate::support::moto::{Moto, free_port};

const DIST: &str = "E2ABCDEF123456";
const GRACE_SECONDS: u64 = 4;

/// Starts the binary on `queue_url` and the fake endpoint, with a long quiet
/// window (nothing is due on its own during the test) and a visibility
/// timeout far longer than the test.
fn start(moto: &Moto, fake: &FakeCloudFront, queue_url: &str, ledger: &std::path::Path) -> Child {
    let config = format!(
        r#"
[aws]
region = "us-east-1"
sqs_endpoint_url = "{moto}"
cloudfront_endpoint_url = "{fake}"
[source]
queue_url = "{queue_url}"
wait_time_seconds = 1
visibility_timeout_seconds = 300
[distributions.www]
id = "{DIST}"
[batching]
quiet_seconds = 120
max_delay_seconds = 300
[budget]
pacing = "none"
ledger_path = "{ledger}"
[shutdown]
grace_seconds = {GRACE_SECONDS}
[http]
listen = "127.0.0.1:{port}"
"#,
        moto = moto.endpoint(),
        fake = fake.endpoint(),
        ledger = ledger.display(),
        port = free_port(),
    );
    let file = ledger.with_file_name("cfpurge.toml");
    std::fs::write(&file, config).expect("write the configuration");
    Command::new(env!("CARGO_BIN_EXE_cfpurge"))
        .args(["run", "-c"])
        .arg(&file)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start cfpurge")
}

/// Waits until every one of `n` messages has been received (in flight).
async fn wait_in_flight(queue: &SqsQueue, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = queue.depth().await.expect("depth");
        if d.in_flight == n && d.visible == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "never all received: {d:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends SIGTERM and returns the exit code and how long the exit took.
fn terminate(mut child: Child) -> (Option<i32>, Duration) {
    let sent = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return (status.code(), sent.elapsed());
        }
        if sent.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running a minute after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_in_a_quiet_window_submits_the_batch_and_exits_0() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let fake = FakeCloudFront::start(Duration::from_secs(2)).await;
    fake.add_distribution(DIST);
    let folder = tempfile::tempdir().expect("folder");
    let url = moto.create_queue("shutdown-submit", &[]).await;
    let queue = SqsQueue::new(moto.sqs_client(), url.clone(), None);
    for i in 0..3 {
        queue
            .send(&format!(r#"{{"paths":["/q/{i}.html"]}}"#))
            .await
            .expect("send");
    }
    let child = start(moto, &fake, &url, &folder.path().join("ledger.json"));
    wait_in_flight(&queue, 3).await;
    assert!(
        fake.invalidations(DIST).is_empty(),
        "the quiet window is open"
    );

    let (code, took) = terminate(child);
    assert_eq!(code, Some(0));
    assert!(
        took < Duration::from_secs(GRACE_SECONDS + 2),
        "took {took:?} with a grace of {GRACE_SECONDS} s"
    );
    let invalidations = fake.invalidations(DIST);
    assert_eq!(
        invalidations.len(),
        1,
        "the batch was submitted before the exit"
    );
    assert_eq!(invalidations[0].paths.len(), 3);
    assert_eq!(queue.depth().await.expect("depth"), Default::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_makes_what_cannot_be_submitted_visible_again_at_once() {
    let moto = Moto::take().await;
    let moto = moto.server();
    // CloudFront does not know the distribution: nothing can be submitted.
    let fake = FakeCloudFront::start(Duration::from_secs(2)).await;
    let folder = tempfile::tempdir().expect("folder");
    let url = moto.create_queue("shutdown-release", &[]).await;
    let queue = SqsQueue::new(moto.sqs_client(), url.clone(), None);
    for i in 0..3 {
        queue
            .send(&format!(r#"{{"paths":["/r/{i}.html"]}}"#))
            .await
            .expect("send");
    }
    let child = start(moto, &fake, &url, &folder.path().join("ledger.json"));
    wait_in_flight(&queue, 3).await;

    let (code, took) = terminate(child);
    assert_eq!(code, Some(0));
    assert!(
        took < Duration::from_secs(GRACE_SECONDS + 2),
        "took {took:?} with a grace of {GRACE_SECONDS} s"
    );
    // Visible again now, not after the 300 s visibility timeout.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let d = queue.depth().await.expect("depth");
        if d.visible == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "not visible again: {d:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(fake.invalidations(DIST).is_empty());
}

/// Refused purge requests are logged at most once a second per reason,
/// with a count; those held back in the last second are reported when the
/// server stops, so the counts add up to every refusal sent. Without that
/// last report the burst below would be logged as one refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_held_back_by_the_log_limit_are_counted_at_shutdown() {
    const REFUSED: u64 = 5;
    let folder = tempfile::tempdir().expect("folder");
    let port = free_port();
    let config = format!(
        r#"
[source]
kind = "local"
[distributions.www]
id = "{DIST}"
[cloudfront]
mode = "simulate"
[budget]
ledger_path = "{ledger}"
[http]
listen = "127.0.0.1:{port}"
enqueue_token = "the-right-token"
"#,
        ledger = folder.path().join("ledger.json").display(),
    );
    let file = folder.path().join("cfpurge.toml");
    std::fs::write(&file, config).expect("write the configuration");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cfpurge"))
        .args(["run", "-c"])
        .arg(&file)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cfpurge");
    // Drained on its own thread, so that the daemon never blocks on a full
    // pipe.
    let mut stderr = child.stderr.take().expect("stderr");
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).expect("read the log");
        text
    });

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let url = format!("http://127.0.0.1:{port}/v1/purge");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sent = 0;
    while sent < REFUSED {
        let answer = client
            .post(&url)
            .bearer_auth("a-wrong-token")
            .body(r#"{"paths": ["/index.html"]}"#)
            .send()
            .await;
        match answer {
            Ok(answer) => {
                assert_eq!(answer.status(), 401);
                sent += 1;
            }
            // Not listening yet.
            Err(_) => {
                assert!(Instant::now() < deadline, "cfpurge never listened");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    let (code, _) = terminate(child);
    assert_eq!(code, Some(0));
    let log = log.join().expect("the log");
    let counted: u64 = log
        .lines()
        .filter(|l| l.contains("purge requests refused") && l.contains("reason=\"unauthorized\""))
        .map(|l| {
            let count = l.split("count=").nth(1).unwrap_or_else(|| panic!("{l}"));
            let digits: String = count.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u64>().unwrap_or_else(|_| panic!("{l}"))
        })
        .sum();
    assert_eq!(counted, REFUSED, "{log}");
}
