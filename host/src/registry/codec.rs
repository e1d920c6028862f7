//! One compiled registry schema (Avro, Protobuf or JSON Schema) that decodes
//! a message body to JSON, encodes JSON back, and describes its top-level
//! fields as PostgreSQL columns. Compile once per schema id; `decode` and
//! `encode` are pure and reuse the compiled form.
use super::avro::Avro;
use super::json_schema::JsonSchema;
use super::protobuf::Protobuf;
use crate::contract::mapper::ColumnType;
use serde_json::Value;
use std::fmt;

/// The registry's `schemaType` (absent means Avro).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SchemaType {
    #[default]
    Avro,
    Protobuf,
    Json,
}

impl fmt::Display for SchemaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SchemaType::Avro => "Avro",
            SchemaType::Protobuf => "Protobuf",
            SchemaType::Json => "JSON Schema",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("the {kind} schema is not valid: {reason}")]
    Schema { kind: SchemaType, reason: String },
    #[error("the {kind} value does not decode at {path}: {reason}")]
    Decode {
        kind: SchemaType,
        path: String,
        reason: String,
    },
    #[error("the value does not encode as {kind} at {path}: {reason}")]
    Encode {
        kind: SchemaType,
        path: String,
        reason: String,
    },
    #[error("{0}")]
    Columns(String),
}

/// A failure inside a value, with the path to it (innermost first) built
/// while the error returns, so a value that decodes pays for no path.
#[derive(Debug)]
pub struct Fail {
    reason: String,
    path: Vec<String>,
}

impl Fail {
    pub fn new(reason: impl Into<String>) -> Self {
        Fail {
            reason: reason.into(),
            path: Vec::new(),
        }
    }

    /// Adds the field (or `[i]`) this failure is inside of.
    pub fn at(mut self, segment: impl Into<String>) -> Self {
        self.path.push(segment.into());
        self
    }

    /// What went wrong, without the path.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    fn path(&self) -> String {
        let mut path = String::from("$");
        for segment in self.path.iter().rev() {
            if !segment.starts_with('[') {
                path.push('.');
            }
            path.push_str(segment);
        }
        path
    }

    fn decode(self, kind: SchemaType) -> CodecError {
        CodecError::Decode {
            kind,
            path: self.path(),
            reason: self.reason,
        }
    }

    fn encode(self, kind: SchemaType) -> CodecError {
        CodecError::Encode {
            kind,
            path: self.path(),
            reason: self.reason,
        }
    }
}

/// One top-level field of a schema as a PostgreSQL column.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryColumn {
    /// A PostgreSQL identifier: the field's name in snake_case.
    pub name: String,
    /// The key of the field in the decoded JSON value.
    pub field: String,
    pub kind: ColumnType,
    pub nullable: bool,
}

/// The snake_case column name of a field name (`favoriteLanguage`,
/// `Favorite Language` → `favorite_language`); `None` if nothing is left.
pub fn column_name(field: &str) -> Option<String> {
    let mut out = String::with_capacity(field.len() + 4);
    let mut previous_lower = false;
    for c in field.chars() {
        if c.is_ascii_alphanumeric() {
            if c.is_ascii_uppercase() && previous_lower && !out.ends_with('_') {
                out.push('_');
            }
            previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
            out.push(c.to_ascii_lowercase());
        } else {
            if !out.is_empty() && !out.ends_with('_') {
                out.push('_');
            }
            previous_lower = false;
        }
    }
    let trimmed = out.trim_end_matches('_');
    let name = match trimmed.chars().next()? {
        c if c.is_ascii_lowercase() => trimmed.to_string(),
        _ => format!("f_{trimmed}"),
    };
    // PostgreSQL cuts identifiers at 63 bytes.
    Some(name.chars().take(63).collect())
}

#[derive(Debug, Clone)]
enum Inner {
    Avro(Avro),
    Protobuf(Protobuf),
    Json(JsonSchema),
}

/// A schema ready to decode and encode values.
#[derive(Debug, Clone)]
pub struct Compiled {
    inner: Inner,
}

impl Compiled {
    /// Compiles a schema's text; `references` are the (name, text) of the
    /// schemas it refers to (Avro named types, Protobuf imports by file
    /// name, JSON Schema `$ref`s by name), in any order.
    pub fn parse(kind: SchemaType, text: &str, references: &[(String, String)]) -> Result<Compiled, CodecError> {
        let inner = match kind {
            SchemaType::Avro => Inner::Avro(Avro::parse(text, references)?),
            SchemaType::Protobuf => Inner::Protobuf(Protobuf::parse(text, references)?),
            SchemaType::Json => Inner::Json(JsonSchema::parse(text, references)?),
        };
        Ok(Compiled { inner })
    }

