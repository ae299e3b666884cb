//! Typed topics: Avro (and JSON Schema, Protobuf) in the Confluent wire format, written by Confluent's own serializers
//! (Python confluent-kafka, `typed_client.py`) with a schema registry, read by a declared
//! pipeline whose columns are the registry's schema. Nested records, enums, arrays, maps,
//! decimals, timestamps and optional fields land as the lake's types; a backward-compatible
//! new version (an optional field) met by a running processor becomes a new column, null for
//! the rows before it; messages with an unknown schema id or a cut body go to `_rejected`
//! naming why; a registry that stops answering while the processor starts is waited for, and
//! nothing is lost or doubled.

use crate::common;

use common::registry::Registry;
use common::{Guard, OutputWithin, Succeeds, TestEnv, python, signal, sql_rows, wait_for};
use std::process::Command;
use std::time::Duration;

const BASE_S: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z, as typed_client.py's BASE_MS

fn client(reg: &Registry, args: &[&str]) -> serde_json::Value {
    let mut c = Command::new(python());
    c.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/typed_client.py"
    ))
    .args(args);
    reg.credentials(&mut c);
    let out = c.succeeds_within(120);
    serde_json::from_slice(&out.stdout).expect("typed_client.py prints JSON")
}

fn produce(env: &TestEnv, reg: &Registry, version: u32, first: usize, count: usize) -> u64 {
    produce_as(env, reg, "produce", version, first, count)
}

/// Publishes orders `first..first + count` of schema `version` with typed_client.py's `cmd`
/// (`produce` in Avro, `produce-json` in JSON Schema); the schema's id.
fn produce_as(
    env: &TestEnv,
    reg: &Registry,
    cmd: &str,
    version: u32,
    first: usize,
    count: usize,
) -> u64 {
    let v = client(
        reg,
        &[
            cmd,
            &env.brokers,
            &env.topic,
            &reg.url,
            &version.to_string(),
            &first.to_string(),
            &count.to_string(),
        ],
    );
    assert_eq!(v["sent"], count as u64);
    v["schema_id"].as_u64().unwrap()
}

/// Order `i` as the query in `landed` shows it (typed_client.py's `order`; without its
/// price, `json_order`).
fn order(i: usize, version: u32) -> String {
    order_fields(i, version).join(",")
}

fn json_order(i: usize, version: u32) -> String {
    let mut f = order_fields(i, version);
    f.remove(4);
    f.join(",")
}

fn order_fields(i: usize, version: u32) -> Vec<String> {
    let price = i % 1000;
    let zip = if i % 4 == 0 {
        "-".to_string()
    } else {
        format!("{:05}", i % 100)
    };
    let coupon = if i % 5 == 0 {
        format!("SAVE{}", i % 50)
    } else {
        "-".into()
    };
    let note = match (version, i % 2) {
        (2, 0) => format!("note {i}"),
        _ => "-".into(),
    };
    vec![
        format!("o-{i:05}"),
        format!("c{}", i % 7),
        (i % 5 + 1).to_string(),
        // amount in quarters, as cents
        ((i % 200) * 25).to_string(),
        format!("{}.{:02}", price / 100, price % 100),
        (BASE_S + i as i64).to_string(),
        ["NEW", "PAID", "SHIPPED"][i % 3].to_string(),
        ["Seoul", "Busan", "Incheon"][i % 3].to_string(),
        zip,
        (i % 3).to_string(),
        (i % 11).to_string(),
        coupon,
        note,
    ]
}

async fn landed(lake: &std::path::Path, with_note: bool) -> Vec<String> {
    landed_cols(lake, with_note, true).await
}

