//! The Iceberg sink against an independent reader: PyIceberg reads what it wrote (rows,
//! partitions, evolved schema, the offsets in the snapshot summary), and two writers of one
//! table keep each partition's offsets exactly once; each on the file catalog and on a real
//! Iceberg REST catalog (the Iceberg project's server, `scripts/iceberg-rest.sh`, its URL in
//! `RTLAKE_TEST_ICEBERG_REST`).

use arrow::array::{Date32Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use rtlake_core::schema::TableName;
use rtlake_lake::iceberg::IcebergSink;
use rtlake_lake::iceberg::sink::read_versions;
use rtlake_lake::{Error, Lake, LakeConfig};
use std::collections::BTreeMap;
use std::sync::Arc;

const T: TableName = TableName {
    namespace: "silver",
    name: "events",
};

fn schema(with_note: bool) -> SchemaRef {
    let mut f = vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("n", DataType::Int64, true),
        Field::new("date", DataType::Date32, false),
        Field::new("hour", DataType::Int32, false),
    ];
    if with_note {
        f.push(Field::new("note", DataType::Utf8, true));
    }
    Arc::new(Schema::new(f))
}

/// `rows` rows numbered from `first`, over two days and two hours.
fn batch(schema: &SchemaRef, first: i64, rows: i64) -> RecordBatch {
    let ids: Vec<String> = (first..first + rows).map(|i| format!("e{i}")).collect();
    let mut cols: Vec<arrow::array::ArrayRef> = vec![
        Arc::new(StringArray::from(ids)),
        Arc::new(Int64Array::from_iter((first..first + rows).map(Some))),
        Arc::new(Date32Array::from_iter_values(
            (first..first + rows).map(|i| 20_000 + (i % 2) as i32),
        )),
        Arc::new(Int32Array::from_iter_values(
            (first..first + rows).map(|i| 8 + (i % 3) as i32),
        )),
    ];
    if schema.fields().len() == 5 {
        cols.push(Arc::new(StringArray::from_iter(
            (first..first + rows).map(|i| Some(format!("n{i}"))),
        )));
    }
    RecordBatch::try_new(schema.clone(), cols).unwrap()
}

fn txn(p: i32, v: i64) -> BTreeMap<String, i64> {
    BTreeMap::from([(format!("pipe/silver.events/{p}"), v)])
}

/// Where the tables are registered.
#[derive(Clone, Copy, PartialEq)]
enum Cat {
    Files,
    Rest,
}

/// The REST catalog's URL, or `None` after recording the skip.
fn rest_url() -> Option<String> {
    match std::env::var("RTLAKE_TEST_ICEBERG_REST") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            rtlake_core::testing::skip_missing(
                "RTLAKE_TEST_ICEBERG_REST names no Iceberg REST catalog (scripts/iceberg-rest.sh start)",
            );
            None
        }
    }
}

/// A lake in `dir`; on a REST catalog its tables go in a namespace of their own (the catalog
/// outlives the test).
fn lake(dir: &std::path::Path, cat: Cat) -> Option<(Lake, LakeConfig)> {
    let mut cfg = LakeConfig {
        uri: dir.display().to_string(),
        ..Default::default()
    };
    if cat == Cat::Rest {
        cfg.catalog = rest_url()?;
        cfg.catalog_namespace = format!("t{}", uuid::Uuid::new_v4().simple());
    }
    Some((Lake::open(&cfg).unwrap(), cfg))
}

