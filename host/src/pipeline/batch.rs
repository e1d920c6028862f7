//! One batch of a sink between Kafka and PostgreSQL: the consumed messages,
//! mapped in one call on a blocking thread, checked against the columns and
//! encoded for `COPY`; what the mapper rejects, or cannot map, becomes a dead
//! letter.

use super::mapper::BatchMapper;
use super::upsert::{self, Latest};
use crate::plugins::PluginError;
use crate::plugins::mapper::{Column, ColumnType, Message, Outcome, Value};
use crate::postgres::isolate::Parts;
use crate::postgres::{CopyRows, DeadLetter, SinkTable, binary};
use anyhow::Context as _;
use std::sync::Arc;

#[cfg(test)]
mod check_tests;
#[cfg(test)]
mod map_tests;

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
    /// The rows of each table of the sink, in the declared order.
    pub tables: Vec<MappedTable>,
    /// The key and payload of every message with rows, for a dead letter
    /// when PostgreSQL refuses its rows (`None` for the others).
    pub sources: Vec<crate::postgres::Source>,
    pub dead_letters: Vec<DeadLetter>,
    /// The payloads, kept only when they are printed after the commit.
    pub echo: Vec<Vec<u8>>,
    /// The mapper, as the dead-letter table records it.
    pub plugin: String,
}

/// The rows of one table of a mapped batch.
pub struct MappedTable {
    pub rows: CopyRows,
    /// Which message each row came from (see `postgres::isolate`).
    pub parts: Parts,
    /// Deletes, in consumed order (so in offset order within a partition);
    /// only when the table has a key, else they are dead letters.
    pub deletes: Vec<Delete>,
}

impl Mapped {
    /// The rows of all tables (in a keyed table: one per key and batch).
    pub fn rows(&self) -> usize {
        self.tables.iter().map(|t| t.rows.len()).sum()
    }
}

/// Maps `messages` on a blocking thread (mapper calls are synchronous), then
/// checks and encodes the rows there too. Returns the mapper back. Fails only
/// when the mapper cannot even be restarted.
///
/// A table with a key (`SinkTable::key`) takes deletes whose values fit its
/// key columns; its rows are then the staging rows of the batch: the last
/// upsert or delete per key, in consumed (offset) order (see `upsert`). In a
/// table without one, a delete makes its message a dead letter. A table
/// with lineage (`SinkTable::lineage`) gets its message's topic, partition
/// and offset on every row (see `postgres::lineage`).
pub async fn map(
    mut mapper: Box<dyn BatchMapper>,
    tables: Arc<[SinkTable]>,
    messages: Vec<Message>,
    echo: bool,
) -> anyhow::Result<(Box<dyn BatchMapper>, anyhow::Result<Mapped>)> {
    tokio::task::spawn_blocking(move || {
        let mapped = map_blocking(mapper.as_mut(), &tables, messages, echo);
        (mapper, mapped)
    })
    .await
    .context("mapper thread panicked")
}

/// One table while a batch is mapped.
struct Building<'a> {
    table: &'a SinkTable,
    /// The key columns, in key order, when the table has a key.
    key: Option<Vec<Column>>,
    /// What the table is written with: its columns, then lineage if any.
    written: Vec<Column>,
    lineage: bool,
    rows: CopyRows,
    of_row: Vec<u32>,
    latest: Option<Latest>,
    deletes: Vec<Delete>,
}

impl<'a> Building<'a> {
    fn new(table: &'a SinkTable, bytes: usize) -> anyhow::Result<Self> {
        let written = table.written();
        let latest = match table.key.is_empty() {
            true => None,
            false => Some(Latest::new(
                Latest::positions(&table.columns, &table.key)
                    .with_context(|| format!("a key column is not among the columns of table {:?}", table.name))?,
                written.len(),
            )),
        };
        Ok(Self {
            key: table.key_columns(),
            rows: CopyRows::with_capacity(&written, bytes),
            written,
            lineage: table.lineage,
            of_row: Vec::new(),
            latest,
            deletes: Vec::new(),
            table,
        })
    }

    /// Why rows cannot go into this table, or `None`.
    fn refuse_rows(&self, rows: &[Vec<Value>]) -> Option<String> {
        let columns = &self.table.columns;
        let checked = check_rows(columns, rows).and_then(|()| match &self.latest {
            None => Ok(()),
            Some(latest) => rows
                .iter()
                .try_for_each(|r| upsert::check_key_present(columns, latest.key(), r)),
        });
        checked
            .err()
            .map(|reason| format!("mapper returned a bad row: {reason}"))
    }

