//! Decoding station status messages into `bronze.station_status` rows, and the rest into
//! `_rejected` rows.

use crate::operator::{Emitted, Operator, Rejections};
use crate::source::RawMessage;
use arrow::array::{
    ArrayRef, BinaryBuilder, Date32Builder, Float64Builder, Int32Builder, Int64Builder,
    RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::SchemaRef;
use chrono::{DateTime, Utc};
use rtlake_bikes::model::{DecodeError, StationStatus};
use rtlake_core::config::UnknownFields;
use rtlake_core::schema::{self, RejectReason};
use std::sync::Arc;

/// One epoch's messages, each decoded once, as every operator reads them.
pub struct EpochInput<'a> {
    /// The topic the messages came from.
    pub topic: &'a str,
    /// The messages, in offset order per partition.
    pub msgs: &'a [RawMessage],
    /// Each message's decoding, index for index.
    pub decoded: Vec<Result<StationStatus, DecodeError>>,
    /// Each decoded message's district, index for index.
    pub districts: Vec<Option<Arc<str>>>,
    /// A declared input's rows (Arrow columns of its schema), instead of station status.
    pub records: Option<crate::ops::decode_json::Records>,
    /// The epoch's processing time (`ingested_at`, `rejected_at`).
    pub now: DateTime<Utc>,
}

impl<'a> EpochInput<'a> {
    /// Decodes the messages and places each station in its district.
    pub fn new(
        topic: &'a str,
        msgs: &'a [RawMessage],
        now: DateTime<Utc>,
        places: &mut DistrictCache,
        unknown: UnknownFields,
    ) -> Self {
        let decode = |m: &RawMessage| match &m.payload {
            Some(p) => StationStatus::decode_with(p, unknown),
            None => Err(DecodeError {
                reason: RejectReason::Decode,
                error: "message has no value".into(),
            }),
        };
        // Large epochs are decoded on every core, in order.
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let decoded: Vec<_> = if msgs.len() < 20_000 || threads < 2 {
            msgs.iter().map(decode).collect()
        } else {
            let chunk = msgs.len().div_ceil(threads);
            std::thread::scope(|scope| {
                let parts: Vec<_> = msgs
                    .chunks(chunk)
                    .map(|c| scope.spawn(move || c.iter().map(decode).collect::<Vec<_>>()))
                    .collect();
                parts
                    .into_iter()
                    .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    .collect()
            })
        };
        let districts = decoded
            .iter()
            .map(|d| d.as_ref().ok().and_then(|s| places.district(s.lat, s.lon)))
            .collect();
        Self {
            topic,
            msgs,
            decoded,
            districts,
            records: None,
            now,
        }
    }

    /// An epoch of a declared input, decoded to `records`.
    pub fn declared(
        topic: &'a str,
        msgs: &'a [RawMessage],
        now: DateTime<Utc>,
        records: crate::ops::decode_json::Records,
    ) -> Self {
        Self {
            topic,
            msgs,
            decoded: Vec::new(),
            districts: Vec::new(),
            records: Some(records),
            now,
        }
    }

    /// Turns each decoded event whose time is more than `max_future` ahead of the clock into a
    /// `future` rejection, so that one bad clock upstream moves no watermark and no state. The
    /// clock is the time the message entered Kafka (its timestamp), or the epoch's time if that
    /// is earlier or missing (the file source): a re-run of the epoch decides the same.
    pub fn guard_future(mut self, max_future: std::time::Duration) -> Self {
        let now = self.now.timestamp_millis();
        let ahead = i64::try_from(max_future.as_millis()).unwrap_or(i64::MAX);
        for (m, d) in self.msgs.iter().zip(self.decoded.iter_mut()) {
            let Ok(s) = d else { continue };
            let clock = m.timestamp.map_or(now, |t| t.min(now));
            let at = s.polled_at.timestamp_millis();
            if at.saturating_sub(clock) > ahead {
                let clock = DateTime::<Utc>::from_timestamp_millis(clock).unwrap_or(self.now);
                let error = format!(
                    "event time {} is {} ahead of the clock ({}); run.max-future is {}",
                    s.polled_at.to_rfc3339(),
                    humanize(std::time::Duration::from_millis(
                        (at - clock.timestamp_millis()) as u64
                    )),
                    clock.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    humanize(max_future)
                );
                *d = Err(DecodeError {
                    reason: RejectReason::Future,
                    error,
                });
            }
        }
        self
    }

    /// Each message with its decoding and district.
    pub fn iter(
        &self,
    ) -> impl Iterator<
        Item = (
            &RawMessage,
            &Result<StationStatus, DecodeError>,
            Option<&Arc<str>>,
        ),
    > {
        self.msgs
            .iter()
            .zip(&self.decoded)
            .zip(&self.districts)
            .map(|((m, d), p)| (m, d, p.as_ref()))
    }
}

