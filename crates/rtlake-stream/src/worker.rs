//! The Kafka worker: the epoch loop over a consumer, and the watchdog that keeps it going.
//!
//! Each epoch is the messages gathered until `max-batch-events` (or `max-offsets-per-trigger`)
//! or `max-batch-delay`; with the low-latency trigger, as soon as the consumer has nothing more
//! to hand over at once. An interrupted epoch (offset log without commit) is cut again at the
//! same end (an epoch may stop short of it when full, never cross it). Group offsets are committed after the lake commits, for lag display only.
//!
//! The worker heals itself: when its partitions have data it has not received for
//! `run.stall-timeout`, when it has held no partition for longer than the session timeout
//! while nobody commits and the topic has data, when the consumer keeps failing, or when an
//! epoch fails (a Kafka sink's deliveries stop, the lake refuses a write), it drops the
//! consumer and whatever the epoch held, starts a new consumer and resumes at the lake's
//! positions: the same path as a restart after a crash, in-process. Each restart is logged
//! with its reason and counted in `rtlake_run_consumer_restarts_total`.

use crate::config::PipelineConfig as Config;
use crate::config::{Assignment, Trigger};
use crate::connectors::kafka::source::{Positions, SourceContext, connect, subscribe};
use crate::engine::{Engine, RunReport};
use crate::heartbeat::Beat;
use crate::pipeline::Output;
use crate::source::{Arena, RawMessage, Resume};
use crate::{Error, Kind, Result};
use consumer_config::consumer_config;
use epoch::ready;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use rtlake_kafka::Cluster;
use rtlake_kafka::config::KafkaConfig;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

mod assign;
mod consumer_config;
mod epoch;
mod health;
mod positions;

/// How often the watchdog looks.
const CHECK_EVERY: Duration = Duration::from_secs(2);
/// Consecutive consumer errors that make the watchdog restart the consumer.
const MAX_ERRORS: u32 = 30;

/// What the watchdog tracks.
struct Watch {
    /// The last message, committed epoch or assignment change.
    progress: Instant,
    /// Since when the worker has held no partition.
    unassigned_since: Option<Instant>,
    /// The lake's positions of every partition, and since when they have not moved.
    lake: Option<(BTreeMap<i32, i64>, Instant)>,
    last_check: Instant,
    /// The last committed epoch (or the consumer's start): the lake's own progress.
    committed: Instant,
    /// Restarts since the last progress (for the back-off).
    restarts: u32,
    /// Consecutive consumer errors.
    errors: u32,
}

impl Watch {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            progress: now,
            unassigned_since: Some(now),
            lake: None,
            last_check: now,
            committed: now,
            restarts: 0,
            errors: 0,
        }
    }

    fn progressed(&mut self) {
        self.progress = Instant::now();
        self.restarts = 0;
        self.errors = 0;
    }
}

pub(crate) struct KafkaWorker {
    cfg: Config,
    kafka: KafkaConfig,
    /// The cluster handle the engine opened at start, for metadata.
    cluster: Cluster,
    topic: String,
    engine: Engine,
    positions: Positions,
    /// Shared with the task that takes the next epoch's messages while one is processed.
    consumer: Arc<StreamConsumer<SourceContext>>,
    assigned: BTreeSet<i32>,
    /// Next offset expected per assigned partition; older re-deliveries are dropped.
    next: BTreeMap<i32, i64>,
    /// Interrupted epochs: a partition's next epoch ends exactly here.
    cuts: BTreeMap<i32, i64>,
    /// The first offset each newly assigned partition should deliver (to detect data loss).
    first: BTreeMap<i32, i64>,
    /// The high watermarks at the start, with the available-now trigger.
    targets: Option<Vec<(i32, i64, i64)>>,
    watch: Watch,
    beat: Arc<Beat>,
    shutdown: CancellationToken,
    /// Messages taken while the last epoch committed, not yet judged (see [`Self::epoch`]).
    prefetched: Vec<RawMessage>,
    /// A consumer error met while taking them, for the loop to handle after them.
    prefetch_error: Option<rdkafka::error::KafkaError>,
    /// Where taken messages' keys and values are copied.
    arena: Arena,
    /// Seeks back to the lake's positions so far (see [`Self::reseek`]): messages taken before
    /// one are gone with it, including the rest of a batch being judged.
    seeks: u64,
}

