//! Typed topics: a client of the Confluent Schema Registry REST API ([`client`]), which
//! Confluent's registry, Apicurio (`/apis/ccompat/v7`), Karapace, Redpanda and Conduit's registry
//! all serve, and the Confluent wire format ([`wire`]: a zero byte, the schema's id as four
//! big-endian bytes, then the payload).
//!
//! The decoders that turn payloads into Arrow columns live with the pipeline's input
//! (`rtlake-stream`'s `ops`); this crate only knows schemas, ids and subjects.

#![warn(missing_docs)]

pub mod client;
pub mod wire;

pub use client::{Registered, RegistryConfig, Schema, SchemaRegistry, SchemaType};

/// What can go wrong talking to a registry or reading the wire format.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The registry did not answer (refused, timed out, a 5xx): worth retrying.
    #[error("schema registry {url}: {reason}")]
    Unreachable {
        /// The request's URL.
        url: String,
        /// What happened.
        reason: String,
        /// The cause, if the HTTP client gave one.
        #[source]
        source: Option<reqwest::Error>,
    },
    /// The registry answered with an error (a 4xx): retrying will not help.
    #[error("schema registry {url}: {status} {message}")]
    Refused {
        /// The request's URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The registry's `error_code` (40401 subject not found, 40403 schema not found, ...).
        code: Option<i64>,
        /// The registry's message.
        message: String,
    },
    /// The registry's answer is not what its API promises.
    #[error("schema registry {url}: unexpected answer: {reason}")]
    Protocol {
        /// The request's URL.
        url: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The configuration is unusable (a bad URL, half of a credential).
    #[error("{key}: {reason}")]
    Config {
        /// The key or environment variable at fault.
        key: String,
        /// Why.
        reason: String,
    },
    /// A message that is not in the Confluent wire format.
    #[error("{0}")]
    Wire(String),
}

impl Error {
    /// True when retrying the same request later may succeed (the registry is down or busy).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unreachable { .. } => true,
            Error::Refused { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// True when the registry said the schema or subject does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Refused { status: 404, .. })
    }
}

/// This crate's results.
pub type Result<T> = std::result::Result<T, Error>;
