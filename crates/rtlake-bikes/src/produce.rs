//! `rtlake produce bikes`: publishes station status to Kafka from the replay, the live API or a
//! JSON Lines file, keyed by station id, and accounts for every delivery.

use crate::api::{ApiKey, BikeListClient};
use crate::config::ProduceConfig as Config;
use crate::config::Speed;
use crate::formats::Values;
use crate::model::StationEvent;
use crate::replay::{RecordedData, Replay};
use crate::{Error, Result};
use rtlake_kafka::rdkafka::error::KafkaError;
use rtlake_kafka::rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer,
};
use rtlake_kafka::rdkafka::types::RDKafkaErrorCode;
use rtlake_kafka::rdkafka::{ClientContext, Message};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Where events come from.
#[derive(Clone, Debug)]
pub enum Source {
    /// The replay simulator over recorded data.
    Replay,
    /// The live bikeList API.
    SeoulApi,
    /// A JSON Lines file, published line by line as is.
    File(PathBuf),
}

/// What a run of the producer did.
#[derive(Clone, Debug, Default)]
pub struct ProduceReport {
    /// Messages handed to the producer.
    pub sent: u64,
    /// Messages the cluster acknowledged.
    pub delivered: u64,
    /// Messages that failed for good.
    pub failed: u64,
    /// Polls published (replay, API).
    pub polls: u64,
    /// Wall-clock time.
    pub elapsed: Duration,
}

/// Counts deliveries and tracks, per poll, how many messages are still in flight.
#[derive(Default)]
struct Deliveries {
    delivered: AtomicU64,
    failed: AtomicU64,
    pending: Mutex<BTreeMap<usize, u64>>,
    /// One more than the last poll all of whose messages were delivered (0: none yet).
    complete_through: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, poll: usize) {
        let metrics = &rtlake_core::metrics::global().produce;
        match result {
            Ok(m) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                metrics.events.with_label_values(&[m.topic()]).inc();
                metrics
                    .bytes
                    .with_label_values(&[m.topic()])
                    .inc_by(m.payload_len() as u64);
                if let Some(ts) = m.timestamp().to_millis() {
                    let secs = (chrono::Utc::now().timestamp_millis() - ts).max(0) as f64 / 1000.0;
                    metrics
                        .delivery_latency
                        .with_label_values(&[m.topic()])
                        .observe(secs);
                }
            }
            Err((e, m)) => {
                metrics.errors.with_label_values(&[m.topic()]).inc();
                let n = self.failed.fetch_add(1, Ordering::Relaxed);
                if n < 10 {
                    let key = m.key().map(String::from_utf8_lossy).unwrap_or_default();
                    tracing::error!(error = %e, key = %key, partition = m.partition(), "delivery failed");
                }
            }
        }
        // Polls are closed in order: a poll counts as complete only when every earlier one is.
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(left) = pending.get_mut(&poll) {
            *left -= 1;
        }
        while let Some((&p, &left)) = pending.first_key_value() {
            if left > 0 {
                break;
            }
            pending.remove(&p);
            self.complete_through.store(p as u64 + 1, Ordering::Release);
        }
    }
}

/// The replay's saved position, so that a restart continues the simulated clock.
#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
struct ReplayState {
    start: String,
    interval_ms: u64,
    scale: u32,
    next_poll: u64,
}

struct Publisher {
    producer: ThreadedProducer<Deliveries>,
    topic: String,
    sent: u64,
    last_report: Instant,
    sent_at_report: u64,
    started: Instant,
}

