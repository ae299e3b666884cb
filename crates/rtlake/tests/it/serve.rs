//! `rtlake run`'s /metrics once the topic is drained (lag 0, lake offsets = high watermarks),
//! and `rtlake serve`'s read-only SQL API (JSON, Arrow IPC, row limit, refusals) and OpenAPI.

use crate::common;

use common::{Guard, TestEnv, rtlake};
use rtlake_bikes::produce::{Source, produce};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

async fn get(url: &str) -> Option<String> {
    let r = reqwest::get(url).await.ok()?;
    r.status().is_success().then_some(())?;
    r.text().await.ok()
}

/// The samples of a /metrics answer, parsed with a Prometheus text-format parser.
fn parse(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("valid Prometheus text format")
}

fn gauge(s: &prometheus_parse::Sample) -> f64 {
    match s.value {
        prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v)
        | prometheus_parse::Value::Counter(v) => v,
        _ => f64::NAN,
    }
}

/// The values of metric `name` by its label `by`.
fn series(scrape: &prometheus_parse::Scrape, name: &str, by: &str) -> BTreeMap<String, f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .map(|s| (s.labels.get(by).unwrap_or("?").to_string(), gauge(s)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drained_lag_is_zero_and_the_sql_api_only_reads() {
    let env = TestEnv::new("serve").await;
    let mut cfg = env.config();
    cfg.source.minutes = Some(2);
    let produced_from = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    let produced = produce(&cfg, Source::Replay, CancellationToken::new())
        .await
        .expect("produce")
        .delivered;

    // A long-running processor with its metrics endpoint.
    let mport = common::free_port();
    let _run = Guard::spawn(env.run_cmd(&["--metrics-listen", &format!("127.0.0.1:{mport}")]));
    let his: BTreeMap<String, f64> = env
        .cluster()
        .watermarks(&env.topic)
        .await
        .unwrap()
        .into_iter()
        .map(|(p, _, hi)| (p.to_string(), hi as f64))
        .collect();
    let t0 = Instant::now();
    let (lag, committed) = loop {
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "the processor did not drain the topic"
        );
        if let Some(text) = get(&format!("http://127.0.0.1:{mport}/metrics")).await {
            let scrape = parse(&text);
            let series = |name: &str| series(&scrape, name, "partition");
            let (lag, committed) = (
                series("rtlake_run_consumer_lag_messages"),
                series("rtlake_run_committed_offset"),
            );
            if committed == his && lag.len() == his.len() {
                break (lag, committed);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        lag.values().all(|v| *v == 0.0),
        "lag per partition after draining: {lag:?}"
    );
    assert_eq!(
        committed, his,
        "the lake's offsets equal the broker's high watermarks"
    );
    assert_eq!(his.values().sum::<f64>() as u64, produced);

    // Each table's freshness: the Kafka timestamp of the newest event it holds (one produced by
    // this test), and now minus that, computed when /metrics is asked.
    let text = get(&format!("http://127.0.0.1:{mport}/metrics"))
        .await
        .expect("metrics");
    let asked_at = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    let scrape = parse(&text);
    let of = |name: &str| series(&scrape, name, "table");
    let (newest, freshness) = (
        of("rtlake_run_newest_event_timestamp_seconds"),
        of("rtlake_run_freshness_seconds"),
    );
    let bronze = newest
        .get("bronze.station_status")
        .copied()
        .unwrap_or_else(|| panic!("no newest event for bronze: {newest:?}"));
    assert!(
        bronze >= produced_from - 1.0 && bronze <= asked_at,
        "bronze's newest event ({bronze}) was produced by this test (from {produced_from})"
    );
    let fresh = freshness["bronze.station_status"];
    assert!(
        (fresh - (asked_at - bronze)).abs() < 2.0,
        "freshness {fresh} s is now minus the newest event ({} s)",
        asked_at - bronze
    );

    // The web server over the same lake.
    let port = common::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut serve = rtlake();
    serve
        .args([
            "serve",
            "--brokers",
            &env.brokers,
            "--topic",
            &env.topic,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--lake",
        ])
        .arg(env.lake());
    let _serve = Guard::spawn(serve);
    let t0 = Instant::now();
    while get(&format!("{base}/api/openapi.json")).await.is_none() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "rtlake serve did not come up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The pipeline page's figures come from the lake's checkpoint: each partition's newest
    // event is the one /metrics gave for the tables (the same epochs committed both).
    let status: serde_json::Value =
        serde_json::from_str(&get(&format!("{base}/api/pipeline")).await.unwrap()).unwrap();
    let newest_ms: Vec<i64> = status["pipelines"][0]["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| p["newest_event_ms"].as_i64().expect("newest_event_ms"))
        .collect();
    assert_eq!(newest_ms.len(), his.len(), "{status}");
    assert_eq!(
        *newest_ms.iter().max().unwrap() as f64 / 1000.0,
        bronze,
        "the checkpoint's newest event equals /metrics'"
    );
    let api: serde_json::Value =
        serde_json::from_str(&get(&format!("{base}/api/openapi.json")).await.unwrap()).unwrap();
    assert!(
        api["paths"]["/api/sql"]["post"].is_object(),
        "the OpenAPI description documents POST /api/sql"
    );

    let client = reqwest::Client::new();
    let post = |sql: &str, accept: Option<&str>| {
        let mut r = client
            .post(format!("{base}/api/sql"))
            .json(&serde_json::json!({ "sql": sql }));
        if let Some(a) = accept {
            r = r.header("Accept", a);
        }
        r.send()
    };
    let r = post("SELECT count(*) AS n FROM bronze.station_status", None)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["rows"][0]["n"], produced, "{body}");
    assert_eq!(body["columns"][0]["name"], "n");

    let r = post(
        "SELECT station_id, bikes_parked FROM bronze.station_status ORDER BY station_id LIMIT 3",
        Some("application/vnd.apache.arrow.stream"),
    )
    .await
    .unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "application/vnd.apache.arrow.stream"
    );
    let bytes = r.bytes().await.unwrap();
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes.to_vec()), None)
            .unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 3, "an Arrow IPC stream with the rows");

    let r = client
        .post(format!("{base}/api/sql"))
        .json(&serde_json::json!({"sql": "SELECT * FROM bronze.station_status", "limit": 5}))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (body["row_count"].as_u64(), body["truncated"].as_bool()),
        (Some(5), Some(true)),
        "the row limit"
    );

    for (sql, says) in [
        ("DROP TABLE bronze.station_status", "DROP"),
        (
            "INSERT INTO bronze.station_status SELECT * FROM bronze.station_status",
            "INSERT",
        ),
        ("COPY bronze.station_status TO '/tmp/stolen.csv'", "COPY"),
        ("CREATE TABLE t AS SELECT 1", "CREATE"),
        (
            "SELECT * INTO bars_x FROM bronze.station_status",
            "SELECT ... INTO",
        ),
        (
            "SELECT 1; DROP TABLE bronze.station_status",
            "one statement per request",
        ),
    ] {
        let r = post(sql, None).await.unwrap();
        assert_eq!(r.status(), 400, "{sql}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains(says),
            "{sql}: {body}"
        );
    }
    let r = post("SELECT nope FROM bronze.station_status", None)
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        r.text().await.unwrap().contains("nope"),
        "a failing query names what is wrong"
    );
    // The lake is untouched by the refused statements.
    let r = post("SELECT count(*) AS n FROM bronze.station_status", None)
        .await
        .unwrap();
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["rows"][0]["n"],
        produced
    );
    assert!(!std::path::Path::new("/tmp/stolen.csv").exists());
    let r = post("SELECT count(*) FROM bars_x", None).await.unwrap();
    assert_eq!(r.status(), 400, "SELECT INTO made no table");

    // A view file planted in the lake that is not a query is never run; the server goes on.
    let views = env.lake().join("_views");
    std::fs::create_dir_all(&views).unwrap();
    std::fs::write(
        views.join("gold.evil.sql"),
        "CREATE EXTERNAL TABLE pw (line VARCHAR) STORED AS CSV LOCATION '/etc/hostname'",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await; // the server's session is reopened
    let r = post("SELECT * FROM pw", None).await.unwrap();
    assert_eq!(r.status(), 400, "the planted view made no table");
    let r = post("SELECT count(*) AS n FROM bronze.station_status", None)
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the server answers beside a refused view");
    std::fs::remove_file(views.join("gold.evil.sql")).unwrap();

    let text = get(&format!("{base}/metrics")).await.unwrap();
    let scrape = parse(&text);
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "rtlake_serve_requests_total"
                && s.labels.get("route") == Some("/api/sql"))
    );
}
