//! The command line: subcommands and their flags. Every flag maps to a config key (shown in its
//! help), so it can also be set in the config file or as an `RTLAKE_*` variable.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// rtlake: a real-time data lake in one binary.
///
/// Kafka in, exactly-once Delta Lake tables out, SQL on top. Start with `rtlake demo`, which runs
/// the whole pipeline on an embedded broker; then query it with `rtlake sql`.
///
/// Settings come from, in rising order: built-in defaults, a TOML file (--config, or
/// ./rtlake.toml if present), RTLAKE_<SECTION>_<KEY> variables (RTLAKE_KAFKA_BROKERS sets
/// kafka.brokers) and flags.
#[derive(Debug, Parser)]
#[command(name = "rtlake", version, max_term_width = 100)]
pub struct Cli {
    /// A TOML config file (default: ./rtlake.toml when it exists).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log filter, e.g. `info`, `debug`, `rtlake_stream=debug` (also RTLAKE_LOG).
    #[arg(long, global = true, value_name = "FILTER")]
    pub log: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run everything on one machine: embedded broker, replay producer, processor.
    ///
    /// State lives under --dir (default ./rtlake-data): the broker's log, the lake, and the
    /// replay's clock. Ctrl-C stops everything cleanly; running it again continues where it
    /// stopped.
    Demo(DemoArgs),
    /// Run the embedded Kafka-compatible broker (durable on SQLite).
    Broker(BrokerArgs),
    /// Publish events to Kafka.
    Produce {
        /// What to publish.
        #[command(subcommand)]
        what: ProduceCommand,
    },
    /// Run the stream processor: Kafka → bronze, silver and gold tables (+ _rejected), exactly once.
    Run(RunArgs),
    /// Query the lake with SQL (DataFusion). Without a statement, an interactive prompt.
    ///
    /// Tables are registered by name: bronze.station_status, _rejected, ... Besides SELECT:
    /// SHOW TABLES, DESCRIBE <table>, EXPLAIN <query>.
    Sql(SqlArgs),
    /// Serve the live dashboard, the pipeline and Kafka pages, the read-only SQL API and
    /// /metrics (http://127.0.0.1:8080/ by default).
    Serve(ServeArgs),
    /// Manage topics through the Kafka admin API.
    Topics {
        /// The topic operation.
        #[command(subcommand)]
        op: TopicsCommand,
    },
    /// Re-publish a lake's history to Kafka: bronze.station_status as the producer's events,
    /// keyed by station, each source partition in offset order (to feed another pipeline or
    /// cluster, or rebuild a topic whose retention dropped it).
    Replay(ReplayArgs),
    /// Look after the lake's tables: their health, compaction, log checkpoints, vacuum.
    ///
    /// The processor does the same on a schedule (lake.maintenance-interval, default 10m);
    /// these run it now. All are safe beside a running pipeline: compaction commits with
    /// dataChange=false and keeps every pipeline's offsets, so nothing is lost or doubled.
    Lake {
        /// The maintenance operation.
        #[command(subcommand)]
        op: LakeCommand,
    },
    /// Measure a Kafka cluster (bench/README.md has the workloads and the figures).
    Bench {
        /// What to measure.
        #[command(subcommand)]
        what: BenchCommand,
    },
}

/// `rtlake bench ...`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Read a topic from the start with a plain consumer (every partition, no group) and print
    /// events/s: the cluster's read ceiling without any processing.
    Consume {
        /// The topic [kafka.topic].
        #[arg(long)]
        topic: Option<String>,
        #[command(flatten)]
        kafka: KafkaArgs,
        /// Read this many messages (for a topic still being written) instead of what the topic
        /// holds at the start.
        #[arg(long)]
        count: Option<u64>,
    },
}

/// Connection to a Kafka cluster.
#[derive(Debug, Args, Clone, Default)]
pub struct KafkaArgs {
    /// Bootstrap servers, host:port[,host:port] [kafka.brokers; default 127.0.0.1:9092].
    #[arg(long, value_name = "HOST:PORT,...")]
    pub brokers: Option<String>,
}

