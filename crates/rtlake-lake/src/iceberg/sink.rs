//! The exactly-once Iceberg sink.
//!
//! The protocol is the Delta sink's with the snapshot summary in place of `txn` actions: each
//! commit's snapshot carries, under `rtlake.offsets`, the next offset to read of every input
//! partition the table has seen (app id `<pipeline>/<sink>/<partition>`), carried forward from
//! the snapshot it was made on. Before committing, the sink reloads the table and checks that
//! its partitions' offsets are the ones it last saw; the commit then names the metadata version
//! it was made on, and the catalog refuses it if the table moved. On such a refusal the sink
//! reloads: if another writer advanced one of its partitions the epoch is dropped
//! ([`Error::ConflictingOffsets`]); otherwise (a writer of other partitions) it commits again
//! on top. A commit whose outcome was lost (a timeout) is recognised by its `rtlake.commit-id`.

use super::catalog::{Catalog, Conflict, Loaded};
use super::manifest::{self, DataFile, Entry, ManifestFile, PartitionValue, Status};
use super::metadata::{Change, OFFSETS_KEY, TableMetadata};
use super::schema::{self, Schema};
use crate::{Error, Lake, Result};
use arrow::array::{Array, AsArray, RecordBatch, UInt32Array};
use arrow::datatypes::{DataType, Date32Type, Int32Type, Int64Type, SchemaRef};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use rtlake_core::schema::TableName;
use std::collections::BTreeMap;
use std::sync::Arc;
use url::Url;

mod upsert;

/// The summary key naming the commit, to recognise one whose outcome was lost.
const COMMIT_ID_KEY: &str = "rtlake.commit-id";

/// One Iceberg table written by one pipeline.
pub struct IcebergSink {
    name: TableName,
    /// The pipeline's rows, each field carrying its Iceberg field id.
    schema: SchemaRef,
    catalog: Catalog,
    store: Arc<dyn ObjectStore>,
    url: Url,
    table: Loaded,
    known: BTreeMap<String, i64>,
    /// The newest event of the next commit's rows ([`IcebergSink::stamp`]).
    newest_event_ms: Option<i64>,
}

fn err(table: TableName, reason: impl std::fmt::Display) -> Error {
    Error::Iceberg {
        table: table.to_string(),
        reason: reason.to_string(),
    }
}

fn refuse(table: TableName, reason: String) -> Error {
    Error::Schema {
        table: table.to_string(),
        reason,
    }
}

/// A random positive snapshot id (as the Java library makes them).
pub(super) fn new_snapshot_id() -> i64 {
    (uuid::Uuid::new_v4().as_u64_pair().0 & i64::MAX as u64) as i64
}

impl IcebergSink {
    /// Opens the table, creating it with `schema`, partitioned by identity on `partitions`, if
    /// it does not exist; a new nullable column is added to an existing table (schema
    /// evolution by field id).
    pub async fn open(
        lake: &Lake,
        name: TableName,
        schema: SchemaRef,
        partitions: &[&str],
    ) -> Result<Self> {
        let catalog = Catalog::of(lake);
        let url = lake.table_url(name);
        let store = lake.store_at(&url)?;
        let mut table = match catalog.load(name).await? {
            Some(t) => t,
            None => {
                let s = Schema::from_arrow(&schema).map_err(|r| refuse(name, r))?;
                let spec = schema::identity_spec(&s, partitions).map_err(|r| refuse(name, r))?;
                let md = TableMetadata::new(url.as_str(), s, spec);
                match catalog.create(name, md).await? {
                    Ok(t) => {
                        tracing::info!(table = %name, "created Iceberg table");
                        t
                    }
                    Err(Conflict) => catalog
                        .load(name)
                        .await?
                        .ok_or_else(|| err(name, "created by another writer, then not found"))?,
                }
            }
        };
        // Schema evolution, retried while other writers commit.
        loop {
            let Some(change) = super::evolve::evolve(name, &table.metadata, &schema)? else {
                break;
            };
            if let Ok(t) = catalog.commit(name, &table, &change).await? {
                tracing::info!(table = %name, "added columns to the Iceberg table (schema evolution)");
                table = t;
                break;
            }
            table = catalog
                .load(name)
                .await?
                .ok_or_else(|| err(name, "vanished"))?;
        }
        let current = table
            .metadata
            .current_schema()
            .ok_or_else(|| err(name, "the metadata names no current schema"))?;
        let fields: Vec<_> = schema
            .fields()
            .iter()
            .map(|f| {
                let id = current.field(f.name()).map_or(0, |c| c.id);
                schema::with_id(f.as_ref().clone(), id)
            })
            .collect();
        Ok(Self {
            name,
            schema: Arc::new(arrow::datatypes::Schema::new(fields)),
            catalog,
            store,
            url,
            table,
            known: BTreeMap::new(),
            newest_event_ms: None,
        })
    }

