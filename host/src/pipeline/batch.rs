//! One batch of a sink between Kafka and PostgreSQL: the consumed messages,
//! mapped in one call on a blocking thread, checked against the columns and
//! encoded for `COPY`; what the mapper rejects, or cannot map, becomes a dead
//! letter.

use super::mapper::BatchMapper;
use super::upsert::{self, Latest};
use crate::plugins::PluginError;
use crate::plugins::mapper::{Column, ColumnType, Message, Outcome, Value};
use crate::postgres::isolate::Parts;
use crate::postgres::{CopyRows, DeadLetter, binary};
use anyhow::Context as _;

#[cfg(test)]
mod check_tests;

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
    /// Which message each row came from (see `postgres::isolate`).
    pub parts: Parts,
    /// The key and payload of every message with rows, for a dead letter
    /// when PostgreSQL refuses its rows (`None` for the others).
    pub sources: Vec<crate::postgres::Source>,
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
/// With `lineage`, every row also gets its message's partition and offset
/// (see `postgres::lineage`).
pub async fn map(
    mapper: Box<dyn BatchMapper>,
    columns: Vec<Column>,
    messages: Vec<Message>,
    echo: bool,
    lineage: bool,
) -> anyhow::Result<(Box<dyn BatchMapper>, anyhow::Result<Mapped>)> {
    map_keyed(mapper, columns, None, messages, echo, lineage).await
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
    lineage: bool,
) -> anyhow::Result<(Box<dyn BatchMapper>, anyhow::Result<Mapped>)> {
    tokio::task::spawn_blocking(move || {
        let mapped = map_blocking(mapper.as_mut(), &columns, key.as_deref(), messages, echo, lineage);
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
    lineage: bool,
) -> anyhow::Result<Mapped> {
    let outcomes = map_isolating_failures(mapper, &messages)?;
    // What the table is written with: the mapper's columns, then lineage.
    let written = crate::postgres::lineage::write_columns(columns, lineage);
    let with_lineage = |mut row: Vec<Value>, m: &Message| {
        if lineage {
            row.extend(crate::postgres::lineage::values(m.partition, m.offset));
        }
        row
    };
    let mut mapped = Mapped {
        positions: messages.iter().map(|m| (m.partition, m.offset)).collect(),
        // Room for about one row per message, so the buffer does not grow by copying.
        rows: CopyRows::with_capacity(
            &written,
            messages
                .iter()
                .map(|m| m.payload.as_ref().map_or(0, Vec::len) + ROW_OVERHEAD_BYTES)
                .sum(),
        ),
        parts: Parts::Rows(Vec::new()),
        sources: Vec::with_capacity(messages.len()),
        dead_letters: Vec::new(),
        deletes: Vec::new(),
        echo: Vec::new(),
        plugin: mapper.describe(),
    };
    let mut of_row: Vec<u32> = Vec::with_capacity(messages.len());
    let mut latest = match key {
        None => None,
        Some(key) => Some(Latest::new(
            Latest::positions(columns, &key.iter().map(|c| c.name.clone()).collect::<Vec<_>>())
                .context("a key column is not among the mapper's columns")?,
            written.len(),
        )),
    };
    for (index, (message, outcome)) in messages.into_iter().zip(outcomes).enumerate() {
        let at = u32::try_from(index).context("a batch of more than 2^32 messages")?;
        let rejected = match outcome {
            Ok(Outcome::Rows(rows)) => match check_rows(columns, &rows) {
                Ok(()) => match latest.as_mut() {
                    None => {
                        for row in rows {
                            mapped.rows.push(with_lineage(row, &message));
                            of_row.push(at);
                        }
                        None
                    }
                    Some(latest) => match rows
                        .iter()
                        .try_for_each(|r| upsert::check_key_present(columns, latest.key(), r))
                    {
                        Ok(()) => {
                            for row in rows {
                                latest.upsert(at, with_lineage(row, &message));
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
                            latest.delete(at, values.clone());
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
    mapped.parts = match latest {
        Some(latest) => {
            mapped.rows = latest.finish(&written);
            Parts::Keyed(latest, written)
        }
        None => Parts::Rows(of_row),
    };
    Ok(mapped)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A mapper that answers each message with the outcome queued for it.
    struct Scripted(Vec<Outcome>, Vec<Column>);

    impl BatchMapper for Scripted {
        fn name(&self) -> &str {
            "scripted"
        }
        fn hash(&self) -> &str {
            "0"
        }
        fn describe(&self) -> String {
            "scripted".into()
        }
        fn columns(&self) -> &[Column] {
            &self.1
        }
        fn map_batch(&mut self, messages: &[Message]) -> Result<Vec<Outcome>, PluginError> {
            Ok(self.0.drain(..messages.len()).collect())
        }
    }

    fn column(name: &str, kind: ColumnType, nullable: bool) -> Column {
        Column {
            name: name.into(),
            kind,
            nullable,
        }
    }

    fn message(offset: i64) -> Message {
        Message {
            topic: "t".into(),
            partition: 0,
            offset,
            timestamp: None,
            key: Some(b"k".to_vec()),
            payload: None,
        }
    }

    fn columns() -> Vec<Column> {
        vec![
            column("id", ColumnType::Uuid, false),
            column("n", ColumnType::Numeric, true),
        ]
    }

    fn run(outcomes: Vec<Outcome>, key: Option<&[Column]>) -> Mapped {
        let messages: Vec<Message> = (0..outcomes.len() as i64).map(message).collect();
        let mut mapper = Scripted(outcomes, columns());
        map_blocking(&mut mapper, &columns(), key, messages, false, false).expect("maps")
    }

    const ID: &str = "0b7e5a3c-1234-4abc-8def-001122334455";

    #[test]
    fn lineage_appends_the_partition_and_offset_to_every_row() {
        let row = || Outcome::Rows(vec![vec![Value::Uuid(ID.into()), Value::Null]]);
        let mut mapper = Scripted(vec![row()], columns());
        let mapped = map_blocking(&mut mapper, &columns(), None, vec![message(7)], false, true).expect("maps");
        let bytes = mapped.rows.finish();
        let at = crate::postgres::COPY_HEADER.len();
        assert_eq!(
            i16::from_be_bytes([bytes[at], bytes[at + 1]]),
            4,
            "two columns and lineage"
        );
        let end = bytes.len() - 2;
        assert_eq!(&bytes[end - 8..end], &7i64.to_be_bytes(), "the offset comes last");
        assert_eq!(
            &bytes[end - 24..end - 12],
            &[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0],
            "partition 0"
        );
        // Keyed: the staging rows carry lineage too (before the delete flag).
        let key = [column("id", ColumnType::Uuid, false)];
        let mut mapper = Scripted(vec![row()], columns());
        let mapped = map_blocking(&mut mapper, &columns(), Some(&key), vec![message(9)], false, true).expect("maps");
        let bytes = mapped.rows.finish();
        assert_eq!(
            i16::from_be_bytes([bytes[at], bytes[at + 1]]),
            5,
            "lineage and the delete flag"
        );
    }

    #[test]
    fn an_append_sink_dead_letters_deletes_with_the_reason() {
        let mapped = run(
            vec![
                Outcome::Rows(vec![vec![Value::Uuid(ID.into()), Value::Null]]),
                Outcome::Delete(vec![Value::Uuid(ID.into())]),
            ],
            None,
        );
        assert_eq!(mapped.rows.len(), 1);
        assert!(mapped.deletes.is_empty());
        let dead: Vec<(i64, &str)> = mapped
            .dead_letters
            .iter()
            .map(|d| (d.offset, d.reason.as_str()))
            .collect();
        assert_eq!(dead, [(1, DELETE_NEEDS_KEY)]);
        assert_eq!(
            mapped.dead_letters[0].key.as_deref(),
            Some(&b"k"[..]),
            "the key is kept"
        );
    }

    #[test]
    fn a_keyed_sink_gets_deletes_in_order_and_dead_letters_misfits() {
        let key = [column("id", ColumnType::Uuid, false)];
        let mapped = run(
            vec![
                Outcome::Delete(vec![Value::Uuid(ID.into())]),
                Outcome::Rows(vec![vec![Value::Uuid(ID.into()), Value::Numeric("1.5".into())]]),
                Outcome::Delete(vec![Value::Null]),
                Outcome::Delete(vec![Value::Uuid(ID.into()), Value::Integer(1)]),
                Outcome::Delete(vec![Value::Text(ID.into())]),
                Outcome::Delete(vec![Value::Uuid("nope".into())]),
                Outcome::Delete(vec![Value::Uuid(ID.to_uppercase())]),
            ],
            Some(&key),
        );
        let deletes: Vec<usize> = mapped.deletes.iter().map(|d| d.message).collect();
        assert_eq!(deletes, [0, 6]);
        assert_eq!(mapped.deletes[0].key, [Value::Uuid(ID.into())]);
        assert_eq!(mapped.rows.len(), 1);
        let dead: Vec<(i64, &str)> = mapped
            .dead_letters
            .iter()
            .map(|d| (d.offset, d.reason.as_str()))
            .collect();
        assert_eq!(dead.len(), 4, "{dead:?}");
        assert!(dead[0].1.contains("key column \"id\" got null"), "{dead:?}");
        assert!(dead[1].1.contains("2 values for the 1 key columns (id)"), "{dead:?}");
        assert!(
            dead[2].1.contains("column \"id\" is ColumnType::Uuid, got Value::Text"),
            "{dead:?}"
        );
        assert!(dead[3].1.contains("is not a UUID"), "{dead:?}");
        assert!(dead.iter().all(|d| d.1.starts_with("mapper returned a bad delete: ")));
    }

    /// Answers every message with one row and remembers each call's size.
    struct Counting(Vec<usize>, Vec<Column>);

    impl BatchMapper for Counting {
        fn name(&self) -> &str {
            "counting"
        }
        fn hash(&self) -> &str {
            "0"
        }
        fn describe(&self) -> String {
            "counting".into()
        }
        fn columns(&self) -> &[Column] {
            &self.1
        }
        fn map_batch(&mut self, messages: &[Message]) -> Result<Vec<Outcome>, PluginError> {
            self.0.push(messages.len());
            Ok(messages
                .iter()
                .map(|m| Outcome::Rows(vec![vec![Value::Uuid(ID.into()), Value::Integer(m.offset)]]))
                .collect())
        }
    }

    #[test]
    fn a_large_batch_is_mapped_in_calls_of_bounded_size_in_order() {
        let n = 2 * MESSAGES_PER_CALL + 7;
        let messages: Vec<Message> = (0..n as i64).map(message).collect();
        let mut mapper = Counting(Vec::new(), columns());
        let mapped = map_blocking(&mut mapper, &columns(), None, messages, false, false).expect("maps");
        assert_eq!(mapper.0, [MESSAGES_PER_CALL, MESSAGES_PER_CALL, 7]);
        assert_eq!(mapped.rows.len(), n);
        assert!(mapped.dead_letters.is_empty());
        let offsets: Vec<i64> = mapped.positions.iter().map(|p| p.1).collect();
        assert_eq!(offsets, (0..n as i64).collect::<Vec<_>>());
    }

    #[test]
    fn values_postgres_would_refuse_dead_letter_their_message_only() {
        let date = [column("d", ColumnType::Date, false)];
        assert!(check_rows(&date, &[vec![Value::Date(0)]]).is_ok());
        let e = check_rows(&date, &[vec![Value::Date(i32::MAX)]]).unwrap_err();
        assert!(
            e.contains("column \"d\"") && e.contains("outside PostgreSQL's range"),
            "{e}"
        );
        let numeric = [column("n", ColumnType::Numeric, false)];
        assert!(check_rows(&numeric, &[vec![Value::Integer(5)]]).is_ok());
        let e = check_rows(&numeric, &[vec![Value::Numeric("1,5".into())]]).unwrap_err();
        assert!(
            e.contains("column \"n\"") && e.contains("\"1,5\" is not a number"),
            "{e}"
        );
        let bytes = [column("b", ColumnType::Bytea, false)];
        assert!(check_rows(&bytes, &[vec![Value::Bytea(vec![0; 3])]]).is_ok());
        let e = check_rows(&bytes, &[vec![Value::Text("x".into())]]).unwrap_err();
        assert!(e.contains("column \"b\" is ColumnType::Bytea, got Value::Text"), "{e}");
        let e = check_rows(&date, &[vec![Value::Bytea(vec![7; 1000])]]).unwrap_err();
        assert!(e.len() < 200, "a long value is shortened: {e}");
    }
}
