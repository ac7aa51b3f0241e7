//! deploy/aws/cfpurge.yaml end to end: the stack is created in moto's
//! CloudFormation, its role's policy is compared with config/iam-policy.json,
//! and cfpurge, configured from the stack's outputs only, purges what an
//! object put in a notifying bucket names (moto's S3 sends the event to the
//! stack's queue; the project's fake CloudFront takes the invalidation).
//!
//! moto 5.2.5 does not implement AWS::SQS::QueuePolicy (it skips the
//! resource) and does not enforce policies, so the queue policy is checked
//! by cfn-lint alone (scripts/check-ops).

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
use aws_sdk_sqs::types::QueueAttributeName;
use cfpurge::config::AwsConfig;
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde_json::Value;

use crate::support::fake_cloudfront::FakeCloudFront;
use crate::support::moto::{Moto, REGION, free_port};

const TEMPLATE: &str = include_str!("../../deploy/aws/cfpurge.yaml");
const POLICY: &str = include_str!("../../config/iam-policy.json");
/// The account moto answers as.
const ACCOUNT: &str = "123456789012";
const DIST: &str = "E2ABCDEF123456";
const OTHER_DIST: &str = "E3OTHERDIST789";
const BUCKET: &str = "www-site-bucket";

/// A call of an AWS query-protocol API (CloudFormation, IAM) on moto: the
/// answer's XML. moto routes by the service named in the credential scope
/// and checks no signature.
async fn query(moto: &Moto, service: &str, params: &[(&str, &str)]) -> String {
    let body = params
        .iter()
        .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, NON_ALPHANUMERIC)))
        .collect::<Vec<_>>()
        .join("&");
    let answer = reqwest::Client::new()
        .post(format!("{}/", moto.endpoint()))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header(
            "Authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential=testing/20260101/{REGION}/{service}/aws4_request, \
                 SignedHeaders=host, Signature=0"
            ),
        )
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{service} {:?}: {e}", params.first()));
    let status = answer.status();
    let text = answer.text().await.expect("answer body");
    assert!(
        status.is_success(),
        "{service} {params:?}: HTTP {status}: {text}"
    );
    text
}

/// The text of each `<tag>` element in `xml`, unescaped.
fn elements(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(&open)
        .skip(1)
        .map(|rest| rest.split(&close).next().unwrap_or_default())
        .map(|text| {
            text.replace("&quot;", "\"")
                .replace("&#34;", "\"")
                .replace("&apos;", "'")
                .replace("&#39;", "'")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&")
        })
        .collect()
}

/// Creates the stack from the template with `parameters`; its outputs.
async fn create_stack(
    moto: &Moto,
    name: &str,
    parameters: &[(&str, &str)],
) -> BTreeMap<String, String> {
    let mut params = vec![
        ("Action", "CreateStack".to_owned()),
        ("Version", "2010-05-15".to_owned()),
        ("StackName", name.to_owned()),
        ("TemplateBody", TEMPLATE.to_owned()),
        ("Capabilities.member.1", "CAPABILITY_IAM".to_owned()),
    ];
    let keys: Vec<(String, String)> = (1..=parameters.len())
        .map(|i| {
            (
                format!("Parameters.member.{i}.ParameterKey"),
                format!("Parameters.member.{i}.ParameterValue"),
            )
        })
        .collect();
    for ((key, value), (k, v)) in parameters.iter().zip(&keys) {
        params.push((k, (*key).to_owned()));
        params.push((v, (*value).to_owned()));
    }
    let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    query(moto, "cloudformation", &params).await;
    let described = query(
        moto,
        "cloudformation",
        &[
            ("Action", "DescribeStacks"),
            ("Version", "2010-05-15"),
            ("StackName", name),
        ],
    )
    .await;
    assert_eq!(
        elements(&described, "StackStatus"),
        ["CREATE_COMPLETE"],
        "{described}"
    );
    let outputs = elements(&described, "Outputs").concat();
    elements(&outputs, "member")
        .iter()
        .map(|member| {
            (
                elements(member, "OutputKey").concat(),
                elements(member, "OutputValue").concat(),
            )
        })
        .collect()
}

