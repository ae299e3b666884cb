//! Helpers for integration tests: a real broker (embedded, or external via
//! `RTLAKE_TEST_BROKERS`), a unique topic and lake per test, the `rtlake` binary, SQL.
#![allow(dead_code)]

pub mod chaos_kit;
pub mod engines;
pub mod faults;
pub mod registry;
pub mod s3;

use rtlake_bikes::config::ProduceConfig;
use rtlake_broker::EmbeddedBroker;
use rtlake_core::config::Layers;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct TestEnv {
    pub broker: Option<EmbeddedBroker>,
    pub brokers: String,
    pub dir: tempfile::TempDir,
    pub topic: String,
    pub group: String,
}

impl TestEnv {
    pub async fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (broker, brokers) = match std::env::var("RTLAKE_TEST_BROKERS") {
            Ok(b) => (None, b),
            Err(_) => {
                let b = EmbeddedBroker::start(
                    "127.0.0.1:0".parse().unwrap(),
                    &dir.path().join("broker"),
                )
                .await
                .expect("broker starts");
                let s = b.bootstrap();
                (Some(b), s)
            }
        };
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            broker,
            brokers,
            dir,
            topic: format!("{name}-{}", &id[..8]),
            group: format!("g-{}", &id[..8]),
        }
    }

    pub fn lake(&self) -> PathBuf {
        self.dir.path().join("lake")
    }

    /// The producer's configuration against this env: its broker and topic, the replay at
    /// full speed.
    pub fn config(&self) -> ProduceConfig {
        let layers = Layers::new()
            .set("kafka.brokers", self.brokers.as_str(), "test")
            .set("kafka.topic", self.topic.as_str(), "test")
            .set("source.speed", "max", "test");
        ProduceConfig {
            kafka: layers.section().expect("test config"),
            producer: layers.section().expect("test config"),
            source: layers.section().expect("test config"),
        }
    }

    /// A handle on this env's cluster.
    pub fn cluster(&self) -> rtlake_kafka::Cluster {
        rtlake_kafka::Cluster::connect(&self.config().kafka).expect("kafka client")
    }

    /// This env's lake.
    pub fn lake_config(&self) -> rtlake_lake::LakeConfig {
        rtlake_lake::LakeConfig::at(self.lake().display().to_string())
    }

    /// `rtlake run` against this env, with extra flags.
    pub fn run_cmd(&self, extra: &[&str]) -> Command {
        self.run_cmd_in_group(&self.group, extra)
    }

    pub fn run_cmd_in_group(&self, group: &str, extra: &[&str]) -> Command {
        let mut c = rtlake();
        c.args(["run", "--brokers", &self.brokers, "--lake"])
            .arg(self.lake())
            .args(["--topic", &self.topic, "--group", group])
            .args(extra);
        c
    }

    pub async fn sql(&self, q: &str) -> Vec<Vec<String>> {
        sql_rows(&self.lake(), q).await
    }
}

/// Whether the tests run on scripts/kafka.sh's Apache Kafka, which has transactions: there a
/// Kafka sink that falls back to at least once is a failure, not a skip.
pub fn kafka_has_transactions() -> bool {
    std::env::var("RTLAKE_TEST_KAFKA_SH").is_ok()
}

/// The `rtlake` binary, logging warnings only.
pub fn rtlake() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rtlake"));
    c.env(
        "RTLAKE_LOG",
        "warn,buoyant_kernel=off,deltalake_core::operations::merge=error",
    );
    c
}

/// Runs SQL over a lake and returns the rows as strings (via the CSV writer).
pub async fn sql_rows(lake: &Path, q: &str) -> Vec<Vec<String>> {
    let cfg = rtlake_lake::LakeConfig::at(lake.display().to_string());
    sql_on(&cfg, q).await
}

/// Runs SQL over the lake of `cfg` (local or an object store).
pub async fn sql_on(cfg: &rtlake_lake::LakeConfig, q: &str) -> Vec<Vec<String>> {
    let (_, out) = sql_written(cfg, q, rtlake_query::Format::Csv)
        .await
        .unwrap_or_else(|e| panic!("{q}: {e}"));
    String::from_utf8(out)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(String::from).collect())
        .collect()
}

