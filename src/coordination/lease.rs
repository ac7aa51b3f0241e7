//! The leader lease as a pure state machine: it decides when to look at
//! the lease, when to take it, renew it or hand it back, and when this
//! replica is the leader, with time passed in. The shell makes the calls
//! ([`super::LeaseTable`]) and hands the answers back.
//!
//! Timing, for a lease of `L`:
//!
//! - the leader renews every `L / 3`;
//! - it is the leader only while its last successful renewal was *sent*
//!   less than `2 L / 3` ago; after that it stands down at once, whatever
//!   the table says, so it has stopped before any standby can find the
//!   lease lapsed (the table's expiry is `L` after that same send);
//! - a standby looks at the lease every [`LOOK_EVERY`] (at most `L / 3`)
//!   and takes it with a conditional write as soon as it has lapsed or
//!   was handed back; a take-over bumps the fencing number.
//!
//! Because the leader's own measure runs on the monotonic clock from the
//! moment it sent the renewal, a process paused and resumed (SIGSTOP, a
//! frozen VM) finds itself a standby at its first look at the clock,
//! before it has asked the table.

use std::fmt;
use std::time::Duration;

use crate::clock::Millis;
use crate::config::MAX_LEASE_SECONDS;

/// How often a standby looks at the lease (a consistent read) at most: a
/// handed-back lease is taken within this.
pub const LOOK_EVERY: Duration = Duration::from_millis(500);

/// After a failed call, the next attempt waits this long (within the
/// leader's deadline).
pub const RETRY_AFTER: Duration = Duration::from_millis(500);

/// How far ahead of the reader's clock a lease's expiry may lie: the
/// longest lease any replica may be configured with, plus a minute for
/// clocks that disagree. An expiry further ahead was written by a replica
/// whose clock is far ahead, or by hand: waiting for it to lapse would
/// keep every replica standby for as long.
pub const MAX_EXPIRY_AHEAD: Duration = Duration::from_secs(MAX_LEASE_SECONDS + 60);

/// A lease item no replica can take over as it is. It stays until an
/// operator clears it (docs/replicas.md); a look that finds it valid
/// again forgets it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// The lease item as read.
    pub seen: Seen,
    /// How far ahead of this replica's clock its expiry lies, in
    /// milliseconds (0 when that is not what is wrong).
    pub ahead_ms: u64,
}

impl Invalid {
    /// Why `seen`, read at table time `wall`, cannot be taken over, if so.
    fn of(seen: &Seen, wall: u64) -> Option<Invalid> {
        let ahead_ms = seen.expires_at.saturating_sub(wall);
        let far = seen.holder.is_some() && ahead_ms > MAX_EXPIRY_AHEAD.as_millis() as u64;
        (far || seen.fencing == u64::MAX).then(|| Invalid {
            seen: seen.clone(),
            ahead_ms: if far { ahead_ms } else { 0 },
        })
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let holder = self.seen.holder.as_deref().unwrap_or("");
        if self.ahead_ms > 0 {
            let seconds = self.ahead_ms / 1000;
            let ahead = if seconds >= 2 * 86_400 {
                format!("{} days", seconds / 86_400)
            } else {
                format!("{seconds} s")
            };
            write!(
                f,
                "the lease item is invalid: holder {holder:?} holds it until {} (Unix ms), {ahead} \
                 ahead, longer than any lease ({MAX_LEASE_SECONDS} s at most); no replica can take \
                 it over: hand it back by hand (see docs/replicas.md)",
                self.seen.expires_at
            )
        } else {
            write!(
                f,
                "the lease item is invalid: its fencing number is {}, the largest there is, so no \
                 replica can take it over; stop every replica and reset it (see docs/replicas.md)",
                self.seen.fencing
            )
        }
    }
}

/// What this replica is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Leader { fencing: u64 },
    Standby,
}

/// A call on the lease item that the machine asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// Read the lease (consistently).
    Look,
    /// Take the lease if it is absent, handed back or lapsed, bumping the
    /// fencing number.
    Acquire,
    /// Extend the lease, if `fencing` still holds it.
    Renew { fencing: u64 },
    /// Hand the lease back, if `fencing` still holds it.
    Release { fencing: u64 },
}

/// The lease item as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The holder's replica id; `None` when handed back or never taken.
    pub holder: Option<String>,
    /// When the lease lapses, Unix milliseconds (table time).
    pub expires_at: u64,
    /// The fencing number of the last take-over.
    pub fencing: u64,
}

