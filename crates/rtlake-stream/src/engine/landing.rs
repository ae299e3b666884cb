//! An epoch's commits as a task of their own, so that the next epoch is decoded and processed
//! while they run.
//!
//! Only CPU work overlaps; the writes keep exactly once's order. An epoch's writes are, in
//! turn: its offset-log entry, its state snapshots and `_rejected` (together), its outputs (each
//! a task), its commit-log entry. The next epoch's writes start once the last epoch's are all
//! done ([`Engine::settle`](super::Engine::settle)), and its offset-log entry is written after
//! its processing, before any of its writes: a crash before that entry leaves nothing of the
//! epoch anywhere, and the epoch is read again from the outputs' positions.

use super::{RunReport, count_rejections, observe_commit};
use crate::checkpoint::{EpochLog, Range};
use crate::operator::Emitted;
use crate::pipeline::Output;
use crate::state::StateStore;
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The commits of the last epoch, under way.
pub struct Landing {
    /// Each partition of the epoch and its end (the next offset).
    pub(super) ends: BTreeMap<i32, i64>,
    /// Where the epoch leaves the outputs.
    pub(super) after: After,
    pub(super) task: tokio::task::JoinHandle<Landed>,
}

/// The outputs' versions once an epoch has landed, per partition the engine holds: an output
/// behind on a partition of the epoch holds it up to the epoch's end, one ahead (an epoch cut
/// inside an interrupted range of another partition) stays where it is, and every other
/// partition stays where it stood (a commit carries versions of its epoch's partitions only).
#[derive(Clone)]
pub(super) struct After {
    /// Per stage, the smallest version of its outputs (`None`: never written).
    pub stages: Vec<BTreeMap<i32, Option<i64>>>,
    /// `_rejected`'s (0: never written).
    pub rejected: BTreeMap<i32, i64>,
}

impl Landing {
    /// Whether the next epoch, of the partitions in `ends`, can be processed while this one
    /// lands: it knows where this one leaves every output of each of them.
    pub(super) fn knows(&self, ends: &BTreeMap<i32, i64>) -> bool {
        ends.keys().all(|p| self.after.rejected.contains_key(p))
    }
}

/// What a landing hands back: the outputs it took, and how the commits went.
pub(super) struct Landed {
    pub outputs: Vec<Vec<Output>>,
    pub rejected: Output,
    pub outcome: Result<RunReport>,
}

