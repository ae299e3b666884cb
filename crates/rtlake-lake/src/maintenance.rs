//! Table maintenance: compaction, log checkpoints with log cleanup, vacuum, and each table's
//! health (`rtlake lake status|optimize|checkpoint|vacuum`, and the processor's schedule).
//!
//! All of it is safe beside a running pipeline. Compaction rewrites small files into files near
//! a target size in one commit whose actions have `dataChange=false`: readers and the pipeline's
//! appends go on, delta-rs' conflict checker lets an append and a compaction of other files
//! both commit, and a compaction that loses to a commit touching its files fails and is retried
//! next time; the pipelines' `txn` versions are carried over, so exactly once holds. Vacuum only
//! deletes files that no version within the retention still references.
//!
//! Two compactions of one table must never run at once: delta-rs 1.1's conflict checker lets
//! two commits that remove the same files with `dataChange=false` both land, so each would add
//! its own rewritten copy of the same rows (measured: every row of bronze doubled, in
//! `tests/maintenance.rs`). A compaction therefore holds a lease first ([`Lease`]), taken with a
//! create-only put that the store grants to one writer, on local disk and on S3 alike.

use crate::catalog::{CatalogEntry, list_tables};
use crate::{Error, Lake, Result};
use deltalake::DeltaTable;
use deltalake::operations::optimize::OptimizeType;
use futures::StreamExt;
use std::num::NonZeroU64;
use std::time::Duration;

/// A table's health, as `rtlake lake status` prints it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TableHealth {
    /// `ns.name`.
    pub table: String,
    /// The latest version.
    pub version: Option<u64>,
    /// Data files in the latest version.
    pub files: usize,
    /// Their total size, bytes.
    pub bytes: u64,
    /// Rows, from the files' statistics.
    pub rows: u64,
    /// When the latest commit was made, ms since the Unix epoch.
    pub last_commit_ms: Option<i64>,
    /// The latest commit's operation (`WRITE`, `OPTIMIZE`, ...).
    pub last_operation: Option<String>,
}

impl TableHealth {
    /// The average data file size, bytes.
    pub fn avg_file_bytes(&self) -> u64 {
        self.bytes.checked_div(self.files as u64).unwrap_or(0)
    }
}

/// What a compaction did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Compaction {
    /// Who held the table's compaction lease, when this one did not run.
    pub skipped_for: Option<String>,
    /// Files rewritten.
    pub files_removed: u64,
    /// Files written.
    pub files_added: u64,
    /// Partitions touched.
    pub partitions: u64,
}

async fn open(lake: &Lake, entry: &CatalogEntry) -> Result<DeltaTable> {
    DeltaTable::try_from_url_with_storage_options(entry.url.clone(), lake.storage_options().clone())
        .await
        .map_err(|cause| Error::Delta {
            table: entry.qualified(),
            cause: Box::new(cause),
        })
}

fn de(entry: &CatalogEntry) -> impl Fn(deltalake::DeltaTableError) -> Error + '_ {
    move |cause| Error::Delta {
        table: entry.qualified(),
        cause: Box::new(cause),
    }
}

/// The health of one table.
pub async fn health(lake: &Lake, entry: &CatalogEntry) -> Result<TableHealth> {
    let table = open(lake, entry).await?;
    let (mut files, mut bytes, mut rows) = (0, 0u64, 0u64);
    if table.version().is_some() {
        for f in table.snapshot().map_err(de(entry))?.log_data().iter() {
            files += 1;
            bytes += f.size().max(0) as u64;
            rows += f.num_records().unwrap_or(0) as u64;
        }
    }
    let last = match table.version() {
        Some(_) => table
            .history(Some(1))
            .next()
            .await
            .transpose()
            .ok()
            .flatten(),
        None => None,
    };
    Ok(TableHealth {
        table: entry.qualified(),
        version: table.version(),
        files,
        bytes,
        rows,
        last_commit_ms: last.as_ref().and_then(|c| c.timestamp),
        last_operation: last.and_then(|c| c.operation),
    })
}

/// The health of every table, sorted by name.
pub async fn status(lake: &Lake) -> Result<Vec<TableHealth>> {
    let mut out = Vec::new();
    for entry in list_tables(lake).await? {
        out.push(health(lake, &entry).await?);
    }
    Ok(out)
}

/// Compacts the table's small files, per partition, into files of about `target` bytes, sorted
/// by `z_order` columns if any are given (Z-order), else bin-packed in their order.
pub async fn optimize(
    lake: &Lake,
    entry: &CatalogEntry,
    target: NonZeroU64,
    z_order: &[String],
) -> Result<Compaction> {
    let lease = match Lease::take(lake, entry).await? {
        Ok(l) => l,
        Err(holder) => {
            return Ok(Compaction {
                skipped_for: Some(holder),
                ..Default::default()
            });
        }
    };
    // The table is read only once the lease is held: a snapshot read before could still list
    // files that the lease's previous holder has just compacted, and rewriting them again would
    // double their rows (seen in tests/maintenance.rs: silver 1,558 rows for 1,111).
    let done = match open(lake, entry).await {
        Ok(table) if table.version().is_none() => Ok(Compaction::default()),
        Ok(table) => compact(table, entry, target, z_order).await,
        Err(e) => Err(e),
    };
    lease.release().await;
    done
}

