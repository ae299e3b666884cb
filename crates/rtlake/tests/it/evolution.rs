//! Schema evolution as a user meets it, on the file source: the producer's events grow a
//! field; the pipeline ignores it, keeps it in bronze (the column is added to the existing
//! table), or rejects the event, as `run.unknown-fields` says; a field whose type changed is
//! rejected with a message naming it.

use crate::common;

use common::{OutputWithin, rtlake, sql_rows};
use std::io::Write;

fn event(minute: u32, extra: &str) -> String {
    format!(
        r#"{{"rackTotCnt":"15","stationName":"102. 망원역 1번출구 앞","parkingBikeTotCnt":"{minute}","shared":"107","stationLatitude":"37.55564880","stationLongitude":"126.91062927","stationId":"ST-4","polledAt":"2025-10-01T08:{minute:02}:00+09:00"{extra}}}"#
    )
}

fn run(file: &std::path::Path, lake: &std::path::Path, policy: &str) -> std::process::Output {
    rtlake()
        .args([
            "run",
            "--metrics-listen",
            "off",
            "--unknown-fields",
            policy,
            "--source",
        ])
        .arg(format!("file:{}", file.display()))
        .arg("--lake")
        .arg(lake)
        .output_within(120)
        .unwrap()
}

fn append(file: &std::path::Path, lines: &[String]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_field_is_ignored_kept_or_rejected_and_a_type_change_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (file, lake) = (dir.path().join("events.jsonl"), dir.path().join("lake"));
    // Known fields only, and one with a new field: ignored.
    append(&file, &[event(0, ""), event(1, r#","bikeType":"e-bike""#)]);
    let out = run(&file, &lake, "ignore");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cols = sql_rows(
        &lake,
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'station_status'",
    )
    .await;
    assert!(!cols.iter().any(|c| c[0] == "extra"), "{cols:?}");

    // Kept: the column is added to the existing table, old rows read it as null.
    append(
        &file,
        &[
            event(2, r#","bikeType":"e-bike","dock":{"n":3}"#),
            event(3, ""),
        ],
    );
    let out = run(&file, &lake, "keep");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = sql_rows(
        &lake,
        r#"SELECT bikes_parked, CASE WHEN extra IS NULL THEN 'null' WHEN extra = '{"bikeType":"e-bike","dock":{"n":3}}' THEN 'the new fields' ELSE extra END FROM bronze.station_status ORDER BY bikes_parked"#,
    )
    .await;
    let rows: Vec<String> = rows.into_iter().map(|r| r.join("|")).collect();
    assert_eq!(
        rows,
        vec!["0|null", "1|null", "2|the new fields", "3|null"],
        "the kept fields as JSON"
    );

    // Rejected: to _rejected as decode, naming the field; and a type change, naming it too.
    append(
        &file,
        &[
            event(4, r#","bikeType":"e-bike""#),
            event(5, "").replace(r#""rackTotCnt":"15""#, r#""rackTotCnt":15"#),
            event(6, ""),
        ],
    );
    let out = run(&file, &lake, "reject");
    // Bronze keeps its `extra` column: a pipeline without it is refused, not silently narrowed.
    assert!(
        !out.status.success(),
        "a run that would drop a column must fail"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("column extra") && err.contains("dropping a column"),
        "{err}"
    );
    // With a fresh lake the same lines are rejected one by one.
    let fresh = dir.path().join("fresh");
    let out = run(&file, &fresh, "reject");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rejected = sql_rows(&fresh, "SELECT kafka_offset, reason, error FROM _rejected WHERE sink = 'bronze.station_status' ORDER BY kafka_offset").await;
    // (The CSV reader splits messages at commas: a row's cells are joined back.)
    let by_offset = |o: &str| {
        rejected
            .iter()
            .find(|r| r[0] == o)
            .map(|r| (r[1].clone(), r[2..].join(",")))
            .unwrap_or_else(|| panic!("offset {o} not rejected: {rejected:?}"))
    };
    assert!(by_offset("1").1.contains("bikeType"), "{rejected:?}");
    assert!(by_offset("2").1.contains("bikeType, dock"), "{rejected:?}");
    assert_eq!(by_offset("5").0, "decode");
    assert!(
        by_offset("5").1.contains("field rackTotCnt is a number")
            && by_offset("5").1.contains("type change is refused"),
        "{rejected:?}"
    );
    let kept = sql_rows(&fresh, "SELECT count(*) FROM bronze.station_status").await;
    assert_eq!(
        kept[0][0], "3",
        "offsets 0, 3 and 6, the events of known fields only: {rejected:?}"
    );
}
