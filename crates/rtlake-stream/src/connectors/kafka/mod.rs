//! Kafka: the source ([`source`]) and the sink ([`sink`], with its transaction probe and its
//! message [`values`]). Both speak the Kafka protocol
//! through rdkafka, so any Kafka-compatible cluster works.

mod probe;
pub mod sink;
pub mod source;
pub(crate) mod values;
