//! The `catalog = "s3"` source against moto's S3 with the real AWS SDK:
//! ListObjectsV2 paged over more than 1,000 keys, key prefixes, index
//! documents, and a listing that fails.

use aws_sdk_s3::primitives::ByteStream;
use cfpurge::catalog::s3::{Lister, SdkLister, build};
use cfpurge::config::{AwsConfig, S3Route};
use cfpurge::decode::KeyMapping;

use crate::support::moto::Moto;

fn s3_client(moto: &Moto) -> aws_sdk_s3::Client {
    let aws = AwsConfig {
        s3_endpoint_url: Some(moto.endpoint().to_owned()),
        ..AwsConfig::default()
    };
    cfpurge::aws::s3(&Moto::sdk_config(), &aws)
}

async fn create_bucket(client: &aws_sdk_s3::Client, bucket: &str) {
    client
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("create bucket");
}

async fn put_all(client: &aws_sdk_s3::Client, bucket: &str, keys: &[String]) {
    for chunk in keys.chunks(32) {
        let mut puts = tokio::task::JoinSet::new();
        for key in chunk {
            let request = client
                .put_object()
                .bucket(bucket)
                .key(key)
                .body(ByteStream::from_static(b"x"));
            puts.spawn(async move { request.send().await.map(|_| ()) });
        }
        while let Some(done) = puts.join_next().await {
            done.expect("put task").expect("put object");
        }
    }
}

fn mapping(key_prefix: &str, path_prefix: &str, index: Option<&str>) -> KeyMapping {
    KeyMapping::new(&S3Route {
        bucket: String::new(),
        distribution: "www".into(),
        key_prefix: key_prefix.into(),
        path_prefix: path_prefix.into(),
        index_document: index.map(str::to_owned),
    })
}

#[tokio::test]
async fn a_listing_pages_through_more_than_a_thousand_keys() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let client = s3_client(moto);
    create_bucket(&client, "site").await;
    let mut keys: Vec<String> = (0..1_050)
        .map(|i| format!("public/docs/p{:04}/index.html", i))
        .collect();
    keys.push("public/index.html".into());
    keys.push("public/docs/a b.png".into());
    keys.push("drafts/secret.html".into());
    put_all(&client, "site", &keys).await;

    let lister = SdkLister::new(client.clone());
    let mut pages = Vec::new();
    lister
        .list("site", "public/", &mut |p| pages.push(p.len()))
        .await
        .expect("list");
    assert_eq!(pages.iter().sum::<usize>(), 1_052, "every key once");
    assert!(pages.len() >= 2, "more than one page: {pages:?}");
    assert!(pages.iter().all(|&n| n <= 1_000), "{pages:?}");

    let routes = vec![(
        "site".to_owned(),
        mapping("public/", "/", Some("index.html")),
    )];
    let listed = build(&lister, &routes).await.expect("build");
    let c = &listed.catalog;
    assert_eq!(listed.keys, 1_052);
    // Each index document is three objects: the file, `dir/` and `dir`;
    // the top one two (`/index.html` and `/`).
    assert_eq!(c.objects(), 1_050 * 3 + 2 + 1);
    assert!(c.contains("/docs/p0007/index.html"));
    assert!(c.contains("/docs/p0007/"));
    assert!(c.contains("/docs/p0007"));
    assert!(c.contains("/"));
    assert!(c.contains("/docs/a%20b.png"));
    assert!(!c.contains("/drafts/secret.html"));
    assert_eq!(c.under("/docs/p1049/"), 2);
    // Under /docs/: two objects per page directory, the png; the bare
    // `/docs/p0007` paths lie in /docs/ too.
    assert_eq!(c.under("/docs/"), 1_050 * 3 + 1);
}

#[tokio::test]
async fn routes_map_their_own_prefixes_and_buckets() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let client = s3_client(moto);
    create_bucket(&client, "www").await;
    create_bucket(&client, "assets").await;
    put_all(
        &client,
        "www",
        &["en/a.html".into(), "en/b/".into(), "fr/a.html".into()],
    )
    .await;
    put_all(&client, "assets", &["logo.png".into()]).await;
    let lister = SdkLister::new(client);
    let routes = vec![
        ("www".to_owned(), mapping("en/", "/english", None)),
        ("assets".to_owned(), mapping("", "/static/", None)),
    ];
    let listed = build(&lister, &routes).await.expect("build");
    let c = &listed.catalog;
    assert_eq!(c.objects(), 3);
    for p in ["/english/a.html", "/english/b/", "/static/logo.png"] {
        assert!(c.contains(p), "{p}");
    }
    assert!(!c.contains("/fr/a.html"));
}

