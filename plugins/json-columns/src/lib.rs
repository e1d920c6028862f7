//! Maps the top-level fields of a JSON object to typed columns, by a schema
//! declared in the settings; tombstones become deletes by the Kafka key.
//!
//! Settings (the mapper's `settings` table in `pipeline.toml`):
//!
//! ```toml
//! columns = [
//!   { name = "id", type = "uuid" },
//!   { name = "price", type = "numeric", nullable = true },
//!   { name = "day", type = "date" },
//!   { name = "doc", type = "json", field = "document" },
//! ]
//! key = ["id"]              # optional: the sink's key, for tombstones
//! unknown_fields = "ignore" # or "reject"
//! ```
//!
//! Each column takes the field named `field` (default: its `name`) of the
//! payload, a JSON object. A missing field, or JSON `null`, is SQL `NULL` in a
//! nullable column and a rejection otherwise. What each type takes:
//!
//! | type | JSON |
//! | --- | --- |
//! | `text` | a string |
//! | `integer` (`bigint`) | an integer number within 64 bits |
//! | `float` (`double precision`) | a number |
//! | `boolean` | `true` or `false` |
//! | `timestamp` (`timestamptz`) | an RFC 3339 string (`2024-05-01T12:00:00.5Z`, `...+02:00`), or an integer of milliseconds since the Unix epoch |
//! | `json` (`jsonb`) | any JSON value, kept as written |
//! | `uuid` | a string of 32 hex digits, 8-4-4-4-12 with hyphens or without |
//! | `numeric` | a number (every digit kept, as written) or a string of one (`"12.50"`, `"NaN"`) |
//! | `bytea` | a string of base64 (standard alphabet, padding optional) |
//! | `date` | a string `YYYY-MM-DD` |
//!
//! A message that does not fit is rejected (a dead letter) with a reason
//! naming the field and what it expected. A payload that is not a JSON
//! object is rejected; so are fields no column takes, with
//! `unknown_fields = "reject"`.
//!
//! A tombstone (a message with no payload) becomes `delete` with the values
//! of the `key` columns, in `key`'s order, read from the Kafka message key
//! parsed as JSON: an object holding each key column's field (`{"id":
//! "0b7e..."}`), converted as in a payload; with one key column, the key may
//! also be that field's bare JSON value (`"0b7e..."`, quotes included, or
//! `42`). Without `key` in the settings, or with a key that does not fit, the
//! tombstone is rejected.
use sdk::mapper::{Guest, Message, Outcome, Table};
use sdk::types::{Column, ColumnType, Value};
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::sync::OnceLock;

mod parse;

const PLUGIN: &str = "json-columns";

static SCHEMA: OnceLock<Schema> = OnceLock::new();

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    columns: Vec<ColumnSetting>,
    #[serde(default)]
    key: Vec<String>,
    #[serde(default)]
    unknown_fields: UnknownFields,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnSetting {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    nullable: bool,
    #[serde(default)]
    field: Option<String>,
}

#[derive(serde::Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum UnknownFields {
    #[default]
    Ignore,
    Reject,
}

/// One column and the field it reads.
struct Spec {
    column: Column,
    field: String,
}

struct Schema {
    specs: Vec<Spec>,
    /// Indexes into `specs` of the key columns, in the key's order.
    key: Vec<usize>,
    unknown_fields: UnknownFields,
}

fn column_type(name: &str) -> Option<ColumnType> {
    Some(match name {
        "text" => ColumnType::Text,
        "integer" | "bigint" => ColumnType::Integer,
        "float" | "double precision" => ColumnType::Float,
        "boolean" => ColumnType::Boolean,
        "timestamp" | "timestamptz" => ColumnType::Timestamp,
        "json" | "jsonb" => ColumnType::Json,
        "uuid" => ColumnType::Uuid,
        "numeric" => ColumnType::Numeric,
        "bytea" => ColumnType::Bytea,
        "date" => ColumnType::Date,
        _ => return None,
    })
}

