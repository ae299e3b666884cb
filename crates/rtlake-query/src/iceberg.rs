//! Iceberg tables in a SQL session: the current snapshot's data files read as one Parquet
//! table with the schema of the table's metadata (files written before a column was added read
//! it as null); an earlier snapshot (time travel) with the schema it was written with.

use crate::{Error, Result};
use datafusion::catalog::TableProvider;
use datafusion::datasource::empty::EmptyTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::SessionContext;
use rtlake_lake::Lake;
use rtlake_lake::catalog::CatalogEntry;
use rtlake_lake::iceberg::read::TableFiles;
use std::sync::Arc;

/// The provider of an Iceberg table's current snapshot.
pub async fn provider(
    lake: &Lake,
    entry: &CatalogEntry,
    ctx: &SessionContext,
) -> Result<Arc<dyn TableProvider>> {
    provider_at(lake, entry, ctx, None, None).await
}

/// The provider of snapshot `snapshot_id`, or of the snapshot current at `time_ms`, or of the
/// current one; an unknown snapshot or a time before the first is an error naming the table.
pub async fn provider_at(
    lake: &Lake,
    entry: &CatalogEntry,
    ctx: &SessionContext,
    snapshot_id: Option<i64>,
    time_ms: Option<i64>,
) -> Result<Arc<dyn TableProvider>> {
    let name = entry.qualified();
    let lake_err = |reason: String| {
        Error::Lake(rtlake_lake::Error::Iceberg {
            table: name.clone(),
            reason,
        })
    };
    let t = TableFiles::open(lake, &entry.url, &name)
        .await?
        .ok_or_else(|| lake_err("not in its catalog".into()))?;
    let md = &t.table.metadata;
    let snapshot = match (snapshot_id, time_ms) {
        (Some(id), _) => Some(md.snapshot(id).ok_or_else(|| {
            lake_err(format!(
                "no snapshot {id} (an Iceberg table's VERSION AS OF takes a snapshot id, as Spark and Trino do)"
            ))
        })?),
        (None, Some(ms)) => {
            let id = md
                .snapshot_log
                .iter()
                .filter(|l| l.timestamp_ms <= ms)
                .last()
                .map(|l| l.snapshot_id)
                .ok_or_else(|| lake_err(format!("no snapshot at or before {ms} ms")))?;
            Some(md.snapshot(id).ok_or_else(|| {
                lake_err(format!("snapshot {id} of that time has expired"))
            })?)
        }
        (None, None) => None,
    };
    // An earlier snapshot reads with the schema it was written with (as Spark and Trino do):
    // a column added since is not there.
    let schema = snapshot
        .and_then(|s| s.schema_id)
        .and_then(|id| md.schemas.iter().find(|s| s.schema_id == id))
        .or_else(|| md.current_schema())
        .and_then(rtlake_lake::iceberg::schema::Schema::to_arrow)
        .ok_or_else(|| lake_err("a column of a type rtlake does not read".into()))?;
    let files = t.data_files(snapshot).await?;
    if files.is_empty() {
        return Ok(Arc::new(EmptyTable::new(schema)));
    }
    register_store(lake, entry, ctx)?;
    let urls = files
        .iter()
        .map(|f| ListingTableUrl::parse(&f.path))
        .collect::<datafusion::error::Result<Vec<_>>>()?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()));
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(schema);
    Ok(Arc::new(ListingTable::try_new(config)?))
}

/// Makes the lake's object store (an S3 bucket) known to the session; local files need none.
fn register_store(lake: &Lake, entry: &CatalogEntry, ctx: &SessionContext) -> Result<()> {
    let url = &entry.url;
    if url.scheme() == "file" {
        return Ok(());
    }
    let mut bucket = url.clone();
    bucket.set_path("/");
    let store = lake.store_at(&bucket)?;
    ctx.register_object_store(&bucket, store);
    Ok(())
}
