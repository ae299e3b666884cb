//! gold.station_hourly and gold.district_5min agree with the same figures computed by SQL over
//! bronze and silver, and hold only final windows (the available-now trigger does not flush open ones, as in Spark).

use crate::common;

use common::{Succeeds, TestEnv};
use rtlake_bikes::produce::{Source, produce};
use tokio_util::sync::CancellationToken;

/// A recorded-data folder with only the stations where bikes move between 08:19 and 08:21.
fn small_city(dir: &std::path::Path) -> std::path::PathBuf {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/seoul-bike");
    let trips = std::fs::read_to_string(data.join("trips_2025-10-01.csv")).unwrap();
    let busy: std::collections::HashSet<String> = trips
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f[0] >= "2025-10-01 08:19:00" && f[0] < "2025-10-01 08:21:00")
        .flat_map(|f| [f[2].to_string(), f[3].to_string()])
        .collect();
    let mut rows = Vec::new();
    for page in [
        "bikeList_now_1_1000.json",
        "bikeList_now_1001_2000.json",
        "bikeList_now_2001_3000.json",
    ] {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(data.join(page)).unwrap()).unwrap();
        rows.extend(
            v["rentBikeStatus"]["row"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| busy.contains(r["stationId"].as_str().unwrap()))
                .cloned(),
        );
    }
    assert!(rows.len() > 20, "{} busy stations", rows.len());
    std::fs::create_dir_all(dir).unwrap();
    let page = serde_json::json!({"rentBikeStatus": {"list_total_count": rows.len(), "RESULT": {"CODE": "INFO-000", "MESSAGE": ""}, "row": rows}});
    std::fs::write(dir.join("bikeList_now_1_1000.json"), page.to_string()).unwrap();
    std::fs::write(dir.join("trips_2025-10-01.csv"), trips).unwrap();
    dir.to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hourly_windows_match_sql_over_bronze_and_silver() {
    let env = TestEnv::new("gold").await;
    let mut cfg = env.config();
    // The recorded trips stop before the end of each hour, so a window that closes cheaply has
    // no rentals. A city of only the stations busy around 08:19 keeps the volume small while the
    // 08:00 window closes with rentals in it: 08:19:30 to 09:00:15 KST, no lateness allowed.
    cfg.source.data_dir = Some(small_city(&env.dir.path().join("city")));
    cfg.source.start = "2025-10-01T08:19:30+09:00".into();
    cfg.source.minutes = Some(41);
    produce(&cfg, Source::Replay, CancellationToken::new())
        .await
        .expect("produce");
    env.run_cmd(&["--trigger", "available-now", "--lateness", "0s"])
        .succeeds_within(300);

    let stations = env
        .sql("SELECT count(DISTINCT station_id) FROM bronze.station_status")
        .await[0][0]
        .clone();
    let windows = env.sql("SELECT CAST(window_start AS VARCHAR), count(*), min(snapshots), max(snapshots) FROM gold.station_hourly GROUP BY 1").await;
    assert_eq!(
        windows,
        vec![vec![
            "2025-09-30T23:00:00Z".to_string(),
            stations.clone(),
            "162".into(),
            "162".into()
        ]],
        "only the final 08:00 KST window"
    );

    // The reference: figures of the snapshots polled in [08:00, 09:00) KST.
    let reference = "
        WITH snaps AS (
            SELECT station_id, polled_at, bikes_parked,
                   LEAD(polled_at) OVER (PARTITION BY station_id ORDER BY polled_at) AS next_at
            FROM bronze.station_status),
        hourly AS (
            SELECT station_id, count(*) AS snapshots, avg(bikes_parked) AS avg_b, min(bikes_parked) AS min_b,
                   max(bikes_parked) AS max_b,
                   sum(CASE WHEN bikes_parked = 0
                       THEN (CASE WHEN next_at IS NULL THEN 0.0
                                  WHEN next_at < TIMESTAMP '2025-10-01T00:00:00Z' THEN to_unixtime(next_at)
                                  ELSE to_unixtime(TIMESTAMP '2025-10-01T00:00:00Z') END - to_unixtime(polled_at)) / 60.0
                       ELSE 0.0 END) AS empty_min
            FROM snaps WHERE polled_at < TIMESTAMP '2025-10-01T00:00:00Z' GROUP BY station_id),
        changes AS (
            SELECT station_id, sum(rentals) AS rentals, sum(returns) AS returns FROM silver.station_changes
            WHERE polled_at < TIMESTAMP '2025-10-01T00:00:00Z' GROUP BY station_id)
        SELECT count(*) AS stations,
               sum(CASE WHEN g.snapshots <> h.snapshots OR abs(g.avg_bikes_parked - h.avg_b) > 1e-9
                         OR g.min_bikes_parked <> h.min_b OR g.max_bikes_parked <> h.max_b
                         OR g.rentals <> coalesce(c.rentals, 0) OR g.returns <> coalesce(c.returns, 0)
                         OR abs(g.empty_minutes - h.empty_min) > 1e-9 THEN 1 ELSE 0 END) AS mismatches,
               sum(g.rentals) AS rentals, sum(g.empty_minutes) AS empty
        FROM gold.station_hourly g JOIN hourly h ON g.station_id = h.station_id
        LEFT JOIN changes c ON g.station_id = c.station_id";
    let r = env.sql(reference).await;
    assert_eq!(r[0][0], stations, "every station joined: {r:?}");
    assert_eq!(
        r[0][1], "0",
        "gold disagrees with SQL over bronze and silver: {r:?}"
    );
    let rentals: i64 = r[0][2].parse().unwrap();
    let empty: f64 = r[0][3].parse().unwrap();
    assert!(
        rentals > 0 && empty > 0.0,
        "the window saw rentals and empty stations: {r:?}"
    );

    // gold.district_5min: the per-partition partials, summed by the catalog's view, against the
    // same figures by SQL: changes from silver, each station's last in-window snapshot from
    // bronze. Windows that start before 09:00 KST are final (the watermark is 09:00:15).
    let district = "
        WITH snaps AS (
            SELECT district, station_id, bikes_parked, date_bin(INTERVAL '5 minutes', polled_at) AS w,
                   ROW_NUMBER() OVER (PARTITION BY station_id, date_bin(INTERVAL '5 minutes', polled_at) ORDER BY polled_at DESC) AS rn
            FROM bronze.station_status),
        last AS (
            SELECT district, w, sum(bikes_parked) AS bikes, sum(CASE WHEN bikes_parked = 0 THEN 1 ELSE 0 END) AS empty
            FROM snaps WHERE rn = 1 GROUP BY district, w),
        ch AS (
            SELECT district, date_bin(INTERVAL '5 minutes', polled_at) AS w, sum(rentals) AS rentals, sum(returns) AS returns
            FROM silver.station_changes GROUP BY 1, 2),
        ref AS (
            SELECT l.district, l.w, l.bikes, l.empty, coalesce(c.rentals, 0) AS rentals, coalesce(c.returns, 0) AS returns
            FROM last l LEFT JOIN ch c ON l.district = c.district AND l.w = c.w
            WHERE l.w < TIMESTAMP '2025-10-01T00:00:00Z')
        SELECT (SELECT count(*) FROM ref) AS ref_windows,
               (SELECT count(*) FROM gold.district_5min_total) AS gold_windows,
               count(*),
               sum(CASE WHEN g.rentals <> r.rentals OR g.returns <> r.returns OR g.bikes_parked <> r.bikes
                         OR g.stations_empty <> r.empty THEN 1 ELSE 0 END),
               sum(g.rentals), sum(g.stations_empty)
        FROM ref r JOIN gold.district_5min_total g ON g.district = r.district AND g.window_start = r.w";
    let d = env.sql(district).await;
    assert_eq!(
        (d[0][0].as_str(), d[0][1].as_str()),
        (d[0][2].as_str(), d[0][2].as_str()),
        "the same district windows: {d:?}"
    );
    assert!(
        d[0][2].parse::<i64>().unwrap() > 20,
        "many district windows: {d:?}"
    );
    assert_eq!(
        d[0][3], "0",
        "gold.district_5min disagrees with SQL over bronze and silver: {d:?}"
    );
    assert!(
        d[0][4].parse::<i64>().unwrap() > 0,
        "rentals in the district windows: {d:?}"
    );

    // Nothing was late in an in-order replay.
    assert_eq!(env.sql("SELECT count(*) FROM _rejected").await[0][0], "0");
}
