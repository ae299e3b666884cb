//! The exactly-once Delta sink.
//!
//! Each commit carries one `txn` action per input partition, app id
//! `<pipeline>/<sink>/<partition>`, whose version is the next offset to read; it is written even
//! when the epoch gave the table no rows. Before committing, the sink reloads the table and checks
//! that every partition's version is the one it last saw; delta-rs' conflict checker then refuses
//! any concurrent commit of the same app ids. So a range of offsets lands at most once, and a
//! worker that restarts resumes from the versions in the table.

use crate::{Error, Lake, Result};
use arrow::array::RecordBatch;
use arrow::datatypes::{DataType as ArrowType, SchemaRef, TimeUnit};
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{ArrayType, DataType, MapType, StructField, StructType, Transaction};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableError};
use rtlake_core::schema::TableName;
use std::collections::BTreeMap;

mod upsert;

/// The txn app id of a (pipeline, sink, partition).
pub fn app_id(pipeline: &str, sink: &str, partition: i32) -> String {
    format!("{pipeline}/{sink}/{partition}")
}

/// One Delta table written by one pipeline.
pub struct DeltaSink {
    name: TableName,
    schema: SchemaRef,
    table: DeltaTable,
    /// The versions this sink last committed or read, per app id.
    known: BTreeMap<String, i64>,
}

fn kernel_type(t: &ArrowType) -> Option<DataType> {
    Some(match t {
        ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View => DataType::STRING,
        ArrowType::Int32 => DataType::INTEGER,
        ArrowType::Int64 => DataType::LONG,
        ArrowType::Float64 => DataType::DOUBLE,
        ArrowType::Boolean => DataType::BOOLEAN,
        ArrowType::Binary => DataType::BINARY,
        ArrowType::Date32 => DataType::DATE,
        ArrowType::Timestamp(TimeUnit::Microsecond, Some(_)) => DataType::TIMESTAMP,
        ArrowType::Int8 => DataType::BYTE,
        ArrowType::Int16 => DataType::SHORT,
        ArrowType::Float32 => DataType::FLOAT,
        ArrowType::Decimal128(p, s) => DataType::decimal(*p, u8::try_from(*s).ok()?).ok()?,
        // Nested columns (a typed topic's records, arrays and maps).
        ArrowType::Struct(fields) => DataType::from(
            StructType::try_new(
                fields
                    .iter()
                    .map(|f| {
                        kernel_type(f.data_type())
                            .map(|t| StructField::new(f.name(), t, f.is_nullable()))
                    })
                    .collect::<Option<Vec<_>>>()?,
            )
            .ok()?,
        ),
        ArrowType::List(f) | ArrowType::LargeList(f) => {
            DataType::from(ArrayType::new(kernel_type(f.data_type())?, f.is_nullable()))
        }
        ArrowType::Map(entries, _) => {
            let ArrowType::Struct(kv) = entries.data_type() else {
                return None;
            };
            let [k, v] = kv.iter().collect::<Vec<_>>()[..] else {
                return None;
            };
            DataType::from(MapType::new(
                kernel_type(k.data_type())?,
                kernel_type(v.data_type())?,
                v.is_nullable(),
            ))
        }
        _ => return None,
    })
}

/// Makes an existing table fit `schema`, the rows a pipeline writes: new nullable columns are
/// added (a metadata commit; older rows read them as null); a column whose type changed, a new
/// column that may not be null, or a column the rows no longer have is refused, naming it.
async fn evolve(table: DeltaTable, name: TableName, schema: &SchemaRef) -> Result<DeltaTable> {
    let refuse = |reason: String| Error::Schema {
        table: name.to_string(),
        reason,
    };
    let current = table
        .snapshot()
        .map_err(|cause| Error::Delta {
            table: name.to_string(),
            cause: Box::new(cause),
        })?
        .snapshot()
        .arrow_schema();
    let mut added = Vec::new();
    for f in schema.fields() {
        let wanted = kernel_type(f.data_type());
        match current.field_with_name(f.name()) {
            Ok(c) if kernel_type(c.data_type()) == wanted => {}
            Ok(c) => {
                return Err(refuse(format!(
                    "column {} is {} in the table but {} in this pipeline's rows: a type change is refused (write to a new table, or rewrite this one with the new type)",
                    f.name(),
                    c.data_type(),
                    f.data_type()
                )));
            }
            Err(_) if f.is_nullable() => added.push(StructField::new(
                f.name(),
                wanted.ok_or_else(|| {
                    refuse(format!(
                        "column {} has type {} that the sink cannot write",
                        f.name(),
                        f.data_type()
                    ))
                })?,
                true,
            )),
            Err(_) => {
                return Err(refuse(format!(
                    "this pipeline's rows have a new column {} that may not be null: an existing table only takes new nullable columns",
                    f.name()
                )));
            }
        }
    }
    if let Some(gone) = current
        .fields()
        .iter()
        .find(|c| schema.field_with_name(c.name()).is_err())
    {
        return Err(refuse(format!(
            "the table has a column {} that this pipeline's rows do not: dropping a column is refused",
            gone.name()
        )));
    }
    if added.is_empty() {
        return Ok(table);
    }
    let names: Vec<String> = added.iter().map(|f| f.name().to_string()).collect();
    let table = table
        .add_columns()
        .with_fields(added)
        .await
        .map_err(|cause| Error::Delta {
            table: name.to_string(),
            cause: Box::new(cause),
        })?;
    tracing::info!(table = %name, columns = ?names, "added columns to the table (schema evolution)");
    Ok(table)
}

