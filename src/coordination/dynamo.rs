//! The shared table on DynamoDB: the lease item's conditional writes
//! ([`DynamoTable`], a [`LeaseTable`]) and the ledger item's reads and
//! conditional writes (for [`crate::budget::DynamoStore`]).
//!
//! Items (partition key `pk`, a string):
//!
//! - `pk = "lease"`: `holder` (replica id, absent once handed back),
//!   `expires_at` (Unix milliseconds), `fencing` (grows at every take-over);
//! - `pk = "ledger"`: `state` (the ledger as JSON, the file's format) and
//!   `rev` (grows at every write, for writes conditional on the version);
//! - `pk = "learned#<alias>"`: the head of a learned catalog, `generation`,
//!   `chunks` and `bytes`; `pk = "learned#<alias>#<slot>#<n>"`: its chunks,
//!   `generation` and `data` (see [`crate::catalog::learned_store`]).
//!
//! Every error goes through [`crate::aws::error::classify`]; a failed
//! condition (`ConditionalCheckFailedException`, or a transaction's
//! `TransactionCanceledException`) is a refusal, not an error. Every call
//! has a timeout.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::get_item::GetItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Put, ReturnValue, TransactWriteItem,
};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response;
use aws_smithy_types::Blob;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::{Answer, Call, LeaseTable, Seen};
use crate::aws::error::{self, Class, Classified, TypedCode, typed_code};

/// The lease item's key.
pub const LEASE_KEY: &str = "lease";
/// The ledger item's key (the default account's).
pub const LEDGER_KEY: &str = "ledger";

/// The ledger item's key of `account`: [`LEDGER_KEY`] for the default
/// account, as a single-account daemon always wrote it, else
/// `ledger#NAME`: one item per account, each written on its own.
pub fn ledger_key(account: &str) -> String {
    if account == crate::config::DEFAULT_ACCOUNT {
        LEDGER_KEY.to_owned()
    } else {
        format!("{LEDGER_KEY}#{account}")
    }
}

/// Why a table call failed.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The condition failed: another holder, another version.
    #[error("the condition failed: {0}")]
    Refused(String),
    /// The table does not exist.
    #[error("the table does not exist: {0}")]
    NoTable(String),
    /// Access denied.
    #[error("access denied: {0}")]
    AccessDenied(String),
    /// No answer in time, throttled, or a server fault: the outcome is
    /// unknown.
    #[error("no usable answer: {0}")]
    Unavailable(String),
    /// An item that cannot be used as it is: an attribute missing, of the
    /// wrong type, or at a limit. The message names the item and the
    /// attribute; repeating the call will not help.
    #[error("{0}")]
    Invalid(String),
    /// Any other refusal.
    #[error("{0}")]
    Other(String),
}

typed_code!(UpdateItemError {
    is_conditional_check_failed_exception => "ConditionalCheckFailedException",
    is_resource_not_found_exception => "ResourceNotFoundException",
    is_provisioned_throughput_exceeded_exception => "ProvisionedThroughputExceededException",
    is_request_limit_exceeded => "RequestLimitExceeded",
    is_throttling_exception => "ThrottlingException",
    is_internal_server_error => "InternalServerError",
    is_transaction_conflict_exception => "TransactionConflictException",
});
typed_code!(PutItemError {
    is_conditional_check_failed_exception => "ConditionalCheckFailedException",
    is_resource_not_found_exception => "ResourceNotFoundException",
    is_provisioned_throughput_exceeded_exception => "ProvisionedThroughputExceededException",
    is_request_limit_exceeded => "RequestLimitExceeded",
    is_throttling_exception => "ThrottlingException",
    is_internal_server_error => "InternalServerError",
    is_transaction_conflict_exception => "TransactionConflictException",
});
typed_code!(GetItemError {
    is_resource_not_found_exception => "ResourceNotFoundException",
    is_provisioned_throughput_exceeded_exception => "ProvisionedThroughputExceededException",
    is_request_limit_exceeded => "RequestLimitExceeded",
    is_throttling_exception => "ThrottlingException",
    is_internal_server_error => "InternalServerError",
});
typed_code!(TransactWriteItemsError {
    is_transaction_canceled_exception => "TransactionCanceledException",
    is_resource_not_found_exception => "ResourceNotFoundException",
    is_provisioned_throughput_exceeded_exception => "ProvisionedThroughputExceededException",
    is_request_limit_exceeded => "RequestLimitExceeded",
    is_throttling_exception => "ThrottlingException",
    is_internal_server_error => "InternalServerError",
    is_transaction_in_progress_exception => "TransactionInProgressException",
});

