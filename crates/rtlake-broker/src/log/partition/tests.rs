//! Tests of a partition's segment log: appends, reads, recovery, retention, producers.
use super::*;

/// A batch of `n` records from producer `pid` (or none: -1) starting at sequence `seq`.
fn batch(n: i32, pid: i64, seq: i32, ts: i64, payload: &[u8]) -> Batch {
    let mut b = Batch {
        base_offset: 0,
        batch_length: 0,
        partition_leader_epoch: 0,
        magic: 2,
        crc: 0,
        attributes: 0,
        last_offset_delta: n - 1,
        base_timestamp: ts,
        max_timestamp: ts,
        producer_id: pid,
        producer_epoch: if pid < 0 { -1 } else { 0 },
        base_sequence: if pid < 0 { -1 } else { seq },
        record_count: n as u32,
        record_data: Bytes::copy_from_slice(payload),
    };
    b.batch_length = (HEADER - LENGTH_END + payload.len()) as i32;
    b.crc = b.computed_crc();
    b
}

fn offsets(log: &PartitionLog, from: i64, max: u32) -> Vec<(i64, i32)> {
    log.plan(from, max)
        .unwrap()
        .map(|p| p.read().unwrap())
        .unwrap_or_default()
        .iter()
        .map(|b| (b.base_offset, b.last_offset_delta))
        .collect()
}

#[test]
fn appends_read_back_from_the_batch_holding_an_offset_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path()).unwrap();
    assert_eq!(
        log.append(batch(10, -1, 0, 1000, b"aaaa"), 1 << 20)
            .unwrap(),
        0
    );
    assert_eq!(
        log.append(batch(5, -1, 0, 2000, b"bbbbbb"), 1 << 20)
            .unwrap(),
        10
    );
    assert_eq!(log.high_watermark(), 15);
    assert_eq!(offsets(&log, 0, 1 << 20), vec![(0, 9), (10, 4)]);
    assert_eq!(
        offsets(&log, 12, 1 << 20),
        vec![(10, 4)],
        "the batch holding offset 12"
    );
    assert_eq!(
        offsets(&log, 0, 1),
        vec![(0, 9)],
        "at least one batch even past max_bytes"
    );
    assert!(
        log.plan(15, 100).unwrap().is_none(),
        "nothing at the high watermark"
    );
    let read = log.plan(10, 1 << 20).unwrap().unwrap().read().unwrap();
    assert_eq!(read[0].record_data.as_ref(), b"bbbbbb");
    assert_eq!(
        read[0].crc,
        read[0].computed_crc(),
        "stored bytes are the produced batch"
    );
    drop(log);
    let log = PartitionLog::open(dir.path()).unwrap();
    assert_eq!((log.log_start(), log.high_watermark()), (0, 15));
    assert_eq!(offsets(&log, 3, 1 << 20), vec![(0, 9), (10, 4)]);
}

#[test]
fn a_retried_batch_is_written_once_even_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path()).unwrap();
    assert_eq!(log.append(batch(3, 42, 0, 1, b"x"), 1 << 20).unwrap(), 0);
    assert_eq!(log.append(batch(3, 42, 3, 1, b"y"), 1 << 20).unwrap(), 3);
    assert_eq!(
        log.append(batch(3, 42, 3, 1, b"y"), 1 << 20).unwrap(),
        3,
        "a duplicate gets its offset back"
    );
    drop(log);
    let mut log = PartitionLog::open(dir.path()).unwrap();
    assert_eq!(
        log.append(batch(3, 42, 0, 1, b"x"), 1 << 20).unwrap(),
        0,
        "remembered after a restart"
    );
    assert!(matches!(
        log.append(batch(3, 42, 9, 1, b"z"), 1 << 20),
        Err(LogError::OutOfOrder { .. })
    ));
    assert_eq!(log.append(batch(3, 42, 6, 1, b"z"), 1 << 20).unwrap(), 6);
    assert_eq!(log.high_watermark(), 9);
}

#[test]
fn a_torn_tail_is_cut_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path()).unwrap();
    log.append(batch(2, -1, 0, 1, b"first"), 1 << 20).unwrap();
    log.append(batch(2, -1, 0, 1, b"second"), 1 << 20).unwrap();
    drop(log);
    let seg = dir.path().join(format!("{:020}.log", 0));
    let len = std::fs::metadata(&seg).unwrap().len();
    // A crash in the middle of a write: the last batch is only half there.
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 3).unwrap();
    let mut log = PartitionLog::open(dir.path()).unwrap();
    assert_eq!(log.high_watermark(), 2, "the cut batch is gone");
    assert_eq!(
        log.append(batch(1, -1, 0, 1, b"third"), 1 << 20).unwrap(),
        2
    );
    // A flipped byte in the last batch (a torn sector) is caught by its CRC.
    drop(log);
    let mut bytes = std::fs::read(&seg).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0xff;
    std::fs::write(&seg, bytes).unwrap();
    let log = PartitionLog::open(dir.path()).unwrap();
    assert_eq!(log.high_watermark(), 2);
}

#[test]
fn segments_roll_and_retention_and_delete_records_move_the_start_but_never_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path()).unwrap();
    for i in 0..10 {
        log.append(batch(10, -1, 0, 1000 * i, &[b'a'; 100]), 400)
            .unwrap();
    }
    assert!(
        log.segments.len() >= 3,
        "small segments roll: {}",
        log.segments.len()
    );
    assert_eq!(offsets(&log, 55, 1 << 20).first(), Some(&(50, 9)));
    // Everything older than 5.5 s at t = 10 s.
    let gone = log.apply_retention(10_000, 4_500, -1).unwrap();
    assert!(
        gone > 0 && log.log_start() <= 60,
        "{gone} {}",
        log.log_start()
    );
    assert!(matches!(log.plan(0, 100), Err(LogError::OutOfRange(0))));
    log.truncate_before(95).unwrap();
    assert_eq!(log.log_start(), 95);
    assert_eq!(
        offsets(&log, 95, 1 << 20),
        vec![(90, 9)],
        "the batch holding 95 is still read whole"
    );
    log.truncate_before(1000).unwrap();
    assert_eq!((log.log_start(), log.high_watermark()), (100, 100));
    drop(log);
    let mut log = PartitionLog::open(dir.path()).unwrap();
    assert_eq!(
        (log.log_start(), log.high_watermark()),
        (100, 100),
        "the end survives everything being deleted"
    );
    assert_eq!(log.append(batch(1, -1, 0, 1, b"x"), 400).unwrap(), 100);
}

#[test]
fn a_fetch_reads_at_most_the_cap_whatever_the_client_asks() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path()).unwrap();
    let mib = vec![7u8; 1 << 20];
    for i in 0..24 {
        log.append(batch(1, -1, 0, 1000 + i, &mib), 1 << 30)
            .unwrap();
    }
    let read = log.plan(0, u32::MAX).unwrap().unwrap().read().unwrap();
    let bytes: usize = read.iter().map(|b| b.record_data.len()).sum();
    assert!(
        bytes <= MAX_FETCH_BYTES as usize && read.len() >= 15,
        "read {} batches, {bytes} bytes, for max_bytes = u32::MAX",
        read.len()
    );
    // A batch larger than the cap is still read whole, alone.
    log.append(batch(1, -1, 0, 5000, &vec![8u8; 17 << 20]), 1 << 30)
        .unwrap();
    let read = log.plan(24, u32::MAX).unwrap().unwrap().read().unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].record_data.len(), 17 << 20);
}
