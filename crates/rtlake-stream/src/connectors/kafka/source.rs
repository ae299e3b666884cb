//! The Kafka source: a consumer in the pipeline's group whose partitions start where the lake
//! says, not where the group's committed offsets say.
//!
//! On every assignment the rebalance callback reads the sinks' txn versions for the new
//! partitions and assigns them at those offsets (the earliest for a new pipeline), so no message
//! of a moved partition is read from a stale position. On revocation it commits the group
//! offsets synchronously (for lag display only) and raises a flag; the run loop then drops the
//! revoked partitions' buffered messages.

use crate::config::{Assignment, RunConfig};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol, StreamConsumer,
};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use rtlake_core::schema::TableName;
use rtlake_lake::Lake;
use rtlake_lake::sink::app_id;
use rtlake_lake::table::read_versions;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::source::Resume;

/// Where a new pipeline starts, resolved per partition (timestamps already turned to offsets).
#[derive(Clone, Debug)]
pub enum StartAt {
    /// The oldest offset held.
    Earliest,
    /// The end.
    Latest,
    /// Per partition: an offset, or -2 (earliest) / -1 (latest); others from the earliest.
    Offsets(BTreeMap<i32, i64>),
}

impl StartAt {
    /// The first offset a new pipeline reads of a partition holding `lo..hi`.
    pub fn first(&self, partition: i32, lo: i64, hi: i64) -> i64 {
        match self.offset(partition) {
            Offset::Offset(o) => o.clamp(lo, hi),
            Offset::End => hi,
            _ => lo,
        }
    }

    fn offset(&self, partition: i32) -> Offset {
        let o = match self {
            Self::Earliest => -2,
            Self::Latest => -1,
            Self::Offsets(m) => m.get(&partition).copied().unwrap_or(-2),
        };
        match o {
            -2 => Offset::Beginning,
            -1 => Offset::End,
            o => Offset::Offset(o),
        }
    }
}

/// The outputs whose versions decide where a partition resumes: the smallest one wins, and
/// each output skips what it already holds.
#[derive(Clone, Debug)]
pub struct Positions {
    /// The lake.
    pub lake: Lake,
    /// The pipeline name (first part of the txn app id).
    pub pipeline: String,
    /// The lake table outputs.
    pub tables: Vec<TableName>,
    /// The Kafka outputs' checkpoint folders (one `<partition>.json` version file each).
    pub kafka_dirs: Vec<crate::checkpoint::Folder>,
    /// Where a new pipeline starts.
    pub start: StartAt,
}

impl Positions {
    /// Where each partition resumes.
    pub async fn resume_offsets(
        &self,
        partitions: &[i32],
    ) -> rtlake_lake::Result<BTreeMap<i32, Resume>> {
        let mut versions: BTreeMap<i32, Vec<Option<i64>>> =
            partitions.iter().map(|p| (*p, Vec::new())).collect();
        // The tables are read together: this runs inside the rebalance callback, and the
        // partitions' fetches start only when it returns.
        let reads = self.tables.iter().map(|table| async move {
            let ids: Vec<String> = partitions
                .iter()
                .map(|p| app_id(&self.pipeline, &table.to_string(), *p))
                .collect();
            let found = read_versions(&self.lake, *table, &ids).await?;
            Ok::<_, rtlake_lake::Error>((ids, found))
        });
        for (ids, found) in futures::future::try_join_all(reads).await? {
            for (p, id) in partitions.iter().zip(&ids) {
                versions
                    .entry(*p)
                    .or_default()
                    .push(found.get(id).copied().flatten());
            }
        }
        for dir in &self.kafka_dirs {
            for p in partitions {
                let v = super::sink::read_version(dir, *p).await.map_err(|e| {
                    rtlake_lake::Error::Location {
                        uri: dir.to_string(),
                        reason: e.to_string(),
                    }
                })?;
                versions.entry(*p).or_default().push(v);
            }
        }
        Ok(versions
            .into_iter()
            .map(|(p, v)| (p, Resume::of(v)))
            .collect())
    }