/// Codes that mean "the condition failed". A cancelled transaction is
/// read as one without looking at its reasons: a conflict with another
/// transaction is then refused too, which only makes the writer try again.
const REFUSED: &[&str] = &[
    "ConditionalCheckFailedException",
    "TransactionCanceledException",
];

fn classify<E>(err: SdkError<E, Response>) -> TableError
where
    E: ProvideErrorMetadata + TypedCode + StdError + Send + Sync + 'static,
{
    from_classified(error::classify(&err, TypedCode::typed_code))
}

fn from_classified(c: Classified) -> TableError {
    let text = c.text.clone();
    match c.class {
        Class::Client if c.code_in(REFUSED) => TableError::Refused(text),
        Class::Client if c.code_in(&["ResourceNotFoundException"]) => TableError::NoTable(text),
        Class::Client if c.code_in(error::ACCESS_DENIED) || c.status == Some(403) => {
            TableError::AccessDenied(text)
        }
        Class::Client => TableError::Other(text),
        Class::Transport | Class::Timeout | Class::Throttling | Class::Server => {
            TableError::Unavailable(text)
        }
    }
}

/// `call`, given up after `limit` (its outcome then unknown).
async fn within<T>(
    limit: Duration,
    call: impl Future<Output = Result<T, TableError>>,
) -> Result<T, TableError> {
    tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
        Err(TableError::Unavailable(format!(
            "no answer within {limit:?}"
        )))
    })
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// What an attribute value is, for messages.
fn type_of(value: &AttributeValue) -> &'static str {
    match value {
        AttributeValue::S(_) => "a string",
        AttributeValue::N(_) => "a number",
        AttributeValue::B(_) => "binary",
        AttributeValue::Bool(_) => "a boolean",
        AttributeValue::Null(_) => "null",
        AttributeValue::L(_) => "a list",
        AttributeValue::M(_) => "a map",
        AttributeValue::Ss(_) | AttributeValue::Ns(_) | AttributeValue::Bs(_) => "a set",
        _ => "of an unknown type",
    }
}

type Item = HashMap<String, AttributeValue>;

/// Attribute `name` of item `key` as a whole number (0 to 2^64-1); `None`
/// when the item has no such attribute.
fn whole(item: &Item, key: &str, name: &str) -> Result<Option<u64>, TableError> {
    match item.get(name) {
        None => Ok(None),
        Some(AttributeValue::N(v)) => v.parse().map(Some).map_err(|_| {
            TableError::Invalid(format!(
                "item pk = \"{key}\": attribute \"{name}\" is {v}, not a whole number from 0 to {}",
                u64::MAX
            ))
        }),
        Some(other) => Err(TableError::Invalid(format!(
            "item pk = \"{key}\": attribute \"{name}\" is {}, not a number",
            type_of(other)
        ))),
    }
}

/// Attribute `name` of item `key` as a whole number, which it must have.
fn required(item: &Item, key: &str, name: &str) -> Result<u64, TableError> {
    whole(item, key, name)?.ok_or_else(|| {
        TableError::Invalid(format!(
            "item pk = \"{key}\" has no attribute \"{name}\" (a whole number)"
        ))
    })
}

