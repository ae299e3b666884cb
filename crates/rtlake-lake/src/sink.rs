//! The exactly-once Delta sink.
//!
//! Each commit carries one `txn` action per input partition, app id
//! `<pipeline>/<sink>/<partition>`, whose version is the next offset to read; it is written even
//! when the epoch gave the table no rows. The sink knows the versions it last committed or read
//! and the table version at which they held. An append is written as the next version's log
//! entry only if that entry does not exist; when another writer took it, the sink reads that
//! commit and refuses to go on if it wrote one of the same partitions (`append.rs`). So a range
//! of offsets lands at most once, and a worker that restarts resumes from the versions in the
//! table. A sink that knows no version for a partition reloads the table and reads them all.
//!
//! The sink writes appends' log entries itself rather than through delta-rs' commit, which
//! rebuilds the table's list of live files after every commit (see `append.rs`); an upsert
//! (MERGE) reads that list and still commits through delta-rs, whose conflict checker refuses a
//! concurrent commit of the same app ids. For the same reason a commit does not run delta-rs'
//! expired-log cleanup, which lists the whole `_delta_log` each time: the processor's
//! maintenance schedule cleans the log (`maintenance::checkpoint`).

use crate::{Error, Lake, Result};
use arrow::array::RecordBatch;
use arrow::datatypes::{DataType as ArrowType, SchemaRef, TimeUnit};
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{ArrayType, DataType, MapType, StructField, StructType, Transaction};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableError};
use rtlake_core::schema::TableName;
use std::collections::BTreeMap;

