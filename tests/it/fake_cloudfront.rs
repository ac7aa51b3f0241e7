//! The fake CloudFront's own tests, with the real `aws-sdk-cloudfront`
//! client: it must answer as AWS documents that CloudFront does, or the daemon's
//! tests against it prove nothing.
//!
//! Most tests pause tokio time: the fake keeps time on tokio's clock, and
//! the SDK's retry back-off sleeps on it too, so nothing here waits for
//! real.

use std::time::Duration;

use aws_sdk_cloudfront::Client;
use aws_sdk_cloudfront::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cloudfront::operation::create_invalidation::{
    CreateInvalidationError, CreateInvalidationOutput,
};
use aws_sdk_cloudfront::types::{InvalidationBatch, Paths};
use tokio::time::Instant;

use cfpurge::cloudfront::model::Limits;
use cfpurge::path::MAX_PATH_LEN;

use crate::support::fake_cloudfront::{FakeCloudFront, Fault, Operation, Outcome, RateLimit};

const MAX_EXACT_IN_PROGRESS: usize = Limits::AWS.exact;
const MAX_WILDCARD_IN_PROGRESS: usize = Limits::AWS.wildcard;

const DIST: &str = "E2ABCDEFGHIJKL";
const IN_PROGRESS: Duration = Duration::from_secs(600);

type CreateResult = Result<CreateInvalidationOutput, SdkError<CreateInvalidationError>>;

async fn fake() -> FakeCloudFront {
    let fake = FakeCloudFront::start(IN_PROGRESS).await;
    fake.add_distribution(DIST);
    fake
}

fn batch(caller_reference: &str, paths: &[String]) -> InvalidationBatch {
    batch_with_quantity(caller_reference, paths, paths.len())
}

fn batch_with_quantity(
    caller_reference: &str,
    paths: &[String],
    quantity: usize,
) -> InvalidationBatch {
    InvalidationBatch::builder()
        .paths(
            Paths::builder()
                .quantity(i32::try_from(quantity).expect("small quantity"))
                .set_items(Some(paths.to_vec()))
                .build()
                .expect("paths"),
        )
        .caller_reference(caller_reference)
        .build()
        .expect("batch")
}

fn paths(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("/{prefix}/{i}.html")).collect()
}

fn wildcards(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("/{prefix}/{i}/*")).collect()
}

async fn create(
    client: &Client,
    dist: &str,
    caller_reference: &str,
    paths: &[String],
) -> CreateResult {
    client
        .create_invalidation()
        .distribution_id(dist)
        .invalidation_batch(batch(caller_reference, paths))
        .send()
        .await
}

/// The error code and HTTP status the SDK saw.
fn code_and_status<E: ProvideErrorMetadata, R>(result: Result<R, SdkError<E>>) -> (String, u16) {
    let Err(err) = result else {
        panic!("expected an error");
    };
    let status = err.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
    (err.code().unwrap_or("<none>").to_owned(), status)
}

fn created_id(result: CreateResult) -> String {
    let output = result.expect("create");
    output.invalidation().expect("invalidation").id().to_owned()
}

async fn status(client: &Client, dist: &str, id: &str) -> String {
    let output = client
        .get_invalidation()
        .distribution_id(dist)
        .id(id)
        .send()
        .await
        .expect("get invalidation");
    output
        .invalidation()
        .expect("invalidation")
        .status()
        .to_owned()
}

#[tokio::test(start_paused = true)]
async fn create_answers_in_progress_then_completes_after_the_set_time() {
    let fake = fake().await;
    let client = fake.client();
    let sent = vec!["/index.html".to_owned(), "/img/*".to_owned()];

    let output = create(&client, DIST, "cfpurge-1", &sent)
        .await
        .expect("create");
    let inv = output.invalidation().expect("invalidation");
    assert_eq!(inv.status(), "InProgress");
    let echoed = inv.invalidation_batch().expect("batch");
    assert_eq!(echoed.caller_reference(), "cfpurge-1");
    assert_eq!(echoed.paths().expect("paths").quantity(), 2);
    assert_eq!(echoed.paths().expect("paths").items(), sent.as_slice());
    let age = aws_sdk_cloudfront::primitives::DateTime::from(std::time::SystemTime::now()).secs()
        - inv.create_time().secs();
    assert!((0..5).contains(&age), "CreateTime is now, not {age} s ago");
    let location = output.location().expect("Location header");
    assert!(
        location.ends_with(&format!(
            "/2020-05-31/distribution/{DIST}/invalidation/{}",
            inv.id()
        )),
        "{location}"
    );

    tokio::time::advance(IN_PROGRESS - Duration::from_secs(1)).await;
    assert_eq!(status(&client, DIST, inv.id()).await, "InProgress");
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(status(&client, DIST, inv.id()).await, "Completed");
}

#[tokio::test]
async fn completes_on_the_real_clock_too() {
    let fake = FakeCloudFront::start(Duration::from_millis(300)).await;
    fake.add_distribution(DIST);
    let client = fake.client();
    let id = created_id(create(&client, DIST, "cfpurge-real", &paths("a", 1)).await);
    assert_eq!(status(&client, DIST, &id).await, "InProgress");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(status(&client, DIST, &id).await, "Completed");
}

