//! Events ahead of their partition: one bad clock upstream must not move a watermark alone.
//!
//! A partition's watermark trails its largest event time by the lateness. One event stamped 30
//! minutes ahead of the rest would drag it there, and the next 20 minutes of the partition would
//! all be late; it would also become its key's stored row, so the key's real rows after it look
//! stale. Seen on the 90-minute replay with one copy of an 08:10 event stamped 08:40: 435,190
//! events refused as late by the gold tables, silver short of two rows.
//!
//! So the decoders screen each epoch before any operator sees it, per partition in offset order:
//! an event more than the lateness after the partition's largest event time so far in the epoch
//! is held. The next event decides: one back near the old time (within the lateness) shows the
//! held events were alone, and they are refused (`_rejected`, reason `future`); one ahead too
//! confirms a jump (a stream resuming after an outage), and every held event is taken. Events
//! still held when the epoch ends are taken. Only the epoch's own events count, so a re-run of
//! an interrupted epoch decides the same. What this does not catch: a lone event ahead that is
//! the first of its partition in an epoch, or the last.

/// An event refused as ahead of its partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ahead {
    /// Its index in the epoch.
    pub index: usize,
    /// Its event time, µs.
    pub time: i64,
    /// The partition's largest event time before it in the epoch, µs.
    pub frontier: i64,
}

impl Ahead {
    /// What its `_rejected` row says: `<what> <time> is more than the lateness ahead ...`.
    pub fn describe(&self, what: &str, partition: i32, lateness: i64) -> String {
        let at = |us: i64| {
            chrono::DateTime::from_timestamp_micros(us)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default()
        };
        format!(
            "{what} {} is more than run.lateness ({} s) ahead of partition {partition}'s event time {}, and the next event is back near that time (a clock ahead upstream?)",
            at(self.time),
            lateness / 1_000_000,
            at(self.frontier)
        )
    }
}

#[derive(Default)]
struct Partition {
    frontier: Option<i64>,
    held: Vec<(usize, i64)>,
}

/// The events of an epoch to refuse as ahead: `events` are (index, partition, event time µs) in
/// message order; `lateness` is µs.
pub fn screen(events: impl IntoIterator<Item = (usize, i32, i64)>, lateness: i64) -> Vec<Ahead> {
    let mut parts: std::collections::HashMap<i32, Partition> = std::collections::HashMap::new();
    let mut out = Vec::new();
    for (index, partition, t) in events {
        let p = parts.entry(partition).or_default();
        let Some(f) = p.frontier else {
            p.frontier = Some(t);
            continue;
        };
        if t <= f.saturating_add(lateness) {
            // Back near the partition's time: what was held was alone.
            out.extend(p.held.drain(..).map(|(index, time)| Ahead {
                index,
                time,
                frontier: f,
            }));
            p.frontier = Some(f.max(t));
        } else if p.held.is_empty() {
            p.held.push((index, t));
        } else {
            // Ahead after ahead: the stream jumped.
            let top = p.held.drain(..).map(|(_, h)| h).fold(t, i64::max);
            p.frontier = Some(top);
        }
    }
    out.sort_by_key(|a| a.index);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000;

    fn refused(events: &[(i32, i64)]) -> Vec<usize> {
        screen(
            events.iter().enumerate().map(|(i, (p, t))| (i, *p, *t)),
            10 * MIN,
        )
        .into_iter()
        .map(|a| a.index)
        .collect()
    }

    #[test]
    fn a_lone_event_far_ahead_is_refused() {
        // 08:10 events, one copy stamped 08:40, then 08:10 again.
        let ev = [
            (0, 10 * MIN),
            (0, 10 * MIN),
            (0, 40 * MIN),
            (0, 10 * MIN),
            (0, 11 * MIN),
        ];
        assert_eq!(refused(&ev), vec![2]);
        let a = &screen(
            ev.iter().enumerate().map(|(i, (p, t))| (i, *p, *t)),
            10 * MIN,
        )[0];
        assert_eq!((a.time, a.frontier), (40 * MIN, 10 * MIN));
        assert!(a.describe("polledAt", 0, 10 * MIN).contains("partition 0"));
    }

    #[test]
    fn a_jump_the_next_event_confirms_is_taken() {
        // An outage of an hour: every event after it is ahead of the old time.
        // (The event back at 00:05 after it is late for the windows, not ahead.)
        assert!(refused(&[(0, 0), (0, 60 * MIN), (0, 60 * MIN), (0, 5 * MIN)]).is_empty());
        assert!(refused(&[(0, 0), (0, 60 * MIN), (0, 61 * MIN), (0, 62 * MIN)]).is_empty());
    }

    #[test]
    fn partitions_are_judged_apart_and_the_epoch_edges_are_not_judged() {
        // Partition 1 is an hour ahead of partition 0: no matter.
        assert!(refused(&[(0, 0), (1, 60 * MIN), (0, MIN), (1, 61 * MIN)]).is_empty());
        // First of its partition, or last of the epoch: taken.
        assert!(refused(&[(0, 60 * MIN), (0, 0)]).is_empty());
        assert!(refused(&[(0, 0), (0, 60 * MIN)]).is_empty());
        // Within the lateness is never ahead.
        assert!(refused(&[(0, 0), (0, 10 * MIN), (0, 0)]).is_empty());
    }
}
