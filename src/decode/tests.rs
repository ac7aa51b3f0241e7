use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::config::Config;
use crate::path::PathError;

/// Two distributions; `www` is the default. Buckets: the site bucket maps
/// its whole tree to `/` with index documents; the assets bucket has two
/// routes, `public/` to `www` under `/static` and `docs/` to `docs` at the
/// top; the mirror bucket has two routes that overlap.
const CONFIG: &str = r#"
[source]
kind = "local"

[distributions.www]
id = "E2ABCDEF123456"

[distributions.docs]
id = "E3DOCS0000000"

[routing]
default_distribution = "www"

[[routing.s3]]
bucket = "www-site-bucket"
distribution = "www"
index_document = "index.html"

[[routing.s3]]
bucket = "assets-bucket"
distribution = "www"
key_prefix = "public/"
path_prefix = "/static"

[[routing.s3]]
bucket = "assets-bucket"
distribution = "docs"
key_prefix = "docs/"
path_prefix = "/"
index_document = "index.html"

[[routing.s3]]
bucket = "mirror-bucket"
distribution = "www"
path_prefix = "/site/"
index_document = "index.html"

[[routing.s3]]
bucket = "mirror-bucket"
distribution = "docs"
key_prefix = "site/"
path_prefix = "/"
"#;

const ALIASES: [&str; 2] = ["www", "docs"];

fn router_from(toml: &str) -> Router {
    let config = Config::from_parts(Some(toml), "test", std::iter::empty()).unwrap();
    Router::new(&config)
}

fn router() -> Router {
    router_from(CONFIG)
}

/// Two distributions and no default.
fn router_without_default() -> Router {
    router_from(
        r#"
[source]
kind = "local"
[distributions.www]
id = "E2ABCDEF123456"
[distributions.docs]
id = "E3DOCS0000000"
"#,
    )
}

fn ok(body: &str) -> Vec<PurgeRequest> {
    match decode(body, &router()) {
        Ok(r) => {
            assert_valid(&r);
            r
        }
        Err(e) => panic!("rejected ({}): {e}\nbody: {body}", e.reason().as_str()),
    }
}

fn err(body: &str) -> Rejection {
    match decode(body, &router()) {
        Ok(r) => panic!("accepted: {r:?}\nbody: {body}"),
        Err(e) => {
            assert_one_line(&e);
            e
        }
    }
}

/// The paths of the only request, which must be for `distribution`.
fn only(reqs: &[PurgeRequest], distribution: &str) -> Vec<String> {
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].distribution, distribution);
    strs(&reqs[0])
}

fn strs(req: &PurgeRequest) -> Vec<String> {
    req.paths.iter().map(|p| p.as_str().to_owned()).collect()
}

fn assert_valid(reqs: &[PurgeRequest]) {
    let mut total = 0;
    for r in reqs {
        assert!(ALIASES.contains(&r.distribution.as_str()), "{r:?}");
        assert!(!r.paths.is_empty(), "{r:?}");
        for p in &r.paths {
            assert_eq!(CfPath::parse_item(p.as_str()).as_ref(), Ok(p));
        }
        total += r.paths.len();
    }
    assert!(total <= MAX_PATHS_PER_MESSAGE);
}

fn assert_one_line(e: &Rejection) {
    let text = e.to_string();
    assert!(!text.contains(['\n', '\r']), "{text}");
    assert!(text.len() < 4096, "{} bytes", text.len());
}

// ---------------------------------------------------------------- AWS shapes

/// A record exactly as S3 writes it for `ObjectCreated:Put`; other event
/// names get the same fields (S3 omits size and eTag on deletes, which
/// nothing here reads).
fn s3_record(event: &str, bucket: &str, key: &str) -> Value {
    json!({
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-11-24T15:00:00.123Z",
        "eventName": event,
        "userIdentity": {"principalId": "AWS:AIDAJDPLRKLG7UEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "203.0.113.7"},
        "responseElements": {
            "x-amz-request-id": "C3D13FE58DE4C810",
            "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "cfpurge-site",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "A3NL1KOZZKEXAMPLE"},
                "arn": format!("arn:aws:s3:::{bucket}")
            },
            "object": {
                "key": key,
                "size": 1024,
                "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                "versionId": "096fKKXTRTtl3on89fVO.nfljtsv6qko",
                "sequencer": "0055AED6DCD90281E5"
            }
        }
    })
}

fn s3_event(records: &[(&str, &str, &str)]) -> String {
    let records: Vec<Value> = records
        .iter()
        .map(|(event, bucket, key)| s3_record(event, bucket, key))
        .collect();
    json!({ "Records": records }).to_string()
}

fn s3_put(bucket: &str, key: &str) -> String {
    s3_event(&[("ObjectCreated:Put", bucket, key)])
}

/// A notification exactly as SNS delivers it to SQS without raw delivery,
/// spacing included.
fn sns(message: &str) -> String {
    format!(
        r#"{{
  "Type" : "Notification",
  "MessageId" : "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
  "TopicArn" : "arn:aws:sns:us-east-1:123456789012:site-changes",
  "Subject" : "Amazon S3 Notification",
  "Message" : {},
  "Timestamp" : "2026-11-24T15:00:00.655Z",
  "SignatureVersion" : "1",
  "Signature" : "EXAMPLEw6JRNwm1LFQL4ICB0bnXrdB8ClRMTQFGBqwLpGbM78tJ4etTwC5zU7O3tS6tGpey3ejedNdOJ+1fkIp9F2/LmNVKb5aFlYq+9rk9ZiPph5YlLmWsDcyC5T+Sy9/umic5S0UQc2PEtgdpVBahwNOdMW4JPwk0kAJJztnc=",
  "SigningCertURL" : "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem",
  "UnsubscribeURL" : "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:us-east-1:123456789012:site-changes:c9135db0-26c4-47ec-8998-413945fb5a96"
}}"#,
        Value::String(message.to_owned())
    )
}

/// An S3 event exactly as EventBridge delivers it to an SQS target.
fn eventbridge(detail_type: &str, bucket: &str, key: &str) -> String {
    json!({
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": detail_type,
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2026-11-24T15:00:00Z",
        "region": "us-east-1",
        "resources": [format!("arn:aws:s3:::{bucket}")],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {
                "key": key,
                "size": 5,
                "etag": "b1946ac92492d2347c6235b4d2611184",
                "version-id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
                "sequencer": "00617F08299329D189"
            },
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": "123456789012",
            "source-ip-address": "203.0.113.7",
            "reason": "PutObject"
        }
    })
    .to_string()
}

const S3_TEST_EVENT: &str = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-24T15:57:02.089Z","Bucket":"www-site-bucket","RequestId":"5582815E1AEA5ADF","HostId":"8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"}"#;

// ------------------------------------------------------------------- native

#[test]
fn native_request_with_every_field() {
    let reqs = ok(
        r#"{"distribution": "www", "paths": ["/index.html", "/assets/*", "/my file.html"],
            "urgent": true, "reason": "deploy 4812", "requested_by": "checkout"}"#,
    );
    assert_eq!(
        reqs,
        vec![PurgeRequest {
            distribution: "www".into(),
            paths: vec![
                CfPath::parse("/index.html").unwrap(),
                CfPath::parse("/assets/*").unwrap(),
                CfPath::parse("/my%20file.html").unwrap(),
            ],
            skipped: Vec::new(),
            urgent: true,
            reason: Some("deploy 4812".into()),
            requested_by: Some("checkout".into()),
            s3_removed: None,
        }]
    );
}

