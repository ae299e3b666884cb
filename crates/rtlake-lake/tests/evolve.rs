//! Schema evolution at the sink: an existing table takes new nullable columns, and refuses a
//! type change or a dropped column with a message naming the column.

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use rtlake_core::schema::TableName;
use rtlake_lake::Lake;
use rtlake_lake::LakeConfig;
use rtlake_lake::sink::DeltaSink;
use std::collections::BTreeMap;
use std::sync::Arc;

const T: TableName = TableName {
    namespace: "bronze",
    name: "events",
};

#[tokio::test]
async fn new_nullable_columns_are_added_and_type_changes_refused() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(&LakeConfig {
        uri: dir.path().display().to_string(),
        ..Default::default()
    })
    .unwrap();
    let v1 = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("n", DataType::Int64, false),
    ]));
    let mut sink = DeltaSink::open(&lake, T, v1.clone(), &[]).await.unwrap();
    let batch = RecordBatch::try_new(
        v1.clone(),
        vec![
            Arc::new(StringArray::from(vec!["a", "b"])),
            Arc::new(Int64Array::from(vec![1, 2])),
        ],
    )
    .unwrap();
    sink.commit(vec![batch], &BTreeMap::from([("p/t/0".to_string(), 2)]))
        .await
        .unwrap();

    // The events grew a field: the pipeline's rows a nullable column more.
    let mut fields = v1.fields().to_vec();
    fields.push(Arc::new(Field::new("extra", DataType::Utf8, true)));
    let v2 = Arc::new(Schema::new(fields));
    let mut sink = DeltaSink::open(&lake, T, v2.clone(), &[]).await.unwrap();
    let batch = RecordBatch::try_new(
        v2.clone(),
        vec![
            Arc::new(StringArray::from(vec!["c"])),
            Arc::new(Int64Array::from(vec![3])),
            Arc::new(StringArray::from(vec![Some(r#"{"bikeType":"e"}"#)])),
        ],
    )
    .unwrap();
    sink.refresh_versions(&["p/t/0".to_string()]).await.unwrap();
    sink.commit(vec![batch], &BTreeMap::from([("p/t/0".to_string(), 3)]))
        .await
        .unwrap();
    let session = rtlake_query_free_count(&lake).await;
    assert_eq!(session, (3, 1), "three rows, one with the new column set");

    // A type change is refused, naming the column.
    let changed = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("n", DataType::Utf8, false),
        Field::new("extra", DataType::Utf8, true),
    ]));
    let err = DeltaSink::open(&lake, T, changed, &[])
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("column n") && err.contains("type change is refused"),
        "{err}"
    );
    // So is a column the rows no longer have.
    let err = DeltaSink::open(&lake, T, v1, &[])
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("column extra") && err.contains("dropping a column"),
        "{err}"
    );
}

/// Rows and rows with `extra` set, read back with delta-rs and DataFusion.
async fn rtlake_query_free_count(lake: &Lake) -> (usize, usize) {
    use datafusion::prelude::SessionContext;
    let table = rtlake_lake::deltalake::DeltaTable::try_from_url_with_storage_options(
        lake.table_url(T),
        lake.storage_options().clone(),
    )
    .await
    .unwrap();
    let ctx = SessionContext::new();
    table.update_datafusion_session(&ctx.state()).unwrap();
    ctx.register_table("t", table.table_provider().await.unwrap())
        .unwrap();
    let b = ctx
        .sql("SELECT count(*), count(extra) FROM t")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let col = |i: usize| {
        b[0].column(i)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .value(0) as usize
    };
    (col(0), col(1))
}
