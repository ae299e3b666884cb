//! The append commit: the Delta sink writes its log entry itself.
//!
//! delta-rs' commit path lists the log to find the newest version, then, after every commit,
//! brings the table's in-memory list of live files up to the new version: a replay of every
//! live file's statistics, growing with the table until it is compacted. An append never reads
//! that list, and a live pipeline commits several times a second: at 40x the replay was about
//! half of the process's CPU (`bench/README.md`, "fourth step"). An append needs only what the
//! Delta protocol asks of a writer: the next version's log entry, written if absent (the
//! store's put-if-absent or rename-if-absent is the protocol's mutual exclusion), and, when
//! another writer took that version first, a look at its actions. A `txn` of a partition this
//! commit carries means another worker wrote it (a conflict: the epoch is dropped); a schema or
//! protocol change ends the commit; anything else (a compaction's rewrite, another partition's
//! append) is only a later version to retry at.
//!
//! The log checkpoint, which delta-rs wrote inside every `checkpointInterval`-th commit, is
//! written beside the pipeline on a blocking thread instead, at a version of its own per table
//! and one at a time in the process: a pipeline's tables commit together, so at the same
//! versions all of them (six in rtlake's default pipeline) checkpointed at once, 100-150 ms
//! each on two cores, and every 20th epoch of a live run at 40x took three times as long (its
//! outputs 130-210 ms instead of ~50; `bench/README.md`, "The Kafka path, twelfth step").

use super::DeltaSink;
use crate::{Error, Result};
use bytes::Bytes;
use deltalake::DeltaTableError;
use deltalake::kernel::transaction::TransactionError;
use deltalake::kernel::{Action, Add, Transaction};
use deltalake::logstore::CommitOrBytes;
use std::collections::BTreeMap;

/// Versions tried before giving up while other writers keep taking the next one.
const MAX_ATTEMPTS: usize = 16;

/// Held while a log checkpoint is written: one at a time in the process, so that they take at
/// most one core from the epochs.
static CHECKPOINTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Where in each `interval` of versions the table `name` writes its log checkpoint: spread by a
/// hash of the name (FNV-1a), the same in every process, so that a pipeline's tables, which
/// commit together, do not all checkpoint at the same epoch. The Delta protocol lets a
/// checkpoint be written at any version; the interval is a writer's choice.
pub(super) fn checkpoint_phase(name: &str, interval: u64) -> u64 {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    hash % interval.max(1)
}

impl DeltaSink {
    /// Commits `adds` (files already written) with the txn versions `txns` at the version after
    /// the one the sink knows ([`DeltaSink::check_versions`] must have run), or after the other
    /// writers' commits found there.
    pub(super) async fn append(
        &mut self,
        adds: Vec<Add>,
        txns: &BTreeMap<String, i64>,
        newest_event_ms: Option<i64>,
    ) -> Result<u64> {
        let mut at = self
            .verified
            .expect("check_versions leaves the sink's version known");
        let entry = self.log_entry(adds, txns, newest_event_ms)?;
        for _ in 0..MAX_ATTEMPTS {
            let version = at + 1;
            match self.put_entry(version, entry.clone()).await {
                Ok(()) => {
                    for (id, v) in txns {
                        self.known.insert(id.clone(), Some(*v));
                    }
                    self.verified = Some(version);
                    self.checkpoint_beside(version);
                    return Ok(version);
                }
                Err(TransactionError::VersionAlreadyExists(_)) => {
                    at = self.others_commits(version, txns).await?;
                    self.verified = Some(at);
                }
                Err(e) => return Err(self.delta_error(e.into())),
            }
        }
        self.verified = None;
        Err(self.delta_error(DeltaTableError::Generic(format!(
            "other writers took the next version {MAX_ATTEMPTS} times in a row"
        ))))
    }

    /// The sink's table named in a delta-rs error.
    pub(super) fn delta_error(&self, cause: DeltaTableError) -> Error {
        Error::Delta {
            table: self.name.to_string(),
            cause: Box::new(cause),
        }
    }

    /// The commit's log entry: its commitInfo (with the newest event, see
    /// [`crate::NEWEST_EVENT_KEY`]), one `add` per file, one `txn` per input partition.
    fn log_entry(
        &self,
        adds: Vec<Add>,
        txns: &BTreeMap<String, i64>,
        newest_event_ms: Option<i64>,
    ) -> Result<Bytes> {
        let mut info = serde_json::json!({
            "timestamp": chrono::Utc::now().timestamp_millis(),
            "operation": "WRITE",
            "operationParameters": { "mode": "Append", "partitionBy": self.partition_by },
            "engineInfo": concat!("rtlake:", env!("CARGO_PKG_VERSION")),
            "clientVersion": concat!("rtlake.", env!("CARGO_PKG_VERSION")),
            "isBlindAppend": true,
        });
        if let Some(ms) = newest_event_ms {
            info[crate::NEWEST_EVENT_KEY] = serde_json::json!(ms);
        }
        let mut out = serde_json::to_vec(&serde_json::json!({ "commitInfo": info }))
            .map_err(|e| self.delta_error(e.into()))?;
        let actions = adds.into_iter().map(Action::Add).chain(
            txns.iter()
                .map(|(id, v)| Action::Txn(Transaction::new(id, *v))),
        );
        for action in actions {
            out.push(b'\n');
            serde_json::to_writer(&mut out, &action).map_err(|e| self.delta_error(e.into()))?;
        }
        Ok(out.into())
    }

