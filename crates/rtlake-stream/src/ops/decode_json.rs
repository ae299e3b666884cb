//! Decoding JSON messages straight to Arrow columns of a declared schema (arrow-json's tape
//! decoder), plus the source's metadata columns (`_topic`, `_partition`, `_offset`,
//! `_timestamp`, `_key`). Numbers and booleans may come as strings (some APIs send every field
//! as one), numbers are taken for STRING columns, unknown fields are ignored. A message
//! that is not one JSON object, or whose value does not fit its column, is refused with the
//! field named, and the rest of the epoch decodes as if it had not been there.

use crate::config::InputConfig;
use crate::source::RawMessage;
use crate::{Error, Kind, Result};
use arrow::array::{
    Array, ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::json::ReaderBuilder;
use arrow::json::reader::Decoder;
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

/// The decoder of a declared input.
pub struct JsonDecoder {
    declared: SchemaRef,
    schema: SchemaRef,
    event_time: Option<usize>,
    /// `run.lateness`, µs, for [`crate::ahead::screen`] (none: no screen).
    lateness: Option<i64>,
}

fn meta_fields() -> Vec<Field> {
    vec![
        Field::new("_topic", DataType::Utf8, false),
        Field::new("_partition", DataType::Int32, false),
        Field::new("_offset", DataType::Int64, false),
        Field::new(
            "_timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
        Field::new("_key", DataType::Utf8, true),
    ]
}

impl JsonDecoder {
    /// The decoder of `input` (validated at load; a bad schema is a configuration error).
    pub fn new(input: &InputConfig) -> Result<Self> {
        let declared = rtlake_core::ddl::parse_schema(&input.schema)
            .map_err(|e| Error::caused(Kind::Config, "run.input.schema", e))?;
        let event_time = match &input.event_time {
            Some(c) => Some(declared.index_of(c).map_err(|_| {
                Error::new(
                    Kind::Config,
                    format!("run.input.event-time: {c} is not a declared column"),
                )
            })?),
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

    /// Also refuses, as `future`, an event alone far ahead of its partition
    /// ([`crate::ahead`]), with the run's `lateness`.
    pub fn with_lateness(mut self, lateness: std::time::Duration) -> Self {
        self.lateness = Some(i64::try_from(lateness.as_micros()).unwrap_or(i64::MAX));
        self
    }

    /// The rows' schema: the declared columns, then the metadata columns.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn decoder(&self, rows: usize) -> Result<Decoder> {
        ReaderBuilder::new(self.declared.clone())
            .with_batch_size(rows.max(1) + 1)
            .with_coerce_primitive(true)
            .build_decoder()
            .map_err(|e| Error::caused(Kind::Config, "run.input.schema", e))
    }

    /// Decodes an epoch's messages. Events whose time is more than `max_future` ahead of the
    /// clock (the message's timestamp, or `now` if that is earlier or missing) are refused as
    /// `future`, so a bad clock upstream moves no watermark; so are events alone far ahead of
    /// their partition ([`JsonDecoder::with_lateness`]).
    pub fn decode(
        &self,
        topic: &str,
        msgs: &[RawMessage],
        now: DateTime<Utc>,
        max_future: std::time::Duration,
    ) -> Result<(Records, Vec<Refused>)> {
        let mut refused = Vec::new();
        let mut parts: Vec<(RecordBatch, Vec<usize>)> = Vec::new();
        let mut dec = self.decoder(msgs.len())?;
        let mut fed: Vec<usize> = Vec::new();
        for (i, m) in msgs.iter().enumerate() {
            let Some(p) = m.payload.as_deref() else {
                refused.push(decode_error(i, "message has no value".into()));
                continue;
            };
            match feed(&mut dec, p) {
                Ok(()) => fed.push(i),
                Err(e) => {
                    refused.push(decode_error(i, e));
                    // The decoder holds part of the bad message: decode the good ones before
                    // it on their own, and go on with a fresh decoder.
                    self.flush_part(msgs, std::mem::take(&mut fed), &mut parts, &mut refused)?;
                    dec = self.decoder(msgs.len() - i)?;
                }
            }
        }
        match dec.flush() {
            Ok(Some(b)) => parts.push((b, fed)),
            Ok(None) => {}
            Err(_) => self.flush_part(msgs, fed, &mut parts, &mut refused)?,
        }
        let mut batches = Vec::with_capacity(parts.len());
        let mut rows = Vec::new();
        for (b, idx) in parts {
            batches.push(b);
            rows.extend(idx);
        }
        let declared = arrow::compute::concat_batches(&self.declared, &batches)
            .map_err(|e| Error::caused(Kind::Source, "decoded rows", e))?;
        let (declared, rows) =
            self.guard_future(declared, rows, msgs, now, max_future, &mut refused)?;
        refused.sort_by_key(|r| r.index);
        let batch = self.with_metadata(declared, &rows, topic, msgs)?;
        Ok((Records { batch, rows }, refused))
    }

    /// Decodes `idx` (each already read as one JSON value) into a part; if a value does not fit
    /// its column, decodes them one by one to find which, refusing those.
    fn flush_part(
        &self,
        msgs: &[RawMessage],
        idx: Vec<usize>,
        parts: &mut Vec<(RecordBatch, Vec<usize>)>,
        refused: &mut Vec<Refused>,
    ) -> Result<()> {
        if idx.is_empty() {
            return Ok(());
        }
        let payload = |i: usize| msgs[i].payload.as_deref().unwrap_or_default();
        let mut dec = self.decoder(idx.len())?;
        for i in &idx {
            // Each was fed once already without error.
            dec.decode(payload(*i))
                .map_err(|e| Error::caused(Kind::Source, "json decoder", e))?;
        }
        if let Ok(Some(b)) = dec.flush() {
            parts.push((b, idx));
            return Ok(());
        }
        for i in idx {
            let mut one = self.decoder(1)?;
            let r = one.decode(payload(i)).and_then(|_| one.flush());
            match r {
                Ok(Some(b)) => parts.push((b, vec![i])),
                Ok(None) => refused.push(decode_error(i, "no JSON object".into())),
                Err(e) => refused.push(decode_error(i, clean(&e.to_string()))),
            }
        }
        Ok(())
    }

    fn guard_future(
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

    fn with_metadata(
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
            TimestampMillisecondArray::from(
                rows.iter().map(|i| at(i).timestamp).collect::<Vec<_>>(),
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

/// Feeds one message: it must be exactly one JSON value.
fn feed(dec: &mut Decoder, p: &[u8]) -> std::result::Result<(), String> {
    let before = dec.len();
    let read = dec.decode(p).map_err(|e| clean(&e.to_string()))?;
    if read < p.len() || dec.len() > before + 1 {
        return Err("the message holds more than one JSON value".into());
    }
    if dec.has_partial_record() {
        return Err("the message ends inside a JSON value".into());
    }
    if dec.len() == before {
        return Err("the message holds no JSON object".into());
    }
    Ok(())
}

fn decode_error(index: usize, error: String) -> Refused {
    Refused {
        index,
        reason: RejectReason::Decode,
        error,
    }
}

/// arrow's "Json error: whilst decoding field 'a': ..." as "field a: ...".
fn clean(e: &str) -> String {
    let e = e.strip_prefix("Json error: ").unwrap_or(e);
    let mut out = String::new();
    let mut rest = e;
    while let Some(r) = rest.strip_prefix("whilst decoding field '") {
        let Some((name, tail)) = r.split_once("': ") else {
            break;
        };
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(name);
        rest = tail;
    }
    if out.is_empty() {
        rest.to_string()
    } else {
        format!("field {out}: {rest}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(offset: i64, value: &str) -> RawMessage {
        RawMessage {
            partition: 0,
            offset,
            key: Some(b"k".to_vec()),
            payload: Some(value.as_bytes().to_vec()),
            timestamp: Some(1_700_000_000_000),
        }
    }

    fn decoder() -> JsonDecoder {
        JsonDecoder::new(&InputConfig {
            topic: None,
            format: "json".into(),
            schema: "id STRING NOT NULL, n INT, x DOUBLE, at TIMESTAMP".into(),
            event_time: Some("at".into()),
        })
        .unwrap()
    }

    #[test]
    fn strings_are_cast_and_bad_messages_are_refused_with_the_field_named() {
        let msgs = vec![
            msg(
                0,
                r#"{"id": "a", "n": "7", "x": "1.5", "at": "2023-11-14T22:00:00Z", "extra": 1}"#,
            ),
            msg(
                1,
                r#"{"id": "b", "n": "seven", "x": 1, "at": "2023-11-14 22:01:00"}"#,
            ),
            msg(2, r#"{"id": "c", "n": 3"#),
            msg(3, r#"{"id": 42, "n": 3, "x": null, "at": null}"#),
            msg(4, r#"{"id": "e"} {"id": "f"}"#),
            msg(5, r#"{"id": "g", "at": "2099-01-01T00:00:00Z"}"#),
            msg(6, r#"{"n": 1}"#),
        ];
        let now = DateTime::from_timestamp_millis(1_700_000_100_000).unwrap();
        let (rec, refused) = decoder()
            .decode("t", &msgs, now, std::time::Duration::from_secs(3600))
            .unwrap();
        assert_eq!(rec.rows, vec![0, 3]);
        let ids = rec
            .batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!((ids.value(0), ids.value(1)), ("a", "42"));
        let n = rec
            .batch
            .column(1)
            .as_any()
            .downcast_ref::<Int32Array>()
            .unwrap();
        assert_eq!(n.value(0), 7);
        let off = rec
            .batch
            .column_by_name("_offset")
            .unwrap()
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(off.values().to_vec(), vec![0, 3]);
        let got: Vec<(usize, &str)> = refused
            .iter()
            .map(|r| (r.index, r.reason.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, "decode"),
                (2, "decode"),
                (4, "decode"),
                (5, "future"),
                (6, "decode")
            ]
        );
        assert!(
            refused[0].error.contains("field n") && refused[0].error.contains("seven"),
            "{}",
            refused[0].error
        );
        assert!(
            refused[1].error.contains("ends inside"),
            "{}",
            refused[1].error
        );
        assert!(
            refused[2].error.contains("more than one"),
            "{}",
            refused[2].error
        );
        assert!(refused[3].error.contains("at 2099"), "{}", refused[3].error);
        assert!(refused[4].error.contains("id"), "{}", refused[4].error);
    }
}
