//! The Delta sink's unit tests: creating a table in a race, the version check, the appends' checkpoint.

use super::*;
use arrow::datatypes::{Field, Schema};
use std::sync::Arc;

/// An empty lake in a temporary folder, and a one-column table `bronze.t` to write in it.
fn new_lake() -> (tempfile::TempDir, Lake, TableName, SchemaRef) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::LakeConfig {
        uri: dir.path().display().to_string(),
        ..Default::default()
    };
    let lake = Lake::open(&cfg).unwrap();
    let name = TableName {
        namespace: "bronze",
        name: "t",
    };
    let schema = Arc::new(Schema::new(vec![Field::new("x", ArrowType::Int64, false)]));
    (dir, lake, name, schema)
}

/// A sink on `name` that has read partition `p`'s version, as a worker does when it is given
/// the partition; with the version it found.
async fn sink_for(
    lake: &Lake,
    name: TableName,
    schema: &SchemaRef,
    p: i32,
) -> (DeltaSink, Option<i64>) {
    let mut sink = DeltaSink::open(lake, name, schema.clone(), &[])
        .await
        .unwrap();
    let id = app_id("p", "bronze.t", p);
    let seen = sink
        .refresh_versions(std::slice::from_ref(&id))
        .await
        .unwrap();
    (sink, seen[&id])
}

/// Two workers starting together on a new lake: the second saw no table, the first created
/// it, and the second opens it instead of failing ("a table already exists").
#[tokio::test]
async fn a_worker_that_lost_the_race_to_create_a_table_opens_it() {
    let (dir, lake, name, schema) = new_lake();
    std::fs::create_dir_all(dir.path().join("bronze/t")).unwrap();
    let late = DeltaTable::try_from_url_with_storage_options(
        lake.table_url(name),
        lake.storage_options().clone(),
    )
    .await
    .unwrap();
    assert!(late.version().is_none());
    DeltaSink::open(&lake, name, schema.clone(), &[])
        .await
        .expect("the first worker creates it");
    let second = DeltaSink::from_handle(&lake, name, schema, &[], late)
        .await
        .expect("the second opens it");
    assert_eq!(second.table.version(), Some(0));
}

/// The version check skips the reload while the table holds only the sink's own commits;
/// another writer's commit is still seen: one advancing the same partition is refused, one
/// of another partition is not.
#[tokio::test]
async fn a_commit_after_another_writers_is_checked_against_it() {
    let (_dir, lake, name, schema) = new_lake();
    let rows = |n: i64| {
        RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(arrow::array::Int64Array::from_iter_values(0..n))],
        )
        .unwrap()
    };
    let txn = |p: i32, v: i64| BTreeMap::from([(app_id("p", "bronze.t", p), v)]);
    let (mut a, _) = sink_for(&lake, name, &schema, 0).await;
    a.commit(vec![rows(3)], &txn(0, 3)).await.unwrap();
    a.commit(vec![rows(2)], &txn(0, 5)).await.unwrap();
    assert_eq!(a.verified, Some(2), "own commits keep what it knows");
    assert_eq!(
        a.table.version(),
        Some(0),
        "appends do not replay the table's files"
    );

    // Another worker takes partition 0 over and commits it.
    let (mut b, seen) = sink_for(&lake, name, &schema, 0).await;
    assert_eq!(seen, Some(5));
    b.commit(vec![rows(4)], &txn(0, 9)).await.unwrap();
    let refused = a.commit(vec![rows(4)], &txn(0, 9)).await;
    assert!(
        matches!(
            refused,
            Err(Error::ConflictingOffsets { found: Some(9), .. })
        ),
        "{refused:?}"
    );

    // A commit of another partition does not stand in the way.
    let (mut c, _) = sink_for(&lake, name, &schema, 1).await;
    b.commit(vec![rows(1)], &txn(0, 10)).await.unwrap();
    c.commit(vec![rows(1)], &txn(1, 1)).await.unwrap();
    b.commit(vec![rows(1)], &txn(0, 11)).await.unwrap();
    let versions = read_versions(
        &lake,
        name,
        &[app_id("p", "bronze.t", 0), app_id("p", "bronze.t", 1)],
    )
    .await
    .unwrap();
    assert_eq!(
        versions.values().copied().collect::<Vec<_>>(),
        [Some(11), Some(1)]
    );
}

/// Appends write the log checkpoint their table's interval asks for, at the table's own phase,
/// beside the commits, and a reader that opens the table from it sees every file and partition
/// version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_write_the_log_checkpoint_beside() {
    let (dir, lake, name, schema) = new_lake();
    let (mut sink, _) = sink_for(&lake, name, &schema, 0).await;
    assert_eq!(sink.checkpoint_interval, 20);
    // "bronze.t" falls 3 versions into each interval: its first checkpoint is at version 16.
    assert_eq!(sink.checkpoint_phase, 3);
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(arrow::array::Int64Array::from_iter_values(0..2))],
    )
    .unwrap();
    for i in 1..=16 {
        assert!(
            sink.checkpointing.is_none(),
            "no checkpoint before version 16"
        );
        let v = sink
            .commit(
                vec![batch.clone()],
                &BTreeMap::from([(app_id("p", "bronze.t", 0), i)]),
            )
            .await
            .unwrap();
        assert_eq!(v, i as u64);
    }
    sink.checkpointing
        .take()
        .expect("version 16 is the table's 17th, 3 into its interval: a checkpoint is due")
        .await
        .unwrap();
    let log = dir.path().join("bronze/t/_delta_log");
    assert!(
        log.join("00000000000000000016.checkpoint.parquet").exists(),
        "{:?}",
        std::fs::read_dir(&log).unwrap().count()
    );
    let mut table = DeltaTable::try_from_url_with_storage_options(
        lake.table_url(name),
        lake.storage_options().clone(),
    )
    .await
    .unwrap();
    table.load().await.unwrap();
    assert_eq!(table.version(), Some(16));
    assert_eq!(table.snapshot().unwrap().log_data().num_files(), 16);
    let versions = read_versions(&lake, name, &[app_id("p", "bronze.t", 0)])
        .await
        .unwrap();
    assert_eq!(versions[&app_id("p", "bronze.t", 0)], Some(16));
}

/// A pipeline's six tables, which commit together, checkpoint at different versions of each
/// interval but two, and a phase stays inside its interval.
#[test]
fn tables_checkpoint_at_phases_of_their_own() {
    let names = [
        "bronze.events",
        "silver.changes",
        "silver.latest",
        "gold.hourly",
        "gold.area_5min",
        "_rejected",
    ];
    let phases: std::collections::BTreeSet<u64> = names
        .iter()
        .map(|n| super::append::checkpoint_phase(n, 20))
        .collect();
    assert_eq!(phases.len(), 5, "{phases:?}");
    assert!(
        names
            .iter()
            .all(|n| super::append::checkpoint_phase(n, 7) < 7)
    );
    assert_eq!(super::append::checkpoint_phase("bronze.t", 1), 0);
}
