//! JSON Schema: the body is plain JSON, checked against the schema on the
//! way in and out. The host checks a documented subset of the keywords
//! (the README's "Dependency notes" say why not the `jsonschema` crate): `type`, `enum`,
//! `const`, `properties`, `required`, `additionalProperties`, `items`,
//! `minItems`/`maxItems`, `minLength`/`maxLength`, `minimum`/`maximum` and
//! their exclusive forms, `allOf`/`anyOf`/`oneOf`, boolean schemas, and
//! `$ref` to `#/...` pointers or to a registry reference by name
//! (`"other.json"`, `"other.json#/$defs/x"`). Other keywords (`format`,
//! `pattern`, ...) are accepted and not checked.
use super::codec::{CodecError, Fail, RegistryColumn, SchemaType, column_name};
use crate::contract::mapper::ColumnType;
use serde_json::{Map, Value};
use std::collections::HashMap;

#[derive(Debug, Clone)]
pub struct JsonSchema {
    root: Value,
    references: HashMap<String, Value>,
}

/// `$ref` chains longer than this are a loop.
const MAX_REF_DEPTH: usize = 32;

fn schema_error(reason: impl Into<String>) -> CodecError {
    CodecError::Schema {
        kind: SchemaType::Json,
        reason: reason.into(),
    }
}

impl JsonSchema {
    pub fn parse(text: &str, references: &[(String, String)]) -> Result<Self, CodecError> {
        let root: Value =
            serde_json::from_str(text).map_err(|e| schema_error(format!("the schema is not JSON: {e}")))?;
        if !root.is_object() && !root.is_boolean() {
            return Err(schema_error("a JSON schema is an object or a boolean"));
        }
        let references = references
            .iter()
            .map(|(name, text)| {
                let value = serde_json::from_str(text)
                    .map_err(|e| schema_error(format!("reference {name:?} is not JSON: {e}")))?;
                Ok((name.clone(), value))
            })
            .collect::<Result<_, CodecError>>()?;
        Ok(JsonSchema { root, references })
    }

    pub fn decode(&self, body: &[u8]) -> Result<Value, Fail> {
        let value: Value = serde_json::from_slice(body).map_err(|e| Fail::new(format!("the body is not JSON: {e}")))?;
        self.check(&self.root, &self.root, &value, 0)?;
        Ok(value)
    }

    pub fn encode(&self, value: &Value, out: &mut Vec<u8>) -> Result<(), Fail> {
        self.check(&self.root, &self.root, value, 0)?;
        serde_json::to_writer(out, value).map_err(|e| Fail::new(e.to_string()))
    }

