//! `rtlake bench consume`: a cluster's read ceiling.

use super::load;
use crate::cli::Cli;
use anyhow::Result;
use rtlake_kafka::config::KafkaFlags;

/// Reads the topic from the start with a plain consumer and prints the rate.
pub async fn consume(cli: &Cli, kafka: &KafkaFlags, count: Option<u64>) -> Result<()> {
    let cfg = load(cli, |c, o| kafka.clone().apply(&mut c.kafka, o))?;
    let r = rtlake_kafka::bench::consume(
        &rtlake_kafka::Cluster::connect(&cfg.kafka)?,
        &cfg.kafka.topic,
        count,
    )
    .await?;
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    out!(
        "consumed {} messages ({:.1} MB) from {} in {:.2} s: {:.0} events/s, {:.1} MB/s",
        r.messages,
        r.bytes as f64 / 1e6,
        cfg.kafka.topic,
        secs,
        r.messages as f64 / secs,
        r.bytes as f64 / 1e6 / secs
    );
    Ok(())
}
