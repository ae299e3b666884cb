//! What every input format shares: the rows an epoch decodes to ([`Records`]), the messages it
//! refuses ([`Refused`]), the metadata columns (`_topic`, `_partition`, `_offset`, `_timestamp`,
//! `_key`) and the event-time screen ([`Framing`]); and [`Decoder`], the input's format
//! chosen by `run.input.format`: [`json`](super::decode_json), [`debezium`](super::decode_debezium), or through a schema registry
//! ([`decode_registry`](super::decode_registry)) [`avro`](super::decode_avro) or
//! [`json-schema`](super::decode_json_schema) or [`protobuf`](super::decode_protobuf).

use super::decode_avro::AvroDecoder;
use super::decode_debezium::DebeziumDecoder;
use super::decode_json::JsonDecoder;
use super::decode_json_schema::JsonSchemaDecoder;
use super::decode_protobuf::ProtobufDecoder;
use crate::config::InputConfig;
use crate::source::RawMessage;
use crate::{Error, Kind, Result};
use arrow::array::{
    Array, ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};
use rtlake_core::schema::RejectReason;
use std::sync::Arc;

/// An epoch's decoded rows: the declared columns, then the metadata columns.
pub struct Records {
    /// The rows, in message order.
    pub batch: RecordBatch,
    /// For each row, the index of its message in the epoch.
    pub rows: Vec<usize>,
}

/// A message the decoder refused.
#[derive(Debug, PartialEq)]
pub struct Refused {
    /// Its index in the epoch.
    pub index: usize,
    /// `decode`, or `future` for an event time too far ahead of the clock.
    pub reason: RejectReason,
    /// What was wrong, naming the field.
    pub error: String,
}