/// PyIceberg's view of the table: `rows sum(n) notes partitions offsets-of-p0` as JSON, read
/// from the newest metadata file (file catalog) or through the REST catalog.
fn pyiceberg(dir: &std::path::Path, cfg: &LakeConfig) -> Option<serde_json::Value> {
    let python = std::env::var("RTLAKE_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/.cache/rtlake/venv/bin/python",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let script = r#"
import json, sys
if sys.argv[1].startswith("http"):
    from pyiceberg.catalog import load_catalog
    t = load_catalog("rest", type="rest", uri=sys.argv[1]).load_table(sys.argv[2])
else:
    from pyiceberg.table import StaticTable
    t = StaticTable.from_metadata(sys.argv[1])
a = t.scan().to_arrow()
snap = t.current_snapshot()
print(json.dumps({
  "rows": a.num_rows,
  "sum": sum(x for x in a.column("n").to_pylist() if x is not None),
  "notes": sum(1 for x in a.column("note").to_pylist() if x is not None) if "note" in a.column_names else None,
  "partitions": sorted({(str(d), h) for d, h in zip(a.column("date").to_pylist(), a.column("hour").to_pylist())}),
  "offsets": json.loads(snap.summary.additional_properties["rtlake.offsets"]),
  "files": len(list(t.scan().plan_files())),
  "ids": [f.field_id for f in t.schema().fields],
}))
"#;
    let args = if cfg.catalog == "file" {
        let md = dir.join("silver/events/metadata");
        let newest = std::fs::read_dir(&md)
            .unwrap()
            .filter_map(|e| {
                let n = e.unwrap().file_name().into_string().unwrap();
                n.strip_prefix('v')?
                    .strip_suffix(".metadata.json")?
                    .parse::<u32>()
                    .ok()
            })
            .max()
            .unwrap();
        vec![
            md.join(format!("v{newest}.metadata.json"))
                .display()
                .to_string(),
        ]
    } else {
        vec![
            cfg.catalog.clone(),
            format!("{}.silver.events", cfg.catalog_namespace),
        ]
    };
    let out = match std::process::Command::new(&python)
        .args(["-c", script])
        .args(args)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            rtlake_core::testing::skip_missing(&format!("{python}: {e}"));
            return None;
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("No module named 'pyiceberg'") {
        rtlake_core::testing::skip_missing("pyiceberg is not installed (scripts/setup.sh)");
        return None;
    }
    assert!(out.status.success(), "pyiceberg failed: {stderr}");
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

#[tokio::test]
async fn pyiceberg_reads_what_the_sink_wrote_with_its_offsets() {
    reads_what_the_sink_wrote(Cat::Files).await;
}

#[tokio::test]
async fn pyiceberg_reads_through_the_rest_catalog_what_the_sink_wrote() {
    reads_what_the_sink_wrote(Cat::Rest).await;
}

async fn reads_what_the_sink_wrote(cat: Cat) {
    let dir = tempfile::tempdir().unwrap();
    let Some((lake, cfg)) = lake(dir.path(), cat) else {
        return;
    };
    let v1 = schema(false);
    let mut sink = IcebergSink::open(&lake, T, v1.clone(), &["date", "hour"])
        .await
        .unwrap();
    sink.commit(vec![batch(&v1, 0, 10)], &txn(0, 10))
        .await
        .unwrap();
    sink.commit(vec![batch(&v1, 10, 5)], &txn(0, 15))
        .await
        .unwrap();
    // An epoch without rows still moves the offsets.
    sink.commit(vec![], &txn(1, 7)).await.unwrap();
    // A new nullable column: a new schema, the next field id.
    let v2 = schema(true);
    let mut sink = IcebergSink::open(&lake, T, v2.clone(), &["date", "hour"])
        .await
        .unwrap();
    sink.refresh_versions(&["pipe/silver.events/0".into()])
        .await
        .unwrap();
    sink.commit(vec![batch(&v2, 15, 5)], &txn(0, 20))
        .await
        .unwrap();
    let got = read_versions(
        &lake,
        T,
        &[
            "pipe/silver.events/0".into(),
            "pipe/silver.events/1".into(),
            "x".into(),
        ],
    )
    .await
    .unwrap();
    assert_eq!(got["pipe/silver.events/0"], Some(20));
    assert_eq!(got["pipe/silver.events/1"], Some(7));
    assert_eq!(got["x"], None);

    let Some(py) = pyiceberg(dir.path(), &cfg) else {
        return;
    };
    assert_eq!(py["rows"], 20, "{py}");
    assert_eq!(py["sum"], (0..20).sum::<i64>(), "{py}");
    assert_eq!(py["notes"], 5, "{py}");
    assert_eq!(py["partitions"].as_array().unwrap().len(), 6, "{py}");
    assert_eq!(py["offsets"]["pipe/silver.events/0"], 20, "{py}");
    assert_eq!(py["offsets"]["pipe/silver.events/1"], 7, "{py}");
    assert_eq!(py["ids"], serde_json::json!([1, 2, 3, 4, 5]), "{py}");
}

#[tokio::test]
async fn a_second_writer_of_the_same_partition_is_refused_and_of_another_commits_on_top() {
    two_writers(Cat::Files).await;
}

#[tokio::test]
async fn two_writers_through_the_rest_catalog_keep_offsets_exact() {
    two_writers(Cat::Rest).await;
}

async fn two_writers(cat: Cat) {
    let dir = tempfile::tempdir().unwrap();
    let Some((lake, cfg)) = lake(dir.path(), cat) else {
        return;
    };
    let s = schema(false);
    let mut a = IcebergSink::open(&lake, T, s.clone(), &["date", "hour"])
        .await
        .unwrap();
    let mut b = IcebergSink::open(&lake, T, s.clone(), &["date", "hour"])
        .await
        .unwrap();
    a.commit(vec![batch(&s, 0, 4)], &txn(0, 4)).await.unwrap();
    // b never saw partition 0 move: its commit of the same offsets is refused, nothing lands.
    let e = b
        .commit(vec![batch(&s, 0, 4)], &txn(0, 4))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &e,
            Error::ConflictingOffsets {
                found: Some(4),
                expected: None,
                ..
            }
        ),
        "{e}"
    );
    // a and b commit different partitions at the same time, five times: whichever loses the
    // race to the next metadata version commits again on top of the winner.
    for i in 0..5i64 {
        let (ta, tb) = (txn(0, 6 + 2 * i), txn(1, 3 + 3 * i));
        let (ra, rb) = tokio::join!(
            a.commit(vec![batch(&s, 4 + 2 * i, 2)], &ta),
            b.commit(vec![batch(&s, 100 + 3 * i, 3)], &tb),
        );
        ra.unwrap();
        rb.unwrap();
    }
    let got = read_versions(
        &lake,
        T,
        &["pipe/silver.events/0".into(), "pipe/silver.events/1".into()],
    )
    .await
    .unwrap();
    assert_eq!(got["pipe/silver.events/0"], Some(14));
    assert_eq!(got["pipe/silver.events/1"], Some(15));
    if let Some(py) = pyiceberg(dir.path(), &cfg) {
        assert_eq!(py["rows"], 14 + 15, "{py}");
        assert_eq!(
            py["sum"],
            (0..14).sum::<i64>() + (100..115).sum::<i64>(),
            "{py}"
        );
    }
}

