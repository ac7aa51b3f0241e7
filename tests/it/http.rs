//! The HTTP surface: every endpoint's answers through `app` in memory, one
//! run of the real `serve` on loopback, and `cfpurge enqueue --url` /
//! `cfpurge status --url` as the real binary against it.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Output;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use axum::response::Response;
use cfpurge::config::{Config, Secret};
use cfpurge::decode::{MAX_BODY_BYTES, Router};
use cfpurge::http::{EnqueueFuture, Enqueuer, HttpState, app, serve};
use cfpurge::source::local::LocalQueue;
use cfpurge::source::queue::{Message, Queue, QueueError};
use cfpurge::status::{DistributionStatus, LastInvalidation, Status};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::support::moto::{Moto, REGION};

const TOKEN: &str = "s3cret-token";

fn config() -> Config {
    Config::from_parts(
        Some(
            "[source]\nkind = \"local\"\n\
             [distributions.www]\nid = \"E2ABCDEF123456\"\n\
             [distributions.api]\nid = \"E3APIAPIAPIAPI\"\n\
             [routing]\ndefault_distribution = \"www\"\n",
        ),
        "test.toml",
        Vec::new(),
    )
    .expect("test configuration")
}

fn state_with(sink: impl Enqueuer, token: Option<&str>) -> HttpState {
    HttpState::new(
        prometheus::Registry::new(),
        Router::new(&config()),
        sink,
        token.map(Secret::new),
    )
}

/// A state whose sink is a fresh local queue, returned alongside.
fn state(token: Option<&str>) -> (HttpState, LocalQueue) {
    let queue = LocalQueue::new(Duration::from_secs(30));
    (state_with(queue.clone(), token), queue)
}

/// A queue that cannot be reached.
struct Unreachable;

impl Enqueuer for Unreachable {
    fn enqueue<'a>(&'a self, _body: &'a str) -> EnqueueFuture<'a> {
        Box::pin(async { Err(QueueError::Transient("connection refused".into())) })
    }
}

async fn call(state: &HttpState, request: Request<Body>) -> (StatusCode, Response) {
    let response = app(state.clone())
        .oneshot(request)
        .await
        .expect("infallible");
    (response.status(), response)
}

async fn text(response: Response) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    String::from_utf8(bytes.to_vec()).expect("utf-8 body")
}

async fn json(response: Response) -> serde_json::Value {
    let body = text(response).await;
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).expect("request")
}

fn purge(body: impl Into<Body>, token: Option<&str>) -> Request<Body> {
    let mut builder = Request::post("/v1/purge").header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    builder.body(body.into()).expect("request")
}

async fn received(queue: &LocalQueue) -> Vec<Message> {
    queue.receive(10, Duration::ZERO).await.expect("receive")
}

// --- health, readiness, metrics, status ---

