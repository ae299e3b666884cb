//! A JSON Schema document (as a registry holds it for `run.input.format = "json-schema"`) as
//! Arrow columns: the top-level object's properties, each nullable unless `required` and
//! not allowing `null`.
//!
//! | JSON Schema | column |
//! |---|---|
//! | `string` | string; `format: date-time` a timestamp (µs, UTC), `format: date` a date |
//! | `integer` / `number` / `boolean` | bigint / double / boolean |
//! | `object` with `properties` | struct |
//! | `object` with only `additionalProperties: {schema}` | map of string to that |
//! | `array` with `items: {schema}` | list |
//! | `enum` / `const` of strings | string |
//! | `["null", t]`, `oneOf`/`anyOf` of `{"type": "null"}` and one other | nullable `t` |
//! | `$ref` to `#/definitions/..` or `#/$defs/..` | what it refers to |
//!
//! Anything else (a union of two non-null types, an object with no properties, a recursive
//! definition) has no column type: the schema is refused, naming the property.

use arrow::datatypes::{DataType, Field, Fields, Schema, TimeUnit};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

/// How deep `$ref`s may nest before a definition is taken as recursive.
const DEPTH: usize = 32;

/// The columns of JSON Schema document `doc`.
pub fn columns(doc: &str) -> Result<Schema, String> {
    let root: Value =
        serde_json::from_str(doc).map_err(|e| format!("not a JSON Schema document: {e}"))?;
    let doc = Doc {
        root: &root,
        order: key_order(doc).map_err(|e| format!("not a JSON Schema document: {e}"))?,
    };
    let (t, _) = column_type(&doc, &root, "", "the schema", 0)?;
    match t {
        DataType::Struct(fields) => Ok(Schema::new(fields)),
        other => Err(format!(
            "the schema describes {other}, not an object with properties (one column each)"
        )),
    }
}

/// A parsed document, with the order of each object's keys (serde_json's maps are sorted;
/// columns keep the order of the properties as written).
struct Doc<'a> {
    root: &'a Value,
    /// Each object's keys in the document's order, by its JSON pointer.
    order: HashMap<String, Vec<String>>,
}