    /// Records `newest_event_ms` (see [`crate::NEWEST_EVENT_KEY`]) in the next commit.
    pub fn stamp(&mut self, newest_event_ms: Option<i64>) {
        self.newest_event_ms = newest_event_ms;
    }

    /// The table's name.
    pub fn name(&self) -> TableName {
        self.name
    }

    /// The rows' Arrow schema (with field ids).
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The metadata this sink last loaded.
    pub fn metadata(&self) -> &TableMetadata {
        &self.table.metadata
    }

    async fn reload(&mut self) -> Result<()> {
        self.table = self
            .catalog
            .load(self.name)
            .await?
            .ok_or_else(|| err(self.name, "the table is gone from its catalog"))?;
        Ok(())
    }

    /// Reloads the table and returns the offsets of `app_ids` (absent: never written).
    pub async fn refresh_versions(
        &mut self,
        app_ids: &[String],
    ) -> Result<BTreeMap<String, Option<i64>>> {
        self.reload().await?;
        let offsets = self.table.metadata.offsets();
        let mut out = BTreeMap::new();
        for id in app_ids {
            let v = offsets.get(id).copied();
            match v {
                Some(v) => self.known.insert(id.clone(), v),
                None => self.known.remove(id),
            };
            out.insert(id.clone(), v);
        }
        Ok(out)
    }

    /// The offset this sink last saw for an app id.
    pub fn known_version(&self, app_id: &str) -> Option<i64> {
        self.known.get(app_id).copied()
    }

    /// Commits `batches` with the offsets `txns` (app id → next offset) in one snapshot;
    /// returns the snapshot's sequence number.
    ///
    /// Fails with [`Error::ConflictingOffsets`] if the table's offsets are no longer those this
    /// sink last saw (another worker advanced them); nothing is committed then.
    pub async fn commit(
        &mut self,
        batches: Vec<RecordBatch>,
        txns: &BTreeMap<String, i64>,
    ) -> Result<u64> {
        let newest = self.newest_event_ms.take();
        let expected = self.begin(txns).await?;
        let mut files = Vec::new();
        for b in batches.into_iter().filter(|b| b.num_rows() > 0) {
            if b.schema().fields().len() != self.schema.fields().len()
                || b.schema()
                    .fields()
                    .iter()
                    .zip(self.schema.fields())
                    .any(|(a, s)| a.name() != s.name() || a.data_type() != s.data_type())
            {
                return Err(refuse(
                    self.name,
                    format!("batch schema {} differs", b.schema()),
                ));
            }
            files.extend(self.write_files(&b).await?);
        }
        let commit_id = uuid::Uuid::new_v4().to_string();
        loop {
            let change = self.snapshot_of(&files, txns, &commit_id, newest).await?;
            let seq = change.snapshot.as_ref().map_or(0, |s| s.sequence_number);
            match self.catalog.commit(self.name, &self.table, &change).await? {
                Ok(t) => {
                    self.table = t;
                    break Ok(seq as u64);
                }
                Err(Conflict) => {
                    if self.after_conflict(&expected, &commit_id).await? {
                        break Ok(self.table.metadata.last_sequence_number as u64);
                    }
                }
            }
        }
        .inspect(|_| {
            for (id, v) in txns {
                self.known.insert(id.clone(), *v);
            }
        })
    }

    /// Reloads the table and checks that the offsets of `txns`' app ids are still those this
    /// sink last saw; returns them, to check again after a refused commit.
    async fn begin(
        &mut self,
        txns: &BTreeMap<String, i64>,
    ) -> Result<BTreeMap<String, Option<i64>>> {
        let ids: Vec<String> = txns.keys().cloned().collect();
        let expected: BTreeMap<String, Option<i64>> = ids
            .iter()
            .map(|id| (id.clone(), self.known.get(id).copied()))
            .collect();
        self.refresh_versions(&ids).await?;
        self.check(&expected)?;
        Ok(expected)
    }

    /// After the catalog refused commit `commit_id`: reloads the table; true if that commit
    /// landed after all (its answer was lost); an error if another writer advanced one of
    /// `expected`'s partitions; false if the commit should be made again on top.
    async fn after_conflict(
        &mut self,
        expected: &BTreeMap<String, Option<i64>>,
        commit_id: &str,
    ) -> Result<bool> {
        self.reload().await?;
        if self
            .table
            .metadata
            .current_snapshot()
            .is_some_and(|s| s.summary.get(COMMIT_ID_KEY).map(String::as_str) == Some(commit_id))
        {
            return Ok(true);
        }
        self.check(expected)?;
        tracing::debug!(table = %self.name, "another writer committed first; committing on top");
        Ok(false)
    }

