//! The bike domain's configuration: the `[source]` section (where `rtlake produce bikes` gets
//! station status: the replay, Seoul's API or a file), its flags, and the domain's defaults
//! for the general sections (its topic, its pipeline's name).

use rtlake_core::config::{ConfigError, Origins, Section, check_http_url};
use rtlake_core::units::HumanDuration;
use rtlake_kafka::config::{KafkaConfig, ProducerConfig};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The domain's defaults for the general sections, the layer below a config file: the
/// station status topic, and the pipeline's name (its consumer group and transaction ids).
pub const DEFAULTS: &str = r#"
[kafka]
topic = "bike.station-status"

[run]
pipeline = "bikes"
"#;

/// The station status topic, [`DEFAULTS`]' `kafka.topic`.
pub const TOPIC: &str = "bike.station-status";

/// What the bike producers read: the cluster and topic, the producer settings, the source.
#[derive(Clone, Debug, Default)]
pub struct ProduceConfig {
    /// The cluster and the topic to publish to.
    pub kafka: KafkaConfig,
    /// The producer's settings.
    pub producer: ProducerConfig,
    /// Where station status comes from.
    pub source: SourceConfig,
}

/// Where station status comes from.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// Replays the recorded data, no key needed.
    Replay,
    /// Polls Seoul's live bikeList API (needs `SEOUL_API_KEY`).
    SeoulApi,
    /// Publishes a JSON Lines file as is.
    File,
}

/// The message values' format (see [`crate::formats`]).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum EventFormat {
    /// One JSON object per event, the contract's (no registry).
    #[default]
    Json,
    /// Avro in the Confluent wire format, its schema registered in the schema registry.
    Avro,
    /// JSON in the Confluent wire format, its JSON Schema registered.
    JsonSchema,
    /// Protobuf in the Confluent wire format, its `.proto` registered.
    Protobuf,
}

/// How fast a replay runs: `max` (no waiting) or a factor of real time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Speed {
    /// As fast as the broker takes it.
    Max,
    /// This many times real time (60 = a 15-second interval every 0.25 s).
    Factor(f64),
}

impl std::str::FromStr for Speed {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "max" => Ok(Self::Max),
            f => f
                .trim_end_matches('x')
                .parse()
                .map(Self::Factor)
                .map_err(|_| format!("`{s}` is not a speed (write max, or a factor like 60)")),
        }
    }
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
    /// The message values' format: `json` (default), `avro`, `json-schema` or `protobuf`.
    pub format: EventFormat,
    /// The schema registry the typed formats register the event's schema in, under
    /// `<topic>-value` (credentials from `RTLAKE_SCHEMA_REGISTRY_*`).
    pub schema_registry: Option<String>,
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
            format: EventFormat::Json,
            schema_registry: None,
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

impl Section for SourceConfig {
    const NAME: &'static str = "source";

    fn check(&self, at: &Origins) -> Result<(), ConfigError> {
        let s = self;
        if s.interval.get().is_zero() {
            return Err(at.err("source.interval", &s.interval, "must be more than 0"));
        }
        if let Speed::Factor(f) = s.speed
            && !(f.is_finite() && f > 0.0)
        {
            return Err(at.err("source.speed", &f, "must be more than 0, or max"));
        }
        rtlake_core::time::parse_rfc3339(&s.start).map_err(|e| {
            at.err(
                "source.start",
                &s.start,
                &format!("{e} (write RFC 3339 with an offset, e.g. 2025-10-01T08:00:00+09:00)"),
            )
        })?;
        if s.minutes == Some(0) {
            return Err(at.err(
                "source.minutes",
                &0,
                "must be at least 1 (leave it out to run on)",
            ));
        }
        if s.scale == 0 {
            return Err(at.err("source.scale", &0, "must be at least 1"));
        }
        if s.page_size == 0 || s.page_size > 1000 {
            return Err(at.err(
                "source.page-size",
                &s.page_size,
                "the bikeList API serves 1 to 1000 rows a call",
            ));
        }
        check_http_url(at, "source.api-base", &s.api_base)?;
        match (s.format, &s.schema_registry) {
            (EventFormat::Json, Some(url)) => {
                return Err(at.err(
                    "source.schema-registry",
                    url,
                    "json events need no registry (it is for --format avro, json-schema or protobuf)",
                ));
            }
            (EventFormat::Avro | EventFormat::JsonSchema | EventFormat::Protobuf, None) => {
                return Err(at.err(
                    "source.schema-registry",
                    &"",
                    "avro, json-schema and protobuf events register their schema: give the registry's URL",
                ));
            }
            (_, Some(url)) => {
                rtlake_registry::RegistryConfig::from_env("source.schema-registry", url)
                    .map_err(|e| at.err("source.schema-registry", url, &e.to_string()))?;
            }
            _ => {}
        }
        if s.format != EventFormat::Json && s.kind == SourceKind::File {
            return Err(at.err(
                "source.format",
                &"…",
                "a file is published as is (JSON Lines): --format is for replay and seoul-api",
            ));
        }
        Ok(())
    }
}

