//! Kafka: the source ([`source`]) and the sink ([`sink`]). Both speak the Kafka protocol
//! through rdkafka, so any Kafka-compatible cluster works.

pub mod sink;
pub mod source;