mod append;
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
    /// The versions this sink last committed or read, per app id (`None`: read, never written).
    known: BTreeMap<String, Option<i64>>,
    /// The table version at which every entry of `known` was last true, when every commit since
    /// it was this sink's own; `None`: read the versions again before the next commit.
    verified: Option<u64>,
    /// The newest event of the next commit's rows ([`DeltaSink::stamp`]).
    newest_event_ms: Option<i64>,
    /// The table's partition columns as a commit's `partitionBy` names them (a JSON list).
    partition_by: String,
    /// The table's `checkpointInterval`: a log checkpoint after every this many versions.
    checkpoint_interval: u64,
    /// Where in each interval this table's checkpoint falls (`append::checkpoint_phase`).
    checkpoint_phase: u64,
    /// The log checkpoint being written beside the pipeline, if any (`append.rs`).
    checkpointing: Option<tokio::task::JoinHandle<()>>,
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
        let state = table.snapshot().map_err(de)?;
        let partition_by = serde_json::to_string(state.metadata().partition_columns())
            .map_err(|e| de(e.into()))?;
        let checkpoint_interval =
            deltalake::table::config::TablePropertiesExt::checkpoint_interval(state.table_config())
                .get();
        Ok(Self {
            name,
            schema,
            table,
            known: BTreeMap::new(),
            verified: None,
            newest_event_ms: None,
            partition_by,
            checkpoint_interval,
            checkpoint_phase: append::checkpoint_phase(&name.to_string(), checkpoint_interval),
            checkpointing: None,
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

    /// Records `newest_event_ms` (see [`crate::NEWEST_EVENT_KEY`]) in the next commit.
    pub fn stamp(&mut self, newest_event_ms: Option<i64>) {
        self.newest_event_ms = newest_event_ms;
    }

    /// Reloads the table and returns the txn versions of `app_ids` (absent: never written).
    /// The versions this sink knew of other app ids are read again too, so all it knows holds
    /// at the reloaded version.
    pub async fn refresh_versions(
        &mut self,
        app_ids: &[String],
    ) -> Result<BTreeMap<String, Option<i64>>> {
        let de = |cause| Error::Delta {
            table: self.name.to_string(),
            cause: Box::new(cause),
        };
        self.verified = None;
        self.table.update_state().await.map_err(de)?;
        let mut ids: Vec<String> = self.known.keys().cloned().collect();
        ids.extend(
            app_ids
                .iter()
                .filter(|id| !self.known.contains_key(*id))
                .cloned(),
        );
        let snapshot = self.table.snapshot().map_err(de)?;
        let store = self.table.log_store();
        for id in ids {
            let v = snapshot
                .transaction_version(store.as_ref(), &id)
                .await
                .map_err(de)?;
            self.known.insert(id, v);
        }
        self.verified = self.table.version();
        Ok(app_ids
            .iter()
            .map(|id| (id.clone(), self.known[id]))
            .collect())
    }

    /// The version this sink last saw for an app id.
    pub fn known_version(&self, app_id: &str) -> Option<i64> {
        self.known.get(app_id).copied().flatten()
    }

    /// Whether the sink knows the versions of all `ids` and the table version at which they
    /// held (a later commit of another writer's is found when the sink commits).
    fn still_known(&self, ids: &[String]) -> bool {
        self.verified.is_some() && ids.iter().all(|id| self.known.contains_key(id))
    }

    /// Fails with [`Error::ConflictingOffsets`] unless the table's versions of the app ids of
    /// `txns` are still those this sink last saw (reloading the table unless
    /// [`Self::still_known`]).
    async fn check_versions(&mut self, txns: &BTreeMap<String, i64>) -> Result<()> {
        let ids: Vec<String> = txns.keys().cloned().collect();
        if self.still_known(&ids) {
            return Ok(());
        }
        let expected: BTreeMap<String, Option<i64>> = ids
            .iter()
            .map(|id| (id.clone(), self.known_version(id)))
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

    /// Records a commit of this sink's at `version` with `txns`: what it knows stays true at
    /// `version` if that commit directly followed the one it knew (no other writer's in between).
    fn committed(&mut self, before: Option<u64>, version: u64, txns: &BTreeMap<String, i64>) {
        for (id, v) in txns {
            self.known.insert(id.clone(), Some(*v));
        }
        self.verified = match (self.verified, before) {
            (Some(at), Some(b)) if at == b && version == b + 1 => Some(version),
            _ => None,
        };
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
        self.check_versions(txns).await?;
        let newest = self.newest_event_ms.take();
        let batches: Vec<RecordBatch> = batches.into_iter().filter(|b| b.num_rows() > 0).collect();
        let mut adds = Vec::new();
        if !batches.is_empty() {
            let mut writer =
                RecordBatchWriter::for_table(&self.table).map_err(|e| self.delta_error(e))?;
            for b in batches {
                if b.schema().fields() != self.schema.fields() {
                    return Err(Error::Schema {
                        table: self.name.to_string(),
                        reason: format!("batch schema {} differs", b.schema()),
                    });
                }
                writer.write(b).await.map_err(|e| self.delta_error(e))?;
            }
            adds = writer.flush().await.map_err(|e| self.delta_error(e))?;
        }
        self.append(adds, txns, newest).await
    }

    /// Brings the table's state (its live files, which a MERGE reads) to the version the sink
    /// knows: appends do not update it (`append.rs`). Another writer's commits found on the way
    /// send the sink back to reading every version it knows.
    async fn catch_up(&mut self, txns: &BTreeMap<String, i64>) -> Result<()> {
        if self.table.version() == self.verified {
            return Ok(());
        }
        self.table
            .update_state()
            .await
            .map_err(|e| self.delta_error(e))?;
        if self.table.version() != self.verified {
            self.verified = None;
            self.check_versions(txns).await?;
        }
        Ok(())
    }
}

/// A commit's `txn` actions (app id → next offset) and the newest event it holds; no
/// expired-log cleanup (see the module's docs).
fn txn_properties(txns: &BTreeMap<String, i64>, newest_event_ms: Option<i64>) -> CommitProperties {
    CommitProperties::default()
        .with_metadata(
            newest_event_ms.map(|ms| (crate::NEWEST_EVENT_KEY.to_string(), serde_json::json!(ms))),
        )
        .with_application_transactions(
            txns.iter()
                .map(|(id, v)| Transaction::new(id, *v))
                .collect(),
        )
        .with_cleanup_expired_logs(Some(false))
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
mod tests;
