//! After Completed: the requests cfpurge makes to a distribution's viewer
//! domain to check that a purge took (`verify`) and to refill the cache
//! (`warm`). The core decides which paths, when, and what an answer means
//! ([`judge`]); [`EdgeClient`] only makes one request and reports what the
//! edge said of the object.
//!
//! CloudFront's `Completed` means the edges were told, not that a viewer
//! gets the new object. The edge says where its copy came from in
//! `X-Cache` (`Hit from cloudfront`, `Miss ...`, `RefreshHit ...`) and how
//! long it has held it in `Age` (seconds since it left the origin, across
//! CloudFront's cache layers). A copy served from cache whose age reaches
//! back before cfpurge asked for the invalidation was fetched before the
//! purge and survived it: stale. The reference is the moment the
//! CreateInvalidation was first sent, not the moment cfpurge saw
//! `Completed`: the status is polled, so a viewer's fresh fetch between the
//! real completion and the poll would otherwise look stale.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::clock::Millis;
use crate::config::Config;
use crate::path::CfPath;

#[cfg(test)]
pub(crate) mod fake;

/// How long one verification request may take, connection included.
pub const VERIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one warming request may take: it reads the body, so that the
/// edge holds the whole object.
pub const WARM_TIMEOUT: Duration = Duration::from_secs(30);

/// How long connecting may take, of either.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Most bytes of a body a warming request reads: the edge fetched the
/// object from the origin by then, and a large video is not downloaded
/// whole.
pub const WARM_BODY_LIMIT: usize = 8 << 20;

/// How much older than the time since the purge was asked for a cached
/// copy must be to count as stale: `Age` is whole seconds.
const AGE_SLACK_MS: Millis = 1000;

/// Which of the two a request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EdgeKind {
    /// Checking that the purge took.
    Verify,
    /// Refilling the cache.
    Warm,
}

impl EdgeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EdgeKind::Verify => "verify",
            EdgeKind::Warm => "warm",
        }
    }
}

/// One request to a distribution's edge, as the core asks for it and gets
/// it back with the answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeRequest {
    pub alias: String,
    pub kind: EdgeKind,
    /// An exact path the invalidation purged (or a requested path its
    /// wildcard covered), as submitted (percent-encoded).
    pub path: CfPath,
    /// CloudFront's id of the invalidation.
    pub invalidation: String,
    /// When its CreateInvalidation was first sent: a cached copy older than
    /// this survived the purge.
    pub asked_at: Millis,
    /// When cfpurge saw it `Completed`.
    pub completed_at: Millis,
}

/// What the edge said of the object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub status: u16,
    /// `X-Cache`, e.g. `Hit from cloudfront`.
    pub x_cache: Option<String>,
    /// `Age`, in seconds.
    pub age: Option<u64>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// Why a request got no answer to judge.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EdgeError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Request(String),
    #[error("distribution {0} has no edge configured")]
    NotConfigured(String),
}

/// What a verification found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The edge fetched the object after the purge was asked for (a miss, a
    /// revalidated copy, or a copy younger than the purge).
    Fresh,
    /// Served from cache, held since before the purge was asked for.
    Stale { age: u64 },
    /// No answer, a server error, or an answer that says nothing of the
    /// cache.
    Error(String),
}

impl Verdict {
    /// The `result` label of `cfpurge_verify_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Fresh => "fresh",
            Verdict::Stale { .. } => "stale",
            Verdict::Error(_) => "error",
        }
    }
}