    fn check(&self, expected: &BTreeMap<String, Option<i64>>) -> Result<()> {
        let offsets = self.table.metadata.offsets();
        let found = expected
            .keys()
            .map(|id| (id.clone(), offsets.get(id).copied()))
            .collect();
        self.check_found(expected, &found)
    }

    fn check_found(
        &self,
        expected: &BTreeMap<String, Option<i64>>,
        found: &BTreeMap<String, Option<i64>>,
    ) -> Result<()> {
        for (id, want) in expected {
            let got = found.get(id).copied().flatten();
            if got != *want {
                return Err(Error::ConflictingOffsets {
                    table: self.name.to_string(),
                    app_id: id.clone(),
                    expected: *want,
                    found: got,
                });
            }
        }
        Ok(())
    }

    /// Writes `batch` as one Parquet file per partition value.
    async fn write_files(&self, batch: &RecordBatch) -> Result<Vec<DataFile>> {
        let md = &self.table.metadata;
        let spec = md
            .default_spec()
            .ok_or_else(|| err(self.name, "the metadata names no partition spec"))?;
        let current = md
            .current_schema()
            .ok_or_else(|| err(self.name, "the metadata names no current schema"))?;
        // The batch columns of the partition fields (identity transforms only).
        let mut columns = Vec::new();
        for p in &spec.fields {
            if p.transform != "identity" {
                return Err(err(
                    self.name,
                    format!(
                        "partition field {} has transform {}: rtlake writes identity partitions only",
                        p.name, p.transform
                    ),
                ));
            }
            let name = current
                .fields
                .iter()
                .find(|f| f.id == p.source_id)
                .map(|f| f.name.as_str())
                .ok_or_else(|| {
                    err(
                        self.name,
                        format!("partition source {} is no column", p.source_id),
                    )
                })?;
            let i = batch
                .schema()
                .index_of(name)
                .map_err(|_| refuse(self.name, format!("the rows lack partition column {name}")))?;
            columns.push(batch.column(i).clone());
        }
        let mut groups: BTreeMap<Vec<Option<PartitionValue>>, Vec<u32>> = BTreeMap::new();
        for row in 0..batch.num_rows() {
            let key = columns
                .iter()
                .map(|c| partition_value(c.as_ref(), row))
                .collect();
            groups.entry(key).or_default().push(row as u32);
        }
        let batch = RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())
            .map_err(|e| refuse(self.name, e.to_string()))?;
        let mut out = Vec::new();
        for (key, rows) in groups {
            let part = if rows.len() == batch.num_rows() {
                batch.clone()
            } else {
                arrow::compute::take_record_batch(&batch, &UInt32Array::from(rows))
                    .map_err(|e| err(self.name, e))?
            };
            let mut dir = String::from("data/");
            for (p, v) in spec.fields.iter().zip(&key) {
                let v = v
                    .as_ref()
                    .map_or_else(|| "null".into(), PartitionValue::path_segment);
                dir.push_str(&format!("{}={v}/", p.name));
            }
            let rel = format!("{dir}{}.parquet", uuid::Uuid::now_v7());
            let bytes = parquet_bytes(&part).map_err(|e| err(self.name, e))?;
            let size = bytes.len() as i64;
            self.store
                .put(&Path::from(rel.as_str()), PutPayload::from(bytes))
                .await
                .map_err(|e| err(self.name, e))?;
            out.push(DataFile {
                path: self
                    .url
                    .join(&rel)
                    .map_err(|e| err(self.name, e))?
                    .to_string(),
                partition: key,
                record_count: part.num_rows() as i64,
                file_size: size,
            });
        }
        Ok(out)
    }

    /// The snapshot adding `files` (whose newest event is `newest`) on top of the loaded table:
    /// its manifest and manifest list written, ready to commit.
    async fn snapshot_of(
        &self,
        files: &[DataFile],
        txns: &BTreeMap<String, i64>,
        commit_id: &str,
        newest: Option<i64>,
    ) -> Result<Change> {
        let md = &self.table.metadata;
        let name = self.name;
        let parent = md.current_snapshot();
        let snapshot_id = new_snapshot_id();
        let seq = md.last_sequence_number + 1;
        let mut manifests: Vec<ManifestFile> = match parent {
            Some(p) => {
                let bytes = self.read(&p.manifest_list).await?;
                manifest::read_manifest_list(&bytes).map_err(|e| err(name, e))?
            }
            None => Vec::new(),
        };
        if !files.is_empty() {
            let spec = md
                .default_spec()
                .ok_or_else(|| err(name, "no partition spec"))?;
            let current = md
                .current_schema()
                .ok_or_else(|| err(name, "no current schema"))?;
            let entries: Vec<Entry> = files
                .iter()
                .map(|f| Entry {
                    status: Status::Added,
                    snapshot_id,
                    sequence_number: None,
                    file: f.clone(),
                })
                .collect();
            let (bytes, mut m) =
                manifest::write_manifest(current, spec, snapshot_id, seq, &entries)
                    .map_err(|e| err(name, e))?;
            m.path = self
                .put_metadata(&format!("{}-m0.avro", uuid::Uuid::now_v7()), bytes)
                .await?;
            manifests.insert(0, m);
        }
        let list = manifest::write_manifest_list(
            snapshot_id,
            parent.map(|p| p.snapshot_id),
            seq,
            &manifests,
        )
        .map_err(|e| err(name, e))?;
        let list_path = self
            .put_metadata(
                &format!("snap-{snapshot_id}-1-{}.avro", uuid::Uuid::now_v7()),
                list,
            )
            .await?;
        let mut offsets = md.offsets();
        offsets.extend(txns.iter().map(|(k, v)| (k.clone(), *v)));
        let added_rows: i64 = files.iter().map(|f| f.record_count).sum();
        let added_bytes: i64 = files.iter().map(|f| f.file_size).sum();
        let total = |k: &str, add: i64| {
            let before = parent
                .and_then(|p| p.summary.get(k))
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0);
            (before + add).to_string()
        };
        let mut summary = BTreeMap::new();
        summary.insert("operation".into(), "append".into());
        summary.insert("added-data-files".into(), files.len().to_string());
        summary.insert("added-records".into(), added_rows.to_string());
        summary.insert("added-files-size".into(), added_bytes.to_string());
        summary.insert(
            "total-data-files".into(),
            total("total-data-files", files.len() as i64),
        );
        summary.insert("total-records".into(), total("total-records", added_rows));
        summary.insert(
            "total-files-size".into(),
            total("total-files-size", added_bytes),
        );
        summary.insert(
            OFFSETS_KEY.into(),
            serde_json::to_string(&offsets).map_err(|e| err(name, e))?,
        );
        summary.insert(COMMIT_ID_KEY.into(), commit_id.to_string());
        if let Some(ms) = newest {
            summary.insert(crate::NEWEST_EVENT_KEY.into(), ms.to_string());
        }
        Ok(Change::snapshot(
            md,
            parent.map(|p| p.snapshot_id),
            snapshot_id,
            seq,
            list_path,
            summary,
        ))
    }

    /// Reads a file of the table by its full location.
    async fn read(&self, location: &str) -> Result<bytes::Bytes> {
        super::read::read_file(
            self.store.as_ref(),
            &self.url,
            &self.name.to_string(),
            location,
        )
        .await
    }

    async fn put_metadata(&self, file: &str, bytes: Vec<u8>) -> Result<String> {
        let rel = format!("metadata/{file}");
        self.store
            .put(&Path::from(rel.as_str()), PutPayload::from(bytes))
            .await
            .map_err(|e| err(self.name, e))?;
        Ok(self
            .url
            .join(&rel)
            .map_err(|e| err(self.name, e))?
            .to_string())
    }
}

