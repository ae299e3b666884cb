//! Decoding Protobuf messages in the Confluent wire format, typed by the `.proto` schemas of a
//! schema registry (`run.input.format = "protobuf"`).
//!
//! A schema is compiled once per id (protox, a Protobuf compiler in Rust, with Google's
//! well-known types; a registry may hold it as `.proto` text or, as Confluent's Python
//! serializer registers it, as a base64 `FileDescriptorProto`). The columns are the fields of
//! the first message type of the subject's latest schema when the pipeline starts. Each
//! message names its type by the wire format's message indexes (after the schema id), is
//! decoded by its writer schema (prost-reflect), and reaches the columns through Protobuf's
//! JSON mapping (field names as in the `.proto`, defaults written out) and the JSON decoder.
//!
//! | Protobuf | column |
//! |---|---|
//! | `double`, `float` | double, float |
//! | `int32`/`sint32`/`sfixed32`, `int64`/`sint64`/`sfixed64` | int, bigint |
//! | `uint32`/`fixed32`, `uint64`/`fixed64` | unsigned int, unsigned bigint |
//! | `bool`, `string`, enums | boolean, string, string (the value's name) |
//! | `bytes` | string (base64, as the JSON mapping writes it) |
//! | a message | struct; `google.protobuf.Timestamp` a UTC timestamp, wrappers their value |
//! | `repeated`, `map<k, v>` | list, map of string to `v` |
//!
//! Every column is nullable (a message field may be unset). A message of another type than the
//! columns', or whose schema's fields changed type, is refused (`decode`, saying which); new
//! fields of the subject's latest version become columns, as for Avro.

use super::decode::{Records, Refused};
use super::decode_json::{JsonDecoder, Payload};
use super::decode_registry::{Subject, Writers};
use super::json_schema::{new_properties, readable};
use crate::config::InputConfig;
use crate::source::RawMessage;
use crate::{Error, Kind, Result};
use arrow::datatypes::{DataType, Field, Fields, Schema, TimeUnit};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind as Pb, MessageDescriptor};
use prost_reflect::{FileDescriptor, SerializeOptions};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};
use rtlake_registry::SchemaType;
use std::sync::Arc;

/// How deep messages may nest in the columns (a recursive message type would not end).
const DEPTH: usize = 16;

/// The decoder of a Protobuf input.
pub struct ProtobufDecoder {
    pub(crate) json: JsonDecoder,
    subject: Subject,
    columns: Schema,
    /// The columns' message type (its full name).
    reader_type: String,
    /// The writer schemas met: each read schema's file.
    writers: Writers<FileDescriptor>,
}

impl ProtobufDecoder {
    /// The decoder of `input` (reading `topic`): asks the registry for the subject's latest
    /// schema, waiting a while if it does not answer.
    pub async fn open(input: &InputConfig, topic: &str) -> Result<Self> {
        let (subject, latest) = Subject::open(input, topic, SchemaType::Protobuf).await?;
        let bad = |e: String| {
            Error::new(
                Kind::Config,
                format!(
                    "subject {}'s latest schema (id {}, version {}): {e}",
                    subject.name, latest.id, latest.version
                ),
            )
        };
        let file = compile(&latest.schema.schema).map_err(bad)?;
        let message = file
            .messages()
            .next()
            .ok_or_else(|| bad("the schema defines no message".into()))?;
        let columns = Schema::new(message_fields(&message, 0).map_err(bad)?);
        tracing::info!(
            subject = %subject.name,
            id = latest.id,
            message = message.full_name(),
            columns = columns.fields().len(),
            "protobuf input: the columns are the first message of the subject's latest schema"
        );
        Ok(Self {
            json: JsonDecoder::of(columns.clone(), input.event_time.as_deref())?,
            reader_type: message.full_name().to_string(),
            writers: Writers::new(latest.id, file),
            subject,
            columns,
        })
    }

