//! The machinery of typed, layered configuration, with no section of its own.
//!
//! Each crate owns the section it reads (`rtlake-kafka` owns `[kafka]` and `[producer]`,
//! `rtlake-lake` `[lake]`, `rtlake-stream` `[run]`, ...): a struct that implements [`Section`]
//! and checks its own values. The binary puts the sections together and layers them: built-in
//! defaults < TOML file < `RTLAKE_*` environment < flags ([`Layers`]).
//!
//! Every layer but the flags is merged into one TOML table before the typed parse, so a bad value
//! gets the same error whichever layer it came from, and the error names the key, the value and
//! where it was set. Flags are typed ([`flags!`](crate::flags)): clap parses them into the
//! section's own field types, so a flag cannot name a field that does not exist.

mod flags;
mod layers;
mod options;

pub use layers::{Layers, Origins, parse_scalar};
pub use options::{Options, is_secret_key};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// One section of the configuration, owned by the crate that reads it.
pub trait Section: DeserializeOwned + Default {
    /// The section's TOML table, also the first word of its `RTLAKE_*` variables.
    const NAME: &'static str;

    /// Checks ranges and consistency; the error names the key, the value and its origin.
    fn check(&self, at: &Origins) -> Result<(), ConfigError>;
}

/// An error in the configuration, naming the key and the bad value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {cause}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
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

/// Checks a listen address: an IP address and port, or `off` where `off_ok`.
pub fn check_listen(at: &Origins, key: &str, v: &str, off_ok: bool) -> Result<(), ConfigError> {
    if (off_ok && v == "off") || v.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    let hint = if off_ok { " (or off)" } else { "" };
    Err(at.err(
        key,
        &v,
        &format!("must be an IP address and port, e.g. 127.0.0.1:9464{hint}"),
    ))
}

/// Checks an HTTP(S) URL.
pub fn check_http_url(at: &Origins, key: &str, v: &str) -> Result<(), ConfigError> {
    let reason = match url::Url::parse(v) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => return Ok(()),
        Ok(u) => format!("scheme `{}` is not http or https", u.scheme()),
        Err(e) => e.to_string(),
    };
    Err(at.err(key, &v, &reason))
}