impl DeltaSink {
    /// Opens the table, creating it with `schema` and `partitions` if it does not exist.
    pub async fn open(
        lake: &Lake,
        name: TableName,
        schema: SchemaRef,
        partitions: &[&str],
    ) -> Result<Self> {
        let de = |cause| Error::Delta {
            table: name.to_string(),
            cause: Box::new(cause),
        };
        let url = lake.table_url(name);
        if url.scheme() == "file"
            && let Ok(p) = url.to_file_path()
        {
            std::fs::create_dir_all(&p).map_err(|e| de(DeltaTableError::Generic(e.to_string())))?;
        }
        let table =
            DeltaTable::try_from_url_with_storage_options(url, lake.storage_options().clone())
                .await
                .map_err(de)?;
        Self::from_handle(lake, name, schema, partitions, table).await
    }

    /// The rest of [`DeltaSink::open`], from a handle that may have seen no table yet even
    /// though another worker has created it since.
    async fn from_handle(
        lake: &Lake,
        name: TableName,
        schema: SchemaRef,
        partitions: &[&str],
        mut table: DeltaTable,
    ) -> Result<Self> {
        let de = |cause| Error::Delta {
            table: name.to_string(),
            cause: Box::new(cause),
        };
        if table.version().is_none() {
            let mut columns = Vec::new();
            for f in schema.fields() {
                let t = kernel_type(f.data_type()).ok_or_else(|| Error::Schema {
                    table: name.to_string(),
                    reason: format!(
                        "column {} has type {} that the sink cannot write",
                        f.name(),
                        f.data_type()
                    ),
                })?;
                columns.push(StructField::new(f.name(), t, f.is_nullable()));
            }
            let created = table
                .create()
                .with_table_name(name.to_string())
                .with_columns(columns)
                .with_partition_columns(partitions.iter().copied())
                .with_configuration_property(
                    deltalake::TableProperty::CheckpointInterval,
                    Some("20"),
                )
                // Version 0 or nothing: a create that lost the race to another worker must fail
                // (and open that worker's table) rather than be retried as a later version,
                // which delta-rs would commit as a second CREATE TABLE over the other's rows.
                .with_commit_properties(CommitProperties::default().with_max_retries(0))
                .await;
            table = match created {
                Ok(t) => {
                    tracing::info!(table = %name, "created table");
                    t
                }
                // Another worker created it first (delta-rs says so as a version conflict, a
                // failed transaction, or "a table already exists"): open that one.
                Err(e) => {
                    let mut t = DeltaTable::try_from_url_with_storage_options(
                        lake.table_url(name),
                        lake.storage_options().clone(),
                    )
                    .await
                    .map_err(de)?;
                    if t.load().await.is_err() || t.version().is_none() {
                        return Err(de(e));
                    }
                    tracing::info!(table = %name, error = %e, "another worker created the table first; opening it");
                    t
                }
            };
        }
        let table = evolve(table, name, &schema).await?;
        Ok(Self {
            name,
            schema,
            table,
            known: BTreeMap::new(),
        })
    }

    /// The table's name.
    pub fn name(&self) -> TableName {
        self.name
    }

    /// The table's Arrow schema, as batches must have it.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Reloads the table and returns the txn versions of `app_ids` (absent: never written).
    pub async fn refresh_versions(
        &mut self,
        app_ids: &[String],
    ) -> Result<BTreeMap<String, Option<i64>>> {
        let de = |cause| Error::Delta {
            table: self.name.to_string(),
            cause: Box::new(cause),
        };
        self.table.update_state().await.map_err(de)?;
        let mut out = BTreeMap::new();
        let snapshot = self.table.snapshot().map_err(de)?;
        let store = self.table.log_store();
        for id in app_ids {
            let v = snapshot
                .transaction_version(store.as_ref(), id)
                .await
                .map_err(de)?;
            match v {
                Some(v) => self.known.insert(id.clone(), v),
                None => self.known.remove(id),
            };
            out.insert(id.clone(), v);
        }
        Ok(out)
    }

    /// The version this sink last saw for an app id.
    pub fn known_version(&self, app_id: &str) -> Option<i64> {
        self.known.get(app_id).copied()
    }

