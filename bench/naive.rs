//! The consumer teams commonly deploy in front of CloudFront without
//! cfpurge (typically a Lambda function on the queue): receive up to ten
//! messages, make one CreateInvalidation per message with that message's
//! paths, retry it on Throttling (and wait on TooManyInvalidationsInProgress),
//! and delete the message once the invalidation is accepted. Anything else
//! leaves the message for SQS to deliver again after its visibility timeout.
//!
//! It is written the way such a function is: the AWS SDK with its standard
//! configuration chain (credentials, region and endpoints from the
//! environment), the message id as CallerReference so that a redelivery is
//! not billed twice, and the SDK's own backoff policy (exponential from 1 s,
//! capped at 20 s, full jitter) applied without an attempt limit.
//!
//! `naive QUEUE_URL DISTRIBUTION_ID [LOOPS]` (default 2 loops, as many as
//! cfpurge's default pollers). Prints `ready` once its clients exist; stops
//! on SIGTERM.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_cloudfront::config::retry::RetryConfig;
use aws_sdk_cloudfront::error::ProvideErrorMetadata as _;
use aws_sdk_cloudfront::types::{InvalidationBatch, Paths};
use tokio::signal::unix::{SignalKind, signal};

const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(20);
/// What a function would do on TooManyInvalidationsInProgress: wait a
/// while, then try again.
const TOO_MANY_WAIT: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (queue_url, distribution, loops) = match args.as_slice() {
        [_, q, d] => (q.clone(), d.clone(), 2),
        [_, q, d, n] => (q.clone(), d.clone(), n.parse().expect("LOOPS is a number")),
        _ => {
            eprintln!("usage: naive QUEUE_URL DISTRIBUTION_ID [LOOPS]");
            std::process::exit(2);
        }
    };
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let shared = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let sqs = aws_sdk_sqs::Client::new(&shared);
    // The retries are the loop's own below, so that every call is one call.
    let cloudfront = aws_sdk_cloudfront::Client::from_conf(
        aws_sdk_cloudfront::config::Builder::from(&shared)
            .retry_config(RetryConfig::disabled())
            .build(),
    );
    for _ in 0..loops {
        tokio::spawn(consume(
            sqs.clone(),
            cloudfront.clone(),
            queue_url.clone(),
            distribution.clone(),
        ));
    }
    println!("ready");
    term.recv().await;
}

async fn consume(
    sqs: aws_sdk_sqs::Client,
    cloudfront: aws_sdk_cloudfront::Client,
    queue_url: String,
    distribution: String,
) {
    loop {
        let received = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(20)
            .send()
            .await;
        let Ok(received) = received else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        for message in received.messages() {
            let paths = paths_of(message.body().unwrap_or_default());
            let (Some(id), Some(handle)) = (message.message_id(), message.receipt_handle()) else {
                continue;
            };
            if paths.is_empty() {
                continue;
            }
            if invalidate(&cloudfront, &distribution, id, paths).await {
                let _ = sqs
                    .delete_message()
                    .queue_url(&queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await;
            }
        }
    }
}

/// The `paths` of a `{"paths": [...]}` body.
fn paths_of(body: &str) -> Vec<String> {
    let value: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    value["paths"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str().map(str::to_owned))
        .collect()
}

/// One CreateInvalidation with the message's paths; whether it was accepted.
async fn invalidate(
    cloudfront: &aws_sdk_cloudfront::Client,
    distribution: &str,
    reference: &str,
    paths: Vec<String>,
) -> bool {
    let Ok(items) = Paths::builder()
        .quantity(paths.len() as i32)
        .set_items(Some(paths))
        .build()
    else {
        return false;
    };
    let Ok(batch) = InvalidationBatch::builder()
        .caller_reference(reference)
        .paths(items)
        .build()
    else {
        return false;
    };
    let mut attempt = 0u32;
    loop {
        let result = cloudfront
            .create_invalidation()
            .distribution_id(distribution)
            .invalidation_batch(batch.clone())
            .send()
            .await;
        let wait = match result {
            Ok(_) => return true,
            Err(e) => match e.code() {
                Some("Throttling") => {
                    let ceiling = BACKOFF_BASE
                        .saturating_mul(1 << attempt.min(16))
                        .min(BACKOFF_CAP);
                    ceiling.mul_f64(rand::random::<f64>())
                }
                Some("TooManyInvalidationsInProgress") => TOO_MANY_WAIT,
                _ => {
                    eprintln!("create invalidation for {reference}: {e}");
                    return false;
                }
            },
        };
        attempt += 1;
        tokio::time::sleep(wait).await;
    }
}
