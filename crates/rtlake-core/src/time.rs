//! Time helpers: Seoul time (KST, UTC+9, no daylight saving) for partitions and timestamps.

use chrono::{DateTime, FixedOffset, NaiveDate, Timelike};

/// Korea Standard Time, UTC+09:00. Korea has no daylight saving, so a fixed offset is exact.
pub fn kst() -> FixedOffset {
    // 9 hours is within chrono's ±24 h range: the constructor cannot fail.
    FixedOffset::east_opt(9 * 3600).expect("UTC+9 is a valid offset")
}

/// Parses an RFC 3339 timestamp with an offset (`2025-10-01T08:00:15+09:00`).
pub fn parse_rfc3339(s: &str) -> Result<DateTime<FixedOffset>, chrono::ParseError> {
    DateTime::parse_from_rfc3339(s)
}

/// Formats a time the way Python's `datetime.isoformat()` does for an aware datetime:
/// seconds, microseconds only when non-zero, and a `+09:00`-style offset.
pub fn isoformat(t: &DateTime<FixedOffset>) -> String {
    if t.nanosecond() / 1000 == 0 {
        t.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.6f%:z").to_string()
    }
}

/// The lake's partition of an instant: its date and hour in KST.
pub fn kst_partition(t: &DateTime<impl chrono::TimeZone>) -> (NaiveDate, u32) {
    let local = t.with_timezone(&kst());
    (local.date_naive(), local.hour())
}

/// Days since 1970-01-01 of a date, Arrow's `Date32` representation.
pub fn date32(d: NaiveDate) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
    (d - epoch).num_days() as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_in_seoul_time() {
        // 23:30 UTC on 30 Sep is 08:30 on 1 Oct in Seoul.
        let t = parse_rfc3339("2025-09-30T23:30:00Z").unwrap();
        let (d, h) = kst_partition(&t);
        assert_eq!(d.to_string(), "2025-10-01");
        assert_eq!(h, 8);
        assert_eq!(date32(d), 20362);
    }

    #[test]
    fn isoformat_matches_python() {
        let t = parse_rfc3339("2025-10-01T08:00:15+09:00").unwrap();
        assert_eq!(isoformat(&t), "2025-10-01T08:00:15+09:00");
        let t = parse_rfc3339("2025-10-01T08:00:15.5+09:00").unwrap();
        assert_eq!(isoformat(&t), "2025-10-01T08:00:15.500000+09:00");
    }
}