/// Runs SQL over the lake of `cfg` in a session like `rtlake sql`'s, and writes the result in
/// `format`, with the result's column names; the error names the lake, the session or the query.
pub async fn sql_written(
    cfg: &rtlake_lake::LakeConfig,
    q: &str,
    format: rtlake_query::Format,
) -> Result<(Vec<String>, Vec<u8>), String> {
    let lake = rtlake_lake::Lake::open(cfg).map_err(|e| format!("lake: {e}"))?;
    let s =
        rtlake_query::LakeSql::open_with(&lake, Default::default(), rtlake_bikes::tables::VIEWS)
            .await
            .map_err(|e| format!("sql session: {e}"))?;
    let (schema, batches) = s.query(q).await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    rtlake_query::write(&mut out, &schema, &batches, format).map_err(|e| e.to_string())?;
    Ok((
        schema.fields().iter().map(|f| f.name().clone()).collect(),
        out,
    ))
}

/// Counts the commits of a table (Delta log entries, or Iceberg metadata versions).
pub fn commits(table: &Path) -> usize {
    if table.join("metadata").exists() {
        // An Iceberg table on the file catalog: a metadata version per commit, after the first.
        return std::fs::read_dir(table.join("metadata")).map_or(0, |d| {
            d.flatten()
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().to_string();
                    n.starts_with('v') && n.ends_with(".metadata.json")
                })
                .count()
                .saturating_sub(1)
        });
    }
    std::fs::read_dir(table.join("_delta_log"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count()
        })
        .unwrap_or(0)
}

/// sha256 over sorted `station_id,polled_at_us,bikes` lines: the checksum every reader must agree on.
pub fn checksum(mut lines: Vec<String>) -> String {
    use sha2::Digest;
    lines.sort();
    let mut h = sha2::Sha256::new();
    for l in &lines {
        h.update(l.as_bytes());
        h.update(b"\n");
    }
    format!("{:x}", h.finalize())
}

/// The Python interpreter with `deltalake` (scripts/setup.sh makes it).
pub fn python() -> String {
    std::env::var("RTLAKE_PYTHON").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_default();
        format!("{home}/.cache/rtlake/venv/bin/python")
    })
}

/// A child process killed when dropped, so a failing test leaves nothing running.
pub struct Guard(pub std::process::Child);

impl Guard {
    pub fn spawn(mut c: Command) -> Self {
        Self(c.spawn().expect("spawn rtlake"))
    }

