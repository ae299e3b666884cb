//! `gold.station_hourly`: 1-hour tumbling windows per station under each partition's watermark,
//! append mode (a window is written once, when final).
//!
//! Per window: `snapshots` counts the station's in-window snapshots; `rentals`/`returns` sum the
//! change rule's counts of those snapshots (the silver rows); `avg/min/max_bikes_parked` are over
//! the snapshots; `empty_minutes` sums, over in-window snapshots with 0 bikes, the minutes until
//! the station's next snapshot, capped at the window end. Late snapshots go to `_rejected` as
//! `late`; stale ones are left to silver, which rejects them.

use crate::bronze::{EpochInput, RejectedColumns};
use crate::source::RawMessage;
use crate::state::KeyedState;
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

    /// Windows held, over all partitions.
    pub fn state_len(&self) -> usize {
        self.parts.values().map(|p| p.windows.state_len()).sum()
    }

    /// Feeds messages (in offset order per partition) and returns the windows that became final.
    pub fn process(
        &mut self,
        input: &EpochInput<'_>,
        owed: impl Fn(&RawMessage) -> bool,
        rejected_owed: impl Fn(&RawMessage) -> bool,
        rejected: &mut RejectedColumns,
    ) -> RecordBatch {
        let sink = schema::GOLD_STATION_HOURLY.to_string();
        for (m, decoded) in input.iter() {
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
            if last.is_some_and(|(lt, _)| t <= lt) {
                continue; // stale: silver rejects it
            }
            let (rentals, returns) = match last {
                Some((lt, lb)) if t - lt <= MAX_GAP_MICROS => {
                    let d = lb - s.bikes_parked;
                    (d.max(0), (-d).max(0))
                }
                _ => (0, 0),
            };
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
                Err(late) if rejected_owed(m) => {
                    let at = |us: i64| DateTime::from_timestamp_micros(us).map(|t| t.to_rfc3339()).unwrap_or_default();
                    let error = format!("polledAt {} is below partition {}'s watermark {}", at(late.time), m.partition, at(late.watermark));
                    rejected.push(input.topic, m, RejectReason::Late, &error, &sink, input.now);
                }
                Err(_) => {}
            }
        }
        let rows: Vec<WindowRow<String>> = self.parts.values_mut().flat_map(|p| p.windows.emit()).collect();
        to_batch(&rows)
    }
}

impl KeyedState for HourlyOperator {
    fn restore(&mut self, partition: i32, bytes: Option<&[u8]>) -> Result<(), serde_json::Error> {
        let state = match bytes {
            Some(b) => serde_json::from_slice(b)?,
            None => self.fresh(),
        };
        self.parts.insert(partition, state);
        Ok(())
    }

    fn snapshot(&self, partition: i32) -> Vec<u8> {
        let fresh;
        let state = match self.parts.get(&partition) {
            Some(s) => s,
            None => {
                fresh = self.fresh();
                &fresh
            }
        };
        // Finite numbers and strings always serialise.
        serde_json::to_vec(state).expect("state serialises")
    }

    fn drop_partition(&mut self, partition: i32) {
        self.parts.remove(&partition);
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
