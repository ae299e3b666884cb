//! `rtlake run`: the epoch loop over the Kafka source (or the file source), exactly once.
//!
//! Each epoch is the messages gathered until `max-batch-events` (or `max-offsets-per-trigger`)
//! or `max-batch-delay`; with the low-latency trigger, as soon as the consumer has nothing more
//! to hand over at once. An interrupted epoch (offset log without commit) is cut again at the
//! same end. Group offsets are committed after the lake commits, for lag display only; the
//! [`Engine`] holds the truth.

use crate::bronze::DistrictCache;
use crate::checkpoint::EpochLog;
use crate::engine::Engine;
pub use crate::engine::RunReport;
use crate::pipeline::{Output, build};
use crate::source::{Positions, RawMessage, Resume, SourceContext, StartAt, subscribe};
use crate::state::StateStore;
use crate::{Error, Result};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use rtlake_core::Config;
use rtlake_core::config::{StartingOffsets, Trigger};
use rtlake_core::schema::{self, TIME_PARTITIONS};
use rtlake_lake::Lake;
use rtlake_lake::sink::DeltaSink;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The pipeline's checkpoint folder: `run.checkpoint`, or `<lake>/_checkpoints/<pipeline>`.
pub fn checkpoint_dir(cfg: &Config, lake: &Lake) -> Result<PathBuf> {
    if let Some(c) = &cfg.run.checkpoint {
        let path = c.strip_prefix("file://").unwrap_or(c);
        if path.contains("://") {
            return Err(Error::Checkpoint(format!("run.checkpoint {c}: only local paths and file:// URLs in this build")));
        }
        return Ok(PathBuf::from(path));
    }
    let root = lake
        .root()
        .to_file_path()
        .map_err(|_| Error::Checkpoint(format!("the lake {} is not local: set run.checkpoint to a local folder", lake.root())))?;
    Ok(root.join("_checkpoints").join(&cfg.run.pipeline))
}

/// Runs the pipeline until `shutdown` fires, or until the input is drained (available-now
/// trigger, or the file source).
pub async fn run(cfg: &Config, shutdown: CancellationToken) -> Result<RunReport> {
    let lake = Lake::open(&cfg.lake)?;
    let checkpoint = checkpoint_dir(cfg, &lake)?;
    let file = cfg.run.file_source().map(PathBuf::from);
    let topic = match &file {
        Some(p) => format!("file:{}", p.display()),
        None => {
            rtlake_kafka::admin::ensure_topic(&cfg.kafka, &cfg.kafka.topic).await?;
            cfg.kafka.topic.clone()
        }
    };
    let stages = build(cfg, &lake, &checkpoint).await?;
    let rejected = Output::Delta(DeltaSink::open(&lake, schema::REJECTED, schema::rejected(), &TIME_PARTITIONS).await?, None);
    let engine = Engine {
        pipeline: cfg.run.pipeline.clone(),
        topic,
        stages,
        rejected,
        state: StateStore::new(checkpoint.join("state")),
        log: EpochLog::new(&checkpoint),
        places: DistrictCache::default(),
        report: RunReport::default(),
    };
    let outputs: Vec<String> = engine.stages.iter().flat_map(|s| s.outputs.iter().map(Output::name)).collect();
    touch_metrics(&cfg.run.pipeline, outputs.iter().chain([&engine.rejected.name()]));
    tracing::info!(pipeline = %cfg.run.pipeline, source = %engine.topic, lake = %lake.root(), checkpoint = %checkpoint.display(), ?outputs, "processor started");
    let report = match file {
        Some(path) => run_file(cfg, engine, &path, shutdown).await?,
        None => {
            let positions = Positions {
                lake: lake.clone(),
                pipeline: cfg.run.pipeline.clone(),
                tables: engine.stages.iter().flat_map(|s| &s.outputs).chain([&engine.rejected]).filter_map(|o| match o {
                    Output::Delta(d, _) => Some(d.name()),
                    Output::Kafka(_) => None,
                }).collect(),
                kafka_dirs: engine
                    .stages
                    .iter()
                    .flat_map(|s| &s.outputs)
                    .filter_map(|o| match o {
                        Output::Kafka(k) => Some(k.dir().to_path_buf()),
                        Output::Delta(..) => None,
                    })
                    .collect(),
                start: start_at(cfg).await?,
            };
            KafkaWorker::start(cfg, engine, positions).await?.run(shutdown).await?
        }
    };
    tracing::info!(
        epochs = report.epochs,
        messages = report.messages,
        rows = ?report.rows,
        latency_p50_ms = report.latency_quantile(0.5),
        latency_p99_ms = report.latency_quantile(0.99),
        "processor stopped"
    );
    Ok(report)
}

