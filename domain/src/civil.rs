//! Calendar dates without a clock: "today in Asia/Jakarta" from a Unix time the caller reads.

use time::{Date, Month, OffsetDateTime, UtcOffset};

/// Asia/Jakarta (WIB) is UTC+7 all year; Indonesia has no daylight saving time.
const JAKARTA_OFFSET_SECONDS: i32 = 7 * 3600;

/// The calendar date in Asia/Jakarta at `unix_seconds` (seconds since 1970-01-01T00:00:00Z).
///
/// This is the reference date the NIK/KK century rule wants. The caller reads the clock
/// (`SystemTime::now()` in a binary, a fixed value in tests) so that this crate never does.
/// Times outside the range `time` supports (years ±9999) saturate to its smallest or largest
/// date.
pub fn jakarta_today(unix_seconds: i64) -> Date {
    let offset = UtcOffset::from_whole_seconds(JAKARTA_OFFSET_SECONDS).unwrap_or(UtcOffset::UTC);
    match OffsetDateTime::from_unix_timestamp(unix_seconds) {
        Ok(t) => t.to_offset(offset).date(),
        Err(_) if unix_seconds < 0 => Date::MIN,
        Err(_) => Date::MAX,
    }
}

/// Parses an ISO 8601 calendar date written `YYYY-MM-DD` (exactly ten ASCII characters).
pub(crate) fn parse_iso_date(s: &str) -> Option<Date> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let month = Month::try_from(u8::try_from(month).ok()?).ok()?;
    Date::from_calendar_date(i32::try_from(year).ok()?, month, u8::try_from(day).ok()?).ok()
}

/// The value of a run of ASCII digits, or `None` if any byte is not one.
pub(crate) fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, &c| {
        if !c.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u32::from(c - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: Month, d: u8) -> Date {
        Date::from_calendar_date(y, m, d).expect("test date is valid")
    }

    #[test]
    fn jakarta_is_seven_hours_ahead_of_utc() {
        // 2025-06-29T16:59:59Z is 23:59:59 in Jakarta; one second later it is the 30th.
        assert_eq!(jakarta_today(1_751_216_399), date(2025, Month::June, 29));
        assert_eq!(jakarta_today(1_751_216_400), date(2025, Month::June, 30));
        assert_eq!(jakarta_today(0), date(1970, Month::January, 1));
        assert_eq!(jakarta_today(i64::MAX), Date::MAX);
        assert_eq!(jakarta_today(i64::MIN), Date::MIN);
    }

    #[test]
    fn iso_dates() {
        assert_eq!(
            parse_iso_date("2000-02-29"),
            Some(date(2000, Month::February, 29))
        );
        for bad in [
            "2003-02-29",
            "2000-2-29",
            "2000-02-29T00",
            "20000229",
            "２000-02-29",
            "",
        ] {
            assert_eq!(parse_iso_date(bad), None, "{bad}");
        }
    }
}
