//! Source options: the file source gives the same tables as Kafka; a new pipeline starts at
//! per-partition offsets or at the end; max-offsets-per-trigger and max-batch-bytes bound every
//! epoch.

use crate::common;

use common::{OutputWithin, TestEnv, checksum, rtlake};
use rtlake_bikes::produce::{Source, produce};
use std::path::Path;
use tokio_util::sync::CancellationToken;

const POLLS: u64 = 8;

/// `silver.station_latest` but its ingestion time (which differs run to run).
const STATION_LATEST: &str = "SELECT station_id, station_name, district, rack_total, bikes_parked, shared_pct, lat, lon, polled_at FROM silver.station_latest";

/// Bronze's snapshots of each station, newest first (`n`).
const LATEST_OF_BRONZE: &str = "SELECT station_id, station_name, district, rack_total, bikes_parked, shared_pct, lat, lon, polled_at FROM (SELECT *, row_number() OVER (PARTITION BY station_id ORDER BY polled_at DESC) AS n FROM bronze.station_status)";

/// The bike pipeline without its Kafka topic (bench/lake-only.toml).
fn lake_only() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/lake-only.toml")
}

fn processed(out: &std::process::Output) -> (u64, u64) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let line = text
        .lines()
        .find(|l| l.starts_with("processed "))
        .unwrap_or_else(|| panic!("no summary in {text}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    (words[1].parse().unwrap(), words[4].parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_source_lands_the_same_rows_as_kafka() {
    let dir = tempfile::tempdir().unwrap();
    // The replay's first polls as JSON Lines, split over two files of a folder.
    let mut r = common::replay();
    let folder = dir.path().join("events");
    std::fs::create_dir_all(&folder).unwrap();
    for half in ["a.jsonl", "b.jsonl"] {
        let mut text = String::new();
        for _ in 0..POLLS / 2 {
            for e in &r.next_poll().events {
                text.push_str(&e.to_json());
                text.push('\n');
            }
        }
        std::fs::write(folder.join(half), text).unwrap();
    }
    let lake = dir.path().join("lake");
    let out = rtlake()
        .args(["run", "--metrics-listen", "off", "--lake"])
        .arg(&lake)
        .arg(format!("--source=file:{}", folder.display()))
        .output_within(300)
        .unwrap();
    let (messages, _) = processed(&out);
    assert_eq!(messages as usize, common::replay_lines(POLLS).len());
    let silver: Vec<String> = common::sql_rows(&lake, "SELECT station_id, CAST(polled_at AS BIGINT), CAST(prev_polled_at AS BIGINT), bikes_parked, prev_bikes_parked, rentals, returns FROM silver.station_changes")
        .await
        .into_iter()
        .map(|r| r.join(","))
        .collect();
    assert_eq!(
        checksum(silver),
        checksum(common::replay_changes(POLLS)),
        "the change rule's rows, as from Kafka"
    );
    let bronze: Vec<String> = common::sql_rows(
        &lake,
        "SELECT station_id, CAST(polled_at AS BIGINT), bikes_parked FROM bronze.station_status",
    )
    .await
    .into_iter()
    .map(|r| r.join(","))
    .collect();
    assert_eq!(checksum(bronze), checksum(common::replay_lines(POLLS)));
    // The upserted current state: each station's newest snapshot in bronze, one row each.
    let newest = table_checksum(&lake, &format!("{LATEST_OF_BRONZE} WHERE n = 1")).await;
    assert_eq!(table_checksum(&lake, STATION_LATEST).await, newest);
    let stations = common::sql_rows(
        &lake,
        "SELECT count(*), count(DISTINCT station_id) FROM silver.station_latest",
    )
    .await;
    assert_eq!(stations[0][0], stations[0][1], "one row per station");
    assert!(
        stations[0][0].parse::<u64>().unwrap() > 2000,
        "{stations:?}"
    );

    // Run again: the lake holds every line, so nothing is processed twice.
    let out = rtlake()
        .args(["run", "--metrics-listen", "off", "--lake"])
        .arg(&lake)
        .arg(format!("--source=file:{}", folder.display()))
        .output_within(300)
        .unwrap();
    assert_eq!(
        processed(&out).0,
        0,
        "a second run resumes after what the lake holds"
    );

    // A crash between two tables' commits of an epoch (_rejected commits first), then a run
    // with other epoch sizes: the interrupted epoch is re-run over exactly its range, and every
    // table is as without the crash.
    let crashed = dir.path().join("crashed");
    let run = |batch: &str| {
        let mut c = rtlake();
        c.args([
            "run",
            "--metrics-listen",
            "off",
            "--max-batch-events",
            batch,
            "--lake",
        ])
        .arg(&crashed)
        .arg(format!("--source=file:{}", folder.display()))
        .env("RTLAKE_LOG", "rtlake_stream=info,warn");
        c
    };
    let out = run("3000")
        .env("RTLAKE_FAILPOINT", "after-commit:_rejected")
        .output_within(300)
        .unwrap();
    assert!(
        !out.status.success(),
        "the failpoint aborts the first epoch"
    );
    let out = run("1000").output_within(300).unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("re-running the interrupted epoch") && log.contains("end=3000"),
        "the interrupted epoch is re-run whole:\n{log}"
    );
    assert!(processed(&out).0 > 0);
    for q in [
        "SELECT station_id, polled_at, bikes_parked, kafka_offset FROM bronze.station_status",
        "SELECT * FROM silver.station_changes",
        "SELECT * FROM gold.station_hourly",
        "SELECT * FROM gold.district_5min",
        STATION_LATEST,
    ] {
        assert_eq!(
            table_checksum(&crashed, q).await,
            table_checksum(&lake, q).await,
            "{q}: the same rows after the crash"
        );
    }
}