/// Creates every series a dashboard or alert reads, at zero, so they exist before the first
/// rejection, late event or commit.
fn touch_metrics<'a>(pipeline: &str, outputs: impl Iterator<Item = &'a String>) {
    let m = &rtlake_core::metrics::global().run;
    for o in outputs {
        for reason in ["decode", "validation", "stale", "late"] {
            m.rejected.with_label_values(&[pipeline, o, reason]);
        }
        m.late.with_label_values(&[pipeline, o]);
        m.rows_out.with_label_values(&[pipeline, o]);
        m.commit_duration.with_label_values(&[pipeline, o]);
    }
    m.epochs.with_label_values(&[pipeline]);
    m.epoch_duration.with_label_values(&[pipeline]);
    m.event_to_lake.with_label_values(&[pipeline]);
}

/// Resolves `run.starting-offsets` (a timestamp becomes offsets through the broker).
async fn start_at(cfg: &Config) -> Result<StartAt> {
    Ok(match cfg.run.starting() {
        StartingOffsets::Earliest => StartAt::Earliest,
        StartingOffsets::Latest => StartAt::Latest,
        StartingOffsets::Offsets(m) => StartAt::Offsets(m),
        StartingOffsets::Timestamp(ms) => StartAt::Offsets(rtlake_kafka::admin::offsets_for_time(&cfg.kafka, &cfg.kafka.topic, ms).await?),
    })
}

/// The file source: every line, in epochs of `max-batch-events`, then stop.
async fn run_file(cfg: &Config, mut engine: Engine, path: &std::path::Path, shutdown: CancellationToken) -> Result<RunReport> {
    let files = crate::file_source::files(path)?;
    let msgs = crate::file_source::read(&files)?;
    engine.refresh(&[0]).await?;
    let from = engine.resume(0).expected();
    let todo: Vec<RawMessage> = msgs.into_iter().filter(|m| m.offset >= from).collect();
    tracing::info!(files = files.len(), messages = todo.len(), resume_at = from, "file source");
    let started = Instant::now();
    for chunk in todo.chunks(cfg.run.epoch_limit()) {
        if shutdown.is_cancelled() {
            break;
        }
        engine.epoch(chunk).await?;
        tracing::info!(
            epochs = engine.report.epochs,
            messages = engine.report.messages,
            events_per_sec = (engine.report.messages as f64 / started.elapsed().as_secs_f64()).round() as u64,
            "processing"
        );
    }
    Ok(engine.report)
}

struct KafkaWorker {
    cfg: Config,
    topic: String,
    engine: Engine,
    positions: Positions,
    consumer: StreamConsumer<SourceContext>,
    assigned: BTreeSet<i32>,
    /// Next offset expected per assigned partition; older re-deliveries are dropped.
    next: BTreeMap<i32, i64>,
    /// Interrupted epochs: a partition's next epoch ends exactly here.
    cuts: BTreeMap<i32, i64>,
    /// The first offset each newly assigned partition should deliver (to detect data loss).
    first: BTreeMap<i32, i64>,
    /// The high watermarks at the start, with the available-now trigger.
    targets: Option<Vec<(i32, i64, i64)>>,
}

impl KafkaWorker {
    async fn start(cfg: &Config, engine: Engine, positions: Positions) -> Result<Self> {
        let topic = cfg.kafka.topic.clone();
        let targets = match cfg.run.trigger {
            Trigger::AvailableNow => Some(rtlake_kafka::admin::high_watermarks(&cfg.kafka, &topic).await?),
            _ => None,
        };
        let mut kafka = cfg.kafka.clone();
        // Statistics carry the high watermarks behind the lag gauges.
        kafka.properties.entry("statistics.interval.ms".into()).or_insert_with(|| "1000".into());
        if cfg.run.trigger == Trigger::LowLatency {
            // Fetches answer at once when data is there; bound the wait when it is not.
            kafka.properties.entry("fetch.wait.max.ms".into()).or_insert_with(|| "50".into());
        }
        let consumer = subscribe(&kafka, &cfg.run.group(), cfg.run.assignment_strategy.as_str(), &topic, positions.clone())
            .map_err(|e| Error::Kafka(rtlake_kafka::Error::Kafka { context: "create consumer".into(), cause: e }))?;
        tracing::info!(group = %cfg.run.group(), %topic, trigger = ?cfg.run.trigger, "subscribed");
        Ok(Self {
            cfg: cfg.clone(),
            topic,
            engine,
            positions,
            consumer,
            assigned: BTreeSet::new(),
            next: BTreeMap::new(),
            cuts: BTreeMap::new(),
            first: BTreeMap::new(),
            targets,
        })
    }

