//! `rtlake produce bikes|gbfs`: the bike domain's producers.

use super::load;
use crate::cli::{self, Cli};
use crate::runtime::{shutdown_on_signal, start_metrics};
use anyhow::{Result, bail};
use rtlake_bikes::produce::Source;

/// Publishes station status from the configured source.
pub async fn bikes(cli: &Cli, a: &cli::ProduceBikesArgs) -> Result<()> {
    let cfg = load(cli, |c, o| {
        a.kafka.clone().apply(&mut c.kafka, o);
        if let Some(p) = a.partitions {
            c.kafka.partitions = p;
            o.set("kafka.partitions", "flag --partitions");
        }
        a.source.clone().apply(&mut c.source, o);
        a.producer.clone().apply(&mut c.producer, o);
    })?;
    use rtlake_bikes::config::SourceKind;
    let source = match cfg.source.kind {
        SourceKind::Replay => Source::Replay,
        SourceKind::SeoulApi => Source::SeoulApi,
        SourceKind::File => match &a.path {
            Some(p) => Source::File(p.clone()),
            None => bail!(
                "--source file needs the PATH of a JSON Lines file: rtlake produce bikes --source file events.jsonl"
            ),
        },
    };
    if a.path.is_some() && !matches!(source, Source::File(_)) {
        bail!("a PATH is only taken with --source file");
    }
    let shutdown = shutdown_on_signal();
    start_metrics(
        &cfg.producer.metrics_listen,
        "producer.metrics-listen",
        shutdown.clone(),
    )
    .await;
    let report = rtlake_bikes::produce::produce(&cfg.produce(), source, shutdown).await?;
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    out!(
        "produced {} events to {} ({} delivered, {} failed) in {:.1} s: {:.0} events/s",
        report.sent,
        cfg.kafka.topic,
        report.delivered,
        report.failed,
        secs,
        report.delivered as f64 / secs
    );
    Ok(())
}

/// Publishes a GBFS system's station status.
pub async fn gbfs(cli: &Cli, a: &cli::ProduceGbfsArgs) -> Result<()> {
    let cfg = load(cli, |c, o| {
        a.kafka.clone().apply(&mut c.kafka, o);
        c.kafka.topic = a.topic.clone();
        o.set("kafka.topic", "flag --topic");
    })?;
    let interval = a.interval.map(|i| i.get());
    let r = rtlake_bikes::gbfs::produce(
        &cfg.produce(),
        &a.url,
        interval,
        a.polls,
        shutdown_on_signal(),
    )
    .await?;
    out!(
        "published {} polls, {} events to {}",
        r.polls,
        r.events,
        cfg.kafka.topic
    );
    Ok(())
}
