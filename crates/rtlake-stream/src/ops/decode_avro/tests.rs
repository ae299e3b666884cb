//! The Avro decoder's tests: per-message writer schemas resolved to the columns, refusals by
//! name, batches cut by schema changes, and the lake's types.
use super::*;
use apache_avro::types::Value;
use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use rtlake_registry::{RegistryConfig, SchemaRegistry};

const V1: &str = r#"{"type":"record","name":"Order","fields":[
    {"name":"id","type":"string"},
    {"name":"n","type":"int"},
    {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}}]}"#;
// V1 with `n` promoted to long and a new optional field.
const V2: &str = r#"{"type":"record","name":"Order","fields":[
    {"name":"id","type":"string"},
    {"name":"n","type":"long"},
    {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},
    {"name":"note","type":["null","string"],"default":null}]}"#;

/// A decoder reading V2 (id 2) that has met V1 (id 1) and refuses id 9, as `prepare`
/// leaves it (prepare itself talks to a registry: tests/it/typed.rs).
fn decoder() -> AvroDecoder {
    let config = RegistryConfig::new("k", "http://127.0.0.1:9", |_| None).unwrap();
    let reader = AvroSchema::new(V2.into());
    let mut writers = BTreeMap::new();
    writers.insert(1, AvroSchema::new(V1.into()));
    writers.insert(2, reader.clone());
    let declared = build(&reader, &writers).unwrap().schema();
    let declared = Schema::new(declared.fields().iter().map(lake_field).collect::<Vec<_>>());
    AvroDecoder {
        framing: Framing::new(declared, Some("at")).unwrap(),
        subject: Subject::known(
            SchemaRegistry::new(config).unwrap(),
            "orders-value",
            SchemaType::Avro,
            2,
        ),
        reader,
        writers: Writers::of_known(
            writers,
            [(9, "schema id 9 is not in the schema registry".to_string())].into(),
        ),
        decoder: None,
    }
}

fn framed(id: u32, schema: &str, fields: Vec<(&str, Value)>) -> Vec<u8> {
    let schema = apache_avro::Schema::parse_str(schema).unwrap();
    let record = Value::Record(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    );
    let mut out = Vec::new();
    wire::header(id, &mut out);
    out.extend(apache_avro::to_avro_datum(&schema, record).unwrap());
    out
}

fn v1(id: &str, n: i32) -> Vec<u8> {
    framed(
        1,
        V1,
        vec![
            ("id", Value::String(id.into())),
            ("n", Value::Int(n)),
            (
                "at",
                Value::TimestampMillis(1_700_000_000_000 + i64::from(n)),
            ),
        ],
    )
}

fn v2(id: &str, n: i64, note: Option<&str>) -> Vec<u8> {
    let note = match note {
        Some(t) => Value::Union(1, Box::new(Value::String(t.into()))),
        None => Value::Union(0, Box::new(Value::Null)),
    };
    framed(
        2,
        V2,
        vec![
            ("id", Value::String(id.into())),
            ("n", Value::Long(n)),
            ("at", Value::TimestampMillis(1_700_000_000_000 + n)),
            ("note", note),
        ],
    )
}

fn msg(offset: i64, payload: Vec<u8>) -> RawMessage {
    RawMessage {
        partition: 0,
        offset,
        key: None,
        payload: Some(payload.into()),
        timestamp: Some(1_700_000_000_000),
    }
}

