//! Manifests and manifest lists: the Avro files that list a snapshot's data files.
//!
//! A snapshot names one manifest list; each of its entries names a manifest; each manifest
//! lists data files with their partition values and counts. The Avro schemas carry the spec's
//! field ids (`field-id`), which is how Java, PyIceberg and Trino resolve them.

use super::schema::{PartitionSpec, Schema};
use apache_avro::types::Value;
use apache_avro::{Codec, DeflateSettings, Reader, Writer};
use std::collections::BTreeMap;

/// A manifest entry's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// A file that was in the table before this manifest's snapshot.
    Existing = 0,
    /// A file this manifest's snapshot added.
    Added = 1,
    /// A file this manifest's snapshot removed.
    Deleted = 2,
}

/// One partition value of a data file (identity partitions of the types rtlake writes).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PartitionValue {
    /// An `int` partition (`hour`).
    Int(i32),
    /// A `date` partition (days since 1970-01-01).
    Date(i32),
    /// A `long` partition.
    Long(i64),
    /// A `string` partition.
    String(String),
}

impl PartitionValue {
    /// The single-value serialization the spec uses for bounds.
    fn bound(&self) -> Vec<u8> {
        match self {
            Self::Int(v) | Self::Date(v) => v.to_le_bytes().to_vec(),
            Self::Long(v) => v.to_le_bytes().to_vec(),
            Self::String(s) => s.as_bytes().to_vec(),
        }
    }

    fn avro(&self) -> Value {
        match self {
            Self::Int(v) => Value::Int(*v),
            Self::Date(v) => Value::Date(*v),
            Self::Long(v) => Value::Long(*v),
            Self::String(s) => Value::String(s.clone()),
        }
    }

    /// The value as a path segment (`date=2025-01-01`).
    pub fn path_segment(&self) -> String {
        match self {
            Self::Date(d) => chrono::DateTime::from_timestamp(i64::from(*d) * 86_400, 0)
                .map(|t| t.date_naive().to_string())
                .unwrap_or_else(|| d.to_string()),
            Self::Int(v) => v.to_string(),
            Self::Long(v) => v.to_string(),
            Self::String(s) => s.replace(['/', '='], "_"),
        }
    }
}

/// A data file of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct DataFile {
    /// Its full location (`file:///...`, `s3://...`).
    pub path: String,
    /// Its partition values, one per field of the spec it was written with (`None`: null).
    pub partition: Vec<Option<PartitionValue>>,
    /// How many rows it holds.
    pub record_count: i64,
    /// Its size.
    pub file_size: i64,
}

/// One entry of a manifest.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Added, existing or deleted.
    pub status: Status,
    /// The snapshot that added (or deleted) the file.
    pub snapshot_id: i64,
    /// The file's data sequence number (`None`: inherited from the manifest, for added files).
    pub sequence_number: Option<i64>,
    /// The file.
    pub file: DataFile,
}

/// An entry of a manifest list: one manifest and its counts.
#[derive(Clone, Debug, PartialEq)]
pub struct ManifestFile {
    /// The manifest's location.
    pub path: String,
    /// Its size.
    pub length: i64,
    /// The spec its files were written with.
    pub spec_id: i32,
    /// The sequence number of the snapshot that wrote it.
    pub sequence_number: i64,
    /// The smallest data sequence number of its files.
    pub min_sequence_number: i64,
    /// The snapshot that wrote it.
    pub added_snapshot_id: i64,
    /// Files added, existing and deleted.
    pub files: [i32; 3],
    /// Rows of the files added, existing and deleted.
    pub rows: [i64; 3],
    /// Per partition field: (contains null, lower bound, upper bound).
    pub partitions: Vec<(bool, Option<Vec<u8>>, Option<Vec<u8>>)>,
}

fn avro_type(t: &serde_json::Value) -> &'static str {
    match t.as_str() {
        Some("date") => r#"{"type": "int", "logicalType": "date"}"#,
        Some("int") => r#""int""#,
        Some("long") => r#""long""#,
        _ => r#""string""#,
    }
}

