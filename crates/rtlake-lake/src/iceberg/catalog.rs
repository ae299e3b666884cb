//! Where an Iceberg table's current metadata is recorded: the catalog.
//!
//! The lake's default needs no server: a *file catalog* under the table, the layout Iceberg's
//! Java `HadoopCatalog` uses and Spark, PyIceberg (`StaticTable`) and DuckDB read. Version `N`
//! of the table is `metadata/vN.metadata.json`; `metadata/version-hint.text` names the newest.
//! A commit writes `v(N+1).metadata.json` with a create-only put (a link on a local disk, an
//! `If-None-Match: *` put on S3), so of two writers that read version `N` exactly one commits
//! and the other is told so and tries again on top of the winner. The hint is written after;
//! a reader that finds it behind looks for later versions, so a crash between the two loses
//! nothing.
//!
//! A lake can register its Iceberg tables in a REST catalog instead (`lake.catalog = "http://..."`,
//! [`super::rest`]): the files stay under the lake, the catalog holds the metadata.

use super::metadata::{Change, TableMetadata};
use super::rest::RestCatalog;
use crate::{Error, Lake, Result};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use rtlake_core::schema::TableName;
use std::sync::Arc;
use url::Url;

/// A table's metadata as a catalog holds it.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The metadata.
    pub metadata: TableMetadata,
    /// The metadata file's location (`file:///.../metadata/v3.metadata.json`).
    pub location: String,
    /// The catalog's version number (the file catalog's `N`; a REST catalog's file prefix).
    pub version: u64,
}

/// Another writer committed first: reload and try again on top of its commit.
#[derive(Debug)]
pub struct Conflict;

/// The catalog of an Iceberg lake: the file catalog under each table, or a REST catalog.
#[derive(Clone)]
pub enum Catalog {
    /// `metadata/vN.metadata.json` under each table of the lake.
    Files(Lake),
    /// An Iceberg REST catalog; the tables' files are still under the lake.
    Rest(Arc<RestCatalog>),
}

const HINT: &str = "metadata/version-hint.text";

fn version_path(v: u64) -> Path {
    Path::from(format!("metadata/v{v}.metadata.json"))
}

impl Catalog {
    /// The catalog `lake.catalog` names for `lake`'s Iceberg tables.
    pub fn of(lake: &Lake) -> Self {
        match lake.rest_catalog() {
            Some(r) => Self::Rest(r.clone()),
            None => Self::Files(lake.clone()),
        }
    }

    /// Loads a table's current metadata (`None`: no such table).
    pub async fn load(&self, table: TableName) -> Result<Option<Loaded>> {
        match self {
            Self::Files(lake) => {
                self.load_at_url(&lake.table_url(table), &table.to_string())
                    .await
            }
            Self::Rest(r) => r.load(&r.ident(&table.to_string())).await,
        }
    }

    /// Loads the table `qualified` (`bronze.stations`) whose files are under `url`.
    pub async fn load_at_url(&self, url: &Url, qualified: &str) -> Result<Option<Loaded>> {
        match self {
            Self::Files(lake) => load_at(lake.store_at(url)?.as_ref(), url, qualified).await,
            Self::Rest(r) => r.load(&r.ident(qualified)).await,
        }
    }

    /// Records a new table; [`Conflict`] if another writer created it first. The returned
    /// metadata is the one to write with (a REST catalog assigns the field ids).
    pub async fn create(
        &self,
        table: TableName,
        metadata: TableMetadata,
    ) -> Result<std::result::Result<Loaded, Conflict>> {
        match self {
            Self::Files(lake) => {
                let url = lake.table_url(table);
                let store = lake.store_at(&url)?;
                put_version(store.as_ref(), &url, &table.to_string(), 1, metadata).await
            }
            Self::Rest(r) => r.create(&r.ident(&table.to_string()), &metadata).await,
        }
    }

    /// Commits `change` on top of `base`; [`Conflict`] if the table moved since `base` was
    /// loaded (nothing was written then), or if a REST catalog's answer was lost (reload and
    /// look for the commit).
    pub async fn commit(
        &self,
        table: TableName,
        base: &Loaded,
        change: &Change,
    ) -> Result<std::result::Result<Loaded, Conflict>> {
        let url = match self {
            Self::Files(lake) => lake.table_url(table),
            Self::Rest(_) => Url::parse("memory:///").expect("a URL"),
        };
        self.commit_at_url(&url, &table.to_string(), base, change)
            .await
    }

