//! A pipeline: operators, each feeding one or more outputs (lake tables, Kafka topics).
//!
//! Sinks in the config that name the same operator share one instance of it, so one epoch's
//! rows of one state feed several outputs (Spark's foreachBatch). Each output has its own
//! version per input partition (a Delta txn, an Iceberg snapshot summary entry, or the Kafka
//! sink's checkpoint file); an operator processes the messages past the smallest of its outputs'
//! versions, restores its state at that version, and each output takes only the rows whose input
//! message is past its own version.

use crate::config::{PipelineConfig as Config, SinkMode};
use crate::connectors::kafka::sink::KafkaSink;
use crate::operator::{Emitted, Operator};
use crate::ops::SqlOperator;
use crate::ops::changes::ChangeStage;
use crate::ops::sql_stage::{SqlChain, StaticTables};
use crate::ops::window_stage::WindowStage;
use crate::registry::Registry;
use crate::sql::SqlTransform;
use crate::{Error, Kind, Result};
use arrow::array::BooleanArray;
use arrow::datatypes::SchemaRef;
use rtlake_core::schema::{TIME_PARTITIONS, TableName};
use rtlake_lake::Lake;
use rtlake_lake::sink::app_id;
use rtlake_lake::table::TableSink;
use rtlake_lake::upsert::Upsert;
use std::collections::BTreeMap;

/// How an upsert sink merges its rows: the key and order, and the condition that marks deletes.
pub struct Upserting {
    spec: Upsert,
    /// `delete-when`, evaluated row by row over the sink's rows; none: no row deletes.
    deletes: Option<crate::sql::Condition>,
}

impl Upserting {
    /// The upsert of a sink writing rows of `schema`: its key and order columns must be
    /// columns of the rows, and its delete condition a boolean over them.
    async fn new(
        s: &crate::config::SinkConfig,
        name: TableName,
        schema: &SchemaRef,
        udfs: &[datafusion::logical_expr::ScalarUDF],
    ) -> Result<Self> {
        let bad =
            |why: String| Error::new(Kind::Config, format!("the sink of table {name}: {why}"));
        for c in s.primary_key.iter().chain(&s.order_by) {
            if schema.field_with_name(c).is_err() {
                let have: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(bad(format!(
                    "{c} is not a column of its rows (they have {})",
                    have.join(", ")
                )));
            }
        }
        let deletes = match &s.delete_when {
            Some(cond) => Some(
                crate::sql::Condition::new(cond, schema, udfs)
                    .map_err(|e| e.within(format!("the sink of table {name}: delete-when")))?,
            ),
            None => None,
        };
        Ok(Self {
            spec: Upsert {
                key: s.primary_key.clone(),
                order_by: s.order_by.clone(),
            },
            deletes,
        })
    }

    /// Which of `batch`'s rows delete their key (a null condition does not).
    fn deletes(&self, batch: &arrow::array::RecordBatch) -> Result<BooleanArray> {
        match &self.deletes {
            Some(c) => c.eval(batch),
            None => Ok(BooleanArray::from(vec![false; batch.num_rows()])),
        }
    }
}

/// Where an operator's rows go.
pub enum Output {
    /// A lake table (Delta or Iceberg), exactly once; its rows optionally through a query,
    /// appended or (with an [`Upserting`]) merged by key.
    Table(TableSink, Option<SqlTransform>, Option<Box<Upserting>>),
    /// A Kafka topic, at least once with deduplication headers.
    Kafka(Box<KafkaSink>),
}

impl Output {
    /// The output's name: the table (`silver.order_changes`) or `kafka:<topic>`.
    pub fn name(&self) -> String {
        match self {
            Self::Table(d, ..) => d.name().to_string(),
            Self::Kafka(k) => k.name(),
        }
    }

    /// The next input offset of `partition` this output does not hold (`None`: never written).
    pub fn version(&self, pipeline: &str, partition: i32) -> Option<i64> {
        match self {
            Self::Table(d, ..) => {
                d.known_version(&app_id(pipeline, &d.name().to_string(), partition))
            }
            Self::Kafka(k) => k.known_version(partition),
        }
    }

    /// Waits for what its commits left running (a table's log checkpoint): at the end of a run.
    pub async fn finish(&mut self) {
        if let Self::Table(d, ..) = self {
            d.finish().await;
        }
    }

