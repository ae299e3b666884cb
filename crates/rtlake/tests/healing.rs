//! `rtlake run` heals itself: after the broker is killed and started again, after its own
//! group session expires (the process stopped with SIGSTOP past the session timeout), and after
//! a SIGKILL and a restart with the same command (statically assigned: committing again within
//! 5 s). In each, every event lands in bronze exactly once and silver equals the change rule.
//!
//! Against an external cluster (`RTLAKE_TEST_BROKERS`) the broker test needs
//! `RTLAKE_TEST_KAFKA_SH=1` (the cluster of `scripts/kafka.sh`, whose broker 1 it kills).

mod common;

use common::{Guard, TestEnv, checksum, commits, rtlake, signal, wait_for};
use rtlake_bikes::produce::{Source, produce};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const STATIONS: usize = 2721;

async fn wave(cfg: &mut rtlake_core::Config, minutes: u64) {
    cfg.source.minutes = Some(minutes);
    produce(cfg, Source::Replay, CancellationToken::new()).await.expect("produce");
}

async fn bronze_count(env: &TestEnv) -> usize {
    if !env.lake().join("bronze/station_status/_delta_log").exists() {
        return 0;
    }
    env.sql("SELECT count(*) FROM bronze.station_status").await[0][0].parse().unwrap()
}

/// Bronze and silver hold exactly the first `polls` polls of the replay.
async fn assert_exact(env: &TestEnv, polls: u64) {
    let got = env.bronze_lines().await;
    assert_eq!(got.len(), polls as usize * STATIONS, "bronze: no event lost or doubled");
    assert_eq!(checksum(got), checksum(common::replay_lines(polls)), "bronze holds exactly the produced events");
    let (got, want) = (env.silver_lines().await, common::replay_changes(polls));
    assert_eq!(got.len(), want.len(), "silver row count");
    assert_eq!(checksum(got), checksum(want), "silver rows");
}

fn log_file(env: &TestEnv, name: &str) -> std::path::PathBuf {
    env.dir.path().join(name)
}

fn with_log(mut c: Command, path: &Path) -> Command {
    c.env("RTLAKE_LOG", "rtlake_stream=info,warn").stderr(Stdio::from(std::fs::File::create(path).unwrap()));
    c
}

fn restarts_logged(path: &Path) -> usize {
    std::fs::read_to_string(path).unwrap_or_default().matches("restarting the consumer").count()
}

/// The embedded broker as a process of its own, so that it can be killed.
struct OwnBroker {
    addr: String,
    data: std::path::PathBuf,
    child: Option<Guard>,
}

impl OwnBroker {
    fn start(addr: &str, data: &Path) -> Self {
        let mut b = Self { addr: addr.into(), data: data.into(), child: None };
        b.restart();
        b
    }

    fn restart(&mut self) {
        let mut c = rtlake();
        c.args(["broker", "--listen", &self.addr, "--data"]).arg(&self.data);
        self.child = Some(Guard::spawn(c));
        let t0 = Instant::now();
        while std::net::TcpStream::connect(&self.addr).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(30), "the broker did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut g) = self.child.take() {
            g.0.kill().unwrap();
            g.0.wait().unwrap();
        }
    }
}

