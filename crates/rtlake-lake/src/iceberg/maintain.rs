//! Iceberg table maintenance: compaction (a `replace` snapshot), snapshot expiry with the
//! deletion of the files only expired snapshots referenced, and orphan file removal.
//!
//! Safe beside a running pipeline. A compaction's snapshot is made on the snapshot it read and
//! lists every live file in one new manifest: the rewritten files as deleted, the new ones as
//! added, the rest as existing; the catalog commits it only if `main` is still at that snapshot.
//! If a pipeline appended meanwhile, the compaction reloads, checks that every file it rewrote
//! is still live (else another compaction took them: it gives up, nothing lost or doubled) and
//! commits again with the appended files listed as existing. The pipeline's offsets are carried
//! into the replace snapshot, so exactly once holds across it.
//!
//! Files are deleted only when no snapshot kept references them, and orphans (files no
//! snapshot lists, such as those of a write that crashed before its commit) only when older
//! than the retention: a pipeline's files written but not yet committed are younger.

use super::catalog::{Catalog, Conflict, Loaded};
use super::manifest::{self, DataFile, Entry, ManifestFile, PartitionValue, Status};
use super::metadata::{Change, OFFSETS_KEY, Snapshot, TableMetadata, now_ms};
use super::read::TableFiles;
use super::sink::{new_snapshot_id, parquet_bytes, relative};
use crate::{Error, Lake, Result};
use arrow::array::{RecordBatch, new_null_array};
use arrow::datatypes::SchemaRef;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use url::Url;

fn err(table: &str, reason: impl std::fmt::Display) -> Error {
    Error::Iceberg {
        table: table.to_string(),
        reason: reason.to_string(),
    }
}

/// A table opened for maintenance.
struct Table {
    files: TableFiles,
    catalog: Catalog,
    store: Arc<dyn ObjectStore>,
    name: String,
}

impl Table {
    async fn open(lake: &Lake, url: &Url, name: &str) -> Result<Option<Self>> {
        let Some(files) = TableFiles::open(lake, url, name).await? else {
            return Ok(None);
        };
        Ok(Some(Self {
            files,
            catalog: Catalog::of(lake),
            store: lake.store_at(url)?,
            name: name.to_string(),
        }))
    }

    fn md(&self) -> &TableMetadata {
        &self.files.table.metadata
    }

    async fn reload(&mut self) -> Result<()> {
        self.files.table = self
            .catalog
            .load_at_url(&self.files.url, &self.name)
            .await?
            .ok_or_else(|| err(&self.name, "the table is gone from its catalog"))?;
        Ok(())
    }

    /// The live entries of `snapshot` (with their sequence numbers), and its manifests.
    async fn entries(&self, snapshot: &Snapshot) -> Result<(Vec<Entry>, Vec<ManifestFile>)> {
        self.files.entries(snapshot).await
    }

    async fn put(&self, rel: &str, bytes: Vec<u8>) -> Result<String> {
        Files {
            store: self.store.as_ref(),
            url: &self.files.url,
            name: &self.name,
        }
        .put(rel, bytes)
        .await
    }

    async fn commit(&self, change: &Change) -> Result<std::result::Result<Loaded, Conflict>> {
        self.catalog
            .commit_at_url(&self.files.url, &self.name, &self.files.table, change)
            .await
    }
}

/// What a compaction did.
#[derive(Clone, Debug, Default)]
pub struct Compacted {
    /// Files rewritten.
    pub removed: u64,
    /// Files written.
    pub added: u64,
    /// Partitions touched.
    pub partitions: u64,
    /// Why nothing was committed after all: another writer (an upsert, another compaction)
    /// rewrote files this one read.
    pub lost_race: Option<String>,
}