    /// Reads the versions of `parts` again from the table or checkpoint.
    pub async fn refresh(&mut self, pipeline: &str, parts: &[i32]) -> Result<()> {
        match self {
            Self::Table(d, ..) => {
                let name = d.name().to_string();
                let ids: Vec<String> = parts.iter().map(|p| app_id(pipeline, &name, *p)).collect();
                d.refresh_versions(&ids).await?;
            }
            Self::Kafka(k) => k.refresh(parts).await?,
        }
        Ok(())
    }

    /// Commits the rows of `emitted` this output does not hold, with versions `ends`
    /// (partition → next offset) for the partitions it is behind on; returns the rows written,
    /// or `None` if it held the whole epoch already. A table's commit records `newest_event`
    /// (the epoch's newest Kafka timestamp) for `rtlake lake status`.
    pub async fn commit(
        &mut self,
        pipeline: &str,
        emitted: &Emitted,
        ends: &BTreeMap<i32, i64>,
        newest_event: Option<i64>,
    ) -> Result<Option<u64>> {
        let behind: BTreeMap<i32, i64> = ends
            .iter()
            .filter(|(p, end)| self.version(pipeline, **p).is_none_or(|v| **end > v))
            .map(|(p, e)| (*p, *e))
            .collect();
        if behind.is_empty() {
            return Ok(None);
        }
        // Each partition's version once (a Delta version is looked up by an app id string).
        let mut held: Vec<(i32, i64)> = Vec::new();
        let mut from = |p: i32| match held.iter().find(|(q, _)| *q == p) {
            Some((_, v)) => *v,
            None => {
                let v = self.version(pipeline, p).unwrap_or(0);
                held.push((p, v));
                v
            }
        };
        let keep: Vec<bool> = emitted
            .origins
            .iter()
            .map(|(p, o)| *o >= from(*p))
            .collect();
        let (batch, origins) = if keep.iter().all(|k| *k) {
            (emitted.batch.clone(), emitted.origins.clone())
        } else {
            let mask = BooleanArray::from(keep.clone());
            let batch = arrow::compute::filter_record_batch(&emitted.batch, &mask)
                .map_err(|e| Error::caused(Kind::Sink, "filter rows", e))?;
            (
                batch,
                emitted
                    .origins
                    .iter()
                    .zip(&keep)
                    .filter(|(_, k)| **k)
                    .map(|(o, _)| *o)
                    .collect(),
            )
        };
        let rows = match self {
            Self::Table(d, sql, upsert) => {
                let name = d.name().to_string();
                let txns = behind
                    .iter()
                    .map(|(p, e)| (app_id(pipeline, &name, *p), *e))
                    .collect();
                let batch = match sql {
                    Some(q) => q.apply(batch).await?,
                    None => batch,
                };
                d.stamp(newest_event);
                match upsert {
                    None => {
                        let rows = batch.num_rows();
                        d.commit(vec![batch], &txns).await?;
                        rows
                    }
                    Some(u) => {
                        let deletes = u.deletes(&batch)?;
                        let r = d.upsert(batch, &deletes, &u.spec, &txns).await?;
                        // Per epoch, so not at info: a live pipeline merges several times a second.
                        tracing::debug!(
                            target: "rtlake_stream::upsert",
                            table = %name,
                            version = r.version,
                            rows = r.rows,
                            superseded = r.superseded,
                            inserted = r.inserted,
                            updated = r.updated,
                            deleted = r.deleted,
                            files_scanned = r.files_scanned,
                            files_skipped = r.files_skipped,
                            files_rewritten = r.files_rewritten,
                            "upserted"
                        );
                        // What an upsert writes: one row per key the epoch changed.
                        r.rows
                    }
                }
            }
            Self::Kafka(k) => {
                k.commit(&batch, &origins, &behind).await?;
                batch.num_rows()
            }
        };
        Ok(Some(rows as u64))
    }
}

/// One operator and its outputs.
pub struct Stage {
    /// The operator.
    pub op: Box<dyn Operator>,
    /// The name its refusals are written under: its first output's (kept here because the
    /// outputs are away while an epoch commits).
    pub sink: String,
    /// Its outputs, in commit order.
    pub outputs: Vec<Output>,
    /// Rows committed per output name since the start.
    pub rows: BTreeMap<String, u64>,
}

