//! Keyed state snapshots, one file per (table, partition, version).
//!
//! A snapshot is written before the commit that carries its version (the next offset) as the
//! table's txn, so the table decides which snapshot is current: after a crash, the partition
//! resumes from the snapshot whose version the table holds, whether or not a newer one was
//! written. The previous snapshot is kept; older ones are removed.

use std::path::{Path, PathBuf};

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing a snapshot failed.
    #[error("state {path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// The table holds a version whose snapshot is missing: the state cannot be rebuilt.
    #[error(
        "state of {table} partition {partition} at offset {version} is missing from {dir}; the checkpoint does not belong to this lake (restore it, or start a new pipeline name)"
    )]
    Missing {
        /// The table.
        table: String,
        /// The partition.
        partition: i32,
        /// The version the table holds.
        version: i64,
        /// Where it was looked for.
        dir: PathBuf,
    },
}

/// Where a pipeline keeps its state snapshots (a local folder).
#[derive(Clone, Debug)]
pub struct StateStore {
    root: PathBuf,
}

impl StateStore {
    /// A store under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn dir(&self, table: &str, partition: i32) -> PathBuf {
        self.root.join(table).join(partition.to_string())
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
        move |cause| StateError::Io {
            path: path.to_path_buf(),
            cause,
        }
    }

    /// Writes the snapshot of `version` atomically and drops all but the two newest, and
    /// never one at or after `keep_from`: the oldest version an output fed by this operator
    /// still holds (two stages of one operator kind, such as silver and a Kafka sink of
    /// `changes`, share the folder, and a lagging one restores from its own version).
    pub fn save(
        &self,
        table: &str,
        partition: i32,
        version: i64,
        bytes: &[u8],
        keep_from: Option<i64>,
    ) -> Result<(), StateError> {
        let dir = self.dir(table, partition);
        std::fs::create_dir_all(&dir).map_err(Self::io(&dir))?;
        let file = dir.join(format!("{version:020}.json"));
        let tmp = dir.join(format!("{version:020}.tmp"));
        std::fs::write(&tmp, bytes).map_err(Self::io(&tmp))?;
        std::fs::rename(&tmp, &file).map_err(Self::io(&file))?;
        let mut versions = numbered(&dir).map_err(Self::io(&dir))?;
        versions.sort_unstable();
        // Keep the snapshot the table holds now, and the new one that is about to be committed.
        for old in versions
            .iter()
            .rev()
            .skip(2)
            .filter(|v| keep_from.is_some_and(|k| **v < k))
        {
            let _ = std::fs::remove_file(dir.join(format!("{old:020}.json")));
        }
        Ok(())
    }

    /// Reads the snapshot of `version`; `None` means the partition has no state yet.
    pub fn load(
        &self,
        table: &str,
        partition: i32,
        version: Option<i64>,
    ) -> Result<Option<Vec<u8>>, StateError> {
        let Some(version) = version else {
            return Ok(None);
        };
        let dir = self.dir(table, partition);
        let file = dir.join(format!("{version:020}.json"));
        match std::fs::read(&file) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StateError::Missing {
                table: table.into(),
                partition,
                version,
                dir,
            }),
            Err(cause) => Err(StateError::Io { path: file, cause }),
        }
    }
}

/// The numbers `n` of a folder's `<n>.json` files (none when the folder does not exist): the
/// versions of state snapshots and the ends of the offset and commit logs.
pub(crate) fn numbered(dir: &Path) -> std::io::Result<Vec<i64>> {
    match std::fs::read_dir(dir) {
        Ok(rd) => Ok(rd
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json")?.parse().ok())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_version_picks_the_snapshot() {
        let dir = std::env::temp_dir().join(format!("rtlake-state-{}", std::process::id()));
        let s = StateStore::new(&dir);
        assert_eq!(s.load("t", 0, None).unwrap(), None);
        s.save("t", 0, 10, b"ten", Some(10)).unwrap();
        s.save("t", 0, 20, b"twenty", Some(20)).unwrap();
        s.save("t", 0, 30, b"thirty", Some(20)).unwrap();
        assert_eq!(s.load("t", 0, Some(20)).unwrap().unwrap(), b"twenty");
        assert_eq!(s.load("t", 0, Some(30)).unwrap().unwrap(), b"thirty");
        assert!(
            matches!(s.load("t", 0, Some(10)), Err(StateError::Missing { .. })),
            "only two are kept"
        );
        // A second output of the operator still at 30 (a Kafka sink whose transactions
        // aborted) keeps 30 while the first moves on.
        s.save("t", 0, 40, b"forty", Some(30)).unwrap();
        s.save("t", 0, 50, b"fifty", Some(30)).unwrap();
        assert_eq!(
            s.load("t", 0, Some(30)).unwrap().unwrap(),
            b"thirty",
            "the lagging output's snapshot stays"
        );
        s.save("t", 0, 60, b"sixty", Some(50)).unwrap();
        assert!(
            matches!(s.load("t", 0, Some(30)), Err(StateError::Missing { .. })),
            "and goes once no output needs it"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
