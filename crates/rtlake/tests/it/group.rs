//! Two workers of one pipeline in one consumer group split the partitions; when one stops the
//! other takes its partitions from where the lake says, and every event lands exactly once.
//!
//! The worker is stopped with SIGTERM (it leaves the group). A SIGKILLed worker restarted with
//! the same command (same group) is tested in bronze.rs: its partitions come back once the dead
//! member's session expires; with a static member id at once (healing.rs).

use crate::common;

use common::{Guard, TestEnv, checksum, commits, wait_for};
use rtlake_bikes::produce::{Source, produce};
use std::process::Stdio;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_workers_partitions_move_to_the_other_exactly_once() {
    let env = TestEnv::new("group").await;
    let mut cfg = env.config();
    cfg.source.state_file = Some(env.dir.path().join("replay.json"));
    let wave = async |cfg: &mut rtlake_bikes::config::ProduceConfig, minutes: u64| {
        cfg.source.minutes = Some(minutes);
        produce(cfg, Source::Replay, CancellationToken::new())
            .await
            .expect("produce");
    };
    let table = env.lake().join("bronze/station_status");
    let strategy =
        std::env::var("RTLAKE_TEST_STRATEGY").unwrap_or_else(|_| "cooperative-sticky".into());
    let args = [
        "--max-batch-events",
        "300",
        "--max-batch-delay",
        "100ms",
        "--assignment-strategy",
        &strategy,
    ];
    let log_b = std::env::var("RTLAKE_TEST_LOG_B")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| env.dir.path().join("b.log"));

    wave(&mut cfg, 2).await;
    let mut a = Guard::spawn(env.run_cmd(&args));
    wait_for("worker A to commit", 60, async || commits(&table) >= 3).await;

    let mut cmd = env.run_cmd(&args);
    cmd.env("RTLAKE_LOG", "rtlake_stream=info")
        .stderr(Stdio::from(std::fs::File::create(&log_b).unwrap()));
    let mut b = Guard::spawn(cmd);
    let assigned = || {
        std::fs::read_to_string(&log_b)
            .unwrap_or_default()
            .matches("assigned; resuming")
            .count()
    };
    wait_for("worker B to get partitions", 60, async || assigned() >= 1).await;
    wave(&mut cfg, 4).await;

    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &a.0.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    assert!(a.wait_within(120).success(), "worker A stops cleanly");
    let a_stopped = std::time::Instant::now();
    wave(&mut cfg, 6).await;
    let total = 24 * 2721;
    wait_for("worker B to take A's partitions", 60, async || {
        assigned() >= 2
    })
    .await;
    // A left the group as it stopped: B did not wait for A's session (10 s) to expire.
    assert!(
        a_stopped.elapsed() < std::time::Duration::from_secs(8),
        "B took A's partitions {:?} after A stopped: A did not leave the group",
        a_stopped.elapsed()
    );
    wait_for("every event to land", 120, async || {
        env.sql("SELECT count(*) FROM bronze.station_status").await[0][0]
            .parse::<usize>()
            .unwrap()
            >= total
    })
    .await;
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &b.0.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    assert!(b.wait_within(120).success(), "worker B stops cleanly");

    let want = common::replay_lines(24);
    let got = env.bronze_lines().await;
    assert_eq!(got.len(), total, "no duplicates");
    assert_eq!(checksum(got), checksum(want), "exactly the produced events");
    // The change rule's state moved with the partitions: silver is exactly the reference.
    let (got, want) = (env.silver_lines().await, common::replay_changes(24));
    assert_eq!(got.len(), want.len(), "silver row count");
    assert_eq!(checksum(got), checksum(want), "silver rows");
}
