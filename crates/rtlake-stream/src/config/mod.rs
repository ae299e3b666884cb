//! The `[run]` section: the stream processor, its trigger, source options, sinks and declared
//! stages; its checks, and its flags.

mod check;
mod declared;
#[cfg(test)]
mod tests;

pub use declared::{InputConfig, Mode, StageConfig, StaticTable};

use rtlake_core::units::{ByteSize, HumanDuration};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Kafka consumer partition assignment strategy.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum AssignmentStrategy {
    /// Eager: every member gives up its partitions on each rebalance.
    Range,
    /// Incremental: only the partitions that move are revoked.
    CooperativeSticky,
}

impl AssignmentStrategy {
    /// The librdkafka name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Range => "range",
            Self::CooperativeSticky => "cooperative-sticky",
        }
    }
}

/// How a worker gets its partitions.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Assignment {
    /// Join the pipeline's consumer group: workers share the partitions and rebalance as they
    /// come and go (scale-out across processes).
    Group,
    /// Take the partitions directly (`run.partitions`, or all), as Spark's driver does: no group
    /// coordinator, no rebalance, no session to lose. Group offsets are still committed, so
    /// standard tools show the lag.
    Static,
}

/// Whether Kafka sinks publish in transactions.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SinkTransactions {
    /// When the cluster has them (Apache Kafka does, the embedded broker does not).
    Auto,
    /// Always; the run fails where the cluster has none.
    On,
    /// Never: at least once, with deduplication headers.
    Off,
}

/// How a table sink writes its rows.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SinkMode {
    /// Every row is a new row of the table.
    #[default]
    Append,
    /// Rows are merged into the table by `primary-key`: a row with a key the table holds
    /// replaces that row, `delete-when` rows remove it; the table holds the current state.
    Upsert,
}

/// When the processor runs an epoch and when it stops.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// Run on and on: an epoch closes at `max-batch-events` or `max-batch-delay`.
    ProcessingTime,
    /// Drain what the topic holds when the run starts, then stop.
    AvailableNow,
    /// Start the next epoch as soon as data arrives: an epoch closes whenever the consumer has
    /// nothing more to hand over at once (or at `max-batch-events`).
    LowLatency,
}

/// Where a new pipeline starts reading (a pipeline with positions in the lake resumes there).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartingOffsets {
    /// The oldest offset the topic still holds.
    Earliest,
    /// Only what arrives after the start.
    Latest,
    /// The first offset at or after a time (ms since the Unix epoch).
    Timestamp(i64),
    /// Per partition: an offset, or -2 (earliest) / -1 (latest) as in Spark; partitions not
    /// named start at the earliest.
    Offsets(BTreeMap<i32, i64>),
}

impl std::str::FromStr for StartingOffsets {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        match s {
            "earliest" => return Ok(Self::Earliest),
            "latest" => return Ok(Self::Latest),
            _ => {}
        }
        if let Some(t) = s.strip_prefix("timestamp:") {
            let t = t.trim();
            let ms = match t.parse::<i64>() {
                Ok(ms) => ms,
                Err(_) => rtlake_core::time::parse_rfc3339(t)
                    .map_err(|e| format!("{e}"))?
                    .timestamp_millis(),
            };
            return Ok(Self::Timestamp(ms));
        }
        if s.starts_with('{') {
            let m: BTreeMap<String, i64> = serde_json::from_str(s)
                .map_err(|e| format!("not a JSON object of partition to offset: {e}"))?;
            let mut out = BTreeMap::new();
            for (k, v) in m {
                let p: i32 = k
                    .parse()
                    .map_err(|_| format!("partition {k:?} is not a number"))?;
                if v < -2 {
                    return Err(format!(
                        "offset {v} of partition {p} must be -2 (earliest), -1 (latest) or at least 0"
                    ));
                }
                out.insert(p, v);
            }
            return Ok(Self::Offsets(out));
        }
        Err("write earliest, latest, timestamp:<RFC 3339 or ms>, or a JSON object like {\"0\": 42, \"1\": -2}".into())
    }
}