/// `rtlake demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the demo keeps its broker data, lake and replay clock.
    #[arg(long, default_value = "./rtlake-data", value_name = "DIR")]
    pub dir: PathBuf,
    /// The embedded broker's address.
    #[arg(long, default_value = "127.0.0.1:9092", value_name = "ADDR")]
    pub listen: String,
    /// Replay speed: a factor of real time (10 = a poll every 1.5 s) or `max`.
    #[arg(long, default_value = "10")]
    pub speed: String,
    /// Stop the replay after this many simulated minutes (default: run until Ctrl-C).
    #[arg(long)]
    pub minutes: Option<u64>,
    /// The dashboard's address (it also serves every component's /metrics), or `off`.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub dashboard: String,
    /// Run on this Kafka cluster instead of the embedded broker, e.g. the three brokers of
    /// `scripts/kafka.sh start` (the last line it prints).
    #[arg(long, value_name = "HOST:PORT,...")]
    pub brokers: Option<String>,
}

/// `rtlake serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// The lake: a path or URL [lake.uri; default ./rtlake-data/lake].
    #[arg(long, value_name = "URL_OR_PATH")]
    pub lake: Option<String>,
    /// The address to listen on [serve.listen; default 127.0.0.1:8080]. Use 0.0.0.0:PORT only
    /// if other machines should reach it: the SQL API reads the whole lake, so any address but
    /// loopback needs a token in RTLAKE_SERVE_AUTH_TOKEN [serve.auth-token], which every /api/
    /// request then carries (Authorization: Bearer TOKEN; the pages: open /#token=TOKEN).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// The station status topic the live view follows [kafka.topic].
    #[arg(long)]
    pub topic: Option<String>,
}

/// `rtlake broker`.
#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// The address to listen on and advertise [broker.listen; default 127.0.0.1:9092].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// The data folder, relative or absolute [broker.data; default ./rtlake-data/broker].
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Where records are kept: log (segment files, fast) or sqlite (nisshi's own engine, a row
    /// per record) [broker.storage; default log].
    #[arg(long, value_name = "log|sqlite")]
    pub storage: Option<String>,
    /// Listen on an address beyond loopback (0.0.0.0, a LAN address). The embedded broker has
    /// no authentication: whoever reaches the address reads and writes every topic. Without
    /// this flag such an address is refused [broker.allow-remote; default false].
    #[arg(long)]
    pub allow_remote: bool,
}

/// `rtlake produce ...`.
#[derive(Debug, Subcommand)]
pub enum ProduceCommand {
    /// Seoul bike station status to the station status topic, keyed by station id.
    Bikes(ProduceBikesArgs),
    /// Any GBFS bike-share system: polls its station_information and station_status feeds and
    /// publishes one event per station per poll, keyed by station id (for pipelines/gbfs.toml).
    ///
    /// Example: rtlake produce gbfs https://gbfs.example.org/gbfs.json --topic gbfs.station-status
    Gbfs(ProduceGbfsArgs),
}

/// `rtlake produce gbfs`.
#[derive(Debug, Args)]
pub struct ProduceGbfsArgs {
    /// The system's discovery file (gbfs.json), GBFS 1.x to 3.x.
    #[arg(value_name = "URL")]
    pub url: String,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// The topic [kafka.topic]; pipelines/gbfs.toml reads gbfs.station-status.
    #[arg(long, default_value = "gbfs.station-status")]
    pub topic: String,
    /// Time between polls, e.g. 30s (default: the feed's ttl).
    #[arg(long)]
    pub interval: Option<String>,
    /// Stop after this many polls (default: run until Ctrl-C).
    #[arg(long)]
    pub polls: Option<u64>,
}

/// Where the bike producer reads from.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SourceArg {
    /// Replay the recorded data (no key needed).
    Replay,
    /// Poll the live bikeList API (needs SEOUL_API_KEY or --api-key-file).
    SeoulApi,
    /// Publish a JSON Lines file as is (give its PATH).
    File,
}

