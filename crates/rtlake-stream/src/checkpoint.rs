//! The offset log and the commit log (Spark's `offsets/` and `commits/`), per input partition.
//!
//! Before an epoch is processed, each of its partitions' offset ranges is written to
//! `offsets/<partition>/<end>.json`; once every output has committed, `commits/<partition>/<end>`
//! marks it done. A partition whose newest range has no commit was interrupted: after a restart
//! its next epoch is cut at exactly that range's end, so the re-run covers the same offsets and
//! emits the same rows (operators keep state and watermarks per partition, so a partition's
//! output does not depend on which other partitions shared its epoch). The newest
//! [`RETAIN`] entries of each log are kept.

use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Entries kept per partition in each log.
pub const RETAIN: usize = 100;

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
}

/// The offset and commit logs of a pipeline, under its checkpoint folder.
#[derive(Clone, Debug)]
pub struct EpochLog {
    root: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::Checkpoint(format!("{}: {e}", path.display()))
}

impl EpochLog {
    /// The logs under `root` (the pipeline's checkpoint folder).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn dir(&self, log: &str, partition: i32) -> PathBuf {
        self.root.join(log).join(partition.to_string())
    }

    fn write(
        &self,
        log: &str,
        partition: i32,
        end: i64,
        entry: &impl serde::Serialize,
    ) -> Result<()> {
        let dir = self.dir(log, partition);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let file = dir.join(format!("{end:020}.json"));
        let tmp = dir.join(format!("{end:020}.tmp"));
        // Integers always serialise.
        std::fs::write(&tmp, serde_json::to_vec(entry).expect("entry serialises"))
            .map_err(io(&tmp))?;
        std::fs::rename(&tmp, &file).map_err(io(&file))?;
        let mut ends = Self::ends(&dir)?;
        ends.sort_unstable();
        for old in ends.iter().rev().skip(RETAIN) {
            let _ = std::fs::remove_file(dir.join(format!("{old:020}.json")));
        }
        Ok(())
    }

    fn ends(dir: &Path) -> Result<Vec<i64>> {
        crate::state::numbered(dir).map_err(io(dir))
    }

    /// Records an epoch's ranges before it is processed.
    pub fn begin(&self, ranges: &[(i32, Range)]) -> Result<()> {
        ranges
            .iter()
            .try_for_each(|(p, r)| self.write("offsets", *p, r.end, r))
    }

    /// Records an epoch as done, after every output committed; it took `duration_ms`.
    pub fn commit(&self, ranges: &[(i32, Range)], duration_ms: u64) -> Result<()> {
        let committed_at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        ranges.iter().try_for_each(|(p, r)| {
            self.write(
                "commits",
                *p,
                r.end,
                &Committed {
                    start: r.start,
                    end: r.end,
                    duration_ms,
                    committed_at_ms,
                },
            )
        })
    }

    /// The newest commit-log entry of a partition.
    pub fn last_commit(&self, partition: i32) -> Result<Option<Committed>> {
        let dir = self.dir("commits", partition);
        let Some(end) = Self::ends(&dir)?.into_iter().max() else {
            return Ok(None);
        };
        let file = dir.join(format!("{end:020}.json"));
        let bytes = std::fs::read(&file).map_err(io(&file))?;
        Ok(serde_json::from_slice(&bytes).ok())
    }

    /// The partition's interrupted range: its newest offset-log entry without a commit.
    pub fn pending(&self, partition: i32) -> Result<Option<Range>> {
        let Some(end) = Self::ends(&self.dir("offsets", partition))?
            .into_iter()
            .max()
        else {
            return Ok(None);
        };
        if Self::ends(&self.dir("commits", partition))?.contains(&end) {
            return Ok(None);
        }
        let file = self
            .dir("offsets", partition)
            .join(format!("{end:020}.json"));
        let bytes = std::fs::read(&file).map_err(io(&file))?;
        let range = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Checkpoint(format!("{}: {e}", file.display())))?;
        Ok(Some(range))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoch_without_a_commit_is_pending_with_its_exact_range() {
        let dir = std::env::temp_dir().join(format!("rtlake-epochlog-{}", std::process::id()));
        let log = EpochLog::new(&dir);
        assert_eq!(log.pending(0).unwrap(), None);
        let first = [
            (0, Range { start: 0, end: 10 }),
            (1, Range { start: 0, end: 7 }),
        ];
        log.begin(&first).unwrap();
        assert_eq!(log.pending(0).unwrap(), Some(Range { start: 0, end: 10 }));
        log.commit(&first, 5).unwrap();
        assert_eq!(
            log.last_commit(1)
                .unwrap()
                .map(|c| (c.start, c.end, c.duration_ms)),
            Some((0, 7, 5))
        );
        assert_eq!(log.pending(0).unwrap(), None);
        log.begin(&[(0, Range { start: 10, end: 25 })]).unwrap();
        assert_eq!(log.pending(0).unwrap(), Some(Range { start: 10, end: 25 }));
        assert_eq!(
            log.pending(1).unwrap(),
            None,
            "partition 1 was not in the interrupted epoch"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
