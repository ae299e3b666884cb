//! The live view: every station's newest snapshot, straight from the station status topic, and
//! the stream of changes the dashboard listens to (server-sent events).
//!
//! A consumer outside any group reads each partition from a little before its end (enough for
//! one whole poll), so the map is complete at once, then follows new messages. Updates are sent
//! in bursts every 100 ms: one event with every station that changed since the last burst, and
//! the Kafka timestamp of the oldest of them (so a page can measure its own latency).

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use rtlake_bikes::districts::DistrictCache;
use rtlake_bikes::model::StationStatus;
use rtlake_core::Config;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// How many messages before each partition's end the view starts from.
const TAIL: i64 = 3_000;

/// A station as the dashboard shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Station {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// District (English name).
    pub district: Option<String>,
    /// Racks.
    pub racks: i32,
    /// Bikes parked.
    pub bikes: i32,
    /// Poll time, ms since the Unix epoch.
    pub polled_at: i64,
}

/// The live state shared by the handlers.
pub struct Live {
    stations: Mutex<HashMap<String, Station>>,
    /// Bursts of changed stations, as the JSON the page receives.
    pub updates: broadcast::Sender<Arc<String>>,
    /// Pages following the stream now (at most `serve.live-max-clients`).
    clients: std::sync::atomic::AtomicUsize,
}

/// A page's place among the live stream's clients; given back when dropped.
pub struct ClientSlot(Arc<Live>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0
            .clients
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        rtlake_core::metrics::global().serve.live_clients.dec();
    }
}

impl Live {
    /// An empty view.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            stations: Mutex::default(),
            updates: broadcast::channel(256).0,
            clients: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// The most stations the view holds: past it the one polled longest ago is dropped (ids
    /// that come and go would otherwise grow it forever; Seoul has about 2,700).
    pub const MAX_STATIONS: usize = 100_000;

    /// A place for one more page on the live stream, unless `max` pages follow it already.
    pub fn join(self: &Arc<Self>, max: usize) -> Option<ClientSlot> {
        use std::sync::atomic::Ordering;
        let taken = self
            .clients
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            });
        taken.ok().map(|_| {
            rtlake_core::metrics::global().serve.live_clients.inc();
            ClientSlot(self.clone())
        })
    }

    /// Every station, by id.
    pub fn snapshot(&self) -> Vec<Station> {
        let mut v: Vec<Station> = self
            .stations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    fn apply(&self, s: Station) -> bool {
        let mut map = self.stations.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(&s.id) {
            Some(old) if old.polled_at > s.polled_at => false,
            Some(old) if old.polled_at == s.polled_at && old.bikes == s.bikes => false,
            _ => {
                if map.len() >= Self::MAX_STATIONS
                    && !map.contains_key(&s.id)
                    && let Some(oldest) = map
                        .values()
                        .min_by_key(|o| o.polled_at)
                        .map(|o| o.id.clone())
                {
                    map.remove(&oldest);
                }
                map.insert(s.id.clone(), s);
                true
            }
        }
    }
}

/// Follows the station status topic until `shutdown`; retries while the topic or broker is
/// missing.
pub async fn follow(cfg: Config, live: Arc<Live>, shutdown: CancellationToken) {
    // The topic may not exist for minutes (a server started before any producer): warn on the
    // first failure and then once a minute, not every 2 s.
    let mut failures = 0u32;
    loop {
        match follow_once(&cfg, &live, &shutdown).await {
            Ok(()) => return,
            Err(e) => {
                if failures % 30 == 0 {
                    tracing::warn!(error = %e, topic = %cfg.kafka.topic, failures = failures + 1, "live view: cannot follow the topic yet; retrying every 2 s");
                } else {
                    tracing::debug!(error = %e, topic = %cfg.kafka.topic, "live view: cannot follow the topic yet");
                }
                failures = failures.saturating_add(1);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        }
    }
}

async fn follow_once(
    cfg: &Config,
    live: &Arc<Live>,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let topic = &cfg.kafka.topic;
    let parts = rtlake_kafka::admin::high_watermarks(&cfg.kafka, topic)
        .await
        .map_err(|e| e.to_string())?;
    let consumer: StreamConsumer = rtlake_kafka::client::base(&cfg.kafka)
        .set("group.id", "rtlake-serve-live")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "50")
        .create()
        .map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    for (p, lo, hi) in &parts {
        tpl.add_partition_offset(topic, *p, Offset::Offset((*hi - TAIL).max(*lo)))
            .map_err(|e| e.to_string())?;
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    tracing::info!(%topic, partitions = parts.len(), "live view following");
    let mut places = DistrictCache::default();
    let mut pending: BTreeMap<String, (Station, Option<i64>)> = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let latency = rtlake_core::metrics::global()
        .serve
        .live_latency
        .with_label_values(&[topic.as_str()]);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {
                if pending.is_empty() {
                    continue;
                }
                let burst: Vec<Station> = pending.values().map(|(s, _)| s.clone()).collect();
                let now = chrono::Utc::now().timestamp_millis();
                let oldest = pending.values().filter_map(|(_, ts)| *ts).min();
                for (_, ts) in pending.values() {
                    if let Some(ts) = ts {
                        latency.observe((now - ts).max(0) as f64 / 1000.0);
                    }
                }
                pending.clear();
                if let Ok(text) = serde_json::to_string(&serde_json::json!({ "stations": burst, "sent_at": now, "oldest_kafka_ts": oldest })) {
                    let _ = live.updates.send(Arc::new(text));
                }
            }
            m = consumer.recv() => {
                let m = m.map_err(|e| e.to_string())?;
                let Some(Ok(s)) = m.payload().map(StationStatus::decode) else { continue };
                let station = Station {
                    id: s.station_id.clone(),
                    name: s.station_name.clone(),
                    lat: s.lat,
                    lon: s.lon,
                    district: places.district(s.lat, s.lon).map(|d| d.to_string()),
                    racks: s.rack_total,
                    bikes: s.bikes_parked,
                    polled_at: s.polled_at.timestamp_millis(),
                };
                if live.apply(station.clone()) {
                    pending.insert(station.id.clone(), (station, m.timestamp().to_millis()));
                }
            }
        }
    }
}
