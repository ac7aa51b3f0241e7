//! `cfpurge run` as an operator starts it: the local configuration, no AWS
//! account, stopped by SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

#[test]
fn runs_with_the_local_configuration_until_sigterm_and_exits_0() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cfpurge"))
        .args(["run", "-c", "config/local.toml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
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