/// A duration in its two largest units, zeros left out: `73d 4h`, `1h`, `2m 5s`.
fn humanize(d: std::time::Duration) -> String {
    let s = d.as_secs();
    let units = [
        (s / 86_400, "d"),
        (s % 86_400 / 3600, "h"),
        (s % 3600 / 60, "m"),
        (s % 60, "s"),
    ];
    let first = units.iter().position(|(n, _)| *n > 0).unwrap_or(3);
    let parts: Vec<String> = units[first..(first + 2).min(4)]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect();
    if parts.is_empty() {
        "0s".into()
    } else {
        parts.join(" ")
    }
}

/// Station → district (the stream-static join): the bike domain's, re-exported.
pub use rtlake_bikes::districts::DistrictCache;

/// `bronze.station_status`: every decodable message as a row; the rest go to `_rejected`
/// (reasons `decode`, `validation`, and `future` from [`EpochInput::guard_future`]). Stateless.
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

/// Columns of `_rejected` being built.
#[derive(Default)]
pub struct RejectedColumns {
    topic: StringBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
    key: StringBuilder,
    value: BinaryBuilder,
    reason: StringBuilder,
    error: StringBuilder,
    sink: StringBuilder,
    rejected_at: TimestampMicrosecondBuilder,
    date: Date32Builder,
    hour: Int32Builder,
    rows: usize,
}

impl RejectedColumns {
    /// Adds a rejected message.
    pub fn push(
        &mut self,
        topic: &str,
        m: &RawMessage,
        reason: RejectReason,
        error: &str,
        sink: &str,
        at: DateTime<Utc>,
    ) {
        let (d, h) = rtlake_core::time::kst_partition(&at);
        self.topic.append_value(topic);
        self.partition.append_value(m.partition);
        self.offset.append_value(m.offset);
        self.key
            .append_option(m.key.as_deref().map(String::from_utf8_lossy));
        self.value.append_option(m.payload.as_deref());
        self.reason.append_value(reason.as_str());
        self.error.append_value(error);
        self.sink.append_value(sink);
        self.rejected_at.append_value(at.timestamp_micros());
        self.date.append_value(rtlake_core::time::date32(d));
        self.hour.append_value(h as i32);
        self.rows += 1;
    }

    /// Rows added.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether none were added.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The batch, in `_rejected`'s schema.
    pub fn finish(mut self) -> RecordBatch {
        let ts = |b: &mut TimestampMicrosecondBuilder| {
            Arc::new(b.finish().with_timezone("UTC")) as ArrayRef
        };
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.topic.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(self.key.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.reason.finish()),
            Arc::new(self.error.finish()),
            Arc::new(self.sink.finish()),
            ts(&mut self.rejected_at),
            Arc::new(self.date.finish()),
            Arc::new(self.hour.finish()),
        ];
        // The columns follow the schema by construction.
        RecordBatch::try_new(schema::rejected(), cols).expect("rejected columns match the schema")
    }
}

impl Operator for BronzeOperator {
    fn kind(&self) -> &'static str {
        "bronze"
    }

    fn schema(&self) -> SchemaRef {
        schema::bronze_station_status_with(self.keep_extra)
    }

    fn process(
        &mut self,
        input: &EpochInput<'_>,
        owed: &dyn Fn(&RawMessage) -> bool,
        rejected: &mut Rejections<'_>,
        sink: &str,
    ) -> crate::Result<Emitted> {
        let now = input.now;
        let mut b = BronzeColumns::default();
        let mut origins = Vec::new();
        for (m, decoded, district) in input.iter() {
            if !owed(m) {
                continue;
            }
            match decoded {
                Ok(s) => {
                    let (d, h) = rtlake_core::time::kst_partition(&s.polled_at);
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

    fn msg(offset: i64, value: &str) -> RawMessage {
        RawMessage {
            partition: 1,
            offset,
            key: Some(b"ST-4".to_vec()),
            payload: Some(value.as_bytes().to_vec()),
            timestamp: None,
        }
    }

    fn run(
        msgs: &[RawMessage],
        owed: &dyn Fn(&RawMessage) -> bool,
        rejected_owed: &(dyn Fn(&RawMessage) -> bool + Sync),
    ) -> (Emitted, RecordBatch) {
        let input = EpochInput::new(
            "t",
            msgs,
            Utc::now(),
            &mut DistrictCache::default(),
            Default::default(),
        );
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
        let input = EpochInput::new(
            "t",
            &msgs,
            now,
            &mut DistrictCache::default(),
            Default::default(),
        )
        .guard_future(std::time::Duration::from_secs(3600));
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
        let input = EpochInput::new(
            "t",
            &late,
            now,
            &mut DistrictCache::default(),
            Default::default(),
        )
        .guard_future(std::time::Duration::from_secs(3600));
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