fn entry_schema(table: &Schema, spec: &PartitionSpec) -> apache_avro::Schema {
    let parts: Vec<String> = spec
        .fields
        .iter()
        .map(|p| {
            let t = table
                .fields
                .iter()
                .find(|f| f.id == p.source_id)
                .map_or(r#""string""#, |f| avro_type(&f.field_type));
            format!(
                r#"{{"name": "{}", "field-id": {}, "type": ["null", {t}], "default": null}}"#,
                p.name, p.field_id
            )
        })
        .collect();
    let text = format!(
        r#"{{"type": "record", "name": "manifest_entry", "fields": [
  {{"name": "status", "field-id": 0, "type": "int"}},
  {{"name": "snapshot_id", "field-id": 1, "type": ["null", "long"], "default": null}},
  {{"name": "sequence_number", "field-id": 3, "type": ["null", "long"], "default": null}},
  {{"name": "file_sequence_number", "field-id": 4, "type": ["null", "long"], "default": null}},
  {{"name": "data_file", "field-id": 2, "type": {{"type": "record", "name": "r2", "fields": [
    {{"name": "content", "field-id": 134, "type": "int"}},
    {{"name": "file_path", "field-id": 100, "type": "string"}},
    {{"name": "file_format", "field-id": 101, "type": "string"}},
    {{"name": "partition", "field-id": 102, "type": {{"type": "record", "name": "r102", "fields": [{}]}}}},
    {{"name": "record_count", "field-id": 103, "type": "long"}},
    {{"name": "file_size_in_bytes", "field-id": 104, "type": "long"}}
  ]}}}}
]}}"#,
        parts.join(", ")
    );
    apache_avro::Schema::parse_str(&text).expect("the manifest entry schema parses")
}

fn list_schema() -> apache_avro::Schema {
    apache_avro::Schema::parse_str(
        r#"{"type": "record", "name": "manifest_file", "fields": [
  {"name": "manifest_path", "field-id": 500, "type": "string"},
  {"name": "manifest_length", "field-id": 501, "type": "long"},
  {"name": "partition_spec_id", "field-id": 502, "type": "int"},
  {"name": "content", "field-id": 517, "type": "int"},
  {"name": "sequence_number", "field-id": 515, "type": "long"},
  {"name": "min_sequence_number", "field-id": 516, "type": "long"},
  {"name": "added_snapshot_id", "field-id": 503, "type": "long"},
  {"name": "added_files_count", "field-id": 504, "type": "int"},
  {"name": "existing_files_count", "field-id": 505, "type": "int"},
  {"name": "deleted_files_count", "field-id": 506, "type": "int"},
  {"name": "added_rows_count", "field-id": 512, "type": "long"},
  {"name": "existing_rows_count", "field-id": 513, "type": "long"},
  {"name": "deleted_rows_count", "field-id": 514, "type": "long"},
  {"name": "partitions", "field-id": 507, "default": null, "type": ["null", {"type": "array", "element-id": 508, "items": {"type": "record", "name": "r508", "fields": [
    {"name": "contains_null", "field-id": 509, "type": "boolean"},
    {"name": "contains_nan", "field-id": 518, "type": ["null", "boolean"], "default": null},
    {"name": "lower_bound", "field-id": 510, "type": ["null", "bytes"], "default": null},
    {"name": "upper_bound", "field-id": 511, "type": ["null", "bytes"], "default": null}
  ]}}]},
  {"name": "key_metadata", "field-id": 519, "type": ["null", "bytes"], "default": null}
]}"#,
    )
    .expect("the manifest list schema parses")
}

fn opt(v: Option<Value>) -> Value {
    match v {
        Some(v) => Value::Union(1, Box::new(v)),
        None => Value::Union(0, Box::new(Value::Null)),
    }
}

fn codec() -> Codec {
    Codec::Deflate(DeflateSettings::default())
}

