//! `rtlake run` carries on after the broker is killed and started again: the embedded broker
//! in a process of its own, or (against `RTLAKE_TEST_BROKERS` with `RTLAKE_TEST_KAFKA_SH=1`)
//! broker 1 of the cluster of `scripts/kafka.sh`. Every event lands in bronze exactly once.
//! On the cluster, the other subjects' tests run while broker 1 is down: they must carry on too
//! (a run started then waits for its partitions' new leaders).

use crate::common;

use common::faults::{
    OwnBroker, STATIONS, assert_exact, bronze_count, kafka_sh, log_file, restarts_logged, wave,
    with_log,
};
use common::{Guard, TestEnv, commits, signal, wait_for};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_carries_on_after_the_broker_is_killed_and_restarted() {
    let external = std::env::var("RTLAKE_TEST_BROKERS").is_ok();
    if external && std::env::var("RTLAKE_TEST_KAFKA_SH").is_err() {
        rtlake_core::testing::skip(
            "an external cluster that scripts/kafka.sh does not run (set RTLAKE_TEST_KAFKA_SH=1 for its cluster)",
        );
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
    let mut run = Guard::spawn(with_log(
        env.run_cmd(&[
            "--max-batch-events",
            "2000",
            "--max-batch-delay",
            "200ms",
            "--stall-timeout",
            "5s",
        ]),
        &log,
    ));
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
    wait_for(
        "every event to land after the broker came back",
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
    assert_exact(&env, 20).await;
    eprintln!("consumer restarts: {}", restarts_logged(&log));
}
