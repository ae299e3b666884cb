//! Upserts into an Iceberg table, copy-on-write: each data file holding a row whose key the
//! epoch changes is rewritten without it, the epoch's rows are added as new files, and one
//! `overwrite` snapshot (its offsets and commit id in the summary, as an append's) removes the
//! old files and adds the new. Readers see no delete files, so every engine reads the result.
//!
//! Why copy-on-write and not equality deletes: equality delete files make every reader merge
//! them on each scan until a compaction, and not every engine applies them; a rewrite costs the
//! writer instead. rtlake's manifests carry no column bounds, so every live file is read each
//! epoch to find the keys: the cost grows with the table, which suits tables of current state
//! (one row per entity) rather than large ones; `UpsertReport` says how many files were read
//! and rewritten.

use super::{IcebergSink, err, refuse};
use crate::Result;
use crate::iceberg::catalog::Conflict;
use crate::iceberg::maintain::{Files, align, rewrite_snapshot};
use crate::iceberg::metadata::OFFSETS_KEY;
use crate::iceberg::read::snapshot_entries;
use crate::upsert::{Keys, Upsert, UpsertReport, columns, last_per_key};
use arrow::array::{AsArray, BooleanArray, RecordBatch, UInt32Array};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::{BTreeMap, BTreeSet, HashMap};