    /// The offset to assign a partition at.
    pub fn offset(&self, partition: i32, resume: Resume) -> Offset {
        match resume {
            Resume::Start => self.start.offset(partition),
            Resume::Earliest => Offset::Beginning,
            Resume::At(o) => Offset::Offset(o),
        }
    }

    /// The same, blocking, on a thread of its own: for the rebalance callback, which runs
    /// inside the consumer's poll on a runtime thread.
    fn resume_offsets_blocking(
        &self,
        partitions: &[i32],
    ) -> rtlake_lake::Result<BTreeMap<i32, Resume>> {
        let this = self.clone();
        let parts = partitions.to_vec();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match rt {
                Ok(rt) => rt.block_on(this.resume_offsets(&parts)),
                Err(e) => Err(rtlake_lake::Error::Location {
                    uri: this.lake.root().to_string(),
                    reason: format!("runtime: {e}"),
                }),
            }
        })
        .join()
        .unwrap_or_else(|_| {
            Err(rtlake_lake::Error::Location {
                uri: String::new(),
                reason: "position reader panicked".into(),
            })
        })
    }
}

/// The consumer context: seeks by the lake on assignment, commits on revocation.
pub struct SourceContext {
    topic: String,
    pipeline: String,
    /// Where partitions resume: set once the pipeline's outputs are open, before the consumer
    /// is first polled (the consumer may be subscribed earlier, see [`subscribe`]).
    positions: OnceLock<Positions>,
    /// Partitions currently assigned to this worker.
    pub assigned: Mutex<BTreeSet<i32>>,
    /// Set when the assignment changed; the run loop clears it.
    pub changed: AtomicBool,
    /// The next offsets committed to the lake per partition (for the sync commit on revoke).
    pub committed: Mutex<BTreeMap<i32, i64>>,
    /// An error the callback could not return; the run loop fails with it.
    pub failure: Mutex<Option<String>>,
    /// The high watermark of each assigned partition, from librdkafka's statistics.
    pub high_watermarks: Mutex<BTreeMap<i32, i64>>,
}

impl ClientContext for SourceContext {
    /// librdkafka's statistics (every `statistics.interval.ms`): the high watermark of each
    /// assigned partition, and the lag behind what the lake holds.
    fn stats(&self, stats: rdkafka::Statistics) {
        let Some(topic) = stats.topics.get(&self.topic) else {
            return;
        };
        let assigned = self.assigned_now();
        let committed = self.committed_now();
        let mut hi = self
            .high_watermarks
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (p, part) in &topic.partitions {
            if *p < 0 || !assigned.contains(p) || part.hi_offset < 0 {
                continue;
            }
            hi.insert(*p, part.hi_offset);
            self.observe(*p, part.hi_offset, committed.get(p).copied());
        }
    }
}

impl ConsumerContext for SourceContext {
    fn rebalance(&self, c: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let cooperative = matches!(c.rebalance_protocol(), RebalanceProtocol::Cooperative);
        let parts: Vec<i32> = tpl
            .elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .collect();
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let read = match self.positions.get() {
                    Some(positions) => positions
                        .resume_offsets_blocking(&parts)
                        .map(|pos| (positions, pos))
                        .map_err(|e| format!("cannot read offsets from the lake: {e}")),
                    None => Err("assigned before the pipeline's outputs were open".to_string()),
                };
                match read {
                    Ok((positions, pos)) => {
                        for (p, resume) in &pos {
                            let _ = tpl.set_partition_offset(
                                &self.topic,
                                *p,
                                positions.offset(*p, *resume),
                            );
                        }
                        tracing::info!(partitions = ?pos, "assigned; resuming from the lake's offsets");
                    }
                    Err(e) => {
                        // Assigning without offsets would read from the group's position: refuse.
                        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    }
                }
                self.lock_assigned().extend(parts.iter().copied());
                if cooperative {
                    c.incremental_assign(tpl)
                } else {
                    c.assign(tpl)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let committed = self.committed_now();
                let mut offsets = TopicPartitionList::new();
                for p in &parts {
                    if let Some(o) = committed.get(p) {
                        let _ = offsets.add_partition_offset(&self.topic, *p, Offset::Offset(*o));
                    }
                }
                if offsets.count() > 0
                    && let Err(e) = c.commit(&offsets, CommitMode::Sync)
                {
                    tracing::warn!(error = %rtlake_core::error::Chain(&e), "group offset commit on revoke failed (lag display only)");
                }
                tracing::info!(partitions = ?parts, "revoked");
                {
                    let mut a = self.lock_assigned();
                    for p in &parts {
                        a.remove(p);
                    }
                }
                if cooperative {
                    c.incremental_unassign(tpl)
                } else {
                    c.unassign()
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance error");
                self.lock_assigned().clear();
                c.unassign()
            }
        };
        if let Err(e) = result {
            tracing::error!(error = %rtlake_core::error::Chain(&e), "applying the rebalance failed");
        }
        self.changed.store(true, Ordering::Release);
    }
}

