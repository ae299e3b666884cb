//! Table maintenance: compaction, log checkpoints with log cleanup, vacuum, and each table's
//! health (`rtlake lake status|optimize|checkpoint|vacuum`, and the processor's schedule).
//!
//! All of it is safe beside a running pipeline. Compaction rewrites small files into files near
//! a target size in one commit whose actions have `dataChange=false`: readers and the pipeline's
//! appends go on, delta-rs' conflict checker lets an append and a compaction of other files
//! both commit, and a compaction that loses to a commit touching its files (an upsert's merge)
//! commits nothing, says so ([`Compaction::lost_race`]) and runs again next time; the pipelines' `txn` versions are carried over, so exactly once holds. Vacuum only
//! deletes files that no version within the retention still references.
//!
//! Two compactions of one table must never run at once: delta-rs 1.1's conflict checker lets
//! two commits that remove the same files with `dataChange=false` both land, so each would add
//! its own rewritten copy of the same rows (measured: every row of bronze doubled, in
//! `tests/it/maintenance.rs`). A compaction therefore holds a lease first ([`Lease`]), taken with a
//! create-only put that the store grants to one writer, on local disk and on S3 alike.

use crate::catalog::{CatalogEntry, list_tables};
use crate::{Error, Lake, Result};
use deltalake::DeltaTable;
use deltalake::operations::optimize::OptimizeType;
use futures::StreamExt;
use std::num::NonZeroU64;
use std::time::Duration;

mod lease;
pub use lease::Lease;
use lease::while_held;

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
    /// The newest event the table holds: the Kafka timestamp (ms) its latest pipeline commit
    /// recorded ([`crate::NEWEST_EVENT_KEY`]), looked for among the last [`NEWEST_LOOKBACK`]
    /// commits (a compaction records none). `None` for a table no pipeline of this version wrote.
    pub newest_event_ms: Option<i64>,
}

/// How many commits back [`TableHealth::newest_event_ms`] is looked for.
pub const NEWEST_LOOKBACK: usize = 20;

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
    /// Why it committed nothing after running: a commit (an upsert's merge) changed files it
    /// had read. Not an error: the files are compacted next time.
    pub lost_race: Option<String>,
    /// Files rewritten.
    pub files_removed: u64,
    /// Files written.
    pub files_added: u64,
    /// Partitions touched.
    pub partitions: u64,
}

async fn open(lake: &Lake, entry: &CatalogEntry) -> Result<DeltaTable> {
    if entry.format == crate::TableFormat::Iceberg {
        return Err(Error::Maintenance {
            table: entry.qualified(),
            reason: "an Iceberg table: rtlake's Z-order and partition retention are built for Delta tables only so far".into(),
        });
    }
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
    if entry.format == crate::TableFormat::Iceberg {
        return iceberg_health(lake, entry).await;
    }
    let table = open(lake, entry).await?;
    let (mut files, mut bytes, mut rows) = (0, 0u64, 0u64);
    if table.version().is_some() {
        for f in table.snapshot().map_err(de(entry))?.log_data().iter() {
            files += 1;
            bytes += f.size().max(0) as u64;
            rows += f.num_records().unwrap_or(0) as u64;
        }
    }
    let recent: Vec<deltalake::kernel::CommitInfo> = match table.version() {
        Some(_) => {
            table
                .history(Some(NEWEST_LOOKBACK))
                .take(NEWEST_LOOKBACK)
                .filter_map(|c| async move { c.ok() })
                .collect()
                .await
        }
        None => Vec::new(),
    };
    let newest_event_ms = recent
        .iter()
        .find_map(|c| c.info.get(crate::NEWEST_EVENT_KEY).and_then(|v| v.as_i64()));
    let last = recent.into_iter().next();
    Ok(TableHealth {
        table: entry.qualified(),
        version: table.version(),
        files,
        bytes,
        rows,
        last_commit_ms: last.as_ref().and_then(|c| c.timestamp),
        last_operation: last.and_then(|c| c.operation),
        newest_event_ms,
    })
}

