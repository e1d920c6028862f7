//! Avro: the schema parser, the binary decoder and encoder (MAPPING.md has
//! the JSON each Avro type becomes), and the columns of a record schema.
mod decode;
mod encode;
pub mod schema;

use super::codec::{CodecError, Fail, RegistryColumn, SchemaType, column_name};
use crate::contract::mapper::ColumnType;
use schema::{Node, NodeId, Schema};
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Avro {
    schema: Schema,
}

impl Avro {
    pub fn parse(text: &str, references: &[(String, String)]) -> Result<Self, CodecError> {
        let schema = schema::parse(text, references).map_err(|reason| CodecError::Schema {
            kind: SchemaType::Avro,
            reason,
        })?;
        Ok(Avro { schema })
    }

    pub fn decode(&self, body: &[u8]) -> Result<Value, Fail> {
        decode::decode(&self.schema, body)
    }

    pub fn encode(&self, value: &Value, out: &mut Vec<u8>) -> Result<(), Fail> {
        encode::encode(&self.schema, value, out)
    }

    pub fn columns(&self) -> Result<Vec<RegistryColumn>, CodecError> {
        let Node::Record { name, fields } = &self.schema.nodes[self.schema.root] else {
            return Err(CodecError::Columns(
                "the Avro schema is not a record, so it has no fields to make columns of".into(),
            ));
        };
        fields
            .iter()
            .map(|field| {
                let (kind, nullable) = self.kind(field.schema);
                Ok(RegistryColumn {
                    name: column_name(&field.name).ok_or_else(|| {
                        CodecError::Columns(format!("record {name}: field {:?} gives no column name", field.name))
                    })?,
                    field: field.name.clone(),
                    kind,
                    nullable,
                })
            })
            .collect()
    }

    /// The column type of a field's schema, and whether it may be null.
    fn kind(&self, id: NodeId) -> (ColumnType, bool) {
        let kind = match &self.schema.nodes[id] {
            Node::Union(branches) => {
                let nullable = branches.iter().any(|&b| matches!(self.schema.nodes[b], Node::Null));
                let mut kinds = branches
                    .iter()
                    .filter(|&&b| !matches!(self.schema.nodes[b], Node::Null))
                    .map(|&b| self.kind(b).0);
                let first = kinds.next().unwrap_or(ColumnType::Json);
                // Branches of different types share a json column.
                let kind = if kinds.all(|k| k == first) {
                    first
                } else {
                    ColumnType::Json
                };
                return (kind, nullable);
            }
            Node::Null => return (ColumnType::Json, true),
            Node::Boolean => ColumnType::Boolean,
            Node::Int | Node::Long => ColumnType::Integer,
            Node::Float | Node::Double => ColumnType::Float,
            Node::Bytes | Node::Fixed { .. } => ColumnType::Bytea,
            Node::String | Node::Enum { .. } | Node::Time(_) => ColumnType::Text,
            Node::Decimal { .. } => ColumnType::Numeric,
            Node::Uuid { .. } => ColumnType::Uuid,
            Node::Date => ColumnType::Date,
            Node::Timestamp { .. } => ColumnType::Timestamp,
            Node::Record { .. } | Node::Array(_) | Node::Map(_) | Node::Duration | Node::Pending => ColumnType::Json,
        };
        (kind, false)
    }
}

#[cfg(test)]
mod tests;