/// One sink of a pipeline: an operator's rows into a lake table or a Kafka topic. Sinks that
/// name the same operator share one instance of it (one state, several outputs per epoch).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SinkConfig {
    /// A registered operator (a domain's, such as `changes`) or a declared stage's name.
    pub operator: String,
    /// A Delta table `ns.name` (default: the operator's own table), unless `topic` is set.
    pub table: Option<String>,
    /// A Kafka topic to publish the rows to as JSON, instead of a table.
    pub topic: Option<String>,
    /// The column whose value keys a Kafka message (default: the operator's registered key; a
    /// declared stage's sink names it).
    pub key: Option<String>,
    /// A query over the operator's rows of each epoch, as table `input` (projection, filter);
    /// its result is what a table sink writes. Table sinks only.
    pub sql: Option<String>,
    /// The table's format when the sink creates it, `delta` or `iceberg` (default: the lake's,
    /// `lake.format`); one pipeline may write both. A table that exists keeps its own: a
    /// sink that names the other format is refused.
    pub format: Option<rtlake_lake::TableFormat>,
    /// A Kafka sink's message format: `json` (default, one object per row) or `avro` (the
    /// Confluent wire format, its schema registered in `schema-registry` under `<topic>-value`).
    pub value_format: Option<String>,
    /// The schema registry of an `avro` Kafka sink (credentials as the input's, from the
    /// environment).
    pub schema_registry: Option<String>,
    /// A table sink's `append` (default) or `upsert`.
    #[serde(default)]
    pub mode: SinkMode,
    /// An upsert sink's key columns: the epoch's last row of each key replaces the table's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub primary_key: Vec<String>,
    /// An upsert sink's SQL condition over its rows that marks a row as deleting its key
    /// (`_op = 'd'` for Debezium's changes).
    pub delete_when: Option<String>,
    /// An upsert sink's column that orders a key's versions (a change's source position, an
    /// event time): a row never replaces or deletes a table row with a greater value, so a
    /// change replayed late does not undo a newer one. Default: the order rows arrive in.
    pub order_by: Option<String>,
}

/// The stream processor.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct RunConfig {
    /// The pipeline's name: its consumer group and its transaction ids in the lake.
    pub pipeline: String,
    /// The consumer group (default `rtlake-<pipeline>`).
    pub group_id: Option<String>,
    /// `range` or `cooperative-sticky` (default).
    pub assignment_strategy: AssignmentStrategy,
    /// `group` (default: a consumer group) or `static` (take `partitions` directly).
    pub assignment: Assignment,
    /// With static assignment, the partitions this worker reads (default: all).
    pub partitions: Option<Vec<i32>>,
    /// With a group, the static member id (`group.instance.id`, KIP-345): a worker restarted
    /// with the same id takes its partitions back at once instead of after a rebalance. Give
    /// each worker its own.
    pub instance_id: Option<String>,
    /// The consumer group session timeout: how long the group waits for a silent worker.
    pub session_timeout: HumanDuration,
    /// A worker whose partitions have data it has not received for this long (or that has no
    /// partitions while nobody commits and the topic has data) drops its consumer and starts
    /// a new one at the lake's positions.
    pub stall_timeout: HumanDuration,
    /// How long a Kafka sink waits for its messages' deliveries before the epoch fails (and is
    /// retried from the lake's positions).
    pub sink_timeout: HumanDuration,
    /// Kafka sinks: `auto` (transactions when the cluster has them), `on` or `off`.
    pub sink_transactions: SinkTransactions,
    /// An epoch closes when it holds this many events...
    pub max_batch_events: usize,
    /// ...or this many bytes of keys and values (so large messages cannot make an epoch hold
    /// gigabytes; one message larger than this is an epoch of its own)...
    pub max_batch_bytes: ByteSize,
    /// ...or when its first event is this old.
    pub max_batch_delay: HumanDuration,
    /// `processing-time` (run on) or `available-now` (drain and stop).
    pub trigger: Trigger,
    /// How far behind the newest event time of its partition an event may be before it is late.
    pub lateness: HumanDuration,
    /// How far ahead of the clock an event's time may be: a later one (a bad clock upstream)
    /// goes to `_rejected` as `future` and moves no watermark and no state.
    pub max_future: HumanDuration,
    /// The most of a refused message's value that a `_rejected` row keeps; a longer value is
    /// cut, and the row's error says so and gives its whole size.
    pub rejected_value_max: ByteSize,
    /// Fields of an event that the pipeline does not know: `ignore` them (the default), `keep`
    /// them in bronze's `extra` column (JSON; the column is added to an existing table), or
    /// `reject` the event to `_rejected` as `decode`, naming the field.
    pub unknown_fields: UnknownFields,
    /// Where the offset log, commit log and state live (default `<lake>/_checkpoints/<pipeline>`).
    pub checkpoint: Option<String>,
    /// `kafka` (the topic `kafka.topic`), `file:PATH` (JSON Lines, a file or a folder), or
    /// `bronze:LAKE` (the bronze table of a lake, replayed as the messages it was made from: a
    /// backfill of the other tables).
    pub source: String,
    /// Where a new pipeline starts: `earliest`, `latest`, `timestamp:<time>` or a JSON object.
    pub starting_offsets: String,
    /// At most this many messages per epoch over all partitions (none: `max-batch-events`).
    pub max_offsets_per_trigger: Option<usize>,
    /// Whether a pipeline stops when offsets it has not read were deleted (retention), or
    /// skips them with a warning.
    pub fail_on_data_loss: bool,
    /// Where `rtlake run` serves `/metrics` (`off`: nowhere).
    pub metrics_listen: String,
    /// The sinks (default: the domain's pipeline; see [`RunConfig::sinks`]).
    pub sinks: Option<Vec<SinkConfig>>,
    /// A declared input: the messages' format and schema (any topic). Without it, the
    /// messages are decoded by the domain's registered decoder.
    pub input: Option<InputConfig>,
    /// Static tables for the stages' joins, loaded at start.
    pub tables: Vec<StaticTable>,
    /// Declared stages (SQL or windows) over the declared input, named by sinks.
    pub stages: Vec<StageConfig>,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            pipeline: "main".into(),
            group_id: None,
            assignment_strategy: AssignmentStrategy::CooperativeSticky,
            assignment: Assignment::Group,
            partitions: None,
            instance_id: None,
            session_timeout: HumanDuration::from_secs(10),
            stall_timeout: HumanDuration::from_secs(15),
            sink_timeout: HumanDuration::from_secs(30),
            sink_transactions: SinkTransactions::Auto,
            max_batch_events: 50_000,
            max_batch_bytes: ByteSize(64 << 20),
            max_batch_delay: HumanDuration::from_millis(500),
            trigger: Trigger::ProcessingTime,
            lateness: HumanDuration::from_secs(600),
            max_future: HumanDuration::from_secs(3600),
            rejected_value_max: ByteSize(1 << 20),
            unknown_fields: UnknownFields::Ignore,
            checkpoint: None,
            source: "kafka".into(),
            starting_offsets: "earliest".into(),
            max_offsets_per_trigger: None,
            fail_on_data_loss: true,
            metrics_listen: "127.0.0.1:9464".into(),
            sinks: None,
            input: None,
            tables: Vec::new(),
            stages: Vec::new(),
        }
    }
}

