//! Upserts into a Delta table: each epoch's rows merged into the table by primary key.
//!
//! Why delta-rs' MERGE and not a rewrite of our own: it prunes the table's files by the epoch's
//! key range (the keys' min and max against each file's statistics) and rewrites only the files
//! that hold a matched row, and its commit carries the pipeline's `txn` actions, so an upsert
//! lands exactly once as an append does. It is copy-on-write: a file with one changed row is
//! rewritten whole (delta-rs writes no deletion vectors); [`UpsertReport`] says how many.
//!
//! Before the merge the epoch keeps one row per key ([`crate::upsert`]), because MERGE refuses
//! a table row matched by two rows.

use super::{DeltaSink, txn_properties};
use crate::upsert::{Upsert, UpsertReport, last_per_key};
use crate::{Error, Result};
use arrow::array::{BooleanArray, RecordBatch, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::Column;
use datafusion::logical_expr::Expr;
use datafusion::prelude::{DataFrame, SessionContext};
use deltalake::DeltaTableError;
use deltalake::operations::merge::MergeMetrics;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The source column that marks a row as a delete; never written to the table.
const DELETE: &str = "__rtlake_delete";

/// How many times an epoch's MERGE runs while other writers' commits keep changing the files
/// it read, before the epoch fails ([`Error::ConcurrentCommits`]). Two workers catching up on
/// one upsert table each commit about as often as a MERGE takes, so one may lose several in a
/// row (a CI run saw five, then the worker's last epoch failed as it stopped).
const MERGE_ATTEMPTS: u32 = 20;

impl DeltaSink {
    /// Merges `batch` into the table by `spec`'s key in one commit with the txn versions
    /// `txns`: per key the epoch's last row is inserted or replaces the table's, or, where
    /// `deletes` is true, removes it. An epoch that changes nothing still commits its versions.
    ///
    /// Fails with [`Error::ConflictingOffsets`] as [`DeltaSink::commit`] does, and with
    /// [`Error::ConcurrentCommits`] when other writers' commits keep changing the files the
    /// MERGE reads (it runs again after each, up to [`MERGE_ATTEMPTS`] times).
    pub async fn upsert(
        &mut self,
        batch: RecordBatch,
        deletes: &BooleanArray,
        spec: &Upsert,
        txns: &BTreeMap<String, i64>,
    ) -> Result<UpsertReport> {
        let table_name = self.name.to_string();
        let de = |cause| Error::Delta {
            table: table_name.clone(),
            cause: Box::new(cause),
        };
        let named = |e: Error| match e {
            Error::Schema { reason, .. } => Error::Schema {
                table: table_name.clone(),
                reason,
            },
            e => e,
        };
        if batch.schema().fields() != self.schema.fields() {
            return Err(Error::Schema {
                table: table_name.clone(),
                reason: format!("batch schema {} differs", batch.schema()),
            });
        }
        let (keep, null_keys) = last_per_key(&batch, spec, self.name).map_err(named)?;
        let mut report = UpsertReport {
            rows: keep.len(),
            superseded: batch.num_rows() - keep.len() - null_keys,
            null_keys,
            ..Default::default()
        };
        if keep.is_empty() {
            report.version = self.commit(Vec::new(), txns).await?;
            return Ok(report);
        }
        self.check_versions(txns).await?;
        self.catch_up(txns).await?;
        let newest = self.newest_event_ms.take();
        let take = UInt32Array::from(keep);
        let rows = arrow::compute::take_record_batch(&batch, &take).map_err(|e| Error::Schema {
            table: table_name.clone(),
            reason: e.to_string(),
        })?;
        let deleted = arrow::compute::take(deletes, &take, None).map_err(|e| Error::Schema {
            table: table_name.clone(),
            reason: e.to_string(),
        })?;
        let mut fields: Vec<Field> = rows
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(DELETE, DataType::Boolean, true));
        let mut cols = rows.columns().to_vec();
        cols.push(deleted);
        let source = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).map_err(|e| {
            Error::Schema {
                table: table_name.clone(),
                reason: e.to_string(),
            }
        })?;
        let source = SessionContext::new()
            .read_batch(source)
            .map_err(|e| de(DeltaTableError::from(e)))?;
        let names: Vec<String> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();

        // Another writer's commit between this sink's read of the table and its own (another
        // worker's upsert of other partitions, a compaction) can change the files the MERGE
        // read; delta-rs refuses the commit then, and the merge runs again on the new state.
        // The epoch's own partitions are checked again first: another worker's commit to them
        // is a rebalance, and ends the epoch ([`Error::ConflictingOffsets`]).
        let mut attempt = 1;
        let (before, table, m) = loop {
            let before = self.table.version();
            let started = std::time::Instant::now();
            match merge(&self.table, source.clone(), spec, &names, txns, newest).await {
                Ok((table, m)) => break (before, table, m),
                Err(DeltaTableError::Transaction { source: cause }) => {
                    if attempt == MERGE_ATTEMPTS {
                        return Err(Error::ConcurrentCommits {
                            table: table_name,
                            attempts: attempt,
                            cause: Box::new(cause),
                        });
                    }
                    tracing::info!(table = %table_name, attempt, error = %cause, "another writer's commit changed the files this MERGE read; merging again");
                    attempt += 1;
                    // Run again at once, and the next merge meets the other writer's next
                    // commit as this one did, in step with it; a pause of a random part of a
                    // merge's time breaks the step.
                    tokio::time::sleep(jitter(started.elapsed())).await;
                    // Unverified, the check reads the table's newest state, which is also
                    // what the next merge reads.
                    self.verified = None;
                    self.check_versions(txns).await?;
                }
                Err(e) => return Err(de(e)),
            }
        };
        report.inserted = m.num_target_rows_inserted;
        report.updated = m.num_target_rows_updated;
        report.deleted = m.num_target_rows_deleted;
        report.files_scanned = m.num_target_files_scanned;
        report.files_skipped = m.num_target_files_skipped_during_scan;
        report.files_rewritten = m.num_target_files_removed;
        report.files_added = m.num_target_files_added;
        if table.version() == before {
            // delta-rs commits nothing for a merge that changes nothing; the versions must
            // still advance, or the epoch would be read again.
            self.table = table;
            self.newest_event_ms = newest;
            report.version = self.commit(Vec::new(), txns).await?;
        } else {
            self.table = table;
            report.version = self.table.version().unwrap_or_default();
            self.committed(before, report.version, txns);
        }
        tracing::debug!(table = %self.name, ?report, "upserted");
        Ok(report)
    }
}

