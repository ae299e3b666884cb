//! What every long-running subcommand starts with: a shutdown token cancelled by a signal, and
//! `/metrics` served in the background.

use tokio_util::sync::CancellationToken;

/// A token cancelled by Ctrl-C or SIGTERM; a second Ctrl-C exits at once.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        #[cfg(unix)]
        let term_fut = async {
            match term.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term_fut = std::future::pending::<()>();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term_fut => {}
        }
        eprintln!("\nstopping cleanly (Ctrl-C again to quit at once)...");
        t.cancel();
        let _ = tokio::signal::ctrl_c().await;
        std::process::exit(130);
    });
    token
}

/// Serves /metrics on `addr` in the background (unless `off`); a busy port is a warning, not
/// a failure, so that a second worker on one machine still runs.
pub async fn start_metrics(addr: &str, key: &str, shutdown: CancellationToken) {
    if addr == "off" {
        return;
    }
    match rtlake_web::bind(addr, key).await {
        Ok(listener) => {
            let at = listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| addr.to_string());
            tracing::info!(url = %format!("http://{at}/metrics"), "metrics serving");
            tokio::spawn(rtlake_web::serve_metrics(listener, shutdown));
        }
        Err(e) => {
            tracing::warn!(error = %e, "not serving metrics (pass --metrics-listen ADDR, or off)")
        }
    }
}
