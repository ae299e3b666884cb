//! The lake and the checkpoint on S3 (a real S3-compatible server, SeaweedFS, started by the
//! test): the pipeline end to end on `s3://`, a restart that resumes from the `s3://`
//! checkpoint with its state, two writers racing on one table, and a clear error for a wrong key.

use crate::common;

use common::s3::{BUCKET, SeaweedFs};
use common::{OutputWithin, TestEnv, checksum, python, rtlake};
use futures::TryStreamExt;
use rtlake_bikes::produce::{Source, produce};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// `rtlake run` on the S3 lake `prefix`, draining what is there (credentials from the standard
/// AWS variables, as a user would set them).
fn run_on_s3(env: &TestEnv, s3: &SeaweedFs, prefix: &str) -> std::process::Output {
    let mut c = rtlake();
    c.args(["run", "--brokers", &env.brokers, "--topic", &env.topic])
        .args(["--group", &env.group, "--trigger", "available-now"])
        .args(["--max-batch-events", "1000", "--lake"])
        .arg(format!("s3://{BUCKET}/{prefix}"))
        .envs(s3.env());
    let out = c.output_within(300).expect("rtlake run");
    assert!(
        out.status.success(),
        "rtlake run on s3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The object names under `prefix` in the bucket.
async fn objects(s3: &SeaweedFs, prefix: &str) -> Vec<String> {
    let url = url::Url::parse(&format!("s3://{BUCKET}/{prefix}/")).unwrap();
    let store = rtlake_lake::store::open(&url, &s3.options()).expect("store");
    store
        .list(None)
        .map_ok(|o| o.location.to_string())
        .try_collect()
        .await
        .expect("list")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_runs_on_s3_and_a_restart_resumes_from_the_s3_checkpoint() {
    let s3 = SeaweedFs::start().await;
    let env = TestEnv::new("s3").await;
    let mut cfg = env.config();
    // The first simulated minute (4 polls), processed and stopped.
    cfg.source.minutes = Some(1);
    produce(&cfg, Source::Replay, CancellationToken::new())
        .await
        .expect("produce");
    run_on_s3(&env, &s3, "e2e");
    let lake = s3.lake("e2e");
    let first = common::sql_on(&lake, "SELECT count(*) FROM bronze.station_status").await;
    assert_eq!(first[0][0], common::replay_lines(4).len().to_string());

    let names = objects(&s3, "e2e").await;
    for wanted in [
        "_checkpoints/bikes/commits/0/",
        "_checkpoints/bikes/state/",
        "bronze/station_status/_delta_log/00000000000000000000.json",
        "silver/station_changes/_delta_log/",
    ] {
        assert!(
            names.iter().any(|n| n.starts_with(wanted)),
            "no {wanted} in the bucket: {names:?}"
        );
    }
    assert!(
        !names.iter().any(|n| n.ends_with(".tmp")),
        "a temporary file was left: {names:?}"
    );

    // The second minute, then the same command: it resumes from the offsets and the state in
    // the bucket, so silver's changes at the seam come from state restored from S3.
    cfg.source.start = "2025-10-01T08:01:00+09:00".into();
    produce(&cfg, Source::Replay, CancellationToken::new())
        .await
        .expect("produce");
    run_on_s3(&env, &s3, "e2e");
    let lines = common::sql_on(
        &lake,
        "SELECT station_id, CAST(polled_at AS BIGINT), bikes_parked FROM bronze.station_status",
    )
    .await
    .into_iter()
    .map(|r| r.join(","))
    .collect::<Vec<_>>();
    let expected = common::replay_lines(8);
    assert_eq!(lines.len(), expected.len(), "every event once in bronze");
    assert_eq!(checksum(lines), checksum(expected));
    let changes = common::sql_on(
        &lake,
        "SELECT station_id, CAST(polled_at AS BIGINT), CAST(prev_polled_at AS BIGINT), bikes_parked, prev_bikes_parked, rentals, returns FROM silver.station_changes",
    )
    .await
    .into_iter()
    .map(|r| r.join(","))
    .collect::<Vec<_>>();
    let want = common::replay_changes(8);
    assert_eq!(
        changes.len(),
        want.len(),
        "silver's changes, state carried over S3"
    );
    assert_eq!(checksum(changes), checksum(want));

    // An outside reader (Python deltalake) reads the table from the bucket.
    let mut opts = serde_json::Map::new();
    for (k, v) in s3.env() {
        opts.insert(k.into(), v.into());
    }
    let script = format!(
        "import deltalake, json, sys\nt = deltalake.DeltaTable('s3://{BUCKET}/e2e/bronze/station_status', storage_options=json.loads(sys.argv[1]))\nprint(t.to_pyarrow_table().num_rows, flush=True)\nimport os; os._exit(0)"
    );
    let out = std::process::Command::new(python())
        .args(["-c", &script, &serde_json::Value::Object(opts).to_string()])
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        common::replay_lines(8).len().to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_racing_on_one_table_lose_and_double_nothing() {
    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use rtlake_core::schema::TableName;
    use rtlake_lake::sink::{DeltaSink, app_id};

    const EPOCHS: i64 = 15;
    let s3 = SeaweedFs::start().await;
    // What makes it safe: a create-only put of an existing object fails (S3's conditional put,
    // `If-None-Match: *`), so of two commits of one version exactly one lands.
    let url = url::Url::parse(&format!("s3://{BUCKET}/race/probe/")).unwrap();
    let store = rtlake_lake::store::open(&url, &s3.options()).expect("store");
    let create = || object_store::PutOptions::from(object_store::PutMode::Create);
    let path = object_store::path::Path::from("00000000000000000000.json");
    store
        .put_opts(&path, "first".into(), create())
        .await
        .expect("the first create-only put");
    let second = store.put_opts(&path, "second".into(), create()).await;
    assert!(
        matches!(second, Err(object_store::Error::AlreadyExists { .. })),
        "the second create-only put must fail: {second:?}"
    );
    let lake = rtlake_lake::Lake::open(&s3.lake("race")).expect("lake");
    let schema = Arc::new(Schema::new(vec![
        Field::new("writer", DataType::Utf8, false),
        Field::new("epoch", DataType::Int64, false),
    ]));
    let table = TableName {
        namespace: "race",
        name: "t",
    };
    // Two workers, each owning one input partition, commit to one table at the same time:
    // every commit races the other writer's for the next log version.
    // Both open (and race to create) the table, then commit at the same time.
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let mut tasks = Vec::new();
    for w in 0..2i32 {
        let lake = lake.clone();
        let schema = schema.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let mut sink = DeltaSink::open(&lake, table, schema.clone(), &[])
                .await
                .expect("open");
            barrier.wait().await;
            let id = app_id("race", "race.t", w);
            let mut retried = 0;
            for epoch in 0..EPOCHS {
                let batch = RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(StringArray::from(vec![format!("w{w}"); 10])),
                        Arc::new(Int64Array::from(vec![epoch; 10])),
                    ],
                )
                .unwrap();
                let txns = BTreeMap::from([(id.clone(), epoch + 1)]);
                // What the pipeline does on a failed commit: re-read the versions, and retry
                // the epoch unless the table already holds it.
                loop {
                    match sink.commit(vec![batch.clone()], &txns).await {
                        Ok(_) => break,
                        Err(e) => {
                            retried += 1;
                            assert!(retried < 50, "writer {w} keeps failing: {e}");
                            let held = sink
                                .refresh_versions(std::slice::from_ref(&id))
                                .await
                                .expect("refresh");
                            if held[&id] == Some(epoch + 1) {
                                break;
                            }
                        }
                    }
                }
            }
            retried
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let rows = common::sql_on(
        &s3.lake("race"),
        "SELECT writer, epoch, count(*) FROM race.t GROUP BY writer, epoch ORDER BY writer, epoch",
    )
    .await;
    let want: Vec<Vec<String>> = (0..2)
        .flat_map(|w| (0..EPOCHS).map(move |e| vec![format!("w{w}"), e.to_string(), "10".into()]))
        .collect();
    assert_eq!(rows, want, "each epoch of each writer exactly once");
    let log = objects(&s3, "race/race/t/_delta_log").await;
    let commits = log.iter().filter(|n| n.ends_with(".json")).count();
    assert_eq!(
        commits as i64,
        1 + 2 * EPOCHS,
        "one create and one commit per epoch, none lost to the race: {log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_a_clear_error_naming_the_lake() {
    let s3 = SeaweedFs::start().await;
    let env = TestEnv::new("s3-key").await;
    let mut c = rtlake();
    c.args(["sql", "--lake"])
        .arg(format!("s3://{BUCKET}/nothing"))
        .arg("SELECT 1")
        .envs(s3.env())
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret");
    let out = c.output_within(120).expect("rtlake sql");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a wrong secret must fail: {err}");
    assert!(
        err.contains(&format!("s3://{BUCKET}/nothing")) && err.contains("SignatureDoesNotMatch"),
        "the error names the lake and the store's reason: {err}"
    );
    drop(env);
}
