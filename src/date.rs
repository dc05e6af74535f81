//! Calendar dates from the system clock, for the formats the server writes: log timestamps, flychat's
//! `toISOString()` dates and the HTTP `Date` field (`http::response` formats it from `civil_from_days`).

use std::time::{SystemTime, UNIX_EPOCH};

/// `now` as `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC; times before 1970 (a clock
/// set wrong) print as the epoch.
pub fn iso_timestamp(now: SystemTime) -> String {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let secs_of_day = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60,
        since_epoch.subsec_millis()
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian
/// calendar, after Howard Hinnant's `civil_from_days`, shifted so that years
/// start on 1 March and the leap day falls last.
pub fn civil_from_days(days: u64) -> (u64, u64, u64) {
    const DAYS_PER_ERA: u64 = 146_097; // 400 Gregorian years
    let z = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = z / DAYS_PER_ERA;
    let doe = z % DAYS_PER_ERA; // day of era, 0..=146_096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the March year
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = era * 400 + yoe + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at_millis(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn timestamps() {
        let cases = [
            (0, "1970-01-01T00:00:00.000Z"),
            (1_795_450_801_123, "2026-11-23T16:20:01.123Z"),
            (1_795_349_539_016, "2026-11-22T12:12:19.016Z"),
            (951_782_400_999, "2000-02-29T00:00:00.999Z"),
            (1_709_251_199_999, "2024-02-29T23:59:59.999Z"),
            (951_868_800_000, "2000-03-01T00:00:00.000Z"),
            (4_133_937_600_007, "2100-12-31T12:00:00.007Z"),
        ];
        for (ms, expected) in cases {
            assert_eq!(iso_timestamp(at_millis(ms)), expected, "{ms}");
        }
        let before_epoch = UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(iso_timestamp(before_epoch), "1970-01-01T00:00:00.000Z");
    }

    /// Every day for 1000 years follows the previous one.
    #[test]
    fn civil_dates_are_consecutive() {
        let mut prev = civil_from_days(0);
        assert_eq!(prev, (1970, 1, 1));
        for days in 1..366_000 {
            let next = civil_from_days(days);
            let (y, m, d) = prev;
            let follows = next == (y, m, d + 1)
                || (next == (y, m + 1, 1) && d >= 28)
                || (next == (y + 1, 1, 1) && (m, d) == (12, 31));
            assert!(follows, "{prev:?} then {next:?}");
            prev = next;
        }
    }
}
