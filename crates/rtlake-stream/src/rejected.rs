//! Rows of `_rejected`: every message a pipeline refused, with the reason, the error and the
//! sink that refused it.

use crate::source::RawMessage;
use arrow::array::{
    ArrayRef, BinaryBuilder, Date32Builder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use chrono::{DateTime, Utc};
use rtlake_core::schema::{self, RejectReason};
use rtlake_core::time::UtcOffset;
use std::sync::Arc;

/// The most of a refused message's value `_rejected` keeps by default (`run.rejected-value-max`):
/// a message refused by three stages is stored three times, and values can be megabytes.
pub const VALUE_MAX: usize = 1 << 20;

/// Columns of `_rejected` being built.
pub struct RejectedColumns {
    topic: StringBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
    key: StringBuilder,
    value: BinaryBuilder,
    reason: StringBuilder,
    error: StringBuilder,
    sink: StringBuilder,
    rejected_at: TimestampMicrosecondBuilder,
    date: Date32Builder,
    hour: Int32Builder,
    rows: usize,
    value_max: usize,
    time_zone: UtcOffset,
}

/// How `_rejected` rows are written: how much of a value they keep (`run.rejected-value-max`)
/// and the UTC offset of their partitions (`lake.time-zone`).
#[derive(Clone, Copy, Debug)]
pub struct RejectedShape {
    /// The most bytes of a value a row keeps.
    pub value_max: usize,
    /// The offset of the `date` and `hour` partitions.
    pub time_zone: UtcOffset,
}

impl Default for RejectedShape {
    fn default() -> Self {
        Self {
            value_max: VALUE_MAX,
            time_zone: rtlake_lake::LakeConfig::default().time_zone,
        }
    }
}

impl Default for RejectedColumns {
    fn default() -> Self {
        Self::new(RejectedShape::default())
    }
}

impl RejectedColumns {
    /// Columns that keep at most `shape.value_max` bytes of each value (the error says when a
    /// value was cut, and its whole size), partitioned at `shape.time_zone`.
    pub fn new(shape: RejectedShape) -> Self {
        let RejectedShape {
            value_max,
            time_zone,
        } = shape;
        Self {
            topic: StringBuilder::new(),
            partition: Int32Builder::new(),
            offset: Int64Builder::new(),
            key: StringBuilder::new(),
            value: BinaryBuilder::new(),
            reason: StringBuilder::new(),
            error: StringBuilder::new(),
            sink: StringBuilder::new(),
            rejected_at: TimestampMicrosecondBuilder::new(),
            date: Date32Builder::new(),
            hour: Int32Builder::new(),
            rows: 0,
            value_max,
            time_zone,
        }
    }

    /// Adds a rejected message.
    pub fn push(
        &mut self,
        topic: &str,
        m: &RawMessage,
        reason: RejectReason,
        error: &str,
        sink: &str,
        at: DateTime<Utc>,
    ) {
        let (d, h) = rtlake_core::time::partition(&at, self.time_zone);
        self.topic.append_value(topic);
        self.partition.append_value(m.partition);
        self.offset.append_value(m.offset);
        self.key
            .append_option(m.key.as_deref().map(String::from_utf8_lossy));
        match m.payload.as_deref() {
            Some(v) if v.len() > self.value_max => {
                self.value.append_value(&v[..self.value_max]);
                self.error.append_value(format!(
                    "{error} (value cut to {} of {} bytes: run.rejected-value-max)",
                    self.value_max,
                    v.len()
                ));
            }
            v => {
                self.value.append_option(v);
                self.error.append_value(error);
            }
        }
        self.reason.append_value(reason.as_str());
        self.sink.append_value(sink);
        self.rejected_at.append_value(at.timestamp_micros());
        self.date.append_value(rtlake_core::time::date32(d));
        self.hour.append_value(h as i32);
        self.rows += 1;
    }

    /// Rows added.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether none were added.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The batch, in `_rejected`'s schema.
    pub fn finish(mut self) -> RecordBatch {
        let ts = |b: &mut TimestampMicrosecondBuilder| {
            Arc::new(b.finish().with_timezone("UTC")) as ArrayRef
        };
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.topic.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(self.key.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.reason.finish()),
            Arc::new(self.error.finish()),
            Arc::new(self.sink.finish()),
            ts(&mut self.rejected_at),
            Arc::new(self.date.finish()),
            Arc::new(self.hour.finish()),
        ];
        // The columns follow the schema by construction.
        RecordBatch::try_new(schema::rejected(), cols).expect("rejected columns match the schema")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, BinaryArray, StringArray};

    #[test]
    fn a_long_value_is_cut_and_the_error_says_so() {
        let mut cols = RejectedColumns::new(RejectedShape {
            value_max: 4,
            ..RejectedShape::default()
        });
        let at = chrono::Utc::now();
        for payload in [b"abc".to_vec(), b"abcdefgh".to_vec()] {
            let m = RawMessage {
                partition: 0,
                offset: 1,
                key: None,
                payload: Some(payload.into()),
                timestamp: None,
            };
            cols.push("t", &m, RejectReason::Decode, "bad", "input", at);
        }
        let b = cols.finish();
        let value = b.column(4).as_any().downcast_ref::<BinaryArray>().unwrap();
        let error = b.column(6).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!((value.value(0), error.value(0)), (&b"abc"[..], "bad"));
        assert_eq!(value.value(1), b"abcd");
        assert!(
            error.value(1).starts_with("bad (value cut to 4 of 8 bytes"),
            "{}",
            error.value(1)
        );
        assert_eq!(value.null_count(), 0);
    }
}