impl Stage {
    /// Where the operator resumes a partition: the smallest of its outputs' versions.
    pub fn version(&self, pipeline: &str, partition: i32) -> Option<i64> {
        self.outputs
            .iter()
            .map(|o| o.version(pipeline, partition))
            .collect::<Option<Vec<i64>>>()
            .and_then(|v| v.into_iter().min())
    }
}

/// What declared stages are built from: the decoded input's schema and the static tables.
struct Declared {
    input: SchemaRef,
    tables: StaticTables,
}

async fn operator(
    kind: &str,
    cfg: &Config,
    declared: Option<&Declared>,
    registry: &Registry,
) -> Result<Box<dyn Operator>> {
    if let (Some(stage), Some(d)) = (cfg.run.stage(kind), declared) {
        // The queries of the SQL stages it reads, first to last, then its own.
        let mut steps = Vec::new();
        let mut at = if stage.is_stateful() {
            stage.input.as_deref()
        } else {
            Some(kind)
        };
        while let Some(name) = at.filter(|n| *n != "input") {
            let Some(s) = cfg.run.stage(name) else { break };
            steps.push((s.name.clone(), s.sql.clone().unwrap_or_default()));
            at = s.input.as_deref();
        }
        steps.reverse();
        let chain = if steps.is_empty() {
            None
        } else {
            Some(SqlChain::new(steps, d.input.clone(), &d.tables).await?)
        };
        let time = cfg.run.input.as_ref().and_then(|i| i.event_time.as_deref());
        let op: Box<dyn Operator> = match chain {
            Some(chain) if !stage.is_stateful() => Box::new(SqlOperator::new(kind, chain)),
            chain if stage.changes.is_some() => {
                Box::new(ChangeStage::new(stage, chain, d.input.clone(), time)?)
            }
            chain => Box::new(WindowStage::new(
                stage,
                chain,
                d.input.clone(),
                cfg.run.input.as_ref().and_then(|i| i.event_time.as_deref()),
                cfg.run.lateness.get(),
            )?),
        };
        return Ok(op);
    }
    match registry.build(kind, cfg) {
        Some(op) => op,
        None => {
            let known: Vec<String> = cfg
                .run
                .stages
                .iter()
                .map(|s| s.name.clone())
                .chain(registry.names().map(String::from))
                .collect();
            Err(Error::new(
                Kind::Config,
                format!(
                    "no operator or stage named {kind} (known: {})",
                    known.join(", ")
                ),
            ))
        }
    }
}

/// A table name from the config (`ns.name`), kept for the life of the process.
fn table_name(s: &str) -> TableName {
    let (ns, name) = s.split_once('.').unwrap_or(("default", s));
    TableName {
        namespace: Box::leak(ns.to_string().into_boxed_str()),
        name: Box::leak(name.to_string().into_boxed_str()),
    }
}