/// Each partition's `(partition, low, high)` watermarks at the start, being asked for.
type Ends = tokio::task::JoinHandle<rtlake_kafka::Result<Vec<(i32, i64, i64)>>>;

/// What a worker starts before the pipeline's outputs are open (see [`KafkaWorker::prepare`]).
pub(crate) struct Prepared {
    kafka: KafkaConfig,
    /// Subscribed already (group assignment): the group's join runs while the outputs open.
    consumer: Option<StreamConsumer<SourceContext>>,
    /// The topic's ends, with the available-now trigger.
    targets: Option<Ends>,
}

impl KafkaWorker {
    /// Starts what needs only the topic: the consumer's configuration, the topic's ends (with
    /// the available-now trigger), and in a group the subscription. The join (coordinator,
    /// join, sync) then runs in librdkafka's threads while the caller opens the outputs, which
    /// took as long: asked one after the other, the first partition was assigned ~60 ms later.
    /// The partitions are assigned at the first poll, in [`Self::run`], after [`Self::start`]
    /// has given the consumer the lake's positions.
    pub(crate) fn prepare(cfg: &Config, cluster: &Cluster) -> Result<Prepared> {
        let topic = cfg.kafka.topic.clone();
        // The topic's ends are asked for beside the consumer's start: the group's join waits
        // for the coordinator, and the two asked one after the other cost a start up to 90 ms.
        let targets = (cfg.run.trigger == Trigger::AvailableNow).then(|| {
            let (cluster, topic) = (cluster.clone(), topic.clone());
            tokio::spawn(async move { cluster.watermarks(&topic).await })
        });
        let kafka = consumer_config(cfg);
        let consumer = match cfg.run.assignment {
            Assignment::Group => Some(subscribe(&kafka, &cfg.run, &topic)?),
            Assignment::Static => None,
        };
        Ok(Prepared {
            kafka,
            consumer,
            targets,
        })
    }

    pub(crate) async fn start(
        cfg: &Config,
        cluster: &Cluster,
        engine: Engine,
        positions: Positions,
        shutdown: CancellationToken,
        prepared: Prepared,
    ) -> Result<Self> {
        let topic = cfg.kafka.topic.clone();
        let Prepared {
            kafka,
            consumer,
            targets,
        } = prepared;
        let consumer = match consumer {
            Some(c) => {
                c.context().set_positions(positions.clone());
                c
            }
            None => connect(&kafka, cluster, &cfg.run, &topic, positions.clone()).await?,
        };
        let targets = match targets {
            Some(task) => Some(task.await.map_err(|e| {
                Error::new(Kind::Source, format!("reading the ends of {topic}: {e}"))
            })??),
            None => None,
        };
        match cfg.run.assignment {
            Assignment::Group => {
                tracing::info!(group = %cfg.run.group(), instance = ?cfg.run.instance_id, %topic, trigger = ?cfg.run.trigger, "subscribed")
            }
            Assignment::Static => {
                tracing::info!(group = %cfg.run.group(), %topic, trigger = ?cfg.run.trigger, "partitions taken statically")
            }
        }
        Ok(Self {
            cfg: cfg.clone(),
            kafka,
            cluster: cluster.clone(),
            topic,
            engine,
            positions,
            consumer: Arc::new(consumer),
            assigned: BTreeSet::new(),
            next: BTreeMap::new(),
            cuts: BTreeMap::new(),
            first: BTreeMap::new(),
            targets,
            watch: Watch::new(),
            beat: Beat::start(),
            shutdown,
            prefetched: Vec::new(),
            prefetch_error: None,
            arena: Arena::default(),
            seeks: 0,
        })
    }

