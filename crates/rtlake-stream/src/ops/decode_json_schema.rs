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
use super::decode_registry::Subject;
use super::json_schema;
use crate::config::InputConfig;
use crate::source::RawMessage;
use crate::{Error, Kind, Result};
use arrow::datatypes::Schema;
use chrono::{DateTime, Utc};
use rtlake_registry::{SchemaType, wire};
use std::collections::{BTreeMap, BTreeSet};

/// The decoder of a JSON Schema input.
pub struct JsonSchemaDecoder {
    pub(crate) json: JsonDecoder,
    subject: Subject,
    /// The columns (the subject's latest schema at start).
    columns: Schema,
    /// The writer schemas whose messages are read.
    writers: BTreeSet<u32>,
    /// The ids whose messages are refused, with why.
    refused_ids: BTreeMap<u32, String>,
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
            writers: [latest.id].into(),
            subject,
            columns,
            refused_ids: BTreeMap::new(),
        })
    }

    /// Fetches the schemas `msgs` name that were not seen before, and decides for each whether
    /// its messages can be read.
    pub async fn prepare(&mut self, msgs: &[RawMessage]) -> Result<()> {
        let new = self.subject.unknown_ids(msgs, |id| {
            self.writers.contains(&id) || self.refused_ids.contains_key(&id)
        });
        for id in new {
            let read = match self.subject.writer(id).await? {
                Err(why) => Err(why),
                Ok(s) => json_schema::columns(&s.schema)
                    .map_err(|e| format!("schema id {id}: {e}"))
                    .and_then(|w| {
                        json_schema::readable(&self.columns, &w)
                            .map(|()| w)
                            .map_err(|e| {
                                format!(
                                    "schema id {id} cannot be read as subject {}'s schema (id {}): {e}",
                                    self.subject.name, self.subject.reader_id
                                )
                            })
                    }),
            };
            match read {
                Ok(writer) => {
                    if let Some(new) = json_schema::new_properties(&self.columns, &writer) {
                        self.subject.adopt_if_latest(id, &new).await?;
                    }
                    tracing::info!(subject = %self.subject.name, id, "json-schema input: a new writer schema");
                    self.writers.insert(id);
                }
                Err(why) => {
                    tracing::warn!(subject = %self.subject.name, id, reason = %why, "json-schema input: messages of this schema are refused");
                    self.refused_ids.insert(id, why);
                }
            }
        }
        Ok(())
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
            .map(|m| self.payload(m))
            .collect::<Result<Vec<Payload>>>()?;
        self.json
            .decode_payloads(topic, msgs, &payloads, now, max_future)
    }

    /// A message's JSON after its header, or why it is refused.
    fn payload<'a>(&self, m: &'a RawMessage) -> Result<Payload<'a>> {
        let Some(p) = m.payload.as_deref() else {
            return Ok(Err("the message has no value".into()));
        };
        let (id, json) = match wire::split(p) {
            Ok(split) => split,
            Err(e) => return Ok(Err(e.to_string())),
        };
        if let Some(why) = self.refused_ids.get(&id) {
            return Ok(Err(why.clone()));
        }
        if !self.writers.contains(&id) {
            return Err(Error::new(
                Kind::Source,
                format!("schema id {id} was not fetched before decoding"),
            ));
        }
        Ok(Ok(json))
    }
}
