//! Typed configuration, layered: built-in defaults < TOML file < `RTLAKE_*` environment < flags.
//!
//! Every layer is merged into one TOML table before the typed parse, so a bad value gets the same
//! error whichever layer it came from, and the error names the key, the value and where it was
//! set. Environment variables map to keys by section: `RTLAKE_KAFKA_BROKERS` is `kafka.brokers`,
//! `RTLAKE_RUN_MAX_BATCH_EVENTS` is `run.max-batch-events`. Variables whose first word is not a
//! section (such as `RTLAKE_LOG`) are not configuration and are left alone.

use crate::units::{ByteSize, HumanDuration};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

mod declared;
mod loader;
mod options;
mod run;
mod validate;

pub use declared::{InputConfig, Mode, StageConfig, StaticTable};
pub use loader::{ConfigLoader, parse_scalar};
pub use options::{Options, is_secret_key};
pub use run::{
    Assignment, AssignmentStrategy, RunConfig, SinkConfig, SinkTransactions, StartingOffsets,
    Trigger, UnknownFields,
};

/// The sections of the configuration, also the first word of an `RTLAKE_*` variable.
pub const SECTIONS: &[&str] = &[
    "kafka", "lake", "broker", "producer", "source", "run", "serve",
];

/// An error in the configuration, naming the key and the bad value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {cause}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// The file is not TOML.
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// What the TOML parser said.
        message: String,
    },
    /// A key is unknown or a value has the wrong type or form.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// A value has the right type but is out of range or inconsistent.
    #[error("invalid value for `{key}` ({origin}): {value}: {reason}")]
    Value {
        /// The dotted key, e.g. `producer.linger`.
        key: String,
        /// The value as given.
        value: String,
        /// Where the value came from: a file, a variable, a flag or the default.
        origin: String,
        /// Why it is refused.
        reason: String,
    },
}

/// The whole configuration of rtlake.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Config {
    /// The Kafka cluster and the topics.
    pub kafka: KafkaConfig,
    /// Where the lake's Delta tables live.
    pub lake: LakeConfig,
    /// The embedded broker (`rtlake broker`, `rtlake demo`).
    pub broker: BrokerConfig,
    /// Kafka producer settings of `rtlake produce`.
    pub producer: ProducerConfig,
    /// Where `rtlake produce bikes` gets station status from.
    pub source: SourceConfig,
    /// The stream processor, `rtlake run`.
    pub run: RunConfig,
    /// The web server, `rtlake serve`.
    pub serve: ServeConfig,
}

/// The web server: dashboard, status pages, SQL API and metrics.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct ServeConfig {
    /// Address to listen on (loopback unless you mean it).
    pub listen: String,
    /// Most rows one SQL API answer holds.
    pub sql_row_limit: usize,
    /// Longest a SQL API query may run.
    pub sql_timeout: HumanDuration,
    /// Most memory the SQL API's queries hold together (sorts, joins, aggregations); past it a
    /// query answers "Resources exhausted" instead of the server being killed for memory.
    pub sql_memory_limit: ByteSize,
    /// Most pages following the live stream at once; one more is answered 503.
    pub live_max_clients: usize,
    /// The token every `/api/` request must carry (`Authorization: Bearer TOKEN`); required when
    /// `listen` is not a loopback address. Set it through `RTLAKE_SERVE_AUTH_TOKEN` rather than
    /// a file others can read.
    pub auth_token: Option<Secret>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            sql_row_limit: 10_000,
            sql_timeout: HumanDuration::from_secs(30),
            sql_memory_limit: ByteSize(1 << 30),
            live_max_clients: 100,
            auth_token: None,
        }
    }
}

/// A value that must not be shown: `Debug` and serialization print `***`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// The Kafka cluster and topic settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port...]`.
    pub brokers: String,
    /// The station status topic.
    pub topic: String,
    /// Partitions of topics that rtlake creates.
    pub partitions: i32,
    /// Replication factor of topics that rtlake creates; -1 (the default) takes the cluster's
    /// `default.replication.factor` (1 on the embedded broker, 3 on a production cluster).
    pub replication_factor: i32,
    /// Extra librdkafka properties for every client, passed as they are (`security.protocol`,
    /// `sasl.mechanism`, `sasl.username`, `sasl.password`, `ssl.ca.location`, ...). The TOML
    /// table is `[kafka.properties]` or, the same, `[kafka.options]`.
    /// Credentials among them (`sasl.password`, ...) are masked when the config is shown.
    #[serde(alias = "options")]
    pub properties: Options,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            topic: "bike.station-status".into(),
            partitions: 3,
            replication_factor: -1,
            properties: Options::default(),
        }
    }
}

