//! Several replicas on one queue: a leader lease in a shared table. The
//! machine that decides is pure ([`lease`]); the table is behind
//! [`LeaseTable`]: DynamoDB in production ([`dynamo`]), memory in tests.
//!
//! The lease item (partition key `pk = "lease"`) holds the holder's replica
//! id, the expiry (Unix milliseconds) and a fencing number that grows at
//! every take-over. Every write on it is conditional: a take-over only
//! when the lease is absent, handed back or lapsed; a renewal or a
//! hand-back only while the holder and fencing number are still the
//! caller's. Handing back clears the holder and keeps the item, so the
//! fencing numbers never start again from zero.

pub mod dynamo;
pub mod fenced;
pub mod lease;

use std::sync::{Arc, Mutex, PoisonError};

pub use self::lease::{Answer, Call, Change, Lease, Role, Seen};

/// Where the lease lives.
pub trait LeaseTable: Clone + Send + Sync + 'static {
    /// Makes `call` for `replica` at table time `wall` (Unix milliseconds)
    /// with a lease of `lease_ms`; never fails otherwise than with
    /// [`Answer::Failed`], and answers within its own timeout.
    fn call(
        &self,
        replica: &str,
        call: Call,
        wall: u64,
        lease_ms: u64,
    ) -> impl Future<Output = Answer> + Send;
}

/// The lease in memory, with DynamoDB's conditions: for tests of the
/// machine and of the daemon.
#[derive(Clone, Debug, Default)]
pub struct MemoryTable {
    item: Arc<Mutex<Option<Seen>>>,
}

impl MemoryTable {
    pub fn new() -> MemoryTable {
        MemoryTable::default()
    }