#[tokio::test]
async fn a_missing_bucket_fails_the_listing_with_its_name() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let lister = SdkLister::new(s3_client(moto));
    let routes = vec![("nope".to_owned(), mapping("", "/", None))];
    let e = build(&lister, &routes).await.expect_err("no such bucket");
    let text = e.to_string();
    assert!(
        text.starts_with("listing s3://nope/: NoSuchBucket"),
        "{text}"
    );
}

/// The daemon with `catalog = "s3"` and `least_blast`: the threshold
/// strategy until the bucket can be listed, least blast once the catalog is
/// ready, and the catalog following the S3 events it receives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_plans_by_threshold_until_its_catalog_is_ready_then_by_least_blast() {
    use std::time::Duration;

    use cfpurge::budget::{AnyStore, MemoryStore};
    use cfpurge::cloudfront::aws::AwsInvalidator;
    use cfpurge::config::Config;
    use cfpurge::daemon::Daemon;
    use cfpurge::source::queue::Queue;
    use cfpurge::source::sqs::SqsQueue;
    use tokio_util::sync::CancellationToken;

    use crate::support::fake_cloudfront::FakeCloudFront;

    const DIST: &str = "E1CATALOG";
    let moto = Moto::take().await;
    let moto = moto.server();
    let s3 = s3_client(moto);
    let fake = FakeCloudFront::start(Duration::from_secs(2)).await;
    fake.add_distribution(DIST);
    let url = moto.create_queue("daemon-catalog", &[]).await;
    let toml = format!(
        r#"
[aws]
s3_endpoint_url = "{endpoint}"
[source]
queue_url = "{url}"
wait_time_seconds = 1
[distributions.www]
id = "{DIST}"
catalog = "s3"
[[routing.s3]]
bucket = "catalog-site"
distribution = "www"
[batching]
quiet_seconds = 1
[coalesce]
strategy = "least_blast"
blast_per_path = 1
[catalog]
refresh_seconds = 1
[cloudfront]
create_per_second = 20
create_burst = 5
poll_interval_seconds = 1
reconcile_interval_seconds = 1
[budget]
pacing = "none"
"#,
        endpoint = moto.endpoint()
    );
    let config = Config::from_parts(Some(&toml), "test", std::iter::empty()).expect("config");
    let queue = SqsQueue::new(moto.sqs_client(), url.clone(), None);
    let daemon = Daemon::new(&config, queue.clone(), AwsInvalidator::new(fake.client()))
        .with_ledger(AnyStore::Memory(MemoryStore::new()))
        .with_s3_client(&s3);
    let observers = daemon.observers();
    let cancel = CancellationToken::new();
    let run = tokio::spawn(daemon.run(cancel.clone()));
    let created = |n: usize| {
        let fake = &fake;
        async move {
            for _ in 0..200 {
                let all = fake.invalidations(DIST);
                if all.len() >= n {
                    return all;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!(
                "fewer than {n} invalidations: {:?}",
                fake.invalidations(DIST)
            );
        }
    };
    let eight = |dir: &str| {
        let paths: Vec<String> = (0..8).map(|i| format!("\"/{dir}/{i}.html\"")).collect();
        format!(r#"{{"paths":[{}]}}"#, paths.join(","))
    };

    // The bucket does not exist yet: no catalog, the threshold strategy.
    queue.send(&eight("d")).await.expect("send");
    let first = created(1).await;
    assert_eq!(first[0].paths, ["/d/*"]);

    // Once it can be listed, 92 unrequested objects under /e/ cost more
    // than the 7 paths the wildcard would save, at one object a path.
    create_bucket(&s3, "catalog-site").await;
    let keys: Vec<String> = (0..100).map(|i| format!("e/{i}.html")).collect();
    put_all(&s3, "catalog-site", &keys).await;
    for _ in 0..100 {
        let status = observers.status.snapshot();
        if status.distributions["www"]
            .catalog
            .as_ref()
            .is_some_and(|c| c.objects == 100)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    queue.send(&eight("e")).await.expect("send");
    let second = created(2).await;
    assert_eq!(second[1].paths.len(), 8, "{:?}", second[1].paths);
    assert!(second[1].paths.iter().all(|p| !p.ends_with('*')));
    let text = cfpurge::metrics::encode(&observers.registry);
    assert!(
        text.contains("cfpurge_catalog_objects{distribution=\"www\"} 100"),
        "{text}"
    );
    assert!(
        text.contains("cfpurge_paths_blast_total{distribution=\"www\"} 0"),
        "{text}"
    );
    cancel.cancel();
    run.await.expect("daemon ends");
}

/// One daemon run with `catalog = "learned"` on `ledger`'s folder: sends
/// each body in turn, waits for each one's invalidation, and returns their
/// paths. `ready` is the number of learned objects to wait for in the
/// status before sending (`None`: do not wait).
async fn learned_run(
    moto: &Moto,
    queue_name: &str,
    ledger: &std::path::Path,
    ready: Option<u64>,
    bodies: &[String],
) -> Vec<Vec<String>> {
    learned_run_in(moto, queue_name, ledger, None, ready, bodies).await
}

/// [`learned_run`], with `budget.store = "dynamodb"` on moto's table
/// `table` when given.
async fn learned_run_in(
    moto: &Moto,
    queue_name: &str,
    ledger: &std::path::Path,
    table: Option<&str>,
    ready: Option<u64>,
    bodies: &[String],
) -> Vec<Vec<String>> {
    use std::time::Duration;

    use cfpurge::cloudfront::aws::AwsInvalidator;
    use cfpurge::config::Config;
    use cfpurge::daemon::Daemon;
    use cfpurge::source::queue::Queue;
    use cfpurge::source::sqs::SqsQueue;
    use tokio_util::sync::CancellationToken;

    use crate::support::fake_cloudfront::FakeCloudFront;

    const DIST: &str = "E1LEARNED";
    let fake = FakeCloudFront::start(Duration::from_secs(2)).await;
    fake.add_distribution(DIST);
    let url = moto.create_queue(queue_name, &[]).await;
    let toml = format!(
        r#"
[source]
queue_url = "{url}"
wait_time_seconds = 1
[distributions.www]
id = "{DIST}"
catalog = "learned"
[batching]
quiet_seconds = 1
[coalesce]
strategy = "least_blast"
blast_per_path = 1
[cloudfront]
create_per_second = 20
create_burst = 5
poll_interval_seconds = 1
reconcile_interval_seconds = 1
[budget]
pacing = "none"
ledger_path = "{ledger}"
{store}"#,
        ledger = ledger.display(),
        store = table.map_or(String::new(), |t| format!(
            "store = \"dynamodb\"\n[coordination]\ntable = \"{t}\"\n"
        )),
    );
    let config = Config::from_parts(Some(&toml), "test", std::iter::empty()).expect("config");
    let queue = SqsQueue::new(moto.sqs_client(), url.clone(), None);
    let mut daemon = Daemon::new(&config, queue.clone(), AwsInvalidator::new(fake.client()));
    if let Some(t) = table {
        let store =
            cfpurge::budget::DynamoStore::new(Moto::sdk_config(), &dynamo_aws(moto), t, false)
                .expect("store");
        daemon = daemon.with_ledger(cfpurge::budget::AnyStore::Dynamo(store));
    }
    let observers = daemon.observers();
    let cancel = CancellationToken::new();
    let run = tokio::spawn(daemon.run(cancel.clone()));
    if let Some(objects) = ready {
        let mut seen = None;
        for _ in 0..100 {
            let status = observers.status.snapshot();
            // Read once `refreshed_at` is set.
            seen = status.distributions["www"]
                .catalog
                .as_ref()
                .filter(|c| c.refreshed_at.is_some())
                .map(|c| c.objects);
            if seen == Some(objects) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(seen, Some(objects), "the learned catalog was not read");
    }
    let mut out = Vec::new();
    for (n, body) in bodies.iter().enumerate() {
        queue.send(body).await.expect("send");
        let mut all = Vec::new();
        for _ in 0..200 {
            all = fake.invalidations(DIST);
            if all.len() > n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(all.len() > n, "no invalidation for body {n}: {all:?}");
        out.push(all[n].paths.clone());
    }
    cancel.cancel();
    run.await.expect("daemon ends");
    out
}

fn request(dir: &str, n: usize) -> String {
    let paths: Vec<String> = (0..n).map(|i| format!("\"/{dir}/{i}.html\"")).collect();
    format!(r#"{{"paths":[{}]}}"#, paths.join(","))
}

/// `catalog = "learned"`: the daemon learns every requested path, keeps
/// them beside the ledger file (0600), and after a restart still has them:
/// eight pages of a directory of 100 learned ones go out as eight paths,
/// not as the wildcard (92 unrequested objects at one object a path).
/// `cfpurge catalog` describes what was learned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learned_catalog_survives_a_restart() {
    use std::os::unix::fs::PermissionsExt;

    let moto = Moto::take().await;

    let moto = moto.server();
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.json");
    let learned = dir.path().join("ledger.json.learned.www");

    // First run: 100 pages of /e/ and a wildcard, which adds nothing. The
    // catalog then holds just what was asked: /e/* purges nothing more.
    let first = learned_run(
        moto,
        "learned-1",
        &ledger,
        Some(0),
        &[request("e", 100), r#"{"paths":["/f/*"]}"#.to_owned()],
    )
    .await;
    assert_eq!(first[0], ["/e/*"]);
    assert_eq!(first[1], ["/f/*"]);
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&learned).expect("the learned file")).unwrap();
    assert_eq!(stored["version"], 1);
    assert_eq!(stored["paths"].as_array().unwrap().len(), 100);
    let mode = std::fs::metadata(&learned).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // `cfpurge catalog --distribution www` reads the same file.
    let toml = format!(
        "[source]\nkind = \"local\"\n[distributions.www]\nid = \"E1LEARNED\"\ncatalog = \"learned\"\n[budget]\nledger_path = \"{}\"\n",
        ledger.display()
    );
    let config =
        cfpurge::config::Config::from_parts(Some(&toml), "test", std::iter::empty()).unwrap();
    let mut out = Vec::new();
    cfpurge::commands::catalog::run(
        &config,
        "www",
        cfpurge::commands::catalog::Format::Json,
        &mut out,
    )
    .await
    .expect("cfpurge catalog");
    let figures: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(figures["source"], "learned");
    assert_eq!(figures["objects"], 100);

    // Second run: the 100 are read back before anything is planned.
    let second = learned_run(moto, "learned-2", &ledger, Some(100), &[request("e", 8)]).await;
    assert_eq!(second[0].len(), 8, "{:?}", second[0]);
    assert!(second[0].iter().all(|p| !p.ends_with('*')));
}

/// A corrupt learned file: the daemon says so, plans with the threshold
/// strategy (eight pages of a directory go out as its wildcard), purges as
/// usual, and leaves the file as it was for the operator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_learned_catalog_plans_by_threshold_and_is_left_alone() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.json");
    let learned = dir.path().join("ledger.json.learned.www");
    let corrupt = b"{\"version\": 1, \"paths\": [\"/e/1.html\", \"/e/*\"]}\n";
    std::fs::write(&learned, corrupt).unwrap();
    // Least blast on what is learned meanwhile would send the second
    // request's eight pages as they are (92 other pages of /e/ known);
    // the threshold strategy sends their wildcard.
    let out = learned_run(
        moto,
        "learned-corrupt",
        &ledger,
        None,
        &[request("e", 100), request("e", 8)],
    )
    .await;
    assert_eq!(out[0], ["/e/*"]);
    assert_eq!(out[1], ["/e/*"]);
    assert_eq!(std::fs::read(&learned).unwrap(), corrupt);

    let toml = format!(
        "[source]\nkind = \"local\"\n[distributions.www]\nid = \"E1LEARNED\"\ncatalog = \"learned\"\n[budget]\nledger_path = \"{}\"\n",
        ledger.display()
    );
    let config =
        cfpurge::config::Config::from_parts(Some(&toml), "test", std::iter::empty()).unwrap();
    let mut out = Vec::new();
    let e = cfpurge::commands::catalog::run(
        &config,
        "www",
        cfpurge::commands::catalog::Format::Text,
        &mut out,
    )
    .await
    .unwrap_err();
    assert_eq!(e.exit_status(), 1);
    let text = e.to_string();
    assert!(
        text.contains("ledger.json.learned.www") && text.contains("paths[1]"),
        "{text}"
    );
}

fn dynamo_aws(moto: &Moto) -> AwsConfig {
    AwsConfig {
        dynamodb_endpoint_url: Some(moto.endpoint().to_owned()),
        endpoint_url: Some("http://127.0.0.1:9".to_owned()),
        ..AwsConfig::default()
    }
}

/// `cfpurge catalog --distribution www --format json` with the binary, on
/// a learned catalog in table `table` of moto's DynamoDB: its exit status,
/// output and errors.
fn cfpurge_catalog(moto: &Moto, table: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cfpurge.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nkind = \"local\"\n[distributions.www]\nid = \"E1LEARNED\"\ncatalog = \"learned\"\n\
             [budget]\nstore = \"dynamodb\"\n[coordination]\ntable = \"{table}\"\n\
             [aws]\ndynamodb_endpoint_url = \"{}\"\n",
            moto.endpoint()
        ),
    )
    .unwrap();
    crate::support::cli::cfpurge(&[
        "catalog".as_ref(),
        "-c".as_ref(),
        config.as_os_str(),
        "--distribution".as_ref(),
        "www".as_ref(),
        "--format".as_ref(),
        "json".as_ref(),
    ])
}

/// `catalog = "learned"` with `budget.store = "dynamodb"`: the learned
/// paths go to the coordination table (a head item and its chunks), a
/// restarted daemon reads them before planning (eight pages of a learned
/// directory of 100 go out as eight paths), and `cfpurge catalog` reads
/// the same items.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learned_catalog_in_dynamodb_survives_a_restart() {
    use cfpurge::catalog::learned_store::{DynamoLearned, LearnedStore};

    let moto = Moto::take().await;

    let moto = moto.server();
    crate::replicas::create_table(moto, "learned-t").await;
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.json");

    let first = learned_run_in(
        moto,
        "learned-d1",
        &ledger,
        Some("learned-t"),
        Some(0),
        &[request("e", 100), r#"{"paths":["/f/*"]}"#.to_owned()],
    )
    .await;
    assert_eq!(first[0], ["/e/*"]);
    assert_eq!(first[1], ["/f/*"]);
    // Nothing beside the ledger file: it is all in the table.
    assert!(!dir.path().join("ledger.json.learned.www").exists());
    let store = cfpurge::budget::DynamoStore::new(
        Moto::sdk_config(),
        &dynamo_aws(moto),
        "learned-t",
        false,
    )
    .unwrap();
    let kept = DynamoLearned::new(&store, "www")
        .load()
        .await
        .expect("read")
        .expect("written");
    assert_eq!(kept.len(), 100);
    assert!(kept.paths().all(|p| p.starts_with("/e/")));

    let (code, out, err) = cfpurge_catalog(moto, "learned-t");
    assert_eq!(code, Some(0), "{err}");
    let figures: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(figures["source"], "learned");
    assert_eq!(figures["objects"], 100);

    let second = learned_run_in(
        moto,
        "learned-d2",
        &ledger,
        Some("learned-t"),
        Some(100),
        &[request("e", 8)],
    )
    .await;
    assert_eq!(second[0].len(), 8, "{:?}", second[0]);
    assert!(second[0].iter().all(|p| !p.ends_with('*')));
}

/// A corrupt learned catalog in the table: the daemon plans with the
/// threshold strategy, purges as usual, and leaves the items as they were;
/// `cfpurge catalog` names the item and what is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_learned_catalog_in_dynamodb_plans_by_threshold_and_is_left_alone() {
    use aws_sdk_dynamodb::primitives::Blob;
    use aws_sdk_dynamodb::types::AttributeValue;

    let moto = Moto::take().await;

    let moto = moto.server();
    crate::replicas::create_table(moto, "learned-c").await;
    let client = cfpurge::aws::dynamodb(&Moto::sdk_config(), &dynamo_aws(moto));
    let corrupt = b"{\"version\": 1, \"paths\": [\"/e/1.html\", \"/e/*\"]}\n";
    let n = |v: usize| AttributeValue::N(v.to_string());
    client
        .put_item()
        .table_name("learned-c")
        .item("pk", AttributeValue::S("learned#www".into()))
        .item("generation", n(1))
        .item("chunks", n(1))
        .item("bytes", n(corrupt.len()))
        .send()
        .await
        .unwrap();
    client
        .put_item()
        .table_name("learned-c")
        .item("pk", AttributeValue::S("learned#www#1#0".into()))
        .item("generation", n(1))
        .item("data", AttributeValue::B(Blob::new(&corrupt[..])))
        .send()
        .await
        .unwrap();
    let item = |key: &'static str| {
        let client = client.clone();
        async move {
            client
                .get_item()
                .table_name("learned-c")
                .key("pk", AttributeValue::S(key.into()))
                .consistent_read(true)
                .send()
                .await
                .unwrap()
                .item
        }
    };
    let (head, chunk) = (item("learned#www").await, item("learned#www#1#0").await);

    let dir = tempfile::tempdir().unwrap();
    let out = learned_run_in(
        moto,
        "learned-dc",
        &dir.path().join("ledger.json"),
        Some("learned-c"),
        None,
        &[request("e", 100), request("e", 8)],
    )
    .await;
    assert_eq!(out[0], ["/e/*"]);
    assert_eq!(out[1], ["/e/*"]);
    assert_eq!(item("learned#www").await, head);
    assert_eq!(item("learned#www#1#0").await, chunk);
    assert_eq!(item("learned#www#0#0").await, None);

    let (code, _, text) = cfpurge_catalog(moto, "learned-c");
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("table learned-c")
            && text.contains("learned#www")
            && text.contains("paths[1]"),
        "{text}"
    );
}
