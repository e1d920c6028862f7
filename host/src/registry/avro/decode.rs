//! Avro binary → JSON (MAPPING.md), walking the writer's schema once per
//! value: no intermediate Avro value, no schema lookups by name.
use super::schema::{Node, NodeId, Schema, TimeUnit};
use crate::registry::codec::Fail;
use crate::registry::{text, varint};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

/// Nesting deeper than this (a recursive schema, a crafted message) is
/// refused before it can overflow the stack.
const MAX_DEPTH: usize = 200;

/// Items a block may claim beyond one per byte left: items of no bytes
/// (nulls, empty records) are real, but a count in the billions is an attack.
const MAX_EMPTY_ITEMS: u64 = 65_536;

pub fn decode(schema: &Schema, mut buf: &[u8]) -> Result<Value, Fail> {
    let value = node(schema, schema.root, &mut buf, 0)?;
    if !buf.is_empty() {
        return Err(Fail::new(format!(
            "{} bytes are left after the value (was it written with another schema?)",
            buf.len()
        )));
    }
    Ok(value)
}

fn long(buf: &mut &[u8]) -> Result<i64, Fail> {
    varint::read_zigzag(buf).ok_or_else(|| Fail::new("the value ends inside a number (truncated?)"))
}

fn int(buf: &mut &[u8]) -> Result<i32, Fail> {
    let v = long(buf)?;
    i32::try_from(v).map_err(|_| Fail::new(format!("{v} does not fit an Avro int")))
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], Fail> {
    if buf.len() < n {
        return Err(Fail::new(format!(
            "the value ends early: {n} bytes expected, {} left (truncated?)",
            buf.len()
        )));
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

fn length(buf: &mut &[u8]) -> Result<usize, Fail> {
    let n = long(buf)?;
    usize::try_from(n).map_err(|_| Fail::new(format!("a length is negative ({n})")))
}

fn bytes<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], Fail> {
    let n = length(buf)?;
    take(buf, n)
}

fn string(buf: &mut &[u8]) -> Result<String, Fail> {
    let raw = bytes(buf)?;
    std::str::from_utf8(raw)
        .map(str::to_string)
        .map_err(|_| Fail::new("a string is not valid UTF-8"))
}

fn float(v: f64) -> Value {
    if v.is_finite() {
        Value::from(v)
    } else if v.is_nan() {
        Value::from("NaN")
    } else if v > 0.0 {
        Value::from("Infinity")
    } else {
        Value::from("-Infinity")
    }
}

fn per_second(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Millis => 1_000,
        TimeUnit::Micros => 1_000_000,
        TimeUnit::Nanos => 1_000_000_000,
    }
}

/// Two's complement big-endian bytes as an integer (at most 16 bytes).
fn unscaled(raw: &[u8]) -> Result<i128, Fail> {
    if raw.len() > 16 {
        return Err(Fail::new(format!(
            "a decimal of {} bytes is wider than the 16 this host reads (precision above 38 digits)",
            raw.len()
        )));
    }
    let negative = raw.first().is_some_and(|b| b & 0x80 != 0);
    let mut full = if negative { [0xffu8; 16] } else { [0u8; 16] };
    full[16 - raw.len()..].copy_from_slice(raw);
    Ok(i128::from_be_bytes(full))
}

/// Reads array or map blocks, calling `item` once per item.
fn blocks(buf: &mut &[u8], mut item: impl FnMut(&mut &[u8]) -> Result<(), Fail>) -> Result<(), Fail> {
    loop {
        let count = long(buf)?;
        if count == 0 {
            return Ok(());
        }
        if count < 0 {
            // A negative count is followed by the block's size in bytes.
            long(buf)?;
        }
        let left = buf.len() as u64;
        if count.unsigned_abs() > left + MAX_EMPTY_ITEMS {
            return Err(Fail::new(format!(
                "a block claims {} items, more than the {left} bytes left can hold (corrupt or not Avro?)",
                count.unsigned_abs()
            )));
        }
        for _ in 0..count.unsigned_abs() {
            item(buf)?;
        }
    }
}

