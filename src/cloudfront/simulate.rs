//! An in-memory CloudFront for `cloudfront.mode = "simulate"`: local runs
//! and rehearsals with no AWS account, replay, and the fake behind the
//! submitter's, tracker's and daemon's tests. CloudFront's rules are
//! [`super::model::Model`]'s, the same the tests' HTTP fake answers by, so
//! that a run against either cannot succeed where AWS would refuse. This
//! adapter adds only a clock and a lock: time is tokio's (so paused-time
//! tests and replay step the lifecycle), read as a wall clock that starts
//! at the system's time or at a replay's virtual start.
//!
//! Distributions come from the configuration; distribution tenants
//! ([`SimulatedCloudFront::with_tenants`]) are reached through the tenant
//! calls only, an unknown one refused as
//! [`InvalidatorError::NoSuchDistribution`] naming `EntityNotFound`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::invalidator::{
    Invalidation, InvalidationSummary, Invalidator, InvalidatorError, Target,
};
use super::model::{Limits, Model, Record, Scope};
use crate::path::CfPath;

/// A simulated CloudFront account holding a fixed set of distributions.
/// Clones share the same state.
#[derive(Clone, Debug)]
pub struct SimulatedCloudFront {
    inner: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    model: Model<CfPath>,
    /// The wall-clock time matching `origin`, so that CloudFront's times
    /// move with tokio's (possibly paused) clock instead of the system's.
    origin_wall: SystemTime,
    origin: Instant,
}

impl State {
    /// Now on the simulation's wall clock.
    fn now(&self) -> SystemTime {
        self.origin_wall + Instant::now().saturating_duration_since(self.origin)
    }
}

impl SimulatedCloudFront {
    /// A CloudFront with the given distributions and AWS's limits, whose
    /// invalidations stay in progress for `completion` after their creation.
    pub fn new(distribution_ids: impl IntoIterator<Item = String>, completion: Duration) -> Self {
        // Seeded at random so that two runs do not hand out the same ids.
        let mut model = Model::new(completion, Limits::AWS, rand::random());
        for id in distribution_ids {
            model.add_distribution(&id);
        }
        Self {
            inner: Arc::new(Mutex::new(State {
                model,
                origin_wall: SystemTime::now(),
                origin: Instant::now(),
            })),
        }
    }

    /// Its wall clock reads `wall` now (a replay's virtual start), and
    /// moves with tokio's clock from here.
    pub fn starting_at(self, wall: SystemTime) -> Self {
        {
            let mut state = self.lock();
            state.origin_wall = wall;
            state.origin = Instant::now();
        }
        self
    }

    /// Adds distribution tenants (`dt_...`), reached through the tenant
    /// calls ([`Target::Tenant`]); which multi-tenant distribution a call
    /// names does not matter, as on AWS, whose tenant calls carry only the
    /// tenant id.
    pub fn with_tenants(self, tenant_ids: impl IntoIterator<Item = String>) -> Self {
        {
            let mut state = self.lock();
            for id in tenant_ids {
                state.model.add_tenant(&id);
            }
        }
        self
    }

    /// Every invalidation created so far with its distribution id (a
    /// tenant's id for a tenant's), oldest first, with its status now: what
    /// tests and the status page check against. Idempotent repeats of a
    /// create do not appear twice.
    pub fn created(&self) -> Vec<(String, Invalidation)> {
        let state = self.lock();
        let now = state.now();
        state
            .model
            .records()
            .iter()
            .map(|r| (r.owner.clone(), invalidation(r, now)))
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No code panics while holding the lock, so a poisoned lock still
        // holds consistent state.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn invalidation(record: &Record<CfPath>, now: SystemTime) -> Invalidation {
    Invalidation {
        id: record.id.clone(),
        status: record.status(now),
        created_at: record.created_at,
        caller_reference: record.caller_reference.clone(),
        paths: record.paths.clone(),
    }
}

impl Invalidator for SimulatedCloudFront {
    async fn create(
        &self,
        target: impl Into<Target> + Send,
        caller_reference: &str,
        paths: &[CfPath],
    ) -> Result<Invalidation, InvalidatorError> {
        let target = target.into();
        let mut state = self.lock();
        let now = state.now();
        let (_, record) = state
            .model
            .create(Scope::from(&target), caller_reference, paths, now)?;
        Ok(invalidation(record, now))
    }

    async fn get(
        &self,
        target: impl Into<Target> + Send,
        id: &str,
    ) -> Result<Invalidation, InvalidatorError> {
        let target = target.into();
        let state = self.lock();
        let record = state.model.get(Scope::from(&target), id)?;
        Ok(invalidation(record, state.now()))
    }

