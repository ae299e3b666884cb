//! Iceberg table metadata (format v2): the JSON file a catalog points at, and the changes a
//! commit makes to it.
//!
//! Only what rtlake reads or changes is modelled; every other key (statistics, other writers'
//! extensions) is kept as it was found, so a commit never drops what another tool wrote.

use super::schema::{PartitionSpec, Schema};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The snapshot summary key holding the pipeline's offsets: a JSON object of txn app id
/// (`<pipeline>/<sink>/<partition>`) to the next offset to read, carried from each snapshot to
/// the next so that the current snapshot alone answers (expired snapshots take nothing with
/// them).
pub const OFFSETS_KEY: &str = "rtlake.offsets";

/// A table's metadata file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct TableMetadata {
    /// 2.
    pub format_version: i32,
    /// The table's identity: a commit checks it did not change under it.
    pub table_uuid: String,
    /// Where the table's files live.
    pub location: String,
    /// The sequence number of the newest snapshot.
    pub last_sequence_number: i64,
    /// When the metadata last changed.
    pub last_updated_ms: i64,
    /// The largest field id ever given.
    pub last_column_id: i32,
    /// Every schema the table had.
    pub schemas: Vec<Schema>,
    /// The one rows are written with.
    pub current_schema_id: i32,
    /// Every partition spec.
    pub partition_specs: Vec<PartitionSpec>,
    /// The one new files use.
    pub default_spec_id: i32,
    /// The largest partition field id ever given.
    pub last_partition_id: i32,
    /// Table properties.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// The snapshot readers see (absent or -1: the table is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_snapshot_id: Option<i64>,
    /// The snapshots kept.
    #[serde(default)]
    pub snapshots: Vec<Snapshot>,
    /// Which snapshot was current when.
    #[serde(default)]
    pub snapshot_log: Vec<SnapshotLogEntry>,
    /// The earlier metadata files.
    #[serde(default)]
    pub metadata_log: Vec<MetadataLogEntry>,
    /// Sort orders (rtlake writes the unsorted one).
    #[serde(default = "unsorted")]
    pub sort_orders: Vec<serde_json::Value>,
    /// The sort order of new files.
    #[serde(default)]
    pub default_sort_order_id: i32,
    /// Branches and tags; `main` is the table's current state.
    #[serde(default)]
    pub refs: BTreeMap<String, SnapshotRef>,
    /// Everything else, kept as found.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

fn unsorted() -> Vec<serde_json::Value> {
    vec![serde_json::json!({"order-id": 0, "fields": []})]
}

/// One snapshot: the table's files at one commit, listed by a manifest list.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Snapshot {
    /// Its id.
    pub snapshot_id: i64,
    /// The snapshot it was made on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_snapshot_id: Option<i64>,
    /// Its sequence number.
    pub sequence_number: i64,
    /// When it was committed.
    pub timestamp_ms: i64,
    /// The Avro file listing its manifests.
    pub manifest_list: String,
    /// `operation` (append, replace, ...) and counts; rtlake's offsets under [`OFFSETS_KEY`].
    #[serde(default)]
    pub summary: BTreeMap<String, String>,
    /// The schema its rows were written with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_id: Option<i32>,
}

impl Snapshot {
    /// The offsets this snapshot carries (app id → next offset).
    pub fn offsets(&self) -> BTreeMap<String, i64> {
        self.summary
            .get(OFFSETS_KEY)
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default()
    }
}

/// A `snapshot-log` entry.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct SnapshotLogEntry {
    /// The snapshot.
    pub snapshot_id: i64,
    /// When it became current.
    pub timestamp_ms: i64,
}

/// A `metadata-log` entry.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct MetadataLogEntry {
    /// The earlier metadata file.
    pub metadata_file: String,
    /// When it was replaced.
    pub timestamp_ms: i64,
}

/// A branch or tag.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct SnapshotRef {
    /// The snapshot it points at.
    pub snapshot_id: i64,
    /// `branch` or `tag`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Other settings, kept.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// What one commit changes: the catalog applies it to the metadata it holds, provided the
/// table's `main` branch is still at the snapshot the change was made on.
#[derive(Clone, Debug, Default)]
pub struct Change {
    /// A new schema that becomes current (schema evolution).
    pub schema: Option<Schema>,
    /// A new snapshot that becomes `main`.
    pub snapshot: Option<Snapshot>,
    /// Snapshots to drop from the metadata (expiry).
    pub remove_snapshots: Vec<i64>,
}

