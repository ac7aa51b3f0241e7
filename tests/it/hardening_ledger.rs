//! Hardening, second round: the ledger import, files that are not regular
//! files, lease and ledger items at their limits or of the wrong shape,
//! the messages a missing table gives, and names that mean two entries.
//! Each test was written against the faults docs/hardening.md lists under
//! "Second round: ledger, lease, files, names".

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use cfpurge::budget::{
    DynamoStore, FileStore, LedgerState, LedgerStore, Month, MonthRecord, contract,
};
use cfpurge::config::AwsConfig;
use cfpurge::coordination::dynamo::{DynamoTable, TableError};

use crate::replicas::create_table;
use crate::replicas::processes::{Fleet, one_leader};
use crate::support::moto::Moto;

fn aws(moto: &Moto) -> AwsConfig {
    AwsConfig {
        dynamodb_endpoint_url: Some(moto.endpoint().to_owned()),
        endpoint_url: Some("http://127.0.0.1:9".to_owned()),
        ..AwsConfig::default()
    }
}

fn dynamodb(moto: &Moto) -> aws_sdk_dynamodb::Client {
    cfpurge::aws::dynamodb(&Moto::sdk_config(), &aws(moto))
}

/// Writes `item` (its `pk` included) as it is, unconditionally.
async fn put_item(moto: &Moto, table: &str, item: &[(&str, AttributeValue)]) {
    let item: HashMap<String, AttributeValue> = item
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    dynamodb(moto)
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put item: {e:?}"));
}

