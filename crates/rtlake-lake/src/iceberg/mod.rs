//! Apache Iceberg tables (format v2), written exactly once.
//!
//! rtlake writes Iceberg itself rather than through the `iceberg` crate: that crate is built on
//! another Arrow than rtlake's (a second Arrow and Parquet in every build), and it cannot commit
//! what the lake needs beyond appends (a compaction's file replacement, snapshot expiry with
//! file deletion). What is written is the spec's: Parquet data files with field ids, Avro
//! manifests and manifest lists with the spec's schemas, JSON table metadata.
//!
//! - [`schema`]: Iceberg schemas and partition specs from Arrow schemas.
//! - [`metadata`]: the table metadata and the changes a commit makes.
//! - [`evolve`]: schema evolution by field id.
//! - [`manifest`]: manifests and manifest lists.
//! - [`catalog`]: where the current metadata is recorded (a file catalog under the table).
//! - [`rest`]: or an Iceberg REST catalog.
//! - [`maintain`]: compaction, snapshot expiry and orphan removal.
//! - [`read`]: a snapshot's data files, for readers and status.
//! - [`sink`]: the exactly-once sink (offsets in the snapshot summary).

pub mod catalog;
pub mod evolve;
pub mod maintain;
pub mod manifest;
pub mod metadata;
pub mod read;
pub mod rest;
pub mod schema;
pub mod sink;

pub use catalog::Catalog;
pub use sink::IcebergSink;
