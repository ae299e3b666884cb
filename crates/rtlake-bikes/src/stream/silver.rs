//! `silver.station_changes`: the change rule over each partition's station snapshots, with its
//! keyed state, as Arrow batches. Stale snapshots become `_rejected` rows (sink
//! `silver.station_changes`, reason `stale`).

use super::Stations;
use crate::changes::{ChangeState, Outcome, Snapshot};
use arrow::array::{
    ArrayRef, Date32Builder, Int32Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::SchemaRef;
use chrono::DateTime;
use rtlake_core::schema::RejectReason;
use rtlake_stream::input::EpochInput;
use rtlake_stream::operator::{Emitted, Operator, PartitionState, PerPartition, Rejections};
use rtlake_stream::source::RawMessage;
use std::sync::Arc;

/// The change operator of every partition this worker holds.
pub struct SilverOperator {
    states: PerPartition<ChangeState>,
}

impl Default for SilverOperator {
    fn default() -> Self {
        Self {
            states: PerPartition::new(ChangeState::default, ChangeState::len),
        }
    }
}

#[derive(Default)]
struct Columns {
    station_id: StringBuilder,
    polled_at: TimestampMicrosecondBuilder,
    prev_polled_at: TimestampMicrosecondBuilder,
    bikes: Int32Builder,
    prev_bikes: Int32Builder,
    rentals: Int32Builder,
    returns: Int32Builder,
    district: StringBuilder,
    date: Date32Builder,
    hour: Int32Builder,
}

impl Operator for SilverOperator {
    fn kind(&self) -> &'static str {
        "changes"
    }

    fn schema(&self) -> SchemaRef {
        crate::tables::silver_station_changes()
    }

    fn process(
        &mut self,
        input: &EpochInput<'_>,
        owed: &dyn Fn(&RawMessage) -> bool,
        rejected: &mut Rejections<'_>,
        sink: &str,
    ) -> rtlake_stream::Result<Emitted> {
        let mut c = Columns::default();
        let mut origins = Vec::new();
        for (m, decoded, district) in Stations::of(input, "changes")?.iter(input.msgs) {
            if !owed(m) {
                continue;
            }
            // Undecodable messages are rejected once, by bronze.
            let Ok(s) = decoded else { continue };
            let snap = Snapshot {
                station_id: s.station_id.clone(),
                polled_at: s.polled_at.timestamp_micros(),
                bikes: s.bikes_parked,
            };
            let state = self.states.get(m.partition);
            match state.apply(&snap) {
                Outcome::Change {
                    prev,
                    rentals,
                    returns,
                } => {
                    let (d, h) = crate::seoul::partition(&s.polled_at);
                    c.station_id.append_value(&s.station_id);
                    c.polled_at.append_value(snap.polled_at);
                    c.prev_polled_at.append_value(prev.polled_at);
                    c.bikes.append_value(s.bikes_parked);
                    c.prev_bikes.append_value(prev.bikes);
                    c.rentals.append_value(rentals);
                    c.returns.append_value(returns);
                    c.district.append_option(district.map(|d| &**d));
                    c.date.append_value(rtlake_core::time::date32(d));
                    c.hour.append_value(h as i32);
                    origins.push((m.partition, m.offset));
                }
                Outcome::Stale { stored } => rejected.push(m, RejectReason::Stale, sink, || {
                    format!(
                        "snapshot of {} at {} is not after the stored one at {}",
                        s.station_id,
                        s.polled_at.to_rfc3339(),
                        DateTime::from_timestamp_micros(stored)
                            .map(|t| t.to_rfc3339())
                            .unwrap_or_default()
                    )
                }),
                _ => {}
            }
        }
        for p in input
            .msgs
            .iter()
            .map(|m| m.partition)
            .collect::<std::collections::BTreeSet<_>>()
        {
            self.states.get(p).expire();
        }
        let ts = |x: &mut TimestampMicrosecondBuilder| {
            Arc::new(x.finish().with_timezone("UTC")) as ArrayRef
        };
        let cols: Vec<ArrayRef> = vec![
            Arc::new(c.station_id.finish()),
            ts(&mut c.polled_at),
            ts(&mut c.prev_polled_at),
            Arc::new(c.bikes.finish()),
            Arc::new(c.prev_bikes.finish()),
            Arc::new(c.rentals.finish()),
            Arc::new(c.returns.finish()),
            Arc::new(c.district.finish()),
            Arc::new(c.date.finish()),
            Arc::new(c.hour.finish()),
        ];
        // The columns follow the schema by construction.
        let batch = RecordBatch::try_new(crate::tables::silver_station_changes(), cols)
            .expect("silver columns match the schema");
        Ok(Emitted { batch, origins })
    }

    fn state(&self) -> Option<&dyn PartitionState> {
        Some(&self.states)
    }

    fn state_mut(&mut self) -> Option<&mut dyn PartitionState> {
        Some(&mut self.states)
    }
}
