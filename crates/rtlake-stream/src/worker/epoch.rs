//! Taking messages and committing epochs: an epoch's commit with the next epoch's messages
//! taken while it runs, and a batch taken without waiting.

use super::*;

impl KafkaWorker {
    /// Processes the buffered messages as one epoch and starts its commits (the engine's
    /// landing, which the next epoch's processing overlaps: see [`Engine::epoch`]). While the
    /// epoch is decoded and processed and the last one lands, the messages the consumer hands
    /// over are taken ahead into `prefetched` (up to an epoch's room): the next epoch's read
    /// overlaps this one's work instead of waiting for it. They are judged like any batch,
    /// after the assignment is learnt; a restart or a seek drops them.
    pub(super) async fn epoch(&mut self, buf: &mut Vec<RawMessage>) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let msgs = std::mem::take(buf);
        let room = self.cfg.run.epoch_limit();
        let room_bytes = usize::try_from(self.cfg.run.max_batch_bytes.0).unwrap_or(usize::MAX);
        let outcome = {
            let (engine, consumer) = (&mut self.engine, &self.consumer);
            let (prefetched, prefetch_error) = (&mut self.prefetched, &mut self.prefetch_error);
            let arena = &mut self.arena;
            let changed = &consumer.context().changed;
            let mut taken: usize = prefetched.iter().map(RawMessage::size).sum();
            let mut open = prefetch_error.is_none()
                && prefetched.len() < room
                && taken < room_bytes
                && !changed.load(Ordering::Acquire);
            let work = engine.epoch(&msgs);
            tokio::pin!(work);
            let mut stream = consumer.stream();
            loop {
                tokio::select! {
                    biased;
                    r = &mut work => break r,
                    m = futures::StreamExt::next(&mut stream), if open => match m {
                        Some(Ok(m)) => {
                            let m = RawMessage::from_message(&m, arena);
                            taken += m.size();
                            prefetched.push(m);
                            // A rebalance served by that poll is learnt before anything later.
                            open = prefetched.len() < room
                                && taken < room_bytes
                                && !changed.load(Ordering::Acquire);
                        }
                        Some(Err(e)) => {
                            *prefetch_error = Some(e);
                            open = false;
                        }
                        None => open = false,
                    },
                }
            }
        };
        self.landed(buf, outcome).await
    }

    /// Waits for the last epoch's commits (see [`Engine::settle`]); handled as [`Self::epoch`]
    /// handles them.
    pub(super) async fn land(&mut self, buf: &mut Vec<RawMessage>) -> Result<()> {
        let outcome = self.engine.settle().await;
        self.landed(buf, outcome).await
    }

    /// What an epoch's landing did: its ends count as progress and go to the group's offsets
    /// (lag display); after another worker's commit to the same partitions, the worker drops
    /// what it holds and resumes from the lake; other failures are the caller's.
    async fn landed(
        &mut self,
        buf: &mut Vec<RawMessage>,
        outcome: Result<BTreeMap<i32, i64>>,
    ) -> Result<()> {
        let ends = match outcome {
            Ok(ends) if ends.is_empty() => return Ok(()),
            Ok(ends) => ends,
            Err(Error::Lake(e @ rtlake_lake::Error::ConflictingOffsets { .. })) => {
                tracing::warn!(error = %rtlake_core::error::Chain(&e), "another worker wrote these partitions; dropping the epoch and resuming from the lake");
                buf.clear();
                return self.reseek().await;
            }
            Err(e) => return Err(e),
        };
        self.watch.progressed();
        self.watch.committed = Instant::now();
        let ctx = self.consumer.context();
        ctx.committed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(ends.iter().map(|(p, e)| (*p, *e)));
        let hi = ctx
            .high_watermarks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for (p, end) in &ends {
            ctx.observe(*p, hi.get(p).copied().unwrap_or(*end).max(*end), Some(*end));
        }
        let mut tpl = TopicPartitionList::new();
        for (p, end) in &ends {
            let _ = tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*end));
        }
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(error = %rtlake_core::error::Chain(&e), "async group offset commit failed (lag display only)");
        }
        tracing::debug!(partitions = ?ends, "epoch landed");
        Ok(())
    }

    /// After a conflict: learn the lake's versions again and seek every partition there.
    pub(super) async fn reseek(&mut self) -> Result<()> {
        self.seeks += 1;
        // Taken before the seek, from positions the seek abandons.
        self.prefetched.clear();
        self.prefetch_error = None;
        let parts: Vec<i32> = self.assigned.iter().copied().collect();
        self.learn(&parts).await?;
        for p in parts {
            let offset = self.positions.offset(p, self.engine.resume(p));
            if let Err(e) = self
                .consumer
                .seek(&self.topic, p, offset, Duration::from_secs(10))
            {
                tracing::warn!(partition = p, error = %rtlake_core::error::Chain(&e), "seek failed");
            }
        }
        Ok(())
    }
}

/// Takes the messages `consumer` already holds, without waiting, until `room` messages or
/// `room_bytes` bytes are taken; a consumer error ends the batch and is returned for the caller
/// to handle after the messages before it. One stream serves the whole batch (a `recv` per
/// message registers and drops a waker each time).
pub(super) fn ready(
    consumer: &StreamConsumer<SourceContext>,
    arena: &mut Arena,
    into: &mut Vec<RawMessage>,
    room: usize,
    room_bytes: usize,
) -> Option<rdkafka::error::KafkaError> {
    use futures::{FutureExt, StreamExt};
    let mut stream = consumer.stream();
    let mut taken = into.iter().map(RawMessage::size).sum::<usize>();
    let changed = &consumer.context().changed;
    // A rebalance served by a poll is learnt before any later message is taken.
    while into.len() < room && taken < room_bytes && !changed.load(Ordering::Acquire) {
        match stream.next().now_or_never() {
            Some(Some(Ok(m))) => {
                let m = RawMessage::from_message(&m, arena);
                taken += m.size();
                into.push(m);
            }
            Some(Some(Err(e))) => return Some(e),
            _ => break,
        }
    }
    None
}
