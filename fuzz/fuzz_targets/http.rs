//! `POST /v1/purge` bodies: any bytes through the HTTP app in memory, with
//! an in-memory queue behind it. Nothing panics; a body is accepted (202,
//! queued byte for byte) exactly when `decode_native` takes it and the
//! queue does, and refused with `decode_native`'s reason otherwise; a body
//! the queue decoder rejects is never accepted, and one the endpoint
//! accepts decodes to the same request through the queue decoder; every
//! refusal is JSON with `error` and `reason`.

#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use cfpurge::config::Config;
use cfpurge::decode::{Router, decode, decode_native};
use cfpurge::http::{HttpState, app};
use cfpurge::source::local::LocalQueue;
use cfpurge::source::queue::{Queue, check_body};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

const CONFIG: &str = r#"
[source]
kind = "local"

[distributions.www]
id = "E2ABCDEF123456"

[distributions.docs]
id = "E3DOCS0000000"

[routing]
default_distribution = "www"
"#;

static CONFIG_PARSED: LazyLock<Config> = LazyLock::new(|| {
    Config::from_parts(Some(CONFIG), "fuzz.toml", std::iter::empty())
        .expect("the fuzz configuration is valid")
});

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
});

fuzz_target!(|data: &[u8]| {
    let router = Router::new(&CONFIG_PARSED);
    let native = decode_native(data, &router);
    let queue = LocalQueue::new(Duration::from_secs(30));
    let state = HttpState::new(
        prometheus::Registry::new(),
        Router::new(&CONFIG_PARSED),
        queue.clone(),
        None,
    );
    let request = Request::post("/v1/purge")
        .body(Body::from(data.to_vec()))
        .expect("a request");
    let (status, answer, queued) = RUNTIME.block_on(async {
        let response = app(state).oneshot(request).await.expect("infallible");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("the answer's body");
        let answer: serde_json::Value =
            serde_json::from_slice(&bytes).expect("every answer is JSON");
        let queued = queue
            .receive(10, Duration::ZERO)
            .await
            .expect("receive")
            .into_iter()
            .map(|m| m.body)
            .collect::<Vec<_>>();
        (status, answer, queued)
    });

    if status.is_client_error() {
        assert!(answer["reason"].is_string(), "{status} without a reason: {answer}");
        assert!(answer["error"].is_string(), "{status} without an error: {answer}");
        assert!(queued.is_empty(), "refused and queued");
    }
    match &native {
        Ok(request) => {
            let text = std::str::from_utf8(data).expect("decode_native took it");
            if check_body(text).is_ok() {
                assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
                assert_eq!(answer["accepted"], request.paths.len());
                assert_eq!(queued, [text]);
            } else {
                assert_eq!(status, StatusCode::BAD_REQUEST);
                assert_eq!(answer["reason"], "queue_refused");
            }
            // The daemon will read the queued body as this same request.
            assert_eq!(decode(text, &router), Ok(vec![request.clone()]));
        }
        Err(rejection) => {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
            assert_eq!(answer["reason"], rejection.reason().as_str());
        }
    }
    // A body the queue decoder rejects is never accepted, whatever its
    // format.
    if let Ok(text) = std::str::from_utf8(data)
        && decode(text, &router).is_err()
    {
        assert_ne!(status, StatusCode::ACCEPTED, "the queue would reject {text:?}");
    }
});
