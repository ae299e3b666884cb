//! Table names, the time partition columns and the `_rejected` table every pipeline shares; a
//! domain's own tables live with it.

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use std::sync::Arc;

/// A table's name (`namespace.name`) and where it lives under the lake root.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TableName {
    /// The SQL schema it is registered in (`bronze`); empty for top-level tables like `_rejected`.
    pub namespace: &'static str,
    /// The table's own name.
    pub name: &'static str,
}

impl TableName {
    /// The path under the lake root: `<ns>/<name>`, or `<name>` without a namespace.
    pub fn path(&self) -> String {
        if self.namespace.is_empty() {
            self.name.to_string()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(self.name)
        } else {
            write!(f, "{}.{}", self.namespace, self.name)
        }
    }
}

/// `_rejected`: every message a sink could not take, with the reason.
pub const REJECTED: TableName = TableName {
    namespace: "",
    name: "_rejected",
};

/// The partition columns of every time-partitioned table: date and hour at the
/// table's UTC offset (`lake.time-zone` for `_rejected`).
pub const TIME_PARTITIONS: [&str; 2] = ["date", "hour"];

/// A UTC timestamp in microseconds, the type of every time column.
pub fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The fields of [`TIME_PARTITIONS`], the last columns of a time-partitioned table.
pub fn partition_fields() -> [Field; 2] {
    [
        Field::new("date", DataType::Date32, false),
        Field::new("hour", DataType::Int32, false),
    ]
}

/// The schema of `_rejected`, partitioned by the date and hour of `rejected_at` (at
/// `lake.time-zone`).
pub fn rejected() -> SchemaRef {
    let mut f = vec![
        Field::new("kafka_topic", DataType::Utf8, false),
        Field::new("kafka_partition", DataType::Int32, false),
        Field::new("kafka_offset", DataType::Int64, false),
        Field::new("kafka_key", DataType::Utf8, true),
        Field::new("value", DataType::Binary, true),
        Field::new("reason", DataType::Utf8, false),
        Field::new("error", DataType::Utf8, false),
        Field::new("sink", DataType::Utf8, false),
        Field::new("rejected_at", ts(), false),
    ];
    f.extend(partition_fields());
    Arc::new(Schema::new(f))
}

/// Why a message was rejected (the `reason` column).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    /// Not JSON, or not the expected shape.
    Decode,
    /// JSON of the right shape with a value out of its domain.
    Validation,
    /// Behind the watermark.
    Late,
    /// Not newer than the stored state.
    Stale,
    /// Event time further ahead of the clock than `run.max-future`, or alone more than
    /// `run.lateness` ahead of the rest of its partition (`rtlake_stream::ahead`).
    Future,
}

impl RejectReason {
    /// The value of the `reason` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Decode => "decode",
            Self::Validation => "validation",
            Self::Late => "late",
            Self::Stale => "stale",
            Self::Future => "future",
        }
    }
}
