//! Several AWS accounts end to end: roles assumed through moto's STS (via a
//! gate on loopback that refuses one role, as a trust policy that does not
//! name cfpurge would), CloudFront through the fake endpoint. A role that
//! cannot be assumed makes only its account's distributions not ready, and
//! the assumed credentials are refreshed without a restart.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_smithy_async::time::{SharedTimeSource, TimeSource};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use cfpurge::budget::{AnyStore, MemoryStore};
use cfpurge::cloudfront::accounts::{AccountsInvalidator, AssumeSettings};
use cfpurge::config::Config;
use cfpurge::daemon::Daemon;
use cfpurge::source::local::LocalQueue;
use cfpurge::source::queue::Queue;
use tokio_util::sync::CancellationToken;

use crate::support::fake_cloudfront::FakeCloudFront;
use crate::support::moto::Moto;

const WWW: &str = "E1WWWWWWWWWWWW";
const SHOP: &str = "E3SSSSSSSSSSSS";
const LAB: &str = "E4LLLLLLLLLLLL";
const PROD_ROLE: &str = "arn:aws:iam::210987654321:role/cfpurge";
const LAB_ROLE: &str = "arn:aws:iam::111122223333:role/cfpurge-lab";

/// STS in front of moto: forwards every call, except AssumeRole of a role in
/// `denied`, answered as STS answers a trust policy that does not allow the
/// caller. Counts the AssumeRole calls by role.
#[derive(Clone, Default)]
struct Gate {
    moto: String,
    denied: Arc<Mutex<HashSet<String>>>,
    assumed: Arc<Mutex<Vec<String>>>,
}

impl Gate {
    fn deny(&self, role: &str) {
        self.denied.lock().unwrap().insert(role.to_owned());
    }

    fn allow(&self, role: &str) {
        self.denied.lock().unwrap().remove(role);
    }

    /// The bodies of the AssumeRole calls of `role` so far.
    fn assumed(&self, role: &str) -> Vec<String> {
        self.assumed
            .lock()
            .unwrap()
            .iter()
            .filter(|b| names(b, role))
            .cloned()
            .collect()
    }
}

/// Whether a request body names `role`, as a form field or in JSON.
fn names(body: &str, role: &str) -> bool {
    let decoded = percent_encoding::percent_decode_str(body).decode_utf8_lossy();
    decoded.contains(&format!("RoleArn={role}&"))
        || decoded.ends_with(&format!("RoleArn={role}"))
        || body.contains(&format!("\"{role}\""))
}

async fn gate(
    State(gate): State<Gate>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let text = String::from_utf8_lossy(&body).into_owned();
    // The query protocol names the action in the body, the JSON protocols
    // in a header.
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if text.contains("Action=AssumeRole") || target.ends_with(".AssumeRole") {
        gate.assumed.lock().unwrap().push(text.clone());
        let denied = gate
            .denied
            .lock()
            .unwrap()
            .iter()
            .any(|role| names(&text, role));
        if denied {
            let xml = "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
                <Error><Type>Sender</Type><Code>AccessDenied</Code>\
                <Message>User: arn:aws:iam::123456789012:user/cfpurge is not authorized to perform: sts:AssumeRole</Message>\
                </Error><RequestId>gate</RequestId></ErrorResponse>";
            return (StatusCode::FORBIDDEN, [("content-type", "text/xml")], xml).into_response();
        }
    }
    let mut forward = reqwest::Client::new().request(method, format!("{}{uri}", gate.moto));
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            forward = forward.header(name, value);
        }
    }
    let answer = forward.body(body).send().await.expect("moto answers");
    let status = StatusCode::from_u16(answer.status().as_u16()).expect("status");
    let kind = answer
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("text/xml")
        .to_owned();
    let bytes = answer.bytes().await.expect("moto's body");
    (status, [("content-type", kind)], bytes).into_response()
}

