//! rtlake's storage engine for the embedded broker: records in segment files, the rest in SQLite.
//!
//! nisshi's SQLite engine stores one SQL row per record and rebuilds batches on every fetch,
//! which bounds a durable broker at about 30k records/s on two cores (bench/README.md, "Embedded broker engines"). This engine
//! keeps what a fetch reads, the produced record batches, in a log of segment files per
//! partition (as Kafka does: the batch bytes as produced, an in-memory index, a partial tail
//! cut on restart), and hands everything else (topics and their configs, consumer groups and
//! committed offsets, producer ids) to nisshi's SQLite engine, which handles those well.
//!
//! Durability: a batch is written to its segment before the produce is acknowledged, so it
//! survives the broker process being killed; segments are fsynced every second (a power loss
//! can lose the last second, as with Kafka's default of leaving flushes to the OS). Retention
//! (`retention.ms`, `retention.bytes`) deletes whole segments; `DeleteRecords` moves the log
//! start. Transactions are not offered (nisshi's SQLite engine refuses transactional producers),
//! so the last stable offset is the high watermark.

mod partition;
mod producers;
mod storage;

pub use storage::LogStorage;