/// Attribute `name` of item `key` as a string; `None` when absent.
fn string<'i>(item: &'i Item, key: &str, name: &str) -> Result<Option<&'i str>, TableError> {
    match item.get(name) {
        None => Ok(None),
        Some(AttributeValue::S(v)) => Ok(Some(v)),
        Some(other) => Err(TableError::Invalid(format!(
            "item pk = \"{key}\": attribute \"{name}\" is {}, not a string",
            type_of(other)
        ))),
    }
}

/// The shared table.
#[derive(Clone, Debug)]
pub struct DynamoTable {
    client: Client,
    table: String,
    /// The longest any call may take, SDK retries included.
    limit: Duration,
}

impl DynamoTable {
    pub fn new(client: Client, table: impl Into<String>, limit: Duration) -> DynamoTable {
        DynamoTable {
            client,
            table: table.into(),
            limit,
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn key(name: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([("pk".to_owned(), s(name))])
    }

    /// The lease item, read consistently. An item with a holder must say
    /// when it lapses: without `expires_at` no take-over's condition could
    /// ever hold. Without a holder (handed back, or made by hand) a missing
    /// expiry or fencing number counts as 0, as the take-over's own
    /// update does.
    pub async fn look(&self) -> Result<Option<Seen>, TableError> {
        let Some(item) = self.get(LEASE_KEY).await? else {
            return Ok(None);
        };
        let holder = string(&item, LEASE_KEY, "holder")?.map(str::to_owned);
        let expires_at = if holder.is_some() {
            required(&item, LEASE_KEY, "expires_at")?
        } else {
            whole(&item, LEASE_KEY, "expires_at")?.unwrap_or(0)
        };
        Ok(Some(Seen {
            holder,
            expires_at,
            fencing: whole(&item, LEASE_KEY, "fencing")?.unwrap_or(0),
        }))
    }

    /// Takes the lease if it is absent, handed back or lapsed at `wall`,
    /// and its fencing number can still grow (below 2^64-1: the next one
    /// would not fit, and every reader would fail on it); returns the new
    /// fencing number.
    pub async fn acquire(
        &self,
        replica: &str,
        wall: u64,
        lease_ms: u64,
    ) -> Result<u64, TableError> {
        let call = async {
            let out = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(Self::key(LEASE_KEY)))
                .update_expression(
                    "SET holder = :me, expires_at = :exp, fencing = if_not_exists(fencing, :zero) + :one",
                )
                .condition_expression(
                    "(attribute_not_exists(pk) OR attribute_not_exists(holder) OR expires_at < :now) \
                     AND (attribute_not_exists(fencing) OR fencing < :last)",
                )
                .expression_attribute_values(":me", s(replica))
                .expression_attribute_values(":exp", n(wall.saturating_add(lease_ms)))
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":now", n(wall))
                .expression_attribute_values(":last", n(u64::MAX))
                .return_values(ReturnValue::AllNew)
                .send()
                .await
                .map_err(classify)?;
            let item = out.attributes.unwrap_or_default();
            required(&item, LEASE_KEY, "fencing")
        };
        within(self.limit, call).await
    }

