//! The receive-only ceiling: receives messages and deletes them at once,
//! doing nothing else. No consumer can drain the queue faster on the same
//! SQS endpoint and machine, so it is the yardstick for time to drain.
//!
//! `ceiling QUEUE_URL [LOOPS]` (default 2 loops, as many as cfpurge's
//! default pollers). Credentials, region and endpoint come from the
//! environment. Prints `ready` once its client exists; stops on SIGTERM.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (queue_url, loops) = match args.as_slice() {
        [_, q] => (q.clone(), 2),
        [_, q, n] => (q.clone(), n.parse().expect("LOOPS is a number")),
        _ => {
            eprintln!("usage: ceiling QUEUE_URL [LOOPS]");
            std::process::exit(2);
        }
    };
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let shared = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let sqs = aws_sdk_sqs::Client::new(&shared);
    for _ in 0..loops {
        tokio::spawn(drain(sqs.clone(), queue_url.clone()));
    }
    println!("ready");
    term.recv().await;
}

async fn drain(sqs: aws_sdk_sqs::Client, queue_url: String) {
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
        let entries: Vec<DeleteMessageBatchRequestEntry> = received
            .messages()
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .set_receipt_handle(m.receipt_handle().map(str::to_owned))
                    .build()
                    .ok()
            })
            .collect();
        if entries.is_empty() {
            continue;
        }
        // A failed entry comes back after its visibility timeout and is
        // deleted then.
        let _ = sqs
            .delete_message_batch()
            .queue_url(&queue_url)
            .set_entries(Some(entries))
            .send()
            .await;
    }
}