/// A random part of `d`: the hash of a new [`std::hash::RandomState`], whose keys differ on
/// every call.
fn jitter(d: std::time::Duration) -> std::time::Duration {
    use std::hash::BuildHasher;
    let r = std::hash::RandomState::new().hash_one(0u8);
    d.mul_f64((r % 1024) as f64 / 1024.0)
}

/// One MERGE of `source` (the epoch's last row per key, with [`DELETE`]) into `table` by
/// `spec`'s key, committed with the txn versions `txns`; `names` are the table's columns.
async fn merge(
    table: &deltalake::DeltaTable,
    source: DataFrame,
    spec: &Upsert,
    names: &[String],
    txns: &BTreeMap<String, i64>,
    newest: Option<i64>,
) -> std::result::Result<(deltalake::DeltaTable, MergeMetrics), DeltaTableError> {
    let col = |side: &str, c: &str| Expr::Column(Column::new(Some(side), c));
    let on = spec
        .key
        .iter()
        .map(|k| col("t", k).eq(col("s", k)))
        .reduce(Expr::and)
        .expect("an upsert has a key");
    let is_delete = col("s", DELETE).is_true();
    // A table row is replaced only by a row whose order is not older (a null is oldest).
    let when = |e: Expr| match &spec.order_by {
        Some(o) => e.and(
            col("t", o).is_null().or(col("s", o)
                .is_not_null()
                .and(col("s", o).gt_eq(col("t", o)))),
        ),
        None => e,
    };
    table
        .clone()
        .merge(source, on)
        .with_source_alias("s")
        .with_target_alias("t")
        .with_commit_properties(txn_properties(txns, newest))
        .when_matched_delete(|d| d.predicate(when(is_delete.clone())))?
        .when_matched_update(|mut u| {
            u = u.predicate(when(col("s", DELETE).is_not_true()));
            for n in names {
                u = u.update(Column::new_unqualified(n), col("s", n));
            }
            u
        })?
        .when_not_matched_insert(|mut i| {
            i = i.predicate(col("s", DELETE).is_not_true());
            for n in names {
                i = i.set(Column::new_unqualified(n), col("s", n));
            }
            i
        })?
        .await
}
