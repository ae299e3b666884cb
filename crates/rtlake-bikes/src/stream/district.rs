//! `gold.district_5min`: 5-minute tumbling windows per district, as per-partition partials.
//!
//! A district's stations are spread over every input partition, so each partition keeps its own
//! windows under its own watermark and writes its partial when final (append mode); the
//! catalog's view `gold.district_5min_total` sums the partials. Per window and partition:
//! `rentals`/`returns` sum the change rule's counts of in-window snapshots; `bikes_parked` sums,
//! over stations, the bikes of each station's last in-window snapshot; `stations_empty` counts
//! stations whose last in-window snapshot has 0 bikes. Late snapshots go to `_rejected`.

use super::Stations;
use super::gold::{StationWindows, delta_since, late_error, remember};
use arrow::array::{
    ArrayRef, Date32Builder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::SchemaRef;
use chrono::DateTime;
use rtlake_core::schema::RejectReason;
use rtlake_stream::input::EpochInput;
use rtlake_stream::operator::last_offsets;
use rtlake_stream::operator::{Emitted, Operator, PartitionState, PerPartition, Rejections};
use rtlake_stream::source::RawMessage;
use rtlake_stream::window::WindowRow;
use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

const FIVE_MINUTES: i64 = 300_000_000;
const BIKES: usize = 0;
const RENTALS: usize = 1;
const RETURNS: usize = 2;

/// The district operator of every partition this worker holds. Windows are keyed by
/// (district, station), so each station's last value stays apart.
pub struct District5MinOperator {
    parts: PerPartition<StationWindows<(String, String)>>,
}

/// A window key, (district, station), seen through borrowed parts: an event's key is looked up
/// in the windows without copying its two strings (they are copied once, for a new key).
trait Pair {
    fn pair(&self) -> (&str, &str);
}

impl Pair for (String, String) {
    fn pair(&self) -> (&str, &str) {
        (&self.0, &self.1)
    }
}

impl Pair for (&str, &str) {
    fn pair(&self) -> (&str, &str) {
        *self
    }
}

impl<'a> Borrow<dyn Pair + 'a> for (String, String) {
    fn borrow(&self) -> &(dyn Pair + 'a) {
        self
    }
}

// Equal and hashed as the owned tuple is, so a borrowed lookup finds what it was filed under.
impl PartialEq for dyn Pair + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.pair() == other.pair()
    }
}

impl Eq for dyn Pair + '_ {}

// Each string in turn, as the owned tuple hashes.
impl Hash for dyn Pair + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let (a, b) = self.pair();
        a.hash(state);
        b.hash(state);
    }
}

/// One partial row: (district, window start, window end, partition) → figures.
type Partials = BTreeMap<(String, i64, i64, i32), [i64; 4]>;

impl District5MinOperator {
    /// An operator with `lateness` µs of allowed lateness.
    pub fn new(lateness: i64) -> Self {
        Self {
            parts: StationWindows::per_partition(FIVE_MINUTES, lateness, 3),
        }
    }
}

impl Operator for District5MinOperator {
    fn kind(&self) -> &'static str {
        "district-5min"
    }

    fn schema(&self) -> SchemaRef {
        crate::tables::gold_district_5min()
    }

    fn process(
        &mut self,
        input: &EpochInput<'_>,
        owed: &dyn Fn(&RawMessage) -> bool,
        rejected: &mut Rejections<'_>,
        sink: &str,
    ) -> rtlake_stream::Result<Emitted> {
        for (m, decoded, district) in Stations::of(input, "district-5min")?.iter(input.msgs) {
            if !owed(m) {
                continue;
            }
            let Ok(s) = decoded else { continue };
            let t = s.polled_at.timestamp_micros();
            let part = self.parts.get(m.partition);
            let Some((rentals, returns)) =
                delta_since(part.last.get(&s.station_id).copied(), t, s.bikes_parked)
            else {
                continue;
            };
            let key = (district.map_or("unknown", |d| &**d), s.station_id.as_str());
            let values = [
                f64::from(s.bikes_parked),
                f64::from(rentals),
                f64::from(returns),
            ];
            let own = || (key.0.to_owned(), key.1.to_owned());
            match part.windows.process_by(&key as &dyn Pair, own, t, &values) {
                Ok(()) => {
                    remember(&mut part.last, &s.station_id, t, s.bikes_parked);
                }
                Err(late) => rejected.push(m, RejectReason::Late, sink, || late_error(m, &late)),
            }
        }
        let ends = last_offsets(input, owed);
        let mut partials = Partials::new();
        let mut origin_of: HashMap<i32, i64> = HashMap::new();
        for (p, part) in self.parts.iter_mut() {
            let Some(end) = ends.get(p) else { continue };
            origin_of.insert(*p, *end);
            for WindowRow {
                key: (district, _),
                start,
                end,
                acc,
                ..
            } in part.windows.emit()
            {
                let row = partials.entry((district, start, end, *p)).or_default();
                row[0] += acc.sum[RENTALS] as i64;
                row[1] += acc.sum[RETURNS] as i64;
                row[2] += acc.last[BIKES] as i64;
                row[3] += i64::from(acc.last[BIKES] == 0.0);
            }
        }
        let origins = partials
            .keys()
            .map(|(_, _, _, p)| (*p, origin_of[p]))
            .collect();
        Ok(Emitted {
            batch: to_batch(&partials),
            origins,
        })
    }

    fn state(&self) -> Option<&dyn PartitionState> {
        Some(&self.parts)
    }

    fn state_mut(&mut self) -> Option<&mut dyn PartitionState> {
        Some(&mut self.parts)
    }
}