impl SourceContext {
    fn lock_assigned(&self) -> std::sync::MutexGuard<'_, BTreeSet<i32>> {
        self.assigned.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets a partition's offset gauges: high watermark, next offset in the lake, lag.
    pub fn observe(&self, partition: i32, hi: i64, committed: Option<i64>) {
        let m = &rtlake_core::metrics::global().run;
        let p = partition.to_string();
        let labels = [self.pipeline.as_str(), self.topic.as_str(), p.as_str()];
        m.high_watermark.with_label_values(&labels).set(hi);
        if let Some(c) = committed {
            m.committed_offset.with_label_values(&labels).set(c);
            m.consumer_lag
                .with_label_values(&labels)
                .set((hi - c).max(0));
        }
    }

    /// Drops a lost partition's gauges: its new owner reports it.
    pub fn forget(&self, partition: i32) {
        let m = &rtlake_core::metrics::global().run;
        let p = partition.to_string();
        let labels = [self.pipeline.as_str(), self.topic.as_str(), p.as_str()];
        let _ = m.high_watermark.remove_label_values(&labels);
        let _ = m.committed_offset.remove_label_values(&labels);
        let _ = m.consumer_lag.remove_label_values(&labels);
        self.high_watermarks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&partition);
    }

    /// Where partitions resume, once the pipeline's outputs are open; the first value stays.
    pub fn set_positions(&self, positions: Positions) {
        let _ = self.positions.set(positions);
    }

    /// The partitions assigned now.
    pub fn assigned_now(&self) -> BTreeSet<i32> {
        self.lock_assigned().clone()
    }

    /// The next offsets committed to the lake per partition, now.
    pub fn committed_now(&self) -> BTreeMap<i32, i64> {
        self.committed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Leaves the group (or gives up the static assignment) and returns when it is done; the
/// consumer is dropped afterwards. rdkafka's drop would close it too, but waits for the close
/// in polls of 100 ms that its end does not cut short (librdkafka wakes the poll with an op that
/// rdkafka's poll does not return on): every available-now run ended a tenth of a second later
/// than its close (bench/README.md, "The Kafka path, fifth step"). The drop that follows finds
/// the consumer closed and only frees it (rdkafka logs that as an error; the binary's log
/// filter drops it).
pub fn close(consumer: &StreamConsumer<SourceContext>) {
    // SAFETY: the handle is the consumer's own and alive for the borrow. librdkafka's
    // consumer_close blocks until the group is left; with rdkafka's event interface it serves
    // the last revocation itself (an unassign, which is all a closing consumer may do).
    let err = unsafe { rdkafka::bindings::rd_kafka_consumer_close(consumer.client().native_ptr()) };
    if err != rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        let err = rdkafka::error::RDKafkaErrorCode::from(err);
        tracing::debug!(error = %err, "closing the consumer");
    }
}

/// Creates a consumer of `topic` in the pipeline's group and subscribes it, before the
/// pipeline's outputs are open: the group's join (coordinator, join, sync) then runs while they
/// open. Its partitions are assigned when it is first polled, which must come after
/// [`SourceContext::set_positions`].
pub fn subscribe(
    kafka: &rtlake_kafka::config::KafkaConfig,
    run: &RunConfig,
    topic: &str,
) -> crate::Result<StreamConsumer<SourceContext>> {
    let consumer = create(kafka, run, topic)?;
    consumer
        .subscribe(&[topic])
        .map_err(kafka_err(&format!("subscribe to {topic}")))?;
    Ok(consumer)
}