    /// Extends the lease while `replica` holds it with `fencing`.
    pub async fn renew(
        &self,
        replica: &str,
        fencing: u64,
        wall: u64,
        lease_ms: u64,
    ) -> Result<(), TableError> {
        let call = async {
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(Self::key(LEASE_KEY)))
                .update_expression("SET expires_at = :exp")
                .condition_expression("holder = :me AND fencing = :f")
                .expression_attribute_values(":me", s(replica))
                .expression_attribute_values(":f", n(fencing))
                .expression_attribute_values(":exp", n(wall.saturating_add(lease_ms)))
                .send()
                .await
                .map_err(classify)?;
            Ok(())
        };
        within(self.limit, call).await
    }

    /// Hands the lease back while `replica` holds it with `fencing`: the
    /// holder goes and the expiry is in the past, so any standby takes it
    /// at its next look. The item stays, and with it the fencing number.
    pub async fn release(&self, replica: &str, fencing: u64) -> Result<(), TableError> {
        let call = async {
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(Self::key(LEASE_KEY)))
                .update_expression("SET expires_at = :zero REMOVE holder")
                .condition_expression("holder = :me AND fencing = :f")
                .expression_attribute_values(":me", s(replica))
                .expression_attribute_values(":f", n(fencing))
                .expression_attribute_values(":zero", n(0))
                .send()
                .await
                .map_err(classify)?;
            Ok(())
        };
        within(self.limit, call).await
    }

    /// The ledger item: its JSON and its version, read consistently.
    pub async fn load_ledger(&self) -> Result<Option<(String, u64)>, TableError> {
        self.load_ledger_at(LEDGER_KEY).await
    }

    /// The ledger item at `key` ([`ledger_key`]), as [`Self::load_ledger`].
    pub async fn load_ledger_at(&self, key: &str) -> Result<Option<(String, u64)>, TableError> {
        let Some(item) = self.get(key).await? else {
            return Ok(None);
        };
        let state = string(&item, key, "state")?.ok_or_else(|| {
            TableError::Invalid(format!(
                "item pk = \"{key}\" has no attribute \"state\" (the ledger as JSON)"
            ))
        })?;
        // Every write is conditional on the version read: without one,
        // each would be refused as if another writer had been first.
        let rev = required(&item, key, "rev")?;
        Ok(Some((state.to_owned(), rev)))
    }

    /// Writes the ledger item as version `expected + 1` if it is still at
    /// `expected` (`None`: if there is none yet) and, with `fence`, only
    /// while that replica holds the lease with that fencing number (one
    /// transaction with a condition check on the lease item). Returns the
    /// new version.
    pub async fn save_ledger(
        &self,
        state: &str,
        expected: Option<u64>,
        fence: Option<&Fence>,
    ) -> Result<u64, TableError> {
        self.save_ledger_at(LEDGER_KEY, state, expected, fence)
            .await
    }

    /// [`Self::save_ledger`] of the ledger item at `key` ([`ledger_key`]).
    pub async fn save_ledger_at(
        &self,
        key: &str,
        state: &str,
        expected: Option<u64>,
        fence: Option<&Fence>,
    ) -> Result<u64, TableError> {
        let rev = match expected {
            None => 1,
            Some(r) => r.checked_add(1).ok_or_else(|| {
                TableError::Invalid(format!(
                    "item pk = \"{key}\": attribute \"rev\" is {r}, the largest version, \
                     so no later one can be written; set it lower by hand (e.g. to 1): \
                     writers then read the ledger again"
                ))
            })?,
        };
        let item = HashMap::from([
            ("pk".to_owned(), s(key)),
            ("state".to_owned(), s(state)),
            ("rev".to_owned(), n(rev)),
        ]);
        let (condition, values) = match expected {
            None => ("attribute_not_exists(pk)", HashMap::new()),
            Some(r) => ("rev = :rev", HashMap::from([(":rev".to_owned(), n(r))])),
        };
        let call = async {
            match fence {
                None => {
                    self.client
                        .put_item()
                        .table_name(&self.table)
                        .set_item(Some(item))
                        .condition_expression(condition)
                        .set_expression_attribute_values((!values.is_empty()).then_some(values))
                        .send()
                        .await
                        .map_err(classify)?;
                }
                Some(fence) => {
                    let put = Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(item))
                        .condition_expression(condition)
                        .set_expression_attribute_values((!values.is_empty()).then_some(values))
                        .build()
                        .map_err(|e| TableError::Other(e.to_string()))?;
                    let check = self.lease_check(fence)?;
                    self.client
                        .transact_write_items()
                        .transact_items(TransactWriteItem::builder().condition_check(check).build())
                        .transact_items(TransactWriteItem::builder().put(put).build())
                        .send()
                        .await
                        .map_err(classify)?;
                }
            }
            Ok(rev)
        };
        within(self.limit, call).await
    }
}

