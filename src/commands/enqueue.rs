//! `cfpurge enqueue`: builds one native purge request, checks it with the
//! daemon's own decoder, and sends it either to a daemon's `POST /v1/purge`
//! (`--url`) or straight to the configured SQS queue. Deploy scripts use it
//! so that they need neither the AWS CLI nor the JSON format.

use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{Config, DistributionConfig, SourceKind};
use crate::decode::{PurgeRequest, Rejection, Router, decode_native};
use crate::source::queue::{Queue, QueueError};
use crate::source::sqs::SqsQueue;

/// How long a `--url` request may take, connection included.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// The request as the command line gives it; serialized, it is the native
/// JSON format.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EnqueueRequest {
    /// Alias or id; the default distribution when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distribution: Option<String>,
    /// As given: the decoder validates and encodes them. Absent from the
    /// body when empty and there are tags.
    #[serde(skip_serializing_if = "skip_paths")]
    pub paths: Vec<String>,
    /// Cache tags, without `#` (`--tag`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Skip the quiet window.
    pub urgent: bool,
    /// Free text for the daemon's logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who asked, for the daemon's logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
}

/// `paths` is left out of the body only when it is empty: a request of
/// tags alone reads `{"tags": [...]}`.
fn skip_paths(paths: &[String]) -> bool {
    paths.is_empty()
}

