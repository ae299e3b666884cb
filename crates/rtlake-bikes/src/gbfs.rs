//! GBFS, the General Bikeshare Feed Specification most of the world's bike-share systems
//! publish: a discovery file (`gbfs.json`) names the feeds; `station_information` holds each
//! station's name, place and capacity, `station_status` its bikes and docks now. This module
//! polls a system's feeds and publishes one event per station per poll to Kafka, keyed by
//! station id, for the pipeline `pipelines/gbfs.toml`.
//!
//! Versions 1.x/2.x (`data.<language>.feeds`, times as Unix seconds) and 3.x (`data.feeds`,
//! times as RFC 3339) are read alike. An event:
//!
//! ```json
//! {"station_id":"42","name":"Main St","lat":45.5,"lon":-73.6,"capacity":20,
//!  "num_bikes_available":7,"num_docks_available":13,"is_renting":true,"is_returning":true,
//!  "last_reported":"2026-12-03T10:00:00+00:00","polled_at":"2026-12-03T10:00:04+00:00"}
//! ```

use crate::config::ProduceConfig as Config;
use crate::{Error, Result};
use chrono::{DateTime, Utc};
use rtlake_kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn err(url: &str, what: impl std::fmt::Display) -> Error {
    Error::Feed(format!("{url}: {what}"))
}

fn kafka(context: &str) -> impl Fn(rtlake_kafka::rdkafka::error::KafkaError) -> Error + '_ {
    move |cause| {
        Error::Kafka(rtlake_kafka::Error::Kafka {
            context: context.into(),
            cause,
        })
    }
}

async fn get(http: &reqwest::Client, url: &str) -> Result<Value> {
    let resp = http.get(url).send().await.map_err(|e| err(url, e))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(err(url, format!("HTTP {status}")));
    }
    resp.json::<Value>()
        .await
        .map_err(|e| err(url, format!("not JSON: {e}")))
}

/// The feeds a discovery file names: feed name → URL (the first language's, or English's).
pub fn feeds(discovery: &Value) -> std::result::Result<HashMap<String, String>, String> {
    let data = discovery
        .get("data")
        .ok_or("no `data` object: not a gbfs.json discovery file")?;
    let list = match data.get("feeds") {
        Some(f) => f,
        None => {
            let langs = data.as_object().ok_or("`data` is not an object")?;
            let lang = langs
                .get("en")
                .or_else(|| langs.values().next())
                .ok_or("`data` names no language")?;
            lang.get("feeds").ok_or("no `feeds` list")?
        }
    };
    let list = list.as_array().ok_or("`feeds` is not a list")?;
    Ok(list
        .iter()
        .filter_map(|f| {
            Some((
                f.get("name")?.as_str()?.into(),
                f.get("url")?.as_str()?.into(),
            ))
        })
        .collect())
}

/// A GBFS time (Unix seconds, or RFC 3339 in 3.x) as RFC 3339.
fn time(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Number(n) => DateTime::from_timestamp(n.as_i64()?, 0).map(|t| t.to_rfc3339()),
        Value::String(s) => DateTime::parse_from_rfc3339(s).ok().map(|t| t.to_rfc3339()),
        _ => None,
    }
}

/// The stations of a feed's `data.stations`.
fn stations<'a>(feed: &'a Value, url: &str) -> Result<&'a Vec<Value>> {
    feed.pointer("/data/stations")
        .and_then(Value::as_array)
        .ok_or_else(|| err(url, "no data.stations list"))
}

/// One event per station of `status`, with its information from `info`.
pub fn events(
    info: &Value,
    status: &Value,
    polled_at: DateTime<Utc>,
) -> Result<Vec<(String, Value)>> {
    let mut places: HashMap<&str, &Value> = HashMap::new();
    for s in stations(info, "station_information")? {
        if let Some(id) = s.get("station_id").and_then(Value::as_str) {
            places.insert(id, s);
        }
    }
    let mut out = Vec::new();
    for s in stations(status, "station_status")? {
        let Some(id) = s.get("station_id").and_then(Value::as_str) else {
            continue;
        };
        let mut e = Map::new();
        e.insert("station_id".into(), json!(id));
        if let Some(p) = places.get(id) {
            for k in ["name", "lat", "lon", "capacity"] {
                if let Some(v) = p.get(k) {
                    // 3.x names are a list of {text, language}: take the first text.
                    let v = match v {
                        Value::Array(a) => a
                            .first()
                            .and_then(|x| x.get("text"))
                            .cloned()
                            .unwrap_or(Value::Null),
                        v => v.clone(),
                    };
                    e.insert(k.into(), v);
                }
            }
        }
        for k in [
            "num_bikes_available",
            "num_docks_available",
            "is_renting",
            "is_returning",
        ] {
            if let Some(v) = s.get(k) {
                e.insert(k.into(), v.clone());
            }
        }
        e.insert("last_reported".into(), json!(time(s.get("last_reported"))));
        e.insert("polled_at".into(), json!(polled_at.to_rfc3339()));
        out.push((id.to_string(), Value::Object(e)));
    }
    Ok(out)
}