async fn landed_cols(lake: &std::path::Path, with_note: bool, with_price: bool) -> Vec<String> {
    let note = if with_note {
        "coalesce(note, '-')"
    } else {
        "'-'"
    };
    let price = if with_price {
        "CAST(price AS VARCHAR), "
    } else {
        ""
    };
    let q = format!(
        "SELECT order_id, customer, quantity, CAST(round(amount * 100) AS BIGINT), \
         {price}CAST(to_unixtime(ordered_at) AS BIGINT), status, \
         address['city'], coalesce(address['zip'], '-'), cardinality(tags), \
         element_at(attrs, 'weight')[1], coalesce(coupon, '-'), {note} FROM shop.orders"
    );
    let mut rows: Vec<String> = sql_rows(lake, &q)
        .await
        .into_iter()
        .map(|r| r.join(","))
        .collect();
    rows.sort();
    rows
}

/// `_rejected`'s rows are `n`, each from the input's decoding, and each of `why` is in one's
/// error.
async fn assert_rejected(lake: &std::path::Path, n: usize, why: &[&str]) {
    let rejected = sql_rows(lake, "SELECT reason, sink, error FROM _rejected").await;
    assert_eq!(rejected.len(), n, "{rejected:?}");
    assert!(
        rejected.iter().all(|r| r[0] == "decode" && r[1] == "input"),
        "{rejected:?}"
    );
    for w in why {
        assert!(
            rejected.iter().any(|r| r[2].contains(w)),
            "no rejected row says {w:?}: {rejected:?}"
        );
    }
}

async fn count(lake: &std::path::Path) -> usize {
    if !lake.join("shop/orders/_delta_log").exists() {
        return 0;
    }
    sql_rows(lake, "SELECT count(*) FROM shop.orders").await[0][0]
        .parse()
        .unwrap()
}

/// `rtlake run` of a pipeline landing the topic's `format` messages in `shop.orders` as they
/// are, with the registry's credentials.
fn runner(env: &TestEnv, reg: &Registry, format: &str, extra: &[&str]) -> Command {
    let file = env.dir.path().join(format!("typed-{format}.toml"));
    // The Avro pipeline also publishes its rows, in Avro, to `<topic>-out`.
    let kafka_sink = if format == "avro" {
        format!(
            "\n[[sinks]]\noperator = \"orders\"\ntopic = \"{}-out\"\nkey = \"order_id\"\n\
             value-format = \"avro\"\nschema-registry = \"{}\"\n",
            env.topic, reg.url
        )
    } else {
        String::new()
    };
    std::fs::write(
        &file,
        format!(
            r#"pipeline = "typed"

[input]
format = "{format}"
schema-registry = "{}"
event-time = "ordered_at"

[[stages]]
name = "orders"
sql = "SELECT * FROM input"

[[sinks]]
operator = "orders"
table = "shop.orders"
{}"#,
            reg.url, kafka_sink
        ),
    )
    .unwrap();
    let mut c = env.run_cmd(&[&["--metrics-listen", "off"], extra].concat());
    c.arg("--pipeline").arg(&file);
    reg.credentials(&mut c);
    c
}