/// A state snapshot to save: the operator kind, partition, version, bytes, and the version
/// from which older snapshots may go.
pub(super) type Save = (&'static str, i32, i64, Vec<u8>, Option<i64>);

/// One epoch's processed output and everything its commits need.
pub(super) struct Work {
    pub pipeline: String,
    pub outputs: Vec<Vec<Output>>,
    pub rejected: Output,
    pub state: StateStore,
    pub log: EpochLog,
    pub ranges: Vec<(i32, Range)>,
    pub ends: BTreeMap<i32, i64>,
    pub saves: Vec<Save>,
    /// `_rejected`'s rows.
    pub refused: Emitted,
    /// Each stage's rows, in stage order.
    pub emitted: Vec<Arc<Emitted>>,
    /// Each partition's newest Kafka timestamp.
    pub newest: BTreeMap<i32, i64>,
    /// Each message's Kafka timestamp, for the event-to-lake latency.
    pub timestamps: Vec<i64>,
    pub messages: u64,
    /// When the epoch's processing started, and how long its steps took.
    pub started: Instant,
    pub decoded: Duration,
    pub processed: Duration,
    /// How long the epoch waited for the last one's commits.
    pub waited: Duration,
}

impl Work {
    /// Starts the commits as a task; `after` is where they leave the outputs.
    pub fn start(self, after: After) -> Landing {
        let ends = self.ends.clone();
        Landing {
            ends,
            after,
            task: tokio::spawn(self.land()),
        }
    }

    async fn land(mut self) -> Landed {
        let outcome = self.commit().await;
        Landed {
            outputs: self.outputs,
            rejected: self.rejected,
            outcome,
        }
    }

    async fn commit(&mut self) -> Result<RunReport> {
        let metrics = &rtlake_core::metrics::global().run;
        let pipeline = self.pipeline.clone();
        let mut report = RunReport {
            epochs: 1,
            messages: self.messages,
            ..RunReport::default()
        };
        self.log.begin(&self.ranges).await?;
        let t = Instant::now();
        let (state, saves) = (&self.state, &self.saves);
        let saved = async {
            futures::future::try_join_all(saves.iter().map(|(kind, p, end, bytes, keep_from)| {
                state.save(kind, *p, *end, bytes, *keep_from)
            }))
            .await
            .map_err(Error::from)
        };
        // The state snapshots and `_rejected` are independent; both land before any output
        // commits (an output's version must find its state, and a stage skips what its output
        // holds, so its rejections must be in `_rejected` first).
        let newest_event = self.newest.values().max().copied();
        let (_, rejected_commit) = futures::future::try_join(
            saved,
            self.rejected
                .commit(&pipeline, &self.refused, &self.ends, None),
        )
        .await?;
        let first = self.started.elapsed();
        let rejected_rows = self.refused.batch.num_rows() as u64;
        if rejected_commit.is_some() {
            let name = self.rejected.name();
            crate::failpoint(&format!("after-commit:{name}"));
            observe_commit(&pipeline, &name, rejected_rows, t.elapsed());
            count_rejections(&pipeline, &self.refused.batch);
            report.rows.insert(name, rejected_rows);
        }
        // The outputs are independent tables and topics: each commits as a task of its own, so
        // one output's Parquet encoding does not hold up another's Delta bookkeeping.
        let shared_ends = Arc::new(self.ends.clone());
        let mut tasks = Vec::new();
        for (outputs, out) in self.outputs.iter_mut().zip(&self.emitted) {
            let mut outs = Vec::new();
            for mut o in std::mem::take(outputs) {
                let (pipeline, ends, out) = (pipeline.clone(), shared_ends.clone(), out.clone());
                outs.push(tokio::spawn(async move {
                    let t = Instant::now();
                    let rows = o.commit(&pipeline, &out, &ends, newest_event).await;
                    if matches!(rows, Ok(Some(_))) {
                        crate::failpoint(&format!("after-commit:{}", o.name()));
                    }
                    (o, rows, t.elapsed())
                }));
            }
            tasks.push(outs);
        }
        // Every output goes back to its stage, whatever the others' outcome.
        let mut failed = None;
        let mut names = Vec::new();
        for (outputs, outs) in self.outputs.iter_mut().zip(tasks) {
            for task in outs {
                let (o, rows, took) = task
                    .await
                    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
                match rows {
                    Ok(Some(rows)) => {
                        let name = o.name();
                        observe_commit(&pipeline, &name, rows, took);
                        *report.rows.entry(name.clone()).or_default() += rows;
                        names.push(name);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        failed.get_or_insert(e);
                    }
                }
                outputs.push(o);
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        self.log
            .commit(
                &self.ranges,
                self.started.elapsed().as_millis() as u64,
                &self.newest,
            )
            .await?;
        if let Some(newest) = newest_event {
            for name in &names {
                metrics.committed_through(&pipeline, name, newest);
            }
        }
        tracing::debug!(
            messages = self.messages,
            decode_ms = self.decoded.as_millis() as u64,
            process_ms = (self.processed - self.decoded).as_millis() as u64,
            wait_ms = self.waited.as_millis() as u64,
            state_and_rejected_ms = first
                .saturating_sub(self.processed + self.waited)
                .as_millis() as u64,
            outputs_ms = (self.started.elapsed() - first).as_millis() as u64,
            "epoch"
        );
        let done = chrono::Utc::now().timestamp_millis();
        // Observed locally and added once: the shared histogram's atomics per event cost a
        // drain of the 90-minute replay about 1% of its CPU.
        let latency = metrics
            .event_to_lake
            .with_label_values(&[&pipeline])
            .local();
        for ts in &self.timestamps {
            report.record_latency(done - ts);
            latency.observe((done - ts).max(0) as f64 / 1000.0);
        }
        latency.flush();
        metrics.epochs.with_label_values(&[&pipeline]).inc();
        metrics
            .epoch_duration
            .with_label_values(&[&pipeline])
            .observe(self.started.elapsed().as_secs_f64());
        Ok(report)
    }
}
