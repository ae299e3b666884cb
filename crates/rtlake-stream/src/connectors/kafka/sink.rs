//! The Kafka sink: each row a message (JSON, or Avro through a schema registry: [`super::values`]); exactly once where the cluster has transactions,
//! at least once with deduplication headers where it does not.
//!
//! Every message carries the headers `rtlake-pipeline`, `rtlake-partition` and `rtlake-offset`
//! (the input message that produced it) and a key from a column of the row.
//!
//! - **Transactional** (Apache Kafka): one transactional producer per input partition, id
//!   `rtlake.<pipeline>.<input topic>.<topic>.<partition>`. An epoch's rows of a partition are
//!   published in one transaction that also commits the partition's next input offset to the
//!   consumer group `rtlake.<pipeline>.<input topic>.sink.<topic>`
//!   (`send_offsets_to_transaction`), so the rows and the
//!   sink's version commit together: a `read_committed` reader sees each row exactly once, even
//!   when the worker dies mid-epoch. A worker taking a partition over initialises its producer,
//!   which fences the old one and aborts what it left open.
//! - **At least once** (brokers without transactions, such as the embedded one): an idempotent
//!   producer publishes, and once every delivery is acknowledged the epoch's end offsets are
//!   written as the version (one file per input partition in the checkpoint). A crash between
//!   the two publishes the epoch again; the headers let a consumer drop those duplicates.
//!
//! The version file is written in both modes (in the transactional one it may lag the group's
//! offsets after a crash, which only makes a restart read a little more). Deliveries are bounded:
//! at most [`MAX_IN_FLIGHT`] messages wait for acknowledgement, and an epoch whose deliveries do
//! not finish within `run.sink-timeout` fails, to be retried from the lake's positions.

use super::values::Values;
use crate::checkpoint::Folder;
use crate::config::PipelineConfig as Config;
use crate::config::SinkTransactions;
use crate::{Error, Kind, Result};
use arrow::array::{Array, RecordBatch, StringArray};
use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Messages waiting for acknowledgement, at most.
pub const MAX_IN_FLIGHT: usize = 100_000;

/// The transactional half: a producer per input partition, and the sink's group.
struct Transactions {
    producers: BTreeMap<i32, FutureProducer>,
    /// Reads the sink group's committed offsets and lends its metadata to transactions.
    group: BaseConsumer,
}

/// A topic that one operator's rows are published to.
pub struct KafkaSink {
    cfg: Config,
    topic: String,
    key: String,
    /// How rows become message values (`value-format`).
    values: Values,
    /// The at-least-once producer (also used to flush at the end).
    producer: FutureProducer,
    txn: Option<Transactions>,
    /// `<checkpoint>/sinks/<topic>`: one file per input partition holding the version.
    dir: Folder,
    known: BTreeMap<i32, i64>,
}

fn kafka(context: String) -> impl FnOnce(KafkaError) -> Error {
    move |cause| Error::Kafka(rtlake_kafka::Error::Kafka { context, cause })
}

/// A Kafka sink's version of a partition from its folder (`None`: never written).
pub async fn read_version(dir: &Folder, partition: i32) -> Result<Option<i64>> {
    let file = format!("{partition}.json");
    let Some(bytes) = dir.get(&file).await? else {
        return Ok(None);
    };
    String::from_utf8_lossy(&bytes)
        .trim()
        .parse()
        .map(Some)
        .map_err(|e| Error::caused(Kind::Checkpoint, dir.shown(&file), e))
}

/// Runs a blocking transactional call of `producer` on a blocking thread, and
/// gives up after `timeout` and 5 s more: librdkafka's `send_offsets_to_transaction` waited
/// for minutes, past its own timeout, when a broker of a 3-node Apache Kafka was killed
/// mid-drain. A call that gives up fails the epoch, which is retried with new producers (whose
/// `init_transactions` fences the stuck one).
pub(super) async fn bounded<T: Send + 'static, C: ClientContext + 'static>(
    producer: &FutureProducer<C>,
    timeout: Duration,
    what: String,
    f: impl FnOnce(&FutureProducer<C>) -> KafkaResult<T> + Send + 'static,
) -> Result<T> {
    let producer = producer.clone();
    match tokio::time::timeout(
        timeout + Duration::from_secs(5),
        tokio::task::spawn_blocking(move || f(&producer)),
    )
    .await
    {
        Ok(Ok(r)) => r.map_err(kafka(what)),
        Ok(Err(join)) => Err(Error::caused(Kind::Sink, what, join)),
        Err(_) => Err(Error::new(
            Kind::Sink,
            format!("{what}: no answer within {} s", timeout.as_secs() + 5),
        )),
    }
}

