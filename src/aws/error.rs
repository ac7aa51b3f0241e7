//! The one place that says what an AWS SDK error means, for every adapter
//! (SQS, CloudFront): no answer (a transport failure), no answer in time,
//! throttling, a server fault, or a refusal by the service with its error
//! code. Each adapter turns a [`Classified`] into its own error type by its
//! codes; none looks at an [`SdkError`] itself. And the one retry policy
//! ([`backoff`]) that every retry on top of the SDK's own attempts follows.
//!
//! The SDK has already retried throttling and 5xx answers (standard mode,
//! three attempts) before an error gets here.

use std::error::Error as StdError;
use std::time::Duration;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// What kind of failure an error is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// No usable answer: the connection failed or the answer could not be
    /// read. The call may have taken effect.
    Transport,
    /// No answer in time. The call may have taken effect.
    Timeout,
    /// The service asked to slow down; nothing was done.
    Throttling,
    /// The service failed (5xx). The call may have taken effect.
    Server,
    /// The service refused the call, or the SDK could not make it (a
    /// request it could not build, a dispatch refused as the caller's fault:
    /// a bad endpoint, no credentials). Repeating it will not help; the
    /// code says why.
    Client,
}

impl Class {
    /// Whether the same call may succeed if simply made again later.
    pub fn is_transient(self) -> bool {
        !matches!(self, Class::Client)
    }
}

/// An SDK error, classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classified {
    pub class: Class,
    /// The service's error code (the typed variant's name where the model
    /// has one), or `ConstructionFailure` / `DispatchFailure` for a call the
    /// SDK could not make.
    pub code: Option<String>,
    /// The HTTP status of a service's answer.
    pub status: Option<u16>,
    /// What went wrong in a sentence, for logs, `/readyz` and messages: a
    /// service's code and message, or the chain of causes of a call that
    /// got no answer, at most [`MAX_TEXT`] bytes.
    pub text: String,
}

/// The longest [`Classified::text`]. The SDK's own full rendering
/// (`DisplayErrorContext`) ends with a debug dump of the whole error, the
/// response's headers and body included: kilobytes in every log line and
/// in `/readyz`, where one sentence is what helps.
pub const MAX_TEXT: usize = 400;

/// `err` and its causes, each once (the SDK repeats a service error's
/// text in its source), joined by ": ", cut at [`MAX_TEXT`] bytes.
fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let part = e.to_string();
        if !part.is_empty() && !parts.iter().any(|p| p.contains(&part)) {
            parts.push(part);
        }
        next = e.source();
    }
    cut(parts.join(": "))
}

/// `text` cut at [`MAX_TEXT`] bytes (on a character boundary), marked.
fn cut(mut text: String) -> String {
    if text.len() > MAX_TEXT {
        let mut end = MAX_TEXT - 3;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

impl Classified {
    /// Whether the code is one of `codes`.
    pub fn code_in(&self, codes: &[&str]) -> bool {
        self.code.as_deref().is_some_and(|c| codes.contains(&c))
    }
}

/// The modelled error variants of one operation's error type, by the code
/// each stands for: [`classify`] reads them before any code string. The
/// adapters implement it with [`typed_code!`].
pub trait TypedCode {
    fn typed_code(&self) -> Option<&'static str>;
}

/// Implements [`TypedCode`] for an operation's error type from its `is_*`
/// methods: `typed_code!(GetItemError { is_x => "X", ... });`.
macro_rules! typed_code {
    ($error:ty { $($is:ident => $code:literal),* $(,)? }) => {
        impl $crate::aws::error::TypedCode for $error {
            fn typed_code(&self) -> Option<&'static str> {
                $(if self.$is() {
                    return Some($code);
                })*
                None
            }
        }
    };
}
pub(crate) use typed_code;

/// Codes of throttling, from any AWS front end.
const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "KmsThrottled",
    "OverLimit",
    "SlowDown",
];

/// Codes of a server fault.
const SERVER: &[&str] = &[
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
];

/// Codes of a request the service gave up waiting for.
const TIMEOUT: &[&str] = &["RequestTimeout", "RequestTimeoutException"];

/// Codes of missing, wrong or insufficient credentials: answered by the
/// front end before the operation is known, so no operation models them.
pub const ACCESS_DENIED: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    "MissingAuthenticationToken",
    "InvalidSecurity",
    "KmsAccessDenied",
    "ExpiredToken",
    "ExpiredTokenException",
    "IncompleteSignature",
];

