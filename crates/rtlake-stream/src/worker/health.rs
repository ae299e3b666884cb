//! The worker's watchdog: whether the consumer should be started again (no progress, no
//! partitions, the lake stuck behind what was taken), and the restart itself, from the lake's
//! positions.

use super::*;

impl KafkaWorker {
    /// The watchdog: `Some((kind, reason))` when the consumer should be started again.
    /// Messages arriving is not enough: the lake must move too. With no commit for `stall`
    /// while the worker has taken messages of a held partition past the lake's position, it is
    /// stuck inside (seen once on Apache Kafka after a SIGKILLed transactional run: a drained
    /// consumer whose lake stayed behind for minutes), and a restart from the lake's positions
    /// frees it. Transaction markers and an idle topic do not count: nothing was taken.
    pub(super) fn lake_stuck(&self, stall: Duration) -> Option<String> {
        let quiet = self.watch.committed.elapsed();
        if quiet < stall.max(self.cfg.run.max_batch_delay.get() * 4) {
            return None;
        }
        let behind: Vec<String> = self
            .assigned
            .iter()
            .filter_map(|p| {
                let lake = self.engine.resume(*p).expected();
                let taken = self.next.get(p).copied().unwrap_or(0);
                (taken > lake).then(|| format!("{p} (lake at {lake}, taken up to {taken})"))
            })
            .collect();
        (!behind.is_empty()).then(|| {
            format!(
                "no commit for {} s though messages of partitions {} were taken",
                quiet.as_secs(),
                behind.join(", ")
            )
        })
    }

    pub(super) async fn check_health(&mut self) -> Option<(&'static str, String)> {
        let stall = self.cfg.run.stall_timeout.get();
        if !self.assigned.is_empty() {
            self.watch.unassigned_since = None;
            self.watch.lake = None;
            if let Some(stuck) = self.lake_stuck(stall) {
                return Some(("stall", stuck));
            }
            let quiet = self.watch.progress.elapsed();
            if quiet < stall {
                return None;
            }
            let parts: Vec<i32> = self.assigned.iter().copied().collect();
            return match self.watermarks(&parts) {
                Err(e) => Some((
                    "stall",
                    format!(
                        "no message for {} s, and the broker does not answer: {e}",
                        quiet.as_secs()
                    ),
                )),
                Ok(hw) => {
                    let behind: Vec<i32> = hw
                        .iter()
                        .filter(|(p, h)| **h > self.next.get(p).copied().unwrap_or(0))
                        .map(|(p, _)| *p)
                        .collect();
                    if behind.is_empty() {
                        // Caught up: quiet is fine.
                        self.watch.progress = Instant::now();
                        None
                    } else {
                        Some((
                            "stall",
                            format!(
                                "no message for {} s while partitions {behind:?} have data",
                                quiet.as_secs()
                            ),
                        ))
                    }
                }
            };
        }
        if self.cfg.run.assignment == Assignment::Static {
            return None;
        }
        let since = *self.watch.unassigned_since.get_or_insert_with(Instant::now);
        let session = self.cfg.run.session_timeout.get();
        if since.elapsed() < session + CHECK_EVERY {
            return None;
        }
        // No partitions: fine while others commit or nothing is left to read.
        let all = match self.cluster.partitions(&self.topic).await {
            Ok(p) => p,
            Err(e) => {
                return Some((
                    "no-partitions",
                    format!(
                        "no partitions for {} s, and the broker does not answer: {e}",
                        since.elapsed().as_secs()
                    ),
                ));
            }
        };
        let lake: BTreeMap<i32, i64> = match self.positions.resume_offsets(&all).await {
            Ok(pos) => pos.into_iter().map(|(p, r)| (p, r.expected())).collect(),
            Err(e) => {
                tracing::warn!(error = %rtlake_core::error::Chain(&e), "watchdog: cannot read the lake's positions");
                return None;
            }
        };
        let hw = match self.watermarks(&all) {
            Ok(hw) => hw,
            Err(e) => {
                return Some((
                    "no-partitions",
                    format!(
                        "no partitions for {} s, and the broker does not answer: {e}",
                        since.elapsed().as_secs()
                    ),
                ));
            }
        };
        let behind: Vec<i32> = hw
            .iter()
            .filter(|(p, h)| **h > lake.get(p).copied().unwrap_or(0))
            .map(|(p, _)| *p)
            .collect();
        match &self.watch.lake {
            _ if behind.is_empty() => {
                self.watch.lake = None;
                None
            }
            Some((seen, at)) if *seen == lake => {
                if at.elapsed() >= stall {
                    Some((
                        "no-partitions",
                        format!(
                            "no partitions for {} s, and nobody has committed partitions {behind:?} for {} s though they have data",
                            since.elapsed().as_secs(),
                            at.elapsed().as_secs()
                        ),
                    ))
                } else {
                    None
                }
            }
            _ => {
                self.watch.lake = Some((lake, Instant::now()));
                None
            }
        }
    }

