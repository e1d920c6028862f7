//! Protobuf: .proto text compiled at run time (protox; imports are the
//! registry references, by file name, plus Google's well-known types),
//! values decoded and encoded by prost-reflect in the proto3 JSON mapping,
//! with the proto field names and 64-bit integers as JSON numbers
//! (MAPPING.md says why).
use super::codec::{CodecError, Fail, RegistryColumn, SchemaType, column_name};
use super::wire;
use crate::contract::mapper::ColumnType;
use prost::Message as _;
use prost_reflect::{
    DeserializeOptions, DynamicMessage, FileDescriptor, Kind, MessageDescriptor, ReflectMessage, SerializeOptions,
};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};
use serde_json::Value;
use std::collections::HashMap;

/// The file name the registered schema itself compiles under.
const MAIN_FILE: &str = "schema.proto";

const SERIALIZE: SerializeOptions = SerializeOptions::new()
    .use_proto_field_name(true)
    .stringify_64_bit_integers(false)
    .skip_default_fields(false);

const DESERIALIZE: DeserializeOptions = DeserializeOptions::new().deny_unknown_fields(true);

#[derive(Debug, Clone)]
pub struct Protobuf {
    file: FileDescriptor,
    /// The message `encode` writes and its message indexes.
    message: MessageDescriptor,
    indexes: Vec<usize>,
}

/// The schema and its references, by file name.
struct Sources(HashMap<String, String>);

impl FileResolver for Sources {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match self.0.get(name) {
            Some(source) => File::from_source(name, source),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

fn schema_error(reason: impl Into<String>) -> CodecError {
    CodecError::Schema {
        kind: SchemaType::Protobuf,
        reason: reason.into(),
    }
}

impl Protobuf {
    pub fn parse(text: &str, references: &[(String, String)]) -> Result<Self, CodecError> {
        let mut sources: HashMap<String, String> = references.iter().cloned().collect();
        sources.insert(MAIN_FILE.to_string(), text.to_string());
        let mut resolver = ChainFileResolver::new();
        resolver.add(Sources(sources));
        resolver.add(GoogleFileResolver::new());
        let mut compiler = protox::Compiler::with_file_resolver(resolver);
        compiler.open_file(MAIN_FILE).map_err(|e| schema_error(e.to_string()))?;
        let file = compiler
            .descriptor_pool()
            .get_file_by_name(MAIN_FILE)
            .ok_or_else(|| schema_error("the compiled schema is missing (a protox fault)"))?;
        let message = file
            .messages()
            .next()
            .ok_or_else(|| schema_error("the schema defines no message"))?;
        Ok(Protobuf {
            file,
            message,
            indexes: vec![0],
        })
    }

    /// Encode as the message of this full name instead of the first one.
    pub fn with_message(self, full_name: &str) -> Result<Self, CodecError> {
        let message = self
            .file
            .parent_pool()
            .get_message_by_name(full_name)
            .filter(|m| m.parent_file() == self.file)
            .ok_or_else(|| {
                let names: Vec<String> = self
                    .file
                    .parent_pool()
                    .all_messages()
                    .filter(|m| m.parent_file() == self.file)
                    .map(|m| m.full_name().to_string())
                    .collect();
                schema_error(format!(
                    "the schema has no message {full_name:?} (it has {})",
                    names.join(", ")
                ))
            })?;
        let indexes = indexes_of(&self.file, &message);
        Ok(Protobuf {
            message,
            indexes,
            ..self
        })
    }

    /// The message the indexes name: `[i]` is the file's i-th message,
    /// `[i, j]` the j-th message nested in it, and so on.
    fn message_at(&self, indexes: &[usize]) -> Result<MessageDescriptor, Fail> {
        let not_there = || {
            Fail::new(format!(
                "the message indexes {indexes:?} name no message of the schema (was the value written with another schema?)"
            ))
        };
        let (&first, rest) = indexes.split_first().ok_or_else(not_there)?;
        let mut message = self.file.messages().nth(first).ok_or_else(not_there)?;
        for &i in rest {
            let child = message.child_messages().nth(i);
            message = child.ok_or_else(not_there)?;
        }
        Ok(message)
    }

