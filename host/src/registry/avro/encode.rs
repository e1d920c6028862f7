//! JSON → Avro binary, taking back every form `decode` writes (MAPPING.md)
//! and a few a generator writes more easily: a number for a decimal, a
//! number of units for a date, time or timestamp, `{"type": value}` (Avro's
//! JSON encoding) for a union branch a bare value does not pick.
use super::decode::unit_per_second;
use super::schema::{Node, NodeId, Schema, TimeUnit};
use crate::registry::codec::Fail;
use crate::registry::{text, varint};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

/// What a left-out field whose type allows null is written as.
static NULL: Value = Value::Null;

pub fn encode(schema: &Schema, value: &Value, out: &mut Vec<u8>) -> Result<(), Fail> {
    node(schema, schema.root, value, out)
}

fn describe(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(60) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

fn expected(what: &str, value: &Value) -> Fail {
    Fail::new(format!("expected {what}, found {}", describe(value)))
}

fn put_bytes(raw: &[u8], out: &mut Vec<u8>) {
    varint::write_zigzag(raw.len() as i64, out);
    out.extend_from_slice(raw);
}

fn integer(value: &Value, what: &str) -> Result<i64, Fail> {
    match value {
        Value::Number(n) => n.as_i64().ok_or_else(|| expected(what, value)),
        // A 64-bit integer some JSON writers quote.
        Value::String(s) => s.parse().map_err(|_| expected(what, value)),
        _ => Err(expected(what, value)),
    }
}

fn float(value: &Value, what: &str) -> Result<f64, Fail> {
    match value {
        Value::Number(n) => n.as_f64().ok_or_else(|| expected(what, value)),
        Value::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            _ => Err(expected(what, value)),
        },
        _ => Err(expected(what, value)),
    }
}

fn base64(value: &Value, what: &str) -> Result<Vec<u8>, Fail> {
    let s = value.as_str().ok_or_else(|| expected(what, value))?;
    STANDARD
        .decode(s)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(s))
        .map_err(|_| expected(what, value))
}

