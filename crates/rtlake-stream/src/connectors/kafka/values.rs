//! A Kafka sink's message values (`value-format`): `json`, one object per row, or `avro`, each
//! row in the Confluent wire format (a zero byte, the schema's id, the Avro body), so that any
//! consumer with a registry client (Confluent's deserializers, Spark with ABRiS, Flink) reads
//! them typed.
//!
//! The Avro schema is derived from the rows' Arrow schema (arrow-avro: structs as records,
//! lists as arrays, maps, decimals, timestamps with their logical types, nullable columns as
//! unions with null) and registered under `<topic>-value` the first time the sink meets it,
//! and again when the rows' schema changes (a new column from an input's new schema version);
//! the registry answers with the same id for a schema it holds.

use crate::ops::decode_registry::{connect, patiently, registry_kind};
use crate::{Error, Kind, Result};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_avro::schema::{AvroSchema, FingerprintStrategy};
use arrow_avro::writer::WriterBuilder;
use arrow_avro::writer::format::AvroSoeFormat;
use rtlake_registry::{Schema, SchemaRegistry, SchemaType};

/// How a sink turns rows into message values.
pub(crate) enum Values {
    /// One JSON object per row.
    Json,
    /// Avro in the Confluent wire format.
    Avro {
        registry: SchemaRegistry,
        /// `<topic>-value`.
        subject: String,
        /// The rows' schema last registered, and its id.
        registered: Option<(SchemaRef, u32)>,
    },
}

/// The encoded values of a batch's rows: row `i` is `data[offsets[i]..offsets[i + 1]]`.
pub(crate) struct Encoded {
    data: Vec<u8>,
    offsets: Vec<usize>,
}

impl Encoded {
    /// Row `i`'s value.
    pub fn row(&self, i: usize) -> &[u8] {
        &self.data[self.offsets[i]..self.offsets[i + 1]]
    }

    /// Every row's value, in order.
    pub fn rows(&self) -> Vec<&[u8]> {
        (0..self.offsets.len().saturating_sub(1))
            .map(|i| self.row(i))
            .collect()
    }
}

impl Values {
    /// The values of a sink of `topic` in `format` (`json` when unset); `registry` is the
    /// schema registry's URL for `avro` (checked at load).
    pub fn open(topic: &str, format: Option<&str>, registry: Option<&str>) -> Result<Self> {
        match (format.unwrap_or("json"), registry) {
            ("json", _) => Ok(Self::Json),
            ("avro", Some(url)) => Ok(Self::Avro {
                registry: connect("schema-registry", url)?,
                subject: format!("{topic}-value"),
                registered: None,
            }),
            (other, _) => Err(Error::new(
                Kind::Config,
                format!("kafka sink {topic}: value-format {other} needs a schema-registry"),
            )),
        }
    }

    /// The values of `batch`'s rows.
    pub async fn encode(&mut self, topic: &str, batch: &RecordBatch) -> Result<Encoded> {
        if batch.num_rows() == 0 {
            return Ok(Encoded {
                data: Vec::new(),
                offsets: vec![0],
            });
        }
        match self {
            Self::Json => json(topic, batch),
            Self::Avro {
                registry,
                subject,
                registered,
            } => {
                let id = match registered {
                    Some((schema, id)) if *schema == batch.schema() => *id,
                    _ => {
                        let id = register(registry, subject, &batch.schema()).await?;
                        *registered = Some((batch.schema(), id));
                        id
                    }
                };
                avro(topic, batch, id)
            }
        }
    }
}

/// Registers the Avro form of `schema` under `subject`; its id.
async fn register(registry: &SchemaRegistry, subject: &str, schema: &SchemaRef) -> Result<u32> {
    let avro = AvroSchema::try_from(schema.as_ref()).map_err(|e| {
        Error::new(
            Kind::Config,
            format!("{subject}: the rows' columns have no Avro schema: {e}"),
        )
    })?;
    let schema = Schema {
        schema_type: SchemaType::Avro,
        schema: avro.json_string,
        references: Vec::new(),
    };
    let id = patiently(|| registry.register(subject, &schema))
        .await
        .map_err(|e| Error::caused(registry_kind(&e), format!("register {subject}'s schema"), e))?;
    tracing::info!(
        subject,
        id,
        "kafka sink: the rows' Avro schema is registered"
    );
    Ok(id)
}

fn avro(topic: &str, batch: &RecordBatch, id: u32) -> Result<Encoded> {
    let fail = |e: &dyn std::fmt::Display| {
        Error::new(Kind::Sink, format!("kafka sink {topic}: rows as Avro: {e}"))
    };
    let mut enc = WriterBuilder::new(batch.schema().as_ref().clone())
        .with_fingerprint_strategy(FingerprintStrategy::Id(id))
        .build_encoder::<AvroSoeFormat>()
        .map_err(|e| fail(&e))?;
    enc.encode(batch).map_err(|e| fail(&e))?;
    let rows = enc.flush();
    Ok(Encoded {
        data: rows.bytes().to_vec(),
        offsets: rows.offsets().to_vec(),
    })
}

fn json(topic: &str, batch: &RecordBatch) -> Result<Encoded> {
    let fail = |e| Error::caused(Kind::Sink, format!("kafka sink {topic}: rows as JSON"), e);
    let mut data = Vec::new();
    let mut w = arrow::json::LineDelimitedWriter::new(&mut data);
    w.write(batch).map_err(fail)?;
    w.finish().map_err(fail)?;
    let mut offsets = vec![0];
    for (i, b) in data.iter().enumerate() {
        if *b == b'\n' {
            offsets.push(i + 1);
        }
    }
    // Each row's value without its newline.
    let mut out = Vec::with_capacity(data.len());
    let mut starts = vec![0];
    for w in offsets.windows(2) {
        out.extend_from_slice(&data[w[0]..w[1] - 1]);
        starts.push(out.len());
    }
    Ok(Encoded {
        data: out,
        offsets: starts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field};
    use std::sync::Arc;

    #[test]
    fn json_values_are_one_object_per_row_and_avro_ones_carry_the_schema_id() {
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["a", "b"])),
                Arc::new(Int64Array::from(vec![Some(1), None])),
            ],
        )
        .unwrap();
        let j = json("t", &batch).unwrap();
        assert_eq!(
            j.rows(),
            vec![&br#"{"id":"a","n":1}"#[..], br#"{"id":"b"}"#]
        );
        let a = avro("t", &batch, 7).unwrap();
        let rows = a.rows();
        assert_eq!(rows.len(), 2);
        for r in rows {
            assert_eq!(rtlake_registry::wire::split(r).unwrap().0, 7);
        }
    }
}
