//! The schema registry's encodings: the wire format (`wire`) and the
//! Avro, Protobuf and JSON Schema codecs behind one compiled schema
//! (`codec`). Pure code: no I/O. MAPPING.md documents the JSON each type
//! becomes; DEPENDENCIES.md why these crates.
mod avro;
pub mod client;
pub mod codec;
mod json_schema;
mod protobuf;
mod text;
mod varint;
pub mod wire;
