//! The HTTP surface on `[http] listen`: metrics, health, readiness and status
//! for operators, and `POST /v1/purge` for client services. A purge request
//! is decoded by the same code as an SQS message, then sent to the queue as
//! it came; the daemon picks it up from there like any other message, so
//! this endpoint never bypasses the at-least-once path.

use std::collections::HashMap;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router as AxumRouter};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::timeout::TimeoutLayer;

use crate::config::Secret;
use crate::decode::{MAX_BODY_BYTES, Router, decode_native};
use crate::source::queue::{Queue, QueueError};
use crate::status::{Heartbeat, Readiness, StatusBoard};
use crate::status_page;

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
    /// `http.request_timeout_seconds`: a request not read and answered
    /// within this long is answered 408.
    pub request_timeout: Duration,
    /// Rate-limits the log lines of refused requests.
    pub refusals: Arc<RefusalLog>,
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
            request_timeout: Duration::from_secs(
                crate::config::HttpConfig::default().request_timeout_seconds,
            ),
            refusals: Arc::new(RefusalLog::default()),
        }
    }
}

/// The routes of the HTTP table. Unknown paths answer 404 and wrong methods
/// 405; a request not read and answered within the state's
/// `request_timeout` is answered 408 (a slow body cannot hold a connection
/// for long). Every 4xx answer is JSON with `error` and `reason`.
pub fn app(state: HttpState) -> AxumRouter {
    let timeout =
        TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, state.request_timeout);
    AxumRouter::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/status", get(status))
        .route("/", get(page))
        .route(
            "/v1/purge",
            post(purge).layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
        )
        .with_state(state)
        .layer(timeout)
        .layer(axum::middleware::map_response(explain_client_errors))
}

/// Gives a 4xx answer that is not JSON yet (axum's 404 and 405, the 408 of
/// the timeout layer) the body every refusal has: `error` and `reason`.
async fn explain_client_errors(response: Response) -> Response {
    let status = response.status();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    if !status.is_client_error() || json {
        return response;
    }
    let reason = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNAUTHORIZED => "unauthorized",
        _ => "bad_request",
    };
    let message = match status {
        StatusCode::REQUEST_TIMEOUT => "the request was not received in time".to_owned(),
        _ => status
            .canonical_reason()
            .unwrap_or("refused")
            .to_ascii_lowercase(),
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = json!({"error": message, "reason": reason}).to_string();
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// Serves [`app`] on `listener` with [`HttpLimits::default`] until
/// `shutdown` is cancelled, then lets requests in progress finish for at
/// most [`DEFAULT_DRAIN`].
pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let stop = async move {
        shutdown.cancelled().await;
        Instant::now() + DEFAULT_DRAIN
    };
    serve_with(listener, state, HttpLimits::default(), stop).await;
    Ok(())
}

/// Serves [`app`] on `listener` until `shutdown` resolves, then drains:
/// no new connection is accepted, idle ones are closed, requests in
/// progress may finish until the instant `shutdown` resolved to, and
/// whatever is still open then is closed.
///
/// Each connection holds one of `limits.max_connections` permits, taken
/// before the accept: at the limit, new clients wait in the kernel's accept
/// queue and cost no descriptor. hyper closes a connection whose request
/// headers are not in within `limits.header_timeout` (which also ends an
/// idle keep-alive connection), and [`app`] answers 408 to a request whose
/// body is not in within the state's `request_timeout`.
pub async fn serve_with(
    listener: TcpListener,
    state: HttpState,
    limits: HttpLimits,
    shutdown: impl Future<Output = Instant> + Send,
) {
    let log = state.refusals.clone();
    let app = app(state);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = TaskTracker::new();
    let closing = CancellationToken::new();
    let force = CancellationToken::new();
    let mut shutdown = pin!(shutdown);
    let deadline = loop {
        let permit = tokio::select! {
            deadline = &mut shutdown => break deadline,
            permit = permits.clone().acquire_owned() => permit,
        };
        // The semaphore is never closed.
        let Ok(permit) = permit else { continue };
        let stream = tokio::select! {
            deadline = &mut shutdown => break deadline,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors (EMFILE) or a connection reset
                    // before the accept: try again shortly, without a log
                    // line per attempt.
                    if let Some(count) = log.note(ACCEPT_FAILED, Instant::now()) {
                        tracing::warn!(error = %e, count, "http accept failed");
                    }
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let (closing, force) = (closing.clone(), force.clone());
        connections.spawn(async move {
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(true);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let mut connection = pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = closing.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    tokio::select! {
                        _ = connection.as_mut() => {}
                        () = force.cancelled() => {}
                    }
                }
            }
            drop(permit);
        });
    };
    // Stop accepting at once: later clients are refused by the kernel.
    drop(listener);
    closing.cancel();
    connections.close();
    if tokio::time::timeout_at(deadline, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = connections.len(),
            "closing http connections still open at the drain deadline"
        );
        force.cancel();
        connections.wait().await;
    }
    // Refusals held back by the once-a-second limit since their reason's
    // last line: reported now, or their count would be lost.
    for (reason, count) in log.unreported() {
        if reason == ACCEPT_FAILED {
            tracing::warn!(
                count,
                "http accept failed (count: since the last line, at shutdown)"
            );
        } else {
            tracing::warn!(
                reason,
                count,
                "purge requests refused (count: since the last line for this reason, at shutdown)"
            );
        }
    }
}