    /// Fetches and compiles the schemas `msgs` name that were not seen before, and decides for
    /// each whether its messages can be read.
    pub async fn prepare(&mut self, msgs: &[RawMessage]) -> Result<()> {
        let (columns, subject, reader_type) = (&self.columns, &self.subject, &self.reader_type);
        self.writers
            .learn(subject, msgs, "protobuf", |id, s| {
                let file = compile(&s.schema).map_err(|e| format!("schema id {id}: {e}"))?;
                let new = check(subject, columns, reader_type, id, &file)?;
                Ok((file, new))
            })
            .await
    }

    /// Decodes an epoch's messages (after [`ProtobufDecoder::prepare`]; see
    /// [`super::decode::Decoder::decode`]).
    pub fn decode(
        &self,
        topic: &str,
        msgs: &[RawMessage],
        now: DateTime<Utc>,
        max_future: std::time::Duration,
    ) -> Result<(Records, Vec<Refused>)> {
        let json = msgs
            .iter()
            .map(|m| {
                Ok(self
                    .writers
                    .of(m)?
                    .and_then(|(file, id, rest)| decode_one(file, id, rest, &self.reader_type)))
            })
            .collect::<Result<Vec<std::result::Result<Vec<u8>, String>>>>()?;
        let payloads: Vec<Payload> = json
            .iter()
            .map(|j| j.as_deref().map_err(Clone::clone))
            .collect();
        self.json
            .decode_payloads(topic, msgs, &payloads, now, max_future)
    }
}

/// Whether writer schema `id` (`file`) has the columns' message type (`reader_type`) and it
/// reads as the columns; its new fields, if any.
fn check(
    subject: &Subject,
    columns: &Schema,
    reader_type: &str,
    id: u32,
    file: &FileDescriptor,
) -> std::result::Result<Option<Vec<String>>, String> {
    let Some(m) = file.parent_pool().get_message_by_name(reader_type) else {
        return Err(format!(
            "schema id {id} has no message {reader_type}, the columns' type"
        ));
    };
    let writer = Schema::new(message_fields(&m, 0).map_err(|e| format!("schema id {id}: {e}"))?);
    readable(columns, &writer, "field").map_err(|e| {
        format!(
            "schema id {id} cannot be read as subject {}'s schema (id {}): {e}",
            subject.name, subject.reader_id
        )
    })?;
    Ok(new_properties(columns, &writer))
}

/// One message's JSON: its type by the message indexes, its body by that type.
fn decode_one(
    file: &FileDescriptor,
    id: u32,
    bytes: &[u8],
    reader_type: &str,
) -> std::result::Result<Vec<u8>, String> {
    let (path, body) = message_indexes(bytes)
        .ok_or_else(|| format!("the message's type indexes (schema id {id}) are cut short"))?;
    let desc = message_at(file, &path).ok_or_else(|| {
        format!(
            "schema id {id} has no message at indexes {path:?} (the wire format's message indexes)"
        )
    })?;
    if desc.full_name() != reader_type {
        return Err(format!(
            "the message is a {}, and the columns are a {reader_type}'s",
            desc.full_name()
        ));
    }
    let msg = DynamicMessage::decode(desc, body)
        .map_err(|e| format!("the message is not one {reader_type} (schema id {id}): {e}"))?;
    let mut out = serde_json::Serializer::new(Vec::with_capacity(body.len() * 2));
    let options = SerializeOptions::new()
        .stringify_64_bit_integers(false)
        .use_proto_field_name(true)
        .skip_default_fields(false);
    msg.serialize_with_options(&mut out, &options)
        .map_err(|e| format!("the message as JSON: {e}"))?;
    Ok(out.into_inner())
}

/// The wire format's message indexes after the schema id (a count, then as many indexes, each
/// a zig-zag varint; a count of 0 is the first message, `[0]`), and the body after them.
fn message_indexes(bytes: &[u8]) -> Option<(Vec<usize>, &[u8])> {
    let mut at = 0;
    let mut varint = || {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *bytes.get(at)?;
            at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some((v >> 1) as i64 ^ -((v & 1) as i64));
            }
        }
        None
    };
    let n = varint()?;
    let path = if n == 0 {
        vec![0]
    } else {
        (0..n)
            .map(|_| varint().and_then(|i| usize::try_from(i).ok()))
            .collect::<Option<Vec<usize>>>()?
    };
    Some((path, &bytes[at..]))
}

