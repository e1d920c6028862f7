//! The last operation per key of a batch, for a sink with `mode = "upsert"`.
//! `INSERT ... ON CONFLICT` cannot touch a row twice in one statement, and a
//! delete must not be undone by an earlier upsert of the same batch: so the
//! host keeps, for each key, only the last upsert or delete in offset order,
//! and the database applies one operation per key.

use crate::contract::mapper::{Column, ColumnType, Value};
use crate::postgres::CopyRows;
use std::collections::HashMap;

/// One write of a keyed sink.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// A whole row, one value per column.
    Upsert(Vec<Value>),
    /// The key values of the row to delete, in the order of the sink's key.
    Delete(Vec<Value>),
}

/// The operations of a batch, one per key: a later one for the same key
/// replaces the earlier. Feed them in offset order. Every operation is kept,
/// so a subset of the batch's messages can be staged again when PostgreSQL
/// refuses one of them (see `postgres::isolate`).
pub struct Latest {
    /// Where each key column is among the columns, in key order.
    key: Vec<usize>,
    width: usize,
    slot: HashMap<Vec<u8>, usize>,
    /// Every operation fed, in order: the message it came from, its key's slot.
    history: Vec<(u32, usize, Op)>,
}

impl Latest {
    /// `key`: the position of each key column among `columns`, in key order.
    pub fn new(key: Vec<usize>, width: usize) -> Self {
        Self {
            key,
            width,
            slot: HashMap::new(),
            history: Vec::new(),
        }
    }

    /// The key positions of the sink's `key` names among `columns`; `None`
    /// when a key column is missing (the host checks this when the mapper
    /// is loaded).
    pub fn positions(columns: &[Column], key: &[String]) -> Option<Vec<usize>> {
        key.iter().map(|k| columns.iter().position(|c| &c.name == k)).collect()
    }

    /// A row of message `message`: its key values must be there and not null
    /// (checked by the caller).
    pub fn upsert(&mut self, message: u32, row: Vec<Value>) {
        let id = identity(self.key.iter().map(|i| &row[*i]));
        self.put(message, id, Op::Upsert(row));
    }

    /// A delete, by its key values in key order.
    pub fn delete(&mut self, message: u32, key: Vec<Value>) {
        let id = identity(key.iter());
        self.put(message, id, Op::Delete(key));
    }

    fn put(&mut self, message: u32, id: Vec<u8>, op: Op) {
        let next = self.slot.len();
        let slot = *self.slot.entry(id).or_insert(next);
        self.history.push((message, slot, op));
    }

    /// The key columns' positions, in key order.
    pub fn key(&self) -> &[usize] {
        &self.key
    }

    /// The messages that have an operation, each once, in order.
    pub fn messages(&self) -> Vec<u32> {
        let mut messages: Vec<u32> = self.history.iter().map(|(m, _, _)| *m).collect();
        messages.dedup();
        messages
    }

    /// The last operation per key among the messages `keep` takes, in the
    /// order their keys first appeared.
    fn last_ops(&self, keep: impl Fn(u32) -> bool) -> Vec<&Op> {
        let mut last: Vec<Option<usize>> = vec![None; self.slot.len()];
        let mut order = Vec::new();
        for (i, (message, slot, _)) in self.history.iter().enumerate() {
            if keep(*message) {
                if last[*slot].is_none() {
                    order.push(*slot);
                }
                last[*slot] = Some(i);
            }
        }
        order
            .iter()
            .filter_map(|s| last[*s])
            .map(|i| &self.history[i].2)
            .collect()
    }

    #[cfg(test)]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.slot.len()
    }

    /// The operations left, one per key, in the order their keys first appeared.
    #[cfg(test)]
    pub fn ops(&self) -> Vec<Op> {
        self.last_ops(|_| true).into_iter().cloned().collect()
    }

    /// The staging rows for `COPY`: the columns, then the delete flag. A
    /// delete has its key values in the key columns and NULL elsewhere.
    pub fn finish(&self, columns: &[Column]) -> CopyRows {
        self.stage(columns, |_| true).0
    }

    /// As [`Latest::finish`], for the messages `keep` takes only; with the
    /// number of deletes among the rows.
    pub fn stage(&self, columns: &[Column], keep: impl Fn(u32) -> bool) -> (CopyRows, usize) {
        let mut stage: Vec<Column> = columns.to_vec();
        stage.push(Column {
            name: crate::postgres::keyed::DELETE_COLUMN.into(),
            kind: ColumnType::Boolean,
            nullable: false,
        });
        let ops = self.last_ops(keep);
        let mut rows = CopyRows::with_capacity(&stage, ops.len() * 64);
        let (upsert, delete, null) = (Value::Boolean(false), Value::Boolean(true), Value::Null);
        let mut deletes = 0;
        for op in ops {
            match op {
                Op::Upsert(row) => rows.push_values(row.iter().chain(std::iter::once(&upsert))),
                Op::Delete(key) => {
                    deletes += 1;
                    let mut row = vec![&null; self.width];
                    for (i, v) in self.key.iter().zip(key) {
                        row[*i] = v;
                    }
                    rows.push_values(row.into_iter().chain(std::iter::once(&delete)));
                }
            }
        }
        (rows, deletes)
    }
}

