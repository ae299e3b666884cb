//! SQL over the lake: a DataFusion session with every table of the catalog (Delta or Iceberg)
//! registered by its name (`bronze.orders`, `_rejected`), the lake's views, and the output formats of
//! `rtlake sql`.
//!
//! - Views are kept with the lake, one SQL file each under `<lake>/_views/` (so every session,
//!   `rtlake serve` and `rtlake lake ddl` see them): `CREATE [OR REPLACE] VIEW ns.name AS ...`
//!   checks the query and stores it, `DROP VIEW [IF EXISTS] ns.name` removes it. A domain's
//!   built-in views ([`BuiltInViews`]) are there unless the lake holds a view of the same name.
//! - Time travel, as Delta's SQL writes it: `FROM bronze.orders VERSION AS OF 12` or
//!   `TIMESTAMP AS OF '2026-12-02 10:00:00'` (RFC 3339 or `YYYY-MM-DD HH:MM:SS`, UTC) reads the
//!   table as it was then.
#![warn(missing_docs)]

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};
use rtlake_lake::Lake;
use std::sync::Arc;

/// Errors of SQL.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The query is wrong (syntax, unknown table or column, type error). Shown as DataFusion
    /// words it, once: it is the message, not a cause to chain.
    #[error("{}", .0.strip_backtrace())]
    Query(datafusion::error::DataFusionError),
    /// The lake could not be read.
    #[error(transparent)]
    Lake(#[from] rtlake_lake::Error),
    /// A table could not be opened.
    #[error("table {table}: {cause}")]
    Table {
        /// The table.
        table: String,
        /// Why.
        cause: deltalake::DeltaTableError,
    },
    /// Output could not be written.
    #[error("output: {0}")]
    Output(String),
}

impl From<datafusion::error::DataFusionError> for Error {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        Self::Query(e)
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Views built into a session, `(name, query)`: a domain's (its tables' sums and joins), there
/// unless the lake holds a view of the same name.
pub type BuiltInViews = &'static [(&'static str, &'static str)];

/// A SQL session over the lake's tables.
pub struct LakeSql {
    ctx: SessionContext,
    tables: Vec<String>,
    lake: Lake,
    builtin: BuiltInViews,
}

pub mod ddl;
mod iceberg;
pub mod read_only;
mod travel;
pub mod views;

/// The provider of a Delta table's latest version.
async fn delta_provider(
    lake: &Lake,
    entry: &rtlake_lake::catalog::CatalogEntry,
    ctx: &SessionContext,
) -> Result<Arc<dyn datafusion::catalog::TableProvider>> {
    let table_err = |cause| Error::Table {
        table: entry.qualified(),
        cause,
    };
    let mut table = deltalake::DeltaTable::try_from_url_with_storage_options(
        entry.url.clone(),
        lake.storage_options().clone(),
    )
    .await
    .map_err(table_err)?;
    table.load().await.map_err(table_err)?;
    table
        .update_datafusion_session(&ctx.state())
        .map_err(table_err)?;
    Ok(table.table_provider().await?)
}

impl LakeSql {
    /// Registers every table found in the lake; memory is not bounded (a local `rtlake sql`).
    pub async fn open(lake: &Lake) -> Result<Self> {
        Self::open_in(lake, Arc::new(RuntimeEnv::default())).await
    }

    /// [`LakeSql::open`] on a runtime shared with other sessions: a server makes one
    /// [`bounded_runtime`] and opens every session in it, so the bound holds for all queries
    /// together, also across the sessions it reopens while older queries still run.
    pub async fn open_in(lake: &Lake, runtime: Arc<RuntimeEnv>) -> Result<Self> {
        Self::open_with(lake, runtime, &[]).await
    }

