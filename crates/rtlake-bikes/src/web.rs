//! The bike dashboard, mounted by `rtlake serve`: the map page and its script, the districts'
//! outlines, every station's newest snapshot (`/api/stations`), and the live view that follows
//! the station status topic into the server's live stream (`/api/live`, event `stations`).
//!
//! A consumer outside any group reads each partition from a little before its end (enough for
//! one whole poll), so the map is complete at once, then follows new messages. Updates are sent
//! in bursts every 100 ms: one event with every station that changed since the last burst, and
//! the Kafka timestamp of the oldest of them (so a page can measure its own latency).

use crate::districts::DistrictCache;
use crate::model::StationStatus;
use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType::{Float64, Int32, Int64, Utf8};
use arrow::datatypes::{Float64Type, Int32Type, Int64Type};
use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use rtlake_kafka::Cluster;
use rtlake_web::AppState;
use rtlake_web::live::Live;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How many messages before each partition's end the view starts from.
const TAIL: i64 = 3_000;

/// The live stream's event name for a burst of stations.
pub const EVENT: &str = "stations";

const INDEX: &str = include_str!("../assets/index.html");
const DASHBOARD_JS: &str = include_str!("../assets/dashboard.js");
const MAP_CSS: &str = include_str!("../assets/map.css");

/// The bike dashboard as `rtlake serve` mounts it: its routes, their OpenAPI entries, and the
/// view `gold.district_5min_total`.
pub fn domain() -> rtlake_web::Domain {
    rtlake_web::Domain {
        routes: dashboard,
        openapi: openapi_paths,
        views: crate::tables::VIEWS,
    }
}

/// The dashboard's routes; starts the live view, which stops at `shutdown`.
pub fn dashboard(state: &AppState, shutdown: CancellationToken) -> Router<AppState> {
    let stations = Arc::new(Stations::default());
    tokio::spawn(seed(state.clone(), stations.clone()));
    tokio::spawn(follow(
        state.cluster.clone(),
        stations.clone(),
        state.live.clone(),
        shutdown,
    ));
    Router::new()
        .route("/", get(|| rtlake_web::page(INDEX)))
        .route(
            "/assets/dashboard.js",
            get(|| rtlake_web::asset("text/javascript", DASHBOARD_JS)),
        )
        .route(
            "/assets/map.css",
            get(|| rtlake_web::asset("text/css", MAP_CSS)),
        )
        .route("/api/districts", get(districts))
        .route(
            "/api/stations",
            get(move || {
                let stations = stations.clone();
                async move { axum::Json(stations.summary()) }
            }),
        )
}

/// The dashboard's endpoints, for the server's OpenAPI document.
pub fn openapi_paths() -> serde_json::Value {
    json!({
        "/api/stations": { "get": { "summary": "Every station's newest snapshot and the bikes total", "responses": { "200": { "description": "Stations", "content": { "application/json": {} } } } } },
        "/api/districts": { "get": { "summary": "Seoul's 25 districts as GeoJSON", "responses": { "200": { "description": "GeoJSON", "content": { "application/geo+json": {} } } } } },
        "/api/live": { "get": { "summary": "Server-sent events: `stations` bursts of changed stations every 100 ms; `resync` when a slow client missed some", "responses": { "200": { "description": "An event stream", "content": { "text/event-stream": {} } } } } }
    })
}

async fn districts() -> Response {
    (
        [(header::CONTENT_TYPE, "application/geo+json")],
        crate::districts::BUILTIN_GEOJSON,
    )
        .into_response()
}

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

/// Every station's newest snapshot.
#[derive(Default)]
pub struct Stations(Mutex<HashMap<String, Station>>);

impl Stations {
    /// The most stations the view holds: past it the one polled longest ago is dropped (ids
    /// that come and go would otherwise grow it forever; Seoul has about 2,700).
    pub const MAX: usize = 100_000;

