//! Idempotent producers' sequences per partition, as Kafka keeps them: the next sequence
//! expected of each producer, and its last five batches, so that a retry of a batch that was
//! written (its acknowledgement lost) gets the same offset back instead of being written twice.

use nisshi_sans_io::record::deflated::Batch;
use std::collections::{HashMap, VecDeque};

/// Batches remembered per producer (librdkafka and the Java client keep at most 5 in flight).
const REMEMBERED: usize = 5;
/// Sequences wrap to 0 after `i32::MAX`.
const WRAP: i64 = i32::MAX as i64 + 1;

/// What to do with a produced batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SequenceCheck {
    /// Write it.
    Append,
    /// It was written at this base offset already.
    Duplicate(i64),
    /// It skips or repeats sequences that were not written: the producer must recover.
    OutOfOrder,
    /// Its epoch is older than one this partition has seen.
    Fenced,
}

#[derive(Debug)]
struct State {
    epoch: i16,
    next: i32,
    /// (first sequence, last sequence, base offset) of the newest batches.
    recent: VecDeque<(i32, i32, i64)>,
}

/// The producers of one partition.
#[derive(Debug, Default)]
pub(crate) struct Producers(HashMap<i64, State>);

fn wrap(seq: i32, plus: i64) -> i32 {
    ((i64::from(seq) + plus).rem_euclid(WRAP)) as i32
}

impl Producers {
    /// Judges a batch before it is written.
    pub(crate) fn check(&self, b: &Batch) -> SequenceCheck {
        if b.producer_id < 0 {
            return SequenceCheck::Append;
        }
        let Some(s) = self.0.get(&b.producer_id) else {
            // Unknown here (new, or its batches expired): take it as it comes, as Kafka does
            // for a producer whose state is gone.
            return SequenceCheck::Append;
        };
        if b.producer_epoch < s.epoch {
            return SequenceCheck::Fenced;
        }
        if b.producer_epoch > s.epoch {
            return if b.base_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::OutOfOrder
            };
        }
        let last = wrap(b.base_sequence, i64::from(b.last_offset_delta));
        if let Some((_, _, base)) = s
            .recent
            .iter()
            .find(|(f, l, _)| *f == b.base_sequence && *l == last)
        {
            return SequenceCheck::Duplicate(*base);
        }
        if b.base_sequence == s.next {
            SequenceCheck::Append
        } else {
            SequenceCheck::OutOfOrder
        }
    }

    /// Records a batch written at `base`.
    pub(crate) fn record(
        &mut self,
        producer_id: i64,
        epoch: i16,
        base_sequence: i32,
        last_offset_delta: i32,
        base: i64,
    ) {
        if producer_id < 0 {
            return;
        }
        let s = self.0.entry(producer_id).or_insert_with(|| State {
            epoch,
            next: 0,
            recent: VecDeque::new(),
        });
        if s.epoch != epoch {
            s.epoch = epoch;
            s.recent.clear();
        }
        s.next = wrap(base_sequence, i64::from(last_offset_delta) + 1);
        if s.recent.len() == REMEMBERED {
            s.recent.pop_front();
        }
        s.recent.push_back((
            base_sequence,
            wrap(base_sequence, i64::from(last_offset_delta)),
            base,
        ));
    }

    /// Replays a stored batch's header when the log is opened.
    pub(crate) fn restore(
        &mut self,
        producer_id: i64,
        epoch: i16,
        base_sequence: i32,
        last_offset_delta: i32,
        base: i64,
    ) {
        let newer = self.0.get(&producer_id).is_none_or(|s| epoch >= s.epoch);
        if newer {
            self.record(producer_id, epoch, base_sequence, last_offset_delta, base);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(pid: i64, epoch: i16, seq: i32, records: i32) -> Batch {
        Batch {
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            last_offset_delta: records - 1,
            ..Default::default()
        }
    }

    #[test]
    fn in_order_batches_append_and_a_retried_one_gets_its_offset_back() {
        let mut p = Producers::default();
        assert_eq!(p.check(&batch(7, 0, 0, 10)), SequenceCheck::Append);
        p.record(7, 0, 0, 9, 100);
        assert_eq!(p.check(&batch(7, 0, 10, 5)), SequenceCheck::Append);
        p.record(7, 0, 10, 4, 110);
        assert_eq!(p.check(&batch(7, 0, 0, 10)), SequenceCheck::Duplicate(100));
        assert_eq!(p.check(&batch(7, 0, 10, 5)), SequenceCheck::Duplicate(110));
        assert_eq!(
            p.check(&batch(7, 0, 20, 5)),
            SequenceCheck::OutOfOrder,
            "a gap"
        );
        assert_eq!(
            p.check(&batch(7, 0, 5, 5)),
            SequenceCheck::OutOfOrder,
            "a partial overlap"
        );
        assert_eq!(
            p.check(&batch(8, 0, 42, 1)),
            SequenceCheck::Append,
            "an unknown producer"
        );
        assert_eq!(
            p.check(&batch(-1, -1, -1, 3)),
            SequenceCheck::Append,
            "not idempotent"
        );
    }

    #[test]
    fn epochs_fence_older_and_restart_newer_at_zero() {
        let mut p = Producers::default();
        p.record(7, 3, 0, 0, 0);
        assert_eq!(p.check(&batch(7, 2, 1, 1)), SequenceCheck::Fenced);
        assert_eq!(p.check(&batch(7, 4, 1, 1)), SequenceCheck::OutOfOrder);
        assert_eq!(p.check(&batch(7, 4, 0, 1)), SequenceCheck::Append);
    }

    #[test]
    fn sequences_wrap_after_i32_max() {
        let mut p = Producers::default();
        p.record(7, 0, i32::MAX - 1, 1, 0);
        assert_eq!(p.check(&batch(7, 0, 0, 1)), SequenceCheck::Append);
        assert_eq!(
            p.check(&batch(7, 0, i32::MAX - 1, 2)),
            SequenceCheck::Duplicate(0)
        );
    }
}