fn has_confluent_kafka() -> bool {
    Command::new(python())
        .args([
            "-c",
            "import confluent_kafka.schema_registry.avro, confluent_kafka.schema_registry.json_schema, \
             confluent_kafka.schema_registry.protobuf, grpc_tools.protoc",
        ])
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_topic_lands_through_a_schema_change_bad_messages_and_a_registry_outage() {
    let Some(reg) = Registry::start() else { return };
    if !has_confluent_kafka() {
        rtlake_core::testing::skip_missing(
            "Python's confluent-kafka with Avro and JSON Schema (scripts/setup.sh installs it)",
        );
        return;
    }
    let env = TestEnv::new("typed").await;
    env.cluster().ensure_topic(&env.topic).await.unwrap();
    let v1 = produce(&env, &reg, 1, 0, 300);
    client(&reg, &["bad", &env.brokers, &env.topic, &reg.url]);
    let run = |extra: &[&str]| runner(&env, &reg, "avro", extra);
    let lake = env.lake();

    // Without credentials the registry refuses, and the processor says so.
    let out = run(&["--trigger", "available-now"])
        .env_remove("RTLAKE_SCHEMA_REGISTRY_USER")
        .env_remove("RTLAKE_SCHEMA_REGISTRY_PASSWORD")
        .output_within(120)
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("401") && err.contains(&reg.url), "{err}");

    // A running processor reads version 1; version 2 (a new optional field) arrives while it
    // runs, and becomes a column.
    let mut first = Guard::spawn(run(&[]));
    wait_for("version 1's orders in the lake", 120, async || {
        assert!(
            first.0.try_wait().unwrap().is_none(),
            "the processor exited"
        );
        count(&lake).await == 300
    })
    .await;
    assert_eq!(
        landed(&lake, false).await,
        (0..300).map(|i| order(i, 1)).collect::<Vec<_>>()
    );
    let v2 = produce(&env, &reg, 2, 300, 200);
    assert_ne!(v1, v2);
    wait_for("version 2's orders in the lake", 120, async || {
        assert!(
            first.0.try_wait().unwrap().is_none(),
            "the processor exited"
        );
        count(&lake).await == 500
    })
    .await;
    signal(first.0.id(), "-TERM");
    assert!(
        first.wait_within(60).success(),
        "the processor stops cleanly"
    );

    // A processor that starts while the registry does not answer waits for it.
    produce(&env, &reg, 2, 500, 100);
    reg.pause();
    let mut second = Guard::spawn(run(&["--trigger", "available-now"]));
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(
        second.0.try_wait().unwrap().is_none(),
        "the processor waits for the registry instead of giving up"
    );
    assert_eq!(count(&lake).await, 500);
    reg.resume();
    assert!(second.wait_within(180).success(), "it goes on by itself");

    let mut want: Vec<String> = (0..600)
        .map(|i| order(i, if i < 300 { 1 } else { 2 }))
        .collect();
    want.sort();
    let got = landed(&lake, true).await;
    assert_eq!(got.len(), 600, "each order once");
    assert_eq!(got, want, "every field as the serializer wrote it");

    // Confluent's deserializer reads what the Kafka sink published: each order, with the
    // columns of the schema it was written in.
    let out = client(
        &reg,
        &[
            "consume",
            &env.brokers,
            &format!("{}-out", env.topic),
            &reg.url,
            "600",
        ],
    );
    let got: Vec<String> = out["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let f = o.as_array().unwrap();
            let s = |v: &serde_json::Value| v.as_str().map_or_else(|| v.to_string(), String::from);
            f.iter().map(s).collect::<Vec<_>>().join(",")
        })
        .collect();
    let want: Vec<String> = (0..600)
        .map(|i| {
            let f = order_fields(i, if i < 300 { 1 } else { 2 });
            let note = if f[12] == "-" { "null" } else { &f[12] };
            [&f[0], &f[2], &f[6], &f[7], &f[4], note]
                .map(|x| x.to_string())
                .join(",")
        })
        .collect();
    assert_eq!(
        got, want,
        "the Kafka sink's Avro, as confluent-kafka decodes it"
    );
    assert!(out["messages"].as_u64().unwrap() >= 600);

    assert_rejected(
        &lake,
        3,
        &[
            "schema id 999999 is not in the schema registry",
            "not one Avro record",
            "cannot be read as subject",
        ],
    )
    .await;
}

/// The same in JSON Schema (confluent-kafka's JSONSerializer): the columns follow the
/// registry's JSON Schema (`$ref`s, nested objects, arrays, maps, `date-time` strings as
/// timestamps); a new version met while running becomes a column; a schema whose `quantity`
/// is a string, an unknown id and a payload that does not fit go to `_rejected`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_schema_topic_lands_through_a_schema_change_and_bad_messages() {
    schema_change_and_bad_messages(
        "json-schema",
        "json",
        &[
            "schema id 999999 is not in the schema registry",
            "property quantity is Utf8 in it",
            "field quantity",
        ],
    )
    .await;
}

