//! The command line: subcommands and their flags. A setting's flag is declared beside its
//! section, in the crate that owns it, and sets that section's field (its key is shown in its
//! help), so it can also be set in the config file or as an `RTLAKE_*` variable.

use clap::{Args, Parser, Subcommand, ValueEnum};
use rtlake_bikes::config::SourceFlags;
use rtlake_broker::config::BrokerFlags;
use rtlake_core::units::{ByteSize, HumanDuration};
use rtlake_kafka::config::{BrokersFlag, KafkaFlags, ProducerFlags};
use rtlake_lake::config::LakeFlags;
use rtlake_stream::config::RunFlags;
use rtlake_web::config::ServeFlags;
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
        #[command(flatten)]
        kafka: KafkaFlags,
        /// Read this many messages (for a topic still being written) instead of what the topic
        /// holds at the start.
        #[arg(long)]
        count: Option<u64>,
    },
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
    /// The lake's table format [lake.format; default delta].
    #[arg(
        long = "lake-format",
        id = "lake_format",
        value_enum,
        value_name = "FORMAT"
    )]
    pub lake_format: Option<rtlake_lake::TableFormat>,
}

/// `rtlake serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub kafka: KafkaFlags,
    #[command(flatten)]
    pub lake: LakeFlags,
    #[command(flatten)]
    pub serve: ServeFlags,
}

/// `rtlake broker`.
#[derive(Debug, Args)]
pub struct BrokerArgs {
    #[command(flatten)]
    pub broker: BrokerFlags,
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
    pub kafka: BrokersFlag,
    /// The topic [kafka.topic]; pipelines/gbfs.toml reads gbfs.station-status.
    #[arg(long, default_value = "gbfs.station-status")]
    pub topic: String,
    /// Time between polls, e.g. 30s (default: the feed's ttl).
    #[arg(long, value_name = "DURATION")]
    pub interval: Option<HumanDuration>,
    /// Stop after this many polls (default: run until Ctrl-C).
    #[arg(long)]
    pub polls: Option<u64>,
}

/// `rtlake produce bikes`.
#[derive(Debug, Args)]
pub struct ProduceBikesArgs {
    /// The JSON Lines file, with --source file.
    #[arg(value_name = "PATH")]
    pub path: Option<PathBuf>,
    #[command(flatten)]
    pub kafka: KafkaFlags,
    /// Partitions if the topic must be created [kafka.partitions; default 3].
    #[arg(long)]
    pub partitions: Option<i32>,
    #[command(flatten)]
    pub source: SourceFlags,
    #[command(flatten)]
    pub producer: ProducerFlags,
}

/// `rtlake run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub kafka: KafkaFlags,
    #[command(flatten)]
    pub lake: LakeFlags,
    /// A pipeline file: TOML with the keys of the [run] section (pipeline, group-id, sinks...);
    /// see docs/pipelines.md. Without one, the built-in bike pipeline runs.
    #[arg(long, value_name = "FILE")]
    pub pipeline: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunFlags,
}

/// `rtlake replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub lake: LakeFlags,
    /// The table to re-publish (bronze.station_status, the only one events can be rebuilt from).
    #[arg(long, default_value = "bronze.station_status")]
    pub table: String,
    /// The topic to publish to (created if missing).
    #[arg(long, value_name = "TOPIC")]
    pub to: String,
    #[command(flatten)]
    pub kafka: BrokersFlag,
}

/// Which lake and which of its tables.
#[derive(Debug, Args)]
pub struct LakeArgs {
    #[command(flatten)]
    pub lake: LakeFlags,
    /// Only this table (`bronze.station_status`); repeat for several; default: every table.
    #[arg(long = "table", value_name = "TABLE")]
    pub tables: Vec<String>,
}

/// `rtlake lake ...`.
#[derive(Debug, Subcommand)]
pub enum LakeCommand {
    /// Per table: version, files, average file size, rows, the last commit and its age, and
    /// freshness: now minus the newest event the table holds (the Kafka timestamp its latest
    /// pipeline commit recorded; "-" for a table no pipeline commit of this version stamped).
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
        target_size: Option<ByteSize>,
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
        retention: Option<HumanDuration>,
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
    #[command(flatten)]
    pub lake: LakeFlags,
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
        kafka: BrokersFlag,
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
        kafka: BrokersFlag,
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
        kafka: BrokersFlag,
    },
}

#[cfg(test)]
mod tests {
    /// clap's own checks of every subcommand (two flags of one name, a bad default), which it
    /// otherwise makes only when that subcommand runs.
    #[test]
    fn every_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
