//! The application's configuration: every crate's section put together, and the layering
//! (built-in defaults < the domain's defaults < TOML file < pipeline file < `RTLAKE_*`
//! environment < flags).
//!
//! Each section is owned, parsed and checked by its crate; here they are only assembled. Flags
//! are typed: each subcommand applies its flag structs (declared beside their sections) to the
//! parsed sections before they are checked, so a flag's value meets the same checks as a file's.

use rtlake_bikes::config::{ProduceConfig, SourceConfig};
use rtlake_broker::BrokerConfig;
use rtlake_core::config::{ConfigError, Layers, Origins, Section};
use rtlake_kafka::config::{KafkaConfig, ProducerConfig};
use rtlake_lake::LakeConfig;
use rtlake_stream::config::{PipelineConfig, RunConfig};
use rtlake_stream::registry::Registry;
use rtlake_web::config::{ServeConfig, WebConfig};
use serde::Serialize;
use std::path::Path;

/// The sections, in the order they are checked; also the first word of an `RTLAKE_*` variable.
pub const SECTIONS: &[&str] = &[
    KafkaConfig::NAME,
    LakeConfig::NAME,
    BrokerConfig::NAME,
    ProducerConfig::NAME,
    SourceConfig::NAME,
    RunConfig::NAME,
    ServeConfig::NAME,
];

/// The whole configuration of rtlake.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Config {
    /// The Kafka cluster and the topic.
    pub kafka: KafkaConfig,
    /// Where the lake's tables live.
    pub lake: LakeConfig,
    /// The embedded broker (`rtlake broker`, `rtlake demo`).
    pub broker: BrokerConfig,
    /// Kafka producer settings (`rtlake produce`, Kafka sinks).
    pub producer: ProducerConfig,
    /// Where the bike producer gets station status.
    pub source: SourceConfig,
    /// The stream processor, `rtlake run`.
    pub run: RunConfig,
    /// The web server, `rtlake serve`.
    pub serve: ServeConfig,
}

impl Config {
    /// What the engine reads.
    pub fn pipeline(&self) -> PipelineConfig {
        PipelineConfig {
            kafka: self.kafka.clone(),
            producer: self.producer.clone(),
            lake: self.lake.clone(),
            run: self.run.clone(),
        }
    }

    /// What the web server reads.
    pub fn web(&self) -> WebConfig {
        WebConfig {
            kafka: self.kafka.clone(),
            lake: self.lake.clone(),
            serve: self.serve.clone(),
        }
    }

    /// What the bike producers read.
    pub fn produce(&self) -> ProduceConfig {
        ProduceConfig {
            kafka: self.kafka.clone(),
            producer: self.producer.clone(),
            source: self.source.clone(),
        }
    }
}

/// The domain this binary runs: its operators, decoder and default pipeline.
pub fn domain() -> Registry {
    rtlake_bikes::stream::registry()
}

/// The domain's pages and views, mounted by `rtlake serve` and `rtlake demo`.
pub fn web_domain() -> rtlake_web::Domain {
    rtlake_bikes::web::domain()
}

/// The domain's built-in views, in every SQL session.
pub const VIEWS: rtlake_query::BuiltInViews = rtlake_bikes::tables::VIEWS;

/// Where the layers below the flags come from.
#[derive(Default)]
pub struct Sources<'a> {
    /// `--config FILE` (default: `./rtlake.toml` when it exists).
    pub file: Option<&'a Path>,
    /// `--pipeline FILE`: the keys of `[run]`.
    pub pipeline: Option<&'a Path>,
}

/// Loads every section from its layers, applies `flags` (a subcommand's typed flags, and any
/// setting it derives itself) on top, and checks the result, the pipeline against `domain`.
pub fn load(
    from: Sources<'_>,
    flags: impl FnOnce(&mut Config, &mut Origins),
) -> Result<Config, ConfigError> {
    let defaults: toml::Table = rtlake_bikes::config::DEFAULTS
        .parse()
        .map_err(|e| ConfigError::Invalid(format!("the domain's defaults: {e}")))?;
    let mut layers = Layers::new().table(defaults, "default")?;
    layers = match from.file {
        Some(f) => layers.file(f)?,
        None => layers.file_if_exists(Path::new("rtlake.toml"))?,
    };
    if let Some(p) = from.pipeline {
        layers = crate::pipeline_file::load(layers, p)?;
    }
    layers = layers.env(std::env::vars(), SECTIONS);
    layers.unknown_sections(SECTIONS)?;
    let mut cfg = Config {
        kafka: layers.parse()?,
        lake: layers.parse()?,
        broker: layers.parse()?,
        producer: layers.parse()?,
        source: layers.parse()?,
        run: layers.parse()?,
        serve: layers.parse()?,
    };
    flags(&mut cfg, layers.origins_mut());
    let at = layers.origins();
    let checked = (|| {
        cfg.kafka.check(at)?;
        cfg.lake.check(at)?;
        cfg.broker.check(at)?;
        cfg.producer.check(at)?;
        cfg.source.check(at)?;
        cfg.run.check(at)?;
        cfg.serve.check(at)?;
        cfg.run.check_pipeline(at, &domain())
    })();
    match (checked, from.pipeline) {
        (Ok(()), _) => Ok(cfg),
        (Err(e), Some(p)) => Err(crate::pipeline_file::with_line(e, p)),
        (Err(e), None) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_domain_sets_the_topic_and_the_pipeline_name_below_the_environment() {
        let cfg = load(Sources::default(), |_, _| {}).unwrap();
        assert_eq!(cfg.kafka.topic, rtlake_bikes::config::TOPIC);
        assert_eq!(cfg.run.pipeline, "bikes");
        assert_eq!(cfg.run.group(), "rtlake-bikes");
    }

    #[test]
    fn no_secret_is_ever_shown() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rtlake.toml");
        std::fs::write(
            &file,
            "[kafka.options]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.password\" = \"sasl-pw-0123\"\n[lake.storage-options]\naws_secret_access_key = \"s3-secret-0123\"\n[serve]\nauth-token = \"0123456789abcdef-token\"\n",
        )
        .unwrap();
        let cfg = load(
            Sources {
                file: Some(&file),
                ..Sources::default()
            },
            |_, _| {},
        )
        .unwrap();
        assert_eq!(cfg.kafka.properties["sasl.password"], "sasl-pw-0123");
        assert_eq!(
            cfg.lake.storage_options["aws_secret_access_key"],
            "s3-secret-0123"
        );
        assert_eq!(
            cfg.serve.auth_token.as_ref().unwrap().expose(),
            "0123456789abcdef-token"
        );
        let shown = format!("{cfg:?} {}", toml::to_string(&cfg).unwrap());
        for secret in ["0123456789abcdef-token", "sasl-pw-0123", "s3-secret-0123"] {
            assert!(!shown.contains(secret), "{secret} shows in {shown}");
        }
        assert!(shown.contains("SASL_SSL"), "other options show: {shown}");
    }

    #[test]
    fn an_unknown_section_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rtlake.toml");
        std::fs::write(&file, "[kafak]\nbrokers = \"x:1\"\n").unwrap();
        let e = load(
            Sources {
                file: Some(&file),
                ..Sources::default()
            },
            |_, _| {},
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("kafak") && e.contains("kafka, lake"), "{e}");
    }
}