impl EnqueueRequest {
    /// The native JSON body.
    pub fn to_body(&self) -> String {
        // Strings, a bool and a list of strings: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Where the request goes.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// A daemon's HTTP listener, `http://HOST:PORT`; the token, if any, is
    /// sent as a bearer token.
    Url {
        url: &'a str,
        token: Option<&'a str>,
    },
    /// The queue the configuration names.
    Queue(&'a Config),
}

/// Why `cfpurge enqueue` failed; [`EnqueueError::exit_status`] says how the
/// binary exits.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// The request itself is bad (exit 2).
    #[error("{0}")]
    Invalid(#[from] Rejection),
    /// The command line or configuration cannot work (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The daemon could not be reached or its answer not read (exit 1).
    #[error("cannot reach {url}: {detail}")]
    Unreachable { url: String, detail: String },
    /// The daemon answered with an error (exit 1).
    #[error("{url} answered {status}: {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    /// The queue refused or failed the send (exit 1).
    #[error("cannot send to the queue: {0}")]
    Queue(#[from] QueueError),
}

impl EnqueueError {
    /// 2 for a bad request or usage, 1 for a failure to deliver it.
    pub fn exit_status(&self) -> u8 {
        match self {
            EnqueueError::Invalid(_) | EnqueueError::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// Reads paths one per line for `--stdin`; blank lines and lines starting
/// with `#` are skipped, surrounding white space trimmed.
pub fn read_paths(input: impl BufRead) -> io::Result<Vec<String>> {
    let mut paths = Vec::new();
    for line in input.lines() {
        let line = line?;
        let text = line.trim();
        if !text.is_empty() && !text.starts_with('#') {
            paths.push(text.to_owned());
        }
    }
    Ok(paths)
}

/// Decodes `body` as the daemon will. With a configuration the distribution
/// must be one of its own; without one (`--url` from a machine with no
/// configuration) only the paths, their count and the texts are checked,
/// and the daemon judges the distribution.
pub fn validate(body: &str, config: Option<&Config>) -> Result<PurgeRequest, Rejection> {
    let router = match config {
        Some(config) => Router::new(config),
        None => Router::new(&any_distribution(body)),
    };
    decode_native(body.as_bytes(), &router)
}

/// A configuration in which the distribution the body names (or a stand-in
/// default) exists, so that decoding checks everything else.
fn any_distribution(body: &str) -> Config {
    #[derive(Deserialize)]
    struct Named {
        distribution: Option<String>,
    }
    let alias = serde_json::from_str::<Named>(body)
        .ok()
        .and_then(|n| n.distribution)
        .unwrap_or_else(|| "default".to_owned());
    let mut config = Config::default();
    config.distributions.insert(
        alias.clone(),
        DistributionConfig {
            id: alias.clone(),
            // Whether it takes tags is the daemon's to say.
            cache_tags: true,
            ..DistributionConfig::default()
        },
    );
    config.routing.default_distribution = Some(alias);
    config
}

/// Sends a validated body of `paths` paths to `target`; returns how many
/// paths were accepted.
pub async fn send(body: &str, paths: usize, target: Target<'_>) -> Result<usize, EnqueueError> {
    match target {
        Target::Url { url, token } => post(url, token, body).await,
        Target::Queue(config) => {
            send_to_queue(config, body).await?;
            Ok(paths)
        }
    }
}

/// `POST URL/v1/purge`; returns the daemon's `accepted` count.
pub async fn post(url: &str, token: Option<&str>, body: &str) -> Result<usize, EnqueueError> {
    let endpoint = endpoint(url, "/v1/purge")?;
    let client = http_client(&endpoint)?;
    let mut request = client
        .post(&endpoint)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_owned());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let unreachable = |e: reqwest::Error| EnqueueError::Unreachable {
        url: endpoint.clone(),
        detail: error_chain(&e),
    };
    let response = request.send().await.map_err(unreachable)?;
    let status = response.status();
    let text = response.text().await.map_err(unreachable)?;
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    if !status.is_success() {
        let message = answer["error"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| short(&text));
        return Err(EnqueueError::Refused {
            url: endpoint,
            status: status.as_u16(),
            message,
        });
    }
    answer["accepted"]
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| EnqueueError::Unreachable {
            url: endpoint.clone(),
            detail: format!("unexpected answer {}: {}", status.as_u16(), short(&text)),
        })
}

/// Sends the body to `source.queue_url`; returns the message id.
pub async fn send_to_queue(config: &Config, body: &str) -> Result<String, EnqueueError> {
    match config.source.kind {
        SourceKind::Local => Err(EnqueueError::Usage(format!(
            "source.kind is \"local\": that queue lives inside the running daemon; \
             send to it with --url http://{}",
            config.http.listen
        ))),
        SourceKind::Sqs => {
            let Some(queue_url) = config.source.queue_url.clone() else {
                return Err(EnqueueError::Usage(
                    "source.queue_url is not set; it names the queue to send to".into(),
                ));
            };
            // No long poll here: the client's timeouts are sized for a send.
            let client = crate::aws::sqs(
                &crate::aws::sdk_config(&config.aws).await,
                &config.aws,
                Duration::ZERO,
            );
            Ok(SqsQueue::new(client, queue_url, None).send(body).await?)
        }
    }
}

/// `URL` with `path` appended; only plain HTTP, since this build has no TLS
/// and the daemon listens on plain HTTP.
pub(crate) fn endpoint(url: &str, path: &str) -> Result<String, EnqueueError> {
    let base = url.trim_end_matches('/');
    if !base.starts_with("http://") {
        return Err(EnqueueError::Usage(format!(
            "--url {url:?}: expected http://HOST:PORT (the daemon's [http] listen; plain HTTP only)"
        )));
    }
    Ok(format!("{base}{path}"))
}

pub(crate) fn http_client(url: &str) -> Result<reqwest::Client, EnqueueError> {
    reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .build()
        .map_err(|e| EnqueueError::Unreachable {
            url: url.to_owned(),
            detail: error_chain(&e),
        })
}

/// An error and its sources on one line: reqwest's own message says only
/// "error sending request", the cause (connection refused, ...) is below.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

/// A server's answer cut to one short line for a message.
pub(crate) fn short(text: &str) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    let line = line.trim();
    if line.is_empty() {
        "(empty body)".to_owned()
    } else {
        line.to_owned()
    }
}

/// `cfpurge enqueue`'s options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file (else $CFPURGE_CONFIG, else
    /// /etc/cfpurge/cfpurge.toml); optional with --url, where it only
    /// adds a check of the distribution name.
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// Distribution alias or id (default: the default distribution).
    #[arg(long)]
    distribution: Option<String>,
    /// Skip the quiet window.
    #[arg(long)]
    urgent: bool,
    /// Free text for the daemon's logs (at most 256 characters).
    #[arg(long)]
    reason: Option<String>,
    /// Who asks, for the daemon's logs (at most 256 characters).
    #[arg(long)]
    requested_by: Option<String>,
    /// Read the paths from stdin, one per line, instead of the arguments.
    #[arg(long, conflicts_with = "paths")]
    stdin: bool,
    /// A cache tag to purge (its name, without "#"); repeat for more.
    /// Needs cache_tags = true on the distribution.
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// A daemon's HTTP listener, e.g. http://127.0.0.1:9470.
    #[arg(long)]
    url: Option<String>,
    /// Bearer token for --url (http.enqueue_token on the daemon).
    #[arg(long, env = "CFPURGE_ENQUEUE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Paths to purge, e.g. /index.html /assets/* (none needed with --tag).
    #[arg(required_unless_present_any = ["stdin", "tags"])]
    paths: Vec<String>,
}

/// `cfpurge enqueue`: the request built, checked with the daemon's own
/// decoder and sent; "accepted N paths" on stdout.
pub fn main(args: Args) -> Result<u8, super::Failure> {
    use super::Failure;
    let paths = if args.stdin {
        read_paths(io::stdin().lock())
            .map_err(|e| Failure::runtime(format!("cannot read the paths: {e}")))?
    } else {
        args.paths
    };
    if paths.is_empty() && args.tags.is_empty() {
        return Err(Failure::usage("no paths or tags to purge"));
    }
    let loaded = match &args.url {
        Some(_) => super::optional_config(args.config.as_deref())?,
        None => Some(super::load_config(args.config.as_deref())?),
    };
    let request = EnqueueRequest {
        distribution: args.distribution,
        paths,
        tags: args.tags,
        urgent: args.urgent,
        reason: args.reason,
        requested_by: args.requested_by,
    };
    let body = request.to_body();
    let decoded = validate(&body, loaded.as_ref()).map_err(Failure::usage)?;
    let target = match (&args.url, &loaded) {
        (Some(url), _) => Target::Url {
            url,
            token: args.token.as_deref(),
        },
        (None, Some(cfg)) => Target::Queue(cfg),
        // Loaded above whenever there is no URL.
        (None, None) => return Err(Failure::usage("no configuration")),
    };
    let accepted = super::current_thread()?
        .block_on(send(&body, decoded.paths.len(), target))
        .map_err(|e| Failure {
            status: e.exit_status(),
            message: e.to_string(),
        })?;
    let _ = writeln!(
        io::stdout(),
        "accepted {accepted} path{}",
        if accepted == 1 { "" } else { "s" }
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(paths: &[&str]) -> EnqueueRequest {
        EnqueueRequest {
            paths: paths.iter().map(|&p| p.to_owned()).collect(),
            ..EnqueueRequest::default()
        }
    }

    #[test]
    fn body_is_the_native_format() {
        let mut r = request(&["/a", "/b/*"]);
        assert_eq!(r.to_body(), r#"{"paths":["/a","/b/*"],"urgent":false}"#);
        r.distribution = Some("www".into());
        r.urgent = true;
        r.reason = Some("deploy 1".into());
        assert_eq!(
            r.to_body(),
            r#"{"distribution":"www","paths":["/a","/b/*"],"urgent":true,"reason":"deploy 1"}"#
        );
    }

    #[test]
    fn tags_go_in_the_body_without_their_marker() {
        let mut r = request(&[]);
        r.tags = vec!["blog".into(), "Product-42".into()];
        assert_eq!(
            r.to_body(),
            r#"{"tags":["blog","Product-42"],"urgent":false}"#
        );
        r.paths = vec!["/a".into()];
        assert_eq!(
            r.to_body(),
            r#"{"paths":["/a"],"tags":["blog","Product-42"],"urgent":false}"#
        );
        // Without a configuration the stand-in distribution takes tags.
        let decoded = validate(&r.to_body(), None).unwrap();
        let items: Vec<&str> = decoded.paths.iter().map(|p| p.as_str()).collect();
        assert_eq!(items, ["/a", "#blog", "#Product-42"]);
        r.tags.push("a,b".into());
        let err = validate(&r.to_body(), None).unwrap_err();
        assert!(err.to_string().starts_with("tags[2] \"a,b\""), "{err}");
        // A configured distribution without cache_tags refuses them.
        let config = Config::from_parts(
            Some("[source]\nkind = \"local\"\n[distributions.www]\nid = \"E2ABCDEF123456\"\n"),
            "test",
            Vec::new(),
        )
        .unwrap();
        r.tags.pop();
        assert!(matches!(
            validate(&r.to_body(), Some(&config)),
            Err(Rejection::TagsNotEnabled { .. })
        ));
    }

    #[test]
    fn validation_without_configuration_checks_paths_not_names() {
        let mut r = request(&["/a b", "/c"]);
        r.distribution = Some("anything".into());
        let decoded = validate(&r.to_body(), None).unwrap();
        assert_eq!(decoded.paths.len(), 2);
        assert_eq!(decoded.paths[0].to_string(), "/a%20b");
        let err = validate(&request(&["/ok", "no-slash"]).to_body(), None).unwrap_err();
        assert!(err.to_string().starts_with("paths[1]"), "{err}");
        assert!(validate(&request(&[]).to_body(), None).is_err());
    }

    #[test]
    fn validation_with_configuration_checks_the_distribution() {
        let config = Config::from_parts(
            Some("[source]\nkind = \"local\"\n[distributions.www]\nid = \"E2ABCDEF123456\"\n"),
            "test",
            Vec::new(),
        )
        .unwrap();
        let mut r = request(&["/a"]);
        assert_eq!(
            validate(&r.to_body(), Some(&config)).unwrap().distribution,
            "www"
        );
        r.distribution = Some("api".into());
        assert!(matches!(
            validate(&r.to_body(), Some(&config)),
            Err(Rejection::UnknownDistribution { .. })
        ));
    }

    #[test]
    fn stdin_skips_blanks_and_comments() {
        let paths = read_paths("/a\n\n  # note\n  /b  \n".as_bytes()).unwrap();
        assert_eq!(paths, ["/a", "/b"]);
    }

    #[test]
    fn only_plain_http_urls() {
        assert_eq!(
            endpoint("http://127.0.0.1:9470/", "/v1/purge").unwrap(),
            "http://127.0.0.1:9470/v1/purge"
        );
        assert!(endpoint("https://x", "/v1/purge").is_err());
        assert!(endpoint("127.0.0.1:9470", "/v1/purge").is_err());
    }

    #[tokio::test]
    async fn a_local_queue_needs_the_url() {
        let config = Config::from_parts(
            Some("[source]\nkind = \"local\"\n[distributions.www]\nid = \"E2ABCDEF123456\"\n"),
            "test",
            Vec::new(),
        )
        .unwrap();
        let err = send("{}", 1, Target::Queue(&config)).await.unwrap_err();
        assert_eq!(err.exit_status(), 2);
        assert!(err.to_string().contains("--url"), "{err}");
    }
}
