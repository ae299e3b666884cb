//! Decoding JSON messages in the Confluent wire format, typed by the JSON Schemas of a schema
//! registry (`run.input.format = "json-schema"`).
//!
//! The columns are the subject's latest schema when the pipeline starts
//! ([`super::json_schema::columns`]); each message's JSON (after its header) is decoded to
//! them as a declared JSON input's is ([`JsonDecoder`]). The schema id a message carries is
//! fetched once and checked: one whose shared properties changed type, or that lacks a
//! required one, has its messages refused (`decode`, with why), as has one the registry does
//! not hold; one with new properties that is the subject's latest starts the pipeline again
//! with them as columns.

use super::decode::{Records, Refused};
use super::decode_json::{JsonDecoder, Payload};
use super::decode_registry::{Subject, Writers};
use super::json_schema;
use crate::config::InputConfig;
use crate::source::RawMessage;
use crate::{Error, Kind, Result};
use arrow::datatypes::Schema;
use chrono::{DateTime, Utc};
use rtlake_registry::SchemaType;

/// The decoder of a JSON Schema input.
pub struct JsonSchemaDecoder {
    pub(crate) json: JsonDecoder,
    subject: Subject,
    /// The columns (the subject's latest schema at start).
    columns: Schema,
    /// The writer schemas met (read ones need nothing kept).
    writers: Writers<()>,
}

impl JsonSchemaDecoder {
    /// The decoder of `input` (reading `topic`): asks the registry for the subject's latest
    /// schema, waiting a while if it does not answer.
    pub async fn open(input: &InputConfig, topic: &str) -> Result<Self> {
        let (subject, latest) = Subject::open(input, topic, SchemaType::Json).await?;
        let columns = json_schema::columns(&latest.schema.schema).map_err(|e| {
            Error::new(
                Kind::Config,
                format!(
                    "subject {}'s latest schema (id {}, version {}): {e}",
                    subject.name, latest.id, latest.version
                ),
            )
        })?;
        tracing::info!(
            subject = %subject.name,
            id = latest.id,
            version = latest.version,
            columns = columns.fields().len(),
            "json-schema input: the columns are the subject's latest schema"
        );
        Ok(Self {
            json: JsonDecoder::of(columns.clone(), input.event_time.as_deref())?,
            writers: Writers::new(latest.id, ()),
            subject,
            columns,
        })
    }

    /// Fetches the schemas `msgs` name that were not seen before, and decides for each whether
    /// its messages can be read.
    pub async fn prepare(&mut self, msgs: &[RawMessage]) -> Result<()> {
        let (columns, subject) = (&self.columns, &self.subject);
        self.writers
            .learn(subject, msgs, "json-schema", |id, s| {
                let writer =
                    json_schema::columns(&s.schema).map_err(|e| format!("schema id {id}: {e}"))?;
                json_schema::readable(columns, &writer, "property").map_err(|e| {
                    format!(
                        "schema id {id} cannot be read as subject {}'s schema (id {}): {e}",
                        subject.name, subject.reader_id
                    )
                })?;
                Ok(((), json_schema::new_properties(columns, &writer)))
            })
            .await
    }

    /// Decodes an epoch's messages (after [`JsonSchemaDecoder::prepare`]; see
    /// [`super::decode::Decoder::decode`]).
    pub fn decode(
        &self,
        topic: &str,
        msgs: &[RawMessage],
        now: DateTime<Utc>,
        max_future: std::time::Duration,
    ) -> Result<(Records, Vec<Refused>)> {
        let payloads = msgs
            .iter()
            .map(|m| Ok(self.writers.of(m)?.map(|(_, _, json)| json)))
            .collect::<Result<Vec<Payload>>>()?;
        self.json
            .decode_payloads(topic, msgs, &payloads, now, max_future)
    }
}
