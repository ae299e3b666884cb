//! Keyed state snapshots, one file per (table, partition, version).
//!
//! A snapshot is written before the commit that carries its version (the next offset) as the
//! table's txn, so the table decides which snapshot is current: after a crash, the partition
//! resumes from the snapshot whose version the table holds, whether or not a newer one was
//! written. The previous snapshot is kept; older ones are removed.

use crate::checkpoint::Folder;

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing a snapshot failed.
    #[error("state: {0}")]
    Store(String),
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
        dir: String,
    },
}

impl From<crate::Error> for StateError {
    fn from(e: crate::Error) -> Self {
        Self::Store(e.to_string())
    }
}

/// Where a pipeline keeps its state snapshots (a checkpoint folder, local or S3).
#[derive(Clone, Debug)]
pub struct StateStore {
    root: Folder,
}

fn snapshot(version: i64) -> String {
    format!("{version:020}.json")
}

impl StateStore {
    /// A store under `root`.
    pub fn new(root: Folder) -> Self {
        Self { root }
    }

    fn dir(&self, table: &str, partition: i32) -> Folder {
        self.root.child(table).child(&partition.to_string())
    }

    /// Writes the snapshot of `version` atomically and drops all but the two newest, and
    /// never one at or after `keep_from`: the oldest version an output fed by this operator
    /// still holds (two stages of one operator kind, such as silver and a Kafka sink of
    /// `changes`, share the folder, and a lagging one restores from its own version).
    pub async fn save(
        &self,
        table: &str,
        partition: i32,
        version: i64,
        bytes: &[u8],
        keep_from: Option<i64>,
    ) -> Result<(), StateError> {
        let dir = self.dir(table, partition);
        dir.put(&snapshot(version), bytes.to_vec()).await?;
        let mut versions = dir.numbered().await?;
        versions.sort_unstable();
        // Keep the snapshot the table holds now, and the new one that is about to be committed.
        for old in versions
            .iter()
            .rev()
            .skip(2)
            .filter(|v| keep_from.is_some_and(|k| **v < k))
        {
            let _ = dir.delete(&snapshot(*old)).await;
        }
        Ok(())
    }

    /// Reads the snapshot of `version`; `None` means the partition has no state yet.
    pub async fn load(
        &self,
        table: &str,
        partition: i32,
        version: Option<i64>,
    ) -> Result<Option<Vec<u8>>, StateError> {
        let Some(version) = version else {
            return Ok(None);
        };
        let dir = self.dir(table, partition);
        match dir.get(&snapshot(version)).await? {
            Some(b) => Ok(Some(b.to_vec())),
            None => Err(StateError::Missing {
                table: table.into(),
                partition,
                version,
                dir: dir.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_table_version_picks_the_snapshot() {
        let dir = std::env::temp_dir().join(format!("rtlake-state-{}", std::process::id()));
        let s = StateStore::new(Folder::local(&dir).unwrap());
        assert_eq!(s.load("t", 0, None).await.unwrap(), None);
        s.save("t", 0, 10, b"ten", Some(10)).await.unwrap();
        s.save("t", 0, 20, b"twenty", Some(20)).await.unwrap();
        s.save("t", 0, 30, b"thirty", Some(20)).await.unwrap();
        assert_eq!(s.load("t", 0, Some(20)).await.unwrap().unwrap(), b"twenty");
        assert_eq!(s.load("t", 0, Some(30)).await.unwrap().unwrap(), b"thirty");
        assert!(
            matches!(
                s.load("t", 0, Some(10)).await,
                Err(StateError::Missing { .. })
            ),
            "only two are kept"
        );
        // A second output of the operator still at 30 (a Kafka sink whose transactions
        // aborted) keeps 30 while the first moves on.
        s.save("t", 0, 40, b"forty", Some(30)).await.unwrap();
        s.save("t", 0, 50, b"fifty", Some(30)).await.unwrap();
        assert_eq!(
            s.load("t", 0, Some(30)).await.unwrap().unwrap(),
            b"thirty",
            "the lagging output's snapshot stays"
        );
        s.save("t", 0, 60, b"sixty", Some(50)).await.unwrap();
        assert!(
            matches!(
                s.load("t", 0, Some(30)).await,
                Err(StateError::Missing { .. })
            ),
            "and goes once no output needs it"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