#[test]
fn each_message_is_read_by_its_own_schema_and_bad_ones_are_refused_by_name() {
    let mut short = v2("c", 3, Some("cut"));
    short.truncate(short.len() - 2);
    let mut two = v1("d", 4);
    two.extend(&v1("e", 5)[5..]);
    let msgs = vec![
        msg(0, v1("a", 1)),
        msg(1, v2("b", 2, Some("new field"))),
        msg(2, short),
        msg(3, v1("f", 6)),
        msg(4, b"{\"id\":\"g\"}".to_vec()),
        msg(5, {
            let mut m = v1("h", 7);
            m[4] = 9;
            m
        }),
        msg(6, two),
        msg(7, v2("i", 8, None)),
    ];
    let now = DateTime::from_timestamp_millis(1_700_000_100_000).unwrap();
    let mut d = decoder();
    let (rec, refused) = d
        .decode("orders", &msgs, now, Duration::from_secs(3600))
        .unwrap();
    assert_eq!(rec.rows, vec![0, 1, 3, 7]);
    let b = &rec.batch;
    let ids: Vec<&str> = b.column(0).as_string::<i32>().iter().flatten().collect();
    assert_eq!(ids, ["a", "b", "f", "i"]);
    let n: Vec<i64> = b.column(1).as_primitive::<Int64Type>().values().to_vec();
    assert_eq!(n, [1, 2, 6, 8], "int promoted to long");
    let at = b.column(2).as_primitive::<TimestampMicrosecondType>();
    assert_eq!(
        at.value(0),
        1_700_000_000_001_000,
        "millis as the lake's micros"
    );
    let note = b.column(3).as_string::<i32>();
    assert!(note.is_null(0) && note.is_null(2) && note.is_null(3));
    assert_eq!(note.value(1), "new field");
    let got: Vec<(usize, &str)> = refused
        .iter()
        .map(|r| (r.index, r.error.as_str()))
        .collect();
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[0].0, 2);
    assert!(
        got[0]
            .1
            .contains("not one Avro record of its schema (id 2)"),
        "{}",
        got[0].1
    );
    assert!(
        got[1].0 == 4 && got[1].1.contains("magic byte 0"),
        "{}",
        got[1].1
    );
    assert!(
        got[2].0 == 5 && got[2].1.contains("schema id 9"),
        "{}",
        got[2].1
    );
    assert!(
        got[3].0 == 6 && got[3].1.contains("not one Avro record"),
        "{}",
        got[3].1
    );

    // The decoder is kept for the next epoch, and starts clean.
    let (rec, refused) = d
        .decode(
            "orders",
            &[msg(8, v2("j", 9, None)), msg(9, v1("k", 10))],
            now,
            Duration::from_secs(3600),
        )
        .unwrap();
    assert!(refused.is_empty());
    assert_eq!(rec.rows, vec![0, 1]);
}

#[test]
fn batches_cut_by_schema_changes_keep_the_messages_in_order() {
    let msgs: Vec<RawMessage> = (0..3000)
        .map(|i| {
            let p = if i % 3 == 0 {
                v1(&format!("k{i}"), i)
            } else {
                v2(&format!("k{i}"), i64::from(i), None)
            };
            msg(i64::from(i), p)
        })
        .collect();
    let now = DateTime::from_timestamp_millis(1_700_000_100_000).unwrap();
    let (rec, refused) = decoder()
        .decode("orders", &msgs, now, Duration::from_secs(3600))
        .unwrap();
    assert!(refused.is_empty(), "{:?}", refused.first());
    assert_eq!(rec.rows, (0..3000).collect::<Vec<_>>());
    let n = rec.batch.column(1).as_primitive::<Int64Type>();
    assert!((0..3000).all(|i| n.value(i) == i as i64));
}

#[test]
fn enums_and_timestamps_become_the_lakes_types_inside_nested_columns() {
    let ts = DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into()));
    let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let nested = DataType::Struct(Fields::from(vec![
        Field::new("at", ts.clone(), false),
        Field::new("kind", dict.clone(), true),
    ]));
    let got = lake_type(&DataType::List(Arc::new(Field::new("item", nested, true))));
    let want = DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(Fields::from(vec![
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("kind", DataType::Utf8, true),
        ])),
        true,
    )));
    assert_eq!(got, want);
    assert_eq!(
        lake_type(&DataType::Timestamp(TimeUnit::Millisecond, None)),
        DataType::Timestamp(TimeUnit::Microsecond, None)
    );
}