/// A policy document in an IAM answer's `<tag>`: percent-encoded, as IAM
/// sends it.
fn policy_document(answer: &str, tag: &str) -> Value {
    let document = elements(answer, tag).concat();
    let document = percent_decode_str(&document)
        .decode_utf8_lossy()
        .into_owned();
    serde_json::from_str(&document).unwrap_or_else(|_| {
        // moto 5.2.5 keeps a document that CloudFormation gave as an object
        // as Python's repr of it (single quotes, None); its values hold no
        // quotes.
        let json = document.replace('\'', "\"").replace("None", "null");
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("policy {document}: {e}"))
    })
}

fn role_name(role_arn: &str) -> &str {
    role_arn.rsplit('/').next().expect("a role ARN")
}

/// The role's inline policy document.
async fn role_policy(moto: &Moto, role_arn: &str) -> Value {
    let answer = query(
        moto,
        "iam",
        &[
            ("Action", "GetRolePolicy"),
            ("Version", "2010-05-08"),
            ("RoleName", role_name(role_arn)),
            ("PolicyName", "cfpurge"),
        ],
    )
    .await;
    policy_document(&answer, "PolicyDocument")
}

/// The role's trust policy.
async fn trust_policy(moto: &Moto, role_arn: &str) -> Value {
    let answer = query(
        moto,
        "iam",
        &[
            ("Action", "GetRole"),
            ("Version", "2010-05-08"),
            ("RoleName", role_name(role_arn)),
        ],
    )
    .await;
    policy_document(&answer, "AssumeRolePolicyDocument")
}

/// A statement as (Sid, Effect, sorted actions, resources), whatever the
/// document's layout: a lone string or a list. Null entries are dropped:
/// moto leaves `AWS::NoValue` in a list as null where CloudFormation
/// removes it.
type Statement = (String, String, Vec<String>, Vec<String>);

fn statements(document: &Value) -> Vec<Statement> {
    let strings = |v: &Value| -> Vec<String> {
        match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => items
                .iter()
                .filter(|i| !i.is_null())
                .map(|i| i.as_str().expect("a string").to_owned())
                .collect(),
            other => panic!("not a string or a list: {other}"),
        }
    };
    document["Statement"]
        .as_array()
        .expect("Statement is a list")
        .iter()
        .filter(|s| !s.is_null())
        .map(|s| {
            let mut actions = strings(&s["Action"]);
            actions.sort();
            (
                s["Sid"].as_str().unwrap_or_default().to_owned(),
                s["Effect"].as_str().unwrap_or_default().to_owned(),
                actions,
                strings(&s["Resource"]),
            )
        })
        .collect()
}

/// config/iam-policy.json with its placeholders replaced: each list
/// placeholder repeats the resource once a value, and a statement whose
/// placeholder has no value is left out, as docs/operations.md says to do.
fn documented_policy(values: &BTreeMap<&str, Vec<String>>) -> Vec<Statement> {
    let policy: Value = serde_json::from_str(POLICY).expect("config/iam-policy.json");
    let mut out = Vec::new();
    for (sid, effect, actions, resources) in statements(&policy) {
        let mut expanded = Vec::new();
        for resource in resources {
            let mut variants = vec![resource];
            for (placeholder, substitutes) in values {
                variants = variants
                    .into_iter()
                    .flat_map(|v| {
                        if v.contains(placeholder) {
                            substitutes
                                .iter()
                                .map(|s| v.replace(placeholder, s))
                                .collect()
                        } else {
                            vec![v]
                        }
                    })
                    .collect();
            }
            expanded.extend(variants);
        }
        if !expanded.is_empty() {
            out.push((sid, effect, actions, expanded));
        }
    }
    out
}

