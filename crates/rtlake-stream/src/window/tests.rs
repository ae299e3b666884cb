//! The window operator's rules: lateness, final windows, output modes, sessions, epochs.

use super::*;

const MIN: i64 = 60_000_000;
const HOUR: i64 = 60 * MIN;

fn hourly(mode: OutputMode) -> WindowOperator<&'static str> {
    WindowOperator::new(WindowSpec::Tumbling { size: HOUR }, 10 * MIN, mode, 1)
}

/// Each row's key, start (minutes) and event count.
fn keys<K: Clone>(rows: &[WindowRow<K>]) -> Vec<(K, i64, u64)> {
    rows.iter()
        .map(|r| (r.key.clone(), r.start / MIN, r.acc.count))
        .collect()
}

/// Each row's start and end (minutes) and event count.
fn spans<K>(rows: &[WindowRow<K>]) -> Vec<(i64, i64, u64)> {
    rows.iter()
        .map(|r| (r.start / MIN, r.end / MIN, r.acc.count))
        .collect()
}

#[test]
fn out_of_order_events_within_the_lateness_count_in_their_window() {
    let mut op = hourly(OutputMode::Append);
    op.process("a", 59 * MIN, &[1.0]).unwrap();
    op.process("a", 65 * MIN, &[2.0]).unwrap(); // watermark now 55 min
    op.process("a", 56 * MIN, &[3.0]).unwrap(); // out of order, above the watermark: counts in [0, 60)
    op.process("a", 80 * MIN, &[4.0]).unwrap(); // watermark 70 min: [0, 60) is final
    assert_eq!(keys(&op.emit()), vec![("a", 0, 2)]);
}

#[test]
fn events_past_the_lateness_are_late_and_change_nothing() {
    let mut op = hourly(OutputMode::Append);
    op.process("a", 30 * MIN, &[1.0]).unwrap();
    op.process("a", 75 * MIN, &[1.0]).unwrap(); // watermark 65 min
    assert_eq!(
        op.process("a", 64 * MIN, &[9.0]),
        Err(Late {
            time: 64 * MIN,
            watermark: 65 * MIN
        })
    );
    op.process("a", 65 * MIN, &[1.0]).unwrap(); // at the watermark is not below it
    let rows = op.emit();
    assert_eq!(keys(&rows), vec![("a", 0, 1)]);
}

#[test]
fn append_emits_a_window_once_after_the_watermark_passes_its_end() {
    let mut op = hourly(OutputMode::Append);
    op.process("a", 10 * MIN, &[1.0]).unwrap();
    op.process("a", 69 * MIN, &[1.0]).unwrap(); // watermark 59 min < 60: still open
    assert!(op.emit().is_empty());
    op.process("b", 70 * MIN, &[1.0]).unwrap(); // watermark 60 min: final
    let rows = op.emit();
    assert_eq!(keys(&rows), vec![("a", 0, 1)]);
    assert!(rows[0].is_final);
    assert!(op.emit().is_empty(), "emitted once");
    assert_eq!(
        op.state_len(),
        2,
        "the open [60, 120) windows of a and b stay"
    );
}

#[test]
fn update_emits_changed_windows_and_complete_emits_all() {
    let mut up = hourly(OutputMode::Update);
    let mut all = hourly(OutputMode::Complete);
    for op in [&mut up, &mut all] {
        op.process("a", 10 * MIN, &[1.0]).unwrap();
        op.process("b", 20 * MIN, &[1.0]).unwrap();
    }
    assert_eq!(keys(&up.emit()), vec![("a", 0, 1), ("b", 0, 1)]);
    assert_eq!(keys(&all.emit()).len(), 2);
    for op in [&mut up, &mut all] {
        op.process("a", 30 * MIN, &[1.0]).unwrap();
    }
    assert_eq!(keys(&up.emit()), vec![("a", 0, 2)], "only the changed row");
    assert_eq!(
        keys(&all.emit()),
        vec![("a", 0, 2), ("b", 0, 1)],
        "every row"
    );
}

#[test]
fn aggregates_count_sum_min_max_avg_last() {
    let mut op = hourly(OutputMode::Append);
    for (m, v) in [(5, 4.0), (20, 1.0), (10, 7.0)] {
        op.process("a", m * MIN, &[v]).unwrap();
    }
    op.process("a", 2 * HOUR, &[0.0]).unwrap();
    let r = &op.emit()[0];
    assert_eq!(
        (r.acc.count, r.acc.sum[0], r.acc.min[0], r.acc.max[0]),
        (3, 12.0, 1.0, 7.0)
    );
    assert_eq!(r.acc.avg(0), 4.0);
    assert_eq!(
        r.acc.last[0], 1.0,
        "the value at the latest event time, not the last to arrive"
    );
}