/// The message type at `path` in `file`: the top-level message, then nested ones.
fn message_at(file: &FileDescriptor, path: &[usize]) -> Option<MessageDescriptor> {
    let (first, rest) = path.split_first()?;
    let mut m = file.messages().nth(*first)?;
    for i in rest {
        let next = m.child_messages().nth(*i)?;
        m = next;
    }
    Some(m)
}

/// A registry's Protobuf schema, compiled: `.proto` text, or a base64 `FileDescriptorProto`.
fn compile(schema: &str) -> std::result::Result<FileDescriptor, String> {
    const NAME: &str = "registered.proto";
    let text = schema.trim();
    let file = match base64::engine::general_purpose::STANDARD.decode(text) {
        Ok(bytes) if !text.contains(char::is_whitespace) => {
            let mut f = File::decode_file_descriptor_proto(bytes.as_slice())
                .map_err(|e| format!("a base64 schema that is not a FileDescriptorProto: {e}"))?;
            f = rename(f, NAME);
            f
        }
        _ => {
            File::from_source(NAME, text).map_err(|e| format!("the .proto does not parse: {e}"))?
        }
    };
    let mut resolver = ChainFileResolver::new();
    resolver.add(One(file));
    resolver.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler
        .open_file(NAME)
        .map_err(|e| format!("the .proto does not compile (imports other than Google's well-known types are not read): {e}"))?;
    compiler
        .descriptor_pool()
        .get_file_by_name(NAME)
        .ok_or_else(|| "the compiled schema is missing".into())
}

/// A file under another name (a descriptor carries its own, the compiler asks for ours).
fn rename(f: File, name: &str) -> File {
    let mut proto = f.file_descriptor_proto().clone();
    proto.name = Some(name.into());
    File::from_file_descriptor_proto(proto)
}

/// A resolver of the one registered file.
struct One(File);

impl FileResolver for One {
    fn open_file(&self, name: &str) -> std::result::Result<File, protox::Error> {
        if name == self.0.name() {
            Ok(self.0.clone())
        } else {
            Err(protox::Error::file_not_found(name))
        }
    }
}

/// The columns of message type `m`.
fn message_fields(m: &MessageDescriptor, depth: usize) -> std::result::Result<Vec<Field>, String> {
    if depth > DEPTH {
        return Err(format!(
            "message {} nests too deep (a recursive type?)",
            m.full_name()
        ));
    }
    m.fields()
        .map(|f| Ok(Field::new(f.name(), field_type(&f, depth)?, true)))
        .collect()
}

fn field_type(f: &FieldDescriptor, depth: usize) -> std::result::Result<DataType, String> {
    if f.is_map() {
        let Pb::Message(entry) = f.kind() else {
            return Err(format!("map field {} has no entry type", f.full_name()));
        };
        let value = kind_type(&entry.map_entry_value_field().kind(), depth)?;
        let entries = Field::new(
            "key_value",
            DataType::Struct(Fields::from(vec![
                Field::new("key", DataType::Utf8, false),
                Field::new("value", value, true),
            ])),
            false,
        );
        return Ok(DataType::Map(Arc::new(entries), false));
    }
    let t = kind_type(&f.kind(), depth)?;
    Ok(if f.is_list() {
        DataType::List(Arc::new(Field::new("element", t, true)))
    } else {
        t
    })
}