    /// [`Catalog::commit`] for the table `qualified` whose files are under `url`.
    pub async fn commit_at_url(
        &self,
        url: &Url,
        qualified: &str,
        base: &Loaded,
        change: &Change,
    ) -> Result<std::result::Result<Loaded, Conflict>> {
        match self {
            Self::Files(lake) => {
                let store = lake.store_at(url)?;
                let next = base.metadata.apply(change, Some(&base.location));
                put_version(store.as_ref(), url, qualified, base.version + 1, next).await
            }
            Self::Rest(r) => r.commit(&r.ident(qualified), base, change).await,
        }
    }
}

fn io(table: &str, e: impl std::fmt::Display) -> Error {
    Error::Iceberg {
        table: table.to_string(),
        reason: e.to_string(),
    }
}

/// Loads the newest metadata of the table at `url` from its file catalog.
pub async fn load_at(store: &dyn ObjectStore, url: &Url, table: &str) -> Result<Option<Loaded>> {
    let hinted = match store.get(&Path::from(HINT)).await {
        Ok(r) => {
            let text = r.bytes().await.map_err(|e| io(table, e))?;
            std::str::from_utf8(&text)
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
        }
        Err(object_store::Error::NotFound { .. }) => None,
        Err(e) => return Err(io(table, e)),
    };
    let mut version = match hinted {
        Some(v) => v,
        // No hint (a crash before the first one, or another tool's layout): the largest vN.
        None => {
            use futures::TryStreamExt;
            let files: Vec<_> = store
                .list(Some(&Path::from("metadata")))
                .try_collect()
                .await
                .map_err(|e| io(table, e))?;
            match files
                .iter()
                .filter_map(|m| {
                    m.location
                        .filename()?
                        .strip_prefix('v')?
                        .strip_suffix(".metadata.json")?
                        .parse::<u64>()
                        .ok()
                })
                .max()
            {
                Some(v) => v,
                None => return Ok(None),
            }
        }
    };
    // The hint is written after the version: a later one may exist.
    loop {
        match store.head(&version_path(version + 1)).await {
            Ok(_) => version += 1,
            Err(object_store::Error::NotFound { .. }) => break,
            Err(e) => return Err(io(table, e)),
        }
    }
    let bytes = store
        .get(&version_path(version))
        .await
        .map_err(|e| io(table, e))?
        .bytes()
        .await
        .map_err(|e| io(table, e))?;
    let metadata: TableMetadata = serde_json::from_slice(&bytes)
        .map_err(|e| io(table, format!("v{version}.metadata.json: {e}")))?;
    Ok(Some(Loaded {
        metadata,
        location: location_of(url, table, version)?,
        version,
    }))
}

/// The full location of version `version`'s metadata file.
fn location_of(url: &Url, table: &str, version: u64) -> Result<String> {
    Ok(url
        .join(version_path(version).as_ref())
        .map_err(|e| io(table, e))?
        .to_string())
}

async fn put_version(
    store: &dyn ObjectStore,
    url: &Url,
    table: &str,
    version: u64,
    metadata: TableMetadata,
) -> Result<std::result::Result<Loaded, Conflict>> {
    let body = serde_json::to_vec_pretty(&metadata).map_err(|e| io(table, e))?;
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    match store
        .put_opts(&version_path(version), PutPayload::from(body), opts)
        .await
    {
        Ok(_) => {}
        Err(object_store::Error::AlreadyExists { .. }) => return Ok(Err(Conflict)),
        Err(e) => return Err(io(table, e)),
    }
    // Readers find later versions without it; a failure here is only logged.
    if let Err(e) = store
        .put(&Path::from(HINT), PutPayload::from(version.to_string()))
        .await
    {
        tracing::warn!(table, version, error = %e, "could not update version-hint.text");
    }
    Ok(Ok(Loaded {
        metadata,
        location: location_of(url, table, version)?,
        version,
    }))
}
