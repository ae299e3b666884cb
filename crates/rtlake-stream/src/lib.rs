//! The stream engine.
//!
//! - [`config`]: the `[run]` section and [`config::PipelineConfig`], all the engine reads.
//! - [`connectors`]: the Kafka source and sink, the file source (one folder each); [`source`]:
//!   the messages every source hands the engine, and where a partition resumes.
//! - [`operator`]: the interface of a stage; [`input`]: what it reads; [`registry`]: the
//!   operators, decoder and default pipeline a domain crate adds by name.
//! - [`ops`]: the general operators of declared pipelines (any topic, a declared schema or a
//!   schema registry's): JSON and Avro decoding to Arrow, SQL stages with static tables, window
//!   stages.
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
    /// The engine's own failures: their kind, what was being done, and the cause when there
    /// is one (kept as the error's source, for `{:#}` and the logs' chains).
    #[error("{kind}: {what}")]
    Engine {
        /// What kind of failure: it decides whether the epoch is retried.
        kind: Kind,
        /// What was being done, naming the stage, table, topic or file.
        what: String,
        /// The error that caused it.
        #[source]
        cause: Option<BoxError>,
    },
}

/// A cause of any error type.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What kind of failure an [`Error::Engine`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A rebalance could not be applied safely.
    Rebalance,
    /// The checkpoint (offset log, commit log, sink versions) could not be read or written.
    Checkpoint,
    /// An output refused the rows.
    Sink,
    /// The input could not be read.
    Source,
    /// Offsets the pipeline had not read are gone.
    DataLoss,
    /// The pipeline's configuration cannot run (a bad SQL statement, a key column the rows do
    /// not have): the user's to fix.
    Config,
    /// A schema registry did not answer for a while: the epoch is retried.
    Registry,
    /// The input's subject has a new schema version with columns the pipeline does not have:
    /// [`ingest::run`] builds the pipeline again with it (the epoch that met it committed
    /// nothing, and is read again).
    NewSchema,
}

impl Kind {
    /// Whether an epoch that failed this way is retried from the lake's positions (storage,
    /// Kafka or an output in trouble) or ends the run (lost data, an input that cannot be read,
    /// a pipeline that cannot run: retrying would meet them again).
    pub fn retryable(self) -> bool {
        !matches!(
            self,
            Self::DataLoss | Self::Source | Self::Config | Self::NewSchema
        )
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Rebalance => "rebalance",
            Self::Checkpoint => "checkpoint",
            Self::Sink => "sink",
            Self::Source => "source",
            Self::DataLoss => "data loss",
            Self::Config => "pipeline configuration",
            Self::Registry => "schema registry",
            Self::NewSchema => "new input schema",
        })
    }
}

impl Error {
    /// A failure of `kind` while doing `what`, with no other error behind it.
    pub fn new(kind: Kind, what: impl Into<String>) -> Self {
        Self::Engine {
            kind,
            what: what.into(),
            cause: None,
        }
    }

    /// A failure of `kind` while doing `what`, caused by `cause`.
    pub fn caused(kind: Kind, what: impl Into<String>, cause: impl Into<BoxError>) -> Self {
        Self::Engine {
            kind,
            what: what.into(),
            cause: Some(cause.into()),
        }
    }

    /// The kind of an engine failure; `None` for Kafka's, the lake's and state's own errors.
    pub fn kind(&self) -> Option<Kind> {
        match self {
            Self::Engine { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// The same failure as another kind (a sink's SQL error found while the pipeline is
    /// built is the configuration's).
    pub fn as_kind(self, kind: Kind) -> Self {
        match self {
            Self::Engine { what, cause, .. } => Self::Engine { kind, what, cause },
            other => other,
        }
    }

    /// The same failure, its `what` prefixed with where it happened (an engine failure's;
    /// Kafka's, the lake's and state's errors name their place themselves).
    pub fn within(self, place: impl std::fmt::Display) -> Self {
        match self {
            Self::Engine { kind, what, cause } => Self::Engine {
                kind,
                what: format!("{place}: {what}"),
                cause,
            },
            other => other,
        }
    }

    /// Whether an epoch that failed with this is retried from the lake's positions: Kafka's,
    /// the lake's and state's errors are (the storage or the cluster may come back), an engine
    /// failure as its kind says.
    pub fn retryable(&self) -> bool {
        self.kind().is_none_or(Kind::retryable)
    }
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

#[cfg(test)]
mod tests {
    use super::{Error, Kind};

    #[test]
    fn the_kind_decides_a_retry_and_the_cause_is_kept() {
        let e = Error::caused(
            Kind::Checkpoint,
            "offsets/0/42",
            std::io::Error::other("disk full"),
        );
        assert!(e.retryable());
        assert_eq!(e.to_string(), "checkpoint: offsets/0/42");
        let cause = std::error::Error::source(&e).map(|c| c.to_string());
        assert_eq!(cause.as_deref(), Some("disk full"));
        assert_eq!(
            rtlake_core::error::Chain(&e).to_string(),
            "checkpoint: offsets/0/42: disk full"
        );
        for k in [Kind::DataLoss, Kind::Source, Kind::Config] {
            assert!(!Error::new(k, "x").retryable(), "{k} ends the run");
        }
        for k in [Kind::Rebalance, Kind::Checkpoint, Kind::Sink] {
            assert!(Error::new(k, "x").retryable(), "{k} is retried");
        }
        let e = Error::new(Kind::Sink, "sql `SELECT nope`")
            .as_kind(Kind::Config)
            .within("the sink of table t");
        assert_eq!(
            e.to_string(),
            "pipeline configuration: the sink of table t: sql `SELECT nope`"
        );
        assert!(
            !e.retryable(),
            "a sink's SQL found bad at start is the user's to fix"
        );
    }
}
