//! The bike pipeline's tables (docs/data-contracts.md): their names and Arrow schemas, and the
//! view that sums the district partials.

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use rtlake_core::schema::{TableName, partition_fields, ts};
use std::sync::Arc;

/// `bronze.station_status`: every station status event.
pub const BRONZE_STATION_STATUS: TableName = TableName {
    namespace: "bronze",
    name: "station_status",
};
/// `silver.station_changes`: one row per station snapshot whose bike count changed.
pub const SILVER_STATION_CHANGES: TableName = TableName {
    namespace: "silver",
    name: "station_changes",
};
/// `gold.station_hourly`: one row per station and hour window.
pub const GOLD_STATION_HOURLY: TableName = TableName {
    namespace: "gold",
    name: "station_hourly",
};
/// `gold.district_5min`: per-partition partials per district and 5-minute window.
pub const GOLD_DISTRICT_5MIN: TableName = TableName {
    namespace: "gold",
    name: "district_5min",
};

/// The schema of `bronze.station_status`.
pub fn bronze_station_status() -> SchemaRef {
    bronze_station_status_with(false)
}

/// The schema of `bronze.station_status`, with the nullable `extra` column (the events'
/// unknown fields as JSON, `run.unknown-fields = "keep"`) when `extra` is set.
pub fn bronze_station_status_with(extra: bool) -> SchemaRef {
    let mut f = vec![
        Field::new("station_id", DataType::Utf8, false),
        Field::new("station_name", DataType::Utf8, false),
        Field::new("rack_total", DataType::Int32, false),
        Field::new("bikes_parked", DataType::Int32, false),
        Field::new("shared_pct", DataType::Int32, false),
        Field::new("lat", DataType::Float64, false),
        Field::new("lon", DataType::Float64, false),
        Field::new("polled_at", ts(), false),
        Field::new("district", DataType::Utf8, true),
        Field::new("kafka_partition", DataType::Int32, false),
        Field::new("kafka_offset", DataType::Int64, false),
        Field::new("ingested_at", ts(), false),
    ];
    if extra {
        f.push(Field::new("extra", DataType::Utf8, true));
    }
    f.extend(partition_fields());
    Arc::new(Schema::new(f))
}

/// The schema of `silver.station_changes`.
pub fn silver_station_changes() -> SchemaRef {
    let mut f = vec![
        Field::new("station_id", DataType::Utf8, false),
        Field::new("polled_at", ts(), false),
        Field::new("prev_polled_at", ts(), false),
        Field::new("bikes_parked", DataType::Int32, false),
        Field::new("prev_bikes_parked", DataType::Int32, false),
        Field::new("rentals", DataType::Int32, false),
        Field::new("returns", DataType::Int32, false),
        Field::new("district", DataType::Utf8, true),
    ];
    f.extend(partition_fields());
    Arc::new(Schema::new(f))
}

/// The schema of `gold.station_hourly`, partitioned by the date and hour (KST) of `window_start`.
pub fn gold_station_hourly() -> SchemaRef {
    let mut f = vec![
        Field::new("station_id", DataType::Utf8, false),
        Field::new("window_start", ts(), false),
        Field::new("window_end", ts(), false),
        Field::new("snapshots", DataType::Int64, false),
        Field::new("rentals", DataType::Int64, false),
        Field::new("returns", DataType::Int64, false),
        Field::new("avg_bikes_parked", DataType::Float64, false),
        Field::new("min_bikes_parked", DataType::Int32, false),
        Field::new("max_bikes_parked", DataType::Int32, false),
        Field::new("empty_minutes", DataType::Float64, false),
    ];
    f.extend(partition_fields());
    Arc::new(Schema::new(f))
}

/// The schema of `gold.district_5min` (partials: one row per district, window and source
/// partition; sum over `kafka_partition` for the district's figure).
pub fn gold_district_5min() -> SchemaRef {
    let mut f = vec![
        Field::new("district", DataType::Utf8, false),
        Field::new("window_start", ts(), false),
        Field::new("window_end", ts(), false),
        Field::new("kafka_partition", DataType::Int32, false),
        Field::new("rentals", DataType::Int64, false),
        Field::new("returns", DataType::Int64, false),
        Field::new("bikes_parked", DataType::Int64, false),
        Field::new("stations_empty", DataType::Int64, false),
    ];
    f.extend(partition_fields());
    Arc::new(Schema::new(f))
}

/// Views over the bike tables, in every SQL session (`rtlake sql`, `rtlake serve`, `rtlake lake
/// ddl`) unless the lake holds a view of the same name: `gold.district_5min_total` sums the
/// per-partition partials of `gold.district_5min`.
pub const VIEWS: &[(&str, &str)] = &[(
    "gold.district_5min_total",
    "SELECT district, window_start, window_end, SUM(rentals) AS rentals, SUM(returns) AS returns, \
     SUM(bikes_parked) AS bikes_parked, SUM(stations_empty) AS stations_empty, COUNT(*) AS partitions \
     FROM gold.district_5min GROUP BY district, window_start, window_end",
)];