/// Judges a verification's answer, received at `now`, for a purge first
/// asked for at `asked_at` (both on the daemon's monotonic clock).
pub fn judge(answer: &Result<Observed, EdgeError>, asked_at: Millis, now: Millis) -> Verdict {
    let seen = match answer {
        Ok(seen) => seen,
        Err(e) => return Verdict::Error(e.to_string()),
    };
    if seen.status >= 500 {
        return Verdict::Error(format!("the edge answered {}", seen.status));
    }
    let Some(x_cache) = &seen.x_cache else {
        return Verdict::Error("no X-Cache header: is the domain served by CloudFront?".to_owned());
    };
    let from = x_cache.trim().to_ascii_lowercase();
    if from.starts_with("hit") {
        let Some(age) = seen.age else {
            return Verdict::Error("a cache hit without a readable Age header".to_owned());
        };
        let since_asked = now.saturating_sub(asked_at);
        if age.saturating_mul(1000) > since_asked + AGE_SLACK_MS {
            Verdict::Stale { age }
        } else {
            Verdict::Fresh
        }
    } else if from.starts_with("miss") || from.starts_with("refreshhit") {
        // Fetched from the origin now, or checked with it now.
        Verdict::Fresh
    } else {
        Verdict::Error(format!(
            "X-Cache {x_cache:?} says nothing of the cached copy"
        ))
    }
}

/// Where one distribution's edge requests go, and what they carry.
#[derive(Clone, Debug)]
struct Target {
    /// `scheme://domain`.
    origin: String,
    /// The host every request's URL must have.
    host: String,
    headers: HeaderMap,
}

/// Makes the edge requests of every distribution with `verify` configured.
/// It follows no redirect (the purged object is the redirect itself, and
/// its target may lie off the configured domain), sends only the
/// configured headers (never cfpurge's HTTP token: it has none to send) and
/// keeps no cookies.
#[derive(Clone, Debug)]
pub struct EdgeClient {
    client: reqwest::Client,
    targets: std::sync::Arc<HashMap<String, Target>>,
}

impl EdgeClient {
    /// A client for `config`'s distributions. The configuration was
    /// validated: a header it lets through is valid.
    pub fn new(config: &Config) -> Result<EdgeClient, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!(
                "cfpurge/",
                env!("CARGO_PKG_VERSION"),
                " (edge check)"
            ))
            .build()
            .map_err(|e| format!("cannot build the edge client: {e}"))?;
        let mut targets = HashMap::new();
        for (alias, d) in &config.distributions {
            let Some(verify) = &d.verify else { continue };
            let mut headers = HeaderMap::new();
            for (name, value) in &verify.headers {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|e| format!("distributions.{alias}.verify.headers.{name}: {e}"))?;
                let value = HeaderValue::from_str(value.expose())
                    .map_err(|e| format!("distributions.{alias}.verify.headers.{name}: {e}"))?;
                headers.insert(name, value);
            }
            let url = reqwest::Url::parse(&format!("{}/", verify.origin()))
                .map_err(|e| format!("distributions.{alias}.verify.domain: {e}"))?;
            let host = url.host_str().unwrap_or_default().to_owned();
            targets.insert(
                alias.clone(),
                Target {
                    origin: verify.origin(),
                    host,
                    headers,
                },
            );
        }
        Ok(EdgeClient {
            client,
            targets: std::sync::Arc::new(targets),
        })
    }

    /// Requests `request.path` from its distribution's edge and reports
    /// what the edge said. A warming request reads the body (up to
    /// [`WARM_BODY_LIMIT`]); a verification needs only the headers.
    pub async fn fetch(&self, request: &EdgeRequest) -> Result<Observed, EdgeError> {
        let target = self
            .targets
            .get(&request.alias)
            .ok_or_else(|| EdgeError::NotConfigured(request.alias.clone()))?;
        let url = reqwest::Url::parse(&format!("{}{}", target.origin, request.path.as_str()))
            .map_err(|e| EdgeError::Request(format!("not a URL: {e}")))?;
        if url.host_str() != Some(target.host.as_str()) {
            // A path cannot move the host, but the check costs nothing.
            return Err(EdgeError::Request(format!(
                "{url} is not on the configured domain"
            )));
        }
        let timeout = match request.kind {
            EdgeKind::Verify => VERIFY_TIMEOUT,
            EdgeKind::Warm => WARM_TIMEOUT,
        };
        let call = async {
            let mut response = self
                .client
                .get(url)
                .headers(target.headers.clone())
                .send()
                .await
                .map_err(|e| EdgeError::Request(one_line(&e)))?;
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let observed = Observed {
                status: response.status().as_u16(),
                x_cache: header("x-cache"),
                age: header("age").and_then(|a| a.trim().parse().ok()),
                etag: header("etag"),
                last_modified: header("last-modified"),
            };
            if request.kind == EdgeKind::Warm {
                let mut read = 0;
                while read < WARM_BODY_LIMIT {
                    match response.chunk().await {
                        Ok(Some(chunk)) => read += chunk.len(),
                        Ok(None) => break,
                        Err(e) => return Err(EdgeError::Request(one_line(&e))),
                    }
                }
            }
            Ok(observed)
        };
        tokio::time::timeout(timeout, call)
            .await
            .unwrap_or(Err(EdgeError::Timeout(timeout)))
    }
}

