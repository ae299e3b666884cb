//! `rtlake run`: the pipeline over the Kafka source ([`crate::worker`]) or the file source,
//! exactly once; the [`Engine`] holds the truth.

use crate::checkpoint::{EpochLog, Folder};
use crate::config::PipelineConfig as Config;
use crate::config::StartingOffsets;
use crate::connectors::kafka::source::{Positions, StartAt};
use crate::engine::Engine;
pub use crate::engine::RunReport;
use crate::pipeline::{Output, build};
use crate::registry::Registry;
use crate::source::RawMessage;
use crate::state::StateStore;
use crate::worker::KafkaWorker;
use crate::{Error, Kind, Result};
use rtlake_core::schema::{self, TIME_PARTITIONS};
use rtlake_lake::Lake;
use rtlake_lake::table::TableSink;
use std::path::PathBuf;
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use url::Url;

/// The pipeline's checkpoint folder: `run.checkpoint` (a local path or a URL such as
/// `s3://bucket/checkpoints/orders`), or `<lake>/_checkpoints/<pipeline>` in the lake's store.
pub fn checkpoint_url(cfg: &Config, lake: &Lake) -> Result<Url> {
    let err = |reason: String| Error::new(Kind::Checkpoint, reason);
    let url = match &cfg.run.checkpoint {
        Some(c) if c.contains("://") => {
            Url::parse(c).map_err(|e| err(format!("run.checkpoint {c}: {e}")))?
        }
        Some(c) => {
            std::fs::create_dir_all(c).map_err(|e| err(format!("run.checkpoint {c}: {e}")))?;
            let abs =
                std::fs::canonicalize(c).map_err(|e| err(format!("run.checkpoint {c}: {e}")))?;
            Url::from_directory_path(&abs)
                .map_err(|_| err(format!("run.checkpoint {c}: not an absolute path")))?
        }
        None => lake
            .root()
            .join(&format!("_checkpoints/{}/", cfg.run.pipeline))
            .map_err(|e| err(format!("pipeline name {}: {e}", cfg.run.pipeline)))?,
    };
    Ok(url)
}

/// The pipeline's checkpoint folder, opened (see [`checkpoint_url`]).
pub fn checkpoint(cfg: &Config, lake: &Lake) -> Result<Folder> {
    let url = checkpoint_url(cfg, lake)?;
    Ok(Folder::new(lake.store_at(&url)?, &url))
}

/// Runs the pipeline until `shutdown` fires, or until the input is drained (available-now
/// trigger, or the file source). When the input's registry subject gets a new schema version
/// with new fields, the pipeline is built again with them ([`Kind::NewSchema`]) and goes on
/// from the lake's positions.
pub async fn run(
    cfg: &Config,
    registry: &Registry,
    shutdown: CancellationToken,
) -> Result<RunReport> {
    loop {
        match run_once(cfg, registry, shutdown.clone()).await {
            Err(e) if e.kind() == Some(Kind::NewSchema) && !shutdown.is_cancelled() => {
                tracing::info!(pipeline = %cfg.run.pipeline, reason = %e, "the input's schema changed: building the pipeline again");
            }
            done => return done,
        }
    }
}

/// Where a run reads from.
enum Input<'a> {
    /// A file or a folder of files (`file:`).
    File(PathBuf),
    /// A bronze table (`bronze:`).
    Bronze(&'a str),
    /// The configured topic, its consumer already started.
    Topic(crate::worker::Prepared),
}

