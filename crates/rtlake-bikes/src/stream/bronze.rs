//! Decoding station status messages into `bronze.station_status` rows, and the rest into
//! `_rejected` rows.

use super::Stations;
use arrow::array::{
    ArrayRef, Date32Builder, Float64Builder, Int32Builder, Int64Builder, RecordBatch,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::SchemaRef;
use rtlake_stream::input::EpochInput;
use rtlake_stream::operator::{Emitted, Operator, Rejections};
use rtlake_stream::source::RawMessage;

use std::sync::Arc;

/// `bronze.station_status`: every decodable message as a row; the rest go to `_rejected`
/// (reasons `decode`, `validation`, and `future` from [`Stations::guard_future`]). Stateless.
#[derive(Default)]
pub struct BronzeOperator {
    /// Whether rows carry the events' unknown fields (`extra`, `run.unknown-fields = "keep"`).
    pub keep_extra: bool,
}

/// Columns of `bronze.station_status` being built.
#[derive(Default)]
struct BronzeColumns {
    station_id: StringBuilder,
    station_name: StringBuilder,
    rack_total: Int32Builder,
    bikes_parked: Int32Builder,
    shared_pct: Int32Builder,
    lat: Float64Builder,
    lon: Float64Builder,
    polled_at: TimestampMicrosecondBuilder,
    district: StringBuilder,
    kafka_partition: Int32Builder,
    kafka_offset: Int64Builder,
    ingested_at: TimestampMicrosecondBuilder,
    extra: StringBuilder,
    date: Date32Builder,
    hour: Int32Builder,
}

impl Operator for BronzeOperator {
    fn kind(&self) -> &'static str {
        "bronze"
    }

    fn schema(&self) -> SchemaRef {
        crate::tables::bronze_station_status_with(self.keep_extra)
    }

    fn process(
        &mut self,
        input: &EpochInput<'_>,
        owed: &dyn Fn(&RawMessage) -> bool,
        rejected: &mut Rejections<'_>,
        sink: &str,
    ) -> rtlake_stream::Result<Emitted> {
        let now = input.now;
        let mut b = BronzeColumns::default();
        let mut origins = Vec::new();
        for (m, decoded, district) in Stations::of(input, "bronze")?.iter(input.msgs) {
            if !owed(m) {
                continue;
            }
            match decoded {
                Ok(s) => {
                    let (d, h) = crate::seoul::partition(&s.polled_at);
                    b.station_id.append_value(&s.station_id);
                    b.station_name.append_value(&s.station_name);
                    b.rack_total.append_value(s.rack_total);
                    b.bikes_parked.append_value(s.bikes_parked);
                    b.shared_pct.append_value(s.shared_pct);
                    b.lat.append_value(s.lat);
                    b.lon.append_value(s.lon);
                    b.polled_at.append_value(s.polled_at.timestamp_micros());
                    b.district.append_option(district.map(|d| &**d));
                    b.kafka_partition.append_value(m.partition);
                    b.kafka_offset.append_value(m.offset);
                    b.ingested_at.append_value(now.timestamp_micros());
                    b.extra.append_option(s.extra.as_deref());
                    b.date.append_value(rtlake_core::time::date32(d));
                    b.hour.append_value(h as i32);
                    origins.push((m.partition, m.offset));
                }
                Err(e) => rejected.push(m, e.reason, sink, || e.error.clone()),
            }
        }
        let ts = |x: &mut TimestampMicrosecondBuilder| {
            Arc::new(x.finish().with_timezone("UTC")) as ArrayRef
        };
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(b.station_id.finish()),
            Arc::new(b.station_name.finish()),
            Arc::new(b.rack_total.finish()),
            Arc::new(b.bikes_parked.finish()),
            Arc::new(b.shared_pct.finish()),
            Arc::new(b.lat.finish()),
            Arc::new(b.lon.finish()),
            ts(&mut b.polled_at),
            Arc::new(b.district.finish()),
            Arc::new(b.kafka_partition.finish()),
            Arc::new(b.kafka_offset.finish()),
            ts(&mut b.ingested_at),
        ];
        if self.keep_extra {
            cols.push(Arc::new(b.extra.finish()));
        }
        cols.push(Arc::new(b.date.finish()));
        cols.push(Arc::new(b.hour.finish()));
        // The columns follow the schema by construction.
        let batch =
            RecordBatch::try_new(self.schema(), cols).expect("bronze columns match the schema");
        Ok(Emitted { batch, origins })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::districts::DistrictCache;
    use chrono::{DateTime, Utc};
    use rtlake_core::schema::RejectReason;
    use rtlake_stream::rejected::RejectedColumns;

    fn msg(offset: i64, value: &str) -> RawMessage {
        RawMessage {
            partition: 1,
            offset,
            key: Some(b"ST-4".to_vec().into()),
            payload: Some(value.as_bytes().to_vec().into()),
            timestamp: None,
        }
    }

    fn run(
        msgs: &[RawMessage],
        owed: &dyn Fn(&RawMessage) -> bool,
        rejected_owed: &(dyn Fn(&RawMessage) -> bool + Sync),
    ) -> (Emitted, RecordBatch) {
        let input = super::super::epoch(msgs, Utc::now());
        let mut cols = RejectedColumns::default();
        let out = BronzeOperator::default()
            .process(
                &input,
                owed,
                &mut Rejections::new(&mut cols, rejected_owed, "t", input.now),
                "bronze.station_status",
            )
            .unwrap();
        (out, cols.finish())
    }

    #[test]
    fn good_rows_go_to_bronze_and_bad_ones_to_rejected_with_reasons() {
        let good = r#"{"rackTotCnt":"15","stationName":"망원역","parkingBikeTotCnt":"16","shared":"107","stationLatitude":"37.5556488","stationLongitude":"126.91062927","stationId":"ST-4","polledAt":"2025-10-01T08:00:15+09:00"}"#;
        let msgs = vec![
            msg(0, good),
            msg(1, "{oops"),
            msg(2, &good.replace("\"16\"", "\"-\"")),
        ];
        let (out, rej) = run(&msgs, &|_| true, &|_| true);
        assert_eq!(out.batch.num_rows(), 1);
        assert_eq!(out.origins, vec![(1, 0)]);
        assert_eq!(rej.num_rows(), 2);
        let district = out.batch.column_by_name("district").unwrap();
        let district = district
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        assert_eq!(district.value(0), "Mapo-gu");
        let reasons = rej
            .column_by_name("reason")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap()
            .clone();
        assert_eq!(
            (reasons.value(0), reasons.value(1)),
            ("decode", "validation")
        );
    }

    #[test]
    fn events_far_ahead_of_the_clock_are_rejected_as_future() {
        let at = |t: &str| {
            format!(
                r#"{{"rackTotCnt":"15","stationName":"x","parkingBikeTotCnt":"16","shared":"107","stationLatitude":"37.55","stationLongitude":"126.91","stationId":"ST-4","polledAt":"{t}"}}"#
            )
        };
        let now = DateTime::parse_from_rfc3339("2026-12-02T12:00:00Z")
            .unwrap()
            .to_utc();
        let mut msgs = vec![
            msg(0, &at("2099-01-01T00:00:00Z")),
            msg(1, &at("2026-12-02T12:59:00Z")),
            msg(2, &at("2026-12-02T13:01:00Z")),
            msg(3, &at("2026-12-02T12:30:00Z")),
        ];
        // The message's own timestamp is the clock when it is earlier than the processor's.
        msgs[3].timestamp = Some(now.timestamp_millis() - 20 * 60_000);
        let input = Stations::decode(&msgs, &mut DistrictCache::default(), Default::default())
            .guard_future(&msgs, now, std::time::Duration::from_secs(3600));
        let reasons: Vec<_> = input
            .decoded
            .iter()
            .map(|d| d.as_ref().err().map(|e| e.reason.as_str()))
            .collect();
        assert_eq!(reasons, [Some("future"), None, Some("future"), None]);
        let e = input.decoded[0].as_ref().unwrap_err();
        assert!(
            e.error.contains("2099-01-01") && e.error.contains("run.max-future is 1h"),
            "{}",
            e.error
        );
        let mut late = msgs.clone();
        late[3].timestamp = Some(now.timestamp_millis() - 40 * 60_000);
        let input = Stations::decode(&late, &mut DistrictCache::default(), Default::default())
            .guard_future(&late, now, std::time::Duration::from_secs(3600));
        assert_eq!(
            input.decoded[3].as_ref().err().map(|e| e.reason),
            Some(RejectReason::Future),
            "70 minutes after it entered Kafka, though only 30 ahead of the processor's clock"
        );
    }

    #[test]
    fn rows_a_table_already_holds_are_skipped() {
        let msgs = vec![msg(5, "bad"), msg(6, "bad")];
        let (_, rej) = run(&msgs, &|_| true, &|m| m.offset >= 6);
        assert_eq!(rej.num_rows(), 1);
    }
}
