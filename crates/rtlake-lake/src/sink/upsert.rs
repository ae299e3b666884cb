//! Upserts into a Delta table: each epoch's rows merged into the table by primary key.
//!
//! Why delta-rs' MERGE and not a rewrite of our own: it prunes the table's files by the epoch's
//! key range (the keys' min and max against each file's statistics) and rewrites only the files
//! that hold a matched row, and its commit carries the pipeline's `txn` actions, so an upsert
//! lands exactly once as an append does. It is copy-on-write: a file with one changed row is
//! rewritten whole (delta-rs writes no deletion vectors); [`UpsertReport`] says how many.
//!
//! Before the merge the epoch keeps one row per key, the last one (by `order-by`, then by
//! arrival), because MERGE refuses a table row matched by two rows. A row marked as a delete
//! removes its key. With `order-by`, a row replaces or deletes a table row only if its value is
//! not older than the table row's, so a change replayed out of order never undoes a newer one.

use super::{DeltaSink, txn_properties};
use crate::{Error, Result};
use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::row::{RowConverter, SortField};
use datafusion::common::Column;
use datafusion::logical_expr::Expr;
use datafusion::prelude::SessionContext;
use deltalake::DeltaTableError;
use std::collections::BTreeMap;
use std::collections::hash_map::{Entry, HashMap};
use std::sync::Arc;

/// The source column that marks a row as a delete; never written to the table.
const DELETE: &str = "__rtlake_delete";

/// How a table sink merges its rows into the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upsert {
    /// The columns that identify a row (the primary key).
    pub key: Vec<String>,
    /// A column ordering the versions of one key (a change's position in its source); none:
    /// the order the rows arrived in.
    pub order_by: Option<String>,
}

/// What one upsert did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpsertReport {
    /// The table version it committed.
    pub version: u64,
    /// Rows merged: the last row of each key in the epoch.
    pub rows: usize,
    /// Rows dropped for a later row of the same key in the same epoch.
    pub superseded: usize,
    /// Rows dropped because a key column was null (they identify no row).
    pub null_keys: usize,
    /// Table rows inserted, updated and deleted.
    pub inserted: usize,
    /// See `inserted`.
    pub updated: usize,
    /// See `inserted`.
    pub deleted: usize,
    /// Files read for matches, and files the key range let it skip.
    pub files_scanned: usize,
    /// See `files_scanned`.
    pub files_skipped: usize,
    /// Files rewritten (removed from the table) and files added.
    pub files_rewritten: usize,
    /// See `files_rewritten`.
    pub files_added: usize,
}

/// The indexes of the rows to merge: the last of each key (by `order_by`'s value, then by
/// position), ascending; and how many rows had a null key.
fn last_per_key(batch: &RecordBatch, spec: &Upsert) -> Result<(Vec<u32>, usize)> {
    let columns = |names: &[String]| -> Result<Vec<ArrayRef>> {
        names
            .iter()
            .map(|n| {
                batch
                    .column_by_name(n)
                    .cloned()
                    .ok_or_else(|| Error::Schema {
                        table: String::new(),
                        reason: format!("the rows have no column {n}"),
                    })
            })
            .collect()
    };
    let rows_of = |cols: &[ArrayRef]| {
        let fields = cols
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect();
        RowConverter::new(fields)
            .and_then(|conv| conv.convert_columns(cols))
            .map_err(|e| Error::Schema {
                table: String::new(),
                reason: format!("keys: {e}"),
            })
    };
    let key_cols = columns(&spec.key)?;
    let keys = rows_of(&key_cols)?;
    let order = match &spec.order_by {
        Some(c) => Some(rows_of(&columns(std::slice::from_ref(c))?)?),
        None => None,
    };
    let mut last: HashMap<arrow::row::Row<'_>, usize> = HashMap::with_capacity(batch.num_rows());
    let mut null_keys = 0;
    for i in 0..batch.num_rows() {
        if key_cols.iter().any(|c| c.is_null(i)) {
            null_keys += 1;
            continue;
        }
        match last.entry(keys.row(i)) {
            Entry::Vacant(e) => {
                e.insert(i);
            }
            Entry::Occupied(mut e) => {
                // Arrow's row format compares as the values do (nulls first).
                let later = order.as_ref().is_none_or(|o| o.row(i) >= o.row(*e.get()));
                if later {
                    e.insert(i);
                }
            }
        }
    }
    let mut keep: Vec<u32> = last.into_values().map(|i| i as u32).collect();
    keep.sort_unstable();
    Ok((keep, null_keys))
}