    /// The lease item as stored.
    pub fn item(&self) -> Option<Seen> {
        self.item
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The call, applied at once.
    pub fn apply(&self, replica: &str, call: &Call, wall: u64, lease_ms: u64) -> Answer {
        let mut item = self.item.lock().unwrap_or_else(PoisonError::into_inner);
        let holds = |item: &Option<Seen>, fencing: u64| {
            item.as_ref()
                .is_some_and(|s| s.holder.as_deref() == Some(replica) && s.fencing == fencing)
        };
        match call {
            Call::Look => Answer::Seen(item.clone()),
            Call::Acquire => {
                let free = item
                    .as_ref()
                    .is_none_or(|s| s.holder.is_none() || s.expires_at < wall);
                // As the table's condition: a fencing number that cannot
                // grow refuses the take-over.
                let Some(fencing) = item.as_ref().map_or(0, |s| s.fencing).checked_add(1) else {
                    return Answer::Refused;
                };
                if !free {
                    return Answer::Refused;
                }
                *item = Some(Seen {
                    holder: Some(replica.to_owned()),
                    expires_at: wall.saturating_add(lease_ms),
                    fencing,
                });
                Answer::Acquired { fencing }
            }
            Call::Renew { fencing } => {
                if !holds(&item, *fencing) {
                    return Answer::Refused;
                }
                if let Some(s) = item.as_mut() {
                    s.expires_at = wall.saturating_add(lease_ms);
                }
                Answer::Renewed
            }
            Call::Release { fencing } => {
                if !holds(&item, *fencing) {
                    return Answer::Refused;
                }
                if let Some(s) = item.as_mut() {
                    s.holder = None;
                    s.expires_at = 0;
                }
                Answer::Released
            }
        }
    }
}

impl LeaseTable for MemoryTable {
    async fn call(&self, replica: &str, call: Call, wall: u64, lease_ms: u64) -> Answer {
        self.apply(replica, &call, wall, lease_ms)
    }
}

/// The tables the daemon runs on: DynamoDB in production, memory in tests.
#[derive(Clone, Debug)]
pub enum AnyTable {
    Dynamo(dynamo::DynamoTable),
    Memory(MemoryTable),
}

impl LeaseTable for AnyTable {
    async fn call(&self, replica: &str, call: Call, wall: u64, lease_ms: u64) -> Answer {
        match self {
            AnyTable::Dynamo(t) => t.call(replica, call, wall, lease_ms).await,
            AnyTable::Memory(t) => t.call(replica, call, wall, lease_ms).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::Millis;

    const LEASE: Duration = Duration::from_secs(15);
    const LEASE_MS: u64 = 15_000;
    const WALL0: u64 = 1_800_000_000_000;

    /// One replica: its machine and name; monotonic and wall time move
    /// together in these tests.
    struct Replica {
        name: &'static str,
        lease: Lease,
        paused: bool,
    }

    impl Replica {
        fn new(name: &'static str) -> Replica {
            Replica {
                name,
                lease: Lease::new(LEASE, 0),
                paused: false,
            }
        }

        /// One turn at `t`: its due call is made and answered at once.
        fn turn(&mut self, table: &MemoryTable, t: Millis) -> Vec<Change> {
            let mut changes = Vec::new();
            if self.paused {
                return changes;
            }
            changes.extend(self.lease.check(t));
            while let Some(call) = self.lease.next_call(t, true) {
                let answer = table.apply(self.name, &call, WALL0 + t, LEASE_MS);
                changes.extend(self.lease.answered(answer, t, WALL0 + t));
            }
            changes
        }
    }

    fn leaders(replicas: &[Replica], t: Millis) -> Vec<&'static str> {
        replicas
            .iter()
            .filter(|r| matches!(r.lease.role(t), Role::Leader { .. }))
            .map(|r| r.name)
            .collect()
    }

    #[test]
    fn a_race_for_a_free_lease_has_one_winner_and_the_fencing_number_grows() {
        let table = MemoryTable::new();
        let mut a = Replica::new("a");
        let mut b = Replica::new("b");
        // Both look and find it free, both try to take it.
        for r in [&mut a, &mut b] {
            let call = r.lease.next_call(0, true).unwrap();
            let answer = table.apply(r.name, &call, WALL0, LEASE_MS);
            r.lease.answered(answer, 0, WALL0);
        }
        let take_a = a.lease.next_call(1, true).unwrap();
        let take_b = b.lease.next_call(1, true).unwrap();
        assert_eq!(
            (take_a.clone(), take_b.clone()),
            (Call::Acquire, Call::Acquire)
        );
        let ans_a = table.apply("a", &take_a, WALL0 + 1, LEASE_MS);
        let ans_b = table.apply("b", &take_b, WALL0 + 1, LEASE_MS);
        assert_eq!(ans_a, Answer::Acquired { fencing: 1 });
        assert_eq!(ans_b, Answer::Refused);
        assert_eq!(
            a.lease.answered(ans_a, 2, WALL0 + 2),
            Some(Change::BecameLeader { fencing: 1 })
        );
        assert_eq!(b.lease.answered(ans_b, 2, WALL0 + 2), None);
        let replicas = [a, b];
        assert_eq!(leaders(&replicas, 2), ["a"]);
    }

    #[test]
    fn never_two_leaders_through_pauses_and_take_overs() {
        let table = MemoryTable::new();
        let mut replicas = vec![Replica::new("a"), Replica::new("b"), Replica::new("c")];
        let mut fencings = Vec::new();
        let mut t = 0;
        while t < 300_000 {
            // Every minute, the leader is paused for 20 s (and resumed).
            if t % 60_000 == 30_000 {
                for r in &mut replicas {
                    r.paused = matches!(r.lease.role(t), Role::Leader { .. });
                }
            }
            if t % 60_000 == 50_000 {
                for r in &mut replicas {
                    r.paused = false;
                }
            }
            for r in &mut replicas {
                for change in r.turn(&table, t) {
                    if let Change::BecameLeader { fencing } = change {
                        fencings.push(fencing);
                    }
                }
            }
            let now = leaders(&replicas, t);
            assert!(now.len() <= 1, "two leaders at {t}: {now:?}");
            t += 100;
        }
        assert!(fencings.len() >= 3, "{fencings:?}");
        assert!(fencings.windows(2).all(|w| w[0] < w[1]), "{fencings:?}");
    }

    #[test]
    fn a_take_over_never_wraps_the_fencing_number() {
        let table = MemoryTable::new();
        *table.item.lock().unwrap() = Some(Seen {
            holder: None,
            expires_at: 0,
            fencing: u64::MAX,
        });
        assert_eq!(
            table.apply("a", &Call::Acquire, WALL0, LEASE_MS),
            Answer::Refused
        );
        assert_eq!(
            table.item().map(|s| (s.holder, s.fencing)),
            Some((None, u64::MAX))
        );
    }

    #[test]
    fn a_handed_back_lease_is_taken_within_a_look_and_keeps_its_fencing() {
        let table = MemoryTable::new();
        let mut a = Replica::new("a");
        let mut b = Replica::new("b");
        a.turn(&table, 0);
        b.turn(&table, 0);
        assert!(matches!(a.lease.role(0), Role::Leader { fencing: 1 }));
        let (call, _) = a.lease.close();
        let call = call.unwrap();
        assert_eq!(
            table.apply("a", &call, WALL0 + 100, LEASE_MS),
            Answer::Released
        );
        assert_eq!(table.item().unwrap().fencing, 1);
        let mut t = 100;
        while !matches!(b.lease.role(t), Role::Leader { .. }) {
            b.turn(&table, t);
            t += 100;
            assert!(t < 2_000, "not taken within a look");
        }
        assert!(matches!(b.lease.role(t), Role::Leader { fencing: 2 }));
    }
}