    /// High watermarks of `parts`, asked of the broker through the consumer's own connection.
    pub(super) fn watermarks(
        &self,
        parts: &[i32],
    ) -> std::result::Result<BTreeMap<i32, i64>, rdkafka::error::KafkaError> {
        tokio::task::block_in_place(|| {
            parts
                .iter()
                .map(|p| {
                    self.consumer
                        .fetch_watermarks(&self.topic, *p, Duration::from_secs(5))
                        .map(|(_, hi)| (*p, hi))
                })
                .collect()
        })
    }

    /// Drops the consumer and everything not committed, and starts a new consumer at the
    /// lake's positions (after a back-off that grows while restarts do not help).
    pub(super) async fn restart(
        &mut self,
        buf: &mut Vec<RawMessage>,
        kind: &'static str,
        reason: &str,
    ) -> Result<()> {
        self.beat.step("restarting the consumer");
        let pipeline = self.cfg.run.pipeline.clone();
        rtlake_core::metrics::global()
            .run
            .consumer_restarts
            .with_label_values(&[&pipeline, kind])
            .inc();
        let wait = Duration::from_secs(1 << self.watch.restarts.min(5));
        self.watch.restarts += 1;
        tracing::warn!(
            reason,
            restart = self.watch.restarts,
            wait_secs = wait.as_secs(),
            "restarting the consumer; the worker resumes at the lake's positions"
        );
        buf.clear();
        self.prefetched.clear();
        self.prefetch_error = None;
        // The outputs come back from the last epoch's commits; whatever came of them, the new
        // consumer resumes at the lake's positions.
        if let Err(e) = self.engine.settle().await {
            tracing::warn!(error = %rtlake_core::error::Chain(&e), "the last epoch's commits failed");
        }
        let ctx = self.consumer.context();
        for p in std::mem::take(&mut self.assigned) {
            self.engine.drop_partition(p);
            ctx.forget(p);
        }
        self.next.clear();
        self.cuts.clear();
        self.first.clear();
        for s in &mut self.engine.stages {
            for o in &mut s.outputs {
                if let Output::Kafka(k) = o {
                    k.reconnect()?;
                }
            }
        }
        tokio::time::sleep(wait).await;
        // The broker may still be away: keep trying, as long as the run is not stopped.
        let mut attempt = 0u32;
        let fresh = loop {
            match connect(
                &self.kafka,
                &self.cluster,
                &self.cfg.run,
                &self.topic,
                self.positions.clone(),
            )
            .await
            {
                Ok(c) => break Arc::new(c),
                Err(e) if self.shutdown.is_cancelled() => return Err(e),
                Err(e) => {
                    attempt += 1;
                    let wait = Duration::from_secs(1 << attempt.min(5));
                    tracing::warn!(error = %rtlake_core::error::Chain(&e), attempt, wait_secs = wait.as_secs(), "cannot start a consumer yet; trying again");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.shutdown.cancelled() => return Err(e),
                    }
                }
            }
        };
        let old = std::mem::replace(&mut self.consumer, fresh);
        // Closing may wait on a broker that does not answer: never in the loop's way.
        std::thread::spawn(move || {
            old.unsubscribe();
            drop(old);
        });
        self.watch.progress = Instant::now();
        self.watch.committed = Instant::now();
        self.watch.unassigned_since = Some(Instant::now());
        self.watch.lake = None;
        self.watch.errors = 0;
        Ok(())
    }
}