    async fn run(mut self, shutdown: CancellationToken) -> Result<RunReport> {
        let limit = self.cfg.run.epoch_limit();
        let delay = self.cfg.run.max_batch_delay.get();
        let low_latency = self.cfg.run.trigger == Trigger::LowLatency;
        let mut buf: Vec<RawMessage> = Vec::new();
        let mut epoch_start: Option<Instant> = None;
        let mut last_log = Instant::now();
        let mut logged = 0u64;
        let mut unassigned_since = Some(Instant::now());
        let mut warned = false;
        loop {
            if let Some(msg) = self.consumer.context().failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
                return Err(Error::Rebalance(msg));
            }
            let deadline = match (low_latency, epoch_start) {
                (true, Some(_)) => tokio::time::Instant::now() + Duration::from_millis(1),
                (true, None) => tokio::time::Instant::now() + Duration::from_millis(200),
                (false, t) => tokio::time::Instant::from_std(t.unwrap_or_else(Instant::now) + delay),
            };
            let mut timed_out = false;
            let mut force = false;
            tokio::select! {
                _ = shutdown.cancelled() => {
                    self.apply_rebalance(&mut buf).await?;
                    self.epoch(&mut buf).await?;
                    break;
                }
                r = tokio::time::timeout_at(deadline, self.consumer.recv()) => match r {
                    Ok(Ok(m)) => {
                        let m = RawMessage::from_message(&m);
                        // The assignment that delivered it is learnt before the message is judged.
                        self.apply_rebalance(&mut buf).await?;
                        if m.offset >= self.next.get(&m.partition).copied().unwrap_or(0) {
                            self.check_loss(&m)?;
                            if self.cuts.get(&m.partition).is_some_and(|c| m.offset >= *c) {
                                // The interrupted range ended before this message (offsets gone).
                                self.cuts.remove(&m.partition);
                                self.epoch(&mut buf).await?;
                                epoch_start = None;
                            }
                            self.next.insert(m.partition, m.offset + 1);
                            epoch_start.get_or_insert_with(Instant::now);
                            if self.cuts.get(&m.partition) == Some(&(m.offset + 1)) {
                                self.cuts.remove(&m.partition);
                                force = true;
                            }
                            buf.push(m);
                        }
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "consumer error");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(_) => timed_out = true,
                },
            }
            self.apply_rebalance(&mut buf).await?;
            let due = epoch_start.is_some_and(|t| t.elapsed() >= delay) || (low_latency && timed_out);
            // While an interrupted range is being re-read, only its end closes the epoch.
            if force || (self.cuts.is_empty() && (buf.len() >= limit || due)) {
                self.epoch(&mut buf).await?;
                epoch_start = None;
            }
            match (self.assigned.is_empty(), unassigned_since) {
                (false, _) => (unassigned_since, warned) = (None, false),
                (true, None) => unassigned_since = Some(Instant::now()),
                (true, Some(t)) if !warned && t.elapsed() >= Duration::from_secs(30) => {
                    warned = true;
                    tracing::warn!(
                        group = %self.cfg.run.group(),
                        "no partitions assigned for 30 s: other members of the group hold them all. On the embedded \
                         broker (tansu 0.6) a crashed worker's membership can linger; restarting with another --group is \
                         safe, since the lake, not the group, says where to resume"
                    );
                }
                _ => {}
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
            if let Some(t) = &self.targets {
                if buf.is_empty() && (timed_out || self.caught_up(t)) && self.lake_holds(t).await? {
                    tracing::info!("available-now: the lake holds everything the topic held at the start");
                    break;
                }
            }
        }
        let report = self.engine.report.clone();
        self.close().await;
        Ok(report)
    }

    /// The first message of a newly assigned partition must be the one the outputs expect;
    /// a later one means retention deleted offsets the pipeline never read.
    fn check_loss(&mut self, m: &RawMessage) -> Result<()> {
        let Some(expected) = self.first.remove(&m.partition) else { return Ok(()) };
        if m.offset <= expected {
            return Ok(());
        }
        let what = format!(
            "partition {} of {}: offsets {expected}..{} were deleted (retention) before pipeline {} read them",
            m.partition,
            self.topic,
            m.offset - 1,
            self.cfg.run.pipeline
        );
        if self.cfg.run.fail_on_data_loss {
            return Err(Error::DataLoss(format!("{what}; set run.fail-on-data-loss = false (--no-fail-on-data-loss) to skip them")));
        }
        tracing::warn!(partition = m.partition, from = expected, to = m.offset, "{what}; skipping them (fail-on-data-loss is off)");
        Ok(())
    }