async fn compact(
    table: DeltaTable,
    entry: &CatalogEntry,
    target: NonZeroU64,
    z_order: &[String],
) -> Result<Compaction> {
    let kind = match z_order {
        [] => OptimizeType::Compact,
        cols => OptimizeType::ZOrder(cols.to_vec()),
    };
    let (_, m) = table
        .optimize()
        .with_target_size(target)
        .with_type(kind)
        .with_max_concurrent_tasks(1)
        .await
        .map_err(de(entry))?;
    Ok(Compaction {
        skipped_for: None,
        files_removed: m.num_files_removed,
        files_added: m.num_files_added,
        partitions: m.partitions_optimized,
    })
}

/// Writes a log checkpoint at the latest version, then removes the log entries older than the
/// table's log retention (`delta.logRetentionDuration`, 30 days by default) that a checkpoint
/// covers. Returns the version and how many log files were removed.
pub async fn checkpoint(lake: &Lake, entry: &CatalogEntry) -> Result<(Option<u64>, usize)> {
    let table = open(lake, entry).await?;
    let Some(version) = table.version() else {
        return Ok((None, 0));
    };
    deltalake::checkpoints::create_checkpoint(&table, None)
        .await
        .map_err(de(entry))?;
    let cleaned = deltalake::checkpoints::cleanup_metadata(&table, None)
        .await
        .map_err(de(entry))?;
    Ok((Some(version), cleaned))
}

/// Deletes the data files no version younger than `retention` references (those compaction
/// replaced). Returns how many were deleted.
pub async fn vacuum(lake: &Lake, entry: &CatalogEntry, retention: Duration) -> Result<usize> {
    let table = open(lake, entry).await?;
    if table.version().is_none() {
        return Ok(0);
    }
    let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let (_, m) = table
        .vacuum()
        .with_retention_period(retention)
        .with_enforce_retention_duration(false)
        .await
        .map_err(de(entry))?;
    Ok(m.files_deleted.len())
}

/// A table's compaction lease: `<lake>/_maintenance/<table>/lease-<n>.json`, numbered. Taking
/// it is creating the next number with a create-only put, which one writer wins; the holder
/// marks it released when done. A lease not released within [`Lease::TTL`] (its holder died)
/// may be taken over the same way, by creating the next number.
pub struct Lease {
    store: std::sync::Arc<dyn object_store::ObjectStore>,
    path: object_store::path::Path,
    body: serde_json::Value,
}

impl Lease {
    /// How long a lease holds without being released; far longer than a compaction takes.
    pub const TTL: Duration = Duration::from_secs(15 * 60);

    /// Takes the lease, or says who holds it (`Ok(Err(holder))`).
    pub async fn take(
        lake: &Lake,
        entry: &CatalogEntry,
    ) -> Result<std::result::Result<Self, String>> {
        use object_store::{ObjectStoreExt, PutMode, PutOptions, path::Path};
        let url = lake
            .root()
            .join(&format!(
                "_maintenance/{}/",
                entry.qualified().replace('.', "/")
            ))
            .map_err(|e| Error::Location {
                uri: entry.qualified(),
                reason: e.to_string(),
            })?;
        let store = lake.store_at(&url)?;
        let err = |e: object_store::Error| Error::Location {
            uri: url.to_string(),
            reason: e.to_string(),
        };
        let listing = store.list_with_delimiter(None).await.map_err(err)?;
        let mut numbers: Vec<u64> = listing
            .objects
            .iter()
            .filter_map(|o| {
                o.location
                    .filename()?
                    .strip_prefix("lease-")?
                    .strip_suffix(".json")?
                    .parse()
                    .ok()
            })
            .collect();
        numbers.sort_unstable();
        let name = |n: u64| Path::from(format!("lease-{n:012}.json"));
        let now = chrono::Utc::now().timestamp_millis();
        if let Some(&last) = numbers.last() {
            let held: serde_json::Value = match store.get(&name(last)).await {
                Ok(r) => serde_json::from_slice(&r.bytes().await.map_err(err)?).unwrap_or_default(),
                Err(object_store::Error::NotFound { .. }) => serde_json::Value::Null,
                Err(e) => return Err(err(e)),
            };
            let released = held["released"].as_bool().unwrap_or(false);
            let expired = held["expires_ms"].as_i64().is_none_or(|t| t < now);
            if !released && !expired {
                return Ok(Err(held["holder"].as_str().unwrap_or("?").to_string()));
            }
            // Old leases go; the newest few stay for the record.
            for old in numbers.iter().rev().skip(4) {
                let _ = store.delete(&name(*old)).await;
            }
        }
        let next = numbers.last().map_or(0, |n| n + 1);
        let holder = format!(
            "{}:{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into()),
            std::process::id()
        );
        let body = serde_json::json!({
            "holder": holder,
            "taken_ms": now,
            "expires_ms": now + Self::TTL.as_millis() as i64,
            "released": false,
        });
        let path = name(next);
        let put = store
            .put_opts(
                &path,
                body.to_string().into(),
                PutOptions::from(PutMode::Create),
            )
            .await;
        match put {
            Ok(_) => Ok(Ok(Self { store, path, body })),
            Err(object_store::Error::AlreadyExists { .. }) => {
                Ok(Err("another writer, who took it just now".into()))
            }
            Err(e) => Err(err(e)),
        }
    }

    /// Marks the lease released (if that fails, it expires after [`Lease::TTL`]).
    pub async fn release(mut self) {
        use object_store::ObjectStoreExt;
        self.body["released"] = true.into();
        if let Err(e) = self
            .store
            .put(&self.path, self.body.to_string().into())
            .await
        {
            tracing::warn!(lease = %self.path, error = %e, "could not release the compaction lease; it expires by itself");
        }
    }
}