    /// For Protobuf: encode as the message of this full name (`pkg.Outer.Inner`)
    /// instead of the file's first message. Other kinds refuse.
    pub fn with_message(self, full_name: &str) -> Result<Compiled, CodecError> {
        let kind = self.kind();
        match self.inner {
            Inner::Protobuf(p) => Ok(Compiled {
                inner: Inner::Protobuf(p.with_message(full_name)?),
            }),
            _ => Err(CodecError::Schema {
                kind,
                reason: format!("only a Protobuf schema has messages to choose from (asked for {full_name:?})"),
            }),
        }
    }

    pub fn kind(&self) -> SchemaType {
        match self.inner {
            Inner::Avro(_) => SchemaType::Avro,
            Inner::Protobuf(_) => SchemaType::Protobuf,
            Inner::Json(_) => SchemaType::Json,
        }
    }

    /// The value of a body (the bytes after the magic byte and schema id;
    /// for Protobuf starting with the message indexes) as JSON.
    pub fn decode(&self, rest: &[u8]) -> Result<Value, CodecError> {
        let result = match &self.inner {
            Inner::Avro(a) => a.decode(rest),
            Inner::Protobuf(p) => p.decode(rest),
            Inner::Json(j) => j.decode(rest),
        };
        result.map_err(|f| f.decode(self.kind()))
    }

    /// Like [`Compiled::decode`], appending the value's JSON text to `out`
    /// (what a mapper is handed). A JSON Schema body is checked and copied
    /// as it is, keys in their order.
    pub fn decode_json_into(&self, rest: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        match &self.inner {
            Inner::Json(j) => {
                j.decode(rest).map_err(|f| f.decode(self.kind()))?;
                out.extend_from_slice(rest);
                return Ok(());
            }
            Inner::Protobuf(p) => return p.decode_json_into(rest, out).map_err(|f| f.decode(self.kind())),
            Inner::Avro(_) => {}
        }
        let value = self.decode(rest)?;
        serde_json::to_writer(out, &value).map_err(|e| CodecError::Decode {
            kind: self.kind(),
            path: "$".into(),
            reason: format!("the value has no JSON text: {e}"),
        })
    }

    /// The body of `value` (without magic byte and schema id; for Protobuf
    /// with the message indexes).
    pub fn encode(&self, value: &Value) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(64);
        self.encode_into(value, &mut out)?;
        Ok(out)
    }

    /// Like [`Compiled::encode`], appending to a buffer the caller reuses
    /// (after [`super::wire::frame_into`]'s header, say). On an error the
    /// buffer may hold part of the value.
    pub fn encode_into(&self, value: &Value, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let result = match &self.inner {
            Inner::Avro(a) => a.encode(value, out),
            Inner::Protobuf(p) => p.encode(value, out),
            Inner::Json(j) => j.encode(value, out),
        };
        result.map_err(|f| f.encode(self.kind()))
    }

    /// The top-level fields as columns, in the schema's order.
    pub fn columns(&self) -> Result<Vec<RegistryColumn>, CodecError> {
        match &self.inner {
            Inner::Avro(a) => a.columns(),
            Inner::Protobuf(p) => p.columns(),
            Inner::Json(j) => j.columns(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_types_use_the_registry_names() {
        assert_eq!(serde_json::to_string(&SchemaType::Protobuf).unwrap(), "\"PROTOBUF\"");
        assert_eq!(
            serde_json::from_str::<SchemaType>("\"JSON\"").unwrap(),
            SchemaType::Json
        );
        assert_eq!(SchemaType::default(), SchemaType::Avro);
    }

    #[test]
    fn column_names_are_snake_case_identifiers() {
        assert_eq!(column_name("favoriteLanguage").as_deref(), Some("favorite_language"));
        assert_eq!(column_name("Favorite Language").as_deref(), Some("favorite_language"));
        assert_eq!(column_name("user_id").as_deref(), Some("user_id"));
        assert_eq!(column_name("HTTPCode").as_deref(), Some("httpcode"));
        assert_eq!(column_name("2fa").as_deref(), Some("f_2fa"));
        assert_eq!(column_name("__").as_deref(), None);
    }

    #[test]
    fn a_failure_names_its_path() {
        let f = Fail::new("bad").at("[2]").at("items").at("order");
        assert_eq!(f.path(), "$.order.items[2]");
    }
}