async fn table_checksum(lake: &Path, q: &str) -> String {
    let rows = common::sql_rows(lake, q).await;
    checksum(rows.into_iter().map(|r| r.join(",")).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_offsets_and_max_offsets_per_trigger() {
    let env = TestEnv::new("sources").await;
    let mut cfg = env.config();
    cfg.source.minutes = Some(POLLS / 4);
    produce(&cfg, Source::Replay, CancellationToken::new())
        .await
        .expect("produce");
    let marks = env.cluster().watermarks(&env.topic).await.unwrap();
    let pipeline = lake_only();

    // Per-partition starting offsets: half way through each partition.
    let starts: serde_json::Map<String, serde_json::Value> = marks
        .iter()
        .map(|(p, _, hi)| (p.to_string(), serde_json::json!(hi / 2)))
        .collect();
    let starts = serde_json::Value::Object(starts).to_string();
    let out = env
        .run_cmd_in_group(
            &format!("{}-half", env.group),
            &[
                "--trigger",
                "available-now",
                "--metrics-listen",
                "off",
                "--starting-offsets",
                &starts,
                "--max-offsets-per-trigger",
                "1000",
            ],
        )
        .arg("--pipeline")
        .arg(&pipeline)
        .output_within(300)
        .unwrap();
    let (messages, epochs) = processed(&out);
    let want: i64 = marks.iter().map(|(_, _, hi)| hi - hi / 2).sum();
    assert_eq!(
        messages as i64, want,
        "only the second half of each partition"
    );
    assert!(
        epochs >= (want as u64).div_ceil(1000),
        "at most 1000 messages an epoch: {epochs} epochs for {want}"
    );
    let firsts = env.sql("SELECT kafka_partition, min(kafka_offset), count(*) FROM bronze.station_status GROUP BY 1 ORDER BY 1").await;
    for (row, (p, _, hi)) in firsts.iter().zip(&marks) {
        assert_eq!(
            row,
            &vec![
                p.to_string(),
                (hi / 2).to_string(),
                (hi - hi / 2).to_string()
            ]
        );
    }

    // `latest` for a new pipeline: nothing that was already there.
    let out = rtlake()
        .args([
            "run",
            "--brokers",
            &env.brokers,
            "--topic",
            &env.topic,
            "--group",
            &format!("{}-latest", env.group),
            "--trigger",
            "available-now",
            "--metrics-listen",
            "off",
        ])
        .args(["--starting-offsets", "latest", "--lake"])
        .arg(env.dir.path().join("lake-latest"))
        .arg("--pipeline")
        .arg(&pipeline)
        .output_within(300)
        .unwrap();
    assert_eq!(
        processed(&out).0,
        0,
        "a new pipeline starting at the end reads nothing old"
    );

    // max-batch-bytes closes an epoch at that many bytes of keys and values (the count bound
    // alone would take the whole topic in one epoch).
    let out = rtlake()
        .args(["run", "--brokers", &env.brokers, "--topic", &env.topic])
        .args(["--group", &format!("{}-bytes", env.group)])
        .args(["--trigger", "available-now", "--metrics-listen", "off"])
        .args(["--max-batch-bytes", "64KiB", "--lake"])
        .arg(env.dir.path().join("lake-bytes"))
        .arg("--pipeline")
        .arg(&pipeline)
        .output_within(300)
        .unwrap();
    let (messages, epochs) = processed(&out);
    let all: i64 = marks.iter().map(|(_, lo, hi)| hi - lo).sum();
    assert_eq!(messages as i64, all);
    // Every event is over 200 bytes.
    assert!(
        epochs >= (all as u64 * 200).div_ceil(64 << 10),
        "{epochs} epochs for {all} messages of over 200 bytes at 64 KiB an epoch"
    );

    // A bad value is refused, naming the key.
    let out = env
        .run_cmd(&["--starting-offsets", "yesterday"])
        .output_within(300)
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("run.starting-offsets") && err.contains("yesterday"),
        "{err}"
    );
}

/// A pipeline whose sinks name their formats writes a Delta and an Iceberg table side by side,
/// with the same rows; `rtlake sql` reads both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pipeline_writes_delta_and_iceberg_tables_as_its_sinks_ask() {
    let dir = tempfile::tempdir().unwrap();
    let events = common::replay_file(dir.path(), POLLS);
    let pipeline = dir.path().join("both.toml");
    std::fs::write(
        &pipeline,
        "pipeline = \"both\"\n\n[[sinks]]\noperator = \"bronze\"\n\n[[sinks]]\noperator = \"changes\"\n\n\
         [[sinks]]\noperator = \"changes\"\ntable = \"silver.changes_iceberg\"\nformat = \"iceberg\"\n",
    )
    .unwrap();
    let lake = dir.path().join("lake");
    let out = rtlake()
        .args(["run", "--metrics-listen", "off", "--lake"])
        .arg(&lake)
        .arg("--pipeline")
        .arg(&pipeline)
        .arg(format!("--source=file:{}", events.display()))
        .output_within(300)
        .unwrap();
    assert_eq!(
        processed(&out).0 as usize,
        common::replay_lines(POLLS).len()
    );
    assert!(lake.join("silver/station_changes/_delta_log").exists());
    assert!(lake.join("silver/changes_iceberg/metadata").exists());
    assert!(!lake.join("silver/changes_iceberg/_delta_log").exists());
    let q =
        |t: &str| format!("SELECT station_id, polled_at, rentals, returns, bikes_parked FROM {t}");
    let rows = common::sql_rows(&lake, "SELECT count(*) FROM silver.changes_iceberg").await;
    assert_eq!(rows[0][0], common::replay_changes(POLLS).len().to_string());
    let delta = table_checksum(&lake, &q("silver.station_changes")).await;
    assert_eq!(
        table_checksum(&lake, &q("silver.changes_iceberg")).await,
        delta,
        "the same rows in both formats"
    );
}