    /// [`LakeSql::open_in`] with a domain's built-in views.
    pub async fn open_with(
        lake: &Lake,
        runtime: Arc<RuntimeEnv>,
        builtin: BuiltInViews,
    ) -> Result<Self> {
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("datafusion", "public");
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        let catalog = ctx
            .catalog("datafusion")
            .ok_or_else(|| Error::Output("no default catalog".into()))?;
        let mut tables = Vec::new();
        for entry in rtlake_lake::catalog::list_tables(lake).await? {
            let provider = match entry.format {
                rtlake_lake::TableFormat::Delta => delta_provider(lake, &entry, &ctx).await?,
                rtlake_lake::TableFormat::Iceberg => iceberg::provider(lake, &entry, &ctx).await?,
            };
            let schema_name = if entry.namespace.is_empty() {
                "public"
            } else {
                entry.namespace.as_str()
            };
            let schema = match catalog.schema(schema_name) {
                Some(s) => s,
                None => {
                    let s = Arc::new(MemorySchemaProvider::new());
                    catalog.register_schema(schema_name, s.clone())?;
                    s
                }
            };
            schema.register_table(entry.name.clone(), provider)?;
            tables.push(entry.qualified());
        }
        for (name, sql) in views::all(lake, builtin).await? {
            let (ns, _) = name.split_once('.').unwrap_or(("public", &name));
            if catalog.schema(ns).is_none() {
                continue;
            }
            // A view file is whatever someone wrote into the bucket: only a read-only query is
            // a view, anything else (DDL such as CREATE EXTERNAL TABLE, COPY) is never run.
            if let Err(reason) = read_only::check(&sql) {
                tracing::warn!(view = %name, %reason, "view refused: a view is one read-only query; the file is left as it is");
                continue;
            }
            // A view over a table that does not exist yet (or no longer) is left out.
            match ctx.sql_with_options(&sql, read_only::options()).await {
                Ok(df) => {
                    ctx.register_table(name.as_str(), df.into_view())?;
                    tables.push(name);
                }
                Err(e) => tracing::debug!(view = %name, error = %e, "view not registered"),
            }
        }
        tables.sort();
        Ok(Self {
            ctx,
            tables,
            lake: lake.clone(),
            builtin,
        })
    }

    /// The registered tables, by qualified name.
    pub fn tables(&self) -> &[String] {
        &self.tables
    }

    /// The DataFusion session, for callers that need more than [`LakeSql::query`].
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Runs one statement and collects its result.
    pub async fn query(&self, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        if let Some(done) = views::statement(self, sql).await? {
            return Ok(done);
        }
        let sql = travel::resolve(self, sql).await?;
        let df = self.ctx.sql(&sql).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await?;
        Ok((schema, batches))
    }
}

/// A runtime whose memory pool holds at most `bytes` for all the queries run in it: a sort,
/// join or aggregation past it fails with DataFusion's "Resources exhausted" error instead of
/// growing the process until the kernel kills it. Sorts may spill to the temporary directory.
pub fn bounded_runtime(bytes: usize) -> Result<Arc<RuntimeEnv>> {
    Ok(RuntimeEnvBuilder::new()
        .with_memory_limit(bytes, 1.0)
        .build_arc()?)
}

/// How `rtlake sql` prints results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// An aligned table.
    Table,
    /// CSV with a header line.
    Csv,
    /// JSON Lines, one object per row.
    Json,
}

/// Writes a result in a format.
pub fn write(
    out: &mut dyn std::io::Write,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    format: Format,
) -> Result<()> {
    let e = |x: arrow::error::ArrowError| Error::Output(x.to_string());
    match format {
        Format::Table => {
            let shown = if batches.is_empty() {
                vec![RecordBatch::new_empty(schema.clone())]
            } else {
                batches.to_vec()
            };
            let t = arrow::util::pretty::pretty_format_batches(&shown).map_err(e)?;
            writeln!(out, "{t}").map_err(|x| Error::Output(x.to_string()))?;
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            writeln!(out, "{rows} row{}", if rows == 1 { "" } else { "s" })
                .map_err(|x| Error::Output(x.to_string()))?;
        }
        Format::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut *out);
            if batches.is_empty() {
                w.write(&RecordBatch::new_empty(schema.clone()))
                    .map_err(e)?;
            }
            for b in batches {
                w.write(b).map_err(e)?;
            }
        }
        Format::Json => {
            let mut w = arrow::json::LineDelimitedWriter::new(&mut *out);
            for b in batches {
                w.write(b).map_err(e)?;
            }
            w.finish().map_err(e)?;
        }
    }
    Ok(())
}