impl Change {
    /// The change that makes snapshot `snapshot_id` (on `parent`, sequence number `seq`, its
    /// files listed by `manifest_list`) current, with `summary` and the delete-file totals of a
    /// table without delete files.
    pub fn snapshot(
        md: &TableMetadata,
        parent: Option<i64>,
        snapshot_id: i64,
        seq: i64,
        manifest_list: String,
        mut summary: BTreeMap<String, String>,
    ) -> Self {
        for k in [
            "total-delete-files",
            "total-position-deletes",
            "total-equality-deletes",
        ] {
            summary.insert(k.into(), "0".into());
        }
        Self {
            snapshot: Some(Snapshot {
                snapshot_id,
                parent_snapshot_id: parent,
                sequence_number: seq,
                timestamp_ms: now_ms(),
                manifest_list,
                summary,
                schema_id: Some(md.current_schema_id),
            }),
            ..Self::default()
        }
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl TableMetadata {
    /// A new, empty table at `location`.
    pub fn new(location: &str, schema: Schema, spec: PartitionSpec) -> Self {
        let last_partition_id = spec
            .fields
            .iter()
            .map(|f| f.field_id)
            .max()
            .unwrap_or(super::schema::FIRST_PARTITION_FIELD_ID - 1);
        let mut properties = BTreeMap::new();
        properties.insert("write.format.default".into(), "parquet".into());
        properties.insert("created-by".into(), "rtlake".into());
        Self {
            format_version: 2,
            table_uuid: uuid::Uuid::new_v4().to_string(),
            location: location.trim_end_matches('/').to_string(),
            last_sequence_number: 0,
            last_updated_ms: now_ms(),
            last_column_id: schema.max_id(),
            current_schema_id: schema.schema_id,
            schemas: vec![schema],
            default_spec_id: spec.spec_id,
            partition_specs: vec![spec],
            last_partition_id,
            properties,
            current_snapshot_id: None,
            snapshots: Vec::new(),
            snapshot_log: Vec::new(),
            metadata_log: Vec::new(),
            sort_orders: unsorted(),
            default_sort_order_id: 0,
            refs: BTreeMap::new(),
            other: serde_json::Map::new(),
        }
    }

    /// The schema rows are written with.
    pub fn current_schema(&self) -> Option<&Schema> {
        self.schemas
            .iter()
            .find(|s| s.schema_id == self.current_schema_id)
    }

    /// The spec new files are written with.
    pub fn default_spec(&self) -> Option<&PartitionSpec> {
        self.partition_specs
            .iter()
            .find(|s| s.spec_id == self.default_spec_id)
    }

    /// The snapshot of `main` (`None`: the table has no rows yet).
    pub fn current_snapshot(&self) -> Option<&Snapshot> {
        let id = self
            .refs
            .get("main")
            .map(|r| r.snapshot_id)
            .or(self.current_snapshot_id)
            .filter(|id| *id != -1)?;
        self.snapshots.iter().find(|s| s.snapshot_id == id)
    }

    /// The snapshot with id `id`.
    pub fn snapshot(&self, id: i64) -> Option<&Snapshot> {
        self.snapshots.iter().find(|s| s.snapshot_id == id)
    }

    /// The current snapshot's offsets (none if the table has no snapshot).
    pub fn offsets(&self) -> BTreeMap<String, i64> {
        self.current_snapshot()
            .map(Snapshot::offsets)
            .unwrap_or_default()
    }

    /// This metadata with `change` applied (what a file catalog writes as the next version,
    /// and what a REST catalog does on its side); `previous` is the file it replaces.
    pub fn apply(&self, change: &Change, previous: Option<&str>) -> Self {
        let mut next = self.clone();
        let now = now_ms();
        next.last_updated_ms = now;
        if let Some(p) = previous {
            next.metadata_log.push(MetadataLogEntry {
                metadata_file: p.to_string(),
                timestamp_ms: self.last_updated_ms,
            });
            // Keep the log short, as the Java library does by default (100).
            let excess = next.metadata_log.len().saturating_sub(100);
            next.metadata_log.drain(..excess);
        }
        if let Some(s) = &change.schema {
            next.last_column_id = next.last_column_id.max(s.max_id());
            next.current_schema_id = s.schema_id;
            next.schemas.push(s.clone());
        }
        if let Some(s) = &change.snapshot {
            next.last_sequence_number = s.sequence_number;
            next.current_snapshot_id = Some(s.snapshot_id);
            next.snapshots.push(s.clone());
            next.snapshot_log.push(SnapshotLogEntry {
                snapshot_id: s.snapshot_id,
                timestamp_ms: s.timestamp_ms,
            });
            next.refs.insert(
                "main".into(),
                SnapshotRef {
                    snapshot_id: s.snapshot_id,
                    kind: "branch".into(),
                    other: serde_json::Map::new(),
                },
            );
        }
        if !change.remove_snapshots.is_empty() {
            next.snapshots
                .retain(|s| !change.remove_snapshots.contains(&s.snapshot_id));
            next.snapshot_log
                .retain(|s| !change.remove_snapshots.contains(&s.snapshot_id));
        }
        next
    }
}
