//! A table sink of either format: what the pipelines write through.
//!
//! A new table is made in its sink's format if the pipeline names one, else in the lake's
//! (`lake.format`); a table that exists is written in the format it has, whatever the lake's
//! setting, so changing the setting never splits a table (a sink that asks for the other
//! format is refused, naming both).

use crate::iceberg::{self, IcebergSink};
use crate::sink::{self, DeltaSink};
use crate::{Lake, Result, TableFormat};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use rtlake_core::schema::TableName;
use std::collections::BTreeMap;

/// One table written by one pipeline, exactly once, in its format.
pub enum TableSink {
    /// A Delta table (offsets in `txn` actions).
    Delta(DeltaSink),
    /// An Iceberg table (offsets in the snapshot summary).
    Iceberg(Box<IcebergSink>),
}

/// The format of the table at `name`: the one it has, or the lake's for a new table.
pub async fn format_of(lake: &Lake, name: TableName) -> Result<TableFormat> {
    Ok(existing_format(lake, name).await?.unwrap_or(lake.format()))
}

/// The format of the table at `name`, if there is one.
pub async fn existing_format(lake: &Lake, name: TableName) -> Result<Option<TableFormat>> {
    let store = lake.store_at(&lake.table_url(name))?;
    let has = async |p: &str| {
        store
            .list_with_delimiter(Some(&object_store::path::Path::from(p)))
            .await
            .is_ok_and(|l| !l.objects.is_empty() || !l.common_prefixes.is_empty())
    };
    Ok(if has("_delta_log").await {
        Some(TableFormat::Delta)
    } else if has("metadata").await {
        Some(TableFormat::Iceberg)
    } else {
        None
    })
}

impl TableSink {
    /// Opens the table (creating it in the lake's format if new), partitioned by `partitions`.
    pub async fn open(
        lake: &Lake,
        name: TableName,
        schema: SchemaRef,
        partitions: &[&str],
    ) -> Result<Self> {
        Self::open_as(lake, name, schema, partitions, None).await
    }

    /// [`TableSink::open`], a new table made in `format` if given (a sink's own format); an
    /// existing table of the other format is refused.
    pub async fn open_as(
        lake: &Lake,
        name: TableName,
        schema: SchemaRef,
        partitions: &[&str],
        format: Option<TableFormat>,
    ) -> Result<Self> {
        let format = match (existing_format(lake, name).await?, format) {
            (Some(has), Some(want)) if has != want => {
                return Err(crate::Error::Schema {
                    table: name.to_string(),
                    reason: format!(
                        "it is a {has} table and its sink asks for {want}: a table keeps its format (name another table, or drop the sink's format)"
                    ),
                });
            }
            (Some(has), _) => has,
            (None, Some(want)) => want,
            (None, None) => lake.format(),
        };
        Ok(match format {
            TableFormat::Delta => {
                Self::Delta(DeltaSink::open(lake, name, schema, partitions).await?)
            }
            TableFormat::Iceberg => Self::Iceberg(Box::new(
                IcebergSink::open(lake, name, schema, partitions).await?,
            )),
        })
    }

    /// The table's name.
    pub fn name(&self) -> TableName {
        match self {
            Self::Delta(d) => d.name(),
            Self::Iceberg(i) => i.name(),
        }
    }

    /// The Arrow schema batches must have.
    pub fn schema(&self) -> &SchemaRef {
        match self {
            Self::Delta(d) => d.schema(),
            Self::Iceberg(i) => i.schema(),
        }
    }

    /// The format it is written in.
    pub fn format(&self) -> TableFormat {
        match self {
            Self::Delta(_) => TableFormat::Delta,
            Self::Iceberg(_) => TableFormat::Iceberg,
        }
    }

    /// Reloads the table and returns the offsets of `app_ids` (absent: never written).
    pub async fn refresh_versions(
        &mut self,
        app_ids: &[String],
    ) -> Result<BTreeMap<String, Option<i64>>> {
        match self {
            Self::Delta(d) => d.refresh_versions(app_ids).await,
            Self::Iceberg(i) => i.refresh_versions(app_ids).await,
        }
    }

    /// The offset this sink last saw for an app id.
    pub fn known_version(&self, app_id: &str) -> Option<i64> {
        match self {
            Self::Delta(d) => d.known_version(app_id),
            Self::Iceberg(i) => i.known_version(app_id),
        }
    }

    /// Waits for the work a commit left running beside it (a Delta log checkpoint): at the
    /// end of a run.
    pub async fn finish(&mut self) {
        match self {
            Self::Delta(d) => d.finish().await,
            Self::Iceberg(_) => {}
        }
    }

    /// Records `newest_event_ms` (see [`crate::NEWEST_EVENT_KEY`]) in the next commit or upsert.
    pub fn stamp(&mut self, newest_event_ms: Option<i64>) {
        match self {
            Self::Delta(d) => d.stamp(newest_event_ms),
            Self::Iceberg(i) => i.stamp(newest_event_ms),
        }
    }

    /// Commits `batches` with the offsets `txns` in one commit (see each format's sink); returns
    /// the table version (Delta) or snapshot sequence number (Iceberg).
    pub async fn commit(
        &mut self,
        batches: Vec<RecordBatch>,
        txns: &BTreeMap<String, i64>,
    ) -> Result<u64> {
        match self {
            Self::Delta(d) => d.commit(batches, txns).await,
            Self::Iceberg(i) => i.commit(batches, txns).await,
        }
    }
}

impl TableSink {
    /// Merges `batch` into the table by key with the offsets `txns` in one commit
    /// ([`DeltaSink::upsert`], [`IcebergSink::upsert`]).
    pub async fn upsert(
        &mut self,
        batch: RecordBatch,
        deletes: &arrow::array::BooleanArray,
        spec: &crate::upsert::Upsert,
        txns: &BTreeMap<String, i64>,
    ) -> Result<crate::upsert::UpsertReport> {
        match self {
            Self::Delta(d) => d.upsert(batch, deletes, spec, txns).await,
            Self::Iceberg(i) => i.upsert(batch, deletes, spec, txns).await,
        }
    }
}

/// Reads the offsets of `app_ids` from the table, whatever its format, without writing.
pub async fn read_versions(
    lake: &Lake,
    name: TableName,
    app_ids: &[String],
) -> Result<BTreeMap<String, Option<i64>>> {
    match format_of(lake, name).await? {
        TableFormat::Delta => sink::read_versions(lake, name, app_ids).await,
        TableFormat::Iceberg => iceberg::sink::read_versions(lake, name, app_ids).await,
    }
}
