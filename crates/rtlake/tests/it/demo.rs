//! `rtlake demo` end to end: it runs everything, Ctrl-C stops it cleanly, and a second run
//! continues where the first stopped: no poll published twice or skipped, no event landed twice.

use crate::common;

use common::{Guard, free_port, rtlake, sql_rows};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn start(dir: &Path, port: u16, format: &str) -> Guard {
    let mut c = rtlake();
    c.args(["demo", "--lake-format", format]);
    c.args([
        "--speed",
        "40",
        "--dashboard",
        "127.0.0.1:0",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--dir",
    ])
    .arg(dir);
    Guard::spawn(c)
}

async fn polls_in_lake(lake: &Path) -> usize {
    let table = lake.join("bronze/station_status");
    if !table.join("_delta_log").exists() && !table.join("metadata").exists() {
        return 0;
    }
    sql_rows(
        lake,
        "SELECT count(DISTINCT polled_at) FROM bronze.station_status",
    )
    .await[0][0]
        .parse()
        .unwrap()
}

async fn run_until(dir: &Path, port: u16, polls: usize, format: &str) {
    let mut child = start(dir, port, format);
    let t0 = Instant::now();
    while polls_in_lake(&dir.join("lake")).await < polls {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the demo made no progress"
        );
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "the demo exited early"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Ctrl-C.
    assert!(
        Command::new("kill")
            .args(["-INT", &child.0.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait_within(120);
    assert!(
        status.success(),
        "the demo stops cleanly on Ctrl-C: {status}"
    );
}

fn saved_poll(dir: &Path) -> u64 {
    let text = std::fs::read_to_string(dir.join("replay-state.json")).expect("replay state saved");
    serde_json::from_str::<serde_json::Value>(&text).unwrap()["next_poll"]
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_resumes_where_it_stopped() {
    resumes_where_it_stopped("delta").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_on_iceberg_tables_resumes_where_it_stopped() {
    resumes_where_it_stopped("iceberg").await;
}

async fn resumes_where_it_stopped(format: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let port = free_port();
    run_until(&dir, port, 3, format).await;
    let first = saved_poll(&dir);
    assert!(first >= 3);

    run_until(&dir, port, first as usize + 3, format).await;
    let second = saved_poll(&dir);
    assert!(
        second > first,
        "the replay clock moved on: {first} then {second}"
    );

    let lake = dir.join("lake");
    let rows = sql_rows(
        &lake,
        "SELECT count(*), count(DISTINCT station_id || CAST(polled_at AS VARCHAR)), count(DISTINCT polled_at), \
         CAST(min(polled_at) AS VARCHAR), CAST(max(polled_at) AS VARCHAR) FROM bronze.station_status",
    )
    .await;
    let r = &rows[0];
    assert_eq!(r[0], r[1], "no event landed twice: {r:?}");
    let polls: i64 = r[2].parse().unwrap();
    assert!(
        r[3].starts_with("2025-09-30T23:00:00"),
        "the first run started at the replay start: {r:?}"
    );
    let span = chrono::DateTime::parse_from_rfc3339(&format!("{}Z", r[4].trim_end_matches('Z')))
        .unwrap()
        .signed_duration_since(
            chrono::DateTime::parse_from_rfc3339(&format!("{}Z", r[3].trim_end_matches('Z')))
                .unwrap(),
        );
    assert_eq!(
        span.num_seconds(),
        (polls - 1) * 15,
        "polls are contiguous, none skipped or repeated: {r:?}"
    );
    // Only the newest poll may be incomplete (the run was stopped while it landed).
    let per_poll = sql_rows(
        &lake,
        "SELECT CAST(polled_at AS VARCHAR), count(*) FROM bronze.station_status GROUP BY polled_at HAVING count(*) <> 2721",
    )
    .await;
    assert!(
        per_poll.is_empty() || (per_poll.len() == 1 && per_poll[0][0] == r[4]),
        "every poll but the newest ({}) holds all 2,721 stations: {per_poll:?}",
        r[4]
    );
    // The format asked for: an Iceberg table has its metadata, no Delta log, and vice versa.
    let table = lake.join("bronze/station_status");
    assert_eq!(table.join("metadata").exists(), format == "iceberg");
    assert_eq!(table.join("_delta_log").exists(), format == "delta");
}
