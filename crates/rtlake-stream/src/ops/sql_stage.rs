//! SQL stages: queries over an epoch's rows (the table `input`) and the static tables, run by
//! DataFusion, one after another when a stage reads another.
//!
//! Every output row must come from one input message, so that each sink can skip the rows it
//! already holds after a crash: the engine keeps `_partition` and `_offset` through every
//! projection of the query (adding them where the query leaves them out, and dropping the added
//! ones from the stage's rows). A query that groups rows (GROUP BY, DISTINCT) loses them and is
//! refused at start: a window stage aggregates.

use crate::config::StaticTable;
use crate::{Error, Kind, Result};
use arrow::array::{Array, Int32Array, Int64Array, RecordBatch};
use arrow::datatypes::SchemaRef;
use datafusion::common::Column;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{Expr, LogicalPlan, Projection, ScalarUDF};
use datafusion::prelude::{CsvReadOptions, JsonReadOptions, SessionConfig, SessionContext};
use std::sync::Arc;

/// The columns that say which message a row came from.
const ORIGIN: [&str; 2] = ["_partition", "_offset"];

/// Static tables, loaded once and shared by every stage, and the SQL functions a domain crate
/// registered.
#[derive(Clone, Default)]
pub struct StaticTables {
    tables: Vec<(String, Arc<MemTable>)>,
    udfs: Vec<ScalarUDF>,
}

impl StaticTables {
    /// Loads the configured tables (CSV with a header row, or JSON Lines).
    pub async fn load(tables: &[StaticTable]) -> Result<Self> {
        let ctx = SessionContext::new();
        let mut out = Vec::new();
        for t in tables {
            let err = |e: datafusion::error::DataFusionError| {
                Error::new(
                    Kind::Config,
                    format!(
                        "static table {} ({}): {}",
                        t.name,
                        t.path,
                        e.strip_backtrace()
                    ),
                )
            };
            if !std::path::Path::new(&t.path).is_file() {
                return Err(Error::new(
                    Kind::Config,
                    format!("static table {}: no file {}", t.name, t.path),
                ));
            }
            let df = if t.path.ends_with(".csv") {
                ctx.read_csv(t.path.as_str(), CsvReadOptions::new()).await
            } else {
                let ext = t.path.rsplit('.').next().unwrap_or("json");
                ctx.read_json(
                    t.path.as_str(),
                    JsonReadOptions::default().file_extension(ext),
                )
                .await
            }
            .map_err(err)?;
            let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
            let batches = df.collect().await.map_err(err)?;
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            let mem = MemTable::try_new(schema, vec![batches]).map_err(err)?;
            tracing::info!(table = %t.name, path = %t.path, rows, "static table loaded");
            out.push((t.name.clone(), Arc::new(mem)));
        }
        Ok(Self {
            tables: out,
            udfs: Vec::new(),
        })
    }

    /// The same, with SQL functions `udfs` in every query.
    pub fn with_udfs(mut self, udfs: &[ScalarUDF]) -> Self {
        self.udfs = udfs.to_vec();
        self
    }
}

/// One or more queries, each over the previous one's rows.
pub struct SqlChain {
    ctx: SessionContext,
    steps: Vec<(String, String)>,
    schema: SchemaRef,
    handle: tokio::runtime::Handle,
}

impl SqlChain {
    /// Plans `steps` (stage name, query) over rows of `input`, in order; a query that fails to
    /// plan, or loses the rows' origin, is a configuration error naming its stage.
    pub async fn new(
        steps: Vec<(String, String)>,
        input: SchemaRef,
        tables: &StaticTables,
    ) -> Result<Self> {
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
        for (name, t) in &tables.tables {
            ctx.register_table(name.as_str(), t.clone())
                .map_err(|e| Error::caused(Kind::Config, format!("static table {name}"), e))?;
        }
        for f in &tables.udfs {
            ctx.register_udf(f.clone());
        }
        let mut chain = Self {
            ctx,
            steps,
            schema: input.clone(),
            handle: tokio::runtime::Handle::current(),
        };
        // Planning over no rows: whatever fails here is the query's fault, not the data's.
        let (out, _) = chain
            .run(RecordBatch::new_empty(input))
            .await
            .map_err(super::config)?;
        chain.schema = out.schema();
        Ok(chain)
    }

    /// The schema of the last query's rows.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Runs the queries over `batch` from a thread outside the runtime (an operator's).
    pub fn run_blocking(&self, batch: RecordBatch) -> Result<(RecordBatch, Vec<(i32, i64)>)> {
        let _guard = self.handle.enter();
        futures::executor::block_on(self.run(batch))
    }