/// The lake's location.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct LakeConfig {
    /// A local path (relative or absolute) or an object store URL (`file://`, `s3://`, ...).
    pub uri: String,
    /// Object store options (credentials, endpoint, region) passed to the store as is; the
    /// credentials are masked when the config is shown.
    pub storage_options: Options,
    /// How often the processor compacts, checkpoints and vacuums its tables (also by hand:
    /// `rtlake lake ...`); `0s` turns the schedule off.
    pub maintenance_interval: HumanDuration,
    /// Compaction writes files of about this size (a partition smaller than it becomes one file).
    pub target_file_size: ByteSize,
    /// Columns to Z-order compacted files by (e.g. `["station_id"]`); empty: bin-packing only.
    pub z_order: Vec<String>,
    /// Vacuum deletes data files unreferenced for longer than this (readers of older versions,
    /// time travel, need them until then).
    pub vacuum_retention: HumanDuration,
    /// `_rejected` rows older than this (by their Seoul date) are deleted by the maintenance
    /// schedule; `0s` keeps them forever.
    pub rejected_retention: HumanDuration,
}

impl Default for LakeConfig {
    fn default() -> Self {
        Self {
            uri: "./rtlake-data/lake".into(),
            storage_options: Options::default(),
            maintenance_interval: HumanDuration(std::time::Duration::from_secs(600)),
            target_file_size: ByteSize(64 << 20),
            z_order: Vec::new(),
            vacuum_retention: HumanDuration(std::time::Duration::from_secs(7 * 86400)),
            rejected_retention: HumanDuration(std::time::Duration::from_secs(30 * 86400)),
        }
    }
}

/// The embedded broker.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct BrokerConfig {
    /// The address it listens on, and advertises to clients.
    pub listen: String,
    /// The folder where it keeps its data, relative or absolute.
    pub data: PathBuf,
    /// Where it keeps records: `log` (segment files, the default) or `sqlite` (nisshi's own
    /// engine, one row per record, several times slower).
    pub storage: String,
    /// Listen on an address beyond loopback. The embedded broker has no authentication, so
    /// anyone who reaches the address can read and write every topic: off by default.
    pub allow_remote: bool,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9092".into(),
            data: "./rtlake-data/broker".into(),
            storage: "log".into(),
            allow_remote: false,
        }
    }
}

/// Acknowledgements the producer waits for.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", try_from = "toml::Value")]
pub enum Acks {
    /// Every in-sync replica.
    All,
    /// The leader only.
    #[serde(rename = "1")]
    One,
    /// None (fire and forget; not allowed with idempotence).
    #[serde(rename = "0")]
    Zero,
}

impl TryFrom<toml::Value> for Acks {
    type Error = String;

    fn try_from(v: toml::Value) -> Result<Self, String> {
        match v.to_string().trim_matches('"') {
            "all" | "-1" => Ok(Self::All),
            "1" => Ok(Self::One),
            "0" => Ok(Self::Zero),
            other => Err(format!("`{other}` is not an acks setting (all, 1 or 0)")),
        }
    }
}

/// Compression codec of produced batches.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Compression {
    /// No compression.
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4, fast and the default.
    Lz4,
    /// Zstandard, smaller.
    Zstd,
}

