//! The availability suite: the bike pipeline on the replay, a producer publishing as it goes,
//! while faults are injected; then every table is compared row for row with an uninterrupted
//! reference run over the same topic, and each scenario adds a row to the table
//! `scripts/chaos.sh` prints: faults, events, rows lost, rows doubled, time to recover.
//!
//! Short form (CI, a few faults of each kind): `cargo test -p rtlake --test recovery -- chaos::`.
//! Long form: `RTLAKE_CHAOS=long` (the 90-minute replay, 25 processor kills, 5 broker kills).
//! Recovery is measured from the fault to the moment every partition has new rows in bronze
//! again.

use crate::common;
use common::chaos_kit::*;

use common::faults::{DumpOnPanic, OwnBroker, log_file, with_log};
use common::{Guard, Succeeds, TestEnv, commits, signal, sql_rows, wait_for};
use std::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processor_kills_at_random_moments_and_inside_commits() {
    processor_kills("delta").await;
}

/// The same on Iceberg tables (file catalog), compared with a reference run on Delta tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processor_kills_on_iceberg_tables() {
    processor_kills("iceberg").await;
}

async fn processor_kills(format: &str) {
    let _alone = crate::alone().await;
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
        c.env("RTLAKE_LAKE_FORMAT", format);
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
    let mut diff = against_reference(&env).await;
    let once = every_offset_once(&env).await;
    diff.lost += once.lost;
    diff.doubled += once.doubled;
    let reasons = sql_rows(
        &lake,
        "SELECT reason, count(*) FROM _rejected GROUP BY 1 ORDER BY 1",
    )
    .await;
    eprintln!("rejections by reason: {reasons:?}");
    let count = |r: &str| {
        reasons
            .iter()
            .find(|x| x[0] == r)
            .map_or(0, |x| x[1].parse::<usize>().unwrap())
    };
    let rounds = s.bad_rounds;
    // The 8 MiB event of each round landed whole in bronze.
    let big = sql_rows(
        &lake,
        "SELECT count(*), min(octet_length(station_name)) FROM bronze.station_status WHERE octet_length(station_name) > 1000000",
    )
    .await;
    assert_eq!(big[0][0], rounds.to_string(), "{big:?}");
    assert!(
        rounds == 0 || big[0][1].parse::<usize>().unwrap() >= BIG,
        "{big:?}"
    );
    assert_eq!(count("decode"), 6 * rounds, "{reasons:?}");
    assert_eq!(count("validation"), rounds, "{reasons:?}");
    assert_eq!(count("future"), rounds, "{reasons:?}");
    assert!(
        count("stale") >= rounds && count("late") >= rounds,
        "{reasons:?}"
    );
    settle(
        &format!(
            "processor: SIGKILL, or abort inside a commit; restarted (+{bad} bad messages){}",
            if format == "delta" { "" } else { ", Iceberg" }
        ),
        s.kills,
        events,
        diff,
        &mut recover,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_kills_while_producer_and_processor_run() {
    if std::env::var("RTLAKE_TEST_BROKERS").is_ok() {
        rtlake_core::testing::skip(
            "the broker scenario kills the embedded broker (broker_restart.rs covers a cluster)",
        );
        return;
    }
    let _alone = crate::alone().await;
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
    assert!(
        worker.0.try_wait().unwrap().is_none(),
        "rtlake run kept running"
    );
    finish(
        &env,
        &mut producer,
        std::slice::from_mut(&mut worker),
        total(&s),
    )
    .await;
    let mut diff = against_reference(&env).await;
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
    settle(
        "embedded broker: SIGKILL, restarted 0.5-3 s later",
        s.broker_kills,
        total(&s),
        diff,
        &mut recover,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_one_killed_one_added_back() {
    three_workers("delta").await;
}

/// The same on Iceberg tables: three writers commit to each table through its catalog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_on_iceberg_tables_one_killed_one_added_back() {
    three_workers("iceberg").await;
}

async fn three_workers(format: &str) {
    let _alone = crate::alone().await;
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
        c.env("RTLAKE_LAKE_FORMAT", format);
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
    finish(&env, &mut producer, &mut workers, total(&s)).await;
    let diff = against_reference(&env).await;
    settle(
        if format == "delta" {
            "3 workers in a group: SIGKILL one, add one"
        } else {
            "3 workers in a group: SIGKILL one, add one; Iceberg"
        },
        2,
        total(&s),
        diff,
        &mut recover,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_turns_read_only_then_fills_up() {
    let _alone = crate::alone().await;
    let s = scale();
    let env = TestEnv::new("chaos-disk").await;
    let Some(disk) = SmallDisk::mount(&env.lake(), "512m") else {
        rtlake_core::testing::skip_missing("mounting a tmpfs needs root");
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
    finish(
        &env,
        &mut producer,
        std::slice::from_mut(&mut worker),
        total(&s),
    )
    .await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("Read-only file system") && text.contains("No space left on device"),
        "the log says what happened to the lake"
    );
    assert!(
        panics(&text).is_empty(),
        "rtlake panicked: {:?}",
        panics(&text)
    );
    let diff = against_reference(&env).await;
    settle(
        "lake storage: read-only for 2-6 s, then full for 2-6 s",
        faults,
        total(&s),
        diff,
        &mut recover,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_store_fails_a_share_of_requests() {
    let _alone = crate::alone().await;
    let s = scale();
    let env = TestEnv::new("chaos-store").await;
    let mut m = Moments::new();
    let log = log_file(&env, "run.log");
    let _dump = DumpOnPanic(vec![log.clone()]);
    // While this file holds a share, the processor's object store fails that share of its
    // requests (reads, writes, lists of the lake and the checkpoint).
    let control = env.dir.path().join("store-faults");
    let mut producer = producer(&env, &s);
    let mut c = env.run_cmd(&["--max-batch-events", "2000", "--stall-timeout", "5s"]);
    c.arg("--pipeline")
        .arg(pipeline(env.dir.path()))
        .env("RTLAKE_STORE_FAULTS", &control);
    let mut worker = Guard::spawn(with_log(c, &log));
    let table = env.lake().join("bronze/station_status");
    wait_for("the first commits", 120, async || commits(&table) >= 2).await;
    let mut recover = Vec::new();
    let rounds = s.kills.div_ceil(3);
    for round in 0..rounds {
        tokio::time::sleep(m.between(1000, 3000)).await;
        let before = positions(&env.lake()).await;
        // A third to a half of the requests fail for 2-6 s: a store in trouble, not gone.
        let share = m.between(33, 50).as_millis() as f64 / 100.0;
        std::fs::write(&control, share.to_string()).unwrap();
        let at = Instant::now();
        tokio::time::sleep(m.between(2000, 6000)).await;
        std::fs::remove_file(&control).unwrap();
        recover.push(
            recovered(&env.lake(), &before, at)
                .await
                .unwrap_or_else(|| panic!("no progress after the store's faults ({round})")),
        );
        assert!(
            worker.0.try_wait().unwrap().is_none(),
            "rtlake run died on a store fault"
        );
    }
    finish(
        &env,
        &mut producer,
        std::slice::from_mut(&mut worker),
        total(&s),
    )
    .await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("injected fault"),
        "the log names the store's error"
    );
    assert!(
        panics(&text).is_empty(),
        "rtlake panicked: {:?}",
        panics(&text)
    );
    let diff = against_reference(&env).await;
    settle(
        "object store: 33-50% of requests fail for 2-6 s",
        rounds,
        total(&s),
        diff,
        &mut recover,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_polls_an_api_that_fails_two_requests_in_five() {
    use rtlake_bikes::fake_api::FakeApi;
    let _alone = crate::alone().await;
    let s = scale();
    let env = TestEnv::new("chaos-api").await;
    let api = FakeApi::start().await.unwrap();
    let log = log_file(&env, "produce.log");
    let _dump = DumpOnPanic(vec![log.clone()]);
    // A poll a second against the `chaos` key: 500s, XML errors, pages cut in half, answers
    // past the 1 s timeout, no data in the middle of a poll, about two requests in five.
    let mut c = common::rtlake();
    c.args(["produce", "bikes", "--source", "seoul-api"])
        .args(["--brokers", &env.brokers, "--topic", &env.topic])
        .args(["--metrics-listen", "off"])
        .env("SEOUL_API_KEY", "chaos-key-for-tests")
        .env("RTLAKE_SOURCE_API_BASE", &api.base)
        .env("RTLAKE_SOURCE_INTERVAL", "1s")
        .env("RTLAKE_SOURCE_REQUEST_TIMEOUT", "1s")
        .env("RTLAKE_SOURCE_RETRY_BACKOFF", "50ms")
        .env("RTLAKE_SOURCE_MAX_RETRIES", "6");
    let mut producer = Guard::spawn(with_log(c, &log));
    let seconds = s.minutes * 5; // 60 s short, 450 s long
    tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
    signal(producer.0.id(), "-TERM");
    assert!(
        producer.wait_within(60).success(),
        "the producer stops cleanly"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let failed_polls = text.matches("poll failed after retries").count();

    env.run_cmd(&["--trigger", "available-now"])
        .succeeds_within(300);
    // Every poll in bronze is whole (every station once), none twice.
    let stations: usize = rtlake_bikes::fake_api::recorded_rows();
    let polls = env
        .sql("SELECT polled_at, count(*), count(DISTINCT station_id) FROM bronze.station_status GROUP BY polled_at")
        .await;
    let events: usize = polls.iter().map(|p| p[1].parse::<usize>().unwrap()).sum();
    let partial = polls
        .iter()
        .filter(|p| p[2].parse::<usize>().unwrap() < stations)
        .count();
    let doubled: usize = polls
        .iter()
        .map(|p| p[1].parse::<usize>().unwrap() - p[2].parse::<usize>().unwrap())
        .sum();
    eprintln!(
        "{} polls published, {failed_polls} failed after retries, {} faults in {} requests",
        polls.len(),
        api.faults(),
        api.calls()
    );
    assert!(
        polls.len() as u64 >= seconds / 3,
        "too few polls got through: {}",
        polls.len()
    );
    assert!(
        api.faults() >= 20,
        "the API injected only {} faults",
        api.faults()
    );
    record(
        "producer: API faults (500s, XML, cut pages, timeouts, empty pages)",
        api.faults(),
        events,
        Diff {
            lost: partial,
            doubled,
        },
        &mut [],
    );
    assert_eq!(
        (partial, doubled),
        (0, 0),
        "every poll whole, none twice: {polls:?}"
    );
}
