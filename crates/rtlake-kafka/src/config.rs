//! The `[kafka]` section (the cluster and the topic) and the `[producer]` section, with their
//! checks and flags.

use rtlake_core::config::{ConfigError, Options, Origins, Section, check_listen};
use rtlake_core::units::{ByteSize, HumanDuration};
use serde::{Deserialize, Serialize};

/// The Kafka cluster and topic settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port...]`.
    pub brokers: String,
    /// The topic a producer writes and a pipeline reads (the domain's default, `events` when
    /// there is none).
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
            topic: "events".into(),
            partitions: 3,
            replication_factor: -1,
            properties: Options::default(),
        }
    }
}

impl Section for KafkaConfig {
    const NAME: &'static str = "kafka";

    fn check(&self, at: &Origins) -> Result<(), ConfigError> {
        check_brokers(&self.brokers).map_err(|r| at.err("kafka.brokers", &self.brokers, &r))?;
        check_topic(&self.topic).map_err(|r| at.err("kafka.topic", &self.topic, &r))?;
        if self.partitions < 1 {
            return Err(at.err("kafka.partitions", &self.partitions, "must be at least 1"));
        }
        if self.replication_factor < 1 && self.replication_factor != -1 {
            return Err(at.err(
                "kafka.replication-factor",
                &self.replication_factor,
                "must be at least 1, or -1 for the cluster's default.replication.factor",
            ));
        }
        Ok(())
    }
}

rtlake_core::flags! {
    /// The cluster and the topic, as flags.
    pub struct KafkaFlags for KafkaConfig {
        /// Bootstrap servers, host:port[,host:port] [kafka.brokers; default 127.0.0.1:9092].
        #[arg(value_name = "HOST:PORT,...")]
        brokers: String,
        /// The topic [kafka.topic].
        topic: String,
    }
}

rtlake_core::flags! {
    /// The cluster alone, for commands that name their topics themselves.
    pub struct BrokersFlag for KafkaConfig {
        /// Bootstrap servers, host:port[,host:port] [kafka.brokers; default 127.0.0.1:9092].
        #[arg(value_name = "HOST:PORT,...")]
        brokers: String,
    }
}

/// Whether `name` is a legal topic name; the reason when not.
pub fn check_topic(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 249
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err("a topic name is 1-249 of [a-zA-Z0-9._-]".into());
    }
    Ok(())
}

fn check_brokers(list: &str) -> Result<(), String> {
    if list.trim().is_empty() {
        return Err("must list at least one host:port".into());
    }
    for b in list.split(',') {
        let b = b.trim();
        let (host, port) = b
            .rsplit_once(':')
            .ok_or_else(|| format!("`{b}` has no port (write host:port)"))?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(format!("`{b}` is not host:port"));
        }
    }
    Ok(())
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

impl std::str::FromStr for Acks {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim_matches('"') {
            "all" | "-1" => Ok(Self::All),
            "1" => Ok(Self::One),
            "0" => Ok(Self::Zero),
            other => Err(format!("`{other}` is not an acks setting (all, 1 or 0)")),
        }
    }
}

impl TryFrom<toml::Value> for Acks {
    type Error = String;

    fn try_from(v: toml::Value) -> Result<Self, String> {
        v.to_string().parse()
    }
}

/// Compression codec of produced batches.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
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
    /// `linger.ms`: how long to wait to fill a batch. 5 ms by default (librdkafka's and Kafka
    /// 4's Java client's): a poll's events are handed over within a few milliseconds, so they
    /// still go as one batch per partition, and every event reaches the broker 15 ms sooner
    /// than with the 20 ms this used to be (bench/README.md, "thirteenth step").
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
            linger: HumanDuration::from_millis(5),
            batch_size: ByteSize(1 << 20),
            compression: Compression::Lz4,
            max_in_flight: 5,
            delivery_timeout: HumanDuration::from_secs(120),
            metrics_listen: "127.0.0.1:9465".into(),
        }
    }
}

impl Section for ProducerConfig {
    const NAME: &'static str = "producer";

