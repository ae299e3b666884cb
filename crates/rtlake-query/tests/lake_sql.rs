//! Views kept with the lake, time travel, and DDL for other engines, on a real Delta table
//! written by the pipeline's sink.

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use rtlake_core::schema::TableName;
use rtlake_lake::Lake;
use rtlake_lake::LakeConfig;
use rtlake_lake::sink::DeltaSink;
use rtlake_query::LakeSql;
use std::collections::BTreeMap;
use std::sync::Arc;

const TABLE: TableName = TableName {
    namespace: "gold",
    name: "counts",
};

/// A lake whose table `gold.counts` got three commits of 10 rows each (versions 1, 2, 3).
async fn lake() -> (tempfile::TempDir, Lake) {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(&LakeConfig {
        uri: dir.path().display().to_string(),
        ..Default::default()
    })
    .unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("shop", DataType::Utf8, false),
        Field::new("n", DataType::Int64, false),
    ]));
    let mut sink = DeltaSink::open(&lake, TABLE, schema.clone(), &[])
        .await
        .unwrap();
    for epoch in 0..3i64 {
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(
                    (0..10).map(|i| format!("SH-{i}")).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(vec![epoch; 10])),
            ],
        )
        .unwrap();
        let txns = BTreeMap::from([("t/gold.counts/0".to_string(), epoch + 1)]);
        sink.commit(vec![batch], &txns).await.unwrap();
    }
    (dir, lake)
}

async fn one(sql: &LakeSql, q: &str) -> String {
    let (schema, batches) = sql.query(q).await.unwrap_or_else(|e| panic!("{q}: {e}"));
    let mut out = Vec::new();
    rtlake_query::write(&mut out, &schema, &batches, rtlake_query::Format::Csv).unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn a_version_or_a_time_reads_the_table_as_it_was() {
    let (_dir, lake) = lake().await;
    let sql = LakeSql::open(&lake).await.unwrap();
    assert_eq!(one(&sql, "SELECT count(*) FROM gold.counts").await, "30");
    assert_eq!(
        one(
            &sql,
            "SELECT count(*), max(n) FROM gold.counts VERSION AS OF 1"
        )
        .await,
        "10,0"
    );
    assert_eq!(
        one(&sql, "select count(*) from gold.counts version as of 2").await,
        "20"
    );
    // Both sides of a join, each at its own version: what version 3 added.
    assert_eq!(
        one(
            &sql,
            "SELECT count(*) FROM gold.counts VERSION AS OF 3 AS a WHERE a.n NOT IN (SELECT n FROM gold.counts VERSION AS OF 2)"
        )
        .await,
        "10"
    );
    let later = one(
        &sql,
        "SELECT count(*) FROM gold.counts TIMESTAMP AS OF '2999-01-01 00:00:00'",
    )
    .await;
    assert_eq!(
        later, "30",
        "a time after the last commit reads the latest version"
    );
    let err = sql
        .query("SELECT * FROM gold.counts VERSION AS OF 99")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("gold.counts"),
        "a missing version names the table: {err}"
    );
    let err = sql
        .query("SELECT * FROM gold.counts TIMESTAMP AS OF 'yesterday'")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a time"), "{err}");
}

#[tokio::test]
async fn views_are_kept_with_the_lake() {
    let (_dir, lake) = lake().await;
    let sql = LakeSql::open(&lake).await.unwrap();
    let said = one(
        &sql,
        "CREATE VIEW gold.per_shop AS SELECT shop, sum(n) AS total FROM gold.counts GROUP BY shop",
    )
    .await;
    assert!(said.contains("created view gold.per_shop"), "{said}");
    assert_eq!(
        one(&sql, "SELECT total FROM gold.per_shop WHERE shop = 'SH-3'").await,
        "3"
    );
    // Another session (another process, `rtlake serve`) finds it in the lake.
    let again = LakeSql::open(&lake).await.unwrap();
    assert!(again.tables().iter().any(|t| t == "gold.per_shop"));
    assert_eq!(
        one(&again, "SELECT count(*) FROM gold.per_shop").await,
        "10"
    );
    let err = again
        .query("CREATE VIEW gold.per_shop AS SELECT 1")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("OR REPLACE"), "{err}");
    let err = again
        .query("CREATE VIEW gold.broken AS SELECT nope FROM gold.counts")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nope"),
        "a view that does not plan is refused: {err}"
    );
    one(&again, "DROP VIEW gold.per_shop").await;
    let third = LakeSql::open(&lake).await.unwrap();
    assert!(!third.tables().iter().any(|t| t == "gold.per_shop"));
    assert!(!third.tables().iter().any(|t| t == "gold.broken"));
}

