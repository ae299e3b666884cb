//! The lake: Delta Lake tables under one root, written exactly once.
//!
//! - [`Lake`] (here): the root (a local path or an object store URL) and where each table lives.
//! - [`config`]: the `[lake]` section.
//! - [`sink`]: the Delta sink, whose commits carry a `txn` action per input partition
//!   (kafka-delta-ingest's protocol) so that a re-run of the same offsets is skipped.
//! - [`iceberg`]: Iceberg tables, the other format (`lake.format = "iceberg"`), with the same
//!   exactly-once protocol through the snapshot summary.
//! - [`catalog`]: the tables found under the root, for SQL.
//! - [`maintenance`]: compaction, log checkpoints, vacuum, table health.
//! - [`faults`]: an object store failing a share of requests, for availability tests.
//! - [`table`]: a sink of either format, what the pipelines write through.
//! - [`upsert`]: upsert sinks' rows merged by key (Delta by MERGE, Iceberg copy-on-write).
//! - [`store`]: the object stores (local folders, S3) the lake and the checkpoints live in.
#![warn(missing_docs)]

pub mod catalog;
pub mod config;
pub mod faults;
pub mod iceberg;
pub mod maintenance;
pub mod sink;
pub mod store;
pub mod table;
pub mod upsert;

pub use config::{LakeConfig, TableFormat};
use rtlake_core::schema::TableName;
use rtlake_core::time::UtcOffset;
use std::collections::HashMap;
use url::Url;

pub use deltalake;

/// The key under which a commit records the newest event it holds: the greatest Kafka
/// timestamp (ms since the Unix epoch) of its epoch's messages, in a Delta commit's
/// `commitInfo` and an Iceberg snapshot's summary. `rtlake lake status` reads a table's freshness
/// from it; compactions do not carry it.
pub const NEWEST_EVENT_KEY: &str = "rtlake.newestEventMs";

