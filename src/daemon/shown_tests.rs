//! What the core shows of itself: counted by its decisions alone, read
//! with no runner, and published by the runner's [`Publisher`] without
//! losing or doubling a step's worth.

use std::time::Duration;

use crate::budget::LedgerState;
use crate::clock::{Clock, Now};
use crate::cloudfront::invalidator::{Invalidation, InvalidatorError, Status};
use crate::config::Config;
use crate::decode::RejectReason;
use crate::pipeline::Effect;
use crate::source::driver::{Body, SourceEvent};
use crate::source::queue::QueueDepth;
use crate::tracker::Looked;
use crate::tracker::external::Scanned;

use super::core::{Command, Core, Input, Lead, Mode, STARTUP};
use super::{Observers, Publisher};

const CONFIG: &str = r#"
[source]
kind = "local"
[distributions.www]
id = "EWWW"
[batching]
quiet_seconds = 1
max_delay_seconds = 1
[cloudfront]
mode = "simulate"
"#;

/// The queue's depth every depth call answers.
const DEPTH: QueueDepth = QueueDepth {
    visible: 4,
    in_flight: 2,
    delayed: 1,
};

fn config() -> Config {
    Config::from_parts(Some(CONFIG), "test", std::iter::empty()).expect("config")
}

/// The core, driven by hand: each input given at a moment chosen here,
/// each command answered at once, as a CloudFront, a ledger store and a
/// queue that always work would.
struct Driven {
    core: Core,
    start: Now,
    /// Milliseconds since `start`.
    at: u64,
    ledger: Option<LedgerState>,
    /// What each GetInvalidation answers: completed or not, or a failure.
    poll: Result<bool, InvalidatorError>,
    created: usize,
    messages: usize,
}

impl Driven {
    fn new() -> Driven {
        let clock = Clock::new();
        Driven {
            core: Core::new(&config(), clock, "1".into(), Mode::Live),
            start: clock.now(),
            at: 0,
            ledger: None,
            poll: Ok(false),
            created: 0,
            messages: 0,
        }
    }

    fn now(&self) -> Now {
        let d = Duration::from_millis(self.at);
        Now {
            mono: self.start.mono + self.at,
            instant: self.start.instant + d,
            wall: self.start.wall + d,
        }
    }

    /// `ms` go by, and the core does what is due then.
    fn wait(&mut self, ms: u64) {
        self.at += ms;
        self.core.turn(&self.now());
        self.answer();
    }

    /// A message with `body` comes in.
    fn receive(&mut self, body: &str) {
        self.messages += 1;
        let event = SourceEvent::Received {
            id: format!("m{}", self.messages).as_str().into(),
            body: Body::new(body),
            received_at: self.now().instant,
            first_received_at: None,
        };
        self.core.handle(Input::Event(event), &self.now());
        self.answer();
    }

    /// Answers every command, and those the answers lead to.
    fn answer(&mut self) {
        loop {
            let commands = self.core.take_commands();
            if commands.is_empty() {
                return;
            }
            for command in commands {
                if let Some(input) = self.reply(command) {
                    self.core.handle(input, &self.now());
                }
            }
        }
    }

    fn reply(&mut self, command: Command) -> Option<Input> {
        Some(match command {
            Command::LoadLedger { account, epoch } => Input::LedgerLoaded {
                account,
                epoch,
                result: Ok(self.ledger.clone()),
            },
            Command::SaveLedger {
                account,
                epoch,
                seq,
                state,
                ..
            } => {
                self.ledger = Some(state);
                Input::LedgerSaved {
                    account,
                    epoch,
                    seq,
                    result: Ok(()),
                }
            }
            Command::Reconcile { alias, scan, .. } => Input::Looked {
                alias,
                result: Ok(Looked::default()),
                scan: scan.map(|_| {
                    Ok(Scanned {
                        found: Vec::new(),
                        resume: None,
                    })
                }),
            },
            Command::Create { alias, batch, .. } => {
                self.created += 1;
                let invalidation = Invalidation {
                    id: format!("I{:013}", self.created),
                    status: Status::InProgress,
                    created_at: self.now().wall,
                    caller_reference: batch.reference.clone(),
                    paths: batch.paths.clone(),
                };
                Input::Created {
                    alias,
                    batch,
                    result: Ok(invalidation),
                }
            }
            Command::Poll { alias, ids, .. } => Input::Checked {
                checks: ids.into_iter().map(|id| (id, self.poll.clone())).collect(),
                alias,
            },
            Command::Queue(Effect::Delete(ids)) => Input::Deleted(ids.len()),
            Command::Depth => Input::Depth(Ok(DEPTH)),
            _ => return None,
        })
    }
}