#[tokio::test]
async fn compaction_beside_a_writer_and_vacuum_keep_every_row_once() {
    maintenance(Cat::Files).await;
}

#[tokio::test]
async fn compaction_and_vacuum_through_the_rest_catalog_keep_every_row_once() {
    maintenance(Cat::Rest).await;
}

/// The `.parquet` files under the table's folder.
fn parquet_files(dir: &std::path::Path) -> usize {
    fn walk(d: &std::path::Path, n: &mut usize) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, n);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                *n += 1;
            }
        }
    }
    let mut n = 0;
    walk(&dir.join("silver/events/data"), &mut n);
    n
}

async fn maintenance(cat: Cat) {
    use rtlake_lake::iceberg::{maintain, read::TableFiles};
    let dir = tempfile::tempdir().unwrap();
    let Some((lake, cfg)) = lake(dir.path(), cat) else {
        return;
    };
    let s = schema(false);
    let mut sink = IcebergSink::open(&lake, T, s.clone(), &["date", "hour"])
        .await
        .unwrap();
    // Six epochs of 6 rows: each writes one small file in each of the 6 partitions.
    for i in 0..6 {
        sink.commit(vec![batch(&s, 6 * i, 6)], &txn(0, 6 * (i + 1)))
            .await
            .unwrap();
    }
    let url = lake.table_url(T);
    let live = async || {
        TableFiles::open(&lake, &url, "silver.events")
            .await
            .unwrap()
            .unwrap()
            .data_files(None)
            .await
            .unwrap()
    };
    assert_eq!(live().await.len(), 36);
    // A compaction and an epoch at once: whichever commits second does so on top of the other.
    // The scheduler picks the order: when the epoch commits before the compaction lists the
    // table, the compaction takes the epoch's 6 files in too; otherwise it rewrites the 36 it
    // listed and the epoch's files stay beside its output. Either way every row is there once.
    let epoch = txn(0, 42);
    let (c, w) = tokio::join!(
        maintain::compact(&lake, &url, "silver.events", 64 << 20),
        sink.commit(vec![batch(&s, 36, 6)], &epoch),
    );
    let c = c.unwrap();
    w.unwrap();
    let epoch_first = c.removed == 42;
    assert!(c.removed == 36 || epoch_first, "removed {}", c.removed);
    assert_eq!((c.added, c.partitions), (6, 6));
    let files = live().await;
    let left = if epoch_first { 6 } else { 6 + 6 };
    assert_eq!(
        files.len(),
        left,
        "6 compacted, and the epoch's 6 unless compacted too"
    );
    assert_eq!(files.iter().map(|f| f.record_count).sum::<i64>(), 42);
    let offsets = read_versions(&lake, T, &["pipe/silver.events/0".into()])
        .await
        .unwrap();
    assert_eq!(offsets["pipe/silver.events/0"], Some(42), "offsets carried");
    // A second compaction takes the epoch's files in too, if the first did not; nothing small
    // is left after it.
    if !epoch_first {
        let c = maintain::compact(&lake, &url, "silver.events", 64 << 20)
            .await
            .unwrap();
        assert_eq!((c.removed, c.added), (12, 6));
    }
    assert_eq!(
        maintain::compact(&lake, &url, "silver.events", 64 << 20)
            .await
            .unwrap()
            .added,
        0
    );
    // Every earlier snapshot's files are still there for time travel until the vacuum.
    let compactions = if epoch_first { 1 } else { 2 };
    assert_eq!(parquet_files(dir.path()), 36 + 6 + 6 * compactions);
    let v = maintain::vacuum(&lake, &url, "silver.events", std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        v.snapshots,
        6 + 1 + compactions - 1,
        "all but the current one"
    );
    assert_eq!(parquet_files(dir.path()), 6, "only the live files are left");
    sink.commit(vec![batch(&s, 42, 3)], &txn(0, 45))
        .await
        .unwrap();
    if let Some(py) = pyiceberg(dir.path(), &cfg) {
        assert_eq!(py["rows"], 45, "{py}");
        assert_eq!(py["sum"], (0..45).sum::<i64>(), "{py}");
        assert_eq!(py["offsets"]["pipe/silver.events/0"], 45, "{py}");
        assert_eq!(py["files"], 9, "{py}");
    }
}

