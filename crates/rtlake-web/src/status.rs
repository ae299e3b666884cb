//! `GET /api/pipeline` and `GET /api/kafka`: what the pipeline and Kafka pages show.
//!
//! Pipeline status is read from where the truth lives, so it works whether or not the
//! processor runs in this process: the txn versions in the lake's tables, the checkpoint's
//! commit log (epoch durations, commit times) and state files, `_rejected`, and the topic's high
//! watermarks. Rates come from the difference with the previous answer.

use crate::AppState;
use rtlake_lake::catalog::{list_tables, table_status};
use rtlake_stream::checkpoint::EpochLog;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

/// The previous sample of each pipeline's positions, for rates.
#[derive(Default)]
pub struct Rates {
    last: Option<(Instant, BTreeMap<(String, i32), i64>)>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Bytes of a partition's newest state snapshot per operator.
fn state_bytes(checkpoint: &Path, partition: i32) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for op in std::fs::read_dir(checkpoint.join("state"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let dir = op.path().join(partition.to_string());
        let newest = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .max_by_key(|e| e.file_name());
        if let Some(f) = newest.and_then(|e| e.metadata().ok()) {
            out.insert(op.file_name().to_string_lossy().to_string(), f.len());
        }
    }
    out
}

/// The pipelines under `<lake>/_checkpoints`, with per-partition figures.
pub async fn pipeline(state: &AppState) -> Result<Value, String> {
    let lake = &state.lake;
    let root = lake
        .root()
        .to_file_path()
        .map_err(|_| "status pages need a local lake in this build".to_string())?;
    let pipelines: Vec<String> = std::fs::read_dir(root.join("_checkpoints"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    let topic = &state.cfg.kafka.topic;
    let watermarks = rtlake_kafka::admin::high_watermarks(&state.cfg.kafka, topic)
        .await
        .map_err(|e| e.to_string())?;
    let tables = list_tables(lake).map_err(|e| e.to_string())?;
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
        let checkpoint = root.join("_checkpoints").join(pipeline);
        let log = EpochLog::new(&checkpoint);
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
        for e in std::fs::read_dir(checkpoint.join("sinks"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().to_string();
            let versions: BTreeMap<i32, i64> = watermarks
                .iter()
                .filter_map(|(p, ..)| {
                    Some((
                        *p,
                        rtlake_stream::kafka_sink::read_version(&e.path(), *p).ok()??,
                    ))
                })
                .collect();
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
            let last = log.last_commit(*p).ok().flatten();
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
                "state_bytes": state_bytes(&checkpoint, *p),
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
    let brokers = rtlake_kafka::inspect::brokers(k)
        .await
        .map_err(|e| e.to_string())?;
    let topics = rtlake_kafka::admin::list_topics(k)
        .await
        .map_err(|e| e.to_string())?;
    // A cluster may not list groups (tansu 0.6 did not): ask for the pipelines' own.
    let root = state.lake.root().to_file_path().ok();
    let groups: Vec<String> = root
        .map(|r| {
            std::fs::read_dir(r.join("_checkpoints"))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| format!("rtlake-{}", e.file_name().to_string_lossy()))
                .collect()
        })
        .unwrap_or_default();
    let mut described = Vec::new();
    for t in &topics {
        match rtlake_kafka::admin::describe_topic(k, &t.name, &groups).await {
            Ok(d) => described.push(serde_json::to_value(&d).unwrap_or(Value::Null)),
            Err(e) => described.push(json!({ "name": t.name, "error": e.to_string() })),
        }
    }
    Ok(
        json!({ "bootstrap": k.brokers, "brokers": brokers, "topics": described, "groups_asked": groups }),
    )
}
