//! Upserts, whatever the table's format: the spec of an upsert sink ([`Upsert`]), what one did
//! ([`UpsertReport`]), and the rule both formats apply first: an epoch keeps one row per key,
//! the last one (by `order-by`, then by arrival). A row marked as a delete removes its key. With
//! `order-by`, a row replaces or deletes a table row only if its value is not older than the
//! table row's (a null is oldest), so a change replayed out of order never undoes a newer one.
//!
//! Delta tables merge with delta-rs' MERGE ([`crate::sink::DeltaSink::upsert`]); Iceberg tables
//! are rewritten copy-on-write ([`crate::iceberg::IcebergSink::upsert`]).

use crate::{Error, Result};
use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::row::{RowConverter, Rows, SortField};
use std::collections::hash_map::{Entry, HashMap};

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

/// The columns `names` of `batch`.
pub(crate) fn columns(batch: &RecordBatch, names: &[String]) -> Result<Vec<ArrayRef>> {
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
}

/// Byte-comparable rows of `cols` (Arrow's row format: equal bytes for equal values, ordered as
/// the values are, nulls first). Rows to be compared must come from one converter.
pub(crate) struct Keys(RowConverter);

impl Keys {
    /// A converter for columns like `cols`.
    pub(crate) fn like(cols: &[ArrayRef]) -> Result<Self> {
        let fields = cols
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect();
        RowConverter::new(fields)
            .map(Self)
            .map_err(|e| Error::Schema {
                table: String::new(),
                reason: format!("keys: {e}"),
            })
    }

    /// The rows of `cols`.
    pub(crate) fn rows(&self, cols: &[ArrayRef]) -> Result<Rows> {
        self.0.convert_columns(cols).map_err(|e| Error::Schema {
            table: String::new(),
            reason: format!("keys: {e}"),
        })
    }
}

/// The indexes of the rows to merge: the last of each key (by `order_by`'s value, then by
/// position), ascending; and how many rows had a null key (logged as not merged into `table`).
pub(crate) fn last_per_key(
    batch: &RecordBatch,
    spec: &Upsert,
    table: impl std::fmt::Display,
) -> Result<(Vec<u32>, usize)> {
    let key_cols = columns(batch, &spec.key)?;
    let keys = Keys::like(&key_cols)?.rows(&key_cols)?;
    let order = match &spec.order_by {
        Some(c) => {
            let cols = columns(batch, std::slice::from_ref(c))?;
            Some(Keys::like(&cols)?.rows(&cols)?)
        }
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
                let later = order.as_ref().is_none_or(|o| o.row(i) >= o.row(*e.get()));
                if later {
                    e.insert(i);
                }
            }
        }
    }
    if null_keys > 0 {
        tracing::warn!(%table, rows = null_keys, key = ?spec.key, "rows with a null key column identify no row: not merged");
    }
    let mut keep: Vec<u32> = last.into_values().map(|i| i as u32).collect();
    keep.sort_unstable();
    Ok((keep, null_keys))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

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
        assert_eq!(last_per_key(&b, &by_arrival, "t").unwrap(), (vec![1, 4], 1));
        let by_pos = Upsert {
            order_by: Some("pos".into()),
            ..by_arrival
        };
        // Row 2 (pos 9) is newer than row 4 (pos 7) although it came first.
        assert_eq!(last_per_key(&b, &by_pos, "t").unwrap(), (vec![1, 2], 1));
    }
}