/// `rtlake produce bikes`.
#[derive(Debug, Args)]
pub struct ProduceBikesArgs {
    /// The source [source.kind; default replay].
    #[arg(long, value_enum)]
    pub source: Option<SourceArg>,
    /// The JSON Lines file, with --source file.
    #[arg(value_name = "PATH")]
    pub path: Option<PathBuf>,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// The topic [kafka.topic; default bike.station-status].
    #[arg(long)]
    pub topic: Option<String>,
    /// Partitions if the topic must be created [kafka.partitions; default 3].
    #[arg(long)]
    pub partitions: Option<i32>,
    /// Time between polls, e.g. 15s [source.interval].
    #[arg(long)]
    pub interval: Option<String>,
    /// Replay speed: a factor of real time (60 = an hour a minute) or `max` [source.speed].
    #[arg(long)]
    pub speed: Option<String>,
    /// Replay start, RFC 3339 [source.start; default 2025-10-01T08:00:00+09:00].
    #[arg(long)]
    pub start: Option<String>,
    /// Replay length in simulated minutes [source.minutes; default: run on].
    #[arg(long)]
    pub minutes: Option<u64>,
    /// Replay copies of the city, for heavier loads [source.scale; default 1].
    #[arg(long)]
    pub scale: Option<u32>,
    /// Replay from this folder instead of the built-in recorded data [source.data-dir].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep the replay's clock here, so that a restart resumes [source.state-file].
    #[arg(long, value_name = "FILE")]
    pub state_file: Option<PathBuf>,
    /// bikeList API base URL [source.api-base].
    #[arg(long, value_name = "URL")]
    pub api_base: Option<String>,
    /// A file holding the API key (else SEOUL_API_KEY) [source.api-key-file].
    #[arg(long, value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
    /// acks: all, 1 or 0 [producer.acks; default all].
    #[arg(long)]
    pub acks: Option<String>,
    /// Turn idempotence off [producer.idempotence; default on].
    #[arg(long)]
    pub no_idempotence: bool,
    /// linger, e.g. 20ms [producer.linger].
    #[arg(long)]
    pub linger: Option<String>,
    /// Batch size, e.g. 1MiB [producer.batch-size].
    #[arg(long)]
    pub batch_size: Option<String>,
    /// none, gzip, snappy, lz4 or zstd [producer.compression; default lz4].
    #[arg(long)]
    pub compression: Option<String>,
    /// Max in-flight requests per connection, at most 5 with idempotence [producer.max-in-flight].
    #[arg(long)]
    pub max_in_flight: Option<u32>,
    /// Where to serve Prometheus /metrics, or `off` [producer.metrics-listen; default
    /// 127.0.0.1:9465].
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
}

/// When the processor stops.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TriggerArg {
    /// Run on: an epoch every --max-batch-delay or --max-batch-events.
    ProcessingTime,
    /// Drain what the topic holds now, then stop.
    AvailableNow,
    /// The next epoch as soon as data arrives (lowest latency).
    LowLatency,
}

/// How a worker gets partitions.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AssignmentArg {
    /// The pipeline's consumer group.
    Group,
    /// Partitions taken directly.
    Static,
}

/// Assignment strategies.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StrategyArg {
    /// Eager rebalancing.
    Range,
    /// Incremental rebalancing.
    CooperativeSticky,
}