/// Writes a manifest of `entries` (written with `spec` of `table`); returns its bytes and its
/// manifest-list entry (path still to be set by the caller, with `length` the bytes' length).
pub fn write_manifest(
    table: &Schema,
    spec: &PartitionSpec,
    snapshot_id: i64,
    sequence_number: i64,
    entries: &[Entry],
) -> Result<(Vec<u8>, ManifestFile), apache_avro::Error> {
    let schema = entry_schema(table, spec);
    let mut w = Writer::with_codec(&schema, Vec::new(), codec());
    w.add_user_metadata(
        "schema".into(),
        serde_json::to_string(table).expect("a schema serializes"),
    )?;
    w.add_user_metadata("schema-id".into(), table.schema_id.to_string())?;
    w.add_user_metadata(
        "partition-spec".into(),
        serde_json::to_string(&spec.fields).expect("a spec serializes"),
    )?;
    w.add_user_metadata("partition-spec-id".into(), spec.spec_id.to_string())?;
    w.add_user_metadata("format-version".into(), "2")?;
    w.add_user_metadata("content".into(), "data")?;
    let mut files = [0i32; 3];
    let mut rows = [0i64; 3];
    let mut min_seq = sequence_number;
    let mut bounds: Vec<(bool, Option<PartitionValue>, Option<PartitionValue>)> =
        vec![(false, None, None); spec.fields.len()];
    for e in entries {
        files[e.status as usize] += 1;
        rows[e.status as usize] += e.file.record_count;
        min_seq = min_seq.min(e.sequence_number.unwrap_or(sequence_number));
        for (b, v) in bounds.iter_mut().zip(&e.file.partition) {
            match v {
                None => b.0 = true,
                Some(v) => {
                    if b.1.as_ref().is_none_or(|lo| v < lo) {
                        b.1 = Some(v.clone());
                    }
                    if b.2.as_ref().is_none_or(|hi| v > hi) {
                        b.2 = Some(v.clone());
                    }
                }
            }
        }
        let partition = Value::Record(
            spec.fields
                .iter()
                .zip(&e.file.partition)
                .map(|(f, v)| (f.name.clone(), opt(v.as_ref().map(PartitionValue::avro))))
                .collect(),
        );
        w.append(Value::Record(vec![
            ("status".into(), Value::Int(e.status as i32)),
            ("snapshot_id".into(), opt(Some(Value::Long(e.snapshot_id)))),
            (
                "sequence_number".into(),
                opt(e.sequence_number.map(Value::Long)),
            ),
            (
                "file_sequence_number".into(),
                opt(e.sequence_number.map(Value::Long)),
            ),
            (
                "data_file".into(),
                Value::Record(vec![
                    ("content".into(), Value::Int(0)),
                    ("file_path".into(), Value::String(e.file.path.clone())),
                    ("file_format".into(), Value::String("PARQUET".into())),
                    ("partition".into(), partition),
                    ("record_count".into(), Value::Long(e.file.record_count)),
                    ("file_size_in_bytes".into(), Value::Long(e.file.file_size)),
                ]),
            ),
        ]))?;
    }
    let bytes = w.into_inner()?;
    let manifest = ManifestFile {
        path: String::new(),
        length: bytes.len() as i64,
        spec_id: spec.spec_id,
        sequence_number,
        min_sequence_number: min_seq,
        added_snapshot_id: snapshot_id,
        files,
        rows,
        partitions: bounds
            .into_iter()
            .map(|(n, lo, hi)| (n, lo.map(|v| v.bound()), hi.map(|v| v.bound())))
            .collect(),
    };
    Ok((bytes, manifest))
}

/// Writes a manifest list.
pub fn write_manifest_list(
    snapshot_id: i64,
    parent: Option<i64>,
    sequence_number: i64,
    manifests: &[ManifestFile],
) -> Result<Vec<u8>, apache_avro::Error> {
    let schema = list_schema();
    let mut w = Writer::with_codec(&schema, Vec::new(), codec());
    w.add_user_metadata("snapshot-id".into(), snapshot_id.to_string())?;
    w.add_user_metadata(
        "parent-snapshot-id".into(),
        parent.map_or_else(|| "null".to_string(), |p| p.to_string()),
    )?;
    w.add_user_metadata("sequence-number".into(), sequence_number.to_string())?;
    w.add_user_metadata("format-version".into(), "2")?;
    for m in manifests {
        let bytes = |b: &Option<Vec<u8>>| opt(b.clone().map(Value::Bytes));
        let partitions = Value::Array(
            m.partitions
                .iter()
                .map(|(n, lo, hi)| {
                    Value::Record(vec![
                        ("contains_null".into(), Value::Boolean(*n)),
                        ("contains_nan".into(), opt(Some(Value::Boolean(false)))),
                        ("lower_bound".into(), bytes(lo)),
                        ("upper_bound".into(), bytes(hi)),
                    ])
                })
                .collect(),
        );
        w.append(Value::Record(vec![
            ("manifest_path".into(), Value::String(m.path.clone())),
            ("manifest_length".into(), Value::Long(m.length)),
            ("partition_spec_id".into(), Value::Int(m.spec_id)),
            ("content".into(), Value::Int(0)),
            ("sequence_number".into(), Value::Long(m.sequence_number)),
            (
                "min_sequence_number".into(),
                Value::Long(m.min_sequence_number),
            ),
            ("added_snapshot_id".into(), Value::Long(m.added_snapshot_id)),
            ("added_files_count".into(), Value::Int(m.files[1])),
            ("existing_files_count".into(), Value::Int(m.files[0])),
            ("deleted_files_count".into(), Value::Int(m.files[2])),
            ("added_rows_count".into(), Value::Long(m.rows[1])),
            ("existing_rows_count".into(), Value::Long(m.rows[0])),
            ("deleted_rows_count".into(), Value::Long(m.rows[2])),
            ("partitions".into(), opt(Some(partitions))),
            ("key_metadata".into(), opt(None)),
        ]))?;
    }
    w.into_inner()
}

