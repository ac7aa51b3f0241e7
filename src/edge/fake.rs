//! A CloudFront edge on loopback, for tests: it caches what it serves,
//! answers `X-Cache: Hit from cloudfront` with an `Age` from its cache and
//! `Miss from cloudfront` when it fetches from its "origin", and forgets a
//! cached copy when an invalidation covering it has completed at the
//! simulated CloudFront, unless told to ignore purges. It records every
//! request (path, moment, headers) and can be made to hang, fail with 503
//! or redirect.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use crate::cloudfront::invalidator::Status;
use crate::cloudfront::simulate::SimulatedCloudFront;
use crate::path::CfPath;

/// How the edge answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// As a cache.
    Cache,
    /// Never answers.
    Hang,
    /// 503 from the edge.
    Fail,
    /// 301 to this URL.
    Redirect(String),
}

/// One request the edge received.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Path and query, as requested.
    pub path: String,
    pub at: Instant,
    pub headers: HeaderMap,
}

#[derive(Debug)]
struct Copy {
    cached_at: Instant,
    version: u64,
}

#[derive(Debug)]
struct State {
    behaviour: Behaviour,
    /// Whether a completed invalidation evicts what it covers.
    obeys: bool,
    cloudfront: Option<(SimulatedCloudFront, String)>,
    cache: HashMap<String, Copy>,
    /// Invalidations already applied to the cache, by id.
    applied: HashSet<String>,
    versions: HashMap<String, u64>,
    seen: Vec<Seen>,
}