#[test]
fn the_core_counts_what_it_shows_with_no_runner() {
    let mut d = Driven::new();
    assert!(d.core.shown().readiness.contains_key(STARTUP));
    assert_eq!(d.core.shown().lead, Lead::Alone);
    // The ledger is read, the first round looks, the queue answers.
    d.wait(0);
    let shown = d.core.shown();
    assert!(shown.readiness.is_empty(), "{:?}", shown.readiness);
    assert_eq!(shown.depth, DEPTH);

    d.receive(r#"{"distribution":"www","paths":["/a.html","/b.html"]}"#);
    d.receive("{");
    d.receive(r#"{"distribution":"www","paths":["/c.html"]}"#);
    let counts = &d.core.shown().counts;
    assert_eq!(counts.rejected.get(&RejectReason::Malformed), Some(&1));
    assert_eq!(counts.distributions["www"].requested, 3);
    assert_eq!(counts.distributions["www"].created, 0);

    // The window closes: one invalidation, both messages deleted.
    d.wait(1_500);
    assert_eq!(d.created, 1);
    let counts = &d.core.shown().counts;
    let www = &counts.distributions["www"];
    assert_eq!(www.created, 1);
    let billed = www.submitted.exact + www.submitted.wildcard + www.submitted.tags;
    assert!((1..=3).contains(&billed), "{:?}", www.submitted);
    assert_eq!(www.request_to_invalidation.count(), 2, "one per message");
    assert_eq!(counts.deleted, 2);

    // A poll fails, then the next sees it completed.
    d.poll = Err(InvalidatorError::Throttled("slow down".into()));
    d.wait(60_000);
    let www = &d.core.shown().counts.distributions["www"];
    assert_eq!(www.cloudfront_errors.get("throttling"), Some(&1));
    assert_eq!(www.completed, 0);
    d.poll = Ok(true);
    d.wait(60_000);
    let www = &d.core.shown().counts.distributions["www"];
    assert_eq!(www.completed, 1);
    assert_eq!(www.invalidation_completion.count(), 1);
    assert_eq!(www.cloudfront_errors.get("throttling"), Some(&1));
}

/// The value of `series` in the published metrics; 0 when absent.
fn metric(published: &Publisher, series: &str) -> f64 {
    let text = crate::metrics::encode(&published.observers().registry);
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().expect("a number"))
}

#[test]
fn a_publish_carries_every_step_since_the_last_once() {
    let mut d = Driven::new();
    let clock = Clock::new();
    let mut published = Publisher::new(Observers::new(&config()));
    let requested = r#"cfpurge_paths_requested_total{distribution="www"}"#;
    let rejected = r#"cfpurge_messages_rejected_total{reason="malformed"}"#;
    published.publish(d.core.shown(), &clock);
    assert_eq!(
        published.observers().readiness.reasons(),
        ["startup: starting: the queue has not answered yet"]
    );
    d.wait(0);

    // Several steps between two publishes: each one's counts arrive.
    d.receive(r#"{"distribution":"www","paths":["/a.html","/b.html"]}"#);
    d.receive(r#"{"distribution":"www","paths":["/c.html"]}"#);
    d.receive("{");
    d.receive(r#"{"paths":"#);
    published.publish(d.core.shown(), &clock);
    assert!(published.observers().readiness.is_ready());
    assert_eq!(metric(&published, requested), 3.0);
    assert_eq!(metric(&published, rejected), 2.0);

    // Another step: only what it added.
    d.receive(r#"{"distribution":"www","paths":["/d.html"]}"#);
    published.publish(d.core.shown(), &clock);
    assert_eq!(metric(&published, requested), 4.0);
    assert_eq!(metric(&published, rejected), 2.0);

    // A publish with no step in between adds nothing.
    published.publish(d.core.shown(), &clock);
    assert_eq!(metric(&published, requested), 4.0);

    // The window closes: save, create, delete, all before one publish.
    d.wait(1_500);
    published.publish(d.core.shown(), &clock);
    assert_eq!(
        metric(
            &published,
            r#"cfpurge_invalidations_created_total{distribution="www"}"#
        ),
        1.0
    );
    assert_eq!(metric(&published, "cfpurge_messages_deleted_total"), 3.0);
    assert_eq!(
        metric(
            &published,
            r#"cfpurge_request_to_invalidation_seconds_count{distribution="www"}"#
        ),
        3.0
    );
    let counts = &d.core.shown().counts.distributions["www"];
    let submitted = |kind: &str| {
        metric(
            &published,
            &format!(r#"cfpurge_paths_submitted_total{{distribution="www",kind="{kind}"}}"#),
        )
    };
    assert_eq!(submitted("exact"), counts.submitted.exact as f64);
    assert_eq!(submitted("wildcard"), counts.submitted.wildcard as f64);

    // Two failed polls and a completion between publishes.
    d.poll = Err(InvalidatorError::Throttled("slow down".into()));
    d.wait(60_000);
    d.wait(60_000);
    d.poll = Ok(true);
    d.wait(60_000);
    published.publish(d.core.shown(), &clock);
    assert_eq!(
        metric(
            &published,
            r#"cfpurge_cloudfront_errors_total{code="throttling",distribution="www"}"#
        ),
        2.0
    );
    assert_eq!(
        metric(
            &published,
            r#"cfpurge_invalidation_completion_seconds_count{distribution="www"}"#
        ),
        1.0
    );
    // The counters read as the core's, whatever the publishes in between.
    let counts = &d.core.shown().counts;
    assert_eq!(
        metric(&published, requested),
        counts.distributions["www"].requested as f64
    );
    assert_eq!(
        metric(&published, "cfpurge_messages_deleted_total"),
        counts.deleted as f64
    );
}
