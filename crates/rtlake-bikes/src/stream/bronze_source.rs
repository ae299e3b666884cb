//! The bronze source (`run.source = "bronze:LAKE"`): a lake's `bronze.station_status` replayed
//! as the messages it was made from, for backfills. Each row becomes the producer's event again
//! (the API's fields as strings, the poll time in Seoul time) at its original Kafka partition and
//! offset, so the engine rebuilds silver and gold row for row as streaming made them: operators
//! keep state and watermarks per partition and see each partition's events in offset order.

use crate::model::StationEvent;
use arrow::array::AsArray;
use arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type};
use datafusion::prelude::SessionContext;
use rtlake_lake::Lake;
use rtlake_lake::LakeConfig;
use rtlake_stream::source::RawMessage;
use rtlake_stream::{Error, Kind, Result};
use std::collections::BTreeMap;

/// The messages of the bronze table of the lake at `uri` (storage options from `lake`), by
/// partition, each in offset order.
pub async fn read(uri: &str, lake: &LakeConfig) -> Result<BTreeMap<i32, Vec<RawMessage>>> {
    let err = |e: String| Error::caused(Kind::Source, format!("bronze source {uri}"), e);
    let source = Lake::open(&LakeConfig {
        uri: uri.to_string(),
        ..lake.clone()
    })?;
    let url = source.table_url(crate::tables::BRONZE_STATION_STATUS);
    let table = rtlake_lake::deltalake::DeltaTable::try_from_url_with_storage_options(
        url.clone(),
        source.storage_options().clone(),
    )
    .await
    .map_err(|e| err(e.to_string()))?;
    if table.version().is_none() {
        return Err(err(format!("no bronze table at {url}")));
    }
    let ctx = SessionContext::new();
    table
        .update_datafusion_session(&ctx.state())
        .map_err(|e| err(e.to_string()))?;
    ctx.register_table(
        "bronze",
        table
            .table_provider()
            .await
            .map_err(|e| err(e.to_string()))?,
    )
    .map_err(|e| err(e.to_string()))?;
    let batches = ctx
        .sql(
            "SELECT station_id, station_name, rack_total, bikes_parked, shared_pct, lat, lon, \
             CAST(polled_at AS BIGINT) AS polled_us, kafka_partition, kafka_offset \
             FROM bronze ORDER BY kafka_partition, kafka_offset",
        )
        .await
        .map_err(|e| err(e.to_string()))?
        .collect()
        .await
        .map_err(|e| err(e.to_string()))?;
    let kst = crate::seoul::kst();
    let mut out: BTreeMap<i32, Vec<RawMessage>> = BTreeMap::new();
    for b in &batches {
        // Columns as the types read below, whatever the scan chose (DataFusion reads strings as
        // views, for one): a cast, not a panic, if they differ.
        let col = |i: usize, t: DataType| {
            arrow::compute::cast(b.column(i), &t).map_err(|e| err(format!("column {i}: {e}")))
        };
        let (id, name) = (col(0, DataType::Utf8)?, col(1, DataType::Utf8)?);
        let (id, name) = (id.as_string::<i32>(), name.as_string::<i32>());
        let (racks, bikes, shared) = (
            col(2, DataType::Int32)?,
            col(3, DataType::Int32)?,
            col(4, DataType::Int32)?,
        );
        let (racks, bikes, shared) = (
            racks.as_primitive::<Int32Type>(),
            bikes.as_primitive::<Int32Type>(),
            shared.as_primitive::<Int32Type>(),
        );
        let (lat, lon) = (col(5, DataType::Float64)?, col(6, DataType::Float64)?);
        let (lat, lon) = (
            lat.as_primitive::<Float64Type>(),
            lon.as_primitive::<Float64Type>(),
        );
        let polled = col(7, DataType::Int64)?;
        let polled = polled.as_primitive::<Int64Type>();
        let (part, offset) = (col(8, DataType::Int32)?, col(9, DataType::Int64)?);
        let (part, offset) = (
            part.as_primitive::<Int32Type>(),
            offset.as_primitive::<Int64Type>(),
        );
        for r in 0..b.num_rows() {
            let at = chrono::DateTime::from_timestamp_micros(polled.value(r))
                .ok_or_else(|| err(format!("row {r}: polled_at out of range")))?
                .with_timezone(&kst);
            let event = StationEvent {
                rack_tot_cnt: racks.value(r).to_string(),
                station_name: name.value(r).to_string(),
                parking_bike_tot_cnt: bikes.value(r).to_string(),
                shared: shared.value(r).to_string(),
                station_latitude: lat.value(r).to_string(),
                station_longitude: lon.value(r).to_string(),
                station_id: id.value(r).to_string(),
                polled_at: rtlake_core::time::isoformat(&at),
            };
            out.entry(part.value(r)).or_default().push(RawMessage {
                partition: part.value(r),
                offset: offset.value(r),
                key: Some(id.value(r).as_bytes().to_vec().into()),
                payload: Some(event.to_json().into_bytes().into()),
                timestamp: None,
            });
        }
    }
    Ok(out)
}

/// What [`republish`] did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Republished {
    /// Events the cluster acknowledged.
    pub delivered: u64,
    /// Partitions of bronze read.
    pub partitions: usize,
}

/// Publishes the bronze table of the lake at `uri` to `topic` (created if missing) as the
/// producer's events, keyed by station, in each source partition's offset order, with the
/// producer's settings (idempotent by default).
pub async fn republish(
    cfg: &rtlake_stream::config::PipelineConfig,
    uri: &str,
    topic: &str,
) -> Result<Republished> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let msgs = read(uri, &cfg.lake).await?;
    rtlake_kafka::Cluster::connect(&cfg.kafka)?
        .ensure_topic(topic)
        .await?;
    let kafka =
        |e: rdkafka::error::KafkaError| Error::caused(Kind::Sink, format!("replay to {topic}"), e);
    let producer: FutureProducer = rtlake_kafka::client::producer(&cfg.kafka, &cfg.producer)
        .create()
        .map_err(kafka)?;
    rtlake_kafka::client::connect_early(&producer, topic);
    let mut report = Republished {
        partitions: msgs.len(),
        ..Default::default()
    };
    let mut inflight = futures::stream::FuturesOrdered::new();
    for m in msgs.values().flatten() {
        let record = FutureRecord::to(topic)
            .key(m.key.as_deref().unwrap_or_default())
            .payload(m.payload.as_deref().unwrap_or_default());
        let delivery = producer.send_result(record).map_err(|(e, _)| kafka(e))?;
        inflight.push_back(delivery);
        // Bounded: deliveries are awaited as they go, in order.
        while inflight.len() >= 10_000 {
            wait_one(&mut inflight, &mut report, topic).await?;
        }
    }
    while !inflight.is_empty() {
        wait_one(&mut inflight, &mut report, topic).await?;
    }
    Ok(report)
}

async fn wait_one(
    inflight: &mut futures::stream::FuturesOrdered<rdkafka::producer::DeliveryFuture>,
    report: &mut Republished,
    topic: &str,
) -> Result<()> {
    use futures::StreamExt;
    match inflight.next().await {
        Some(Ok(Ok(_))) => {
            report.delivered += 1;
            Ok(())
        }
        Some(Ok(Err((e, _)))) => Err(Error::caused(Kind::Sink, format!("replay to {topic}"), e)),
        Some(Err(_)) => Err(Error::new(
            Kind::Sink,
            format!("replay to {topic}: the producer went away"),
        )),
        None => Ok(()),
    }
}