/// Rewrites each partition's small files (under three quarters of `target` bytes, two or
/// more) into files of about `target` bytes, in one `replace` snapshot.
pub async fn compact(lake: &Lake, url: &Url, name: &str, target: u64) -> Result<Compacted> {
    let Some(mut t) = Table::open(lake, url, name).await? else {
        return Ok(Compacted::default());
    };
    let Some(base) = t.md().current_snapshot().cloned() else {
        return Ok(Compacted::default());
    };
    let (live, _) = t.entries(&base).await?;
    let mut groups: BTreeMap<Vec<Option<PartitionValue>>, Vec<&DataFile>> = BTreeMap::new();
    for e in &live {
        if (e.file.file_size as u64) < target / 4 * 3 {
            groups
                .entry(e.file.partition.clone())
                .or_default()
                .push(&e.file);
        }
    }
    groups.retain(|_, files| files.len() >= 2);
    if groups.is_empty() {
        return Ok(Compacted::default());
    }
    let schema = t
        .md()
        .current_schema()
        .and_then(super::schema::Schema::to_arrow)
        .ok_or_else(|| err(name, "the current schema has a type rtlake does not read"))?;
    let mut removed = BTreeSet::new();
    let mut added = Vec::new();
    let partitions = groups.len() as u64;
    for (key, files) in groups {
        // Bin-pack in order: a new file each time `target` bytes of input are reached.
        let mut bins: Vec<Vec<&DataFile>> = vec![Vec::new()];
        let mut size = 0u64;
        for f in files {
            if size >= target && !bins.last().unwrap().is_empty() {
                bins.push(Vec::new());
                size = 0;
            }
            size += f.file_size as u64;
            bins.last_mut().unwrap().push(f);
        }
        for bin in bins.into_iter().filter(|b| b.len() >= 2) {
            let mut batches = Vec::new();
            for f in &bin {
                let bytes = t.files.read(&f.path).await?;
                let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                    .and_then(|b| b.build())
                    .map_err(|e| err(name, format!("{}: {e}", f.path)))?;
                for b in reader {
                    let b = b.map_err(|e| err(name, format!("{}: {e}", f.path)))?;
                    batches.push(align(&b, &schema).map_err(|e| err(name, e))?);
                }
                removed.insert(f.path.clone());
            }
            let batch =
                arrow::compute::concat_batches(&schema, &batches).map_err(|e| err(name, e))?;
            // The new file goes beside the ones it replaces (their partition's directory).
            let dir = relative(&t.files.url, &bin[0].path)
                .and_then(|p| {
                    let s = p.as_ref();
                    s.rfind('/').map(|i| s[..i].to_string())
                })
                .unwrap_or_else(|| "data".into());
            let rel = format!("{dir}/{}-compacted.parquet", uuid::Uuid::now_v7());
            let bytes = parquet_bytes(&batch).map_err(|e| err(name, e))?;
            let file_size = bytes.len() as i64;
            let path = t.put(&rel, bytes).await?;
            added.push(DataFile {
                path,
                partition: key.clone(),
                record_count: batch.num_rows() as i64,
                file_size,
            });
        }
    }
    if added.is_empty() {
        return Ok(Compacted::default());
    }
    for _ in 0..20 {
        let Some(parent) = t.md().current_snapshot().cloned() else {
            return Err(err(name, "the table lost its snapshots during compaction"));
        };
        let (live, _) = t.entries(&parent).await?;
        let still: usize = live
            .iter()
            .filter(|e| removed.contains(&e.file.path))
            .count();
        if still != removed.len() {
            // Another compaction rewrote some of these files first: ours would double rows.
            for f in &added {
                if let Some(p) = relative(&t.files.url, &f.path) {
                    let _ = t.store.delete(&p).await;
                }
            }
            return Ok(Compacted {
                lost_race: Some(
                    "another writer rewrote the files being compacted; nothing committed".into(),
                ),
                ..Default::default()
            });
        }
        let change = replace_snapshot(&t, &parent, &live, &removed, &added).await?;
        match t.commit(&change).await? {
            Ok(_) => {
                return Ok(Compacted {
                    removed: removed.len() as u64,
                    added: added.len() as u64,
                    partitions,
                    lost_race: None,
                });
            }
            Err(Conflict) => t.reload().await?,
        }
    }
    Err(Error::Maintenance {
        table: name.to_string(),
        reason: "the table kept moving: compaction committed nothing after 20 tries".into(),
    })
}

