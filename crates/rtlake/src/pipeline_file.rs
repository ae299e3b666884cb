//! A pipeline file (`rtlake run --pipeline FILE`): the keys of `[run]` at its top level (or in
//! a `[run]` section), layered above the config file and below the environment.

use rtlake_core::config::{ConfigError, Layers};
use std::path::Path;

/// Merges the pipeline file at `path` into `layers`.
pub fn load(layers: Layers, path: &Path) -> Result<Layers, ConfigError> {
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
    let layers = run
        .into_iter()
        .fold(layers, |l, (k, v)| l.set(&format!("run.{k}"), v, &origin));
    Ok(match topic {
        Some(t) => layers.set("kafka.topic", t, &origin),
        None => layers,
    })
}

/// An error about a value the pipeline file at `path` set, with the line that sets it.
pub fn with_line(e: ConfigError, path: &Path) -> ConfigError {
    match e {
        ConfigError::Value {
            key,
            value,
            origin,
            reason,
        } if origin.starts_with("pipeline file") => {
            let origin = match line_of(path, &key, &value) {
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
        e => e,
    }
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

#[cfg(test)]
mod tests {
    use crate::config::{Sources, load};

    #[test]
    fn a_pipeline_file_sets_run_keys_below_env_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pipeline.toml");
        std::fs::write(
            &file,
            "pipeline = \"nightly\"\nmax-batch-events = 1000\ntrigger = \"available-now\"\n",
        )
        .unwrap();
        let from = || Sources {
            pipeline: Some(&file),
            ..Sources::default()
        };
        let cfg = load(from(), |c, _| c.run.max_batch_events = 7).unwrap();
        assert_eq!(cfg.run.pipeline, "nightly");
        assert_eq!(cfg.run.group(), "rtlake-nightly");
        assert_eq!(
            cfg.run.max_batch_events, 7,
            "flags win over the pipeline file"
        );
        assert_eq!(
            cfg.run.trigger,
            rtlake_stream::config::Trigger::AvailableNow
        );

        std::fs::write(&file, "max-batch-event = 1\n").unwrap();
        let err = load(from(), |_, _| {}).unwrap_err().to_string();
        assert!(err.contains("max-batch-event"), "a typo is named: {err}");

        std::fs::write(&file, "pipeline = \"nightly\"\n\nmax-batch-events = 0\n").unwrap();
        let err = load(from(), |_, _| {}).unwrap_err().to_string();
        assert!(
            err.contains("run.max-batch-events") && err.contains("line 3"),
            "{err}"
        );
    }
}