/// Two's complement big-endian bytes of `v`, as short as possible, or
/// sign-extended to `size`.
fn twos_complement(v: i128, size: Option<usize>) -> Result<Vec<u8>, Fail> {
    let full = v.to_be_bytes();
    let mut start = 0;
    while start < 15 {
        let (b, next) = (full[start], full[start + 1]);
        if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    let minimal = &full[start..];
    match size {
        None => Ok(minimal.to_vec()),
        Some(size) if minimal.len() <= size => {
            let fill = if v < 0 { 0xff } else { 0 };
            let mut out = vec![fill; size - minimal.len()];
            out.extend_from_slice(minimal);
            Ok(out)
        }
        Some(size) => Err(Fail::new(format!("the decimal does not fit the fixed of {size} bytes"))),
    }
}

fn digits(v: i128) -> u32 {
    let mut n = v.unsigned_abs();
    let mut count = 1;
    while n >= 10 {
        n /= 10;
        count += 1;
    }
    count
}

pub fn node(schema: &Schema, id: NodeId, value: &Value, out: &mut Vec<u8>) -> Result<(), Fail> {
    match &schema.nodes[id] {
        Node::Null | Node::Pending => {
            if !value.is_null() {
                return Err(expected("null", value));
            }
        }
        Node::Boolean => out.push(u8::from(
            value.as_bool().ok_or_else(|| expected("true or false", value))?,
        )),
        Node::Int => {
            let v = integer(value, "an integer of 32 bits")?;
            let v = i32::try_from(v).map_err(|_| expected("an integer of 32 bits", value))?;
            varint::write_zigzag(i64::from(v), out);
        }
        Node::Long => varint::write_zigzag(integer(value, "an integer of 64 bits")?, out),
        Node::Float => out.extend_from_slice(&(float(value, "a number")? as f32).to_le_bytes()),
        Node::Double => out.extend_from_slice(&float(value, "a number")?.to_le_bytes()),
        Node::Bytes => put_bytes(&base64(value, "a base64 string")?, out),
        Node::String => put_bytes(
            value.as_str().ok_or_else(|| expected("a string", value))?.as_bytes(),
            out,
        ),
        Node::Fixed { size, name } => {
            let raw = base64(value, "a base64 string")?;
            if raw.len() != *size {
                return Err(Fail::new(format!(
                    "fixed {name} takes {size} bytes, the base64 holds {}",
                    raw.len()
                )));
            }
            out.extend_from_slice(&raw);
        }
        Node::Record { name, fields } => {
            let object = value
                .as_object()
                .ok_or_else(|| expected(&format!("an object (record {name})"), value))?;
            for field in fields {
                let field_value = match object.get(&field.name) {
                    Some(v) => v,
                    None => match &field.default {
                        Some(default) => default,
                        None if accepts_null(schema, field.schema) => &NULL,
                        None => {
                            return Err(
                                Fail::new(format!("record {name} needs this field, which has no default"))
                                    .at(&field.name),
                            );
                        }
                    },
                };
                node(schema, field.schema, field_value, out).map_err(|f| f.at(&field.name))?;
            }
            if let Some(extra) = object.keys().find(|k| !fields.iter().any(|f| &f.name == *k)) {
                return Err(Fail::new(format!("record {name} has no field of this name")).at(extra));
            }
        }
        Node::Enum { name, symbols } => {
            let s = value
                .as_str()
                .ok_or_else(|| expected(&format!("a symbol of enum {name}"), value))?;
            let i = symbols
                .iter()
                .position(|x| x == s)
                .ok_or_else(|| Fail::new(format!("{s:?} is not a symbol of enum {name} ({})", symbols.join(", "))))?;
            varint::write_zigzag(i as i64, out);
        }
        Node::Array(items) => {
            let array = value.as_array().ok_or_else(|| expected("an array", value))?;
            if !array.is_empty() {
                varint::write_zigzag(array.len() as i64, out);
                for (i, item) in array.iter().enumerate() {
                    node(schema, *items, item, out).map_err(|f| f.at(format!("[{i}]")))?;
                }
            }
            out.push(0);
        }
        Node::Map(values) => {
            let object = value.as_object().ok_or_else(|| expected("an object (a map)", value))?;
            if !object.is_empty() {
                varint::write_zigzag(object.len() as i64, out);
                for (key, item) in object {
                    put_bytes(key.as_bytes(), out);
                    node(schema, *values, item, out).map_err(|f| f.at(key))?;
                }
            }
            out.push(0);
        }
        Node::Union(branches) => union(schema, branches, value, out)?,
        Node::Decimal {
            precision,
            scale,
            fixed,
        } => {
            let unscaled = match value {
                Value::String(s) => text::parse_decimal(s, *scale),
                Value::Number(n) => text::parse_decimal(&n.to_string(), *scale),
                _ => None,
            }
            .ok_or_else(|| {
                expected(
                    &format!("a decimal (a number or a string of one) with at most {scale} fraction digits"),
                    value,
                )
            })?;
            if digits(unscaled) > *precision {
                return Err(Fail::new(format!(
                    "{} has more than the {precision} digits of the decimal",
                    describe(value)
                )));
            }
            let raw = twos_complement(unscaled, *fixed)?;
            match fixed {
                Some(_) => out.extend_from_slice(&raw),
                None => put_bytes(&raw, out),
            }
        }
        Node::Uuid { fixed } => {
            let s = value.as_str().ok_or_else(|| expected("a UUID string", value))?;
            let raw = text::parse_uuid(s).ok_or_else(|| expected("a UUID string (8-4-4-4-12 hex digits)", value))?;
            if *fixed {
                out.extend_from_slice(&raw);
            } else {
                put_bytes(text::format_uuid(&raw).as_bytes(), out);
            }
        }
        Node::Date => {
            let days = match value {
                Value::String(s) => text::parse_date(s).ok_or_else(|| expected("a date YYYY-MM-DD", value))?,
                _ => integer(value, "a date YYYY-MM-DD or a number of days since 1970-01-01")?,
            };
            let days = i32::try_from(days).map_err(|_| expected("a date within an Avro int", value))?;
            varint::write_zigzag(i64::from(days), out);
        }
        Node::Time(unit) => {
            let per = unit_per_second(*unit);
            let v = match value {
                Value::String(s) => {
                    text::parse_time(s, per).ok_or_else(|| expected("a time of day HH:MM:SS[.fraction]", value))?
                }
                _ => integer(value, "a time of day HH:MM:SS[.fraction]")?,
            };
            if *unit == TimeUnit::Millis && i32::try_from(v).is_err() {
                return Err(expected("a time of day", value));
            }
            varint::write_zigzag(v, out);
        }
        Node::Timestamp { unit, local } => {
            let per = unit_per_second(*unit);
            let v = match value {
                Value::String(s) => text::parse_timestamp(s, per, *local)
                    .ok_or_else(|| expected("an RFC 3339 timestamp (2026-12-03T10:00:00.123Z)", value))?,
                _ => integer(value, "an RFC 3339 timestamp or a number of units since the epoch")?,
            };
            varint::write_zigzag(v, out);
        }
        Node::Duration => {
            let part = |key: &str| -> Result<u32, Fail> {
                value
                    .get(key)
                    .and_then(Value::as_u64)
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or_else(|| expected("a duration {\"months\": m, \"days\": d, \"milliseconds\": ms}", value))
            };
            for key in ["months", "days", "milliseconds"] {
                out.extend_from_slice(&part(key)?.to_le_bytes());
            }
        }
    }
    Ok(())
}

fn accepts_null(schema: &Schema, id: NodeId) -> bool {
    match &schema.nodes[id] {
        Node::Null => true,
        Node::Union(branches) => branches.iter().any(|&b| matches!(schema.nodes[b], Node::Null)),
        _ => false,
    }
}

/// The name a union branch goes by in Avro's JSON encoding.
fn branch_name(node: &Node) -> &str {
    match node {
        Node::Null => "null",
        Node::Boolean => "boolean",
        Node::Int | Node::Date | Node::Time(TimeUnit::Millis) => "int",
        Node::Long | Node::Time(_) | Node::Timestamp { .. } => "long",
        Node::Float => "float",
        Node::Double => "double",
        Node::Bytes | Node::Decimal { fixed: None, .. } => "bytes",
        Node::String | Node::Uuid { fixed: false } => "string",
        Node::Record { name, .. } | Node::Enum { name, .. } | Node::Fixed { name, .. } => name,
        Node::Array(_) => "array",
        Node::Map(_) => "map",
        Node::Union(_) | Node::Pending => "union",
        Node::Decimal { .. } | Node::Uuid { .. } | Node::Duration => "fixed",
    }
}

/// Writes the first branch that takes `value` as it is; failing that, an
/// object `{"name": v}` naming a branch by its type name.
fn union(schema: &Schema, branches: &[NodeId], value: &Value, out: &mut Vec<u8>) -> Result<(), Fail> {
    let start = out.len();
    let mut last = None;
    for (i, &branch) in branches.iter().enumerate() {
        if !plausible(&schema.nodes[branch], value) {
            continue;
        }
        varint::write_zigzag(i as i64, out);
        match node(schema, branch, value, out) {
            Ok(()) => return Ok(()),
            Err(e) => {
                out.truncate(start);
                last = Some(e);
            }
        }
    }
    if let Some((key, inner)) = value.as_object().filter(|o| o.len() == 1).and_then(|o| o.iter().next()) {
        let named = branches.iter().position(|&b| {
            let name = branch_name(&schema.nodes[b]);
            name == key.as_str() || name.rsplit('.').next() == Some(key.as_str())
        });
        if let Some(i) = named {
            varint::write_zigzag(i as i64, out);
            return node(schema, branches[i], inner, out).map_err(|f| f.at(key));
        }
    }
    let names: Vec<&str> = branches.iter().map(|&b| branch_name(&schema.nodes[b])).collect();
    Err(last.unwrap_or_else(|| {
        Fail::new(format!(
            "no branch of the union [{}] takes {}",
            names.join(", "),
            describe(value)
        ))
    }))
}

/// A cheap first check of whether a branch could take a value, so a union
/// does not try to encode every branch.
fn plausible(node: &Node, value: &Value) -> bool {
    match (node, value) {
        (Node::Null, Value::Null) => true,
        (Node::Boolean, Value::Bool(_)) => true,
        (Node::Int | Node::Long, Value::Number(n)) => n.is_i64(),
        (Node::Float | Node::Double | Node::Decimal { .. }, Value::Number(_)) => true,
        (Node::Date | Node::Time(_) | Node::Timestamp { .. }, Value::Number(n)) => n.is_i64(),
        (
            Node::String
            | Node::Bytes
            | Node::Fixed { .. }
            | Node::Enum { .. }
            | Node::Decimal { .. }
            | Node::Uuid { .. }
            | Node::Date
            | Node::Time(_)
            | Node::Timestamp { .. }
            | Node::Float
            | Node::Double,
            Value::String(_),
        ) => true,
        (Node::Record { .. } | Node::Map(_) | Node::Duration, Value::Object(_)) => true,
        (Node::Array(_), Value::Array(_)) => true,
        _ => false,
    }
}
