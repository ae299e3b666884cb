//! `rtlake serve`: the pages, the SQL API and `/metrics`, with the domain's dashboard.

use super::load;
use crate::cli::{self, Cli};
use crate::runtime::shutdown_on_signal;
use anyhow::Result;

/// Serves until Ctrl-C.
pub async fn serve(cli: &Cli, a: &cli::ServeArgs) -> Result<()> {
    let cfg = load(cli, |c, o| {
        a.kafka.clone().apply(&mut c.kafka, o);
        a.lake.clone().apply(&mut c.lake, o);
        a.serve.clone().apply(&mut c.serve, o);
    })?;
    let web = cfg.web();
    let listener = rtlake_web::bind_dashboard(&web, "serve.listen / --listen").await?;
    out!(
        "rtlake serve: dashboard on http://{}/ (lake {}, Kafka {})",
        listener.local_addr()?,
        cfg.lake.uri,
        cfg.kafka.brokers
    );
    rtlake_web::serve(
        &web,
        listener,
        shutdown_on_signal(),
        Some(crate::config::web_domain()),
    )
    .await?;
    Ok(())
}
