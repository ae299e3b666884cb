//! `rtlake run`: Kafka → `bronze.station_status`, `silver.station_changes`,
//! `gold.station_hourly` and `_rejected`, exactly once.
//!
//! Each epoch is the messages gathered until `max-batch-events` or `max-batch-delay`; per
//! partition it covers an offset range. Every table is committed with a `txn` per partition
//! whose version is the range's end, even when the epoch gave it no rows; a table skips the
//! messages below its own version, so an epoch re-run after a crash lands each row once.
//!
//! `_rejected` is committed first: a stateful table (silver) rejects stale snapshots only while
//! it processes them, so its rejections must never be behind it. The per-partition state of
//! silver (last snapshot per station) and gold (open windows, watermark) is snapshotted under the version its commit will carry, before that commit; on assignment a
//! partition's state is restored from the snapshot of the version the table holds. Group
//! offsets are committed after the lake commits, for lag display only.

use crate::bronze::{BronzeDecoder, EpochInput};
use crate::gold::HourlyOperator;
use crate::silver::SilverOperator;
use crate::state::{KeyedState, StateStore};
use crate::source::{Positions, RawMessage, SourceContext, subscribe};
use crate::{Error, Result};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use rtlake_core::Config;
use rtlake_core::config::Trigger;
use rtlake_core::schema::{self, TIME_PARTITIONS};
use rtlake_lake::sink::{DeltaSink, app_id};
use rtlake_lake::Lake;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct RunReport {
    /// Epochs committed.
    pub epochs: u64,
    /// Messages consumed (including re-reads after a rebalance).
    pub messages: u64,
    /// Rows written to bronze.
    pub bronze_rows: u64,
    /// Rows written to `_rejected`.
    pub rejected_rows: u64,
    /// Rows written to silver.
    pub silver_rows: u64,
    /// Rows written to gold.station_hourly.
    pub gold_rows: u64,
}

struct Worker {
    cfg: Config,
    topic: String,
    pipeline: String,
    bronze: DeltaSink,
    silver: DeltaSink,
    gold: DeltaSink,
    rejected: DeltaSink,
    changes: SilverOperator,
    hourly: HourlyOperator,
    state: StateStore,
    positions: Positions,
    consumer: StreamConsumer<SourceContext>,
    decoder: BronzeDecoder,
    assigned: BTreeSet<i32>,
    /// Next offset expected per assigned partition; older re-deliveries are dropped.
    next: BTreeMap<i32, i64>,
    report: RunReport,
}

/// Runs the bronze pipeline until `shutdown` fires (or, with the available-now trigger, until
/// the lake holds everything the topic held at the start).
pub async fn run(cfg: &Config, shutdown: CancellationToken) -> Result<RunReport> {
    let lake = Lake::open(&cfg.lake)?;
    let topic = cfg.kafka.topic.clone();
    rtlake_kafka::admin::ensure_topic(&cfg.kafka, &topic).await?;
    let bronze = DeltaSink::open(&lake, schema::BRONZE_STATION_STATUS, schema::bronze_station_status(), &TIME_PARTITIONS).await?;
    let silver = DeltaSink::open(&lake, schema::SILVER_STATION_CHANGES, schema::silver_station_changes(), &TIME_PARTITIONS).await?;
    let gold = DeltaSink::open(&lake, schema::GOLD_STATION_HOURLY, schema::gold_station_hourly(), &TIME_PARTITIONS).await?;
    let rejected = DeltaSink::open(&lake, schema::REJECTED, schema::rejected(), &TIME_PARTITIONS).await?;
    let state_root = lake
        .root()
        .to_file_path()
        .map_err(|_| rtlake_lake::Error::Location { uri: lake.root().to_string(), reason: "keyed state needs a local lake in this build".into() })?
        .join("_checkpoints")
        .join(&cfg.run.pipeline)
        .join("state");
    let positions = Positions {
        lake: lake.clone(),
        pipeline: cfg.run.pipeline.clone(),
        sinks: vec![
            (schema::BRONZE_STATION_STATUS, schema::BRONZE_STATION_STATUS.to_string()),
            (schema::SILVER_STATION_CHANGES, schema::SILVER_STATION_CHANGES.to_string()),
            (schema::GOLD_STATION_HOURLY, schema::GOLD_STATION_HOURLY.to_string()),
            (schema::REJECTED, schema::REJECTED.to_string()),
        ],
    };
    let targets = match cfg.run.trigger {
        Trigger::AvailableNow => Some(rtlake_kafka::admin::high_watermarks(&cfg.kafka, &topic).await?),
        Trigger::ProcessingTime => None,
    };
    let consumer = subscribe(&cfg.kafka, &cfg.run.group(), cfg.run.assignment_strategy.as_str(), &topic, positions.clone())
        .map_err(|e| Error::Kafka(rtlake_kafka::Error::Kafka { context: "create consumer".into(), cause: e }))?;
    tracing::info!(pipeline = %cfg.run.pipeline, group = %cfg.run.group(), %topic, lake = %lake.root(), "processor started");
    let w = Worker {
        cfg: cfg.clone(),
        pipeline: cfg.run.pipeline.clone(),
        decoder: BronzeDecoder::new(),
        topic,
        bronze,
        silver,
        gold,
        rejected,
        changes: SilverOperator::default(),
        hourly: HourlyOperator::new(cfg.run.lateness.get().as_micros() as i64),
        state: StateStore::new(state_root),
        positions,
        consumer,
        assigned: BTreeSet::new(),
        next: BTreeMap::new(),
        report: RunReport::default(),
    };
    w.run(targets, shutdown).await
}

