//! Backfill (the Lambda architecture's batch layer on the same engine): silver and gold rebuilt
//! from a lake's bronze table with `rtlake run --source bronze:LAKE` are row for row what
//! streaming made, whatever the epochs; and a second backfill adds nothing.

use crate::common;

use common::chaos_kit as kit;

use common::{OutputWithin, Succeeds, TestEnv, rtlake};
use rtlake_bikes::produce::{Source, produce};
use tokio_util::sync::CancellationToken;

/// Silver's and both gold tables' rows as text (no processing times in them).
async fn rows(lake: &std::path::Path) -> std::collections::BTreeMap<&'static str, Vec<String>> {
    let mut out = std::collections::BTreeMap::new();
    for (name, q) in [
        (
            "silver",
            "SELECT station_id, CAST(polled_at AS BIGINT), CAST(prev_polled_at AS BIGINT), bikes_parked, prev_bikes_parked, rentals, returns, district FROM silver.station_changes",
        ),
        ("hourly", "SELECT * FROM gold.station_hourly"),
        ("district", "SELECT * FROM gold.district_5min"),
    ] {
        let r = common::sql_rows(lake, q).await;
        out.insert(name, r.into_iter().map(|r| r.join(",")).collect());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_from_bronze_rebuilds_silver_and_gold_row_for_row() {
    let env = TestEnv::new("backfill").await;
    let mut cfg = env.config();
    // 08:45 to 09:05: the 08:00 hour closes, so gold.station_hourly has rows too.
    cfg.source.start = "2025-10-01T08:45:00+09:00".into();
    cfg.source.minutes = Some(20);
    produce(&cfg, Source::Replay, CancellationToken::new())
        .await
        .expect("produce");
    let pipeline = kit::pipeline(env.dir.path());
    // Streaming, in small epochs as a live run makes them.
    env.run_cmd(&["--trigger", "available-now", "--max-batch-events", "3000"])
        .arg("--pipeline")
        .arg(&pipeline)
        .succeeds_within(600);

    // The backfill: another lake, from the first one's bronze, in big epochs.
    let rebuilt = env.dir.path().join("rebuilt");
    let backfill = || {
        rtlake()
            .args([
                "run",
                "--max-batch-events",
                "50000",
                "--metrics-listen",
                "off",
                "--source",
            ])
            .arg(format!("bronze:{}", env.lake().display()))
            .arg("--lake")
            .arg(&rebuilt)
            .arg("--pipeline")
            .arg(&pipeline)
            .output_within(600)
            .unwrap()
    };
    let out = backfill();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let streamed = rows(&env.lake()).await;
    let got = rows(&rebuilt).await;
    assert!(
        !rebuilt.join("bronze/station_status/_delta_log").exists(),
        "bronze is the input, not an output"
    );
    for table in ["silver", "hourly", "district"] {
        let (mut want, mut have) = (streamed[table].clone(), got[table].clone());
        assert!(!want.is_empty(), "streaming made {table} rows");
        want.sort();
        have.sort();
        assert_eq!(
            common::checksum(have.clone()),
            common::checksum(want.clone()),
            "{table}: {} rows rebuilt, {} streamed",
            have.len(),
            want.len()
        );
    }

    // Again: the rebuilt tables hold every offset already, so nothing is added.
    let out = backfill();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = rows(&rebuilt).await;
    for table in ["silver", "hourly", "district"] {
        assert_eq!(
            again[table].len(),
            got[table].len(),
            "{table} after a second backfill"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_republishes_bronze_and_a_pipeline_on_it_lands_the_same_events() {
    let env = TestEnv::new("replay").await;
    let mut cfg = env.config();
    cfg.source.minutes = Some(2);
    produce(&cfg, Source::Replay, CancellationToken::new())
        .await
        .expect("produce");
    env.run_cmd(&["--trigger", "available-now"])
        .succeeds_within(300);

    // History back into a new topic, then the pipeline on that topic into a new lake.
    let topic = format!("{}-again", env.topic);
    let out = rtlake()
        .args([
            "replay",
            "--brokers",
            &env.brokers,
            "--to",
            &topic,
            "--lake",
        ])
        .arg(env.lake())
        .succeeds_within(300);
    let said = String::from_utf8_lossy(&out.stdout);
    let expected = common::replay_lines(8);
    assert!(
        said.contains(&format!("replayed {} events", expected.len())),
        "{said}"
    );
    let second = env.dir.path().join("second");
    rtlake()
        .args(["run", "--brokers", &env.brokers, "--topic", &topic])
        .args([
            "--group",
            &format!("{}-again", env.group),
            "--trigger",
            "available-now",
        ])
        .args(["--metrics-listen", "off", "--lake"])
        .arg(&second)
        .succeeds_within(300);
    let lines = common::sql_rows(
        &second,
        "SELECT station_id, CAST(polled_at AS BIGINT), bikes_parked FROM bronze.station_status",
    )
    .await
    .into_iter()
    .map(|r| r.join(","))
    .collect::<Vec<_>>();
    assert_eq!(lines.len(), expected.len());
    assert_eq!(common::checksum(lines), common::checksum(expected));
    let err = rtlake()
        .args([
            "replay",
            "--brokers",
            &env.brokers,
            "--to",
            &topic,
            "--table",
            "gold.station_hourly",
            "--lake",
        ])
        .arg(env.lake())
        .output_within(60)
        .unwrap();
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("only bronze.station_status"));
}
