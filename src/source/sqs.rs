//! [`Queue`] on Amazon SQS, through the AWS SDK.
//!
//! Every SDK error goes through `classify`, which reads what the crate's
//! one classifier ([`crate::aws::error`]) makes of it; the SDK itself already
//! retries throttling and 5xx answers (standard mode, 3 attempts) before an
//! error gets here.
//! The client, with timeouts that outlast the long poll, comes from
//! [`crate::aws::sqs`].

use std::collections::{BTreeMap, HashMap};
use std::error::Error as StdError;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::aws::error::{self, Class, TypedCode, typed_code};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::operation::change_message_visibility_batch::ChangeMessageVisibilityBatchError;
use aws_sdk_sqs::operation::delete_message_batch::DeleteMessageBatchError;
use aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesError;
use aws_sdk_sqs::operation::receive_message::ReceiveMessageError;
use aws_sdk_sqs::operation::send_message::SendMessageError;
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, ChangeMessageVisibilityBatchRequestEntry,
    DeleteMessageBatchRequestEntry, MessageAttributeValue, MessageSystemAttributeName,
    QueueAttributeName,
};

use super::queue::{
    Failed, Handle, MAX_BATCH, Message, Queue, QueueDepth, QueueError, REQUEST_FAILED, check_body,
    check_receive, reject_attributes, visibility_seconds,
};

/// Runs `call` on the handles in batches of [`MAX_BATCH`] and gathers the
/// refused entries. A batch whose call fails has all its entries refused
/// with [`REQUEST_FAILED`] (sender's fault if retrying would not help) and
/// the other batches still go; only when every call fails is the first error
/// returned instead.
///
/// The batches go one after the other. SQS would take them concurrently,
/// but moto (which the tests and benchmarks run against) loses deletes made
/// at the same time: each rebuilds the queue's message list from the same
/// copy, and the last write brings the other's messages back.
async fn in_batches<'a, F, Fut>(handles: &'a [Handle], call: F) -> Result<Vec<Failed>, QueueError>
where
    F: Fn(&'a [Handle]) -> Fut,
    Fut: Future<Output = Result<Vec<Failed>, QueueError>>,
{
    let mut failed = Vec::new();
    let (mut succeeded, mut first_error) = (false, None);
    for chunk in handles.chunks(MAX_BATCH) {
        match call(chunk).await {
            Ok(refused) => {
                succeeded = true;
                failed.extend(refused);
            }
            Err(e) => {
                failed.extend(chunk.iter().map(|h| Failed {
                    id: h.id.clone(),
                    code: REQUEST_FAILED.to_owned(),
                    sender_fault: !e.is_transient(),
                }));
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) if !succeeded => Err(e),
        _ => Ok(failed),
    }
}

/// The SQS queue the daemon consumes, and the dead-letter queue it forwards
/// rejected messages to, if any. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    /// The SDK client, with [`timeouts`] sized for the long poll.
    client: Client,
    /// `source.queue_url`: received from, deleted from, re-queued to.
    queue_url: Arc<str>,
    /// `source.dead_letter_queue_url`: where rejects are forwarded; `None`
    /// leaves them to the redrive policy.
    dead_letter_queue_url: Option<Arc<str>>,
    /// `VisibilityTimeout` sent with each receive; `None` leaves the
    /// queue's own setting.
    visibility_timeout: Option<i32>,
}

impl SqsQueue {
    /// A queue at `queue_url`; rejects go to `dead_letter_queue_url` when
    /// given, else stay for the queue's redrive policy.
    pub fn new(client: Client, queue_url: String, dead_letter_queue_url: Option<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            dead_letter_queue_url: dead_letter_queue_url.map(Into::into),
            visibility_timeout: None,
        }
    }

    /// Receives hide messages for `timeout` (`source.visibility_timeout_seconds`)
    /// instead of the queue's default. Rounded up to whole seconds, capped at
    /// 12 hours.
    pub fn with_visibility_timeout(mut self, timeout: Duration) -> Self {
        let seconds = visibility_seconds(timeout.min(super::queue::MAX_VISIBILITY)).unwrap_or(0);
        self.visibility_timeout = Some(i32::try_from(seconds).unwrap_or(i32::MAX));
        self
    }

    /// The queue's URL.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Sends `body` with string attributes to `queue_url`.
    async fn send_to(
        &self,
        queue_url: &str,
        body: &str,
        attributes: impl IntoIterator<Item = (String, String)>,
    ) -> Result<String, QueueError> {
        check_body(body)?;
        let mut request = self
            .client
            .send_message()
            .queue_url(queue_url)
            .message_body(body);
        for (name, value) in attributes {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| QueueError::Invalid(e.to_string()))?;
            request = request.message_attributes(name, value);
        }
        let out = request.send().await.map_err(classify)?;
        Ok(out.message_id().unwrap_or_default().to_owned())
    }

    /// Deletes one message, turning a refused entry into an error.
    async fn delete_one(&self, message: &Message) -> Result<(), QueueError> {
        match self.delete(&[message.handle()]).await?.pop() {
            None => Ok(()),
            Some(failed) => Err(failed.into_error()),
        }
    }
}

