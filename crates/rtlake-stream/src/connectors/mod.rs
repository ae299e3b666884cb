//! Where a pipeline's messages come from and where its rows go, one folder each.
//!
//! - [`kafka`]: the Kafka source (a consumer group whose partitions start where the lake
//!   says) and the Kafka sink (at least once, deduplicated by headers, or transactional).
//! - [`file`]: JSON Lines files, streamed line by line, as one partition.
//!
//! The Delta sink, exactly once per epoch through Delta transaction versions, is
//! `rtlake_lake::sink::DeltaSink`; a replay source (a lake's table read back as its messages)
//! is a domain's, registered on the engine's registry.

pub mod file;
pub mod kafka;