impl KafkaSink {
    /// A sink publishing to `topic` (created if missing), keyed by the string column `key`,
    /// its values in `format` (`json` unless `avro`, with its `registry`),
    /// with `[producer]`'s settings; transactional per `run.sink-transactions` (auto: when the
    /// cluster has transactions). Logs which mode it runs in.
    pub async fn open(
        cfg: &Config,
        cluster: &rtlake_kafka::Cluster,
        topic: &str,
        key: &str,
        (format, registry): (Option<&str>, Option<&str>),
        checkpoint: &Folder,
    ) -> Result<Self> {
        let values = Values::open(topic, format, registry)?;
        cluster.ensure_topic(topic).await?;
        let dir = checkpoint.child("sinks").child(topic);
        let mut sink = Self {
            cfg: cfg.clone(),
            topic: topic.into(),
            key: key.into(),
            values,
            producer: Self::plain_producer(cfg, topic)?,
            txn: None,
            dir,
            known: BTreeMap::new(),
        };
        let transactional = match cfg.run.sink_transactions {
            SinkTransactions::Off => false,
            SinkTransactions::On => true,
            SinkTransactions::Auto => {
                super::probe::cluster_has_transactions(cfg, &sink.group_id(), topic).await
            }
        };
        if transactional {
            sink.txn = Some(sink.transactions()?);
            tracing::info!(topic, group = %sink.group_id(), "kafka sink: exactly once (a transaction per epoch and input partition)");
        } else {
            tracing::info!(
                topic,
                "kafka sink: at least once (no transactions on this cluster, or run.sink-transactions = off); duplicates carry the same rtlake-partition and rtlake-offset headers"
            );
        }
        Ok(sink)
    }

    fn plain_producer(cfg: &Config, topic: &str) -> Result<FutureProducer> {
        let mut c = rtlake_kafka::client::producer(&cfg.kafka, &cfg.producer);
        c.set(
            "delivery.timeout.ms",
            cfg.run.sink_timeout.get().as_millis().to_string(),
        );
        let producer: FutureProducer = c
            .create()
            .map_err(kafka(format!("create producer for {topic}")))?;
        rtlake_kafka::client::connect_early(&producer, topic);
        Ok(producer)
    }

    /// The group whose offsets are the sink's versions: per pipeline, input and output topic.
    pub(super) fn group_id(&self) -> String {
        format!(
            "rtlake.{}.{}.sink.{}",
            self.cfg.run.pipeline, self.cfg.kafka.topic, self.topic
        )
    }

    /// One per input partition: a worker taking the partition over fences the one before.
    fn transactional_id(&self, partition: i32) -> String {
        format!(
            "rtlake.{}.{}.{}.{partition}",
            self.cfg.run.pipeline, self.cfg.kafka.topic, self.topic
        )
    }

    /// A transactional producer's settings: `[producer]`'s, deliveries bounded by the sink
    /// timeout (librdkafka wants them within the transaction timeout).
    pub(super) fn transactional_config(cfg: &Config, id: &str) -> rdkafka::ClientConfig {
        let timeout = cfg.run.sink_timeout.get().as_millis();
        let mut c = rtlake_kafka::client::producer(&cfg.kafka, &cfg.producer);
        c.set("transactional.id", id)
            .set(
                "transaction.timeout.ms",
                (timeout * 2).max(60_000).to_string(),
            )
            .set("delivery.timeout.ms", timeout.to_string());
        c
    }