/// `batch` with `schema`'s columns, by name; a column the file predates is null.
pub(super) fn align(
    batch: &RecordBatch,
    schema: &SchemaRef,
) -> std::result::Result<RecordBatch, String> {
    let cols = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
            Some(c) => arrow::compute::cast(c, f.data_type()).map_err(|e| e.to_string()),
            None => Ok(new_null_array(f.data_type(), batch.num_rows())),
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), cols).map_err(|e| e.to_string())
}

/// The `replace` snapshot on `parent`: one manifest with every live file.
async fn replace_snapshot(
    t: &Table,
    parent: &Snapshot,
    live: &[Entry],
    removed: &BTreeSet<String>,
    added: &[DataFile],
) -> Result<Change> {
    let mut summary = BTreeMap::new();
    summary.insert("operation".into(), "replace".into());
    // The pipelines' offsets go on as they were: a compaction reads no input.
    if let Some(o) = parent.summary.get(OFFSETS_KEY) {
        summary.insert(OFFSETS_KEY.into(), o.clone());
    }
    let files = Files {
        store: t.store.as_ref(),
        url: &t.files.url,
        name: &t.name,
    };
    rewrite_snapshot(files, t.md(), parent, live, removed, added, summary).await
}

/// Where a table's files are written.
#[derive(Clone, Copy)]
pub(super) struct Files<'a> {
    pub store: &'a dyn ObjectStore,
    pub url: &'a Url,
    pub name: &'a str,
}

impl Files<'_> {
    /// Writes `bytes` at `rel` under the table; returns the full location.
    pub async fn put(&self, rel: &str, bytes: Vec<u8>) -> Result<String> {
        self.store
            .put(&Path::from(rel), PutPayload::from(bytes))
            .await
            .map_err(|e| err(self.name, e))?;
        Ok(self
            .url
            .join(rel)
            .map_err(|e| err(self.name, e))?
            .to_string())
    }
}

/// A snapshot on `parent` whose one new manifest lists every live file: those in `removed` as
/// deleted, `added` as added, the rest as existing. `summary` holds the operation and what
/// else the caller records (offsets, a commit id); the file and record counts are added here.
pub(super) async fn rewrite_snapshot(
    files: Files<'_>,
    md: &TableMetadata,
    parent: &Snapshot,
    live: &[Entry],
    removed: &BTreeSet<String>,
    added: &[DataFile],
    mut summary: BTreeMap<String, String>,
) -> Result<Change> {
    let name = files.name;
    let snapshot_id = new_snapshot_id();
    let seq = md.last_sequence_number + 1;
    let mut entries = Vec::with_capacity(live.len() + added.len());
    for e in live {
        let mut e = e.clone();
        if removed.contains(&e.file.path) {
            e.status = Status::Deleted;
            e.snapshot_id = snapshot_id;
        } else {
            e.status = Status::Existing;
        }
        entries.push(e);
    }
    entries.extend(added.iter().map(|f| Entry {
        status: Status::Added,
        snapshot_id,
        sequence_number: None,
        file: f.clone(),
    }));
    let spec = md
        .default_spec()
        .ok_or_else(|| err(name, "no partition spec"))?;
    let schema = md
        .current_schema()
        .ok_or_else(|| err(name, "no current schema"))?;
    let (bytes, mut m) = manifest::write_manifest(schema, spec, snapshot_id, seq, &entries)
        .map_err(|e| err(name, e))?;
    m.path = files
        .put(&format!("metadata/{}-m0.avro", uuid::Uuid::now_v7()), bytes)
        .await?;
    let list = manifest::write_manifest_list(snapshot_id, Some(parent.snapshot_id), seq, &[m])
        .map_err(|e| err(name, e))?;
    let list_path = files
        .put(
            &format!(
                "metadata/snap-{snapshot_id}-1-{}.avro",
                uuid::Uuid::now_v7()
            ),
            list,
        )
        .await?;
    let kept: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.status != Status::Deleted)
        .collect();
    let removed_rows: i64 = live
        .iter()
        .filter(|e| removed.contains(&e.file.path))
        .map(|e| e.file.record_count)
        .sum();
    summary.insert("added-data-files".into(), added.len().to_string());
    summary.insert("deleted-data-files".into(), removed.len().to_string());
    summary.insert(
        "added-records".into(),
        added
            .iter()
            .map(|f| f.record_count)
            .sum::<i64>()
            .to_string(),
    );
    summary.insert("deleted-records".into(), removed_rows.to_string());
    summary.insert("total-data-files".into(), kept.len().to_string());
    summary.insert(
        "total-records".into(),
        kept.iter()
            .map(|e| e.file.record_count)
            .sum::<i64>()
            .to_string(),
    );
    summary.insert(
        "total-files-size".into(),
        kept.iter()
            .map(|e| e.file.file_size)
            .sum::<i64>()
            .to_string(),
    );
    Ok(Change::snapshot(
        md,
        Some(parent.snapshot_id),
        snapshot_id,
        seq,
        list_path,
        summary,
    ))
}