#[tokio::test(start_paused = true)]
async fn exact_paths_in_progress_are_limited_to_3000_per_distribution() {
    let fake = fake().await;
    let client = fake.client();

    created_id(create(&client, DIST, "cfpurge-a", &paths("a", 2_000)).await);
    created_id(create(&client, DIST, "cfpurge-b", &paths("b", 1_000)).await);
    let refused = create(&client, DIST, "cfpurge-c", &paths("c", 1)).await;
    let err = refused.as_ref().expect_err("3,001st exact path refused");
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_too_many_invalidations_in_progress())
    );
    assert_eq!(
        code_and_status(refused),
        ("TooManyInvalidationsInProgress".to_owned(), 400)
    );
    // Wildcards are counted apart.
    created_id(create(&client, DIST, "cfpurge-w", &wildcards("w", 1)).await);
    assert_eq!(fake.inflight(DIST), (MAX_EXACT_IN_PROGRESS, 1));

    tokio::time::advance(IN_PROGRESS).await;
    created_id(create(&client, DIST, "cfpurge-c", &paths("c", 1)).await);

    // One batch over the limit is refused the same way, even when idle.
    fake.add_distribution("E2OTHER");
    let too_big = create(&client, "E2OTHER", "cfpurge-big", &paths("x", 3_001)).await;
    assert_eq!(
        code_and_status(too_big),
        ("TooManyInvalidationsInProgress".to_owned(), 400)
    );
    assert!(fake.invalidations("E2OTHER").is_empty());
}

#[tokio::test(start_paused = true)]
async fn wildcard_paths_in_progress_are_limited_to_15_per_distribution() {
    let fake = fake().await;
    let client = fake.client();

    for i in 0..3 {
        created_id(
            create(
                &client,
                DIST,
                &format!("cfpurge-{i}"),
                &wildcards(&format!("w{i}"), 5),
            )
            .await,
        );
    }
    let refused = create(&client, DIST, "cfpurge-x", &wildcards("x", 1)).await;
    assert_eq!(
        code_and_status(refused),
        ("TooManyInvalidationsInProgress".to_owned(), 400)
    );
    // Exact paths are counted apart.
    created_id(create(&client, DIST, "cfpurge-e", &paths("e", 10)).await);
    assert_eq!(fake.inflight(DIST), (10, MAX_WILDCARD_IN_PROGRESS));

    fake.add_distribution("E2OTHER");
    let too_many = create(&client, "E2OTHER", "cfpurge-big", &wildcards("x", 16)).await;
    assert_eq!(
        code_and_status(too_many),
        ("TooManyInvalidationsInProgress".to_owned(), 400)
    );
    created_id(create(&client, "E2OTHER", "cfpurge-ok", &wildcards("x", 15)).await);
}

#[tokio::test(start_paused = true)]
async fn caller_reference_is_idempotent_and_conflicts_on_other_paths() {
    let fake = fake().await;
    let client = fake.client();
    let sent = vec!["/a".to_owned(), "/b".to_owned()];

    let first = created_id(create(&client, DIST, "cfpurge-same", &sent).await);
    let reordered = vec!["/b".to_owned(), "/a".to_owned()];
    let again = created_id(create(&client, DIST, "cfpurge-same", &reordered).await);
    assert_eq!(
        first, again,
        "same reference and paths: the same invalidation"
    );
    assert_eq!(fake.invalidations(DIST).len(), 1);
    assert_eq!(fake.invalidations_per_caller_reference()["cfpurge-same"], 1);

    let conflict = create(&client, DIST, "cfpurge-same", &["/c".to_owned()]).await;
    // Not in the model: the SDK has no variant for it, only the code.
    assert_eq!(
        code_and_status(conflict),
        ("InvalidationBatchAlreadyExists".to_owned(), 409)
    );

    let outcomes: Vec<String> = fake
        .calls_of(Operation::CreateInvalidation)
        .iter()
        .map(|c| c.outcome.code().to_owned())
        .collect();
    assert_eq!(
        outcomes,
        ["Created", "Replayed", "InvalidationBatchAlreadyExists"]
    );
    assert_eq!(fake.accepted_create_times().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn paths_must_follow_cloudfront_rules() {
    let fake = fake().await;
    let client = fake.client();
    let longest = format!("/{}", "a".repeat(MAX_PATH_LEN - 1));
    let too_long = format!("/{}", "a".repeat(MAX_PATH_LEN));

    for bad in ["no-slash", "/a*b", "/*/x", too_long.as_str()] {
        let refused = create(&client, DIST, "cfpurge-bad", &[bad.to_owned()]).await;
        let err = refused.as_ref().expect_err(bad);
        assert!(
            err.as_service_error()
                .is_some_and(|e| e.is_invalid_argument()),
            "{bad}"
        );
        assert_eq!(
            code_and_status(refused),
            ("InvalidArgument".to_owned(), 400)
        );
    }
    for (i, good) in [
        "/",
        "/*",
        "/a*",
        "/images/*",
        "/a b&c<d>'\"",
        longest.as_str(),
    ]
    .into_iter()
    .enumerate()
    {
        let output = create(
            &client,
            DIST,
            &format!("cfpurge-good-{i}"),
            &[good.to_owned()],
        )
        .await
        .unwrap_or_else(|e| panic!("{good}: {e:?}"));
        let echoed = output.invalidation().and_then(|i| i.invalidation_batch());
        assert_eq!(
            echoed.and_then(|b| b.paths()).expect("paths").items(),
            [good]
        );
    }

    let inconsistent = client
        .create_invalidation()
        .distribution_id(DIST)
        .invalidation_batch(batch_with_quantity("cfpurge-q", &paths("q", 2), 3))
        .send()
        .await;
    let err = inconsistent.as_ref().expect_err("quantity mismatch");
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_inconsistent_quantities())
    );
    assert_eq!(
        code_and_status(inconsistent),
        ("InconsistentQuantities".to_owned(), 400)
    );
}

