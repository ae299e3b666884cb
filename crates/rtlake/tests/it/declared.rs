//! A pipeline for a new schema, declared in TOML and SQL only: shop orders, not bikes. The
//! messages are decoded by a declared schema (amounts sometimes as strings, some undecodable),
//! filtered and joined with a static CSV table in SQL, and aggregated in 5-minute windows under
//! a 2-minute watermark (late rows to `_rejected`); two tables and a Kafka topic take the rows.
//! The processor is SIGKILLed mid-stream and restarted: every table equals a model computed
//! here from the messages, each row once.

use crate::common;

use common::{OutputWithin, Succeeds, TestEnv, read_topic, signal, sql_rows, wait_for};
use rtlake_kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::BTreeMap;
use std::time::Duration;

const ORDERS: usize = 3000;
const CUSTOMERS: usize = 20;
const LATENESS_US: i64 = 120_000_000;
const WINDOW_US: i64 = 300_000_000;
const BASE_US: i64 = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z

/// One produced order: its partition, and what the pipeline should make of it.
struct Order {
    partition: i32,
    json: String,
    /// (order_id, customer, amount, event time µs) when it decodes.
    decoded: Option<(String, usize, f64, i64)>,
}

fn region(customer: usize) -> Option<&'static str> {
    // The last customer is missing from the table: the join drops its orders.
    (customer < CUSTOMERS - 1).then(|| ["north", "south", "east"][customer % 3])
}

fn orders() -> Vec<Order> {
    let mut out = Vec::new();
    for i in 0..ORDERS {
        let customer = (i * 7) % CUSTOMERS;
        let id = format!("o-{i:05}");
        // About 1.2 s apart, a little out of order; every 250th is 20 minutes behind (late).
        let mut t = BASE_US + i as i64 * 1_200_000 + ((i * 13) % 7) as i64 * 1_000_000;
        if i % 250 == 249 {
            t -= 1_200_000_000;
        }
        let amount = ((i * 37) % 200) as f64 / 4.0 - 5.0; // some zero or below: filtered out
        let at = chrono::DateTime::from_timestamp_micros(t)
            .unwrap()
            .to_rfc3339();
        let (json, decoded) = match i % 97 {
            // An amount that is not a number: refused by the decoder, naming the field.
            13 => (
                format!(
                    r#"{{"order_id":"{id}","customer":"c{customer}","amount":"lots","ordered_at":"{at}"}}"#
                ),
                None,
            ),
            // Not JSON.
            31 => (format!("order {id}"), None),
            // Amounts as strings, like the bikeList API's numbers.
            n if n % 2 == 0 => (
                format!(
                    r#"{{"order_id":"{id}","customer":"c{customer}","amount":"{amount}","ordered_at":"{at}","note":"x"}}"#
                ),
                Some((id, customer, amount, t)),
            ),
            _ => (
                format!(
                    r#"{{"order_id":"{id}","customer":"c{customer}","amount":{amount},"ordered_at":"{at}"}}"#
                ),
                Some((id, customer, amount, t)),
            ),
        };
        out.push(Order {
            partition: (customer % 3) as i32,
            json,
            decoded,
        });
    }
    out
}

/// What the tables should hold: the joined orders, the final windows (per input partition),
/// and the late orders.
struct Model {
    orders: Vec<String>,
    windows: Vec<String>,
    late: usize,
    undecodable: usize,
}

/// Amounts are quarters: in cents they compare exactly.
fn cents(x: f64) -> i64 {
    (x * 100.0).round() as i64
}

fn model(all: &[Order]) -> Model {
    let mut orders = Vec::new();
    let mut windows = Vec::new();
    let mut late = 0;
    for p in 0..3 {
        let mut max_seen: Option<i64> = None;
        let mut wins: BTreeMap<(i64, &str), (u64, f64, f64)> = BTreeMap::new();
        for o in all.iter().filter(|o| o.partition == p) {
            let Some((id, c, amount, t)) = &o.decoded else {
                continue;
            };
            let Some(r) = region(*c).filter(|_| *amount > 0.0) else {
                continue;
            };
            orders.push(format!("{id},c{c},{r},{}", cents(*amount)));
            if max_seen.is_some_and(|m| *t < m - LATENESS_US) {
                late += 1;
                continue;
            }
            max_seen = Some(max_seen.map_or(*t, |m| m.max(*t)));
            let start = t.div_euclid(WINDOW_US) * WINDOW_US;
            let w = wins.entry((start, r)).or_insert((0, 0.0, f64::MIN));
            w.0 += 1;
            w.1 += amount;
            w.2 = w.2.max(*amount);
        }
        let watermark = max_seen.unwrap() - LATENESS_US;
        for ((start, r), (n, sum, max)) in wins {
            if start + WINDOW_US <= watermark {
                windows.push(format!(
                    "{},{r},{n},{},{}",
                    start / 1_000_000,
                    cents(sum),
                    cents(max)
                ));
            }
        }
    }
    orders.sort();
    windows.sort();
    let undecodable = all.iter().filter(|o| o.decoded.is_none()).count();
    Model {
        orders,
        windows,
        late,
        undecodable,
    }
}