fn to_batch(partials: &Partials) -> RecordBatch {
    let mut district = StringBuilder::new();
    let (mut start, mut end) = (
        TimestampMicrosecondBuilder::new(),
        TimestampMicrosecondBuilder::new(),
    );
    let mut partition = Int32Builder::new();
    let mut figures: [Int64Builder; 4] = Default::default();
    let (mut date, mut hour) = (Date32Builder::new(), Int32Builder::new());
    for ((d, s, e, p), row) in partials {
        district.append_value(d);
        start.append_value(*s);
        end.append_value(*e);
        partition.append_value(*p);
        for (b, v) in figures.iter_mut().zip(row) {
            b.append_value(*v);
        }
        let (day, h) =
            crate::seoul::partition(&DateTime::from_timestamp_micros(*s).unwrap_or_default());
        date.append_value(rtlake_core::time::date32(day));
        hour.append_value(h as i32);
    }
    let ts =
        |x: &mut TimestampMicrosecondBuilder| Arc::new(x.finish().with_timezone("UTC")) as ArrayRef;
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(district.finish()),
        ts(&mut start),
        ts(&mut end),
        Arc::new(partition.finish()),
    ];
    cols.extend(figures.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    cols.push(Arc::new(date.finish()));
    cols.push(Arc::new(hour.finish()));
    // The columns follow the schema by construction.
    RecordBatch::try_new(crate::tables::gold_district_5min(), cols)
        .expect("district columns match the schema")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use rtlake_stream::rejected::RejectedColumns;

    fn event(offset: i64, station: &str, lat: &str, time: &str, bikes: i32) -> RawMessage {
        let v = format!(
            r#"{{"rackTotCnt":"20","stationName":"x","parkingBikeTotCnt":"{bikes}","shared":"0","stationLatitude":"{lat}","stationLongitude":"126.91062927","stationId":"{station}","polledAt":"2025-10-01T{time}+09:00"}}"#
        );
        RawMessage {
            partition: 0,
            offset,
            key: Some(station.as_bytes().to_vec().into()),
            payload: Some(v.into_bytes().into()),
            timestamp: None,
        }
    }

    #[test]
    fn a_held_district_and_station_are_found_without_copies() {
        use rtlake_stream::window::{OutputMode, WindowOperator, WindowSpec};
        let mut w: WindowOperator<(String, String)> = WindowOperator::new(
            WindowSpec::Tumbling { size: FIVE_MINUTES },
            0,
            OutputMode::Complete,
            1,
        );
        let mut made = Vec::new();
        let events = [
            ("Mapo", "ST-2"),
            ("Mapo", "ST-10"),
            ("Jung", "ST-2"),
            ("Mapo", "ST-2"),
        ];
        for (i, key) in events.into_iter().enumerate() {
            let own = || {
                made.push(key);
                (key.0.to_string(), key.1.to_string())
            };
            w.process_by(&key as &dyn Pair, own, i as i64, &[1.0])
                .unwrap();
        }
        assert_eq!(
            made,
            events[..3],
            "the fourth event's key is held: found, not copied"
        );
        let keys: Vec<_> = w.emit().into_iter().map(|r| (r.key, r.acc.count)).collect();
        let k = |d: &str, s: &str| (d.to_string(), s.to_string());
        // Emitted in key order, whatever the hashing.
        assert_eq!(
            keys,
            vec![
                (k("Jung", "ST-2"), 1),
                (k("Mapo", "ST-10"), 1),
                (k("Mapo", "ST-2"), 2)
            ]
        );
    }

    #[test]
    fn partials_sum_last_snapshots_and_changes_per_district() {
        let mapo = "37.5556488";
        let msgs = vec![
            event(0, "ST-1", mapo, "08:00:00", 5),
            event(1, "ST-2", mapo, "08:00:00", 0),
            event(2, "ST-1", mapo, "08:01:00", 3), // 2 rentals
            event(3, "ST-2", mapo, "08:01:00", 1), // 1 return
            event(4, "ST-2", mapo, "08:02:00", 0), // 1 rental; last is empty
            event(5, "ST-1", mapo, "08:20:00", 3), // watermark passes 08:05 (lateness 10 min)
            event(6, "ST-3", mapo, "08:04:00", 9), // late: below 08:10
        ];
        let input = super::super::epoch(&msgs, Utc::now());
        let mut cols = RejectedColumns::default();
        let mut op = District5MinOperator::new(600_000_000);
        let out = op
            .process(
                &input,
                &|_| true,
                &mut Rejections::new(&mut cols, &|_| true, "t", input.now),
                "gold.district_5min",
            )
            .unwrap();
        assert_eq!(out.batch.num_rows(), 1, "only 08:00-08:05 is final");
        let col = |n: &str| {
            out.batch
                .column_by_name(n)
                .unwrap()
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .unwrap()
                .value(0)
        };
        assert_eq!(
            (
                col("rentals"),
                col("returns"),
                col("bikes_parked"),
                col("stations_empty")
            ),
            (3, 1, 3, 1)
        );
        assert_eq!(out.origins, vec![(0, 6)]);
        let rej = cols.finish();
        assert_eq!(rej.num_rows(), 1);
        let reason = rej
            .column_by_name("reason")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap()
            .value(0)
            .to_string();
        assert_eq!(reason, "late");
    }
}
