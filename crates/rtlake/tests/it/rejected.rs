//! Bad messages land in `_rejected` with a reason, the pipeline goes on, and every offset ends in
//! exactly one table, also when the processor dies between the two tables' commits.

use crate::common;

use common::{OutputWithin, Succeeds, TestEnv};
use rtlake_kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::Duration;

const GOOD: &str = r#"{"rackTotCnt":"15","stationName":"102. 망원역 1번출구 앞","parkingBikeTotCnt":"16","shared":"107","stationLatitude":"37.55564880","stationLongitude":"126.91062927","stationId":"ST-4","polledAt":"2025-10-01T08:00:15+09:00"}"#;

/// Runs the default pipeline over each named JSON Lines text from a file, into a lake of that
/// name under `dir`, with `args`; the lakes in order.
fn run_files(
    dir: &std::path::Path,
    texts: [(&str, String); 2],
    args: &[&str],
) -> Vec<std::path::PathBuf> {
    let mut lakes = Vec::new();
    for (name, text) in texts {
        let file = dir.join(format!("{name}.jsonl"));
        std::fs::write(&file, text).unwrap();
        let lake = dir.join(name);
        common::rtlake()
            .args(["run", "--metrics-listen", "off"])
            .args(args)
            .arg("--lake")
            .arg(&lake)
            .arg(format!("--source=file:{}", file.display()))
            .succeeds_within(300);
        lakes.push(lake);
    }
    lakes
}

/// The replay's first `polls` polls as JSON Lines, and the same with one copy of poll 10's first
/// event made by `copy(line, polled_at)`, before the original or after it.
fn with_one_copy(
    polls: u64,
    before: bool,
    copy: impl Fn(&str, &str) -> String,
) -> (String, String) {
    let mut r = common::replay();
    let (mut clean, mut bad) = (String::new(), String::new());
    for poll in 0..polls {
        for (i, e) in r.next_poll().events.iter().enumerate() {
            let line = e.to_json() + "\n";
            let changed = (poll == 10 && i == 0).then(|| copy(&line, &e.polled_at));
            assert_ne!(changed.as_ref(), Some(&line));
            if before && let Some(c) = &changed {
                bad.push_str(c);
            }
            clean.push_str(&line);
            bad.push_str(&line);
            if !before && let Some(c) = &changed {
                bad.push_str(c);
            }
        }
    }
    (clean, bad)
}

/// A query's rows, each joined with commas.
async fn rows(lake: &std::path::Path, q: &str) -> Vec<String> {
    common::sql_rows(lake, q)
        .await
        .into_iter()
        .map(|r| r.join(","))
        .collect()
}