    /// Follows a `$ref` from the document `doc`: the schema and its document.
    fn resolve<'a>(&'a self, doc: &'a Value, reference: &str) -> Result<(&'a Value, &'a Value), Fail> {
        let (name, pointer) = reference.split_once('#').unwrap_or((reference, ""));
        let doc = if name.is_empty() {
            doc
        } else {
            self.references
                .get(name)
                .ok_or_else(|| Fail::new(format!("$ref {reference:?} names no reference of the schema")))?
        };
        let target = doc
            .pointer(pointer)
            .ok_or_else(|| Fail::new(format!("$ref {reference:?} points at nothing")))?;
        Ok((target, doc))
    }

    /// `depth` counts `$ref` hops on the same value (a loop); it starts
    /// again at 0 for each property or item.
    fn check(&self, doc: &Value, schema: &Value, value: &Value, depth: usize) -> Result<(), Fail> {
        let schema = match schema {
            Value::Bool(true) => return Ok(()),
            Value::Bool(false) => return Err(Fail::new("the schema allows no value here")),
            Value::Object(schema) => schema,
            _ => return Ok(()),
        };
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            if depth > MAX_REF_DEPTH {
                return Err(Fail::new(format!("$ref {reference:?} loops")));
            }
            let (target, target_doc) = self.resolve(doc, reference)?;
            self.check(target_doc, target, value, depth + 1)?;
        }
        if let Some(kind) = schema.get("type") {
            let ok = match kind {
                Value::String(k) => is_type(k, value),
                Value::Array(kinds) => kinds.iter().filter_map(Value::as_str).any(|k| is_type(k, value)),
                _ => true,
            };
            if !ok {
                return Err(Fail::new(format!("expected type {kind}, found {}", short(value))));
            }
        }
        if let Some(Value::Array(allowed)) = schema.get("enum")
            && !allowed.contains(value)
        {
            return Err(Fail::new(format!(
                "{} is not one of {}",
                short(value),
                Value::Array(allowed.clone())
            )));
        }
        if let Some(constant) = schema.get("const")
            && constant != value
        {
            return Err(Fail::new(format!("expected {constant}, found {}", short(value))));
        }
        match value {
            Value::Object(object) => self.object(doc, schema, object)?,
            Value::Array(items) => {
                bounds(schema, "minItems", "maxItems", items.len(), "items")?;
                if let Some(item_schema) = schema.get("items").filter(|s| !s.is_array()) {
                    for (i, item) in items.iter().enumerate() {
                        self.check(doc, item_schema, item, 0)
                            .map_err(|f| f.at(format!("[{i}]")))?;
                    }
                }
            }
            Value::String(s) => bounds(schema, "minLength", "maxLength", s.chars().count(), "characters")?,
            Value::Number(n) => number(schema, n.as_f64().unwrap_or(f64::NAN))?,
            _ => {}
        }
        if let Some(Value::Array(all)) = schema.get("allOf") {
            for s in all {
                self.check(doc, s, value, depth)?;
            }
        }
        if let Some(Value::Array(any)) = schema.get("anyOf")
            && !any.iter().any(|s| self.check(doc, s, value, depth).is_ok())
        {
            return Err(Fail::new(format!("{} matches none of the anyOf schemas", short(value))));
        }
        if let Some(Value::Array(one)) = schema.get("oneOf") {
            let matched = one.iter().filter(|s| self.check(doc, s, value, depth).is_ok()).count();
            if matched != 1 {
                return Err(Fail::new(format!(
                    "{} matches {matched} of the oneOf schemas, not exactly one",
                    short(value)
                )));
            }
        }
        Ok(())
    }

    fn object(&self, doc: &Value, schema: &Map<String, Value>, object: &Map<String, Value>) -> Result<(), Fail> {
        if let Some(Value::Array(required)) = schema.get("required") {
            for name in required.iter().filter_map(Value::as_str) {
                if !object.contains_key(name) {
                    return Err(Fail::new("this required property is missing").at(name));
                }
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties");
        for (key, item) in object {
            match properties.and_then(|p| p.get(key)) {
                Some(s) => self.check(doc, s, item, 0).map_err(|f| f.at(key))?,
                None => match additional {
                    Some(Value::Bool(false)) => {
                        return Err(Fail::new("the schema allows no property of this name").at(key));
                    }
                    Some(s) => self.check(doc, s, item, 0).map_err(|f| f.at(key))?,
                    None => {}
                },
            }
        }
        Ok(())
    }

    pub fn columns(&self) -> Result<Vec<RegistryColumn>, CodecError> {
        let mut doc = &self.root;
        let mut schema = &self.root;
        for _ in 0..MAX_REF_DEPTH {
            match schema.get("$ref").and_then(Value::as_str) {
                Some(reference) => {
                    (schema, doc) = self
                        .resolve(doc, reference)
                        .map_err(|f| CodecError::Columns(f.reason().to_string()))?;
                }
                None => break,
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object).ok_or_else(|| {
            CodecError::Columns("the JSON schema has no top-level \"properties\" to make columns of".into())
        })?;
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        properties
            .iter()
            .map(|(field, property)| {
                let (kind, null_allowed) = column_kind(property);
                Ok(RegistryColumn {
                    name: column_name(field)
                        .ok_or_else(|| CodecError::Columns(format!("property {field:?} gives no column name")))?,
                    field: field.clone(),
                    kind,
                    nullable: null_allowed || !required.contains(&field.as_str()),
                })
            })
            .collect()
    }
}

fn is_type(kind: &str, value: &Value) -> bool {
    match kind {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.as_f64().is_some_and(|f| f.fract() == 0.0) || value.is_i64() || value.is_u64(),
        _ => true,
    }
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(60) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

fn bounds(schema: &Map<String, Value>, min: &str, max: &str, n: usize, what: &str) -> Result<(), Fail> {
    let n = n as u64;
    if let Some(m) = schema.get(min).and_then(Value::as_u64)
        && n < m
    {
        return Err(Fail::new(format!("{n} {what}, fewer than the {min} of {m}")));
    }
    if let Some(m) = schema.get(max).and_then(Value::as_u64)
        && n > m
    {
        return Err(Fail::new(format!("{n} {what}, more than the {max} of {m}")));
    }
    Ok(())
}

fn number(schema: &Map<String, Value>, n: f64) -> Result<(), Fail> {
    let get = |k: &str| schema.get(k).and_then(Value::as_f64);
    let broken = [
        ("minimum", get("minimum").filter(|&m| n < m)),
        ("maximum", get("maximum").filter(|&m| n > m)),
        ("exclusiveMinimum", get("exclusiveMinimum").filter(|&m| n <= m)),
        ("exclusiveMaximum", get("exclusiveMaximum").filter(|&m| n >= m)),
    ];
    match broken.iter().find_map(|(k, m)| m.map(|m| (k, m))) {
        Some((k, m)) => Err(Fail::new(format!("{n} is outside the {k} of {m}"))),
        None => Ok(()),
    }
}

/// The column type of a property and whether its type allows null.
fn column_kind(property: &Value) -> (ColumnType, bool) {
    let types: Vec<&str> = match property.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let nullable = types.contains(&"null");
    let non_null: Vec<&str> = types.into_iter().filter(|t| *t != "null").collect();
    let format = property.get("format").and_then(Value::as_str);
    let kind = match (non_null.as_slice(), format) {
        (["integer"], _) => ColumnType::Integer,
        (["number"], _) => ColumnType::Float,
        (["boolean"], _) => ColumnType::Boolean,
        (["string"], Some("date-time")) => ColumnType::Timestamp,
        (["string"], Some("date")) => ColumnType::Date,
        (["string"], Some("uuid")) => ColumnType::Uuid,
        (["string"], _) if property.get("contentEncoding").and_then(Value::as_str) == Some("base64") => {
            ColumnType::Bytea
        }
        (["string"], _) => ColumnType::Text,
        _ => ColumnType::Json,
    };
    (kind, nullable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SCHEMA: &str = r##"{
        "type": "object",
        "properties": {
            "id": {"type": "integer", "minimum": 1},
            "name": {"type": "string", "maxLength": 5},
            "tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}},
            "at": {"type": ["string", "null"], "format": "date-time"},
            "money": {"$ref": "money.json"}
        },
        "required": ["id", "name"],
        "additionalProperties": false,
        "$defs": {"tag": {"enum": ["a", "b"]}}
    }"##;

    fn schema() -> JsonSchema {
        let money = (
            "money.json".to_string(),
            r#"{"type":"object","required":["cents"]}"#.to_string(),
        );
        JsonSchema::parse(SCHEMA, &[money]).unwrap()
    }

    #[test]
    fn valid_documents_pass_both_ways() {
        let s = schema();
        let value = json!({"id": 3, "name": "tea", "tags": ["a"], "at": null, "money": {"cents": 5}});
        let mut out = Vec::new();
        s.encode(&value, &mut out).unwrap();
        assert_eq!(s.decode(&out).unwrap(), value);
    }

    #[test]
    fn invalid_documents_name_the_place_and_the_rule() {
        let s = schema();
        let fail = |v: Value| {
            let f = s.decode(v.to_string().as_bytes()).unwrap_err();
            f.reason().to_string()
        };
        assert!(fail(json!({"name": "x"})).contains("required"));
        assert!(fail(json!({"id": 0, "name": "x"})).contains("minimum"));
        assert!(fail(json!({"id": 1, "name": "toolong"})).contains("maxLength"));
        assert!(fail(json!({"id": 1, "name": "x", "tags": ["c"]})).contains("not one of"));
        assert!(fail(json!({"id": 1, "name": "x", "extra": 1})).contains("no property"));
        assert!(fail(json!({"id": 1, "name": "x", "money": {}})).contains("required"));
        assert!(fail(json!({"id": "1", "name": "x"})).contains("expected type"));
        assert!(s.decode(b"{not json").unwrap_err().reason().contains("not JSON"));
    }

    #[test]
    fn a_recursive_ref_checks_deep_values_and_a_ref_loop_is_an_error() {
        let tree = JsonSchema::parse(r##"{"type": "object", "additionalProperties": {"$ref": "#"}}"##, &[]).unwrap();
        let mut value = json!({});
        for _ in 0..60 {
            value = json!({"child": value});
        }
        tree.decode(value.to_string().as_bytes()).unwrap();
        let looped = JsonSchema::parse(r##"{"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#"}}}"##, &[]).unwrap();
        assert!(looped.decode(b"1").unwrap_err().reason().contains("loops"));
    }

    #[test]
    fn columns_come_from_the_top_level_properties() {
        let columns = schema().columns().unwrap();
        let summary: Vec<(&str, ColumnType, bool)> =
            columns.iter().map(|c| (c.name.as_str(), c.kind, c.nullable)).collect();
        assert_eq!(
            summary,
            [
                ("at", ColumnType::Timestamp, true),
                ("id", ColumnType::Integer, false),
                ("money", ColumnType::Json, true),
                ("name", ColumnType::Text, false),
                ("tags", ColumnType::Json, true),
            ]
        );
    }
}