/// Errors of the lake.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The lake location is not usable.
    #[error("lake location `{uri}`: {reason}")]
    Location {
        /// The location as given.
        uri: String,
        /// Why.
        reason: String,
    },
    /// A Delta operation failed (storage, log, conflict).
    #[error("table {table}: {cause}")]
    Delta {
        /// The table.
        table: String,
        /// The error from delta-rs (boxed: it is large, and errors travel by value).
        cause: Box<deltalake::DeltaTableError>,
    },
    /// Another writer committed the same input partition first: this epoch must be dropped and
    /// the partition re-read from what the table holds (a rebalance moved it).
    #[error(
        "table {table}: partition {app_id} is at version {found:?} in the table, not {expected:?}: another worker wrote it"
    )]
    ConflictingOffsets {
        /// The table.
        table: String,
        /// The txn app id `<pipeline>/<sink>/<partition>`.
        app_id: String,
        /// What this worker expected.
        expected: Option<i64>,
        /// What the table holds.
        found: Option<i64>,
    },
    /// Other writers' commits (another worker's upserts of other partitions, a compaction) kept
    /// changing the files an epoch's MERGE read, attempt after attempt; nothing of it landed.
    #[error(
        "table {table}: other writers' commits changed the files this epoch's MERGE read, {attempts} times in a row"
    )]
    ConcurrentCommits {
        /// The table.
        table: String,
        /// The merges tried.
        attempts: u32,
        /// delta-rs' refusal of the last one.
        #[source]
        cause: Box<deltalake::kernel::transaction::TransactionError>,
    },
    /// An Iceberg table's files or catalog failed.
    #[error("table {table}: {reason}")]
    Iceberg {
        /// The table.
        table: String,
        /// What failed, with the cause's words.
        reason: String,
    },
    /// An Iceberg REST catalog refused a request or could not be reached.
    #[error("Iceberg catalog {uri}: {reason}")]
    Catalog {
        /// The catalog's URL.
        uri: String,
        /// What it answered, or why it could not be asked.
        reason: String,
    },
    /// A batch does not fit the table.
    #[error("table {table}: {reason}")]
    Schema {
        /// The table.
        table: String,
        /// What does not fit.
        reason: String,
    },
    /// Table maintenance stopped short (its compaction lease was lost, or it ran too long).
    #[error("table {table}: {reason}")]
    Maintenance {
        /// The table.
        table: String,
        /// Why.
        reason: String,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The lake root.
#[derive(Clone, Debug)]
pub struct Lake {
    root: Url,
    options: HashMap<String, String>,
    time_zone: UtcOffset,
    format: TableFormat,
    /// The Iceberg REST catalog the lake's Iceberg tables are registered in (`None`: the file
    /// catalog under each table).
    rest: Option<std::sync::Arc<iceberg::rest::RestCatalog>>,
}

impl Lake {
    /// Opens the lake at a local path (made if missing) or an object store URL.
    pub fn open(cfg: &LakeConfig) -> Result<Self> {
        let uri = cfg.uri.trim();
        let err = |reason: String| Error::Location {
            uri: uri.to_string(),
            reason,
        };
        let root = match Url::parse(uri) {
            Ok(u) if u.scheme().len() > 1 => u,
            _ => {
                // A plain path (a one-letter "scheme" is a Windows drive).
                std::fs::create_dir_all(uri).map_err(|e| err(e.to_string()))?;
                let abs = std::fs::canonicalize(uri).map_err(|e| err(e.to_string()))?;
                Url::from_directory_path(&abs).map_err(|_| err("not an absolute path".into()))?
            }
        };
        if crate::faults::enabled() {
            store::register();
        }
        if root.scheme() == "file" {
            let path = root
                .to_file_path()
                .map_err(|_| err("not a local path".into()))?;
            std::fs::create_dir_all(&path).map_err(|e| err(e.to_string()))?;
        } else if store::S3_SCHEMES.contains(&root.scheme()) {
            store::register();
            if root.host_str().is_none_or(str::is_empty) {
                return Err(err("an S3 URL names its bucket: s3://bucket/prefix".into()));
            }
        } else if !matches!(root.scheme(), "memory") {
            return Err(err(format!(
                "`{}://` is not supported by this build (local paths, file:// and s3:// are)",
                root.scheme()
            )));
        }
        let mut root = root;
        if !root.path().ends_with('/') {
            root.set_path(&format!("{}/", root.path()));
        }
        let rest = match cfg.catalog.trim() {
            "file" | "" => None,
            uri => Some(std::sync::Arc::new(iceberg::rest::RestCatalog::new(
                uri,
                &cfg.catalog_warehouse,
                &cfg.catalog_namespace,
            )?)),
        };
        Ok(Self {
            root,
            options: cfg.storage_options.clone().into_iter().collect(),
            time_zone: cfg.time_zone,
            format: cfg.format,
            rest,
        })
    }

    /// The UTC offset of `_rejected`'s date and hour partitions (`lake.time-zone`).
    pub fn time_zone(&self) -> UtcOffset {
        self.time_zone
    }

    /// The format new tables are written in (`lake.format`).
    pub fn format(&self) -> TableFormat {
        self.format
    }

    /// The Iceberg REST catalog of the lake (`lake.catalog`), if it has one.
    pub fn rest_catalog(&self) -> Option<&std::sync::Arc<iceberg::rest::RestCatalog>> {
        self.rest.as_ref()
    }

    /// The root URL, ending in `/`.
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// Where a table lives: `<root>/<ns>/<name>/`.
    pub fn table_url(&self, table: TableName) -> Url {
        // Table paths are made of fixed identifiers: joining cannot fail.
        self.root
            .join(&format!("{}/", table.path()))
            .expect("table path joins")
    }

    /// Object store options.
    pub fn storage_options(&self) -> &HashMap<String, String> {
        &self.options
    }

    /// The store under `url` (the lake root or a folder in it, or a checkpoint elsewhere), with
    /// the lake's storage options.
    pub fn store_at(&self, url: &Url) -> Result<std::sync::Arc<dyn object_store::ObjectStore>> {
        store::open(url, &self.options)
    }
}