fn kafka_sh(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/kafka.sh");
    let out = Command::new("bash").arg(script).args(args).output().unwrap();
    assert!(out.status.success(), "kafka.sh {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_carries_on_after_the_broker_is_killed_and_restarted() {
    let external = std::env::var("RTLAKE_TEST_BROKERS").is_ok();
    if external && std::env::var("RTLAKE_TEST_KAFKA_SH").is_err() {
        eprintln!("skipped: an external cluster that scripts/kafka.sh does not run (set RTLAKE_TEST_KAFKA_SH=1 for its cluster)");
        return;
    }
    let mut env = TestEnv::new("broker-restart").await;
    let mut own = None;
    if !external {
        // Replace the in-process broker with one in a process of its own.
        env.broker = None;
        let addr = format!("127.0.0.1:{}", common::free_port());
        own = Some(OwnBroker::start(&addr, &env.dir.path().join("own-broker")));
        env.brokers = addr;
    }
    let mut cfg = env.config();
    cfg.source.state_file = Some(env.dir.path().join("replay.json"));
    wave(&mut cfg, 2).await;
    let log = log_file(&env, "run.log");
    let mut run = Guard::spawn(with_log(env.run_cmd(&["--max-batch-events", "2000", "--max-batch-delay", "200ms", "--stall-timeout", "5s"]), &log));
    let table = env.lake().join("bronze/station_status");
    wait_for("the first commits", 60, async || commits(&table) >= 2).await;

    match own.as_mut() {
        Some(b) => b.kill(),
        None => kafka_sh(&["kill", "1"]),
    }
    let down = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    match own.as_mut() {
        Some(b) => b.restart(),
        None => kafka_sh(&["start", "1"]),
    }
    eprintln!("broker down for {:.1} s", down.elapsed().as_secs_f64());
    wave(&mut cfg, 5).await;
    let total = 20 * STATIONS;
    wait_for("every event to land after the broker came back", 120, async || bronze_count(&env).await >= total).await;
    assert!(run.0.try_wait().unwrap().is_none(), "rtlake run kept running");
    signal(run.0.id(), "-TERM");
    assert!(run.0.wait().unwrap().success(), "rtlake run stops cleanly");
    assert_exact(&env, 20).await;
    eprintln!("consumer restarts: {}", restarts_logged(&log));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_rejoins_after_its_session_expired_while_stopped() {
    let env = TestEnv::new("session").await;
    let mut cfg = env.config();
    cfg.source.state_file = Some(env.dir.path().join("replay.json"));
    wave(&mut cfg, 2).await;
    let log = log_file(&env, "run.log");
    let args = ["--max-batch-events", "2000", "--max-batch-delay", "200ms", "--session-timeout", "3s", "--stall-timeout", "5s"];
    let mut run = Guard::spawn(with_log(env.run_cmd(&args), &log));
    let table = env.lake().join("bronze/station_status");
    wait_for("the first commits", 60, async || commits(&table) >= 2).await;
    signal(run.0.id(), "-STOP");
    // Well past the session timeout: the group drops the member.
    tokio::time::sleep(Duration::from_secs(8)).await;
    wave(&mut cfg, 4).await;
    signal(run.0.id(), "-CONT");
    let total = 16 * STATIONS;
    wait_for("every event to land after the session expired", 120, async || bronze_count(&env).await >= total).await;
    assert!(run.0.try_wait().unwrap().is_none(), "rtlake run kept running");
    signal(run.0.id(), "-TERM");
    assert!(run.0.wait().unwrap().success(), "rtlake run stops cleanly");
    assert_exact(&env, 16).await;
    eprintln!("consumer restarts: {}", restarts_logged(&log));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_static_worker_restarted_with_the_same_command_commits_within_5s() {
    let env = TestEnv::new("restart").await;
    // A replay producing for about half a minute, beside the worker.
    let mut producer = rtlake();
    producer
        .args(["produce", "bikes", "--source", "replay", "--speed", "20", "--minutes", "8", "--metrics-listen", "off", "--brokers", &env.brokers, "--topic", &env.topic])
        .stdout(Stdio::null());
    let mut producer = Guard::spawn(producer);
    let args = ["--assignment", "static", "--max-batch-events", "2000", "--max-batch-delay", "200ms", "--metrics-listen", "off"];
    let table = env.lake().join("bronze/station_status");
    let mut run = Guard::spawn(env.run_cmd(&args));
    let mut worst = Duration::ZERO;
    for kill in 0..3 {
        wait_for("commits", 60, async || commits(&table) >= 3 + 3 * kill).await;
        run.0.kill().unwrap();
        run.0.wait().unwrap();
        let before = commits(&table);
        let restarted = Instant::now();
        run = Guard::spawn(env.run_cmd(&args));
        wait_for("a commit after the restart", 30, async || commits(&table) > before).await;
        let took = restarted.elapsed();
        eprintln!("restart {kill}: committing again after {:.2} s", took.as_secs_f64());
        worst = worst.max(took);
    }
    assert!(producer.0.wait().unwrap().success(), "the producer finished");
    let total = 32 * STATIONS;
    wait_for("every event to land", 120, async || bronze_count(&env).await >= total).await;
    signal(run.0.id(), "-TERM");
    assert!(run.0.wait().unwrap().success(), "rtlake run stops cleanly");
    assert_exact(&env, 32).await;
    assert!(worst < Duration::from_secs(5), "a restarted worker commits within 5 s (worst {worst:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wedged_broker_makes_the_watchdog_restart_the_consumer_and_nothing_is_lost() {
    if std::env::var("RTLAKE_TEST_BROKERS").is_ok() {
        eprintln!("skipped: needs the embedded broker in a process of its own (to stop it with SIGSTOP)");
        return;
    }
    let mut env = TestEnv::new("wedged").await;
    env.broker = None;
    let addr = format!("127.0.0.1:{}", common::free_port());
    let mut own = OwnBroker::start(&addr, &env.dir.path().join("own-broker"));
    env.brokers = addr;
    let mut cfg = env.config();
    cfg.source.state_file = Some(env.dir.path().join("replay.json"));
    wave(&mut cfg, 2).await;
    let log = log_file(&env, "run.log");
    // Without the Kafka sink, so that no epoch waits on deliveries (that path fails the epoch
    // after run.sink-timeout instead): the watchdog is what must notice.
    let pipeline = env.dir.path().join("pipeline.toml");
    std::fs::write(&pipeline, "[[sinks]]\noperator = \"bronze\"\n[[sinks]]\noperator = \"changes\"\n").unwrap();
    let args = ["--pipeline", pipeline.to_str().unwrap(), "--assignment", "static", "--max-batch-events", "2000", "--max-batch-delay", "200ms", "--stall-timeout", "3s"];
    let mut run = Guard::spawn(with_log(env.run_cmd(&args), &log));
    let table = env.lake().join("bronze/station_status");
    wait_for("the first commits", 60, async || commits(&table) >= 2).await;
    // The broker stops answering, its connections stay open: a wedged broker.
    let pid = own.child.as_ref().unwrap().0.id();
    signal(pid, "-STOP");
    wait_for("the watchdog to restart the consumer", 60, async || restarts_logged(&log) >= 1).await;
    signal(pid, "-CONT");
    wave(&mut cfg, 4).await;
    let total = 16 * STATIONS;
    wait_for("every event to land after the broker answered again", 120, async || bronze_count(&env).await >= total).await;
    signal(run.0.id(), "-TERM");
    assert!(run.0.wait().unwrap().success(), "rtlake run stops cleanly");
    assert_exact(&env, 16).await;
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text.lines().find(|l| l.contains("restarting the consumer")).unwrap();
    eprintln!("{line}");
    assert!(line.contains("does not answer") || line.contains("have data"), "the log says why: {line}");
    own.kill();
}
