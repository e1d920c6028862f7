//! Avro schema text (the JSON of the Avro specification, 1.12) parsed into
//! an arena of nodes, so named types may refer to themselves (a linked list)
//! and a registry reference's named types are visible to the schema that
//! names them. Invalid logical types fall back to their underlying type, as
//! the specification asks.
use serde_json::{Map, Value};
use std::collections::HashMap;

/// An index into [`Schema::nodes`].
pub type NodeId = usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    Millis,
    Micros,
    Nanos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Record {
        name: String,
        fields: Vec<Field>,
    },
    Enum {
        name: String,
        symbols: Vec<String>,
    },
    Fixed {
        name: String,
        size: usize,
    },
    Array(NodeId),
    Map(NodeId),
    Union(Vec<NodeId>),
    /// `fixed` is the size when the decimal is a fixed, `None` for bytes.
    Decimal {
        precision: u32,
        scale: u32,
        fixed: Option<usize>,
    },
    /// A uuid over a string, or over a fixed of 16 when `fixed`.
    Uuid {
        fixed: bool,
    },
    Date,
    Time(TimeUnit),
    /// `local` for the local-timestamp-* types (no zone; written as UTC).
    Timestamp {
        unit: TimeUnit,
        local: bool,
    },
    /// A fixed of 12: months, days and milliseconds, each a little-endian u32.
    Duration,
    /// A named type used before its definition ended (recursion); resolved
    /// once parsing is done.
    Pending,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub schema: NodeId,
    pub default: Option<Value>,
}

#[derive(Debug, Clone)]
pub struct Schema {
    pub nodes: Vec<Node>,
    pub root: NodeId,
}

/// Parses `text` after the `references` (each the text of a schema whose
/// named types `text` may use), in any order.
pub fn parse(text: &str, references: &[(String, String)]) -> Result<Schema, String> {
    let mut parser = Parser::default();
    let mut pending: Vec<&(String, String)> = references.iter().collect();
    // A reference may name types of another: parse those that can be, and
    // retry the rest until no more progress is made.
    while !pending.is_empty() {
        let mut failed = Vec::new();
        let mut last_error = String::new();
        for reference in &pending {
            let json = serde_json::from_str::<Value>(&reference.1)
                .map_err(|e| format!("reference {:?} is not JSON: {e}", reference.0))?;
            let mark = (parser.nodes.len(), parser.defined.len());
            if let Err(e) = parser.parse(&json, "") {
                parser.rollback(mark);
                last_error = format!("reference {:?}: {e}", reference.0);
                failed.push(*reference);
            }
        }
        if failed.len() == pending.len() {
            return Err(last_error);
        }
        pending = failed;
    }
    let json = serde_json::from_str::<Value>(text).map_err(|e| format!("the schema is not JSON: {e}"))?;
    let root = parser.parse(&json, "")?;
    Ok(Schema {
        nodes: parser.nodes,
        root,
    })
}

#[derive(Default)]
struct Parser {
    nodes: Vec<Node>,
    names: HashMap<String, NodeId>,
    /// Names in the order they were defined, to undo a failed reference.
    defined: Vec<String>,
}

const PRIMITIVES: [&str; 8] = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"];

impl Parser {
    fn rollback(&mut self, (nodes, defined): (usize, usize)) {
        self.nodes.truncate(nodes);
        for name in self.defined.drain(defined..) {
            self.names.remove(&name);
        }
    }