/// Classifies `err`. `typed` names the operation's modelled error variant,
/// if it is one (read before any code string: SQS's code strings keep
/// legacy names).
pub fn classify<E>(
    err: &SdkError<E, Response>,
    typed: impl FnOnce(&E) -> Option<&'static str>,
) -> Classified
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    let text = chain(err);
    let failed = |class: Class, code: Option<&str>| Classified {
        class,
        code: code.map(str::to_owned),
        status: None,
        text: text.clone(),
    };
    match err {
        SdkError::ConstructionFailure(_) => failed(Class::Client, Some("ConstructionFailure")),
        SdkError::TimeoutError(_) => failed(Class::Timeout, None),
        SdkError::ResponseError(_) => failed(Class::Transport, None),
        SdkError::DispatchFailure(failure) => {
            if failure.is_timeout() {
                failed(Class::Timeout, None)
            } else if failure.is_user() {
                failed(Class::Client, Some("DispatchFailure"))
            } else {
                failed(Class::Transport, None)
            }
        }
        SdkError::ServiceError(service) => {
            let modelled = typed(service.err());
            let code = modelled.or_else(|| service.err().code());
            let status = service.raw().status().as_u16();
            let class = match code {
                Some(c) if THROTTLING.contains(&c) => Class::Throttling,
                Some(c) if SERVER.contains(&c) => Class::Server,
                Some(c) if TIMEOUT.contains(&c) => Class::Timeout,
                // A modelled refusal is one, whatever the status says.
                _ if modelled.is_some() => Class::Client,
                _ if (500..=599).contains(&status) => Class::Server,
                _ if status == 429 => Class::Throttling,
                _ => Class::Client,
            };
            // The service's own words: its code and message.
            let text = match (code, service.err().message()) {
                (Some(c), Some(m)) => cut(format!("{c}: {m}")),
                (Some(c), None) => c.to_owned(),
                (None, Some(m)) => cut(format!("HTTP {status}: {m}")),
                (None, None) => format!("HTTP {status}"),
            };
            Classified {
                class,
                code: code.map(str::to_owned),
                status: Some(status),
                text,
            }
        }
        // `SdkError` is non-exhaustive; a new kind of failure is safest
        // treated as no answer, which is retried.
        _ => failed(Class::Transport, None),
    }
}