fn pipeline(dir: &std::path::Path, sink_topic: &str) -> std::path::PathBuf {
    let customers = dir.join("customers.csv");
    let mut csv = String::from("id,region,since\n");
    for c in 0..CUSTOMERS {
        if let Some(r) = region(c) {
            csv.push_str(&format!("c{c},{r},2024-0{}-01\n", 1 + c % 9));
        }
    }
    std::fs::write(&customers, csv).unwrap();
    let file = dir.join("orders.toml");
    std::fs::write(
        &file,
        format!(
            r#"pipeline = "orders"
lateness = "2m"

[input]
format = "json"
schema = "order_id STRING NOT NULL, customer STRING, amount DOUBLE, ordered_at TIMESTAMP NOT NULL"
event-time = "ordered_at"

[[tables]]
name = "customers"
path = "{}"

[[stages]]
name = "orders"
sql = """
SELECT o.order_id, o.customer, c.region, o.amount, o.ordered_at
FROM input o JOIN customers c ON o.customer = c.id
WHERE o.amount > 0
"""

[[stages]]
name = "region-5min"
input = "orders"
window = "tumbling 5m"
group-by = ["region"]
aggregates = "count(*) AS orders, sum(amount) AS revenue, max(amount) AS biggest"

[[sinks]]
operator = "orders"
table = "shop.orders"

[[sinks]]
operator = "region-5min"
table = "shop.region_5min"

[[sinks]]
operator = "orders"
topic = "{sink_topic}"
key = "customer"
"#,
            customers.display()
        ),
    )
    .unwrap();
    file
}