fn valid_identifier(name: &str) -> bool {
    name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn schema(settings: &str) -> Result<Schema, String> {
    let parsed: Settings = sdk::parse_settings(PLUGIN, settings)?;
    if parsed.columns.is_empty() {
        return Err(format!(
            "{PLUGIN}: settings.columns is empty; declare at least one, e.g. columns = [{{ name = \"id\", type = \"uuid\" }}]"
        ));
    }
    let mut specs: Vec<Spec> = Vec::new();
    for (i, c) in parsed.columns.into_iter().enumerate() {
        if !valid_identifier(&c.name) {
            return Err(format!(
                "{PLUGIN}: settings.columns[{i}].name {:?} is not a column name: lowercase letters, digits and underscores, starting with a letter, at most 63",
                c.name
            ));
        }
        if specs.iter().any(|s| s.column.name == c.name) {
            return Err(format!(
                "{PLUGIN}: settings.columns[{i}]: column {:?} is declared twice",
                c.name
            ));
        }
        let kind = column_type(&c.kind).ok_or_else(|| {
            format!(
                "{PLUGIN}: settings.columns[{i}].type {:?} is not a type; use text, integer, float, boolean, timestamp, json, uuid, numeric, bytea or date",
                c.kind
            )
        })?;
        specs.push(Spec {
            field: c.field.unwrap_or_else(|| c.name.clone()),
            column: Column {
                name: c.name,
                kind,
                nullable: c.nullable,
            },
        });
    }
    let mut key = Vec::new();
    for name in &parsed.key {
        let i = specs
            .iter()
            .position(|s| &s.column.name == name)
            .ok_or_else(|| format!("{PLUGIN}: settings.key names {name:?}, which is not one of the columns"))?;
        if key.contains(&i) {
            return Err(format!("{PLUGIN}: settings.key names {name:?} twice"));
        }
        key.push(i);
    }
    Ok(Schema {
        specs,
        key,
        unknown_fields: parsed.unknown_fields,
    })
}

struct JsonColumns;

impl Guest for JsonColumns {
    fn configure(settings: String) -> Result<Vec<Table>, String> {
        let schema = schema(&settings)?;
        let columns = schema.specs.iter().map(|s| s.column.clone()).collect();
        // A second configure (a fresh instance) gets the same settings.
        let _ = SCHEMA.set(schema);
        Ok(sdk::one_table(columns))
    }

    fn map_batch(messages: Vec<Message>) -> Vec<Outcome> {
        let Some(schema) = SCHEMA.get() else {
            return messages
                .iter()
                .map(|_| Outcome::Rejected(format!("{PLUGIN}: not configured")))
                .collect();
        };
        messages.into_iter().map(|m| map_one(schema, m)).collect()
    }
}

fn map_one(schema: &Schema, message: Message) -> Outcome {
    let result = match message.payload {
        None => tombstone(schema, message.key.as_deref()).map(sdk::delete),
        Some(payload) => row(schema, &payload).map(|row| sdk::rows(vec![row])),
    };
    result.unwrap_or_else(Outcome::Rejected)
}

/// The fields of a JSON object, each as its own text.
fn object<'a>(what: &str, bytes: &'a [u8]) -> Result<BTreeMap<&'a str, &'a RawValue>, String> {
    if bytes.is_empty() {
        return Err(format!("empty {what}"));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| format!("{what} is not valid UTF-8: {e}"))?;
    serde_json::from_str(text).map_err(|e| format!("{what} is not a JSON object: {e}"))
}

fn row(schema: &Schema, payload: &[u8]) -> Result<Vec<Value>, String> {
    let fields = object("payload", payload)?;
    if schema.unknown_fields == UnknownFields::Reject
        && let Some(extra) = fields.keys().find(|k| !schema.specs.iter().any(|s| s.field == **k))
    {
        return Err(format!(
            "field {extra:?} is not one of the columns' fields (unknown_fields = \"reject\")"
        ));
    }
    schema
        .specs
        .iter()
        .map(|s| value(s, fields.get(s.field.as_str()).copied()))
        .collect()
}

/// The value of one column from its field (`None`: the field is missing).
fn value(spec: &Spec, raw: Option<&RawValue>) -> Result<Value, String> {
    let raw = raw.map(RawValue::get).filter(|r| *r != "null");
    match raw {
        None if spec.column.nullable => Ok(Value::Null),
        None => Err(format!(
            "field {:?} is missing or null; column {:?} ({}) is not nullable",
            spec.field,
            spec.column.name,
            parse::type_name(spec.column.kind)
        )),
        Some(raw) => parse::value(spec.column.kind, raw)
            .map_err(|expected| format!("field {:?} is {}; expected {expected}", spec.field, parse::shorten(raw))),
    }
}

fn tombstone(schema: &Schema, key: Option<&[u8]>) -> Result<Vec<Value>, String> {
    if schema.key.is_empty() {
        return Err(
            "a tombstone (no payload), and settings.key is not set: set key = [\"column\", ...] to delete by the Kafka key"
                .into(),
        );
    }
    let key = key.ok_or("a tombstone (no payload) without a Kafka key: nothing to delete by")?;
    let text = std::str::from_utf8(key).map_err(|e| format!("tombstone: the Kafka key is not valid UTF-8: {e}"))?;
    let parsed: &RawValue =
        serde_json::from_str(text).map_err(|e| format!("tombstone: the Kafka key is not JSON: {e}"))?;
    let specs: Vec<&Spec> = schema.key.iter().map(|&i| &schema.specs[i]).collect();
    let fields: BTreeMap<&str, &RawValue> = match (serde_json::from_str(parsed.get()), specs.as_slice()) {
        (Ok(fields), _) => fields,
        // One key column: the key may be its bare value.
        (Err(_), [one]) => BTreeMap::from([(one.field.as_str(), parsed)]),
        (Err(_), _) => {
            return Err(format!(
                "tombstone: the Kafka key {} is not a JSON object with the key fields {}",
                parse::shorten(parsed.get()),
                names(&specs)
            ));
        }
    };
    specs
        .iter()
        .map(|s| match fields.get(s.field.as_str()).map(|r| r.get()) {
            None | Some("null") => Err(format!(
                "tombstone: the Kafka key has no field {:?} (the key is {})",
                s.field,
                names(&specs)
            )),
            Some(raw) => parse::value(s.column.kind, raw).map_err(|expected| {
                format!(
                    "tombstone: key field {:?} is {}; expected {expected}",
                    s.field,
                    parse::shorten(raw)
                )
            }),
        })
        .collect()
}

fn names(specs: &[&Spec]) -> String {
    let names: Vec<String> = specs.iter().map(|s| format!("{:?}", s.field)).collect();
    names.join(", ")
}

sdk::export_mapper!(JsonColumns);
