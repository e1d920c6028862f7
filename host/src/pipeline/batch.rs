//! One batch of a sink between Kafka and PostgreSQL: the consumed messages,
//! mapped in one call on a blocking thread, checked against the columns and
//! encoded for `COPY`; what the mapper rejects, or cannot map, becomes a dead
//! letter.

use super::mapper::BatchMapper;
use super::upsert::{self, Latest};
use crate::plugins::PluginError;
use crate::plugins::mapper::{Column, ColumnType, Message, Outcome, Value};
use crate::postgres::{CopyRows, DeadLetter, binary};
use anyhow::Context as _;

/// A guess at what a row takes in `COPY` besides the payload's bytes.
const ROW_OVERHEAD_BYTES: usize = 64;
/// How much of a bad value a dead letter's reason shows.
const SHOWN_CHARS: usize = 80;
/// The dead-letter reason of a delete in a sink that cannot apply it.
pub const DELETE_NEEDS_KEY: &str = "delete outcome needs a sink with mode = \"upsert\" and a key";

/// A delete a mapper asked for (outcome `delete` of wit/plugin.wit).
#[derive(Debug, Clone, PartialEq)]
pub struct Delete {
    /// The message that asked for it: an index into [`Mapped::positions`].
    pub message: usize,
    /// The values of the key columns, in the key's order; checked against them.
    pub key: Vec<Value>,
}

/// A batch mapped and encoded, ready to be written.
pub struct Mapped {
    /// `(partition, offset)` of every message, in consumed order.
    pub positions: Vec<(i32, i64)>,
    pub rows: CopyRows,
    pub dead_letters: Vec<DeadLetter>,
    /// Deletes, in consumed order (so in offset order within a partition);
    /// only when the sink has a key ([`map_keyed`]), else they are dead letters.
    pub deletes: Vec<Delete>,
    /// The payloads, kept only when they are printed after the commit.
    pub echo: Vec<Vec<u8>>,
    /// The mapper, as the dead-letter table records it.
    pub plugin: String,
}

/// Maps `messages` on a blocking thread (mapper calls are synchronous), then
/// checks and encodes the rows there too. Returns the mapper back. Fails only
/// when the mapper cannot even be restarted. Deletes become dead letters
/// (an append sink has no key to delete by).
pub async fn map(
    mapper: Box<dyn BatchMapper>,
    columns: Vec<Column>,
    messages: Vec<Message>,
    echo: bool,
) -> anyhow::Result<(Box<dyn BatchMapper>, anyhow::Result<Mapped>)> {
    map_keyed(mapper, columns, None, messages, echo).await
}

/// As [`map`], for a sink with a key: `key` holds the key columns in the
/// key's order, and deletes whose values fit them go to [`Mapped::deletes`].
/// The rows are then the staging rows of the batch: the last upsert or
/// delete per key, in consumed (offset) order (see `upsert`).
pub async fn map_keyed(
    mut mapper: Box<dyn BatchMapper>,
    columns: Vec<Column>,
    key: Option<Vec<Column>>,
    messages: Vec<Message>,
    echo: bool,
) -> anyhow::Result<(Box<dyn BatchMapper>, anyhow::Result<Mapped>)> {
    tokio::task::spawn_blocking(move || {
        let mapped = map_blocking(mapper.as_mut(), &columns, key.as_deref(), messages, echo);
        (mapper, mapped)
    })
    .await
    .context("mapper thread panicked")
}

fn map_blocking(
    mapper: &mut dyn BatchMapper,
    columns: &[Column],
    key: Option<&[Column]>,
    messages: Vec<Message>,
    echo: bool,
) -> anyhow::Result<Mapped> {
    let outcomes = map_isolating_failures(mapper, &messages)?;
    let mut mapped = Mapped {
        positions: messages.iter().map(|m| (m.partition, m.offset)).collect(),
        // Room for about one row per message, so the buffer does not grow by copying.
        rows: CopyRows::with_capacity(
            columns,
            messages
                .iter()
                .map(|m| m.payload.as_ref().map_or(0, Vec::len) + ROW_OVERHEAD_BYTES)
                .sum(),
        ),
        dead_letters: Vec::new(),
        deletes: Vec::new(),
        echo: Vec::new(),
        plugin: mapper.describe(),
    };
    let mut latest = match key {
        None => None,
        Some(key) => Some(Latest::new(
            Latest::positions(columns, &key.iter().map(|c| c.name.clone()).collect::<Vec<_>>())
                .context("a key column is not among the mapper's columns")?,
            columns.len(),
        )),
    };
    for (index, (message, outcome)) in messages.into_iter().zip(outcomes).enumerate() {
        let rejected = match outcome {
            Ok(Outcome::Rows(rows)) => match check_rows(columns, &rows) {
                Ok(()) => match latest.as_mut() {
                    None => {
                        for row in rows {
                            mapped.rows.push(row);
                        }
                        None
                    }
                    Some(latest) => match rows
                        .iter()
                        .try_for_each(|r| upsert::check_key_present(columns, latest.key(), r))
                    {
                        Ok(()) => {
                            for row in rows {
                                latest.upsert(row);
                            }
                            None
                        }
                        Err(reason) => Some(format!("mapper returned a bad row: {reason}")),
                    },
                },
                Err(reason) => Some(format!("mapper returned a bad row: {reason}")),
            },
            Ok(Outcome::Rejected(reason)) => Some(format!("rejected: {reason}")),
            Ok(Outcome::Delete(values)) => match key {
                None => Some(DELETE_NEEDS_KEY.to_string()),
                Some(key) => match check_delete(key, &values) {
                    Ok(()) => {
                        if let Some(latest) = latest.as_mut() {
                            latest.delete(values.clone());
                        }
                        mapped.deletes.push(Delete {
                            message: index,
                            key: values,
                        });
                        None
                    }
                    Err(reason) => Some(format!("mapper returned a bad delete: {reason}")),
                },
            },
            Err(e) => Some(e.to_string()),
        };
        if echo {
            mapped.echo.push(message.payload.clone().unwrap_or_default());
        }
        if let Some(reason) = rejected {
            mapped.dead_letters.push(DeadLetter {
                partition: message.partition,
                offset: message.offset,
                key: message.key,
                payload: message.payload,
                reason,
            });
        }
    }
    if let Some(latest) = latest {
        mapped.rows = latest.finish(columns);
    }
    Ok(mapped)
}