rtlake_core::flags! {
    /// `rtlake produce bikes`'s source settings, as flags.
    pub struct SourceFlags for SourceConfig {
        /// The source: replay (the recorded data, no key needed), seoul-api (the live bikeList
        /// API, needs SEOUL_API_KEY or --api-key-file) or file (a JSON Lines file as is, give
        /// its PATH) [source.kind; default replay].
        kind as "source": SourceKind,
        /// The message values: json (the contract's JSON), avro, json-schema or protobuf (the
        /// Confluent wire format, the event's schema registered under <topic>-value in
        /// --schema-registry) [source.format; default json].
        format: EventFormat,
        /// The schema registry for --format avro|json-schema|protobuf, e.g. http://localhost:8081;
        /// credentials from RTLAKE_SCHEMA_REGISTRY_USER/_PASSWORD or _TOKEN
        /// [source.schema-registry].
        #[arg(value_name = "URL")]
        schema_registry: String,
        /// Time between polls, e.g. 15s [source.interval].
        #[arg(value_name = "DURATION")]
        interval: HumanDuration,
        /// Replay speed: a factor of real time (60 = an hour a minute) or `max` [source.speed].
        speed: Speed,
        /// Replay start, RFC 3339 [source.start; default 2025-10-01T08:00:00+09:00].
        start: String,
        /// Replay length in simulated minutes [source.minutes; default: run on].
        minutes: u64,
        /// Replay copies of the city, for heavier loads [source.scale; default 1].
        scale: u32,
        /// Replay from this folder instead of the built-in recorded data [source.data-dir].
        #[arg(value_name = "DIR")]
        data_dir: PathBuf,
        /// Keep the replay's clock here, so that a restart resumes [source.state-file].
        #[arg(value_name = "FILE")]
        state_file: PathBuf,
        /// bikeList API base URL [source.api-base].
        #[arg(value_name = "URL")]
        api_base: String,
        /// A file holding the API key (else SEOUL_API_KEY) [source.api-key-file].
        #[arg(value_name = "FILE")]
        api_key_file: PathBuf,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtlake_core::config::Layers;

    #[test]
    fn speed_takes_max_or_a_factor() {
        let speed = |v: &str| {
            Layers::new()
                .set_str("source.speed", v, "flag")
                .section::<SourceConfig>()
                .map(|s| s.speed)
        };
        assert_eq!(speed("max").unwrap(), Speed::Max);
        assert_eq!(speed("60").unwrap(), Speed::Factor(60.0));
        assert_eq!(speed("60x").unwrap(), Speed::Factor(60.0));
        assert!(speed("0").is_err());
        assert_eq!("60x".parse::<Speed>().unwrap(), Speed::Factor(60.0));
        assert!("fast".parse::<Speed>().unwrap_err().contains("fast"));
    }

    #[test]
    fn errors_name_the_key_and_the_value() {
        let e = Layers::new()
            .set_str("source.start", "yesterday", "flag --start")
            .section::<SourceConfig>()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("source.start") && e.contains("yesterday") && e.contains("flag --start"),
            "{e}"
        );
        let e = Layers::new()
            .set_str("source.page-size", "1001", "file x")
            .section::<SourceConfig>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("source.page-size") && e.contains("1001"), "{e}");
    }

    #[test]
    fn the_defaults_layer_parses_and_names_the_topic() {
        let t: toml::Table = DEFAULTS.parse().unwrap();
        assert_eq!(t["kafka"]["topic"].as_str(), Some(TOPIC));
    }
}
