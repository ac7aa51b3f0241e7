//! Decode speed: messages decoded, validated and routed per second, for each
//! body format, on bodies built from the astro-docs trace (one message per
//! commit; for EventBridge, which carries one object per event, one message
//! per path): `cargo bench --bench decode`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use cfpurge::config::Config;
use cfpurge::decode::{Router, decode};

mod common;

const BUCKET: &str = "astro-docs-site";

const CONFIG: &str = r#"
[source]
kind = "local"

[distributions.www]
id = "E2ABCDEF123456"

[[routing.s3]]
bucket = "astro-docs-site"
distribution = "www"
index_document = "index.html"
"#;

/// What S3 leaves unencoded in notification keys (space becomes `+`).
const S3_KEY_SAFE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'*')
    .remove(b'/')
    .remove(b' ');

/// The object key a page is stored under: `/en/guides/x/` is
/// `en/guides/x/index.html`, `/favicon.svg` is `favicon.svg`.
fn object_key(path: &str) -> String {
    let key = path.trim_start_matches('/');
    if key.is_empty() || key.ends_with('/') {
        format!("{key}index.html")
    } else {
        key.to_owned()
    }
}

fn s3_record(path: &str) -> Value {
    let key = utf8_percent_encode(&object_key(path), S3_KEY_SAFE)
        .to_string()
        .replace(' ', "+");
    json!({
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-11-24T15:00:00.123Z",
        "eventName": "ObjectCreated:Put",
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
                "name": BUCKET,
                "ownerIdentity": {"principalId": "A3NL1KOZZKEXAMPLE"},
                "arn": format!("arn:aws:s3:::{BUCKET}")
            },
            "object": {
                "key": key,
                "size": 1024,
                "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                "sequencer": "0055AED6DCD90281E5"
            }
        }
    })
}

fn sns(message: &str) -> String {
    json!({
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:site-changes",
        "Subject": "Amazon S3 Notification",
        "Message": message,
        "Timestamp": "2026-11-24T15:00:00.655Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLEw6JRNwm1LFQL4ICB0bnXrdB8ClRMTQFGBqwLpGbM78tJ4etTwC5zU7O3tS6tGpey3ejedNdOJ+1fkIp9F2/LmNVKb5aFlYq+9rk9ZiPph5YlLmWsDcyC5T+Sy9/umic5S0UQc2PEtgdpVBahwNOdMW4JPwk0kAJJztnc=",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:us-east-1:123456789012:site-changes:c9135db0-26c4-47ec-8998-413945fb5a96"
    })
    .to_string()
}

fn eventbridge(path: &str) -> String {
    json!({
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2026-11-24T15:00:00Z",
        "region": "us-east-1",
        "resources": [format!("arn:aws:s3:::{BUCKET}")],
        "detail": {
            "version": "0",
            "bucket": {"name": BUCKET},
            "object": {
                "key": object_key(path),
                "size": 5,
                "etag": "b1946ac92492d2347c6235b4d2611184",
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

fn decode_bench(c: &mut Criterion) {
    let trace = common::trace();
    let config = Config::from_parts(Some(CONFIG), "bench", std::iter::empty()).expect("config");
    let router = Router::new(&config);

    let s3_events: Vec<String> = trace
        .iter()
        .map(|r| {
            let records: Vec<Value> = r.paths.iter().map(|p| s3_record(p)).collect();
            json!({ "Records": records }).to_string()
        })
        .collect();
    let formats: Vec<(&str, Vec<String>)> = vec![
        (
            "native",
            trace
                .iter()
                .map(|r| {
                    json!({"distribution": "www", "paths": r.paths, "reason": "docs deploy",
                           "requested_by": "ci"})
                    .to_string()
                })
                .collect(),
        ),
        (
            "plain_text",
            trace.iter().map(|r| r.paths.join("\n")).collect(),
        ),
        ("s3_event", s3_events.clone()),
        ("sns_s3_event", s3_events.iter().map(|b| sns(b)).collect()),
        (
            "eventbridge",
            trace
                .iter()
                .flat_map(|r| r.paths.iter().map(|p| eventbridge(p)))
                .collect(),
        ),
    ];

    let mut group = c.benchmark_group("decode");
    for (name, bodies) in &formats {
        // Every body must be accepted, or the figures measure rejections.
        for body in bodies {
            let requests = decode(body, &router).expect("bench body is accepted");
            assert!(!requests.is_empty(), "{name}: nothing decoded");
        }
        group.throughput(Throughput::Elements(bodies.len() as u64));
        group.bench_function(*name, |b| {
            b.iter(|| {
                for body in bodies {
                    black_box(decode(black_box(body), &router).ok());
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode_bench);
criterion_main!(benches);
