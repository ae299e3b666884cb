//! Table maintenance beside a running pipeline: the processor compacts on its own schedule
//! while `rtlake lake optimize` runs again and again from outside, and every table still holds
//! every event exactly once; then `rtlake lake status`, checkpoint and vacuum, and an outside
//! reader (Python deltalake) agreeing on counts and content.

use crate::common;

use common::{Guard, OutputWithin, TestEnv, checksum, python, rtlake};
use rtlake_bikes::produce::{Source, produce};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Simulated minutes of the replay (4 polls a minute); `RTLAKE_MAINTENANCE_MINUTES` for a
/// longer run by hand (60 is a simulated hour, 10 real minutes of racing needs ~240).
fn minutes() -> u64 {
    std::env::var("RTLAKE_MAINTENANCE_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(6)
}

fn lake_cmd(env: &TestEnv, args: &[&str]) -> String {
    let out = rtlake()
        .arg("lake")
        .args(args)
        .arg("--lake")
        .arg(env.lake())
        .output_within(300)
        .expect("rtlake lake");
    assert!(
        out.status.success(),
        "rtlake lake {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// `rtlake lake status --format json` as (table, files, rows).
fn status(env: &TestEnv) -> Vec<(String, u64, u64)> {
    lake_cmd(env, &["status", "--format", "json"])
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            (
                v["table"].as_str().unwrap().to_string(),
                v["files"].as_u64().unwrap(),
                v["rows"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_racing_ingestion_loses_and_doubles_nothing() {
    let env = TestEnv::new("maint").await;
    let mut cfg = env.config();
    let polls = minutes() * 4;
    cfg.source.minutes = Some(minutes());
    let produced_from = chrono::Utc::now().timestamp_millis();
    produce(&cfg, Source::Replay, CancellationToken::new())
        .await
        .expect("produce");
    let produced_to = chrono::Utc::now().timestamp_millis();

    // Small epochs make many small files; the processor's own schedule compacts every 2 s.
    let mut run = env.run_cmd(&[
        "--max-batch-events",
        "300",
        "--max-batch-delay",
        "50ms",
        "--trigger",
        "available-now",
    ]);
    run.env("RTLAKE_LAKE_MAINTENANCE_INTERVAL", "2s")
        .env("RTLAKE_LAKE_TARGET_FILE_SIZE", "1MiB")
        .env(
            "RTLAKE_LOG",
            "warn,buoyant_kernel=off,rtlake_stream::maintain=info",
        );
    let mut child = Guard::spawn(run);
    // Meanwhile, compactions from outside, as an operator would run them.
    let t0 = Instant::now();
    // 10 minutes for the short form; the long form gets 30 s per minute of replay (a 240-minute
    // replay, 2.6 million events in 300-event epochs, drained at 48-100k events a minute here).
    let deadline = Duration::from_secs(600.max(minutes() * 30));
    let mut rounds = 0;
    while child.0.try_wait().unwrap().is_none() {
        assert!(
            t0.elapsed() < deadline,
            "the drain did not finish within {} s",
            deadline.as_secs()
        );
        if env.lake().join("bronze/station_status/_delta_log").exists() {
            lake_cmd(&env, &["optimize", "--target-size", "1MiB"]);
            rounds += 1;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let status_code = child.wait_within(10);
    assert!(status_code.success(), "rtlake run failed");
    assert!(
        rounds >= 2,
        "compactions raced the drain only {rounds} times"
    );

    let check = async |when: &str| {
        let expected = common::replay_lines(polls);
        let got = env.bronze_lines().await;
        assert_eq!(got.len(), expected.len(), "{when}: bronze rows");
        assert_eq!(checksum(got), checksum(expected), "{when}: bronze content");
        let changes = common::replay_changes(polls);
        let silver = env.silver_lines().await;
        assert_eq!(silver.len(), changes.len(), "{when}: silver rows");
        assert_eq!(
            checksum(silver),
            checksum(changes),
            "{when}: silver content"
        );
        // The upserted table too (compactions raced its merges): each station's newest row.
        let q = |sql: &str| {
            let lake = env.lake();
            let sql = sql.to_string();
            async move {
                let rows = common::sql_rows(&lake, &sql).await;
                checksum(rows.into_iter().map(|r| r.join(",")).collect())
            }
        };
        assert_eq!(
            q("SELECT station_id, bikes_parked, polled_at FROM silver.station_latest").await,
            q("SELECT station_id, bikes_parked, polled_at FROM (SELECT *, row_number() OVER (PARTITION BY station_id ORDER BY polled_at DESC) AS n FROM bronze.station_status) WHERE n = 1").await,
            "{when}: silver.station_latest"
        );
    };
    check("after the race").await;

    // Each table's freshness: its commits recorded the newest event they hold, the Kafka
    // timestamp of the last message produced (not a commit's time, which came later).
    let out = lake_cmd(&env, &["status", "--format", "json"]);
    for table in [
        "bronze.station_status",
        "silver.station_changes",
        "silver.station_latest",
    ] {
        let v: serde_json::Value = out
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .find(|v: &serde_json::Value| v["table"] == table)
            .unwrap_or_else(|| panic!("{table} in lake status: {out}"));
        let newest = v["newest_event_ms"]
            .as_i64()
            .unwrap_or_else(|| panic!("{table}: {v}"));
        assert!(
            (produced_from..=produced_to).contains(&newest),
            "{table}: newest event {newest} is not among the produced messages' timestamps ({produced_from}..={produced_to})"
        );
        assert!(v["freshness_s"].as_f64().is_some_and(|f| f >= 0.0), "{v}");
    }
    let table = lake_cmd(&env, &["status"]);
    assert!(
        table
            .lines()
            .next()
            .is_some_and(|h| h.ends_with("freshness")),
        "{table}"
    );

    let before = status(&env);
    let out = lake_cmd(&env, &["optimize", "--table", "bronze.station_status"]);
    assert!(out.contains("bronze.station_status:"), "{out}");
    let after = status(&env);
    let files = |s: &[(String, u64, u64)], t: &str| s.iter().find(|r| r.0 == t).unwrap().clone();
    let (b, a) = (
        files(&before, "bronze.station_status"),
        files(&after, "bronze.station_status"),
    );
    assert_eq!(a.2, b.2, "compaction keeps the row count");
    assert!(
        a.1 <= b.1 && a.1 <= 4,
        "bronze is a file per partition (hour) after compaction: {b:?} → {a:?}"
    );
    assert_eq!(
        a.2 as usize,
        common::replay_lines(polls).len(),
        "status counts rows from the files' statistics"
    );

    let out = lake_cmd(&env, &["checkpoint"]);
    assert!(out.contains("checkpoint at version"), "{out}");
    let out = lake_cmd(&env, &["vacuum", "--retention", "0s"]);
    assert!(out.contains("unreferenced files"), "{out}");
    check("after checkpoint and vacuum").await;

    // An outside reader agrees on every table's count.
    for (table, _, rows) in status(&env) {
        let path = env.lake().join(table.replace('.', "/"));
        let out = std::process::Command::new(python())
            .args([
                "-c",
                // os._exit: deltalake 1.6's wheel can abort in interpreter teardown.
                "import deltalake, os, sys; print(deltalake.DeltaTable(sys.argv[1]).to_pyarrow_table().num_rows, flush=True); os._exit(0)",
            ])
            .arg(&path)
            .output()
            .expect("python");
        assert!(
            out.status.success(),
            "{table} at {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            rows.to_string(),
            "{table}: deltalake and rtlake lake status disagree"
        );
    }
}

#[test]
fn an_unknown_table_is_an_error_that_lists_the_tables() {
    let dir = tempfile::tempdir().unwrap();
    let out = rtlake()
        .args(["lake", "optimize", "--table", "bronze.nope", "--lake"])
        .arg(dir.path())
        .output_within(60)
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no table bronze.nope"), "{err}");
}
