//! The engine's general operators, for pipelines declared in TOML and SQL over any topic:
//! [`decode`] (messages to Arrow rows: [`decode_json`] by a declared schema, [`decode_avro`]
//! by a schema registry's, [`decode_debezium`] for change events), [`sql_stage`] (queries over
//! an epoch's rows and static tables), [`window_stage`] (event-time window aggregates) and
//! [`changes`] (per-key changes of a column, for any schema).

pub mod changes;
pub mod decode;
pub mod decode_avro;
pub mod decode_debezium;
pub mod decode_json;
pub mod decode_json_schema;
pub mod decode_protobuf;
pub(crate) mod decode_registry;
pub mod json_schema;
pub mod sql_stage;
pub mod window_stage;

use crate::input::EpochInput;
use crate::operator::{Emitted, Operator, Rejections};
use crate::source::RawMessage;
use crate::{Error, Kind, Result};
use arrow::datatypes::SchemaRef;
use sql_stage::SqlChain;

/// A declared SQL stage: no state; each row is one input message's.
pub struct SqlOperator {
    name: &'static str,
    sql: SqlChain,
}

impl SqlOperator {
    /// The stage `name`, running `sql` (its own query, after those of the stages it reads).
    pub fn new(name: &str, sql: SqlChain) -> Self {
        Self {
            name: Box::leak(name.to_string().into_boxed_str()),
            sql,
        }
    }
}

/// The owed rows of an epoch's decoded records.
pub(crate) fn owed_rows(
    name: &str,
    input: &EpochInput<'_>,
    owed: &dyn Fn(&RawMessage) -> bool,
) -> Result<arrow::array::RecordBatch> {
    let records = input.records.as_ref().ok_or_else(|| {
        Error::new(
            Kind::Config,
            format!("stage {name}: the pipeline declares no input"),
        )
    })?;
    let keep: Vec<bool> = records.rows.iter().map(|i| owed(&input.msgs[*i])).collect();
    arrow::compute::filter_record_batch(&records.batch, &arrow::array::BooleanArray::from(keep))
        .map_err(|e| Error::caused(Kind::Sink, format!("stage {name}"), e))
}

/// A stage's owed rows of the epoch, through the queries of the SQL stages it reads (if any),
/// with each row's origin.
pub(crate) fn stage_rows(
    name: &str,
    sql: Option<&SqlChain>,
    input: &EpochInput<'_>,
    owed: &dyn Fn(&RawMessage) -> bool,
) -> Result<(arrow::array::RecordBatch, Vec<(i32, i64)>)> {
    let batch = owed_rows(name, input, owed)?;
    match sql {
        Some(sql) => sql.run_blocking(batch).map_err(config),
        None => {
            let o = sql_stage::origins(&batch)?;
            Ok((batch, o))
        }
    }
}

/// A query failing on the rows is the query's fault: the run stops and says so.
pub(crate) fn config(e: Error) -> Error {
    match e.kind() {
        Some(Kind::Sink) => e.as_kind(Kind::Config),
        _ => e,
    }
}

impl Operator for SqlOperator {
    fn kind(&self) -> &'static str {
        self.name
    }

    fn schema(&self) -> SchemaRef {
        self.sql.schema()
    }

    fn process(
        &mut self,
        input: &EpochInput<'_>,
        owed: &dyn Fn(&RawMessage) -> bool,
        _rejected: &mut Rejections<'_>,
        _sink: &str,
    ) -> Result<Emitted> {
        let (batch, origins) = stage_rows(self.name, Some(&self.sql), input, owed)?;
        // Nullability can differ from run to run (a literal column); the tables' schema is fixed.
        let batch = arrow::array::RecordBatch::try_new(self.sql.schema(), batch.columns().to_vec())
            .map_err(|e| Error::caused(Kind::Config, format!("stage {}", self.name), e))?;
        Ok(Emitted { batch, origins })
    }
}