    fn transactions(&self) -> Result<Transactions> {
        let mut c = rtlake_kafka::client::base(&self.cfg.kafka);
        c.set("group.id", self.group_id())
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed");
        let group: BaseConsumer = c.create().map_err(kafka(format!(
            "create the sink group's client for {}",
            self.topic
        )))?;
        Ok(Transactions {
            producers: BTreeMap::new(),
            group,
        })
    }

    /// Whether rows are published in transactions.
    pub fn transactional(&self) -> bool {
        self.txn.is_some()
    }

    /// The sink's name: `kafka:<topic>`.
    pub fn name(&self) -> String {
        format!("kafka:{}", self.topic)
    }

    /// The folder of its version files (`<checkpoint>/sinks/<topic>`).
    pub fn dir(&self) -> &Folder {
        &self.dir
    }

    /// Drops the producers and makes new ones (after a failed epoch: a producer may have been
    /// fenced or hit a fatal error); transactional producers are initialised again on refresh.
    /// The old clients are dropped on a thread of their own: librdkafka's destroy waits for
    /// its brokers' threads, which must never hold up the worker's loop.
    pub fn reconnect(&mut self) -> Result<()> {
        let producer = std::mem::replace(
            &mut self.producer,
            Self::plain_producer(&self.cfg, &self.topic)?,
        );
        let txn = match self.txn.is_some() {
            true => self.txn.replace(self.transactions()?),
            false => None,
        };
        std::thread::spawn(move || drop((producer, txn)));
        Ok(())
    }

    /// Reads the versions of `parts`: the version files, and in transactional mode the sink
    /// group's committed offsets, after initialising each partition's producer (which fences
    /// an older owner and aborts its open transaction).
    pub async fn refresh(&mut self, parts: &[i32]) -> Result<()> {
        for p in parts {
            match read_version(&self.dir, *p).await? {
                Some(v) => self.known.insert(*p, v),
                None => self.known.remove(p),
            };
        }
        if self.txn.is_none() {
            return Ok(());
        }
        let input = self.cfg.kafka.topic.clone();
        let timeout = self.cfg.run.sink_timeout.get();
        let group = self.group_id();
        let ids: Vec<(i32, String)> = parts
            .iter()
            .map(|p| (*p, self.transactional_id(*p)))
            .collect();
        let cfg = self.cfg.clone();
        let Some(txn) = &mut self.txn else {
            return Ok(());
        };
        let mut tpl = TopicPartitionList::new();
        let mut fresh = Vec::new();
        for (p, id) in ids {
            if !txn.producers.contains_key(&p) {
                let producer: FutureProducer = Self::transactional_config(&cfg, &id)
                    .create()
                    .map_err(kafka(format!("create transactional producer {id}")))?;
                fresh.push((p, id, producer));
            }
            tpl.add_partition(&input, p);
        }
        // Side by side: each waits for its coordinator's answer (and each fences the
        // partition's older owner), so one after another they added up.
        let topic = self.topic.clone();
        futures::future::try_join_all(fresh.iter().map(|(_, id, producer)| {
            let topic = topic.clone();
            bounded(
                producer,
                timeout,
                format!("init transactions of {id}"),
                move |p| rtlake_kafka::client::init_transactions_promptly(p, &topic, timeout),
            )
        }))
        .await?;
        for (p, _, producer) in fresh {
            txn.producers.insert(p, producer);
        }
        let committed = tokio::task::block_in_place(|| {
            rtlake_kafka::client::committed_offsets(&txn.group, tpl, timeout)
        })
        .map_err(kafka(format!("read the sink group {group}")))?;
        let mut behind = Vec::new();
        for e in committed.elements_for_topic(&input) {
            if let Offset::Offset(o) = e.offset() {
                if self.known.get(&e.partition()).is_none_or(|v| o > *v) {
                    behind.push((e.partition(), o));
                }
                let v = self.known.entry(e.partition()).or_insert(o);
                *v = (*v).max(o);
            }
        }
        // A crash between a transaction's commit and its version file leaves the file behind
        // the group's offset. The file is what other readers of the lake's positions see (the
        // available-now trigger's "does the lake hold everything", a worker of the group
        // without this partition): bring it up to the truth, or they wait for it forever.
        for (p, o) in behind {
            tracing::info!(
                partition = p,
                version = o,
                topic = %self.topic,
                "kafka sink: the version file was behind the committed transaction; written"
            );
            self.write_version(p, o).await?;
        }
        Ok(())
    }

