//! `rtlake run`: the stream processor.

use crate::cli::{self, Cli};
use crate::config::Sources;
use crate::runtime::{shutdown_on_signal, start_metrics};
use anyhow::Result;

/// Runs the pipeline until Ctrl-C, or until its input is drained.
pub async fn run(cli: &Cli, a: &cli::RunArgs) -> Result<()> {
    let cfg = crate::config::load(
        Sources {
            file: cli.config.as_deref(),
            pipeline: a.pipeline.as_deref(),
        },
        |c, o| {
            a.kafka.clone().apply(&mut c.kafka, o);
            a.lake.clone().apply(&mut c.lake, o);
            a.run.clone().apply(&mut c.run, o);
        },
    )?;
    let started = std::time::Instant::now();
    let shutdown = shutdown_on_signal();
    start_metrics(
        &cfg.run.metrics_listen,
        "run.metrics-listen",
        shutdown.clone(),
    )
    .await;
    let r = rtlake_stream::ingest::run(&cfg.pipeline(), &crate::config::domain(), shutdown).await?;
    let secs = started.elapsed().as_secs_f64();
    let rows: Vec<String> = r.rows.iter().map(|(k, v)| format!("{k} {v}")).collect();
    out!(
        "processed {} messages in {} epochs in {:.1} s ({:.0} events/s); rows: {}",
        r.messages,
        r.epochs,
        secs,
        r.messages as f64 / secs.max(1e-9),
        rows.join(", ")
    );
    if let (Some(p50), Some(p99)) = (r.latency_quantile(0.5), r.latency_quantile(0.99)) {
        // A drained backlog's events are as old as the backlog: past the histogram's top, say so
        // rather than print the top as if it were measured.
        let show = |ms: u64| match ms {
            ms if ms >= rtlake_stream::engine::LATENCY_CAP_MS => {
                format!("over {} s", rtlake_stream::engine::LATENCY_CAP_MS / 1000)
            }
            ms => format!("{ms} ms"),
        };
        out!(
            "event-to-lake latency (Kafka timestamp to committed): p50 {}, p99 {}",
            show(p50),
            show(p99)
        );
    }
    Ok(())
}