    fn check(&self, at: &Origins) -> Result<(), ConfigError> {
        if self.idempotence && self.acks != Acks::All {
            return Err(at.err(
                "producer.acks",
                &format!("{:?}", self.acks).to_lowercase(),
                "idempotence needs acks = \"all\" (or set producer.idempotence = false)",
            ));
        }
        if self.max_in_flight == 0 || (self.idempotence && self.max_in_flight > 5) {
            return Err(at.err(
                "producer.max-in-flight",
                &self.max_in_flight,
                "must be 1 to 5 with idempotence (librdkafka's limit)",
            ));
        }
        if self.batch_size.0 == 0 || self.batch_size.0 > i32::MAX as u64 {
            return Err(at.err(
                "producer.batch-size",
                &self.batch_size,
                "must be between 1 byte and 2GiB",
            ));
        }
        if self.linger.get() > std::time::Duration::from_secs(300) {
            return Err(at.err("producer.linger", &self.linger, "must be at most 5m"));
        }
        check_listen(at, "producer.metrics-listen", &self.metrics_listen, true)
    }
}

rtlake_core::flags! {
    /// The producer's settings, as flags.
    pub struct ProducerFlags for ProducerConfig {
        /// acks: all, 1 or 0 [producer.acks; default all].
        acks: Acks,
        /// linger, e.g. 5ms [producer.linger].
        linger: HumanDuration,
        /// Batch size, e.g. 1MiB [producer.batch-size].
        batch_size: ByteSize,
        /// none, gzip, snappy, lz4 or zstd [producer.compression; default lz4].
        compression: Compression,
        /// Max in-flight requests per connection, at most 5 with idempotence
        /// [producer.max-in-flight].
        max_in_flight: u32,
        /// Where to serve Prometheus /metrics, or `off` [producer.metrics-listen; default
        /// 127.0.0.1:9465].
        #[arg(value_name = "ADDR")]
        metrics_listen: String,
    }
    switches {
        /// Turn idempotence off [producer.idempotence; default on].
        idempotence as "no-idempotence" = false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtlake_core::config::Layers;

    #[test]
    fn errors_name_the_key_the_value_and_the_origin() {
        let e = Layers::new()
            .set_str("producer.max-in-flight", "9", "flag --max-in-flight")
            .section::<ProducerConfig>()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("producer.max-in-flight")
                && e.contains('9')
                && e.contains("flag --max-in-flight"),
            "{e}"
        );
        let e = Layers::new()
            .env(
                [("RTLAKE_KAFKA_BROKERS".to_string(), "localhost".to_string())],
                &["kafka"],
            )
            .section::<KafkaConfig>()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("kafka.brokers")
                && e.contains("localhost")
                && e.contains("RTLAKE_KAFKA_BROKERS"),
            "{e}"
        );
        let e = Layers::new()
            .set_str("producer.linger", "20", "flag --linger")
            .section::<ProducerConfig>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("no unit") && e.contains("linger"), "{e}");
        let e = Layers::new()
            .set_str("producer.compression", "lz5", "flag")
            .section::<ProducerConfig>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("lz5") && e.contains("zstd"), "{e}");
        let e = Layers::new()
            .env(
                [("RTLAKE_KAFKA_BROKER".to_string(), "x:1".to_string())],
                &["kafka"],
            )
            .section::<KafkaConfig>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("broker"), "unknown keys are refused: {e}");
    }

    #[test]
    fn flags_set_their_fields_and_say_so() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cmd {
            #[command(flatten)]
            producer: ProducerFlags,
        }
        let c = Cmd::parse_from(["x", "--acks", "1", "--no-idempotence", "--linger", "5ms"]);
        let mut p = ProducerConfig::default();
        let mut at = Origins::default();
        c.producer.apply(&mut p, &mut at);
        assert_eq!((p.acks, p.idempotence), (Acks::One, false));
        assert_eq!(p.linger.get(), std::time::Duration::from_millis(5));
        assert_eq!(at.of("producer.idempotence"), "flag --no-idempotence");
        assert_eq!(at.of("producer.linger"), "flag --linger");
        assert_eq!(at.of("producer.batch-size"), "default");
    }
}
