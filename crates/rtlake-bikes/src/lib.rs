//! The bike domain: Seoul's bikeList API and its recorded data, as events on Kafka.
//!
//! - [`config`]: the `[source]` section, and the domain's defaults for the others.
//! - [`changes`]: the change rule (rentals/returns) and its per-station state.
//! - [`model`]: the API row, the topic's event (docs/data-contracts.md) and its decoding for the lake.
//! - [`api`]: the bikeList HTTP client, every result code and error shape, the secret key.
//! - [`replay`]: the simulator over recorded data, byte for byte like `gen_events.py`.
//! - [`seoul`]: Seoul time, the bike tables' partitions.
//! - [`districts`]: station → district by point-in-polygon.
//! - [`produce`]: the producer loop of `rtlake produce bikes`.
//! - [`stream`]: the bike pipeline's operators on the stream engine, registered by name.
//! - [`tables`]: the bike tables' names and Arrow schemas.
//! - [`web`]: the dashboard `rtlake serve` mounts: the map, the stations, the live view.
//! - [`gbfs`]: any GBFS bike-share system's feeds as events (`rtlake produce gbfs URL`).
//! - `fake_api`, `fake_gbfs` (feature `fake-api`): local stand-ins for the bikeList API and
//!   a GBFS system, for tests.
#![warn(missing_docs)]

pub mod api;
pub mod changes;
pub mod config;
pub mod districts;
#[cfg(feature = "fake-api")]
pub mod fake_api;
#[cfg(feature = "fake-api")]
pub mod fake_gbfs;
mod flat_json;
pub mod formats;
pub mod gbfs;
pub mod model;
pub mod produce;
pub mod replay;
pub mod seoul;
pub mod stream;
pub mod tables;
pub mod web;

/// Errors of the bike domain.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The recorded data is missing or malformed.
    #[error("recorded data: {0}")]
    Data(String),
    /// The bikeList API failed.
    #[error(transparent)]
    Api(#[from] api::ApiError),
    /// Kafka failed.
    #[error(transparent)]
    Kafka(rtlake_kafka::Error),
    /// Messages were not delivered.
    #[error("delivery: {0}")]
    Delivery(String),
    /// A GBFS feed could not be read (HTTP, or not the spec's shape).
    #[error("GBFS feed {0}")]
    Feed(String),
    /// The replay's saved position cannot be used.
    #[error("replay state: {0}")]
    State(String),
    /// The schema registry refused or did not answer.
    #[error("schema registry: {0}")]
    Registry(String),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
