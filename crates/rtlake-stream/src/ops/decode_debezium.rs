//! Debezium's change events (`run.input.format = "debezium"`), as JSON with or without the
//! converter's `schema` part: each event becomes one row of the declared columns, taken from
//! `after` (a snapshot read `r`, an insert `c`, an update `u`) or from `before` (a delete `d`:
//! with Postgres' default replica identity only its key columns are set), plus four columns of
//! its envelope:
//!
//! - `_op`: `r`, `c`, `u` or `d`, for an upsert sink's `delete-when = "_op = 'd'"`;
//! - `_position`: the change's position in its database's log (Postgres' `source.lsn`), for an
//!   upsert sink's `order-by`, so a change delivered again late never undoes a newer one; null
//!   where the connector gives none;
//! - `_source_ts`: when the database made the change (`source.ts_ms`);
//! - `_table`: the captured table (`source.table`), for a stage per table when several tables
//!   share a topic.
//!
//! Tombstones (a null value after each delete, for log compaction) are skipped: the delete
//! event before them says all. A truncate or a message that is no change event is refused,
//! naming why.

use super::decode::{Records, Refused};
use super::decode_json::{JsonDecoder, Payload};
use crate::config::InputConfig;
use crate::source::RawMessage;
use crate::{Error, Kind, Result};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// The envelope's columns, after the declared ones.
pub const ENVELOPE: [&str; 4] = ["_op", "_position", "_source_ts", "_table"];

/// The decoder of a Debezium input.
pub struct DebeziumDecoder {
    pub(crate) json: JsonDecoder,
}