/// A record's fields by name (nulls and unions unwrapped).
fn fields(v: Value) -> BTreeMap<String, Value> {
    match v {
        Value::Record(f) => f.into_iter().map(|(k, v)| (k, unwrap(v))).collect(),
        _ => BTreeMap::new(),
    }
}

fn unwrap(v: Value) -> Value {
    match v {
        Value::Union(_, v) => *v,
        v => v,
    }
}

fn long(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Long(l) => Some(*l),
        Value::Int(i) => Some(i64::from(*i)),
        _ => None,
    }
}

fn bad(what: &str) -> apache_avro::Error {
    apache_avro::error::Details::DeserializeValue(format!("a manifest without {what}")).into()
}

/// Reads a manifest list (any writer's: fields are found by name).
pub fn read_manifest_list(bytes: &[u8]) -> Result<Vec<ManifestFile>, apache_avro::Error> {
    let mut out = Vec::new();
    for v in Reader::new(bytes)? {
        let f = fields(v?);
        let int = |k: &str| long(f.get(k)).unwrap_or(0) as i32;
        let partitions = match f.get("partitions") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|p| {
                    let p = fields(p.clone());
                    let b = |k: &str| match p.get(k) {
                        Some(Value::Bytes(b)) => Some(b.clone()),
                        _ => None,
                    };
                    (
                        matches!(p.get("contains_null"), Some(Value::Boolean(true))),
                        b("lower_bound"),
                        b("upper_bound"),
                    )
                })
                .collect(),
            _ => Vec::new(),
        };
        out.push(ManifestFile {
            path: match f.get("manifest_path") {
                Some(Value::String(s)) => s.clone(),
                _ => return Err(bad("manifest_path")),
            },
            length: long(f.get("manifest_length")).unwrap_or(0),
            spec_id: int("partition_spec_id"),
            sequence_number: long(f.get("sequence_number")).unwrap_or(0),
            min_sequence_number: long(f.get("min_sequence_number")).unwrap_or(0),
            added_snapshot_id: long(f.get("added_snapshot_id")).unwrap_or(0),
            files: [
                int("existing_files_count"),
                int("added_files_count"),
                int("deleted_files_count"),
            ],
            rows: [
                long(f.get("existing_rows_count")).unwrap_or(0),
                long(f.get("added_rows_count")).unwrap_or(0),
                long(f.get("deleted_rows_count")).unwrap_or(0),
            ],
            partitions,
        });
    }
    Ok(out)
}

/// Reads a manifest's entries; an added entry's missing sequence number is inherited from
/// `manifest` (the spec's rule).
pub fn read_manifest(
    bytes: &[u8],
    manifest: &ManifestFile,
) -> Result<Vec<Entry>, apache_avro::Error> {
    let mut out = Vec::new();
    for v in Reader::new(bytes)? {
        let f = fields(v?);
        let status = match long(f.get("status")) {
            Some(0) => Status::Existing,
            Some(1) => Status::Added,
            Some(2) => Status::Deleted,
            _ => return Err(bad("a status")),
        };
        let file = fields(
            f.get("data_file")
                .cloned()
                .ok_or_else(|| bad("data_file"))?,
        );
        if long(file.get("content")).unwrap_or(0) != 0 {
            // Delete files: rtlake's tables have none (an appended table); see the docs.
            return Err(bad("row-level deletes (a delete file)"));
        }
        let partition = match file.get("partition") {
            Some(Value::Record(p)) => p
                .iter()
                .map(|(_, v)| match unwrap(v.clone()) {
                    Value::Int(i) => Some(PartitionValue::Int(i)),
                    Value::Date(d) => Some(PartitionValue::Date(d)),
                    Value::Long(l) => Some(PartitionValue::Long(l)),
                    Value::String(s) => Some(PartitionValue::String(s)),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let sequence_number = long(f.get("sequence_number"))
            .or((status == Status::Added).then_some(manifest.sequence_number));
        out.push(Entry {
            status,
            snapshot_id: long(f.get("snapshot_id")).unwrap_or(manifest.added_snapshot_id),
            sequence_number,
            file: DataFile {
                path: match file.get("file_path") {
                    Some(Value::String(s)) => s.clone(),
                    _ => return Err(bad("file_path")),
                },
                partition,
                record_count: long(file.get("record_count")).unwrap_or(0),
                file_size: long(file.get("file_size_in_bytes")).unwrap_or(0),
            },
        });
    }
    Ok(out)
}
