//! A change stage: per key, in offset order, each row is compared with the key's stored
//! previous row, and a row is emitted where a numeric column changed, with the previous time and
//! value and the change split into `increase` and `decrease` (a count's additions and
//! removals). The first row of a key, a row more than `max-gap` after the stored one, and an
//! unchanged value are stored without output; a row not after the stored one is stale and goes
//! to `_rejected` as `stale` (the stored one stays). State is per key and input partition.
//! [`rule`] is the one definition of the change rule: a domain's keyed operator written in
//! Rust applies it too.

use super::sql_stage::SqlChain;
use crate::config::StageConfig;
use crate::input::EpochInput;
use crate::operator::{Emitted, Operator, PartitionState, PerPartition, Rejections};
use crate::source::RawMessage;
use crate::{Error, Kind, Result};
use arrow::array::{
    Array, ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt32Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use rtlake_core::schema::RejectReason;
use std::collections::HashMap;
use std::sync::Arc;

/// A key's stored row: (time µs, value).
type Stored = HashMap<String, (i64, i64)>;

/// How long a key's stored row is kept after the newest row of its partition, µs (7 days of
/// event time). A key silent for longer would only ever meet a gap too long to compare again,
/// so forgetting it changes no output row; without it the state grows with every key ever seen.
pub const STATE_TTL_MICROS: i64 = 7 * 24 * 3600 * 1_000_000;

/// Forgets the keys whose stored time is more than [`STATE_TTL_MICROS`] behind the newest
/// stored time; `time` reads a stored value's time. Returns how many were forgotten.
pub fn expire<V, S: std::hash::BuildHasher>(
    map: &mut HashMap<String, V, S>,
    time: impl Fn(&V) -> i64,
) -> usize {
    let Some(newest) = map.values().map(&time).max() else {
        return 0;
    };
    let before = map.len();
    map.retain(|_, v| time(v) >= newest.saturating_sub(STATE_TTL_MICROS));
    before - map.len()
}

/// What the change rule makes of a key's row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The key's first row: stored, no output.
    First,
    /// More than the largest gap after the stored row: stored, no output.
    Reset {
        /// The gap, µs.
        gap: i64,
    },
    /// Not after the stored row (a duplicate or stale): the stored one stays; rejected.
    Stale {
        /// The stored row's time, µs.
        stored: i64,
    },
    /// The same value as the stored row: stored, no output.
    Unchanged,
    /// The value changed: stored, and a row out.
    Changed {
        /// `max(value − stored value, 0)`.
        increase: i64,
        /// `max(stored value − value, 0)`.
        decrease: i64,
    },
}

/// The change rule: what row `now` (time µs, value) makes of the key's `stored` one (`None`: the
/// key's first), with `max_gap` µs the largest gap that still compares. The stored row becomes
/// `now` unless the outcome is [`Change::Stale`].
pub fn rule(stored: Option<(i64, i64)>, now: (i64, i64), max_gap: i64) -> Change {
    let Some((st, sv)) = stored else {
        return Change::First;
    };
    let (t, v) = now;
    if t <= st {
        Change::Stale { stored: st }
    } else if t - st > max_gap {
        Change::Reset { gap: t - st }
    } else if v == sv {
        Change::Unchanged
    } else {
        Change::Changed {
            increase: (v - sv).max(0),
            decrease: (sv - v).max(0),
        }
    }
}

/// A declared change stage.
pub struct ChangeStage {
    name: &'static str,
    sql: Option<SqlChain>,
    key: usize,
    time: usize,
    value: usize,
    max_gap: i64,
    schema: SchemaRef,
    parts: PerPartition<Stored>,
}

impl ChangeStage {
    /// The stage `cfg` over rows of `input` (after `sql`, the stages it reads, if any).
    pub fn new(
        cfg: &StageConfig,
        sql: Option<SqlChain>,
        input: SchemaRef,
        default_time: Option<&str>,
    ) -> Result<Self> {
        let bad = |m: String| Error::new(Kind::Config, format!("stage {}: {m}", cfg.name));
        let input = sql.as_ref().map_or(input, SqlChain::schema);
        let col = |c: &str, what: &str| {
            input
                .index_of(c)
                .map_err(|_| bad(format!("{what} {c} is not a column of its input")))
        };
        let key = col(cfg.key.as_deref().unwrap_or(""), "key column")?;
        let time_name = cfg.time.as_deref().or(default_time).unwrap_or("");
        let time = col(time_name, "time column")?;
        if !matches!(input.field(time).data_type(), DataType::Timestamp(..)) {
            return Err(bad(format!("time column {time_name} is not a TIMESTAMP")));
        }
        let value_name = cfg.changes.as_deref().unwrap_or("");
        let value = col(value_name, "changes column")?;
        if !input.field(value).data_type().is_integer() {
            return Err(bad(format!(
                "changes column {value_name} is not an integer"
            )));
        }
        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(format!("prev_{time_name}"), ts, false));
        fields.push(Field::new(
            format!("prev_{value_name}"),
            DataType::Int64,
            false,
        ));
        fields.push(Field::new("increase", DataType::Int64, false));
        fields.push(Field::new("decrease", DataType::Int64, false));
        let max_gap = cfg.max_gap.map_or(i64::MAX, |g| {
            i64::try_from(g.get().as_micros()).unwrap_or(i64::MAX)
        });
        Ok(Self {
            name: Box::leak(cfg.name.clone().into_boxed_str()),
            sql,
            key,
            time,
            value,
            max_gap,
            schema: Arc::new(Schema::new(fields)),
            parts: PerPartition::new(Stored::new, |s| s.len()),
        })
    }
}