async fn get_item(moto: &Moto, table: &str, pk: &str) -> Option<HashMap<String, AttributeValue>> {
    dynamodb(moto)
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(pk.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get item: {e:?}"))
        .item
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn cli(args: &[&OsStr]) -> (Option<i32>, String, String) {
    crate::support::cli::cfpurge(args)
}

/// `cfpurge ARGS...` that must end within `limit`: killed (by its PID) and
/// reported as a failure otherwise.
fn cli_within(args: &[&OsStr], limit: Duration) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cfpurge"))
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("CFPURGE_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cfpurge");
    let start = Instant::now();
    loop {
        if let Some(_status) = child.try_wait().expect("wait") {
            let out = child.wait_with_output().expect("output");
            return (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cfpurge {args:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn this_month() -> Month {
    Month::of(SystemTime::now())
}

fn ledger_of(month: Month, spent: u64) -> LedgerState {
    let mut state = LedgerState::new(month);
    state.spent = spent;
    state
}

// ---- item 3: an import never takes a month ahead of the clock ----

/// The file store: a ledger file for a month the clock has not reached is
/// refused, as the daemon refuses it, and the target keeps this month's
/// spending and its history.
#[test]
fn ledger_import_of_a_month_ahead_of_the_clock_is_refused_by_the_file_store() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.json");
    let config = dir.path().join("cfpurge.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nkind = \"local\"\n[distributions.www]\nid = \"E2ABCDEF123456\"\n\
             [budget]\nledger_path = \"{}\"\n",
            ledger.display()
        ),
    )
    .unwrap();
    let mut target = ledger_of(this_month(), 42);
    target.history.push(MonthRecord {
        month: this_month().previous(),
        spent: 7,
        external: 1,
    });
    FileStore::new(&ledger).save(&target).unwrap();
    let future = dir.path().join("future.json");
    FileStore::new(&future)
        .save(&ledger_of("2099-01".parse().unwrap(), 5))
        .unwrap();
    let (code, out, err) = cli(&[
        "ledger".as_ref(),
        "import".as_ref(),
        future.as_os_str(),
        "-c".as_ref(),
        config.as_os_str(),
    ]);
    assert_eq!(code, Some(1), "imported a future month: {out}{err}");
    assert!(err.contains("2099-01") && err.contains("clock"), "{err}");
    assert_eq!(
        FileStore::new(&ledger).load().unwrap(),
        Some(target.clone())
    );

    // A history that names months at or after its own ledger's would push
    // the target's real months out of the merged history.
    let mut odd = ledger_of(this_month(), 1);
    for k in 0..12 {
        let mut m = this_month();
        for _ in 0..=k {
            m = m.next();
        }
        odd.history.push(MonthRecord {
            month: m,
            spent: 1,
            external: 0,
        });
    }
    let odd_file = dir.path().join("odd.json");
    FileStore::new(&odd_file).save(&odd).unwrap();
    let (code, out, err) = cli(&[
        "ledger".as_ref(),
        "import".as_ref(),
        odd_file.as_os_str(),
        "-c".as_ref(),
        config.as_os_str(),
    ]);
    assert_eq!(code, Some(1), "imported an impossible history: {out}{err}");
    assert!(err.contains("history"), "{err}");
    assert_eq!(FileStore::new(&ledger).load().unwrap(), Some(target));
}

/// The DynamoDB store: the same refusal, and the item is not written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_import_of_a_month_ahead_of_the_clock_is_refused_by_the_dynamodb_store() {
    let moto = Moto::take().await;
    let moto = moto.server();
    create_table(moto, "cfpurge").await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cfpurge.toml");
    std::fs::write(
        &config,
        format!(
            "[aws]\ndynamodb_endpoint_url = \"{}\"\n[source]\nkind = \"local\"\n\
             [distributions.www]\nid = \"E2ABCDEF123456\"\n[budget]\nstore = \"dynamodb\"\n",
            moto.endpoint()
        ),
    )
    .unwrap();
    let store = DynamoStore::new(Moto::sdk_config(), &aws(moto), "cfpurge", false).unwrap();
    let mut target = ledger_of(this_month(), 42);
    target.history.push(MonthRecord {
        month: this_month().previous(),
        spent: 7,
        external: 1,
    });
    store.save(&target).unwrap();
    let future = dir.path().join("future.json");
    FileStore::new(&future)
        .save(&ledger_of("2099-01".parse().unwrap(), 5))
        .unwrap();
    let (code, out, err) = cli(&[
        "ledger".as_ref(),
        "import".as_ref(),
        future.as_os_str(),
        "-c".as_ref(),
        config.as_os_str(),
    ]);
    assert_eq!(code, Some(1), "imported a future month: {out}{err}");
    assert!(err.contains("2099-01") && err.contains("clock"), "{err}");
    let fresh = DynamoStore::new(Moto::sdk_config(), &aws(moto), "cfpurge", false).unwrap();
    assert_eq!(fresh.load().unwrap(), Some(target));
}

// ---- item 4: files that are not regular files ----

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// A configuration whose catalog file is `catalog`.
fn catalog_config(dir: &Path, catalog: &Path) -> std::path::PathBuf {
    let config = dir.join("cfpurge.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nkind = \"local\"\n[distributions.www]\nid = \"E2ABCDEF123456\"\n\
             catalog = \"file\"\ncatalog_file = \"{}\"\n[budget]\nledger_path = \"{}\"\n\
             [http]\nlisten = \"127.0.0.1:0\"\n",
            catalog.display(),
            dir.join("ledger.json").display()
        ),
    )
    .unwrap();
    config
}

/// `/dev/zero` (directly and through a symbolic link) and a FIFO as
/// `catalog_file`: check-config, `cfpurge catalog` and `cfpurge run` refuse
/// each at once, naming the key and what the file is.
#[test]
fn a_catalog_file_that_is_not_a_regular_file_is_refused_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("zero-link");
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let limit = Duration::from_secs(20);
    for (catalog, kind) in [
        (Path::new("/dev/zero"), "character device"),
        (link.as_path(), "character device"),
        (fifo.as_path(), "FIFO"),
    ] {
        let config = catalog_config(dir.path(), catalog);
        let c = config.as_os_str();
        let (code, out, err) = cli_within(&["check-config".as_ref(), "-c".as_ref(), c], limit);
        assert_eq!(code, Some(2), "check-config passed {catalog:?}: {out}{err}");
        assert!(
            err.contains("distributions.www.catalog_file")
                && err.contains("not a regular file")
                && err.contains(kind),
            "{err}"
        );
        let (code, _, err) = cli_within(
            &[
                "catalog".as_ref(),
                "-c".as_ref(),
                c,
                "--distribution".as_ref(),
                "www".as_ref(),
            ],
            limit,
        );
        assert_eq!(code, Some(2), "cfpurge catalog on {catalog:?}: {err}");
        assert!(err.contains("not a regular file"), "{err}");
        let (code, _, err) = cli_within(&["run".as_ref(), "-c".as_ref(), c], limit);
        assert_eq!(code, Some(2), "cfpurge run on {catalog:?}: {err}");
        assert!(err.contains("not a regular file"), "{err}");
    }
}

/// `cfpurge ledger import` of `/dev/zero`, a link to it and a FIFO: refused
/// at once; the ledger is left alone.
#[test]
fn ledger_import_of_a_file_that_is_not_a_regular_file_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cfpurge.toml");
    let ledger = dir.path().join("ledger.json");
    std::fs::write(
        &config,
        format!(
            "[source]\nkind = \"local\"\n[distributions.www]\nid = \"E2ABCDEF123456\"\n\
             [budget]\nledger_path = \"{}\"\n",
            ledger.display()
        ),
    )
    .unwrap();
    let target = ledger_of(this_month(), 42);
    FileStore::new(&ledger).save(&target).unwrap();
    let link = dir.path().join("zero-link");
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    for (file, kind) in [
        (Path::new("/dev/zero"), "character device"),
        (link.as_path(), "character device"),
        (fifo.as_path(), "FIFO"),
    ] {
        let (code, out, err) = cli_within(
            &[
                "ledger".as_ref(),
                "import".as_ref(),
                file.as_os_str(),
                "-c".as_ref(),
                config.as_os_str(),
            ],
            Duration::from_secs(20),
        );
        assert_eq!(code, Some(1), "imported {file:?}: {out}{err}");
        assert!(
            err.contains("not a regular file") && err.contains(kind),
            "{err}"
        );
    }
    // A regular file past the size limit is refused too, not read whole.
    let big = dir.path().join("big.json");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(1 << 30).unwrap();
    drop(f);
    let (code, _, err) = cli_within(
        &[
            "ledger".as_ref(),
            "import".as_ref(),
            big.as_os_str(),
            "-c".as_ref(),
            config.as_os_str(),
        ],
        Duration::from_secs(20),
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("larger than"), "{err}");
    assert_eq!(FileStore::new(&ledger).load().unwrap(), Some(target));
}