impl Worker {
    async fn run(mut self, targets: Option<Vec<(i32, i64, i64)>>, shutdown: CancellationToken) -> Result<RunReport> {
        let max_events = self.cfg.run.max_batch_events;
        let delay = self.cfg.run.max_batch_delay.get();
        let mut buf: Vec<RawMessage> = Vec::new();
        let mut epoch_start: Option<Instant> = None;
        let mut last_log = Instant::now();
        let mut logged = RunReport::default();
        let mut unassigned_since = Some(Instant::now());
        let mut warned = false;
        loop {
            if let Some(msg) = self.consumer.context().failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
                return Err(Error::Rebalance(msg));
            }
            let deadline = tokio::time::Instant::from_std(epoch_start.unwrap_or_else(Instant::now) + delay);
            let mut timed_out = false;
            tokio::select! {
                _ = shutdown.cancelled() => {
                    self.apply_rebalance(&mut buf).await?;
                    self.epoch(&mut buf).await?;
                    break;
                }
                r = tokio::time::timeout_at(deadline, self.consumer.recv()) => match r {
                    Ok(Ok(m)) => {
                        let m = RawMessage::from_message(&m);
                        if m.offset >= self.next.get(&m.partition).copied().unwrap_or(0) {
                            self.next.insert(m.partition, m.offset + 1);
                            epoch_start.get_or_insert_with(Instant::now);
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
            let due = epoch_start.is_some_and(|t| t.elapsed() >= delay);
            if buf.len() >= max_events || due {
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
                let secs = last_log.elapsed().as_secs_f64();
                tracing::info!(
                    epochs = self.report.epochs,
                    bronze_rows = self.report.bronze_rows,
                    rejected_rows = self.report.rejected_rows,
                    silver_rows = self.report.silver_rows,
                    gold_rows = self.report.gold_rows,
                    state_stations = self.changes.state_len(),
                    state_windows = self.hourly.state_len(),
                    events_per_sec = ((self.report.messages - logged.messages) as f64 / secs).round() as u64,
                    partitions = ?self.assigned,
                    "processing"
                );
                last_log = Instant::now();
                logged = self.report.clone();
            }
            if let Some(t) = &targets {
                if buf.is_empty() && (timed_out || self.caught_up(t)) && self.lake_holds(t).await? {
                    tracing::info!("available-now: the lake holds everything the topic held at the start");
                    break;
                }
            }
        }
        let report = self.report.clone();
        self.close().await;
        tracing::info!(
            epochs = report.epochs,
            messages = report.messages,
            bronze_rows = report.bronze_rows,
            rejected_rows = report.rejected_rows,
            "processor stopped"
        );
        Ok(report)
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
        Ok(targets.iter().all(|(p, lo, hi)| pos.get(p).copied().flatten().unwrap_or(*lo) >= *hi))
    }

    /// Applies an assignment change: drops buffered messages of lost partitions, and learns the
    /// sinks' versions of new ones.
    async fn apply_rebalance(&mut self, buf: &mut Vec<RawMessage>) -> Result<()> {
        let ctx = self.consumer.context();
        if !ctx.changed.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let now = ctx.assigned_now();
        buf.retain(|m| now.contains(&m.partition));
        self.next.retain(|p, _| now.contains(p));
        for p in self.assigned.difference(&now) {
            self.changes.drop_partition(*p);
            self.hourly.drop_partition(*p);
        }
        let added: Vec<i32> = now.difference(&self.assigned).copied().collect();
        if !added.is_empty() {
            self.refresh_sinks(&added).await?;
            for p in &added {
                self.next.insert(*p, self.resume_offset(*p).unwrap_or(0));
            }
        }
        self.assigned = now;
        Ok(())
    }

    /// Where a partition resumes, from the versions the sinks last read or wrote: the smallest,
    /// or `None` (the earliest) if any table has never written it. Same rule as
    /// [`Positions::resume_offsets`], without reading the lake again.
    fn resume_offset(&self, p: i32) -> Option<i64> {
        [&self.bronze, &self.silver, &self.gold, &self.rejected]
            .iter()
            .map(|s| s.known_version(&app_id(&self.pipeline, &s.name().to_string(), p)))
            .collect::<Option<Vec<i64>>>()
            .and_then(|v| v.into_iter().min())
    }

    /// Learns the tables' versions of `parts` and restores their keyed state to match.
    async fn refresh_sinks(&mut self, parts: &[i32]) -> Result<()> {
        for sink in [&mut self.bronze, &mut self.silver, &mut self.gold, &mut self.rejected] {
            let name = sink.name().to_string();
            let ids: Vec<String> = parts.iter().map(|p| app_id(&self.pipeline, &name, *p)).collect();
            sink.refresh_versions(&ids).await?;
        }
        let stateful: [(&DeltaSink, &mut dyn KeyedState); 2] = [(&self.silver, &mut self.changes), (&self.gold, &mut self.hourly)];
        for (sink, op) in stateful {
            let table = sink.name().to_string();
            for p in parts {
                let version = sink.known_version(&app_id(&self.pipeline, &table, *p));
                let bytes = self.state.load(&table, *p, version)?;
                op.restore(*p, bytes.as_deref())
                    .map_err(|e| Error::Rebalance(format!("state of {table} partition {p} is unreadable: {e}")))?;
            }
        }
        Ok(())
    }

    /// Commits the buffered messages as one epoch.
    async fn epoch(&mut self, buf: &mut Vec<RawMessage>) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let msgs = std::mem::take(buf);
        let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
        for m in &msgs {
            let e = ends.entry(m.partition).or_insert(m.offset + 1);
            *e = (*e).max(m.offset + 1);
        }
        let (bname, sname, gname, rname) = (
            self.bronze.name().to_string(),
            self.silver.name().to_string(),
            self.gold.name().to_string(),
            self.rejected.name().to_string(),
        );
        let owed = |sink: &DeltaSink, name: &str, m: &RawMessage| {
            m.offset >= sink.known_version(&app_id(&self.pipeline, name, m.partition)).unwrap_or(0)
        };
        let input = EpochInput::new(&self.topic, &msgs, chrono::Utc::now());
        let to_rejected = |m: &RawMessage| owed(&self.rejected, &rname, m);
        let mut decoded = self.decoder.decode(&input, |m| owed(&self.bronze, &bname, m), to_rejected);
        let decoder = &mut self.decoder;
        let silver_batch = self.changes.process(
            &input,
            |m| owed(&self.silver, &sname, m),
            to_rejected,
            |lat, lon| decoder.district(lat, lon),
            &mut decoded.rejected,
        );
        let gold_batch = self.hourly.process(&input, |m| owed(&self.gold, &gname, m), to_rejected, &mut decoded.rejected);
        let txns = |sink: &DeltaSink, name: &str| -> BTreeMap<String, i64> {
            ends.iter()
                .map(|(p, end)| (app_id(&self.pipeline, name, *p), *end))
                .filter(|(id, end)| sink.known_version(id).is_none_or(|v| *end > v))
                .collect()
        };
        let (bt, st, gt, rt) =
            (txns(&self.bronze, &bname), txns(&self.silver, &sname), txns(&self.gold, &gname), txns(&self.rejected, &rname));
        let (bronze_rows, silver_rows, gold_rows, rejected_rows) = (
            decoded.bronze.num_rows() as u64,
            silver_batch.num_rows() as u64,
            gold_batch.num_rows() as u64,
            decoded.rejected.len() as u64,
        );
        // The state after this epoch, under the version each stateful table's commit will carry.
        let stateful: [(&str, &BTreeMap<String, i64>, &dyn KeyedState); 2] = [(&sname, &st, &self.changes), (&gname, &gt, &self.hourly)];
        for (table, txns, op) in stateful {
            for (p, end) in &ends {
                if txns.contains_key(&app_id(&self.pipeline, table, *p)) {
                    self.state.save(table, *p, *end, &op.snapshot(*p))?;
                }
            }
        }
        let rejected_batch = decoded.rejected.finish();
        let tables = [(decoded.bronze, bt), (silver_batch, st), (gold_batch, gt)];
        if let Err(e) = self.commit_sinks(tables, rejected_batch, &rt).await {
            return match e {
                Error::Lake(rtlake_lake::Error::ConflictingOffsets { .. }) => {
                    tracing::warn!(error = %e, "another worker wrote these partitions; dropping the epoch and resuming from the lake");
                    self.reseek().await
                }
                other => Err(other),
            };
        }
        self.report.epochs += 1;
        self.report.messages += msgs.len() as u64;
        self.report.bronze_rows += bronze_rows;
        self.report.rejected_rows += rejected_rows;
        self.report.silver_rows += silver_rows;
        self.report.gold_rows += gold_rows;
        {
            let mut c = self.consumer.context().committed.lock().unwrap_or_else(|p| p.into_inner());
            c.extend(ends.iter().map(|(p, e)| (*p, *e)));
        }
        let mut tpl = TopicPartitionList::new();
        for (p, end) in &ends {
            let _ = tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*end));
        }
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(error = %e, "async group offset commit failed (lag display only)");
        }
        tracing::debug!(messages = msgs.len(), bronze_rows, rejected_rows, "epoch committed");
        Ok(())
    }

    /// Commits `_rejected` first, then bronze and silver (see the module docs for why).
    async fn commit_sinks(
        &mut self,
        tables: [(arrow::array::RecordBatch, BTreeMap<String, i64>); 3],
        rejected: arrow::array::RecordBatch,
        rt: &BTreeMap<String, i64>,
    ) -> Result<()> {
        if !rt.is_empty() {
            self.rejected.commit(vec![rejected], rt).await?;
            crate::failpoint(&format!("after-commit:{}", self.rejected.name()));
        }
        let [(bronze, bt), (silver, st), (gold, gt)] = tables;
        for (sink, batch, txns) in [(&mut self.bronze, bronze, bt), (&mut self.silver, silver, st), (&mut self.gold, gold, gt)] {
            if !txns.is_empty() {
                sink.commit(vec![batch], &txns).await?;
                crate::failpoint(&format!("after-commit:{}", sink.name()));
            }
        }
        Ok(())
    }

    /// After a conflict: learn the lake's versions again and seek every partition there.
    async fn reseek(&mut self) -> Result<()> {
        let parts: Vec<i32> = self.assigned.iter().copied().collect();
        self.refresh_sinks(&parts).await?;
        for p in parts {
            let at = self.resume_offset(p);
            self.next.insert(p, at.unwrap_or(0));
            let offset = at.map_or(Offset::Beginning, Offset::Offset);
            if let Err(e) = self.consumer.seek(&self.topic, p, offset, Duration::from_secs(10)) {
                tracing::warn!(partition = p, error = %e, "seek failed");
            }
        }
        Ok(())
    }

    async fn close(self) {
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
