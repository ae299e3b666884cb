//! The availability suite: the bike pipeline on the replay, a producer publishing as it goes,
//! while faults are injected; then every table is compared row for row with an uninterrupted
//! reference run over the same topic, and each scenario adds a row to the table
//! `scripts/chaos.sh` prints: faults, events, rows lost, rows doubled, time to recover.
//!
//! Short form (CI, a few faults of each kind): `cargo test -p rtlake --test chaos`. Long form:
//! `RTLAKE_CHAOS=long` (the 90-minute replay, 25 processor kills, 5 broker kills). Recovery is
//! measured from the fault to the moment every partition has new rows in bronze again.

mod common;

use common::faults::{DumpOnPanic, OwnBroker, log_file, with_log};
use common::{Guard, OutputWithin, TestEnv, commits, rtlake, signal, sql_rows, wait_for};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// The scenarios run one at a time: each measures recovery times, which a neighbour would skew.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How big a run is: replay minutes, processor kills, broker kills.
struct Scale {
    minutes: u64,
    kills: usize,
    broker_kills: usize,
    bad_rounds: usize,
    speed: u32,
}

fn scale() -> Scale {
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
struct Moments(u64);

impl Moments {
    fn new() -> Self {
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
    fn between(&mut self, lo: u64, hi: u64) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_millis(lo + self.0 % (hi - lo))
    }
}

/// One row of the chaos table, appended to `RTLAKE_CHAOS_OUT` (a TSV) and printed.
fn record(scenario: &str, faults: usize, events: usize, diff: Diff, recover: &mut [Duration]) {
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
fn keep_logs(env: &TestEnv) {
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
fn pipeline(dir: &Path) -> std::path::PathBuf {
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
async fn table_rows(lake: &Path) -> BTreeMap<&'static str, Vec<String>> {
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
        let rows = if lake.join("_rejected/_delta_log").exists() || name != "rejected" {
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
struct Diff {
    lost: usize,
    doubled: usize,
}

/// Rows of the reference missing from `got`, and rows of `got` beyond the reference (a row
/// the reference does not have at all counts as doubled: it is extra).
async fn compare(reference: &Path, lake: &Path) -> Diff {
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
fn reference_run(env: &TestEnv, lake: &Path) {
    let out = rtlake()
        .args(["run", "--brokers", &env.brokers, "--topic", &env.topic])
        .args(["--group", &format!("{}-ref", env.group), "--lake"])
        .arg(lake)
        .arg("--pipeline")
        .arg(pipeline(env.dir.path()))
        .args(["--trigger", "available-now"])
        .output_within(600)
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The producer, publishing the replay at `speed` times real time.
fn producer(env: &TestEnv, s: &Scale) -> Guard {
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
async fn positions(lake: &Path) -> BTreeMap<String, i64> {
    if !lake.join("bronze/station_status/_delta_log").exists() {
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
async fn recovered(
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

async fn drained(env: &TestEnv, events: usize) {
    let lake = env.lake();
    wait_for("every event in bronze", 300, async || {
        sql_rows(&lake, "SELECT count(*) FROM bronze.station_status").await[0][0]
            .parse::<usize>()
            .unwrap()
            >= events
    })
    .await;
}

fn total(s: &Scale) -> usize {
    s.minutes as usize * 4 * 2721
}

const GOOD: &str = r#"{"rackTotCnt":"15","stationName":"102. 망원역 1번출구 앞","parkingBikeTotCnt":"16","shared":"107","stationLatitude":"37.55564880","stationLongitude":"126.91062927","stationId":"ST-4","polledAt":"2025-10-01T08:00:15+09:00"}"#;

/// One of each kind of bad input, keyed as the producer keys events.
fn bad_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    vec![
        ("ST-4", b"{\"rackTotCnt\": \"15\", ".to_vec()), // malformed JSON
        ("ST-4", GOOD.replace(r#""15""#, "15").into_bytes()), // a number where a string goes
        (
            "ST-4",
            GOOD.replace(r#""stationId":"ST-4","#, "").into_bytes(),
        ), // a missing field
        // 8 MiB, well formed: a long name is still a station's name (bronze takes it).
        (
            "ST-4",
            GOOD.replace("102.", &"긴".repeat(8 << 20 / 3)).into_bytes(),
        ),
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
async fn inject_bad_input(env: &TestEnv, rounds: usize, mut m: Moments) -> usize {
    let cfg = env.config();
    wait_for("ten polls on the topic", 300, async || {
        rtlake_kafka::admin::high_watermarks(&cfg.kafka, &env.topic)
            .await
            .map(|w| w.iter().map(|(_, lo, hi)| hi - lo).sum::<i64>() >= 10 * 2721)
            .unwrap_or(false)
    })
    .await;
    let mut client = rtlake_kafka::client::producer(&cfg.kafka, &cfg.producer);
    client.set("message.max.bytes", (10 << 20).to_string());
    let p: rtlake_kafka::rdkafka::producer::FutureProducer = client.create().unwrap();
    let mut sent = 0;
    for _ in 0..rounds {
        tokio::time::sleep(m.between(500, 4000)).await;
        for (key, value) in bad_inputs() {
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
    sent
}

/// Every offset of the topic is in bronze or in bronze's rejections, once.
async fn every_offset_once(env: &TestEnv) -> Diff {
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
    for (p, lo, hi) in rtlake_kafka::admin::high_watermarks(&env.config().kafka, &env.topic)
        .await
        .unwrap()
    {
        for o in lo..hi {
            match seen.get(&(p, o)) {
                None => d.lost += 1,
                Some(n) => d.doubled += n - 1,
            }
        }
    }
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processor_kills_at_random_moments_and_inside_commits() {
    let _serial = SERIAL.lock().await;
    let s = scale();
    let env = TestEnv::new("chaos-proc").await;
    let mut m = Moments::new();
    let _dump = DumpOnPanic(vec![log_file(&env, "run.log")]);
    let pipeline = pipeline(env.dir.path());
    let run = |failpoint: Option<&str>| {
        // A static member (KIP-345): restarted with the same command, it takes its partitions
        // back at once instead of after the dead session expires.
        let mut c = env.run_cmd(&[
            "--max-batch-events",
            "2000",
            "--stall-timeout",
            "5s",
            "--instance-id",
            "chaos-1",
        ]);
        c.arg("--pipeline").arg(&pipeline);
        if let Some(p) = failpoint {
            c.env("RTLAKE_FAILPOINT", p);
        }
        // One log for every run, appended to.
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(log_file(&env, "run.log"))
            .unwrap();
        c.env("RTLAKE_LOG", "rtlake_stream=info,warn")
            .stderr(std::process::Stdio::from(log));
        Guard::spawn(c)
    };
    let mut producer = producer(&env, &s);
    let bad = {
        let env = TestEnv {
            broker: None,
            brokers: env.brokers.clone(),
            dir: tempfile::tempdir().unwrap(),
            topic: env.topic.clone(),
            group: env.group.clone(),
        };
        let (rounds, m) = (s.bad_rounds, Moments(m.0.rotate_left(17) | 1));
        std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(inject_bad_input(&env, rounds, m))
        })
    };
    let mut worker = run(None);
    let table = env.lake().join("bronze/station_status");
    wait_for("the first commits", 120, async || commits(&table) >= 2).await;
    let points = [
        "after-commit:bronze.station_status",
        "after-commit:silver.station_changes",
        "after-commit:gold.district_5min",
        "after-commit:_rejected",
    ];
    let mut recover = Vec::new();
    for i in 0..s.kills {
        tokio::time::sleep(m.between(300, 2500)).await;
        // Every third fault is an abort inside an epoch's commits, the others a SIGKILL.
        let before = positions(&env.lake()).await;
        let at = if i % 3 == 2 {
            drop(worker);
            let point = points[(i / 3) % points.len()];
            let mut aborting = run(Some(point));
            let status = aborting.wait_within(120);
            assert!(!status.success(), "the run aborts at {point}");
            Instant::now()
        } else {
            signal(worker.0.id(), "-KILL");
            let _ = worker.wait_within(30);
            Instant::now()
        };
        let before = if i % 3 == 2 {
            positions(&env.lake()).await
        } else {
            before
        };
        worker = run(None);
        match recovered(&env.lake(), &before, at).await {
            Some(d) => recover.push(d),
            None => panic!("no progress within 120 s after fault {i}"),
        }
    }
    assert!(producer.wait_within(900).success(), "the producer finishes");
    let bad = bad.join().expect("bad input sent");
    let events = total(&s) + bad;
    let lake = env.lake();
    wait_for("every offset in bronze or _rejected", 300, async || {
        every_offset_once(&env).await.lost == 0
    })
    .await;
    signal(worker.0.id(), "-TERM");
    assert!(worker.wait_within(120).success());
    let reference = env.dir.path().join("ref-lake");
    reference_run(&env, &reference);
    keep_logs(&env);
    let mut diff = compare(&reference, &lake).await;
    let once = every_offset_once(&env).await;
    diff.lost += once.lost;
    diff.doubled += once.doubled;
    let reasons = sql_rows(
        &lake,
        "SELECT reason, count(*) FROM _rejected GROUP BY 1 ORDER BY 1",
    )
    .await;
    eprintln!("rejections by reason: {reasons:?}");
    record(
        &format!("processor: SIGKILL, or abort inside a commit; restarted (+{bad} bad messages)"),
        s.kills,
        events,
        diff,
        &mut recover,
    );
    let count = |r: &str| {
        reasons
            .iter()
            .find(|x| x[0] == r)
            .map_or(0, |x| x[1].parse::<usize>().unwrap())
    };
    let rounds = s.bad_rounds;
    assert_eq!(count("decode"), 6 * rounds, "{reasons:?}");
    assert_eq!(count("validation"), rounds, "{reasons:?}");
    assert_eq!(count("future"), rounds, "{reasons:?}");
    assert!(
        count("stale") >= rounds && count("late") >= rounds,
        "{reasons:?}"
    );
    assert_eq!(
        (diff.lost, diff.doubled),
        (0, 0),
        "nothing lost, nothing doubled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_kills_while_producer_and_processor_run() {
    if std::env::var("RTLAKE_TEST_BROKERS").is_ok() {
        eprintln!(
            "skipped: the broker scenario kills the embedded broker (broker_restart.rs covers a cluster)"
        );
        return;
    }
    let _serial = SERIAL.lock().await;
    let s = scale();
    let mut env = TestEnv::new("chaos-broker").await;
    let mut m = Moments::new();
    env.broker = None;
    let addr = format!("127.0.0.1:{}", common::free_port());
    let mut broker = OwnBroker::start(&addr, &env.dir.path().join("own-broker"));
    env.brokers = addr;
    let _dump = DumpOnPanic(vec![
        log_file(&env, "run.log"),
        log_file(&env, "produce.log"),
    ]);
    let mut producer = producer(&env, &s);
    let mut c = env.run_cmd(&["--max-batch-events", "2000", "--stall-timeout", "5s"]);
    c.arg("--pipeline").arg(pipeline(env.dir.path()));
    let mut worker = Guard::spawn(with_log(c, &log_file(&env, "run.log")));
    let table = env.lake().join("bronze/station_status");
    wait_for("the first commits", 120, async || commits(&table) >= 2).await;
    let mut recover = Vec::new();
    for i in 0..s.broker_kills {
        tokio::time::sleep(m.between(1000, 4000)).await;
        let before = positions(&env.lake()).await;
        broker.kill();
        let at = Instant::now();
        tokio::time::sleep(m.between(500, 3000)).await;
        broker.restart();
        match recovered(&env.lake(), &before, at).await {
            Some(d) => recover.push(d),
            None => panic!("no progress within 120 s after broker kill {i}"),
        }
    }
    assert!(
        producer.wait_within(900).success(),
        "the producer carries on and finishes: {}",
        std::fs::read_to_string(log_file(&env, "produce.log")).unwrap_or_default()
    );
    drained(&env, total(&s)).await;
    assert!(
        worker.0.try_wait().unwrap().is_none(),
        "rtlake run kept running"
    );
    signal(worker.0.id(), "-TERM");
    assert!(worker.wait_within(120).success());
    let reference = env.dir.path().join("ref-lake");
    reference_run(&env, &reference);
    keep_logs(&env);
    let mut diff = compare(&reference, &env.lake()).await;
    // The reference reads the same topic: a duplicate the producer published would be in both.
    // So count the topic's events against the replay too.
    let got = env.bronze_lines().await;
    let want = common::replay_lines(s.minutes * 4);
    diff.doubled += got.len().saturating_sub(want.len());
    diff.lost += want.len().saturating_sub(got.len());
    assert_eq!(
        common::checksum(got),
        common::checksum(want),
        "bronze holds the replay exactly"
    );
    record(
        "embedded broker: SIGKILL, restarted 0.5-3 s later",
        s.broker_kills,
        total(&s),
        diff,
        &mut recover,
    );
    assert_eq!(
        (diff.lost, diff.doubled),
        (0, 0),
        "nothing lost, nothing doubled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_one_killed_one_added_back() {
    let _serial = SERIAL.lock().await;
    let s = scale();
    let env = TestEnv::new("chaos-group").await;
    let mut m = Moments::new();
    let pipeline = pipeline(env.dir.path());
    let worker = |name: &str| {
        let mut c = env.run_cmd(&[
            "--max-batch-events",
            "2000",
            "--session-timeout",
            "6s",
            "--stall-timeout",
            "5s",
        ]);
        c.arg("--pipeline").arg(&pipeline);
        Guard::spawn(with_log(c, &log_file(&env, &format!("{name}.log"))))
    };
    let _dump = DumpOnPanic(
        ["w0.log", "w1.log", "w2.log", "w3.log"]
            .iter()
            .map(|n| log_file(&env, n))
            .collect(),
    );
    let mut producer = producer(&env, &s);
    let mut workers: Vec<Guard> = (0..3).map(|i| worker(&format!("w{i}"))).collect();
    let table = env.lake().join("bronze/station_status");
    wait_for("the first commits", 120, async || commits(&table) >= 3).await;
    tokio::time::sleep(m.between(2000, 5000)).await;
    // SIGKILL one: its partitions move once its session expires.
    let victim = workers.remove(0);
    let before = positions(&env.lake()).await;
    signal(victim.0.id(), "-KILL");
    let at = Instant::now();
    drop(victim);
    let mut recover = vec![
        recovered(&env.lake(), &before, at)
            .await
            .expect("the others take the dead worker's partitions"),
    ];
    // Add one back: the group rebalances again, nothing lost or doubled on the way.
    let before = positions(&env.lake()).await;
    let at = Instant::now();
    workers.push(worker("w3"));
    recover.push(
        recovered(&env.lake(), &before, at)
            .await
            .expect("progress after the new worker joins"),
    );
    assert!(producer.wait_within(900).success(), "the producer finishes");
    drained(&env, total(&s)).await;
    for w in &workers {
        signal(w.0.id(), "-TERM");
    }
    for w in &mut workers {
        assert!(w.wait_within(120).success());
    }
    let reference = env.dir.path().join("ref-lake");
    reference_run(&env, &reference);
    keep_logs(&env);
    let diff = compare(&reference, &env.lake()).await;
    record(
        "3 workers in a group: SIGKILL one, add one",
        2,
        total(&s),
        diff,
        &mut recover,
    );
    assert_eq!(
        (diff.lost, diff.doubled),
        (0, 0),
        "nothing lost, nothing doubled"
    );
}

/// A small tmpfs mounted on the lake's folder (root only), unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(at.into()))
    }

    fn mount_cmd(args: &[&str], at: &Path) {
        let s = std::process::Command::new(args[0])
            .args(&args[1..])
            .arg(at)
            .status()
            .unwrap();
        assert!(s.success(), "{args:?}");
    }

    /// Read-only from now on for every new open (a read-only bind mount over the folder; files
    /// open for writing could not be remounted read-only).
    fn read_only(&self) {
        let at = self.0.display().to_string();
        Self::mount_cmd(&["mount", "--bind", &at], &self.0);
        Self::mount_cmd(&["mount", "-o", "remount,bind,ro"], &self.0);
    }

    fn writable(&self) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_turns_read_only_then_fills_up() {
    let _serial = SERIAL.lock().await;
    let s = scale();
    let env = TestEnv::new("chaos-disk").await;
    let Some(disk) = SmallDisk::mount(&env.lake(), "512m") else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let mut m = Moments::new();
    let log = log_file(&env, "run.log");
    let _dump = DumpOnPanic(vec![log.clone()]);
    let mut producer = producer(&env, &s);
    let mut c = env.run_cmd(&["--max-batch-events", "2000", "--stall-timeout", "5s"]);
    c.arg("--pipeline").arg(pipeline(env.dir.path()));
    let mut worker = Guard::spawn(with_log(c, &log));
    let table = env.lake().join("bronze/station_status");
    wait_for("the first commits", 120, async || commits(&table) >= 2).await;
    let mut recover = Vec::new();
    let mut faults = 0;
    for round in 0..s.kills.div_ceil(3) {
        // Read-only for a while.
        tokio::time::sleep(m.between(1000, 3000)).await;
        let before = positions(&env.lake()).await;
        disk.read_only();
        let at = Instant::now();
        tokio::time::sleep(m.between(2000, 6000)).await;
        disk.writable();
        recover.push(
            recovered(&env.lake(), &before, at)
                .await
                .unwrap_or_else(|| panic!("no progress after the lake was read-only ({round})")),
        );
        // Full: a file takes every free byte.
        tokio::time::sleep(m.between(1000, 3000)).await;
        let before = positions(&env.lake()).await;
        let filler = env.lake().join("filler");
        let _ = std::process::Command::new("dd")
            .args(["if=/dev/zero", "bs=1M"])
            .arg(format!("of={}", filler.display()))
            .stderr(std::process::Stdio::null())
            .status();
        let at = Instant::now();
        tokio::time::sleep(m.between(2000, 6000)).await;
        std::fs::remove_file(&filler).unwrap();
        recover.push(
            recovered(&env.lake(), &before, at)
                .await
                .unwrap_or_else(|| panic!("no progress after the disk was full ({round})")),
        );
        faults += 2;
        assert!(
            worker.0.try_wait().unwrap().is_none(),
            "rtlake run died on a storage fault"
        );
    }
    assert!(producer.wait_within(900).success(), "the producer finishes");
    drained(&env, total(&s)).await;
    signal(worker.0.id(), "-TERM");
    assert!(worker.wait_within(120).success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("Read-only file system") && text.contains("No space left on device"),
        "the log says what happened to the lake"
    );
    assert!(!text.contains("panicked"), "no panic");
    let reference = env.dir.path().join("ref-lake");
    reference_run(&env, &reference);
    keep_logs(&env);
    let diff = compare(&reference, &env.lake()).await;
    record(
        "lake storage: read-only for 2-6 s, then full for 2-6 s",
        faults,
        total(&s),
        diff,
        &mut recover,
    );
    assert_eq!(
        (diff.lost, diff.doubled),
        (0, 0),
        "nothing lost, nothing doubled"
    );
}