    async fn list(
        &self,
        target: impl Into<Target> + Send,
        marker: Option<&str>,
        max_items: i32,
    ) -> Result<(Vec<InvalidationSummary>, Option<String>), InvalidatorError> {
        let target = target.into();
        let state = self.lock();
        let now = state.now();
        let page = state
            .model
            .list(Scope::from(&target), marker, Some(max_items))?;
        let items = page
            .items
            .iter()
            .map(|r| InvalidationSummary {
                id: r.id.clone(),
                status: r.status(now),
                created_at: r.created_at,
            })
            .collect();
        Ok((items, page.next_marker))
    }
}

/// The rules themselves are tested on the model; these tests check what
/// the adapter adds: tokio's clock, the errors the daemon sees, targets, and
/// one account shared by clones.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudfront::invalidator::{MAX_LIST_ITEMS, Status};

    const DIST: &str = "E1SIMULATED";
    const COMPLETION: Duration = Duration::from_secs(60);

    fn cf() -> SimulatedCloudFront {
        SimulatedCloudFront::new([DIST.to_owned(), "E2OTHER".to_owned()], COMPLETION)
    }

    fn paths(list: &[&str]) -> Vec<CfPath> {
        list.iter().map(|p| CfPath::parse(p).unwrap()).collect()
    }