pub(crate) fn meta_fields() -> Vec<Field> {
    vec![
        Field::new("_topic", DataType::Utf8, false),
        Field::new("_partition", DataType::Int32, false),
        Field::new("_offset", DataType::Int64, false),
        Field::new(
            "_timestamp",
            // The lake's timestamp type (µs, UTC), so `SELECT *` lands as is.
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("_key", DataType::Utf8, true),
    ]
}

/// The declared columns of an input, its event-time column, and the screens of event time.
pub(crate) struct Framing {
    /// The input's own columns.
    pub declared: SchemaRef,
    /// The declared columns, then the metadata columns.
    pub schema: SchemaRef,
    event_time: Option<usize>,
    /// `run.lateness`, µs, for [`crate::ahead::screen`] (none: no screen).
    lateness: Option<i64>,
}

impl Framing {
    /// The framing of `declared` columns; `event_time` (`run.input.event-time`) must be one,
    /// a timestamp.
    pub fn new(declared: Schema, event_time: Option<&str>) -> Result<Self> {
        let event_time = match event_time {
            Some(c) => {
                let i = declared.index_of(c).map_err(|_| {
                    Error::new(
                        Kind::Config,
                        format!("run.input.event-time: {c} is not a column of the input"),
                    )
                })?;
                if !matches!(declared.field(i).data_type(), DataType::Timestamp(..)) {
                    return Err(Error::new(
                        Kind::Config,
                        format!(
                            "run.input.event-time: {c} is {}, not a timestamp",
                            declared.field(i).data_type()
                        ),
                    ));
                }
                Some(i)
            }
            None => None,
        };
        let mut fields: Vec<Field> = declared
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.extend(meta_fields());
        Ok(Self {
            declared: Arc::new(declared),
            schema: Arc::new(Schema::new(fields)),
            event_time,
            lateness: None,
        })
    }

    /// Screens events alone more than `lateness` ahead of their partition ([`crate::ahead`]).
    pub fn set_lateness(&mut self, lateness: std::time::Duration) {
        self.lateness = Some(i64::try_from(lateness.as_micros()).unwrap_or(i64::MAX));
    }

    /// The rows of an epoch: `declared` (decoded from messages `rows`, in order) screened for
    /// event times ahead of the clock, with their metadata columns; `refused` sorted.
    pub fn finish(
        &self,
        declared: RecordBatch,
        rows: Vec<usize>,
        topic: &str,
        msgs: &[RawMessage],
        now: DateTime<Utc>,
        max_future: std::time::Duration,
        mut refused: Vec<Refused>,
    ) -> Result<(Records, Vec<Refused>)> {
        let (declared, rows) =
            self.guard_future(declared, rows, msgs, now, max_future, &mut refused)?;
        refused.sort_by_key(|r| r.index);
        let batch = self.with_metadata(declared, &rows, topic, msgs)?;
        Ok((Records { batch, rows }, refused))
    }

    /// Refuses, as `future`, rows whose event time is too far ahead (see [`Decoder::decode`]).
    pub(crate) fn guard_future(
        &self,
        batch: RecordBatch,
        rows: Vec<usize>,
        msgs: &[RawMessage],
        now: DateTime<Utc>,
        max_future: std::time::Duration,
        refused: &mut Vec<Refused>,
    ) -> Result<(RecordBatch, Vec<usize>)> {
        let Some(col) = self.event_time else {
            return Ok((batch, rows));
        };
        let times = arrow::compute::cast(
            batch.column(col),
            &DataType::Timestamp(TimeUnit::Microsecond, None),
        )
        .map_err(|e| Error::caused(Kind::Source, "event time", e))?;
        let times = times
            .as_any()
            .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
            .ok_or_else(|| Error::new(Kind::Source, "event time is not a timestamp"))?;
        let ahead = i64::try_from(max_future.as_micros()).unwrap_or(i64::MAX);
        let now_ms = now.timestamp_millis();
        let name = self.declared.field(col).name();
        let at = |us: i64| {
            DateTime::from_timestamp_micros(us).map_or_else(String::new, |t| t.to_rfc3339())
        };
        let mut keep = Vec::with_capacity(rows.len());
        for (r, i) in rows.iter().enumerate() {
            let clock = msgs[*i].timestamp.map_or(now_ms, |t| t.min(now_ms)) * 1000;
            let ok = times.is_null(r) || times.value(r).saturating_sub(clock) <= ahead;
            if !ok {
                refused.push(Refused {
                    index: *i,
                    reason: RejectReason::Future,
                    error: format!(
                        "{name} {} is more than run.max-future ahead of the clock ({})",
                        at(times.value(r)),
                        at(clock)
                    ),
                });
            }
            keep.push(ok);
        }
        if let Some(lateness) = self.lateness {
            let events = (0..rows.len())
                .filter(|r| keep[*r] && !times.is_null(*r))
                .map(|r| (r, msgs[rows[r]].partition, times.value(r)));
            for a in crate::ahead::screen(events, lateness) {
                let i = rows[a.index];
                refused.push(Refused {
                    index: i,
                    reason: RejectReason::Future,
                    error: a.describe(name, msgs[i].partition, lateness),
                });
                keep[a.index] = false;
            }
        }
        if keep.iter().all(|k| *k) {
            return Ok((batch, rows));
        }
        let mask = arrow::array::BooleanArray::from(keep.clone());
        let batch = arrow::compute::filter_record_batch(&batch, &mask)
            .map_err(|e| Error::caused(Kind::Source, "event time", e))?;
        let rows = rows
            .into_iter()
            .zip(keep)
            .filter(|(_, k)| *k)
            .map(|(i, _)| i)
            .collect();
        Ok((batch, rows))
    }

    /// The declared columns of `rows`, then their messages' metadata columns.
    pub(crate) fn with_metadata(
        &self,
        declared: RecordBatch,
        rows: &[usize],
        topic: &str,
        msgs: &[RawMessage],
    ) -> Result<RecordBatch> {
        let at = |i: &usize| &msgs[*i];
        let mut cols: Vec<ArrayRef> = declared.columns().to_vec();
        cols.push(Arc::new(StringArray::from(vec![topic; rows.len()])));
        cols.push(Arc::new(Int32Array::from_iter_values(
            rows.iter().map(|i| at(i).partition),
        )));
        cols.push(Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|i| at(i).offset),
        )));
        cols.push(Arc::new(
            TimestampMicrosecondArray::from(
                rows.iter()
                    .map(|i| at(i).timestamp.map(|ms| ms.saturating_mul(1000)))
                    .collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        ));
        cols.push(Arc::new(StringArray::from(
            rows.iter()
                .map(|i| {
                    at(i)
                        .key
                        .as_deref()
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                })
                .collect::<Vec<_>>(),
        )));
        RecordBatch::try_new(self.schema.clone(), cols)
            .map_err(|e| Error::caused(Kind::Source, "decoded rows", e))
    }
}

/// A message refused for its shape: `decode`.
pub(crate) fn decode_error(index: usize, error: String) -> Refused {
    Refused {
        index,
        reason: RejectReason::Decode,
        error,
    }
}

