//! Messages per second through the ingestion path against an SQS endpoint
//! (moto, started by `scripts/bench-ingest`): SendMessageBatch fills a fresh
//! queue with native requests built from the astro-docs trace, then the
//! source (with N pollers), decode, the pending set and a submitter that
//! accepts at once drain it, deleting every message.
//!
//! With `ceiling` as the fourth argument it only receives and deletes, with
//! the same number of concurrent loops: the fastest any consumer can drain
//! that queue on that endpoint, to compare with.
//!
//! `cargo run --release --example ingest_throughput -- ENDPOINT POLLERS MESSAGES [ceiling]`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cfpurge::config::{AwsConfig, Config};
use cfpurge::decode::Router;
use cfpurge::pending::{BatchRules, PendingSet};
use cfpurge::pipeline::{Clock, ingest};
use cfpurge::planner::{self, Capacity, Settings};
use cfpurge::source::driver::{Source, SourceSettings};
use cfpurge::source::queue::Queue;
use cfpurge::source::sqs::SqsQueue;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[path = "../benches/common/mod.rs"]
mod common;

const CONFIG: &str =
    "[source]\nqueue_url = \"http://unused\"\n[distributions.www]\nid = \"E2ABCDEF123456\"\n";

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (endpoint, pollers, messages, ceiling) = match args.as_slice() {
        [_, e, p, m] => (e, p, m, false),
        [_, e, p, m, mode] if mode == "ceiling" => (e, p, m, true),
        _ => {
            eprintln!("usage: ingest_throughput ENDPOINT POLLERS MESSAGES [ceiling]");
            std::process::exit(2);
        }
    };
    let pollers: usize = pollers.parse().expect("POLLERS is a number");
    let messages: usize = messages.parse().expect("MESSAGES is a number");
    let aws = AwsConfig {
        region: Some("us-east-1".to_owned()),
        endpoint_url: Some(endpoint.clone()),
        ..AwsConfig::default()
    };
    let wait = Duration::from_secs(1);
    let client = cfpurge::aws::sqs(&cfpurge::aws::sdk_config(&aws).await, &aws, wait);
    let name = format!("throughput-{pollers}-{}", std::process::id());
    let url = client
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .expect("create queue")
        .queue_url()
        .expect("queue url")
        .to_owned();

    let trace = common::trace();
    let bodies: Vec<String> = trace
        .iter()
        .cycle()
        .take(messages)
        .map(|r| serde_json::json!({"paths": r.paths}).to_string())
        .collect();
    for chunk in bodies.chunks(10) {
        let entries = chunk.iter().enumerate().map(|(i, b)| {
            aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(b)
                .build()
                .expect("entry")
        });
        client
            .send_message_batch()
            .queue_url(&url)
            .set_entries(Some(entries.collect()))
            .send()
            .await
            .expect("send batch");
    }

    if ceiling {
        let queue = SqsQueue::new(client.clone(), url.clone(), None);
        let done = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let loops: Vec<_> = (0..pollers)
            .map(|_| {
                let (queue, done) = (queue.clone(), done.clone());
                tokio::spawn(async move {
                    while done.load(Ordering::SeqCst) < messages {
                        let got = queue.receive(10, wait).await.expect("receive");
                        let handles: Vec<_> = got.iter().map(|m| m.handle()).collect();
                        queue.delete(&handles).await.expect("delete");
                        done.fetch_add(handles.len(), Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for l in loops {
            l.await.expect("loop");
        }
        report(
            "receive+delete ceiling",
            pollers,
            messages,
            started.elapsed(),
        );
        let _ = client.delete_queue().queue_url(&url).send().await;
        return;
    }

    let config = Config::from_parts(Some(CONFIG), "bench", std::iter::empty()).expect("config");
    let router = Router::new(&config);
    let settings = SourceSettings {
        pollers,
        wait,
        visibility: Duration::from_secs(120),
        max_pending_messages: 50_000,
        max_pending_bytes: 256 << 20,
        requeue_after: Duration::from_secs(11 * 3600),
    };
    let source = Source::new(SqsQueue::new(client.clone(), url.clone(), None), settings);
    let rules = BatchRules {
        quiet: 200,
        max_delay: 1_000,
        max_batch_paths: 3000,
    };
    let (tasks, cancel) = (TaskTracker::new(), CancellationToken::new());
    let clock = Clock::new();
    let started = Instant::now();
    let mut events = source.start(&tasks, &cancel, &cancel);
    let mut pending = PendingSet::new(rules);
    let mut done = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while done < messages {
        tokio::select! {
            Some(event) = events.recv() => {
                ingest(&source, &router, &mut pending, &clock, event).await;
            }
            _ = tick.tick() => {
                for dist in pending.due(clock.now().mono) {
                    let plan = planner::plan(&pending.batch(&dist), Capacity::AWS, &Settings::default());
                    let covered = pending.apply(&dist, &plan.paths, clock.now().mono);
                    done += source.delete(&covered).await;
                }
            }
        }
    }
    let elapsed = started.elapsed();
    cancel.cancel();
    tasks.close();
    tasks.wait().await;
    let _ = client.delete_queue().queue_url(&url).send().await;
    report("cfpurge ingestion", pollers, messages, elapsed);
}

fn report(what: &str, pollers: usize, messages: usize, elapsed: Duration) {
    println!(
        "{what}, pollers {pollers}: {messages} messages in {:.2} s = {:.1} messages/s",
        elapsed.as_secs_f64(),
        messages as f64 / elapsed.as_secs_f64()
    );
}