fn kind_type(k: &Pb, depth: usize) -> std::result::Result<DataType, String> {
    Ok(match k {
        Pb::Double => DataType::Float64,
        Pb::Float => DataType::Float32,
        Pb::Int32 | Pb::Sint32 | Pb::Sfixed32 => DataType::Int32,
        Pb::Int64 | Pb::Sint64 | Pb::Sfixed64 => DataType::Int64,
        Pb::Uint32 | Pb::Fixed32 => DataType::UInt32,
        Pb::Uint64 | Pb::Fixed64 => DataType::UInt64,
        Pb::Bool => DataType::Boolean,
        Pb::String | Pb::Bytes | Pb::Enum(_) => DataType::Utf8,
        Pb::Message(m) => match m.full_name() {
            "google.protobuf.Timestamp" => {
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            }
            "google.protobuf.DoubleValue" => DataType::Float64,
            "google.protobuf.FloatValue" => DataType::Float32,
            "google.protobuf.Int64Value" => DataType::Int64,
            "google.protobuf.UInt64Value" => DataType::UInt64,
            "google.protobuf.Int32Value" => DataType::Int32,
            "google.protobuf.UInt32Value" => DataType::UInt32,
            "google.protobuf.BoolValue" => DataType::Boolean,
            "google.protobuf.StringValue" | "google.protobuf.BytesValue" => DataType::Utf8,
            _ => DataType::Struct(Fields::from(message_fields(m, depth + 1)?)),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_reflect::Value;

    const ORDER: &str = r#"
        syntax = "proto3";
        package shop;
        import "google/protobuf/timestamp.proto";
        message Order {
          string order_id = 1;
          int64 quantity = 2;
          double amount = 3;
          google.protobuf.Timestamp ordered_at = 4;
          Status status = 5;
          Address address = 6;
          repeated string tags = 7;
          map<string, int64> attrs = 8;
          optional string coupon = 9;
          message Address { string city = 1; string zip = 2; }
          enum Status { NEW = 0; PAID = 1; SHIPPED = 2; }
        }
    "#;

    #[test]
    fn a_proto_compiles_to_columns_and_a_message_to_its_json() {
        let file = compile(ORDER).unwrap();
        let m = file.messages().next().unwrap();
        let cols = Schema::new(message_fields(&m, 0).unwrap());
        let t = |n: &str| cols.field_with_name(n).unwrap().data_type().clone();
        assert_eq!(t("quantity"), DataType::Int64);
        assert_eq!(
            t("ordered_at"),
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        assert_eq!(t("status"), DataType::Utf8);
        assert!(matches!(t("address"), DataType::Struct(_)));
        assert!(matches!(t("tags"), DataType::List(_)));
        assert!(matches!(t("attrs"), DataType::Map(..)));

        let mut msg = DynamicMessage::new(m.clone());
        msg.set_field_by_name("order_id", Value::String("o-1".into()));
        msg.set_field_by_name("quantity", Value::I64(3));
        msg.set_field_by_name("status", Value::EnumNumber(1));
        let body = prost_reflect::prost::Message::encode_to_vec(&msg);
        // A count of 0: the file's first message.
        let mut framed = vec![0];
        framed.extend(&body);
        let json = decode_one(&file, 1, &framed, "shop.Order").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["order_id"], "o-1");
        assert_eq!(v["quantity"], 3);
        assert_eq!(v["status"], "PAID");
        // Message [0, 0] is nested in Order (its map's entry type): not the columns' type.
        let mut nested = vec![4, 0, 0];
        nested.extend(&body);
        let e = decode_one(&file, 1, &nested, "shop.Order").unwrap_err();
        assert!(
            e.contains("is a shop.Order.AttrsEntry, and the columns are a shop.Order's"),
            "{e}"
        );
        assert!(decode_one(&file, 1, &[0, 0x0a, 0x05, b'o'], "shop.Order").is_err());
    }

    #[test]
    fn a_base64_descriptor_compiles_as_the_text_does() {
        let file = compile(ORDER).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(
            prost_reflect::prost::Message::encode_to_vec(file.file_descriptor_proto()),
        );
        let again = compile(&b64).unwrap();
        assert_eq!(again.messages().next().unwrap().full_name(), "shop.Order");
        let e = compile("syntax = \"proto3\"; import \"other.proto\"; message A { B b = 1; }")
            .unwrap_err();
        assert!(e.contains("other.proto"), "{e}");
    }
}