/// The column type of schema `node` (at JSON pointer `ptr`, named `path` in errors) and
/// whether it allows null.
fn column_type(
    doc: &Doc,
    node: &Value,
    ptr: &str,
    path: &str,
    depth: usize,
) -> Result<(DataType, bool), String> {
    let root = doc.root;
    if depth > DEPTH {
        return Err(format!("{path}: its definition refers to itself"));
    }
    let Some(obj) = node.as_object() else {
        return Err(format!("{path}: {node} is not a schema (an object)"));
    };
    if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
        let target = r
            .strip_prefix('#')
            .and_then(|p| root.pointer(p))
            .ok_or_else(|| {
                format!("{path}: $ref {r} is not a definition of this document (#/definitions/.. or #/$defs/..)")
            })?;
        return column_type(doc, target, &r[1..], path, depth + 1);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(branches) = obj.get(key).and_then(Value::as_array) {
            let (nulls, others): (Vec<(usize, &Value)>, Vec<(usize, &Value)>) = branches
                .iter()
                .enumerate()
                .partition(|(_, b)| b.get("type") == Some(&"null".into()));
            return match others.as_slice() {
                [(i, one)] => {
                    let at = format!("{ptr}/{key}/{i}");
                    let (t, nullable) = column_type(doc, one, &at, path, depth + 1)?;
                    Ok((t, nullable || !nulls.is_empty()))
                }
                _ => Err(format!(
                    "{path}: {key} of {} schemas other than null has no column type",
                    others.len()
                )),
            };
        }
    }
    let (name, nullable) = match obj.get("type") {
        Some(Value::String(t)) => (t.clone(), false),
        Some(Value::Array(ts)) => {
            let names: Vec<&str> = ts.iter().filter_map(Value::as_str).collect();
            let others: Vec<&str> = names.iter().copied().filter(|t| *t != "null").collect();
            match others.as_slice() {
                [one] => (one.to_string(), others.len() < names.len()),
                _ => {
                    return Err(format!(
                        "{path}: type {} has no column type (one type, or one and null)",
                        Value::from(names)
                    ));
                }
            }
        }
        Some(other) => return Err(format!("{path}: type {other} is not a type name")),
        None if obj.contains_key("properties") => ("object".into(), false),
        None if obj.get("enum").or(obj.get("const")).is_some() => {
            let values: Vec<&Value> = match (obj.get("enum"), obj.get("const")) {
                (Some(Value::Array(vs)), _) => vs.iter().collect(),
                (_, Some(v)) => vec![v],
                _ => Vec::new(),
            };
            if values.iter().all(|v| v.is_string() || v.is_null()) {
                let nullable = values.iter().any(|v| v.is_null());
                return Ok((DataType::Utf8, nullable));
            }
            return Err(format!("{path}: an enum of other values than strings"));
        }
        None => return Err(format!("{path}: the schema names no type")),
    };
    let t = match name.as_str() {
        "string" => match obj.get("format").and_then(Value::as_str) {
            Some("date-time") => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Some("date") => DataType::Date32,
            _ => DataType::Utf8,
        },
        "integer" => DataType::Int64,
        "number" => DataType::Float64,
        "boolean" => DataType::Boolean,
        "object" => object_type(doc, obj, ptr, path, depth)?,
        "array" => {
            let items = obj
                .get("items")
                .ok_or_else(|| format!("{path}: an array without items has no column type"))?;
            let at = format!("{ptr}/items");
            let (t, _) = column_type(doc, items, &at, &format!("{path}[]"), depth + 1)?;
            // Named as Delta and Parquet name them, so that batches match the table's schema.
            DataType::List(Arc::new(Field::new("element", t, true)))
        }
        "null" => return Err(format!("{path}: a property that is always null")),
        other => return Err(format!("{path}: type {other} is not a JSON Schema type")),
    };
    Ok((t, nullable))
}

/// An object's struct of properties, or map of `additionalProperties`.
fn object_type(
    doc: &Doc,
    obj: &serde_json::Map<String, Value>,
    ptr: &str,
    path: &str,
    depth: usize,
) -> Result<DataType, String> {
    let props = obj.get("properties").and_then(Value::as_object);
    match (props, obj.get("additionalProperties")) {
        (Some(props), _) if !props.is_empty() => {
            let required: Vec<&str> = obj
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut fields = Vec::with_capacity(props.len());
            let at = format!("{ptr}/properties");
            let names = doc.order.get(&at).cloned().unwrap_or_default();
            for name in &names {
                let Some(p) = props.get(name) else { continue };
                let at = if path == "the schema" {
                    format!("property {name}")
                } else {
                    format!("{path}.{name}")
                };
                let ptr = format!("{ptr}/properties/{}", escape(name));
                let (t, nullable) = column_type(doc, p, &ptr, &at, depth + 1)?;
                fields.push(Field::new(
                    name,
                    t,
                    nullable || !required.contains(&name.as_str()),
                ));
            }
            Ok(DataType::Struct(Fields::from(fields)))
        }
        (_, Some(v @ Value::Object(_))) => {
            let at = format!("{ptr}/additionalProperties");
            let (t, _) = column_type(doc, v, &at, &format!("{path}{{}}"), depth + 1)?;
            let entries = Field::new(
                "key_value",
                DataType::Struct(Fields::from(vec![
                    Field::new("key", DataType::Utf8, false),
                    Field::new("value", t, true),
                ])),
                false,
            );
            Ok(DataType::Map(Arc::new(entries), false))
        }
        _ => Err(format!(
            "{path}: an object with no properties (nor an additionalProperties schema) has no column type"
        )),
    }
}

