//! `GET /api/pipeline` and `GET /api/kafka`: what the pipeline and Kafka pages show.
//!
//! Pipeline status is read from where the truth lives, so it works whether or not the
//! processor runs in this process: the txn versions in the lake's tables, the checkpoint's
//! commit log (epoch durations, commit times) and state files, `_rejected`, and the topic's high
//! watermarks. Rates come from the difference with the previous answer.

use crate::AppState;
use rtlake_lake::catalog::{list_tables, table_status};
use rtlake_stream::checkpoint::{EpochLog, Folder};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Instant;

/// Committed offset per (pipeline, partition).
type Positions = BTreeMap<(String, i32), i64>;

/// The previous sample of each pipeline's positions, for rates.
#[derive(Default)]
pub struct Rates {
    last: Option<(Instant, Positions)>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Bytes of a partition's newest state snapshot per operator.
async fn state_bytes(checkpoint: &Folder, partition: i32) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let state = checkpoint.child("state");
    let ops = state.list().await.map(|(_, dirs)| dirs).unwrap_or_default();
    for op in ops {
        let dir = state.child(&op).child(&partition.to_string());
        let Some(newest) = dir.numbered().await.ok().and_then(|v| v.into_iter().max()) else {
            continue;
        };
        if let Ok(Some(b)) = dir.get(&format!("{newest:020}.json")).await {
            out.insert(op, b.len() as u64);
        }
    }
    out
}

/// The lake's `_checkpoints` folder (none when the store cannot be opened).
fn checkpoints(lake: &rtlake_lake::Lake) -> Option<Folder> {
    let url = lake.root().join("_checkpoints/").ok()?;
    Some(Folder::new(lake.store_at(&url).ok()?, &url))
}

/// The pipelines with a checkpoint in the lake.
async fn pipelines(lake: &rtlake_lake::Lake) -> Vec<String> {
    match checkpoints(lake) {
        Some(c) => c.list().await.map(|(_, dirs)| dirs).unwrap_or_default(),
        None => Vec::new(),
    }
}