async fn start_gate(moto: &Moto) -> (Gate, String) {
    let gate_state = Gate {
        moto: moto.endpoint().to_owned(),
        ..Gate::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the gate");
    let endpoint = format!("http://{}", listener.local_addr().expect("address"));
    let app = axum::Router::new()
        .fallback(gate)
        .with_state(gate_state.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (gate_state, endpoint)
}

/// The wall clock, moved ahead by the test: what the SDK's credentials
/// cache reads to tell whether the assumed credentials have expired.
#[derive(Debug, Clone, Default)]
struct Ahead(Arc<AtomicU64>);

impl TimeSource for Ahead {
    fn now(&self) -> SystemTime {
        SystemTime::now() + Duration::from_secs(self.0.load(Ordering::Relaxed))
    }
}

fn config(sts: &str, cloudfront: &str) -> Config {
    let toml = format!(
        r#"
[aws]
region = "us-east-1"
endpoint_url = "{sts}"
cloudfront_endpoint_url = "{cloudfront}"
[source]
kind = "local"
[distributions.www]
id = "{WWW}"
[distributions.shop]
id = "{SHOP}"
account = "prod"
[distributions.lab]
id = "{LAB}"
account = "lab"
[accounts.prod]
role_arn = "{PROD_ROLE}"
external_id = "cfpurge-ext-1"
monthly_paths = 1000
[accounts.lab]
role_arn = "{LAB_ROLE}"
monthly_paths = 1000
[batching]
quiet_seconds = 1
max_delay_seconds = 2
[cloudfront]
create_per_second = 20
create_burst = 5
poll_interval_seconds = 1
reconcile_interval_seconds = 1
[budget]
pacing = "none"
# The default account's one path a month is spent by www's first purge.
monthly_paths = 1
on_exhausted = "hold"
[shutdown]
grace_seconds = 2
"#
    );
    Config::from_parts(Some(&toml), "test", std::iter::empty()).expect("config")
}

/// Waits until `done` holds, at most `limit`.
async fn until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done()
}

#[tokio::test]
async fn roles_are_assumed_per_account_a_refused_role_holds_only_its_account_and_credentials_refresh()
 {
    let moto = Moto::take().await;
    let moto = moto.server();
    let (gate, sts) = start_gate(moto).await;
    gate.deny(LAB_ROLE);
    let fake = FakeCloudFront::start(Duration::from_secs(1)).await;
    for id in [WWW, SHOP, LAB] {
        fake.add_distribution(id);
    }
    let config = config(&sts, &fake.endpoint());
    let ahead = Ahead::default();
    let sdk = Moto::sdk_config()
        .into_builder()
        .time_source(SharedTimeSource::new(ahead.clone()))
        .build();
    let settings = AssumeSettings {
        session: Some(Duration::from_secs(900)),
    };
    let invalidator = AccountsInvalidator::new(&config, &sdk, settings).await;
    let queue = LocalQueue::new(Duration::from_secs(60));
    let daemon = Daemon::new(&config, queue.clone(), invalidator.clone())
        .with_account_ledger("default", AnyStore::Memory(MemoryStore::new()))
        .with_account_ledger("prod", AnyStore::Memory(MemoryStore::new()))
        .with_account_ledger("lab", AnyStore::Memory(MemoryStore::new()));
    let observers = daemon.observers();
    let cancel = CancellationToken::new();
    let run = tokio::spawn(daemon.run(cancel.clone()));
    for (alias, path) in [("www", "/a.html"), ("shop", "/b.html"), ("lab", "/c.html")] {
        queue
            .send(&format!(
                r#"{{"distribution":"{alias}","paths":["{path}"]}}"#
            ))
            .await
            .expect("send");
    }

    // www (default credentials) and shop (prod's role) are purged; lab,
    // whose role is refused, is not, and its request waits.
    let purged = until(Duration::from_secs(20), || {
        !fake.invalidations(WWW).is_empty() && !fake.invalidations(SHOP).is_empty()
    })
    .await;
    assert!(purged, "www and shop purged: {:?}", fake.calls());
    // The default account's budget is spent: www's next request waits,
    // while prod's own budget lets shop's through below.
    queue
        .send(r#"{"distribution":"www","paths":["/e.html"]}"#)
        .await
        .expect("send");
    assert!(
        until(Duration::from_secs(10), || {
            observers
                .readiness
                .reasons()
                .iter()
                .any(|r| r.starts_with("distribution:lab"))
        })
        .await,
        "{:?}; lab's AssumeRole calls: {}; lab's credentials: {:?}",
        observers.readiness.reasons(),
        gate.assumed(LAB_ROLE).len(),
        invalidator
            .health("lab")
            .map(|h| (h.attempts(), h.failure()))
    );
    let reasons = observers.readiness.reasons();
    let lab = reasons
        .iter()
        .find(|r| r.starts_with("distribution:lab"))
        .expect("lab not ready");
    assert!(
        lab.contains(&format!(
            "account lab: the role {LAB_ROLE} could not be assumed"
        )) && lab.contains("AccessDenied"),
        "{lab}"
    );
    assert!(
        !reasons
            .iter()
            .any(|r| r.starts_with("distribution:www") || r.starts_with("distribution:shop")),
        "only lab's account is not ready: {reasons:?}"
    );
    assert!(fake.invalidations(LAB).is_empty());
    assert_eq!(
        queue.len(),
        2,
        "lab's request and www's over the budget wait, neither lost nor rejected"
    );
    assert!(queue.dead_letters().is_empty());
    // The status says so under the account.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = observers.status.snapshot();
    assert!(
        status.accounts["lab"]
            .not_ready
            .iter()
            .any(|r| r.contains("could not be assumed")),
        "{:?}",
        status.accounts
    );
    assert!(status.accounts["prod"].not_ready.is_empty());
    assert_eq!(status.accounts["prod"].role_arn.as_deref(), Some(PROD_ROLE));

    // prod's role was assumed once, with its external id and session name.
    let prod = gate.assumed(PROD_ROLE);
    assert_eq!(prod.len(), 1, "{prod:?}");
    assert!(prod[0].contains("ExternalId=cfpurge-ext-1"), "{}", prod[0]);
    assert!(
        prod[0].contains("RoleSessionName=cfpurge-prod"),
        "{}",
        prod[0]
    );
    assert!(prod[0].contains("DurationSeconds=900"), "{}", prod[0]);

    // The session runs out (the clock the SDK reads moves past it): the
    // next call of prod assumes the role again, without a restart.
    ahead.0.store(900, Ordering::Relaxed);
    queue
        .send(r#"{"distribution":"shop","paths":["/d.html"]}"#)
        .await
        .expect("send");
    let again = until(Duration::from_secs(20), || {
        fake.invalidations(SHOP)
            .iter()
            .any(|inv| inv.paths.iter().any(|p| p == "/d.html"))
    })
    .await;
    assert!(again, "shop purged after the refresh: {:?}", fake.calls());
    assert!(
        gate.assumed(PROD_ROLE).len() >= 2,
        "the role was assumed again"
    );
    let health = invalidator.health("prod").expect("prod assumes a role");
    assert!(health.attempts() >= 2);
    assert_eq!(health.failure(), None);

    // The role's trust is fixed: lab comes back by itself.
    gate.allow(LAB_ROLE);
    let back = until(Duration::from_secs(20), || {
        !fake.invalidations(LAB).is_empty()
    })
    .await;
    assert!(back, "lab purged once its role can be assumed");
    assert!(
        until(Duration::from_secs(5), || observers.readiness.is_ready()).await,
        "{:?}",
        observers.readiness.reasons()
    );
    // www's second request still waits on its own account's budget.
    assert_eq!(fake.invalidations(WWW).len(), 1, "{:?}", fake.calls());
    assert_eq!(queue.len(), 1);
    let status = observers.status.snapshot();
    assert_eq!(status.accounts["default"].budget.used, 1);
    assert_eq!(status.accounts["prod"].budget.used, 2);
    cancel.cancel();
    let totals = run.await.expect("daemon ends");
    assert_eq!(totals.messages_deleted, 4);
}

/// With `budget.store = "dynamodb"`, each account's ledger is an item of
/// its own (`ledger` for the default account, as before, `ledger#NAME` for
/// the others), and `cfpurge ledger show` prints each under its account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_account_has_its_own_ledger_item_and_ledger_show_prints_each() {
    use cfpurge::budget::{DynamoStore, LedgerState, LedgerStore, Month};
    use cfpurge::config::AwsConfig;
    use cfpurge::coordination::dynamo::ledger_key;

    let moto = Moto::take().await;
    let moto = moto.server();
    crate::replicas::create_table(moto, "cfpurge").await;
    let aws = AwsConfig {
        endpoint_url: Some(moto.endpoint().to_owned()),
        ..AwsConfig::default()
    };
    let month = Month::of(SystemTime::now());
    let state = |spent| {
        let mut s = LedgerState::new(month);
        s.spent = spent;
        s
    };
    let default = DynamoStore::new(Moto::sdk_config(), &aws, "cfpurge", false).unwrap();
    let prod = DynamoStore::at(
        Moto::sdk_config(),
        &aws,
        "cfpurge",
        &ledger_key("prod"),
        false,
    )
    .unwrap();
    default.save(&state(12)).unwrap();
    prod.save(&state(345)).unwrap();
    assert_eq!(default.load().unwrap().map(|s| s.spent), Some(12));
    assert_eq!(prod.load().unwrap().map(|s| s.spent), Some(345));

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cfpurge.toml");
    std::fs::write(
        &config,
        format!(
            "[aws]\nregion = \"us-east-1\"\ndynamodb_endpoint_url = \"{}\"\n[source]\nkind = \"local\"\n\
             [distributions.www]\nid = \"E1WWWWWWWWWWWW\"\n\
             [distributions.shop]\nid = \"E3SSSSSSSSSSSS\"\naccount = \"prod\"\n\
             [accounts.prod]\nmonthly_paths = 5000\n[budget]\nstore = \"dynamodb\"\n",
            moto.endpoint()
        ),
    )
    .unwrap();
    let (code, out, err) = crate::support::cli::cfpurge(&[
        "ledger".as_ref(),
        "show".as_ref(),
        "-c".as_ref(),
        config.as_os_str(),
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("account: default\nledger: DynamoDB table cfpurge\n")
            && out.contains("spent: 12 (cfpurge 12, other tools 0) of 1000"),
        "{out}"
    );
    assert!(
        out.contains("account: prod\nledger: DynamoDB table cfpurge, item pk = \"ledger#prod\"\n")
            && out.contains("spent: 345 (cfpurge 345, other tools 0) of 5000"),
        "{out}"
    );
}

/// `cfpurge ledger import FILE --account NAME` fills that account's ledger,
/// and without `--account` the default account's, even beside an account
/// whose name sorts before it: moving several accounts' ledgers from one
/// store to another loses none of them.
#[test]
fn ledger_import_fills_the_named_accounts_ledger() {
    use cfpurge::budget::{FileStore, LedgerState, LedgerStore, Month, file_for_account};

    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.json");
    let config = dir.path().join("cfpurge.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nkind = \"local\"\n\
             [distributions.www]\nid = \"E1WWWWWWWWWWWW\"\n\
             [distributions.shop]\nid = \"E3SSSSSSSSSSSS\"\naccount = \"prod\"\n\
             [distributions.ads]\nid = \"E4AAAAAAAAAAAA\"\naccount = \"ads\"\n\
             [accounts.prod]\nmonthly_paths = 5000\n[accounts.ads]\n\
             [budget]\nledger_path = \"{}\"\n",
            ledger.display()
        ),
    )
    .unwrap();
    let month = Month::of(SystemTime::now());
    let spent = |n| {
        let mut s = LedgerState::new(month);
        s.spent = n;
        s
    };
    let exported = dir.path().join("exported");
    std::fs::create_dir(&exported).unwrap();
    let import = |file: &str, spent_there: u64, account: Option<&str>| {
        let from = exported.join(file);
        FileStore::new(&from).save(&spent(spent_there)).unwrap();
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "ledger".as_ref(),
            "import".as_ref(),
            from.as_os_str(),
            "-c".as_ref(),
            config.as_os_str(),
        ];
        if let Some(account) = account {
            args.push("--account".as_ref());
            args.push(account.as_ref());
        }
        crate::support::cli::cfpurge(&args)
    };
    let spent_in = |account: &str| {
        FileStore::new(file_for_account(&ledger, account))
            .load()
            .unwrap()
            .map(|s| s.spent)
    };

    let (code, out, err) = import("prod.json", 345, Some("prod"));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("account: prod\n"), "{out}");
    assert!(
        out.contains("spent: 345 (cfpurge 345, other tools 0) of 5000"),
        "{out}"
    );
    assert_eq!(spent_in("prod"), Some(345));
    assert_eq!(spent_in("default"), None, "only prod's ledger is written");
    assert_eq!(spent_in("ads"), None);

    // Without --account: the default account's, not "ads" (first by name).
    let (code, out, err) = import("default.json", 12, None);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("account: default\n"), "{out}");
    assert_eq!(spent_in("default"), Some(12));
    assert_eq!(spent_in("ads"), None);

    // An account without a ledger is named, and nothing is written.
    let (code, out, err) = import("lab.json", 7, Some("lab"));
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(
        err.contains("--account lab: no distribution is in that account")
            && err.contains("ads, default, prod"),
        "{err}"
    );
    assert_eq!(
        (spent_in("default"), spent_in("prod"), spent_in("ads")),
        (Some(12), Some(345), None)
    );
}