/// The same epochs through both formats' sinks.
#[cfg(test)]
mod table_tests {
    use super::*;
    use crate::table::TableSink;
    use crate::{Lake, TableFormat};
    use arrow::array::{BooleanArray, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
    use rtlake_core::schema::TableName;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    const NAME: TableName = TableName {
        namespace: "silver",
        name: "state",
    };

    fn schema() -> SchemaRef {
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

    /// The table's rows, read back from its files.
    async fn contents(lake: &Lake, format: TableFormat) -> Vec<(i64, String, i64)> {
        let batches: Vec<RecordBatch> = match format {
            TableFormat::Delta => {
                use futures::TryStreamExt;
                let t = deltalake::DeltaTable::try_from_url_with_storage_options(
                    lake.table_url(NAME),
                    lake.storage_options().clone(),
                )
                .await
                .unwrap();
                let mut t = t;
                t.load().await.unwrap();
                let (_, stream) = t.scan_table().await.unwrap();
                stream.try_collect().await.unwrap()
            }
            TableFormat::Iceberg => {
                let files = crate::iceberg::read::TableFiles::open(
                    lake,
                    &lake.table_url(NAME),
                    &NAME.to_string(),
                )
                .await
                .unwrap()
                .unwrap();
                let mut out = Vec::new();
                for f in files.data_files(None).await.unwrap() {
                    let bytes = files.read(&f.path).await.unwrap();
                    let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                        bytes,
                    )
                    .unwrap()
                    .build()
                    .unwrap();
                    out.extend(r.map(Result::unwrap));
                }
                out
            }
        };
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

    /// Inserts, updates, deletes, a change replayed out of order, an epoch that changes
    /// nothing and a re-insert: the table holds the newest row of each live key, and every
    /// epoch's offsets; a worker that saw other offsets is refused.
    async fn epochs(format: TableFormat) {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(&crate::LakeConfig {
            uri: dir.path().display().to_string(),
            ..Default::default()
        })
        .unwrap();
        let mut sink = TableSink::open_as(&lake, NAME, schema(), &[], Some(format))
            .await
            .unwrap();
        let spec = Upsert {
            key: vec!["id".into()],
            order_by: Some("pos".into()),
        };
        let id = "p/silver.state/0".to_string();
        let txn = |v: i64| BTreeMap::from([(id.clone(), v)]);
        let no = |n: usize| BooleanArray::from(vec![false; n]);

        // Epoch 1: id 1 twice (the later wins), id 2, id 3.
        let b = rows(&[(1, "a", 1), (2, "b", 2), (1, "a2", 3), (3, "c", 4)]);
        let r = sink.upsert(b, &no(4), &spec, &txn(4)).await.unwrap();
        assert_eq!((r.rows, r.superseded, r.inserted), (3, 1, 3));
        let want1 = own(&[(1, "a2", 3), (2, "b", 2), (3, "c", 4)]);
        assert_eq!(contents(&lake, format).await, want1);

        // Epoch 2: update 2, delete 3, a stale change of 1 (pos 2 < 3), insert 4.
        let b = rows(&[(2, "b2", 5), (3, "", 6), (1, "stale", 2), (4, "d", 7)]);
        let del = BooleanArray::from(vec![false, true, false, false]);
        let r = sink.upsert(b, &del, &spec, &txn(8)).await.unwrap();
        assert_eq!((r.inserted, r.updated, r.deleted), (1, 1, 1), "{r:?}");
        assert!(r.files_rewritten >= 1, "{r:?}");
        let want2 = own(&[(1, "a2", 3), (2, "b2", 5), (4, "d", 7)]);
        assert_eq!(contents(&lake, format).await, want2);

        // Epoch 3 changes nothing (only a stale change): the offsets still advance.
        sink.upsert(rows(&[(2, "old", 1)]), &no(1), &spec, &txn(9))
            .await
            .unwrap();
        let ids = vec![id.clone()];
        assert_eq!(
            crate::table::read_versions(&lake, NAME, &ids)
                .await
                .unwrap()[&id],
            Some(9)
        );
        assert_eq!(contents(&lake, format).await, want2);

        // Epoch 4: the deleted key again.
        sink.upsert(rows(&[(3, "c again", 10)]), &no(1), &spec, &txn(10))
            .await
            .unwrap();
        assert_eq!(
            contents(&lake, format).await,
            own(&[(1, "a2", 3), (2, "b2", 5), (3, "c again", 10), (4, "d", 7)])
        );

        // A second worker whose offsets are behind the table's is refused; nothing lands.
        let mut late = TableSink::open_as(&lake, NAME, schema(), &[], Some(format))
            .await
            .unwrap();
        let err = late
            .upsert(rows(&[(9, "x", 11)]), &no(1), &spec, &txn(5))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::ConflictingOffsets { .. }), "{err}");
        assert_eq!(contents(&lake, format).await.len(), 4);
    }

    /// Two workers upserting other partitions' keys into the same file: the second's MERGE read
    /// the file the first one's rewrote, is refused, and runs again on the new state; both
    /// epochs land, each with its own offsets.
    async fn two_workers(format: TableFormat) {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(&crate::LakeConfig {
            uri: dir.path().display().to_string(),
            ..Default::default()
        })
        .unwrap();
        let spec = Upsert {
            key: vec!["id".into()],
            order_by: None,
        };
        let ids = [
            "p/silver.state/0".to_string(),
            "p/silver.state/1".to_string(),
        ];
        let txn = |p: usize, v: i64| BTreeMap::from([(ids[p].clone(), v)]);
        let no = |n: usize| BooleanArray::from(vec![false; n]);
        let mut first = TableSink::open_as(&lake, NAME, schema(), &[], Some(format))
            .await
            .unwrap();
        first
            .upsert(rows(&[(1, "a", 1), (2, "b", 2)]), &no(2), &spec, &txn(0, 2))
            .await
            .unwrap();
        let mut second = TableSink::open_as(&lake, NAME, schema(), &[], Some(format))
            .await
            .unwrap();
        second
            .upsert(rows(&[(2, "b", 2)]), &no(1), &spec, &txn(1, 1))
            .await
            .unwrap();
        // Both now hold the table at the same version; the first rewrites the file.
        first
            .upsert(rows(&[(1, "a2", 3)]), &no(1), &spec, &txn(0, 3))
            .await
            .unwrap();
        second
            .upsert(rows(&[(2, "b2", 4)]), &no(1), &spec, &txn(1, 2))
            .await
            .unwrap();
        assert_eq!(
            contents(&lake, format).await,
            own(&[(1, "a2", 3), (2, "b2", 4)])
        );
        let found = crate::table::read_versions(&lake, NAME, &ids)
            .await
            .unwrap();
        assert_eq!((found[&ids[0]], found[&ids[1]]), (Some(3), Some(2)));
    }

    #[tokio::test]
    async fn delta_merges_of_two_workers_both_land() {
        two_workers(TableFormat::Delta).await;
    }

    #[tokio::test]
    async fn iceberg_merges_of_two_workers_both_land() {
        two_workers(TableFormat::Iceberg).await;
    }

    #[tokio::test]
    async fn delta_epochs_merge_by_key() {
        epochs(TableFormat::Delta).await;
    }

    #[tokio::test]
    async fn iceberg_epochs_merge_by_key() {
        epochs(TableFormat::Iceberg).await;
    }
}
