//! The foundation shared by every rtlake crate.
//!
//! - [`config`]: the machinery of typed, layered configuration; each crate owns its section.
//! - [`error`]: an error shown with its causes.
//! - [`ddl`]: a declared pipeline's schema, window and aggregate notation.
//! - [`units`]: durations and byte sizes as people write them.
//! - [`schema`]: the Arrow schemas and names of the lake's tables .
//! - [`metrics`]: the Prometheus metrics of every process.
//! - [`time`]: RFC 3339, and the date/hour partition of an instant at a UTC offset.
//! - [`testing`]: how a test that cannot run here is counted as skipped, not passed.
#![warn(missing_docs)]

pub mod config;
pub mod ddl;
pub mod error;
pub mod metrics;
pub mod schema;
pub mod testing;
pub mod time;
pub mod units;

pub use config::{ConfigError, Layers, Section};
