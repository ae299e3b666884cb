//! `gold.station_hourly`: 1-hour tumbling windows per station under each partition's watermark,
//! append mode (a window is written once, when final).
//!
//! Per window: `snapshots` counts the station's in-window snapshots; `rentals`/`returns` sum the
//! change rule's counts of those snapshots (the silver rows); `avg/min/max_bikes_parked` are over
//! the snapshots; `empty_minutes` sums, over in-window snapshots with 0 bikes, the minutes until
//! the station's next snapshot, capped at the window end. Late snapshots go to `_rejected` as
//! `late`; stale ones are left to silver, which rejects them.

use super::Stations;
use crate::changes::{Last, Outcome, rule};
use arrow::array::{
    ArrayRef, Date32Builder, Float64Builder, Int32Builder, Int64Builder, RecordBatch,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::SchemaRef;
use chrono::DateTime;
use rtlake_core::schema::RejectReason;
use rtlake_stream::input::EpochInput;
use rtlake_stream::operator::{
    Emitted, KeyMap, Operator, PartitionState, PerPartition, Rejections, last_offsets,
};
use rtlake_stream::source::RawMessage;
use rtlake_stream::window::{OutputMode, WindowOperator, WindowRow, WindowSpec};
use std::hash::Hash;
use std::sync::Arc;

const HOUR: i64 = 3_600_000_000;
const BIKES: usize = 0;
const RENTALS: usize = 1;
const RETURNS: usize = 2;
const EMPTY_MINUTES: usize = 3;

/// A partition's windows of a per-station operator, and each station's previous accepted
/// snapshot: (time, bikes).
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct StationWindows<K: Ord + Hash + Clone> {
    #[serde(bound(
        serialize = "K: serde::Serialize",
        deserialize = "K: serde::Deserialize<'de>"
    ))]
    pub(crate) windows: WindowOperator<K>,
    pub(crate) last: KeyMap<String, (i64, i32)>,
}

impl<K: Ord + Hash + Clone + Send + Sync + 'static> StationWindows<K> {
    /// Per-partition state of tumbling windows of `size` µs over `columns` values.
    pub(crate) fn per_partition(size: i64, lateness: i64, columns: usize) -> PerPartition<Self> {
        let new = move || Self {
            windows: WindowOperator::new(
                WindowSpec::Tumbling { size },
                lateness,
                OutputMode::Append,
                columns,
            ),
            last: KeyMap::default(),
        };
        PerPartition::new(new, |s| s.windows.state_len())
    }
}

/// The hourly operator of every partition this worker holds.
pub struct HourlyOperator {
    parts: PerPartition<StationWindows<String>>,
}

impl HourlyOperator {
    /// An operator with `lateness` µs of allowed lateness.
    pub fn new(lateness: i64) -> Self {
        Self {
            parts: StationWindows::per_partition(HOUR, lateness, 4),
        }
    }
}

/// The change since a station's previous accepted snapshot `last` (time, bikes), by the change
/// rule (`rtlake_bikes::changes::rule`): `None` if the snapshot is stale (not after it), else
/// (rentals, returns), zero for the first snapshot and across a gap over 600 s.
pub(crate) fn delta_since(last: Option<(i64, i32)>, t: i64, bikes: i32) -> Option<(i32, i32)> {
    let snap = |(polled_at, bikes): (i64, i32)| Last { polled_at, bikes };
    match rule(last.map(snap), snap((t, bikes))) {
        Outcome::Stale { .. } => None,
        Outcome::Change {
            rentals, returns, ..
        } => Some((rentals, returns)),
        Outcome::First | Outcome::Reset { .. } | Outcome::Unchanged => Some((0, 0)),
    }
}

/// Keeps `(t, bikes)` as station `id`'s last snapshot; the id is copied only for a station new
/// to the map (once per station, not once per event).
pub(crate) fn remember(last: &mut KeyMap<String, (i64, i32)>, id: &str, t: i64, bikes: i32) {
    match last.get_mut(id) {
        Some(kept) => *kept = (t, bikes),
        None => {
            last.insert(id.to_owned(), (t, bikes));
        }
    }
}

/// The message text of a late snapshot.
pub fn late_error(m: &RawMessage, late: &rtlake_stream::window::Late) -> String {
    late.describe("polledAt", m.partition)
}