impl DeltaSink {
    /// Merges `batch` into the table by `spec`'s key in one commit with the txn versions
    /// `txns`: per key the epoch's last row is inserted or replaces the table's, or, where
    /// `deletes` is true, removes it. An epoch that changes nothing still commits its versions.
    ///
    /// Fails with [`Error::ConflictingOffsets`] as [`DeltaSink::commit`] does.
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
        let (keep, null_keys) = last_per_key(&batch, spec).map_err(named)?;
        let mut report = UpsertReport {
            rows: keep.len(),
            superseded: batch.num_rows() - keep.len() - null_keys,
            null_keys,
            ..Default::default()
        };
        if null_keys > 0 {
            tracing::warn!(table = %self.name, rows = null_keys, key = ?spec.key, "rows with a null key column identify no row: not merged");
        }
        if keep.is_empty() {
            report.version = self.commit(Vec::new(), txns).await?;
            return Ok(report);
        }
        self.check_versions(txns).await?;
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
        let names: Vec<String> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let before = self.table.version();
        let merged = self
            .table
            .clone()
            .merge(source, on)
            .with_source_alias("s")
            .with_target_alias("t")
            .with_commit_properties(txn_properties(txns))
            .when_matched_delete(|d| d.predicate(when(is_delete.clone())))
            .and_then(|m| {
                m.when_matched_update(|mut u| {
                    u = u.predicate(when(col("s", DELETE).is_not_true()));
                    for n in &names {
                        u = u.update(Column::new_unqualified(n), col("s", n));
                    }
                    u
                })
            })
            .and_then(|m| {
                m.when_not_matched_insert(|mut i| {
                    i = i.predicate(col("s", DELETE).is_not_true());
                    for n in &names {
                        i = i.set(Column::new_unqualified(n), col("s", n));
                    }
                    i
                })
            })
            .map_err(de)?
            .await;
        let (table, m) = match merged {
            Ok(r) => r,
            Err(DeltaTableError::Transaction { source }) => {
                return Err(Error::ConflictingOffsets {
                    table: format!("{table_name} ({source})"),
                    app_id: txns.keys().cloned().collect::<Vec<_>>().join(","),
                    expected: None,
                    found: None,
                });
            }
            Err(e) => return Err(de(e)),
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
            report.version = self.commit(Vec::new(), txns).await?;
        } else {
            self.table = table;
            report.version = self.table.version().unwrap_or_default();
            for (id, v) in txns {
                self.known.insert(id.clone(), *v);
            }
        }
        tracing::debug!(table = %self.name, ?report, "upserted");
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};

    fn batch(ids: &[Option<i64>], pos: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("v", DataType::Utf8, true),
            Field::new("pos", DataType::Int64, true),
        ]));
        let v: Vec<String> = pos.iter().map(|p| format!("v{p}")).collect();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(StringArray::from(v)),
                Arc::new(Int64Array::from(pos.to_vec())),
            ],
        )
        .unwrap()
    }

    #[test]
    fn the_last_row_of_each_key_is_kept_by_arrival_or_by_order() {
        let b = batch(
            &[Some(1), Some(2), Some(1), None, Some(1)],
            &[5, 1, 9, 3, 7],
        );
        let by_arrival = Upsert {
            key: vec!["id".into()],
            order_by: None,
        };
        assert_eq!(last_per_key(&b, &by_arrival).unwrap(), (vec![1, 4], 1));
        let by_pos = Upsert {
            order_by: Some("pos".into()),
            ..by_arrival
        };
        // Row 2 (pos 9) is newer than row 4 (pos 7) although it came first.
        assert_eq!(last_per_key(&b, &by_pos).unwrap(), (vec![1, 2], 1));
    }
}

#[cfg(test)]
mod table_tests {
    use super::*;
    use crate::Lake;
    use arrow::array::{Int64Array, StringArray};
    use rtlake_core::schema::TableName;