/// The answer to a [`Call`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// `Look`: the lease item, or `None` when there is none.
    Seen(Option<Seen>),
    /// `Acquire` succeeded with this fencing number.
    Acquired { fencing: u64 },
    /// `Renew` succeeded.
    Renewed,
    /// `Release` succeeded.
    Released,
    /// The condition failed: `Acquire` found the lease held, `Renew` or
    /// `Release` found another holder (or fencing number).
    Refused,
    /// No answer, or an error: the outcome is unknown.
    Failed(String),
}

/// A change of role, to act on and log once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    BecameLeader { fencing: u64 },
    StoodDown { fencing: u64, why: &'static str },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Standby {
        /// When the next look (or take) is due.
        next: Millis,
        /// The last look found the lease free: take it next.
        take: bool,
    },
    Leader {
        fencing: u64,
        /// When the last successful renewal (or the take) was sent.
        renewed_at: Millis,
        /// When the next renewal is due.
        next: Millis,
    },
    /// Handed back (or handing back) at shutdown: no more calls but the
    /// release.
    Closed,
}

/// The lease machine of one replica.
#[derive(Clone, Debug)]
pub struct Lease {
    lease: Millis,
    look_every: Millis,
    state: State,
    /// The call under way and when it was sent.
    calling: Option<(Call, Millis)>,
    /// What the last look found wrong with the lease item, if anything.
    invalid: Option<Invalid>,
}

impl Lease {
    /// A standby that looks at the lease at once.
    pub fn new(lease: Duration, now: Millis) -> Lease {
        let lease = lease.as_millis() as Millis;
        Lease {
            lease,
            look_every: (LOOK_EVERY.as_millis() as Millis).min(lease / 3).max(1),
            state: State::Standby {
                next: now,
                take: false,
            },
            calling: None,
            invalid: None,
        }
    }

    /// The lease item as the last look found it, when no replica can take
    /// it over as it is (its expiry too far ahead, its fencing number at
    /// the largest): to be reported until a look finds it valid again.
    pub fn invalid(&self) -> Option<&Invalid> {
        self.invalid.as_ref()
    }

    /// How often the leader renews: a third of the lease.
    pub fn renew_every(&self) -> Millis {
        self.lease / 3
    }

    /// How long after a renewal was sent the leader stands down: two
    /// thirds of the lease.
    pub fn hold_for(&self) -> Millis {
        self.lease * 2 / 3
    }

    /// The role at `now`: leader only within [`Lease::hold_for`] of the last
    /// successful renewal, whatever else has happened.
    pub fn role(&self, now: Millis) -> Role {
        match self.state {
            State::Leader {
                fencing,
                renewed_at,
                ..
            } if now < renewed_at.saturating_add(self.hold_for()) => Role::Leader { fencing },
            _ => Role::Standby,
        }
    }

    /// Until when the leader may act (submit, write the ledger) at most,
    /// on the monotonic clock; `None` for a standby.
    pub fn leader_until(&self) -> Option<Millis> {
        match self.state {
            State::Leader { renewed_at, .. } => Some(renewed_at.saturating_add(self.hold_for())),
            _ => None,
        }
    }

    /// Stands down if the leader's time ran out (its renewals failed, went
    /// unanswered, or the process was paused). Call it first at every turn.
    pub fn check(&mut self, now: Millis) -> Option<Change> {
        match self.state {
            State::Leader {
                fencing,
                renewed_at,
                ..
            } if now >= renewed_at.saturating_add(self.hold_for()) => {
                self.state = State::Standby {
                    next: now,
                    take: false,
                };
                Some(Change::StoodDown {
                    fencing,
                    why: "not renewed within two thirds of the lease",
                })
            }
            _ => None,
        }
    }

    /// The call to make now, if one is due and none is under way.
    /// `may_lead` says whether this replica may take the lease now (not
    /// while it is still finishing an earlier term's calls, nor while
    /// shutting down).
    pub fn next_call(&mut self, now: Millis, may_lead: bool) -> Option<Call> {
        if self.calling.is_some() {
            return None;
        }
        self.check(now);
        let call = match self.state {
            State::Standby { next, take } if now >= next => {
                if take && may_lead {
                    Call::Acquire
                } else {
                    Call::Look
                }
            }
            State::Leader { fencing, next, .. } if now >= next => Call::Renew { fencing },
            _ => return None,
        };
        self.calling = Some((call.clone(), now));
        Some(call)
    }

