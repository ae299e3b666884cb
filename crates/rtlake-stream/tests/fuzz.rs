//! Property-based fuzzing of the declared-schema JSON decoder (`ops::decode_json`): every
//! message of a declared topic passes through it. It may not panic on any input, and every
//! message of an epoch comes out exactly once: as a row (in order) or as a refusal. The long
//! form: `PROPTEST_CASES=100000 cargo test --release -p rtlake-stream --test fuzz`.

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use rtlake_stream::config::InputConfig;
use rtlake_stream::ops::decode_json::JsonDecoder;
use rtlake_stream::source::RawMessage;
use serde_json::{Value, json};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: rtlake_core::testing::cases(2000),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const SCHEMA: &str =
    "id STRING NOT NULL, n BIGINT, i INT, x DOUBLE, ok BOOLEAN, at TIMESTAMP NOT NULL, d DATE";
const FIELDS: [&str; 7] = ["id", "n", "i", "x", "ok", "at", "d"];

fn decoder() -> JsonDecoder {
    JsonDecoder::new(&InputConfig {
        topic: None,
        format: "json".into(),
        schema: SCHEMA.into(),
        event_time: Some("at".into()),
        schema_registry: None,
        subject: None,
    })
    .unwrap()
}

/// A value for a field: of its type, of another, as text, or odd.
fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|x| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)),
        any::<String>().prop_map(Value::String),
        "-?[0-9]{0,25}(\\.[0-9]{0,5})?(e-?[0-9]{1,3})?".prop_map(Value::String),
        "(19|20|99)[0-9]{2}-[01][0-9]-[0-3][0-9]([T ][0-2][0-9]:[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-][01][0-9]:[0-5][0-9])?)?"
            .prop_map(Value::String),
        Just(json!([1, 2])),
        Just(json!({"nested": {"deeper": [null]}})),
    ]
}

/// An object with some of the declared fields (and some others), each any value.
fn object() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::btree_map(
            prop_oneof![
                proptest::sample::select(FIELDS.to_vec()).prop_map(String::from),
                any::<String>()
            ],
            value(),
            0..9,
        ),
        any::<bool>(),
    )
        .prop_map(|(m, complete)| {
            let mut o: serde_json::Map<String, Value> = m.into_iter().collect();
            if complete {
                o.entry("id").or_insert(json!("k"));
                o.entry("at").or_insert(json!("2025-10-01T08:00:15+09:00"));
            }
            serde_json::to_vec(&Value::Object(o)).unwrap()
        })
}

/// A message value: an object, an object cut short, JSON that is not an object, or bytes.
fn payload() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        4 => object().prop_map(Some),
        1 => (object(), any::<prop::sample::Index>()).prop_map(|(b, i)| Some(b[..i.index(b.len() + 1)].to_vec())),
        1 => value().prop_map(|v| Some(serde_json::to_vec(&v).unwrap())),
        1 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(Some),
        1 => Just(Some(b"{\"id\":\"a\",\"at\":\"2025-10-01T00:00:00Z\"}{\"id\":\"b\"}".to_vec())),
        1 => Just(Some(b"   ".to_vec())),
        1 => Just(None),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn every_message_is_a_row_or_a_refusal_once(payloads in proptest::collection::vec(payload(), 0..24)) {
        let msgs: Vec<RawMessage> = payloads
            .into_iter()
            .enumerate()
            .map(|(i, p)| RawMessage { partition: 0, offset: i as i64, key: None, payload: p.map(Into::into), timestamp: Some(1_759_273_215_000) })
            .collect();
        let now = Utc.with_ymd_and_hms(2025, 10, 1, 0, 0, 0).unwrap();
        let (records, refused) = decoder()
            .decode("t", &msgs, now, std::time::Duration::from_secs(3600))
            .expect("decoding an epoch never fails as a whole");
        prop_assert_eq!(records.batch.num_rows(), records.rows.len());
        prop_assert!(records.rows.windows(2).all(|w| w[0] < w[1]), "rows in message order: {:?}", records.rows);
        let mut seen = vec![0u8; msgs.len()];
        for &r in &records.rows {
            seen[r] += 1;
        }
        for r in &refused {
            seen[r.index] += 1;
            prop_assert!(!r.error.is_empty());
        }
        prop_assert!(seen.iter().all(|&n| n == 1), "each message once: {:?} (rows {:?}, refused {:?})", seen, records.rows, refused);
        // A NOT NULL column holds no null in the rows that came out.
        for c in [0, 5] {
            prop_assert_eq!(records.batch.column(c).null_count(), 0);
        }
    }
}
