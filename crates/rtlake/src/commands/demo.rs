//! `rtlake demo`: the whole pipeline on the embedded defaults (broker, replay producer,
//! processor, dashboard) in one process.

use super::load;
use crate::cli::{self, Cli};
use crate::runtime::shutdown_on_signal;
use anyhow::Result;
use rtlake_bikes::produce::Source;
use rtlake_stream::config::Assignment;

/// Runs the demo until Ctrl-C.
pub async fn demo(cli: &Cli, a: &cli::DemoArgs) -> Result<()> {
    let dir = &a.dir;
    let speed: rtlake_bikes::config::Speed = a.speed.parse().map_err(anyhow::Error::msg)?;
    let cfg = load(cli, |c, o| {
        c.broker.listen = a.listen.clone();
        c.kafka.brokers = a.brokers.clone().unwrap_or_else(|| a.listen.clone());
        // The demo's one processor takes every partition itself: no group to rebalance.
        c.run.assignment = Assignment::Static;
        c.broker.data = dir.join("broker");
        c.lake.uri = dir.join("lake").display().to_string();
        c.source.state_file = Some(dir.join("replay-state.json"));
        c.source.kind = rtlake_bikes::config::SourceKind::Replay;
        c.source.speed = speed;
        c.source.minutes = a.minutes.or(c.source.minutes);
        if let Some(f) = a.lake_format {
            c.lake.format = f;
            o.set("lake.format", "flag --lake-format");
        }
        if a.dashboard != "off" {
            c.serve.listen = a.dashboard.clone();
            o.set("serve.listen", "flag --dashboard");
        }
        for (key, flag) in [
            ("broker.listen", "listen"),
            ("kafka.brokers", "brokers"),
            ("run.assignment", "demo"),
            ("broker.data", "dir"),
            ("lake.uri", "dir"),
            ("source.state-file", "dir"),
            ("source.kind", "demo"),
            ("source.speed", "speed"),
        ] {
            o.set(key, format!("flag --{flag}"));
        }
    })?;
    let shutdown = shutdown_on_signal();
    // Bind first: a busy dashboard port fails before anything starts.
    let dashboard = match a.dashboard.as_str() {
        "off" => None,
        _ => Some(rtlake_web::bind_dashboard(&cfg.web(), "--dashboard").await?),
    };
    let broker = match &a.brokers {
        Some(_) => None,
        None => {
            let engine: rtlake_broker::Engine =
                cfg.broker.storage.parse().map_err(anyhow::Error::msg)?;
            Some(
                rtlake_broker::EmbeddedBroker::start_with(
                    cfg.broker.listen.parse()?,
                    &cfg.broker.data,
                    engine,
                )
                .await?,
            )
        }
    };
    // The topic first: the producer, the processor and the live view all want it, and two
    // creating it at once made the broker log a TopicAlreadyExists error.
    rtlake_kafka::Cluster::connect(&cfg.kafka)?
        .ensure_topic(&cfg.kafka.topic)
        .await?;
    let producer = {
        let (cfg, token) = (cfg.produce(), shutdown.child_token());
        tokio::spawn(
            async move { rtlake_bikes::produce::produce(&cfg, Source::Replay, token).await },
        )
    };
    let processor = {
        let (cfg, token) = (cfg.pipeline(), shutdown.child_token());
        tokio::spawn(async move {
            rtlake_stream::ingest::run(&cfg, &crate::config::domain(), token).await
        })
    };
    let web_url = dashboard
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(|a| format!("http://{a}/"));
    if let Some(listener) = dashboard {
        let (cfg, token) = (cfg.web(), shutdown.child_token());
        tokio::spawn(async move {
            if let Err(e) =
                rtlake_web::serve(&cfg, listener, token, Some(crate::config::web_domain())).await
            {
                tracing::error!(error = %e, "dashboard stopped");
            }
        });
    }
    let lake = dir.join("lake");
    match &broker {
        Some(b) => out!(
            "rtlake demo is running: embedded broker {}, lake {}",
            b.bootstrap(),
            lake.display()
        ),
        None => out!(
            "rtlake demo is running on the Kafka cluster {}, lake {}",
            cfg.kafka.brokers,
            lake.display()
        ),
    }
    if let Some(url) = &web_url {
        out!(
            "dashboard: {url}  (pipeline: {url}pipeline, Kafka: {url}kafka, metrics: {url}metrics)"
        );
    }
    out!(
        "the replay publishes a poll of 2,721 stations every {:.1} s; in another terminal, try:",
        15.0 / speed_factor(&a.speed)
    );
    out!(
        "  rtlake sql --lake {} \"SELECT count(*) AS events, max(polled_at) AS latest FROM bronze.station_status\"",
        lake.display()
    );
    out!(
        "  rtlake sql --lake {} \"SELECT district, sum(bikes_parked) AS bikes FROM bronze.station_status WHERE polled_at = (SELECT max(polled_at) FROM bronze.station_status) GROUP BY district ORDER BY bikes DESC\"",
        lake.display()
    );
    out!(
        "  rtlake sql --lake {} \"SELECT district, sum(rentals) AS rentals, sum(returns) AS returns FROM silver.station_changes GROUP BY district ORDER BY rentals DESC LIMIT 5\"",
        lake.display()
    );
    out!(
        "  rtlake topics describe {} --brokers {}",
        cfg.kafka.topic,
        cfg.kafka.brokers
    );
    out!("Ctrl-C stops everything; running the demo again continues where it stopped.");
    let (mut producer, mut processor) = (producer, processor);
    let mut producer_done = false;
    let result: Result<()> = loop {
        tokio::select! {
            r = &mut producer, if !producer_done => {
                producer_done = true;
                match r {
                    // The replay ran its --minutes; the processor goes on until Ctrl-C.
                    Ok(Ok(rep)) if !shutdown.is_cancelled() => out!("replay finished: {} events", rep.sent),
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => break Err(anyhow::Error::from(e).context("producer")),
                    Err(e) => break Err(anyhow::anyhow!("producer task: {e}")),
                }
            }
            r = &mut processor => match r {
                Ok(Ok(_)) => break Ok(()),
                Ok(Err(e)) => break Err(anyhow::Error::from(e).context("processor")),
                Err(e) => break Err(anyhow::anyhow!("processor task: {e}")),
            },
        }
    };
    shutdown.cancel();
    if !producer_done {
        let _ = producer.await;
    }
    if !processor.is_finished() {
        let _ = processor.await;
    }
    if let Some(b) = broker {
        b.stop().await;
    }
    result
}

fn speed_factor(s: &str) -> f64 {
    s.trim_end_matches('x')
        .parse::<f64>()
        .ok()
        .filter(|f| *f > 0.0)
        .unwrap_or(f64::INFINITY)
}
