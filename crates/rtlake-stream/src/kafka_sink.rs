//! The Kafka sink: each row as a JSON message, at least once.
//!
//! The local broker has no transactions, so the sink publishes an epoch's rows with an
//! idempotent producer, waits for every delivery, and only then records the epoch's end offsets
//! as its version (one file per input partition in the checkpoint). A crash between the two
//! publishes the epoch again. Keys are deterministic (a column of the row) and every message
//! carries the headers `rtlake-pipeline`, `rtlake-partition` and `rtlake-offset` (the input
//! message that produced it), so a consumer can drop the duplicates an epoch in flight at a
//! crash produces.

use crate::{Error, Result};
use arrow::array::{Array, RecordBatch, StringArray};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rtlake_core::config::{KafkaConfig, ProducerConfig};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// A topic that one operator's rows are published to.
pub struct KafkaSink {
    topic: String,
    key: String,
    pipeline: String,
    producer: FutureProducer,
    /// `<checkpoint>/sinks/<topic>`: one file per input partition holding the version.
    dir: PathBuf,
    known: BTreeMap<i32, i64>,
}

fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::Checkpoint(format!("{}: {e}", path.display()))
}

/// A Kafka sink's version of a partition from its folder (`None`: never written).
pub fn read_version(dir: &std::path::Path, partition: i32) -> Result<Option<i64>> {
    let file = dir.join(format!("{partition}.json"));
    match std::fs::read_to_string(&file) {
        Ok(s) => s.trim().parse().map(Some).map_err(|e| Error::Checkpoint(format!("{}: {e}", file.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&file)(e)),
    }
}

impl KafkaSink {
    /// A sink publishing to `topic` (created if missing), keyed by the string column `key`.
    /// The producer settings are `[producer]`'s (idempotent by default).
    pub async fn open(kafka: &KafkaConfig, producer: &ProducerConfig, topic: &str, key: &str, pipeline: &str, checkpoint: &std::path::Path) -> Result<Self> {
        rtlake_kafka::admin::ensure_topic(kafka, topic).await?;
        let producer: FutureProducer = rtlake_kafka::client::producer(kafka, producer)
            .create()
            .map_err(|e| Error::Kafka(rtlake_kafka::Error::Kafka { context: format!("create producer for {topic}"), cause: e }))?;
        let dir = checkpoint.join("sinks").join(topic);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(Self { topic: topic.into(), key: key.into(), pipeline: pipeline.into(), producer, dir, known: BTreeMap::new() })
    }

    /// The sink's name: `kafka:<topic>`.
    pub fn name(&self) -> String {
        format!("kafka:{}", self.topic)
    }

    /// The folder of its version files (`<checkpoint>/sinks/<topic>`).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Reads the versions of `parts` from the checkpoint.
    pub fn refresh(&mut self, parts: &[i32]) -> Result<()> {
        for p in parts {
            match read_version(&self.dir, *p)? {
                Some(v) => self.known.insert(*p, v),
                None => self.known.remove(p),
            };
        }
        Ok(())
    }

    /// The version of a partition: the next input offset not yet published.
    pub fn known_version(&self, partition: i32) -> Option<i64> {
        self.known.get(&partition).copied()
    }

    /// Publishes the rows (each with the input message it came from), waits for every
    /// delivery, then records `ends` as the versions.
    pub async fn commit(&mut self, batch: &RecordBatch, origins: &[(i32, i64)], ends: &BTreeMap<i32, i64>) -> Result<()> {
        if batch.num_rows() > 0 {
            self.publish(batch, origins).await?;
        }
        crate::failpoint(&format!("after-publish:{}", self.name()));
        for (p, end) in ends {
            let file = self.dir.join(format!("{p}.json"));
            let tmp = self.dir.join(format!("{p}.tmp"));
            std::fs::write(&tmp, end.to_string()).map_err(io(&tmp))?;
            std::fs::rename(&tmp, &file).map_err(io(&file))?;
            self.known.insert(*p, *end);
        }
        Ok(())
    }

    async fn publish(&self, batch: &RecordBatch, origins: &[(i32, i64)]) -> Result<()> {
        let keys = batch
            .column_by_name(&self.key)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| Error::Sink(format!("kafka sink {}: key column {} is not a string column of the rows", self.topic, self.key)))?;
        let mut buf = Vec::new();
        {
            let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
            w.write(batch).map_err(|e| Error::Sink(format!("kafka sink {}: rows as JSON: {e}", self.topic)))?;
            w.finish().map_err(|e| Error::Sink(format!("kafka sink {}: rows as JSON: {e}", self.topic)))?;
        }
        let lines = buf.split(|b| *b == b'\n').filter(|l| !l.is_empty());
        let mut pending = Vec::with_capacity(batch.num_rows());
        for (i, (line, (part, offset))) in lines.zip(origins).enumerate() {
            let (p, o) = (part.to_string(), offset.to_string());
            let headers = OwnedHeaders::new()
                .insert(Header { key: "rtlake-pipeline", value: Some(self.pipeline.as_bytes()) })
                .insert(Header { key: "rtlake-partition", value: Some(p.as_bytes()) })
                .insert(Header { key: "rtlake-offset", value: Some(o.as_bytes()) });
            let key = if keys.is_null(i) { None } else { Some(keys.value(i)) };
            let mut record = FutureRecord::<str, [u8]>::to(&self.topic).payload(line).headers(headers);
            if let Some(k) = key {
                record = record.key(k);
            }
            let fut = self
                .producer
                .send_result(record)
                .map_err(|(e, _)| Error::Sink(format!("kafka sink {}: enqueue: {e}", self.topic)))?;
            pending.push(fut);
        }
        for fut in pending {
            match fut.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(Error::Sink(format!("kafka sink {}: delivery failed: {e}", self.topic))),
                Err(_) => return Err(Error::Sink(format!("kafka sink {}: delivery cancelled", self.topic))),
            }
        }
        Ok(())
    }

    /// Waits for anything still queued (at shutdown).
    pub fn flush(&self) {
        let _ = self.producer.flush(Duration::from_secs(10));
    }
}