/// The same in Protobuf (confluent-kafka's ProtobufSerializer, which registers a base64
/// descriptor; the incompatible schema is registered as `.proto` text): nested messages,
/// enums, repeated fields, maps, `google.protobuf.Timestamp` and `optional` fields land as
/// the lake's types; a message cut short is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protobuf_topic_lands_through_a_schema_change_and_bad_messages() {
    schema_change_and_bad_messages(
        "protobuf",
        "proto",
        &[
            "schema id 999999 is not in the schema registry",
            "field quantity is Utf8 in it",
            "not one shop.Order",
        ],
    )
    .await;
}

/// Version 1's 300 orders and three bad messages, then version 2's 200 (a new optional
/// field) while the processor runs, in `format` written by typed_client.py's `produce-{cmd}`
/// and `bad-{cmd}`: every order lands once with its fields, the bad ones in `_rejected`
/// saying `why`.
async fn schema_change_and_bad_messages(format: &str, cmd: &str, why: &[&str]) {
    let Some(reg) = Registry::start() else { return };
    if !has_confluent_kafka() {
        rtlake_core::testing::skip_missing(
            "Python's confluent-kafka with Avro, JSON Schema and Protobuf (scripts/setup.sh installs it)",
        );
        return;
    }
    let env = TestEnv::new(&format!("typed-{cmd}")).await;
    env.cluster().ensure_topic(&env.topic).await.unwrap();
    let produce = format!("produce-{cmd}");
    produce_as(&env, &reg, &produce, 1, 0, 300);
    client(
        &reg,
        &[&format!("bad-{cmd}"), &env.brokers, &env.topic, &reg.url],
    );
    let lake = env.lake();
    let mut run = Guard::spawn(runner(&env, &reg, format, &[]));
    let running = |run: &mut Guard| {
        assert!(run.0.try_wait().unwrap().is_none(), "the processor exited");
    };
    wait_for("version 1's orders in the lake", 120, async || {
        running(&mut run);
        count(&lake).await == 300
    })
    .await;
    produce_as(&env, &reg, &produce, 2, 300, 200);
    wait_for("version 2's orders in the lake", 120, async || {
        running(&mut run);
        count(&lake).await == 500
    })
    .await;
    signal(run.0.id(), "-TERM");
    assert!(run.wait_within(60).success(), "the processor stops cleanly");

    let mut want: Vec<String> = (0..500)
        .map(|i| json_order(i, if i < 300 { 1 } else { 2 }))
        .collect();
    want.sort();
    assert_eq!(landed_cols(&lake, true, false).await, want);
    assert_rejected(&lake, 3, why).await;
}