/// The fake edge. Clones share its state.
#[derive(Clone, Debug)]
pub struct FakeEdge {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl FakeEdge {
    /// Listens on 127.0.0.1 (a free port) until the runtime ends. It
    /// follows `cloudfront`'s invalidations of distribution `id`, if given.
    pub async fn start(cloudfront: Option<(SimulatedCloudFront, &str)>) -> FakeEdge {
        let state = Arc::new(Mutex::new(State {
            behaviour: Behaviour::Cache,
            obeys: true,
            cloudfront: cloudfront.map(|(cf, id)| (cf, id.to_owned())),
            cache: HashMap::new(),
            applied: HashSet::new(),
            versions: HashMap::new(),
            seen: Vec::new(),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("address");
        let served = state.clone();
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            let state = served.clone();
            async move { answer(&state, &uri, headers).await }
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeEdge { addr, state }
    }

    /// `domain` for `verify.domain`.
    pub fn domain(&self) -> String {
        self.addr.to_string()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn behave(&self, behaviour: Behaviour) {
        self.lock().behaviour = behaviour;
    }

    /// Whether completed invalidations evict what they cover.
    pub fn obey_purges(&self, obeys: bool) {
        self.lock().obeys = obeys;
    }

    /// A viewer has requested `path` now: the edge holds a copy from now.
    pub fn cache(&self, path: &str) {
        let mut state = self.lock();
        state.refresh(path, Instant::now());
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }
}

impl State {
    fn refresh(&mut self, path: &str, now: Instant) {
        let version = self.versions.entry(path.to_owned()).or_default();
        *version += 1;
        self.cache.insert(
            path.to_owned(),
            Copy {
                cached_at: now,
                version: *version,
            },
        );
    }

    /// Evicts what invalidations completed since the last look cover.
    fn follow_purges(&mut self) {
        let Some((cloudfront, id)) = &self.cloudfront else {
            return;
        };
        let completed: Vec<_> = cloudfront
            .created()
            .into_iter()
            .filter(|(d, inv)| d == id && inv.status == Status::Completed)
            .map(|(_, inv)| inv)
            .collect();
        for inv in completed {
            if !self.applied.insert(inv.id.clone()) || !self.obeys {
                continue;
            }
            self.cache.retain(|path, _| {
                CfPath::parse(path).map_or(true, |p| !inv.paths.iter().any(|q| q.covers(&p)))
            });
        }
    }
}

async fn answer(state: &Arc<Mutex<State>>, uri: &Uri, headers: HeaderMap) -> Response {
    let path = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned());
    let now = Instant::now();
    let behaviour = {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        s.seen.push(Seen {
            path: path.clone(),
            at: now,
            headers,
        });
        s.behaviour.clone()
    };
    match behaviour {
        Behaviour::Hang => std::future::pending().await,
        Behaviour::Fail => (
            StatusCode::SERVICE_UNAVAILABLE,
            [("x-cache", "Error from cloudfront")],
        )
            .into_response(),
        Behaviour::Redirect(to) => {
            (StatusCode::MOVED_PERMANENTLY, [("location", to)]).into_response()
        }
        Behaviour::Cache => {
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            s.follow_purges();
            let (x_cache, age) = match s.cache.get(&path) {
                Some(copy) => ("Hit from cloudfront", Some(now - copy.cached_at)),
                None => {
                    s.refresh(&path, now);
                    ("Miss from cloudfront", None)
                }
            };
            let version = s.cache.get(&path).map_or(0, |c| c.version);
            let mut response = (
                StatusCode::OK,
                [
                    ("x-cache", x_cache.to_owned()),
                    ("etag", format!("\"v{version}\"")),
                ],
                format!("{path} version {version}"),
            )
                .into_response();
            if let Some(age) = age {
                response
                    .headers_mut()
                    .insert("age", age.as_secs().to_string().parse().expect("a number"));
            }
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cloudfront::invalidator::Invalidator;

    async fn get(edge: &FakeEdge, path: &str) -> reqwest::Response {
        reqwest::get(format!("http://{}{path}", edge.domain()))
            .await
            .expect("the fake edge answers")
    }

    fn header(r: &reqwest::Response, name: &str) -> Option<String> {
        r.headers()
            .get(name)
            .map(|v| v.to_str().expect("text").to_owned())
    }

    #[tokio::test(start_paused = true)]
    async fn caches_ages_and_forgets_only_completed_purges_it_obeys() {
        let cf = SimulatedCloudFront::new(["E1".to_owned()], Duration::from_secs(30));
        let edge = FakeEdge::start(Some((cf.clone(), "E1"))).await;
        let first = get(&edge, "/a.html").await;
        assert_eq!(
            header(&first, "x-cache").as_deref(),
            Some("Miss from cloudfront")
        );
        assert_eq!(header(&first, "age"), None);
        tokio::time::advance(Duration::from_secs(40)).await;
        let hit = get(&edge, "/a.html").await;
        assert_eq!(
            header(&hit, "x-cache").as_deref(),
            Some("Hit from cloudfront")
        );
        assert_eq!(header(&hit, "age").as_deref(), Some("40"));
        assert_eq!(header(&hit, "etag").as_deref(), Some("\"v1\""));

        let target = crate::cloudfront::invalidator::Target::Distribution("E1".to_owned());
        let paths = [CfPath::parse("/a*").expect("path")];
        cf.create(&target, "cfpurge-1", &paths)
            .await
            .expect("created");
        // In progress: still cached.
        let during = get(&edge, "/a.html").await;
        assert_eq!(
            header(&during, "x-cache").as_deref(),
            Some("Hit from cloudfront")
        );
        tokio::time::advance(Duration::from_secs(31)).await;
        let after = get(&edge, "/a.html").await;
        assert_eq!(
            header(&after, "x-cache").as_deref(),
            Some("Miss from cloudfront")
        );
        assert_eq!(header(&after, "etag").as_deref(), Some("\"v2\""));

        // One that ignores purges keeps its copy.
        edge.obey_purges(false);
        tokio::time::advance(Duration::from_secs(5)).await;
        cf.create(&target, "cfpurge-2", &paths)
            .await
            .expect("created");
        tokio::time::advance(Duration::from_secs(31)).await;
        let ignored = get(&edge, "/a.html").await;
        assert_eq!(
            header(&ignored, "x-cache").as_deref(),
            Some("Hit from cloudfront")
        );
        assert_eq!(header(&ignored, "age").as_deref(), Some("36"));
        assert_eq!(edge.seen().len(), 5);
    }

    #[tokio::test]
    async fn fails_and_redirects_on_cue() {
        let edge = FakeEdge::start(None).await;
        edge.behave(Behaviour::Fail);
        assert_eq!(get(&edge, "/x").await.status(), 503);
        edge.behave(Behaviour::Redirect(
            "http://127.0.0.1:9/elsewhere".to_owned(),
        ));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let moved = client
            .get(format!("http://{}/x", edge.domain()))
            .send()
            .await
            .expect("answer");
        assert_eq!(moved.status(), 301);
        assert_eq!(
            header(&moved, "location").as_deref(),
            Some("http://127.0.0.1:9/elsewhere")
        );
    }
}