fn placeholders(
    distributions: &[&str],
    tenants: &[&str],
    buckets: &[&str],
    table: Option<&str>,
) -> BTreeMap<&'static str, Vec<String>> {
    let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    BTreeMap::from([
        ("REGION", vec![REGION.to_owned()]),
        ("ACCOUNT_ID", vec![ACCOUNT.to_owned()]),
        // DLQ_NAME before QUEUE_NAME would not matter: neither contains
        // the other's placeholder.
        ("QUEUE_NAME", vec!["cdn-purge".to_owned()]),
        ("DLQ_NAME", vec!["cdn-purge-dlq".to_owned()]),
        ("DISTRIBUTION_ID", owned(distributions)),
        ("TENANT_ID", owned(tenants)),
        ("CATALOG_BUCKET", owned(buckets)),
        ("TABLE_NAME", table.map(str::to_owned).into_iter().collect()),
    ])
}

/// The last `n` lines of `text`, each cut at 300 characters.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.chars().take(300).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The daemon, killed when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_with_replicas_feeds_cfpurge_from_a_bucket_notification() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let outputs = create_stack(
        moto,
        "cfpurge",
        &[
            ("DistributionIds", &format!("{DIST},{OTHER_DIST}")),
            ("DistributionTenantIds", "dt_2AbCdEfGh"),
            ("NotifyBuckets", BUCKET),
            ("Replicas", "true"),
        ],
    )
    .await;
    let output = |key: &str| {
        outputs
            .get(key)
            .unwrap_or_else(|| panic!("no output {key}: {outputs:?}"))
            .clone()
    };

    // The role has exactly the documented policy, placeholders replaced.
    let policy = role_policy(moto, &output("RoleArn")).await;
    assert_eq!(
        statements(&policy),
        documented_policy(&placeholders(
            &[DIST, OTHER_DIST],
            &["dt_2AbCdEfGh"],
            &[BUCKET],
            Some(&output("TableName")),
        ))
    );

    // The bucket's notification as the output gives it.
    let s3 = cfpurge::aws::s3(
        &Moto::sdk_config(),
        &AwsConfig {
            s3_endpoint_url: Some(moto.endpoint().to_owned()),
            ..AwsConfig::default()
        },
    );
    s3.create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect("bucket");
    let notification: Value =
        serde_json::from_str(&output("NotificationConfiguration")).expect("JSON");
    let mut queues = Vec::new();
    for q in notification["QueueConfigurations"]
        .as_array()
        .expect("list")
    {
        let mut config = QueueConfiguration::builder().queue_arn(q["QueueArn"].as_str().unwrap());
        for event in q["Events"].as_array().unwrap() {
            config = config.events(Event::from(event.as_str().unwrap()));
        }
        queues.push(config.build().expect("queue configuration"));
    }
    s3.put_bucket_notification_configuration()
        .bucket(BUCKET)
        .notification_configuration(
            NotificationConfiguration::builder()
                .set_queue_configurations(Some(queues))
                .build(),
        )
        .send()
        .await
        .expect("put notification");

    // cfpurge configured from the outputs: the queue, the dead-letter queue
    // and the table.
    let fake = FakeCloudFront::start(Duration::from_secs(1)).await;
    fake.add_distribution(DIST);
    let folder = tempfile::tempdir().expect("folder");
    let config = folder.path().join("cfpurge.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[aws]
region = "{REGION}"
sqs_endpoint_url = "{moto}"
dynamodb_endpoint_url = "{moto}"
cloudfront_endpoint_url = "{fake}"
[source]
queue_url = "{queue}"
dead_letter_queue_url = "{dlq}"
wait_time_seconds = 1
[distributions.www]
id = "{DIST}"
[[routing.s3]]
bucket = "{BUCKET}"
distribution = "www"
[batching]
quiet_seconds = 1
max_delay_seconds = 2
[cloudfront]
poll_interval_seconds = 1
[budget]
pacing = "none"
store = "dynamodb"
[coordination]
kind = "dynamodb"
table = "{table}"
lease_seconds = 3
replica_id = "stack-test"
[http]
listen = "127.0.0.1:{port}"
"#,
            moto = moto.endpoint(),
            fake = fake.endpoint(),
            queue = output("QueueUrl"),
            dlq = output("DeadLetterQueueUrl"),
            table = output("TableName"),
            port = free_port(),
        ),
    )
    .expect("write the configuration");
    let log = folder.path().join("cfpurge.log");
    let _daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_cfpurge"))
            .args(["run", "-c"])
            .arg(&config)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("start cfpurge"),
    );

    s3.put_object()
        .bucket(BUCKET)
        .key("docs/guide/index.html")
        .body(ByteStream::from_static(b"<html></html>"))
        .send()
        .await
        .expect("put object");

    let start = Instant::now();
    loop {
        let paths: Vec<String> = fake
            .invalidations(DIST)
            .into_iter()
            .flat_map(|i| i.paths)
            .collect();
        if paths.iter().any(|p| p == "/docs/guide/index.html") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no invalidation of /docs/guide/index.html within 30 s (created: {paths:?}); \
             the log's end:\n{}",
            tail(&std::fs::read_to_string(&log).unwrap_or_default(), 20)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Nothing was rejected on the way (S3's test event is deleted quietly):
    // the dead-letter queue the daemon forwards rejects to is empty.
    let dlq = moto
        .sqs_client()
        .get_queue_attributes()
        .queue_url(output("DeadLetterQueueUrl"))
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .expect("GetQueueAttributes on the dead-letter queue");
    assert_eq!(
        dlq.attributes()
            .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
            .map(String::as_str),
        Some("0")
    );

    // Without EksOidcProvider the role trusts the services that run it.
    let trust = trust_policy(moto, &output("RoleArn")).await;
    assert_eq!(
        trust["Statement"][0]["Principal"]["Service"],
        serde_json::json!([
            "pods.eks.amazonaws.com",
            "ecs-tasks.amazonaws.com",
            "ec2.amazonaws.com"
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_without_replicas_has_no_table_and_its_role_trusts_one_service_account() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let provider = "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";
    let outputs = create_stack(
        moto,
        "single",
        &[
            ("DistributionIds", DIST),
            ("EksOidcProvider", provider),
            ("KubernetesServiceAccount", "purge:cfpurge"),
        ],
    )
    .await;
    assert_eq!(
        outputs.keys().map(String::as_str).collect::<Vec<_>>(),
        ["DeadLetterQueueUrl", "QueueArn", "QueueUrl", "RoleArn"],
        "{outputs:?}"
    );
    let tables = cfpurge::aws::dynamodb(
        &Moto::sdk_config(),
        &AwsConfig {
            dynamodb_endpoint_url: Some(moto.endpoint().to_owned()),
            ..AwsConfig::default()
        },
    )
    .list_tables()
    .send()
    .await
    .expect("ListTables");
    assert_eq!(tables.table_names(), [] as [String; 0]);
    let policy = role_policy(moto, &outputs["RoleArn"]).await;
    assert_eq!(
        statements(&policy),
        documented_policy(&placeholders(&[DIST], &[], &[], None))
    );

    // IAM Roles for Service Accounts: the role trusts that service account
    // of that cluster only.
    let trust = trust_policy(moto, &outputs["RoleArn"]).await;
    assert_eq!(
        trust,
        serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Federated": format!("arn:aws:iam::{ACCOUNT}:oidc-provider/{provider}")},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {"StringEquals": {
                    format!("{provider}:sub"): "system:serviceaccount:purge:cfpurge",
                    format!("{provider}:aud"): "sts.amazonaws.com",
                }},
            }],
        })
    );
}
