//! `gold.station_hourly`: 1-hour tumbling windows per station under each partition's watermark,
//! append mode (a window is written once, when final).
//!
//! Per window: `snapshots` counts the station's in-window snapshots; `rentals`/`returns` sum the
//! change rule's counts of those snapshots (the silver rows); `avg/min/max_bikes_parked` are over
//! the snapshots; `empty_minutes` sums, over in-window snapshots with 0 bikes, the minutes until
//! the station's next snapshot, capped at the window end. Late snapshots go to `_rejected` as
//! `late`; stale ones are left to silver, which rejects them.

use crate::bronze::EpochInput;
use crate::operator::{Emitted, Operator, Rejections};
use crate::source::RawMessage;
use arrow::datatypes::SchemaRef;
use crate::window::{OutputMode, WindowOperator, WindowRow, WindowSpec};
use arrow::array::{ArrayRef, Date32Builder, Float64Builder, Int32Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder};
use chrono::DateTime;
use rtlake_bikes::changes::MAX_GAP_MICROS;
use rtlake_core::schema::{self, RejectReason};
use std::collections::HashMap;
use std::sync::Arc;

const HOUR: i64 = 3_600_000_000;
const BIKES: usize = 0;
const RENTALS: usize = 1;
const RETURNS: usize = 2;
const EMPTY_MINUTES: usize = 3;

#[derive(serde::Serialize, serde::Deserialize)]
struct PartitionState {
    windows: WindowOperator<String>,
    /// Each station's previous accepted snapshot: (time, bikes).
    last: HashMap<String, (i64, i32)>,
}

/// The hourly operator of every partition this worker holds.
pub struct HourlyOperator {
    lateness: i64,
    parts: HashMap<i32, PartitionState>,
}

impl HourlyOperator {
    /// An operator with `lateness` µs of allowed lateness.
    pub fn new(lateness: i64) -> Self {
        Self { lateness, parts: HashMap::new() }
    }

    fn fresh(&self) -> PartitionState {
        PartitionState { windows: WindowOperator::new(WindowSpec::Tumbling { size: HOUR }, self.lateness, OutputMode::Append, 4), last: HashMap::new() }
    }

}

/// The change since a station's previous accepted snapshot `last` (time, bikes): `None` if the
/// snapshot is stale (not after it), else (rentals, returns), zero across a gap over 600 s.
pub(crate) fn delta_since(last: Option<(i64, i32)>, t: i64, bikes: i32) -> Option<(i32, i32)> {
    match last {
        Some((lt, _)) if t <= lt => None,
        Some((lt, lb)) if t - lt <= MAX_GAP_MICROS => {
            let d = lb - bikes;
            Some((d.max(0), (-d).max(0)))
        }
        _ => Some((0, 0)),
    }
}

/// The last offset of each partition among the messages `owed` in an epoch: the origin of the
/// windows that partition's messages made final.
pub(crate) fn last_offsets(input: &EpochInput<'_>, owed: &dyn Fn(&RawMessage) -> bool) -> HashMap<i32, i64> {
    let mut out = HashMap::new();
    for m in input.msgs.iter().filter(|m| owed(m)) {
        let e = out.entry(m.partition).or_insert(m.offset);
        *e = (*e).max(m.offset);
    }
    out
}

/// The message text of a late event.
pub(crate) fn late_error(m: &RawMessage, late: &crate::window::Late) -> String {
    let at = |us: i64| DateTime::from_timestamp_micros(us).map(|t| t.to_rfc3339()).unwrap_or_default();
    format!("polledAt {} is below partition {}'s watermark {}", at(late.time), m.partition, at(late.watermark))
}

impl Operator for HourlyOperator {
    fn kind(&self) -> &'static str {
        "station-hourly"
    }

    fn schema(&self) -> SchemaRef {
        schema::gold_station_hourly()
    }

    fn process(&mut self, input: &EpochInput<'_>, owed: &dyn Fn(&RawMessage) -> bool, rejected: &mut Rejections<'_>, sink: &str) -> Emitted {
        for (m, decoded, _) in input.iter() {
            if !owed(m) {
                continue;
            }
            let Ok(s) = decoded else { continue };
            let t = s.polled_at.timestamp_micros();
            if !self.parts.contains_key(&m.partition) {
                let fresh = self.fresh();
                self.parts.insert(m.partition, fresh);
            }
            let Some(part) = self.parts.get_mut(&m.partition) else { continue };
            let last = part.last.get(&s.station_id).copied();
            // Stale: silver rejects it.
            let Some((rentals, returns)) = delta_since(last, t, s.bikes_parked) else { continue };
            let values = [f64::from(s.bikes_parked), f64::from(rentals), f64::from(returns), 0.0];
            match part.windows.process(s.station_id.clone(), t, &values) {
                Ok(()) => {
                    if let Some((lt, 0)) = last {
                        let end = lt.div_euclid(HOUR) * HOUR + HOUR;
                        let minutes = (t.min(end) - lt) as f64 / 60e6;
                        part.windows.adjust(&s.station_id, lt, EMPTY_MINUTES, minutes);
                    }
                    part.last.insert(s.station_id.clone(), (t, s.bikes_parked));
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
        Emitted { batch: to_batch(&rows), origins }
    }

    fn stateful(&self) -> bool {
        true
    }

    fn restore(&mut self, partition: i32, bytes: Option<&[u8]>) -> Result<(), serde_json::Error> {
        let state = match bytes {
            Some(b) => serde_json::from_slice(b)?,
            None => self.fresh(),
        };
        self.parts.insert(partition, state);
        Ok(())
    }

    fn snapshot(&self, partition: i32) -> Option<Vec<u8>> {
        // Finite numbers and strings always serialise.
        Some(match self.parts.get(&partition) {
            Some(s) => serde_json::to_vec(s).expect("state serialises"),
            None => serde_json::to_vec(&self.fresh()).expect("state serialises"),
        })
    }

    fn drop_partition(&mut self, partition: i32) {
        self.parts.remove(&partition);
    }

    fn state_len(&self) -> usize {
        self.parts.values().map(|p| p.windows.state_len()).sum()
    }
}

fn to_batch(rows: &[WindowRow<String>]) -> RecordBatch {
    let mut id = StringBuilder::new();
    let (mut start, mut end) = (TimestampMicrosecondBuilder::new(), TimestampMicrosecondBuilder::new());
    let (mut snapshots, mut rentals, mut returns) = (Int64Builder::new(), Int64Builder::new(), Int64Builder::new());
    let (mut avg, mut empty) = (Float64Builder::new(), Float64Builder::new());
    let (mut min, mut max, mut hour) = (Int32Builder::new(), Int32Builder::new(), Int32Builder::new());
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
        let (d, h) = rtlake_core::time::kst_partition(&t);
        date.append_value(rtlake_core::time::date32(d));
        hour.append_value(h as i32);
    }
    let ts = |x: &mut TimestampMicrosecondBuilder| Arc::new(x.finish().with_timezone("UTC")) as ArrayRef;
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
    RecordBatch::try_new(schema::gold_station_hourly(), cols).expect("gold columns match the schema")
}