/// The bike replay produced by `rtlake produce bikes --format json|avro|json-schema|protobuf`, each into
/// a topic of its own, lands the same rows through the same declared pipeline, and through the
/// bike pipeline's own operators: the typed formats carry the contract's events unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bike_replay_in_each_format_lands_the_same_rows() {
    let Some(reg) = Registry::start() else { return };
    let env = TestEnv::new("typed-bikes").await;
    const COLS: &str = "rackTotCnt STRING, stationName STRING, parkingBikeTotCnt STRING, \
        shared STRING, stationLatitude STRING, stationLongitude STRING, stationId STRING, \
        polledAt STRING";
    let mut landed = Vec::new();
    for format in ["json", "avro", "json-schema", "protobuf"] {
        let topic = format!("{}-{format}", env.topic);
        let mut produce = common::rtlake();
        produce
            .args([
                "produce",
                "bikes",
                "--brokers",
                &env.brokers,
                "--topic",
                &topic,
            ])
            .args([
                "--speed",
                "max",
                "--minutes",
                "1",
                "--metrics-listen",
                "off",
            ])
            .args(["--format", format]);
        if format != "json" {
            produce.args(["--schema-registry", &reg.url]);
        }
        reg.credentials(&mut produce);
        produce.succeeds_within(120);
        let input = if format == "json" {
            format!("format = \"json\"\nschema = \"{COLS}\"")
        } else {
            format!("format = \"{format}\"\nschema-registry = \"{}\"", reg.url)
        };
        let file = env.dir.path().join(format!("bikes-{format}.toml"));
        std::fs::write(
            &file,
            format!(
                "pipeline = \"bikes-{format}\"\n[input]\n{input}\n[[stages]]\nname = \"events\"\n\
                 sql = \"SELECT * FROM input\"\n[[sinks]]\noperator = \"events\"\ntable = \"raw.events\"\n"
            ),
        )
        .unwrap();
        let lake = env.dir.path().join(format!("lake-{format}"));
        drain(
            &env,
            &reg,
            &topic,
            &format!("{}-{format}", env.group),
            &lake,
            &file,
        );
        let mut rows: Vec<String> = sql_rows(
            &lake,
            "SELECT \"stationId\", \"polledAt\", \"rackTotCnt\", \"stationName\", \
             \"parkingBikeTotCnt\", shared, \"stationLatitude\", \"stationLongitude\", _key \
             FROM raw.events",
        )
        .await
        .into_iter()
        .map(|r| r.join("|"))
        .collect();
        rows.sort();
        landed.push((format, rows));
    }
    let (_, json) = &landed[0];
    assert!(
        json.len() > 10_000,
        "a minute of the replay: {}",
        json.len()
    );
    for (format, rows) in &landed[1..] {
        assert_eq!(rows.len(), json.len(), "{format}: as many rows as JSON");
        assert!(rows == json, "{format}: every row as JSON's");
    }

    // The bike pipeline's own operators on each: a typed input's rows reach them as the
    // contract's JSON, so bronze and silver hold the same rows as from the JSON topic.
    let mut tables = Vec::new();
    for format in ["json", "avro", "json-schema", "protobuf"] {
        let topic = format!("{}-{format}", env.topic);
        let input = match format {
            "json" => String::new(),
            f => format!(
                "[input]\nformat = \"{f}\"\nschema-registry = \"{}\"\n",
                reg.url
            ),
        };
        let file = env.dir.path().join(format!("bike-ops-{format}.toml"));
        std::fs::write(
            &file,
            format!(
                "pipeline = \"bike-ops-{format}\"\n{input}[[sinks]]\noperator = \"bronze\"\n\
                 [[sinks]]\noperator = \"changes\"\n"
            ),
        )
        .unwrap();
        let lake = env.dir.path().join(format!("bike-ops-lake-{format}"));
        let group = format!("{}-ops-{format}", env.group);
        drain(&env, &reg, &topic, &group, &lake, &file);
        let bronze = sql_rows(
            &lake,
            "SELECT station_id, station_name, rack_total, bikes_parked, shared_pct, lat, lon, \
             polled_at, district, kafka_partition, kafka_offset FROM bronze.station_status \
             ORDER BY kafka_partition, kafka_offset",
        )
        .await;
        let silver = sql_rows(&lake, "SELECT * FROM silver.station_changes ORDER BY 1, 2").await;
        tables.push((format, bronze, silver));
    }
    let (_, bronze, silver) = &tables[0];
    assert_eq!(bronze.len(), json.len(), "bronze holds every event");
    assert!(!silver.is_empty(), "a minute of the replay has changes");
    for (format, b, s) in &tables[1..] {
        assert!(b == bronze, "{format}: bronze as from JSON");
        assert!(s == silver, "{format}: silver as from JSON");
    }
}

/// `rtlake run` of pipeline `file` over `topic` as `group` into `lake`, until it has what the
/// topic held at the start; it must succeed.
fn drain(
    env: &TestEnv,
    reg: &Registry,
    topic: &str,
    group: &str,
    lake: &std::path::Path,
    file: &std::path::Path,
) {
    let mut run = common::rtlake();
    run.args([
        "run",
        "--brokers",
        &env.brokers,
        "--topic",
        topic,
        "--group",
        group,
    ])
    .arg("--lake")
    .arg(lake)
    .arg("--pipeline")
    .arg(file)
    .args(["--trigger", "available-now", "--metrics-listen", "off"]);
    reg.credentials(&mut run);
    run.succeeds_within(300);
}