    /// The version of a partition: the next input offset not yet published.
    pub fn known_version(&self, partition: i32) -> Option<i64> {
        self.known.get(&partition).copied()
    }

    /// Publishes the rows (each with the input message it came from) and records `ends` as the
    /// versions: in one transaction per input partition, or after every delivery.
    pub async fn commit(
        &mut self,
        batch: &RecordBatch,
        origins: &[(i32, i64)],
        ends: &BTreeMap<i32, i64>,
    ) -> Result<()> {
        let topic = self.topic.clone();
        let values = self.values.encode(&topic, batch).await?;
        let lines = values.rows();
        let keys = self.keys(batch)?;
        if self.txn.is_some() {
            for (p, end) in ends {
                let rows: Vec<usize> = origins
                    .iter()
                    .enumerate()
                    .filter(|(_, (op, _))| op == p)
                    .map(|(i, _)| i)
                    .collect();
                self.commit_partition(*p, *end, &rows, &lines, &keys, origins)
                    .await?;
            }
        } else {
            let rows: Vec<usize> = (0..lines.len()).collect();
            let producer = self.producer.clone();
            self.publish(&producer, &rows, &lines, &keys, origins)
                .await?;
            crate::failpoint(&format!("after-publish:{}", self.name()));
        }
        for (p, end) in ends {
            self.write_version(*p, *end).await?;
        }
        Ok(())
    }

    async fn commit_partition(
        &mut self,
        p: i32,
        end: i64,
        rows: &[usize],
        lines: &[&[u8]],
        keys: &[Option<String>],
        origins: &[(i32, i64)],
    ) -> Result<()> {
        let timeout = self.cfg.run.sink_timeout.get();
        let name = self.transactional_id(p);
        let txn = self.txn.as_ref().expect("transactional");
        let producer = txn.producers.get(&p).cloned().ok_or_else(|| {
            Error::new(
                Kind::Sink,
                format!("kafka sink {}: partition {p} was not refreshed", self.topic),
            )
        })?;
        let meta = txn.group.group_metadata().ok_or_else(|| {
            Error::new(
                Kind::Sink,
                format!("kafka sink {}: no group metadata", self.topic),
            )
        })?;
        bounded(
            &producer,
            timeout,
            format!("begin transaction {name}"),
            |p| p.begin_transaction(),
        )
        .await?;
        let result = async {
            self.publish(&producer, rows, lines, keys, origins).await?;
            crate::failpoint(&format!("after-publish:{}", self.name()));
            let mut offsets = TopicPartitionList::new();
            offsets
                .add_partition_offset(&self.cfg.kafka.topic, p, Offset::Offset(end))
                .map_err(kafka(format!("offsets of {name}")))?;
            bounded(
                &producer,
                timeout,
                format!("send offsets in {name}"),
                move |p| p.send_offsets_to_transaction(&offsets, &meta, timeout),
            )
            .await?;
            bounded(
                &producer,
                timeout,
                format!("commit transaction {name}"),
                move |p| p.commit_transaction(timeout),
            )
            .await
        }
        .await;
        if let Err(e) = result {
            if let Err(abort) = bounded(
                &producer,
                timeout,
                format!("abort transaction {name}"),
                move |p| p.abort_transaction(timeout),
            )
            .await
            {
                tracing::warn!(error = %abort, transaction = %name, "abort failed (the next owner's init aborts it)");
            }
            if let Some(t) = &mut self.txn {
                // A producer that failed is initialised anew (it may be fenced or fatal); the
                // old one is destroyed off the runtime (librdkafka's destroy may wait).
                if let Some(old) = t.producers.remove(&p) {
                    std::thread::spawn(move || drop(old));
                }
            }
            return Err(e);
        }
        Ok(())
    }

    async fn write_version(&mut self, p: i32, end: i64) -> Result<()> {
        self.dir
            .put(&format!("{p}.json"), end.to_string().into_bytes())
            .await?;
        self.known.insert(p, end);
        Ok(())
    }