    fn push(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    fn parse(&mut self, json: &Value, namespace: &str) -> Result<NodeId, String> {
        match json {
            Value::String(name) => self.named_or_primitive(name, namespace),
            Value::Array(branches) => {
                let ids = branches
                    .iter()
                    .map(|b| self.parse(b, namespace))
                    .collect::<Result<Vec<_>, _>>()?;
                if ids.iter().any(|&id| matches!(self.nodes[id], Node::Union(_))) {
                    return Err("a union may not hold another union directly".into());
                }
                Ok(self.push(Node::Union(ids)))
            }
            Value::Object(object) => self.complex(object, namespace),
            other => Err(format!("{other} is not a schema (a type name, an object or an array)")),
        }
    }

    fn named_or_primitive(&mut self, name: &str, namespace: &str) -> Result<NodeId, String> {
        let node = match name {
            "null" => Node::Null,
            "boolean" => Node::Boolean,
            "int" => Node::Int,
            "long" => Node::Long,
            "float" => Node::Float,
            "double" => Node::Double,
            "bytes" => Node::Bytes,
            "string" => Node::String,
            _ => return self.lookup(name, namespace),
        };
        Ok(self.push(node))
    }

    fn lookup(&self, name: &str, namespace: &str) -> Result<NodeId, String> {
        let qualified = if name.contains('.') || namespace.is_empty() {
            name.to_string()
        } else {
            format!("{namespace}.{name}")
        };
        self.names
            .get(&qualified)
            .or_else(|| self.names.get(name))
            .copied()
            .ok_or_else(|| format!("type {name:?} is not defined (define it before its use, or pass the schema that defines it as a reference)"))
    }

    fn complex(&mut self, object: &Map<String, Value>, namespace: &str) -> Result<NodeId, String> {
        let kind = object.get("type").ok_or("a schema object has no \"type\"")?;
        let logical = object.get("logicalType").and_then(Value::as_str);
        let Value::String(kind) = kind else {
            // {"type": {...}} or {"type": [...]}: the inner schema.
            return self.parse(kind, namespace);
        };
        match kind.as_str() {
            "record" | "error" => self.record(object, namespace),
            "enum" => {
                let (name, _) = self.full_name(object, namespace)?;
                let symbols = object
                    .get("symbols")
                    .and_then(Value::as_array)
                    .ok_or_else(|| format!("enum {name:?} has no \"symbols\" array"))?
                    .iter()
                    .map(|s| {
                        s.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| format!("enum {name:?}: symbol {s} is not a string"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let id = self.push(Node::Enum {
                    name: name.clone(),
                    symbols,
                });
                self.define(name, id)
            }
            "fixed" => {
                let (name, _) = self.full_name(object, namespace)?;
                let size = object
                    .get("size")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| format!("fixed {name:?} has no \"size\" (a non-negative integer)"))?
                    as usize;
                let node = match logical {
                    Some("decimal") => decimal(object, Some(size)).unwrap_or(Node::Fixed {
                        name: name.clone(),
                        size,
                    }),
                    Some("uuid") if size == 16 => Node::Uuid { fixed: true },
                    Some("duration") if size == 12 => Node::Duration,
                    _ => Node::Fixed {
                        name: name.clone(),
                        size,
                    },
                };
                let id = self.push(node);
                self.define(name, id)
            }
            "array" => {
                let items = object.get("items").ok_or("an array schema has no \"items\"")?;
                let items = self.parse(items, namespace)?;
                Ok(self.push(Node::Array(items)))
            }
            "map" => {
                let values = object.get("values").ok_or("a map schema has no \"values\"")?;
                let values = self.parse(values, namespace)?;
                Ok(self.push(Node::Map(values)))
            }
            primitive if PRIMITIVES.contains(&primitive) => {
                let node = match (primitive, logical) {
                    ("bytes", Some("decimal")) => decimal(object, None),
                    ("string", Some("uuid")) => Some(Node::Uuid { fixed: false }),
                    ("int", Some("date")) => Some(Node::Date),
                    ("int", Some("time-millis")) => Some(Node::Time(TimeUnit::Millis)),
                    ("long", Some("time-micros")) => Some(Node::Time(TimeUnit::Micros)),
                    ("long", Some(l)) => timestamp(l),
                    _ => None,
                };
                match node {
                    Some(node) => Ok(self.push(node)),
                    None => self.named_or_primitive(primitive, namespace),
                }
            }
            // {"type": "com.example.Named"}
            other => self.lookup(other, namespace),
        }
    }

    fn record(&mut self, object: &Map<String, Value>, namespace: &str) -> Result<NodeId, String> {
        let (name, inner_namespace) = self.full_name(object, namespace)?;
        let id = self.push(Node::Pending);
        self.define(name.clone(), id)?;
        let fields_json = object
            .get("fields")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("record {name:?} has no \"fields\" array"))?;
        let mut fields = Vec::with_capacity(fields_json.len());
        for field in fields_json {
            let field_name = field
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("record {name:?}: a field has no \"name\""))?;
            let schema = field
                .get("type")
                .ok_or_else(|| format!("record {name:?}: field {field_name:?} has no \"type\""))?;
            let schema = self
                .parse(schema, &inner_namespace)
                .map_err(|e| format!("record {name:?}, field {field_name:?}: {e}"))?;
            if fields.iter().any(|f: &Field| f.name == field_name) {
                return Err(format!("record {name:?} has two fields named {field_name:?}"));
            }
            fields.push(Field {
                name: field_name.to_string(),
                schema,
                default: field.get("default").cloned(),
            });
        }
        self.nodes[id] = Node::Record { name, fields };
        Ok(id)
    }

    /// The full name of a named type and the namespace its children inherit.
    fn full_name(&self, object: &Map<String, Value>, namespace: &str) -> Result<(String, String), String> {
        let name = object
            .get("name")
            .and_then(Value::as_str)
            .ok_or("a record, enum or fixed has no \"name\"")?;
        if let Some((space, _)) = name.rsplit_once('.') {
            return Ok((name.to_string(), space.to_string()));
        }
        let space = match object.get("namespace").and_then(Value::as_str) {
            Some(space) => space,
            None => namespace,
        };
        let full = if space.is_empty() {
            name.to_string()
        } else {
            format!("{space}.{name}")
        };
        Ok((full, space.to_string()))
    }

    fn define(&mut self, name: String, id: NodeId) -> Result<NodeId, String> {
        if self.names.contains_key(&name) {
            return Err(format!("type {name:?} is defined twice"));
        }
        self.names.insert(name.clone(), id);
        self.defined.push(name);
        Ok(id)
    }
}

fn decimal(object: &Map<String, Value>, fixed: Option<usize>) -> Option<Node> {
    let precision = object.get("precision")?.as_u64()?;
    let scale = object.get("scale").map_or(Some(0), Value::as_u64)?;
    if precision == 0 || scale > precision {
        return None;
    }
    Some(Node::Decimal {
        precision: u32::try_from(precision).ok()?,
        scale: scale as u32,
        fixed,
    })
}

fn timestamp(logical: &str) -> Option<Node> {
    let (unit, local) = match logical {
        "timestamp-millis" => (TimeUnit::Millis, false),
        "timestamp-micros" => (TimeUnit::Micros, false),
        "timestamp-nanos" => (TimeUnit::Nanos, false),
        "local-timestamp-millis" => (TimeUnit::Millis, true),
        "local-timestamp-micros" => (TimeUnit::Micros, true),
        "local-timestamp-nanos" => (TimeUnit::Nanos, true),
        _ => return None,
    };
    Some(Node::Timestamp { unit, local })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recursive_record_refers_to_itself() {
        let schema = parse(
            r#"{"type":"record","name":"List","namespace":"x","fields":[
                {"name":"value","type":"int"},{"name":"next","type":["null","List"]}]}"#,
            &[],
        )
        .unwrap();
        let Node::Record { name, fields } = &schema.nodes[schema.root] else {
            panic!()
        };
        assert_eq!(name, "x.List");
        let Node::Union(branches) = &schema.nodes[fields[1].schema] else {
            panic!()
        };
        assert_eq!(branches[1], schema.root);
    }

    #[test]
    fn references_define_names_in_any_order() {
        let a = (
            "a".to_string(),
            r#"{"type":"record","name":"A","namespace":"n","fields":[{"name":"b","type":"n.B"}]}"#.to_string(),
        );
        let b = (
            "b".to_string(),
            r#"{"type":"enum","name":"B","namespace":"n","symbols":["X"]}"#.to_string(),
        );
        let schema = parse(
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"n.A"}]}"#,
            &[a, b],
        )
        .unwrap();
        assert!(matches!(schema.nodes[schema.root], Node::Record { .. }));
    }

    #[test]
    fn bad_schemas_say_what_is_wrong() {
        let e = parse(
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"Nope"}]}"#,
            &[],
        )
        .unwrap_err();
        assert!(
            e.contains("field \"a\"") && e.contains("\"Nope\" is not defined"),
            "{e}"
        );
        let e = parse(r#"{"type":"enum","name":"E"}"#, &[]).unwrap_err();
        assert!(e.contains("symbols"), "{e}");
        assert!(parse("not json", &[]).unwrap_err().contains("not JSON"));
    }

    #[test]
    fn an_invalid_logical_type_falls_back_to_its_type() {
        let schema = parse(r#"{"type":"string","logicalType":"date"}"#, &[]).unwrap();
        assert_eq!(schema.nodes[schema.root], Node::String);
        let schema = parse(
            r#"{"type":"bytes","logicalType":"decimal","precision":2,"scale":3}"#,
            &[],
        )
        .unwrap();
        assert_eq!(schema.nodes[schema.root], Node::Bytes);
    }
}
