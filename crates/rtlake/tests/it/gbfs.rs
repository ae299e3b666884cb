//! A second, different pipeline end to end: a GBFS system (a local server speaking GBFS 2.3)
//! polled by `rtlake produce gbfs`, landed by `pipelines/gbfs.toml`, which is TOML and SQL only.
//! The snapshots and the hourly figures equal what the server served.

use crate::common;

use common::{Succeeds, TestEnv, sql_rows};
use rtlake_bikes::fake_gbfs::FakeGbfs;

const STATIONS: u32 = 30;
const POLLS: u64 = 131; // two hours and ten minutes of the system's clock, minutes 0 to 130

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gbfs_system_lands_by_declaration() {
    let env = TestEnv::new("gbfs").await;
    let system = FakeGbfs::start(STATIONS).await.unwrap();
    let out = common::rtlake()
        .args(["produce", "gbfs", &system.url, "--brokers", &env.brokers])
        .args(["--topic", &env.topic, "--interval", "20ms"])
        .args(["--polls", &POLLS.to_string()])
        .succeeds_within(300);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!(
            "published {POLLS} polls, {} events",
            POLLS * u64::from(STATIONS)
        )),
        "{said}"
    );

    let pipeline =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines/gbfs.toml");
    env.run_cmd(&["--trigger", "available-now", "--metrics-listen", "off"])
        .arg("--pipeline")
        .arg(&pipeline)
        .succeeds_within(300);

    let lake = env.lake();
    let n = sql_rows(&lake, "SELECT count(*), count(DISTINCT station_id), min(hour), max(hour) FROM gbfs.station_status").await;
    assert_eq!(
        n[0],
        [
            (POLLS * u64::from(STATIONS)).to_string(),
            STATIONS.to_string(),
            "0".into(),
            "2".into()
        ]
    );
    let mut got: Vec<String> = sql_rows(
        &lake,
        "SELECT station_id, CAST(to_unixtime(window_start) AS BIGINT), snapshots, \
         CAST(round(avg_bikes * 1000) AS BIGINT), CAST(min_bikes AS BIGINT), \
         CAST(max_bikes AS BIGINT), CAST(last_bikes AS BIGINT) \
         FROM gbfs.station_hourly ORDER BY 1, 2",
    )
    .await
    .into_iter()
    .map(|r| r.join(","))
    .collect();
    // The watermark is 10 minutes behind the last report (minute 130): hours 0 and 1 are final.
    let mut want = Vec::new();
    for i in 0..STATIONS {
        for hour in 0..2u64 {
            let polls: Vec<i64> = (hour * 60..hour * 60 + 60)
                .map(|p| FakeGbfs::bikes(i, p))
                .collect();
            let avg = polls.iter().sum::<i64>() as f64 / 60.0;
            want.push(format!(
                "s{i},{},60,{},{},{},{}",
                FakeGbfs::reported_at(hour * 60),
                (avg * 1000.0).round() as i64,
                polls.iter().min().unwrap(),
                polls.iter().max().unwrap(),
                polls[59]
            ));
        }
    }
    want.sort();
    got.sort();
    assert_eq!(got, want);

    // The change rule, declared: per station, each report whose count moved.
    let mut got: Vec<String> = sql_rows(
        &lake,
        "SELECT station_id, count(*), sum(rentals), sum(returns), \
         sum(CASE WHEN prev_bikes - bikes = rentals - returns THEN 1 ELSE 0 END) \
         FROM gbfs.station_changes GROUP BY station_id",
    )
    .await
    .into_iter()
    .map(|r| r.join(","))
    .collect();
    got.sort();
    let mut want = Vec::new();
    for i in 0..STATIONS {
        let (mut n, mut rentals, mut returns) = (0, 0, 0);
        for p in 1..POLLS {
            let d = FakeGbfs::bikes(i, p - 1) - FakeGbfs::bikes(i, p);
            if d != 0 {
                n += 1;
                rentals += d.max(0);
                returns += (-d).max(0);
            }
        }
        want.push(format!("s{i},{n},{rentals},{returns},{n}"));
    }
    want.sort();
    assert_eq!(got, want, "rentals and returns per station");
}
