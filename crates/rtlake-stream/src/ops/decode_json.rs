//! Decoding JSON messages straight to Arrow columns of a declared schema (arrow-json's tape
//! decoder), plus the source's metadata columns (`_topic`, `_partition`, `_offset`,
//! `_timestamp`, `_key`). Numbers and booleans may come as strings (some APIs send every field
//! as one), numbers are taken for STRING columns, unknown fields are ignored. A message
//! that is not one JSON object, or whose value does not fit its column, is refused with the
//! field named, and the rest of the epoch decodes as if it had not been there.

use super::decode::{Framing, Records, Refused, decode_error};
use crate::config::InputConfig;
use crate::source::RawMessage;
use crate::{Error, Kind, Result};
use arrow::array::RecordBatch;
use arrow::json::ReaderBuilder;
use arrow::json::reader::Decoder;
use chrono::{DateTime, Utc};

/// The decoder of a declared JSON input.
pub struct JsonDecoder {
    pub(crate) framing: Framing,
}

impl JsonDecoder {
    /// The decoder of `input` (validated at load; a bad schema is a configuration error).
    pub fn new(input: &InputConfig) -> Result<Self> {
        let declared = rtlake_core::ddl::parse_schema(&input.schema)
            .map_err(|e| Error::caused(Kind::Config, "run.input.schema", e))?;
        Self::of(declared, input.event_time.as_deref())
    }

    /// The decoder of JSON objects to `declared` columns (`event_time` one of them).
    pub(crate) fn of(declared: arrow::datatypes::Schema, event_time: Option<&str>) -> Result<Self> {
        Ok(Self {
            framing: Framing::new(declared, event_time)?,
        })
    }

    /// Also refuses, as `future`, an event alone far ahead of its partition
    /// ([`crate::ahead`]), with the run's `lateness`.
    pub fn with_lateness(mut self, lateness: std::time::Duration) -> Self {
        self.framing.set_lateness(lateness);
        self
    }

    /// The rows' schema: the declared columns, then the metadata columns.
    pub fn schema(&self) -> arrow::datatypes::SchemaRef {
        self.framing.schema.clone()
    }

    fn decoder(&self, rows: usize) -> Result<Decoder> {
        ReaderBuilder::new(self.framing.declared.clone())
            .with_batch_size(rows.max(1) + 1)
            .with_coerce_primitive(true)
            .build_decoder()
            .map_err(|e| Error::caused(Kind::Config, "run.input.schema", e))
    }

    /// Decodes an epoch's messages (see [`super::decode::Decoder::decode`]).
    pub fn decode(
        &self,
        topic: &str,
        msgs: &[RawMessage],
        now: DateTime<Utc>,
        max_future: std::time::Duration,
    ) -> Result<(Records, Vec<Refused>)> {
        let payloads: Vec<Payload> = msgs
            .iter()
            .map(|m| {
                m.payload
                    .as_deref()
                    .ok_or_else(|| "message has no value".into())
            })
            .collect();
        self.decode_payloads(topic, msgs, &payloads, now, max_future)
    }

    /// Decodes the JSON of `payloads` (one per message of `msgs`; a message whose JSON could
    /// not be found is refused with its reason).
    pub(crate) fn decode_payloads(
        &self,
        topic: &str,
        msgs: &[RawMessage],
        payloads: &[Payload],
        now: DateTime<Utc>,
        max_future: std::time::Duration,
    ) -> Result<(Records, Vec<Refused>)> {
        let mut refused = Vec::new();
        let mut parts: Vec<(RecordBatch, Vec<usize>)> = Vec::new();
        let mut dec = self.decoder(msgs.len())?;
        let mut fed: Vec<usize> = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            let p = match p {
                Ok(p) => *p,
                Err(why) => {
                    refused.push(decode_error(i, why.clone()));
                    continue;
                }
            };
            match feed(&mut dec, p) {
                Ok(()) => fed.push(i),
                Err(e) => {
                    refused.push(decode_error(i, e));
                    // The decoder holds part of the bad message: decode the good ones before
                    // it on their own, and go on with a fresh decoder.
                    self.flush_part(payloads, std::mem::take(&mut fed), &mut parts, &mut refused)?;
                    dec = self.decoder(msgs.len() - i)?;
                }
            }
        }
        match dec.flush() {
            Ok(Some(b)) => parts.push((b, fed)),
            Ok(None) => {}
            Err(_) => self.flush_part(payloads, fed, &mut parts, &mut refused)?,
        }
        let mut batches = Vec::with_capacity(parts.len());
        let mut rows = Vec::new();
        for (b, idx) in parts {
            batches.push(b);
            rows.extend(idx);
        }
        let declared = arrow::compute::concat_batches(&self.framing.declared, &batches)
            .map_err(|e| Error::caused(Kind::Source, "decoded rows", e))?;
        self.framing
            .finish(declared, rows, topic, msgs, now, max_future, refused)
    }

    /// Decodes `idx` (each already read as one JSON value) into a part; if a value does not fit
    /// its column, decodes them one by one to find which, refusing those.
    fn flush_part(
        &self,
        payloads: &[Payload],
        idx: Vec<usize>,
        parts: &mut Vec<(RecordBatch, Vec<usize>)>,
        refused: &mut Vec<Refused>,
    ) -> Result<()> {
        if idx.is_empty() {
            return Ok(());
        }
        let payload = |i: usize| payloads[i].as_deref().unwrap_or_default();
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
}

/// A message's JSON, or why it has none.
pub(crate) type Payload<'a> = std::result::Result<&'a [u8], String>;

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
    use arrow::array::{Int32Array, Int64Array, StringArray};

    fn msg(offset: i64, value: &str) -> RawMessage {
        RawMessage {
            partition: 0,
            offset,
            key: Some(b"k".to_vec().into()),
            payload: Some(value.as_bytes().to_vec().into()),
            timestamp: Some(1_700_000_000_000),
        }
    }

    fn decoder() -> JsonDecoder {
        JsonDecoder::new(&InputConfig {
            topic: None,
            format: "json".into(),
            schema: "id STRING NOT NULL, n INT, x DOUBLE, at TIMESTAMP".into(),
            event_time: Some("at".into()),
            schema_registry: None,
            subject: None,
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
