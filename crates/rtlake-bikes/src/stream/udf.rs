//! `district(lat, lon)`: the point-in-polygon district lookup as a SQL function, for the SQL
//! stages and sink queries of any pipeline that carries coordinates in Seoul.

use crate::districts::DistrictCache;
use arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use arrow::datatypes::{DataType, Float64Type};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use std::sync::{Arc, Mutex};

/// `district(lat DOUBLE, lon DOUBLE) -> STRING`: the English name of the Seoul district
/// containing the point, else the nearest one's (as `bronze.station_status.district`); NULL
/// when either coordinate is NULL.
pub fn district() -> ScalarUDF {
    let places = Arc::new(Mutex::new(DistrictCache::default()));
    create_udf(
        "district",
        vec![DataType::Float64, DataType::Float64],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let rows = args
                .iter()
                .find_map(|a| match a {
                    ColumnarValue::Array(a) => Some(a.len()),
                    ColumnarValue::Scalar(_) => None,
                })
                .unwrap_or(1);
            let cols: Vec<ArrayRef> = args
                .iter()
                .map(|a| a.to_array(rows))
                .collect::<Result<_, _>>()?;
            let [lat, lon] = cols.as_slice() else {
                return Err(DataFusionError::Plan(
                    "district(lat, lon) takes two arguments".into(),
                ));
            };
            let (lat, lon) = (
                lat.as_primitive::<Float64Type>(),
                lon.as_primitive::<Float64Type>(),
            );
            // The cache is only ever held for one batch; a poisoned lock still holds a cache.
            let mut places = places.lock().unwrap_or_else(|p| p.into_inner());
            let mut out = StringBuilder::with_capacity(rows, rows * 12);
            for i in 0..rows {
                if lat.is_null(i) || lon.is_null(i) {
                    out.append_null();
                } else {
                    out.append_option(places.district(lat.value(i), lon.value(i)).as_deref());
                }
            }
            let out: ArrayRef = Arc::new(out.finish());
            Ok(
                if args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
                    ColumnarValue::Scalar(datafusion::scalar::ScalarValue::try_from_array(&out, 0)?)
                } else {
                    ColumnarValue::Array(out)
                },
            )
        }),
    )
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    #[tokio::test]
    async fn district_places_points_as_bronze_does() {
        let ctx = SessionContext::new();
        ctx.register_udf(super::district());
        let batches = ctx
            .sql(
                "SELECT district(lat, lon) AS d FROM (VALUES \
                 (37.5556488, 126.91062927), (CAST(NULL AS DOUBLE), 127.0), (37.5116, 127.0592)) \
                 AS t(lat, lon)",
            )
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let d = arrow::compute::concat(
            &batches
                .iter()
                .map(|b| b.column(0).as_ref())
                .collect::<Vec<_>>(),
        )
        .unwrap();
        let d = d
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        assert_eq!(d.value(0), "Mapo-gu");
        assert!(d.is_null(1));
        assert_eq!(d.value(2), "Gangnam-gu");
        use arrow::array::Array;
    }
}