/// Bytes that tell keys apart: each value tagged with its kind, lengths
/// where they vary, so distinct keys never encode alike.
fn identity<'a>(values: impl Iterator<Item = &'a Value>) -> Vec<u8> {
    let mut id = Vec::with_capacity(32);
    for v in values {
        match v {
            Value::Null => id.push(0),
            Value::Text(s) => tagged(&mut id, 1, s.as_bytes()),
            Value::Json(s) => tagged(&mut id, 2, s.as_bytes()),
            // An integer and a float of a float column are one key when equal.
            Value::Integer(i) => {
                id.push(3);
                id.extend_from_slice(&i.to_be_bytes());
            }
            Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                id.push(3);
                id.extend_from_slice(&(*f as i64).to_be_bytes());
            }
            Value::Float(f) => {
                id.push(4);
                id.extend_from_slice(&f.to_bits().to_be_bytes());
            }
            Value::Boolean(b) => id.extend_from_slice(&[5, u8::from(*b)]),
            Value::Timestamp(t) => {
                id.push(6);
                id.extend_from_slice(&t.to_be_bytes());
            }
            // PostgreSQL compares UUIDs by value, whatever their case and hyphens.
            Value::Uuid(t) => match crate::postgres::binary::uuid(t) {
                Ok(bytes) => {
                    id.push(7);
                    id.extend_from_slice(&bytes);
                }
                Err(_) => tagged(&mut id, 8, t.as_bytes()),
            },
            // Not allowed as key columns (see `SinkMode::check_columns`):
            // told apart by their text, which may be finer than PostgreSQL's
            // equality.
            Value::Numeric(t) => tagged(&mut id, 9, t.as_bytes()),
            Value::Bytea(b) => tagged(&mut id, 10, b),
            Value::Date(d) => {
                id.push(11);
                id.extend_from_slice(&d.to_be_bytes());
            }
        }
    }
    id
}

fn tagged(id: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    id.push(tag);
    id.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    id.extend_from_slice(bytes);
}

/// Checks that a row's key values are not null (a key identifies the row)
/// and fit the key's index.
pub fn check_key_present(columns: &[Column], key: &[usize], row: &[Value]) -> Result<(), String> {
    match key.iter().find(|i| matches!(row.get(**i), Some(Value::Null) | None)) {
        Some(i) => Err(format!(
            "key column {:?} got NULL; a row needs its key",
            columns.get(*i).map_or("?", |c| c.name.as_str())
        )),
        None => check_key_size(key.iter().filter_map(|i| row.get(*i))),
    }
}

/// The most bytes of key values the host lets through: PostgreSQL's btree
/// refuses an index entry over 2704 bytes ("index row size exceeds btree
/// version 4 maximum"), which would fail every attempt at the batch.
pub const MAX_KEY_BYTES: usize = 2600;

