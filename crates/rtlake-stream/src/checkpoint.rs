//! The offset log and the commit log (Spark's `offsets/` and `commits/`), per input partition.
//!
//! Before an epoch is processed, each of its partitions' offset ranges is written to
//! `offsets/<partition>/<end>.json`; once every output has committed, `commits/<partition>/<end>`
//! marks it done. A partition whose newest range has no commit was interrupted: after a restart
//! its next epoch is cut at exactly that range's end, so the re-run covers the same offsets and
//! emits the same rows (operators keep state and watermarks per partition, so a partition's
//! output does not depend on which other partitions shared its epoch). The newest
//! [`RETAIN`] entries of each log are kept.

use crate::{Error, Kind, Result};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Entries kept per partition in each log.
pub const RETAIN: usize = 100;

/// A folder of a checkpoint, in whatever store holds it (a local folder or S3): small files
/// written whole (a put is atomic in both), read whole, listed by number.
#[derive(Clone)]
pub struct Folder {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    /// Where it is, for messages.
    shown: String,
}

impl std::fmt::Debug for Folder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl std::fmt::Display for Folder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

fn store_err(what: &str) -> impl FnOnce(object_store::Error) -> Error + '_ {
    move |e| Error::caused(Kind::Checkpoint, what, e)
}

impl Folder {
    /// The root of `store` (opened at `url`, which names it in messages).
    pub fn new(store: Arc<dyn ObjectStore>, url: &url::Url) -> Self {
        Self {
            store,
            prefix: Path::default(),
            shown: url.to_string().trim_end_matches('/').to_string(),
        }
    }

    /// A local folder (tests, tools).
    pub fn local(dir: &std::path::Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::caused(Kind::Checkpoint, format!("{}", dir.display()), e))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(store_err(&dir.display().to_string()))?;
        Ok(Self {
            store: Arc::new(store),
            prefix: Path::default(),
            shown: dir.display().to_string(),
        })
    }

    /// The sub-folder `name`.
    pub fn child(&self, name: &str) -> Self {
        Self {
            store: self.store.clone(),
            prefix: self.prefix.clone().join(name),
            shown: format!("{}/{name}", self.shown),
        }
    }

    fn path(&self, name: &str) -> Path {
        self.prefix.clone().join(name)
    }

    /// Where the file `name` is, for messages.
    pub fn shown(&self, name: &str) -> String {
        format!("{}/{name}", self.shown)
    }

    /// Writes the file `name` whole.
    pub async fn put(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        self.store
            .put(&self.path(name), PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(store_err(&self.shown(name)))
    }

    /// Reads the file `name` (`None`: there is none).
    pub async fn get(&self, name: &str) -> Result<Option<Bytes>> {
        match self.store.get(&self.path(name)).await {
            Ok(r) => r
                .bytes()
                .await
                .map(Some)
                .map_err(store_err(&self.shown(name))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_err(&self.shown(name))(e)),
        }
    }

    /// Removes the file `name`, if there.
    pub async fn delete(&self, name: &str) -> Result<()> {
        match self.store.delete(&self.path(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_err(&self.shown(name))(e)),
        }
    }

    /// The names of the files directly in the folder, and of its sub-folders.
    pub async fn list(&self) -> Result<(Vec<String>, Vec<String>)> {
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        let l = self
            .store
            .list_with_delimiter(prefix)
            .await
            .map_err(store_err(&self.shown))?;
        let name = |p: &Path| p.filename().map(str::to_string);
        Ok((
            l.objects.iter().filter_map(|o| name(&o.location)).collect(),
            l.common_prefixes.iter().filter_map(name).collect(),
        ))
    }

    /// The files' total size, with those of the sub-folders.
    pub async fn size(&self) -> Result<u64> {
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        self.store
            .list(prefix)
            .map_ok(|o| o.size)
            .try_fold(0, |a, b| async move { Ok(a + b) })
            .await
            .map_err(store_err(&self.shown))
    }

    /// The numbers `n` of the folder's `<n>.json` files: the versions of state snapshots and
    /// the ends of the offset and commit logs.
    pub async fn numbered(&self) -> Result<Vec<i64>> {
        Ok(self
            .list()
            .await?
            .0
            .iter()
            .filter_map(|n| n.strip_suffix(".json")?.parse().ok())
            .collect())
    }
}

/// One partition's range in an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Range {
    /// First offset.
    pub start: i64,
    /// One past the last offset.
    pub end: i64,
}

/// A commit-log entry: the range, and how the epoch went (for status pages).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Committed {
    /// First offset.
    pub start: i64,
    /// One past the last offset.
    pub end: i64,
    /// Wall time of the epoch, ms.
    pub duration_ms: u64,
    /// When every output had committed, ms since the Unix epoch.
    pub committed_at_ms: i64,
    /// The Kafka timestamp of the range's newest message, ms since the Unix epoch (absent in
    /// entries written before it was recorded, and for messages without timestamps): the
    /// outputs' freshness is `committed_at_ms` or now minus this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_event_ms: Option<i64>,
}

