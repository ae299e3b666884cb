//! `rtlake run` heals itself: after its own group session expires (the process stopped with
//! SIGSTOP past the session timeout), after a SIGKILL and a restart with the same command
//! (statically assigned: committing again within 5 s), and when the broker stops answering (the
//! watchdog). In each, every event lands in bronze exactly once and silver equals the change
//! rule. A broker killed and restarted: broker_restart.rs.

use crate::common;

use common::faults::{
    DumpOnPanic, OwnBroker, STATIONS, assert_exact, bronze_count, log_file, restarts_logged, wave,
    with_log,
};
use common::{Guard, TestEnv, commits, rtlake, signal, wait_for};
use std::process::Stdio;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_rejoins_after_its_session_expired_while_stopped() {
    let _beside = crate::beside().await;
    let env = TestEnv::new("session").await;
    let mut cfg = env.config();
    cfg.source.state_file = Some(env.dir.path().join("replay.json"));
    wave(&mut cfg, 2).await;
    let log = log_file(&env, "run.log");
    // Apache Kafka takes session timeouts from 6 s (group.min.session.timeout.ms).
    let args = [
        "--max-batch-events",
        "2000",
        "--max-batch-delay",
        "200ms",
        "--session-timeout",
        "6s",
        "--stall-timeout",
        "5s",
    ];
    let mut run = Guard::spawn(with_log(env.run_cmd(&args), &log));
    let table = env.lake().join("bronze/station_status");
    wait_for("the first commits", 60, async || commits(&table) >= 2).await;
    let members = async || {
        env.cluster()
            .describe_topic(&env.topic, std::slice::from_ref(&env.group))
            .await
            .map(|d| d.members.iter().filter(|m| m.group == env.group).count())
            .unwrap_or(usize::MAX)
    };
    wait_for("the processor in its group", 60, async || {
        members().await == 1
    })
    .await;
    signal(run.0.id(), "-STOP");
    // Past the session timeout the group drops the stopped member.
    wait_for("the group to drop the stopped member", 60, async || {
        members().await == 0
    })
    .await;
    wave(&mut cfg, 4).await;
    signal(run.0.id(), "-CONT");
    let total = 16 * STATIONS;
    wait_for(
        "every event to land after the session expired",
        120,
        async || bronze_count(&env).await >= total,
    )
    .await;
    assert!(
        run.0.try_wait().unwrap().is_none(),
        "rtlake run kept running"
    );
    signal(run.0.id(), "-TERM");
    assert!(run.wait_within(120).success(), "rtlake run stops cleanly");
    assert_exact(&env, 16).await;
    eprintln!("consumer restarts: {}", restarts_logged(&log));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_static_worker_restarted_with_the_same_command_commits_within_5s() {
    // Beside other tests on two cores it measured their load rather than the restart (9 s once,
    // 1 s otherwise).
    let _alone = crate::alone().await;
    let env = TestEnv::new("restart").await;
    // A replay producing for about half a minute, beside the worker.
    let mut producer = rtlake();
    producer
        .args([
            "produce",
            "bikes",
            "--source",
            "replay",
            "--speed",
            "20",
            "--minutes",
            "8",
            "--metrics-listen",
            "off",
            "--brokers",
            &env.brokers,
            "--topic",
            &env.topic,
        ])
        .stdout(Stdio::null());
    let mut producer = Guard::spawn(producer);
    let args = [
        "--assignment",
        "static",
        "--max-batch-events",
        "2000",
        "--max-batch-delay",
        "200ms",
        "--metrics-listen",
        "off",
    ];
    let table = env.lake().join("bronze/station_status");
    let mut run = Guard::spawn(env.run_cmd(&args));
    let mut worst = Duration::ZERO;
    for kill in 0..3 {
        wait_for("commits", 60, async || commits(&table) >= 3 + 3 * kill).await;
        run.0.kill().unwrap();
        run.wait_within(120);
        let before = commits(&table);
        let restarted = Instant::now();
        run = Guard::spawn(env.run_cmd(&args));
        wait_for("a commit after the restart", 30, async || {
            commits(&table) > before
        })
        .await;
        let took = restarted.elapsed();
        eprintln!(
            "restart {kill}: committing again after {:.2} s",
            took.as_secs_f64()
        );
        worst = worst.max(took);
    }
    assert!(producer.wait_within(120).success(), "the producer finished");
    let total = 32 * STATIONS;
    wait_for("every event to land", 120, async || {
        bronze_count(&env).await >= total
    })
    .await;
    signal(run.0.id(), "-TERM");
    assert!(run.wait_within(120).success(), "rtlake run stops cleanly");
    assert_exact(&env, 32).await;
    assert!(
        worst < Duration::from_secs(5),
        "a restarted worker commits within 5 s (worst {worst:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wedged_broker_makes_the_watchdog_restart_the_consumer_and_nothing_is_lost() {
    let _beside = crate::beside().await;
    if std::env::var("RTLAKE_TEST_BROKERS").is_ok() {
        rtlake_core::testing::skip(
            "needs the embedded broker in a process of its own (to stop it with SIGSTOP)",
        );
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
    std::fs::write(
        &pipeline,
        "[[sinks]]\noperator = \"bronze\"\n[[sinks]]\noperator = \"changes\"\n",
    )
    .unwrap();
    let args = [
        "--pipeline",
        pipeline.to_str().unwrap(),
        "--assignment",
        "static",
        "--max-batch-events",
        "2000",
        "--max-batch-delay",
        "200ms",
        "--stall-timeout",
        "3s",
    ];
    let mut run = Guard::spawn(with_log(env.run_cmd(&args), &log));
    let table = env.lake().join("bronze/station_status");
    wait_for("the first commits", 60, async || commits(&table) >= 2).await;
    // The broker stops answering, its connections stay open: a wedged broker.
    let pid = own.child.as_ref().unwrap().0.id();
    signal(pid, "-STOP");
    wait_for("the watchdog to restart the consumer", 60, async || {
        restarts_logged(&log) >= 1
    })
    .await;
    signal(pid, "-CONT");
    wave(&mut cfg, 4).await;
    let total = 16 * STATIONS;
    wait_for(
        "every event to land after the broker answered again",
        120,
        async || bronze_count(&env).await >= total,
    )
    .await;
    signal(run.0.id(), "-TERM");
    assert!(run.wait_within(120).success(), "rtlake run stops cleanly");
    assert_exact(&env, 16).await;
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("restarting the consumer"))
        .unwrap();
    eprintln!("{line}");
    assert!(
        line.contains("does not answer") || line.contains("have data"),
        "the log says why: {line}"
    );
    own.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_restarted_with_its_id_takes_its_partitions_back_without_a_rebalance() {
    let _beside = crate::beside().await;
    let env = TestEnv::new("member").await;
    let mut cfg = env.config();
    cfg.source.state_file = Some(env.dir.path().join("replay.json"));
    wave(&mut cfg, 2).await;
    let base = [
        "--max-batch-events",
        "2000",
        "--max-batch-delay",
        "200ms",
        "--metrics-listen",
        "off",
        "--session-timeout",
        "20s",
    ];
    let worker = |id: &str, log: &std::path::Path| {
        with_log(
            env.run_cmd(&[&base[..], &["--instance-id", id]].concat()),
            log,
        )
    };
    let (log_a, log_b) = (log_file(&env, "a.log"), log_file(&env, "b.log"));
    let _dump = DumpOnPanic(vec![log_a.clone(), log_b.clone(), log_file(&env, "a2.log")]);
    // The partition sets a worker held, one entry per change: a cooperative rebalance can log
    // the same set twice (its second step moves nothing of this worker's), which is no move.
    let held = |log: &std::path::Path| -> Vec<String> {
        let mut sets: Vec<String> = std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("partitions held"))
            .map(|l| l.split("partitions=").nth(1).unwrap_or("").to_string())
            .collect();
        sets.dedup();
        sets
    };
    let mut a = Guard::spawn(worker("worker-a", &log_a));
    let mut b = Guard::spawn(worker("worker-b", &log_b));
    wait_for("both workers to hold partitions", 60, async || {
        let (x, y) = (held(&log_a), held(&log_b));
        x.last().is_some_and(|s| s != "{}") && y.last().is_some_and(|s| s != "{}")
    })
    .await;
    let mine = held(&log_a).last().unwrap().clone();
    let b_before = held(&log_b).len();
    a.0.kill().unwrap();
    a.wait_within(120);
    let restarted = Instant::now();
    let log_a2 = log_file(&env, "a2.log");
    a = Guard::spawn(worker("worker-a", &log_a2));
    wait_for(
        "the restarted member to hold its partitions",
        60,
        async || held(&log_a2).last().is_some_and(|s| *s == mine),
    )
    .await;
    let took = restarted.elapsed();
    eprintln!(
        "worker-a ({mine}) held its partitions again {:.2} s after the restart",
        took.as_secs_f64()
    );
    wave(&mut cfg, 4).await;
    let total = 16 * STATIONS;
    wait_for("every event to land", 120, async || {
        bronze_count(&env).await >= total
    })
    .await;
    for w in [&mut a, &mut b] {
        signal(w.0.id(), "-TERM");
        assert!(w.wait_within(120).success(), "a worker stops cleanly");
    }
    assert_exact(&env, 16).await;
    assert_eq!(
        held(&log_b).len(),
        b_before,
        "worker-b's partitions never moved: no rebalance ({:?})",
        held(&log_b)
    );
    assert!(
        took < Duration::from_secs(10),
        "a static member is back well within its 20 s session ({took:?})"
    );
}
