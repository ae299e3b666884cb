//! Seoul time (KST, UTC+9, no daylight saving): the time of the API's polls and of the bike
//! tables' `date` and `hour` partitions.

use chrono::{DateTime, FixedOffset, NaiveDate};
use rtlake_core::time::UtcOffset;

/// Korea Standard Time, UTC+09:00. Korea has no daylight saving, so a fixed offset is exact.
pub fn kst() -> FixedOffset {
    KST.0
}

/// [`kst`] as a partition offset.
pub const KST: UtcOffset = match FixedOffset::east_opt(9 * 3600) {
    Some(o) => UtcOffset(o),
    None => panic!("UTC+9 is a valid offset"),
};

/// A bike table's partition of an instant: its date and hour in Seoul.
pub fn partition(t: &DateTime<impl chrono::TimeZone>) -> (NaiveDate, u32) {
    rtlake_core::time::partition(t, KST)
}

#[cfg(test)]
mod tests {
    #[test]
    fn partitions_are_in_seoul_time() {
        // 23:30 UTC on 30 Sep is 08:30 on 1 Oct in Seoul.
        let t = rtlake_core::time::parse_rfc3339("2025-09-30T23:30:00Z").unwrap();
        let (d, h) = super::partition(&t);
        assert_eq!((d.to_string(), h), ("2025-10-01".into(), 8));
    }
}
