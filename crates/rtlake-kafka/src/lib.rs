//! Kafka through the real protocol (rdkafka/librdkafka), for any Kafka-compatible cluster.
//!
//! - [`config`]: the `[kafka]` and `[producer]` sections, their checks and flags.
//! - [`client`]: producer and consumer configurations built from those sections.
//! - [`cluster`]: one handle on a cluster, asked for topics, partitions, watermarks, offsets.
//! - [`admin`]: topic listing and description (partitions, offsets, config, groups and their
//!   lag).
//! - [`inspect`]: the brokers, and a peek at a topic's newest messages.
//! - [`bench`]: a cluster's read rate, for `rtlake bench consume`.
#![warn(missing_docs)]

pub mod admin;
pub mod bench;
pub mod client;
pub mod cluster;
pub mod config;
pub mod inspect;

pub use cluster::Cluster;
pub use rdkafka;

/// Errors talking to Kafka.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client library refused or failed a call (network, broker, protocol).
    #[error("kafka: {context}: {cause}")]
    Kafka {
        /// What rtlake was doing.
        context: String,
        /// The client's error.
        cause: rdkafka::error::KafkaError,
    },
    /// A topic operation was refused by the cluster.
    #[error("kafka: topic `{topic}`: {message}")]
    Topic {
        /// The topic.
        topic: String,
        /// What the broker said.
        message: String,
    },
    /// No broker answered.
    #[error(
        "cannot reach Kafka at {brokers} (kafka.brokers): {detail}. Is a broker running? `rtlake broker` starts one; `rtlake demo` runs everything"
    )]
    Unreachable {
        /// The bootstrap servers tried.
        brokers: String,
        /// What the client said.
        detail: String,
    },
    /// A topic that must exist does not.
    #[error("kafka: topic `{0}` does not exist (create it with `rtlake topics create {0}`)")]
    NoSuchTopic(String),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) trait Context<T> {
    fn context(self, what: impl Into<String>) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, rdkafka::error::KafkaError> {
    fn context(self, what: impl Into<String>) -> Result<T> {
        self.map_err(|cause| Error::Kafka {
            context: what.into(),
            cause,
        })
    }
}
