//! The dashboard in a real browser (headless Chromium, driven over the DevTools protocol by
//! `tests/browser/cdp.mjs`) while `rtlake demo` runs: what a person would see, live. Also: the
//! Grafana dashboard only uses metrics that /metrics serves, and promtool accepts the alerts.

use crate::common;

use common::Guard;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The browser, one JSON command and answer per line.
struct Browser {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Browser {
    fn start() -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/cdp.mjs");
        let mut child = Command::new("node")
            .arg(script)
            .arg(std::env::var("RTLAKE_CHROMIUM").unwrap_or_else(|_| "chromium".into()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node runs (scripts/setup.sh installs nodejs and chromium)");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            stdin,
            stdout,
        }
    }

    fn call(&mut self, cmd: serde_json::Value) -> serde_json::Value {
        writeln!(self.stdin, "{cmd}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("browser said {line:?}: {e}"));
        assert!(v.get("error").is_none(), "{cmd} failed: {v}");
        assert_eq!(
            v["console_errors"],
            serde_json::json!([]),
            "the page threw: {v}"
        );
        v
    }

    fn eval(&mut self, js: &str) -> serde_json::Value {
        self.call(serde_json::json!({ "eval": js }))["value"].clone()
    }

    /// Evaluates `js` until it is truthy (or fails after `secs`).
    fn wait_for(&mut self, js: &str, secs: u64) -> serde_json::Value {
        let t0 = Instant::now();
        loop {
            let v = self.eval(js);
            if !(v.is_null() || v == false || v == 0 || v == "") {
                return v;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(secs),
                "waited {secs} s for {js}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn sql(base: &str, q: &str) -> serde_json::Value {
    let r = reqwest::Client::new()
        .post(format!("{base}/api/sql"))
        .json(&serde_json::json!({ "sql": q }))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    body["rows"].clone()
}

/// Screenshots go to a temporary folder, and to `RTLAKE_SCREENSHOTS` (e.g. docs/) when set.
fn screenshot(b: &mut Browser, dir: &Path, name: &str) {
    let file = dir.join(name);
    b.call(serde_json::json!({ "screenshot": file }));
    let len = std::fs::metadata(&file).unwrap().len();
    assert!(len > 10_000, "{name} is a real picture: {len} bytes");
    if let Ok(out) = std::env::var("RTLAKE_SCREENSHOTS") {
        std::fs::copy(&file, Path::new(&out).join(name)).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_every_station_live_and_its_history() {
    let dir = tempfile::tempdir().unwrap();
    let (bport, dport) = (common::free_port(), common::free_port());
    let base = format!("http://127.0.0.1:{dport}");
    let mut demo = common::rtlake();
    demo.args([
        "demo",
        "--speed",
        "4",
        "--listen",
        &format!("127.0.0.1:{bport}"),
        "--dashboard",
        &format!("127.0.0.1:{dport}"),
        "--dir",
    ])
    .arg(dir.path().join("demo"))
    .stdout(Stdio::null());
    let _demo = Guard::spawn(demo);

    // Wait for a complete poll in the lake.
    let t0 = Instant::now();
    loop {
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "the demo never landed a poll"
        );
        if reqwest::get(format!("{base}/api/stations")).await.is_ok() {
            let rows = sql(&base, "SELECT count(*) AS n FROM bronze.station_status").await;
            if rows[0]["n"].as_u64().unwrap_or(0) >= 2721 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let mut b = Browser::start();
    b.call(serde_json::json!({ "navigate": format!("{base}/") }));
    b.wait_for("window.rtlakeReady === true", 30);
    let dots = b.wait_for("document.querySelectorAll('circle.station').length >= 2721 && document.querySelectorAll('circle.station').length", 30);
    assert_eq!(dots, 2721, "one dot per station");
    b.eval("window.rtlakeMarker = 'same page'");

    // The page's bikes total equals SQL's over the same poll.
    let t0 = Instant::now();
    loop {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the page's bikes total never matched SQL"
        );
        let total = b.eval("Number(document.getElementById('bikes-total').dataset.value)");
        let poll = b
            .eval("Number(document.getElementById('last-poll').dataset.value)")
            .as_i64()
            .unwrap();
        let rows = sql(&base, &format!("SELECT count(*) AS n, sum(bikes_parked) AS bikes FROM bronze.station_status WHERE CAST(polled_at AS BIGINT) = {}", poll * 1000)).await;
        let shown = b.eval("document.getElementById('bikes-total').textContent");
        if rows[0]["n"] == 2721
            && rows[0]["bikes"] == total
            && total == b.eval("Number(document.getElementById('bikes-total').dataset.value)")
        {
            assert_eq!(
                shown.as_str().unwrap().replace(',', ""),
                total.to_string(),
                "the figure on screen"
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }

    // The next poll arrives without a reload.
    let before = b
        .eval("Number(document.getElementById('last-poll').dataset.value)")
        .as_i64()
        .unwrap();
    b.wait_for(
        &format!("Number(document.getElementById('last-poll').dataset.value) > {before}"),
        30,
    );
    assert_eq!(
        b.eval("window.rtlakeMarker"),
        "same page",
        "updated live, not reloaded"
    );
    assert!(
        b.eval("Number(document.getElementById('updates').textContent.replace(/,/g, ''))")
            .as_i64()
            .unwrap()
            > 0
    );
    screenshot(&mut b, dir.path(), "dashboard.png");

    // Click a station: its history from the lake (which holds two polls by now).
    let t0 = Instant::now();
    while sql(
        &base,
        "SELECT count(*) AS n FROM bronze.station_status WHERE station_id = 'ST-10'",
    )
    .await[0]["n"]
        .as_u64()
        .unwrap_or(0)
        < 2
    {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the lake never held a second poll"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    b.call(serde_json::json!({ "click": "#st-ST-10" }));
    let snapshots = b.wait_for(
        "Number(document.getElementById('history-note').dataset.snapshots || 0)",
        20,
    );
    assert!(
        snapshots.as_i64().unwrap() >= 2,
        "a history of several snapshots: {snapshots}"
    );
    let title = b.eval("document.getElementById('history-title').textContent");
    assert!(title.as_str().unwrap().contains("ST-10"), "{title}");
    let points = b.eval("document.querySelectorAll('#history-chart path.series').length");
    assert_eq!(points, 1, "the history is drawn");
    screenshot(&mut b, dir.path(), "dashboard-station.png");

    // Dashboard latency, as the page measured it: Kafka timestamp of a burst's oldest event to
    // its arrival in the page.
    let lat: Vec<i64> = serde_json::from_value(b.eval("window.rtlakeLatencies || []")).unwrap();
    // The page saw a new poll arrive above, so it measured at least that burst; each delay is
    // a real one, within seconds: events reach the page live, not from a cache filled minutes
    // ago (a loose bound: this is no benchmark).
    assert!(!lat.is_empty(), "no burst measured");
    assert!(lat.iter().all(|&ms| (0..15_000).contains(&ms)), "{lat:?}");
    let mut sorted = lat.clone();
    sorted.sort_unstable();
    let p99 = sorted[((sorted.len() as f64 * 0.99).ceil() as usize).saturating_sub(1)];
    eprintln!(
        "dashboard latency over {} bursts: p50 {} ms, p99 {} ms, max {} ms",
        sorted.len(),
        sorted[sorted.len() / 2],
        p99,
        sorted[sorted.len() - 1]
    );

    // The pipeline and Kafka pages.
    b.call(serde_json::json!({ "navigate": format!("{base}/pipeline") }));
    let parts = b.wait_for(
        "document.querySelectorAll('section.pipeline tr[data-partition]').length",
        20,
    );
    assert_eq!(parts, 3, "a row per partition");
    b.wait_for(
        "[...document.querySelectorAll('td.lag')].every(td => td.textContent !== '–')",
        20,
    );
    screenshot(&mut b, dir.path(), "pipeline.png");
    b.call(serde_json::json!({ "navigate": format!("{base}/kafka") }));
    b.wait_for(
        "document.querySelector(\"section.topic[data-topic='bike.station-status']\") !== null",
        20,
    );
    b.call(
        serde_json::json!({ "click": "section.topic[data-topic='bike.station-status'] button" }),
    );
    let peeked = b.wait_for("document.querySelectorAll('#peek tbody tr').length", 20);
    assert!(
        peeked.as_i64().unwrap() >= 3,
        "the last messages of each partition"
    );
    b.eval("window.scrollTo(0, 0)");
    screenshot(&mut b, dir.path(), "kafka.png");

    // Every metric the Grafana dashboard plots is served (the demo serves all components').
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let scrape =
        prometheus_parse::Scrape::parse(metrics.lines().map(|l| Ok(l.to_string()))).unwrap();
    // Histograms are named without their _bucket/_sum/_count suffixes once parsed.
    let base = |n: &str| {
        n.trim_end_matches("_bucket")
            .trim_end_matches("_sum")
            .trim_end_matches("_count")
            .to_string()
    };
    let served: std::collections::BTreeSet<String> =
        scrape.samples.iter().map(|s| base(&s.metric)).collect();
    let grafana = std::fs::read_to_string(repo().join("deploy/grafana/rtlake.json")).unwrap();
    let names = regex_lite::Regex::new(r"rtlake_[a-z0-9_]+").unwrap();
    let used: std::collections::BTreeSet<String> = names
        .find_iter(&grafana)
        .map(|m| base(m.as_str()))
        .collect();
    assert!(used.len() >= 10, "{used:?}");
    let missing: Vec<&String> = used.iter().filter(|n| !served.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "Grafana uses metrics that /metrics does not serve: {missing:?}"
    );
}

#[test]
fn promtool_accepts_the_alert_rules_and_the_scrape_config() {
    let dir = repo().join("deploy/prometheus");
    for args in [
        vec!["check", "rules", "alerts.yml"],
        vec!["check", "config", "prometheus.yml"],
    ] {
        let out = Command::new("promtool")
            .args(&args)
            .current_dir(&dir)
            .output()
            .expect("promtool (scripts/setup.sh installs prometheus)");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rules = std::fs::read_to_string(dir.join("alerts.yml")).unwrap();
    assert!(
        rules.contains("rtlake_run_consumer_lag_messages") && rules.contains("deriv("),
        "an alert on lag that keeps growing"
    );
}