    /// Why a delete cannot be applied to this table, or `None`.
    fn refuse_delete(&self, values: &[Value]) -> Option<String> {
        match &self.key {
            None => Some(DELETE_NEEDS_KEY.to_string()),
            Some(key) => check_delete(key, values)
                .err()
                .map(|reason| format!("mapper returned a bad delete: {reason}")),
        }
    }

    /// Takes rows of the message at `at`, which sits at `position`
    /// (topic, partition, offset) for the lineage columns.
    fn push_rows(&mut self, at: u32, position: (&str, i32, i64), rows: Vec<Vec<Value>>) {
        // Made once per message, not per row.
        let lineage = self
            .lineage
            .then(|| crate::postgres::lineage::values(position.0, position.1, position.2));
        let suffix = lineage.as_ref().map_or(&[][..], |l| &l[..]);
        match self.latest.as_mut() {
            // Encoded straight after the row's own values: no row grown
            // (and moved) to hold three more.
            None => {
                for row in rows {
                    self.rows.push_values(row.iter().chain(suffix));
                    self.of_row.push(at);
                }
            }
            Some(latest) => {
                for mut row in rows {
                    row.extend_from_slice(suffix);
                    latest.upsert(at, row);
                }
            }
        }
    }

    fn push_delete(&mut self, index: usize, at: u32, values: Vec<Value>) {
        if let Some(latest) = self.latest.as_mut() {
            latest.delete(at, values.clone());
        }
        self.deletes.push(Delete {
            message: index,
            key: values,
        });
    }

    fn finish(self) -> MappedTable {
        match self.latest {
            Some(latest) => MappedTable {
                rows: latest.finish(&self.written),
                parts: Parts::Keyed(latest, self.written),
                deletes: self.deletes,
            },
            None => MappedTable {
                rows: self.rows,
                parts: Parts::Rows(self.of_row),
                deletes: self.deletes,
            },
        }
    }
}

/// The table an outcome names, or why it names none of the sink's.
fn table_at(tables: usize, index: u32) -> Result<usize, String> {
    match usize::try_from(index) {
        Ok(i) if i < tables => Ok(i),
        _ => Err(format!(
            "mapper named table {index}, but declared {}",
            if tables == 1 {
                "one table (0)".to_string()
            } else {
                format!("{tables} tables (0 to {})", tables - 1)
            }
        )),
    }
}

fn map_blocking(
    mapper: &mut dyn BatchMapper,
    tables: &[SinkTable],
    messages: Vec<Message>,
    echo: bool,
) -> anyhow::Result<Mapped> {
    let outcomes = map_isolating_failures(mapper, &messages)?;
    // Room for about one row per message in the first table, so the buffer
    // does not grow by copying.
    let bytes: usize = messages
        .iter()
        .map(|m| m.payload.as_ref().map_or(0, Vec::len) + ROW_OVERHEAD_BYTES)
        .sum();
    let mut building = tables
        .iter()
        .enumerate()
        .map(|(i, t)| Building::new(t, if i == 0 { bytes } else { 0 }))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let several = tables.len() > 1;
    let mut mapped = Mapped {
        positions: messages.iter().map(|m| (m.partition, m.offset)).collect(),
        tables: Vec::new(),
        sources: Vec::with_capacity(messages.len()),
        dead_letters: Vec::new(),
        echo: Vec::new(),
        plugin: mapper.describe(),
    };
    for (index, (message, outcome)) in messages.into_iter().zip(outcomes).enumerate() {
        let at = u32::try_from(index).context("a batch of more than 2^32 messages")?;
        // Every table's part of a message is checked before any is taken:
        // a message is written whole, or is a dead letter.
        let rejected = match outcome {
            Ok(Outcome::Rows(parts)) => {
                let refused = parts.iter().find_map(|p| match table_at(building.len(), p.table) {
                    Err(reason) => Some(format!("mapper returned a bad row: {reason}")),
                    Ok(t) => building[t]
                        .refuse_rows(&p.rows)
                        .map(|r| named(r, several, &tables[t].name)),
                });
                if refused.is_none() {
                    for p in parts {
                        building[p.table as usize].push_rows(
                            at,
                            (&message.topic, message.partition, message.offset),
                            p.rows,
                        );
                    }
                }
                refused
            }
            Ok(Outcome::Rejected(reason)) => Some(format!("rejected: {reason}")),
            Ok(Outcome::Delete(keys)) => {
                let refused = keys.iter().find_map(|k| match table_at(building.len(), k.table) {
                    Err(reason) => Some(format!("mapper returned a bad delete: {reason}")),
                    Ok(t) => building[t]
                        .refuse_delete(&k.key)
                        .map(|r| named(r, several, &tables[t].name)),
                });
                if refused.is_none() {
                    for k in keys {
                        building[k.table as usize].push_delete(index, at, k.key);
                    }
                }
                refused
            }
            Err(e) => Some(e.to_string()),
        };
        if echo {
            mapped.echo.push(message.payload.clone().unwrap_or_default());
        }
        match rejected {
            Some(reason) => {
                mapped.dead_letters.push(DeadLetter {
                    partition: message.partition,
                    offset: message.offset,
                    key: message.key,
                    payload: message.payload,
                    reason,
                });
                mapped.sources.push((None, None));
            }
            None => mapped.sources.push((message.key, message.payload)),
        }
    }
    mapped.tables = building.into_iter().map(Building::finish).collect();
    Ok(mapped)
}

