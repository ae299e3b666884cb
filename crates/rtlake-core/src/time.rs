//! Time helpers: RFC 3339, and the date/hour partition of an instant at a fixed UTC offset.

use chrono::{DateTime, FixedOffset, NaiveDate, Timelike};
use serde::{Deserialize, Serialize};

/// A fixed offset from UTC (`+09:00`, `-05:00`, `Z`): the time zone that a table's `date` and
/// `hour` partitions are in. A fixed offset, not a named zone, so that an hour partition is
/// always an hour (no daylight-saving hour of 0 or 2 hours).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UtcOffset(pub FixedOffset);

impl UtcOffset {
    /// The offset of `hours` east of UTC.
    pub fn hours(hours: i32) -> Self {
        Self(FixedOffset::east_opt(hours * 3600).unwrap_or(FixedOffset::east_opt(0).expect("UTC")))
    }
}

impl std::str::FromStr for UtcOffset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("z") || s.eq_ignore_ascii_case("utc") {
            return Ok(Self::hours(0));
        }
        s.parse::<FixedOffset>()
            .map(Self)
            .map_err(|_| format!("`{s}` is not a UTC offset (write +09:00, -05:00 or UTC)"))
    }
}

impl std::fmt::Display for UtcOffset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for UtcOffset {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for UtcOffset {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
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

/// The partition of an instant: its date and hour at `offset`.
pub fn partition(t: &DateTime<impl chrono::TimeZone>, offset: UtcOffset) -> (NaiveDate, u32) {
    let local = t.with_timezone(&offset.0);
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
    fn partitions_are_at_the_offset() {
        // 23:30 UTC on 30 Sep is 08:30 on 1 Oct at +09:00, and 19:30 on 30 Sep at -04:00.
        let t = parse_rfc3339("2025-09-30T23:30:00Z").unwrap();
        let (d, h) = partition(&t, "+09:00".parse().unwrap());
        assert_eq!(d.to_string(), "2025-10-01");
        assert_eq!(h, 8);
        assert_eq!(date32(d), 20362);
        let (d, h) = partition(&t, "-04:00".parse().unwrap());
        assert_eq!((d.to_string(), h), ("2025-09-30".into(), 19));
        assert_eq!("UTC".parse::<UtcOffset>().unwrap(), UtcOffset::hours(0));
        assert!(
            "Mars/Olympus"
                .parse::<UtcOffset>()
                .unwrap_err()
                .contains("Mars")
        );
    }

    #[test]
    fn isoformat_matches_python() {
        let t = parse_rfc3339("2025-10-01T08:00:15+09:00").unwrap();
        assert_eq!(isoformat(&t), "2025-10-01T08:00:15+09:00");
        let t = parse_rfc3339("2025-10-01T08:00:15.5+09:00").unwrap();
        assert_eq!(isoformat(&t), "2025-10-01T08:00:15.500000+09:00");
    }
}