    /// When the machine next needs the loop: a call due, or the leader's
    /// deadline.
    pub fn next_wake(&self) -> Option<Millis> {
        let due = match self.state {
            State::Standby { next, .. } => next,
            State::Leader {
                next, renewed_at, ..
            } => {
                let deadline = renewed_at.saturating_add(self.hold_for());
                if self.calling.is_some() {
                    return Some(deadline);
                }
                next.min(deadline)
            }
            State::Closed => return None,
        };
        if self.calling.is_some() {
            None
        } else {
            Some(due)
        }
    }

    /// Whether a call is under way.
    pub fn is_calling(&self) -> bool {
        self.calling.is_some()
    }

    /// Takes the answer to the call under way, at `now`, with `wall` the
    /// Unix milliseconds now (to tell a lapsed lease). Returns the change
    /// of role it makes, if any.
    pub fn answered(&mut self, answer: Answer, now: Millis, wall: u64) -> Option<Change> {
        let (call, sent_at) = self.calling.take()?;
        // A late answer may find the leader already stood down.
        let change = self.check(now);
        let retry = now.saturating_add(RETRY_AFTER.as_millis() as Millis);
        match (call, answer, self.state) {
            (_, _, State::Closed) => change,
            (Call::Look, Answer::Seen(seen), State::Standby { .. }) => {
                self.invalid = seen.as_ref().and_then(|s| Invalid::of(s, wall));
                // A take-over of an item with the last fencing number would
                // only be refused: look again instead.
                let free = self.invalid.is_none()
                    && seen
                        .as_ref()
                        .is_none_or(|s| s.holder.is_none() || s.expires_at < wall);
                self.state = State::Standby {
                    next: if free {
                        now
                    } else {
                        now.saturating_add(self.look_every)
                    },
                    take: free,
                };
                change
            }
            (Call::Acquire, Answer::Acquired { fencing }, State::Standby { .. }) => {
                if now >= sent_at.saturating_add(self.hold_for()) {
                    // Taken, but answered too late to use: it lapses
                    // unrenewed and someone takes it again.
                    self.state = State::Standby {
                        next: now.saturating_add(self.look_every),
                        take: false,
                    };
                    return change;
                }
                self.state = State::Leader {
                    fencing,
                    renewed_at: sent_at,
                    next: sent_at.saturating_add(self.renew_every()),
                };
                self.invalid = None;
                Some(Change::BecameLeader { fencing })
            }
            (
                Call::Renew { fencing },
                Answer::Renewed,
                State::Leader {
                    fencing: holding, ..
                },
            ) if fencing == holding => {
                self.state = State::Leader {
                    fencing,
                    renewed_at: sent_at,
                    next: sent_at.saturating_add(self.renew_every()),
                };
                change
            }
            (Call::Renew { fencing }, Answer::Refused, State::Leader { .. }) => {
                self.state = State::Standby {
                    next: now.saturating_add(self.look_every),
                    take: false,
                };
                Some(Change::StoodDown {
                    fencing,
                    why: "another replica holds the lease",
                })
            }
            (
                Call::Renew { .. },
                Answer::Failed(_),
                State::Leader {
                    fencing,
                    renewed_at,
                    next,
                },
            ) => {
                // Still the leader until the deadline; try again soon.
                self.state = State::Leader {
                    fencing,
                    renewed_at,
                    next: next.max(retry),
                };
                change
            }
            (_, Answer::Failed(_), State::Standby { take, .. }) => {
                self.state = State::Standby { next: retry, take };
                change
            }
            (_, _, State::Standby { .. }) => {
                // Refused take-over (another replica was faster), or a late
                // answer to a term already over.
                self.state = State::Standby {
                    next: now.saturating_add(self.look_every),
                    take: false,
                };
                change
            }
            (_, _, State::Leader { .. }) => change,
        }
    }