impl Publisher {
    fn new(cfg: &Config) -> Result<Self> {
        let producer: ThreadedProducer<Deliveries> =
            rtlake_kafka::client::producer(&cfg.kafka, &cfg.producer)
                .set("partitioner", "murmur2_random") // the Java client's partitioner: same key, same partition
                .create_with_context(Deliveries::default())
                .map_err(|e| {
                    Error::Kafka(rtlake_kafka::Error::Kafka {
                        context: "create producer".into(),
                        cause: e,
                    })
                })?;
        rtlake_kafka::client::connect_early(&producer, &cfg.kafka.topic);
        let now = Instant::now();
        let m = &rtlake_core::metrics::global().produce;
        for family in [&m.events, &m.bytes, &m.errors] {
            family.with_label_values(&[cfg.kafka.topic.as_str()]);
        }
        m.delivery_latency
            .with_label_values(&[cfg.kafka.topic.as_str()]);
        let source = match cfg.source.kind {
            crate::config::SourceKind::Replay => "replay",
            crate::config::SourceKind::SeoulApi => "seoul-api",
            crate::config::SourceKind::File => "file",
        };
        m.polls.with_label_values(&[source]);
        m.poll_errors.with_label_values(&[source]);
        Ok(Self {
            producer,
            topic: cfg.kafka.topic.clone(),
            sent: 0,
            last_report: now,
            sent_at_report: 0,
            started: now,
        })
    }

    async fn send(&mut self, key: Option<&str>, value: &[u8], poll: usize) -> Result<()> {
        self.producer
            .context()
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(poll)
            .and_modify(|n| *n += 1)
            .or_insert(1);
        let mut record: BaseRecord<'_, str, [u8], usize> =
            BaseRecord::with_opaque_to(&self.topic, poll).payload(value);
        record.key = key;
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => {
                    return Err(Error::Kafka(rtlake_kafka::Error::Kafka {
                        context: "enqueue message".into(),
                        cause: e,
                    }));
                }
            }
        }
        self.sent += 1;
        self.progress(false);
        Ok(())
    }

    fn progress(&mut self, force: bool) {
        let since = self.last_report.elapsed();
        if force || since >= Duration::from_secs(5) {
            let d = self.producer.context();
            let rate = (self.sent - self.sent_at_report) as f64 / since.as_secs_f64().max(1e-9);
            tracing::info!(
                sent = self.sent,
                delivered = d.delivered.load(Ordering::Relaxed),
                failed = d.failed.load(Ordering::Relaxed),
                events_per_sec = rate.round() as u64,
                "producing"
            );
            self.last_report = Instant::now();
            self.sent_at_report = self.sent;
        }
    }

    async fn finish(self, polls: u64) -> Result<ProduceReport> {
        let producer = self.producer;
        let flushed = tokio::task::spawn_blocking(move || {
            let r = producer.flush(Duration::from_secs(120));
            (producer, r)
        })
        .await
        .map_err(|e| Error::State(format!("flush task: {e}")))?;
        let (producer, flush) = flushed;
        let d = producer.context();
        let report = ProduceReport {
            sent: self.sent,
            delivered: d.delivered.load(Ordering::Relaxed),
            failed: d.failed.load(Ordering::Relaxed),
            polls,
            elapsed: self.started.elapsed(),
        };
        let secs = report.elapsed.as_secs_f64().max(1e-9);
        tracing::info!(
            sent = report.sent,
            delivered = report.delivered,
            failed = report.failed,
            polls,
            seconds = format!("{secs:.1}"),
            events_per_sec = (report.delivered as f64 / secs).round() as u64,
            "producer finished"
        );
        if let Err(e) = flush {
            return Err(Error::Delivery(format!(
                "{} of {} messages unconfirmed after flush: {e}",
                report.sent - report.delivered - report.failed,
                report.sent
            )));
        }
        if report.failed > 0 {
            return Err(Error::Delivery(format!(
                "{} of {} messages failed delivery (see the errors above)",
                report.failed, report.sent
            )));
        }
        Ok(report)
    }
}