impl Operator for ChangeStage {
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
        let (batch, origins) = super::stage_rows(self.name, self.sql.as_ref(), input, owed)?;
        let err = |e: arrow::error::ArrowError| {
            Error::caused(Kind::Sink, format!("stage {}", self.name), e)
        };
        let cast = |i: usize, t: &DataType| arrow::compute::cast(batch.column(i), t).map_err(err);
        let keys = cast(self.key, &DataType::Utf8)?;
        let keys = keys.as_any().downcast_ref::<StringArray>().cloned();
        let times = cast(self.time, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
        let times = times
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .cloned();
        let values = cast(self.value, &DataType::Int64)?;
        let values = values.as_any().downcast_ref::<Int64Array>().cloned();
        let (Some(keys), Some(times), Some(values)) = (keys, times, values) else {
            return Err(Error::new(
                Kind::Sink,
                format!("stage {}: column types", self.name),
            ));
        };
        let mut order: Vec<usize> = (0..batch.num_rows()).collect();
        order.sort_by_key(|i| origins[*i]);
        let by_place: HashMap<(i32, i64), &RawMessage> = input
            .msgs
            .iter()
            .map(|m| ((m.partition, m.offset), m))
            .collect();
        let (mut take, mut prev_t, mut prev_v, mut inc, mut dec) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for r in order {
            let place = origins[r];
            let Some(m) = by_place.get(&place) else {
                continue;
            };
            if keys.is_null(r) || times.is_null(r) || values.is_null(r) {
                rejected.push(m, RejectReason::Validation, sink, || {
                    format!("stage {}: the key, time or value is null", self.name)
                });
                continue;
            }
            let (t, v) = (times.value(r), values.value(r));
            let stored = self.parts.get(place.0);
            let before = stored.get(keys.value(r)).copied();
            match rule(before, (t, v), self.max_gap) {
                Change::Stale { stored: st } => {
                    rejected.push(m, RejectReason::Stale, sink, || {
                        format!(
                            "stage {}: time {} is not after the stored {} of key {}",
                            self.name,
                            micros_rfc3339(t),
                            micros_rfc3339(st),
                            keys.value(r)
                        )
                    });
                    continue;
                }
                Change::Changed { increase, decrease } => {
                    let (st, sv) = before.unwrap_or_default();
                    take.push(r as u32);
                    prev_t.push(st);
                    prev_v.push(sv);
                    inc.push(increase);
                    dec.push(decrease);
                }
                Change::First | Change::Reset { .. } | Change::Unchanged => {}
            }
            stored.insert(keys.value(r).to_string(), (t, v));
        }
        for p in input
            .msgs
            .iter()
            .map(|m| m.partition)
            .collect::<std::collections::BTreeSet<_>>()
        {
            expire(self.parts.get(p), |(t, _)| *t);
        }
        let rows = arrow::compute::take_record_batch(&batch, &UInt32Array::from(take.clone()))
            .map_err(err)?;
        let mut cols: Vec<ArrayRef> = rows.columns().to_vec();
        cols.push(Arc::new(
            TimestampMicrosecondArray::from(prev_t).with_timezone("UTC"),
        ));
        cols.push(Arc::new(Int64Array::from(prev_v)));
        cols.push(Arc::new(Int64Array::from(inc)));
        cols.push(Arc::new(Int64Array::from(dec)));
        let batch = RecordBatch::try_new(self.schema.clone(), cols).map_err(err)?;
        Ok(Emitted {
            batch,
            origins: take.iter().map(|r| origins[*r as usize]).collect(),
        })
    }

    fn state(&self) -> Option<&dyn PartitionState> {
        Some(&self.parts)
    }

    fn state_mut(&mut self) -> Option<&mut dyn PartitionState> {
        Some(&mut self.parts)
    }
}

fn micros_rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us).map_or_else(String::new, |t| t.to_rfc3339())
}

#[cfg(test)]
mod tests {
    use super::{Change, HashMap, Stored, expire, rule};

    #[test]
    fn keys_silent_past_the_ttl_are_forgotten() {
        let day = 24 * 3600 * 1_000_000;
        let mut m: Stored = HashMap::new();
        m.insert("old".into(), (0, 1));
        m.insert("week".into(), (day, 1));
        m.insert("new".into(), (8 * day, 1));
        assert_eq!(expire(&mut m, |(t, _)| *t), 1);
        assert!(!m.contains_key("old") && m.contains_key("week") && m.contains_key("new"));
        assert_eq!(expire(&mut Stored::new(), |(t, _)| *t), 0);
    }

    #[test]
    fn the_rule_compares_with_the_stored_row() {
        let gap = 600;
        assert_eq!(rule(None, (10, 5), gap), Change::First);
        assert_eq!(
            rule(Some((10, 5)), (10, 7), gap),
            Change::Stale { stored: 10 }
        );
        assert_eq!(
            rule(Some((10, 5)), (9, 7), gap),
            Change::Stale { stored: 10 }
        );
        assert_eq!(
            rule(Some((10, 5)), (611, 7), gap),
            Change::Reset { gap: 601 }
        );
        assert_eq!(rule(Some((10, 5)), (610, 5), gap), Change::Unchanged);
        assert_eq!(
            rule(Some((10, 5)), (610, 2), gap),
            Change::Changed {
                increase: 0,
                decrease: 3
            }
        );
        assert_eq!(
            rule(Some((10, 5)), (20, 9), gap),
            Change::Changed {
                increase: 4,
                decrease: 0
            }
        );
    }
}
