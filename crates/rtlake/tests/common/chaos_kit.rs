//! Helpers of the availability suite (`recovery/chaos.rs`): scales, seeded fault moments, the table,
//! the reference comparison, progress checks, bad input, a small disk.

use super::faults::{log_file, with_log};
use super::{Guard, Succeeds, TestEnv, rtlake, sql_rows, wait_for};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// How big a run is: replay minutes, processor kills, broker kills.
pub struct Scale {
    pub minutes: u64,
    pub kills: usize,
    pub broker_kills: usize,
    pub bad_rounds: usize,
    pub speed: u32,
}

pub fn scale() -> Scale {
    if std::env::var("RTLAKE_CHAOS").is_ok_and(|v| v == "long") {
        Scale {
            minutes: 90,
            kills: 25,
            broker_kills: 5,
            bad_rounds: 10,
            speed: 20,
        }
    } else {
        Scale {
            minutes: 12,
            kills: 5,
            broker_kills: 2,
            bad_rounds: 2,
            speed: 10,
        }
    }
}

/// A small, seeded generator for the fault moments (the seed is printed, to replay a run).
pub struct Moments(pub u64);

impl Moments {
    pub fn new() -> Self {
        let seed = std::env::var("RTLAKE_CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("chaos seed {seed} (RTLAKE_CHAOS_SEED replays it)");
        Self(seed | 1)
    }

    /// A duration in `[lo, hi)` milliseconds.
    pub fn between(&mut self, lo: u64, hi: u64) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_millis(lo + self.0 % (hi - lo))
    }
}

/// One row of the chaos table, appended to `RTLAKE_CHAOS_OUT` (a TSV) and printed.
pub fn record(scenario: &str, faults: usize, events: usize, diff: Diff, recover: &mut [Duration]) {
    recover.sort();
    let secs = |d: Option<&Duration>| d.map_or("–".into(), |d| format!("{:.1}", d.as_secs_f64()));
    let line = format!(
        "{scenario}\t{faults}\t{events}\t{}\t{}\t{}\t{}",
        diff.lost,
        diff.doubled,
        secs(recover.get(recover.len() / 2)),
        secs(recover.last())
    );
    eprintln!("CHAOS\t{line}");
    let out = std::env::var("RTLAKE_CHAOS_OUT")
        .unwrap_or_else(|_| format!("{}/chaos.tsv", env!("CARGO_TARGET_TMPDIR")));
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .unwrap();
    writeln!(f, "{line}").unwrap();
}