    pub(crate) async fn run(mut self) -> Result<RunReport> {
        let shutdown = self.shutdown.clone();
        let limit = self.cfg.run.epoch_limit();
        let byte_limit = usize::try_from(self.cfg.run.max_batch_bytes.0).unwrap_or(usize::MAX);
        // Bytes of `buf`, kept as messages are pushed; `counted` is the length they cover, so
        // any other change to `buf` (an epoch taken, a rebalance's filter, a restart) is seen
        // and the sum recomputed.
        let (mut bytes, mut counted) = (0usize, 0usize);
        let delay = self.cfg.run.max_batch_delay.get();
        let low_latency = self.cfg.run.trigger == Trigger::LowLatency;
        let mut buf: Vec<RawMessage> = Vec::new();
        let mut epoch_start: Option<Instant> = None;
        let mut last_log = Instant::now();
        let mut logged = 0u64;
        loop {
            self.beat.step("waiting for messages");
            let failure = self
                .consumer
                .context()
                .failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            if let Some(msg) = failure {
                self.restart(&mut buf, "rebalance", &msg).await?;
                epoch_start = None;
                continue;
            }
            let deadline = match (low_latency, epoch_start) {
                (true, Some(_)) => tokio::time::Instant::now() + Duration::from_millis(1),
                (true, None) => tokio::time::Instant::now() + Duration::from_millis(200),
                (false, t) => {
                    tokio::time::Instant::from_std(t.unwrap_or_else(Instant::now) + delay)
                        .min(tokio::time::Instant::now() + CHECK_EVERY)
                }
            };
            let mut timed_out = false;
            let mut force = false;
            if shutdown.is_cancelled() {
                // Messages taken ahead are not the epoch's: the lake's positions resume them.
                self.prefetched.clear();
                self.apply_rebalance(&mut buf).await?;
                self.epoch(&mut buf).await?;
                break;
            }
            // The messages taken while the last epoch committed come first; otherwise the first
            // message is waited for, then whatever the consumer already holds is taken without
            // waiting, up to what the epoch has room for: the loop's own work (the heartbeat,
            // the watchdog, the timer, the assignment check) is paid once per batch, not once
            // per message.
            let mut got = std::mem::take(&mut self.prefetched);
            let mut error = self.prefetch_error.take();
            if got.is_empty() && error.is_none() {
                tokio::select! {
                    _ = shutdown.cancelled() => continue,
                    r = tokio::time::timeout_at(deadline, self.consumer.recv()) => match r {
                        Ok(Ok(m)) => {
                            got.push(RawMessage::from_message(&m, &mut self.arena));
                            drop(m);
                            let room = limit.saturating_sub(buf.len()).max(1);
                            let room_bytes = byte_limit.saturating_sub(bytes).max(1);
                            error = ready(&self.consumer, &mut self.arena, &mut got, room, room_bytes);
                        }
                        Ok(Err(e)) => {
                            self.beat.step("handling a consumer error");
                            self.consumer_error(&mut buf, e).await?;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(_) => timed_out = true,
                    },
                }
            }
            if !got.is_empty() {
                self.beat
                    .step("taking messages (their assignment, or the epoch they end)");
                self.watch.progressed();
                // The assignment that delivered them is learnt before they are judged.
                let seeks = self.seeks;
                if self.sync_assignment(&mut buf).await? || self.seeks != seeks {
                    epoch_start = None;
                    continue;
                }
                let mut failed = false;
                for m in got {
                    if m.offset < self.next.get(&m.partition).copied().unwrap_or(0)
                        || !self.assigned.contains(&m.partition)
                    {
                        continue;
                    }
                    self.check_loss(&m)?;
                    if self.cuts.get(&m.partition).is_some_and(|c| m.offset >= *c) {
                        // The interrupted range ended before this message (offsets gone).
                        self.cuts.remove(&m.partition);
                        epoch_start = None;
                        if let Err(e) = self.epoch(&mut buf).await {
                            self.epoch_failed(&mut buf, e).await?;
                            failed = true;
                            break;
                        }
                        if self.seeks != seeks {
                            failed = true;
                            break;
                        }
                    }
                    self.next.insert(m.partition, m.offset + 1);
                    epoch_start.get_or_insert_with(Instant::now);
                    let partition = m.partition;
                    let ends_cut = self.cuts.get(&partition) == Some(&(m.offset + 1));
                    if buf.len() == counted {
                        bytes += m.size();
                        counted += 1;
                    }
                    buf.push(m);
                    if ends_cut {
                        // The interrupted range is whole: it is an epoch of its own, the rest
                        // of the batch goes to the next.
                        self.cuts.remove(&partition);
                        epoch_start = None;
                        if let Err(e) = self.epoch(&mut buf).await {
                            self.epoch_failed(&mut buf, e).await?;
                            failed = true;
                            break;
                        }
                        if self.seeks != seeks {
                            failed = true;
                            break;
                        }
                    }
                }
                if failed {
                    // The consumer was started again, or sought back to the lake's positions
                    // after another worker's commit: the rest of the batch was taken before,
                    // and is gone with it (judged, it would look like a gap: data loss).
                    epoch_start = None;
                    continue;
                }
            }
            if let Some(e) = error {
                self.beat.step("handling a consumer error");
                self.consumer_error(&mut buf, e).await?;
            }
            self.beat
                .step("taking an assignment (reading its outputs' versions)");
            if self.sync_assignment(&mut buf).await? {
                epoch_start = None;
                continue;
            }
            self.beat.step("committing an epoch");
            // With available-now, an epoch that reaches every target is the last: it commits at
            // once instead of waiting out `max-batch-delay` for messages that will not come.
            let due = epoch_start.is_some_and(|t| t.elapsed() >= delay)
                || (low_latency && timed_out)
                || (epoch_start.is_some()
                    && self.targets.as_ref().is_some_and(|t| self.caught_up(t)));
            if timed_out
                && !self.cuts.is_empty()
                && epoch_start.is_some_and(|t| t.elapsed() >= delay * 4)
            {
                // A re-run range whose last offsets hold no message (transaction markers, or
                // compaction) ends where the partition does.
                force |= self.drop_unreachable_cuts();
            }
            if buf.len() != counted {
                bytes = buf.iter().map(RawMessage::size).sum();
                counted = buf.len();
            }
            let full = buf.len() >= limit || bytes >= byte_limit;
            // While an interrupted range is being re-read, its end closes the epoch, and so does
            // a full one: an epoch never crosses the range's end, and may stop inside it (the
            // outputs ahead skip what they hold), but must not grow without bound while another
            // partition's messages come first (a crash test once saw one epoch take the whole
            // topic so).
            if force || full || (self.cuts.is_empty() && due) {
                epoch_start = None;
                if let Err(e) = self.epoch(&mut buf).await {
                    self.epoch_failed(&mut buf, e).await?;
                    continue;
                }
            }
            if self.watch.last_check.elapsed() >= CHECK_EVERY {
                self.watch.last_check = Instant::now();
                // The watchdog compares the lake's positions with what was taken.
                self.beat.step("waiting for the last epoch's commits");
                if let Err(e) = self.land(&mut buf).await {
                    self.epoch_failed(&mut buf, e).await?;
                    continue;
                }
                self.beat.step("checking the consumer's health");
                if let Some((kind, reason)) = self.check_health().await {
                    self.restart(&mut buf, kind, &reason).await?;
                    epoch_start = None;
                    continue;
                }
            }
            if last_log.elapsed() >= Duration::from_secs(5) {
                let r = &self.engine.report;
                tracing::info!(
                    epochs = r.epochs,
                    rows = ?r.rows,
                    state_keys = self.engine.state_len(),
                    events_per_sec = ((r.messages - logged) as f64 / last_log.elapsed().as_secs_f64()).round() as u64,
                    partitions = ?self.assigned,
                    "processing"
                );
                last_log = Instant::now();
                logged = r.messages;
            }
            let drained = self
                .targets
                .as_ref()
                .is_some_and(|t| buf.is_empty() && (timed_out || self.caught_up(t)));
            if drained {
                self.beat
                    .step("reading the lake's positions (available-now)");
                if let Err(e) = self.land(&mut buf).await {
                    self.epoch_failed(&mut buf, e).await?;
                    continue;
                }
                if let Some(t) = &self.targets
                    && self.lake_holds(t).await
                {
                    tracing::info!(
                        "available-now: the lake holds everything the topic held at the start"
                    );
                    break;
                }
            }
        }
        self.beat.step("waiting for the last epoch's commits");
        self.land(&mut buf).await?;
        self.engine.finish().await?;
        let report = self.engine.report.clone();
        self.close().await;
        Ok(report)
    }

    /// Drops the cuts of partitions read up to their high watermark; `true` if any went.
    fn drop_unreachable_cuts(&mut self) -> bool {
        let parts: Vec<i32> = self.cuts.keys().copied().collect();
        let Ok(hw) = self.watermarks(&parts) else {
            return false;
        };
        let before = self.cuts.len();
        self.cuts.retain(|p, _| {
            hw.get(p)
                .is_none_or(|h| self.next.get(p).copied().unwrap_or(0) < *h)
        });
        before != self.cuts.len()
    }

    /// A failed epoch: retried from the lake's positions, unless the failure is final.
    async fn epoch_failed(&mut self, buf: &mut Vec<RawMessage>, e: Error) -> Result<()> {
        if !e.retryable() {
            return Err(e);
        }
        rtlake_core::metrics::global()
            .run
            .epoch_failures
            .with_label_values(&[&self.cfg.run.pipeline])
            .inc();
        tracing::error!(error = %rtlake_core::error::Chain(&e), "epoch failed; it is retried from the lake's positions");
        self.restart(buf, "epoch-failed", &e.to_string()).await
    }

    /// A consumer error: a fenced static member ends the run; a fatal error or a run of errors
    /// restarts the consumer.
    async fn consumer_error(
        &mut self,
        buf: &mut Vec<RawMessage>,
        e: rdkafka::error::KafkaError,
    ) -> Result<()> {
        self.watch.errors += 1;
        if let Some((code, reason)) = self.consumer.client().fatal_error() {
            if code == RDKafkaErrorCode::FencedInstanceId {
                return Err(Error::new(
                    Kind::Source,
                    format!(
                        "another worker joined group {} with instance id {:?} (run.instance-id): give each worker its own id ({reason})",
                        self.cfg.run.group(),
                        self.cfg.run.instance_id.as_deref().unwrap_or("")
                    ),
                ));
            }
            return self
                .restart(
                    buf,
                    "consumer-error",
                    &format!("fatal consumer error: {reason}"),
                )
                .await;
        }
        if e.rdkafka_error_code() == Some(RDKafkaErrorCode::InvalidSessionTimeout) {
            return Err(Error::new(
                Kind::Source,
                format!(
                    "the cluster refuses run.session-timeout = {} (outside its group.min.session.timeout.ms..group.max.session.timeout.ms; Apache Kafka allows 6s to 30m by default)",
                    self.cfg.run.session_timeout
                ),
            ));
        }
        tracing::warn!(error = %rtlake_core::error::Chain(&e), "consumer error");
        if self.watch.errors >= MAX_ERRORS {
            return self
                .restart(
                    buf,
                    "consumer-error",
                    &format!(
                        "{} consumer errors in a row, the last: {e}",
                        self.watch.errors
                    ),
                )
                .await;
        }
        Ok(())
    }

    async fn close(self) {
        for s in &self.engine.stages {
            for o in &s.outputs {
                if let Output::Kafka(k) = o {
                    k.flush();
                }
            }
        }
        let committed = self.consumer.context().committed_now();
        let mut tpl = TopicPartitionList::new();
        for (p, o) in committed.iter().filter(|(p, _)| self.assigned.contains(p)) {
            let _ = tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*o));
        }
        let (consumer, engine) = (self.consumer, self.engine);
        let closing = tokio::task::spawn_blocking(move || {
            if tpl.count() > 0 {
                let _ = consumer.commit(&tpl, CommitMode::Sync);
            }
            crate::connectors::kafka::source::close(&consumer);
            drop(consumer);
            // The sinks' producers too: librdkafka's destroy waits for its brokers' threads.
            drop(engine);
        });
        // The lake holds the truth: a broker that does not answer must not hold up the exit.
        if tokio::time::timeout(Duration::from_secs(10), closing)
            .await
            .is_err()
        {
            tracing::warn!(
                "the Kafka clients did not close within 10 s (is the broker down?); exiting anyway"
            );
        }
    }
}
