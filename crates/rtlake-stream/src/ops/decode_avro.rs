//! Decoding Avro messages in the Confluent wire format to Arrow columns, by the schemas of a
//! schema registry (`run.input.format = "avro"`), with arrow-avro's decoder.
//!
//! The columns are those of the subject's latest schema when the pipeline starts (the
//! *reader* schema); each message is decoded by the schema whose id it carries (its *writer*
//! schema), fetched once, and resolved to the reader's by Avro's rules: a field the writer
//! lacks takes the reader's default, a field the reader lacks is skipped, a type is promoted
//! (int to long, ...). A message whose schema id the registry does not hold, whose schema does
//! not resolve to the reader's, or whose bytes do not match its schema, is refused (`decode`,
//! naming the id and what is wrong); the rest of the epoch decodes as if it had not been there.
//!
//! Types follow the schema: records as structs, arrays as lists, maps, enums as strings,
//! unions with null as nullable columns, decimals, dates, and timestamps as the lake's
//! timestamps (microseconds; UTC for `timestamp-*`, none for `local-timestamp-*`).

use super::decode::{Framing, Records, Refused, decode_error};
use super::decode_registry::{Subject, Writers};
use crate::config::InputConfig;
use crate::source::RawMessage;
use crate::{Error, Kind, Result};
use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, TimeUnit};
use arrow_avro::codec::Tz;
use arrow_avro::reader::{Decoder as Avro, ReaderBuilder};
use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore};
use chrono::{DateTime, Utc};
use rtlake_registry::{SchemaType, wire};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Rows per Arrow batch the decoder fills before it hands one over.
const BATCH: usize = 8192;
/// The decoder of an Avro input.
pub struct AvroDecoder {
    pub(crate) framing: Framing,
    subject: Subject,
    /// The subject's latest schema at start: the columns.
    reader: AvroSchema,
    /// The writer schemas seen so far that resolve to the reader's, by id.
    writers: Writers<AvroSchema>,
    /// A decoder for `writers`, kept across epochs; rebuilt when a writer is added or a
    /// message left it in an unknown state.
    decoder: Option<Avro>,
}

impl AvroDecoder {
    /// The decoder of `input` (reading `topic`): asks the registry for the subject's latest
    /// schema, waiting a while if it does not answer.
    pub async fn open(input: &InputConfig, topic: &str) -> Result<Self> {
        let (subject, latest) = Subject::open(input, topic, SchemaType::Avro).await?;
        let reader = AvroSchema::new(latest.schema.schema.clone());
        let writers = Writers::new(latest.id, reader.clone());
        let decoded = build(&reader, writers.read())
            .map_err(|e| {
                Error::new(
                    Kind::Config,
                    format!(
                        "subject {}'s latest schema (id {}, version {}): {e}",
                        subject.name, latest.id, latest.version
                    ),
                )
            })?
            .schema();
        let declared = Schema::new(decoded.fields().iter().map(lake_field).collect::<Vec<_>>());
        tracing::info!(
            subject = %subject.name,
            id = latest.id,
            version = latest.version,
            columns = declared.fields().len(),
            "avro input: the columns are the subject's latest schema"
        );
        Ok(Self {
            framing: Framing::new(declared, input.event_time.as_deref())?,
            subject,
            reader,
            writers,
            decoder: None,
        })
    }

    /// Fetches the schemas `msgs` name that were not seen before, and decides for each whether
    /// its messages can be read.
    pub async fn prepare(&mut self, msgs: &[RawMessage]) -> Result<()> {
        let (reader, subject) = (&self.reader, &self.subject);
        let before = self.writers.read().len();
        self.writers
            .learn(subject, msgs, "avro", |id, s| {
                let writer = AvroSchema::new(s.schema.clone());
                build(reader, &[(id, writer.clone())].into()).map_err(|e| {
                    format!(
                        "schema id {id} cannot be read as subject {}'s schema (id {}): {e}",
                        subject.name, subject.reader_id
                    )
                })?;
                let new = new_fields(reader, &writer);
                Ok((writer, new))
            })
            .await?;
        if self.writers.read().len() != before {
            // The decoder knows the writers it was built with.
            self.decoder = None;
        }
        Ok(())
    }

