//! `_rejected`'s retention: partitions older than the retention are deleted whole, newer ones
//! stay, on a real partitioned Delta table.

use arrow::array::{Date32Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use rtlake_core::schema::TableName;
use rtlake_lake::Lake;
use rtlake_lake::LakeConfig;
use rtlake_lake::catalog::CatalogEntry;
use rtlake_lake::maintenance;
use rtlake_lake::sink::DeltaSink;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const TABLE: TableName = TableName {
    namespace: "",
    name: "_rejected",
};

#[tokio::test]
async fn partitions_past_the_retention_are_deleted_and_the_rest_stay() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(&LakeConfig {
        uri: dir.path().display().to_string(),
        ..Default::default()
    })
    .unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("n", DataType::Int64, false),
        Field::new("date", DataType::Date32, false),
    ]));
    let mut sink = DeltaSink::open(&lake, TABLE, schema.clone(), &["date"])
        .await
        .unwrap();
    let today =
        rtlake_core::time::partition(&chrono::Utc::now(), LakeConfig::default().time_zone).0;
    let days = |d: chrono::NaiveDate| rtlake_core::time::date32(d);
    let old = today - chrono::Duration::days(40);
    let recent = today - chrono::Duration::days(5);
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5])),
            Arc::new(Date32Array::from(vec![
                days(old),
                days(old),
                days(recent),
                days(today),
                days(today),
            ])),
        ],
    )
    .unwrap();
    sink.commit(
        vec![batch],
        &BTreeMap::from([("t/_rejected/0".to_string(), 1)]),
    )
    .await
    .unwrap();
    let entry = CatalogEntry {
        namespace: String::new(),
        name: "_rejected".into(),
        url: lake.table_url(TABLE),
        format: rtlake_lake::TableFormat::Delta,
    };
    let removed = maintenance::expire_partitions(&lake, &entry, Duration::from_secs(30 * 86400))
        .await
        .unwrap();
    assert_eq!(removed, Some(1), "the old day's file");
    let health = maintenance::health(&lake, &entry).await.unwrap();
    assert_eq!(health.rows, 3, "the recent days stay");
    // Nothing else is past the retention.
    let again = maintenance::expire_partitions(&lake, &entry, Duration::from_secs(30 * 86400))
        .await
        .unwrap();
    assert_eq!(again, Some(0));
}