/// The input's format (`run.input.format`), opened.
pub enum Decoder {
    /// One JSON object per message, to the declared columns.
    Json(JsonDecoder),
    /// Avro in the Confluent wire format, by the schemas of a registry.
    Avro(AvroDecoder),
    /// JSON in the Confluent wire format, typed by the JSON Schemas of a registry.
    JsonSchema(JsonSchemaDecoder),
    /// Protobuf in the Confluent wire format, by the `.proto` schemas of a registry.
    Protobuf(ProtobufDecoder),
    /// Debezium's change events (JSON), the declared columns from `after` or `before`.
    Debezium(DebeziumDecoder),
}

impl Decoder {
    /// The decoder of `input`, reading `topic`: for Avro, asks the registry for the subject's
    /// latest schema (waiting while it does not answer).
    pub async fn open(input: &InputConfig, topic: &str) -> Result<Self> {
        match input.format.as_str() {
            "json" => Ok(Self::Json(JsonDecoder::new(input)?)),
            "debezium" => Ok(Self::Debezium(DebeziumDecoder::new(input)?)),
            "avro" => Ok(Self::Avro(AvroDecoder::open(input, topic).await?)),
            "json-schema" => Ok(Self::JsonSchema(
                JsonSchemaDecoder::open(input, topic).await?,
            )),
            "protobuf" => Ok(Self::Protobuf(ProtobufDecoder::open(input, topic).await?)),
            other => Err(Error::new(
                Kind::Config,
                format!(
                    "run.input.format: {other} is not a format (json, avro, json-schema, protobuf, debezium)"
                ),
            )),
        }
    }

    /// Also refuses, as `future`, an event alone far ahead of its partition
    /// ([`crate::ahead`]), with the run's `lateness`.
    pub fn with_lateness(mut self, lateness: std::time::Duration) -> Self {
        self.framing_mut().set_lateness(lateness);
        self
    }

    fn framing_mut(&mut self) -> &mut Framing {
        match self {
            Self::Json(d) => &mut d.framing,
            Self::Avro(d) => &mut d.framing,
            Self::JsonSchema(d) => &mut d.json.framing,
            Self::Protobuf(d) => &mut d.json.framing,
            Self::Debezium(d) => &mut d.json.framing,
        }
    }

    /// The rows' schema: the input's columns, then the metadata columns.
    pub fn schema(&self) -> SchemaRef {
        match self {
            Self::Json(d) => d.framing.schema.clone(),
            Self::Avro(d) => d.framing.schema.clone(),
            Self::JsonSchema(d) => d.json.framing.schema.clone(),
            Self::Protobuf(d) => d.json.framing.schema.clone(),
            Self::Debezium(d) => d.json.framing.schema.clone(),
        }
    }

    /// Readies the decoder for `msgs`: fetches the schemas they name that it has not seen
    /// (Avro). A registry that does not answer is waited for; after a while the epoch fails
    /// as [`Kind::Registry`] and is retried from the lake's positions, so nothing is skipped.
    pub async fn prepare(&mut self, msgs: &[RawMessage]) -> Result<()> {
        match self {
            Self::Json(_) | Self::Debezium(_) => Ok(()),
            Self::Avro(d) => d.prepare(msgs).await,
            Self::JsonSchema(d) => d.prepare(msgs).await,
            Self::Protobuf(d) => d.prepare(msgs).await,
        }
    }

    /// Decodes an epoch's messages (after [`Decoder::prepare`]). Events whose time is more
    /// than `max_future` ahead of the clock (the message's timestamp, or `now` if that is
    /// earlier or missing) are refused as `future`, so a bad clock upstream moves no
    /// watermark; so are events alone far ahead of their partition ([`Decoder::with_lateness`]).
    pub fn decode(
        &mut self,
        topic: &str,
        msgs: &[RawMessage],
        now: DateTime<Utc>,
        max_future: std::time::Duration,
    ) -> Result<(Records, Vec<Refused>)> {
        match self {
            Self::Json(d) => d.decode(topic, msgs, now, max_future),
            Self::Avro(d) => d.decode(topic, msgs, now, max_future),
            Self::JsonSchema(d) => d.decode(topic, msgs, now, max_future),
            Self::Protobuf(d) => d.decode(topic, msgs, now, max_future),
            Self::Debezium(d) => d.decode(topic, msgs, now, max_future),
        }
    }
}