impl DebeziumDecoder {
    /// The decoder of `input`: its declared schema is the captured rows' columns.
    pub fn new(input: &InputConfig) -> Result<Self> {
        let declared = rtlake_core::ddl::parse_schema(&input.schema)
            .map_err(|e| Error::caused(Kind::Config, "run.input.schema", e))?;
        if let Some(f) = declared
            .fields()
            .iter()
            .find(|f| ENVELOPE.contains(&f.name().as_str()))
        {
            return Err(Error::new(
                Kind::Config,
                format!(
                    "run.input.schema: {} is a column the debezium format adds ({}); rename it",
                    f.name(),
                    ENVELOPE.join(", ")
                ),
            ));
        }
        let mut fields: Vec<Field> = declared
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.extend([
            Field::new("_op", DataType::Utf8, false),
            Field::new("_position", DataType::Int64, true),
            Field::new(
                "_source_ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("_table", DataType::Utf8, true),
        ]);
        Ok(Self {
            json: JsonDecoder::of(Schema::new(fields), input.event_time.as_deref())?,
        })
    }

    /// Decodes an epoch's change events (see [`super::decode::Decoder::decode`]).
    pub fn decode(
        &self,
        topic: &str,
        msgs: &[RawMessage],
        now: DateTime<Utc>,
        max_future: std::time::Duration,
    ) -> Result<(Records, Vec<Refused>)> {
        // Tombstones carry nothing: decode the rest, then give rows their message's index back.
        let live: Vec<usize> = (0..msgs.len())
            .filter(|i| msgs[*i].payload.as_ref().is_some_and(|p| !p.is_empty()))
            .collect();
        let rows: Vec<std::result::Result<Vec<u8>, String>> = live
            .iter()
            .map(|i| flatten(msgs[*i].payload.as_deref().unwrap_or_default()))
            .collect();
        let payloads: Vec<Payload> = rows
            .iter()
            .map(|r| r.as_deref().map_err(Clone::clone))
            .collect();
        if live.len() == msgs.len() {
            return self
                .json
                .decode_payloads(topic, msgs, &payloads, now, max_future);
        }
        let kept: Vec<RawMessage> = live.iter().map(|i| msgs[*i].clone()).collect();
        let (mut records, mut refused) = self
            .json
            .decode_payloads(topic, &kept, &payloads, now, max_future)?;
        for r in &mut records.rows {
            *r = live[*r];
        }
        for r in &mut refused {
            r.index = live[r.index];
        }
        Ok((records, refused))
    }
}

/// One change event as a flat JSON object: the row's fields and the envelope's columns.
fn flatten(payload: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let v: Value = serde_json::from_slice(payload).map_err(|e| format!("not JSON: {e}"))?;
    // The JSON converter with schemas.enable wraps the event as {"schema": …, "payload": …}.
    let event = match v {
        Value::Object(mut o) if o.contains_key("schema") && o.contains_key("payload") => {
            o.remove("payload").unwrap_or(Value::Null)
        }
        v => v,
    };
    let Value::Object(mut event) = event else {
        return Err("not a Debezium change event: not a JSON object".into());
    };
    let op = match event.get("op") {
        Some(Value::String(op)) => op.clone(),
        _ => return Err("not a Debezium change event: it has no op".into()),
    };
    let side = match op.as_str() {
        "r" | "c" | "u" => "after",
        "d" => "before",
        "t" => {
            return Err(
                "a truncate (op t) empties the captured table: rtlake does not apply it; truncate the lake table by hand"
                    .into(),
            );
        }
        other => {
            return Err(format!(
                "op {other} is not a change Debezium makes (r, c, u, d)"
            ));
        }
    };
    let mut row: Map<String, Value> = match event.remove(side) {
        Some(Value::Object(row)) => row,
        _ => return Err(format!("op {op} has no `{side}` row")),
    };
    let source = event.get("source");
    let field = |k: &str| {
        source
            .and_then(|s| s.get(k))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let ts = field("ts_ms")
        .as_i64()
        .and_then(DateTime::from_timestamp_millis)
        .map_or(Value::Null, |t| Value::String(t.to_rfc3339()));
    row.insert("_op".into(), Value::String(op));
    row.insert("_position".into(), field("lsn"));
    row.insert("_source_ts".into(), ts);
    row.insert("_table".into(), field("table"));
    serde_json::to_vec(&Value::Object(row)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Int64Array, StringArray};

    fn msg(offset: i64, payload: Option<&str>) -> RawMessage {
        RawMessage {
            partition: 0,
            offset,
            key: Some(b"{\"id\":1}".to_vec().into()),
            payload: payload.map(|p| p.as_bytes().to_vec().into()),
            timestamp: Some(1_700_000_000_000),
        }
    }

    fn event(op: &str, before: &str, after: &str, lsn: i64) -> String {
        format!(
            r#"{{"before":{before},"after":{after},"source":{{"connector":"postgresql","lsn":{lsn},"ts_ms":1700000000123,"table":"orders"}},"op":"{op}","ts_ms":1700000000200}}"#
        )
    }

    #[test]
    fn changes_become_rows_and_tombstones_are_skipped() {
        let d = DebeziumDecoder::new(&InputConfig {
            topic: None,
            format: "debezium".into(),
            schema: "id BIGINT, note STRING".into(),
            event_time: None,
            schema_registry: None,
            subject: None,
        })
        .unwrap();
        let with_schema = format!(
            r#"{{"schema":{{"type":"struct"}},"payload":{}}}"#,
            event("u", "null", r#"{"id":1,"note":"b"}"#, 20)
        );
        let msgs = vec![
            msg(0, Some(&event("r", "null", r#"{"id":1,"note":"a"}"#, 10))),
            msg(1, Some(&with_schema)),
            msg(2, Some(&event("d", r#"{"id":1,"note":null}"#, "null", 30))),
            msg(3, None),
            msg(4, Some(&event("t", "null", "null", 40))),
            msg(5, Some(r#"{"id":2}"#)),
        ];
        let (rec, refused) = d
            .decode("t", &msgs, Utc::now(), std::time::Duration::from_secs(60))
            .unwrap();
        assert_eq!(rec.rows, vec![0, 1, 2]);
        let b = &rec.batch;
        let col = |n: &str| b.column_by_name(n).unwrap().clone();
        let op = col("_op");
        let op = op.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(op.iter().flatten().collect::<Vec<_>>(), ["r", "u", "d"]);
        let pos = col("_position");
        let pos = pos.as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(pos.values().to_vec(), [10, 20, 30]);
        let note = col("note");
        let note = note.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(note.value(1), "b");
        assert!(note.is_null(2));
        let offsets = col("_offset");
        let offsets = offsets.as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(offsets.values().to_vec(), [0, 1, 2]);
        let why: Vec<(usize, &str)> = refused
            .iter()
            .map(|r| (r.index, r.error.as_str()))
            .collect();
        assert_eq!(why.len(), 2, "{why:?}");
        assert_eq!(why[0].0, 4);
        assert!(why[0].1.contains("truncate"), "{why:?}");
        assert_eq!(why[1].0, 5);
        assert!(why[1].1.contains("no op"), "{why:?}");
    }
}