/// `rtlake run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// The lake: a path or URL [lake.uri; default ./rtlake-data/lake].
    #[arg(long, value_name = "URL_OR_PATH")]
    pub lake: Option<String>,
    /// A pipeline file: TOML with the keys of the [run] section (pipeline, group-id, sinks...);
    /// see docs/pipelines.md. Without one, the built-in bike pipeline runs.
    #[arg(long, value_name = "FILE")]
    pub pipeline: Option<PathBuf>,
    /// Read from `kafka` (the default); `file:PATH`, JSON Lines from a file or a folder; or
    /// `bronze:LAKE`, a lake's bronze table replayed as the messages it was made from (a
    /// backfill: silver and gold rebuilt from bronze, row for row as streaming made them).
    /// Files and bronze are processed once, then the run stops [run.source].
    #[arg(long, value_name = "kafka|file:PATH|bronze:LAKE")]
    pub source: Option<String>,
    /// Where a new pipeline starts: earliest, latest, timestamp:<RFC 3339 or ms>, or JSON
    /// like '{"0": 42, "1": -2}' (-2 earliest, -1 latest) [run.starting-offsets; default earliest].
    /// A pipeline with positions in the lake resumes there instead.
    #[arg(long, value_name = "WHERE")]
    pub starting_offsets: Option<String>,
    /// At most this many messages per epoch [run.max-offsets-per-trigger].
    #[arg(long, value_name = "N")]
    pub max_offsets_per_trigger: Option<usize>,
    /// Skip offsets deleted by retention before they were read, with a warning, instead of
    /// stopping [run.fail-on-data-loss = false].
    #[arg(long)]
    pub no_fail_on_data_loss: bool,
    /// Where the offset log, commit log and state live [run.checkpoint; default
    /// <lake>/_checkpoints/<pipeline>].
    #[arg(long, value_name = "PATH")]
    pub checkpoint: Option<String>,
    /// Where to serve Prometheus /metrics, or `off` [run.metrics-listen; default 127.0.0.1:9464].
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// The topic to read [kafka.topic].
    #[arg(long)]
    pub topic: Option<String>,
    /// The consumer group [run.group-id; default rtlake-<pipeline>].
    #[arg(long)]
    pub group: Option<String>,
    /// How this worker gets partitions: group (join the pipeline's consumer group, rebalance
    /// with other workers) or static (take --partitions directly, no group coordinator, as
    /// Spark does) [run.assignment; default group].
    #[arg(long, value_enum)]
    pub assignment: Option<AssignmentArg>,
    /// With --assignment static, the partitions to read, e.g. 0,2 [run.partitions; default all].
    #[arg(long, value_name = "P,P,...", value_delimiter = ',')]
    pub partitions: Option<Vec<i32>>,
    /// In a group, this worker's static member id (group.instance.id): restarted with the same
    /// id it takes its partitions back at once. One id per worker [run.instance-id].
    #[arg(long, value_name = "ID")]
    pub instance_id: Option<String>,
    /// Partition assignment within the group [run.assignment-strategy; default cooperative-sticky].
    #[arg(long, value_enum)]
    pub assignment_strategy: Option<StrategyArg>,
    /// The group session timeout, e.g. 10s [run.session-timeout].
    #[arg(long, value_name = "DURATION")]
    pub session_timeout: Option<String>,
    /// Restart the consumer (resuming from the lake) when partitions with data deliver nothing
    /// for this long, e.g. 15s [run.stall-timeout].
    #[arg(long, value_name = "DURATION")]
    pub stall_timeout: Option<String>,
    /// Fail (and retry) an epoch whose Kafka sink deliveries take longer, e.g. 30s
    /// [run.sink-timeout].
    #[arg(long, value_name = "DURATION")]
    pub sink_timeout: Option<String>,
    /// Kafka sinks in transactions: auto (where the cluster has them), on or off
    /// [run.sink-transactions; default auto].
    #[arg(long, value_name = "auto|on|off")]
    pub sink_transactions: Option<String>,
    /// Close an epoch at this many events [run.max-batch-events; default 50000].
    #[arg(long)]
    pub max_batch_events: Option<usize>,
    /// ... or at this many bytes of message keys and values, e.g. 64MiB
    /// [run.max-batch-bytes; default 64MiB].
    #[arg(long, value_name = "SIZE")]
    pub max_batch_bytes: Option<String>,
    /// ... or when its first event is this old [run.max-batch-delay; default 500ms].
    #[arg(long)]
    pub max_batch_delay: Option<String>,
    /// Allowed lateness of event time behind its partition's newest, e.g. 10m [run.lateness].
    #[arg(long)]
    pub lateness: Option<String>,
    /// How far ahead of the clock an event's time may be before it is rejected as `future`,
    /// e.g. 1h [run.max-future; default 1h].
    #[arg(long)]
    pub max_future: Option<String>,
    /// Event fields the pipeline does not know: ignore, keep (in bronze's `extra` column, added
    /// to an existing table), or reject (to _rejected) [run.unknown-fields; default ignore].
    #[arg(long, value_name = "ignore|keep|reject")]
    pub unknown_fields: Option<String>,
    /// processing-time (run on), available-now (drain and stop) or low-latency (the next
    /// epoch as soon as data arrives) [run.trigger].
    #[arg(long, value_enum)]
    pub trigger: Option<TriggerArg>,
}

/// `rtlake replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The lake: a path or URL [lake.uri; default ./rtlake-data/lake].
    #[arg(long, value_name = "URL_OR_PATH")]
    pub lake: Option<String>,
    /// The table to re-publish (bronze.station_status, the only one events can be rebuilt from).
    #[arg(long, default_value = "bronze.station_status")]
    pub table: String,
    /// The topic to publish to (created if missing).
    #[arg(long, value_name = "TOPIC")]
    pub to: String,
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