/// How long [`serve`] lets requests in progress finish after its shutdown.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(5);

/// The [`RefusalLog`] reason of failed accepts.
const ACCEPT_FAILED: &str = "accept_failed";

/// Pause after a failed accept (out of descriptors, most likely) before the
/// next one.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// Descriptors kept out of the HTTP server's reach: the ledger, the AWS
/// clients' connections, the logs and the runtime need some whatever the
/// HTTP clients do.
pub const DESCRIPTOR_RESERVE: u64 = 128;

/// Connection limits of [`serve_with`]; from `[http]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time to send a request's headers, and longest idle keep-alive.
    pub header_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits::from(&crate::config::HttpConfig::default())
    }
}

impl From<&crate::config::HttpConfig> for HttpLimits {
    fn from(c: &crate::config::HttpConfig) -> Self {
        HttpLimits {
            max_connections: c.max_connections,
            header_timeout: Duration::from_secs(c.header_timeout_seconds),
        }
    }
}

impl HttpLimits {
    /// These limits with `max_connections` lowered, when needed, to leave
    /// [`DESCRIPTOR_RESERVE`] descriptors below `open_files` (the process's
    /// soft `RLIMIT_NOFILE`, when known); at least one connection remains.
    pub fn within(self, open_files: Option<u64>) -> HttpLimits {
        let Some(open_files) = open_files else {
            return self;
        };
        let room = open_files.saturating_sub(DESCRIPTOR_RESERVE).max(1);
        let max = usize::try_from(room).unwrap_or(usize::MAX);
        HttpLimits {
            max_connections: self.max_connections.min(max),
            ..self
        }
    }
}

/// The process's soft limit on open files, from `/proc/self/limits`
/// (Linux); `None` where that cannot be read or says "unlimited".
pub fn open_file_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_file_limit(&text)
}

fn parse_open_file_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Logs a refusal at most once a second per reason, with how many
/// refusals the line stands for: a client retrying a wrong token, or a
/// flood of bad requests, must not fill the disk with identical lines.
#[derive(Debug, Default)]
pub struct RefusalLog {
    /// Per reason: when a line was last written and the refusals since.
    reasons: Mutex<HashMap<&'static str, (Option<Instant>, u64)>>,
}

impl RefusalLog {
    /// Most one line per reason per this long.
    pub const PERIOD: Duration = Duration::from_secs(1);

    /// Counts one refusal for `reason` at `now`; returns the number of
    /// refusals to report when a line is due (this one included), `None`
    /// when this one is only counted.
    pub fn note(&self, reason: &'static str, now: Instant) -> Option<u64> {
        let mut reasons = self
            .reasons
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (last, count) = reasons.entry(reason).or_insert((None, 0));
        *count += 1;
        if last.is_some_and(|at| now.saturating_duration_since(at) < Self::PERIOD) {
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(count))
    }

    /// The refusals counted but not yet reported, per reason (in reason
    /// order), and forgets them: what is left when the server stops, so
    /// that the last second's refusals are not lost.
    pub fn unreported(&self) -> Vec<(&'static str, u64)> {
        let mut reasons = self
            .reasons
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut left: Vec<(&'static str, u64)> = reasons
            .iter_mut()
            .filter(|(_, (_, count))| *count > 0)
            .map(|(reason, (_, count))| (*reason, std::mem::take(count)))
            .collect();
        left.sort_unstable();
        left
    }
}

/// `GET /`: the page for the current snapshot.
async fn page(State(state): State<HttpState>) -> Response {
    let html = status_page::render(
        &state.status.snapshot(),
        std::time::SystemTime::now(),
        status_page::REFRESH_SECONDS,
    );
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, status_page::CSP),
        ],
        Html(html),
    )
        .into_response()
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

/// `GET /readyz`: 503 with the reasons while configuration, ledger or queue
/// are not usable. CloudFront's transient failures (5xx, timeouts,
/// throttling, no connection) leave it ready: requests are still taken in
/// and kept, retried once CloudFront answers, and taking the pod out of
/// service, or restarting it, would mend nothing. They are named after
/// `ready`, one line per distribution, so that whoever reads the answer
/// is not misled. A distribution CloudFront refuses as configured (missing,
/// access denied) is a reason: that needs a person.
async fn readyz(State(state): State<HttpState>) -> Response {
    let reasons = state.readiness.reasons();
    if reasons.is_empty() {
        let mut body = "ready".to_owned();
        for (alias, d) in &state.status.snapshot().distributions {
            if let Some(e) = d.last_error.as_ref().filter(|e| e.since_success > 0) {
                body.push_str(&format!(
                    "\ncloudfront failing on {alias}: {} failed calls since the last success, \
                     the last {} on {} at {}; requests wait and are retried",
                    e.since_success,
                    e.code,
                    e.operation,
                    crate::status::format_time(e.at)
                ));
            }
        }
        if body.len() > "ready".len() {
            body.push('\n');
        }
        return (StatusCode::OK, body).into_response();
    }
    let mut body = reasons.join("\n");
    body.push('\n');
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}