async fn run_once(
    cfg: &Config,
    registry: &Registry,
    shutdown: CancellationToken,
) -> Result<RunReport> {
    let lake = Lake::open(&cfg.lake)?;
    let checkpoint = checkpoint(cfg, &lake)?;
    // One handle on the cluster for the run: topics, partitions, watermarks, offsets (Kafka
    // sinks need it also when the input is a file).
    let cluster = rtlake_kafka::Cluster::connect(&cfg.kafka)?;
    let input = match (cfg.run.file_source(), cfg.run.bronze_source()) {
        (Some(p), _) => Input::File(PathBuf::from(p)),
        (None, Some(b)) => Input::Bronze(b),
        (None, None) => {
            cluster.ensure_topic(&cfg.kafka.topic).await?;
            // The consumer joins its group while the outputs open.
            Input::Topic(KafkaWorker::prepare(cfg, &cluster)?)
        }
    };
    let topic = match &input {
        Input::File(p) => format!("file:{}", p.display()),
        Input::Bronze(b) => format!("bronze:{b}"),
        Input::Topic(_) => cfg.kafka.topic.clone(),
    };
    // The input's decoder first: an Avro input's columns come from its registry.
    let decoder = match &cfg.run.input {
        Some(input) => Some(
            crate::ops::decode::Decoder::open(input, &cfg.kafka.topic)
                .await?
                .with_lateness(cfg.run.lateness.get()),
        ),
        None => None,
    };
    let input_schema = decoder.as_ref().map(|d| d.schema());
    let stages = build(cfg, registry, &lake, &checkpoint, &cluster, input_schema).await?;
    let rejected = Output::Table(
        TableSink::open(
            &lake,
            schema::REJECTED,
            schema::rejected(),
            &TIME_PARTITIONS,
        )
        .await?,
        None,
        None,
    );
    let rejected_name = rejected.name();
    let engine = Engine {
        pipeline: cfg.run.pipeline.clone(),
        topic,
        stages,
        rejected: Some(rejected),
        state: StateStore::new(checkpoint.child("state")),
        log: EpochLog::new(checkpoint.clone()),
        decoder,
        domain: match cfg.run.input {
            // A declared input feeds a domain's operators (they name none of the declared
            // stages) as JSON objects of its columns: see `Engine::process`.
            Some(_) if !reads_domain(cfg, registry) => None,
            _ => registry.new_decoder(cfg),
        },
        max_future: cfg.run.max_future.get(),
        rejected_shape: crate::rejected::RejectedShape {
            value_max: usize::try_from(cfg.run.rejected_value_max.0).unwrap_or(usize::MAX),
            time_zone: lake.time_zone(),
        },
        report: RunReport::default(),
        landing: None,
        partitions: Default::default(),
    };
    let outputs: Vec<String> = engine
        .stages
        .iter()
        .flat_map(|s| s.outputs.iter().map(Output::name))
        .collect();
    touch_metrics(&cfg.run.pipeline, outputs.iter().chain([&rejected_name]));
    tracing::info!(pipeline = %cfg.run.pipeline, source = %engine.topic, lake = %lake.root(), %checkpoint, ?outputs, "processor started");
    let tables: Vec<_> = engine
        .stages
        .iter()
        .flat_map(|s| &s.outputs)
        .chain(engine.rejected.as_ref())
        .filter_map(|o| match o {
            Output::Table(d, ..) => Some(d.name()),
            Output::Kafka(_) => None,
        })
        .collect();
    let maintenance =
        crate::maintain::spawn(&lake, tables.clone(), &cfg.lake, shutdown.child_token());
    let ran = async {
        match input {
            Input::File(path) => run_file(cfg, engine, &path, shutdown).await,
            Input::Bronze(uri) => run_bronze(cfg, registry, engine, uri, shutdown).await,
            Input::Topic(prepared) => {
                let positions = Positions {
                    lake: lake.clone(),
                    pipeline: cfg.run.pipeline.clone(),
                    tables,
                    kafka_dirs: engine
                        .stages
                        .iter()
                        .flat_map(|s| &s.outputs)
                        .filter_map(|o| match o {
                            Output::Kafka(k) => Some(k.dir().clone()),
                            Output::Table(..) => None,
                        })
                        .collect(),
                    start: start_at(cfg, &cluster).await?,
                };
                KafkaWorker::start(cfg, &cluster, engine, positions, shutdown, prepared)
                    .await?
                    .run()
                    .await
            }
        }
    }
    .await;
    maintenance.stop().await;
    let report = ran?;
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
        for reason in ["decode", "validation", "stale", "late", "future"] {
            m.rejected.with_label_values(&[pipeline, o, reason]);
        }
        m.late.with_label_values(&[pipeline, o]);
        m.rows_out.with_label_values(&[pipeline, o]);
        m.commit_duration.with_label_values(&[pipeline, o]);
    }
    m.epochs.with_label_values(&[pipeline]);
    m.epoch_failures.with_label_values(&[pipeline]);
    for reason in [
        "stall",
        "no-partitions",
        "consumer-error",
        "epoch-failed",
        "rebalance",
    ] {
        m.consumer_restarts.with_label_values(&[pipeline, reason]);
    }
    m.epoch_duration.with_label_values(&[pipeline]);
    m.event_to_lake.with_label_values(&[pipeline]);
}

/// Resolves `run.starting-offsets` (a timestamp becomes offsets through the broker).
async fn start_at(cfg: &Config, cluster: &rtlake_kafka::Cluster) -> Result<StartAt> {
    Ok(match cfg.run.starting() {
        StartingOffsets::Earliest => StartAt::Earliest,
        StartingOffsets::Latest => StartAt::Latest,
        StartingOffsets::Offsets(m) => StartAt::Offsets(m),
        StartingOffsets::Timestamp(ms) => {
            StartAt::Offsets(cluster.offsets_for_time(&cfg.kafka.topic, ms).await?)
        }
    })
}

