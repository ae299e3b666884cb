//! One function per subcommand; each builds its config and calls a library's `run`.

use crate::cli::{
    self, AssignmentArg, BenchCommand, Cli, Command, FormatArg, ProduceCommand, SourceArg,
    StrategyArg, TopicsCommand, TriggerArg,
};
use crate::settings::{Flags, load};
use anyhow::{Context, Result, bail};
use rtlake_bikes::produce::Source;
use std::io::{BufRead, IsTerminal, Write};
use tokio_util::sync::CancellationToken;

/// Runs the parsed command.
pub async fn dispatch(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Demo(a) => demo(&cli, a).await,
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
        Command::Topics { op } => topics(&cli, op).await,
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
fn shutdown_on_signal() -> CancellationToken {
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
        .opt("broker.storage", "storage", a.storage.clone());
    let cfg = load(cli, None, &f)?;
    let addr = cfg.broker.listen.parse().context("broker.listen")?;
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

async fn topics(cli: &Cli, op: &TopicsCommand) -> Result<()> {
    match op {
        TopicsCommand::Create {
            name,
            kafka,
            partitions,
            replication_factor,
            retention,
            cleanup_policy,
            entries,
        } => {
            let mut f = Flags::default();
            f.kafka(kafka);
            let cfg = load(cli, None, &f)?;
            let mut config = Vec::new();
            if let Some(r) = retention {
                let ms = if r.trim() == "-1" {
                    "-1".to_string()
                } else {
                    let d: rtlake_core::units::HumanDuration = r
                        .parse()
                        .map_err(|e: String| anyhow::anyhow!("--retention: {e}"))?;
                    d.get().as_millis().to_string()
                };
                config.push(("retention.ms".to_string(), ms));
            }
            if let Some(p) = cleanup_policy {
                if !matches!(
                    p.as_str(),
                    "delete" | "compact" | "compact,delete" | "delete,compact"
                ) {
                    bail!("--cleanup-policy: `{p}` is not delete, compact or compact,delete");
                }
                config.push(("cleanup.policy".to_string(), p.clone()));
            }
            for e in entries {
                let (k, v) = e
                    .split_once('=')
                    .with_context(|| format!("--config-entry `{e}` is not KEY=VALUE"))?;
                config.push((k.trim().to_string(), v.trim().to_string()));
            }
            let spec = rtlake_kafka::admin::TopicSpec {
                name: name.clone(),
                partitions: partitions.unwrap_or(cfg.kafka.partitions),
                replication_factor: replication_factor.unwrap_or(cfg.kafka.replication_factor),
                config,
            };
            if spec.partitions < 1 || (spec.replication_factor < 1 && spec.replication_factor != -1)
            {
                bail!(
                    "--partitions must be at least 1, and --replication-factor at least 1 (or -1: the cluster's default)"
                );
            }
            if rtlake_kafka::admin::create_topic(&cfg.kafka, &spec).await? {
                let rf = if spec.replication_factor == -1 {
                    "the cluster's default".to_string()
                } else {
                    spec.replication_factor.to_string()
                };
                println!(
                    "created topic {name} ({} partitions, replication factor {rf})",
                    spec.partitions
                );
            } else {
                println!("topic {name} already exists");
            }
        }
        TopicsCommand::List { kafka } => {
            let mut f = Flags::default();
            f.kafka(kafka);
            let cfg = load(cli, None, &f)?;
            let list = rtlake_kafka::admin::list_topics(&cfg.kafka).await?;
            println!("{:<40} {:>10} {:>12}", "TOPIC", "PARTITIONS", "MESSAGES");
            for t in list {
                println!("{:<40} {:>10} {:>12}", t.name, t.partitions, t.messages);
            }
        }
        TopicsCommand::Describe {
            name,
            kafka,
            groups,
        } => {
            let mut f = Flags::default();
            f.kafka(kafka);
            let cfg = load(cli, None, &f)?;
            let mut groups = groups.clone();
            groups.push(cfg.run.group());
            let d = rtlake_kafka::admin::describe_topic(&cfg.kafka, name, &groups).await?;
            println!("topic {} ({} partitions)", d.name, d.partitions.len());
            println!(
                "\n{:>9} {:>7} {:<10} {:>12} {:>12} {:>10}",
                "PARTITION", "LEADER", "REPLICAS", "LOW", "HIGH", "MESSAGES"
            );
            for p in &d.partitions {
                let replicas = p
                    .replicas
                    .iter()
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>()
                    .join(",");
                println!(
                    "{:>9} {:>7} {:<10} {:>12} {:>12} {:>10}",
                    p.id,
                    p.leader,
                    replicas,
                    p.low,
                    p.high,
                    p.high - p.low
                );
            }
            if !d.config.is_empty() {
                println!("\nCONFIG");
                for (k, v) in &d.config {
                    println!("  {k} = {v}");
                }
            }
            println!(
                "\n{:<30} {:>9} {:>12} {:>10}",
                "CONSUMER GROUP", "PARTITION", "COMMITTED", "LAG"
            );
            if d.groups.is_empty() {
                println!("  (no group has committed offsets on this topic)");
            }
            for n in &d.notes {
                println!("note: {n}");
            }
            for g in &d.groups {
                let c = g.committed.map_or("-".to_string(), |c| c.to_string());
                println!("{:<30} {:>9} {:>12} {:>10}", g.group, g.partition, c, g.lag);
            }
            if !d.members.is_empty() {
                println!("\n{:<30} {:<40} {:<20} HOST", "GROUP", "MEMBER", "CLIENT");
                for m in &d.members {
                    println!(
                        "{:<30} {:<40} {:<20} {}",
                        m.group, m.member_id, m.client_id, m.host
                    );
                }
            }
        }
    }
    Ok(())
}

async fn demo(cli: &Cli, a: &cli::DemoArgs) -> Result<()> {
    let dir = &a.dir;
    let mut f = Flags::default();
    f.opt("broker.listen", "listen", Some(a.listen.clone()))
        .opt("kafka.brokers", "listen", Some(a.listen.clone()))
        // The demo's one processor takes every partition itself: no group to rebalance.
        .opt("run.assignment", "demo", Some("static"))
        .path("broker.data", "dir", Some(&dir.join("broker")))
        .opt(
            "lake.uri",
            "dir",
            Some(dir.join("lake").display().to_string()),
        )
        .path(
            "source.state-file",
            "dir",
            Some(&dir.join("replay-state.json")),
        )
        .opt("source.kind", "demo", Some("replay"))
        .str("source.speed", "speed", Some(&a.speed))
        .opt("source.minutes", "minutes", a.minutes.map(|m| m as i64));
    if a.dashboard != "off" {
        f.opt("serve.listen", "dashboard", Some(a.dashboard.clone()));
    }
    if let Some(b) = &a.brokers {
        f.opt("kafka.brokers", "brokers", Some(b.clone()));
    }
    let cfg = load(cli, None, &f)?;
    let shutdown = shutdown_on_signal();
    // Bind first: a busy dashboard port fails before anything starts.
    let dashboard = match a.dashboard.as_str() {
        "off" => None,
        _ => Some(rtlake_web::bind_dashboard(&cfg, "--dashboard").await?),
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
    let producer = {
        let (cfg, token) = (cfg.clone(), shutdown.child_token());
        tokio::spawn(
            async move { rtlake_bikes::produce::produce(&cfg, Source::Replay, token).await },
        )
    };
    let processor = {
        let (cfg, token) = (cfg.clone(), shutdown.child_token());
        tokio::spawn(async move {
            rtlake_stream::ingest::run(&cfg, &rtlake_bikes::stream::registry(), token).await
        })
    };
    let web_url = dashboard
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(|a| format!("http://{a}/"));
    if let Some(listener) = dashboard {
        let (cfg, token) = (cfg.clone(), shutdown.child_token());
        tokio::spawn(async move {
            if let Err(e) = rtlake_web::serve(&cfg, listener, token).await {
                tracing::error!(error = %e, "dashboard stopped");
            }
        });
    }
    let lake = dir.join("lake");
    match &broker {
        Some(b) => println!(
            "rtlake demo is running: embedded broker {}, lake {}",
            b.bootstrap(),
            lake.display()
        ),
        None => println!(
            "rtlake demo is running on the Kafka cluster {}, lake {}",
            cfg.kafka.brokers,
            lake.display()
        ),
    }
    if let Some(url) = &web_url {
        println!(
            "dashboard: {url}  (pipeline: {url}pipeline, Kafka: {url}kafka, metrics: {url}metrics)"
        );
    }
    println!(
        "the replay publishes a poll of 2,721 stations every {:.1} s; in another terminal, try:",
        15.0 / speed_factor(&a.speed)
    );
    println!(
        "  rtlake sql --lake {} \"SELECT count(*) AS events, max(polled_at) AS latest FROM bronze.station_status\"",
        lake.display()
    );
    println!(
        "  rtlake sql --lake {} \"SELECT district, sum(bikes_parked) AS bikes FROM bronze.station_status WHERE polled_at = (SELECT max(polled_at) FROM bronze.station_status) GROUP BY district ORDER BY bikes DESC\"",
        lake.display()
    );
    println!(
        "  rtlake sql --lake {} \"SELECT district, sum(rentals) AS rentals, sum(returns) AS returns FROM silver.station_changes GROUP BY district ORDER BY rentals DESC LIMIT 5\"",
        lake.display()
    );
    println!(
        "  rtlake topics describe {} --brokers {}",
        cfg.kafka.topic, cfg.kafka.brokers
    );
    println!("Ctrl-C stops everything; running the demo again continues where it stopped.");
    let (mut producer, mut processor) = (producer, processor);
    let mut producer_done = false;
    let result: Result<()> = loop {
        tokio::select! {
            r = &mut producer, if !producer_done => {
                producer_done = true;
                match r {
                    // The replay ran its --minutes; the processor goes on until Ctrl-C.
                    Ok(Ok(rep)) if !shutdown.is_cancelled() => println!("replay finished: {} events", rep.sent),
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