impl Queue for SqsQueue {
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Message>, QueueError> {
        check_receive(max, wait)?;
        // Both fit in an i32 after `check_receive`.
        let out = self
            .client
            .receive_message()
            .queue_url(&*self.queue_url)
            .max_number_of_messages(max as i32)
            .wait_time_seconds(wait.as_secs() as i32)
            .set_visibility_timeout(self.visibility_timeout)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(
                MessageSystemAttributeName::ApproximateFirstReceiveTimestamp,
            )
            .message_attribute_names("All")
            .send()
            .await
            .map_err(classify)?;
        Ok(out.messages().iter().filter_map(convert_message).collect())
    }

    async fn set_visibility(
        &self,
        handles: &[Handle],
        timeout: Duration,
    ) -> Result<Vec<Failed>, QueueError> {
        let seconds = i32::try_from(visibility_seconds(timeout)?).unwrap_or(i32::MAX);
        in_batches(handles, |chunk| async move {
            let mut request = self
                .client
                .change_message_visibility_batch()
                .queue_url(&*self.queue_url);
            for (i, handle) in chunk.iter().enumerate() {
                let entry = ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(&handle.receipt)
                    .visibility_timeout(seconds)
                    .build()
                    .map_err(|e| QueueError::Invalid(e.to_string()))?;
                request = request.entries(entry);
            }
            let out = request.send().await.map_err(classify)?;
            Ok(out
                .failed()
                .iter()
                .map(|entry| convert_failed(chunk, entry))
                .collect())
        })
        .await
    }

    async fn delete(&self, handles: &[Handle]) -> Result<Vec<Failed>, QueueError> {
        in_batches(handles, |chunk| async move {
            let mut request = self
                .client
                .delete_message_batch()
                .queue_url(&*self.queue_url);
            for (i, handle) in chunk.iter().enumerate() {
                let entry = DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(&handle.receipt)
                    .build()
                    .map_err(|e| QueueError::Invalid(e.to_string()))?;
                request = request.entries(entry);
            }
            let out = request.send().await.map_err(classify)?;
            Ok(out
                .failed()
                .iter()
                .map(|entry| convert_failed(chunk, entry))
                .collect())
        })
        .await
    }

    async fn reject(
        &self,
        message: &Message,
        reason: &str,
        detail: &str,
    ) -> Result<bool, QueueError> {
        let Some(dead_letter_queue_url) = &self.dead_letter_queue_url else {
            return Ok(false);
        };
        self.send_to(
            dead_letter_queue_url,
            &message.body,
            reject_attributes(message, reason, detail),
        )
        .await?;
        self.delete_one(message).await?;
        Ok(true)
    }

    async fn requeue(&self, message: &Message) -> Result<(), QueueError> {
        self.send_to(&self.queue_url, &message.body, message.attributes.clone())
            .await?;
        self.delete_one(message).await
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&*self.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(classify)?;
        let empty = HashMap::new();
        let attributes = out.attributes().unwrap_or(&empty);
        let count = |name: QueueAttributeName| -> Result<u64, QueueError> {
            match attributes.get(&name) {
                None => Ok(0),
                Some(text) => text
                    .parse()
                    .map_err(|_| QueueError::Invalid(format!("{name} is {text:?}, not a count"))),
            }
        };
        Ok(QueueDepth {
            visible: count(QueueAttributeName::ApproximateNumberOfMessages)?,
            in_flight: count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)?,
            delayed: count(QueueAttributeName::ApproximateNumberOfMessagesDelayed)?,
        })
    }

    async fn send(&self, body: &str) -> Result<String, QueueError> {
        self.send_to(&self.queue_url, body, []).await
    }
}