#[tokio::test(start_paused = true)]
async fn healthz_is_ok_while_the_loop_beats_and_503_once_it_stalls() {
    let (state, _) = state(None);
    let (status, response) = call(&state, get("/healthz")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text(response).await, "ok");

    tokio::time::advance(state.health_max_age + Duration::from_secs(1)).await;
    let (status, response) = call(&state, get("/healthz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(text(response).await.contains("31 s"));

    state.heartbeat.beat();
    let (status, _) = call(&state, get("/healthz")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn readyz_lists_every_reason_one_per_line() {
    let (state, _) = state(None);
    let (status, response) = call(&state, get("/readyz")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text(response).await, "ready");

    state
        .readiness
        .set("queue", "queue not found: cdn-purge".into());
    state.readiness.set("ledger", "cannot write".into());
    let (status, response) = call(&state, get("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        text(response).await,
        "ledger: cannot write\nqueue: queue not found: cdn-purge\n"
    );

    state.readiness.clear("queue");
    state.readiness.clear("ledger");
    let (status, _) = call(&state, get("/readyz")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn metrics_are_the_registry_in_text_format() {
    let (state, _) = state(None);
    let counter =
        prometheus::IntCounter::new("cfpurge_messages_received_total", "SQS messages received")
            .expect("counter");
    state
        .registry
        .register(Box::new(counter.clone()))
        .expect("register");
    counter.inc_by(3);
    let (status, response) = call(&state, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/plain; version=0.0.4"
    );
    let body = text(response).await;
    assert!(
        body.contains("\ncfpurge_messages_received_total 3\n"),
        "{body}"
    );
}

fn sample_status() -> Status {
    let mut status = Status::initial(&config());
    status.budget.month = "2026-11".into();
    status.budget.used = 12;
    status.budget.allowed = 140;
    status.queue.visible = 5;
    status.distributions.insert(
        "www".into(),
        DistributionStatus {
            id: "E2ABCDEF123456".into(),
            pending_paths: 3,
            oldest_pending_seconds: 4,
            inflight_exact: 12,
            inflight_wildcard: 1,
            last_invalidation: Some(LastInvalidation {
                id: "I2J3EXAMPLE".into(),
                status: "InProgress".into(),
                paths: 13,
                created_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_532_400),
            }),
        },
    );
    status
}

fn keys(value: &serde_json::Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

#[tokio::test]
async fn status_is_the_published_snapshot_in_the_contract_shape() {
    let (state, _) = state(None);
    state.status.publish(sample_status());
    let (status, response) = call(&state, get("/v1/status")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    let v = json(response).await;
    assert_eq!(
        keys(&v),
        ["budget", "distributions", "queue", "role", "version"]
    );
    assert_eq!(v["role"], "single");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(keys(&v["distributions"]), ["api", "www"]);
    let www = &v["distributions"]["www"];
    assert_eq!(
        keys(www),
        [
            "id",
            "inflight_exact",
            "inflight_wildcard",
            "last_invalidation",
            "oldest_pending_seconds",
            "pending_paths"
        ]
    );
    assert_eq!(
        www["last_invalidation"],
        serde_json::json!({"id": "I2J3EXAMPLE", "status": "InProgress", "paths": 13,
                           "created_at": "2026-11-24T15:00:00Z"})
    );
    assert_eq!(
        v["distributions"]["api"]["last_invalidation"],
        serde_json::Value::Null
    );
    assert_eq!(
        v["budget"],
        serde_json::json!({"month": "2026-11", "limit": 1000, "used": 12, "allowed": 140,
                           "policy": "coalesce"})
    );
    assert_eq!(
        v["queue"],
        serde_json::json!({"visible": 5, "in_flight": 0, "delayed": 0, "pending_messages": 0})
    );
}

// --- POST /v1/purge ---

#[tokio::test]
async fn a_good_request_is_queued_as_sent_and_answered_202() {
    let (state, queue) = state(None);
    let body = r#"{"distribution": "api", "paths": ["/a", "/b/*", "/c d"], "reason": "deploy"}"#;
    let (status, response) = call(&state, purge(body, None)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(json(response).await, serde_json::json!({"accepted": 3}));
    let messages = received(&queue).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].body, body);
}

#[tokio::test]
async fn any_content_type_is_accepted() {
    let (state, queue) = state(None);
    let request = Request::post("/v1/purge")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(r#"{"paths": ["/x"]}"#))
        .expect("request");
    let (status, _) = call(&state, request).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(queue.len(), 1);
}

async fn assert_bad_request(body: &str, reason: &str, error_part: &str) {
    let (state, queue) = state(None);
    let (status, response) = call(&state, purge(body.to_owned(), None)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let v = json(response).await;
    assert_eq!(v["reason"], reason, "{v}");
    let error = v["error"].as_str().expect("error text");
    assert!(error.contains(error_part), "{error:?} lacks {error_part:?}");
    assert!(queue.is_empty(), "a refused request was queued");
}

#[tokio::test]
async fn bad_requests_are_400_naming_what_is_wrong() {
    assert_bad_request(r#"{"paths": ["/a""#, "malformed", "not valid JSON").await;
    assert_bad_request("not json", "malformed", "not valid JSON").await;
    assert_bad_request(r#"{"paths": []}"#, "malformed", "\"paths\" is empty").await;
    assert_bad_request(r#"{"pathz": ["/a"]}"#, "malformed", "pathz").await;
    assert_bad_request(
        r#"{"paths": ["/ok", "no-slash"]}"#,
        "invalid_path",
        "paths[1]",
    )
    .await;
    assert_bad_request(
        r#"{"distribution": "nope", "paths": ["/a"]}"#,
        "unknown_distribution",
        "\"nope\"",
    )
    .await;
    // The other formats are for SQS only.
    assert_bad_request("/a\n/b\n", "malformed", "not valid JSON").await;
    let too_many = serde_json::json!({"paths": vec!["/a"; 3001]}).to_string();
    assert_bad_request(&too_many, "too_large", "3001 paths").await;
}

#[tokio::test]
async fn invalid_utf8_is_400() {
    let (state, queue) = state(None);
    let (status, response) = call(&state, purge(b"{\"paths\": [\"/\xff\"]}".to_vec(), None)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        json(response).await["error"]
            .as_str()
            .unwrap()
            .contains("UTF-8")
    );
    assert!(queue.is_empty());
}

#[tokio::test]
async fn over_one_mib_is_413_and_exactly_one_mib_is_fine() {
    let (state, queue) = state(None);
    let mut body = String::from(r#"{"paths": ["/a"]}"#);
    body.push_str(&" ".repeat(MAX_BODY_BYTES - body.len()));
    let (status, _) = call(&state, purge(body.clone(), None)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(received(&queue).await.len(), 1);

    body.push(' ');
    let (status, response) = call(&state, purge(body, None)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        json(response).await["error"]
            .as_str()
            .unwrap()
            .contains("1048576")
    );
    assert!(received(&queue).await.is_empty());
}

#[tokio::test]
async fn a_queue_that_cannot_be_reached_is_503() {
    let state = state_with(Unreachable, None);
    let (status, response) = call(&state, purge(r#"{"paths": ["/a"]}"#, None)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let error = json(response).await["error"].as_str().unwrap().to_owned();
    assert!(error.contains("retry"), "{error}");
}

#[tokio::test]
async fn with_a_token_the_request_needs_it() {
    let (state, queue) = state(Some(TOKEN));
    let body = r#"{"paths": ["/a"]}"#;
    for token in [
        None,
        Some("wrong"),
        Some("s3cret-toke"),
        Some("s3cret-token2"),
    ] {
        let (status, response) = call(&state, purge(body, token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
        assert!(json(response).await["error"].is_string());
    }
    // Another scheme with the right value is still refused.
    let request = Request::post("/v1/purge")
        .header(header::AUTHORIZATION, format!("Basic {TOKEN}"))
        .body(Body::from(body))
        .expect("request");
    assert_eq!(call(&state, request).await.0, StatusCode::UNAUTHORIZED);
    assert!(queue.is_empty());

    let (status, _) = call(&state, purge(body, Some(TOKEN))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let request = Request::post("/v1/purge")
        .header(header::AUTHORIZATION, format!("bearer {TOKEN}"))
        .body(Body::from(body))
        .expect("request");
    assert_eq!(call(&state, request).await.0, StatusCode::ACCEPTED);
    assert_eq!(received(&queue).await.len(), 2);
}

#[tokio::test]
async fn the_token_is_checked_before_the_body() {
    let (state, queue) = state(Some(TOKEN));
    let huge = "x".repeat(MAX_BODY_BYTES + 10);
    let (status, _) = call(&state, purge(huge.clone(), None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(&state, purge("{", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(&state, purge(huge, Some(TOKEN))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(queue.is_empty());
}

#[tokio::test]
async fn without_a_token_configured_none_is_needed() {
    let (state, queue) = state(None);
    let (status, _) = call(&state, purge(r#"{"paths": ["/a"]}"#, Some("anything"))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = call(&state, purge(r#"{"paths": ["/a"]}"#, None)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(queue.len(), 2);
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405() {
    let (state, queue) = state(None);
    assert_eq!(call(&state, get("/nope")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        call(&state, get("/v1/purge")).await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    for uri in ["/healthz", "/readyz", "/metrics", "/v1/status"] {
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .body(Body::from(r#"{"paths": ["/a"]}"#))
            .expect("request");
        assert_eq!(
            call(&state, request).await.0,
            StatusCode::METHOD_NOT_ALLOWED,
            "{uri}"
        );
    }
    let request = Request::put("/v1/purge")
        .body(Body::from(r#"{"paths": ["/a"]}"#))
        .expect("request");
    assert_eq!(
        call(&state, request).await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert!(queue.is_empty());
}

// --- the real server ---

/// `serve` on a loopback port of its own.
struct Server {
    addr: SocketAddr,
    cancel: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(state: HttpState) -> Server {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("address");
        let cancel = CancellationToken::new();
        let task = tokio::spawn(serve(listener, state, cancel.clone()));
        Server { addr, cancel, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("stopped within 10 s")
            .expect("task")
            .expect("serve");
    }
}

#[tokio::test]
async fn serve_answers_on_loopback_and_stops_when_cancelled() {
    let (state, queue) = state(Some(TOKEN));
    let server = Server::start(state).await;
    let client = reqwest::Client::new();

    let health = client
        .get(format!("{}/healthz", server.url()))
        .send()
        .await
        .expect("GET /healthz");
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.expect("body"), "ok");

    let refused = client
        .post(format!("{}/v1/purge", server.url()))
        .body(r#"{"paths": ["/a"]}"#)
        .send()
        .await
        .expect("POST /v1/purge");
    assert_eq!(refused.status(), 401);

    let accepted = client
        .post(format!("{}/v1/purge", server.url()))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"paths": ["/a", "/b"], "urgent": true}))
        .send()
        .await
        .expect("POST /v1/purge");
    assert_eq!(accepted.status(), 202);
    let answer: serde_json::Value = accepted.json().await.expect("json");
    assert_eq!(answer["accepted"], 2);
    assert_eq!(received(&queue).await.len(), 1);

    let addr = server.addr;
    server.stop().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still listening after the cancel"
    );
}

// --- the binary against the real server ---

async fn cfpurge(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_cfpurge"))
        .args(args)
        .env_remove("CFPURGE_CONFIG")
        .env_remove("CFPURGE_ENQUEUE_TOKEN")
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("run cfpurge")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn enqueue_with_url_posts_the_request() {
    let (state, queue) = state(Some(TOKEN));
    let server = Server::start(state).await;
    let url = server.url();

    let out = cfpurge(&[
        "enqueue",
        "--url",
        &url,
        "--token",
        TOKEN,
        "--distribution",
        "api",
        "--urgent",
        "--reason",
        "deploy 4812",
        "/index.html",
        "/assets/*",
        "/a b",
    ])
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "accepted 3 paths\n");
    let messages = received(&queue).await;
    assert_eq!(messages.len(), 1);
    let body: serde_json::Value = serde_json::from_str(&messages[0].body).expect("json");
    assert_eq!(
        body,
        serde_json::json!({"distribution": "api", "paths": ["/index.html", "/assets/*", "/a b"],
                           "urgent": true, "reason": "deploy 4812"})
    );

    // The token from the environment, the paths from stdin.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cfpurge"))
        .args(["enqueue", "--url", &url, "--stdin"])
        .env_remove("CFPURGE_CONFIG")
        .env("CFPURGE_ENQUEUE_TOKEN", TOKEN)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start cfpurge");
    {
        use tokio::io::AsyncWriteExt as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(b"# deploy\n/one\n\n/two\n")
            .await
            .expect("write stdin");
    }
    let out = child.wait_with_output().await.expect("wait");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "accepted 2 paths\n");
    assert_eq!(received(&queue).await.len(), 1);

    server.stop().await;
}

#[tokio::test]
async fn enqueue_failures_exit_2_for_bad_input_and_1_for_refusals() {
    let (state, queue) = state(Some(TOKEN));
    let server = Server::start(state).await;
    let url = server.url();

    // A bad path is caught before anything is sent.
    let out = cfpurge(&[
        "enqueue", "--url", &url, "--token", TOKEN, "/ok", "no-slash",
    ])
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("paths[1] \"no-slash\""),
        "{}",
        stderr(&out)
    );

    // Wrong token: the server's answer, exit 1.
    let out = cfpurge(&["enqueue", "--url", &url, "--token", "wrong", "/a"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));

    // The distribution is the server's to judge when there is no
    // configuration here.
    let out = cfpurge(&[
        "enqueue",
        "--url",
        &url,
        "--token",
        TOKEN,
        "--distribution",
        "nope",
        "/a",
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("neither a configured alias"),
        "{}",
        stderr(&out)
    );

    // No paths at all.
    let out = cfpurge(&["enqueue", "--url", &url]).await;
    assert_eq!(out.status.code(), Some(2));

    assert!(queue.is_empty());
    server.stop().await;

    // Nobody listening.
    let out = cfpurge(&["enqueue", "--url", &url, "/a"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot reach"), "{}", stderr(&out));
}

#[tokio::test]
async fn enqueue_without_url_to_a_local_queue_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("local.toml");
    std::fs::write(
        &file,
        "[source]\nkind = \"local\"\n[distributions.www]\nid = \"E2ABCDEF123456\"\n",
    )
    .expect("write");
    let out = cfpurge(&["enqueue", "-c", file.to_str().expect("utf-8 path"), "/a"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--url"), "{}", stderr(&out));
}

#[tokio::test]
async fn enqueue_without_url_sends_to_sqs() {
    let moto = Moto::shared();
    let _guard = moto.exclusive().await;
    let queue_url = moto.create_queue("cdn-purge", &[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("sqs.toml");
    std::fs::write(
        &file,
        format!(
            "[aws]\nregion = \"{REGION}\"\nendpoint_url = \"{}\"\n\
             [source]\nqueue_url = \"{queue_url}\"\n\
             [distributions.www]\nid = \"E2ABCDEF123456\"\n",
            moto.endpoint()
        ),
    )
    .expect("write");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cfpurge"))
        .args(["enqueue", "-c", file.to_str().expect("utf-8 path")])
        .args(["--reason", "test", "/x", "/y"])
        .env_remove("CFPURGE_CONFIG")
        .env_remove("AWS_PROFILE")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .await
        .expect("run cfpurge");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "accepted 2 paths\n");
    let got = moto
        .sqs_client()
        .receive_message()
        .queue_url(&queue_url)
        .send()
        .await
        .expect("receive");
    let messages = got.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].body(),
        Some(r#"{"paths":["/x","/y"],"urgent":false,"reason":"test"}"#)
    );

    // A distribution the configuration does not have is refused here.
    let out = cfpurge(&[
        "enqueue",
        "-c",
        file.to_str().expect("utf-8 path"),
        "--distribution",
        "api",
        "/x",
    ])
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("\"api\""), "{}", stderr(&out));
}

#[tokio::test]
async fn status_prints_the_daemon_status() {
    let (state, _) = state(None);
    state.status.publish(sample_status());
    let server = Server::start(state).await;
    let url = server.url();

    let out = cfpurge(&["status", "--url", &url]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], format!("cfpurge {}", env!("CARGO_PKG_VERSION")));
    assert!(lines[1].starts_with("DISTRIBUTION"), "{text}");
    assert!(lines[2].starts_with("api "), "{text}");
    assert!(lines[3].starts_with("www "), "{text}");
    assert!(
        lines[3].ends_with("I2J3EXAMPLE InProgress 13 paths 2026-11-24T15:00:00Z"),
        "{text}"
    );
    assert!(text.contains("budget 2026-11: used 12 of 1000"), "{text}");
    assert!(text.contains("queue: visible 5,"), "{text}");

    let out = cfpurge(&["status", "--url", &format!("{url}/"), "--format", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let printed: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(
        printed,
        serde_json::to_value(sample_status()).expect("json")
    );
    assert!(stdout(&out).contains("\n  \"budget\""), "pretty-printed");

    server.stop().await;
    let out = cfpurge(&["status", "--url", &url]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot reach the daemon"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn status_exits_1_on_a_non_200_answer() {
    // Something else listening: every path is 404.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    let task = tokio::spawn(async move {
        axum::serve(listener, axum::Router::new())
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    });
    let out = cfpurge(&["status", "--url", &format!("http://{addr}")]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("404"), "{}", stderr(&out));
    cancel.cancel();
    task.await.expect("task").expect("serve");

    let out = cfpurge(&["status", "--url", "https://example.invalid"]).await;
    assert_eq!(out.status.code(), Some(2));
}

/// Polls `url` until it answers `want` (or 60 s pass); returns the body.
async fn wait_for_status(url: &str, want: u16) -> String {
    let client = reqwest::Client::new();
    let mut last = String::new();
    for _ in 0..300 {
        if let Ok(r) = client.get(url).send().await {
            let code = r.status().as_u16();
            last = r.text().await.unwrap_or_default();
            if code == want {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{url} never answered {want}; last body: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_moto_is_down_and_200_once_it_is_back() {
    use cfpurge::cloudfront::simulate::SimulatedCloudFront;
    use cfpurge::daemon::Daemon;
    use cfpurge::source::sqs::SqsQueue;

    let mut moto = Moto::start_new();
    let url = moto.create_queue("readyz", &[]).await;
    let config = Config::from_parts(
        Some(&format!(
            "[source]\nqueue_url = \"{url}\"\nwait_time_seconds = 1\n\
             [distributions.www]\nid = \"E2ABCDEF123456\"\n"
        )),
        "test.toml",
        Vec::new(),
    )
    .expect("config");
    let queue = SqsQueue::new(moto.sqs_client(), url.clone(), None);
    let cloudfront =
        SimulatedCloudFront::new(["E2ABCDEF123456".to_owned()], Duration::from_secs(5));
    let daemon = Daemon::new(&config, queue.clone(), cloudfront).with_ledger(
        cfpurge::budget::AnyStore::Memory(cfpurge::budget::MemoryStore::new()),
    );
    let observers = daemon.observers();
    let mut state = HttpState::new(observers.registry, Router::new(&config), queue, None);
    state.status = observers.status;
    state.readiness = observers.readiness;
    state.heartbeat = observers.heartbeat;
    let server = Server::start(state).await;
    let cancel = CancellationToken::new();
    let run = tokio::spawn(daemon.run(cancel.clone()));
    let readyz = format!("{}/readyz", server.url());

    wait_for_status(&readyz, 200).await;
    moto.stop();
    let reason = wait_for_status(&readyz, 503).await;
    assert!(reason.starts_with("queue: "), "{reason}");
    // The liveness check stays green: the loop still runs.
    wait_for_status(&format!("{}/healthz", server.url()), 200).await;
    moto.restart();
    assert_eq!(moto.create_queue("readyz", &[]).await, url);
    assert_eq!(wait_for_status(&readyz, 200).await, "ready");

    cancel.cancel();
    run.await.expect("daemon ends");
    server.stop().await;
}