#[tokio::test(start_paused = true)]
async fn unknown_distribution_and_invalidation_are_404() {
    let fake = fake().await;
    let client = fake.client();

    let created = create(&client, "E2NOPE", "cfpurge-1", &paths("a", 1)).await;
    let err = created.as_ref().expect_err("unknown distribution");
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_no_such_distribution())
    );
    assert_eq!(
        code_and_status(created),
        ("NoSuchDistribution".to_owned(), 404)
    );

    let got = client
        .get_invalidation()
        .distribution_id("E2NOPE")
        .id("I1")
        .send()
        .await;
    assert_eq!(code_and_status(got), ("NoSuchDistribution".to_owned(), 404));
    let listed = client
        .list_invalidations()
        .distribution_id("E2NOPE")
        .send()
        .await;
    let err = listed.as_ref().expect_err("unknown distribution");
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_no_such_distribution())
    );

    let got = client
        .get_invalidation()
        .distribution_id(DIST)
        .id("INOPE")
        .send()
        .await;
    let err = got.as_ref().expect_err("unknown invalidation");
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_no_such_invalidation())
    );
    assert_eq!(code_and_status(got), ("NoSuchInvalidation".to_owned(), 404));
}

#[tokio::test(start_paused = true)]
async fn list_pages_newest_first() {
    let fake = fake().await;
    let client = fake.client();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(created_id(
            create(&client, DIST, &format!("cfpurge-{i}"), &paths("p", 1)).await,
        ));
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    ids.reverse();

    let first = client
        .list_invalidations()
        .distribution_id(DIST)
        .max_items(2)
        .send()
        .await
        .expect("list");
    let page = first.invalidation_list().expect("list");
    let got: Vec<&str> = page.items().iter().map(|s| s.id()).collect();
    assert_eq!(got, ids[..2]);
    assert!(page.is_truncated());
    assert_eq!(
        (page.quantity(), page.max_items(), page.marker()),
        (2, 2, "")
    );
    assert_eq!(page.next_marker(), Some(ids[1].as_str()));
    assert!(page.items()[0].create_time() > page.items()[1].create_time());
    assert!(page.items().iter().all(|s| s.status() == "InProgress"));

    let second = client
        .list_invalidations()
        .distribution_id(DIST)
        .max_items(2)
        .marker(page.next_marker().expect("next marker"))
        .send()
        .await
        .expect("list");
    let second = second.invalidation_list().expect("list");
    let got: Vec<&str> = second.items().iter().map(|s| s.id()).collect();
    assert_eq!(got, ids[2..4]);

    // The SDK's paginator follows NextMarker to the end.
    let mut all = Vec::new();
    let mut pages = client
        .list_invalidations()
        .distribution_id(DIST)
        .max_items(2)
        .into_paginator()
        .send();
    let mut last = None;
    while let Some(page) = pages.next().await {
        let list = page.expect("page").invalidation_list.expect("list");
        all.extend(list.items().iter().map(|s| s.id().to_owned()));
        last = Some(list);
    }
    assert_eq!(all, ids);
    let last = last.expect("a page");
    assert!(!last.is_truncated());
    assert_eq!(last.next_marker(), None);

    fake.complete_all();
    let listed = client
        .list_invalidations()
        .distribution_id(DIST)
        .send()
        .await
        .expect("list");
    let list = listed.invalidation_list().expect("list");
    assert_eq!((list.quantity(), list.max_items()), (5, 100));
    assert!(list.items().iter().all(|s| s.status() == "Completed"));
}