    /// Whether this worker's partitions have been read up to the targets.
    fn caught_up(&self, targets: &[(i32, i64, i64)]) -> bool {
        !self.assigned.is_empty()
            && targets.iter().filter(|(p, ..)| self.assigned.contains(p)).all(|(p, _, hi)| self.next.get(p).copied().unwrap_or(0) >= *hi)
    }

    /// Whether the lake holds every target partition up to its target (any worker's doing).
    async fn lake_holds(&self, targets: &[(i32, i64, i64)]) -> Result<bool> {
        let parts: Vec<i32> = targets.iter().map(|t| t.0).collect();
        let pos = self.positions.resume_offsets(&parts).await?;
        Ok(targets.iter().all(|(p, lo, hi)| match pos.get(p) {
            Some(Resume::At(o)) => o >= hi,
            Some(Resume::Start) => self.positions.start.first(*p, *lo, *hi) >= *hi,
            _ => lo >= hi,
        }))
    }

    /// Applies an assignment change: drops buffered messages of lost partitions, and learns the
    /// outputs' versions (and restores the state) of new ones.
    async fn apply_rebalance(&mut self, buf: &mut Vec<RawMessage>) -> Result<()> {
        let ctx = self.consumer.context();
        if !ctx.changed.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let now = ctx.assigned_now();
        buf.retain(|m| now.contains(&m.partition));
        self.next.retain(|p, _| now.contains(p));
        self.cuts.retain(|p, _| now.contains(p));
        for p in self.assigned.difference(&now) {
            self.engine.drop_partition(*p);
            ctx.forget(*p);
        }
        let added: Vec<i32> = now.difference(&self.assigned).copied().collect();
        if !added.is_empty() {
            self.learn(&added).await?;
        }
        self.assigned = now;
        Ok(())
    }

    /// Learns where `parts` resume and which of them have an interrupted epoch.
    async fn learn(&mut self, parts: &[i32]) -> Result<()> {
        let pending = self.engine.refresh(parts).await?;
        for p in parts {
            let resume = self.engine.resume(*p);
            self.next.insert(*p, resume.expected());
            match resume {
                Resume::At(o) => self.first.insert(*p, o),
                _ => self.first.remove(p),
            };
        }
        for (p, r) in pending {
            tracing::info!(partition = p, start = r.start, end = r.end, "re-running the interrupted epoch over the same offsets");
            self.cuts.insert(p, r.end);
        }
        Ok(())
    }

    /// Commits the buffered messages as one epoch.
    async fn epoch(&mut self, buf: &mut Vec<RawMessage>) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let msgs = std::mem::take(buf);
        let ends = match self.engine.epoch(&msgs).await {
            Ok(ends) => ends,
            Err(Error::Lake(e @ rtlake_lake::Error::ConflictingOffsets { .. })) => {
                tracing::warn!(error = %e, "another worker wrote these partitions; dropping the epoch and resuming from the lake");
                return self.reseek().await;
            }
            Err(e) => return Err(e),
        };
        let ctx = self.consumer.context();
        ctx.committed.lock().unwrap_or_else(|p| p.into_inner()).extend(ends.iter().map(|(p, e)| (*p, *e)));
        let hi = ctx.high_watermarks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for (p, end) in &ends {
            ctx.observe(*p, hi.get(p).copied().unwrap_or(*end).max(*end), Some(*end));
        }
        let mut tpl = TopicPartitionList::new();
        for (p, end) in &ends {
            let _ = tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*end));
        }
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(error = %e, "async group offset commit failed (lag display only)");
        }
        tracing::debug!(messages = msgs.len(), "epoch committed");
        Ok(())
    }

    /// After a conflict: learn the lake's versions again and seek every partition there.
    async fn reseek(&mut self) -> Result<()> {
        let parts: Vec<i32> = self.assigned.iter().copied().collect();
        self.learn(&parts).await?;
        for p in parts {
            let offset = self.positions.offset(p, self.engine.resume(p));
            if let Err(e) = self.consumer.seek(&self.topic, p, offset, Duration::from_secs(10)) {
                tracing::warn!(partition = p, error = %e, "seek failed");
            }
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
        let committed = self.consumer.context().committed.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut tpl = TopicPartitionList::new();
        for (p, o) in committed.iter().filter(|(p, _)| self.assigned.contains(p)) {
            let _ = tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*o));
        }
        let consumer = self.consumer;
        let _ = tokio::task::spawn_blocking(move || {
            if tpl.count() > 0 {
                let _ = consumer.commit(&tpl, CommitMode::Sync);
            }
            consumer.unsubscribe();
            drop(consumer);
        })
        .await;
    }
}
