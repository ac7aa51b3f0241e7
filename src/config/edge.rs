//! `[distributions.NAME.verify]` and `[distributions.NAME.warm]`: what
//! cfpurge does at the edge after an invalidation is `Completed`, checking
//! that the purge took and refilling the cache. Both are off unless
//! configured; both only ever request the distribution's own viewer domain.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Secret;

/// The fastest rate either may be set to: cfpurge is not a load generator.
pub const MAX_EDGE_PER_SECOND: f64 = 100.0;

/// The slowest: one request a day, below which nothing would be learned.
const MIN_EDGE_PER_SECOND: f64 = 1.0 / 86_400.0;

/// Most paths checked per invalidation: a sample, not a crawl.
pub const MAX_VERIFY_SAMPLE: u64 = 100;

/// Most paths warmed per invalidation: CloudFront keeps at most 3,000 exact
/// paths in progress, so one invalidation never names more.
pub const MAX_WARM_PATHS: u64 = crate::path::MAX_INFLIGHT_EXACT as u64;

/// Most extra request headers.
const MAX_HEADERS: usize = 32;

/// `verify.scheme`: how the edge is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum EdgeScheme {
    Https,
    /// Only for a test edge on loopback.
    Http,
}

impl EdgeScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            EdgeScheme::Https => "https",
            EdgeScheme::Http => "http",
        }
    }
}

impl TryFrom<String> for EdgeScheme {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "https" => Ok(EdgeScheme::Https),
            "http" => Ok(EdgeScheme::Http),
            _ => Err(format!(
                "{s:?} is not a scheme: expected \"https\" or \"http\""
            )),
        }
    }
}

impl Serialize for EdgeScheme {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// `[distributions.NAME.verify]`: after Completed, a sample of the purged
/// paths is requested from the viewer domain and the edge's own account of
/// each copy (`X-Cache`, `Age`) says whether the purge took.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerifyConfig {
    /// The viewer domain (`www.example.com`, or the distribution's
    /// `d111111abcdef8.cloudfront.net`), optionally with a port: every edge
    /// request, warming's too, goes there and nowhere else. Required.
    pub domain: String,
    /// `https`; `http` only for a test edge on loopback, since a purge check
    /// over plain HTTP could be answered by anything on the way.
    pub scheme: EdgeScheme,
    /// Exact paths checked per completed invalidation (0: none, e.g. to
    /// warm without verifying).
    pub sample: u64,
    /// Edge requests per second for verification of this distribution, a
    /// hard rate: the site's own viewers come first.
    pub per_second: f64,
    /// Extra request headers (for a path whose cached copy varies on them,
    /// e.g. `Accept-Encoding`). Their values may be secrets (a header the
    /// origin checks), so they are never printed.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Secret>,
    /// Re-invalidate a path found stale, once, if the budget has room: a
    /// stale copy usually means the edge missed the purge, and a second
    /// one costs one path.
    pub reinvalidate_stale: bool,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        VerifyConfig {
            domain: String::new(),
            scheme: EdgeScheme::Https,
            sample: 3,
            per_second: 2.0,
            headers: BTreeMap::new(),
            reinvalidate_stale: false,
        }
    }
}

/// `[distributions.NAME.warm]`: after Completed, the exact paths purged are
/// requested from the edge at a pace the operator chose, so the cache
/// refills from the origin then rather than at the first viewers'.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WarmConfig {
    /// Off unless set: warming costs a request (and a download) per path.
    pub enabled: bool,
    /// Warming requests per second for this distribution, a hard rate.
    pub per_second: f64,
    /// At most this many paths warmed per invalidation; exact paths only
    /// (a wildcard's requested paths, never the objects nobody asked for),
    /// and never a path `routing.skip` matches.
    pub max_paths: u64,
}

impl Default for WarmConfig {
    fn default() -> Self {
        WarmConfig {
            enabled: false,
            per_second: 5.0,
            max_paths: 100,
        }
    }
}

impl VerifyConfig {
    /// The origin every edge request goes to: `scheme://domain`.
    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme.as_str(), self.domain)
    }
}

/// The host of `domain` (`host`, `host:port` or `[v6]:port`), if it is
/// one cfpurge can send a request to.
fn host_of(domain: &str) -> Option<&str> {
    if let Some(rest) = domain.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<std::net::Ipv6Addr>().ok()?;
        return match after {
            "" => Some(v6),
            port => port_ok(port.strip_prefix(':')?).then_some(v6),
        };
    }
    let (host, port) = match domain.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    if port.is_some_and(|p| !port_ok(p)) {
        return None;
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    (!host.is_empty() && host.len() <= 253 && host.split('.').all(label_ok)).then_some(host)
}

fn port_ok(port: &str) -> bool {
    !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok()
}

/// Whether `host` is this machine: the only place plain HTTP may go.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Headers a request's framing or target depend on: set by cfpurge itself.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
];

