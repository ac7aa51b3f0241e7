//! `[http]`: the listener for metrics, health, status and enqueueing, its
//! limits, and the enqueue token.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Config, Validator};

/// `[http]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address and port (an IP address, not a host name) for `/metrics`,
    /// `/healthz`, `/readyz`, `/v1/status` and `/v1/purge`; loopback by
    /// default because `/v1/purge` spends money.
    #[serde(deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
    /// When set, `POST /v1/purge` needs `Authorization: Bearer <token>`.
    /// Never printed: `check-config` and `Debug` show `<redacted>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enqueue_token: Option<Secret>,
    /// Connections served at once; further clients wait in the kernel's
    /// accept queue, costing the daemon no file descriptor. Lowered at
    /// start-up to leave a reserve below the open-file limit, so that a
    /// flood of connections can never take the descriptors the ledger and
    /// the AWS clients need.
    pub max_connections: usize,
    /// A client must send a request's headers within this long, or the
    /// connection is closed; the same timer closes a keep-alive connection
    /// that stays idle this long between requests.
    pub header_timeout_seconds: u64,
    /// A request, body included, must be read and answered within this
    /// long, or it is answered 408 and the connection closed.
    pub request_timeout_seconds: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 9470)),
            enqueue_token: None,
            max_connections: 256,
            header_timeout_seconds: 10,
            request_timeout_seconds: 30,
        }
    }
}

/// `http.listen`, with a message that says what is expected.
fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(|_| {
        D::Error::custom(format!(
            "{s:?} is not an IP address and port such as \"127.0.0.1:9470\""
        ))
    })
}

/// A secret string (`http.enqueue_token`): `Debug` and `Serialize` print
/// `<redacted>`, so it cannot leak through logs or `check-config`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    const REDACTED: &'static str = "<redacted>";

    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares with a candidate in time that depends only on the lengths,
    /// so that a client cannot find the token byte by byte from timings.
    pub fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), candidate.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Secret::REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(Secret::REDACTED)
    }
}

/// Why a bearer token cannot work, if it cannot: a client sends it in an
/// `Authorization` header, whose value is trimmed and must be visible ASCII.
fn token_problem(token: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err("must not be empty (leave it unset for no token)".into());
    }
    if token.trim() != token {
        return Err(
            "must not start or end with white space: a client's header value is trimmed, so it would never match"
                .into(),
        );
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(
            "must be visible ASCII characters only (no spaces or control characters), as an HTTP header carries it"
                .into(),
        );
    }
    Ok(())
}

/// Most `http.max_connections`: far more than an operations endpoint needs,
/// and below any sensible open-file limit.
const MAX_HTTP_CONNECTIONS: u64 = 65_536;

impl Config {
    pub(super) fn check_http(&self, v: &mut Validator) {
        let h = &self.http;
        if let Some(token) = &h.enqueue_token
            && let Err(why) = token_problem(token.expose())
        {
            // The value itself is never printed.
            v.push("http.enqueue_token", why);
        }
        v.range(
            "http.max_connections",
            h.max_connections as u64,
            1,
            MAX_HTTP_CONNECTIONS,
        );
        v.range(
            "http.header_timeout_seconds",
            h.header_timeout_seconds,
            1,
            3600,
        );
        v.range(
            "http.request_timeout_seconds",
            h.request_timeout_seconds,
            1,
            3600,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_redacted_and_compares() {
        let s = Secret::new("s3cret");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"<redacted>\"");
        assert!(s.matches("s3cret"));
        assert!(!s.matches("s3creT"));
        assert!(!s.matches("s3cre"));
        assert_eq!(s.expose(), "s3cret");
    }
}
