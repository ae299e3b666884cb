//! The processor's table maintenance: every `lake.maintenance-interval`, each of the pipeline's
//! Delta tables is compacted, checkpointed (with expired log cleanup) and vacuumed, on a task of
//! its own beside the epochs. A step that fails (a compaction that lost to another worker's) is
//! logged and tried again next time; it never stops the pipeline.

use rtlake_core::schema::TableName;
use rtlake_lake::LakeConfig;
use rtlake_lake::catalog::CatalogEntry;
use rtlake_lake::{Lake, maintenance};
use std::num::NonZeroU64;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The running schedule of table maintenance.
pub struct Maintenance {
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Maintenance {
    /// Ends the schedule. A compaction in flight finishes first, so its lease is released: a
    /// process that exited in the middle of one left the table's lease held until it expired,
    /// and `rtlake lake optimize` run right after skipped the table (seen in
    /// `tests/it/maintenance.rs`).
    pub async fn stop(self) {
        self.stop.cancel();
        if let Some(task) = self.task {
            let _ = task.await;
        }
    }
}

/// Starts the schedule for `tables` unless the interval is 0; it stops with `shutdown` or
/// [`Maintenance::stop`].
pub fn spawn(
    lake: &Lake,
    tables: Vec<TableName>,
    cfg: &LakeConfig,
    shutdown: CancellationToken,
) -> Maintenance {
    let interval = cfg.maintenance_interval.get();
    if interval.is_zero() {
        return Maintenance {
            stop: shutdown,
            task: None,
        };
    }
    let lake = lake.clone();
    let cfg = cfg.clone();
    let stop = shutdown.clone();
    // Workers of one pipeline started together spread their rounds over the interval.
    let first = interval.mul_f64(0.5 + f64::from(std::process::id() % 100) / 200.0);
    let task = tokio::spawn(async move {
        let mut next = first;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(next) => {}
            }
            next = interval;
            for t in &tables {
                if shutdown.is_cancelled() {
                    return;
                }
                round(&lake, *t, &cfg, &shutdown).await;
            }
        }
    });
    Maintenance {
        stop,
        task: Some(task),
    }
}

async fn round(lake: &Lake, table: TableName, cfg: &LakeConfig, shutdown: &CancellationToken) {
    let format = match rtlake_lake::table::format_of(lake, table).await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(table = %table, error = %e, "maintenance round skipped");
            return;
        }
    };
    let entry = CatalogEntry {
        namespace: table.namespace.into(),
        name: table.name.into(),
        url: lake.table_url(table),
        format,
    };
    let t0 = Instant::now();
    let target = NonZeroU64::new(cfg.target_file_size.0).unwrap_or(NonZeroU64::MIN);
    // The compaction is not cut short by a shutdown: it holds the table's lease until it ends.
    let compaction = maintenance::optimize(lake, &entry, target, &cfg.z_order).await;
    let rest = async {
        let c = compaction?;
        let (version, logs) = maintenance::checkpoint(lake, &entry).await?;
        let vacuumed = maintenance::vacuum(lake, &entry, cfg.vacuum_retention.get()).await?;
        let retention = cfg.rejected_retention.get();
        // (Partition retention is built for Delta tables only.)
        if table == rtlake_core::schema::REJECTED
            && !retention.is_zero()
            && format == rtlake_lake::TableFormat::Delta
        {
            match maintenance::expire_partitions(lake, &entry, retention).await? {
                Some(files) => {
                    tracing::info!(table = %table, files_removed = files, retention = %cfg.rejected_retention, "rejections past lake.rejected-retention deleted")
                }
                None => {
                    tracing::info!(table = %table, "rejections past lake.rejected-retention not deleted this round: another process holds the table's lease")
                }
            }
        }
        Ok::<_, rtlake_lake::Error>((c, version, logs, vacuumed))
    };
    let outcome = tokio::select! {
        () = shutdown.cancelled() => return,
        r = rest => r,
    };
    match outcome {
        Ok((c, version, logs, vacuumed)) => tracing::info!(
            table = %table,
            skipped_for = ?c.skipped_for,
            lost_race = ?c.lost_race,
            files_rewritten = c.files_removed,
            files_written = c.files_added,
            checkpoint_version = ?version,
            logs_removed = logs,
            files_vacuumed = vacuumed,
            took_ms = t0.elapsed().as_millis() as u64,
            "table maintenance"
        ),
        Err(e) => {
            tracing::warn!(table = %table, error = %rtlake_core::error::Chain(&e), "table maintenance failed; it runs again next round")
        }
    }
    // Rounds of several tables do not all hit the store at once.
    tokio::time::sleep(Duration::from_millis(200)).await;
}