/// An SDK message as a [`Message`]; `None` (logged) for one without an id or
/// receipt handle, which SQS always sends and without which nothing could be
/// done with it anyway: it comes back after its visibility timeout.
fn convert_message(message: &aws_sdk_sqs::types::Message) -> Option<Message> {
    let (Some(id), Some(receipt)) = (message.message_id(), message.receipt_handle()) else {
        tracing::warn!(id = ?message.message_id(), "sqs message without an id or receipt handle, skipped");
        return None;
    };
    let system = message.attributes();
    let system_attribute = |name: MessageSystemAttributeName| system.and_then(|a| a.get(&name));
    let receive_count = system_attribute(MessageSystemAttributeName::ApproximateReceiveCount)
        .and_then(|count| count.parse().ok())
        .unwrap_or(1);
    let first_received_at =
        system_attribute(MessageSystemAttributeName::ApproximateFirstReceiveTimestamp)
            .and_then(|millis| millis.parse::<u64>().ok())
            .map(|millis| SystemTime::UNIX_EPOCH + Duration::from_millis(millis));
    let attributes: BTreeMap<String, String> = message
        .message_attributes()
        .into_iter()
        .flatten()
        .filter_map(|(name, value)| Some((name.clone(), value.string_value()?.to_owned())))
        .collect();
    Some(Message {
        id: id.to_owned(),
        receipt: receipt.to_owned(),
        body: message.body().unwrap_or_default().to_owned(),
        receive_count,
        first_received_at,
        attributes,
    })
}

/// A refused batch entry, its id mapped back from the index in `chunk` to
/// the message id.
fn convert_failed(chunk: &[Handle], entry: &BatchResultErrorEntry) -> Failed {
    let id = entry
        .id()
        .parse::<usize>()
        .ok()
        .and_then(|i| chunk.get(i))
        .map_or_else(|| entry.id().to_owned(), |handle| handle.id.clone());
    Failed {
        id,
        code: entry.code().to_owned(),
        sender_fault: entry.sender_fault(),
    }
}

typed_code!(ReceiveMessageError {
    is_queue_does_not_exist => "QueueDoesNotExist",
    is_request_throttled => "RequestThrottled",
    is_kms_throttled => "KmsThrottled",
    is_over_limit => "OverLimit",
    is_invalid_security => "InvalidSecurity",
    is_kms_access_denied => "KmsAccessDenied",
});
typed_code!(ChangeMessageVisibilityBatchError {
    is_queue_does_not_exist => "QueueDoesNotExist",
    is_request_throttled => "RequestThrottled",
    is_invalid_security => "InvalidSecurity",
});
typed_code!(DeleteMessageBatchError {
    is_queue_does_not_exist => "QueueDoesNotExist",
    is_request_throttled => "RequestThrottled",
    is_invalid_security => "InvalidSecurity",
});
typed_code!(SendMessageError {
    is_queue_does_not_exist => "QueueDoesNotExist",
    is_request_throttled => "RequestThrottled",
    is_kms_throttled => "KmsThrottled",
    is_invalid_security => "InvalidSecurity",
    is_kms_access_denied => "KmsAccessDenied",
});
typed_code!(GetQueueAttributesError {
    is_queue_does_not_exist => "QueueDoesNotExist",
    is_request_throttled => "RequestThrottled",
    is_invalid_security => "InvalidSecurity",
});

/// The codes of a queue that does not exist.
const NOT_FOUND_CODES: &[&str] = &[
    "QueueDoesNotExist",
    "AWS.SimpleQueueService.NonExistentQueue",
];

