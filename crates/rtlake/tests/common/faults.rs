//! Helpers of the fault tests: waves of the replay, exact checks, the embedded broker in a
//! process of its own, and the cluster of `scripts/kafka.sh`.

use super::{Guard, OutputWithin, TestEnv, checksum, rtlake};
use rtlake_bikes::produce::{Source, produce};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub const STATIONS: usize = 2721;

pub async fn wave(cfg: &mut rtlake_bikes::config::ProduceConfig, minutes: u64) {
    cfg.source.minutes = Some(minutes);
    produce(cfg, Source::Replay, CancellationToken::new())
        .await
        .expect("produce");
}

pub async fn bronze_count(env: &TestEnv) -> usize {
    if !env.lake().join("bronze/station_status/_delta_log").exists() {
        return 0;
    }
    env.sql("SELECT count(*) FROM bronze.station_status").await[0][0]
        .parse()
        .unwrap()
}

/// Bronze and silver hold exactly the first `polls` polls of the replay.
pub async fn assert_exact(env: &TestEnv, polls: u64) {
    let got = env.bronze_lines().await;
    assert_eq!(
        got.len(),
        polls as usize * STATIONS,
        "bronze: no event lost or doubled"
    );
    assert_eq!(
        checksum(got),
        checksum(super::replay_lines(polls)),
        "bronze holds exactly the produced events"
    );
    let (got, want) = (env.silver_lines().await, super::replay_changes(polls));
    assert_eq!(got.len(), want.len(), "silver row count");
    assert_eq!(checksum(got), checksum(want), "silver rows");
}

pub fn log_file(env: &TestEnv, name: &str) -> std::path::PathBuf {
    env.dir.path().join(name)
}

pub fn with_log(mut c: Command, path: &Path) -> Command {
    c.env("RTLAKE_LOG", "rtlake_stream=info,warn")
        .stderr(Stdio::from(std::fs::File::create(path).unwrap()));
    c
}

/// Prints these logs if the test fails while it is alive: a failed fault test says what the
/// workers did.
pub struct DumpOnPanic(pub Vec<std::path::PathBuf>);

impl Drop for DumpOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for p in &self.0 {
                eprintln!(
                    "---- {} ----\n{}",
                    p.display(),
                    std::fs::read_to_string(p).unwrap_or_default()
                );
            }
        }
    }
}

pub fn restarts_logged(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .matches("restarting the consumer")
        .count()
}

/// The embedded broker as a process of its own, so that it can be killed.
pub struct OwnBroker {
    pub addr: String,
    pub data: std::path::PathBuf,
    pub child: Option<Guard>,
}

impl OwnBroker {
    pub fn start(addr: &str, data: &Path) -> Self {
        let mut b = Self {
            addr: addr.into(),
            data: data.into(),
            child: None,
        };
        b.restart();
        b
    }

    pub fn restart(&mut self) {
        let mut c = rtlake();
        c.args(["broker", "--listen", &self.addr, "--data"])
            .arg(&self.data);
        self.child = Some(Guard::spawn(c));
        let t0 = Instant::now();
        while std::net::TcpStream::connect(&self.addr).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "the broker did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut g) = self.child.take() {
            g.0.kill().unwrap();
            g.wait_within(120);
        }
    }
}

pub fn kafka_sh(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/kafka.sh");
    let out = Command::new("bash")
        .arg(script)
        .args(args)
        .output_within(300)
        .unwrap();
    assert!(
        out.status.success(),
        "kafka.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
