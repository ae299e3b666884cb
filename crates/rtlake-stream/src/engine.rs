//! One epoch, from messages to committed outputs, whatever the source.
//!
//! Every message is decoded once; each stage's operator processes the messages past the
//! smallest version of its outputs, on a thread per stage, and snapshots its state after the
//! epoch (on the same thread) under the version the commits will carry. The commits then run
//! as a task ([`Landing`], `engine/landing.rs`) while the caller gathers the next epoch and the
//! engine processes it: the epoch's per-partition offset ranges go to the offset log first; the
//! snapshots are saved while `_rejected` commits; then every stage's outputs commit at once,
//! and last the commit log. At debug level each epoch logs how long these steps took.
//!
//! `_rejected` is committed first: an operator rejects stale or late messages only while it
//! processes them, so its rejections must never be behind it. A crash between two commits
//! leaves each output at its own version; on restart the partition resumes at the smallest,
//! re-runs the interrupted range exactly (the offset log), and each output skips what it holds.

mod landing;
mod report;

use crate::checkpoint::{EpochLog, Range};
use crate::input::{EpochInput, InputDecoder};
use crate::operator::{Emitted, PartitionState, Rejections};
use crate::ops::decode::{Records, meta_fields};
use crate::pipeline::{Output, Stage};
use crate::rejected::{RejectedColumns, RejectedShape};
use crate::source::{RawMessage, Resume};
use crate::state::StateStore;
use crate::{Error, Kind, Result};
pub use landing::Landing;
pub use report::{LATENCY_CAP_MS, RunReport};
use std::collections::BTreeMap;

/// The stages of a pipeline with their state and logs.
pub struct Engine {
    /// The pipeline name.
    pub pipeline: String,
    /// The input topic (or file) name, for `_rejected`.
    pub topic: String,
    /// The stages.
    pub stages: Vec<Stage>,
    /// `_rejected` (away while an epoch lands).
    pub rejected: Option<Output>,
    /// State snapshots.
    pub state: StateStore,
    /// Offset and commit logs.
    pub log: EpochLog,
    /// A declared input's decoder.
    pub decoder: Option<crate::ops::decode::Decoder>,
    /// Otherwise, the decoder a domain crate registered.
    pub domain: Option<Box<dyn InputDecoder>>,
    /// `run.max-future`: events further ahead of the clock are rejected as `future`.
    pub max_future: std::time::Duration,
    /// `run.rejected-value-max` and `lake.time-zone`: how `_rejected` rows are written.
    pub rejected_shape: RejectedShape,
    /// Totals, as of the last epoch that landed.
    pub report: RunReport,
    /// The last epoch's commits, while they run (see [`Engine::epoch`]).
    pub landing: Option<Landing>,
    /// The partitions whose versions the outputs have read ([`Engine::refresh`]), less those
    /// dropped.
    pub partitions: std::collections::BTreeSet<i32>,
}

/// Counts `_rejected` rows by refusing table and reason (late ones also as late events).
fn count_rejections(pipeline: &str, batch: &arrow::array::RecordBatch) {
    use arrow::array::{Array, StringArray};
    let metrics = &rtlake_core::metrics::global().run;
    let col = |n: &str| {
        batch
            .column_by_name(n)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
    };
    let (Some(sink), Some(reason)) = (col("sink"), col("reason")) else {
        return;
    };
    let mut counts: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for i in 0..batch.num_rows() {
        if !sink.is_null(i) && !reason.is_null(i) {
            *counts.entry((sink.value(i), reason.value(i))).or_default() += 1;
        }
    }
    for ((table, reason), n) in counts {
        metrics
            .rejected
            .with_label_values(&[pipeline, table, reason])
            .inc_by(n);
        if reason == "late" {
            metrics.late.with_label_values(&[pipeline, table]).inc_by(n);
        }
    }
}