/// An error and its sources on one line (reqwest's own message names only
/// the outermost).
fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(x_cache: &str, age: Option<u64>) -> Result<Observed, EdgeError> {
        Ok(Observed {
            status: 200,
            x_cache: Some(x_cache.to_owned()),
            age,
            ..Observed::default()
        })
    }

    use super::fake::{Behaviour, FakeEdge};

    const TOKEN: &str = "enqueue-token-0123456789abcdef";

    fn config_for(edge: &FakeEdge) -> Config {
        let text = format!(
            r#"
[source]
kind = "local"
[distributions.www]
id = "E2ABCDEF123456"
[distributions.www.verify]
domain = "{}"
scheme = "http"
headers = {{ "Accept-Encoding" = "br, gzip" }}
[http]
enqueue_token = "{TOKEN}"
"#,
            edge.domain()
        );
        Config::from_parts(Some(&text), "test", std::iter::empty()).expect("config")
    }

    fn request(path: &str, kind: EdgeKind) -> EdgeRequest {
        EdgeRequest {
            alias: "www".to_owned(),
            kind,
            path: CfPath::parse(path).expect("path"),
            invalidation: "I1".to_owned(),
            asked_at: 0,
            completed_at: 0,
        }
    }

    #[tokio::test]
    async fn sends_the_configured_headers_and_never_the_token() {
        let edge = FakeEdge::start(None).await;
        let client = EdgeClient::new(&config_for(&edge)).expect("client");
        client
            .fetch(&request("/a%20b.html?v=1", EdgeKind::Verify))
            .await
            .expect("answer");
        client
            .fetch(&request("/c.html", EdgeKind::Warm))
            .await
            .expect("answer");
        let seen = edge.seen();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].path, "/a%20b.html?v=1", "the path as purged");
        for s in &seen {
            assert_eq!(
                s.headers.get("accept-encoding").map(|v| v.as_bytes()),
                Some(&b"br, gzip"[..])
            );
            assert!(s.headers.get("authorization").is_none());
            assert!(s.headers.get("cookie").is_none());
            for (name, value) in &s.headers {
                let value = String::from_utf8_lossy(value.as_bytes());
                assert!(!value.contains(TOKEN), "{name} carries the token");
            }
        }
    }

    #[tokio::test]
    async fn follows_no_redirect_off_the_domain_or_on_it() {
        let elsewhere = FakeEdge::start(None).await;
        let edge = FakeEdge::start(None).await;
        let client = EdgeClient::new(&config_for(&edge)).expect("client");
        for to in [
            format!("http://{}/stolen", elsewhere.domain()),
            format!("http://{}/moved", edge.domain()),
        ] {
            edge.behave(Behaviour::Redirect(to));
            for kind in [EdgeKind::Verify, EdgeKind::Warm] {
                let seen = client.fetch(&request("/old", kind)).await.expect("answer");
                assert_eq!(seen.status, 301);
            }
        }
        assert!(elsewhere.seen().is_empty(), "{:?}", elsewhere.seen());
        assert!(edge.seen().iter().all(|s| s.path == "/old"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_edge_is_given_up_on_after_the_timeout() {
        let edge = FakeEdge::start(None).await;
        edge.behave(Behaviour::Hang);
        let client = EdgeClient::new(&config_for(&edge)).expect("client");
        let started = tokio::time::Instant::now();
        // Bounded here too, so that a client without its timeout fails
        // this test instead of hanging it.
        let give_up = WARM_TIMEOUT * 2;
        let answer =
            tokio::time::timeout(give_up, client.fetch(&request("/slow", EdgeKind::Verify)))
                .await
                .expect("the client gives up by itself");
        assert_eq!(answer, Err(EdgeError::Timeout(VERIFY_TIMEOUT)));
        assert_eq!(started.elapsed(), VERIFY_TIMEOUT);
        let answer = tokio::time::timeout(give_up, client.fetch(&request("/slow", EdgeKind::Warm)))
            .await
            .expect("the client gives up by itself");
        assert_eq!(answer, Err(EdgeError::Timeout(WARM_TIMEOUT)));
    }

    #[tokio::test]
    async fn reads_what_the_edge_says_of_the_object() {
        let edge = FakeEdge::start(None).await;
        let client = EdgeClient::new(&config_for(&edge)).expect("client");
        edge.cache("/kept.html");
        let seen = client
            .fetch(&request("/kept.html", EdgeKind::Verify))
            .await
            .expect("answer");
        assert_eq!(seen.status, 200);
        assert_eq!(seen.x_cache.as_deref(), Some("Hit from cloudfront"));
        assert_eq!(seen.age, Some(0));
        assert_eq!(seen.etag.as_deref(), Some("\"v1\""));
        edge.behave(Behaviour::Fail);
        let failed = client.fetch(&request("/kept.html", EdgeKind::Verify)).await;
        assert_eq!(judge(&failed, 0, 0).label(), "error");
        let other = request("/x", EdgeKind::Verify);
        let unknown = EdgeRequest {
            alias: "nope".to_owned(),
            ..other
        };
        assert!(matches!(
            client.fetch(&unknown).await,
            Err(EdgeError::NotConfigured(_))
        ));
    }

    #[test]
    fn a_hit_older_than_the_purge_is_stale_a_younger_one_fresh() {
        // Asked for at 100 s, answered at 160 s: 60 s since.
        let (asked, now) = (100_000, 160_000);
        let hit = |age| judge(&seen("Hit from cloudfront", Some(age)), asked, now);
        assert_eq!(hit(30), Verdict::Fresh);
        assert_eq!(hit(61), Verdict::Fresh, "within Age's whole second");
        assert_eq!(hit(62), Verdict::Stale { age: 62 });
        assert_eq!(hit(86_400), Verdict::Stale { age: 86_400 });
    }

    #[test]
    fn a_miss_or_a_revalidated_copy_is_fresh_whatever_its_age() {
        for x in ["Miss from cloudfront", "RefreshHit from cloudfront"] {
            assert_eq!(judge(&seen(x, Some(9_999)), 0, 1000), Verdict::Fresh, "{x}");
        }
    }

    #[test]
    fn what_says_nothing_of_the_cache_is_an_error() {
        let no_header = Ok(Observed {
            status: 200,
            ..Observed::default()
        });
        let server_error = Ok(Observed {
            status: 503,
            x_cache: Some("Error from cloudfront".to_owned()),
            ..Observed::default()
        });
        for answer in [
            no_header,
            server_error,
            seen("Hit from cloudfront", None),
            seen("Error from cloudfront", Some(1)),
            Err(EdgeError::Timeout(VERIFY_TIMEOUT)),
        ] {
            assert_eq!(judge(&answer, 0, 1000).label(), "error", "{answer:?}");
        }
    }
}
