//! The worker's side of a rebalance: following the consumer's assignment, learning a new
//! partition's position from the lake before its first message is judged.

use super::*;

impl KafkaWorker {
    /// Applies an assignment change; `true` when learning the new partitions failed and the
    /// consumer was started again instead.
    pub(super) async fn sync_assignment(&mut self, buf: &mut Vec<RawMessage>) -> Result<bool> {
        match self.apply_rebalance(buf).await {
            Ok(()) => Ok(false),
            Err(e) if e.retryable() => {
                self.restart(
                    buf,
                    "rebalance",
                    &format!(
                        "cannot take the new partitions: {}",
                        rtlake_core::error::Chain(&e)
                    ),
                )
                .await?;
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    /// Applies an assignment change: drops buffered messages of lost partitions, and learns the
    /// outputs' versions (and restores the state) of new ones.
    pub(super) async fn apply_rebalance(&mut self, buf: &mut Vec<RawMessage>) -> Result<()> {
        let ctx = self.consumer.context();
        if !ctx.changed.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        // The last epoch lands before any partition's position is read again.
        self.land(buf).await?;
        let ctx = self.consumer.context();
        let now = ctx.assigned_now();
        buf.retain(|m| now.contains(&m.partition));
        self.next.retain(|p, _| now.contains(p));
        self.cuts.retain(|p, _| now.contains(p));
        for p in self.assigned.difference(&now) {
            self.engine.drop_partition(*p);
            ctx.forget(*p);
        }
        let added: Vec<i32> = now.difference(&self.assigned).copied().collect();
        if !added.is_empty() {
            self.learn(&added).await?;
        }
        tracing::info!(partitions = ?now, "partitions held");
        self.assigned = now;
        self.watch.progress = Instant::now();
        Ok(())
    }

    /// Learns where `parts` resume and which of them have an interrupted epoch.
    pub(super) async fn learn(&mut self, parts: &[i32]) -> Result<()> {
        let pending = self.engine.refresh(parts).await?;
        for p in parts {
            let resume = self.engine.resume(*p);
            self.next.insert(*p, resume.expected());
            match resume {
                Resume::At(o) => self.first.insert(*p, o),
                _ => self.first.remove(p),
            };
        }
        for (p, r) in pending {
            tracing::info!(
                partition = p,
                start = r.start,
                end = r.end,
                "re-running the interrupted epoch over the same offsets"
            );
            self.cuts.insert(p, r.end);
        }
        Ok(())
    }
}
