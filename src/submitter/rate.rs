//! The account's CreateInvalidation rate, as a generic cell rate algorithm
//! on the daemon's own clock: `create_per_second` on average, up to
//! `create_burst` at once. Pure arithmetic on [`Millis`], so the paused-time
//! tests of the whole daemon drive it like everything else.

use crate::clock::Millis;

/// The rate limit's state: the theoretical arrival time of the next call.
#[derive(Clone, Debug)]
pub struct RateLimit {
    /// Milliseconds between calls at the sustained rate.
    interval: f64,
    /// How far ahead of the sustained rate a burst may run.
    tolerance: f64,
    /// When the next call would be due at the sustained rate.
    tat: f64,
}

impl RateLimit {
    /// `per_second` calls a second on average, `burst` at once. The
    /// configuration keeps `per_second` positive and finite; a rate too
    /// small to matter only makes the interval very long, never a panic.
    pub fn new(per_second: f64, burst: u32) -> RateLimit {
        let interval = if per_second > 0.0 {
            1000.0 / per_second
        } else {
            f64::MAX
        };
        RateLimit {
            interval,
            tolerance: interval * f64::from(burst.max(1) - 1),
            tat: 0.0,
        }
    }

    /// Takes a call at `now` if the rate allows it; else the moment it will.
    pub fn take(&mut self, now: Millis) -> Result<(), Millis> {
        let now = now as f64;
        let tat = self.tat.max(now);
        let earliest = tat - self.tolerance;
        if earliest > now {
            return Err(earliest.ceil().min(u64::MAX as f64) as Millis);
        }
        self.tat = tat + self.interval;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let mut r = RateLimit::new(0.5, 3);
        let t0 = 1_000_000;
        for _ in 0..3 {
            assert_eq!(r.take(t0), Ok(()));
        }
        // The fourth waits one interval (2 s) after the first.
        assert_eq!(r.take(t0), Err(t0 + 2_000));
        assert_eq!(r.take(t0 + 1_999), Err(t0 + 2_000));
        assert_eq!(r.take(t0 + 2_000), Ok(()));
        assert_eq!(r.take(t0 + 2_000), Err(t0 + 4_000));
        // Idle time earns back the burst, no more.
        let later = t0 + 60_000;
        for _ in 0..3 {
            assert_eq!(r.take(later), Ok(()));
        }
        assert!(r.take(later).is_err());
    }

    #[test]
    fn over_any_window_no_more_than_burst_plus_rate_times_window() {
        let mut r = RateLimit::new(0.5, 3);
        let mut taken = Vec::new();
        let mut t = 0;
        while t < 600_000 {
            if r.take(t).is_ok() {
                taken.push(t);
            }
            t += 137;
        }
        for (i, &start) in taken.iter().enumerate() {
            let in_window = taken[i..]
                .iter()
                .take_while(|&&x| x < start + 60_000)
                .count();
            assert!(in_window <= 3 + 30, "{in_window} calls within a minute");
        }
        assert!(taken.len() >= 300, "{}", taken.len());
    }

    #[test]
    fn a_vanishing_rate_waits_and_never_panics() {
        let mut r = RateLimit::new(1e-300, 1);
        assert_eq!(r.take(5), Ok(()));
        assert!(r.take(6).unwrap_err() > 1_000_000_000_000);
        let mut zero = RateLimit::new(0.0, 0);
        assert_eq!(zero.take(0), Ok(()));
        assert!(zero.take(1).is_err());
    }
}