/// A key as a JSON pointer writes it.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The keys of every object of JSON text `doc`, in the order written, by JSON pointer.
fn key_order(doc: &str) -> Result<HashMap<String, Vec<String>>, serde_json::Error> {
    struct Seed<'a> {
        ptr: String,
        out: &'a RefCell<HashMap<String, Vec<String>>>,
    }
    impl<'de> DeserializeSeed<'de> for Seed<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Seed<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut keys = Vec::new();
            while let Some(k) = map.next_key::<String>()? {
                let ptr = format!("{}/{}", self.ptr, escape(&k));
                map.next_value_seed(Seed { ptr, out: self.out })?;
                keys.push(k);
            }
            self.out.borrow_mut().insert(self.ptr, keys);
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut i = 0;
            while seq
                .next_element_seed(Seed {
                    ptr: format!("{}/{i}", self.ptr),
                    out: self.out,
                })?
                .is_some()
            {
                i += 1;
            }
            Ok(())
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
    }
    let out = RefCell::new(HashMap::new());
    let mut de = serde_json::Deserializer::from_str(doc);
    Seed {
        ptr: String::new(),
        out: &out,
    }
    .deserialize(&mut de)?;
    Ok(out.into_inner())
}

/// Whether messages written with `writer`'s columns read as `reader`'s: every column both
/// have is of the same type (or a whole number read as a double), and every column the
/// reader requires, the writer requires too. `Err` says which column does not, calling it a
/// `noun` (`property` for JSON Schema, `field` for Protobuf).
pub fn readable(reader: &Schema, writer: &Schema, noun: &str) -> Result<(), String> {
    for r in reader.fields() {
        match writer.field_with_name(r.name()) {
            Ok(w) => {
                let same = strip(w.data_type()) == strip(r.data_type())
                    || (w.data_type() == &DataType::Int64 && r.data_type() == &DataType::Float64);
                if !same {
                    return Err(format!(
                        "{noun} {} is {} in it, {} in the columns",
                        r.name(),
                        w.data_type(),
                        r.data_type()
                    ));
                }
                if !r.is_nullable() && w.is_nullable() {
                    return Err(format!(
                        "{noun} {} may be missing or null in it, and the columns require it",
                        r.name()
                    ));
                }
            }
            Err(_) if !r.is_nullable() => {
                return Err(format!(
                    "it lacks {noun} {}, which the columns require",
                    r.name()
                ));
            }
            Err(_) => {}
        }
    }
    Ok(())
}

/// A type with every nested field taken as nullable and a struct's fields in name order (JSON
/// is read by name: neither is compared).
fn strip(t: &DataType) -> DataType {
    let f = |f: &arrow::datatypes::FieldRef| Field::new(f.name(), strip(f.data_type()), true);
    match t {
        DataType::Struct(fs) => {
            let mut fs: Vec<Field> = fs.iter().map(f).collect();
            fs.sort_by(|a, b| a.name().cmp(b.name()));
            DataType::Struct(Fields::from(fs))
        }
        DataType::List(i) => DataType::List(Arc::new(f(i))),
        DataType::Map(e, s) => DataType::Map(Arc::new(f(e)), *s),
        other => other.clone(),
    }
}

