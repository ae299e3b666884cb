//! Property-based fuzzing (stable Rust: proptest) of the two parsers that take bytes from
//! outside: the event decoder (every Kafka message the processor reads) and the bikeList response
//! parser (every answer of the API). Neither may panic on any input, and what they accept must
//! satisfy the contract. CI runs a short form; the long form is
//! `PROPTEST_CASES=200000 cargo test --release -p rtlake-bikes --test fuzz`.

use proptest::prelude::*;
use rtlake_bikes::api::{ApiError, parse_response};
use rtlake_bikes::model::{StationEvent, StationStatus};
use rtlake_core::schema::RejectReason;
use serde_json::{Value, json};

const PAGES: [&str; 3] = [
    include_str!("../../../data/seoul-bike/bikeList_now_1_1000.json"),
    include_str!("../../../data/seoul-bike/bikeList_now_1001_2000.json"),
    include_str!("../../../data/seoul-bike/bikeList_now_2001_3000.json"),
];
const GOOD: &str = r#"{"rackTotCnt":"15","stationName":"102. 망원역 1번출구 앞","parkingBikeTotCnt":"16","shared":"107","stationLatitude":"37.55564880","stationLongitude":"126.91062927","stationId":"ST-4","polledAt":"2025-10-01T08:00:15+09:00"}"#;
use rtlake_bikes::model::EVENT_FIELDS as FIELDS;

/// Cases per property: `PROPTEST_CASES`, else enough for CI to find the easy bugs quickly.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: rtlake_core::testing::cases(3000),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A JSON value of any type, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|x| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)),
        any::<String>().prop_map(Value::String),
        numeric_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Text that looks like the API's numbers, and the near misses.
fn numeric_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<i32>().prop_map(|n| format!(" {n} ")),
        any::<f64>().prop_map(|x| x.to_string()),
        (-200.0f64..200.0).prop_map(|x| format!("{x:.8}")),
        Just("NaN".to_string()),
        Just("inf".to_string()),
        Just("-0".to_string()),
        Just("1e400".to_string()),
        Just(String::new()),
    ]
}

/// What an accepted event must satisfy.
fn check_accepted(s: &StationStatus) -> Result<(), TestCaseError> {
    prop_assert!(!s.station_id.trim().is_empty());
    prop_assert!(s.rack_total >= 0 && s.bikes_parked >= 0 && s.shared_pct >= 0);
    prop_assert!(s.lat.is_finite() && s.lat.abs() <= 90.0);
    prop_assert!(s.lon.is_finite() && s.lon.abs() <= 180.0);
    Ok(())
}