/// An SQS call's error as a [`QueueError`], by what [`error::classify`]
/// makes of it: every failure that may pass is transient; a refusal is a
/// missing queue, denied access (by code, or a 403), or else invalid.
fn classify<E>(err: SdkError<E, HttpResponse>) -> QueueError
where
    E: ProvideErrorMetadata + TypedCode + StdError + Send + Sync + 'static,
{
    let c = error::classify(&err, TypedCode::typed_code);
    match c.class {
        Class::Client if c.code_in(NOT_FOUND_CODES) => QueueError::NotFound(c.text),
        Class::Client if c.code_in(error::ACCESS_DENIED) || c.status == Some(403) => {
            QueueError::AccessDenied(c.text)
        }
        Class::Client => QueueError::Invalid(c.text),
        Class::Transport | Class::Timeout | Class::Throttling | Class::Server => {
            QueueError::Transient(c.text)
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_sqs::error::{ConnectorError, ErrorMetadata};
    use aws_sdk_sqs::types::error::{
        InvalidSecurity, KmsThrottled, QueueDoesNotExist, RequestThrottled,
    };

    use super::*;

    fn response(status: u16) -> HttpResponse {
        HttpResponse::new(status.try_into().unwrap(), "{}".into())
    }

    fn numbered(n: usize) -> Vec<Handle> {
        (0..n)
            .map(|i| Handle {
                id: i.to_string(),
                receipt: format!("receipt-{i}"),
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn batches_go_one_after_the_other() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let handles = numbered(100);
        let (running, peak, calls) = (
            AtomicUsize::new(0),
            AtomicUsize::new(0),
            AtomicUsize::new(0),
        );
        let failed = in_batches(&handles, |chunk| {
            let (running, peak, calls) = (&running, &peak, &calls);
            async move {
                assert_eq!(chunk.len(), MAX_BATCH);
                calls.fetch_add(1, Ordering::SeqCst);
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(Vec::new())
            }
        })
        .await
        .expect("every batch went through");
        assert_eq!(failed, vec![]);
        assert_eq!(calls.load(Ordering::SeqCst), 10);
        assert_eq!(
            peak.load(Ordering::SeqCst),
            1,
            "moto loses concurrent deletes"
        );
    }

    #[tokio::test]
    async fn a_failed_batch_refuses_its_entries_and_the_others_go_through() {
        let handles = numbered(25);
        let failed = in_batches(&handles, |chunk| async move {
            if chunk[0].id == "10" {
                Err(QueueError::Transient("503".into()))
            } else if chunk[0].id == "20" {
                Ok(vec![Failed {
                    id: "22".into(),
                    code: "ReceiptHandleIsInvalid".into(),
                    sender_fault: true,
                }])
            } else {
                Ok(Vec::new())
            }
        })
        .await
        .expect("two batches went through");
        let ids: Vec<&str> = failed.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "10", "11", "12", "13", "14", "15", "16", "17", "18", "19", "22"
            ]
        );
        assert!(
            failed[..10]
                .iter()
                .all(|f| f.code == REQUEST_FAILED && !f.sender_fault)
        );

        // Every call failing is the call's error.
        let all = in_batches(&handles, |_| async {
            Err(QueueError::AccessDenied("no".into()))
        })
        .await;
        assert!(matches!(all, Err(QueueError::AccessDenied(_))), "{all:?}");
        // Nothing to do makes no call and refuses nothing.
        let none = in_batches(&[], |_| async { Err(QueueError::Invalid("called".into())) }).await;
        assert_eq!(none.expect("no call"), vec![]);
    }

    fn service(err: ReceiveMessageError, status: u16) -> QueueError {
        classify(SdkError::service_error(err, response(status)))
    }

    fn coded(code: &str, status: u16) -> QueueError {
        service(
            ReceiveMessageError::generic(ErrorMetadata::builder().code(code).build()),
            status,
        )
    }

    #[test]
    fn typed_variants_decide_first() {
        let missing = ReceiveMessageError::QueueDoesNotExist(QueueDoesNotExist::builder().build());
        assert!(matches!(service(missing, 400), QueueError::NotFound(_)));
        let throttled = ReceiveMessageError::RequestThrottled(RequestThrottled::builder().build());
        assert!(matches!(service(throttled, 400), QueueError::Transient(_)));
        let kms = ReceiveMessageError::KmsThrottled(KmsThrottled::builder().build());
        assert!(matches!(service(kms, 400), QueueError::Transient(_)));
        let security = ReceiveMessageError::InvalidSecurity(InvalidSecurity::builder().build());
        assert!(matches!(
            service(security, 403),
            QueueError::AccessDenied(_)
        ));
    }

    #[test]
    fn unmodelled_codes_are_read_from_the_response() {
        assert!(matches!(
            coded("AWS.SimpleQueueService.NonExistentQueue", 400),
            QueueError::NotFound(_)
        ));
        assert!(matches!(
            coded("QueueDoesNotExist", 400),
            QueueError::NotFound(_)
        ));
        for code in [
            "AccessDenied",
            "InvalidClientTokenId",
            "SignatureDoesNotMatch",
        ] {
            assert!(
                matches!(coded(code, 400), QueueError::AccessDenied(_)),
                "{code}"
            );
        }
        assert!(matches!(
            coded("ThrottlingException", 400),
            QueueError::Transient(_)
        ));
        assert!(matches!(
            coded("InvalidParameterValue", 400),
            QueueError::Invalid(_)
        ));
        assert!(matches!(
            coded("ReceiptHandleIsInvalid", 400),
            QueueError::Invalid(_)
        ));
    }

    #[test]
    fn unknown_codes_fall_back_on_the_status() {
        assert!(matches!(
            coded("SomethingNew", 500),
            QueueError::Transient(_)
        ));
        assert!(matches!(
            coded("SomethingNew", 503),
            QueueError::Transient(_)
        ));
        assert!(matches!(
            coded("SomethingNew", 429),
            QueueError::Transient(_)
        ));
        assert!(matches!(
            coded("SomethingNew", 403),
            QueueError::AccessDenied(_)
        ));
        assert!(matches!(coded("SomethingNew", 400), QueueError::Invalid(_)));
        let no_code = ReceiveMessageError::generic(ErrorMetadata::builder().build());
        assert!(matches!(service(no_code, 502), QueueError::Transient(_)));
    }

    #[test]
    fn failures_without_an_answer() {
        type E = SdkError<ReceiveMessageError, HttpResponse>;
        let timeout: E = SdkError::timeout_error("attempt timed out");
        assert!(matches!(classify(timeout), QueueError::Transient(_)));
        let refused: E =
            SdkError::dispatch_failure(ConnectorError::io("connection refused".into()));
        assert!(matches!(classify(refused), QueueError::Transient(_)));
        let slow: E = SdkError::dispatch_failure(ConnectorError::timeout("connect timeout".into()));
        assert!(matches!(classify(slow), QueueError::Transient(_)));
        let other: E =
            SdkError::dispatch_failure(ConnectorError::other("no credentials".into(), None));
        assert!(matches!(classify(other), QueueError::Transient(_)));
        let user: E = SdkError::dispatch_failure(ConnectorError::user("bad uri".into()));
        assert!(matches!(classify(user), QueueError::Invalid(_)));
        let garbled: E = SdkError::response_error("truncated body", response(200));
        assert!(matches!(classify(garbled), QueueError::Transient(_)));
        let unbuilt: E = SdkError::construction_failure("missing queue url");
        assert!(matches!(classify(unbuilt), QueueError::Invalid(_)));
    }

    #[test]
    fn the_error_text_carries_the_code() {
        let QueueError::Invalid(text) = coded("InvalidParameterValue", 400) else {
            panic!("not Invalid");
        };
        assert!(text.contains("InvalidParameterValue"), "{text}");
    }

    #[test]
    fn failed_entries_map_back_to_message_ids() {
        let chunk = vec![
            Handle {
                id: "m-a".into(),
                receipt: "r-a".into(),
            },
            Handle {
                id: "m-b".into(),
                receipt: "r-b".into(),
            },
        ];
        let entry = BatchResultErrorEntry::builder()
            .id("1")
            .code("ReceiptHandleIsInvalid")
            .sender_fault(true)
            .build()
            .unwrap();
        assert_eq!(
            convert_failed(&chunk, &entry),
            Failed {
                id: "m-b".into(),
                code: "ReceiptHandleIsInvalid".into(),
                sender_fault: true
            }
        );
    }

    #[test]
    fn messages_take_their_system_and_string_attributes() {
        let m = aws_sdk_sqs::types::Message::builder()
            .message_id("m-1")
            .receipt_handle("r-1")
            .body("/a")
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "3")
            .attributes(
                MessageSystemAttributeName::ApproximateFirstReceiveTimestamp,
                "1700000000123",
            )
            .message_attributes(
                "trace",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("t-1")
                    .build()
                    .unwrap(),
            )
            .message_attributes(
                "n",
                MessageAttributeValue::builder()
                    .data_type("Number")
                    .string_value("42")
                    .build()
                    .unwrap(),
            )
            .message_attributes(
                "blob",
                MessageAttributeValue::builder()
                    .data_type("Binary")
                    .binary_value(aws_sdk_sqs::primitives::Blob::new(vec![1, 2]))
                    .build()
                    .unwrap(),
            )
            .build();
        let got = convert_message(&m).unwrap();
        assert_eq!(got.id, "m-1");
        assert_eq!(got.receipt, "r-1");
        assert_eq!(got.body, "/a");
        assert_eq!(got.receive_count, 3);
        assert_eq!(
            got.first_received_at,
            Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123))
        );
        assert_eq!(
            got.attributes,
            BTreeMap::from([("n".into(), "42".into()), ("trace".into(), "t-1".into())])
        );
        let no_receipt = aws_sdk_sqs::types::Message::builder()
            .message_id("m-2")
            .build();
        assert!(convert_message(&no_receipt).is_none());
    }
}
