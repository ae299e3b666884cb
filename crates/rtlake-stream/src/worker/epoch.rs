//! Taking messages and committing epochs: an epoch's commit with the next epoch's messages
//! taken while it runs, and a batch taken without waiting.

use super::*;

impl KafkaWorker {
    /// Processes the buffered messages as one epoch and starts its commits (the engine's
    /// landing, which the next epoch's processing overlaps: see [`Engine::epoch`]). While the
    /// epoch is decoded and processed and the last one lands, a task of its own takes the
    /// messages the consumer hands over into `prefetched` (up to an epoch's room), on another
    /// thread than the engine's: taking a message is librdkafka's queue poll and event free and
    /// a copy, and done between the engine's steps on its thread it held that thread a seventh
    /// of a drain (bench/README.md, "The Kafka path, eighth step"). They are judged like any
    /// batch, after the assignment is learnt; a restart or a seek drops them.
    pub(super) async fn epoch(&mut self, buf: &mut Vec<RawMessage>) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let msgs = std::mem::take(buf);
        let room = self.cfg.run.epoch_limit();
        let room_bytes = usize::try_from(self.cfg.run.max_batch_bytes.0).unwrap_or(usize::MAX);
        let stop = CancellationToken::new();
        let taker = tokio::spawn(take_ahead(
            self.consumer.clone(),
            Ahead {
                messages: std::mem::take(&mut self.prefetched),
                error: self.prefetch_error.take(),
                arena: std::mem::take(&mut self.arena),
            },
            room,
            room_bytes,
            stop.clone(),
        ));
        let outcome = self.engine.epoch(&msgs).await;
        stop.cancel();
        match taker.await {
            Ok(ahead) => {
                self.prefetched = ahead.messages;
                self.prefetch_error = ahead.error;
                self.arena = ahead.arena;
            }
            // What it took is lost with it; the lake's positions still hold.
            Err(e) => {
                return Err(Error::new(
                    Kind::Source,
                    format!("the task taking messages ahead failed: {e}"),
                ));
            }
        }
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
    while has_room(into, taken, room, room_bytes, changed) {
        match stream.next().now_or_never() {
            Some(Some(Ok(m))) => take(&m, arena, into, &mut taken),
            Some(Some(Err(e))) => return Some(e),
            _ => break,
        }
    }
    None
}

/// Messages taken ahead of their epoch, with the error that ended the taking, if one did.
pub(super) struct Ahead {
    messages: Vec<RawMessage>,
    error: Option<rdkafka::error::KafkaError>,
    arena: Arena,
}

/// Takes messages from `consumer` into `ahead` until `stop`, `room` messages or `room_bytes`
/// bytes, a consumer error, or a rebalance (learnt before anything later is taken).
///
/// What the consumer already holds is taken without waiting, and the stop looked at every few
/// hundred messages; only an empty queue is waited on beside the stop. Waiting on both for
/// every message polled the token's waiter under its lock each time (1-2% of a drain's CPU).
async fn take_ahead(
    consumer: Arc<StreamConsumer<SourceContext>>,
    mut ahead: Ahead,
    room: usize,
    room_bytes: usize,
    stop: CancellationToken,
) -> Ahead {
    use futures::{FutureExt, StreamExt};
    const STOP_EVERY: usize = 512;
    let changed = &consumer.context().changed;
    let mut taken: usize = ahead.messages.iter().map(RawMessage::size).sum();
    let mut stream = consumer.stream();
    'taking: while !stop.is_cancelled() {
        for _ in 0..STOP_EVERY {
            if ahead.error.is_some() || !has_room(&ahead.messages, taken, room, room_bytes, changed)
            {
                break 'taking;
            }
            let next = match stream.next().now_or_never() {
                Some(next) => next,
                None => tokio::select! {
                    biased;
                    _ = stop.cancelled() => break 'taking,
                    next = stream.next() => next,
                },
            };
            match next {
                Some(Ok(m)) => take(&m, &mut ahead.arena, &mut ahead.messages, &mut taken),
                Some(Err(e)) => ahead.error = Some(e),
                None => break 'taking,
            }
        }
        // A long run of ready messages gives the runtime its turn.
        tokio::task::yield_now().await;
    }
    ahead
}

/// Whether messages taken ahead (`taken` bytes of them) leave room for more: fewer than `room`
/// and `room_bytes`, and no rebalance served by the last poll (learnt before anything later is
/// taken).
fn has_room(
    into: &[RawMessage],
    taken: usize,
    room: usize,
    room_bytes: usize,
    changed: &std::sync::atomic::AtomicBool,
) -> bool {
    into.len() < room && taken < room_bytes && !changed.load(Ordering::Acquire)
}

/// Copies a consumed message into `arena` and appends it to `into`, counting its bytes.
fn take(
    m: &impl rdkafka::Message,
    arena: &mut Arena,
    into: &mut Vec<RawMessage>,
    taken: &mut usize,
) {
    let m = RawMessage::from_message(m, arena);
    *taken += m.size();
    into.push(m);
}
