//! The Iceberg sink against an independent reader: PyIceberg reads what it wrote (rows,
//! partitions, evolved schema, the offsets in the snapshot summary), and two writers of one
//! table keep each partition's offsets exactly once.

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

fn lake(dir: &std::path::Path) -> Lake {
    Lake::open(&LakeConfig {
        uri: dir.display().to_string(),
        ..Default::default()
    })
    .unwrap()
}

/// PyIceberg's view of the table: `rows sum(n) notes partitions offsets-of-p0` as JSON.
fn pyiceberg(dir: &std::path::Path) -> Option<serde_json::Value> {
    let python = std::env::var("RTLAKE_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/.cache/rtlake/venv/bin/python",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let script = r#"
import json, sys
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
    let out = match std::process::Command::new(&python)
        .args(["-c", script])
        .arg(md.join(format!("v{newest}.metadata.json")))
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
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(dir.path());
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

    let Some(py) = pyiceberg(dir.path()) else {
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
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(dir.path());
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
    if let Some(py) = pyiceberg(dir.path()) {
        assert_eq!(py["rows"], 14 + 15, "{py}");
        assert_eq!(
            py["sum"],
            (0..14).sum::<i64>() + (100..115).sum::<i64>(),
            "{py}"
        );
    }
}
