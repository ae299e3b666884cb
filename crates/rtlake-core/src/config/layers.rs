//! Merging the layers into one table, and parsing each section of it once.

use super::{ConfigError, Section};
use std::collections::HashMap;
use std::path::Path;

/// Where each key's value came from (`file rtlake.toml`, `variable RTLAKE_KAFKA_BROKERS`,
/// `flag --brokers`), for errors that say which layer to fix.
#[derive(Clone, Debug, Default)]
pub struct Origins(HashMap<String, String>);

impl Origins {
    /// Notes that `key` (dotted, `run.lateness`) was set by `origin`.
    pub fn set(&mut self, key: &str, origin: impl Into<String>) {
        self.0.insert(key.to_string(), origin.into());
    }

    /// Where `key` was set; a key of a table set whole (`run.stages[2].window` set as
    /// `run.stages`) has the table's origin; a key set nowhere is the default.
    pub fn of(&self, key: &str) -> String {
        self.0
            .get(key)
            .or_else(|| {
                let head: Vec<&str> = key.split(['.', '[']).take(2).collect();
                self.0.get(&head.join("."))
            })
            .cloned()
            .unwrap_or_else(|| "default".into())
    }

    /// The error for `key`'s `value`, naming where it was set.
    pub fn err(&self, key: &str, value: &dyn std::fmt::Display, reason: &str) -> ConfigError {
        ConfigError::Value {
            key: key.into(),
            value: value.to_string(),
            origin: self.of(key),
            reason: reason.into(),
        }
    }

    fn hint(&self, msg: &str) -> String {
        self.0
            .iter()
            .filter(|(k, _)| msg.contains(k.split_once('.').map_or(k.as_str(), |(_, f)| f)))
            .map(|(k, o)| format!(" (`{k}` set by {o})"))
            .next()
            .unwrap_or_default()
    }
}

/// The layers below the flags, merged into one TOML table (defaults < file < environment).
#[derive(Debug, Default)]
pub struct Layers {
    table: toml::Table,
    origins: Origins,
}

impl Layers {
    /// Starts from the sections' built-in defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Merges a TOML file.
    pub fn file(self, path: &Path) -> Result<Self, ConfigError> {
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
        self.table(table, &format!("file {}", path.display()))
    }

    /// Merges a TOML file if it exists.
    pub fn file_if_exists(self, path: &Path) -> Result<Self, ConfigError> {
        if path.exists() {
            self.file(path)
        } else {
            Ok(self)
        }
    }

    /// Merges a table of sections (`[kafka] topic = ...`), each key noted as set by `origin`.
    pub fn table(mut self, table: toml::Table, origin: &str) -> Result<Self, ConfigError> {
        for (section, value) in table {
            match value {
                toml::Value::Table(t) => {
                    for (k, v) in t {
                        self.put(&format!("{section}.{k}"), v, origin.to_string());
                    }
                }
                other => {
                    return Err(ConfigError::Invalid(format!(
                        "{origin}: top-level key `{section}` must be a section like [{section}], got {other}"
                    )));
                }
            }
        }
        Ok(self)
    }

    /// Merges `RTLAKE_<SECTION>_<KEY>` variables of the given sections from an environment;
    /// variables whose first word is not a section (`RTLAKE_LOG`) are not configuration.
    pub fn env(
        mut self,
        vars: impl IntoIterator<Item = (String, String)>,
        sections: &[&str],
    ) -> Self {
        for (name, raw) in vars {
            let Some(rest) = name.strip_prefix("RTLAKE_") else {
                continue;
            };
            let lower = rest.to_ascii_lowercase();
            let Some((section, key)) = lower.split_once('_') else {
                continue;
            };
            if !sections.contains(&section) {
                continue;
            }
            let key = format!("{section}.{}", key.replace('_', "-"));
            self.put(&key, parse_scalar(&raw), format!("variable {name}"));
        }
        self
    }

    /// Sets one key (`run.lateness`); a pipeline file's keys and tests come this way.
    pub fn set(mut self, key: &str, value: impl Into<toml::Value>, origin: &str) -> Self {
        self.put(key, value.into(), origin.to_string());
        self
    }

    /// Sets one key from a string, read like an environment variable.
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
        self.origins.set(key, origin);
    }

    /// The top-level keys that name no section of `sections`: a typo, refused at load.
    pub fn unknown_sections(&self, sections: &[&str]) -> Result<(), ConfigError> {
        match self.table.keys().find(|k| !sections.contains(&k.as_str())) {
            Some(k) => Err(ConfigError::Invalid(format!(
                "unknown section `{k}`{}, expected one of {}",
                self.origins.hint(k),
                sections.join(", ")
            ))),
            None => Ok(()),
        }
    }

    /// Parses section `S` (its defaults where the layers say nothing), unchecked: flags go on
    /// top of it before [`Section::check`].
    pub fn parse<S: Section>(&self) -> Result<S, ConfigError> {
        let Some(t) = self.table.get(S::NAME) else {
            return Ok(S::default());
        };
        t.clone().try_into().map_err(|e: toml::de::Error| {
            let msg = e.to_string();
            let hint = self.origins.hint(&msg);
            ConfigError::Invalid(format!("[{}] {}{hint}", S::NAME, msg.trim()))
        })
    }

    /// Parses and checks section `S`.
    pub fn section<S: Section>(&self) -> Result<S, ConfigError> {
        let s: S = self.parse()?;
        s.check(&self.origins)?;
        Ok(s)
    }

    /// Where each key was set.
    pub fn origins(&self) -> &Origins {
        &self.origins
    }

    /// Where each key was set, for flags to add theirs.
    pub fn origins_mut(&mut self) -> &mut Origins {
        &mut self.origins
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