    /// Runs the queries; returns the last one's rows and each row's origin.
    pub async fn run(&self, mut batch: RecordBatch) -> Result<(RecordBatch, Vec<(i32, i64)>)> {
        let mut visible = batch.num_columns();
        for (name, sql) in &self.steps {
            let err = |e: &dyn std::fmt::Display| {
                Error::caused(Kind::Sink, format!("stage {name}"), e.to_string())
            };
            let _ = self.ctx.deregister_table("input");
            self.ctx
                .register_batch("input", batch)
                .map_err(|e| err(&e))?;
            let state = self.ctx.state();
            let plan = state
                .create_logical_plan(sql)
                .await
                .map_err(|e| err(&e.strip_backtrace()))?;
            visible = plan.schema().fields().len();
            let plan = keep_origin(plan).map_err(|e| err(&e.strip_backtrace()))?;
            let df = self
                .ctx
                .execute_logical_plan(plan)
                .await
                .map_err(|e| err(&e.strip_backtrace()))?;
            let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
            let parts = df.collect().await.map_err(|e| err(&e.strip_backtrace()))?;
            batch = arrow::compute::concat_batches(&schema, &parts).map_err(|e| err(&e))?;
            for c in ORIGIN {
                if schema.index_of(c).is_err() {
                    return Err(err(&format!(
                        "its rows lose the input message they came from ({c}): a SQL stage \
                         maps rows one to one (projection, filter, joins); aggregate in a \
                         window stage instead of GROUP BY or DISTINCT"
                    )));
                }
            }
        }
        let origins = origins(&batch)?;
        let batch = batch
            .project(&(0..visible).collect::<Vec<_>>())
            .map_err(|e| Error::caused(Kind::Sink, "stage rows", e))?;
        Ok((batch, origins))
    }
}

/// Each row's (partition, offset), from its origin columns.
pub fn origins(batch: &RecordBatch) -> Result<Vec<(i32, i64)>> {
    let col = |c: &str| batch.column_by_name(c).cloned();
    let (Some(p), Some(o)) = (col(ORIGIN[0]), col(ORIGIN[1])) else {
        return Err(Error::new(
            Kind::Config,
            "rows without _partition and _offset",
        ));
    };
    let (Some(p), Some(o)) = (
        p.as_any().downcast_ref::<Int32Array>(),
        o.as_any().downcast_ref::<Int64Array>(),
    ) else {
        return Err(Error::new(
            Kind::Config,
            "_partition must stay INT and _offset BIGINT in a stage's query",
        ));
    };
    if p.null_count() > 0 || o.null_count() > 0 {
        return Err(Error::new(
            Kind::Config,
            "a stage's query made _partition or _offset null (an outer join's other side?)",
        ));
    }
    Ok(p.values()
        .iter()
        .copied()
        .zip(o.values().iter().copied())
        .collect())
}

/// Adds `_partition` and `_offset` to every projection that drops them while its input has them.
fn keep_origin(plan: LogicalPlan) -> datafusion::error::Result<LogicalPlan> {
    plan.transform_up(|node| {
        let LogicalPlan::Projection(p) = &node else {
            return Ok(Transformed::no(node));
        };
        let mut exprs = p.expr.clone();
        let mut changed = false;
        for c in ORIGIN {
            if p.schema.fields().iter().any(|f| f.name() == c) {
                continue;
            }
            if let Some((q, f)) = p.input.schema().iter().find(|(_, f)| f.name() == c) {
                exprs.push(Expr::Column(Column::new(q.cloned(), f.name())));
                changed = true;
            }
        }
        if !changed {
            return Ok(Transformed::no(node));
        }
        let p = Projection::try_new(exprs, p.input.clone())?;
        Ok(Transformed::yes(LogicalPlan::Projection(p)))
    })
    .map(|t| t.data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    fn input() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("amount", DataType::Float64, true),
            Field::new("_partition", DataType::Int32, false),
            Field::new("_offset", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["a", "b", "c"])),
                Arc::new(Float64Array::from(vec![1.0, -2.0, 3.0])),
                Arc::new(Int32Array::from(vec![0, 0, 1])),
                Arc::new(Int64Array::from(vec![10, 11, 5])),
            ],
        )
        .unwrap()
    }

    async fn chain(sql: &[&str]) -> Result<SqlChain> {
        let steps = sql
            .iter()
            .enumerate()
            .map(|(i, q)| (format!("s{i}"), q.to_string()))
            .collect();
        SqlChain::new(steps, input().schema(), &StaticTables::default()).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_projection_keeps_each_rows_origin_without_showing_it() {
        let c = chain(&["SELECT upper(id) AS who FROM input WHERE amount > 0"])
            .await
            .unwrap();
        assert_eq!(c.schema().fields().len(), 1, "only the query's column");
        let (out, origins) = c.run(input()).await.unwrap();
        assert_eq!(out.num_columns(), 1);
        assert_eq!(origins, vec![(0, 10), (1, 5)]);
        // A stage reading a stage, from a thread of its own as operators run.
        let c = chain(&[
            "SELECT id, amount * 2 AS twice FROM input",
            "SELECT twice FROM input WHERE id <> 'a'",
        ])
        .await
        .unwrap();
        let (out, origins) =
            std::thread::scope(|s| s.spawn(|| c.run_blocking(input())).join().unwrap()).unwrap();
        assert_eq!(out.num_rows(), 2);
        assert_eq!(origins, vec![(0, 11), (1, 5)]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_grouping_query_is_refused_at_start() {
        let e = chain(&["SELECT id, count(*) FROM input GROUP BY id"])
            .await
            .err()
            .unwrap();
        assert_eq!(e.kind(), Some(Kind::Config), "{e}");
        let shown = rtlake_core::error::Chain(&e).to_string();
        assert!(shown.contains("window stage"), "{shown}");
        let e = chain(&["SELECT nope FROM input"]).await.err().unwrap();
        let shown = rtlake_core::error::Chain(&e).to_string();
        assert!(
            shown.contains("stage s0") && shown.contains("nope"),
            "the stage and the column are named: {shown}"
        );
    }
}