    fn message_of(&self, mut body: &[u8]) -> Result<DynamicMessage, Fail> {
        let indexes = wire::read_message_indexes(&mut body).map_err(|e| Fail::new(e.to_string()))?;
        let descriptor = if indexes == self.indexes {
            self.message.clone()
        } else {
            self.message_at(&indexes)?
        };
        DynamicMessage::decode(descriptor.clone(), body)
            .map_err(|e| Fail::new(format!("not a valid {} message: {e}", descriptor.full_name())))
    }

    pub fn decode(&self, body: &[u8]) -> Result<Value, Fail> {
        let message = self.message_of(body)?;
        message
            .serialize_with_options(serde_json::value::Serializer, &SERIALIZE)
            .map_err(|e| Fail::new(format!("{} has no JSON form: {e}", message.descriptor().full_name())))
    }

    /// The JSON text straight from the message, without a `Value` between.
    pub fn decode_json_into(&self, body: &[u8], out: &mut Vec<u8>) -> Result<(), Fail> {
        let message = self.message_of(body)?;
        message
            .serialize_with_options(&mut serde_json::Serializer::new(out), &SERIALIZE)
            .map_err(|e| Fail::new(format!("{} has no JSON form: {e}", message.descriptor().full_name())))
    }

    pub fn encode(&self, value: &Value, out: &mut Vec<u8>) -> Result<(), Fail> {
        let message = DynamicMessage::deserialize_with_options(self.message.clone(), value, &DESERIALIZE)
            .map_err(|e| Fail::new(format!("not a {} in proto3 JSON: {e}", self.message.full_name())))?;
        wire::write_message_indexes(&self.indexes, out);
        message
            .encode(out)
            .map_err(|e| Fail::new(format!("{} does not encode: {e}", self.message.full_name())))
    }