/// Which lake and which of its tables.
#[derive(Debug, Args)]
pub struct LakeArgs {
    /// The lake: a path or URL [lake.uri; default ./rtlake-data/lake].
    #[arg(long, value_name = "URL_OR_PATH")]
    pub lake: Option<String>,
    /// Only this table (`bronze.station_status`); repeat for several; default: every table.
    #[arg(long = "table", value_name = "TABLE")]
    pub tables: Vec<String>,
}

/// `rtlake lake ...`.
#[derive(Debug, Subcommand)]
pub enum LakeCommand {
    /// Per table: version, files, average file size, rows, the last commit and its age.
    Status {
        #[command(flatten)]
        lake: LakeArgs,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: FormatArg,
    },
    /// Compact small files, per partition, into files of about the target size.
    Optimize {
        #[command(flatten)]
        lake: LakeArgs,
        /// Target file size [lake.target-file-size; default 64MiB].
        #[arg(long, value_name = "SIZE")]
        target_size: Option<String>,
        /// Z-order the compacted files by these columns [lake.z-order].
        #[arg(long, value_name = "COLUMN", value_delimiter = ',')]
        z_order: Vec<String>,
    },
    /// Write a Delta log checkpoint and remove log entries past the log retention.
    Checkpoint {
        #[command(flatten)]
        lake: LakeArgs,
    },
    /// Print the statements that register every table and view in another engine's catalog
    /// (Athena, Glue through the AWS CLI, Spark with delta-spark, Trino's Delta connector).
    Ddl {
        #[command(flatten)]
        lake: LakeArgs,
        /// The engine.
        #[arg(long = "for", value_enum)]
        engine: EngineArg,
    },
    /// Delete data files no version within the retention references.
    Vacuum {
        #[command(flatten)]
        lake: LakeArgs,
        /// Keep files referenced within this long [lake.vacuum-retention; default 7d].
        #[arg(long, value_name = "DURATION")]
        retention: Option<String>,
    },
}

/// Engines `rtlake lake ddl` writes for.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EngineArg {
    /// Amazon Athena: external Delta tables (in the Glue catalog) and views.
    Athena,
    /// AWS Glue Data Catalog: `aws glue create-database` and `create-table` commands.
    Glue,
    /// Apache Spark with delta-spark: CREATE TABLE ... USING DELTA LOCATION, and views.
    Spark,
    /// Trino's Delta Lake connector (catalog `delta`): register_table, and views.
    Trino,
}

/// Output formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    /// An aligned table.
    Table,
    /// CSV with a header.
    Csv,
    /// JSON Lines.
    Json,
}

/// `rtlake sql`.
#[derive(Debug, Args)]
pub struct SqlArgs {
    /// The lake: a path or URL [lake.uri; default ./rtlake-data/lake].
    #[arg(long, value_name = "URL_OR_PATH")]
    pub lake: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: FormatArg,
    /// The statement; without one, statements are read from standard input (end each with ;).
    pub sql: Option<String>,
}

/// `rtlake topics ...`.
#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create a topic.
    Create {
        /// Its name.
        name: String,
        #[command(flatten)]
        kafka: KafkaArgs,
        /// Partitions [default: kafka.partitions, 3].
        #[arg(long)]
        partitions: Option<i32>,
        /// Replication factor, or -1 for the cluster's default.replication.factor [default:
        /// kafka.replication-factor, -1].
        #[arg(long)]
        replication_factor: Option<i32>,
        /// Retention, e.g. 7d as 168h, or -1 for forever (sets retention.ms).
        #[arg(long)]
        retention: Option<String>,
        /// delete or compact (sets cleanup.policy).
        #[arg(long)]
        cleanup_policy: Option<String>,
        /// Any other topic config, KEY=VALUE (repeatable).
        #[arg(long = "config-entry", value_name = "KEY=VALUE")]
        entries: Vec<String>,
    },
    /// List topics with partitions and message counts.
    List {
        #[command(flatten)]
        kafka: KafkaArgs,
    },
    /// Show a topic's partitions, offsets, config and consumer groups with their lag.
    Describe {
        /// The topic.
        name: String,
        /// Also show this consumer group's lag (repeatable); the pipeline's own group,
        /// rtlake-<run.pipeline>, is always checked.
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
        #[command(flatten)]
        kafka: KafkaArgs,
    },
}