#[test]
fn native_distribution_by_id_is_reported_by_alias() {
    let reqs = ok(r#"{"distribution": "E3DOCS0000000", "paths": ["/a"]}"#);
    assert_eq!(only(&reqs, "docs"), ["/a"]);
}

#[test]
fn native_without_distribution_goes_to_the_default() {
    for body in [
        r#"{"paths": ["/a"]}"#,
        r#"{"paths": ["/a"], "distribution": null}"#,
    ] {
        let reqs = ok(body);
        assert_eq!(only(&reqs, "www"), ["/a"]);
        assert!(!reqs[0].urgent);
        assert_eq!(reqs[0].reason, None);
        assert_eq!(reqs[0].requested_by, None);
    }
}

#[test]
fn native_without_distribution_and_without_default_is_unknown_distribution() {
    let e = decode(r#"{"paths": ["/a"]}"#, &router_without_default()).unwrap_err();
    assert_eq!(e, Rejection::NoDefaultDistribution);
    assert_eq!(e.reason(), RejectReason::UnknownDistribution);
}

#[test]
fn native_unknown_distribution_is_named() {
    let e = err(r#"{"distribution": "wwx", "paths": ["/a"]}"#);
    assert_eq!(e.reason(), RejectReason::UnknownDistribution);
    assert_eq!(
        e.to_string(),
        "distribution \"wwx\" is neither a configured alias nor a configured id"
    );
}

#[test]
fn native_unknown_field_is_malformed_and_named() {
    let e = err(r#"{"path": ["/a"], "urgent": true}"#);
    assert_eq!(e.reason(), RejectReason::Malformed);
    let text = e.to_string();
    assert!(
        text.starts_with("native request: unknown field `path`"),
        "{text}"
    );
}

#[test]
fn native_with_no_paths_is_malformed() {
    let e = err(r#"{"paths": []}"#);
    assert_eq!(e.reason(), RejectReason::Malformed);
    assert_eq!(
        e.to_string(),
        "native request: \"paths\" is empty; a request needs 1 to 3000 paths"
    );
    let e = err(r#"{"distribution": "www"}"#);
    assert_eq!(e.reason(), RejectReason::Malformed);
    assert_eq!(
        e.to_string(),
        "native request: \"paths\" is missing; a request needs 1 to 3000 paths (or \"tags\")"
    );
}

#[test]
fn native_with_wrong_types_is_malformed() {
    for body in [
        r#"{"paths": "/a"}"#,
        r#"{"paths": ["/a", 7]}"#,
        r#"{"paths": ["/a"], "urgent": "yes"}"#,
        r#"{"paths": ["/a"], "reason": 5}"#,
        r#"{"paths": ["/a"], "distribution": ["www"]}"#,
        r#"{"paths": ["/a"], "paths": ["/b"]}"#,
    ] {
        let e = err(body);
        assert_eq!(e.reason(), RejectReason::Malformed, "{body}: {e}");
        assert!(e.to_string().starts_with("native request: "), "{e}");
    }
}

#[test]
fn native_bad_path_names_the_entry_the_path_and_the_rule() {
    let e = err(r#"{"paths": ["/ok", "/a/*/b"]}"#);
    assert_eq!(e.reason(), RejectReason::InvalidPath);
    assert_eq!(
        e.to_string(),
        "paths[1] \"/a/*/b\": \"*\" is only allowed as the last character (found at character 4)"
    );
    let e = err(r#"{"paths": ["index.html"]}"#);
    assert_eq!(
        e.to_string(),
        "paths[0] \"index.html\": path must start with \"/\""
    );
    let e = err(r#"{"paths": ["/a\nb"]}"#);
    assert_eq!(
        e.to_string(),
        "paths[0] \"/a\\nb\": control character U+000A at character 3"
    );
}

#[test]
fn native_huge_bad_path_is_cut_short_in_the_detail() {
    let long = format!("/{}", "a".repeat(5000));
    let e = err(&json!({ "paths": [long] }).to_string());
    assert!(matches!(
        e,
        Rejection::InvalidPath {
            error: PathError::TooLong { len: 5001 },
            ..
        }
    ));
    let text = e.to_string();
    assert!(text.len() < 400, "{text}");
    assert!(text.contains("... (5001 characters)"), "{text}");
}

#[test]
fn native_path_count_limit() {
    let paths: Vec<String> = (0..MAX_PATHS_PER_MESSAGE)
        .map(|i| format!("/p{i}"))
        .collect();
    let reqs = ok(&json!({ "paths": paths }).to_string());
    assert_eq!(reqs[0].paths.len(), MAX_PATHS_PER_MESSAGE);

    let paths: Vec<String> = (0..=MAX_PATHS_PER_MESSAGE)
        .map(|i| format!("/p{i}"))
        .collect();
    let e = err(&json!({ "paths": paths }).to_string());
    assert_eq!(e, Rejection::TooManyPaths { count: 3001 });
    assert_eq!(e.reason(), RejectReason::TooLarge);
    assert_eq!(
        e.to_string(),
        "3001 paths; at most 3000 are allowed in one message"
    );
}

#[test]
fn native_text_fields_are_limited_in_characters() {
    // 256 two-byte characters fit: the limit counts characters.
    let fits = "é".repeat(MAX_TEXT_CHARS);
    let reqs = ok(&json!({ "paths": ["/a"], "reason": fits, "requested_by": fits }).to_string());
    assert_eq!(reqs[0].reason.as_deref(), Some(fits.as_str()));

    let long = "x".repeat(MAX_TEXT_CHARS + 1);
    let e = err(&json!({ "paths": ["/a"], "reason": long }).to_string());
    assert_eq!(e.reason(), RejectReason::TooLarge);
    assert_eq!(
        e.to_string(),
        "reason is 257 characters; at most 256 are allowed"
    );
    let e = err(&json!({ "paths": ["/a"], "requested_by": long }).to_string());
    assert_eq!(
        e,
        Rejection::TextTooLong {
            field: "requested_by",
            chars: 257
        }
    );
}

#[test]
fn native_text_fields_stay_on_one_line() {
    let reqs = ok(r#"{"paths": ["/a"], "reason": "deploy\nINFO forged line\t!"}"#);
    assert_eq!(reqs[0].reason.as_deref(), Some("deploy INFO forged line !"));
}

#[test]
fn decode_native_takes_only_the_native_format() {
    let r = router();
    let req = decode_native(br#"{"paths": ["/a"], "urgent": true}"#, &r).unwrap();
    assert_eq!(strs(&req), ["/a"]);
    assert!(req.urgent);

    for body in [
        s3_put("www-site-bucket", "a.js"),
        sns(r#"{"paths": ["/a"]}"#),
        "/a\n/b".to_owned(),
        "{oops".to_owned(),
        "[]".to_owned(),
    ] {
        let e = decode_native(body.as_bytes(), &r).unwrap_err();
        assert_eq!(e.reason(), RejectReason::Malformed, "{body}: {e}");
        assert_one_line(&e);
    }
    let e = decode_native(br#"{"paths": ["a"]}"#, &r).unwrap_err();
    assert_eq!(e.reason(), RejectReason::InvalidPath);
    let e = decode_native(&vec![b' '; MAX_BODY_BYTES + 1], &r).unwrap_err();
    assert_eq!(e.reason(), RejectReason::TooLarge);
    let e = decode_native(b"{\"paths\": [\"/\xff\"]}", &r).unwrap_err();
    assert_eq!(e, Rejection::NotUtf8 { offset: 13 });
}

#[test]
fn decode_native_refuses_the_array_form_as_the_queue_does() {
    let r = router();
    for body in [r#"[null, ["/x"]]"#, r#"["/x"]"#, r#"[null, ["/x"], true]"#] {
        let e = decode_native(body.as_bytes(), &r).unwrap_err();
        assert_eq!(e, decode(body, &r).unwrap_err(), "{body}");
        assert!(e.to_string().starts_with("body is an array"), "{e}");
    }
}

#[test]
fn decode_native_says_an_empty_body_is_empty() {
    let r = router();
    for body in ["", "  \r\n", "\u{FEFF}"] {
        let e = decode_native(body.as_bytes(), &r).unwrap_err();
        assert_eq!(e, Rejection::EmptyBody);
        assert_eq!(e.to_string(), "body is empty");
        assert_eq!(e.reason(), RejectReason::Malformed);
    }
    // For the queue an empty plain-text body asks for nothing.
    assert_eq!(decode("", &r), Ok(Vec::new()));
}

// --------------------------------------------------------------- plain text

#[test]
fn plain_text_one_path_per_line() {
    let reqs = ok(
        "# deploy 4812\r\n/index.html\r\n\r\n   /assets/app.js  \n\t# indented comment\n/docs/*\n/café",
    );
    assert_eq!(
        only(&reqs, "www"),
        ["/index.html", "/assets/app.js", "/docs/*", "/caf%C3%A9"]
    );
    assert!(!reqs[0].urgent);
}

#[test]
fn plain_text_bad_line_names_its_number() {
    let e = err("/a\n\n# c\nb.html\n/c");
    assert_eq!(e.reason(), RejectReason::InvalidPath);
    assert_eq!(
        e.to_string(),
        "line 4 \"b.html\": path must start with \"/\""
    );
    let e = err("/a\n/b\u{7}c");
    assert_eq!(
        e.to_string(),
        "line 2 \"/b\\u{7}c\": control character U+0007 at character 3"
    );
}

#[test]
fn plain_text_without_paths_is_nothing_to_purge() {
    assert_eq!(ok("# only a comment\n\n   \n"), vec![]);
    assert_eq!(ok(""), vec![]);
    // Even with no default: there is nothing to send anywhere.
    assert_eq!(decode("# nothing", &router_without_default()), Ok(vec![]));
}

#[test]
fn plain_text_without_default_distribution_is_unknown_distribution() {
    let e = decode("/a", &router_without_default()).unwrap_err();
    assert_eq!(e.reason(), RejectReason::UnknownDistribution);
}

#[test]
fn plain_text_path_count_limit() {
    let body: String = (0..MAX_PATHS_PER_MESSAGE + 5)
        .map(|i| format!("/p{i}\n# comment\n"))
        .collect();
    assert_eq!(err(&body), Rejection::TooManyPaths { count: 3005 });
}

// ---------------------------------------------------------- malformed bodies

#[test]
fn json_looking_invalid_json_is_malformed_never_text() {
    for body in [
        "{",
        "[",
        "{/index.html}",
        "  \n\t{\"paths\": [\"/a\"]",
        "{\"paths\": [\"/a\"]} trailing",
        "[\"/a\"",
        "{'paths': ['/a']}",
    ] {
        let e = err(body);
        assert_eq!(e.reason(), RejectReason::Malformed, "{body:?}");
        assert!(e.to_string().starts_with("body is not valid JSON: "), "{e}");
    }
}

#[test]
fn valid_json_of_no_known_shape_says_what_was_expected() {
    let e = err("{}");
    assert_eq!(e.reason(), RejectReason::Malformed);
    assert_eq!(
        e.to_string(),
        "body is an empty JSON object: expected a native request {\"paths\": [...]}, \
         an S3 event notification {\"Records\": [...]}, an EventBridge S3 event or an SNS notification"
    );
    let e = err(r#"["/a", "/b"]"#);
    assert!(
        e.to_string().starts_with("body is an array: expected"),
        "{e}"
    );
    let e = err(r#"{"path": ["/a"], "urgnet": true, "x": 1, "y": 2, "z": {"paths": []}}"#);
    assert!(
        e.to_string().starts_with(
            "body is a JSON object with keys \"path\", \"urgnet\", \"x\" and 2 more: expected"
        ),
        "{e}"
    );
}

#[test]
fn oversize_body_is_too_large_before_parsing() {
    let mut body = vec![b'{'; MAX_BODY_BYTES + 1];
    body[5] = 0xFF;
    let e = decode_bytes(&body, &router()).unwrap_err();
    assert_eq!(e, Rejection::BodyTooLarge { bytes: 1_048_577 });
    assert_eq!(e.reason(), RejectReason::TooLarge);

    // Exactly at the limit is read.
    let mut body = "# padding\n".repeat(MAX_BODY_BYTES / 10);
    body.push_str(&"#".repeat(MAX_BODY_BYTES - body.len() - 3));
    body.push_str("\n/a");
    assert_eq!(body.len(), MAX_BODY_BYTES);
    assert_eq!(only(&ok(&body), "www"), ["/a"]);
}

#[test]
fn invalid_utf8_is_malformed() {
    let e = decode_bytes(b"/a\n/b\xC3(", &router()).unwrap_err();
    assert_eq!(e, Rejection::NotUtf8 { offset: 5 });
    assert_eq!(e.reason(), RejectReason::Malformed);
    assert_eq!(
        e.to_string(),
        "body is not valid UTF-8 (first bad byte at offset 5)"
    );
}

#[test]
fn a_byte_order_mark_is_ignored() {
    let reqs = decode_bytes(b"\xEF\xBB\xBF/a\n/b", &router()).unwrap();
    assert_eq!(only(&reqs, "www"), ["/a", "/b"]);
    let native = b"\xEF\xBB\xBF{\"paths\": [\"/a\"]}";
    let reqs = decode_bytes(native, &router()).unwrap();
    assert_eq!(only(&reqs, "www"), ["/a"]);
    let req = decode_native(native, &router()).unwrap();
    assert_eq!(strs(&req), ["/a"]);
}

// ---------------------------------------------------------------- S3 events

#[test]
fn s3_put_record_as_aws_sends_it() {
    // Byte for byte the shape S3 delivers to SQS.
    let body = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventTime":"2026-11-24T15:00:00.123Z","eventName":"ObjectCreated:Put","userIdentity":{"principalId":"AWS:AIDAJDPLRKLG7UEXAMPLE"},"requestParameters":{"sourceIPAddress":"203.0.113.7"},"responseElements":{"x-amz-request-id":"C3D13FE58DE4C810","x-amz-id-2":"FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"},"s3":{"s3SchemaVersion":"1.0","configurationId":"cfpurge-site","bucket":{"name":"www-site-bucket","ownerIdentity":{"principalId":"A3NL1KOZZKEXAMPLE"},"arn":"arn:aws:s3:::www-site-bucket"},"object":{"key":"assets/app.4f2a.js","size":1024,"eTag":"d41d8cd98f00b204e9800998ecf8427e","versionId":"096fKKXTRTtl3on89fVO.nfljtsv6qko","sequencer":"0055AED6DCD90281E5"}}}]}"#;
    let reqs = ok(body);
    assert_eq!(only(&reqs, "www"), ["/assets/app.4f2a.js"]);
    assert!(!reqs[0].urgent);
    assert_eq!(reqs[0].reason, None);
}

#[test]
fn s3_created_and_removed_both_purge_other_events_are_skipped() {
    for event in [
        "ObjectCreated:Put",
        "ObjectCreated:Post",
        "ObjectCreated:Copy",
        "ObjectCreated:CompleteMultipartUpload",
        "ObjectRemoved:Delete",
        "ObjectRemoved:DeleteMarkerCreated",
        "s3:ObjectCreated:Put",
    ] {
        let reqs = ok(&s3_event(&[(event, "www-site-bucket", "a.css")]));
        assert_eq!(only(&reqs, "www"), ["/a.css"], "{event}");
    }
    for event in [
        "ObjectRestore:Post",
        "ObjectRestore:Completed",
        "ObjectTagging:Put",
        "ObjectAcl:Put",
        "LifecycleTransition",
        "ReducedRedundancyLostObject",
        "Replication:OperationFailedReplication",
    ] {
        assert_eq!(
            ok(&s3_event(&[(event, "www-site-bucket", "a.css")])),
            vec![],
            "{event}"
        );
    }
}

#[test]
fn s3_keys_are_form_decoded_then_taken_literally() {
    let cases = [
        ("my+file.png", "/my%20file.png"),
        ("my%20file.png", "/my%20file.png"),
        ("c%2B%2B.png", "/c++.png"),
        ("a+%2B+b.png", "/a%20+%20b.png"),
        ("caf%C3%A9.png", "/caf%C3%A9.png"),
        ("100%25.txt", "/100%25.txt"),
        ("50%25+off%21.txt", "/50%25%20off!.txt"),
        // A stray % that S3 would have encoded is still a percent sign.
        ("100%.txt", "/100%25.txt"),
        ("a*b.js", "/a%2Ab.js"),
        ("a%2Ab.js", "/a%2Ab.js"),
        ("dir%2Fsub/x%3D1.js", "/dir/sub/x=1.js"),
        ("%7Euser/%5Bx%5D.js", "/%7Euser/%5Bx%5D.js"),
    ];
    for (key, path) in cases {
        let reqs = ok(&s3_put("www-site-bucket", key));
        assert_eq!(only(&reqs, "www"), [path], "{key}");
    }
}

#[test]
fn s3_key_that_is_not_utf8_once_decoded_is_malformed() {
    let e = err(&s3_put("www-site-bucket", "a%FF.png"));
    assert_eq!(e.reason(), RejectReason::Malformed);
    assert_eq!(
        e.to_string(),
        "S3 event notification: Records[0].s3.object.key \"a%FF.png\" is not UTF-8 once decoded"
    );
}

#[test]
fn s3_key_that_makes_a_bad_path_is_invalid_path() {
    let e = err(&s3_put("www-site-bucket", "a%0Ab.png"));
    assert_eq!(e.reason(), RejectReason::InvalidPath);
    assert_eq!(
        e.to_string(),
        "key \"a\\nb.png\" in bucket \"www-site-bucket\" makes path \"/a\\nb.png\": \
         control character U+000A at character 3"
    );
    let e = err(&s3_put("www-site-bucket", &"%C3%A9".repeat(1400)));
    assert!(matches!(
        e,
        Rejection::InvalidPath {
            error: PathError::TooLong { .. },
            ..
        }
    ));
}

#[test]
fn s3_several_records_group_by_distribution() {
    let body = s3_event(&[
        ("ObjectCreated:Put", "www-site-bucket", "a.js"),
        (
            "ObjectCreated:Put",
            "assets-bucket",
            "docs/guide/intro.html",
        ),
        ("ObjectRemoved:Delete", "www-site-bucket", "b.js"),
        ("ObjectTagging:Put", "www-site-bucket", "skipped.js"),
        ("ObjectCreated:Put", "assets-bucket", "public/css/site.css"),
        // The same key again: one path.
        ("ObjectRemoved:Delete", "www-site-bucket", "a.js"),
    ]);
    let reqs = ok(&body);
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].distribution, "www");
    assert_eq!(strs(&reqs[0]), ["/a.js", "/b.js", "/static/css/site.css"]);
    assert_eq!(reqs[1].distribution, "docs");
    assert_eq!(strs(&reqs[1]), ["/guide/intro.html"]);
    // For the catalog: what the last record of each object deleted.
    let removed: Vec<&str> = reqs[0]
        .s3_removed
        .as_ref()
        .unwrap()
        .iter()
        .map(CfPath::as_str)
        .collect();
    assert_eq!(removed, ["/b.js", "/a.js"]);
    assert_eq!(reqs[1].s3_removed, Some(Vec::new()));
    let created_again = s3_event(&[
        ("ObjectRemoved:Delete", "www-site-bucket", "a.js"),
        ("ObjectCreated:Put", "www-site-bucket", "a.js"),
    ]);
    assert_eq!(ok(&created_again)[0].s3_removed, Some(Vec::new()));
}

#[test]
fn s3_routes_strip_key_prefix_and_prepend_path_prefix() {
    let reqs = ok(&s3_put("assets-bucket", "public/img/logo.svg"));
    assert_eq!(only(&reqs, "www"), ["/static/img/logo.svg"]);
    let reqs = ok(&s3_put("assets-bucket", "docs/a.html"));
    assert_eq!(only(&reqs, "docs"), ["/a.html"]);
    // "/site/" + "a.js": still one slash between.
    let reqs = ok(&s3_put("mirror-bucket", "other/a.js"));
    assert_eq!(only(&reqs, "www"), ["/site/other/a.js"]);
    // Outside every key_prefix of the bucket: skipped, nothing to purge.
    assert_eq!(ok(&s3_put("assets-bucket", "private/report.pdf")), vec![]);
    assert_eq!(ok(&s3_put("assets-bucket", "publicity.png")), vec![]);
}

#[test]
fn s3_index_documents_also_purge_their_directory() {
    let reqs = ok(&s3_put("www-site-bucket", "en/guides/deploy/index.html"));
    assert_eq!(
        only(&reqs, "www"),
        [
            "/en/guides/deploy/index.html",
            "/en/guides/deploy/",
            "/en/guides/deploy"
        ]
    );
    let reqs = ok(&s3_put("www-site-bucket", "index.html"));
    assert_eq!(only(&reqs, "www"), ["/index.html", "/"]);
    // Under a route's prefixes.
    let reqs = ok(&s3_put("assets-bucket", "docs/guide/index.html"));
    assert_eq!(
        only(&reqs, "docs"),
        ["/guide/index.html", "/guide/", "/guide"]
    );
    // Only a whole file name counts.
    let reqs = ok(&s3_put("www-site-bucket", "en/notindex.html"));
    assert_eq!(only(&reqs, "www"), ["/en/notindex.html"]);
    // A route without index_document purges the key only.
    let reqs = ok(&s3_put("assets-bucket", "public/index.html"));
    assert_eq!(only(&reqs, "www"), ["/static/index.html"]);
}

#[test]
fn s3_top_index_document_purges_the_path_prefix_itself() {
    let r = router_from(
        r#"
[source]
kind = "local"
[distributions.www]
id = "E2ABCDEF123456"
[[routing.s3]]
bucket = "b"
distribution = "www"
key_prefix = "site/"
path_prefix = "/static"
index_document = "index.html"
"#,
    );
    let reqs = decode(&s3_put("b", "site/index.html"), &r).unwrap();
    assert_eq!(
        only(&reqs, "www"),
        ["/static/index.html", "/static/", "/static"]
    );
    let reqs = decode(&s3_put("b", "site/a%20b/index.html"), &r).unwrap();
    assert_eq!(
        only(&reqs, "www"),
        [
            "/static/a%20b/index.html",
            "/static/a%20b/",
            "/static/a%20b"
        ]
    );
}

#[test]
fn s3_two_routes_for_one_bucket_both_apply() {
    // mirror-bucket: "" -> www under /site/, "site/" -> docs at the top.
    let reqs = ok(&s3_put("mirror-bucket", "site/index.html"));
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].distribution, "www");
    assert_eq!(
        strs(&reqs[0]),
        ["/site/site/index.html", "/site/site/", "/site/site"]
    );
    assert_eq!(reqs[1].distribution, "docs");
    assert_eq!(strs(&reqs[1]), ["/index.html"]);
}

#[test]
fn s3_unrouted_bucket_rejects_the_whole_message() {
    let body = s3_event(&[
        ("ObjectCreated:Put", "www-site-bucket", "a.js"),
        ("ObjectCreated:Put", "someone-elses-bucket", "b.js"),
    ]);
    let e = err(&body);
    assert_eq!(e.reason(), RejectReason::UnroutedBucket);
    assert_eq!(
        e.to_string(),
        "bucket \"someone-elses-bucket\" has no [[routing.s3]] route"
    );
}

#[test]
fn s3_test_event_is_nothing_to_purge() {
    assert_eq!(ok(S3_TEST_EVENT), vec![]);
    assert_eq!(ok(&sns(S3_TEST_EVENT)), vec![]);
}

#[test]
fn s3_path_count_limit_counts_distinct_paths() {
    let keys: Vec<String> = (0..1000).map(|i| format!("d{i}/index.html")).collect();
    let records: Vec<(&str, &str, &str)> = keys
        .iter()
        .map(|k| ("ObjectCreated:Put", "www-site-bucket", k.as_str()))
        .collect();
    // 1,000 index documents are 3,000 paths.
    let reqs = ok(&s3_event(&records));
    assert_eq!(reqs[0].paths.len(), 3000);
    let mut more = records.clone();
    more.push(("ObjectCreated:Put", "www-site-bucket", "one-more.js"));
    assert_eq!(
        err(&s3_event(&more)),
        Rejection::TooManyPaths { count: 3001 }
    );
    // Repeats do not count.
    let mut repeated = records.clone();
    repeated.extend(records.iter().take(10));
    assert_eq!(ok(&s3_event(&repeated))[0].paths.len(), 3000);
}

#[test]
fn s3_records_that_are_not_s3_records_are_malformed() {
    let mut record = s3_record("ObjectCreated:Put", "www-site-bucket", "a.js");
    record["eventSource"] = json!("aws:sqs");
    let e = err(&json!({ "Records": [record] }).to_string());
    assert_eq!(
        e.to_string(),
        "S3 event notification: Records[0].eventSource is \"aws:sqs\", not \"aws:s3\""
    );
    let mut record = s3_record("ObjectCreated:Put", "www-site-bucket", "a.js");
    record["s3"]["object"]
        .as_object_mut()
        .unwrap()
        .remove("key");
    let e = err(&json!({ "Records": [record] }).to_string());
    assert_eq!(e.reason(), RejectReason::Malformed);
    assert!(
        e.to_string()
            .starts_with("S3 event notification: missing field `key`"),
        "{e}"
    );
    let e = err(r#"{"Records": {"eventSource": "aws:s3"}}"#);
    assert_eq!(e.reason(), RejectReason::Malformed);
    let e = err(&s3_put("www-site-bucket", ""));
    assert_eq!(e.to_string(), "S3 event notification: object key is empty");
    // No records at all: nothing to purge.
    assert_eq!(ok(r#"{"Records": []}"#), vec![]);
}

// ---------------------------------------------------------------------- SNS

#[test]
fn sns_wrapped_s3_event() {
    let reqs = ok(&sns(&s3_put(
        "www-site-bucket",
        "docs/getting+started/index.html",
    )));
    assert_eq!(
        only(&reqs, "www"),
        [
            "/docs/getting%20started/index.html",
            "/docs/getting%20started/",
            "/docs/getting%20started"
        ]
    );
}

#[test]
fn sns_wrapped_native_plain_text_and_eventbridge() {
    let reqs = ok(&sns(
        r#"{"distribution": "docs", "paths": ["/a"], "urgent": true}"#,
    ));
    assert_eq!(only(&reqs, "docs"), ["/a"]);
    assert!(reqs[0].urgent);
    let reqs = ok(&sns("/a\n/b"));
    assert_eq!(only(&reqs, "www"), ["/a", "/b"]);
    let reqs = ok(&sns(&eventbridge(
        "Object Created",
        "www-site-bucket",
        "x.js",
    )));
    assert_eq!(only(&reqs, "www"), ["/x.js"]);
}

#[test]
fn sns_inner_body_is_judged_like_a_body() {
    let e = err(&sns("{\"paths\": [\"/a\""));
    assert!(e.to_string().starts_with("body is not valid JSON"), "{e}");
    let e = err(&sns("not a path"));
    assert_eq!(e.reason(), RejectReason::InvalidPath);
    assert_eq!(err(&sns("{}")).reason(), RejectReason::Malformed);
}

#[test]
fn sns_is_unwrapped_only_once() {
    let e = err(&sns(&sns("/a")));
    assert_eq!(e.reason(), RejectReason::Malformed);
    assert_eq!(
        e.to_string(),
        "SNS notification: its Message is itself an SNS envelope; only one is unwrapped"
    );
}

#[test]
fn sns_other_message_types_are_malformed() {
    let e = err(
        r#"{"Type": "SubscriptionConfirmation", "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b", "Token": "2336412f37", "TopicArn": "arn:aws:sns:us-east-1:123456789012:site-changes", "Message": "You have chosen to subscribe to the topic arn:aws:sns:us-east-1:123456789012:site-changes.\nTo confirm the subscription, visit the SubscribeURL included in this message.", "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:us-east-1:123456789012:site-changes&Token=2336412f37", "Timestamp": "2026-11-24T15:00:00.000Z", "SignatureVersion": "1", "Signature": "EXAMPLEpH+DcEwjAPg8O9mY8dReBSwksfg2S7WKQcikcNKWLQjwu6A4VbeS0QHVCkhRS7fUQvi2egU3N858fiTDN6bkkOxYDVrY0Ad8L10Hs3zH81mtnPk5uvvolIC1CXGu43obcgFxeL3khZl8IKvO61GWB6jI9b5+gLPoBc1Q=", "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem"}"#,
    );
    assert_eq!(e.reason(), RejectReason::Malformed);
    assert_eq!(
        e.to_string(),
        "SNS message: Type \"SubscriptionConfirmation\" is not a Notification (confirm a subscription with its SubscribeURL)"
    );
    let e = err(r#"{"Type": "Notification", "MessageId": "x"}"#);
    assert_eq!(e.to_string(), "SNS notification: has no \"Message\" string");
    let e = err(r#"{"Type": "Notification", "Message": {"paths": ["/a"]}}"#);
    assert_eq!(e.reason(), RejectReason::Malformed);
}

// -------------------------------------------------------------- EventBridge

#[test]
fn eventbridge_object_created_and_deleted() {
    let reqs = ok(&eventbridge(
        "Object Created",
        "www-site-bucket",
        "en/index.html",
    ));
    assert_eq!(only(&reqs, "www"), ["/en/index.html", "/en/", "/en"]);
    let reqs = ok(&eventbridge(
        "Object Deleted",
        "assets-bucket",
        "public/a.css",
    ));
    assert_eq!(only(&reqs, "www"), ["/static/a.css"]);
}

#[test]
fn eventbridge_keys_are_taken_as_they_come() {
    let reqs = ok(&eventbridge(
        "Object Created",
        "www-site-bucket",
        "c++ notes/café 100%.txt",
    ));
    assert_eq!(only(&reqs, "www"), ["/c++%20notes/caf%C3%A9%20100%25.txt"]);
    let reqs = ok(&eventbridge(
        "Object Created",
        "www-site-bucket",
        "a+b%20c*.txt",
    ));
    assert_eq!(only(&reqs, "www"), ["/a+b%2520c%2A.txt"]);
}

#[test]
fn eventbridge_other_s3_events_are_nothing_to_purge() {
    for detail_type in [
        "Object Restore Completed",
        "Object Tags Added",
        "Object ACL Updated",
        "Object Storage Class Changed",
    ] {
        assert_eq!(
            ok(&eventbridge(detail_type, "www-site-bucket", "a.js")),
            vec![]
        );
    }
}

#[test]
fn eventbridge_from_other_sources_or_without_detail_is_malformed() {
    let mut event: Value =
        serde_json::from_str(&eventbridge("Object Created", "www-site-bucket", "a")).unwrap();
    event["source"] = json!("aws.ec2");
    let e = err(&event.to_string());
    assert_eq!(
        e.to_string(),
        "EventBridge event: source is \"aws.ec2\"; only \"aws.s3\" events are purge requests"
    );
    event["source"] = json!("aws.s3");
    event.as_object_mut().unwrap().remove("detail");
    let e = err(&event.to_string());
    assert_eq!(e.reason(), RejectReason::Malformed);
    assert!(e.to_string().contains("missing field `detail`"), "{e}");
    let e = err(r#"{"source": "aws.s3"}"#);
    assert_eq!(
        e.to_string(),
        "EventBridge event: needs \"source\" and \"detail-type\" strings"
    );
}

#[test]
fn eventbridge_unrouted_bucket() {
    let e = err(&eventbridge("Object Created", "unknown-bucket", "a.js"));
    assert_eq!(e.reason(), RejectReason::UnroutedBucket);
}

// ----------------------------------------------------------------- reasons

#[test]
fn reason_codes_are_the_contract_names() {
    let names: Vec<&str> = RejectReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        names,
        [
            "malformed",
            "invalid_path",
            "unknown_distribution",
            "unrouted_bucket",
            "too_large",
            "invalid_tag",
            "tags_not_enabled"
        ]
    );
    assert_eq!(RejectReason::TooLarge.to_string(), "too_large");
}

#[test]
fn every_rejection_detail_is_one_line() {
    let bodies = [
        "{\"paths\": [\"/a\"], \"bad\nkey\u{2028}\": 1}".to_owned(),
        "{\"paths\": [\"/a\"], \"urgent\": \"multi\nline\"}".to_owned(),
        "{\"distribution\": \"a\nb\", \"paths\": [\"/a\"]}".to_owned(),
        sns("{\"Type\": \"Sub\nscription\"}"),
        s3_put("bucket\nname", "a"),
        s3_put("www-site-bucket", "%0D%0A"),
        eventbridge("Object Created", "www-site-bucket", "a\r\nb"),
        "{\"source\": \"aws\n.ec2\", \"detail-type\": \"x\"}".to_owned(),
        "/a\n/b\u{85}c".to_owned(),
    ];
    for body in &bodies {
        err(body);
    }
}

// --------------------------------------------------------------- properties

const KEYS: &[&str] = &[
    "Type",
    "Message",
    "Records",
    "eventSource",
    "eventName",
    "s3",
    "bucket",
    "name",
    "object",
    "key",
    "Event",
    "Service",
    "source",
    "detail-type",
    "detail",
    "distribution",
    "paths",
    "urgent",
    "reason",
    "requested_by",
];

const STRINGS: &[&str] = &[
    "Notification",
    "SubscriptionConfirmation",
    "aws:s3",
    "ObjectCreated:Put",
    "ObjectRemoved:Delete",
    "s3:TestEvent",
    "aws.s3",
    "Object Created",
    "Object Deleted",
    "www",
    "docs",
    "E3DOCS0000000",
    "www-site-bucket",
    "assets-bucket",
    "mirror-bucket",
    "public/index.html",
    "docs/index.html",
    "index.html",
    "/",
    "/a/*",
    "",
];

fn json_string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(STRINGS).prop_map(str::to_owned),
        2 => "[/a-z%+*#? .\u{e9}\n]{0,12}",
        1 => any::<String>(),
    ]
}

fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        json_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((json_key(), inner), 0..8)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// Ok answers hold valid paths for configured distributions, within the
/// limit; rejections are one bounded line.
fn check(result: Result<Vec<PurgeRequest>, Rejection>) -> Result<(), TestCaseError> {
    match result {
        Ok(reqs) => {
            let mut total = 0;
            for r in &reqs {
                prop_assert!(ALIASES.contains(&r.distribution.as_str()));
                prop_assert!(!r.paths.is_empty());
                for p in &r.paths {
                    prop_assert_eq!(CfPath::parse(p.as_str()), Ok(p.clone()));
                }
                total += r.paths.len();
            }
            prop_assert!(total <= MAX_PATHS_PER_MESSAGE);
        }
        Err(e) => {
            let text = e.to_string();
            prop_assert!(!text.contains(['\n', '\r']), "{}", text);
            prop_assert!(text.len() < 4096);
            prop_assert!(RejectReason::ALL.contains(&e.reason()));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn never_panics_on_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        check(decode_bytes(&body, &router()))?;
        let _ = decode_native(&body, &router());
    }

    #[test]
    fn never_panics_on_text(body in "[{\\[/a-z\"%+*#:,\\]} \n\r\t]{0,200}") {
        check(decode(&body, &router()))?;
    }

    #[test]
    fn never_panics_on_json(value in json_value()) {
        let body = value.to_string();
        check(decode(&body, &router()))?;
        if let Ok(req) = decode_native(body.as_bytes(), &router()) {
            check(Ok(vec![req]))?;
        }
    }

    #[test]
    fn never_panics_on_json_inside_sns(value in json_value(), raw in any::<String>()) {
        check(decode(&sns(&value.to_string()), &router()))?;
        check(decode(&sns(&raw), &router()))?;
    }

    #[test]
    fn s3_events_with_any_keys_give_valid_paths(
        records in prop::collection::vec(
            (
                prop::sample::select(&["ObjectCreated:Put", "ObjectRemoved:Delete", "ObjectTagging:Put"][..]),
                prop::sample::select(&["www-site-bucket", "assets-bucket", "mirror-bucket"][..]),
                prop_oneof![
                    "(public/|docs/|site/)?[a-z%+*#? .\u{e9}/]{0,20}(index.html)?",
                    any::<String>(),
                ],
            ),
            1..6,
        ),
        wrap in any::<bool>(),
    ) {
        let records: Vec<(&str, &str, &str)> =
            records.iter().map(|(e, b, k)| (*e, *b, k.as_str())).collect();
        let body = s3_event(&records);
        let body = if wrap { sns(&body) } else { body };
        check(decode(&body, &router()))?;
        for (_, bucket, key) in &records {
            check(decode(&eventbridge("Object Created", bucket, key), &router()))?;
        }
    }

    #[test]
    fn native_requests_with_any_paths_give_valid_paths(
        paths in prop::collection::vec(
            prop_oneof!["/[a-z%+*#? .\u{e9}~\\[\\]/]{0,20}", any::<String>()],
            1..10,
        ),
    ) {
        let body = json!({ "paths": paths }).to_string();
        let result = decode(&body, &router());
        if let Ok(reqs) = &result {
            prop_assert_eq!(reqs[0].paths.len(), paths.len());
        }
        check(result)?;
    }
}

#[test]
fn deep_nesting_does_not_overflow_the_stack() {
    let deep =
        |open: &str, close: &str| format!("{}0{}", open.repeat(100_000), close.repeat(100_000));
    let arrays = deep("[", "]");
    let objects = deep("{\"a\":", "}");
    let r = router();
    // Where a value is read, serde_json's depth limit stops it.
    for body in [
        arrays.clone(),
        format!("{{\"Records\": [{arrays}]}}"),
        format!("{{\"paths\": [\"/a\"], \"reason\": {objects}}}"),
        sns(&arrays),
    ] {
        let e = decode(&body, &r).unwrap_err();
        assert_eq!(e.reason(), RejectReason::Malformed);
        assert_one_line(&e);
    }
    // Where it is skipped (fields nobody reads), it is skipped without
    // recursion.
    let record = s3_put("www-site-bucket", "a.js").replace(
        "\"awsRegion\"",
        &format!("\"deep\": {arrays}, \"awsRegion\""),
    );
    assert_eq!(only(&decode(&record, &r).unwrap(), "www"), ["/a.js"]);
    let event = eventbridge("Object Created", "www-site-bucket", "a.js")
        .replace("\"account\"", &format!("\"deep\": {objects}, \"account\""));
    assert_eq!(only(&decode(&event, &r).unwrap(), "www"), ["/a.js"]);
    let e = decode(&format!("{{\"x\": {objects}}}"), &r).unwrap_err();
    assert!(matches!(e, Rejection::UnknownShape { .. }), "{e}");
}

// ------------------------------------------------------ cache tags and skip

/// `www` takes cache tags, `docs` does not; `routing.skip` drops the
/// content-hashed assets of a bundler's output and everything under
/// `/_astro/`.
const TAGS_AND_SKIP: &str = r#"
[source]
kind = "local"

[distributions.www]
id = "E2ABCDEF123456"
cache_tags = true

[distributions.docs]
id = "E3DOCS0000000"

[routing]
default_distribution = "www"
skip = ['\.[0-9a-f]{8,}\.(js|css|mjs|woff2?)(\.map)?$', '^/_astro/']

[[routing.s3]]
bucket = "www-site-bucket"
distribution = "www"
index_document = "index.html"
"#;

fn tagged(body: &str) -> Result<Vec<PurgeRequest>, Rejection> {
    let result = decode(body, &router_from(TAGS_AND_SKIP));
    if let Err(e) = &result {
        assert_one_line(e);
    }
    result
}

fn tagged_paths(body: &str) -> Vec<String> {
    let reqs = tagged(body).unwrap_or_else(|e| panic!("rejected: {e}"));
    only(&reqs, "www")
}

#[test]
fn tags_alone_need_no_paths() {
    assert_eq!(
        tagged_paths(r#"{"tags": ["blog", "Product-42"]}"#),
        ["#blog", "#Product-42"]
    );
    assert_eq!(
        tagged_paths(r#"{"paths": [], "tags": ["blog"]}"#),
        ["#blog"]
    );
    assert_eq!(tagged_paths(r##"{"paths": ["#blog"]}"##), ["#blog"]);
}

#[test]
fn paths_and_tags_mix_paths_entries_first() {
    assert_eq!(
        tagged_paths(r##"{"paths": ["/a b", "#x", "/c/*"], "tags": ["y"], "urgent": true}"##),
        ["/a%20b", "#x", "/c/*", "#y"]
    );
}

#[test]
fn a_request_holds_each_tag_once_in_its_first_spelling() {
    assert_eq!(
        tagged_paths(r##"{"paths": ["#Blog", "/a"], "tags": ["blog", "BLOG", "news", "NEWS"]}"##),
        ["#Blog", "/a", "#news"]
    );
}

#[test]
fn paths_and_tags_together_are_at_most_3000() {
    let paths: Vec<String> = (0..MAX_PATHS_PER_MESSAGE - 2)
        .map(|i| format!("/p{i}"))
        .collect();
    let body = json!({ "paths": paths.iter().chain(["#t0".to_owned()].iter()).collect::<Vec<_>>(), "tags": ["t1"] });
    let reqs = tagged(&body.to_string()).unwrap();
    assert_eq!(reqs[0].paths.len(), MAX_PATHS_PER_MESSAGE);

    // One more, as a tag or a `#` entry: too large, the tags counted apart.
    let body = json!({ "paths": paths.iter().chain(["#t0".to_owned()].iter()).collect::<Vec<_>>(), "tags": ["t1", "t2"] });
    let e = tagged(&body.to_string()).unwrap_err();
    assert_eq!(
        e,
        Rejection::TooManyEntries {
            paths: 2998,
            tags: 3
        }
    );
    assert_eq!(e.reason(), RejectReason::TooLarge);
    assert_eq!(
        e.to_string(),
        "2998 paths and 3 tags; at most 3000 together are allowed in one message"
    );
    // Case duplicates still count as entries: the limit is on the request.
    let tags: Vec<String> = (0..=MAX_PATHS_PER_MESSAGE)
        .map(|_| "same".to_owned())
        .collect();
    let e = tagged(&json!({ "tags": tags }).to_string()).unwrap_err();
    assert_eq!(
        e,
        Rejection::TooManyEntries {
            paths: 0,
            tags: 3001
        }
    );
}

#[test]
fn every_tag_rule_is_invalid_tag_naming_the_entry() {
    let long = "t".repeat(257);
    for (body, detail) in [
        (
            json!({"tags": ["ok", "a,b"]}),
            "tags[1] \"a,b\": character ',' at character 2 is not allowed in a tag (visible ASCII only, without \",\" and \"*\")",
        ),
        (
            json!({"tags": ["a*"]}),
            "tags[0] \"a*\": character '*' at character 2 is not allowed in a tag (visible ASCII only, without \",\" and \"*\")",
        ),
        (
            json!({"tags": ["a b"]}),
            "tags[0] \"a b\": character ' ' at character 2 is not allowed in a tag (visible ASCII only, without \",\" and \"*\")",
        ),
        (
            json!({"tags": ["caf\u{e9}"]}),
            "tags[0] \"caf\u{e9}\": character '\u{e9}' at character 4 is not allowed in a tag (visible ASCII only, without \",\" and \"*\")",
        ),
        (
            json!({"tags": ["a\nb"]}),
            "tags[0] \"a\\nb\": character '\\n' at character 2 is not allowed in a tag (visible ASCII only, without \",\" and \"*\")",
        ),
        (json!({"tags": [""]}), "tags[0] \"\": tag is empty"),
        (
            json!({"paths": ["/a", "#"]}),
            "paths[1] \"#\": tag is empty",
        ),
        (
            json!({"tags": [long]}),
            "tags[0] \"tttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt\"... (257 characters): tag is 257 characters; CloudFront allows at most 256",
        ),
        (
            json!({"tags": ["#blog"]}),
            "tags[0] \"#blog\": a tag's name does not start with \"#\" (the tag x is \"x\" in \"tags\" and \"#x\" in \"paths\")",
        ),
        (
            json!({"paths": ["##blog"]}),
            "paths[0] \"##blog\": a tag's name does not start with \"#\" (the tag x is \"x\" in \"tags\" and \"#x\" in \"paths\")",
        ),
    ] {
        let e = tagged(&body.to_string()).unwrap_err();
        assert_eq!(e.reason(), RejectReason::InvalidTag, "{body}");
        assert_eq!(e.to_string(), detail, "{body}");
    }
    // 256 characters is the longest tag.
    let longest = "t".repeat(256);
    assert_eq!(
        tagged_paths(&json!({"tags": [longest]}).to_string()).len(),
        1
    );
}

#[test]
fn tags_for_a_distribution_without_cache_tags_are_refused() {
    for body in [
        r#"{"distribution": "docs", "tags": ["x"]}"#,
        r##"{"distribution": "E3DOCS0000000", "paths": ["/a", "#x"]}"##,
    ] {
        let e = tagged(body).unwrap_err();
        assert_eq!(e.reason(), RejectReason::TagsNotEnabled, "{body}");
        assert_eq!(
            e.to_string(),
            "the request has cache tags, but distribution docs does not have cache_tags = true \
             (without a CacheTagConfig CloudFront purges nothing by tag)"
        );
    }
    // Paths alone are fine there.
    let reqs = tagged(r#"{"distribution": "docs", "paths": ["/a"]}"#).unwrap();
    assert_eq!(only(&reqs, "docs"), ["/a"]);
    // And a tag to the default router (no cache_tags anywhere) too.
    assert_eq!(
        err(r#"{"tags": ["x"]}"#).reason(),
        RejectReason::TagsNotEnabled
    );
}

#[test]
fn a_request_without_paths_or_tags_is_malformed() {
    for (body, detail) in [
        (
            r#"{"paths": [], "tags": []}"#,
            "native request: \"paths\" and \"tags\" are empty; a request needs 1 to 3000 paths and tags together",
        ),
        (
            r#"{"tags": []}"#,
            "native request: \"paths\" and \"tags\" are empty; a request needs 1 to 3000 paths and tags together",
        ),
    ] {
        let e = tagged(body).unwrap_err();
        assert_eq!(e.reason(), RejectReason::Malformed);
        assert_eq!(e.to_string(), detail);
    }
    let e = tagged(r#"{"tags": "blog"}"#).unwrap_err();
    assert_eq!(e.reason(), RejectReason::Malformed);
    assert!(
        e.to_string()
            .starts_with("native request: \"tags\": invalid type"),
        "{e}"
    );
}

#[test]
fn native_value_of_the_wrong_type_names_its_field() {
    for (body, detail) in [
        (
            r#"{"paths": "/docs/"}"#,
            "native request: \"paths\": invalid type: string \"/docs/\", expected a sequence at line 1 column 18",
        ),
        (
            r#"{"paths": ["/a", 7]}"#,
            "native request: \"paths[1]\": invalid type: integer `7`, expected a string at line 1 column 18",
        ),
        (
            r#"{"paths": ["/a"], "urgent": "yes"}"#,
            "native request: \"urgent\": invalid type: string \"yes\", expected a boolean at line 1 column 33",
        ),
        (
            r#"{"distribution": 5, "paths": ["/a"]}"#,
            "native request: \"distribution\": invalid type: integer `5`, expected a string at line 1 column 18",
        ),
    ] {
        let e = err(body);
        assert_eq!(e.reason(), RejectReason::Malformed, "{body}");
        assert_eq!(e.to_string(), detail, "{body}");
    }
    // Whatever follows the object is still refused.
    let e = err(r#"{"paths": ["/a"]} x"#);
    assert_eq!(e.reason(), RejectReason::Malformed, "{e}");
}

#[test]
fn plain_text_hash_lines_stay_comments() {
    assert_eq!(tagged_paths("#blog\n/a\n# note\n"), ["/a"]);
}

#[test]
fn post_takes_tags_as_the_queue_does() {
    let router = router_from(TAGS_AND_SKIP);
    let body = r##"{"paths": ["#Blog", "/a.3f8a2c1d.js"], "tags": ["blog", "news"]}"##;
    let request = decode_native(body.as_bytes(), &router).unwrap();
    assert_eq!(strs(&request), ["#Blog", "#news"]);
    assert_eq!(request.skipped, [CfPath::parse("/a.3f8a2c1d.js").unwrap()]);
    assert_eq!(decode(body, &router), Ok(vec![request]));
}

#[test]
fn skip_drops_hashed_assets_of_a_deploy_and_keeps_the_pages() {
    let body = s3_event(&[
        ("ObjectCreated:Put", "www-site-bucket", "index.html"),
        ("ObjectCreated:Put", "www-site-bucket", "docs/index.html"),
        (
            "ObjectCreated:Put",
            "www-site-bucket",
            "assets/index.3f8a2c1d.js",
        ),
        (
            "ObjectCreated:Put",
            "www-site-bucket",
            "assets/index.3f8a2c1d.js.map",
        ),
        (
            "ObjectCreated:Put",
            "www-site-bucket",
            "assets/style.0badc0de.css",
        ),
        (
            "ObjectCreated:Put",
            "www-site-bucket",
            "assets/inter.deadbeef99.woff2",
        ),
        (
            "ObjectCreated:Put",
            "www-site-bucket",
            "_astro/page.B2xYz.js",
        ),
        ("ObjectCreated:Put", "www-site-bucket", "assets/logo.png"),
        // Too short a hash to be one: kept.
        ("ObjectCreated:Put", "www-site-bucket", "app.v2.js"),
    ]);
    let reqs = tagged(&body).unwrap();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        strs(&reqs[0]),
        [
            "/index.html",
            "/",
            "/docs/index.html",
            "/docs/",
            "/docs",
            "/assets/logo.png",
            "/app.v2.js"
        ]
    );
    let skipped: Vec<&str> = reqs[0].skipped.iter().map(CfPath::as_str).collect();
    assert_eq!(
        skipped,
        [
            "/assets/index.3f8a2c1d.js",
            "/assets/index.3f8a2c1d.js.map",
            "/assets/style.0badc0de.css",
            "/assets/inter.deadbeef99.woff2",
            "/_astro/page.B2xYz.js",
        ]
    );
    // The catalog still learns what the event says of every object.
    assert_eq!(reqs[0].s3_removed.as_deref(), Some(&[][..]));
}

#[test]
fn a_message_of_only_skipped_paths_asks_for_nothing() {
    let body = s3_event(&[
        (
            "ObjectCreated:Put",
            "www-site-bucket",
            "assets/index.3f8a2c1d.js",
        ),
        (
            "ObjectCreated:Put",
            "www-site-bucket",
            "assets/style.0badc0de.css",
        ),
    ]);
    let reqs = tagged(&body).unwrap();
    assert_eq!(reqs.len(), 1);
    assert!(reqs[0].paths.is_empty());
    assert_eq!(reqs[0].skipped.len(), 2);
    let reqs = tagged("/assets/a.0123456789.js\n").unwrap();
    assert!(reqs[0].paths.is_empty());
    assert_eq!(reqs[0].skipped.len(), 1);
}

#[test]
fn skip_matches_the_encoded_path_in_every_format_and_never_a_tag() {
    let router = router_from(
        r#"
[source]
kind = "local"
[distributions.www]
id = "E2ABCDEF123456"
cache_tags = true
[routing]
skip = ['%20', 'blog$']
"#,
    );
    let one = |body: &str| {
        let reqs = decode(body, &router).unwrap();
        assert_eq!(reqs.len(), 1);
        (
            strs(&reqs[0]),
            reqs[0]
                .skipped
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>(),
        )
    };
    // Matched against `/a%20b`, not `/a b`; `#blog` is a tag, not a path.
    assert_eq!(
        one(r##"{"paths": ["/a b", "/c", "/blog", "#blog"]}"##),
        (
            vec!["/c".to_owned(), "#blog".to_owned()],
            vec!["/a%20b".to_owned(), "/blog".to_owned()]
        )
    );
    assert_eq!(
        one("/a b\n/c\n"),
        (vec!["/c".to_owned()], vec!["/a%20b".to_owned()])
    );
    assert_eq!(
        one(&sns(r#"{"paths": ["/x/blog", "/y"]}"#)),
        (vec!["/y".to_owned()], vec!["/x/blog".to_owned()])
    );
}
