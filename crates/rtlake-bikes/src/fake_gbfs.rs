//! A GBFS 2.3 system on a local port, for tests: `gbfs.json` (discovery), `system_information`,
//! `station_information` (`stations` stations) and `station_status`. Each status request is the
//! next poll: the system's clock moves a minute (from 2026-01-01T00:00:00Z), and each station's
//! bike count follows a fixed pattern, so a test can compute what any poll held
//! ([`FakeGbfs::bikes`]).

use axum::extract::State;
use axum::response::Json;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The system clock at the first poll, Unix seconds.
pub const START: i64 = 1_767_225_600;

/// A running fake system.
pub struct FakeGbfs {
    /// The discovery file's URL, to give `rtlake produce gbfs`.
    pub url: String,
    polls: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Sys {
    base: String,
    stations: u32,
    polls: Arc<AtomicU64>,
}

impl FakeGbfs {
    /// Starts one with `stations` stations on a free loopback port.
    pub async fn start(stations: u32) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let polls = Arc::new(AtomicU64::new(0));
        let sys = Sys {
            base: base.clone(),
            stations,
            polls: polls.clone(),
        };
        let app = axum::Router::new()
            .route("/gbfs.json", axum::routing::get(discovery))
            .route("/en/system_information.json", axum::routing::get(system))
            .route(
                "/en/station_information.json",
                axum::routing::get(information),
            )
            .route("/en/station_status.json", axum::routing::get(status))
            .with_state(sys);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            url: format!("{base}/gbfs.json"),
            polls,
            task,
        })
    }

    /// Status polls served so far.
    pub fn polls(&self) -> u64 {
        self.polls.load(Ordering::SeqCst)
    }

    /// Bikes at station `i` in poll `poll` (0-based): a walk that stays in 0..=20.
    pub fn bikes(i: u32, poll: u64) -> i64 {
        let phase = (u64::from(i) * 7 + poll * (1 + u64::from(i % 3))) % 40;
        (if phase > 20 { 40 - phase } else { phase }) as i64
    }

    /// The system's clock at poll `poll`, Unix seconds.
    pub fn reported_at(poll: u64) -> i64 {
        START + poll as i64 * 60
    }
}

impl Drop for FakeGbfs {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn envelope(data: Value) -> Json<Value> {
    Json(json!({"last_updated": START, "ttl": 60, "version": "2.3", "data": data}))
}

async fn discovery(State(s): State<Sys>) -> Json<Value> {
    let feed = |n: &str| json!({"name": n, "url": format!("{}/en/{n}.json", s.base)});
    envelope(json!({"en": {"feeds": [
        feed("system_information"), feed("station_information"), feed("station_status")]}}))
}

async fn system() -> Json<Value> {
    envelope(
        json!({"system_id": "rtlake-test", "language": "en", "name": "rtlake test bikes",
        "timezone": "UTC"}),
    )
}

async fn information(State(s): State<Sys>) -> Json<Value> {
    let stations: Vec<Value> = (0..s.stations)
        .map(|i| {
            json!({"station_id": format!("s{i}"), "name": format!("Station {i}"),
                "lat": 45.5 + f64::from(i) / 1000.0, "lon": -73.6, "capacity": 20})
        })
        .collect();
    envelope(json!({ "stations": stations }))
}

async fn status(State(s): State<Sys>) -> Json<Value> {
    let poll = s.polls.fetch_add(1, Ordering::SeqCst);
    let stations: Vec<Value> = (0..s.stations)
        .map(|i| {
            let bikes = FakeGbfs::bikes(i, poll);
            json!({"station_id": format!("s{i}"), "num_bikes_available": bikes,
                "num_docks_available": 20 - bikes, "is_installed": true, "is_renting": true,
                "is_returning": true, "last_reported": FakeGbfs::reported_at(poll)})
        })
        .collect();
    envelope(json!({ "stations": stations }))
}
