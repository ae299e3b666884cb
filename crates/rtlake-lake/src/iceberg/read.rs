//! Reading an Iceberg table's file list: the data files of a snapshot, through its manifest
//! list and manifests.

use super::catalog::{Catalog, Loaded};
use super::manifest::{self, DataFile, Entry, ManifestFile, Status};
use super::metadata::Snapshot;
use crate::{Error, Lake, Result};
use object_store::ObjectStoreExt;
use url::Url;

fn err(table: &str, reason: impl std::fmt::Display) -> Error {
    Error::Iceberg {
        table: table.to_string(),
        reason: reason.to_string(),
    }
}

/// A table opened for reading: its metadata and where its files are.
pub struct TableFiles {
    /// The table's metadata as its catalog holds it.
    pub table: Loaded,
    /// The table's location.
    pub url: Url,
    name: String,
    store: std::sync::Arc<dyn object_store::ObjectStore>,
}

impl TableFiles {
    /// Opens the table at `url` (`None`: no table there).
    pub async fn open(lake: &Lake, url: &Url, name: &str) -> Result<Option<Self>> {
        let store = lake.store_at(url)?;
        let Some(table) = Catalog::of(lake).load_at_url(url, name).await? else {
            return Ok(None);
        };
        Ok(Some(Self {
            table,
            url: url.clone(),
            name: name.to_string(),
            store,
        }))
    }

    /// Reads a file of the table by its full location.
    pub async fn read(&self, location: &str) -> Result<bytes::Bytes> {
        read_file(self.store.as_ref(), &self.url, &self.name, location).await
    }

    /// The live entries of `snapshot` (with their sequence numbers), and its manifests.
    pub async fn entries(&self, snapshot: &Snapshot) -> Result<(Vec<Entry>, Vec<ManifestFile>)> {
        snapshot_entries(self.store.as_ref(), &self.url, &self.name, snapshot).await
    }

    /// The data files of `snapshot` (the current one if `None`; none for an empty table).
    pub async fn data_files(&self, snapshot: Option<&Snapshot>) -> Result<Vec<DataFile>> {
        let Some(s) = snapshot.or_else(|| self.table.metadata.current_snapshot()) else {
            return Ok(Vec::new());
        };
        let list = self.read(&s.manifest_list).await?;
        let mut out = Vec::new();
        for m in manifest::read_manifest_list(&list).map_err(|e| err(&self.name, e))? {
            let bytes = self.read(&m.path).await?;
            for e in manifest::read_manifest(&bytes, &m).map_err(|e| err(&self.name, e))? {
                if e.status != Status::Deleted {
                    out.push(e.file);
                }
            }
        }
        Ok(out)
    }
}

/// The live entries of `snapshot` of the table `name` at `url`, and its manifests.
pub async fn snapshot_entries(
    store: &dyn object_store::ObjectStore,
    url: &Url,
    name: &str,
    snapshot: &Snapshot,
) -> Result<(Vec<Entry>, Vec<ManifestFile>)> {
    let list = read_file(store, url, name, &snapshot.manifest_list).await?;
    let manifests = manifest::read_manifest_list(&list).map_err(|e| err(name, e))?;
    let mut out = Vec::new();
    for m in &manifests {
        let bytes = read_file(store, url, name, &m.path).await?;
        for e in manifest::read_manifest(&bytes, m).map_err(|e| err(name, e))? {
            if e.status != Status::Deleted {
                out.push(e);
            }
        }
    }
    Ok((out, manifests))
}

/// Reads a file of the table `name` at `url` by its full location (manifests, lists and data
/// files are named by full location in the metadata).
pub async fn read_file(
    store: &dyn object_store::ObjectStore,
    url: &Url,
    name: &str,
    location: &str,
) -> Result<bytes::Bytes> {
    let rel = super::sink::relative(url, location).ok_or_else(|| {
        err(
            name,
            format!("{location} is not under the table's location {url}"),
        )
    })?;
    store
        .get(&rel)
        .await
        .map_err(|e| err(name, e))?
        .bytes()
        .await
        .map_err(|e| err(name, e))
}