impl DynamoTable {
    /// The condition that `fence` still holds the lease, for a transaction.
    fn lease_check(&self, fence: &Fence) -> Result<ConditionCheck, TableError> {
        ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(LEASE_KEY)))
            .condition_expression("holder = :me AND fencing = :f")
            .expression_attribute_values(":me", s(&fence.replica))
            .expression_attribute_values(":f", n(fence.fencing))
            .build()
            .map_err(|e| TableError::Other(e.to_string()))
    }

    /// Item `key`, read consistently.
    async fn get(&self, key: &str) -> Result<Option<HashMap<String, AttributeValue>>, TableError> {
        let call = async {
            let out = self
                .client
                .get_item()
                .table_name(&self.table)
                .set_key(Some(Self::key(key)))
                .consistent_read(true)
                .send()
                .await
                .map_err(classify)?;
            Ok(out.item)
        };
        within(self.limit, call).await
    }

    /// A learned catalog's head item, `key`, read consistently.
    pub async fn learned_head(&self, key: &str) -> Result<Option<LearnedHead>, TableError> {
        let Some(item) = self.get(key).await? else {
            return Ok(None);
        };
        Ok(Some(LearnedHead {
            generation: required(&item, key, "generation")?,
            chunks: required(&item, key, "chunks")?,
            bytes: required(&item, key, "bytes")?,
        }))
    }

    /// A learned catalog's chunk item, `key`: its generation and data.
    pub async fn learned_chunk(&self, key: &str) -> Result<Option<(u64, Vec<u8>)>, TableError> {
        let Some(item) = self.get(key).await? else {
            return Ok(None);
        };
        let generation = required(&item, key, "generation")?;
        match item.get("data") {
            Some(AttributeValue::B(data)) => Ok(Some((generation, data.clone().into_inner()))),
            _ => Err(TableError::Invalid(format!(
                "item pk = \"{key}\" has no binary attribute \"data\""
            ))),
        }
    }

    /// Writes chunk items `(key, data)` of `generation` in one transaction:
    /// each only over an absent chunk or one of an older generation (a
    /// chunk is never written twice in one generation), only while the
    /// head item `head_key` still names generation `head` (`None`: while
    /// there is none), so never into the slot of the generation the head
    /// names, and with `fence` only while it holds the lease.
    pub async fn put_learned_chunks(
        &self,
        chunks: &[(String, &[u8])],
        generation: u64,
        head_key: &str,
        head: Option<u64>,
        fence: Option<&Fence>,
    ) -> Result<(), TableError> {
        let call = async {
            let mut request = self.client.transact_write_items();
            if let Some(fence) = fence {
                request = request.transact_items(
                    TransactWriteItem::builder()
                        .condition_check(self.lease_check(fence)?)
                        .build(),
                );
            }
            let check = ConditionCheck::builder()
                .table_name(&self.table)
                .set_key(Some(Self::key(head_key)));
            let check = match head {
                None => check.condition_expression("attribute_not_exists(pk)"),
                Some(g) => check
                    .condition_expression("generation = :g")
                    .expression_attribute_values(":g", n(g)),
            };
            let check = check
                .build()
                .map_err(|e| TableError::Other(e.to_string()))?;
            request =
                request.transact_items(TransactWriteItem::builder().condition_check(check).build());
            for (key, data) in chunks {
                let put = Put::builder()
                    .table_name(&self.table)
                    .item("pk", s(key))
                    .item("generation", n(generation))
                    .item("data", AttributeValue::B(Blob::new(*data)))
                    .condition_expression("attribute_not_exists(pk) OR generation < :g")
                    .expression_attribute_values(":g", n(generation))
                    .build()
                    .map_err(|e| TableError::Other(e.to_string()))?;
                request = request.transact_items(TransactWriteItem::builder().put(put).build());
            }
            request.send().await.map_err(classify)?;
            Ok(())
        };
        within(self.limit, call).await
    }

    /// Points the head item `key` at `head` if it still names generation
    /// `expected` (`None`: if there is none yet) and, with `fence`, only
    /// while that replica holds the lease.
    pub async fn flip_learned_head(
        &self,
        key: &str,
        head: &LearnedHead,
        expected: Option<u64>,
        fence: Option<&Fence>,
    ) -> Result<(), TableError> {
        let mut put = Put::builder()
            .table_name(&self.table)
            .item("pk", s(key))
            .item("generation", n(head.generation))
            .item("chunks", n(head.chunks))
            .item("bytes", n(head.bytes));
        put = match expected {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(g) => put
                .condition_expression("generation = :g")
                .expression_attribute_values(":g", n(g)),
        };
        let put = put.build().map_err(|e| TableError::Other(e.to_string()))?;
        let call = async {
            let mut request = self.client.transact_write_items();
            if let Some(fence) = fence {
                request = request.transact_items(
                    TransactWriteItem::builder()
                        .condition_check(self.lease_check(fence)?)
                        .build(),
                );
            }
            request
                .transact_items(TransactWriteItem::builder().put(put).build())
                .send()
                .await
                .map_err(classify)?;
            Ok(())
        };
        within(self.limit, call).await
    }
}