    /// Every station, by id.
    pub fn snapshot(&self) -> Vec<Station> {
        let mut v: Vec<Station> = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// What `/api/stations` answers: the stations, the bikes parked in all, the newest poll.
    pub fn summary(&self) -> serde_json::Value {
        let stations = self.snapshot();
        let bikes: i64 = stations.iter().map(|x| i64::from(x.bikes)).sum();
        let newest = stations.iter().map(|x| x.polled_at).max();
        json!({ "stations": stations, "bikes_total": bikes, "newest_polled_at": newest })
    }

    /// Takes a snapshot unless the view has a newer one; whether it changed the view.
    pub fn apply(&self, s: Station) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(&s.id) {
            Some(old) if old.polled_at > s.polled_at => false,
            Some(old) if old.polled_at == s.polled_at && old.bikes == s.bikes => false,
            _ => {
                if map.len() >= Self::MAX
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

/// Every station's current status as the lake holds it (`silver.station_latest`, upserted by
/// the bike pipeline): the map starts complete even where the topic's tail misses a station
/// (one polled rarely, or a topic whose retention passed). Snapshots the view already has a
/// newer one of are ignored; a lake without the table seeds nothing.
async fn seed(state: AppState, stations: Arc<Stations>) {
    const LATEST: &str = "SELECT station_id, station_name, lat, lon, district, rack_total, \
         bikes_parked, CAST(CAST(polled_at AS BIGINT) / 1000 AS BIGINT) AS polled_ms \
         FROM silver.station_latest";
    let batches = match state.session().await {
        Ok(sql) => match sql.query(LATEST).await {
            Ok((_, b)) => b,
            Err(e) => {
                tracing::debug!(error = %e, "live view: no silver.station_latest to start from");
                return;
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "live view: cannot open the lake");
            return;
        }
    };
    let mut n = 0;
    for b in &batches {
        // Strings may come as views, the polled time as any integer: cast to what is read.
        let types = [Utf8, Utf8, Float64, Float64, Utf8, Int32, Int32, Int64];
        let Ok(cols) = types
            .iter()
            .enumerate()
            .map(|(i, t)| arrow::compute::cast(b.column(i), t))
            .collect::<Result<Vec<_>, _>>()
        else {
            tracing::warn!(schema = %b.schema(), "live view: silver.station_latest has other columns than expected");
            return;
        };
        let col = |i: usize| cols[i].as_ref();
        let (
            Some(id),
            Some(name),
            Some(lat),
            Some(lon),
            Some(district),
            Some(racks),
            Some(bikes),
            Some(at),
        ) = (
            col(0).as_string_opt::<i32>(),
            col(1).as_string_opt::<i32>(),
            col(2).as_primitive_opt::<Float64Type>(),
            col(3).as_primitive_opt::<Float64Type>(),
            col(4).as_string_opt::<i32>(),
            col(5).as_primitive_opt::<Int32Type>(),
            col(6).as_primitive_opt::<Int32Type>(),
            col(7).as_primitive_opt::<Int64Type>(),
        )
        else {
            tracing::warn!(schema = %b.schema(), "live view: silver.station_latest has other columns than expected");
            return;
        };
        for r in 0..b.num_rows() {
            n += usize::from(stations.apply(Station {
                id: id.value(r).to_string(),
                name: name.value(r).to_string(),
                lat: lat.value(r),
                lon: lon.value(r),
                district: district.is_valid(r).then(|| district.value(r).to_string()),
                racks: racks.value(r),
                bikes: bikes.value(r),
                polled_at: at.value(r),
            }));
        }
    }
    tracing::info!(
        stations = n,
        "live view: started from silver.station_latest"
    );
}

/// Follows the station status topic until `shutdown`; retries while the topic or broker is
/// missing.
pub async fn follow(
    cluster: Cluster,
    stations: Arc<Stations>,
    live: Arc<Live>,
    shutdown: CancellationToken,
) {
    // The topic may not exist for minutes (a server started before any producer): warn on the
    // first failure and then once a minute, not every 2 s.
    let mut failures = 0u32;
    loop {
        match follow_once(&cluster, &stations, &live, &shutdown).await {
            Ok(()) => return,
            Err(e) => {
                if failures.is_multiple_of(30) {
                    tracing::warn!(error = %e, topic = %cluster.config().topic, failures = failures + 1, "live view: cannot follow the topic yet; retrying every 2 s");
                } else {
                    tracing::debug!(error = %e, topic = %cluster.config().topic, "live view: cannot follow the topic yet");
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
    cluster: &Cluster,
    stations: &Stations,
    live: &Live,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let kafka = cluster.config();
    let topic = &kafka.topic;
    let parts = cluster.watermarks(topic).await.map_err(|e| e.to_string())?;
    let consumer: StreamConsumer = rtlake_kafka::client::base(kafka)
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
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {
                if pending.is_empty() {
                    continue;
                }
                let burst: Vec<Station> = pending.values().map(|(s, _)| s.clone()).collect();
                let kafka_ts: Vec<i64> = pending.values().filter_map(|(_, ts)| *ts).collect();
                pending.clear();
                live.publish(topic, EVENT, &kafka_ts, |now, oldest| {
                    json!({ "stations": burst, "sent_at": now, "oldest_kafka_ts": oldest })
                });
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
                if stations.apply(station.clone()) {
                    pending.insert(station.id.clone(), (station, m.timestamp().to_millis()));
                }
            }
        }
    }
}