/// What a vacuum did.
#[derive(Clone, Debug, Default)]
pub struct Vacuumed {
    /// Snapshots expired (older than the retention, not current).
    pub snapshots: usize,
    /// Files deleted: those only expired snapshots referenced, and orphans.
    pub files: usize,
}

/// Expires the snapshots older than `retention` (never the current one), deletes the files
/// only they referenced, then the table's orphan data and manifest files older than
/// `retention`.
pub async fn vacuum(lake: &Lake, url: &Url, name: &str, retention: Duration) -> Result<Vacuumed> {
    let Some(mut t) = Table::open(lake, url, name).await? else {
        return Ok(Vacuumed::default());
    };
    let cutoff = now_ms() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let mut expired = Vec::new();
    for _ in 0..20 {
        let md = t.md();
        let current = md.current_snapshot().map(|s| s.snapshot_id);
        let referenced: BTreeSet<i64> = md.refs.values().map(|r| r.snapshot_id).collect();
        expired = md
            .snapshots
            .iter()
            .filter(|s| s.timestamp_ms < cutoff)
            .filter(|s| Some(s.snapshot_id) != current && !referenced.contains(&s.snapshot_id))
            .map(|s| s.snapshot_id)
            .collect();
        if expired.is_empty() {
            break;
        }
        let change = Change {
            remove_snapshots: expired.clone(),
            ..Change::default()
        };
        match t.commit(&change).await? {
            Ok(loaded) => {
                t.files.table = loaded;
                break;
            }
            Err(Conflict) => t.reload().await?,
        }
    }
    // What the snapshots kept reference: their manifest lists, manifests and live data files.
    let mut keep = BTreeSet::new();
    for s in &t.md().snapshots {
        keep.insert(s.manifest_list.clone());
        let (live, manifests) = t.entries(s).await?;
        keep.extend(manifests.into_iter().map(|m| m.path));
        keep.extend(live.into_iter().map(|e| e.file.path));
    }
    let keep: BTreeSet<String> = keep
        .iter()
        .filter_map(|p| relative(url, p))
        .map(|p| p.to_string())
        .collect();
    // Every data and manifest file of the table that nothing kept references and that is older
    // than the retention: those of the expired snapshots, and orphans.
    let mut files = 0;
    for dir in ["data", "metadata"] {
        let listed: Vec<_> = t
            .store
            .list(Some(&Path::from(dir)))
            .try_collect()
            .await
            .map_err(|e| err(name, e))?;
        for m in listed {
            let p = m.location.to_string();
            let deletable = p.ends_with(".parquet") || p.ends_with(".avro");
            if !deletable || keep.contains(&p) || m.last_modified.timestamp_millis() >= cutoff {
                continue;
            }
            match t.store.delete(&m.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => files += 1,
                Err(e) => return Err(err(name, e)),
            }
        }
    }
    Ok(Vacuumed {
        snapshots: expired.len(),
        files,
    })
}
