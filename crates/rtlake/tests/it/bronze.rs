//! End to end against a real broker: the replay goes through Kafka into bronze.station_status
//! exactly once, across a SIGKILL of the processor, and Python's deltalake reads the same rows.

use crate::common;

use common::{Guard, OutputWithin, Succeeds, TestEnv, checksum, commits, python, rtlake};
use rtlake_bikes::produce::{Source, produce};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const POLLS: u64 = 8; // two simulated minutes

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_lands_in_bronze_exactly_once_across_a_sigkill() {
    let env = TestEnv::new("bronze").await;
    let mut cfg = env.config();
    cfg.source.minutes = Some(POLLS / 4);
    let report = produce(&cfg, Source::Replay, CancellationToken::new())
        .await
        .expect("produce");
    let expected = common::replay_lines(POLLS);
    let total = expected.len();
    assert_eq!(report.delivered as usize, total);

    // Small epochs, so that the kill lands mid-stream.
    let mut child =
        Guard::spawn(env.run_cmd(&["--max-batch-events", "500", "--max-batch-delay", "100ms"]));
    let table = env.lake().join("bronze/station_status");
    let t0 = Instant::now();
    while commits(&table) < 4 {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the processor made no progress"
        );
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "rtlake run exited early"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.0.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
    child.wait_within(120);
    let partial: usize = env.sql("SELECT count(*) FROM bronze.station_status").await[0][0]
        .parse()
        .unwrap();
    assert!(
        partial > 0 && partial < total,
        "the kill should land mid-stream: {partial} of {total} rows"
    );

    // The same command, the same group: the dead member's partitions come back when its session
    // expires (10 s).
    env.run_cmd(&["--trigger", "available-now"])
        .succeeds_within(300);

    // Every produced event exactly once: count, keys, and the full set of values.
    let rows = env.sql("SELECT count(*), count(DISTINCT station_id || '@' || CAST(polled_at AS VARCHAR)), count(DISTINCT kafka_partition * 100000000 + kafka_offset) FROM bronze.station_status").await;
    assert_eq!(
        rows[0],
        vec![total.to_string(), total.to_string(), total.to_string()]
    );
    let got = env.bronze_lines().await;
    let want = checksum(expected);
    assert_eq!(
        checksum(got),
        want,
        "bronze holds other rows than were produced"
    );
    // silver.station_changes holds exactly the change rule's rows, state carried across the kill.
    let want_changes = common::replay_changes(POLLS);
    assert!(
        want_changes.len() > 100,
        "the replay moves bikes: {} changes",
        want_changes.len()
    );
    let got_changes = env.silver_lines().await;
    assert_eq!(got_changes.len(), want_changes.len(), "silver row count");
    assert_eq!(
        checksum(got_changes),
        checksum(want_changes),
        "silver holds other rows than the rule gives"
    );
    let rejected = env.sql("SELECT count(*) FROM _rejected").await;
    assert_eq!(rejected[0][0], "0");

    // The same through the CLI, as a user would check it.
    let out = rtlake()
        .args(["sql", "--format", "csv", "--lake"])
        .arg(env.lake())
        .arg("SELECT station_id, CAST(polled_at AS BIGINT) AS us, bikes_parked FROM bronze.station_status")
        .succeeds_within(300);
    let cli_lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .skip(1)
        .map(String::from)
        .collect();
    assert_eq!(checksum(cli_lines), want, "rtlake sql disagrees");

    // And with an independent Delta reader.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/read_delta.py");
    let out = std::process::Command::new(python())
        .arg(script)
        .arg(&table)
        .output_within(300)
        .unwrap_or_else(|e| panic!("run {} (make it with scripts/setup.sh): {e}", python()));
    assert!(
        out.status.success(),
        "python deltalake: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["count"].as_u64().unwrap() as usize, total);
    assert_eq!(
        v["checksum"].as_str().unwrap(),
        want,
        "Python's deltalake reads other rows"
    );

    // Districts were joined for every row.
    let d = env
        .sql("SELECT count(*) FROM bronze.station_status WHERE district IS NULL")
        .await;
    assert_eq!(d[0][0], "0");
    let n = env
        .sql("SELECT count(DISTINCT district) FROM bronze.station_status")
        .await;
    assert_eq!(n[0][0], "25");
}