// ---- items 6 and 7: the ledger and lease items at their limits ----

/// A ledger item at `rev` 2^64-1: the next write is refused with a reason,
/// never made as version 0. A ledger item without `rev`: the read names
/// the item and the attribute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_items_without_a_usable_rev_are_named() {
    let moto = Moto::take().await;
    let moto = moto.server();
    create_table(moto, "cfpurge").await;
    let json = serde_json::to_string(&contract::sample_state()).unwrap();
    put_item(
        moto,
        "cfpurge",
        &[
            ("pk", s("ledger")),
            ("state", s(&json)),
            ("rev", n(u64::MAX)),
        ],
    )
    .await;
    let store = DynamoStore::new(Moto::sdk_config(), &aws(moto), "cfpurge", false).unwrap();
    assert_eq!(store.load().unwrap(), Some(contract::sample_state()));
    let e = store
        .save(&contract::sample_state())
        .expect_err("a write past the largest rev")
        .to_string();
    assert!(
        e.contains("rev") && e.contains(&u64::MAX.to_string()),
        "{e}"
    );
    let item = get_item(moto, "cfpurge", "ledger").await.unwrap();
    assert_eq!(item.get("rev"), Some(&n(u64::MAX)));

    put_item(moto, "cfpurge", &[("pk", s("ledger")), ("state", s(&json))]).await;
    let store = DynamoStore::new(Moto::sdk_config(), &aws(moto), "cfpurge", false).unwrap();
    let e = match store.load() {
        Err(e) => e.to_string(),
        Ok(_) => store
            .save(&contract::sample_state())
            .expect_err("a ledger item without rev")
            .to_string(),
    };
    assert!(
        e.contains("pk = \"ledger\"") && e.contains("\"rev\"") && !e.contains("lease"),
        "{e}"
    );
}

/// A lease whose fencing number is 2^64-1 cannot be taken over (the
/// number would not fit); the take-over is refused and the item left as
/// it is, so every replica can still read it. Lease attributes of the
/// wrong type are named with their item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_items_at_the_limit_or_of_the_wrong_type_are_named() {
    let moto = Moto::take().await;
    let moto = moto.server();
    create_table(moto, "cfpurge").await;
    let table = DynamoTable::new(dynamodb(moto), "cfpurge", Duration::from_secs(5));
    put_item(
        moto,
        "cfpurge",
        &[
            ("pk", s("lease")),
            ("expires_at", n(0)),
            ("fencing", n(u64::MAX)),
        ],
    )
    .await;
    let taken = table.acquire("a", 1_800_000_000_000, 3_000).await;
    assert!(taken.is_err(), "took a lease past the last fencing number");
    let seen = table.look().await.expect("the lease is still readable");
    assert_eq!(seen.map(|s| s.fencing), Some(u64::MAX));

    put_item(
        moto,
        "cfpurge",
        &[
            ("pk", s("lease")),
            ("holder", s("b")),
            ("expires_at", s("soon")),
            ("fencing", n(3)),
        ],
    )
    .await;
    let e = table.look().await.expect_err("a string expiry").to_string();
    assert!(
        e.contains("pk = \"lease\"") && e.contains("\"expires_at\"") && !e.contains("reachable"),
        "{e}"
    );
    put_item(
        moto,
        "cfpurge",
        &[
            ("pk", s("lease")),
            ("holder", n(5)),
            ("expires_at", n(0)),
            ("fencing", n(3)),
        ],
    )
    .await;
    let e = table.look().await.expect_err("a number holder").to_string();
    assert!(e.contains("\"holder\""), "{e}");
}