#[tokio::test(start_paused = true)]
async fn each_fault_answers_once_on_cue_with_its_code_and_status() {
    let fake = fake().await;
    let client = fake.client();
    let expected = [
        (Fault::Throttling, "Throttling", 400),
        (Fault::ServiceUnavailable, "ServiceUnavailable", 503),
        (
            Fault::TooManyInvalidationsInProgress,
            "TooManyInvalidationsInProgress",
            400,
        ),
        (Fault::BatchTooLarge, "BatchTooLarge", 413),
        (Fault::InvalidArgument, "InvalidArgument", 400),
        (
            Fault::InvalidationBatchAlreadyExists,
            "InvalidationBatchAlreadyExists",
            409,
        ),
    ];
    for (i, (fault, code, status)) in expected.into_iter().enumerate() {
        fake.faults().fail_next(fault, 1);
        let reference = format!("cfpurge-{i}");
        let failed = create(&client, DIST, &reference, &paths("f", 1)).await;
        if fault == Fault::Throttling {
            let err = failed.as_ref().expect_err("throttled");
            assert_eq!(err.message(), Some("Rate exceeded"));
        }
        if fault == Fault::BatchTooLarge {
            let err = failed.as_ref().expect_err("too large");
            assert!(
                err.as_service_error()
                    .is_some_and(|e| e.is_batch_too_large())
            );
        }
        assert_eq!(
            code_and_status(failed),
            (code.to_owned(), status),
            "{fault:?}"
        );
        created_id(create(&client, DIST, &reference, &paths("f", 1)).await);
    }
    assert_eq!(
        fake.invalidations(DIST).len(),
        expected.len(),
        "a fault creates nothing"
    );

    // Throttling and 503 hit reads too; create-only faults do not.
    fake.faults().fail_next(Fault::BatchTooLarge, 1);
    fake.faults().fail_next(Fault::ServiceUnavailable, 1);
    let listed = client
        .list_invalidations()
        .distribution_id(DIST)
        .send()
        .await;
    assert_eq!(
        code_and_status(listed),
        ("ServiceUnavailable".to_owned(), 503)
    );
    client
        .list_invalidations()
        .distribution_id(DIST)
        .send()
        .await
        .expect("list");
    fake.faults().fail_next(Fault::Throttling, 1);
    let got = client
        .get_invalidation()
        .distribution_id(DIST)
        .id("INOPE")
        .send()
        .await;
    assert_eq!(code_and_status(got), ("Throttling".to_owned(), 400));
    let still = create(&client, DIST, "cfpurge-late", &paths("f", 1)).await;
    assert_eq!(code_and_status(still), ("BatchTooLarge".to_owned(), 413));
}

#[tokio::test(start_paused = true)]
async fn the_retrying_client_retries_throttling_and_503_but_not_too_many_in_progress() {
    let fake = fake().await;
    let client = fake.client_with_retries();

    fake.faults().fail_next(Fault::Throttling, 1);
    fake.faults().fail_next(Fault::ServiceUnavailable, 1);
    created_id(create(&client, DIST, "cfpurge-1", &paths("r", 1)).await);
    let codes: Vec<String> = fake
        .calls()
        .iter()
        .map(|c| c.outcome.code().to_owned())
        .collect();
    assert_eq!(codes, ["Throttling", "ServiceUnavailable", "Created"]);

    fake.faults()
        .fail_next(Fault::TooManyInvalidationsInProgress, 1);
    let refused = create(&client, DIST, "cfpurge-2", &paths("r", 1)).await;
    assert_eq!(
        code_and_status(refused),
        ("TooManyInvalidationsInProgress".to_owned(), 400)
    );
    assert_eq!(fake.calls().len(), 4, "not retried");
}

#[tokio::test(start_paused = true)]
async fn probabilistic_faults_repeat_with_the_seed() {
    async fn run(seed: u64) -> Vec<String> {
        let fake = fake().await;
        let client = fake.client();
        fake.faults().seed(seed);
        fake.faults().fail_with_probability(Fault::Throttling, 0.3);
        fake.faults()
            .fail_with_probability(Fault::ServiceUnavailable, 0.2);
        for i in 0..40 {
            let _ = create(
                &client,
                DIST,
                &format!("cfpurge-{i}"),
                &paths(&format!("p{i}"), 1),
            )
            .await;
        }
        fake.calls()
            .iter()
            .map(|c| c.outcome.code().to_owned())
            .collect()
    }
    let first = run(7).await;
    assert_eq!(first, run(7).await, "same seed, same faults");
    let count = |code: &str| first.iter().filter(|c| *c == code).count();
    assert!(count("Throttling") > 3, "{first:?}");
    assert!(count("ServiceUnavailable") > 2, "{first:?}");
    assert!(count("Created") > 10, "{first:?}");
}