/// Every problem with one distribution's `verify` and `warm`, as (key,
/// message). `token` is `http.enqueue_token`, which no edge request may
/// carry.
pub(super) fn problems(
    alias: &str,
    verify: Option<&VerifyConfig>,
    warm: Option<&WarmConfig>,
    token: Option<&Secret>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let key = format!("distributions.{alias}");
    let rate = |out: &mut Vec<(String, String)>, k: String, v: f64| {
        if !(MIN_EDGE_PER_SECOND..=MAX_EDGE_PER_SECOND).contains(&v) {
            out.push((
                k,
                format!(
                    "must be more than 0 and at most {MAX_EDGE_PER_SECOND} requests a second (got {v})"
                ),
            ));
        }
    };
    if let Some(verify) = verify {
        let k = format!("{key}.verify");
        if verify.domain.is_empty() {
            out.push((
                format!("{k}.domain"),
                "is required: the viewer domain edge requests go to, e.g. \"www.example.com\" \
                 or the distribution's \"d111111abcdef8.cloudfront.net\""
                    .to_owned(),
            ));
        } else {
            match host_of(&verify.domain) {
                None => out.push((
                    format!("{k}.domain"),
                    format!(
                        "{:?} is not a host name with an optional port (no scheme, no path), \
                         e.g. \"www.example.com\"",
                        verify.domain
                    ),
                )),
                Some(host) if verify.scheme == EdgeScheme::Http && !is_loopback(host) => {
                    out.push((
                        format!("{k}.scheme"),
                        format!(
                            "\"http\" is only for a test edge on loopback (domain is {:?}): \
                             over plain HTTP anything on the way could answer for the edge",
                            verify.domain
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        if verify.sample > MAX_VERIFY_SAMPLE {
            out.push((
                format!("{k}.sample"),
                format!(
                    "must be 0..={MAX_VERIFY_SAMPLE} (got {}): a sample, not a crawl; warm to request every path",
                    verify.sample
                ),
            ));
        }
        rate(&mut out, format!("{k}.per_second"), verify.per_second);
        if verify.headers.len() > MAX_HEADERS {
            out.push((
                format!("{k}.headers"),
                format!(
                    "has {} headers, at most {MAX_HEADERS}",
                    verify.headers.len()
                ),
            ));
        }
        for (name, value) in &verify.headers {
            let hk = format!("{k}.headers.{name}");
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                out.push((hk, "is not a valid HTTP header name".to_owned()));
            } else if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                out.push((
                    hk,
                    "is set by cfpurge itself (the host comes from verify.domain)".to_owned(),
                ));
            } else if reqwest::header::HeaderValue::from_str(value.expose()).is_err() {
                out.push((
                    hk,
                    "has a value that is not a valid HTTP header value (visible ASCII and spaces)"
                        .to_owned(),
                ));
            } else if token.is_some_and(|t| value.expose().contains(t.expose())) {
                out.push((
                    hk,
                    "carries http.enqueue_token: edge requests never send cfpurge's own token"
                        .to_owned(),
                ));
            }
        }
    }
    if let Some(warm) = warm {
        let k = format!("{key}.warm");
        if warm.enabled && verify.is_none() {
            out.push((
                format!("{k}.enabled"),
                format!(
                    "needs {key}.verify.domain, the viewer domain the paths are requested from \
                     (set {key}.verify.sample = 0 to warm without verifying)"
                ),
            ));
        }
        rate(&mut out, format!("{k}.per_second"), warm.per_second);
        if !(1..=MAX_WARM_PATHS).contains(&warm.max_paths) {
            out.push((
                format!("{k}.max_paths"),
                format!("must be 1..={MAX_WARM_PATHS} (got {})", warm.max_paths),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verify(domain: &str) -> VerifyConfig {
        VerifyConfig {
            domain: domain.to_owned(),
            ..VerifyConfig::default()
        }
    }

    #[test]
    fn domains_are_hosts_with_an_optional_port() {
        for ok in [
            "www.example.com",
            "d111111abcdef8.cloudfront.net",
            "127.0.0.1:8080",
            "[::1]:80",
            "localhost",
        ] {
            assert!(host_of(ok).is_some(), "{ok}");
        }
        for bad in [
            "https://www.example.com",
            "www.example.com/path",
            "www.example.com:",
            "www.example.com:99999",
            "-bad.example.com",
            "a..b",
            "[::1",
            "user@host",
        ] {
            assert!(host_of(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn plain_http_only_on_loopback() {
        let mut v = verify("www.example.com");
        v.scheme = EdgeScheme::Http;
        let found = problems("www", Some(&v), None, None);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "distributions.www.verify.scheme");
        v.domain = "127.0.0.1:9000".to_owned();
        assert!(problems("www", Some(&v), None, None).is_empty());
    }

    #[test]
    fn a_header_may_not_carry_the_enqueue_token_nor_set_the_host() {
        let mut v = verify("www.example.com");
        v.headers
            .insert("X-Check".to_owned(), Secret::new("Bearer s3cret-token"));
        v.headers
            .insert("Host".to_owned(), Secret::new("other.example.com"));
        let token = Secret::new("s3cret-token");
        let found = problems("www", Some(&v), None, Some(&token));
        let keys: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "distributions.www.verify.headers.Host",
                "distributions.www.verify.headers.X-Check"
            ]
        );
        assert!(found[1].1.contains("enqueue_token"), "{found:?}");
    }

    #[test]
    fn warming_needs_the_domain_and_bounded_figures() {
        let warm = WarmConfig {
            enabled: true,
            per_second: 0.0,
            max_paths: 0,
        };
        let found = problems("www", None, Some(&warm), None);
        let keys: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "distributions.www.warm.enabled",
                "distributions.www.warm.per_second",
                "distributions.www.warm.max_paths"
            ]
        );
        assert!(found[0].1.contains("verify.domain"), "{found:?}");
    }
}