#[tokio::test]
async fn one_lake_holds_both_formats_as_the_sinks_ask_and_a_table_keeps_its_own() {
    use rtlake_lake::TableFormat;
    use rtlake_lake::table::{TableSink, format_of};
    let dir = tempfile::tempdir().unwrap();
    let Some((lake, _)) = lake(dir.path(), Cat::Files) else {
        return;
    };
    let s = schema(false);
    const D: TableName = TableName {
        namespace: "silver",
        name: "in_delta",
    };
    // The lake's format is Delta; this sink asks for Iceberg.
    let mut ice = TableSink::open_as(&lake, T, s.clone(), &["date"], Some(TableFormat::Iceberg))
        .await
        .unwrap();
    ice.commit(vec![batch(&s, 0, 4)], &txn(0, 4)).await.unwrap();
    let mut delta = TableSink::open_as(&lake, D, s.clone(), &["date"], None)
        .await
        .unwrap();
    delta
        .commit(vec![batch(&s, 0, 3)], &txn(0, 3))
        .await
        .unwrap();
    assert_eq!(format_of(&lake, T).await.unwrap(), TableFormat::Iceberg);
    assert_eq!(format_of(&lake, D).await.unwrap(), TableFormat::Delta);
    assert!(dir.path().join("silver/events/metadata").exists());
    assert!(dir.path().join("silver/in_delta/_delta_log").exists());
    // Reopened without a format, each keeps its own; asked for the other, it is refused.
    let again = TableSink::open_as(&lake, T, s.clone(), &["date"], None)
        .await
        .unwrap();
    assert_eq!(again.format(), TableFormat::Iceberg);
    let e = TableSink::open_as(&lake, T, s.clone(), &["date"], Some(TableFormat::Delta))
        .await
        .err()
        .expect("a Delta sink on an Iceberg table is refused");
    let msg = e.to_string();
    assert!(
        msg.contains("silver.events") && msg.contains("iceberg table") && msg.contains("delta"),
        "{msg}"
    );
}
