//! The UTC calendar month AWS bills by, and the pacing allowance within it.
//! Civil-date arithmetic is done here on whole days since 1970-01-01
//! (Howard Hinnant's `days_from_civil` / `civil_from_days`), so no date crate
//! is needed and every result is exact.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::config::{BudgetConfig, Pacing};

const SECONDS_PER_DAY: i64 = 86_400;

/// The first year a [`Month`] can name: times before the Unix epoch count
/// as its first month.
pub const MIN_YEAR: i32 = 1970;
/// The last year a [`Month`] can name (`YYYY` has four digits); later times
/// count as its last month.
pub const MAX_YEAR: i32 = 9999;

/// Days from 1970-01-01 to the given proleptic Gregorian date.
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let (month, day) = (i64::from(month), i64::from(day));
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let mp = (month + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + day - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// The date (year, month 1..=12, day 1..=31) of a day counted from 1970-01-01.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both are in range by construction: month 1..=12, day 1..=31.
    (year, month as u32, day as u32)
}

/// Seconds since the epoch as a time; negative ones lie before it.
fn time_at(seconds: i64) -> SystemTime {
    let magnitude = Duration::from_secs(seconds.unsigned_abs());
    if seconds >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

/// A time as whole seconds since the epoch, within the years a [`Month`]
/// can name (earlier times give 0, later ones the last second of 9999).
fn seconds_of(time: SystemTime) -> i64 {
    let last = days_from_civil(i64::from(MAX_YEAR) + 1, 1, 1) * SECONDS_PER_DAY - 1;
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(last).min(last),
        Err(_) => 0,
    }
}

/// A calendar month in UTC, the period AWS bills invalidation paths by.
/// Ordered by time; written `YYYY-MM` (`2026-11`) in JSON and text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    /// 1970..=9999.
    year: i32,
    /// 1..=12.
    month: u32,
}

impl Month {
    /// The month `year-month`, or `None` outside 1970-01..=9999-12.
    pub fn new(year: i32, month: u32) -> Option<Month> {
        ((MIN_YEAR..=MAX_YEAR).contains(&year) && (1..=12).contains(&month))
            .then_some(Month { year, month })
    }

    /// The month `time` falls in (UTC). Times before 1970 count as 1970-01,
    /// times after 9999 as 9999-12.
    pub fn of(time: SystemTime) -> Month {
        let (year, month, _) = civil_from_days(seconds_of(time).div_euclid(SECONDS_PER_DAY));
        // seconds_of keeps the year within MIN_YEAR..=MAX_YEAR, so it fits.
        Month {
            year: year as i32,
            month,
        }
    }

    /// The year, e.g. 2026.
    pub fn year(self) -> i32 {
        self.year
    }

    /// The month of the year, 1 (January) to 12 (December).
    pub fn number(self) -> u32 {
        self.month
    }

    /// Seconds since the epoch at 00:00:00 UTC on the first.
    fn start_seconds(self) -> i64 {
        days_from_civil(i64::from(self.year), self.month, 1) * SECONDS_PER_DAY
    }

    /// Seconds since the epoch at 00:00:00 UTC on the first of the next month.
    fn end_seconds(self) -> i64 {
        let (year, month) = if self.month == 12 {
            (i64::from(self.year) + 1, 1)
        } else {
            (i64::from(self.year), self.month + 1)
        };
        days_from_civil(year, month, 1) * SECONDS_PER_DAY
    }

    /// 00:00:00 UTC on the first day of the month.
    pub fn start(self) -> SystemTime {
        time_at(self.start_seconds())
    }

    /// 00:00:00 UTC on the first day of the next month: the first instant
    /// that is no longer in this one.
    pub fn end(self) -> SystemTime {
        time_at(self.end_seconds())
    }

    /// How long the month lasts: 28, 29, 30 or 31 days.
    pub fn length(self) -> Duration {
        Duration::from_secs((self.end_seconds() - self.start_seconds()).unsigned_abs())
    }

    /// How much of the month has passed at `now`: zero before its start,
    /// the whole length from its end on.
    pub fn elapsed(self, now: SystemTime) -> Duration {
        now.duration_since(self.start())
            .unwrap_or(Duration::ZERO)
            .min(self.length())
    }

    /// The share of the month passed at `now`, from 0.0 (at or before its
    /// start) to 1.0 (at or after its end).
    pub fn elapsed_fraction(self, now: SystemTime) -> f64 {
        self.elapsed(now).as_secs_f64() / self.length().as_secs_f64()
    }

    /// The following month. 9999-12 is its own next: no later month can be
    /// named (and none occurs).
    pub fn next(self) -> Month {
        match self.month {
            12 if self.year == MAX_YEAR => self,
            12 => Month {
                year: self.year + 1,
                month: 1,
            },
            m => Month {
                year: self.year,
                month: m + 1,
            },
        }
    }

    /// The month before. 1970-01 is its own previous.
    pub fn previous(self) -> Month {
        match self.month {
            1 if self.year == MIN_YEAR => self,
            1 => Month {
                year: self.year - 1,
                month: 12,
            },
            m => Month {
                year: self.year,
                month: m - 1,
            },
        }
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// Why a text is not a month.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{text:?} is not a month: expected YYYY-MM (year {MIN_YEAR} to {MAX_YEAR}, month 01 to 12)"
)]
pub struct ParseMonthError {
    /// The text as given.
    pub text: String,
}

impl FromStr for Month {
    type Err = ParseMonthError;

    fn from_str(text: &str) -> Result<Month, ParseMonthError> {
        let error = || ParseMonthError {
            text: text.to_owned(),
        };
        let bytes = text.as_bytes();
        let well_formed = bytes.len() == 7
            && bytes[4] == b'-'
            && bytes[..4].iter().chain(&bytes[5..]).all(u8::is_ascii_digit);
        if !well_formed {
            return Err(error());
        }
        let year = text[..4].parse().map_err(|_| error())?;
        let month = text[5..].parse().map_err(|_| error())?;
        Month::new(year, month).ok_or_else(error)
    }
}

impl Serialize for Month {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Month {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Month, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The paths the budget allows to have been spent by `now` in the month
/// `now` falls in.
///
/// - `pacing = "none"`: `monthly_paths`, from the first second.
/// - `pacing = "even"`: `floor(monthly_paths * elapsed / length) +
///   burst_paths`, capped at the monthly budget (`monthly_paths`): it grows
///   with the month and never allows more than the month's budget.
///
/// Elapsed time is counted in whole seconds, so the allowance is exact
/// integer arithmetic and never decreases within a month.
pub fn allowance(config: &BudgetConfig, now: SystemTime) -> u64 {
    match config.pacing {
        Pacing::None => config.monthly_paths,
        Pacing::Even => {
            let month = Month::of(now);
            paced(
                config.monthly_paths,
                config.burst_paths,
                month.elapsed(now).as_secs(),
                month.length().as_secs(),
            )
        }
    }
}

/// `min(monthly, floor(monthly * elapsed / length) + burst)`, without
/// overflow; `elapsed` is capped at `length`.
pub(crate) fn paced(monthly: u64, burst: u64, elapsed: u64, length: u64) -> u64 {
    let share = if length == 0 {
        monthly
    } else {
        let share = u128::from(monthly) * u128::from(elapsed.min(length)) / u128::from(length);
        // share <= monthly, so it fits.
        share as u64
    };
    share.saturating_add(burst).min(monthly)
}
