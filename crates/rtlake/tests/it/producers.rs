//! The bike producer's other sources end to end: the live API (against the local fake that speaks
//! its wire format) and a JSON Lines file through the CLI; and the SQL prompt.

use crate::common;

use common::{OutputWithin, Succeeds, TestEnv, rtlake};
use rtlake_bikes::fake_api::FakeApi;
use rtlake_bikes::produce::{Source, produce};
use std::io::Write;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_api_source_publishes_every_station_of_each_poll_keyed_by_id() {
    let env = TestEnv::new("api").await;
    let api = FakeApi::start().await.unwrap();
    let key_file = env.dir.path().join("key");
    std::fs::write(&key_file, "good\n").unwrap();
    let mut cfg = env.config();
    cfg.source.kind = rtlake_bikes::config::SourceKind::SeoulApi;
    cfg.source.api_base = api.base.clone();
    cfg.source.api_key_file = Some(key_file);
    cfg.source.interval = rtlake_core::units::HumanDuration::from_secs(1);
    let token = CancellationToken::new();
    let task = {
        let (cfg, token) = (cfg.clone(), token.clone());
        tokio::spawn(async move { produce(&cfg, Source::SeoulApi, token).await })
    };
    let t0 = Instant::now();
    loop {
        let held: i64 = match env.cluster().watermarks(&env.topic).await {
            Ok(w) => w.iter().map(|(_, lo, hi)| hi - lo).sum(),
            Err(_) => 0,
        };
        if held >= 2 * 2721 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "two polls were not published"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    token.cancel();
    let report = task.await.unwrap().expect("producer");
    assert!(
        report.polls >= 2 && report.sent == report.polls * 2721 && report.delivered == report.sent,
        "{report:?}"
    );

    env.run_cmd(&["--trigger", "available-now"])
        .succeeds_within(300);
    let r = env.sql("SELECT count(*), count(DISTINCT polled_at), count(DISTINCT station_id) FROM bronze.station_status").await;
    assert_eq!(
        r[0],
        vec![
            report.sent.to_string(),
            report.polls.to_string(),
            "2721".to_string()
        ]
    );
    // Keyed by station: a station's events all sit in one partition.
    let split = env.sql("SELECT station_id FROM bronze.station_status GROUP BY station_id HAVING count(DISTINCT kafka_partition) > 1").await;
    assert!(
        split.is_empty(),
        "stations spread over partitions: {split:?}"
    );
    // polledAt is the poll's start, now, in Seoul time, to the second.
    let age = env
        .sql("SELECT to_unixtime(now()) - to_unixtime(max(polled_at)) FROM bronze.station_status")
        .await;
    let age: i64 = age[0][0].parse().unwrap();
    assert!((0..120).contains(&age), "polled_at is {age} s old");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_api_key_stops_the_producer_with_a_clear_message_and_no_key_shown() {
    let env = TestEnv::new("badkey").await;
    let api = FakeApi::start().await.unwrap();
    let key_file = env.dir.path().join("key");
    std::fs::write(&key_file, "bad").unwrap();
    // Run the CLI on a thread: the fake API is served by this test's runtime.
    let brokers = env.brokers.clone();
    let base = api.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        rtlake()
            .args([
                "produce",
                "bikes",
                "--source",
                "seoul-api",
                "--brokers",
                &brokers,
                "--api-base",
                &base,
                "--api-key-file",
            ])
            .arg(&key_file)
            .output_within(300)
            .unwrap()
    })
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("INFO-100") && err.contains("SEOUL_API_KEY"),
        "{err}"
    );
    assert!(!err.contains("/bad/"), "the key must not be shown: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_lines_file_is_published_as_is_and_bad_lines_are_rejected() {
    let env = TestEnv::new("file").await;
    let path = env.dir.path().join("events.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    let start = rtlake_core::time::parse_rfc3339("2025-10-01T09:00:00+09:00").unwrap();
    let mut replay = rtlake_bikes::replay::Replay::new(
        rtlake_bikes::replay::RecordedData::builtin().unwrap(),
        start,
        Duration::from_secs(15),
        1,
    );
    for e in replay.next_poll().events {
        writeln!(f, "{}", e.to_json()).unwrap();
    }
    writeln!(f, "garbage line").unwrap();
    drop(f);
    let out = rtlake()
        .args([
            "produce",
            "bikes",
            "--source",
            "file",
            "--brokers",
            &env.brokers,
            "--topic",
            &env.topic,
        ])
        .arg(&path)
        .succeeds_within(300);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("produced 2722 events"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    env.run_cmd(&["--trigger", "available-now"])
        .succeeds_within(300);
    assert_eq!(
        env.sql("SELECT count(*) FROM bronze.station_status").await[0][0],
        "2721"
    );
    let rej = env
        .sql("SELECT reason, kafka_key IS NULL FROM _rejected")
        .await;
    assert_eq!(rej, vec![vec!["decode".to_string(), "true".to_string()]]);

    // The SQL prompt reads statements from standard input.
    let mut child = rtlake()
        .args(["sql", "--lake"])
        .arg(env.lake())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"SHOW TABLES;\nDESCRIBE bronze.station_status;\nEXPLAIN SELECT count(*)\n  FROM bronze.station_status;\n\\q\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "bronze.station_status",
        "public._rejected",
        "polled_at",
        "Timestamp(µs, \"UTC\")",
        "physical_plan",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    // JSON output.
    let out = rtlake()
        .args(["sql", "--format", "json", "--lake"])
        .arg(env.lake())
        .arg("SELECT district, count(*) AS n FROM bronze.station_status GROUP BY district ORDER BY n DESC LIMIT 1")
        .output_within(300)
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("one JSON object per line");
    assert!(
        v["n"].as_i64().unwrap() > 0 && v["district"].is_string(),
        "{v}"
    );
}