/// Counts an output's commit on `/metrics`.
fn observe_commit(pipeline: &str, output: &str, rows: u64, took: std::time::Duration) {
    let metrics = &rtlake_core::metrics::global().run;
    let labels = [pipeline, output];
    metrics.rows_out.with_label_values(&labels).inc_by(rows);
    metrics
        .commit_duration
        .with_label_values(&labels)
        .observe(took.as_secs_f64());
    metrics
        .last_commit
        .with_label_values(&labels)
        .set(chrono::Utc::now().timestamp());
}

impl Engine {
    /// `_rejected`, which is here unless an epoch is landing.
    fn rejected(&self) -> &Output {
        self.rejected
            .as_ref()
            .expect("_rejected is read only when no epoch is landing")
    }

    /// Every output's version of `p` (`_rejected` included).
    fn versions(&self, p: i32) -> impl Iterator<Item = Option<i64>> + '_ {
        let pipeline = &self.pipeline;
        self.stages
            .iter()
            .flat_map(|s| s.outputs.iter())
            .chain([self.rejected()])
            .map(move |o| o.version(pipeline, p))
    }

    /// Where a partition resumes, from the versions the outputs last read or wrote. Only
    /// while no epoch is landing (after [`Engine::settle`]): the outputs are away meanwhile.
    pub fn resume(&self, p: i32) -> Resume {
        Resume::of(self.versions(p))
    }

    /// Learns the outputs' versions of `parts` and restores each operator's state to match;
    /// returns the interrupted range of each partition that has one.
    pub async fn refresh(&mut self, parts: &[i32]) -> Result<BTreeMap<i32, Range>> {
        self.settle().await?;
        let started = std::time::Instant::now();
        self.partitions.extend(parts);
        // The outputs' logs and the states are read together: a partition's first messages
        // wait for this (at every start, and when a rebalance hands a partition over).
        let pipeline = &self.pipeline;
        futures::future::try_join_all(
            self.stages
                .iter_mut()
                .flat_map(|s| s.outputs.iter_mut())
                .chain(self.rejected.as_mut())
                .map(|o| o.refresh(pipeline, parts)),
        )
        .await?;
        let outputs_read = started.elapsed();
        let store = &self.state;
        let mut loads = Vec::new();
        for (i, stage) in self.stages.iter().enumerate() {
            if stage.op.state().is_none() {
                continue;
            }
            let kind = stage.op.kind();
            for &p in parts {
                let version = stage.version(pipeline, p);
                loads.push(
                    async move { Ok::<_, Error>((i, p, store.load(kind, p, version).await?)) },
                );
            }
        }
        let loaded = futures::future::try_join_all(loads).await?;
        for (i, p, bytes) in loaded {
            let stage = &mut self.stages[i];
            let kind = stage.op.kind();
            if let Some(state) = stage.op.state_mut() {
                state.restore(p, bytes.as_deref()).map_err(|e| {
                    Error::caused(
                        Kind::Rebalance,
                        format!("state of {kind} partition {p} is unreadable"),
                        e,
                    )
                })?;
            }
        }
        let states_read = started.elapsed();
        let mut pending = BTreeMap::new();
        for p in parts {
            if let Some(r) = self.log.pending(*p).await? {
                if r.end > self.resume(*p).expected() {
                    pending.insert(*p, r);
                } else {
                    // Every output holds the range: the crash came after the last output's
                    // commit and before the commit log's. Complete the entry.
                    self.log.commit(&[(*p, r)], 0, &BTreeMap::new()).await?;
                }
            }
        }
        tracing::debug!(
            ?parts,
            outputs_ms = outputs_read.as_millis() as u64,
            state_ms = (states_read - outputs_read).as_millis() as u64,
            log_ms = (started.elapsed() - states_read).as_millis() as u64,
            "partitions' positions and state read"
        );
        Ok(pending)
    }

    /// Forgets a partition this worker lost.
    pub fn drop_partition(&mut self, p: i32) {
        self.partitions.remove(&p);
        for s in &mut self.stages {
            if let Some(state) = s.op.state_mut() {
                state.remove(p);
            }
        }
    }

    /// Keys held in state over all stages.
    pub fn state_len(&self) -> usize {
        self.stages
            .iter()
            .filter_map(|s| s.op.state())
            .map(PartitionState::keys)
            .sum()
    }

    /// Processes one epoch and starts its commits; returns the ends (partition → next offset)
    /// of the epoch whose commits finished meanwhile, the one before (empty if none was under
    /// way).
    ///
    /// The commits run as a task ([`Landing`]): the caller gathers the next epoch meanwhile, and
    /// the next call decodes and processes it before waiting for them, so one epoch's decoding
    /// and operators overlap the last one's Parquet encoding and storage writes; the writes
    /// keep their order (see `engine/landing.rs`). [`Engine::settle`] waits for the last epoch's
    /// commits: before anything reads the lake's positions, and at the end of a run.
    pub async fn epoch(&mut self, msgs: &[RawMessage]) -> Result<BTreeMap<i32, i64>> {
        if msgs.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut ranges: BTreeMap<i32, Range> = BTreeMap::new();
        let mut read: BTreeMap<i32, u64> = BTreeMap::new();
        for m in msgs {
            let r = ranges.entry(m.partition).or_insert(Range {
                start: m.offset,
                end: m.offset + 1,
            });
            r.start = r.start.min(m.offset);
            r.end = r.end.max(m.offset + 1);
            *read.entry(m.partition).or_default() += 1;
        }
        let ranges: Vec<(i32, Range)> = ranges.into_iter().collect();
        let ends: BTreeMap<i32, i64> = ranges.iter().map(|(p, r)| (*p, r.end)).collect();
        // An epoch with a partition the landing one does not know the versions of waits for
        // it before anything (it cannot happen: a rebalance waits for the landing first).
        let mut landed = BTreeMap::new();
        if self.landing.as_ref().is_some_and(|l| !l.knows(&ends)) {
            landed = self.settle().await?;
        }
        // Where the outputs stand for this epoch: while the last epoch lands, where it leaves
        // them.
        let after = self.landing.as_ref().map(|l| l.after.clone());
        if let Some(l) = &self.landing {
            debug_assert!(
                ranges
                    .iter()
                    .all(|(p, r)| l.ends.get(p).is_none_or(|e| r.start >= *e)),
                "{ranges:?} {:?}",
                l.ends
            );
        }
        let started = std::time::Instant::now();
        let metrics = &rtlake_core::metrics::global().run;
        let now = chrono::Utc::now();
        let pipeline = self.pipeline.clone();
        let rejected_at: BTreeMap<i32, i64> = ends
            .keys()
            .map(|p| {
                let v = match &after {
                    Some(a) => a.rejected[p],
                    None => self.rejected().version(&pipeline, *p).unwrap_or(0),
                };
                (*p, v)
            })
            .collect();
        let stage_at = |i: usize, stage: &Stage, p: i32| match &after {
            Some(a) => a.stages[i][&p],
            None => stage.version(&pipeline, p),
        };
        let mut refused = RejectedColumns::new(self.rejected_shape);
        let transcoded: Vec<RawMessage>;
        let input = match &mut self.decoder {
            Some(d) => {
                d.prepare(msgs).await?;
                let (records, bad) = d.decode(&self.topic, msgs, now, self.max_future)?;
                let declared = d.schema().fields().len() - meta_fields().len();
                for r in bad {
                    let m = &msgs[r.index];
                    if m.offset >= rejected_at[&m.partition] {
                        refused.push(&self.topic, m, r.reason, &r.error, "input", now);
                    }
                }
                match &mut self.domain {
                    // A domain's operators read the decoded rows as JSON objects of the
                    // input's columns, one message each (those refused above left out).
                    Some(dom) => {
                        transcoded = as_json(&records, declared, msgs)?;
                        let decoded = dom.decode(&self.topic, &transcoded, now);
                        let rows = (0..transcoded.len()).collect();
                        let records = Records {
                            batch: records.batch,
                            rows,
                        };
                        let mut input =
                            EpochInput::declared(&self.topic, &transcoded, now, records);
                        input.domain = Some(decoded);
                        input
                    }
                    None => EpochInput::declared(&self.topic, msgs, now, records),
                }
            }
            None => match &mut self.domain {
                Some(d) => {
                    EpochInput::domain(&self.topic, msgs, now, d.decode(&self.topic, msgs, now))
                }
                None => {
                    return Err(Error::new(
                        Kind::Config,
                        "the pipeline declares no [input] and no domain decoder is registered",
                    ));
                }
            },
        };
        let rejected_owed = |m: &RawMessage| m.offset >= rejected_at[&m.partition];
        let topic = self.topic.as_str();
        let shape = self.rejected_shape;
        // The stages are independent: each on a thread of its own, with its own rejections.
        let run_stage = |i: usize, stage: &mut Stage| {
            let at: BTreeMap<i32, i64> = ends
                .keys()
                .map(|p| (*p, stage_at(i, stage, *p).unwrap_or(0)))
                .collect();
            let owed = |m: &RawMessage| m.offset >= at[&m.partition];
            let mut cols = RejectedColumns::new(shape);
            let out = stage.op.process(
                &input,
                &owed,
                &mut Rejections::new(&mut cols, &rejected_owed, topic, now),
                &stage.sink,
            );
            // The state after this epoch, under the version its outputs' commits will carry,
            // serialised here on the stage's own thread.
            let snapshots: Vec<(i32, i64, Vec<u8>)> = match stage.op.state() {
                Some(state) if out.is_ok() => ends
                    .iter()
                    .filter(|(p, end)| stage_at(i, stage, **p).is_none_or(|v| **end > v))
                    .map(|(p, end)| (*p, *end, state.snapshot(*p)))
                    .collect(),
                _ => Vec::new(),
            };
            (out, cols.finish(), snapshots)
        };
        let decoded = started.elapsed();
        let results: Vec<(
            Result<Emitted>,
            arrow::array::RecordBatch,
            Vec<(i32, i64, Vec<u8>)>,
        )> = tokio::task::block_in_place(|| {
            std::thread::scope(|scope| {
                let handles: Vec<_> = self
                    .stages
                    .iter_mut()
                    .enumerate()
                    .map(|(i, stage)| scope.spawn(move || run_stage(i, stage)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    .collect()
            })
        });
        drop(input);
        let processed = started.elapsed();
        for (p, n) in read {
            metrics
                .events_in
                .with_label_values(&[&pipeline, &self.topic, &p.to_string()])
                .inc_by(n);
        }
        // This epoch's writes start once the last epoch's are done.
        landed.extend(self.settle().await?);
        let waited = started.elapsed() - processed;
        let mut emitted = Vec::with_capacity(results.len());
        let mut rejected_parts = vec![refused.finish()];
        let mut saves = Vec::new();
        for ((out, rejects, snapshots), stage) in results.into_iter().zip(&self.stages) {
            emitted.push(std::sync::Arc::new(out?));
            rejected_parts.push(rejects);
            for (p, end, bytes) in snapshots {
                // Older snapshots go once every stage of this kind has committed past them.
                let keep_from = self
                    .stages
                    .iter()
                    .filter(|s| s.op.kind() == stage.op.kind())
                    .filter_map(|s| s.version(&pipeline, p))
                    .min();
                saves.push((stage.op.kind(), p, end, bytes, keep_from));
            }
        }
        for stage in &self.stages {
            metrics
                .state_keys
                .with_label_values(&[&pipeline, stage.op.kind()])
                .set(stage.op.state().map_or(0, PartitionState::keys) as i64);
        }
        let rejected_schema = rtlake_core::schema::rejected();
        let refused = Emitted {
            origins: Vec::new(),
            batch: arrow::compute::concat_batches(&rejected_schema, &rejected_parts)
                .map_err(|e| Error::caused(Kind::Sink, "_rejected rows", e))?,
        };
        // Each partition's newest Kafka timestamp: the commit log keeps it (the pipeline page's
        // freshness), each table's commit records the epoch's newest event (`rtlake lake
        // status`), and each table that committed now holds it (its freshness on /metrics).
        let mut newest: BTreeMap<i32, i64> = BTreeMap::new();
        let mut timestamps = Vec::with_capacity(msgs.len());
        for m in msgs {
            if let Some(ts) = m.timestamp {
                let n = newest.entry(m.partition).or_insert(ts);
                *n = (*n).max(ts);
                timestamps.push(ts);
            }
        }
        // Where this epoch leaves every output, for the next epoch to process while it lands:
        // an output behind on one of its partitions commits up to its end, one ahead (an epoch
        // cut inside another partition's interrupted range) stays, and no other partition moves.
        let mut parts = self.partitions.clone();
        parts.extend(ends.keys());
        let after_of = |o: &Output, p: &i32| {
            let now = o.version(&pipeline, *p);
            match ends.get(p) {
                Some(end) => Some(now.map_or(*end, |v| v.max(*end))),
                None => now,
            }
        };
        let after = landing::After {
            // A stage stands at the smallest of its outputs, as `Stage::version` says.
            stages: self
                .stages
                .iter()
                .map(|s| {
                    parts
                        .iter()
                        .map(|p| {
                            let each: Option<Vec<i64>> =
                                s.outputs.iter().map(|o| after_of(o, p)).collect();
                            (*p, each.and_then(|v| v.into_iter().min()))
                        })
                        .collect()
                })
                .collect(),
            rejected: parts
                .iter()
                .map(|p| (*p, after_of(self.rejected(), p).unwrap_or(0)))
                .collect(),
        };
        let work = landing::Work {
            pipeline,
            outputs: self
                .stages
                .iter_mut()
                .map(|s| std::mem::take(&mut s.outputs))
                .collect(),
            rejected: self
                .rejected
                .take()
                .expect("_rejected is back after settling"),
            state: self.state.clone(),
            log: self.log.clone(),
            ranges,
            ends,
            saves,
            refused,
            emitted,
            newest,
            timestamps,
            messages: msgs.len() as u64,
            started,
            decoded,
            processed,
            waited,
        };
        self.landing = Some(work.start(after));
        Ok(landed)
    }

    /// Ends a run: waits for the last epoch's commits, then for what they left running beside
    /// (log checkpoints).
    pub async fn finish(&mut self) -> Result<()> {
        self.settle().await?;
        for o in self
            .stages
            .iter_mut()
            .flat_map(|s| s.outputs.iter_mut())
            .chain(self.rejected.as_mut())
        {
            o.finish().await;
        }
        Ok(())
    }

    /// Waits for the last epoch's commits and takes its outputs back; returns that epoch's
    /// ends (empty if none was under way). A failed commit is returned here, the outputs back
    /// in place either way. Cancel-safe: dropped while waiting, the commits stay under way.
    pub async fn settle(&mut self) -> Result<BTreeMap<i32, i64>> {
        let Some(landing) = &mut self.landing else {
            return Ok(BTreeMap::new());
        };
        let landed = (&mut landing.task)
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        let ends = std::mem::take(&mut landing.ends);
        self.landing = None;
        for (stage, outputs) in self.stages.iter_mut().zip(landed.outputs) {
            stage.outputs = outputs;
        }
        self.rejected = Some(landed.rejected);
        self.report.add(landed.outcome?);
        Ok(ends)
    }
}

/// The first `declared` columns of each decoded row as one JSON object, in a message like the
/// one it came from (partition, offset, key, timestamp).
fn as_json(records: &Records, declared: usize, msgs: &[RawMessage]) -> Result<Vec<RawMessage>> {
    let batch = records
        .batch
        .project(&(0..declared).collect::<Vec<_>>())
        .map_err(|e| Error::caused(Kind::Source, "the input's rows as JSON", e))?;
    let mut buf = Vec::new();
    let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
    w.write(&batch)
        .and_then(|()| w.finish())
        .map_err(|e| Error::caused(Kind::Source, "the input's rows as JSON", e))?;
    Ok(buf
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .zip(&records.rows)
        .map(|(line, i)| {
            let m = &msgs[*i];
            RawMessage {
                partition: m.partition,
                offset: m.offset,
                key: m.key.clone(),
                payload: Some(bytes::Bytes::copy_from_slice(line)),
                timestamp: m.timestamp,
            }
        })
        .collect())
}