/// A run whose log reader went away (`rtlake run ... 2>&1 | head`) still lands its input and
/// exits: its log lines are dropped. Before, tracing-subscriber's report of the failed write
/// panicked on the same closed stderr (exit 101), and from Kafka the unwinding hung the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_log_reader_went_away_still_lands_and_exits() {
    let (out, lake, _dir) = run_with_a_closed(Closed::Stderr).await;
    let want = common::replay_lines(2).len();
    assert!(
        out.contains(&format!("processed {want} messages")),
        "the summary on stdout: {out}"
    );
    let rows = common::sql_rows(&lake, "SELECT count(*) FROM bronze.station_status").await;
    assert_eq!(rows[0][0], want.to_string(), "every line in bronze");
}

/// A run whose output's reader went away (`rtlake run ... | head -0`) lands its input and
/// exits quietly: before, the summary's `println!` panicked on the closed stdout (exit 101,
/// "failed printing to stdout: Broken pipe" on stderr).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_output_reader_went_away_still_lands_and_exits() {
    let (log, lake, _dir) = run_with_a_closed(Closed::Stdout).await;
    assert!(!log.contains("panicked"), "no panic in the log: {log}");
    let want = common::replay_lines(2).len();
    let rows = common::sql_rows(&lake, "SELECT count(*) FROM bronze.station_status").await;
    assert_eq!(rows[0][0], want.to_string(), "every line in bronze");
}

/// A run into a new lake under a user's own log filter (`RTLAKE_LOG=warn`) prints no ERROR:
/// delta-kernel's report that a table it probed does not exist yet (one per new table, handled
/// by the sink) is kept quiet under any filter that does not name the kernel.
#[test]
fn a_new_lake_under_a_warn_filter_logs_no_error() {
    let dir = tempfile::tempdir().unwrap();
    let events = common::replay_file(dir.path(), 1);
    let out = rtlake()
        .args(["run", "--metrics-listen", "off", "--lake"])
        .arg(dir.path().join("lake"))
        .arg(format!("--source=file:{}", events.display()))
        .env("RTLAKE_LOG", "warn")
        .output_within(300)
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(!log.contains("ERROR"), "no ERROR line: {log}");
}

/// Which of a run's streams has no reader.
enum Closed {
    Stdout,
    Stderr,
}

/// Runs the default pipeline over two polls from a file, with the default log, `closed`'s
/// reader gone before the first line; asserts that it exits with success within two minutes,
/// and returns what the other stream carried, the lake, and the directory holding it.
async fn run_with_a_closed(closed: Closed) -> (String, std::path::PathBuf, tempfile::TempDir) {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let events = common::replay_file(dir.path(), 2);
    let lake = dir.path().join("lake");
    let mut child = rtlake()
        .args(["run", "--metrics-listen", "off", "--lake"])
        .arg(&lake)
        .arg(format!("--source=file:{}", events.display()))
        // The default log: a line for each table it makes, and more.
        .env_remove("RTLAKE_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut open: Box<dyn Read + Send> = match closed {
        Closed::Stdout => {
            drop(child.stdout.take());
            Box::new(child.stderr.take().unwrap())
        }
        Closed::Stderr => {
            drop(child.stderr.take());
            Box::new(child.stdout.take().unwrap())
        }
    };
    // Read beside the run: a full pipe would block it.
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        open.read_to_string(&mut text).unwrap();
        text
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("rtlake run did not exit within 120 s of a stream's reader going away");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let text = reader.join().unwrap();
    assert!(
        status.success(),
        "exit {status:?}; the other stream: {text}"
    );
    (text, lake, dir)
}
