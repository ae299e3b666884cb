//! Change data capture from a real database: PostgreSQL's changes captured by Debezium (in Kafka
//! Connect, `scripts/cdc.sh`) into Apache Kafka, and landed by a declared pipeline into two
//! upsert tables. The workload inserts, updates (some rows many times), deletes and re-inserts
//! while `rtlake run` is SIGKILLed twice; at the end each lake table equals `SELECT *` of its
//! Postgres table, row for row.
//!
//! Needs `RTLAKE_TEST_CDC` = "<postgres URL> <Connect URL>", which `scripts/test.sh` sets in its
//! Apache Kafka phase (Debezium writes to that cluster); elsewhere the test is skipped.

use crate::common;

use common::{Guard, OutputWithin, Succeeds, TestEnv, signal, sql_rows, wait_for};
use std::process::Command;

const CUSTOMERS: i64 = 2000;
const ORDERS: i64 = 3000;
const ROUNDS: i64 = 6;

/// Where Postgres and Kafka Connect are, from `RTLAKE_TEST_CDC`.
fn servers() -> Option<(String, String)> {
    let v = std::env::var("RTLAKE_TEST_CDC").ok()?;
    let (pg, connect) = v.split_once(' ')?;
    Some((pg.to_string(), connect.to_string()))
}

/// The machine's psql (Debian's wrapper, or the newest server's own).
fn psql() -> String {
    if std::path::Path::new("/usr/bin/psql").exists() {
        return "/usr/bin/psql".into();
    }
    let mut found: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin/psql")).collect())
        .unwrap_or_default();
    found.sort();
    found
        .pop()
        .map(|p: std::path::PathBuf| p.display().to_string())
        .unwrap_or_else(|| "psql".into())
}