/// The offset and commit logs of a pipeline, under its checkpoint folder.
#[derive(Clone, Debug)]
pub struct EpochLog {
    root: Folder,
}

fn entry(end: i64) -> String {
    format!("{end:020}.json")
}

impl EpochLog {
    /// The logs under `root` (the pipeline's checkpoint folder).
    pub fn new(root: Folder) -> Self {
        Self { root }
    }

    fn dir(&self, log: &str, partition: i32) -> Folder {
        self.root.child(log).child(&partition.to_string())
    }

    async fn write(
        &self,
        log: &str,
        partition: i32,
        end: i64,
        value: &impl serde::Serialize,
    ) -> Result<()> {
        let dir = self.dir(log, partition);
        // Integers always serialise.
        let bytes = serde_json::to_vec(value).expect("entry serialises");
        dir.put(&entry(end), bytes).await?;
        let mut ends = dir.numbered().await?;
        ends.sort_unstable();
        for old in ends.iter().rev().skip(RETAIN) {
            let _ = dir.delete(&entry(*old)).await;
        }
        Ok(())
    }

    /// Records an epoch's ranges before it is processed.
    pub async fn begin(&self, ranges: &[(i32, Range)]) -> Result<()> {
        for (p, r) in ranges {
            self.write("offsets", *p, r.end, r).await?;
        }
        Ok(())
    }

    /// Records an epoch as done, after every output committed; it took `duration_ms`, and
    /// `newest` holds each partition's newest Kafka timestamp.
    pub async fn commit(
        &self,
        ranges: &[(i32, Range)],
        duration_ms: u64,
        newest: &BTreeMap<i32, i64>,
    ) -> Result<()> {
        let committed_at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        for (p, r) in ranges {
            let c = Committed {
                start: r.start,
                end: r.end,
                duration_ms,
                committed_at_ms,
                newest_event_ms: newest.get(p).copied(),
            };
            self.write("commits", *p, r.end, &c).await?;
        }
        Ok(())
    }

    /// The newest commit-log entry of a partition.
    pub async fn last_commit(&self, partition: i32) -> Result<Option<Committed>> {
        let dir = self.dir("commits", partition);
        let Some(end) = dir.numbered().await?.into_iter().max() else {
            return Ok(None);
        };
        let bytes = dir.get(&entry(end)).await?;
        Ok(bytes.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// The partition's interrupted range: its newest offset-log entry without a commit.
    pub async fn pending(&self, partition: i32) -> Result<Option<Range>> {
        let offsets = self.dir("offsets", partition);
        let Some(end) = offsets.numbered().await?.into_iter().max() else {
            return Ok(None);
        };
        if self
            .dir("commits", partition)
            .numbered()
            .await?
            .contains(&end)
        {
            return Ok(None);
        }
        let Some(bytes) = offsets.get(&entry(end)).await? else {
            return Ok(None);
        };
        let range = serde_json::from_slice(&bytes).map_err(|e| {
            Error::new(
                Kind::Checkpoint,
                format!("{}: {e}", offsets.shown(&entry(end))),
            )
        })?;
        Ok(Some(range))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_epoch_without_a_commit_is_pending_with_its_exact_range() {
        let dir = std::env::temp_dir().join(format!("rtlake-epochlog-{}", std::process::id()));
        let log = EpochLog::new(Folder::local(&dir).unwrap());
        assert_eq!(log.pending(0).await.unwrap(), None);
        let first = [
            (0, Range { start: 0, end: 10 }),
            (1, Range { start: 0, end: 7 }),
        ];
        log.begin(&first).await.unwrap();
        assert_eq!(
            log.pending(0).await.unwrap(),
            Some(Range { start: 0, end: 10 })
        );
        log.commit(&first, 5, &BTreeMap::from([(1, 1_700_000_000_000)]))
            .await
            .unwrap();
        assert_eq!(
            log.last_commit(1).await.unwrap().map(|c| (
                c.start,
                c.end,
                c.duration_ms,
                c.newest_event_ms
            )),
            Some((0, 7, 5, Some(1_700_000_000_000)))
        );
        assert_eq!(
            log.last_commit(0).await.unwrap().unwrap().newest_event_ms,
            None
        );
        assert_eq!(log.pending(0).await.unwrap(), None);
        log.begin(&[(0, Range { start: 10, end: 25 })])
            .await
            .unwrap();
        assert_eq!(
            log.pending(0).await.unwrap(),
            Some(Range { start: 10, end: 25 })
        );
        assert_eq!(
            log.pending(1).await.unwrap(),
            None,
            "partition 1 was not in the interrupted epoch"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