fn kafka_err(context: &str) -> impl FnOnce(rdkafka::error::KafkaError) -> crate::Error + use<> {
    let context = context.to_string();
    move |cause| crate::Error::Kafka(rtlake_kafka::Error::Kafka { context, cause })
}

/// The consumer, neither subscribed nor assigned, with the topic's leaders known.
fn create(
    kafka: &rtlake_kafka::config::KafkaConfig,
    run: &RunConfig,
    topic: &str,
) -> crate::Result<StreamConsumer<SourceContext>> {
    let ctx = SourceContext {
        topic: topic.to_string(),
        pipeline: run.pipeline.clone(),
        positions: OnceLock::new(),
        assigned: Mutex::default(),
        changed: AtomicBool::new(false),
        committed: Mutex::default(),
        failure: Mutex::default(),
        high_watermarks: Mutex::default(),
    };
    let mut config =
        rtlake_kafka::client::consumer(kafka, &run.group(), run.assignment_strategy.as_str());
    config.set(
        "session.timeout.ms",
        run.session_timeout.get().as_millis().to_string(),
    );
    let heartbeat = (run.session_timeout.get().as_millis() / 10).clamp(100, 3000);
    config.set("heartbeat.interval.ms", heartbeat.to_string());
    if let Some(id) = &run.instance_id {
        config.set("group.instance.id", id);
    }
    let consumer: StreamConsumer<SourceContext> = config
        .create_with_context(ctx)
        .map_err(kafka_err("create consumer"))?;
    // The topic's leaders, known before any partition is assigned: librdkafka asks a partition's
    // start offset of its leader, and one assigned before the leader is known waits a fixed
    // half second to ask again (it did on every start: 0.5 s of a 3.8 s drain).
    if let Err(e) = tokio::task::block_in_place(|| {
        consumer.fetch_metadata(Some(topic), std::time::Duration::from_secs(10))
    }) {
        tracing::debug!(error = %rtlake_core::error::Chain(&e), %topic, "no metadata before assignment");
    }
    Ok(consumer)
}

/// Creates the consumer: subscribed to `topic` in the pipeline's group, or (static assignment)
/// assigned its partitions at once at the lake's positions.
pub async fn connect(
    kafka: &rtlake_kafka::config::KafkaConfig,
    cluster: &rtlake_kafka::Cluster,
    run: &RunConfig,
    topic: &str,
    positions: Positions,
) -> crate::Result<StreamConsumer<SourceContext>> {
    if run.assignment == Assignment::Group {
        let consumer = subscribe(kafka, run, topic)?;
        consumer.context().set_positions(positions);
        return Ok(consumer);
    }
    let consumer = create(kafka, run, topic)?;
    consumer.context().set_positions(positions.clone());
    let all = cluster.partitions(topic).await?;
    let parts: Vec<i32> = match &run.partitions {
        None => all,
        Some(want) => {
            if let Some(p) = want.iter().find(|p| !all.contains(p)) {
                return Err(crate::Error::new(
                    crate::Kind::Source,
                    format!(
                        "run.partitions names partition {p}, but {topic} has partitions {all:?}"
                    ),
                ));
            }
            want.clone()
        }
    };
    let pos = positions.resume_offsets(&parts).await?;
    let mut tpl = TopicPartitionList::new();
    for (p, resume) in &pos {
        tpl.add_partition_offset(topic, *p, positions.offset(*p, *resume))
            .map_err(kafka_err("assign"))?;
    }
    consumer.assign(&tpl).map_err(kafka_err("assign"))?;
    tracing::info!(partitions = ?pos, "assigned statically; resuming from the lake's offsets");
    consumer.context().lock_assigned().extend(parts);
    consumer.context().changed.store(true, Ordering::Release);
    Ok(consumer)
}