/// Runs the producer until the source ends (a replay's `minutes`, the end of a file) or
/// `shutdown` fires; then flushes and reports. Fails if any message failed delivery.
pub async fn produce(
    cfg: &Config,
    source: Source,
    shutdown: CancellationToken,
) -> Result<ProduceReport> {
    rtlake_kafka::Cluster::connect(&cfg.kafka)
        .map_err(Error::Kafka)?
        .ensure_topic(&cfg.kafka.topic)
        .await
        .map_err(Error::Kafka)?;
    match source {
        Source::Replay => replay(cfg, shutdown).await,
        Source::SeoulApi => live(cfg, shutdown).await,
        Source::File(path) => file(cfg, &path, shutdown).await,
    }
}

async fn replay(cfg: &Config, shutdown: CancellationToken) -> Result<ProduceReport> {
    let s = &cfg.source;
    let data = match &s.data_dir {
        Some(dir) => RecordedData::from_dir(dir)?,
        None => RecordedData::builtin()?,
    };
    let start =
        rtlake_core::time::parse_rfc3339(&s.start).map_err(|e| Error::State(e.to_string()))?;
    let mut sim = Replay::new(data, start, s.interval.get(), s.scale);
    let mut state = ReplayState {
        start: s.start.clone(),
        interval_ms: s.interval.get().as_millis() as u64,
        scale: s.scale,
        next_poll: 0,
    };
    if let Some(path) = &s.state_file
        && let Ok(text) = std::fs::read_to_string(path)
    {
        let saved: ReplayState = serde_json::from_str(&text)
            .map_err(|e| Error::State(format!("{}: {e}", path.display())))?;
        if (saved.start.as_str(), saved.interval_ms, saved.scale)
            != (state.start.as_str(), state.interval_ms, state.scale)
        {
            return Err(Error::State(format!(
                "{} was written by a replay with other settings (start {}, interval {} ms, scale {}); delete it to start over",
                path.display(),
                saved.start,
                saved.interval_ms,
                saved.scale
            )));
        }
        tracing::info!(next_poll = saved.next_poll, polled_at = %sim.poll_time(saved.next_poll), "resuming replay");
        sim.skip_to(saved.next_poll);
        state.next_poll = saved.next_poll;
    }
    let total = s.minutes.map(|m| m * 60 * 1000 / state.interval_ms.max(1));
    let values = Values::open(s.format, s.schema_registry.as_deref(), &cfg.kafka.topic).await?;
    let mut publisher = Publisher::new(cfg)?;
    let first = sim.position();
    let t0 = tokio::time::Instant::now();
    let mut polls = 0;
    loop {
        let index = sim.position();
        if total.is_some_and(|t| index >= t) || shutdown.is_cancelled() {
            break;
        }
        if let Speed::Factor(f) = s.speed {
            let due = t0 + s.interval.get().mul_f64((index - first) as f64 / f);
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        let poll = sim.next_poll();
        for (e, v) in poll.events.iter().zip(values.encode(&poll.events)?) {
            publisher
                .send(Some(&e.station_id), &v, index as usize)
                .await?;
        }
        polls += 1;
        rtlake_core::metrics::global()
            .produce
            .polls
            .with_label_values(&["replay"])
            .inc();
        save_state(
            s.state_file.as_ref(),
            &mut state,
            publisher
                .producer
                .context()
                .complete_through
                .load(Ordering::Acquire),
        )?;
    }
    let report = publisher.finish(polls).await;
    // After a clean flush every sent poll is delivered: record the position for the next run.
    if report.is_ok() {
        save_state(s.state_file.as_ref(), &mut state, sim.position())?;
    }
    report
}

fn save_state(path: Option<&PathBuf>, state: &mut ReplayState, next_poll: u64) -> Result<()> {
    let Some(path) = path else { return Ok(()) };
    if next_poll <= state.next_poll {
        return Ok(());
    }
    state.next_poll = next_poll;
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_string_pretty(state).map_err(|e| Error::State(e.to_string()))?;
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| Error::State(format!("{}: {e}", path.display())))
}