impl IcebergSink {
    /// Merges `batch` into the table by `spec`'s key in one snapshot with the offsets `txns`
    /// (see [`crate::upsert`]): per key the epoch's last row is inserted or replaces the
    /// table's, or, where `deletes` is true, removes it.
    ///
    /// Fails with [`crate::Error::ConflictingOffsets`] as [`IcebergSink::commit`] does.
    pub async fn upsert(
        &mut self,
        batch: RecordBatch,
        deletes: &BooleanArray,
        spec: &Upsert,
        txns: &BTreeMap<String, i64>,
    ) -> Result<UpsertReport> {
        let name = self.name;
        let expected = self.begin(txns).await?;
        let bad = |e: crate::Error| refuse(name, e.to_string());
        let (keep, null_keys) = last_per_key(&batch, spec, name).map_err(bad)?;
        let take = UInt32Array::from(keep);
        let rows = arrow::compute::take_record_batch(&batch, &take).map_err(|e| err(name, e))?;
        let dels = arrow::compute::take(deletes, &take, None).map_err(|e| err(name, e))?;
        let dels = dels.as_boolean();
        let key_cols = columns(&rows, &spec.key).map_err(bad)?;
        let keys = Keys::like(&key_cols).map_err(bad)?;
        let src_keys = keys.rows(&key_cols).map_err(bad)?;
        let by_key: HashMap<&[u8], usize> = (0..rows.num_rows())
            .map(|i| (src_keys.row(i).data(), i))
            .collect();
        let order = match &spec.order_by {
            Some(c) => {
                let cols = columns(&rows, std::slice::from_ref(c)).map_err(bad)?;
                let conv = Keys::like(&cols).map_err(bad)?;
                let src = conv.rows(&cols).map_err(bad)?;
                Some((c, conv, src))
            }
            None => None,
        };
        let commit_id = uuid::Uuid::new_v4().to_string();
        let newest = self.newest_event_ms.take();
        loop {
            let mut report = UpsertReport {
                rows: rows.num_rows(),
                superseded: batch.num_rows() - rows.num_rows() - null_keys,
                null_keys,
                ..Default::default()
            };
            let parent = self.table.metadata.current_snapshot().cloned();
            let live = match &parent {
                Some(p) => {
                    snapshot_entries(self.store.as_ref(), &self.url, &name.to_string(), p)
                        .await?
                        .0
                }
                None => Vec::new(),
            };
            // Source rows the table already holds a newer version of: not written.
            let mut stale = vec![false; rows.num_rows()];
            let mut removed = BTreeSet::new();
            let mut added = Vec::new();
            for e in &live {
                report.files_scanned += 1;
                let bytes = self.read(&e.file.path).await?;
                let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                    .and_then(|b| b.build())
                    .map_err(|x| err(name, format!("{}: {x}", e.file.path)))?;
                let mut kept = Vec::new();
                let mut dropped = 0;
                for b in reader {
                    let b = b.map_err(|x| err(name, format!("{}: {x}", e.file.path)))?;
                    let b = align(&b, &self.schema).map_err(|x| err(name, x))?;
                    let table_keys = keys
                        .rows(&columns(&b, &spec.key).map_err(bad)?)
                        .map_err(bad)?;
                    let table_order = match &order {
                        Some((c, conv, _)) => Some(
                            conv.rows(&columns(&b, std::slice::from_ref(*c)).map_err(bad)?)
                                .map_err(bad)?,
                        ),
                        None => None,
                    };
                    let mut mask = Vec::with_capacity(b.num_rows());
                    for r in 0..b.num_rows() {
                        let Some(&i) = by_key.get(table_keys.row(r).data()) else {
                            mask.push(true);
                            continue;
                        };
                        // The row format orders as the values do, nulls first: a null is oldest.
                        let newer = match (&order, &table_order) {
                            (Some((_, _, src)), Some(t)) => src.row(i) >= t.row(r),
                            _ => true,
                        };
                        if newer {
                            dropped += 1;
                            if dels.value(i) {
                                report.deleted += 1;
                            } else {
                                report.updated += 1;
                            }
                        } else {
                            stale[i] = true;
                        }
                        mask.push(!newer);
                    }
                    kept.push(
                        arrow::compute::filter_record_batch(&b, &BooleanArray::from(mask))
                            .map_err(|x| err(name, x))?,
                    );
                }
                if dropped > 0 {
                    removed.insert(e.file.path.clone());
                    let rest = arrow::compute::concat_batches(&self.schema, &kept)
                        .map_err(|x| err(name, x))?;
                    if rest.num_rows() > 0 {
                        added.extend(self.write_files(&rest).await?);
                    }
                }
            }
            let written: Vec<bool> = (0..rows.num_rows())
                .map(|i| !dels.value(i) && !stale[i])
                .collect();
            let fresh = arrow::compute::filter_record_batch(&rows, &BooleanArray::from(written))
                .map_err(|x| err(name, x))?;
            report.inserted = fresh.num_rows() - report.updated;
            if fresh.num_rows() > 0 {
                added.extend(self.write_files(&fresh).await?);
            }
            report.files_rewritten = removed.len();
            report.files_added = added.len();
            let change = match &parent {
                // Nothing to remove: an append, which keeps the existing manifests.
                _ if removed.is_empty() => {
                    self.snapshot_of(&added, txns, &commit_id, newest).await?
                }
                Some(p) => {
                    let mut offsets = self.table.metadata.offsets();
                    offsets.extend(txns.iter().map(|(k, v)| (k.clone(), *v)));
                    let mut summary = BTreeMap::new();
                    summary.insert("operation".to_string(), "overwrite".to_string());
                    summary.insert(
                        OFFSETS_KEY.into(),
                        serde_json::to_string(&offsets).map_err(|x| err(name, x))?,
                    );
                    summary.insert(super::COMMIT_ID_KEY.into(), commit_id.clone());
                    if let Some(ms) = newest {
                        summary.insert(crate::NEWEST_EVENT_KEY.into(), ms.to_string());
                    }
                    let files = Files {
                        store: self.store.as_ref(),
                        url: &self.url,
                        name: &name.to_string(),
                    };
                    rewrite_snapshot(
                        files,
                        &self.table.metadata,
                        p,
                        &live,
                        &removed,
                        &added,
                        summary,
                    )
                    .await?
                }
                None => unreachable!("a table without snapshots has no files to remove"),
            };
            let seq = change.snapshot.as_ref().map_or(0, |s| s.sequence_number);
            let landed = match self.catalog.commit(name, &self.table, &change).await? {
                Ok(t) => {
                    self.table = t;
                    report.version = seq as u64;
                    true
                }
                Err(Conflict) => {
                    let ours = self.after_conflict(&expected, &commit_id).await?;
                    report.version = self.table.metadata.last_sequence_number as u64;
                    ours
                }
            };
            if landed {
                for (id, v) in txns {
                    self.known.insert(id.clone(), *v);
                }
                tracing::debug!(table = %name, ?report, "upserted");
                return Ok(report);
            }
            // Another writer committed first: read the table again and redo the rewrite.
        }
    }
}
