//! Merging the layers into one table and parsing it once.

use super::{Config, ConfigError, SECTIONS};
use std::collections::HashMap;
use std::path::Path;

/// Builds a [`Config`] from its layers.
#[derive(Debug, Default)]
pub struct ConfigLoader {
    table: toml::Table,
    origins: HashMap<String, String>,
    operators: Option<Vec<String>>,
}

impl ConfigLoader {
    /// Starts from the built-in defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Merges a TOML file.
    pub fn file(mut self, path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            path: path.into(),
            cause,
        })?;
        let table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: path.into(),
                    message: e.to_string(),
                })?;
        for (section, value) in table {
            match value {
                toml::Value::Table(t) => {
                    for (k, v) in t {
                        self.put(
                            &format!("{section}.{k}"),
                            v,
                            format!("file {}", path.display()),
                        );
                    }
                }
                other => {
                    return Err(ConfigError::Invalid(format!(
                        "{}: top-level key `{section}` must be a section like [{section}], got {other}",
                        path.display()
                    )));
                }
            }
        }
        Ok(self)
    }

    /// Merges a TOML file if it exists.
    pub fn file_if_exists(self, path: &Path) -> Result<Self, ConfigError> {
        if path.exists() {
            self.file(path)
        } else {
            Ok(self)
        }
    }

    /// Merges `RTLAKE_<SECTION>_<KEY>` variables from an environment.
    pub fn env(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        for (name, raw) in vars {
            let Some(rest) = name.strip_prefix("RTLAKE_") else {
                continue;
            };
            let lower = rest.to_ascii_lowercase();
            let Some((section, key)) = lower.split_once('_') else {
                continue;
            };
            if !SECTIONS.contains(&section) {
                continue;
            }
            let key = format!("{section}.{}", key.replace('_', "-"));
            self.put(&key, parse_scalar(&raw), format!("variable {name}"));
        }
        self
    }

    /// Sets one key (a flag); `value` is taken as TOML when it parses as a scalar, else a string.
    pub fn set(mut self, key: &str, value: impl Into<toml::Value>, origin: &str) -> Self {
        self.put(key, value.into(), origin.to_string());
        self
    }

    /// Sets one key from a string, like an environment variable.
    pub fn set_str(self, key: &str, raw: &str, origin: &str) -> Self {
        self.set(key, parse_scalar(raw), origin)
    }

    fn put(&mut self, key: &str, value: toml::Value, origin: String) {
        let (section, field) = key.split_once('.').unwrap_or((key, ""));
        let entry = self
            .table
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(t) = entry {
            t.insert(field.to_string(), value);
        }
        self.origins.insert(key.to_string(), origin);
    }

    /// The registered operators a sink may name (besides declared stages). Without them, an
    /// unknown operator name is left to the pipeline's builder.
    pub fn operators<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.operators = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Parses and validates the merged layers.
    pub fn build(self) -> Result<Config, ConfigError> {
        let origins = self.origins;
        let config: Config =
            toml::Value::Table(self.table)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    let msg = e.to_string();
                    let hint = origins
                        .iter()
                        .filter(|(k, _)| {
                            msg.contains(k.split_once('.').map_or(k.as_str(), |(_, f)| f))
                        })
                        .map(|(k, o)| format!(" (`{k}` set by {o})"))
                        .next()
                        .unwrap_or_default();
                    ConfigError::Invalid(format!("{}{hint}", msg.trim()))
                })?;
        config.validate(&origins, self.operators.as_deref())?;
        Ok(config)
    }
}

/// An environment or flag value: a TOML integer, float or boolean when it reads as one, else a string.
pub fn parse_scalar(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match doc
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
    {
        Some(v @ (toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_))) => v,
        _ => toml::Value::String(raw.to_string()),
    }
}