#[test]
fn state_round_trips_through_json_and_adjust_adds_without_counting() {
    let mut op = hourly(OutputMode::Append);
    op.process("a", 5 * MIN, &[2.0]).unwrap();
    assert_eq!(op.adjust(&"a", 5 * MIN, 0, 1.5), 1);
    let json = serde_json::to_string(&op).unwrap();
    let mut back: WindowOperator<String> = serde_json::from_str(&json).unwrap();
    back.process("a".into(), 2 * HOUR, &[0.0]).unwrap();
    let r = &back.emit()[0];
    assert_eq!(
        (r.acc.count, r.acc.sum[0], r.acc.min[0], r.acc.max[0]),
        (1, 3.5, 2.0, 2.0)
    );
}

#[test]
fn a_borrowed_key_is_copied_only_when_new() {
    let mut op: WindowOperator<String> = WindowOperator::new(
        WindowSpec::Tumbling { size: HOUR },
        0,
        OutputMode::Complete,
        1,
    );
    let mut made = 0;
    for (k, t) in [("a", 0), ("b", MIN), ("a", 2 * MIN), ("a", HOUR)] {
        let own = || {
            made += 1;
            k.to_string()
        };
        op.process_by(k, own, t, &[1.0]).unwrap();
    }
    assert_eq!(made, 2, "a and b are each copied once");
    let a = |s: &str| s.to_string();
    assert_eq!(
        keys(&op.emit()),
        vec![(a("a"), 0, 2), (a("a"), 60, 1), (a("b"), 0, 1)]
    );
}

#[test]
fn sliding_windows_count_an_event_in_each_window_it_falls_in() {
    let spec = WindowSpec::Sliding {
        size: 10 * MIN,
        slide: 5 * MIN,
    };
    let of = |t| spec.windows_of(t).collect::<Vec<_>>();
    assert_eq!(
        of(12 * MIN),
        vec![(5 * MIN, 15 * MIN), (10 * MIN, 20 * MIN)]
    );
    assert_eq!(of(0), vec![(-5 * MIN, 5 * MIN), (0, 10 * MIN)]);
    let mut op = WindowOperator::new(spec, 0, OutputMode::Append, 1);
    op.process("a", 12 * MIN, &[1.0]).unwrap();
    op.process("a", 30 * MIN, &[1.0]).unwrap();
    assert_eq!(keys(&op.emit()), vec![("a", 5, 1), ("a", 10, 1)]);
}

#[test]
fn sessions_merge_within_the_gap_and_close_after_it() {
    let mut op = WindowOperator::new(
        WindowSpec::Session { gap: 5 * MIN },
        0,
        OutputMode::Append,
        1,
    );
    op.process("a", 0, &[1.0]).unwrap();
    op.process("a", 4 * MIN, &[1.0]).unwrap(); // joins [0, 5) -> [0, 9)
    op.process("a", 20 * MIN, &[1.0]).unwrap(); // a new session; watermark 20 min closes [0, 9)
    assert_eq!(spans(&op.emit()), vec![(0, 9, 2)]);

    // An out-of-order event can bridge two sessions.
    let mut op = WindowOperator::new(
        WindowSpec::Session { gap: 5 * MIN },
        30 * MIN,
        OutputMode::Complete,
        1,
    );
    op.process("a", 0, &[1.0]).unwrap();
    op.process("a", 8 * MIN, &[1.0]).unwrap();
    assert_eq!(op.state_len(), 2);
    op.process("a", 4 * MIN, &[1.0]).unwrap();
    assert_eq!(spans(&op.emit()), vec![(0, 13, 3)]);
}

#[test]
fn where_epochs_are_cut_does_not_change_the_rows() {
    let events: Vec<(&str, i64)> = (0..400)
        .map(|i| {
            (
                if i % 3 == 0 { "a" } else { "b" },
                (i * 7 % 97 + i / 2) * MIN,
            )
        })
        .collect();
    let run = |cut: usize| {
        let mut op = hourly(OutputMode::Append);
        let mut rows = Vec::new();
        let mut late = 0;
        for (i, (k, t)) in events.iter().enumerate() {
            late += usize::from(op.process(k, *t, &[1.0]).is_err());
            if i % cut == 0 {
                rows.extend(op.emit());
            }
        }
        rows.extend(op.emit());
        let mut k = keys(&rows);
        k.sort(); // emission order follows the epochs; the rows themselves must not
        (k, late)
    };
    let one = run(1);
    assert!(
        one.1 > 0 && !one.0.is_empty(),
        "the sequence has late events and final windows"
    );
    assert_eq!(run(7), one);
    assert_eq!(run(1000), one);
}