    fn exact(n: usize, tag: &str) -> Vec<CfPath> {
        (0..n)
            .map(|i| CfPath::parse(&format!("/{tag}/{i}.html")).unwrap())
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn an_invalidation_is_in_progress_then_completed_on_tokios_clock() {
        let cf = cf();
        let created = cf.create(DIST, "ref-1", &paths(&["/a.js"])).await.unwrap();
        assert_eq!(created.status, Status::InProgress);
        assert_eq!(created.caller_reference, "ref-1");
        assert_eq!(created.paths, paths(&["/a.js"]));
        tokio::time::advance(COMPLETION - Duration::from_millis(1)).await;
        let got = cf.get(DIST, &created.id).await.unwrap();
        assert_eq!(got.status, Status::InProgress);
        assert_eq!(got.created_at, created.created_at);
        tokio::time::advance(Duration::from_millis(1)).await;
        let got = cf.get(DIST, &created.id).await.unwrap();
        assert_eq!(got.status, Status::Completed);
        assert_eq!(got.paths, created.paths);
    }

    #[tokio::test(start_paused = true)]
    async fn created_at_follows_the_paused_clock_from_the_start_given() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let cf = cf().starting_at(start);
        let first = cf.create(DIST, "r1", &paths(&["/a"])).await.unwrap();
        assert_eq!(first.created_at, start);
        tokio::time::advance(Duration::from_secs(90)).await;
        let second = cf.create(DIST, "r2", &paths(&["/b"])).await.unwrap();
        assert_eq!(
            second.created_at.duration_since(first.created_at).unwrap(),
            Duration::from_secs(90)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn limits_refuse_with_too_many_in_progress_until_completion() {
        let cf = cf();
        cf.create(DIST, "r1", &exact(3000, "a")).await.unwrap();
        let err = cf.create(DIST, "r2", &exact(1, "b")).await.unwrap_err();
        assert!(
            matches!(err, InvalidatorError::TooManyInProgress(_)),
            "{err:?}"
        );
        assert_eq!(err.code_label(), "too_many_in_progress");
        tokio::time::advance(COMPLETION).await;
        cf.create(DIST, "r2", &exact(3000, "b")).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_repeated_reference_answers_the_first_invalidation_as_it_is_now() {
        let cf = cf();
        let first = cf
            .create(DIST, "ref", &paths(&["/a", "/b/*"]))
            .await
            .unwrap();
        tokio::time::advance(COMPLETION).await;
        let later = cf
            .create(DIST, "ref", &paths(&["/b/*", "/a"]))
            .await
            .unwrap();
        assert_eq!(later.id, first.id);
        assert_eq!(later.created_at, first.created_at);
        assert_eq!(later.status, Status::Completed);
        assert_eq!(cf.created().len(), 1);
        let err = cf.create(DIST, "ref", &paths(&["/c"])).await.unwrap_err();
        assert!(
            matches!(err, InvalidatorError::BatchAlreadyExists(_)),
            "{err:?}"
        );
        assert_eq!(err.code_label(), "other");
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_reach_the_daemon_as_its_errors() {
        let cf = cf();
        let err = cf.create(DIST, "r", &[]).await.unwrap_err();
        assert!(matches!(err, InvalidatorError::InvalidArgument(_)));
        let err = cf.create("ENOPE", "r", &paths(&["/a"])).await.unwrap_err();
        assert!(matches!(err, InvalidatorError::NoSuchDistribution(_)));
        assert_eq!(err.code_label(), "no_such_distribution");
        let err = cf.get("ENOPE", "I123").await.unwrap_err();
        assert!(matches!(err, InvalidatorError::NoSuchDistribution(_)));
        let err = cf.list("ENOPE", None, 10).await.unwrap_err();
        assert!(matches!(err, InvalidatorError::NoSuchDistribution(_)));
        let err = cf.get(DIST, "I0000000000000").await.unwrap_err();
        assert!(matches!(err, InvalidatorError::NoSuchInvalidation(_)));
        let err = cf.list(DIST, None, 0).await.unwrap_err();
        assert!(matches!(err, InvalidatorError::InvalidArgument(_)));
        let err = cf.list(DIST, Some("Inotamarker"), 10).await.unwrap_err();
        assert!(matches!(err, InvalidatorError::InvalidArgument(_)));
        assert!(cf.created().is_empty());
        // An encoded literal asterisk is an ordinary character.
        let literal = CfPath::literal("/a*b").unwrap();
        cf.create(DIST, "r", &[literal]).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn list_pages_newest_first_with_statuses_as_of_now() {
        let cf = cf();
        let mut ids = Vec::new();
        for i in 0..5 {
            let inv = cf
                .create(DIST, &format!("r{i}"), &paths(&["/a"]))
                .await
                .unwrap();
            ids.push(inv.id);
            tokio::time::advance(Duration::from_secs(20)).await;
        }
        ids.reverse();

        let (page1, marker) = cf.list(DIST, None, 2).await.unwrap();
        assert_eq!(
            page1.iter().map(|s| &s.id).collect::<Vec<_>>(),
            [&ids[0], &ids[1]]
        );
        let (page2, marker) = cf.list(DIST, marker.as_deref(), 2).await.unwrap();
        assert_eq!(
            page2.iter().map(|s| &s.id).collect::<Vec<_>>(),
            [&ids[2], &ids[3]]
        );
        let (page3, marker) = cf.list(DIST, marker.as_deref(), 2).await.unwrap();
        assert_eq!(page3.iter().map(|s| &s.id).collect::<Vec<_>>(), [&ids[4]]);
        assert_eq!(marker, None);

        // Statuses as of now, 100 s after the first create: with a 60 s
        // completion, those created at 0, 20 and 40 s have completed (the
        // last one exactly now), those at 60 and 80 s have not.
        let (all, _) = cf.list(DIST, None, 100).await.unwrap();
        let statuses: Vec<Status> = all.iter().map(|s| s.status).collect();
        use Status::{Completed, InProgress};
        assert_eq!(
            statuses,
            [InProgress, InProgress, Completed, Completed, Completed]
        );
        assert!(all.windows(2).all(|w| w[0].created_at > w[1].created_at));

        for i in 0..MAX_LIST_ITEMS {
            cf.create(DIST, &format!("more{i}"), &paths(&["/a"]))
                .await
                .unwrap();
        }
        let (page, marker) = cf.list(DIST, None, 1000).await.unwrap();
        assert_eq!(page.len(), MAX_LIST_ITEMS as usize);
        assert!(marker.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn clones_share_one_account() {
        let cf = cf();
        let clone = cf.clone();
        let inv = clone.create(DIST, "r", &paths(&["/a"])).await.unwrap();
        assert_eq!(cf.get(DIST, &inv.id).await.unwrap().id, inv.id);
        let created = cf.created();
        assert_eq!(created.len(), 1);
        assert_eq!(created[0].0, DIST);
        assert_eq!(created[0].1, inv);
    }

    fn tenant(id: &str) -> Target {
        Target::Tenant {
            distribution: DIST.into(),
            tenant: id.into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn tenants_are_reached_through_their_targets_each_on_its_own() {
        let cf = cf().with_tenants(["dt_a".to_owned(), "dt_b".to_owned()]);
        let (a, b) = (tenant("dt_a"), tenant("dt_b"));
        cf.create(&a, "r1", &exact(3000, "a")).await.unwrap();
        let err = cf.create(&a, "r2", &exact(1, "a")).await.unwrap_err();
        assert!(matches!(err, InvalidatorError::TooManyInProgress(_)));
        let on_b = cf.create(&b, "r2", &exact(3000, "b")).await.unwrap();
        cf.create(DIST, "r2", &exact(3000, "d")).await.unwrap();
        assert!(cf.get(&b, &on_b.id).await.is_ok());
        let err = cf.get(&a, &on_b.id).await.unwrap_err();
        assert!(matches!(err, InvalidatorError::NoSuchInvalidation(_)));
        let (listed, _) = cf.list(&b, None, 100).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(cf.created()[1].0, "dt_b");
        tokio::time::advance(COMPLETION).await;
        assert_eq!(
            cf.get(&b, &on_b.id).await.unwrap().status,
            Status::Completed
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unknown_tenant_is_entity_not_found_and_ids_do_not_cross() {
        let cf = cf().with_tenants(["dt_a".to_owned()]);
        let err = cf
            .create(&tenant("dt_nope"), "r", &paths(&["/a"]))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, InvalidatorError::NoSuchDistribution(t) if t.contains("EntityNotFound")),
            "{err:?}"
        );
        assert!(cf.list(&tenant("dt_nope"), None, 10).await.is_err());
        // A distribution is no tenant, and a tenant no distribution.
        assert!(cf.list(&tenant(DIST), None, 10).await.is_err());
        let err = cf.create("dt_a", "r", &paths(&["/a"])).await.unwrap_err();
        assert!(matches!(err, InvalidatorError::NoSuchDistribution(_)));
        assert!(cf.created().is_empty());
    }
}