#[tokio::test]
async fn ddl_registers_every_table_and_view_for_each_engine() {
    use rtlake_query::ddl::{Engine, statements};
    let (_dir, lake) = lake().await;
    let sql = LakeSql::open(&lake).await.unwrap();
    one(
        &sql,
        "CREATE VIEW gold.per_shop AS SELECT shop, sum(n) AS total FROM gold.counts GROUP BY shop",
    )
    .await;
    let loc = lake
        .table_url(TABLE)
        .as_str()
        .trim_end_matches('/')
        .to_string();
    let spark = statements(&lake, Engine::Spark, &[]).await.unwrap();
    assert!(
        spark.contains(&format!(
            "CREATE TABLE IF NOT EXISTS gold.counts USING DELTA LOCATION '{loc}';"
        )),
        "{spark}"
    );
    assert!(
        spark.contains("CREATE OR REPLACE VIEW gold.per_shop AS SELECT shop"),
        "{spark}"
    );
    let athena = statements(&lake, Engine::Athena, &[]).await.unwrap();
    assert!(
        athena.contains("CREATE EXTERNAL TABLE IF NOT EXISTS gold.counts LOCATION"),
        "{athena}"
    );
    assert!(athena.contains("'table_type' = 'DELTA'"), "{athena}");
    let trino = statements(&lake, Engine::Trino, &[]).await.unwrap();
    assert!(
        trino.contains(
            "CALL delta.system.register_table(schema_name => 'gold', table_name => 'counts'"
        ),
        "{trino}"
    );
    assert!(
        trino.contains("FROM delta.gold.counts"),
        "views name the catalog: {trino}"
    );
    let glue = statements(&lake, Engine::Glue, &[]).await.unwrap();
    let create = glue
        .lines()
        .find(|l| l.starts_with("aws glue create-table"))
        .expect("a create-table command");
    let input = create
        .split_once("--table-input '")
        .unwrap()
        .1
        .trim_end_matches('\'');
    let v: serde_json::Value = serde_json::from_str(input).expect("the table input is JSON");
    assert_eq!(v["Name"], "counts");
    assert_eq!(
        v["StorageDescriptor"]["Columns"],
        serde_json::json!([{"Name": "shop", "Type": "string"}, {"Name": "n", "Type": "bigint"}])
    );
}

