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
use cfpurge::http::{EnqueueFuture, Enqueuer, HttpLimits, HttpState, app, serve, serve_with};
use cfpurge::source::local::LocalQueue;
use cfpurge::source::queue::{Message, Queue, QueueError};
use cfpurge::status::{DistributionStatus, LastInvalidation, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
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
    status.budget.pace = 40;
    status.budget.price = 3.2;
    status.queue.visible = 5;
    status.distributions.insert(
        "www".into(),
        DistributionStatus {
            id: "E2ABCDEF123456".into(),
            tenant_id: None,
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
            catalog: None,
            ..DistributionStatus::default()
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
        [
            "budget",
            "distributions",
            "mode",
            "queue",
            "role",
            "version"
        ]
    );
    assert_eq!(v["role"], "single");
    assert_eq!(
        v["mode"],
        serde_json::json!({"source": "local", "cloudfront": "aws"})
    );
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(keys(&v["distributions"]), ["api", "www"]);
    let www = &v["distributions"]["www"];
    assert_eq!(
        keys(www),
        [
            "id",
            "inflight_exact",
            "inflight_wildcard",
            "last_error",
            "last_invalidation",
            "oldest_pending_seconds",
            "pending_paths",
            "waiting"
        ]
    );
    // Nothing failed, nothing is said to wait.
    assert_eq!(www["last_error"], serde_json::Value::Null);
    assert_eq!(www["waiting"], serde_json::Value::Null);
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
                           "policy": "coalesce", "pace": 40, "price": 3.2, "reserved": 0})
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