/// The one retry policy: exponential backoff with full jitter, a delay
/// drawn uniformly from zero to `base * 2^(attempt-1)`, capped at `cap`,
/// so that retries from several callers spread out instead of arriving
/// together. `attempt` counts the failures so far (1 after the first);
/// `jitter` is uniform in `[0, 1)`.
pub fn backoff(attempt: u32, jitter: f64, base: Duration, cap: Duration) -> Duration {
    let exp = attempt.saturating_sub(1).min(20);
    let ceiling = base.saturating_mul(1 << exp).min(cap);
    ceiling.mul_f64(jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_types::error::ErrorMetadata;

    #[derive(Debug)]
    struct Refused(ErrorMetadata);

    impl std::fmt::Display for Refused {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "refused")
        }
    }
    impl StdError for Refused {}
    impl ProvideErrorMetadata for Refused {
        fn meta(&self) -> &ErrorMetadata {
            &self.0
        }
    }

    fn service(code: Option<&str>, status: u16) -> Classified {
        let mut meta = ErrorMetadata::builder();
        if let Some(code) = code {
            meta = meta.code(code);
        }
        let err = SdkError::service_error(
            Refused(meta.build()),
            Response::new(status.try_into().unwrap(), "".into()),
        );
        classify(&err, |_| None)
    }

    #[test]
    fn codes_decide_before_the_status() {
        assert_eq!(service(Some("Throttling"), 400).class, Class::Throttling);
        assert_eq!(
            service(Some("RequestThrottled"), 403).class,
            Class::Throttling
        );
        assert_eq!(
            service(Some("ServiceUnavailable"), 400).class,
            Class::Server
        );
        assert_eq!(service(Some("RequestTimeout"), 400).class, Class::Timeout);
        let refused = service(Some("NoSuchDistribution"), 404);
        assert_eq!(refused.class, Class::Client);
        assert_eq!(refused.code.as_deref(), Some("NoSuchDistribution"));
        assert_eq!(refused.status, Some(404));
    }

    #[test]
    fn without_a_known_code_the_status_decides() {
        assert_eq!(service(None, 503).class, Class::Server);
        assert_eq!(service(Some("Odd"), 500).class, Class::Server);
        assert_eq!(service(None, 429).class, Class::Throttling);
        assert_eq!(service(None, 400).class, Class::Client);
        assert_eq!(service(Some("Odd"), 403).class, Class::Client);
    }

    #[test]
    fn the_typed_variant_wins_over_the_code_string() {
        let err = SdkError::service_error(
            Refused(
                ErrorMetadata::builder()
                    .code("AWS.SimpleQueueService.NonExistentQueue")
                    .build(),
            ),
            Response::new(400.try_into().unwrap(), "".into()),
        );
        let c = classify(&err, |_| Some("QueueDoesNotExist"));
        assert_eq!(c.code.as_deref(), Some("QueueDoesNotExist"));
        let at_500 = SdkError::service_error(
            Refused(ErrorMetadata::builder().build()),
            Response::new(500.try_into().unwrap(), "".into()),
        );
        assert_eq!(
            classify(&at_500, |_| Some("NoSuchDistribution")).class,
            Class::Client
        );
        assert_eq!(
            classify(&at_500, |_| Some("RequestThrottled")).class,
            Class::Throttling
        );
    }

    #[test]
    fn failures_to_get_an_answer() {
        let timeout: SdkError<Refused, Response> = SdkError::timeout_error("slow");
        assert_eq!(classify(&timeout, |_| None).class, Class::Timeout);
        let built: SdkError<Refused, Response> = SdkError::construction_failure("bad");
        let c = classify(&built, |_| None);
        assert_eq!(
            (c.class, c.code.as_deref()),
            (Class::Client, Some("ConstructionFailure"))
        );
        assert!(!c.class.is_transient());
        assert!(Class::Transport.is_transient() && Class::Server.is_transient());
    }

    #[test]
    fn the_text_is_a_sentence_without_the_sdk_debug_dump() {
        let err = SdkError::service_error(
            Refused(
                ErrorMetadata::builder()
                    .code("ResourceNotFoundException")
                    .message("Requested resource not found")
                    .build(),
            ),
            Response::new(400.try_into().unwrap(), "{\"a\": \"long body\"}".into()),
        );
        let c = classify(&err, |_| None);
        assert_eq!(
            c.text,
            "ResourceNotFoundException: Requested resource not found"
        );
        assert_eq!(service(None, 503).text, "HTTP 503");

        // No answer: the causes, each once, and nothing of the Debug form.
        #[derive(Debug)]
        struct Cause(&'static str, Option<Box<Cause>>);
        impl std::fmt::Display for Cause {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl StdError for Cause {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                self.1.as_deref().map(|c| c as _)
            }
        }
        let refused = Cause(
            "io error",
            Some(Box::new(Cause(
                "tcp connect error: Connection refused",
                Some(Box::new(Cause("Connection refused", None))),
            ))),
        );
        let err: SdkError<Refused, Response> = SdkError::timeout_error(refused);
        assert_eq!(
            classify(&err, |_| None).text,
            "request has timed out: io error: tcp connect error: Connection refused"
        );
        let long: SdkError<Refused, Response> =
            SdkError::construction_failure("é".repeat(MAX_TEXT));
        let text = classify(&long, |_| None).text;
        assert!(text.len() <= MAX_TEXT && text.ends_with("..."), "{text}");
    }

    #[test]
    fn backoff_grows_exponentially_with_full_jitter_and_a_cap() {
        let (base, cap) = (Duration::from_millis(500), Duration::from_secs(60));
        assert_eq!(backoff(1, 0.0, base, cap), Duration::ZERO);
        assert_eq!(backoff(1, 1.0, base, cap), base);
        assert_eq!(backoff(2, 1.0, base, cap), base * 2);
        assert_eq!(backoff(4, 0.5, base, cap), base * 4);
        assert_eq!(backoff(30, 1.0, base, cap), cap);
        assert_eq!(backoff(u32::MAX, 1.0, base, cap), cap);
        assert!(backoff(3, 0.999, base, cap) < base * 4);
    }
}
