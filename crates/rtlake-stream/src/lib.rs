//! The stream engine.
//!
//! - [`config`]: the `[run]` section and [`config::PipelineConfig`], all the engine reads.
//! - [`connectors`]: the Kafka source and sink, the file source (one folder each); [`source`]:
//!   the messages every source hands the engine, and where a partition resumes.
//! - [`operator`]: the interface of a stage; [`input`]: what it reads; [`registry`]: the
//!   operators, decoder and default pipeline a domain crate adds by name.
//! - [`ops`]: the general operators of declared pipelines (any topic, a declared schema):
//!   JSON decoding to Arrow, SQL stages with static tables, window stages.
//! - [`window`]: event-time windows, per-partition watermarks and output modes; [`ahead`]: the
//!   decoders' screen that keeps one event far ahead of its partition from moving a watermark.
//! - [`pipeline`]: operators and their outputs (Delta tables, Kafka topics), each
//!   optionally through a [`sql`] projection and filter.
//! - [`rejected`]: `_rejected` rows.
//! - [`state`] and [`checkpoint`]: keyed state snapshots, the offset log and the commit log.
//! - [`engine`]: one epoch, exactly once; [`ingest`]: `rtlake run`; [`worker`]: the epoch
//!   loop over Kafka and the watchdog that keeps it going.
#![warn(missing_docs)]

pub mod ahead;
pub mod checkpoint;
pub mod config;
pub mod connectors;
pub mod engine;
mod heartbeat;
pub mod ingest;
pub mod input;
pub mod maintain;
pub mod operator;
pub mod ops;
pub mod pipeline;
pub mod registry;
pub mod rejected;
pub mod source;
pub mod sql;
pub mod state;
pub mod window;
pub mod worker;

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
    /// The checkpoint (offset log, commit log, sink versions) could not be read or written.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// An output refused the rows.
    #[error("sink: {0}")]
    Sink(String),
    /// The input could not be read.
    #[error("source: {0}")]
    Source(String),
    /// Offsets the pipeline had not read are gone.
    #[error("data loss: {0}")]
    DataLoss(String),
    /// The pipeline's configuration cannot run (a bad SQL statement, a key column the rows do
    /// not have): the user's to fix, never retried.
    #[error("pipeline configuration: {0}")]
    Config(String),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Aborts the process at a named point when `RTLAKE_FAILPOINT` names it: for crash tests.
/// `after-commit:<output>` fires right after that output's commit (`bronze.orders`,
/// `kafka:orders.changes`, ...); `after-publish:kafka:<topic>` after a Kafka sink's
/// messages are delivered but before its version is recorded.
pub fn failpoint(name: &str) {
    if std::env::var("RTLAKE_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("rtlake: failpoint {name} reached, aborting");
        std::process::abort();
    }
}
