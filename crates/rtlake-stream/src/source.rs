//! The Kafka source: a consumer in the pipeline's group whose partitions start where the lake
//! says, not where the group's committed offsets say.
//!
//! On every assignment the rebalance callback reads the sinks' txn versions for the new
//! partitions and assigns them at those offsets (the earliest for a new pipeline), so no message
//! of a moved partition is read from a stale position. On revocation it commits the group
//! offsets synchronously (for lag display only) and raises a flag; the run loop then drops the
//! revoked partitions' buffered messages.

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol, StreamConsumer};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use rtlake_lake::Lake;
use rtlake_lake::sink::{app_id, read_versions};
use rtlake_core::schema::TableName;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// A message copied out of the consumer.
#[derive(Clone, Debug)]
pub struct RawMessage {
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its value.
    pub payload: Option<Vec<u8>>,
}

impl RawMessage {
    /// Copies a consumed message.
    pub fn from_message(m: &impl Message) -> Self {
        Self { partition: m.partition(), offset: m.offset(), key: m.key().map(<[u8]>::to_vec), payload: m.payload().map(<[u8]>::to_vec) }
    }
}

/// The sinks whose txn versions decide where a partition resumes: the smallest one wins, and
/// each sink skips what it already holds.
#[derive(Clone, Debug)]
pub struct Positions {
    /// The lake.
    pub lake: Lake,
    /// The pipeline name (first part of the txn app id).
    pub pipeline: String,
    /// The sinks: (table, sink name in the app id).
    pub sinks: Vec<(TableName, String)>,
}

impl Positions {
    /// Where each partition resumes: the smallest next offset over the sinks; `None` for a
    /// partition no sink has written (start from the earliest).
    pub async fn resume_offsets(&self, partitions: &[i32]) -> rtlake_lake::Result<BTreeMap<i32, Option<i64>>> {
        let mut out: BTreeMap<i32, Option<i64>> = BTreeMap::new();
        for (i, (table, sink)) in self.sinks.iter().enumerate() {
            let ids: Vec<String> = partitions.iter().map(|p| app_id(&self.pipeline, sink, *p)).collect();
            let versions = read_versions(&self.lake, *table, &ids).await?;
            for (p, id) in partitions.iter().zip(&ids) {
                let v = versions.get(id).copied().flatten();
                let e = out.entry(*p).or_insert(v);
                // A sink that never wrote the partition needs it from the start.
                *e = if i == 0 { v } else { match (*e, v) { (Some(a), Some(b)) => Some(a.min(b)), _ => None } };
            }
        }
        Ok(out)
    }

    /// The same, blocking, on a thread of its own: for the rebalance callback, which runs
    /// inside the consumer's poll on a runtime thread.
    fn resume_offsets_blocking(&self, partitions: &[i32]) -> rtlake_lake::Result<BTreeMap<i32, Option<i64>>> {
        let this = self.clone();
        let parts = partitions.to_vec();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
            match rt {
                Ok(rt) => rt.block_on(this.resume_offsets(&parts)),
                Err(e) => Err(rtlake_lake::Error::Location { uri: this.lake.root().to_string(), reason: format!("runtime: {e}") }),
            }
        })
        .join()
        .unwrap_or_else(|_| Err(rtlake_lake::Error::Location { uri: String::new(), reason: "position reader panicked".into() }))
    }
}

/// The consumer context: seeks by the lake on assignment, commits on revocation.
pub struct SourceContext {
    topic: String,
    positions: Positions,
    /// Partitions currently assigned to this worker.
    pub assigned: Mutex<BTreeSet<i32>>,
    /// Set when the assignment changed; the run loop clears it.
    pub changed: AtomicBool,
    /// The next offsets committed to the lake per partition (for the sync commit on revoke).
    pub committed: Mutex<BTreeMap<i32, i64>>,
    /// An error the callback could not return; the run loop fails with it.
    pub failure: Mutex<Option<String>>,
}

impl ClientContext for SourceContext {}

impl ConsumerContext for SourceContext {
    fn rebalance(&self, c: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let cooperative = matches!(c.rebalance_protocol(), RebalanceProtocol::Cooperative);
        let parts: Vec<i32> = tpl.elements_for_topic(&self.topic).iter().map(|e| e.partition()).collect();
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                match self.positions.resume_offsets_blocking(&parts) {
                    Ok(pos) => {
                        for (p, off) in &pos {
                            let o = off.map_or(Offset::Beginning, Offset::Offset);
                            let _ = tpl.set_partition_offset(&self.topic, *p, o);
                        }
                        tracing::info!(partitions = ?pos, "assigned; resuming from the lake's offsets");
                    }
                    Err(e) => {
                        // Assigning without offsets would read from the group's position: refuse.
                        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("cannot read offsets from the lake: {e}"));
                    }
                }
                self.lock_assigned().extend(parts.iter().copied());
                if cooperative { c.incremental_assign(tpl) } else { c.assign(tpl) }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let committed = self.committed.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let mut offsets = TopicPartitionList::new();
                for p in &parts {
                    if let Some(o) = committed.get(p) {
                        let _ = offsets.add_partition_offset(&self.topic, *p, Offset::Offset(*o));
                    }
                }
                if offsets.count() > 0 {
                    if let Err(e) = c.commit(&offsets, CommitMode::Sync) {
                        tracing::warn!(error = %e, "group offset commit on revoke failed (lag display only)");
                    }
                }
                tracing::info!(partitions = ?parts, "revoked");
                {
                    let mut a = self.lock_assigned();
                    for p in &parts {
                        a.remove(p);
                    }
                }
                if cooperative { c.incremental_unassign(tpl) } else { c.unassign() }
            }
            other => {
                tracing::error!(error = ?other, "rebalance error");
                self.lock_assigned().clear();
                c.unassign()
            }
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "applying the rebalance failed");
        }
        self.changed.store(true, Ordering::Release);
    }
}

impl SourceContext {
    fn lock_assigned(&self) -> std::sync::MutexGuard<'_, BTreeSet<i32>> {
        self.assigned.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The partitions assigned now.
    pub fn assigned_now(&self) -> BTreeSet<i32> {
        self.lock_assigned().clone()
    }
}

/// Creates the consumer and subscribes to `topic`.
pub fn subscribe(
    kafka: &rtlake_core::config::KafkaConfig,
    group: &str,
    strategy: &str,
    topic: &str,
    positions: Positions,
) -> Result<StreamConsumer<SourceContext>, rdkafka::error::KafkaError> {
    let ctx = SourceContext {
        topic: topic.to_string(),
        positions,
        assigned: Mutex::default(),
        changed: AtomicBool::new(false),
        committed: Mutex::default(),
        failure: Mutex::default(),
    };
    let consumer: StreamConsumer<SourceContext> =
        rtlake_kafka::client::consumer(kafka, group, strategy).create_with_context(ctx)?;
    consumer.subscribe(&[topic])?;
    Ok(consumer)
}
