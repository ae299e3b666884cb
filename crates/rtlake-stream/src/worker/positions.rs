//! Where the worker's partitions stand: a gap before a new partition's first message (data
//! loss), and, with the available-now trigger, whether the topic's end at the start is read and
//! held by the lake.

use super::*;

impl KafkaWorker {
    /// The first message of a newly assigned partition must be the one the outputs expect;
    /// a later one means retention deleted offsets the pipeline never read.
    pub(super) fn check_loss(&mut self, m: &RawMessage) -> Result<()> {
        let Some(expected) = self.first.remove(&m.partition) else {
            return Ok(());
        };
        if m.offset <= expected {
            return Ok(());
        }
        let what = format!(
            "partition {} of {}: offsets {expected}..{} were deleted (retention) before pipeline {} read them",
            m.partition,
            self.topic,
            m.offset - 1,
            self.cfg.run.pipeline
        );
        if self.cfg.run.fail_on_data_loss {
            return Err(Error::new(
                Kind::DataLoss,
                format!(
                    "{what}; set run.fail-on-data-loss = false (--no-fail-on-data-loss) to skip them"
                ),
            ));
        }
        tracing::warn!(
            partition = m.partition,
            from = expected,
            to = m.offset,
            "{what}; skipping them (fail-on-data-loss is off)"
        );
        Ok(())
    }

    /// Whether this worker's partitions have been read up to the targets.
    pub(super) fn caught_up(&self, targets: &[(i32, i64, i64)]) -> bool {
        !self.assigned.is_empty()
            && targets
                .iter()
                .filter(|(p, ..)| self.assigned.contains(p))
                .all(|(p, _, hi)| self.next.get(p).copied().unwrap_or(0) >= *hi)
    }

    /// Whether the lake holds every target partition up to its target (any worker's doing);
    /// a lake that cannot be read now says no.
    ///
    /// When this worker's own landed epochs reach every target, the lake holds them without
    /// being read: its positions only grow. Reading them (every output's log) took ~40 ms at
    /// the end of each drain (bench/README.md, "The Kafka path, seventeenth step").
    pub(super) async fn lake_holds(&self, targets: &[(i32, i64, i64)]) -> bool {
        if self.landed_all(targets) {
            return true;
        }
        let parts: Vec<i32> = targets.iter().map(|t| t.0).collect();
        let pos = match self.positions.resume_offsets(&parts).await {
            Ok(pos) => pos,
            Err(e) => {
                tracing::warn!(error = %rtlake_core::error::Chain(&e), "cannot read the lake's positions");
                return false;
            }
        };
        targets
            .iter()
            .filter(|(p, ..)| self.mine(*p))
            .all(|(p, lo, hi)| match pos.get(p) {
                Some(Resume::At(o)) => o >= hi,
                Some(Resume::Start) => self.positions.start.first(*p, *lo, *hi) >= *hi,
                _ => lo >= hi,
            })
    }

    /// Whether this worker's landed epochs reach every target partition it reads that holds
    /// anything (an empty one, `lo >= hi`, needs nothing).
    fn landed_all(&self, targets: &[(i32, i64, i64)]) -> bool {
        let landed = self.consumer.context().committed_now();
        targets
            .iter()
            .filter(|(p, lo, hi)| self.mine(*p) && lo < hi)
            .all(|(p, _, hi)| landed.get(p).is_some_and(|end| end >= hi))
    }

    /// Whether partition `p` is this pipeline's to read (`run.partitions`, when set).
    fn mine(&self, p: i32) -> bool {
        self.cfg
            .run
            .partitions
            .as_ref()
            .is_none_or(|only| only.contains(&p))
    }
}