impl RunConfig {
    /// The consumer group id.
    pub fn group(&self) -> String {
        self.group_id
            .clone()
            .unwrap_or_else(|| format!("rtlake-{}", self.pipeline))
    }

    /// The parsed starting offsets (validated at load).
    pub fn starting(&self) -> StartingOffsets {
        self.starting_offsets
            .parse()
            .unwrap_or(StartingOffsets::Earliest)
    }

    /// The sinks: as configured, or `default` (the domain's pipeline; without its Kafka
    /// topics when reading files, a backfill that needs no broker).
    pub fn sinks(&self, default: &[SinkConfig]) -> Vec<SinkConfig> {
        match &self.sinks {
            Some(s) => s.clone(),
            // A declared pipeline names its sinks (validation says so).
            None if self.input.is_some() => Vec::new(),
            None if self.file_source().is_some() => default
                .iter()
                .filter(|s| s.topic.is_none())
                .cloned()
                .collect(),
            None => default.to_vec(),
        }
    }

    /// The file source's path, if the source is `file:PATH`.
    pub fn file_source(&self) -> Option<&str> {
        self.source.strip_prefix("file:")
    }

    /// The lake of `bronze:LAKE`, when the source is a bronze table.
    pub fn bronze_source(&self) -> Option<&str> {
        self.source.strip_prefix("bronze:")
    }

    /// The declared stage named `name`.
    pub fn stage(&self, name: &str) -> Option<&StageConfig> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// The most messages one epoch takes.
    pub fn epoch_limit(&self) -> usize {
        self.max_offsets_per_trigger
            .map_or(self.max_batch_events, |m| m.min(self.max_batch_events))
    }
}

/// What the decoder does with fields it does not know (`run.unknown-fields`).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum UnknownFields {
    /// Drop them.
    #[default]
    Ignore,
    /// Keep them, as JSON, in bronze's `extra` column.
    Keep,
    /// Refuse the event.
    Reject,
}