    /// Decodes an epoch's messages (after [`AvroDecoder::prepare`]; see
    /// [`super::decode::Decoder::decode`]).
    pub fn decode(
        &mut self,
        topic: &str,
        msgs: &[RawMessage],
        now: DateTime<Utc>,
        max_future: Duration,
    ) -> Result<(Records, Vec<Refused>)> {
        let mut refused = Vec::new();
        let mut order = Vec::with_capacity(msgs.len());
        for (i, m) in msgs.iter().enumerate() {
            match self.writers.of(m)? {
                Err(why) => refused.push(decode_error(i, why)),
                // Guards the decoder, which would take the next message's bytes as this one's.
                Ok((_, _, [])) => refused.push(decode_error(
                    i,
                    "the message holds no Avro record after its header".into(),
                )),
                Ok(_) => order.push(i),
            }
        }
        let mut parts = Vec::new();
        self.decode_rows(msgs, &order, &mut parts, &mut refused)?;
        let mut batches = Vec::with_capacity(parts.len());
        let mut rows = Vec::with_capacity(order.len());
        for (b, idx) in parts {
            batches.push(self.to_lake(b)?);
            rows.extend(idx);
        }
        let declared = arrow::compute::concat_batches(&self.framing.declared, &batches)
            .map_err(|e| Error::caused(Kind::Source, "decoded rows", e))?;
        self.framing
            .finish(declared, rows, topic, msgs, now, max_future, refused)
    }

    fn decoder(&mut self) -> Result<Avro> {
        match self.decoder.take() {
            Some(d) => Ok(d),
            None => build(&self.reader, self.writers.read())
                .map_err(|e| Error::new(Kind::Source, format!("avro decoder: {e}"))),
        }
    }

    /// Decodes the messages `order` into parts (a batch and its messages' indices). A message
    /// the decoder refuses may have left part of itself in the decoder: the rows of the batch
    /// in progress are decoded again with a fresh one, and the rest go on with it.
    fn decode_rows(
        &mut self,
        msgs: &[RawMessage],
        order: &[usize],
        parts: &mut Vec<(RecordBatch, Vec<usize>)>,
        refused: &mut Vec<Refused>,
    ) -> Result<()> {
        let payload = |i: usize| msgs[i].payload.as_deref().unwrap_or_default();
        let mut dec = self.decoder()?;
        let mut fed: Vec<usize> = Vec::new();
        for &i in order {
            if let Err(why) = feed(&mut dec, payload(i), i, &mut fed, parts) {
                refused.push(decode_error(i, why));
                self.decoder = None;
                dec = self.decoder()?;
                for j in std::mem::take(&mut fed) {
                    feed(&mut dec, payload(j), j, &mut fed, parts).map_err(|e| {
                        Error::new(
                            Kind::Source,
                            format!("avro decoder: message {j} decoded once, then not: {e}"),
                        )
                    })?;
                }
            }
        }
        if let Some(b) = dec
            .flush()
            .map_err(|e| Error::new(Kind::Source, format!("avro decoder: {e}")))?
        {
            parts.push((b, fed));
        }
        self.decoder = Some(dec);
        Ok(())
    }

