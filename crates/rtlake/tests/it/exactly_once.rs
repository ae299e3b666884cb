//! Exactly once with state: the processor is aborted at several points, including between two
//! outputs' commits of one epoch and between the Kafka sink's delivery and its version, then
//! restarted; every table ends equal to an uninterrupted run's, and the Kafka sink topic holds
//! every reference row: on a cluster with transactions exactly once (to a read_committed
//! reader), otherwise with duplicates only from the epochs in flight at the crashes.

use crate::common;

use common::{OutputWithin, Succeeds, TestEnv, checksum, read_topic, sql_rows};
use rtlake_bikes::produce::{Source, produce};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use tokio_util::sync::CancellationToken;

const MINUTES: u64 = 6; // 24 polls: the first 5-minute windows close

fn pipeline_file(dir: &Path, name: &str, topic: &str) -> std::path::PathBuf {
    let f = dir.join(format!("{name}.toml"));
    let text = format!(
        "pipeline = \"bikes\"\nlateness = \"0s\"\n\n\
         [[sinks]]\noperator = \"bronze\"\n\n\
         [[sinks]]\noperator = \"changes\"\n\n\
         [[sinks]]\noperator = \"station-hourly\"\n\n\
         [[sinks]]\noperator = \"district-5min\"\n\n\
         [[sinks]]\noperator = \"changes\"\ntopic = \"{topic}\"\nkey = \"station_id\"\n\n\
         [[sinks]]\noperator = \"changes\"\ntable = \"silver.busy_changes\"\n\
         sql = \"SELECT station_id, polled_at, rentals + returns AS moved, district, date, hour FROM input WHERE rentals + returns >= 2\"\n"
    );
    std::fs::write(&f, text).unwrap();
    f
}

/// A checksum per table of every column but processing times.
async fn tables(lake: &Path) -> BTreeMap<&'static str, (usize, String)> {
    let queries = [
        (
            "bronze",
            "SELECT station_id, CAST(polled_at AS BIGINT), bikes_parked, district, kafka_partition, kafka_offset FROM bronze.station_status",
        ),
        (
            "silver",
            "SELECT station_id, CAST(polled_at AS BIGINT), CAST(prev_polled_at AS BIGINT), bikes_parked, prev_bikes_parked, rentals, returns, district FROM silver.station_changes",
        ),
        ("hourly", "SELECT * FROM gold.station_hourly"),
        ("district", "SELECT * FROM gold.district_5min"),
        (
            "rejected",
            "SELECT kafka_partition, kafka_offset, reason, sink FROM _rejected",
        ),
        (
            "busy",
            "SELECT station_id, CAST(polled_at AS BIGINT), moved, district FROM silver.busy_changes",
        ),
        (
            "busy-by-sql",
            "SELECT station_id, CAST(polled_at AS BIGINT), rentals + returns, district FROM silver.station_changes WHERE rentals + returns >= 2",
        ),
    ];
    let mut out = BTreeMap::new();
    for (name, q) in queries {
        let rows: Vec<String> = sql_rows(lake, q)
            .await
            .into_iter()
            .map(|r| r.join(","))
            .collect();
        out.insert(name, (rows.len(), checksum(rows)));
    }
    out
}