    /// Waits for the process to exit; past `secs` prints its threads, kills it and fails.
    pub fn wait_within(&mut self, secs: u64) -> std::process::ExitStatus {
        let t0 = std::time::Instant::now();
        loop {
            if let Some(s) = self.0.try_wait().expect("wait") {
                return s;
            }
            if t0.elapsed() > std::time::Duration::from_secs(secs) {
                let stacks = stacks(self.0.id());
                let _ = self.0.kill();
                panic!(
                    "process {} did not exit within {secs} s; its threads:\n{stacks}",
                    self.0.id()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The replay from 2025-10-01 08:00 KST, a poll every 15 s, as the producer's default.
pub fn replay() -> rtlake_bikes::replay::Replay {
    let start = rtlake_core::time::parse_rfc3339("2025-10-01T08:00:00+09:00").unwrap();
    let data = rtlake_bikes::replay::RecordedData::builtin().unwrap();
    rtlake_bikes::replay::Replay::new(data, start, std::time::Duration::from_secs(15), 1)
}

/// Polls `f` every 100 ms until it holds, failing the test after `secs`.
pub async fn wait_for(what: &str, secs: u64, mut f: impl AsyncFnMut() -> bool) {
    eprintln!("waiting for {what}");
    let t0 = std::time::Instant::now();
    while !f().await {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(secs),
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Sends a signal (`-STOP`, `-CONT`, `-TERM`) to a process.
pub fn signal(pid: u32, sig: &str) {
    assert!(
        Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success(),
        "kill {sig} {pid}"
    );
}

/// A TCP port free on loopback now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The replay's first `polls` polls as a JSON-lines file in `dir` (`events.jsonl`), for
/// `--source file:`.
pub fn replay_file(dir: &std::path::Path, polls: u64) -> std::path::PathBuf {
    let mut r = replay();
    let mut text = String::new();
    for _ in 0..polls {
        for e in &r.next_poll().events {
            text.push_str(&e.to_json());
            text.push('\n');
        }
    }
    let events = dir.join("events.jsonl");
    std::fs::write(&events, text).unwrap();
    events
}

/// The `station_id,polled_at_us,bikes` lines of the first `polls` polls of the replay from
/// 2025-10-01 08:00 KST.
pub fn replay_lines(polls: u64) -> Vec<String> {
    let mut r = replay();
    let mut out = Vec::new();
    for _ in 0..polls {
        let p = r.next_poll();
        out.extend(p.events.iter().map(|e| {
            format!(
                "{},{},{}",
                e.station_id,
                p.polled_at.timestamp_micros(),
                e.parking_bike_tot_cnt
            )
        }));
    }
    out
}

impl TestEnv {
    /// The same lines as bronze holds them.
    pub async fn bronze_lines(&self) -> Vec<String> {
        self.sql(
            "SELECT station_id, CAST(polled_at AS BIGINT), bikes_parked FROM bronze.station_status",
        )
        .await
        .into_iter()
        .map(|r| r.join(","))
        .collect()
    }
}

/// `station,polled_us,prev_polled_us,bikes,prev_bikes,rentals,returns` lines of the change rows
/// the first `polls` polls of the replay must give.
pub fn replay_changes(polls: u64) -> Vec<String> {
    use rtlake_bikes::changes::{ChangeState, Outcome, Snapshot};
    let mut r = replay();
    let mut state = ChangeState::default();
    let mut out = Vec::new();
    for _ in 0..polls {
        let p = r.next_poll();
        for e in &p.events {
            let bikes: i32 = e.parking_bike_tot_cnt.parse().unwrap();
            let s = Snapshot {
                station_id: e.station_id.clone(),
                polled_at: p.polled_at.timestamp_micros(),
                bikes,
            };
            if let Outcome::Change {
                prev,
                rentals,
                returns,
            } = state.apply(&s)
            {
                out.push(format!(
                    "{},{},{},{},{},{},{}",
                    s.station_id, s.polled_at, prev.polled_at, bikes, prev.bikes, rentals, returns
                ));
            }
        }
    }
    out
}

impl TestEnv {
    /// The same lines as silver holds them.
    pub async fn silver_lines(&self) -> Vec<String> {
        self.sql("SELECT station_id, CAST(polled_at AS BIGINT), CAST(prev_polled_at AS BIGINT), bikes_parked, prev_bikes_parked, rentals, returns FROM silver.station_changes")
            .await
            .into_iter()
            .map(|r| r.join(","))
            .collect()
    }
}

/// Runs a command to its end within a deadline and fails the test, with its stderr, unless it
/// succeeded: the shape of every "run once, available-now, within N s, then check" step.
pub trait Succeeds {
    fn succeeds_within(&mut self, secs: u64) -> std::process::Output;
}

impl Succeeds for Command {
    fn succeeds_within(&mut self, secs: u64) -> std::process::Output {
        // The arguments only: the environment may hold a test's secrets.
        let shown = format!(
            "{:?} {:?}",
            self.get_program(),
            self.get_args().collect::<Vec<_>>()
        );
        let out = self
            .output_within(secs)
            .unwrap_or_else(|e| panic!("{shown} did not start: {e}"));
        assert!(
            out.status.success(),
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

/// `Command::output` with a deadline, so a run that hangs fails its test instead of the whole
/// suite: past `secs` the threads' stacks are printed (gdb, where installed), the process is
/// killed and the test fails with the tail of its stderr.
pub trait OutputWithin {
    fn output_within(&mut self, secs: u64) -> std::io::Result<std::process::Output>;
}

impl OutputWithin for Command {
    fn output_within(&mut self, secs: u64) -> std::io::Result<std::process::Output> {
        use std::io::Read;
        use std::process::Stdio;
        let mut child = self.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        let mut pipes = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let out = std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = pipes.0.read_to_end(&mut b);
            b
        });
        let err = std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = pipes.1.read_to_end(&mut b);
            b
        });
        let t0 = std::time::Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait()? {
                break s;
            }
            if t0.elapsed() > std::time::Duration::from_secs(secs) {
                let stacks = stacks(child.id());
                let _ = child.kill();
                let _ = child.wait();
                let err = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
                // Its start and its end, leaving out the processor's repeated progress lines.
                let lines: Vec<&str> = err
                    .lines()
                    .filter(|l| !l.contains("INFO processing"))
                    .collect();
                let head = lines
                    .iter()
                    .take(80)
                    .copied()
                    .collect::<Vec<_>>()
                    .join("\n");
                // The end as it was, progress lines included: they show whether the loop
                // still turned and what it held.
                let all: Vec<&str> = err.lines().collect();
                let tail = all
                    .iter()
                    .skip(all.len().saturating_sub(60))
                    .copied()
                    .collect::<Vec<_>>()
                    .join("\n");
                panic!(
                    "{:?} did not finish within {secs} s; its threads:\n{stacks}\nits stderr (without progress lines):\n{head}\n...\n{tail}",
                    self.get_args().collect::<Vec<_>>()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        Ok(std::process::Output {
            status,
            stdout: out.join().unwrap(),
            stderr: err.join().unwrap(),
        })
    }
}

/// The threads' stacks of a process, by gdb (for a test that gives up waiting on it).
pub fn stacks(pid: u32) -> String {
    Command::new("gdb")
        .args([
            "-p",
            &pid.to_string(),
            "-batch",
            "-ex",
            "thread apply all bt 12",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|e| format!("(no gdb: {e})"))
}

/// Every message of a topic: (payload, rtlake-partition, rtlake-offset, rtlake-pipeline).
pub fn read_topic(brokers: &str, topic: &str) -> Vec<(String, i32, i64, String)> {
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Headers;
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{topic}"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = c
        .fetch_metadata(Some(topic), std::time::Duration::from_secs(10))
        .unwrap();
    let parts: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut tpl = rdkafka::TopicPartitionList::new();
    let mut left = std::collections::BTreeMap::new();
    for p in &parts {
        let (lo, hi) = c
            .fetch_watermarks(topic, *p, std::time::Duration::from_secs(10))
            .unwrap();
        tpl.add_partition_offset(topic, *p, rdkafka::Offset::Offset(lo))
            .unwrap();
        if hi > lo {
            left.insert(*p, hi);
        }
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let t0 = std::time::Instant::now();
    while !left.is_empty() {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(60),
            "reading {topic} took too long"
        );
        let Some(m) = c.poll(std::time::Duration::from_millis(500)) else {
            // A transactional topic ends with a commit marker, which is never delivered: the
            // consumer's position passes it.
            if let Ok(pos) = c.position() {
                for e in pos.elements() {
                    if let rdkafka::Offset::Offset(o) = e.offset()
                        && left.get(&e.partition()).is_some_and(|hi| o >= *hi)
                    {
                        left.remove(&e.partition());
                    }
                }
            }
            continue;
        };
        let m = m.unwrap();
        let h = m.headers().expect("every message has headers");
        let header = |k: &str| {
            h.iter()
                .find(|x| x.key == k)
                .and_then(|x| x.value)
                .map(|v| String::from_utf8_lossy(v).to_string())
                .unwrap()
        };
        out.push((
            String::from_utf8_lossy(m.payload().unwrap()).to_string(),
            header("rtlake-partition").parse().unwrap(),
            header("rtlake-offset").parse().unwrap(),
            header("rtlake-pipeline"),
        ));
        if left
            .get(&m.partition())
            .is_some_and(|hi| m.offset() + 1 >= *hi)
        {
            left.remove(&m.partition());
        }
    }
    out
}