/// A missing table: one sentence that names it, not the SDK's debug dump.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_table_is_one_short_sentence() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let store = DynamoStore::new(Moto::sdk_config(), &aws(moto), "nothing-here", false).unwrap();
    let e = store.load().unwrap_err().to_string();
    assert!(
        e.contains("nothing-here") && e.contains("does not exist"),
        "{e}"
    );
    assert!(e.len() < 300, "{} bytes: {e}", e.len());
    let table = DynamoTable::new(dynamodb(moto), "nothing-here", Duration::from_secs(5));
    match table.look().await {
        Err(e @ TableError::NoTable(_)) => {
            let e = e.to_string();
            assert!(e.len() < 300, "{} bytes: {e}", e.len());
        }
        other => panic!("{other:?}"),
    }
}

// ---- items 5 and 7: the lease item as a replica meets it ----

async fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let response = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

/// Waits until `/readyz` answers `want` with a body for which `fits` holds.
async fn readyz_until(port: u16, want: u16, fits: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let answer = get(port, "/readyz").await;
        if let Some((status, body)) = &answer
            && *status == want
            && fits(body)
        {
            return body.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "/readyz not {want} as wanted within 20 s: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn metric(port: u16, name: &str) -> Option<f64> {
    let (_, text) = get(port, "/metrics").await?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// A lease item whose expiry lies further ahead than any `lease_seconds`
/// allows (ten years, holder "ghost") keeps a replica standby for ever:
/// it is named as invalid in the log, in `/readyz` (503) and in
/// `cfpurge_lease_invalid`. A lease item of the wrong type is named with
/// its attribute, not reported as an unreachable table. Once the lease is
/// handed back by hand (docs/replicas.md), the replica leads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_can_never_expire_is_named_invalid_until_it_is_cleared() {
    let moto = Moto::take().await;
    let moto = moto.server();
    let fleet = Fleet::new(moto, "hardening-ghost", 1_000).await;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let ten_years_ms = 10 * 365 * 86_400_000_u64;
    put_item(
        moto,
        "cfpurge",
        &[
            ("pk", s("lease")),
            ("holder", s("ghost")),
            ("expires_at", n(now_ms + ten_years_ms)),
            ("fencing", n(7)),
        ],
    )
    .await;
    let replica = fleet.start("ha");
    let body = readyz_until(replica.port, 503, |b| b.contains("lease")).await;
    assert!(body.contains("ghost") && body.contains("invalid"), "{body}");
    assert_eq!(
        metric(replica.port, "cfpurge_lease_invalid").await,
        Some(1.0)
    );
    assert_eq!(replica.leader().await, Some(false));
    assert!(
        fleet.log("ha").contains("invalid"),
        "not logged: {}",
        fleet.log("ha")
    );

    put_item(
        moto,
        "cfpurge",
        &[
            ("pk", s("lease")),
            ("holder", s("ghost")),
            ("expires_at", s("never")),
            ("fencing", n(7)),
        ],
    )
    .await;
    let body = readyz_until(replica.port, 503, |b| b.contains("expires_at")).await;
    assert!(!body.contains("not reachable"), "{body}");

    // Handed back by hand as docs/replicas.md shows: the holder goes, the
    // expiry is set in the past, the fencing number stays.
    dynamodb(moto)
        .update_item()
        .table_name("cfpurge")
        .key("pk", s("lease"))
        .update_expression("SET expires_at = :zero REMOVE holder")
        .expression_attribute_values(":zero", n(0))
        .send()
        .await
        .expect("hand the lease back");
    assert_eq!(one_leader(&[&replica], Duration::from_secs(20)).await, 0);
    readyz_until(replica.port, 200, |b| b == "ready").await;
    assert_eq!(
        metric(replica.port, "cfpurge_lease_invalid").await,
        Some(0.0)
    );
    let item = get_item(moto, "cfpurge", "lease").await.unwrap();
    assert_eq!(item.get("fencing"), Some(&n(8)));
}

// ---- item 9: one name, two entries ----

/// An entry whose alias is another entry's tenant id (or distribution id):
/// a request naming it could mean either, so check-config refuses the
/// configuration and names both entries.
#[test]
fn a_name_that_means_two_entries_is_refused_by_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cfpurge.toml");
    let cases = [
        (
            "[distributions.dt_1a]\nid = \"E2ABCDEF123456\"\n\
             [distributions.shop]\nid = \"E3MULTI\"\ntenant_id = \"dt_1a\"\n",
            "distributions.shop.tenant_id",
            "distributions.dt_1a",
        ),
        (
            "[distributions.123]\nid = \"E2ABCDEF123456\"\n\
             [distributions.www]\nid = \"123\"\n",
            "distributions.www.id",
            "distributions.123",
        ),
    ];
    for (entries, key, other) in cases {
        std::fs::write(&config, format!("[source]\nkind = \"local\"\n{entries}")).unwrap();
        let (code, out, err) = cli(&["check-config".as_ref(), "-c".as_ref(), config.as_os_str()]);
        assert_eq!(code, Some(2), "accepted:\n{entries}\n{out}");
        assert!(err.contains(key) && err.contains(other), "{err}");
    }
}
