//! One function per subcommand; each builds its config and calls a library's `run`.

use crate::cli::{
    self, AssignmentArg, BenchCommand, Cli, Command, FormatArg, ProduceCommand, SourceArg,
    StrategyArg, TriggerArg,
};
use crate::settings::{Flags, load};
use anyhow::{Context, Result, bail};
use rtlake_bikes::produce::Source;
use std::io::{BufRead, IsTerminal, Write};
use tokio_util::sync::CancellationToken;

/// Runs the parsed command.
pub async fn dispatch(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Demo(a) => crate::demo_cmd::demo(&cli, a).await,
        Command::Broker(a) => broker(&cli, a).await,
        Command::Produce {
            what: ProduceCommand::Bikes(a),
        } => produce(&cli, a).await,
        Command::Produce {
            what: ProduceCommand::Gbfs(a),
        } => produce_gbfs(&cli, a).await,
        Command::Run(a) => run(&cli, a).await,
        Command::Sql(a) => sql(&cli, a).await,
        Command::Serve(a) => serve(&cli, a).await,
        Command::Topics { op } => crate::topics_cmd::topics(&cli, op).await,
        Command::Lake { op } => crate::lake_cmd::lake(&cli, op).await,
        Command::Replay(a) => crate::lake_cmd::replay(&cli, a).await,
        Command::Bench {
            what:
                BenchCommand::Consume {
                    topic,
                    kafka,
                    count,
                },
        } => {
            let mut f = Flags::default();
            f.kafka(kafka).opt("kafka.topic", "topic", topic.clone());
            let cfg = load(&cli, None, &f)?;
            let r = rtlake_kafka::bench::consume(&cfg.kafka, &cfg.kafka.topic, *count).await?;
            let secs = r.elapsed.as_secs_f64().max(1e-9);
            println!(
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
    }
}

async fn produce_gbfs(cli: &Cli, a: &crate::cli::ProduceGbfsArgs) -> Result<()> {
    let mut f = Flags::default();
    f.kafka(&a.kafka)
        .opt("kafka.topic", "topic", Some(a.topic.clone()));
    let cfg = load(cli, None, &f)?;
    let interval = match &a.interval {
        Some(i) => Some(
            i.parse::<rtlake_core::units::HumanDuration>()
                .map_err(|e| anyhow::anyhow!("--interval {i}: {e}"))?
                .get(),
        ),
        None => None,
    };
    let r =
        rtlake_bikes::gbfs::produce(&cfg, &a.url, interval, a.polls, shutdown_on_signal()).await?;
    println!(
        "published {} polls, {} events to {}",
        r.polls, r.events, cfg.kafka.topic
    );
    Ok(())
}

/// A token cancelled by Ctrl-C or SIGTERM; a second Ctrl-C exits at once.
pub(crate) fn shutdown_on_signal() -> CancellationToken {
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

async fn broker(cli: &Cli, a: &cli::BrokerArgs) -> Result<()> {
    let mut f = Flags::default();
    f.opt("broker.listen", "listen", a.listen.clone())
        .path("broker.data", "data", a.data.as_deref())
        .opt("broker.storage", "storage", a.storage.clone())
        .opt(
            "broker.allow-remote",
            "allow-remote",
            a.allow_remote.then_some(true),
        );
    let cfg = load(cli, None, &f)?;
    let addr = cfg.broker.listen.parse().context("broker.listen")?;
    rtlake_broker::check_exposure(addr, cfg.broker.allow_remote)?;
    let engine: rtlake_broker::Engine = cfg.broker.storage.parse().map_err(anyhow::Error::msg)?;
    let shutdown = shutdown_on_signal();
    let b = rtlake_broker::EmbeddedBroker::start_with(addr, &cfg.broker.data, engine).await?;
    println!(
        "rtlake broker listening on {} (data in {}, storage {})",
        b.bootstrap(),
        cfg.broker.data.display(),
        cfg.broker.storage
    );
    println!("try: rtlake topics list --brokers {}", b.bootstrap());
    shutdown.cancelled().await;
    b.stop().await;
    Ok(())
}

fn producer_flags(a: &cli::ProduceBikesArgs) -> Flags {
    let mut f = Flags::default();
    f.kafka(&a.kafka)
        .opt("kafka.topic", "topic", a.topic.clone())
        .opt(
            "kafka.partitions",
            "partitions",
            a.partitions.map(i64::from),
        )
        .opt(
            "source.kind",
            "source",
            a.source.map(|s| match s {
                SourceArg::Replay => "replay",
                SourceArg::SeoulApi => "seoul-api",
                SourceArg::File => "file",
            }),
        )
        .opt("source.interval", "interval", a.interval.clone())
        .str("source.speed", "speed", a.speed.as_deref())
        .opt("source.start", "start", a.start.clone())
        .opt("source.minutes", "minutes", a.minutes.map(|m| m as i64))
        .opt("source.scale", "scale", a.scale.map(i64::from))
        .path("source.data-dir", "data-dir", a.data_dir.as_deref())
        .path("source.state-file", "state-file", a.state_file.as_deref())
        .opt("source.api-base", "api-base", a.api_base.clone())
        .path(
            "source.api-key-file",
            "api-key-file",
            a.api_key_file.as_deref(),
        )
        .opt("producer.acks", "acks", a.acks.clone())
        .opt(
            "producer.idempotence",
            "no-idempotence",
            a.no_idempotence.then_some(false),
        )
        .opt("producer.linger", "linger", a.linger.clone())
        .str("producer.batch-size", "batch-size", a.batch_size.as_deref())
        .opt("producer.compression", "compression", a.compression.clone())
        .opt(
            "producer.max-in-flight",
            "max-in-flight",
            a.max_in_flight.map(i64::from),
        )
        .opt(
            "producer.metrics-listen",
            "metrics-listen",
            a.metrics_listen.clone(),
        );
    f
}

/// Serves /metrics on `addr` in the background (unless `off`); a busy port is a warning, not
/// a failure, so that a second worker on one machine still runs.
async fn start_metrics(addr: &str, key: &str, shutdown: CancellationToken) {
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

async fn serve(cli: &Cli, a: &cli::ServeArgs) -> Result<()> {
    let mut f = Flags::default();
    f.kafka(&a.kafka)
        .opt("lake.uri", "lake", a.lake.clone())
        .opt("serve.listen", "listen", a.listen.clone())
        .opt("kafka.topic", "topic", a.topic.clone());
    let cfg = load(cli, None, &f)?;
    let listener = rtlake_web::bind_dashboard(&cfg, "serve.listen / --listen").await?;
    println!(
        "rtlake serve: dashboard on http://{}/ (lake {}, Kafka {})",
        listener.local_addr()?,
        cfg.lake.uri,
        cfg.kafka.brokers
    );
    rtlake_web::serve(&cfg, listener, shutdown_on_signal()).await?;
    Ok(())
}

async fn produce(cli: &Cli, a: &cli::ProduceBikesArgs) -> Result<()> {
    let cfg = load(cli, None, &producer_flags(a))?;
    let source = match cfg.source.kind {
        rtlake_core::config::SourceKind::Replay => Source::Replay,
        rtlake_core::config::SourceKind::SeoulApi => Source::SeoulApi,
        rtlake_core::config::SourceKind::File => match &a.path {
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
    let report = rtlake_bikes::produce::produce(&cfg, source, shutdown).await?;
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    println!(
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

fn run_flags(a: &cli::RunArgs) -> Flags {
    let mut f = Flags::default();
    f.kafka(&a.kafka)
        .opt("lake.uri", "lake", a.lake.clone())
        .opt("kafka.topic", "topic", a.topic.clone())
        .opt("run.group-id", "group", a.group.clone())
        .opt(
            "run.assignment",
            "assignment",
            a.assignment.map(|s| match s {
                AssignmentArg::Group => "group",
                AssignmentArg::Static => "static",
            }),
        )
        .opt(
            "run.partitions",
            "partitions",
            a.partitions.as_ref().map(|p| {
                toml::Value::Array(
                    p.iter()
                        .map(|x| toml::Value::Integer(i64::from(*x)))
                        .collect(),
                )
            }),
        )
        .opt("run.instance-id", "instance-id", a.instance_id.clone())
        .opt(
            "run.session-timeout",
            "session-timeout",
            a.session_timeout.clone(),
        )
        .opt(
            "run.stall-timeout",
            "stall-timeout",
            a.stall_timeout.clone(),
        )
        .opt("run.sink-timeout", "sink-timeout", a.sink_timeout.clone())
        .opt(
            "run.sink-transactions",
            "sink-transactions",
            a.sink_transactions.clone(),
        )
        .opt(
            "run.assignment-strategy",
            "assignment-strategy",
            a.assignment_strategy.map(|s| match s {
                StrategyArg::Range => "range",
                StrategyArg::CooperativeSticky => "cooperative-sticky",
            }),
        )
        .opt(
            "run.max-batch-events",
            "max-batch-events",
            a.max_batch_events.map(|n| n as i64),
        )
        .opt(
            "run.max-batch-bytes",
            "max-batch-bytes",
            a.max_batch_bytes.clone(),
        )
        .opt(
            "run.max-batch-delay",
            "max-batch-delay",
            a.max_batch_delay.clone(),
        )
        .opt("run.lateness", "lateness", a.lateness.clone())
        .opt("run.max-future", "max-future", a.max_future.clone())
        .opt(
            "run.unknown-fields",
            "unknown-fields",
            a.unknown_fields.clone(),
        )
        .opt(
            "run.trigger",
            "trigger",
            a.trigger.map(|t| match t {
                TriggerArg::ProcessingTime => "processing-time",
                TriggerArg::AvailableNow => "available-now",
                TriggerArg::LowLatency => "low-latency",
            }),
        )
        .opt("run.source", "source", a.source.clone())
        .opt(
            "run.starting-offsets",
            "starting-offsets",
            a.starting_offsets.clone(),
        )
        .opt(
            "run.max-offsets-per-trigger",
            "max-offsets-per-trigger",
            a.max_offsets_per_trigger.map(|n| n as i64),
        )
        .opt("run.checkpoint", "checkpoint", a.checkpoint.clone())
        .opt(
            "run.fail-on-data-loss",
            "no-fail-on-data-loss",
            a.no_fail_on_data_loss.then_some(false),
        )
        .opt(
            "run.metrics-listen",
            "metrics-listen",
            a.metrics_listen.clone(),
        );
    f
}

async fn run(cli: &Cli, a: &cli::RunArgs) -> Result<()> {
    let cfg = load(cli, a.pipeline.as_ref(), &run_flags(a))?;
    let started = std::time::Instant::now();
    let shutdown = shutdown_on_signal();
    start_metrics(
        &cfg.run.metrics_listen,
        "run.metrics-listen",
        shutdown.clone(),
    )
    .await;
    let r = rtlake_stream::ingest::run(&cfg, &rtlake_bikes::stream::registry(), shutdown).await?;
    let secs = started.elapsed().as_secs_f64();
    let rows: Vec<String> = r.rows.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!(
        "processed {} messages in {} epochs in {:.1} s ({:.0} events/s); rows: {}",
        r.messages,
        r.epochs,
        secs,
        r.messages as f64 / secs.max(1e-9),
        rows.join(", ")
    );
    if let (Some(p50), Some(p99)) = (r.latency_quantile(0.5), r.latency_quantile(0.99)) {
        println!(
            "event-to-lake latency (Kafka timestamp to committed): p50 {p50} ms, p99 {p99} ms"
        );
    }
    Ok(())
}

async fn sql(cli: &Cli, a: &cli::SqlArgs) -> Result<()> {
    let mut f = Flags::default();
    f.opt("lake.uri", "lake", a.lake.clone());
    let cfg = load(cli, None, &f)?;
    let lake = rtlake_lake::Lake::open(&cfg.lake)?;
    let session = rtlake_query::LakeSql::open(&lake).await?;
    let format = match a.format {
        FormatArg::Table => rtlake_query::Format::Table,
        FormatArg::Csv => rtlake_query::Format::Csv,
        FormatArg::Json => rtlake_query::Format::Json,
    };
    if session.tables().is_empty() {
        eprintln!(
            "note: the lake at {} has no tables yet (run `rtlake demo` or `rtlake run` first)",
            lake.root()
        );
    }
    if let Some(q) = &a.sql {
        return run_statement(&session, q, format).await;
    }
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    if tty {
        println!(
            "rtlake sql on {}; tables: {}",
            lake.root(),
            session.tables().join(", ")
        );
        println!("end statements with ; and quit with \\q");
    }
    let mut pending = String::new();
    let prompt = |p: &str| {
        if tty {
            print!("{}", if p.is_empty() { "rtlake> " } else { "    -> " });
            let _ = std::io::stdout().flush();
        }
    };
    prompt(&pending);
    for line in stdin.lock().lines() {
        let line = line?;
        let t = line.trim();
        if pending.is_empty() && matches!(t, "\\q" | "quit" | "exit") {
            break;
        }
        pending.push_str(&line);
        pending.push('\n');
        while let Some(end) = pending.find(';') {
            let stmt: String = pending[..end].to_string();
            pending = pending[end + 1..].trim_start().to_string();
            if !stmt.trim().is_empty()
                && let Err(e) = run_statement(&session, &stmt, format).await
            {
                if !tty {
                    return Err(e);
                }
                eprintln!("error: {e:#}");
            }
        }
        prompt(&pending);
    }
    if !pending.trim().is_empty() {
        run_statement(&session, &pending, format).await?;
    }
    Ok(())
}

async fn run_statement(
    session: &rtlake_query::LakeSql,
    stmt: &str,
    format: rtlake_query::Format,
) -> Result<()> {
    let trimmed = stmt.trim().trim_end_matches(';').trim();
    // SHOW TABLES lists the lake's tables, not DataFusion's information_schema.
    let q = if trimmed.eq_ignore_ascii_case("show tables") {
        "SELECT table_schema AS schema, table_name AS name, table_schema || '.' || table_name AS qualified \
         FROM information_schema.tables WHERE table_schema <> 'information_schema' ORDER BY 1, 2"
    } else {
        trimmed
    };
    let (schema, batches) = session
        .query(q)
        .await
        .with_context(|| format!("query failed: {}", one_line(trimmed)))?;
    let mut out = std::io::stdout().lock();
    rtlake_query::write(&mut out, &schema, &batches, format)?;
    Ok(())
}

fn one_line(s: &str) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.len() > 80 {
        format!("{}...", &s[..s.floor_char_boundary(77)])
    } else {
        s
    }
}