impl Compression {
    /// The librdkafka name of the codec.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

/// Kafka producer settings (the ones the course teaches), with safe defaults.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct ProducerConfig {
    /// `acks`: `all` (default), `1` or `0`.
    pub acks: Acks,
    /// `enable.idempotence`: no duplicates or reordering from producer retries.
    pub idempotence: bool,
    /// `linger.ms`: how long to wait to fill a batch.
    pub linger: HumanDuration,
    /// `batch.size`: the largest batch per partition.
    pub batch_size: ByteSize,
    /// `compression.type`.
    pub compression: Compression,
    /// `max.in.flight.requests.per.connection` (at most 5 with idempotence).
    pub max_in_flight: u32,
    /// `delivery.timeout.ms`: how long a message may take to be delivered before it fails.
    pub delivery_timeout: HumanDuration,
    /// Where `rtlake produce` serves `/metrics` (`off`: nowhere).
    pub metrics_listen: String,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            acks: Acks::All,
            idempotence: true,
            linger: HumanDuration::from_millis(20),
            batch_size: ByteSize(1 << 20),
            compression: Compression::Lz4,
            max_in_flight: 5,
            delivery_timeout: HumanDuration::from_secs(120),
            metrics_listen: "127.0.0.1:9465".into(),
        }
    }
}

/// Where station status comes from.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// Replays the recorded data, no key needed.
    Replay,
    /// Polls Seoul's live bikeList API (needs `SEOUL_API_KEY`).
    SeoulApi,
    /// Publishes a JSON Lines file as is.
    File,
}

/// How fast a replay runs: `max` (no waiting) or a factor of real time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Speed {
    /// As fast as the broker takes it.
    Max,
    /// This many times real time (60 = a 15-second interval every 0.25 s).
    Factor(f64),
}

impl<'de> Deserialize<'de> for Speed {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            F(f64),
            I(i64),
            S(String),
        }
        let bad = |s: &str| {
            serde::de::Error::custom(format!(
                "`{s}` is not a speed (write max, or a factor like 60)"
            ))
        };
        match Raw::deserialize(d)? {
            Raw::F(f) => Ok(Self::Factor(f)),
            Raw::I(i) => Ok(Self::Factor(i as f64)),
            Raw::S(s) if s == "max" => Ok(Self::Max),
            Raw::S(s) => s
                .trim_end_matches('x')
                .parse()
                .map(Self::Factor)
                .map_err(|_| bad(&s)),
        }
    }
}

impl Serialize for Speed {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Max => s.serialize_str("max"),
            Self::Factor(f) => s.serialize_f64(*f),
        }
    }
}

/// Settings of the bike producer's sources.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct SourceConfig {
    /// `replay` (default), `seoul-api` or `file`.
    pub kind: SourceKind,
    /// Time between polls (simulated time for a replay).
    pub interval: HumanDuration,
    /// Replay speed: `max` or a factor of real time.
    pub speed: Speed,
    /// Replay: the simulated time of the first poll (RFC 3339 with offset).
    pub start: String,
    /// Replay: how many simulated minutes to publish; unset runs on and on.
    pub minutes: Option<u64>,
    /// Replay: copies of the city (station ids get `-kN`), for heavier loads.
    pub scale: u32,
    /// Replay: a folder of recorded data to use instead of the copy built into the binary.
    pub data_dir: Option<PathBuf>,
    /// Replay: a file where the replay keeps its simulated clock so that a restart resumes.
    pub state_file: Option<PathBuf>,
    /// Seoul API: base URL, before `/{KEY}/json/bikeList/...`.
    pub api_base: String,
    /// Seoul API: a file holding the key (else the `SEOUL_API_KEY` variable).
    pub api_key_file: Option<PathBuf>,
    /// Seoul API: rows per page (the API allows at most 1,000).
    pub page_size: u32,
    /// Seoul API: retries of a failing request (server errors, network errors).
    pub max_retries: u32,
    /// Seoul API: the first retry's wait; it doubles each retry.
    pub retry_backoff: HumanDuration,
    /// Seoul API: timeout of one HTTP request.
    pub request_timeout: HumanDuration,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            kind: SourceKind::Replay,
            interval: HumanDuration::from_secs(15),
            speed: Speed::Factor(1.0),
            start: "2025-10-01T08:00:00+09:00".into(),
            minutes: None,
            scale: 1,
            data_dir: None,
            state_file: None,
            api_base: "http://openapi.seoul.go.kr:8088".into(),
            api_key_file: None,
            page_size: 1000,
            max_retries: 5,
            retry_backoff: HumanDuration::from_millis(500),
            request_timeout: HumanDuration::from_secs(10),
        }
    }
}

#[cfg(test)]
mod tests;