/// The interrupted ranges in the offset log (newest entry without a commit, per partition).
async fn in_flight(checkpoint: &Path) -> Vec<(i32, i64, i64)> {
    use rtlake_stream::checkpoint::{EpochLog, Folder};
    let log = EpochLog::new(Folder::local(checkpoint).unwrap());
    let mut out = Vec::new();
    for p in 0..3 {
        if let Some(r) = log.pending(p).await.unwrap() {
            out.push((p, r.start, r.end));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_at_every_commit_point_leave_every_output_exact() {
    crashes_at_every_commit_point("delta").await;
}

/// The same on Iceberg tables: the offsets in each snapshot's summary make a re-run of an epoch
/// a no-op, as Delta's txn actions do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_at_every_commit_point_leave_every_iceberg_table_exact() {
    crashes_at_every_commit_point("iceberg").await;
}

async fn crashes_at_every_commit_point(format: &str) {
    let env = TestEnv::new(&format!("exactly-{format}")).await;
    let mut cfg = env.config();
    cfg.source.minutes = Some(MINUTES);
    produce(&cfg, Source::Replay, CancellationToken::new())
        .await
        .expect("produce");
    let dir = env.dir.path();
    let ref_topic = format!("{}-changes-ref", env.topic);
    let topic = format!("{}-changes", env.topic);
    let ref_lake = dir.join("ref-lake");

    // The reference: one uninterrupted run.
    common::rtlake()
        .args([
            "run",
            "--brokers",
            &env.brokers,
            "--topic",
            &env.topic,
            "--group",
            &format!("{}-ref", env.group),
        ])
        .arg("--lake")
        .arg(&ref_lake)
        .args(["--lake-format", format])
        .arg("--pipeline")
        .arg(pipeline_file(dir, "ref", &ref_topic))
        .args(["--trigger", "available-now"])
        .succeeds_within(300);
    let want = tables(&ref_lake).await;
    assert!(
        want["silver"].0 > 1000 && want["district"].0 >= 25,
        "the reference run has data: {want:?}"
    );
    assert_eq!(want["hourly"].0, 0, "no hour closes in 6 minutes");
    assert!(want["busy"].0 > 10, "the SQL sink has rows: {want:?}");
    assert_eq!(
        want["busy"], want["busy-by-sql"],
        "the SQL sink holds what the same query over silver gives"
    );

    // Crashes at each point in turn, small epochs so each run makes a little progress.
    // gold.district_5min commits rows only when a window closes, near the end of the data, so
    // its crash comes last: a point after it could find nothing left to commit (the Kafka sink
    // may already have committed that last epoch beside the gold table when the crash came).
    // Each crash run advances the lake by an epoch or two before its point fires; epochs of
    // 1,000 events leave most of the data for the later points (with 3,000 the Iceberg variant
    // once found nothing left to commit at the last point).
    let pipeline = pipeline_file(dir, "crash", &topic);
    let points = [
        "after-commit:_rejected".to_string(),
        "after-commit:bronze.station_status".into(),
        "after-commit:silver.station_changes".into(),
        format!("after-publish:kafka:{topic}"),
        format!("after-commit:kafka:{topic}"),
        format!("after-publish:kafka:{topic}"),
        "after-commit:gold.district_5min".into(),
    ];
    let checkpoint = env.lake().join("_checkpoints/bikes");
    let mut crashed_ranges = BTreeSet::new();
    let mut transactional = false;
    for (i, point) in points.iter().enumerate() {
        let out = env
            .run_cmd_in_group(
                &format!("{}-{i}", env.group),
                &["--max-batch-events", "1000", "--trigger", "available-now"],
            )
            .arg("--pipeline")
            .arg(&pipeline)
            .args(["--lake-format", format])
            .env("RTLAKE_FAILPOINT", point)
            .env(
                "RTLAKE_LOG",
                "rtlake_stream::connectors::kafka::sink=info,warn,buoyant_kernel=off",
            )
            .output_within(300)
            .unwrap();
        assert!(
            !out.status.success(),
            "run {i} should abort at {point}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(&format!("failpoint {point} reached")),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        transactional = String::from_utf8_lossy(&out.stderr).contains("kafka sink: exactly once");
        assert!(
            transactional || !common::kafka_has_transactions(),
            "on Apache Kafka the sink must run in transactions: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pending = in_flight(&checkpoint).await;
        assert!(
            !pending.is_empty(),
            "the aborted epoch is in the offset log without a commit"
        );
        crashed_ranges.extend(pending);
    }
    env.run_cmd_in_group(
        &format!("{}-last", env.group),
        &["--max-batch-events", "3000", "--trigger", "available-now"],
    )
    .arg("--pipeline")
    .arg(&pipeline)
    .args(["--lake-format", format])
    .succeeds_within(300);
    assert_eq!(
        env.lake().join("silver/station_changes/metadata").is_dir(),
        format == "iceberg",
        "the tables are in the format asked for"
    );
    assert!(
        in_flight(&checkpoint).await.is_empty(),
        "every epoch is committed in the end"
    );

    let got = tables(&env.lake()).await;
    assert_eq!(got, want, "every table equals the uninterrupted run's");
    assert_eq!(
        common::checksum(env.silver_lines().await),
        checksum(common::replay_changes(MINUTES * 4))
    );

    // The Kafka sink: every reference row; duplicates only from the epochs in flight at a crash.
    let reference: BTreeSet<String> = read_topic(&env.brokers, &ref_topic)
        .into_iter()
        .map(|m| m.0)
        .collect();
    assert_eq!(
        reference.len(),
        want["silver"].0,
        "the reference topic holds each change row once"
    );
    let published = read_topic(&env.brokers, &topic);
    assert!(published.iter().all(|m| m.3 == "bikes"));
    let mut by_origin: BTreeMap<(i32, i64), Vec<&String>> = BTreeMap::new();
    for m in &published {
        by_origin.entry((m.1, m.2)).or_default().push(&m.0);
    }
    let distinct: BTreeSet<String> = by_origin.values().map(|v| v[0].clone()).collect();
    assert_eq!(
        distinct, reference,
        "deduplicated by headers, the topic holds exactly the reference rows"
    );
    let dupes: Vec<&(i32, i64)> = by_origin
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(k, _)| k)
        .collect();
    if transactional {
        // The reader is read_committed (librdkafka's default): the aborted epochs are invisible.
        assert!(
            dupes.is_empty(),
            "with transactions a committed reader sees each row once: {} doubled",
            dupes.len()
        );
        assert_eq!(published.len(), reference.len(), "and nothing else");
        return;
    }
    assert!(
        !dupes.is_empty(),
        "a crash after delivery and before the version publishes the epoch again"
    );
    for (p, o) in &dupes {
        assert!(
            by_origin[&(*p, *o)]
                .iter()
                .all(|v| *v == by_origin[&(*p, *o)][0]),
            "a duplicate is the same row"
        );
        assert!(
            crashed_ranges
                .iter()
                .any(|(cp, s, e)| cp == p && s <= o && o < e),
            "duplicate of partition {p} offset {o} is outside every epoch in flight at a crash: {crashed_ranges:?}"
        );
    }
}
