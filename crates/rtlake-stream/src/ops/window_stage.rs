//! A window stage: event-time windows (tumbling, sliding, session) over its input's rows, per
//! group and per input partition, under the partition's watermark ([`crate::window`]).
//!
//! Rows are taken in offset order per partition, so whether a row is late does not depend on
//! how the stream was cut into epochs; late rows go to `_rejected` as `late`, rows with no event
//! time or a null aggregated value as `validation`. Windows are per input partition, as the
//! engine does not shuffle: key the topic by the grouping columns for one row per window, or
//! sum the partials in SQL. Output columns: `window_start`, `window_end`, the grouping columns,
//! then the aggregates (`count` as BIGINT, the others as DOUBLE).

use super::sql_stage::SqlChain;
use crate::config::{Mode, StageConfig};
use crate::input::EpochInput;
use crate::operator::{Emitted, Operator, PartitionState, PerPartition, Rejections};
use crate::source::RawMessage;
use crate::window::{OutputMode, WindowOperator, WindowRow, WindowSpec};
use crate::{Error, Kind, Result};
use arrow::array::{
    Array, ArrayRef, Float64Array, Float64Builder, Int64Builder, RecordBatch, StringArray,
    StringBuilder, TimestampMicrosecondArray, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use rtlake_core::ddl::{AggFunc, Aggregate, WindowDecl};
use rtlake_core::schema::RejectReason;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

type Key = Vec<Option<String>>;

/// A declared window stage.
pub struct WindowStage {
    name: &'static str,
    sql: Option<SqlChain>,
    time: usize,
    keys: Vec<usize>,
    /// The input columns aggregated, each once.
    values: Vec<usize>,
    aggs: Vec<(AggFunc, Option<usize>)>,
    schema: SchemaRef,
    parts: PerPartition<WindowOperator<Key>>,
}

fn micros(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl WindowStage {
    /// The stage `cfg` over rows of `input` (after `sql`, the stages it reads, if any);
    /// `default_time` is the input's event-time column, `lateness` the run's.
    pub fn new(
        cfg: &StageConfig,
        sql: Option<SqlChain>,
        input: SchemaRef,
        default_time: Option<&str>,
        lateness: std::time::Duration,
    ) -> Result<Self> {
        let bad = |m: String| Error::new(Kind::Config, format!("stage {}: {m}", cfg.name));
        let input = sql.as_ref().map_or(input, SqlChain::schema);
        let col = |c: &str, what: &str| {
            input.index_of(c).map_err(|_| {
                let names: Vec<&str> = input.fields().iter().map(|f| f.name().as_str()).collect();
                bad(format!(
                    "{what} {c} is not a column of its input ({})",
                    names.join(", ")
                ))
            })
        };
        let time_name = cfg
            .time
            .as_deref()
            .or(default_time)
            .ok_or_else(|| bad("no event-time column".into()))?;
        let time = col(time_name, "time column")?;
        if !matches!(input.field(time).data_type(), DataType::Timestamp(..)) {
            return Err(bad(format!("time column {time_name} is not a TIMESTAMP")));
        }
        let keys = cfg
            .group_by
            .iter()
            .map(|c| col(c, "group-by column"))
            .collect::<Result<Vec<_>>>()?;
        let decl = rtlake_core::ddl::parse_aggregates(cfg.aggregates.as_deref().unwrap_or(""))
            .map_err(bad)?;
        let mut values: Vec<usize> = Vec::new();
        let mut aggs = Vec::new();
        for Aggregate { func, column, .. } in &decl {
            let slot = match column {
                None => None,
                Some(c) => {
                    let i = col(c, "aggregated column")?;
                    if !input.field(i).data_type().is_numeric() {
                        return Err(bad(format!("aggregated column {c} is not a number")));
                    }
                    Some(values.iter().position(|v| *v == i).unwrap_or_else(|| {
                        values.push(i);
                        values.len() - 1
                    }))
                }
            };
            aggs.push((*func, slot));
        }
        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let mut fields = vec![
            Field::new("window_start", ts.clone(), false),
            Field::new("window_end", ts, false),
        ];
        for k in &keys {
            fields.push(input.field(*k).clone().with_nullable(true));
        }
        for a in &decl {
            let dt = match a.func {
                AggFunc::Count => DataType::Int64,
                _ => DataType::Float64,
            };
            fields.push(Field::new(&a.name, dt, false));
        }
        let window =
            rtlake_core::ddl::parse_window(cfg.window.as_deref().unwrap_or("")).map_err(bad)?;
        let spec = match window {
            WindowDecl::Tumbling(s) => WindowSpec::Tumbling { size: micros(s) },
            WindowDecl::Sliding(s, by) => WindowSpec::Sliding {
                size: micros(s),
                slide: micros(by),
            },
            WindowDecl::Session(g) => WindowSpec::Session { gap: micros(g) },
        };
        let mode = match cfg.output_mode {
            Mode::Append => OutputMode::Append,
            Mode::Update => OutputMode::Update,
            Mode::Complete => OutputMode::Complete,
        };
        let lateness = micros(cfg.lateness.map_or(lateness, |l| l.get()));
        let columns = values.len();
        Ok(Self {
            name: Box::leak(cfg.name.clone().into_boxed_str()),
            sql,
            time,
            keys,
            values,
            aggs,
            schema: Arc::new(Schema::new(fields)),
            parts: PerPartition::new(
                move || WindowOperator::new(spec, lateness, mode, columns),
                WindowOperator::state_len,
            ),
        })
    }

    /// The rows entering the windows this epoch (owed ones, after the stage's SQL), in offset
    /// order per partition, with their origins.
    fn rows(
        &self,
        input: &EpochInput<'_>,
        owed: &dyn Fn(&RawMessage) -> bool,
    ) -> Result<(RecordBatch, Vec<(i32, i64)>)> {
        let (batch, origins) = super::stage_rows(self.name, self.sql.as_ref(), input, owed)?;
        let mut order: Vec<usize> = (0..batch.num_rows()).collect();
        order.sort_by_key(|i| origins[*i]);
        let take = arrow::array::UInt32Array::from_iter_values(order.iter().map(|i| *i as u32));
        let batch = arrow::compute::take_record_batch(&batch, &take)
            .map_err(|e| Error::caused(Kind::Sink, format!("stage {}", self.name), e))?;
        let origins = order.iter().map(|i| origins[*i]).collect();
        Ok((batch, origins))
    }

    fn to_batch(&self, rows: &[WindowRow<Key>]) -> Result<RecordBatch> {
        let err = |e: arrow::error::ArrowError| {
            Error::caused(Kind::Sink, format!("stage {}", self.name), e)
        };
        let mut start = TimestampMicrosecondBuilder::new();
        let mut end = TimestampMicrosecondBuilder::new();
        for r in rows {
            start.append_value(r.start);
            end.append_value(r.end);
        }
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(start.finish().with_timezone("UTC")),
            Arc::new(end.finish().with_timezone("UTC")),
        ];
        for (k, _) in self.keys.iter().enumerate() {
            let mut b = StringBuilder::new();
            for r in rows {
                b.append_option(r.key[k].as_deref());
            }
            let field = self.schema.field(2 + k);
            cols.push(arrow::compute::cast(&b.finish(), field.data_type()).map_err(err)?);
        }
        for (func, slot) in &self.aggs {
            if *func == AggFunc::Count {
                let mut b = Int64Builder::new();
                rows.iter().for_each(|r| b.append_value(r.acc.count as i64));
                cols.push(Arc::new(b.finish()));
                continue;
            }
            let i = slot.unwrap_or(0);
            let mut b = Float64Builder::new();
            for r in rows {
                b.append_value(match func {
                    AggFunc::Sum => r.acc.sum[i],
                    AggFunc::Min => r.acc.min[i],
                    AggFunc::Max => r.acc.max[i],
                    AggFunc::Avg => r.acc.avg(i),
                    _ => r.acc.last[i],
                });
            }
            cols.push(Arc::new(b.finish()));
        }
        RecordBatch::try_new(self.schema.clone(), cols).map_err(err)
    }
}

impl Operator for WindowStage {
    fn kind(&self) -> &'static str {
        self.name
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn process(
        &mut self,
        input: &EpochInput<'_>,
        owed: &dyn Fn(&RawMessage) -> bool,
        rejected: &mut Rejections<'_>,
        sink: &str,
    ) -> Result<Emitted> {
        let (batch, origins) = self.rows(input, owed)?;
        let err = |e: arrow::error::ArrowError| {
            Error::caused(Kind::Sink, format!("stage {}", self.name), e)
        };
        let time = arrow::compute::cast(
            batch.column(self.time),
            &DataType::Timestamp(TimeUnit::Microsecond, None),
        )
        .map_err(err)?;
        let time = time
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .ok_or_else(|| Error::new(Kind::Sink, "time column"))?;
        let keys: Vec<StringArray> = self
            .keys
            .iter()
            .map(|k| {
                let a = arrow::compute::cast(batch.column(*k), &DataType::Utf8).map_err(err)?;
                Ok(a.as_any()
                    .downcast_ref::<StringArray>()
                    .cloned()
                    .unwrap_or_else(|| StringArray::from(Vec::<Option<&str>>::new())))
            })
            .collect::<Result<_>>()?;
        let values: Vec<Float64Array> = self
            .values
            .iter()
            .map(|v| {
                let a = arrow::compute::cast(batch.column(*v), &DataType::Float64).map_err(err)?;
                Ok(a.as_any()
                    .downcast_ref::<Float64Array>()
                    .cloned()
                    .unwrap_or_else(|| Float64Array::from(Vec::<f64>::new())))
            })
            .collect::<Result<_>>()?;
        let mut by_place: Option<HashMap<(i32, i64), &RawMessage>> = None;
        let mut refused: HashSet<(i32, i64)> = HashSet::new();
        let mut reject = |place: (i32, i64), reason: RejectReason, error: String| {
            let map = by_place.get_or_insert_with(|| {
                input
                    .msgs
                    .iter()
                    .map(|m| ((m.partition, m.offset), m))
                    .collect()
            });
            if let Some(m) = map.get(&place)
                && refused.insert(place)
            {
                rejected.push(m, reason, sink, || error);
            }
        };
        let mut vals = vec![0.0; values.len()];
        'rows: for (r, place) in origins.iter().enumerate() {
            if time.is_null(r) {
                reject(
                    *place,
                    RejectReason::Validation,
                    format!("stage {}: the event time is null", self.name),
                );
                continue;
            }
            for (j, v) in values.iter().enumerate() {
                if v.is_null(r) || !v.value(r).is_finite() {
                    reject(
                        *place,
                        RejectReason::Validation,
                        format!(
                            "stage {}: aggregated value {} is null or not finite",
                            self.name,
                            batch.schema().field(self.values[j]).name()
                        ),
                    );
                    continue 'rows;
                }
                vals[j] = v.value(r);
            }
            let key: Key = keys
                .iter()
                .map(|k| (!k.is_null(r)).then(|| k.value(r).to_string()))
                .collect();
            let t = time.value(r);
            if let Err(late) = self.parts.get(place.0).process(key, t, &vals) {
                reject(
                    *place,
                    RejectReason::Late,
                    late.describe("event time", place.0),
                );
            }
        }
        let ends = crate::operator::last_offsets(input, owed);
        let mut rows = Vec::new();
        let mut emitted_origins = Vec::new();
        for (p, part) in self.parts.iter_mut() {
            let Some(end) = ends.get(p) else { continue };
            let out = part.emit();
            emitted_origins.extend(std::iter::repeat_n((*p, *end), out.len()));
            rows.extend(out);
        }
        Ok(Emitted {
            batch: self.to_batch(&rows)?,
            origins: emitted_origins,
        })
    }

    fn state(&self) -> Option<&dyn PartitionState> {
        Some(&self.parts)
    }

    fn state_mut(&mut self) -> Option<&mut dyn PartitionState> {
        Some(&mut self.parts)
    }
}
