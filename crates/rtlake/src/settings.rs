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
    // Sinks may name the operators this binary registered (the bike domain's).
    let mut loader = ConfigLoader::new().operators(rtlake_bikes::stream::registry().names());
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
    loader.build().map_err(|e| match (e, pipeline) {
        (
            ConfigError::Value {
                key,
                value,
                origin,
                reason,
            },
            Some(p),
        ) if origin.starts_with("pipeline file") => {
            let origin = match line_of(p, &key, &value) {
                Some(n) => format!("{origin}, line {n}"),
                None => origin,
            };
            ConfigError::Value {
                key,
                value,
                origin,
                reason,
            }
        }
        (e, _) => e,
    })
}

/// The line of a pipeline file that sets `key` to `value`: the first holding the value, or
/// else the key's last part.
fn line_of(path: &Path, key: &str, value: &str) -> Option<usize> {
    let text = std::fs::read_to_string(path).ok()?;
    let field = key.rsplit('.').next().unwrap_or(key);
    let field = field.split('[').next().unwrap_or(field);
    let by_value = (!value.is_empty() && value != "…")
        .then(|| text.lines().position(|l| l.contains(value)))
        .flatten();
    by_value
        .or_else(|| {
            text.lines()
                .position(|l| l.trim_start().starts_with(field) && l.contains('='))
        })
        .map(|i| i + 1)
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
    let mut run = match table.get("run") {
        Some(toml::Value::Table(t)) => t.clone(),
        _ => table,
    };
    // A static table's relative path is relative to the pipeline file, as a user reads it.
    let base = path.parent().unwrap_or(Path::new("."));
    if let Some(toml::Value::Array(tables)) = run.get_mut("tables") {
        for t in tables {
            if let Some(toml::Value::String(p)) = t.get_mut("path")
                && Path::new(p.as_str()).is_relative()
            {
                *p = base.join(p.as_str()).display().to_string();
            }
        }
    }
    let origin = format!("pipeline file {}", path.display());
    let topic = run
        .get("input")
        .and_then(|i| i.get("topic"))
        .and_then(|t| t.as_str())
        .map(String::from);
    let loader = run
        .into_iter()
        .fold(loader, |l, (k, v)| l.set(&format!("run.{k}"), v, &origin));
    Ok(match topic {
        Some(t) => loader.set("kafka.topic", t, &origin),
        None => loader,
    })
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
