//! Turns flags into config keys, on top of defaults, the file and the environment.

use crate::cli::{self, KafkaArgs};
use rtlake_core::config::parse_scalar;
use rtlake_core::{Config, ConfigError, ConfigLoader};
use std::path::{Path, PathBuf};

/// Collects flag values as config keys.
#[derive(Default)]
pub struct Flags(Vec<(String, toml::Value, String)>);

impl Flags {
    /// Sets `key` from `--flag` when given.
    pub fn opt<T: Into<toml::Value>>(&mut self, key: &str, flag: &str, v: Option<T>) -> &mut Self {
        if let Some(v) = v {
            self.0
                .push((key.into(), v.into(), format!("flag --{flag}")));
        }
        self
    }

    /// Sets `key` from a string flag, read like an environment value.
    pub fn str(&mut self, key: &str, flag: &str, v: Option<&str>) -> &mut Self {
        if let Some(v) = v {
            self.0
                .push((key.into(), parse_scalar(v), format!("flag --{flag}")));
        }
        self
    }

    /// Sets a path-valued key.
    pub fn path(&mut self, key: &str, flag: &str, v: Option<&Path>) -> &mut Self {
        self.opt(key, flag, v.map(|p| p.display().to_string()))
    }

    /// `--brokers`.
    pub fn kafka(&mut self, k: &KafkaArgs) -> &mut Self {
        self.opt("kafka.brokers", "brokers", k.brokers.clone())
    }
}

/// Loads defaults < file (given, or ./rtlake.toml) < extra file (a pipeline) < env < flags.
pub fn load(
    cli: &cli::Cli,
    pipeline: Option<&PathBuf>,
    flags: &Flags,
) -> Result<Config, ConfigError> {
    let mut loader = ConfigLoader::new();
    loader = match &cli.config {
        Some(f) => loader.file(f)?,
        None => loader.file_if_exists(Path::new("rtlake.toml"))?,
    };
    if let Some(p) = pipeline {
        loader = load_pipeline(loader, p)?;
    }
    loader = loader.env(std::env::vars());
    for (k, v, origin) in &flags.0 {
        loader = loader.set(k, v.clone(), origin);
    }
    loader.build()
}

/// A pipeline file holds the keys of `[run]` at its top level (or a `[run]` section).
fn load_pipeline(loader: ConfigLoader, path: &Path) -> Result<ConfigLoader, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
        path: path.into(),
        cause,
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            path: path.into(),
            message: e.to_string(),
        })?;
    let run = match table.get("run") {
        Some(toml::Value::Table(t)) => t.clone(),
        _ => table,
    };
    let origin = format!("pipeline file {}", path.display());
    Ok(run
        .into_iter()
        .fold(loader, |l, (k, v)| l.set(&format!("run.{k}"), v, &origin)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn a_pipeline_file_sets_run_keys_below_env_and_flags() {
        let dir = std::env::temp_dir().join(format!("rtlake-pipeline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pipeline.toml");
        std::fs::write(
            &file,
            "pipeline = \"nightly\"\nmax-batch-events = 1000\ntrigger = \"available-now\"\n",
        )
        .unwrap();
        let cli = cli::Cli::parse_from(["rtlake", "run"]);
        let mut f = Flags::default();
        f.opt("run.max-batch-events", "max-batch-events", Some(7i64));
        let cfg = load(&cli, Some(&file), &f).unwrap();
        assert_eq!(cfg.run.pipeline, "nightly");
        assert_eq!(cfg.run.group(), "rtlake-nightly");
        assert_eq!(
            cfg.run.max_batch_events, 7,
            "flags win over the pipeline file"
        );
        assert_eq!(cfg.run.trigger, rtlake_core::config::Trigger::AvailableNow);

        std::fs::write(&file, "max-batch-event = 1\n").unwrap();
        let err = load(&cli, Some(&file), &Flags::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("max-batch-event"), "a typo is named: {err}");
    }
}