async fn status(State(state): State<HttpState>) -> Response {
    Json(state.status.snapshot().as_ref().clone()).into_response()
}

/// `POST /v1/purge`: token, then size, then the native format, then the
/// queue. Every refusal is JSON with `error` and `reason`, and is logged
/// with its reason and nothing from the body or the headers, at most once a
/// second per reason ([`RefusalLog`]).
async fn purge(State(state): State<HttpState>, request: Request) -> Response {
    if let Some(token) = &state.token
        && !authorized(request.headers(), token)
    {
        let mut response = state.refuse(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token",
        );
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    let body = match Bytes::from_request(request, &state).await {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return state.refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                &format!("body is over {MAX_BODY_BYTES} bytes"),
            );
        }
        Err(rejection) => {
            return state.refuse(rejection.status(), "unreadable", &rejection.body_text());
        }
    };
    let request = match decode_native(&body, &state.router) {
        Ok(request) => request,
        Err(rejection) => {
            return state.refuse(
                StatusCode::BAD_REQUEST,
                rejection.reason().as_str(),
                &rejection.to_string(),
            );
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
        Err(QueueError::Invalid(detail)) => state.refuse(
            StatusCode::BAD_REQUEST,
            "queue_refused",
            &format!("the queue refuses this request: {detail}"),
        ),
        Err(e @ QueueError::Full(_)) => state.refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "queue_full",
            &format!("{e}; retry later"),
        ),
        Err(e) => state.refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "queue_unavailable",
            &format!("cannot queue the request, retry later: {e}"),
        ),
    }
}

impl HttpState {
    /// An answer refusing a purge request, logged through the rate limit.
    fn refuse(&self, status: StatusCode, reason: &'static str, message: &str) -> Response {
        if let Some(count) = self.refusals.note(reason, Instant::now()) {
            tracing::warn!(
                reason,
                status = status.as_u16(),
                count,
                "purge requests refused (count: since the last line for this reason)"
            );
        }
        (status, Json(json!({"error": message, "reason": reason}))).into_response()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_file_limit_is_read_from_proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max processes             63541                63541                processes \n\
                    Max open files            1024                 524288               files     \n";
        assert_eq!(parse_open_file_limit(text), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_file_limit(unlimited), None);
        assert_eq!(parse_open_file_limit(""), None);
        assert!(open_file_limit().is_some(), "this is Linux");
    }

    #[test]
    fn connections_leave_a_reserve_below_the_open_file_limit() {
        let limits = HttpLimits {
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
        };
        assert_eq!(limits.within(None), limits);
        assert_eq!(limits.within(Some(65_536)).max_connections, 256);
        assert_eq!(limits.within(Some(256)).max_connections, 128);
        assert_eq!(limits.within(Some(300)).max_connections, 172);
        assert_eq!(limits.within(Some(10)).max_connections, 1);
        assert_eq!(
            limits.within(Some(256)).header_timeout,
            limits.header_timeout
        );
    }

    #[test]
    fn refusals_are_logged_once_a_second_per_reason_with_a_count() {
        let log = RefusalLog::default();
        let t0 = Instant::now();
        assert_eq!(log.note("unauthorized", t0), Some(1));
        for ms in [1, 200, 999] {
            assert_eq!(
                log.note("unauthorized", t0 + Duration::from_millis(ms)),
                None
            );
        }
        // Another reason has its own line.
        assert_eq!(
            log.note("malformed", t0 + Duration::from_millis(5)),
            Some(1)
        );
        // A second on: one line for the three counted and this one.
        assert_eq!(
            log.note("unauthorized", t0 + Duration::from_secs(1)),
            Some(4)
        );
        assert_eq!(
            log.note("unauthorized", t0 + Duration::from_millis(1500)),
            None
        );
        assert_eq!(
            log.note("unauthorized", t0 + Duration::from_secs(5)),
            Some(2)
        );
        // What the limit held back is handed over once, at shutdown.
        assert!(log.unreported().is_empty());
        assert_eq!(
            log.note("unauthorized", t0 + Duration::from_millis(5100)),
            None
        );
        assert_eq!(
            log.note("unauthorized", t0 + Duration::from_millis(5200)),
            None
        );
        assert_eq!(
            log.note("malformed", t0 + Duration::from_millis(5300)),
            Some(1)
        );
        assert_eq!(
            log.note("malformed", t0 + Duration::from_millis(5400)),
            None
        );
        assert_eq!(log.unreported(), [("malformed", 1), ("unauthorized", 2)]);
        assert!(log.unreported().is_empty());
    }
}
