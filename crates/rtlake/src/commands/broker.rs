//! `rtlake broker`: the embedded broker on its own.

use super::load;
use crate::cli::{self, Cli};
use crate::runtime::shutdown_on_signal;
use anyhow::{Context, Result};

/// Runs the embedded broker until Ctrl-C.
pub async fn broker(cli: &Cli, a: &cli::BrokerArgs) -> Result<()> {
    let cfg = load(cli, |c, o| a.broker.clone().apply(&mut c.broker, o))?;
    let addr = cfg.broker.listen.parse().context("broker.listen")?;
    rtlake_broker::check_exposure(addr, cfg.broker.allow_remote)?;
    let engine: rtlake_broker::Engine = cfg.broker.storage.parse().map_err(anyhow::Error::msg)?;
    let shutdown = shutdown_on_signal();
    let b = rtlake_broker::EmbeddedBroker::start_with(addr, &cfg.broker.data, engine).await?;
    out!(
        "rtlake broker listening on {} (data in {}, storage {})",
        b.bootstrap(),
        cfg.broker.data.display(),
        cfg.broker.storage
    );
    out!("try: rtlake topics list --brokers {}", b.bootstrap());
    shutdown.cancelled().await;
    b.stop().await;
    Ok(())
}