    fn schema() -> arrow::datatypes::SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("v", DataType::Utf8, true),
            Field::new("pos", DataType::Int64, true),
        ]))
    }

    fn rows(r: &[(i64, &str, i64)]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from_iter_values(r.iter().map(|x| x.0))),
                Arc::new(StringArray::from_iter_values(r.iter().map(|x| x.1))),
                Arc::new(Int64Array::from_iter_values(r.iter().map(|x| x.2))),
            ],
        )
        .unwrap()
    }

    async fn contents(sink: &DeltaSink) -> Vec<(i64, String, i64)> {
        use futures::TryStreamExt;
        let (_, stream) = sink.table.clone().scan_table().await.unwrap();
        let batches: Vec<RecordBatch> = stream.try_collect().await.unwrap();
        let mut out = Vec::new();
        for b in batches {
            let c = |i: usize, t: &DataType| arrow::compute::cast(b.column(i), t).unwrap();
            let (id, v, p) = (
                c(0, &DataType::Int64),
                c(1, &DataType::Utf8),
                c(2, &DataType::Int64),
            );
            let id = id.as_any().downcast_ref::<Int64Array>().unwrap();
            let v = v.as_any().downcast_ref::<StringArray>().unwrap();
            let p = p.as_any().downcast_ref::<Int64Array>().unwrap();
            for i in 0..b.num_rows() {
                out.push((id.value(i), v.value(i).to_string(), p.value(i)));
            }
        }
        out.sort();
        out
    }

    fn own(r: &[(i64, &str, i64)]) -> Vec<(i64, String, i64)> {
        r.iter().map(|(a, b, c)| (*a, b.to_string(), *c)).collect()
    }

    /// Inserts, updates, deletes, a change replayed out of order, and an epoch that changes
    /// nothing: the table holds the newest row of each live key, and every epoch's offsets.
    #[tokio::test]
    async fn epochs_merge_by_key_deletes_remove_and_older_changes_lose() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(&crate::LakeConfig {
            uri: dir.path().display().to_string(),
            ..Default::default()
        })
        .unwrap();
        let name = TableName {
            namespace: "silver",
            name: "state",
        };
        let mut sink = DeltaSink::open(&lake, name, schema(), &[]).await.unwrap();
        let spec = Upsert {
            key: vec!["id".into()],
            order_by: Some("pos".into()),
        };
        let txn = |v: i64| BTreeMap::from([("p/silver.state/0".to_string(), v)]);
        let no = |n: usize| BooleanArray::from(vec![false; n]);

        // Epoch 1: id 1 twice (the later wins), id 2, id 3.
        let b = rows(&[(1, "a", 1), (2, "b", 2), (1, "a2", 3), (3, "c", 4)]);
        let r = sink.upsert(b, &no(4), &spec, &txn(4)).await.unwrap();
        assert_eq!((r.rows, r.superseded, r.inserted), (3, 1, 3));
        assert_eq!(
            contents(&sink).await,
            own(&[(1, "a2", 3), (2, "b", 2), (3, "c", 4)])
        );

        // Epoch 2: update 2, delete 3, a stale change of 1 (pos 2 < 3), insert 4.
        let b = rows(&[(2, "b2", 5), (3, "", 6), (1, "stale", 2), (4, "d", 7)]);
        let del = BooleanArray::from(vec![false, true, false, false]);
        let r = sink.upsert(b, &del, &spec, &txn(8)).await.unwrap();
        assert_eq!((r.inserted, r.updated, r.deleted), (1, 1, 1));
        assert_eq!(
            contents(&sink).await,
            own(&[(1, "a2", 3), (2, "b2", 5), (4, "d", 7)])
        );

        // Epoch 3 changes nothing (only a stale change): the offsets still advance.
        let before = sink.table.version();
        let b = rows(&[(2, "old", 1)]);
        sink.upsert(b, &no(1), &spec, &txn(9)).await.unwrap();
        assert!(sink.table.version() > before);
        let ids = vec!["p/silver.state/0".to_string()];
        assert_eq!(
            crate::sink::read_versions(&lake, name, &ids).await.unwrap()[&ids[0]],
            Some(9)
        );
        assert_eq!(
            contents(&sink).await,
            own(&[(1, "a2", 3), (2, "b2", 5), (4, "d", 7)])
        );

        // Epoch 4: re-insert the deleted key.
        let b = rows(&[(3, "c again", 10)]);
        sink.upsert(b, &no(1), &spec, &txn(10)).await.unwrap();
        assert_eq!(
            contents(&sink).await,
            own(&[(1, "a2", 3), (2, "b2", 5), (3, "c again", 10), (4, "d", 7)])
        );

        // A worker that saw other versions is refused, and nothing lands.
        sink.known.insert(ids[0].clone(), 3);
        let err = sink
            .upsert(rows(&[(9, "x", 11)]), &no(1), &spec, &txn(11))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::ConflictingOffsets { .. }), "{err}");
    }
}