/// The example configuration's `account` and `[accounts.prod]`,
/// uncommented, load as written: a distribution in prod, reached through
/// the role, with its own budget.
#[test]
fn the_examples_account_keys_load_uncommented() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/cfpurge.example.toml");
    let example = std::fs::read_to_string(path).unwrap();
    let mut in_accounts = false;
    let text: Vec<String> = example
        .lines()
        .map(|line| {
            if line.starts_with("# [accounts.prod]") {
                in_accounts = true;
            } else if !line.starts_with('#') && !line.starts_with(' ') {
                in_accounts = false;
            }
            if line.starts_with("# account = \"default\"") {
                return "account = \"prod\"".to_owned();
            }
            match line.strip_prefix("# ") {
                Some(rest) if in_accounts => rest.to_owned(),
                _ => line.to_owned(),
            }
        })
        .collect();
    let text = text.join("\n");
    assert!(text.contains("\n[accounts.prod]"), "{text}");
    let cfg = Config::from_parts(Some(&text), "example", []).expect("the example loads");
    assert_eq!(cfg.account_of("www"), "prod");
    let prod = cfg.account("prod").expect("[accounts.prod]");
    assert_eq!(
        prod.role_arn.as_deref(),
        Some("arn:aws:iam::210987654321:role/cfpurge")
    );
    assert!(prod.external_id.is_some());
    assert_eq!(cfg.budget_for("prod").monthly_paths, 1000);
    assert!(cfg.warnings().is_empty(), "{:?}", cfg.warnings());
}