#[tokio::test(start_paused = true)]
async fn slow_answers_before_and_after_the_effect() {
    let fake = fake().await;
    let client = fake.client();

    fake.faults().set_delay(Duration::from_secs(30));
    let started = Instant::now();
    created_id(create(&client, DIST, "cfpurge-slow", &paths("s", 1)).await);
    assert!(started.elapsed() >= Duration::from_secs(30));
    assert_eq!(fake.calls()[0].at, started, "recorded on arrival");

    // A client that gives up while the answer is late: the invalidation was
    // made all the same, and retrying the reference returns it.
    fake.faults().set_delay(Duration::ZERO);
    fake.faults()
        .set_delay_after_effect(Duration::from_secs(30));
    let impatient = client
        .create_invalidation()
        .distribution_id(DIST)
        .invalidation_batch(batch("cfpurge-late", &paths("l", 1)))
        .customize()
        .config_override(
            aws_sdk_cloudfront::Config::builder().timeout_config(
                aws_sdk_cloudfront::config::timeout::TimeoutConfig::builder()
                    .operation_timeout(Duration::from_secs(5))
                    .build(),
            ),
        )
        .send()
        .await;
    assert!(
        matches!(impatient, Err(SdkError::TimeoutError(_))),
        "{impatient:?}"
    );
    fake.faults().clear();
    let id = created_id(create(&client, DIST, "cfpurge-late", &paths("l", 1)).await);
    let late = &fake.invalidations(DIST)[1];
    assert_eq!(
        (late.id.as_str(), late.caller_reference.as_str()),
        (id.as_str(), "cfpurge-late")
    );
    assert_eq!(fake.invalidations(DIST).len(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_create_rate_limit_throttles_past_the_burst_and_refills() {
    let fake = fake().await;
    let client = fake.client();
    fake.faults().set_rate_limit(Some(RateLimit::AWS));

    for i in 0..6 {
        created_id(
            create(
                &client,
                DIST,
                &format!("cfpurge-{i}"),
                &paths(&format!("p{i}"), 1),
            )
            .await,
        );
    }
    let throttled = create(&client, DIST, "cfpurge-6", &paths("p6", 1)).await;
    assert_eq!(code_and_status(throttled), ("Throttling".to_owned(), 400));
    // Reads are not rate limited.
    client
        .list_invalidations()
        .distribution_id(DIST)
        .send()
        .await
        .expect("list");

    tokio::time::advance(Duration::from_secs(2)).await;
    created_id(create(&client, DIST, "cfpurge-6", &paths("p6", 1)).await);
    let throttled = create(&client, DIST, "cfpurge-7", &paths("p7", 1)).await;
    assert_eq!(code_and_status(throttled), ("Throttling".to_owned(), 400));

    let times = fake.accepted_create_times();
    assert_eq!(times.len(), 7);
    assert_eq!(times[6] - times[0], Duration::from_secs(2));

    fake.faults().set_rate_limit(None);
    created_id(create(&client, DIST, "cfpurge-7", &paths("p7", 1)).await);
}

#[tokio::test(start_paused = true)]
async fn the_recorder_keeps_calls_and_peak_in_flight() {
    let fake = fake().await;
    let client = fake.client();

    let mut first = paths("a", 10);
    first.extend(wildcards("w", 2));
    created_id(create(&client, DIST, "cfpurge-1", &first).await);
    tokio::time::advance(IN_PROGRESS / 2).await;
    created_id(create(&client, DIST, "cfpurge-2", &paths("b", 5)).await);
    assert_eq!(fake.peak_inflight(DIST), (15, 2));
    tokio::time::advance(IN_PROGRESS / 2).await;
    created_id(create(&client, DIST, "cfpurge-3", &wildcards("x", 1)).await);
    assert_eq!(fake.inflight(DIST), (5, 1));
    assert_eq!(fake.peak_inflight(DIST), (15, 2), "the peak stays");
    tokio::time::advance(IN_PROGRESS).await;
    assert_eq!(fake.inflight(DIST), (0, 0));

    let calls = fake.calls();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0].operation, Operation::CreateInvalidation);
    assert_eq!(calls[0].distribution, DIST);
    assert_eq!(calls[0].caller_reference.as_deref(), Some("cfpurge-1"));
    assert_eq!(calls[0].paths, first);
    assert!(
        matches!(&calls[0].outcome, Outcome::Created { id } if id == &fake.invalidations(DIST)[0].id)
    );
    assert_eq!(calls[1].at - calls[0].at, IN_PROGRESS / 2);

    let id = fake.invalidations(DIST)[0].id.clone();
    status(&client, DIST, &id).await;
    let get = fake.calls().pop().expect("get recorded");
    assert_eq!(
        (get.operation, get.invalidation_id, get.outcome),
        (Operation::GetInvalidation, Some(id), Outcome::Ok)
    );
}

#[tokio::test(start_paused = true)]
async fn external_invalidations_count_against_the_limits() {
    let fake = fake().await;
    let client = fake.client();
    let mut theirs = paths("theirs", 2_990);
    theirs.extend(wildcards("theirs", 14));
    let refs: Vec<&str> = theirs.iter().map(String::as_str).collect();
    let external = fake.add_external(DIST, &refs, "console-2026-11-24");
    assert!(external.external);
    assert_eq!(external.distribution, DIST);
    assert_eq!(fake.peak_inflight(DIST), (2_990, 14));

    let refused = create(&client, DIST, "cfpurge-1", &paths("ours", 11)).await;
    assert_eq!(
        code_and_status(refused),
        ("TooManyInvalidationsInProgress".to_owned(), 400)
    );
    created_id(create(&client, DIST, "cfpurge-1", &paths("ours", 10)).await);
    let refused = create(&client, DIST, "cfpurge-2", &wildcards("ours", 2)).await;
    assert_eq!(
        code_and_status(refused),
        ("TooManyInvalidationsInProgress".to_owned(), 400)
    );
    created_id(create(&client, DIST, "cfpurge-2", &wildcards("ours", 1)).await);
    assert_eq!(fake.peak_inflight(DIST), (3_000, 15));

    // Others' invalidations are listed like any other, and complete.
    let listed = client
        .list_invalidations()
        .distribution_id(DIST)
        .send()
        .await
        .expect("list");
    let ids: Vec<&str> = listed
        .invalidation_list()
        .expect("list")
        .items()
        .iter()
        .map(|s| s.id())
        .collect();
    assert_eq!(ids.last(), Some(&external.id.as_str()));
    tokio::time::advance(IN_PROGRESS).await;
    assert_eq!(status(&client, DIST, &external.id).await, "Completed");
}

#[tokio::test(start_paused = true)]
async fn limits_and_durations_can_be_changed_at_run_time() {
    let fake = fake().await;
    let client = fake.client();
    fake.set_limits(2, 1);
    fake.set_in_progress_for(Duration::from_secs(5));

    created_id(create(&client, DIST, "cfpurge-1", &paths("a", 2)).await);
    let refused = create(&client, DIST, "cfpurge-2", &paths("b", 1)).await;
    assert_eq!(
        code_and_status(refused),
        ("TooManyInvalidationsInProgress".to_owned(), 400)
    );
    tokio::time::advance(Duration::from_secs(5)).await;
    created_id(create(&client, DIST, "cfpurge-2", &paths("b", 1)).await);
}

#[tokio::test(start_paused = true)]
async fn a_refused_path_fails_its_whole_batch_until_cleared() {
    let fake = fake().await;
    let client = fake.client();
    fake.faults().refuse_path("/odd.html");

    let both = vec!["/ok.html".to_owned(), "/odd.html".to_owned()];
    let refused = create(&client, DIST, "cfpurge-1", &both).await;
    let err = refused.as_ref().expect_err("refused path");
    assert!(
        err.message().is_some_and(|m| m.contains("/odd.html")),
        "{err:?}"
    );
    assert_eq!(
        code_and_status(refused),
        ("InvalidArgument".to_owned(), 400)
    );
    assert!(fake.invalidations(DIST).is_empty(), "nothing made");
    created_id(create(&client, DIST, "cfpurge-2", &["/ok.html".to_owned()]).await);

    fake.faults().clear();
    created_id(create(&client, DIST, "cfpurge-1", &both).await);
}

#[tokio::test(start_paused = true)]
async fn list_arguments_are_refused_on_the_wire_as_invalid_arguments() {
    let fake = fake().await;
    let client = fake.client();
    created_id(create(&client, DIST, "cfpurge-1", &paths("a", 1)).await);

    let unknown_marker = client
        .list_invalidations()
        .distribution_id(DIST)
        .marker("INOPE")
        .send()
        .await;
    assert_eq!(
        code_and_status(unknown_marker),
        ("InvalidArgument".to_owned(), 400)
    );
    let no_items = client
        .list_invalidations()
        .distribution_id(DIST)
        .max_items(0)
        .send()
        .await;
    assert_eq!(
        code_and_status(no_items),
        ("InvalidArgument".to_owned(), 400)
    );
    // An empty marker is the first page.
    let listed = client
        .list_invalidations()
        .distribution_id(DIST)
        .marker("")
        .send()
        .await
        .expect("list");
    assert_eq!(listed.invalidation_list().expect("list").quantity(), 1);
}

const TENANT_A: &str = "dt_2TenantAaaa";
const TENANT_B: &str = "dt_2TenantBbbb";

type TenantCreateResult = Result<
    aws_sdk_cloudfront::operation::create_invalidation_for_distribution_tenant::CreateInvalidationForDistributionTenantOutput,
    SdkError<aws_sdk_cloudfront::operation::create_invalidation_for_distribution_tenant::CreateInvalidationForDistributionTenantError>,
>;

/// The fake with one distribution and two tenants.
async fn fake_with_tenants() -> FakeCloudFront {
    let fake = fake().await;
    fake.add_tenant(TENANT_A);
    fake.add_tenant(TENANT_B);
    fake
}

async fn create_for_tenant(
    client: &Client,
    tenant: &str,
    caller_reference: &str,
    paths: &[String],
) -> TenantCreateResult {
    client
        .create_invalidation_for_distribution_tenant()
        .id(tenant)
        .invalidation_batch(batch(caller_reference, paths))
        .send()
        .await
}

fn tenant_created_id(result: TenantCreateResult) -> String {
    let output = result.expect("create for tenant");
    output.invalidation().expect("invalidation").id().to_owned()
}

async fn tenant_status(client: &Client, tenant: &str, id: &str) -> String {
    client
        .get_invalidation_for_distribution_tenant()
        .distribution_tenant_id(tenant)
        .id(id)
        .send()
        .await
        .expect("get invalidation for tenant")
        .invalidation()
        .expect("invalidation")
        .status()
        .to_owned()
}

#[tokio::test(start_paused = true)]
async fn a_tenant_has_the_same_lifecycle_limits_and_references_on_its_own() {
    let fake = fake_with_tenants().await;
    let client = fake.client();

    // Lifecycle and the Location of the tenant's invalidation.
    let output = create_for_tenant(&client, TENANT_A, "cfpurge-1", &paths("a", 2_990))
        .await
        .expect("create");
    let id = output.invalidation().expect("invalidation").id().to_owned();
    assert_eq!(output.invalidation().unwrap().status(), "InProgress");
    assert_eq!(
        output.location(),
        Some(
            format!(
                "{}/2020-05-31/distribution-tenant/{TENANT_A}/invalidation/{id}",
                fake.endpoint()
            )
            .as_str()
        )
    );
    assert_eq!(tenant_status(&client, TENANT_A, &id).await, "InProgress");

    // The limits are the tenant's: 3,000 exact, 15 wildcards, the new
    // batch counted; another tenant and the distribution are apart.
    let refused = create_for_tenant(&client, TENANT_A, "cfpurge-2", &paths("b", 11)).await;
    assert_eq!(
        code_and_status(refused),
        ("TooManyInvalidationsInProgress".to_owned(), 400)
    );
    tenant_created_id(create_for_tenant(&client, TENANT_A, "cfpurge-2", &paths("b", 10)).await);
    tenant_created_id(create_for_tenant(&client, TENANT_A, "cfpurge-3", &wildcards("w", 15)).await);
    let refused = create_for_tenant(&client, TENANT_A, "cfpurge-4", &wildcards("x", 1)).await;
    assert_eq!(
        code_and_status(refused),
        ("TooManyInvalidationsInProgress".to_owned(), 400)
    );
    tenant_created_id(create_for_tenant(&client, TENANT_B, "cfpurge-4", &paths("c", 3_000)).await);
    created_id(create(&client, DIST, "cfpurge-4", &paths("d", 3_000)).await);
    assert_eq!(fake.peak_inflight(TENANT_A), (3_000, 15));
    assert_eq!(fake.inflight(TENANT_B), (3_000, 0));

    // CallerReference: the same batch replays, other paths conflict; per
    // tenant.
    let again = create_for_tenant(&client, TENANT_A, "cfpurge-1", &paths("a", 2_990)).await;
    assert_eq!(tenant_created_id(again), id);
    let conflict = create_for_tenant(&client, TENANT_A, "cfpurge-1", &paths("z", 1)).await;
    assert_eq!(
        code_and_status(conflict),
        ("InvalidationBatchAlreadyExists".to_owned(), 409)
    );

    // Listing: the tenant's own, newest first, paged with markers.
    let page = client
        .list_invalidations_for_distribution_tenant()
        .id(TENANT_A)
        .max_items(2)
        .send()
        .await
        .expect("list")
        .invalidation_list
        .expect("list");
    assert!(page.is_truncated());
    assert_eq!(page.items().len(), 2);
    let rest = client
        .list_invalidations_for_distribution_tenant()
        .id(TENANT_A)
        .marker(page.next_marker().expect("marker"))
        .send()
        .await
        .expect("list")
        .invalidation_list
        .expect("list");
    assert_eq!(rest.items().len(), 1);
    assert_eq!(rest.items()[0].id(), id);
    assert!(!rest.is_truncated());

    // Completion frees the tenant's capacity.
    tokio::time::advance(IN_PROGRESS).await;
    assert_eq!(tenant_status(&client, TENANT_A, &id).await, "Completed");
    tenant_created_id(create_for_tenant(&client, TENANT_A, "cfpurge-5", &paths("e", 3_000)).await);
    let ops: Vec<Operation> = fake
        .calls()
        .iter()
        .map(|c| c.operation)
        .filter(|op| op.is_tenant())
        .collect();
    assert!(ops.contains(&Operation::CreateInvalidationForDistributionTenant));
    assert!(ops.contains(&Operation::GetInvalidationForDistributionTenant));
    assert!(ops.contains(&Operation::ListInvalidationsForDistributionTenant));
}

#[tokio::test(start_paused = true)]
async fn an_unknown_tenant_is_entity_not_found_and_ids_do_not_cross() {
    let fake = fake_with_tenants().await;
    let client = fake.client();
    let missing = create_for_tenant(&client, "dt_2Nope", "cfpurge-1", &paths("a", 1)).await;
    let err = missing.as_ref().expect_err("unknown tenant");
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_entity_not_found())
    );
    assert_eq!(code_and_status(missing), ("EntityNotFound".to_owned(), 404));
    let listed = client
        .list_invalidations_for_distribution_tenant()
        .id("dt_2Nope")
        .send()
        .await;
    assert_eq!(code_and_status(listed), ("EntityNotFound".to_owned(), 404));
    let got = client
        .get_invalidation_for_distribution_tenant()
        .distribution_tenant_id("dt_2Nope")
        .id("INOPE")
        .send()
        .await;
    assert_eq!(code_and_status(got), ("EntityNotFound".to_owned(), 404));

    // A distribution is no tenant and a tenant no distribution.
    let as_tenant = create_for_tenant(&client, DIST, "cfpurge-1", &paths("a", 1)).await;
    assert_eq!(
        code_and_status(as_tenant),
        ("EntityNotFound".to_owned(), 404)
    );
    let as_distribution = create(&client, TENANT_A, "cfpurge-1", &paths("a", 1)).await;
    assert_eq!(
        code_and_status(as_distribution),
        ("NoSuchDistribution".to_owned(), 404)
    );
    // An invalidation of one tenant is not found on another.
    let id =
        tenant_created_id(create_for_tenant(&client, TENANT_A, "cfpurge-1", &paths("a", 1)).await);
    let got = client
        .get_invalidation_for_distribution_tenant()
        .distribution_tenant_id(TENANT_B)
        .id(&id)
        .send()
        .await;
    assert_eq!(code_and_status(got), ("NoSuchInvalidation".to_owned(), 404));
    // Path rules and quantities as for a distribution.
    let bad = create_for_tenant(&client, TENANT_A, "cfpurge-2", &["no-slash".to_owned()]).await;
    assert_eq!(code_and_status(bad), ("InvalidArgument".to_owned(), 400));
    let inconsistent = client
        .create_invalidation_for_distribution_tenant()
        .id(TENANT_A)
        .invalidation_batch(batch_with_quantity("cfpurge-3", &paths("q", 2), 3))
        .send()
        .await;
    assert_eq!(
        code_and_status(inconsistent),
        ("InconsistentQuantities".to_owned(), 400)
    );
    assert_eq!(fake.invalidations(TENANT_A).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn faults_and_the_create_rate_hit_the_tenant_calls_too() {
    let fake = fake_with_tenants().await;
    let client = fake.client();
    for (i, (fault, code, status)) in [
        (Fault::Throttling, "Throttling", 400),
        (Fault::ServiceUnavailable, "ServiceUnavailable", 503),
        (
            Fault::TooManyInvalidationsInProgress,
            "TooManyInvalidationsInProgress",
            400,
        ),
        (Fault::BatchTooLarge, "BatchTooLarge", 413),
        (Fault::InvalidArgument, "InvalidArgument", 400),
        (
            Fault::InvalidationBatchAlreadyExists,
            "InvalidationBatchAlreadyExists",
            409,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        fake.faults().fail_next(fault, 1);
        let reference = format!("cfpurge-{i}");
        let failed = create_for_tenant(&client, TENANT_A, &reference, &paths("f", 1)).await;
        assert_eq!(
            code_and_status(failed),
            (code.to_owned(), status),
            "{fault:?}"
        );
        tenant_created_id(create_for_tenant(&client, TENANT_A, &reference, &paths("f", 1)).await);
    }
    assert_eq!(
        fake.invalidations(TENANT_A).len(),
        6,
        "a fault creates nothing"
    );
    // Reads see throttling and 503, not the create-only faults.
    fake.faults().fail_next(Fault::BatchTooLarge, 1);
    fake.faults().fail_next(Fault::ServiceUnavailable, 1);
    let listed = client
        .list_invalidations_for_distribution_tenant()
        .id(TENANT_A)
        .send()
        .await;
    assert_eq!(
        code_and_status(listed),
        ("ServiceUnavailable".to_owned(), 503)
    );
    fake.faults().clear();

    // One create rate for the account: tenants' creates and the
    // distribution's draw on the same bucket.
    fake.faults().set_rate_limit(Some(RateLimit {
        per_second: 0.5,
        burst: 2,
    }));
    tenant_created_id(create_for_tenant(&client, TENANT_A, "cfpurge-r1", &paths("r", 1)).await);
    created_id(create(&client, DIST, "cfpurge-r2", &paths("r", 1)).await);
    let throttled = create_for_tenant(&client, TENANT_B, "cfpurge-r3", &paths("r", 1)).await;
    assert_eq!(code_and_status(throttled), ("Throttling".to_owned(), 400));
    assert_eq!(fake.accepted_create_times().len(), 8);
}

/// Cache tags are `#` items of an ordinary batch, by their own rules; they
/// count with the exact paths in flight, and cover the same tag in any case.
#[tokio::test(start_paused = true)]
async fn cache_tags_are_items_counted_with_exact_paths() {
    let fake = fake().await;
    let client = fake.client();
    let longest = format!("#{}", "t".repeat(256));
    for bad in [
        "#",
        "#a,b",
        "#a*",
        "#a b",
        "#caf\u{e9}",
        &format!("#{}", "t".repeat(257)),
    ] {
        let refused = create(&client, DIST, "cfpurge-bad-tag", &[bad.to_owned()]).await;
        assert_eq!(
            code_and_status(refused),
            ("InvalidArgument".to_owned(), 400),
            "{bad}"
        );
    }
    let mut items = paths("p", MAX_EXACT_IN_PROGRESS - 2);
    items.extend(["#Blog".to_owned(), longest.clone()]);
    items.push("/w/*".to_owned());
    let output = create(&client, DIST, "cfpurge-tags", &items)
        .await
        .expect("tags accepted");
    let echoed = output.invalidation().and_then(|i| i.invalidation_batch());
    assert_eq!(
        echoed.and_then(|b| b.paths()).expect("paths").items().len(),
        MAX_EXACT_IN_PROGRESS + 1
    );
    assert_eq!(fake.inflight(DIST), (MAX_EXACT_IN_PROGRESS, 1));
    // The exact slots are full: one more tag is refused, a wildcard is not.
    let (code, _) =
        code_and_status(create(&client, DIST, "cfpurge-more", &["#news".to_owned()]).await);
    assert_eq!(code, "TooManyInvalidationsInProgress");
    create(&client, DIST, "cfpurge-w", &["/x/*".to_owned()])
        .await
        .expect("wildcard");

    // Coverage: a tag by the same tag in any case; never by a wildcard, and
    // a tag never covers a path.
    let created = fake.invalidations(DIST);
    let before = created[0].created_at - Duration::from_millis(1);
    let asked = |items: &[&str]| -> Vec<String> { items.iter().map(|s| (*s).to_owned()).collect() };
    let requests = [
        asked(&["#blog"]),
        asked(&["#BLOG", "/p/1.html"]),
        asked(&["#news"]),
        asked(&["/Blog"]),
        asked(&["#w"]),
    ];
    let got = crate::support::fake_cloudfront::coverage(
        requests.iter().map(|r| (r.as_slice(), before)),
        &created,
    );
    assert!(got[0].is_some() && got[1].is_some());
    assert_eq!(got[2], None);
    assert_eq!(got[3], None);
    assert_eq!(got[4], None);
}