/// Checks that key values fit PostgreSQL's key index.
pub fn check_key_size<'a>(values: impl Iterator<Item = &'a Value>) -> Result<(), String> {
    let bytes: usize = values
        .map(|v| match v {
            Value::Text(t) | Value::Json(t) | Value::Uuid(t) | Value::Numeric(t) => t.len(),
            Value::Bytea(b) => b.len(),
            _ => 8,
        })
        .sum();
    if bytes > MAX_KEY_BYTES {
        return Err(format!(
            "key values of {bytes} bytes; PostgreSQL's key index takes at most about {MAX_KEY_BYTES}\n  hint: key on a shorter value (an id, or a hash of the long one)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns() -> Vec<Column> {
        ["id", "v"]
            .iter()
            .map(|n| Column {
                name: (*n).into(),
                kind: ColumnType::Text,
                nullable: true,
            })
            .collect()
    }

    fn row(id: &str, v: &str) -> Vec<Value> {
        vec![Value::Text(id.into()), Value::Text(v.into())]
    }

    #[test]
    fn the_last_operation_per_key_wins_in_offset_order() {
        let mut latest = Latest::new(vec![0], 2);
        latest.upsert(0, row("a", "1"));
        latest.upsert(0, row("b", "1"));
        latest.upsert(0, row("a", "2"));
        latest.delete(0, vec![Value::Text("b".into())]);
        latest.delete(0, vec![Value::Text("c".into())]);
        latest.upsert(0, row("c", "3"));
        assert_eq!(
            latest.ops(),
            [
                Op::Upsert(row("a", "2")),
                Op::Delete(vec![Value::Text("b".into())]),
                Op::Upsert(row("c", "3")),
            ]
        );
    }

    #[test]
    fn a_subset_of_messages_stages_the_last_operation_of_each_key_among_them() {
        let columns = columns();
        let mut latest = Latest::new(vec![0], 2);
        latest.upsert(0, row("a", "1"));
        latest.upsert(1, row("a", "2"));
        latest.delete(2, vec![Value::Text("b".into())]);
        latest.upsert(3, row("c", "3"));
        assert_eq!(latest.messages(), [0, 1, 2, 3]);
        // Message 1 refused: key a falls back to message 0's row.
        let (staged, deletes) = latest.stage(&columns, |m| m != 1);
        let mut expected = Latest::new(vec![0], 2);
        expected.upsert(0, row("a", "1"));
        expected.delete(2, vec![Value::Text("b".into())]);
        expected.upsert(3, row("c", "3"));
        assert_eq!(staged.finish(), expected.finish(&columns).finish());
        assert_eq!(deletes, 1);
        let (staged, deletes) = latest.stage(&columns, |m| m == 3);
        assert_eq!((staged.len(), deletes), (1, 0));
    }

    #[test]
    fn keys_are_told_apart_by_every_key_column_and_by_type() {
        let mut latest = Latest::new(vec![0, 1], 2);
        // "ab" + "c" and "a" + "bc" are different keys.
        latest.upsert(0, row("ab", "c"));
        latest.upsert(0, row("a", "bc"));
        assert_eq!(latest.len(), 2);
        let mut latest = Latest::new(vec![0], 1);
        latest.upsert(0, vec![Value::Integer(1)]);
        latest.upsert(0, vec![Value::Text("1".into())]);
        latest.upsert(0, vec![Value::Float(1.0)]);
        assert_eq!(latest.len(), 2, "an integer and an equal float are one key");
        let mut latest = Latest::new(vec![0], 1);
        latest.upsert(0, vec![Value::Uuid("0B7E5A3C-1234-4321-ABCD-0123456789AB".into())]);
        latest.delete(
            0,
            vec![Value::Uuid("0b7e5a3c123443 21abcd0123456789ab".replace(' ', ""))],
        );
        assert_eq!(latest.len(), 1, "one UUID, however written");
        assert!(matches!(latest.ops()[0], Op::Delete(_)));
    }

    #[test]
    fn positions_follow_the_key_order() {
        let columns = columns();
        assert_eq!(
            Latest::positions(&columns, &["v".into(), "id".into()]),
            Some(vec![1, 0])
        );
        assert_eq!(Latest::positions(&columns, &["nope".into()]), None);
    }

    #[test]
    fn a_delete_stages_its_key_in_the_key_columns() {
        let columns = columns();
        let mut latest = Latest::new(vec![1], 2);
        latest.delete(0, vec![Value::Text("k".into())]);
        let mut expected = CopyRows::with_capacity(
            &[
                columns[0].clone(),
                columns[1].clone(),
                Column {
                    name: "wasm_stream_delete".into(),
                    kind: ColumnType::Boolean,
                    nullable: false,
                },
            ],
            0,
        );
        expected.push(vec![Value::Null, Value::Text("k".into()), Value::Boolean(true)]);
        assert_eq!(latest.finish(&columns).finish(), expected.finish());
    }

    #[test]
    fn keys_too_long_for_postgres_index_are_refused() {
        let columns = columns();
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        let e = check_key_present(&columns, &[0], &row(&long, "v")).unwrap_err();
        assert!(e.contains("key values of 2601 bytes") && e.contains("hint:"), "{e}");
        let fits = "k".repeat(MAX_KEY_BYTES);
        assert!(
            check_key_present(&columns, &[0], &row(&fits, &long)).is_ok(),
            "only the key counts"
        );
        assert!(check_key_size([Value::Bytea(vec![0; MAX_KEY_BYTES + 1])].iter()).is_err());
    }

    #[test]
    fn rows_without_their_key_are_refused() {
        let columns = columns();
        assert!(check_key_present(&columns, &[0], &[Value::Null, Value::Text("x".into())]).is_err());
        assert!(check_key_present(&columns, &[0], &row("a", "b")).is_ok());
    }
}
