//! The HTTP surface on `[http] listen`: metrics, health, readiness and status
//! for operators, and `POST /v1/purge` for client services. A purge request
//! is decoded by the same code as an SQS message, then sent to the queue as
//! it came; the daemon picks it up from there like any other message, so
//! this endpoint never bypasses the at-least-once path.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router as AxumRouter};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Secret;
use crate::decode::{MAX_BODY_BYTES, Router, decode_native};
use crate::source::queue::{Queue, QueueError};
use crate::status::{Heartbeat, Readiness, StatusBoard};

/// How long the daemon loop may go without a beat before `/healthz` answers
/// 503.
pub const DEFAULT_HEALTH_MAX_AGE: Duration = Duration::from_secs(30);

/// The future an [`Enqueuer`] returns.
pub type EnqueueFuture<'a> = Pin<Box<dyn Future<Output = Result<String, QueueError>> + Send + 'a>>;

/// Where `POST /v1/purge` puts an accepted body: [`Queue::send`] made object
/// safe, so the server needs no type parameter. Every [`Queue`] is one.
pub trait Enqueuer: Send + Sync + 'static {
    /// Sends `body` as a new message; returns its id.
    fn enqueue<'a>(&'a self, body: &'a str) -> EnqueueFuture<'a>;
}

impl<Q: Queue> Enqueuer for Q {
    fn enqueue<'a>(&'a self, body: &'a str) -> EnqueueFuture<'a> {
        Box::pin(self.send(body))
    }
}

/// What the handlers share. Clones are cheap: every field is shared.
#[derive(Clone)]
pub struct HttpState {
    /// Gathered by `GET /metrics`.
    pub registry: prometheus::Registry,
    /// Read by `GET /v1/status`.
    pub status: StatusBoard,
    /// Read by `GET /readyz`.
    pub readiness: Readiness,
    /// Read by `GET /healthz`.
    pub heartbeat: Heartbeat,
    /// `/healthz` fails once the last beat is older than this.
    pub health_max_age: Duration,
    /// Routing for decoding `POST /v1/purge` bodies, as for SQS messages.
    pub router: Arc<Router>,
    /// Where accepted purge requests go.
    pub sink: Arc<dyn Enqueuer>,
    /// `http.enqueue_token`: when set, `POST /v1/purge` needs it as a bearer
    /// token.
    pub token: Option<Secret>,
}

impl HttpState {
    /// State with a fresh status board, readiness (ready), heartbeat
    /// (beating now) and [`DEFAULT_HEALTH_MAX_AGE`]; replace or clone them
    /// to share them with the daemon.
    pub fn new(
        registry: prometheus::Registry,
        router: Router,
        sink: impl Enqueuer,
        token: Option<Secret>,
    ) -> HttpState {
        HttpState {
            registry,
            status: StatusBoard::default(),
            readiness: Readiness::new(),
            heartbeat: Heartbeat::new(),
            health_max_age: DEFAULT_HEALTH_MAX_AGE,
            router: Arc::new(router),
            sink: Arc::new(sink),
            token,
        }
    }
}

/// The routes of CONTRACT.md's HTTP table. Unknown paths answer 404 and
/// wrong methods 405 (axum's defaults).
pub fn app(state: HttpState) -> AxumRouter {
    AxumRouter::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/status", get(status))
        .route("/", get(crate::status_page::page))
        .route(
            "/v1/purge",
            post(purge).layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
        )
        .with_state(state)
}

/// Serves [`app`] on `listener` until `shutdown` is cancelled, then lets
/// requests in progress finish.
pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

async fn metrics(State(state): State<HttpState>) -> Response {
    let encoder = prometheus::TextEncoder::new();
    match encoder.encode_to_string(&state.registry.gather()) {
        Ok(text) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot encode metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n").into_response()
        }
    }
}

async fn healthz(State(state): State<HttpState>) -> Response {
    if state.heartbeat.is_alive(state.health_max_age) {
        return (StatusCode::OK, "ok").into_response();
    }
    let age = state.heartbeat.age().as_secs();
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("stalled: the daemon loop last ran {age} s ago\n"),
    )
        .into_response()
}

async fn readyz(State(state): State<HttpState>) -> Response {
    let reasons = state.readiness.reasons();
    if reasons.is_empty() {
        return (StatusCode::OK, "ready").into_response();
    }
    let mut body = reasons.join("\n");
    body.push('\n');
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}

async fn status(State(state): State<HttpState>) -> Response {
    Json(state.status.snapshot().as_ref().clone()).into_response()
}

/// `POST /v1/purge`: token, then size, then the native format, then the
/// queue. Each refusal logs one line with its reason code and nothing from
/// the body or the headers.
async fn purge(State(state): State<HttpState>, request: Request) -> Response {
    if let Some(token) = &state.token
        && !authorized(request.headers(), token)
    {
        tracing::warn!(reason = "unauthorized", "purge request refused");
        let mut response = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    let body = match Bytes::from_request(request, &state).await {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            tracing::warn!(reason = "too_large", "purge request refused");
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("body is over {MAX_BODY_BYTES} bytes"),
            );
        }
        Err(rejection) => {
            tracing::warn!(reason = "unreadable", "purge request refused");
            return error(rejection.status(), &rejection.body_text());
        }
    };
    let request = match decode_native(&body, &state.router) {
        Ok(request) => request,
        Err(rejection) => {
            tracing::warn!(
                reason = rejection.reason().as_str(),
                bytes = body.len(),
                "purge request refused"
            );
            return (
                StatusCode::BAD_REQUEST,
                Json(
                    json!({"error": rejection.to_string(), "reason": rejection.reason().as_str()}),
                ),
            )
                .into_response();
        }
    };
    // decode_native has checked that the body is UTF-8.
    let text = String::from_utf8_lossy(&body);
    match state.sink.enqueue(&text).await {
        Ok(id) => {
            tracing::info!(
                distribution = %request.distribution,
                paths = request.paths.len(),
                urgent = request.urgent,
                message_id = %id,
                "purge request queued"
            );
            (
                StatusCode::ACCEPTED,
                Json(json!({"accepted": request.paths.len()})),
            )
                .into_response()
        }
        // The queue refuses this body and would refuse it again.
        Err(QueueError::Invalid(detail)) => {
            tracing::warn!(reason = "queue_refused", "purge request refused");
            error(
                StatusCode::BAD_REQUEST,
                &format!("the queue refuses this request: {detail}"),
            )
        }
        Err(e) => {
            tracing::warn!(reason = "queue_unavailable", error = %e, "purge request not queued");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("cannot queue the request, retry later: {e}"),
            )
        }
    }
}

/// Whether the headers carry `Authorization: Bearer <token>`.
fn authorized(headers: &HeaderMap, token: &Secret) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return false;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let Some((scheme, candidate)) = value.split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer") && token.matches(candidate.trim())
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}
