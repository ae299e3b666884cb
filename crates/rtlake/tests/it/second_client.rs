//! A second, independent Kafka client (kafka-python, pure Python) against the same broker:
//! it produces the station events rtlake runs on, reads the Kafka sink's topic with its
//! headers, and lists the consumer groups with their lag. So the broker's wire protocol, and
//! rtlake's use of it, are checked by an implementation that is not librdkafka.

use crate::common;

use common::{OutputWithin, TestEnv, python};
use std::io::Write;

const POLLS: u64 = 8;

fn script() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/second_client.py")
}

fn py(args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(python())
        .arg(script())
        .args(args)
        .output_within(300)
        .unwrap_or_else(|e| {
            panic!(
                "run {} (scripts/setup.sh installs kafka-python in it): {e}",
                python()
            )
        });
    assert!(
        out.status.success(),
        "second_client.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from second_client.py")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_produces_reads_the_sinks_headers_and_sees_the_groups_lag() {
    let env = TestEnv::new("second").await;
    // The events of the first polls, as the producer would publish them.
    let mut r = common::replay();
    let events = env.dir.path().join("events.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&events).unwrap());
    for _ in 0..POLLS {
        for e in r.next_poll().events {
            writeln!(f, "{}", e.to_json()).unwrap();
        }
    }
    drop(f);
    env.cluster().ensure_topic(&env.topic).await.unwrap();
    let sent = py(&[
        "produce",
        &env.brokers,
        &env.topic,
        events.to_str().unwrap(),
    ]);
    let total = POLLS as usize * 2721;
    assert_eq!(sent["sent"].as_u64().unwrap() as usize, total);

    // The default pipeline, with its Kafka sink on a topic of this test.
    let changes = format!("{}-changes", env.topic);
    let pipeline = env.dir.path().join("pipeline.toml");
    std::fs::write(
        &pipeline,
        format!(
            "pipeline = \"second\"\n[[sinks]]\noperator = \"bronze\"\n[[sinks]]\noperator = \"changes\"\n[[sinks]]\noperator = \"changes\"\ntopic = \"{changes}\"\n"
        ),
    )
    .unwrap();
    let out = env
        .run_cmd(&[
            "--pipeline",
            pipeline.to_str().unwrap(),
            "--trigger",
            "available-now",
            "--metrics-listen",
            "off",
        ])
        .output_within(300)
        .unwrap();
    assert!(
        out.status.success(),
        "rtlake run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = env.bronze_lines().await;
    assert_eq!(got.len(), total, "bronze holds what kafka-python produced");
    assert_eq!(
        common::checksum(got),
        common::checksum(common::replay_lines(POLLS))
    );
    let silver: usize = env.sql("SELECT count(*) FROM silver.station_changes").await[0][0]
        .parse()
        .unwrap();
    assert!(silver > 100, "the change rule ran: {silver} rows");

    let report = py(&["check", &env.brokers, &changes, "second", &env.group]);
    eprintln!("{}", serde_json::to_string_pretty(&report).unwrap());
    assert_eq!(
        report["messages"].as_u64().unwrap() as usize,
        silver,
        "one message per change row"
    );
    assert_eq!(
        report["with_headers"], report["messages"],
        "every message carries the rtlake headers"
    );
    assert_eq!(
        report["distinct_origins"], report["messages"],
        "each names its own input message"
    );
    let sample = &report["sample"];
    assert_eq!(
        sample["key"], sample["value"]["station_id"],
        "keyed by station"
    );
    assert!(
        sample["value"]["rentals"].is_number() && sample["value"]["returns"].is_number(),
        "{sample}"
    );
    let listed: Vec<&str> = report["groups_listed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap())
        .collect();
    assert!(
        listed.contains(&env.group.as_str()),
        "the pipeline's group is listed: {listed:?}"
    );
    let own = report["own_group"].as_str().unwrap();
    for group in [env.group.as_str(), own] {
        let lag = report["lag"][group].as_array().unwrap();
        assert!(!lag.is_empty(), "group {group} has committed offsets");
        for p in lag {
            assert_eq!(p["lag"], 0, "group {group} has read everything: {p}");
        }
    }
    let sum: i64 = report["lag"][env.group.as_str()]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["committed"].as_i64().unwrap())
        .sum();
    assert_eq!(
        sum as usize, total,
        "rtlake run's committed offsets cover every event"
    );
}
