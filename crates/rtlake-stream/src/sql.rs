//! SQL over an epoch's rows: a sink's projection and filter, run by DataFusion.
//!
//! The operator's rows of the epoch are the table `input`; the query's result is what the sink
//! writes, and its schema is the table's. Planned once over no rows at start, so a bad query or
//! a missing column fails before any data moves.

use crate::{Error, Kind, Result};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::prelude::SessionContext;

/// A query over `input`.
pub struct SqlTransform {
    sql: String,
    ctx: SessionContext,
    schema: SchemaRef,
}

fn err(sql: &str, e: impl Into<crate::BoxError>) -> Error {
    Error::caused(Kind::Sink, format!("sql `{sql}`"), e)
}

impl SqlTransform {
    /// Plans `sql` over rows of `input` (the operator's schema), with SQL functions `udfs`.
    pub async fn new(
        sql: &str,
        input: SchemaRef,
        udfs: &[datafusion::logical_expr::ScalarUDF],
    ) -> Result<Self> {
        let ctx = SessionContext::new();
        for f in udfs {
            ctx.register_udf(f.clone());
        }
        let empty = RecordBatch::new_empty(input);
        let mut t = Self {
            sql: sql.into(),
            ctx,
            schema: empty.schema(),
        };
        // Planning over no rows: whatever fails here is the query's fault, not the data's.
        let out = t.run(empty).await.map_err(crate::ops::config)?;
        t.schema = out.schema();
        Ok(t)
    }

    /// The schema of the result.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Runs the query over one batch.
    pub async fn apply(&mut self, batch: RecordBatch) -> Result<RecordBatch> {
        let out = self.run(batch).await?;
        // Nullability can differ per run (e.g. a literal column); the table's schema is fixed.
        RecordBatch::try_new(self.schema.clone(), out.columns().to_vec())
            .map_err(|e| err(&self.sql, e))
    }

    async fn run(&mut self, batch: RecordBatch) -> Result<RecordBatch> {
        let _ = self.ctx.deregister_table("input");
        self.ctx
            .register_batch("input", batch)
            .map_err(|e| err(&self.sql, e))?;
        let df = self
            .ctx
            .sql(&self.sql)
            .await
            .map_err(|e| err(&self.sql, e.strip_backtrace()))?;
        let schema: SchemaRef = std::sync::Arc::new(df.schema().as_arrow().clone());
        let batches = df
            .collect()
            .await
            .map_err(|e| err(&self.sql, e.strip_backtrace()))?;
        arrow::compute::concat_batches(&schema, &batches).map_err(|e| err(&self.sql, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("shop_id", DataType::Utf8, false),
            Field::new("rentals", DataType::Int32, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["ST-1", "ST-2", "ST-3"])),
                Arc::new(Int32Array::from(vec![1, 5, 3])),
            ],
        )
        .unwrap()
    }

    #[tokio::test]
    async fn filters_and_projects_each_epoch_with_a_fixed_schema() {
        let mut t = SqlTransform::new(
            "SELECT shop_id, rentals * 2 AS double FROM input WHERE rentals >= 3",
            batch().schema(),
            &[],
        )
        .await
        .unwrap();
        assert_eq!(
            t.schema()
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>(),
            ["shop_id", "double"]
        );
        for _ in 0..2 {
            let out = t.apply(batch()).await.unwrap();
            let ids = out
                .column(0)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            assert_eq!(
                (out.num_rows(), ids.value(0), ids.value(1)),
                (2, "ST-2", "ST-3")
            );
        }
    }

    #[tokio::test]
    async fn a_bad_query_fails_at_start_naming_it() {
        let e = SqlTransform::new("SELECT nope FROM input", batch().schema(), &[])
            .await
            .err()
            .unwrap();
        let e = rtlake_core::error::Chain(&e).to_string();
        assert!(
            e.starts_with("pipeline configuration: sql `SELECT nope FROM input`")
                && e.contains("nope"),
            "the user's configuration is named as the cause: {e}"
        );
    }
}