async fn iceberg_health(lake: &Lake, entry: &CatalogEntry) -> Result<TableHealth> {
    let name = entry.qualified();
    let Some(t) = crate::iceberg::read::TableFiles::open(lake, &entry.url, &name).await? else {
        return Err(Error::Iceberg {
            table: name,
            reason: "no metadata in its file catalog".into(),
        });
    };
    let files = t.data_files(None).await?;
    let snapshot = t.table.metadata.current_snapshot();
    // The newest event recorded by the latest snapshots, walking back through their parents.
    let mut newest_event_ms = None;
    let mut at = snapshot;
    for _ in 0..NEWEST_LOOKBACK {
        let Some(s) = at else { break };
        if let Some(ms) = s
            .summary
            .get(crate::NEWEST_EVENT_KEY)
            .and_then(|v| v.parse::<i64>().ok())
        {
            newest_event_ms = Some(ms);
            break;
        }
        at = s
            .parent_snapshot_id
            .and_then(|id| t.table.metadata.snapshot(id));
    }
    Ok(TableHealth {
        table: name,
        version: Some(t.table.version),
        files: files.len(),
        bytes: files.iter().map(|f| f.file_size.max(0) as u64).sum(),
        rows: files.iter().map(|f| f.record_count.max(0) as u64).sum(),
        last_commit_ms: snapshot.map(|s| s.timestamp_ms),
        last_operation: snapshot.and_then(|s| s.summary.get("operation").cloned()),
        newest_event_ms,
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
    // double their rows (seen in tests/it/maintenance.rs: silver 1,558 rows for 1,111).
    let work = async {
        if entry.format == crate::TableFormat::Iceberg {
            let c = crate::iceberg::maintain::compact(
                lake,
                &entry.url,
                &entry.qualified(),
                target.get(),
            )
            .await?;
            return Ok(Compaction {
                skipped_for: None,
                lost_race: c.lost_race,
                files_removed: c.removed,
                files_added: c.added,
                partitions: c.partitions,
            });
        }
        match open(lake, entry).await {
            Ok(table) if table.version().is_none() => Ok(Compaction::default()),
            Ok(table) => compact(table, entry, target, z_order).await,
            Err(e) => Err(e),
        }
    };
    let (lease, done) = while_held(lease, entry, work).await;
    if let Some(lease) = lease {
        lease.release().await;
    }
    done
}

/// Deletes the table's rows whose `date` partition (at `lake.time-zone`) is more than `retention` old:
/// whole partitions, so no file is rewritten. For `_rejected`, which otherwise keeps every
/// refused message forever. Holds the table's compaction lease, since a compaction of the same
/// files must not commit beside it; `Ok(None)` when another holds it. Returns the files removed.
pub async fn expire_partitions(
    lake: &Lake,
    entry: &CatalogEntry,
    retention: Duration,
) -> Result<Option<usize>> {
    let Ok(lease) = Lease::take(lake, entry).await? else {
        return Ok(None);
    };
    let cutoff =
        chrono::Utc::now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let (day, _) = rtlake_core::time::partition(&cutoff, lake.time_zone());
    let work = async {
        let table = open(lake, entry).await?;
        if table.version().is_none() {
            return Ok(0);
        }
        let (_, m) = table
            .delete()
            .with_predicate(format!("date < '{day}'"))
            .await
            .map_err(de(entry))?;
        Ok(m.num_removed_files)
    };
    let (lease, done) = while_held(lease, entry, work).await;
    if let Some(lease) = lease {
        lease.release().await;
    }
    done.map(Some)
}

/// The longest a compaction may run; past it, it is abandoned before it commits (its files
/// become unreferenced, and vacuum deletes them) and tried again at the next schedule.
pub const MAX_COMPACTION: Duration = Duration::from_secs(60 * 60);

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
    let done = table
        .optimize()
        .with_target_size(target)
        .with_type(kind)
        .with_max_concurrent_tasks(1)
        .await;
    let m = match done {
        Ok((_, m)) => m,
        // An upsert's merge removed files this compaction read: its commit is refused, and
        // nothing is lost; the table is compacted next time.
        Err(deltalake::DeltaTableError::Transaction { source }) => {
            tracing::info!(table = %entry.qualified(), error = %source, "compaction lost a race to a commit that changed its files; next time");
            return Ok(Compaction {
                lost_race: Some(source.to_string()),
                ..Default::default()
            });
        }
        Err(e) => return Err(de(entry)(e)),
    };
    Ok(Compaction {
        skipped_for: None,
        lost_race: None,
        files_removed: m.num_files_removed,
        files_added: m.num_files_added,
        partitions: m.partitions_optimized,
    })
}

/// Writes a log checkpoint at the latest version, then removes the log entries older than the
/// table's log retention (`delta.logRetentionDuration`, 30 days by default) that a checkpoint
/// covers. Returns the version and how many log files were removed.
pub async fn checkpoint(lake: &Lake, entry: &CatalogEntry) -> Result<(Option<u64>, usize)> {
    if entry.format == crate::TableFormat::Iceberg {
        // An Iceberg table's metadata is one file per version already: nothing to checkpoint.
        return Ok((None, 0));
    }
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
///
/// On an Iceberg table: expires the snapshots older than `retention` (not the current one) and
/// deletes the files only they referenced, and orphan files older than `retention`.
pub async fn vacuum(lake: &Lake, entry: &CatalogEntry, retention: Duration) -> Result<usize> {
    if entry.format == crate::TableFormat::Iceberg {
        let v = crate::iceberg::maintain::vacuum(lake, &entry.url, &entry.qualified(), retention)
            .await?;
        tracing::info!(table = %entry.qualified(), snapshots = v.snapshots, files = v.files, "expired Iceberg snapshots");
        return Ok(v.files);
    }
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