/// A learned catalog's head item: the generation whose chunks are whole,
/// how many chunks it has and their bytes in all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LearnedHead {
    pub generation: u64,
    pub chunks: u64,
    pub bytes: u64,
}

/// A leader's right to write: its replica id and fencing number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    pub replica: String,
    pub fencing: u64,
}

impl LeaseTable for DynamoTable {
    async fn call(&self, replica: &str, call: Call, wall: u64, lease_ms: u64) -> Answer {
        let result = match call {
            Call::Look => self.look().await.map(Answer::Seen),
            Call::Acquire => self
                .acquire(replica, wall, lease_ms)
                .await
                .map(|fencing| Answer::Acquired { fencing }),
            Call::Renew { fencing } => self
                .renew(replica, fencing, wall, lease_ms)
                .await
                .map(|()| Answer::Renewed),
            Call::Release { fencing } => self
                .release(replica, fencing)
                .await
                .map(|()| Answer::Released),
        };
        match result {
            Ok(answer) => answer,
            Err(TableError::Refused(_)) => Answer::Refused,
            Err(e) => Answer::Failed(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::types::error::{
        ConditionalCheckFailedException, ResourceNotFoundException, TransactionCanceledException,
    };

    use super::*;

    fn response(status: u16) -> Response {
        Response::new(status.try_into().unwrap(), "{}".into())
    }

    #[test]
    fn failed_conditions_are_refusals_and_the_rest_is_classified() {
        let failed = UpdateItemError::ConditionalCheckFailedException(
            ConditionalCheckFailedException::builder()
                .meta(
                    ErrorMetadata::builder()
                        .code("ConditionalCheckFailedException")
                        .build(),
                )
                .build(),
        );
        assert!(matches!(
            classify(SdkError::service_error(failed, response(400))),
            TableError::Refused(_)
        ));
        let cancelled = TransactWriteItemsError::TransactionCanceledException(
            TransactionCanceledException::builder().build(),
        );
        assert!(matches!(
            classify(SdkError::service_error(cancelled, response(400))),
            TableError::Refused(_)
        ));
        let missing =
            GetItemError::ResourceNotFoundException(ResourceNotFoundException::builder().build());
        assert!(matches!(
            classify(SdkError::service_error(missing, response(400))),
            TableError::NoTable(_)
        ));
        let denied = GetItemError::generic(
            ErrorMetadata::builder()
                .code("AccessDeniedException")
                .build(),
        );
        assert!(matches!(
            classify(SdkError::service_error(denied, response(400))),
            TableError::AccessDenied(_)
        ));
        let slow: SdkError<GetItemError, Response> = SdkError::timeout_error("slow");
        assert!(matches!(classify(slow), TableError::Unavailable(_)));
        let server = GetItemError::generic(ErrorMetadata::builder().build());
        assert!(matches!(
            classify(SdkError::service_error(server, response(500))),
            TableError::Unavailable(_)
        ));
    }
}