/// Copies a scenario's logs to `RTLAKE_CHAOS_LOGS/<topic>/`, when set, to study a run.
pub fn keep_logs(env: &TestEnv) {
    let Ok(dir) = std::env::var("RTLAKE_CHAOS_LOGS") else {
        return;
    };
    let to = Path::new(&dir).join(&env.topic);
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(env.dir.path()).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "log") {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// The pipeline every scenario runs: the bike pipeline's lake outputs.
pub fn pipeline(dir: &Path) -> std::path::PathBuf {
    let f = dir.join("chaos.toml");
    std::fs::write(
        &f,
        "pipeline = \"bikes\"\nlateness = \"1m\"\n\n[[sinks]]\noperator = \"bronze\"\n\n[[sinks]]\noperator = \"changes\"\n\n\
         [[sinks]]\noperator = \"station-hourly\"\n\n[[sinks]]\noperator = \"district-5min\"\n",
    )
    .unwrap();
    f
}

/// Every table's rows as text, without processing times.
pub async fn table_rows(lake: &Path) -> BTreeMap<&'static str, Vec<String>> {
    let queries = [
        (
            "bronze",
            "SELECT station_id, CAST(polled_at AS BIGINT), bikes_parked, district, kafka_partition, kafka_offset FROM bronze.station_status",
        ),
        (
            "silver",
            "SELECT station_id, CAST(polled_at AS BIGINT), CAST(prev_polled_at AS BIGINT), bikes_parked, prev_bikes_parked, rentals, returns, district FROM silver.station_changes",
        ),
        ("hourly", "SELECT * FROM gold.station_hourly"),
        ("district", "SELECT * FROM gold.district_5min"),
        (
            "rejected",
            "SELECT kafka_partition, kafka_offset, reason, sink FROM _rejected",
        ),
    ];
    let mut out = BTreeMap::new();
    for (name, q) in queries {
        let rejected = lake.join("_rejected");
        let rows = if name != "rejected"
            || rejected.join("_delta_log").exists()
            || rejected.join("metadata").exists()
        {
            sql_rows(lake, q)
                .await
                .into_iter()
                .map(|r| r.join(","))
                .collect()
        } else {
            Vec::new()
        };
        out.insert(name, rows);
    }
    out
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Diff {
    pub lost: usize,
    pub doubled: usize,
}

/// Rows of the reference missing from `got`, and rows of `got` beyond the reference (a row
/// the reference does not have at all counts as doubled: it is extra).
pub async fn compare(reference: &Path, lake: &Path) -> Diff {
    let (want, got) = (table_rows(reference).await, table_rows(lake).await);
    let mut d = Diff::default();
    for (table, rows) in &want {
        let mut count: BTreeMap<&String, i64> = BTreeMap::new();
        for r in rows {
            *count.entry(r).or_default() += 1;
        }
        for r in &got[table] {
            *count.entry(r).or_default() -= 1;
        }
        let (lost, doubled) = count.values().fold((0, 0), |(l, x), &c| {
            (l + c.max(0) as usize, x + (-c).max(0) as usize)
        });
        if lost + doubled > 0 {
            eprintln!("{table}: {lost} rows lost, {doubled} doubled");
        }
        d.lost += lost;
        d.doubled += doubled;
    }
    assert!(want["bronze"].len() > 1000 && !want["silver"].is_empty());
    d
}

/// The uninterrupted reference run over the whole topic.
pub fn reference_run(env: &TestEnv, lake: &Path) {
    rtlake()
        .args(["run", "--brokers", &env.brokers, "--topic", &env.topic])
        .args(["--group", &format!("{}-ref", env.group), "--lake"])
        .arg(lake)
        .arg("--pipeline")
        .arg(pipeline(env.dir.path()))
        .args(["--trigger", "available-now"])
        .succeeds_within(600);
}

/// The producer, publishing the replay at `speed` times real time.
pub fn producer(env: &TestEnv, s: &Scale) -> Guard {
    let mut c = rtlake();
    c.args([
        "produce",
        "bikes",
        "--brokers",
        &env.brokers,
        "--topic",
        &env.topic,
    ])
    .args(["--speed", &s.speed.to_string()])
    .args([
        "--minutes",
        &s.minutes.to_string(),
        "--metrics-listen",
        "off",
    ]);
    Guard::spawn(with_log(c, &log_file(env, "produce.log")))
}

/// The highest bronze offset per partition.
pub async fn positions(lake: &Path) -> BTreeMap<String, i64> {
    let table = lake.join("bronze/station_status");
    if !table.join("_delta_log").exists() && !table.join("metadata").exists() {
        return BTreeMap::new();
    }
    sql_rows(
        lake,
        "SELECT kafka_partition, max(kafka_offset) FROM bronze.station_status GROUP BY 1",
    )
    .await
    .into_iter()
    .map(|r| (r[0].clone(), r[1].parse().unwrap()))
    .collect()
}

/// Waits until every partition has rows past `before` (or the producer is done and nothing is
/// left to show progress); the time it took.
pub async fn recovered(
    lake: &Path,
    before: &BTreeMap<String, i64>,
    since: Instant,
) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(120) {
        let now = positions(lake).await;
        if now.len() >= 3 && now.iter().all(|(p, o)| before.get(p).is_none_or(|b| o > b)) {
            return Some(since.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

pub async fn drained(env: &TestEnv, events: usize) {
    let lake = env.lake();
    wait_for("every event in bronze", 300, async || {
        sql_rows(&lake, "SELECT count(*) FROM bronze.station_status").await[0][0]
            .parse::<usize>()
            .unwrap()
            >= events
    })
    .await;
}

pub fn total(s: &Scale) -> usize {
    s.minutes as usize * 4 * 2721
}

pub const GOOD: &str = r#"{"rackTotCnt":"15","stationName":"102. 망원역 1번출구 앞","parkingBikeTotCnt":"16","shared":"107","stationLatitude":"37.55564880","stationLongitude":"126.91062927","stationId":"ST-4","polledAt":"2025-10-01T08:00:15+09:00"}"#;

/// The size of the large well-formed event among the bad inputs.
pub const BIG: usize = 8 << 20;

/// A well-formed event of just over [`BIG`] bytes: its station name is 8 MiB of one syllable.
pub fn big_event() -> String {
    let e = GOOD.replace("102.", &"긴".repeat(BIG / "긴".len() + 1));
    assert!(e.len() > BIG, "{} bytes", e.len());
    e
}

/// The most a record batch may hold on the embedded broker and, by default, on Apache Kafka
/// (`message.max.bytes`, and a topic's `max.message.bytes`).
pub const BATCH_LIMIT: usize = 1024 * 1024 + 12;

/// A well-formed event just past [`BATCH_LIMIT`] that does not compress: its name is random
/// letters (sent uncompressed, the batch is past the limit by a few hundred bytes).
pub fn oversized_event() -> String {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let name: String = (0..BATCH_LIMIT)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    GOOD.replace("102.", &name)
}

/// One of each kind of bad input, keyed as the producer keys events.
pub fn bad_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    vec![
        ("ST-4", b"{\"rackTotCnt\": \"15\", ".to_vec()), // malformed JSON
        ("ST-4", GOOD.replace(r#""15""#, "15").into_bytes()), // a number where a string goes
        (
            "ST-4",
            GOOD.replace(r#""stationId":"ST-4","#, "").into_bytes(),
        ), // a missing field
        // Over 8 MiB, well formed: a long name is still a station's name (bronze takes it).
        // It compresses to a few KiB, so the broker's 1 MiB batch limit lets it in.
        ("ST-4", big_event().into_bytes()),
        ("ST-4", vec![b'{', 0xff, 0xfe, b'}']), // invalid UTF-8
        ("ST-4", deep.into_bytes()),            // deep nesting
        ("ST-4", b"null".to_vec()),
        ("ST-4", GOOD.replace(r#""16""#, r#""-3""#).into_bytes()), // a negative count
        ("ST-4", GOOD.as_bytes().to_vec()), // an old event, sent twice: late and stale
        ("ST-4", GOOD.as_bytes().to_vec()),
        ("st-4", GOOD.replace("ST-4", "st-4").into_bytes()), // the id's case changes
        (
            "ST-4",
            GOOD.replace("2025-10-01T08:00:15", "2099-01-01T00:00:00")
                .into_bytes(),
        ),
    ]
}

/// Sends `rounds` rounds of bad input at random moments, once ten polls are on the topic (so
/// the old events are late and stale in the reference run too).
pub async fn inject_bad_input(env: &TestEnv, rounds: usize, mut m: Moments) -> usize {
    let cfg = env.config();
    wait_for("ten polls on the topic", 300, async || {
        env.cluster()
            .watermarks(&env.topic)
            .await
            .map(|w| w.iter().map(|(_, lo, hi)| hi - lo).sum::<i64>() >= 10 * 2721)
            .unwrap_or(false)
    })
    .await;
    let mut client = rtlake_kafka::client::producer(&cfg.kafka, &cfg.producer);
    client.set("message.max.bytes", (10 << 20).to_string());
    let p: rtlake_kafka::rdkafka::producer::FutureProducer = client.create().unwrap();
    // An event past the broker's and the topic's size limits is refused to the producer, with
    // the reason; it never reaches the topic.
    let mut plain = rtlake_kafka::client::producer(&cfg.kafka, &cfg.producer);
    plain
        .set("message.max.bytes", (10 << 20).to_string())
        .set("compression.type", "none");
    let plain: rtlake_kafka::rdkafka::producer::FutureProducer = plain.create().unwrap();
    let too_big = oversized_event();
    assert!(too_big.len() > BATCH_LIMIT && too_big.len() < BATCH_LIMIT + 1024);
    let refused = plain
        .send(
            rtlake_kafka::rdkafka::producer::FutureRecord::to(&env.topic)
                .key("ST-4")
                .payload(&too_big),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .expect_err("the broker refuses an event past its size limit");
    assert_eq!(
        refused.rdkafka_error_code(),
        Some(rtlake_kafka::rdkafka::types::RDKafkaErrorCode::MessageSizeTooLarge),
        "{refused}"
    );
    let mut sent = 0;
    let mut big_sent = 0;
    for _ in 0..rounds {
        tokio::time::sleep(m.between(500, 4000)).await;
        for (key, value) in bad_inputs() {
            if value.len() > BIG {
                big_sent += value.len();
            }
            p.send(
                rtlake_kafka::rdkafka::producer::FutureRecord::to(&env.topic)
                    .key(key)
                    .payload(&value),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("the broker takes every bad message");
            sent += 1;
        }
    }
    assert!(
        big_sent > rounds * BIG,
        "each round sent an event over 8 MiB: {big_sent} bytes in {rounds} rounds"
    );
    sent
}

/// Every offset of the topic is in bronze or in bronze's rejections, once.
pub async fn every_offset_once(env: &TestEnv) -> Diff {
    let rows = sql_rows(
        &env.lake(),
        "SELECT kafka_partition, kafka_offset FROM bronze.station_status UNION ALL \
         SELECT kafka_partition, kafka_offset FROM _rejected WHERE sink = 'bronze.station_status'",
    )
    .await;
    let mut seen: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    for r in rows {
        *seen
            .entry((r[0].parse().unwrap(), r[1].parse().unwrap()))
            .or_default() += 1;
    }
    let mut d = Diff::default();
    for (p, lo, hi) in env.cluster().watermarks(&env.topic).await.unwrap() {
        for o in lo..hi {
            match seen.get(&(p, o)) {
                None => d.lost += 1,
                Some(n) => d.doubled += n - 1,
            }
        }
    }
    d
}

/// A small tmpfs mounted on the lake's folder (root only), unmounted when dropped.
pub struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    pub fn mount(at: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(at.into()))
    }

    pub fn mount_cmd(args: &[&str], at: &Path) {
        let s = std::process::Command::new(args[0])
            .args(&args[1..])
            .arg(at)
            .status()
            .unwrap();
        assert!(s.success(), "{args:?}");
    }

    /// Read-only from now on for every new open (a read-only bind mount over the folder; files
    /// open for writing could not be remounted read-only).
    pub fn read_only(&self) {
        let at = self.0.display().to_string();
        Self::mount_cmd(&["mount", "--bind", &at], &self.0);
        Self::mount_cmd(&["mount", "-o", "remount,bind,ro"], &self.0);
    }

    pub fn writable(&self) {
        Self::mount_cmd(&["umount", "-l"], &self.0);
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// The end of a scenario: the producer finishes, bronze holds `events`, and every worker
/// stops cleanly on SIGTERM.
pub async fn finish(env: &TestEnv, producer: &mut Guard, workers: &mut [Guard], events: usize) {
    assert!(producer.wait_within(900).success(), "the producer finishes");
    drained(env, events).await;
    for w in workers.iter() {
        super::signal(w.0.id(), "-TERM");
    }
    for w in workers.iter_mut() {
        assert!(w.wait_within(120).success(), "rtlake run stops cleanly");
    }
}

/// An uninterrupted run over the same topic into a second lake, and every table of the
/// scenario's lake compared with it row for row (the logs are kept for a failure's reader).
pub async fn against_reference(env: &TestEnv) -> Diff {
    let reference = env.dir.path().join("ref-lake");
    reference_run(env, &reference);
    keep_logs(env);
    compare(&reference, &env.lake()).await
}

/// Adds the scenario's row to the table and fails it if a row was lost or doubled.
pub fn settle(scenario: &str, faults: usize, events: usize, diff: Diff, recover: &mut [Duration]) {
    record(scenario, faults, events, diff, recover);
    assert_eq!(
        (diff.lost, diff.doubled),
        (0, 0),
        "nothing lost, nothing doubled"
    );
}

/// rtlake's panics in a log, but for delta-rs' known, harmless one: when a Parquet upload fails
/// while it completes, its detached cleanup task aborts an object_store BufWriter that is
/// already shut down and object_store panics ("Already shut down"); tokio catches it in that
/// task, and the epoch, failed already, is retried.
pub fn panics(log: &str) -> Vec<&str> {
    log.split("panicked at ")
        .skip(1)
        .filter(|p| !(p.contains("object_store") && p.contains("Already shut down")))
        .collect()
}