/// The file source: every line, in epochs of `max-batch-events`, then stop.
/// Replays a lake's bronze table through the engine (a backfill), each partition from where
/// the outputs stand, an interrupted epoch first at exactly its range.
async fn run_bronze(
    cfg: &Config,
    registry: &Registry,
    mut engine: Engine,
    uri: &str,
    shutdown: CancellationToken,
) -> Result<RunReport> {
    let Some(replay) = registry.replay_source() else {
        return Err(Error::new(
            Kind::Config,
            format!("run.source bronze:{uri}: no replay source is registered"),
        ));
    };
    let msgs = (replay.read)(uri.to_string(), cfg.lake.clone()).await?;
    let parts: Vec<i32> = msgs.keys().copied().collect();
    let pending = engine.refresh(&parts).await?;
    let started = Instant::now();
    for (p, all) in msgs {
        // The partition before lands first: its outputs tell where this one resumes.
        engine.settle().await?;
        let from = engine.resume(p).expected();
        let todo: Vec<RawMessage> = all.into_iter().filter(|m| m.offset >= from).collect();
        tracing::info!(
            partition = p,
            messages = todo.len(),
            resume_at = from,
            "bronze source"
        );
        // An epoch interrupted before a crash is re-run over exactly its range.
        let cut = pending
            .get(&p)
            .map_or(0, |r| todo.iter().take_while(|m| m.offset < r.end).count());
        let (first, rest) = todo.split_at(cut);
        for chunk in std::iter::once(first)
            .filter(|c| !c.is_empty())
            .chain(rest.chunks(cfg.run.epoch_limit()))
        {
            if shutdown.is_cancelled() {
                engine.finish().await?;
                return Ok(engine.report);
            }
            engine.epoch(chunk).await?;
        }
        tracing::info!(
            epochs = engine.report.epochs,
            messages = engine.report.messages,
            events_per_sec =
                (engine.report.messages as f64 / started.elapsed().as_secs_f64()).round() as u64,
            "processing"
        );
    }
    engine.finish().await?;
    Ok(engine.report)
}

async fn run_file(
    cfg: &Config,
    mut engine: Engine,
    path: &std::path::Path,
    shutdown: CancellationToken,
) -> Result<RunReport> {
    let files = crate::connectors::file::files(path)?;
    let pending = engine.refresh(&[0]).await?;
    let from = engine.resume(0).expected();
    tracing::info!(files = files.len(), resume_at = from, "file source");
    // Read a chunk at a time; an epoch interrupted before a crash is re-run over its range.
    let mut until = pending.get(&0).map(|r| r.end);
    if let Some(r) = pending.get(&0) {
        tracing::info!(
            start = r.start,
            end = r.end,
            "re-running the interrupted epoch over the same offsets"
        );
    }
    // The next chunk is read on a blocking thread while the current epoch runs.
    let read = |mut lines: crate::connectors::file::Lines, until: Option<i64>| {
        let (max, max_bytes) = match until {
            Some(_) => (usize::MAX, usize::MAX),
            None => (
                cfg.run.epoch_limit(),
                usize::try_from(cfg.run.max_batch_bytes.0).unwrap_or(usize::MAX),
            ),
        };
        tokio::task::spawn_blocking(move || {
            let chunk = lines.next_chunk(max, max_bytes, from, until);
            (lines, chunk)
        })
    };
    let mut next = read(crate::connectors::file::Lines::new(files), until);
    let started = Instant::now();
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        let (lines, chunk) = next
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        let chunk = chunk?;
        if chunk.is_empty() {
            match until.take() {
                Some(_) => {
                    next = read(lines, None);
                    continue;
                }
                None => break,
            }
        }
        until = None;
        next = read(lines, None);
        engine.epoch(&chunk).await?;
        tracing::info!(
            epochs = engine.report.epochs,
            messages = engine.report.messages,
            events_per_sec =
                (engine.report.messages as f64 / started.elapsed().as_secs_f64()).round() as u64,
            "processing"
        );
    }
    engine.finish().await?;
    Ok(engine.report)
}

/// Whether a sink of the pipeline is a domain operator (registered, not a declared stage).
fn reads_domain(cfg: &Config, registry: &Registry) -> bool {
    cfg.run.sinks(registry.default_sinks()).iter().any(|s| {
        registry.table(&s.operator).is_some()
            && !cfg.run.stages.iter().any(|st| st.name == s.operator)
    })
}