/// The properties of `writer` that `reader` lacks, if any.
pub fn new_properties(reader: &Schema, writer: &Schema) -> Option<Vec<String>> {
    let new: Vec<String> = writer
        .fields()
        .iter()
        .filter(|w| reader.field_with_name(w.name()).is_err())
        .map(|w| w.name().clone())
        .collect();
    (!new.is_empty()).then_some(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: &str = r##"{
      "$schema": "http://json-schema.org/draft-07/schema#",
      "title": "Order", "type": "object",
      "properties": {
        "id": {"type": "string"},
        "n": {"type": "integer"},
        "price": {"type": ["number", "null"]},
        "at": {"type": "string", "format": "date-time"},
        "day": {"type": "string", "format": "date"},
        "status": {"enum": ["NEW", "PAID"]},
        "lines": {"type": "array", "items": {"$ref": "#/definitions/Line"}},
        "tags": {"type": "object", "additionalProperties": {"type": "string"}},
        "ship": {"oneOf": [{"type": "null"}, {"$ref": "#/definitions/Address"}]}
      },
      "required": ["id", "n", "at", "status"],
      "definitions": {
        "Line": {"type": "object", "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}}, "required": ["sku"]},
        "Address": {"type": "object", "properties": {"city": {"type": "string"}}}
      }
    }"##;

    #[test]
    fn each_property_is_a_column_of_its_type() {
        let s = columns(ORDER).unwrap();
        let col = |n: &str| s.field_with_name(n).unwrap().clone();
        assert_eq!(col("id"), Field::new("id", DataType::Utf8, false));
        assert_eq!(col("n"), Field::new("n", DataType::Int64, false));
        assert_eq!(col("price"), Field::new("price", DataType::Float64, true));
        assert_eq!(
            col("at").data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        assert!(!col("at").is_nullable());
        assert_eq!(col("day").data_type(), &DataType::Date32);
        assert_eq!(col("status"), Field::new("status", DataType::Utf8, false));
        let DataType::List(item) = col("lines").data_type().clone() else {
            panic!("lines: {:?}", col("lines"))
        };
        let DataType::Struct(line) = item.data_type() else {
            panic!("{item:?}")
        };
        assert_eq!(line[0].name(), "sku");
        assert!(!line[0].is_nullable() && line[1].is_nullable());
        assert!(matches!(col("tags").data_type(), DataType::Map(..)));
        assert!(
            matches!(col("ship").data_type(), DataType::Struct(_)) && col("ship").is_nullable()
        );
    }

    #[test]
    fn a_property_with_no_column_type_is_named() {
        for (doc, want) in [
            (
                r##"{"type":"object","properties":{"a":{"type":["string","integer"]}}}"##,
                "property a: type",
            ),
            (
                r##"{"type":"object","properties":{"b":{"type":"object"}}}"##,
                "property b: an object with no properties",
            ),
            (
                r##"{"type":"object","properties":{"c":{"$ref":"#/definitions/C"}},"definitions":{"C":{"type":"object","properties":{"c":{"$ref":"#/definitions/C"}}}}}"##,
                "refers to itself",
            ),
            (
                r##"{"type":"object","properties":{"d":{"$ref":"other.json"}}}"##,
                "property d: $ref other.json",
            ),
            (r##"{"type":"string"}"##, "not an object"),
        ] {
            let e = columns(doc).unwrap_err();
            assert!(e.contains(want), "{doc}: {e}");
        }
    }

    #[test]
    fn a_writer_reads_as_the_columns_unless_a_shared_property_changed_type() {
        let reader = columns(ORDER).unwrap();
        let mut with_note: serde_json::Value = serde_json::from_str(ORDER).unwrap();
        with_note["properties"]["note"] = serde_json::json!({"type": "string"});
        let newer = columns(&with_note.to_string()).unwrap();
        assert_eq!(readable(&reader, &newer, "property"), Ok(()));
        assert_eq!(
            new_properties(&reader, &newer),
            Some(vec!["note".to_string()])
        );
        let mut bad = with_note.clone();
        bad["properties"]["n"] = serde_json::json!({"type": "string"});
        let e = readable(&reader, &columns(&bad.to_string()).unwrap(), "property").unwrap_err();
        assert!(e.contains("property n is Utf8"), "{e}");
        let mut lax = with_note;
        lax["required"] = serde_json::json!(["id", "at", "status"]);
        let e = readable(&reader, &columns(&lax.to_string()).unwrap(), "property").unwrap_err();
        assert!(e.contains("property n may be missing"), "{e}");
    }
}