/// A reason, naming its table when the sink writes several.
fn named(reason: String, several: bool, table: &str) -> String {
    if several {
        format!("table {table:?}: {reason}")
    } else {
        reason
    }
}

/// Most messages handed to the mapper in one call. A guest's linear memory
/// keeps its high-water mark for good (a JavaScript mapper's heap grows
/// with what one call holds, up to its memory limit), so a sink batch of
/// 20,000 goes in calls of this many: the guest holds a quarter of it.
const MESSAGES_PER_CALL: usize = 5_000;

/// Maps a batch in calls of [`MESSAGES_PER_CALL`]; when a call fails, maps
/// its messages one by one so only the culprits are dead-lettered. The
/// outcomes of a batch hold at most `max_output_bytes` in all. Fails only
/// when the plugin cannot even be restarted.
fn map_isolating_failures(
    mapper: &mut dyn BatchMapper,
    messages: &[Message],
) -> anyhow::Result<Vec<Result<Outcome, PluginError>>> {
    if messages.len() <= MESSAGES_PER_CALL {
        return map_call(mapper, messages, None);
    }
    let mut budget = crate::plugins::output::OutputBudget::new(mapper.name(), mapper.max_output_bytes());
    let mut outcomes = Vec::with_capacity(messages.len());
    for chunk in messages.chunks(MESSAGES_PER_CALL) {
        outcomes.extend(map_call(mapper, chunk, Some(&mut budget))?);
    }
    Ok(outcomes)
}

/// One call for `messages`, or one per message when it fails. `shared`:
/// the batch's output budget when the batch takes several calls (one call
/// alone is bounded by the store's hostcall fuel).
fn map_call(
    mapper: &mut dyn BatchMapper,
    messages: &[Message],
    shared: Option<&mut crate::plugins::output::OutputBudget>,
) -> anyhow::Result<Vec<Result<Outcome, PluginError>>> {
    match mapper.map_batch(messages) {
        Ok(outcomes) => {
            return Ok(match shared {
                None => outcomes.into_iter().map(Ok).collect(),
                Some(budget) => outcomes.into_iter().map(|o| budget.take(o)).collect(),
            });
        }
        Err(e) if messages.len() == 1 => {
            super::fault_log::mapper_call_failed(mapper.name(), &e);
            return Ok(vec![fatal_or(e)?]);
        }
        Err(e) => {
            super::fault_log::mapper_call_failed(mapper.name(), &e);
            tracing::debug!(plugin = mapper.name(), error = %e, "batch call failed; mapping one by one");
        }
    }
    // One call at a time, each up to the cap: their sum is capped too.
    let mut own = None;
    let budget = match shared {
        Some(budget) => budget,
        None => own.insert(crate::plugins::output::OutputBudget::new(
            mapper.name(),
            mapper.max_output_bytes(),
        )),
    };
    messages
        .iter()
        .map(|m| match mapper.map_batch(std::slice::from_ref(m)) {
            Ok(mut one) => Ok(budget.take(one.remove(0))),
            Err(e) => {
                super::fault_log::mapper_call_failed(mapper.name(), &e);
                fatal_or(e)
            }
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
        Value::Json(t) if binary::json_nul_escape(t) => Err(format!(
            "column {:?} got JSON with \\u0000, which PostgreSQL's jsonb cannot store",
            c.name
        )),
        Value::Uuid(t) => binary::uuid(t).map(drop).map_err(column),
        Value::Numeric(t) => binary::numeric(t).map(drop).map_err(column),
        Value::Date(days) => binary::date(*days).map(drop).map_err(column),
        Value::Timestamp(us) => binary::timestamp(*us).map(drop).map_err(column),
        Value::Json(t) => binary::json(t).map_err(column),
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
    upsert::check_key_size(values.iter())
}