#[tokio::test]
async fn a_view_file_that_is_not_a_read_only_query_is_never_run() {
    let (dir, lake) = lake().await;
    let views = dir.path().join("_views");
    std::fs::create_dir_all(&views).unwrap();
    // What someone who can write the bucket could plant: a table over a host file, a table made
    // by SELECT INTO, and one good view beside them.
    std::fs::write(
        views.join("gold.evil.sql"),
        "CREATE EXTERNAL TABLE pw (line VARCHAR) STORED AS CSV LOCATION '/etc/hostname'",
    )
    .unwrap();
    std::fs::write(
        views.join("gold.into.sql"),
        "SELECT * INTO stolen FROM gold.counts",
    )
    .unwrap();
    std::fs::write(
        views.join("gold.good.sql"),
        "SELECT count(*) AS n FROM gold.counts",
    )
    .unwrap();
    let sql = LakeSql::open(&lake).await.unwrap();
    assert!(
        sql.tables().iter().any(|t| t == "gold.good"),
        "{:?}",
        sql.tables()
    );
    assert_eq!(one(&sql, "SELECT n FROM gold.good").await, "30");
    for (planted, table) in [("gold.evil", "pw"), ("gold.into", "stolen")] {
        assert!(!sql.tables().iter().any(|t| t == planted));
        let err = sql
            .query(&format!("SELECT * FROM {table}"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("not found"), "{table} must not exist: {err}");
    }
    // Nor can one be made through CREATE VIEW.
    for body in [
        "CREATE EXTERNAL TABLE pw2 (line VARCHAR) STORED AS CSV LOCATION '/etc/hostname'",
        "SELECT * INTO stolen2 FROM gold.counts",
    ] {
        let err = sql
            .query(&format!("CREATE VIEW gold.bad AS {body}"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("read-only"), "{body}: {err}");
    }
    assert!(!views.join("gold.bad.sql").exists());
    assert!(sql.query("SELECT * FROM pw2").await.is_err());
    assert!(sql.query("SELECT * FROM stolen2").await.is_err());
}

#[tokio::test]
async fn a_bounded_runtime_answers_an_error_instead_of_growing() {
    let (_dir, lake) = lake().await;
    // A hash join's build side of 2 million rows needs tens of MB.
    let q = "SELECT count(*) FROM generate_series(1, 2000000) a JOIN generate_series(1, 2000000) b ON a.value = b.value";
    let small = rtlake_query::bounded_runtime(8 << 20).unwrap();
    let sql = LakeSql::open_in(&lake, small).await.unwrap();
    let err = sql.query(q).await.unwrap_err().to_string();
    assert!(err.contains("Resources exhausted"), "{err}");
    // The same query fits a sane bound, so the error above is the bound's.
    let big = rtlake_query::bounded_runtime(1 << 30).unwrap();
    let sql = LakeSql::open_in(&lake, big).await.unwrap();
    assert_eq!(one(&sql, q).await, "2000000");
}

/// An Iceberg table read at an earlier snapshot has the columns it had then; the current
/// snapshot has the column added since (null in the older rows).
#[tokio::test]
async fn an_iceberg_snapshot_reads_with_the_schema_it_was_written_with() {
    use rtlake_lake::iceberg::IcebergSink;
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(&LakeConfig {
        uri: dir.path().display().to_string(),
        ..Default::default()
    })
    .unwrap();
    let v1 = Arc::new(Schema::new(vec![
        Field::new("shop", DataType::Utf8, false),
        Field::new("n", DataType::Int64, false),
    ]));
    let mut sink = IcebergSink::open(&lake, TABLE, v1.clone(), &[])
        .await
        .unwrap();
    let rows = |schema: &Arc<Schema>, extra: bool| {
        let mut cols: Vec<arrow::array::ArrayRef> = vec![
            Arc::new(StringArray::from(vec!["SH-1", "SH-2"])),
            Arc::new(Int64Array::from(vec![1, 2])),
        ];
        if extra {
            cols.push(Arc::new(StringArray::from(vec!["a", "b"])));
        }
        RecordBatch::try_new(schema.clone(), cols).unwrap()
    };
    let txn = |v: i64| BTreeMap::from([("t/gold.counts/0".to_string(), v)]);
    sink.commit(vec![rows(&v1, false)], &txn(2)).await.unwrap();
    let first = sink.metadata().current_snapshot().unwrap().snapshot_id;
    let v2 = Arc::new(Schema::new(vec![
        Field::new("shop", DataType::Utf8, false),
        Field::new("n", DataType::Int64, false),
        Field::new("note", DataType::Utf8, true),
    ]));
    let mut sink = IcebergSink::open(&lake, TABLE, v2.clone(), &[])
        .await
        .unwrap();
    sink.refresh_versions(&["t/gold.counts/0".into()])
        .await
        .unwrap();
    sink.commit(vec![rows(&v2, true)], &txn(4)).await.unwrap();
    let sql = LakeSql::open(&lake).await.unwrap();
    assert_eq!(
        one(&sql, "SELECT count(*), count(note) FROM gold.counts").await,
        "4,2"
    );
    let (schema, _) = sql
        .query(&format!("SELECT * FROM gold.counts VERSION AS OF {first}"))
        .await
        .unwrap();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["shop", "n"], "the columns of the first snapshot");
    assert_eq!(
        one(
            &sql,
            &format!("SELECT count(*), sum(n) FROM gold.counts VERSION AS OF {first}")
        )
        .await,
        "2,3"
    );
}
