//! `rtlake replay`: a lake's bronze table re-published to a topic.

use super::load;
use crate::cli::{Cli, ReplayArgs};
use anyhow::{Result, bail};
use std::time::Instant;

/// `rtlake replay`: a lake's bronze table back into a topic.
pub async fn replay(cli: &Cli, a: &ReplayArgs) -> Result<()> {
    if a.table != "bronze.station_status" {
        bail!(
            "only bronze.station_status can be replayed (events are rebuilt from its rows), not {}",
            a.table
        );
    }
    let cfg = load(cli, |c, o| {
        a.lake.clone().apply(&mut c.lake, o);
        a.kafka.clone().apply(&mut c.kafka, o);
    })?;
    let t0 = Instant::now();
    let r = rtlake_bikes::stream::bronze_source::republish(&cfg.pipeline(), &cfg.lake.uri, &a.to)
        .await?;
    out!(
        "replayed {} events of {} partitions of {} to {} in {:.1} s",
        r.delivered,
        r.partitions,
        a.table,
        a.to,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