/// What a GBFS producer did.
#[derive(Debug, Default)]
pub struct GbfsReport {
    /// Polls published.
    pub polls: u64,
    /// Events published.
    pub events: u64,
}

/// Polls the system whose discovery file is at `url` every `interval` (default: the feed's
/// `ttl`, at least 1 s), `polls` times or until `shutdown`, publishing to `kafka.topic`.
pub async fn produce(
    cfg: &Config,
    url: &str,
    interval: Option<Duration>,
    polls: Option<u64>,
    shutdown: CancellationToken,
) -> Result<GbfsReport> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| err(url, e))?;
    let discovery = get(&http, url).await?;
    let names = feeds(&discovery).map_err(|e| err(url, e))?;
    let feed = |n: &str| {
        names
            .get(n)
            .cloned()
            .ok_or_else(|| err(url, format!("the discovery file names no {n} feed")))
    };
    let (info_url, status_url) = (feed("station_information")?, feed("station_status")?);
    let ttl = discovery.get("ttl").and_then(Value::as_u64).unwrap_or(60);
    let every = interval.unwrap_or(Duration::from_secs(ttl.max(1)));
    rtlake_kafka::Cluster::connect(&cfg.kafka)
        .map_err(Error::Kafka)?
        .ensure_topic(&cfg.kafka.topic)
        .await
        .map_err(Error::Kafka)?;
    let producer: FutureProducer = rtlake_kafka::client::producer(&cfg.kafka, &cfg.producer)
        .set("partitioner", "murmur2_random")
        .create()
        .map_err(kafka("create producer"))?;
    rtlake_kafka::client::connect_early(&producer, &cfg.kafka.topic);
    tracing::info!(%url, topic = %cfg.kafka.topic, ?every, "polling a GBFS feed");
    let mut report = GbfsReport::default();
    loop {
        let polled_at = Utc::now();
        let (info, status) = tokio::try_join!(get(&http, &info_url), get(&http, &status_url))?;
        let evs = events(&info, &status, polled_at)?;
        let sends = evs.iter().map(|(id, e)| {
            let payload = e.to_string();
            let producer = &producer;
            let topic = cfg.kafka.topic.as_str();
            async move {
                producer
                    .send(
                        FutureRecord::to(topic).key(id.as_str()).payload(&payload),
                        Duration::from_secs(30),
                    )
                    .await
                    .map_err(|(e, _)| kafka("deliver a GBFS event")(e))
            }
        });
        futures::future::try_join_all(sends).await?;
        report.polls += 1;
        report.events += evs.len() as u64;
        tracing::info!(
            poll = report.polls,
            stations = evs.len(),
            "GBFS poll published"
        );
        if polls.is_some_and(|n| report.polls >= n) {
            break;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_files_of_both_versions_name_their_feeds() {
        let v2 = json!({"ttl": 60, "data": {"fr": {"feeds": []}, "en": {"feeds": [
            {"name": "station_status", "url": "http://x/s.json"}]}}});
        assert_eq!(feeds(&v2).unwrap()["station_status"], "http://x/s.json");
        let v3 =
            json!({"data": {"feeds": [{"name": "station_information", "url": "http://x/i.json"}]}});
        assert_eq!(
            feeds(&v3).unwrap()["station_information"],
            "http://x/i.json"
        );
        assert!(
            feeds(&json!({"nope": 1}))
                .unwrap_err()
                .contains("discovery")
        );
    }

    #[test]
    fn an_event_joins_status_with_information() {
        let info = json!({"data": {"stations": [
            {"station_id": "1", "name": [{"text": "Gare", "language": "fr"}], "lat": 45.5, "lon": -73.6, "capacity": 20}]}});
        let status = json!({"data": {"stations": [
            {"station_id": "1", "num_bikes_available": 7, "num_docks_available": 13,
             "is_renting": true, "is_returning": true, "last_reported": 1764756000},
            {"station_id": "2", "num_bikes_available": 1, "last_reported": "2025-12-03T10:00:00Z"}]}});
        let at = DateTime::from_timestamp(1764756004, 0).unwrap();
        let e = events(&info, &status, at).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].1["name"], "Gare");
        assert_eq!(e[0].1["last_reported"], "2025-12-03T10:00:00+00:00");
        assert!(e[1].1.get("name").is_none() && e[1].1.get("capacity").is_none());
    }
}