rtlake_core::flags! {
    /// `rtlake run`'s settings, as flags: each sets the `[run]` key of its name.
    pub struct RunFlags for RunConfig {
        /// Read from `kafka` (the default); `file:PATH`, JSON Lines from a file or a folder; or
        /// `bronze:LAKE`, a lake's bronze table replayed as the messages it was made from (a
        /// backfill: the other tables rebuilt from bronze, row for row as streaming made them).
        /// Files and bronze are processed once, then the run stops [run.source].
        #[arg(value_name = "kafka|file:PATH|bronze:LAKE")]
        source: String,
        /// Where a new pipeline starts: earliest, latest, timestamp:<RFC 3339 or ms>, or JSON
        /// like '{"0": 42, "1": -2}' (-2 earliest, -1 latest) [run.starting-offsets; default
        /// earliest]. A pipeline with positions in the lake resumes there instead.
        #[arg(value_name = "WHERE")]
        starting_offsets: String,
        /// At most this many messages per epoch [run.max-offsets-per-trigger].
        #[arg(value_name = "N")]
        max_offsets_per_trigger: usize,
        /// Where the offset log, commit log and state live [run.checkpoint; default
        /// <lake>/_checkpoints/<pipeline>].
        #[arg(value_name = "PATH")]
        checkpoint: String,
        /// Where to serve Prometheus /metrics, or `off` [run.metrics-listen; default
        /// 127.0.0.1:9464].
        #[arg(value_name = "ADDR")]
        metrics_listen: String,
        /// The consumer group [run.group-id; default rtlake-<pipeline>].
        group_id as "group": String,
        /// How this worker gets partitions: group (join the pipeline's consumer group,
        /// rebalance with other workers) or static (take --partitions directly, no group
        /// coordinator, as Spark does) [run.assignment; default group].
        assignment: Assignment,
        /// With --assignment static, the partitions to read, e.g. 0,2 [run.partitions;
        /// default all].
        #[arg(value_name = "P,P,...", value_delimiter = ',')]
        partitions: Vec<i32>,
        /// In a group, this worker's static member id (group.instance.id): restarted with the
        /// same id it takes its partitions back at once. One id per worker [run.instance-id].
        #[arg(value_name = "ID")]
        instance_id: String,
        /// Partition assignment within the group [run.assignment-strategy; default
        /// cooperative-sticky].
        assignment_strategy: AssignmentStrategy,
        /// The group session timeout, e.g. 10s [run.session-timeout].
        #[arg(value_name = "DURATION")]
        session_timeout: HumanDuration,
        /// Restart the consumer (resuming from the lake) when partitions with data deliver
        /// nothing for this long, e.g. 15s [run.stall-timeout].
        #[arg(value_name = "DURATION")]
        stall_timeout: HumanDuration,
        /// Fail (and retry) an epoch whose Kafka sink deliveries take longer, e.g. 30s
        /// [run.sink-timeout].
        #[arg(value_name = "DURATION")]
        sink_timeout: HumanDuration,
        /// Kafka sinks in transactions: auto (where the cluster has them), on or off
        /// [run.sink-transactions; default auto].
        sink_transactions: SinkTransactions,
        /// Close an epoch at this many events [run.max-batch-events; default 50000].
        max_batch_events: usize,
        /// ... or at this many bytes of message keys and values, e.g. 64MiB
        /// [run.max-batch-bytes; default 64MiB].
        #[arg(value_name = "SIZE")]
        max_batch_bytes: ByteSize,
        /// ... or when its first event is this old [run.max-batch-delay; default 500ms].
        #[arg(value_name = "DURATION")]
        max_batch_delay: HumanDuration,
        /// Allowed lateness of event time behind its partition's newest, e.g. 10m
        /// [run.lateness].
        #[arg(value_name = "DURATION")]
        lateness: HumanDuration,
        /// How far ahead of the clock an event's time may be before it is rejected as
        /// `future`, e.g. 1h [run.max-future; default 1h].
        #[arg(value_name = "DURATION")]
        max_future: HumanDuration,
        /// Event fields the pipeline does not know: ignore, keep (in bronze's `extra` column,
        /// added to an existing table), or reject (to _rejected) [run.unknown-fields; default
        /// ignore].
        unknown_fields: UnknownFields,
        /// The most of a refused message's value a `_rejected` row keeps, e.g. 64KiB
        /// [run.rejected-value-max; default 1MiB].
        #[arg(value_name = "SIZE")]
        rejected_value_max: ByteSize,
        /// processing-time (run on), available-now (drain and stop) or low-latency (the next
        /// epoch as soon as data arrives) [run.trigger].
        trigger: Trigger,
    }
    switches {
        /// Skip offsets deleted by retention before they were read, with a warning, instead of
        /// stopping [run.fail-on-data-loss = false].
        fail_on_data_loss as "no-fail-on-data-loss" = false,
    }
}

/// What the engine reads: the cluster and topic, the producer settings of its Kafka sinks, the
/// lake, and the pipeline itself. The application's other sections (the web server, the
/// embedded broker, a domain's source) are not the engine's business.
#[derive(Clone, Debug, Default)]
pub struct PipelineConfig {
    /// The Kafka cluster and the input topic.
    pub kafka: rtlake_kafka::config::KafkaConfig,
    /// The producer settings of Kafka sinks.
    pub producer: rtlake_kafka::config::ProducerConfig,
    /// The lake the sinks write.
    pub lake: rtlake_lake::LakeConfig,
    /// The pipeline.
    pub run: RunConfig,
}
