//! The station event's message formats (`source.format`): the contract's JSON, or — for
//! topics typed by a schema registry — Avro, JSON Schema or Protobuf in the Confluent wire
//! format (a zero byte, the schema's id, the payload; for Protobuf, the message's indexes
//! before it). The typed schemas keep the contract: the same eight
//! fields, each a string as the API sends it, so every format carries the same events and a
//! pipeline lands the same rows from each.

use crate::config::EventFormat;
use crate::model::{EVENT_FIELDS as FIELDS, StationEvent};
use crate::{Error, Result};
use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow_avro::schema::{FingerprintStrategy, SCHEMA_METADATA_KEY};
use arrow_avro::writer::WriterBuilder;
use arrow_avro::writer::format::AvroSoeFormat;
use rtlake_registry::{RegistryConfig, SchemaRegistry, SchemaType, wire};
use std::collections::HashMap;
use std::sync::Arc;

/// The event's Avro schema: a record of eight strings.
pub fn avro_schema() -> String {
    let fields: Vec<serde_json::Value> = FIELDS
        .iter()
        .map(|f| serde_json::json!({"name": f, "type": "string"}))
        .collect();
    serde_json::json!({
        "type": "record",
        "name": "StationEvent",
        "namespace": "rtlake.bikes",
        "doc": "A station's status at one poll of Seoul's bikeList API; every field a string, as the API sends it.",
        "fields": fields,
    })
    .to_string()
}

/// The event's JSON Schema: an object of eight required strings, in the contract's order
/// (written out by hand: serde_json's maps would sort the properties, and the order written is
/// the order of a reader's columns).
pub fn json_schema() -> String {
    let props: Vec<String> = FIELDS
        .iter()
        .map(|f| format!("{}:{{\"type\":\"string\"}}", serde_json::json!(f)))
        .collect();
    format!(
        "{{\"$schema\":\"http://json-schema.org/draft-07/schema#\",\"title\":\"StationEvent\",\
         \"type\":\"object\",\"properties\":{{{}}},\"required\":{}}}",
        props.join(","),
        serde_json::json!(FIELDS)
    )
}

/// The event's `.proto`: a message of eight strings, field numbers in the contract's order.
pub fn proto_schema() -> String {
    let fields: Vec<String> = FIELDS
        .iter()
        .enumerate()
        .map(|(i, f)| format!("  string {f} = {};", i + 1))
        .collect();
    format!(
        "syntax = \"proto3\";\npackage rtlake.bikes;\n\n// A station's status at one poll of Seoul's bikeList API; every field a string, as the API sends it.\nmessage StationEvent {{\n{}\n}}\n",
        fields.join("\n")
    )
}

/// Turns a poll's events into message values.
pub enum Values {
    /// The contract's JSON.
    Json,
    /// Avro, schema `id`.
    Avro {
        /// The registered schema's id.
        id: u32,
        /// The Arrow form of the event, carrying the Avro schema.
        schema: Arc<Schema>,
    },
    /// JSON framed with schema `id`.
    JsonSchema {
        /// The registered schema's id.
        id: u32,
    },
    /// Protobuf framed with schema `id`.
    Protobuf {
        /// The registered schema's id.
        id: u32,
    },
}

impl Values {
    /// The values of `format`; registers the event's schema under `<topic>-value` in
    /// `registry` for the typed ones.
    pub async fn open(format: EventFormat, registry: Option<&str>, topic: &str) -> Result<Self> {
        let (kind, text) = match format {
            EventFormat::Json => return Ok(Self::Json),
            EventFormat::Avro => (SchemaType::Avro, avro_schema()),
            EventFormat::JsonSchema => (SchemaType::Json, json_schema()),
            EventFormat::Protobuf => (SchemaType::Protobuf, proto_schema()),
        };
        let key = "source.schema-registry";
        let url = registry.ok_or_else(|| Error::Registry(format!("{key}: not set")))?;
        let config =
            RegistryConfig::from_env(key, url).map_err(|e| Error::Registry(e.to_string()))?;
        let client = SchemaRegistry::new(config).map_err(|e| Error::Registry(e.to_string()))?;
        let subject = format!("{topic}-value");
        let schema = rtlake_registry::Schema {
            schema_type: kind,
            schema: text.clone(),
            references: Vec::new(),
        };
        let id = client
            .register(&subject, &schema)
            .await
            .map_err(|e| Error::Registry(format!("register {subject}: {e}")))?;
        tracing::info!(%subject, id, format = ?format, "the station event's schema is registered");
        Ok(match format {
            EventFormat::Avro => Self::Avro {
                id,
                schema: Arc::new(Schema::new_with_metadata(
                    FIELDS
                        .iter()
                        .map(|f| Field::new(*f, DataType::Utf8, false))
                        .collect::<Vec<_>>(),
                    HashMap::from([(SCHEMA_METADATA_KEY.to_string(), text)]),
                )),
            },
            EventFormat::Protobuf => Self::Protobuf { id },
            _ => Self::JsonSchema { id },
        })
    }