/// The pipelines under `<lake>/_checkpoints`, with per-partition figures.
pub async fn pipeline(state: &AppState) -> Result<Value, String> {
    let lake = &state.lake;
    let pipelines = pipelines(lake).await;
    let root = checkpoints(lake).ok_or("the lake's checkpoints cannot be opened")?;
    let topic = &state.cfg.kafka.topic;
    let watermarks = state
        .cluster
        .watermarks(topic)
        .await
        .map_err(|e| e.to_string())?;
    let tables = list_tables(lake).await.map_err(|e| e.to_string())?;
    let rejected = match state.session().await {
        Ok(s) => s
            .query("SELECT sink, reason, count(*) AS n FROM _rejected GROUP BY sink, reason")
            .await
            .ok()
            .map(|(_, b)| crate::rows_json(&b))
            .unwrap_or(Value::Array(vec![])),
        Err(_) => Value::Array(vec![]),
    };
    // Events/s per partition: the lake's progress since the previous answer.
    let previous = state
        .rates
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .last
        .take();
    let rate = |key: &(String, i32), now: i64| {
        let (at, prev) = previous.as_ref()?;
        Some(
            ((now - prev.get(key)?) as f64 / at.elapsed().as_secs_f64().max(1e-3))
                .max(0.0)
                .round(),
        )
    };
    let mut sample = BTreeMap::new();
    let mut out = Vec::new();
    for pipeline in &pipelines {
        let checkpoint = root.child(pipeline);
        let log = EpochLog::new(checkpoint.clone());
        let mut outputs = Vec::new();
        for t in &tables {
            let ids: Vec<String> = watermarks
                .iter()
                .map(|(p, ..)| format!("{pipeline}/{}/{p}", t.qualified()))
                .collect();
            let st = table_status(lake, t, &ids)
                .await
                .map_err(|e| e.to_string())?;
            if st.txns.values().any(Option::is_some) {
                outputs.push(st);
            }
        }
        let mut kafka_sinks = Vec::new();
        let sinks = checkpoint.child("sinks");
        for name in sinks.list().await.map(|(_, d)| d).unwrap_or_default() {
            let dir = sinks.child(&name);
            let mut versions = BTreeMap::new();
            for (p, ..) in &watermarks {
                if let Ok(Some(v)) =
                    rtlake_stream::connectors::kafka::sink::read_version(&dir, *p).await
                {
                    versions.insert(*p, v);
                }
            }
            kafka_sinks.push((name, versions));
        }
        let mut partitions = Vec::new();
        for (p, _lo, hi) in &watermarks {
            let mut versions: Vec<(String, Option<i64>)> = outputs
                .iter()
                .map(|o| {
                    (
                        o.table.clone(),
                        o.txns
                            .get(&format!("{pipeline}/{}/{p}", o.table))
                            .copied()
                            .flatten(),
                    )
                })
                .collect();
            versions.extend(
                kafka_sinks
                    .iter()
                    .map(|(n, v)| (format!("kafka:{n}"), v.get(p).copied())),
            );
            let committed = versions.iter().filter_map(|(_, v)| *v).min();
            let last = log.last_commit(*p).await.ok().flatten();
            let key = (pipeline.clone(), *p);
            let events_per_sec = rate(&key, committed.unwrap_or(0));
            sample.insert(key, committed.unwrap_or(0));
            partitions.push(json!({
                "partition": p,
                "high_watermark": hi,
                "committed": committed,
                "lag": committed.map(|c| (hi - c).max(0)),
                "events_per_sec": events_per_sec,
                "outputs": versions.iter().map(|(n, v)| json!({"output": n, "version": v})).collect::<Vec<_>>(),
                "epoch_duration_ms": last.map(|c| c.duration_ms),
                "last_epoch_at_ms": last.map(|c| c.committed_at_ms),
                // How far behind the topic's arrivals the partition's outputs are: now minus
                // the Kafka timestamp of the newest message they hold.
                "newest_event_ms": last.and_then(|c| c.newest_event_ms),
                "freshness_s": last.and_then(|c| c.newest_event_ms).map(|t| (now_ms() - t).max(0) as f64 / 1000.0),
                "state_bytes": state_bytes(&checkpoint, *p).await,
            }));
        }
        out.push(json!({
            "pipeline": pipeline,
            "topic": topic,
            "partitions": partitions,
            "tables": outputs.iter().map(|o| json!({
                "table": o.table,
                "version": o.version,
                "last_commit_ms": o.last_commit_ms,
                "age_s": o.last_commit_ms.map(|t| (now_ms() - t) as f64 / 1000.0),
            })).collect::<Vec<_>>(),
        }));
    }
    state.rates.lock().unwrap_or_else(|p| p.into_inner()).last = Some((Instant::now(), sample));
    Ok(json!({ "pipelines": out, "rejected": rejected }))
}

/// Brokers, topics with partitions, offsets and config, consumer groups and their lag.
pub async fn kafka(state: &AppState) -> Result<Value, String> {
    let k = &state.cfg.kafka;
    let brokers = state.cluster.brokers().await.map_err(|e| e.to_string())?;
    let topics = state
        .cluster
        .list_topics()
        .await
        .map_err(|e| e.to_string())?;
    // A cluster may not list groups (tansu 0.6 did not): ask for the pipelines' own.
    let groups: Vec<String> = pipelines(&state.lake)
        .await
        .iter()
        .map(|p| format!("rtlake-{p}"))
        .collect();
    let mut described = Vec::new();
    for t in &topics {
        match state.cluster.describe_topic(&t.name, &groups).await {
            Ok(d) => described.push(serde_json::to_value(&d).unwrap_or(Value::Null)),
            Err(e) => described.push(json!({ "name": t.name, "error": e.to_string() })),
        }
    }
    Ok(
        json!({ "bootstrap": k.brokers, "brokers": brokers, "topics": described, "groups_asked": groups }),
    )
}