    /// Fails with [`Error::ConflictingOffsets`] unless the table's versions of the app ids of
    /// `txns` are still those this sink last saw (reloading the table).
    async fn check_versions(&mut self, txns: &BTreeMap<String, i64>) -> Result<()> {
        let ids: Vec<String> = txns.keys().cloned().collect();
        let expected: BTreeMap<String, Option<i64>> = ids
            .iter()
            .map(|id| (id.clone(), self.known.get(id).copied()))
            .collect();
        let found = self.refresh_versions(&ids).await?;
        for (id, want) in &expected {
            if found.get(id).copied().flatten() != *want {
                return Err(Error::ConflictingOffsets {
                    table: self.name.to_string(),
                    app_id: id.clone(),
                    expected: *want,
                    found: found.get(id).copied().flatten(),
                });
            }
        }
        Ok(())
    }

    /// Commits `batches` with the txn versions `txns` (app id → next offset) in one Delta commit.
    ///
    /// Fails with [`Error::ConflictingOffsets`] if the table's versions are no longer those this
    /// sink last saw (another worker advanced them); nothing is committed then.
    pub async fn commit(
        &mut self,
        batches: Vec<RecordBatch>,
        txns: &BTreeMap<String, i64>,
    ) -> Result<u64> {
        let table_name = self.name.to_string();
        let de = |cause| Error::Delta {
            table: table_name.clone(),
            cause: Box::new(cause),
        };
        let ids: Vec<String> = txns.keys().cloned().collect();
        self.check_versions(txns).await?;
        let props = txn_properties(txns);
        let mut writer = RecordBatchWriter::for_table(&self.table)
            .map_err(de)?
            .with_commit_properties(props);
        for b in batches.into_iter().filter(|b| b.num_rows() > 0) {
            if b.schema().fields() != self.schema.fields() {
                return Err(Error::Schema {
                    table: table_name.clone(),
                    reason: format!("batch schema {} differs", b.schema()),
                });
            }
            writer.write(b).await.map_err(de)?;
        }
        let version = match writer.flush_and_commit(&mut self.table).await {
            Ok(v) => v,
            Err(DeltaTableError::Transaction { source }) => {
                // The conflict checker saw a concurrent commit of the same partitions.
                return Err(Error::ConflictingOffsets {
                    table: format!("{table_name} ({source})"),
                    app_id: ids.join(","),
                    expected: None,
                    found: None,
                });
            }
            Err(e) => return Err(de(e)),
        };
        for (id, v) in txns {
            self.known.insert(id.clone(), *v);
        }
        Ok(version)
    }
}

/// A commit's `txn` actions: app id → next offset.
fn txn_properties(txns: &BTreeMap<String, i64>) -> CommitProperties {
    CommitProperties::default().with_application_transactions(
        txns.iter()
            .map(|(id, v)| Transaction::new(id, *v))
            .collect(),
    )
}

/// Reads the txn versions of `app_ids` from the latest version of a table, without writing.
/// A table that does not exist yet has none.
pub async fn read_versions(
    lake: &Lake,
    name: TableName,
    app_ids: &[String],
) -> Result<BTreeMap<String, Option<i64>>> {
    let de = |cause| Error::Delta {
        table: name.to_string(),
        cause: Box::new(cause),
    };
    let table = DeltaTable::try_from_url_with_storage_options(
        lake.table_url(name),
        lake.storage_options().clone(),
    )
    .await
    .map_err(de)?;
    let mut out = BTreeMap::new();
    if table.version().is_none() {
        out.extend(app_ids.iter().map(|id| (id.clone(), None)));
        return Ok(out);
    }
    let snapshot = table.snapshot().map_err(de)?;
    let store = table.log_store();
    for id in app_ids {
        out.insert(
            id.clone(),
            snapshot
                .transaction_version(store.as_ref(), id)
                .await
                .map_err(de)?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    /// Two workers starting together on a new lake: the second saw no table, the first created
    /// it, and the second opens it instead of failing ("a table already exists").
    #[tokio::test]
    async fn a_worker_that_lost_the_race_to_create_a_table_opens_it() {
        let schema: SchemaRef =
            Arc::new(Schema::new(vec![Field::new("x", ArrowType::Int64, false)]));
        let name = TableName {
            namespace: "bronze",
            name: "t",
        };
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::LakeConfig {
            uri: dir.path().display().to_string(),
            ..Default::default()
        };
        let lake = Lake::open(&cfg).unwrap();
        std::fs::create_dir_all(dir.path().join("bronze/t")).unwrap();
        let late = DeltaTable::try_from_url_with_storage_options(
            lake.table_url(name),
            lake.storage_options().clone(),
        )
        .await
        .unwrap();
        assert!(late.version().is_none());
        DeltaSink::open(&lake, name, schema.clone(), &[])
            .await
            .expect("the first worker creates it");
        let second = DeltaSink::from_handle(&lake, name, schema, &[], late)
            .await
            .expect("the second opens it");
        assert_eq!(second.table.version(), Some(0));
    }
}
