//! The `catalog = "s3"` source against moto's S3 with the real AWS SDK:
//! ListObjectsV2 paged over more than 1,000 keys, key prefixes, index
//! documents, and a listing that fails.

use aws_sdk_s3::primitives::ByteStream;
use cfpurge::catalog::s3::{Lister, SdkLister, build, client_with};
use cfpurge::config::{AwsConfig, S3Route};
use cfpurge::decode::KeyMapping;

use crate::support::moto::Moto;

fn s3_client(moto: &Moto) -> aws_sdk_s3::Client {
    let aws = AwsConfig {
        s3_endpoint_url: Some(moto.endpoint().to_owned()),
        ..AwsConfig::default()
    };
    client_with(&Moto::sdk_config(), &aws)
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
    let moto = Moto::shared();
    let _guard = moto.exclusive().await;
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
    let moto = Moto::shared();
    let _guard = moto.exclusive().await;
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
    let moto = Moto::shared();
    let _guard = moto.exclusive().await;
    let lister = SdkLister::new(s3_client(moto));
    let routes = vec![("nope".to_owned(), mapping("", "/", None))];
    let e = build(&lister, &routes).await.expect_err("no such bucket");
    let text = e.to_string();
    assert!(
        text.starts_with("listing s3://nope/: NoSuchBucket"),
        "{text}"
    );
}
