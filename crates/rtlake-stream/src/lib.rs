//! The stream engine.
//!
//! - [`source`]: the Kafka source; partitions resume from the lake's txn versions.
//! - [`bronze`]: station status messages → `bronze.station_status` and `_rejected` batches.
//! - [`silver`]: the change rule over station snapshots → `silver.station_changes`.
//! - [`gold`]: hourly windows per station → `gold.station_hourly`.
//! - [`state`]: keyed state snapshots, chosen by the txn version the table holds.
//! - [`ingest`]: the epoch loop of `rtlake run` with exactly-once commits.
//! - [`window`]: event-time windows, per-partition watermarks and output modes.
#![warn(missing_docs)]

pub mod bronze;
pub mod gold;
pub mod ingest;
pub mod silver;
pub mod source;
pub mod state;
pub mod window;

/// Errors of the stream engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Kafka failed.
    #[error(transparent)]
    Kafka(#[from] rtlake_kafka::Error),
    /// The lake failed.
    #[error(transparent)]
    Lake(#[from] rtlake_lake::Error),
    /// Keyed state could not be saved or restored.
    #[error(transparent)]
    State(#[from] state::StateError),
    /// A rebalance could not be applied safely.
    #[error("rebalance: {0}")]
    Rebalance(String),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Aborts the process at a named point when `RTLAKE_FAILPOINT` names it: for crash tests.
/// `after-commit:<table>` fires right after that table's commit.
pub fn failpoint(name: &str) {
    if std::env::var("RTLAKE_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("rtlake: failpoint {name} reached, aborting");
        std::process::abort();
    }
}