/// One table run through the queue's decoder and through `POST /v1/purge`:
/// a body in the native format (JSON, or what looks like it) is refused by
/// the endpoint exactly when the queue would reject it, with the same
/// reason; bodies in the other formats, which the queue takes, are refused
/// by the endpoint, which takes the native format only.
#[tokio::test]
async fn purge_refuses_a_native_body_exactly_when_the_queue_decoder_would() {
    let router = Router::new(&config());
    let s3_event = r#"{"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "b"}, "object": {"key": "a.html"}}}]}"#;
    let sns = r#"{"Type": "Notification", "Message": "{\"paths\": [\"/a\"]}"}"#;
    // (body, in the native format)
    let table: &[(&str, bool)] = &[
        (r#"{"paths": ["/a"]}"#, true),
        (
            r#"{"distribution": "api", "paths": ["/a", "/b/*"], "urgent": true,
                "reason": "deploy", "requested_by": "ci"}"#,
            true,
        ),
        (r#"{"distribution": null, "paths": ["/a"]}"#, true),
        (
            r#"{"distribution": "E3APIAPIAPIAPI", "paths": ["/a"]}"#,
            true,
        ),
        ("\u{feff}{\"paths\": [\"/a\"]}", true),
        (" \n\t{\"paths\": [\"/a\"]} \n", true),
        // The array form of the struct, which serde alone would take.
        (r#"[null, ["/x"]]"#, true),
        (r#"[null, ["/x"], true, "r", "me"]"#, true),
        (r#"["/x"]"#, true),
        ("[]", true),
        ("{}", true),
        ("{", true),
        ("[", true),
        (r#"{"paths": ["/a"]} trailing"#, true),
        (r#"{"paths": ["/a"], "paths": ["/b"]}"#, true),
        (r#"{"paths": []}"#, true),
        (r#"{"paths": "/a"}"#, true),
        (r#"{"paths": [1]}"#, true),
        (r#"{"paths": ["a"]}"#, true),
        (r#"{"paths": ["/a b\u0000"]}"#, true),
        (r#"{"paths": ["/a"], "extra": 1}"#, true),
        (r#"{"paths": ["/a"], "urgent": "yes"}"#, true),
        (r#"{"distribution": "nope", "paths": ["/a"]}"#, true),
        (r#"{"distribution": 7, "paths": ["/a"]}"#, true),
        (r#"{"pathz": ["/a"]}"#, true),
        // The queue's other formats.
        ("/a\n/b\n", false),
        ("# nothing to purge\n", false),
        ("", false),
        ("   \n", false),
        ("42", false),
        (s3_event, false),
        (sns, false),
        (r#"{"Event": "s3:TestEvent"}"#, false),
    ];
    for &(body, native) in table {
        let queue_verdict = cfpurge::decode::decode(body, &router);
        let (state, queue) = state(None);
        let (status, response) = call(&state, purge(body.to_owned(), None)).await;
        let answer = json(response).await;
        let refused = status == StatusCode::BAD_REQUEST;
        if !native {
            assert!(refused, "{body:?}: {status} {answer}");
            assert_eq!(answer["reason"], "malformed", "{body:?}: {answer}");
            continue;
        }
        match &queue_verdict {
            Err(rejection) => {
                assert!(
                    refused,
                    "{body:?}: the queue rejects it ({rejection}), the endpoint answered {status}"
                );
                assert_eq!(
                    answer["reason"],
                    rejection.reason().as_str(),
                    "{body:?}: {answer}"
                );
                assert!(queue.is_empty());
            }
            Ok(requests) => {
                assert_eq!(status, StatusCode::ACCEPTED, "{body:?}: {answer}");
                let paths: usize = requests.iter().map(|r| r.paths.len()).sum();
                assert_eq!(answer["accepted"], paths, "{body:?}");
                assert_eq!(received(&queue).await[0].body, body);
            }
        }
    }
}

#[tokio::test]
async fn a_full_local_queue_is_503_with_a_reason() {
    let queue = LocalQueue::bounded(Duration::from_secs(30), 2, MAX_BODY_BYTES);
    let state = state_with(queue.clone(), None);
    for _ in 0..2 {
        let (status, _) = call(&state, purge(r#"{"paths": ["/a"]}"#, None)).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let (status, response) = call(&state, purge(r#"{"paths": ["/a"]}"#, None)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let v = json(response).await;
    assert_eq!(v["reason"], "queue_full", "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("max_pending_messages"),
        "{v}"
    );
    assert_eq!(queue.len(), 2);
}

#[tokio::test]
async fn an_empty_body_is_400_body_is_empty() {
    for body in ["", " \r\n"] {
        let (state, queue) = state(None);
        let (status, response) = call(&state, purge(body, None)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            json(response).await,
            serde_json::json!({"error": "body is empty", "reason": "malformed"})
        );
        assert!(queue.is_empty());
    }
}

/// A queue that refuses every body as SQS refuses a bad one.
struct Refusing;

impl Enqueuer for Refusing {
    fn enqueue<'a>(&'a self, _body: &'a str) -> EnqueueFuture<'a> {
        Box::pin(async { Err(QueueError::Invalid("InvalidMessageContents".into())) })
    }
}

#[tokio::test]
async fn every_refusal_carries_a_reason() {
    let refusing = state_with(Refusing, None);
    let (status, response) = call(&refusing, purge(r#"{"paths": ["/a"]}"#, None)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let v = json(response).await;
    assert_eq!(v["reason"], "queue_refused", "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("InvalidMessageContents")
    );

    let unreachable = state_with(Unreachable, None);
    let (status, response) = call(&unreachable, purge(r#"{"paths": ["/a"]}"#, None)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json(response).await["reason"], "queue_unavailable");

    let (guarded, _) = state(Some(TOKEN));
    let (status, response) = call(&guarded, purge(r#"{"paths": ["/a"]}"#, None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json(response).await["reason"], "unauthorized");
    let huge = "x".repeat(MAX_BODY_BYTES + 1);
    let (status, response) = call(&guarded, purge(huge, Some(TOKEN))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(json(response).await["reason"], "too_large");
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
    let (status, response) = call(&state, get("/nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json(response).await["reason"], "not_found");
    let (status, response) = call(&state, get("/v1/purge")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()[header::ALLOW], "POST");
    assert_eq!(json(response).await["reason"], "method_not_allowed");
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

/// `serve_with` on a loopback port of its own, with `limits`; stops when
/// `stop` is cancelled, draining for `drain`.
struct LimitedServer {
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl LimitedServer {
    async fn start(state: HttpState, limits: HttpLimits, drain: Duration) -> LimitedServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("address");
        let stop = CancellationToken::new();
        let shutdown = {
            let stop = stop.clone();
            async move {
                stop.cancelled().await;
                tokio::time::Instant::now() + drain
            }
        };
        let task = tokio::spawn(serve_with(listener, state, limits, shutdown));
        LimitedServer { addr, stop, task }
    }

    /// A connection that has sent the start of a request's headers and
    /// then nothing more.
    async fn half_open(&self) -> TcpStream {
        let mut stream = TcpStream::connect(self.addr).await.expect("connect");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        stream
    }

    /// `GET /healthz` with a fresh client; `None` when no answer came
    /// within `wait`.
    async fn healthz(&self, wait: Duration) -> Option<u16> {
        let client = reqwest::Client::builder()
            .timeout(wait)
            .build()
            .expect("client");
        let response = client
            .get(format!("http://{}/healthz", self.addr))
            .send()
            .await
            .ok()?;
        Some(response.status().as_u16())
    }
}

/// Reads until the peer closes; `true` when it closed within `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(wait, read_all).await.is_ok()
}

fn limits(max_connections: usize, header_timeout: Duration) -> HttpLimits {
    HttpLimits {
        max_connections,
        header_timeout,
    }
}

#[tokio::test]
async fn connections_past_the_limit_wait_unaccepted_until_one_closes() {
    let (state, _) = state(None);
    let server = LimitedServer::start(
        state,
        limits(2, Duration::from_secs(60)),
        Duration::from_millis(100),
    )
    .await;
    let first = server.half_open().await;
    let _second = server.half_open().await;
    assert_eq!(
        server.healthz(Duration::from_millis(700)).await,
        None,
        "a third connection was served past the limit of two"
    );
    drop(first);
    assert_eq!(server.healthz(Duration::from_secs(5)).await, Some(200));
    server.stop.cancel();
    server.task.await.expect("serve");
}

#[tokio::test]
async fn a_client_that_does_not_finish_its_headers_is_cut_off() {
    let (state, _) = state(None);
    let server = LimitedServer::start(
        state,
        limits(1, Duration::from_secs(1)),
        Duration::from_millis(100),
    )
    .await;
    let started = std::time::Instant::now();
    let mut slow = server.half_open().await;
    // The only slot is taken until the header timeout frees it.
    assert_eq!(server.healthz(Duration::from_secs(5)).await, Some(200));
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(closed_within(&mut slow, Duration::from_secs(1)).await);
    server.stop.cancel();
    server.task.await.expect("serve");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let (state, _) = state(None);
    let server = LimitedServer::start(
        state,
        limits(4, Duration::from_secs(1)),
        Duration::from_millis(100),
    )
    .await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).await.expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    // Kept alive, then closed once idle for the header timeout.
    assert!(!closed_within(&mut stream, Duration::from_millis(500)).await);
    assert!(closed_within(&mut stream, Duration::from_secs(2)).await);
    server.stop.cancel();
    server.task.await.expect("serve");
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_408_with_a_reason() {
    let (mut state, queue) = state(None);
    state.request_timeout = Duration::from_secs(1);
    let server = LimitedServer::start(
        state,
        limits(4, Duration::from_secs(10)),
        Duration::from_millis(100),
    )
    .await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"POST /v1/purge HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"paths\"")
        .await
        .expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("answered and closed within 5 s")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""reason":"timeout""#), "{answer}");
    assert!(queue.is_empty());
    server.stop.cancel();
    server.task.await.expect("serve");
}

#[tokio::test]
async fn shutdown_closes_half_sent_requests_at_the_drain_deadline() {
    let (state, _) = state(None);
    let server = LimitedServer::start(
        state,
        limits(4, Duration::from_secs(60)),
        Duration::from_millis(500),
    )
    .await;
    let mut headers = server.half_open().await;
    let mut body = TcpStream::connect(server.addr).await.expect("connect");
    body.write_all(b"POST /v1/purge HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped = std::time::Instant::now();
    server.stop.cancel();
    tokio::time::timeout(Duration::from_secs(3), server.task)
        .await
        .expect("serve returned within 3 s of the stop")
        .expect("serve");
    assert!(
        stopped.elapsed() < Duration::from_secs(2),
        "{:?}",
        stopped.elapsed()
    );
    assert!(closed_within(&mut headers, Duration::from_secs(1)).await);
    assert!(closed_within(&mut body, Duration::from_secs(1)).await);
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "still listening after the drain"
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
    let moto = Moto::take().await;
    let moto = moto.server();
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
    assert_eq!(
        lines[0],
        format!(
            "cfpurge {} (source local, cloudfront aws)",
            env!("CARGO_PKG_VERSION")
        )
    );
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