    /// Writes `entry` as the log entry of `version` unless it exists. rtlake's lakes (a local
    /// folder, S3: `store.rs`) use delta-rs' default log store, whose commit is a create-only
    /// put (S3's conditional put).
    async fn put_entry(&self, version: u64, entry: Bytes) -> Result<(), TransactionError> {
        self.table
            .log_store()
            .write_commit_entry(
                version,
                CommitOrBytes::LogBytes(entry),
                uuid::Uuid::new_v4(),
            )
            .await
    }

    /// Reads the commits other writers made from `from` on, and returns the last one's version.
    /// Fails on a `txn` of one of `txns`' partitions ([`Error::ConflictingOffsets`]) or a schema
    /// or protocol change; another partition's `txn` that the sink knew is forgotten, so it is
    /// read again before the sink commits that partition.
    async fn others_commits(&mut self, from: u64, txns: &BTreeMap<String, i64>) -> Result<u64> {
        let store = self.table.log_store();
        let mut version = from;
        while let Some(entry) = store
            .read_commit_entry(version)
            .await
            .map_err(|e| self.delta_error(e))?
        {
            for line in entry.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let action: serde_json::Value =
                    serde_json::from_slice(line).map_err(|e| self.delta_error(e.into()))?;
                if let Some(txn) = action.get("txn")
                    && let Some(id) = txn.get("appId").and_then(|i| i.as_str())
                {
                    if txns.contains_key(id) {
                        self.verified = None;
                        return Err(Error::ConflictingOffsets {
                            table: self.name.to_string(),
                            app_id: id.to_string(),
                            expected: self.known_version(id),
                            found: txn.get("version").and_then(|v| v.as_i64()),
                        });
                    }
                    self.known.remove(id);
                }
                if action.get("metaData").is_some() || action.get("protocol").is_some() {
                    self.verified = None;
                    return Err(Error::Schema {
                        table: self.name.to_string(),
                        reason: format!(
                            "another writer changed the table's schema or protocol at version \
                             {version}; the pipeline must open the table again"
                        ),
                    });
                }
            }
            version += 1;
        }
        Ok(version - 1)
    }

    /// Waits for a log checkpoint being written beside the commits: at the end of a run, so
    /// that the process does not exit under it (the kernel's executor panics when its runtime
    /// goes away mid-write, and the checkpoint is lost).
    pub async fn finish(&mut self) {
        if let Some(h) = self.checkpointing.take() {
            let _ = h.await;
        }
    }

    /// Whether the table's checkpoint falls at `version`: once per `checkpointInterval`
    /// versions, at the table's own phase.
    pub(super) fn checkpoint_due(&self, version: u64) -> bool {
        (version + 1 + self.checkpoint_phase).is_multiple_of(self.checkpoint_interval)
    }

    /// Starts writing the log checkpoint of `version` on a blocking thread when the table's
    /// `checkpointInterval` asks for one there, unless the previous one is still being written
    /// (the next interval's will cover it). A failure is only logged: the processor's
    /// maintenance schedule checkpoints too, and readers replay the log without one.
    fn checkpoint_beside(&mut self, version: u64) {
        if !self.checkpoint_due(version)
            || self
                .checkpointing
                .as_ref()
                .is_some_and(|h| !h.is_finished())
        {
            return;
        }
        let store = self.table.log_store();
        let engine = store.engine(None);
        let root = match store.transaction_url(None) {
            Ok(root) => root,
            Err(e) => {
                tracing::warn!(table = %self.name, version, error = %e, "no checkpoint");
                return;
            }
        };
        let table = self.name.to_string();
        self.checkpointing = Some(tokio::task::spawn_blocking(move || {
            let _one_at_a_time = CHECKPOINTS.lock().unwrap_or_else(|p| p.into_inner());
            let started = std::time::Instant::now();
            let written = delta_kernel::Snapshot::builder_for(root.as_str())
                .at_version(version)
                .build(engine.as_ref())
                .and_then(|s| s.checkpoint(engine.as_ref(), None));
            match written {
                Ok(_) => tracing::debug!(
                    table,
                    version,
                    ms = started.elapsed().as_millis() as u64,
                    "log checkpoint written"
                ),
                Err(e) => tracing::warn!(
                    table,
                    version,
                    error = %e,
                    "log checkpoint failed; maintenance writes the next one"
                ),
            }
        }));
    }
}