async fn produce(env: &TestEnv, all: &[Order]) {
    env.cluster().ensure_topic(&env.topic).await.unwrap();
    let p: FutureProducer =
        rtlake_kafka::client::producer(&env.config().kafka, &env.config().producer)
            .create()
            .unwrap();
    for o in all {
        p.send(
            FutureRecord::to(&env.topic)
                .partition(o.partition)
                .key("k")
                .payload(&o.json),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    }
}

fn rows(r: Vec<Vec<String>>) -> Vec<String> {
    let mut v: Vec<String> = r.into_iter().map(|r| r.join(",")).collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_pipeline_over_a_new_schema_lands_exactly_once_across_a_sigkill() {
    let env = TestEnv::new("orders").await;
    let all = orders();
    let want = model(&all);
    assert!(want.late > 0 && want.undecodable > 0 && !want.windows.is_empty());
    produce(&env, &all).await;
    let sink_topic = format!("{}-out", env.topic);
    let file = pipeline(env.dir.path(), &sink_topic);
    let run = |extra: &[&str]| {
        let mut c = env.run_cmd(
            &[
                &["--metrics-listen", "off", "--max-batch-events", "100"],
                extra,
            ]
            .concat(),
        );
        c.arg("--pipeline").arg(&file);
        c
    };

    // Killed mid-stream, then drained by a second run.
    let mut first = common::Guard::spawn(run(&[]));
    let lake = env.lake();
    wait_for("some orders in the lake", 120, async || {
        lake.join("shop/orders/_delta_log").exists()
            && sql_rows(&lake, "SELECT count(*) FROM shop.orders").await[0][0] != "0"
    })
    .await;
    signal(first.0.id(), "-KILL");
    let _ = first.0.wait();
    let held = sql_rows(&lake, "SELECT count(*) FROM shop.orders").await[0][0].clone();
    assert_ne!(held, want.orders.len().to_string(), "killed before the end");
    run(&["--trigger", "available-now"]).succeeds_within(300);

    let got = rows(
        sql_rows(
            &lake,
            "SELECT order_id, customer, region, CAST(round(amount * 100) AS BIGINT) FROM shop.orders",
        )
        .await,
    );
    assert_eq!(got.len(), want.orders.len(), "each joined order once");
    assert_eq!(got, want.orders);
    let got = rows(
        sql_rows(
            &lake,
            "SELECT CAST(to_unixtime(window_start) AS BIGINT), region, orders, CAST(round(revenue * 100) AS BIGINT), CAST(round(biggest * 100) AS BIGINT) FROM shop.region_5min",
        )
        .await,
    );
    assert_eq!(
        got, want.windows,
        "the final windows of every partition, once"
    );
    let rejected = sql_rows(
        &lake,
        "SELECT reason, sink, count(*) FROM _rejected GROUP BY reason, sink ORDER BY reason",
    )
    .await;
    assert_eq!(
        rejected,
        vec![
            vec![
                "decode".to_string(),
                "input".into(),
                want.undecodable.to_string()
            ],
            vec![
                "late".to_string(),
                "shop.region_5min".into(),
                want.late.to_string()
            ],
        ]
    );
    let errors = sql_rows(
        &lake,
        "SELECT DISTINCT error FROM _rejected WHERE reason = 'decode' AND error LIKE '%amount%'",
    )
    .await;
    assert!(
        errors
            .iter()
            .any(|e| e[0].contains("field amount") && e[0].contains("lots")),
        "the decoder names the field and the value: {errors:?}"
    );

    // The Kafka sink: every joined order, at least once (exactly once with transactions).
    let published = read_topic(&env.brokers, &sink_topic);
    let mut ids: Vec<String> = published
        .iter()
        .map(|(json, ..)| {
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            v["order_id"].as_str().unwrap().to_string()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), want.orders.len());
}

#[test]
fn a_bad_declaration_fails_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = pipeline(dir.path(), "t-out");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("tumbling 5m", "tumbling five minutes");
    std::fs::write(&file, text).unwrap();
    let out = common::rtlake()
        .args(["run", "--metrics-listen", "off", "--pipeline"])
        .arg(&file)
        .output_within(60)
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("run.stages[1].window")
            && err.contains("tumbling five minutes")
            && err.contains("orders.toml, line "),
        "{err}"
    );
}

/// A SQL function registered by a domain crate (`district(lat, lon)` from `rtlake-bikes`) is
/// there in a declared pipeline's SQL, and places each station where bronze does.
#[tokio::test]
async fn a_declared_stage_calls_a_registered_sql_function() {
    let dir = tempfile::tempdir().unwrap();
    let events = common::replay_file(dir.path(), 2);
    let file = dir.path().join("stations.toml");
    std::fs::write(
        &file,
        r#"pipeline = "stations"
[input]
schema = "stationId STRING NOT NULL, stationLatitude DOUBLE, stationLongitude DOUBLE, polledAt TIMESTAMP NOT NULL"
event-time = "polledAt"

[[stages]]
name = "placed"
sql = 'SELECT "stationId" AS station_id, district("stationLatitude", "stationLongitude") AS district FROM input'

[[sinks]]
operator = "placed"
table = "geo.stations"
"#,
    )
    .unwrap();
    let run = |lake: &std::path::Path, pipeline: Option<&std::path::Path>| {
        let mut c = common::rtlake();
        c.args(["run", "--metrics-listen", "off", "--lake"])
            .arg(lake)
            .arg(format!("--source=file:{}", events.display()));
        if let Some(p) = pipeline {
            c.arg("--pipeline").arg(p);
        }
        c.succeeds_within(300);
    };
    let (declared, bikes) = (dir.path().join("declared"), dir.path().join("bikes"));
    run(&declared, Some(&file));
    run(&bikes, None);
    let q = |t: &str| {
        format!("SELECT DISTINCT station_id, district FROM {t} ORDER BY station_id, district")
    };
    let placed = sql_rows(&declared, &q("geo.stations")).await;
    let bronze = sql_rows(&bikes, &q("bronze.station_status")).await;
    assert!(placed.len() > 2000, "{} stations", placed.len());
    let districts: std::collections::BTreeSet<_> = placed.iter().map(|r| r[1].clone()).collect();
    assert_eq!(districts.len(), 25, "{districts:?}");
    assert_eq!(placed, bronze);
}