pub fn node(schema: &Schema, id: NodeId, buf: &mut &[u8], depth: usize) -> Result<Value, Fail> {
    if depth > MAX_DEPTH {
        return Err(Fail::new(format!("the value nests deeper than {MAX_DEPTH} levels")));
    }
    let depth = depth + 1;
    Ok(match &schema.nodes[id] {
        Node::Null | Node::Pending => Value::Null,
        Node::Boolean => match take(buf, 1)?[0] {
            0 => Value::Bool(false),
            1 => Value::Bool(true),
            b => return Err(Fail::new(format!("a boolean is byte {b}, not 0 or 1"))),
        },
        Node::Int => Value::from(int(buf)?),
        Node::Long => Value::from(long(buf)?),
        Node::Float => {
            let raw = take(buf, 4)?;
            float(f64::from(f32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]])))
        }
        Node::Double => {
            let raw = take(buf, 8)?;
            float(f64::from_le_bytes(
                raw.try_into().map_err(|_| Fail::new("a double is cut"))?,
            ))
        }
        Node::Bytes => Value::from(STANDARD.encode(bytes(buf)?)),
        Node::String => Value::from(string(buf)?),
        Node::Fixed { size, .. } => Value::from(STANDARD.encode(take(buf, *size)?)),
        Node::Record { fields, .. } => {
            let mut object = Map::new();
            for field in fields {
                let value = node(schema, field.schema, buf, depth).map_err(|f| f.at(&field.name))?;
                object.insert(field.name.clone(), value);
            }
            Value::Object(object)
        }
        Node::Enum { name, symbols } => {
            let i = long(buf)?;
            let symbol = usize::try_from(i).ok().and_then(|i| symbols.get(i));
            match symbol {
                Some(s) => Value::from(s.as_str()),
                None => {
                    return Err(Fail::new(format!(
                        "enum {name} has {} symbols, but the value names symbol {i}",
                        symbols.len()
                    )));
                }
            }
        }
        Node::Array(items) => {
            let mut out = Vec::new();
            blocks(buf, |buf| {
                let value = node(schema, *items, buf, depth).map_err(|f| f.at(format!("[{}]", out.len())))?;
                out.push(value);
                Ok(())
            })?;
            Value::Array(out)
        }
        Node::Map(values) => {
            let mut out = Map::new();
            blocks(buf, |buf| {
                let key = string(buf)?;
                let value = node(schema, *values, buf, depth).map_err(|f| f.at(&key))?;
                out.insert(key, value);
                Ok(())
            })?;
            Value::Object(out)
        }
        Node::Union(branches) => {
            let i = long(buf)?;
            match usize::try_from(i).ok().and_then(|i| branches.get(i)) {
                Some(&branch) => node(schema, branch, buf, depth)?,
                None => {
                    return Err(Fail::new(format!(
                        "the union has {} branches, but the value names branch {i} (was it written with another schema?)",
                        branches.len()
                    )));
                }
            }
        }
        Node::Decimal { scale, fixed, .. } => {
            let raw = match fixed {
                Some(size) => take(buf, *size)?,
                None => bytes(buf)?,
            };
            Value::from(text::format_decimal(unscaled(raw)?, *scale))
        }
        Node::Uuid { fixed: false } => Value::from(string(buf)?),
        Node::Uuid { fixed: true } => Value::from(text::format_uuid(take(buf, 16)?)),
        Node::Date => Value::from(text::format_date(i64::from(int(buf)?))),
        Node::Time(unit) => {
            let v = match unit {
                TimeUnit::Millis => i64::from(int(buf)?),
                _ => long(buf)?,
            };
            match text::format_time(v, per_second(*unit)) {
                Some(t) => Value::from(t),
                None => return Err(Fail::new(format!("time of day {v} is outside one day"))),
            }
        }
        Node::Timestamp { unit, .. } => Value::from(text::format_timestamp(long(buf)?, per_second(*unit))),
        Node::Duration => {
            let raw = take(buf, 12)?;
            let part = |i: usize| u32::from_le_bytes([raw[i], raw[i + 1], raw[i + 2], raw[i + 3]]);
            serde_json::json!({"months": part(0), "days": part(4), "milliseconds": part(8)})
        }
    })
}

pub(super) fn unit_per_second(unit: TimeUnit) -> i64 {
    per_second(unit)
}