/// Builds the stages of the configured sinks, opening (creating) their tables and topics;
/// `input` is the decoded input's schema (a declared input's, [`crate::ops::decode::Decoder`]).
pub async fn build(
    cfg: &Config,
    registry: &Registry,
    lake: &Lake,
    checkpoint: &crate::checkpoint::Folder,
    cluster: &rtlake_kafka::Cluster,
    input: Option<SchemaRef>,
) -> Result<Vec<Stage>> {
    let declared = match input {
        Some(input) => Some(Declared {
            input,
            tables: StaticTables::load(&cfg.run.tables)
                .await?
                .with_udfs(registry.udfs()),
        }),
        None => None,
    };
    let mut stages: Vec<Stage> = Vec::new();
    for s in &cfg.run.sinks(registry.default_sinks()) {
        let built = stages.iter().position(|st| st.op.kind() == s.operator);
        let op = match built {
            // Sinks of one operator share it: only the output is new.
            Some(_) => None,
            None => Some(operator(&s.operator, cfg, declared.as_ref(), registry).await?),
        };
        let op_schema = match (built, &op) {
            (Some(i), _) => stages[i].op.schema(),
            (None, Some(op)) => op.schema(),
            (None, None) => unreachable!("an operator is built when none is"),
        };
        let output = match &s.topic {
            Some(topic) => {
                let Some(key) = s.key.as_deref().or_else(|| registry.key(&s.operator)) else {
                    return Err(Error::new(
                        Kind::Config,
                        format!(
                            "the sink of topic {topic}: name the column that keys its messages (key)"
                        ),
                    ));
                };
                if op_schema.field_with_name(key).is_err() {
                    return Err(Error::new(
                        Kind::Config,
                        format!(
                            "the sink of topic {topic}: key column {key} is not a column of {} rows",
                            s.operator
                        ),
                    ));
                }
                Output::Kafka(Box::new(
                    KafkaSink::open(
                        cfg,
                        cluster,
                        topic,
                        key,
                        (s.value_format.as_deref(), s.schema_registry.as_deref()),
                        checkpoint,
                    )
                    .await?,
                ))
            }
            None => {
                let name = match (s.table.as_deref(), registry.table(&s.operator)) {
                    (Some(t), _) => table_name(t),
                    (None, Some(t)) => t,
                    (None, None) => {
                        return Err(Error::new(
                            Kind::Config,
                            format!(
                                "the sink of stage {}: name its table (table) or topic (topic)",
                                s.operator
                            ),
                        ));
                    }
                };
                if cfg.run.bronze_source().is_some()
                    && registry.replay_source().is_some_and(|r| r.table == name)
                {
                    // Bronze is the input of a backfill: it is not written again.
                    continue;
                }
                let sql = match &s.sql {
                    Some(q) => Some(
                        SqlTransform::new(q, op_schema.clone(), registry.udfs())
                            .await
                            .map_err(|e| match e.kind() {
                                Some(Kind::Config) => e.within(format!("the sink of table {name}")),
                                _ => e,
                            })?,
                    ),
                    None => None,
                };
                let schema = sql
                    .as_ref()
                    .map_or_else(|| op_schema.clone(), SqlTransform::schema);
                // Partitioned by date and hour when the rows have them.
                let parts: Vec<&str> = TIME_PARTITIONS
                    .iter()
                    .copied()
                    .filter(|c| schema.field_with_name(c).is_ok())
                    .collect();
                let upsert = match s.mode {
                    SinkMode::Append => None,
                    SinkMode::Upsert => Some(Box::new(
                        Upserting::new(s, name, &schema, registry.udfs()).await?,
                    )),
                };
                let table = TableSink::open_as(lake, name, schema, &parts, s.format).await?;
                Output::Table(table, sql, upsert)
            }
        };
        match (built, op) {
            (Some(i), _) => stages[i].outputs.push(output),
            (None, Some(op)) => stages.push(Stage {
                op,
                sink: output.name(),
                outputs: vec![output],
                rows: BTreeMap::new(),
            }),
            (None, None) => {}
        }
    }
    Ok(stages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn sink(
        key: &str,
        delete_when: Option<&str>,
        order_by: Option<&str>,
    ) -> crate::config::SinkConfig {
        crate::config::SinkConfig {
            operator: "rows".into(),
            table: Some("t.state".into()),
            topic: None,
            key: None,
            sql: None,
            format: None,
            value_format: None,
            schema_registry: None,
            mode: SinkMode::Upsert,
            primary_key: vec![key.into()],
            delete_when: delete_when.map(String::from),
            order_by: order_by.map(String::from),
        }
    }

    /// An upsert's columns and condition are checked against the rows at start, naming them.
    #[tokio::test]
    async fn an_upsert_names_columns_of_its_rows_and_a_true_or_false_delete() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("op", DataType::Utf8, true),
        ]));
        let name = table_name("t.state");
        let ok = Upserting::new(&sink("id", Some("op = 'd'"), None), name, &schema, &[]).await;
        let u = ok.expect("a key, and a condition over the rows");
        let rows = arrow::array::RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(arrow::array::Int64Array::from(vec![1, 2, 3])),
                Arc::new(arrow::array::StringArray::from(vec![
                    Some("d"),
                    None,
                    Some("u"),
                ])),
            ],
        )
        .unwrap();
        let d = u.deletes(&rows).unwrap();
        assert_eq!(
            d,
            BooleanArray::from(vec![true, false, false]),
            "a null condition deletes nothing"
        );
        let e = Upserting::new(&sink("key", None, None), name, &schema, &[])
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("t.state") && e.contains("key is not a column") && e.contains("id, op"),
            "{e}"
        );
        let e = Upserting::new(&sink("id", None, Some("seq")), name, &schema, &[])
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("seq is not a column"), "{e}");
        let e = Upserting::new(&sink("id", Some("op"), None), name, &schema, &[])
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("not a condition"), "{e}");
        let e = Upserting::new(&sink("id", Some("nope = 1"), None), name, &schema, &[])
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("delete-when") && e.contains("nope"), "{e}");
    }
}
