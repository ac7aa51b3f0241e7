//! Several replicas on one queue: the DynamoDB lease and ledger against
//! moto's DynamoDB (the same server as SQS), the ledger store against the
//! same contract as the file store, and the real binary as separate
//! processes sharing one queue and one table.

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use cfpurge::budget::{DynamoStore, LedgerError, LedgerStore, contract};
use cfpurge::config::AwsConfig;
use cfpurge::coordination::dynamo::{DynamoTable, Fence, TableError, client_with};

use crate::support::moto::Moto;

const WALL: u64 = 1_800_000_000_000;

fn aws(moto: &Moto) -> AwsConfig {
    AwsConfig {
        dynamodb_endpoint_url: Some(moto.endpoint().to_owned()),
        endpoint_url: Some("http://127.0.0.1:9".to_owned()),
        ..AwsConfig::default()
    }
}

/// Creates the table the way docs/replicas.md shows (partition key `pk`, a
/// string, on demand).
pub async fn create_table(moto: &Moto, name: &str) {
    let client = client_with(&Moto::sdk_config(), &aws(moto));
    client
        .create_table()
        .table_name(name)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create table {name}: {e:?}"));
}

fn table(moto: &Moto, name: &str) -> DynamoTable {
    DynamoTable::new(
        client_with(&Moto::sdk_config(), &aws(moto)),
        name,
        Duration::from_secs(5),
    )
}

fn store(moto: &Moto, name: &str, fenced: bool) -> DynamoStore {
    DynamoStore::new(Moto::sdk_config(), &aws(moto), name, fenced).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dynamodb_store_keeps_the_store_contract() {
    let moto = Moto::shared();
    let _guard = moto.exclusive().await;
    create_table(moto, "cfpurge").await;
    contract::check_store(&|| store(moto, "cfpurge", false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_takes_over_only_a_lapsed_lease_and_fences_the_ledger() {
    let moto = Moto::shared();
    let _guard = moto.exclusive().await;
    create_table(moto, "cfpurge").await;
    let t = table(moto, "cfpurge");
    assert_eq!(t.look().await.unwrap(), None);
    // a takes it; b cannot while it holds.
    assert_eq!(t.acquire("a", WALL, 3_000).await.unwrap(), 1);
    assert!(matches!(
        t.acquire("b", WALL + 1_000, 3_000).await,
        Err(TableError::Refused(_))
    ));
    // Not even a restarted a (same id): it is a new holder.
    assert!(matches!(
        t.acquire("a", WALL + 1_000, 3_000).await,
        Err(TableError::Refused(_))
    ));
    t.renew("a", 1, WALL + 1_000, 3_000).await.unwrap();
    let seen = t.look().await.unwrap().unwrap();
    assert_eq!(
        (seen.holder.as_deref(), seen.expires_at, seen.fencing),
        (Some("a"), WALL + 4_000, 1)
    );

    // The ledger: writes only while the fence holds the lease.
    let a = store(moto, "cfpurge", true);
    let state = contract::sample_state();
    assert!(matches!(a.save(&state), Err(LedgerError::Refused(_))));
    a.set_fence(Some(Fence {
        replica: "a".into(),
        fencing: 1,
    }));
    assert_eq!(a.load().unwrap(), None);
    a.save(&state).unwrap();

    // The lease lapses; b takes it over and the fencing number grows.
    assert_eq!(t.acquire("b", WALL + 4_001, 3_000).await.unwrap(), 2);
    assert!(matches!(
        t.renew("a", 1, WALL + 4_002, 3_000).await,
        Err(TableError::Refused(_))
    ));
    // a, deposed, can no longer change the ledger.
    let mut changed = state.clone();
    changed.spent += 1;
    assert!(matches!(a.save(&changed), Err(LedgerError::Refused(_))));
    let b = store(moto, "cfpurge", true);
    b.set_fence(Some(Fence {
        replica: "b".into(),
        fencing: 2,
    }));
    assert_eq!(b.load().unwrap(), Some(state.clone()));
    b.save(&changed).unwrap();
    assert_eq!(a.load().unwrap(), Some(changed.clone()));

    // b hands it back: a standby takes it at once, with the next number.
    assert!(matches!(
        t.release("a", 2).await,
        Err(TableError::Refused(_))
    ));
    t.release("b", 2).await.unwrap();
    let seen = t.look().await.unwrap().unwrap();
    assert_eq!((seen.holder, seen.fencing), (None, 2));
    assert_eq!(t.acquire("c", WALL + 4_100, 3_000).await.unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_lease_ledger_writes_are_conditional_on_the_version() {
    let moto = Moto::shared();
    let _guard = moto.exclusive().await;
    create_table(moto, "cfpurge").await;
    let first = store(moto, "cfpurge", false);
    let second = store(moto, "cfpurge", false);
    assert_eq!(first.load().unwrap(), None);
    assert_eq!(second.load().unwrap(), None);
    let state = contract::sample_state();
    first.save(&state).unwrap();
    // second read before first wrote: its write would lose first's.
    assert!(matches!(second.save(&state), Err(LedgerError::Refused(_))));
    assert_eq!(second.load().unwrap(), Some(state.clone()));
    second.save(&state).unwrap();
    assert!(matches!(first.save(&state), Err(LedgerError::Refused(_))));
    // A missing table is an error naming it, not an empty ledger.
    let missing = store(moto, "nothing-here", false);
    let e = missing.load().unwrap_err().to_string();
    assert!(
        e.contains("nothing-here") && e.contains("does not exist"),
        "{e}"
    );
}