/// Maps a batch in one call; when that call fails, maps the messages one by
/// one so only the culprits are dead-lettered. Fails only when the plugin
/// cannot even be restarted.
fn map_isolating_failures(
    mapper: &mut dyn BatchMapper,
    messages: &[Message],
) -> anyhow::Result<Vec<Result<Outcome, PluginError>>> {
    match mapper.map_batch(messages) {
        Ok(outcomes) => return Ok(outcomes.into_iter().map(Ok).collect()),
        Err(e) if messages.len() == 1 => return Ok(vec![fatal_or(e)?]),
        Err(e) => tracing::warn!(plugin = mapper.name(), error = %e, "batch call failed; mapping one by one"),
    }
    messages
        .iter()
        .map(|m| match mapper.map_batch(std::slice::from_ref(m)) {
            Ok(mut one) => Ok(Ok(one.remove(0))),
            Err(e) => fatal_or(e),
        })
        .collect()
}

/// Errors that concern one message become its dead-letter reason; a plugin
/// that cannot start again stops the sink.
fn fatal_or(e: PluginError) -> anyhow::Result<Result<Outcome, PluginError>> {
    match e {
        PluginError::Instantiate { .. } | PluginError::Configure { .. } => Err(e.into()),
        other => Ok(Err(other)),
    }
}

pub(super) fn value_fits(kind: ColumnType, v: &Value) -> bool {
    matches!(
        (kind, v),
        (_, Value::Null)
            | (ColumnType::Text, Value::Text(_))
            | (ColumnType::Integer, Value::Integer(_))
            | (ColumnType::Float, Value::Float(_) | Value::Integer(_))
            | (ColumnType::Boolean, Value::Boolean(_))
            | (ColumnType::Timestamp, Value::Timestamp(_))
            | (ColumnType::Json, Value::Json(_))
            | (ColumnType::Uuid, Value::Uuid(_))
            | (ColumnType::Numeric, Value::Numeric(_) | Value::Integer(_))
            | (ColumnType::Bytea, Value::Bytea(_))
            | (ColumnType::Date, Value::Date(_))
    )
}

fn check_rows(columns: &[Column], rows: &[Vec<Value>]) -> Result<(), String> {
    for row in rows {
        if row.len() != columns.len() {
            return Err(format!("{} values for {} columns", row.len(), columns.len()));
        }
        for (c, v) in columns.iter().zip(row) {
            check_value(c, v)?;
        }
    }
    Ok(())
}

/// Whether a value fits its column and PostgreSQL will take it: a value it
/// refuses would fail the whole batch's `COPY`, so it is caught here, for
/// its message only.
fn check_value(c: &Column, v: &Value) -> Result<(), String> {
    if matches!(v, Value::Null) && !c.nullable {
        return Err(format!("column {:?} is not nullable", c.name));
    }
    if !value_fits(c.kind, v) {
        return Err(format!("column {:?} is {:?}, got {}", c.name, c.kind, shown(v)));
    }
    let column = |reason: String| format!("column {:?}: {reason}", c.name);
    match v {
        Value::Json(text) if serde_json::from_str::<serde::de::IgnoredAny>(text).is_err() => {
            Err(format!("column {:?} got text that is not JSON", c.name))
        }
        // PostgreSQL refuses NUL in text and \u0000 in jsonb.
        Value::Text(t) | Value::Json(t) if t.contains('\0') => Err(format!(
            "column {:?} got text with a NUL byte, which PostgreSQL cannot store",
            c.name
        )),
        Value::Json(t) if t.contains("\\u0000") => Err(format!(
            "column {:?} got JSON with \\u0000, which PostgreSQL's jsonb cannot store",
            c.name
        )),
        Value::Uuid(t) => binary::uuid(t).map(drop).map_err(column),
        Value::Numeric(t) => binary::numeric(t).map(drop).map_err(column),
        Value::Date(days) => binary::date(*days).map(drop).map_err(column),
        _ => Ok(()),
    }
}

/// A value for a message: its start when it is long.
fn shown(v: &Value) -> String {
    let text = format!("{v:?}");
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text,
    }
}

/// Why a delete cannot be applied: its values do not fit the key columns.
fn check_delete(key: &[Column], values: &[Value]) -> Result<(), String> {
    if values.len() != key.len() {
        return Err(format!(
            "{} values for the {} key columns ({})",
            values.len(),
            key.len(),
            key.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
        ));
    }
    for (c, v) in key.iter().zip(values) {
        if matches!(v, Value::Null) {
            return Err(format!("key column {:?} got null", c.name));
        }
        check_value(c, v)?;
    }
    Ok(())
}