/// The path of `location` within the table at `url` (`None`: it is elsewhere).
pub fn relative(url: &Url, location: &str) -> Option<Path> {
    let rest = location.strip_prefix(url.as_str())?;
    Path::parse(rest).ok()
}

fn partition_value(col: &dyn Array, row: usize) -> Option<PartitionValue> {
    if col.is_null(row) {
        return None;
    }
    Some(match col.data_type() {
        DataType::Date32 => PartitionValue::Date(col.as_primitive::<Date32Type>().value(row)),
        DataType::Int32 => PartitionValue::Int(col.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => PartitionValue::Long(col.as_primitive::<Int64Type>().value(row)),
        DataType::Utf8 => PartitionValue::String(col.as_string::<i32>().value(row).to_string()),
        DataType::Utf8View => PartitionValue::String(col.as_string_view().value(row).to_string()),
        _ => return None,
    })
}

pub(super) fn parquet_bytes(batch: &RecordBatch) -> parquet::errors::Result<Vec<u8>> {
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut w = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props))?;
    w.write(batch)?;
    w.into_inner()
}

/// Reads the offsets of `app_ids` from the table's current snapshot, without writing. A table
/// that does not exist yet has none.
pub async fn read_versions(
    lake: &Lake,
    name: TableName,
    app_ids: &[String],
) -> Result<BTreeMap<String, Option<i64>>> {
    let offsets = match Catalog::of(lake).load(name).await? {
        Some(t) => t.metadata.offsets(),
        None => BTreeMap::new(),
    };
    Ok(app_ids
        .iter()
        .map(|id| (id.clone(), offsets.get(id).copied()))
        .collect())
}