async fn send_all(env: &TestEnv, values: &[String]) {
    env.cluster().ensure_topic(&env.topic).await.unwrap();
    let p: FutureProducer =
        rtlake_kafka::client::producer(&env.config().kafka, &env.config().producer)
            .create()
            .unwrap();
    for v in values {
        p.send(
            FutureRecord::to(&env.topic).key("ST-4").payload(v),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    }
}

fn messages() -> Vec<String> {
    vec![
        GOOD.to_string(),
        "this is not json".to_string(),
        GOOD.replace(r#""stationId":"ST-4","#, ""),
        GOOD.replace(
            r#""parkingBikeTotCnt":"16""#,
            r#""parkingBikeTotCnt":"lots""#,
        ),
        GOOD.replace("2025-10-01T08:00:15+09:00", "2025-10-01 8am"),
        GOOD.replace("08:00:15", "08:00:30"),
        GOOD.replace("08:00:15", "08:00:30"), // a duplicate snapshot: stale for silver
    ]
}

async fn env_count(env: &TestEnv, table: &str) -> usize {
    env.sql(&format!("SELECT count(*) FROM {table}")).await[0][0]
        .parse()
        .unwrap()
}

async fn check_tables(env: &TestEnv) {
    let bronze = env
        .sql("SELECT kafka_offset FROM bronze.station_status ORDER BY 1")
        .await;
    assert_eq!(
        bronze,
        vec![
            vec!["0".to_string()],
            vec!["5".to_string()],
            vec!["6".to_string()]
        ]
    );
    let rej = env.sql("SELECT kafka_offset, reason, error, sink, CAST(value AS VARCHAR) FROM _rejected ORDER BY kafka_offset").await;
    let offsets: Vec<&str> = rej.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        offsets,
        ["1", "2", "3", "4", "6"],
        "each bad message once: {rej:?}"
    );
    let reasons: Vec<&str> = rej.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(
        reasons,
        ["decode", "decode", "validation", "validation", "stale"]
    );
    assert_eq!(
        rej[4][3], "silver.station_changes",
        "stale is silver's rejection only"
    );
    assert!(
        rej[4][2].contains("not after the stored one"),
        "{}",
        rej[4][2]
    );
    // 16 bikes at 08:00:15 and again at 08:00:30: no change row.
    assert_eq!(env_count(env, "silver.station_changes").await, 0);
    assert!(
        rej[1][2].contains("stationId"),
        "missing field named: {}",
        rej[1][2]
    );
    assert!(
        rej[2][2].contains("parkingBikeTotCnt") && rej[2][2].contains("lots"),
        "{}",
        rej[2][2]
    );
    assert!(rej[3][2].contains("polledAt"), "{}", rej[3][2]);
    assert!(rej[..4].iter().all(|r| r[3] == "bronze.station_status"));
    assert_eq!(rej[0][4], "this is not json", "the raw value is kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_go_to_rejected_with_a_reason() {
    let env = TestEnv::new("rejected").await;
    let mut cfg = env.config();
    cfg.kafka.partitions = 1;
    env.cluster()
        .create_topic(&rtlake_kafka::admin::TopicSpec {
            name: env.topic.clone(),
            partitions: 1,
            replication_factor: -1,
            config: vec![],
        })
        .await
        .unwrap();
    send_all(&env, &messages()).await;
    env.run_cmd(&["--trigger", "available-now"])
        .succeeds_within(300);
    check_tables(&env).await;

    // `topics describe` shows the group caught up: lag 0.
    let out = common::rtlake()
        .args([
            "topics",
            "describe",
            &env.topic,
            "--brokers",
            &env.brokers,
            "--group",
            &env.group,
        ])
        .output_within(300)
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find(|l| l.starts_with(&env.group))
        .unwrap_or_else(|| panic!("group missing:\n{text}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[1..], ["0", "7", "0"], "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_two_tables_commits_loses_and_duplicates_nothing() {
    let env = TestEnv::new("crash").await;
    env.cluster()
        .create_topic(&rtlake_kafka::admin::TopicSpec {
            name: env.topic.clone(),
            partitions: 1,
            replication_factor: -1,
            config: vec![],
        })
        .await
        .unwrap();
    send_all(&env, &messages()).await;
    let out = env
        .run_cmd(&["--trigger", "available-now"])
        .env("RTLAKE_FAILPOINT", "after-commit:_rejected")
        .output_within(300)
        .unwrap();
    assert!(!out.status.success(), "the failpoint aborts the process");
    // Only the first table (_rejected) advanced.
    assert_eq!(env_count(&env, "_rejected").await, 5);
    assert_eq!(env_count(&env, "bronze.station_status").await, 0);
    env.run_cmd(&["--trigger", "available-now"])
        .succeeds_within(300);
    check_tables(&env).await;
}

/// One event stamped 2099 (a bad clock upstream) goes to `_rejected` as `future` and changes
/// nothing else: before the guard it moved its partition's watermark and its station's state to
/// 2099, and every later event was rejected as late by gold and stale by silver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_from_the_far_future_is_rejected_and_moves_no_watermark() {
    const POLLS: u64 = 28; // the first 5-minute district window closes (lateness 0s)
    let dir = tempfile::tempdir().unwrap();
    let (clean, bad) = with_one_copy(POLLS, true, |line, at| {
        line.replace(at, "2099-01-01T00:00:00+09:00")
    });
    let lakes = run_files(
        dir.path(),
        [("clean", clean), ("bad", bad)],
        &["--lateness", "0s"],
    );
    let rejected = rows(&lakes[1], "SELECT reason, error, sink FROM _rejected").await;
    assert_eq!(
        rejected.len(),
        1,
        "only the future event is rejected: {rejected:?}"
    );
    assert!(
        rejected[0].starts_with("future,event time 2099-01-01")
            && rejected[0].contains("run.max-future is 1h"),
        "{}",
        rejected[0]
    );
    assert!(
        rows(&lakes[0], "SELECT reason FROM _rejected")
            .await
            .is_empty()
    );

    let silver = "SELECT station_id, CAST(polled_at AS BIGINT), CAST(prev_polled_at AS BIGINT), bikes_parked, prev_bikes_parked, rentals, returns FROM silver.station_changes";
    assert_eq!(
        common::checksum(rows(&lakes[1], silver).await),
        common::checksum(common::replay_changes(POLLS)),
        "silver holds the change rule's rows"
    );
    let gold = "SELECT district, CAST(window_start AS BIGINT), rentals, returns, bikes_parked, stations_empty FROM gold.district_5min";
    let want = rows(&lakes[0], gold).await;
    assert!(!want.is_empty(), "a window closed in the clean run");
    assert_eq!(
        common::checksum(rows(&lakes[1], gold).await),
        common::checksum(want),
        "gold as without the bad event"
    );
    let bronze =
        "SELECT station_id, CAST(polled_at AS BIGINT), bikes_parked FROM bronze.station_status";
    assert_eq!(
        common::checksum(rows(&lakes[1], bronze).await),
        common::checksum(common::replay_lines(POLLS)),
        "bronze holds every good event"
    );
}

/// One copy of an event stamped minutes ahead of the rest of its partition (a bad clock
/// upstream, within run.max-future) goes to `_rejected` as `future` and changes nothing else.
/// Before the screen it dragged its partition's watermark ahead (on the 90-minute replay, with
/// 08:10 stamped 08:40, 435,190 events went to `_rejected` as late) and pinned its station's
/// state, so the station's next events were stale. Here scaled down: lateness 1 minute, the
/// copy 3 minutes ahead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_ahead_of_its_partition_moves_no_watermark_and_pins_no_state() {
    const POLLS: u64 = 40; // 10 minutes: both 5-minute district windows close (lateness 1m)
    let dir = tempfile::tempdir().unwrap();
    let (clean, bad) = with_one_copy(POLLS, false, |line, at| {
        let ahead =
            chrono::DateTime::parse_from_rfc3339(at).unwrap() + chrono::Duration::minutes(3);
        line.replace(at, &ahead.to_rfc3339())
    });
    let lakes = run_files(
        dir.path(),
        [("clean", clean), ("bad", bad)],
        &["--lateness", "1m"],
    );
    let rejected = rows(&lakes[1], "SELECT reason, error, sink FROM _rejected").await;
    assert_eq!(
        rejected.len(),
        1,
        "only the copy ahead: {:?}",
        &rejected[..rejected.len().min(3)]
    );
    assert!(
        rejected[0].starts_with("future,")
            && rejected[0].contains("polledAt 2025-")
            && rejected[0].contains("ahead of partition"),
        "{}",
        rejected[0]
    );
    for (what, q) in [
        (
            "silver",
            "SELECT station_id, CAST(polled_at AS BIGINT), CAST(prev_polled_at AS BIGINT), bikes_parked, prev_bikes_parked, rentals, returns FROM silver.station_changes",
        ),
        (
            "gold.district_5min",
            "SELECT district, CAST(window_start AS BIGINT), rentals, returns, bikes_parked, stations_empty FROM gold.district_5min",
        ),
        (
            "bronze",
            "SELECT station_id, CAST(polled_at AS BIGINT), bikes_parked FROM bronze.station_status",
        ),
    ] {
        let want = rows(&lakes[0], q).await;
        assert!(!want.is_empty(), "{what} has rows in the clean run");
        assert_eq!(
            common::checksum(rows(&lakes[1], q).await),
            common::checksum(want),
            "{what} as without the copy ahead"
        );
    }
}