    /// The values of `events`, in order.
    pub fn encode(&self, events: &[StationEvent]) -> Result<Vec<Vec<u8>>> {
        match self {
            Self::Json => Ok(events.iter().map(|e| e.to_json().into_bytes()).collect()),
            Self::JsonSchema { id } => Ok(events
                .iter()
                .map(|e| {
                    let mut v = Vec::with_capacity(256);
                    wire::header(*id, &mut v);
                    v.extend_from_slice(e.to_json().as_bytes());
                    v
                })
                .collect()),
            Self::Avro { id, schema } => avro(*id, schema, events),
            Self::Protobuf { id } => Ok(events.iter().map(|e| protobuf(*id, e)).collect()),
        }
    }
}

/// One event in Protobuf's encoding (prost's), behind the header and the message indexes
/// (a count of 0: the file's first message).
fn protobuf(id: u32, e: &StationEvent) -> Vec<u8> {
    use prost_reflect::prost::encoding::string::encode;
    let mut v = Vec::with_capacity(256);
    wire::header(id, &mut v);
    v.push(0);
    let values = [
        &e.rack_tot_cnt,
        &e.station_name,
        &e.parking_bike_tot_cnt,
        &e.shared,
        &e.station_latitude,
        &e.station_longitude,
        &e.station_id,
        &e.polled_at,
    ];
    for (tag, value) in (1..).zip(values) {
        encode(tag, value, &mut v);
    }
    v
}

fn avro(id: u32, schema: &Arc<Schema>, events: &[StationEvent]) -> Result<Vec<Vec<u8>>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let col = |f: fn(&StationEvent) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(events.iter().map(f)))
    };
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            col(|e| &e.rack_tot_cnt),
            col(|e| &e.station_name),
            col(|e| &e.parking_bike_tot_cnt),
            col(|e| &e.shared),
            col(|e| &e.station_latitude),
            col(|e| &e.station_longitude),
            col(|e| &e.station_id),
            col(|e| &e.polled_at),
        ],
    )
    .map_err(|e| Error::Data(format!("events as Avro: {e}")))?;
    let fail = |e: arrow_avro::errors::AvroError| Error::Data(format!("events as Avro: {e}"));
    let mut enc = WriterBuilder::new(schema.as_ref().clone())
        .with_fingerprint_strategy(FingerprintStrategy::Id(id))
        .build_encoder::<AvroSoeFormat>()
        .map_err(fail)?;
    enc.encode(&batch).map_err(fail)?;
    Ok(enc.flush().iter().map(|b| b.to_vec()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_typed_schemas_carry_the_contracts_fields_in_order() {
        let avro: serde_json::Value = serde_json::from_str(&avro_schema()).unwrap();
        let names: Vec<&str> = avro["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, FIELDS);
        let js: serde_json::Value = serde_json::from_str(&json_schema()).unwrap();
        assert_eq!(js["required"], serde_json::json!(FIELDS));
        let text = json_schema();
        let at: Vec<usize> = FIELDS
            .iter()
            .map(|f| text.find(&format!("\"{f}\":")).unwrap())
            .collect();
        assert!(
            at.windows(2).all(|w| w[0] < w[1]),
            "properties in the contract's order: {text}"
        );
        let event = StationEvent {
            rack_tot_cnt: "10".into(),
            station_name: "102. 망원역 1번출구 앞".into(),
            parking_bike_tot_cnt: "3".into(),
            shared: "30".into(),
            station_latitude: "37.55564880".into(),
            station_longitude: "126.91062927".into(),
            station_id: "ST-4".into(),
            polled_at: "2025-10-01T08:00:00+09:00".into(),
        };
        let json: serde_json::Value = serde_json::from_str(&event.to_json()).unwrap();
        let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
        let mut sorted = FIELDS.to_vec();
        sorted.sort();
        assert_eq!(
            keys, sorted,
            "the JSON event has exactly the schema's fields"
        );
        let values = Values::Avro {
            id: 5,
            schema: Arc::new(Schema::new_with_metadata(
                FIELDS
                    .iter()
                    .map(|f| Field::new(*f, DataType::Utf8, false))
                    .collect::<Vec<_>>(),
                HashMap::from([(SCHEMA_METADATA_KEY.to_string(), avro_schema())]),
            )),
        };
        let v = values.encode(&[event.clone(), event]).unwrap();
        assert_eq!(v.len(), 2);
        let (id, body) = wire::split(&v[0]).unwrap();
        assert_eq!(id, 5);
        // The body is the eight strings, each a zig-zag length then its bytes: "10" first.
        assert_eq!(&body[..3], &[4, b'1', b'0']);
    }
}
