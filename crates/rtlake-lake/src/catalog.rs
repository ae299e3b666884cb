//! The catalog: the Delta tables found under the lake root, by SQL name.
//!
//! A table `ns.name` lives at `<root>/<ns>/<name>`; a top-level table (`_rejected`) at
//! `<root>/<name>`. A folder is a Delta table when it holds a `_delta_log`, an Iceberg table
//! when it holds a `metadata` folder (its file catalog).

use crate::{Error, Lake, Result, TableFormat};
use object_store::path::Path;
use url::Url;

/// A table found in the lake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogEntry {
    /// Its SQL schema (`bronze`), or empty for a top-level table.
    pub namespace: String,
    /// Its name within the schema.
    pub name: String,
    /// Where it lives.
    pub url: Url,
    /// Its format.
    pub format: TableFormat,
}

impl CatalogEntry {
    /// `ns.name`, or `name` for a top-level table.
    pub fn qualified(&self) -> String {
        if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}.{}", self.namespace, self.name)
        }
    }
}

/// Lists the lake's tables, sorted by name.
pub async fn list_tables(lake: &Lake) -> Result<Vec<CatalogEntry>> {
    let root = lake.root();
    let loc = |reason: String| Error::Location {
        uri: root.to_string(),
        reason,
    };
    let store = lake.store_at(root)?;
    // The folders directly under `prefix`, sorted.
    let folders = async |prefix: Option<&Path>| -> Result<Vec<String>> {
        let listing = store
            .list_with_delimiter(prefix)
            .await
            .map_err(|e| loc(e.to_string()))?;
        let mut names: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    };
    let join = |rel: &str| {
        root.join(&format!("{rel}/"))
            .map_err(|e| loc(format!("{rel}: {e}")))
    };
    let mut out = Vec::new();
    for ns in folders(None).await? {
        let ns_path = Path::from(ns.as_str());
        let children = folders(Some(&ns_path)).await?;
        if let Some(format) = format_of(&children) {
            out.push(CatalogEntry {
                namespace: String::new(),
                url: join(&ns)?,
                name: ns,
                format,
            });
            continue;
        }
        for name in children {
            let table = ns_path.clone().join(name.as_str());
            if let Some(format) = format_of(&folders(Some(&table)).await?) {
                out.push(CatalogEntry {
                    namespace: ns.clone(),
                    url: join(&format!("{ns}/{name}"))?,
                    name,
                    format,
                });
            }
        }
    }
    Ok(out)
}

/// The format of a folder holding `children`, if it is a table.
fn format_of(children: &[String]) -> Option<TableFormat> {
    if children.iter().any(|c| c == "_delta_log") {
        Some(TableFormat::Delta)
    } else if children.iter().any(|c| c == "metadata") {
        Some(TableFormat::Iceberg)
    } else {
        None
    }
}

/// A table's progress, for status pages.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TableStatus {
    /// The table, `ns.name`.
    pub table: String,
    /// Its latest version (Delta's version; an Iceberg table's metadata version).
    pub version: Option<u64>,
    /// When its latest commit was written, ms since the Unix epoch (local lakes).
    pub last_commit_ms: Option<i64>,
    /// The txn version of each app id asked for (`None`: never written).
    pub txns: std::collections::BTreeMap<String, Option<i64>>,
}

/// Reads a table's latest version, last commit time and the txn versions of `app_ids`.
pub async fn table_status(
    lake: &Lake,
    entry: &CatalogEntry,
    app_ids: &[String],
) -> Result<TableStatus> {
    if entry.format == TableFormat::Iceberg {
        let loaded = crate::iceberg::Catalog::of(lake)
            .load_at_url(&entry.url, &entry.qualified())
            .await?;
        let offsets = loaded
            .as_ref()
            .map(|t| t.metadata.offsets())
            .unwrap_or_default();
        return Ok(TableStatus {
            table: entry.qualified(),
            version: loaded.as_ref().map(|t| t.version),
            last_commit_ms: loaded
                .as_ref()
                .and_then(|t| t.metadata.current_snapshot().map(|s| s.timestamp_ms)),
            txns: app_ids
                .iter()
                .map(|id| (id.clone(), offsets.get(id).copied()))
                .collect(),
        });
    }
    let de = |cause| Error::Delta {
        table: entry.qualified(),
        cause: Box::new(cause),
    };
    let table = deltalake::DeltaTable::try_from_url_with_storage_options(
        entry.url.clone(),
        lake.storage_options().clone(),
    )
    .await
    .map_err(de)?;
    let mut txns = std::collections::BTreeMap::new();
    let version = table.version();
    if version.is_some() {
        let snapshot = table.snapshot().map_err(de)?;
        let store = table.log_store();
        for id in app_ids {
            txns.insert(
                id.clone(),
                snapshot
                    .transaction_version(store.as_ref(), id)
                    .await
                    .map_err(de)?,
            );
        }
    }
    let last_commit_ms = version.and_then(|v| {
        let log = entry
            .url
            .to_file_path()
            .ok()?
            .join("_delta_log")
            .join(format!("{v:020}.json"));
        let modified = std::fs::metadata(log).ok()?.modified().ok()?;
        Some(
            modified
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?
                .as_millis() as i64,
        )
    });
    Ok(TableStatus {
        table: entry.qualified(),
        version,
        last_commit_ms,
        txns,
    })
}