    pub fn columns(&self) -> Result<Vec<RegistryColumn>, CodecError> {
        self.message
            .fields()
            .map(|field| {
                let name = column_name(field.name()).ok_or_else(|| {
                    CodecError::Columns(format!(
                        "message {}: field {:?} gives no column name",
                        self.message.full_name(),
                        field.name()
                    ))
                })?;
                let (kind, wrapper) = if field.is_list() || field.is_map() {
                    (ColumnType::Json, false)
                } else {
                    kind(&field.kind())
                };
                Ok(RegistryColumn {
                    name,
                    field: field.name().to_string(),
                    kind,
                    // Fields with presence (optional, messages, oneof members) may be absent.
                    nullable: wrapper || field.supports_presence(),
                })
            })
            .collect()
    }
}

/// The column type of a field kind, and whether it is a message that may
/// be absent (then nullable).
fn kind(kind: &Kind) -> (ColumnType, bool) {
    let scalar = match kind {
        Kind::Double | Kind::Float => ColumnType::Float,
        Kind::Int32
        | Kind::Int64
        | Kind::Uint32
        | Kind::Sint32
        | Kind::Sint64
        | Kind::Fixed32
        | Kind::Sfixed32
        | Kind::Sfixed64 => ColumnType::Integer,
        // Above 2^63 does not fit bigint.
        Kind::Uint64 | Kind::Fixed64 => ColumnType::Numeric,
        Kind::Bool => ColumnType::Boolean,
        Kind::String | Kind::Enum(_) => ColumnType::Text,
        Kind::Bytes => ColumnType::Bytea,
        Kind::Message(message) => {
            let kind = match message.full_name() {
                "google.protobuf.Timestamp" => ColumnType::Timestamp,
                "google.protobuf.DoubleValue" | "google.protobuf.FloatValue" => ColumnType::Float,
                "google.protobuf.Int64Value" | "google.protobuf.Int32Value" | "google.protobuf.UInt32Value" => {
                    ColumnType::Integer
                }
                "google.protobuf.UInt64Value" => ColumnType::Numeric,
                "google.protobuf.BoolValue" => ColumnType::Boolean,
                "google.protobuf.StringValue" | "google.protobuf.Duration" => ColumnType::Text,
                "google.protobuf.BytesValue" => ColumnType::Bytea,
                _ => ColumnType::Json,
            };
            return (kind, true);
        }
    };
    (scalar, false)
}

/// The message indexes of a message of `file` (the inverse of `message_at`).
fn indexes_of(file: &FileDescriptor, message: &MessageDescriptor) -> Vec<usize> {
    let mut chain = vec![message.clone()];
    while let Some(parent) = chain.last().and_then(MessageDescriptor::parent_message) {
        chain.push(parent);
    }
    chain.reverse();
    let mut indexes = Vec::with_capacity(chain.len());
    let top = file.messages().position(|m| m == chain[0]).unwrap_or(0);
    indexes.push(top);
    for pair in chain.windows(2) {
        indexes.push(pair[0].child_messages().position(|m| m == pair[1]).unwrap_or(0));
    }
    indexes
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROTO: &str = r#"
        syntax = "proto3";
        package shop;
        import "google/protobuf/timestamp.proto";
        message Order {
          int64 id = 1;
          string item = 2;
          google.protobuf.Timestamp at = 3;
          message Line { string sku = 1; uint32 count = 2; }
          repeated Line lines = 4;
          optional double price = 5;
        }
        message Refund { int64 order_id = 1; }
    "#;

    #[test]
    fn the_first_message_is_the_default_and_others_can_be_chosen() {
        let p = Protobuf::parse(PROTO, &[]).unwrap();
        assert_eq!(p.message.full_name(), "shop.Order");
        let line = Protobuf::parse(PROTO, &[])
            .unwrap()
            .with_message("shop.Order.Line")
            .unwrap();
        assert_eq!(line.indexes, [0, 0]);
        let refund = p.with_message("shop.Refund").unwrap();
        assert_eq!(refund.indexes, [1]);
        let mut out = Vec::new();
        refund.encode(&serde_json::json!({"order_id": 7}), &mut out).unwrap();
        assert_eq!(out, [2, 2, 8, 7]);
        assert_eq!(refund.decode(&out).unwrap(), serde_json::json!({"order_id": 7}));
        let e = Protobuf::parse(PROTO, &[])
            .unwrap()
            .with_message("shop.Nope")
            .unwrap_err()
            .to_string();
        assert!(e.contains("shop.Refund"), "{e}");
    }

    #[test]
    fn values_round_trip_with_proto_names_and_numbers() {
        let p = Protobuf::parse(PROTO, &[]).unwrap();
        let value = serde_json::json!({"id": 9007199254740993i64, "item": "tea", "at": "2026-12-03T10:00:00.123Z",
            "lines": [{"sku": "a", "count": 2}], "price": 1.5});
        let mut out = Vec::new();
        p.encode(&value, &mut out).unwrap();
        assert_eq!(out[0], 0, "[0] is the single byte 0");
        assert_eq!(p.decode(&out).unwrap(), value);
    }

    #[test]
    fn columns_follow_presence_and_well_known_types() {
        let columns = Protobuf::parse(PROTO, &[]).unwrap().columns().unwrap();
        let summary: Vec<(&str, ColumnType, bool)> =
            columns.iter().map(|c| (c.name.as_str(), c.kind, c.nullable)).collect();
        assert_eq!(
            summary,
            [
                ("id", ColumnType::Integer, false),
                ("item", ColumnType::Text, false),
                ("at", ColumnType::Timestamp, true),
                ("lines", ColumnType::Json, false),
                ("price", ColumnType::Float, true),
            ]
        );
    }

    #[test]
    fn imports_come_from_the_references_and_errors_name_the_problem() {
        let common = (
            "common.proto".to_string(),
            "syntax = \"proto3\"; package c; message Money { int64 cents = 1; }".to_string(),
        );
        let text = "syntax = \"proto3\"; import \"common.proto\"; message Price { c.Money amount = 1; }";
        let p = Protobuf::parse(text, &[common]).unwrap();
        assert_eq!(p.message.full_name(), "Price");
        let e = Protobuf::parse(text, &[]).unwrap_err().to_string();
        assert!(e.contains("common.proto"), "{e}");
        let e = Protobuf::parse("syntax = \"proto3\"; message { }", &[])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("the Protobuf schema is not valid"), "{e}");
    }

    #[test]
    fn bad_bodies_are_refused_with_a_reason() {
        let p = Protobuf::parse(PROTO, &[]).unwrap();
        let e = p.decode(&[2, 8]).unwrap_err();
        assert!(e.reason().contains("[4]"), "{}", e.reason());
        let e = p.decode(&[0, 0x0a, 5, b'a']).unwrap_err();
        assert!(e.reason().contains("shop.Order"), "{}", e.reason());
        let mut out = Vec::new();
        let e = p.encode(&serde_json::json!({"nope": 1}), &mut out).unwrap_err();
        assert!(e.reason().contains("nope"), "{}", e.reason());
    }
}
