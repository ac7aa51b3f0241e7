//! The daemon's one clock. Each turn of the main loop reads it once and
//! passes the [`Now`] down, so every decision made in that turn sees the
//! same moment, and tests that pause tokio's time drive all of it: the
//! batching windows, the retries, the rate limit and the polls.
//!
//! Monotonic time is [`Millis`] on tokio's clock. Its origin lies
//! [`ORIGIN_BEFORE_START`] before the process started, so that moments
//! from before the start (when SQS first handed a message to a process
//! that has since crashed, when CloudFront created that process's last
//! invalidation) still map onto it and keep their order.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// Milliseconds on the caller's clock. Only differences and order matter.
pub type Millis = u64;

/// How far before the process's start the monotonic origin lies: longer
/// than SQS keeps a message (14 days), so that no moment a message or an
/// invalidation of interest can carry maps below it.
pub const ORIGIN_BEFORE_START: Millis = 15 * 86_400_000;

/// One moment, on both clocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// Monotonic: orders events and measures windows.
    pub mono: Millis,
    /// Tokio's instant of the same moment, for the parts that keep
    /// [`Instant`]s (the tracker's view).
    pub instant: Instant,
    /// The wall clock: the budget's month and pacing, CloudFront's and
    /// SQS's timestamps.
    pub wall: SystemTime,
}

impl Now {
    /// A wall-clock moment (CloudFront's creation time, SQS's first receive)
    /// on the monotonic clock, as far as the two clocks agree now.
    pub fn mono_of(&self, wall: SystemTime) -> Millis {
        match wall.duration_since(self.wall) {
            Ok(ahead) => self.mono.saturating_add(ahead.as_millis() as Millis),
            Err(behind) => self
                .mono
                .saturating_sub(behind.duration().as_millis() as Millis),
        }
    }

    /// `self` plus `d`, on the monotonic clock.
    pub fn after(&self, d: Duration) -> Millis {
        self.mono.saturating_add(d.as_millis() as Millis)
    }
}

/// Where the wall clock comes from.
#[derive(Clone, Copy, Debug)]
enum Wall {
    /// The system's: what a running daemon uses.
    System,
    /// The wall time at start plus tokio's elapsed time: tests that pause
    /// tokio's clock move the wall clock with it.
    FollowTokio(SystemTime),
}

/// The process's clock.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: Instant,
    wall: Wall,
}

impl Clock {
    /// Monotonic time on tokio's clock, wall time from the system.
    pub fn new() -> Clock {
        Clock {
            start: Instant::now(),
            wall: Wall::System,
        }
    }

    /// A clock whose wall time moves with tokio's (paused) time, starting
    /// at `wall`.
    pub fn following_tokio(wall: SystemTime) -> Clock {
        Clock {
            start: Instant::now(),
            wall: Wall::FollowTokio(wall),
        }
    }

    /// The current moment. Read once per turn of a loop.
    pub fn now(&self) -> Now {
        let instant = Instant::now();
        let wall = match self.wall {
            Wall::System => SystemTime::now(),
            Wall::FollowTokio(at) => at + instant.saturating_duration_since(self.start),
        };
        Now {
            mono: self.at(instant),
            instant,
            wall,
        }
    }

    /// `t` on the monotonic clock.
    pub fn at(&self, t: Instant) -> Millis {
        ORIGIN_BEFORE_START + t.saturating_duration_since(self.start).as_millis() as Millis
    }

    /// The tokio instant of a monotonic moment, to sleep until it.
    pub fn instant(&self, at: Millis) -> Instant {
        self.start + Duration::from_millis(at.saturating_sub(ORIGIN_BEFORE_START))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn moments_before_the_start_keep_their_order() {
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let clock = Clock::following_tokio(wall);
        tokio::time::advance(Duration::from_secs(5)).await;
        let now = clock.now();
        assert_eq!(now.wall, wall + Duration::from_secs(5));
        assert_eq!(now.mono, ORIGIN_BEFORE_START + 5_000);
        let an_hour_ago = now.mono_of(now.wall - Duration::from_secs(3_600));
        let a_minute_ago = now.mono_of(now.wall - Duration::from_secs(60));
        assert!(an_hour_ago < a_minute_ago && a_minute_ago < now.mono);
        assert_eq!(now.mono - a_minute_ago, 60_000);
        assert_eq!(
            now.mono_of(now.wall + Duration::from_secs(1)),
            now.mono + 1_000
        );
        assert_eq!(
            clock.instant(now.after(Duration::from_secs(2))),
            now.instant + Duration::from_secs(2)
        );
    }
}