fn check_decode(bytes: &[u8]) -> Result<(), TestCaseError> {
    match StationStatus::decode(bytes) {
        Ok(s) => check_accepted(&s),
        Err(e) => {
            prop_assert!(matches!(
                e.reason,
                RejectReason::Decode | RejectReason::Validation
            ));
            prop_assert!(!e.error.is_empty(), "an error says why");
            Ok(())
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_decoder_survives_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        check_decode(&bytes)?;
    }

    #[test]
    fn the_decoder_survives_a_good_event_with_bytes_flipped(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut bytes = GOOD.as_bytes().to_vec();
        for (i, b) in flips {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        check_decode(&bytes)?;
    }

    #[test]
    fn the_decoder_survives_any_value_in_any_field(
        field in 0..FIELDS.len(),
        value in any_json(),
        drop in any::<bool>(),
    ) {
        let mut v: serde_json::Map<String, Value> = serde_json::from_str(GOOD).unwrap();
        if drop {
            v.remove(FIELDS[field]);
        } else {
            v.insert(FIELDS[field].to_string(), value);
        }
        let bytes = serde_json::to_vec(&v).unwrap();
        check_decode(&bytes)?;
    }

    /// Any event the producer could write from a well-formed API row decodes to exactly it.
    #[test]
    fn a_well_formed_event_decodes_to_its_values(
        id in "[A-Z]{2}-[0-9]{1,5}",
        name in any::<String>(),
        racks in 0..i32::MAX, bikes in 0..i32::MAX, shared in 0..i32::MAX,
        lat in -90.0f64..=90.0, lon in -180.0f64..=180.0,
        secs in 0i64..4_102_444_800,
    ) {
        let at = chrono::DateTime::from_timestamp(secs, 0).unwrap()
            .with_timezone(&chrono::FixedOffset::east_opt(9 * 3600).unwrap());
        let e = StationEvent {
            rack_tot_cnt: racks.to_string(),
            station_name: name.clone(),
            parking_bike_tot_cnt: bikes.to_string(),
            shared: shared.to_string(),
            station_latitude: format!("{lat:.8}"),
            station_longitude: format!("{lon:.8}"),
            station_id: id.clone(),
            polled_at: at.to_rfc3339(),
        };
        let s = StationStatus::decode(e.to_json().as_bytes()).map_err(|e| TestCaseError::fail(e.error))?;
        prop_assert_eq!((s.station_id, s.station_name), (id, name));
        prop_assert_eq!((s.rack_total, s.bikes_parked, s.shared_pct), (racks, bikes, shared));
        prop_assert!((s.lat - lat).abs() < 1e-7 && (s.lon - lon).abs() < 1e-7);
        prop_assert_eq!(s.polled_at, at);
    }

    #[test]
    fn the_api_parser_survives_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = parse_response(&bytes);
    }

    /// A recorded page cut anywhere (a dropped connection) is an error to retry, never a panic
    /// and never a shorter page taken as whole.
    #[test]
    fn a_truncated_page_is_malformed(page in 0..PAGES.len(), cut in any::<prop::sample::Index>()) {
        let body = PAGES[page].trim_end().as_bytes();
        let cut = cut.index(body.len());
        match parse_response(&body[..cut]) {
            Err(e) => prop_assert!(e.is_retryable(), "{e}"),
            Ok(p) => prop_assert!(false, "a page cut at byte {cut} of {} parsed with {} rows", body.len(), p.rows.len()),
        }
    }

    /// Any envelope the API can send: rows of any strings come back as they are; codes map to
    /// the right error.
    #[test]
    fn the_api_parser_reads_any_envelope(
        rows in proptest::collection::vec(proptest::collection::vec(any::<String>(), 7), 0..5),
        code in prop_oneof![
            Just("INFO-000".to_string()), Just("INFO-100".to_string()), Just("INFO-200".to_string()),
            Just("ERROR-336".to_string()), Just("ERROR-500".to_string()), Just("ERROR-600".to_string()),
            "[A-Z]{4,5}-[0-9]{3}",
        ],
        message in any::<String>(),
        shape in 0..3u8,
    ) {
        let rows_json: Vec<Value> = rows.iter().map(|r| json!({
            "rackTotCnt": r[0], "stationName": r[1], "parkingBikeTotCnt": r[2], "shared": r[3],
            "stationLatitude": r[4], "stationLongitude": r[5], "stationId": r[6],
        })).collect();
        let body = match shape {
            0 => json!({"rentBikeStatus": {"list_total_count": rows.len(),
                "RESULT": {"CODE": code, "MESSAGE": message}, "row": rows_json}}).to_string(),
            1 => json!({"RESULT": {"CODE": code, "MESSAGE": message}}).to_string(),
            _ => format!("<?xml version=\"1.0\"?><RESULT><CODE>{code}</CODE><MESSAGE>{}</MESSAGE></RESULT>",
                message.replace('<', "&lt;")),
        };
        match (parse_response(body.as_bytes()), code.as_str()) {
            (Ok(p), "INFO-000") if shape == 0 => {
                prop_assert_eq!(p.rows.len(), rows.len());
                for (got, want) in p.rows.iter().zip(&rows) {
                    prop_assert_eq!(&got.station_name, &want[1]);
                    prop_assert_eq!(&got.station_id, &want[6]);
                }
            }
            (Ok(p), "INFO-000" | "INFO-200") => prop_assert!(p.rows.is_empty()),
            (Err(ApiError::BadKey(_)), "INFO-100") => {}
            (Err(ApiError::Request { code: c, .. } | ApiError::Server { code: c, .. }), want) => {
                prop_assert_eq!(c.as_str(), want)
            }
            (got, want) => prop_assert!(false, "code {} ({}) gave {:?}", want, shape, got.map(|p| p.rows.len())),
        }
    }
}

#[test]
fn deep_nesting_huge_values_and_null_are_rejected_not_a_crash() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    for bytes in [
        deep.clone().into_bytes(),
        GOOD.replace("\"ST-4\"", &deep).into_bytes(),
        b"null".to_vec(),
        GOOD.replace("ST-4", &"x".repeat(8 << 20)).into_bytes(),
        vec![0xff, 0xfe, 0x00, b'{'],
    ] {
        let r = StationStatus::decode(&bytes);
        if bytes.len() > 8 << 20 {
            // An 8 MiB station id is still a station id: the decoder takes it, the sink's size
            // limits are another matter.
            assert!(r.is_ok());
        } else {
            assert!(r.is_err());
        }
        let _ = parse_response(&bytes);
    }
}