impl Operator for HourlyOperator {
    fn kind(&self) -> &'static str {
        "station-hourly"
    }

    fn schema(&self) -> SchemaRef {
        crate::tables::gold_station_hourly()
    }

    fn process(
        &mut self,
        input: &EpochInput<'_>,
        owed: &dyn Fn(&RawMessage) -> bool,
        rejected: &mut Rejections<'_>,
        sink: &str,
    ) -> rtlake_stream::Result<Emitted> {
        for (m, decoded, _) in Stations::of(input, "station-hourly")?.iter(input.msgs) {
            if !owed(m) {
                continue;
            }
            let Ok(s) = decoded else { continue };
            let t = s.polled_at.timestamp_micros();
            let part = self.parts.get(m.partition);
            let last = part.last.get(&s.station_id).copied();
            // Stale: silver rejects it.
            let Some((rentals, returns)) = delta_since(last, t, s.bikes_parked) else {
                continue;
            };
            let values = [
                f64::from(s.bikes_parked),
                f64::from(rentals),
                f64::from(returns),
                0.0,
            ];
            let id = s.station_id.as_str();
            match part.windows.process_by(id, || id.to_owned(), t, &values) {
                Ok(()) => {
                    if let Some((lt, 0)) = last {
                        let end = lt.div_euclid(HOUR) * HOUR + HOUR;
                        let minutes = (t.min(end) - lt) as f64 / 60e6;
                        part.windows.adjust(id, lt, EMPTY_MINUTES, minutes);
                    }
                    remember(&mut part.last, &s.station_id, t, s.bikes_parked);
                }
                Err(late) => rejected.push(m, RejectReason::Late, sink, || late_error(m, &late)),
            }
        }
        let ends = last_offsets(input, owed);
        let mut rows = Vec::new();
        let mut origins = Vec::new();
        for (p, part) in self.parts.iter_mut() {
            let Some(end) = ends.get(p) else { continue };
            let emitted = part.windows.emit();
            origins.extend(std::iter::repeat_n((*p, *end), emitted.len()));
            rows.extend(emitted);
        }
        Ok(Emitted {
            batch: to_batch(&rows),
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

fn to_batch(rows: &[WindowRow<String>]) -> RecordBatch {
    let mut id = StringBuilder::new();
    let (mut start, mut end) = (
        TimestampMicrosecondBuilder::new(),
        TimestampMicrosecondBuilder::new(),
    );
    let (mut snapshots, mut rentals, mut returns) = (
        Int64Builder::new(),
        Int64Builder::new(),
        Int64Builder::new(),
    );
    let (mut avg, mut empty) = (Float64Builder::new(), Float64Builder::new());
    let (mut min, mut max, mut hour) = (
        Int32Builder::new(),
        Int32Builder::new(),
        Int32Builder::new(),
    );
    let mut date = Date32Builder::new();
    for r in rows {
        id.append_value(&r.key);
        start.append_value(r.start);
        end.append_value(r.end);
        snapshots.append_value(r.acc.count as i64);
        rentals.append_value(r.acc.sum[RENTALS] as i64);
        returns.append_value(r.acc.sum[RETURNS] as i64);
        avg.append_value(r.acc.avg(BIKES));
        min.append_value(r.acc.min[BIKES] as i32);
        max.append_value(r.acc.max[BIKES] as i32);
        empty.append_value(r.acc.sum[EMPTY_MINUTES]);
        let t = DateTime::from_timestamp_micros(r.start).unwrap_or_default();
        let (d, h) = crate::seoul::partition(&t);
        date.append_value(rtlake_core::time::date32(d));
        hour.append_value(h as i32);
    }
    let ts =
        |x: &mut TimestampMicrosecondBuilder| Arc::new(x.finish().with_timezone("UTC")) as ArrayRef;
    let cols: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        ts(&mut start),
        ts(&mut end),
        Arc::new(snapshots.finish()),
        Arc::new(rentals.finish()),
        Arc::new(returns.finish()),
        Arc::new(avg.finish()),
        Arc::new(min.finish()),
        Arc::new(max.finish()),
        Arc::new(empty.finish()),
        Arc::new(date.finish()),
        Arc::new(hour.finish()),
    ];
    // The columns follow the schema by construction.
    RecordBatch::try_new(crate::tables::gold_station_hourly(), cols)
        .expect("gold columns match the schema")
}