    fn keys(&self, batch: &RecordBatch) -> Result<Vec<Option<String>>> {
        if batch.num_rows() == 0 {
            return Ok(Vec::new());
        }
        let err = || {
            Error::new(
                Kind::Sink,
                format!(
                    "kafka sink {}: key column {} is not a column of the rows",
                    self.topic, self.key
                ),
            )
        };
        let col = batch.column_by_name(&self.key).ok_or_else(err)?;
        // Any type keys a message as its text.
        let keys = arrow::compute::cast(col, &arrow::datatypes::DataType::Utf8).map_err(|e| {
            Error::caused(
                Kind::Sink,
                format!("kafka sink {}: key column {}", self.topic, self.key),
                e,
            )
        })?;
        let keys = keys
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(err)?;
        Ok((0..keys.len())
            .map(|i| (!keys.is_null(i)).then(|| keys.value(i).to_string()))
            .collect())
    }

    /// Sends `rows` and waits for every delivery, with at most [`MAX_IN_FLIGHT`] waiting and
    /// within `run.sink-timeout` of the last acknowledgement.
    async fn publish(
        &self,
        producer: &FutureProducer,
        rows: &[usize],
        lines: &[&[u8]],
        keys: &[Option<String>],
        origins: &[(i32, i64)],
    ) -> Result<()> {
        let timeout = self.cfg.run.sink_timeout.get();
        let pipeline = self.cfg.run.pipeline.as_bytes();
        let mut pending: VecDeque<DeliveryFuture> = VecDeque::new();
        let mut last_ack = Instant::now();
        let mut i = 0;
        while i < rows.len() || !pending.is_empty() {
            if i < rows.len() && pending.len() < MAX_IN_FLIGHT {
                let row = rows[i];
                let (part, offset) = origins[row];
                let (p, o) = (part.to_string(), offset.to_string());
                let headers = OwnedHeaders::new()
                    .insert(Header {
                        key: "rtlake-pipeline",
                        value: Some(pipeline),
                    })
                    .insert(Header {
                        key: "rtlake-partition",
                        value: Some(p.as_bytes()),
                    })
                    .insert(Header {
                        key: "rtlake-offset",
                        value: Some(o.as_bytes()),
                    });
                let mut record = FutureRecord::<str, [u8]>::to(&self.topic)
                    .payload(lines[row])
                    .headers(headers);
                if let Some(k) = &keys[row] {
                    record = record.key(k.as_str());
                }
                match producer.send_result(record) {
                    Ok(f) => {
                        pending.push_back(f);
                        i += 1;
                        continue;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                        if !pending.is_empty() => {}
                    Err((e, _)) => {
                        return Err(Error::caused(
                            Kind::Sink,
                            format!("kafka sink {}: enqueue", self.topic),
                            e,
                        ));
                    }
                }
            }
            // Full, or everything sent: wait for the oldest delivery.
            let Some(oldest) = pending.pop_front() else {
                continue;
            };
            let left = timeout.saturating_sub(last_ack.elapsed()) + Duration::from_secs(1);
            match tokio::time::timeout(left, oldest).await {
                Ok(Ok(Ok(_))) => last_ack = Instant::now(),
                Ok(Ok(Err((e, _)))) => {
                    return Err(Error::caused(
                        Kind::Sink,
                        format!("kafka sink {}: delivery failed", self.topic),
                        e,
                    ));
                }
                Ok(Err(_)) => {
                    return Err(Error::new(
                        Kind::Sink,
                        format!("kafka sink {}: delivery cancelled", self.topic),
                    ));
                }
                Err(_) => {
                    return Err(Error::new(
                        Kind::Sink,
                        format!(
                            "kafka sink {}: no delivery acknowledged for {} s ({} messages waiting); the epoch is retried",
                            self.topic,
                            timeout.as_secs(),
                            pending.len() + 1
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Waits for anything still queued (at shutdown).
    pub fn flush(&self) {
        let _ = self.producer.flush(Duration::from_secs(10));
    }
}
