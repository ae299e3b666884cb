//! Rows of `_rejected`: every message a pipeline refused, with the reason, the error and the
//! sink that refused it.

use crate::source::RawMessage;
use arrow::array::{
    ArrayRef, BinaryBuilder, Date32Builder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use chrono::{DateTime, Utc};
use rtlake_core::schema::{self, RejectReason};
use std::sync::Arc;

/// Columns of `_rejected` being built.
#[derive(Default)]
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
}

impl RejectedColumns {
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
        let (d, h) = rtlake_core::time::kst_partition(&at);
        self.topic.append_value(topic);
        self.partition.append_value(m.partition);
        self.offset.append_value(m.offset);
        self.key
            .append_option(m.key.as_deref().map(String::from_utf8_lossy));
        self.value.append_option(m.payload.as_deref());
        self.reason.append_value(reason.as_str());
        self.error.append_value(error);
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