    /// Shutdown: no more looks or take-overs. Returns the release to make
    /// (and the change of role) when this replica holds the lease, even if
    /// its own measure ran out: a renewal it did not hear of may still hold.
    pub fn close(&mut self) -> (Option<Call>, Option<Change>) {
        let state = std::mem::replace(&mut self.state, State::Closed);
        match state {
            State::Leader { fencing, .. } => {
                let call = Call::Release { fencing };
                self.calling = Some((call.clone(), 0));
                (
                    Some(call),
                    Some(Change::StoodDown {
                        fencing,
                        why: "shutting down: lease handed back",
                    }),
                )
            }
            _ => (None, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Duration = Duration::from_secs(15);
    /// A wall clock far from zero, in Unix milliseconds.
    const WALL: u64 = 1_800_000_000_000;

    fn seen(holder: &str, expires_at: u64, fencing: u64) -> Answer {
        Answer::Seen(Some(Seen {
            holder: Some(holder.to_owned()),
            expires_at,
            fencing,
        }))
    }

    /// A standby that found the lease free and took it at `t`.
    fn leader_at(t: Millis, fencing: u64) -> Lease {
        let mut l = Lease::new(L, t);
        assert_eq!(l.next_call(t, true), Some(Call::Look));
        assert_eq!(l.answered(Answer::Seen(None), t, WALL), None);
        assert_eq!(l.next_call(t, true), Some(Call::Acquire));
        assert_eq!(
            l.answered(Answer::Acquired { fencing }, t + 10, WALL),
            Some(Change::BecameLeader { fencing })
        );
        l
    }

    #[test]
    fn a_leader_renews_every_third_and_stays_leader() {
        let mut l = leader_at(0, 1);
        assert_eq!(l.role(0), Role::Leader { fencing: 1 });
        assert_eq!(l.next_call(4_999, true), None);
        assert_eq!(l.next_wake(), Some(5_000));
        for round in 1..=10u64 {
            let t = round * 5_000;
            assert_eq!(l.next_call(t, true), Some(Call::Renew { fencing: 1 }));
            assert_eq!(l.next_call(t, true), None, "one call at a time");
            assert_eq!(l.answered(Answer::Renewed, t + 50, WALL), None);
            assert_eq!(l.role(t + 9_999), Role::Leader { fencing: 1 });
        }
    }

    #[test]
    fn a_leader_that_cannot_renew_stands_down_at_two_thirds() {
        let mut l = leader_at(0, 3);
        assert_eq!(l.next_call(5_000, true), Some(Call::Renew { fencing: 3 }));
        assert_eq!(
            l.answered(Answer::Failed("timeout".into()), 6_000, WALL),
            None
        );
        assert_eq!(l.role(6_000), Role::Leader { fencing: 3 });
        // Retried soon, and that one hangs: the deadline wakes the loop.
        assert_eq!(l.next_call(6_500, true), Some(Call::Renew { fencing: 3 }));
        assert_eq!(l.next_wake(), Some(10_000));
        assert_eq!(l.leader_until(), Some(10_000));
        assert_eq!(l.check(9_999), None);
        assert_eq!(l.role(10_000), Role::Standby);
        assert_eq!(
            l.check(10_000),
            Some(Change::StoodDown {
                fencing: 3,
                why: "not renewed within two thirds of the lease"
            })
        );
        // The late answer changes nothing: the term is over.
        assert_eq!(l.answered(Answer::Renewed, 10_500, WALL), None);
        assert_eq!(l.role(10_500), Role::Standby);
        // It stood down before the table's expiry (15 s after the last
        // renewal was sent), so nobody else can have taken over yet.
        assert!(l.hold_for() < L.as_millis() as Millis);
    }

    #[test]
    fn a_process_resumed_after_a_pause_is_a_standby_at_once() {
        let l = leader_at(0, 7);
        // Paused at 1 s, resumed at 40 s: before any call, the role says
        // standby.
        assert_eq!(l.role(40_000), Role::Standby);
        assert_eq!(
            l.clone()
                .check(40_000)
                .map(|c| matches!(c, Change::StoodDown { fencing: 7, .. })),
            Some(true)
        );
        // And its next call is a look, not a renewal.
        let mut l = l;
        assert_eq!(l.next_call(40_000, true), Some(Call::Look));
    }

    #[test]
    fn a_lost_lease_is_a_stand_down() {
        let mut l = leader_at(0, 2);
        assert_eq!(l.next_call(5_000, true), Some(Call::Renew { fencing: 2 }));
        assert_eq!(
            l.answered(Answer::Refused, 5_010, WALL),
            Some(Change::StoodDown {
                fencing: 2,
                why: "another replica holds the lease"
            })
        );
        assert_eq!(l.role(5_010), Role::Standby);
    }

    #[test]
    fn a_standby_takes_only_a_lapsed_or_handed_back_lease() {
        let mut l = Lease::new(L, 0);
        assert_eq!(l.next_call(0, true), Some(Call::Look));
        // Held by another, not lapsed: look again a second later.
        assert_eq!(l.answered(seen("b", WALL + 1, 4), 10, WALL), None);
        assert_eq!(l.next_call(400, true), None);
        assert_eq!(l.next_wake(), Some(510));
        assert_eq!(l.next_call(510, true), Some(Call::Look));
        // Lapsed: take it at once.
        assert_eq!(l.answered(seen("b", WALL - 1, 4), 1_020, WALL), None);
        assert_eq!(l.next_call(1_020, true), Some(Call::Acquire));
        assert_eq!(
            l.answered(Answer::Acquired { fencing: 5 }, 1_030, WALL),
            Some(Change::BecameLeader { fencing: 5 })
        );
        // Handed back (no holder): free, whatever the expiry says.
        let mut m = Lease::new(L, 0);
        m.next_call(0, true);
        m.answered(
            Answer::Seen(Some(Seen {
                holder: None,
                expires_at: WALL + 60_000,
                fencing: 9,
            })),
            0,
            WALL,
        );
        assert_eq!(m.next_call(0, true), Some(Call::Acquire));
    }

    #[test]
    fn a_replica_finishing_its_last_term_only_looks() {
        let mut l = Lease::new(L, 0);
        l.next_call(0, false);
        l.answered(Answer::Seen(None), 0, WALL);
        assert_eq!(l.next_call(0, false), Some(Call::Look));
    }

    #[test]
    fn an_acquire_answered_too_late_is_not_used() {
        let mut l = Lease::new(L, 0);
        l.next_call(0, true);
        l.answered(Answer::Seen(None), 0, WALL);
        assert_eq!(l.next_call(0, true), Some(Call::Acquire));
        assert_eq!(
            l.answered(Answer::Acquired { fencing: 1 }, 10_000, WALL),
            None
        );
        assert_eq!(l.role(10_000), Role::Standby);
    }

    #[test]
    fn a_lease_that_cannot_lapse_or_be_taken_over_is_named_invalid() {
        let ahead = MAX_EXPIRY_AHEAD.as_millis() as u64;
        let mut l = Lease::new(L, 0);
        // Held within the longest lease (and a minute of skew): valid.
        assert_eq!(l.next_call(0, true), Some(Call::Look));
        l.answered(seen("b", WALL + ahead, 4), 0, WALL);
        assert_eq!(l.invalid(), None);
        // Ten years ahead: invalid, and only looked at again.
        let ten_years = 10 * 365 * 86_400_000;
        assert_eq!(l.next_call(1_000, true), Some(Call::Look));
        l.answered(seen("ghost", WALL + ten_years, 7), 1_000, WALL);
        let invalid = l.invalid().cloned().expect("named invalid");
        assert_eq!(invalid.ahead_ms, ten_years);
        let text = invalid.to_string();
        assert!(
            text.contains("\"ghost\"") && text.contains("3650 days ahead"),
            "{text}"
        );
        assert_eq!(l.next_call(2_000, true), Some(Call::Look));
        // The last fencing number: free, but no take-over can bump it.
        l.answered(
            Answer::Seen(Some(Seen {
                holder: None,
                expires_at: 0,
                fencing: u64::MAX,
            })),
            2_000,
            WALL,
        );
        assert!(
            l.invalid()
                .unwrap()
                .to_string()
                .contains("fencing number is 18446744073709551615")
        );
        assert_eq!(l.next_call(3_000, true), Some(Call::Look));
        // A failed look keeps what was known; a valid item clears it.
        l.answered(Answer::Failed("timeout".into()), 3_000, WALL);
        assert!(l.invalid().is_some());
        assert_eq!(l.next_call(3_500, true), Some(Call::Look));
        l.answered(Answer::Seen(None), 3_500, WALL);
        assert_eq!(l.invalid(), None);
        assert_eq!(l.next_call(3_500, true), Some(Call::Acquire));
    }

    #[test]
    fn shutdown_hands_the_lease_back_and_stops_looking() {
        let mut l = leader_at(0, 6);
        let (call, change) = l.close();
        assert_eq!(call, Some(Call::Release { fencing: 6 }));
        assert!(matches!(change, Some(Change::StoodDown { fencing: 6, .. })));
        assert_eq!(l.role(0), Role::Standby);
        assert_eq!(l.answered(Answer::Released, 100, WALL), None);
        assert_eq!(l.next_call(100_000, true), None);
        assert_eq!(l.next_wake(), None);
        let mut standby = Lease::new(L, 0);
        assert_eq!(standby.close(), (None, None));
    }
}