    /// A decoded batch as the declared columns (the lake's types).
    fn to_lake(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let declared = &self.framing.declared;
        let cols = batch
            .columns()
            .iter()
            .zip(declared.fields())
            .map(|(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(c.clone())
                } else {
                    arrow::compute::cast(c, f.data_type())
                        .map_err(|e| Error::caused(Kind::Source, format!("column {}", f.name()), e))
                }
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        RecordBatch::try_new(declared.clone(), cols)
            .map_err(|e| Error::caused(Kind::Source, "decoded rows", e))
    }
}

/// Feeds one message; it must hold exactly one record. A batch cut short by a change of
/// writer schema, or full, goes to `parts` with the messages it holds.
fn feed(
    dec: &mut Avro,
    p: &[u8],
    i: usize,
    fed: &mut Vec<usize>,
    parts: &mut Vec<(RecordBatch, Vec<usize>)>,
) -> std::result::Result<(), String> {
    type Parts = Vec<(RecordBatch, Vec<usize>)>;
    let take = |dec: &mut Avro, fed: &mut Vec<usize>, parts: &mut Parts| {
        if let Some(b) = dec.flush().map_err(|e| e.to_string())? {
            parts.push((b, std::mem::take(fed)));
        }
        Ok::<(), String>(())
    };
    let id = wire::split(p).map_or(0, |(id, _)| id);
    let not_one = |why: &dyn std::fmt::Display| {
        format!("the message is not one Avro record of its schema (id {id}): {why}")
    };
    let mut held = BATCH - dec.capacity();
    let mut off = 0;
    loop {
        off += dec.decode(&p[off..]).map_err(|e| not_one(&e))?;
        if off < p.len() && dec.batch_is_full() {
            // The decoder read the header of a record in another writer schema, and stops
            // to hand over the rows of the one before; the record's body follows.
            take(dec, fed, parts)?;
            held = 0;
            continue;
        }
        break;
    }
    if off < p.len() || BATCH - dec.capacity() != held + 1 {
        return Err(not_one(&"it is cut short, or holds more than one"));
    }
    fed.push(i);
    if dec.batch_is_full() {
        take(dec, fed, parts)?;
    }
    Ok(())
}

/// A decoder resolving each of `writers` (Confluent ids) to `reader`.
fn build(
    reader: &AvroSchema,
    writers: &BTreeMap<u32, AvroSchema>,
) -> std::result::Result<Avro, String> {
    let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
    for (id, w) in writers {
        store
            .set(Fingerprint::Id(*id), w.clone())
            .map_err(|e| e.to_string())?;
    }
    ReaderBuilder::new()
        .with_batch_size(BATCH)
        .with_tz(Tz::Utc)
        .with_reader_schema(reader.clone())
        .with_writer_schema_store(store)
        .build_decoder()
        .map_err(|e| e.to_string())
}

/// The top-level fields of `writer` that `reader` lacks (by name), if any.
fn new_fields(reader: &AvroSchema, writer: &AvroSchema) -> Option<Vec<String>> {
    let names = |s: &AvroSchema| -> Vec<String> {
        serde_json::from_str::<serde_json::Value>(&s.json_string)
            .ok()
            .and_then(|v| v.get("fields").and_then(|f| f.as_array()).cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|f| f.get("name").and_then(|n| n.as_str()).map(String::from))
            .collect()
    };
    let have = names(reader);
    let new: Vec<String> = names(writer)
        .into_iter()
        .filter(|n| !have.contains(n))
        .collect();
    (!new.is_empty()).then_some(new)
}

/// A column as the lake stores it: timestamps in microseconds, enums (dictionaries) and
/// string views as strings, the same inside structs, lists and maps.
fn lake_field(f: &FieldRef) -> Field {
    Field::new(f.name(), lake_type(f.data_type()), f.is_nullable())
}

fn lake_type(t: &DataType) -> DataType {
    match t {
        DataType::Timestamp(_, tz) => {
            DataType::Timestamp(TimeUnit::Microsecond, tz.as_ref().map(|_| Arc::from("UTC")))
        }
        DataType::Dictionary(_, v) => lake_type(v),
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::Struct(fields) => DataType::Struct(Fields::from(
            fields.iter().map(lake_field).collect::<Vec<_>>(),
        )),
        DataType::List(f) => DataType::List(Arc::new(lake_field(f))),
        DataType::LargeList(f) => DataType::LargeList(Arc::new(lake_field(f))),
        DataType::Map(f, sorted) => DataType::Map(Arc::new(lake_field(f)), *sorted),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests;