/// Runs `sql` (statements separated by `;`, each its own transaction) in database `url`,
/// returning what it printed.
fn pg(url: &str, sql: &str) -> String {
    let out = Command::new(psql())
        .args([url, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql])
        .output_within(300)
        .unwrap();
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A table's rows as CSV lines, sorted, from Postgres.
fn pg_rows(url: &str, query: &str) -> Vec<String> {
    let mut v: Vec<String> = pg(url, &format!("COPY ({query}) TO STDOUT WITH CSV"))
        .lines()
        .map(String::from)
        .collect();
    v.sort();
    v
}

/// The same from the lake.
async fn lake_rows(lake: &std::path::Path, query: &str) -> Vec<String> {
    let mut v: Vec<String> = sql_rows(lake, query)
        .await
        .into_iter()
        .map(|r| r.join(","))
        .collect();
    v.sort();
    v
}

/// One round of the workload: inserts, updates (ten rows many times), deletes, re-inserts of
/// rows deleted the round before, and orders inserted, paid and deleted.
fn round(url: &str, r: i64) {
    let first = CUSTOMERS + (r - 1) * 500 + 1;
    let mut sql = format!(
        "INSERT INTO customers SELECT g, 'c' || g, 0, false FROM generate_series({first}, {}) g;
         UPDATE customers SET tier = tier + 1 WHERE id % 6 = {};",
        first + 499,
        r % 6
    );
    for _ in 0..30 {
        sql.push_str("UPDATE customers SET tier = tier + 1, vip = NOT vip WHERE id <= 10;");
    }
    sql.push_str(&format!(
        "DELETE FROM customers WHERE id % 13 = {r};
         INSERT INTO customers SELECT g, 're' || g, {r}, true FROM generate_series(1, {CUSTOMERS}) g
           WHERE g % 13 = {} ON CONFLICT (id) DO NOTHING;
         INSERT INTO orders SELECT g, g % {CUSTOMERS} + 1, g * 3 % 10000, 'new'
           FROM generate_series({}, {}) g;
         UPDATE orders SET status = 'paid', cents = cents + 1 WHERE id % 4 = {};
         DELETE FROM orders WHERE id % 11 = {r};",
        r - 1,
        ORDERS + (r - 1) * 500 + 1,
        ORDERS + r * 500,
        r % 4
    ));
    pg(url, &sql);
}

/// Booleans as text: Postgres' CSV prints them as t and f, the lake's as true and false.
/// Fails naming a few rows only one side has.
fn same(table: &str, lake: Vec<String>, pg: &[String]) {
    let only = |a: &[String], b: &[String]| -> Vec<String> {
        a.iter()
            .filter(|r| b.binary_search(r).is_err())
            .take(5)
            .cloned()
            .collect()
    };
    assert!(
        lake == pg,
        "{table}: the lake has {} rows, Postgres {}; only in the lake: {:?}; only in Postgres: {:?}",
        lake.len(),
        pg.len(),
        only(&lake, pg),
        only(pg, &lake)
    );
}

const CUSTOMERS_Q: &str = "SELECT id, name, tier, vip::text FROM customers";
const ORDERS_Q: &str = "SELECT id, customer_id, cents, status FROM orders";

/// The pipeline (also docs/upserts.md's example and bench/cdc.sh's).
const PIPELINE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../pipelines/shop-cdc.toml");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_changes_captured_by_debezium_land_as_its_tables_across_two_sigkills() {
    let Some((pg_url, _connect)) = servers() else {
        rtlake_core::testing::skip(
            "needs PostgreSQL and Debezium (RTLAKE_TEST_CDC): scripts/test.sh starts them in its Apache Kafka phase",
        );
        return;
    };
    let env = TestEnv::new("cdc").await;
    let id = env.group.trim_start_matches("g-").to_string();
    let db = format!("shop_{id}");
    pg(&pg_url, &format!("CREATE DATABASE {db}"));
    let url = format!("{}/{db}", pg_url.rsplit_once('/').unwrap().0);
    pg(
        &url,
        &format!(
            "CREATE TABLE customers (id BIGINT PRIMARY KEY, name TEXT NOT NULL, tier INT, vip BOOLEAN);
             CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id BIGINT, cents INT, status TEXT);
             INSERT INTO customers SELECT g, 'c' || g, g % 5, g % 7 = 0 FROM generate_series(1, {CUSTOMERS}) g;
             INSERT INTO orders SELECT g, g % {CUSTOMERS} + 1, g * 3 % 10000, 'new' FROM generate_series(1, {ORDERS}) g;"
        ),
    );
    env.cluster().ensure_topic(&env.topic).await.unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/cdc.sh");
    Command::new("bash")
        .args([
            script,
            "connector",
            &format!("cdc_{id}"),
            &db,
            "public.customers,public.orders",
            &env.topic,
        ])
        .succeeds_within(120);

    let run = |extra: &[&str]| {
        let mut c = env.run_cmd(
            &[
                &["--metrics-listen", "off", "--max-batch-events", "500"],
                extra,
            ]
            .concat(),
        );
        c.arg("--pipeline").arg(PIPELINE);
        c
    };
    let lake = env.lake();
    let mut worker = Guard::spawn(run(&[]));
    wait_for("the snapshot in the lake", 180, async || {
        lake.join("cdc/customers/_delta_log").exists()
            && sql_rows(&lake, "SELECT count(*) FROM cdc.customers").await[0][0] != "0"
    })
    .await;
    for r in 1..=ROUNDS {
        round(&url, r);
        if r == 3 || r == 5 {
            // Compaction beside the running pipeline: a merge that loses the race to it is run
            // again from the lake's offsets.
            let out = common::rtlake()
                .args(["lake", "optimize", "--target-size", "1MiB", "--lake"])
                .arg(&lake)
                .output_within(180)
                .unwrap();
            assert!(
                out.status.success(),
                "rtlake lake optimize: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if r == 2 || r == 4 {
            // Killed while Debezium is still sending the round's changes.
            tokio::time::sleep(std::time::Duration::from_millis(700)).await;
            signal(worker.0.id(), "-KILL");
            let _ = worker.0.wait();
            worker = Guard::spawn(run(&[]));
        }
    }
    let want_customers = pg_rows(&url, CUSTOMERS_Q);
    let want_orders = pg_rows(&url, ORDERS_Q);
    let q_customers = "SELECT id, name, tier, vip FROM cdc.customers";
    let q_orders = "SELECT id, customer_id, cents, status FROM cdc.orders";
    // Debezium and the pipeline catch up; a lake that never does fails below with the rows
    // that differ.
    let t0 = std::time::Instant::now();
    while t0.elapsed() < std::time::Duration::from_secs(240)
        && (lake_rows(&lake, q_orders).await != want_orders
            || lake_rows(&lake, q_customers).await != want_customers)
    {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    signal(worker.0.id(), "-TERM");
    worker.wait_within(60);
    same(
        "customers",
        lake_rows(&lake, q_customers).await,
        &want_customers,
    );
    same("orders", lake_rows(&lake, q_orders).await, &want_orders);
    assert!(
        want_customers.len() > CUSTOMERS as usize,
        "inserts outnumber deletes"
    );
    let rejected = sql_rows(&lake, "SELECT count(*) FROM _rejected").await;
    assert_eq!(rejected[0][0], "0", "no change event refused");

    // History: customer 19 was deleted in the last round (19 % 13 = 6) and not inserted again;
    // the lake's earlier versions still hold it as the snapshot read it.
    let at = |v: usize| format!("SELECT name FROM cdc.customers VERSION AS OF {v} WHERE id = 19");
    assert!(
        sql_rows(&lake, "SELECT name FROM cdc.customers WHERE id = 19")
            .await
            .is_empty()
    );
    let versions = common::commits(&lake.join("cdc/customers"));
    let mut held = None;
    for v in (1..versions).rev() {
        if let Some(r) = sql_rows(&lake, &at(v)).await.first() {
            held = Some((v, r[0].clone()));
            break;
        }
    }
    let (v, name) = held.expect("an earlier version holds customer 19");
    assert_eq!(name, "c19", "at version {v}");
}