async fn live(cfg: &Config, shutdown: CancellationToken) -> Result<ProduceReport> {
    let key = ApiKey::load(cfg.source.api_key_file.as_deref())?;
    let client = BikeListClient::new(&cfg.source, key)?;
    let values = Values::open(
        cfg.source.format,
        cfg.source.schema_registry.as_deref(),
        &cfg.kafka.topic,
    )
    .await?;
    let mut publisher = Publisher::new(cfg)?;
    let mut tick = tokio::time::interval(cfg.source.interval.get());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut polls = 0u64;
    let mut failed_polls = 0u64;
    let mut last_polled: Option<chrono::DateTime<chrono::FixedOffset>> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => break,
        }
        // A poll's time is its second; two polls never share one (a late tick of a 1 s
        // interval would start the next poll within the same second): wait for the next.
        let second = |now: chrono::DateTime<chrono::FixedOffset>| {
            chrono::DurationRound::duration_trunc(now, chrono::Duration::seconds(1)).unwrap_or(now)
        };
        let mut now = second(chrono::Utc::now().with_timezone(&crate::seoul::kst()));
        if last_polled.is_some_and(|last| now <= last) {
            let wait = (last_polled.expect("checked") + chrono::Duration::seconds(1)
                - chrono::Utc::now().with_timezone(&crate::seoul::kst()))
            .to_std()
            .unwrap_or_default();
            tokio::time::sleep(wait).await;
            now = second(chrono::Utc::now().with_timezone(&crate::seoul::kst()));
        }
        last_polled = Some(now);
        let polled_at = rtlake_core::time::isoformat(&now);
        let rows = tokio::select! {
            r = client.fetch_all() => r,
            _ = shutdown.cancelled() => break,
        };
        match rows {
            Ok(rows) => {
                let n = rows.len();
                let events: Vec<StationEvent> = rows
                    .into_iter()
                    .map(|row| StationEvent::new(row, polled_at.clone()))
                    .collect();
                for (e, v) in events.iter().zip(values.encode(&events)?) {
                    publisher
                        .send(Some(&e.station_id), &v, polls as usize)
                        .await?;
                }
                tracing::info!(stations = n, %polled_at, "polled bikeList");
                polls += 1;
                rtlake_core::metrics::global()
                    .produce
                    .polls
                    .with_label_values(&["seoul-api"])
                    .inc();
            }
            Err(e) if e.is_retryable() => {
                failed_polls += 1;
                rtlake_core::metrics::global()
                    .produce
                    .poll_errors
                    .with_label_values(&["seoul-api"])
                    .inc();
                tracing::error!(error = %e, failed_polls, "poll failed after retries; trying again next interval");
            }
            Err(e) => return Err(e.into()),
        }
    }
    publisher.finish(polls).await
}

async fn file(
    cfg: &Config,
    path: &std::path::Path,
    shutdown: CancellationToken,
) -> Result<ProduceReport> {
    use tokio::io::AsyncBufReadExt;
    #[derive(serde::Deserialize)]
    struct Key<'a> {
        #[serde(rename = "stationId", borrow)]
        station_id: Option<std::borrow::Cow<'a, str>>,
    }
    let f = tokio::fs::File::open(path)
        .await
        .map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
    let mut lines = tokio::io::BufReader::with_capacity(1 << 20, f).lines();
    let mut publisher = Publisher::new(cfg)?;
    let mut n = 0usize;
    while let Some(line) = lines
        .next_line()
        .await
        .map_err(|e| Error::Data(format!("{}: {e}", path.display())))?
    {
        if shutdown.is_cancelled() {
            break;
        }
        if line.is_empty() {
            continue;
        }
        // A line that is not JSON is still published, keyless: the processor rejects it visibly.
        let key = serde_json::from_str::<Key<'_>>(&line)
            .ok()
            .and_then(|k| k.station_id.map(|s| s.into_owned()));
        publisher.send(key.as_deref(), line.as_bytes(), 0).await?;
        n += 1;
    }
    tracing::info!(lines = n, file = %path.display(), "file published");
    publisher.finish(0).await
}
