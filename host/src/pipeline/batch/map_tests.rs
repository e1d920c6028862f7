//! The mapping of a batch: outcomes to rows, deletes and dead letters, for
//! one table and for several.

use super::*;
use crate::plugins::mapper::{TableKey, TableRows};

/// A mapper that answers each message with the outcome queued for it.
struct Scripted(Vec<Outcome>, Vec<crate::plugins::mapper::Table>);

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
    fn tables(&self) -> &[crate::plugins::mapper::Table] {
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
        schema: None,
    }
}

fn columns() -> Vec<Column> {
    vec![
        column("id", ColumnType::Uuid, false),
        column("n", ColumnType::Numeric, true),
    ]
}

fn run(outcomes: Vec<Outcome>, key: Option<&[Column]>) -> Mapped {
    let key: Vec<String> = key.unwrap_or_default().iter().map(|c| c.name.clone()).collect();
    run_tables(outcomes, &[SinkTable::one("t", columns(), &key)])
}

fn run_tables(outcomes: Vec<Outcome>, tables: &[SinkTable]) -> Mapped {
    let messages: Vec<Message> = (0..outcomes.len() as i64).map(message).collect();
    let mut mapper = Scripted(outcomes, Vec::new());
    map_blocking(&mut mapper, tables, messages, false).expect("maps")
}

fn rows(table: u32, rows: Vec<Vec<Value>>) -> Outcome {
    Outcome::Rows(vec![TableRows { table, rows }])
}

fn delete(table: u32, key: Vec<Value>) -> Outcome {
    Outcome::Delete(vec![TableKey { table, key }])
}

const ID: &str = "0b7e5a3c-1234-4abc-8def-001122334455";

#[test]
fn an_append_sink_dead_letters_deletes_with_the_reason() {
    let mapped = run(
        vec![
            rows(0, vec![vec![Value::Uuid(ID.into()), Value::Null]]),
            delete(0, vec![Value::Uuid(ID.into())]),
        ],
        None,
    );
    assert_eq!(mapped.rows(), 1);
    assert!(mapped.tables[0].deletes.is_empty());
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
            delete(0, vec![Value::Uuid(ID.into())]),
            rows(0, vec![vec![Value::Uuid(ID.into()), Value::Numeric("1.5".into())]]),
            delete(0, vec![Value::Null]),
            delete(0, vec![Value::Uuid(ID.into()), Value::Integer(1)]),
            delete(0, vec![Value::Text(ID.into())]),
            delete(0, vec![Value::Uuid("nope".into())]),
            delete(0, vec![Value::Uuid(ID.to_uppercase())]),
        ],
        Some(&key),
    );
    let deletes: Vec<usize> = mapped.tables[0].deletes.iter().map(|d| d.message).collect();
    assert_eq!(deletes, [0, 6]);
    assert_eq!(mapped.tables[0].deletes[0].key, [Value::Uuid(ID.into())]);
    assert_eq!(mapped.rows(), 1);
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

fn orders() -> [SinkTable; 2] {
    let items = vec![
        column("id", ColumnType::Uuid, false),
        column("line", ColumnType::Numeric, false),
    ];
    [
        SinkTable::one("orders", columns(), &[]),
        SinkTable::one("orders_items", items, &[]),
    ]
}

#[test]
fn a_message_writes_rows_to_several_tables_or_to_none() {
    let order = vec![Value::Uuid(ID.into()), Value::Null];
    let line = |n: i64| vec![Value::Uuid(ID.into()), Value::Integer(n)];
    let mapped = run_tables(
        vec![
            Outcome::Rows(vec![
                TableRows {
                    table: 0,
                    rows: vec![order.clone()],
                },
                TableRows {
                    table: 1,
                    rows: vec![line(1), line(2)],
                },
            ]),
            // A bad item: the order of the same message is not written either.
            Outcome::Rows(vec![
                TableRows {
                    table: 0,
                    rows: vec![order.clone()],
                },
                TableRows {
                    table: 1,
                    rows: vec![vec![Value::Null, Value::Integer(1)]],
                },
            ]),
            rows(2, vec![order.clone()]),
            rows(1, vec![line(3)]),
        ],
        &orders(),
    );
    let counts: Vec<usize> = mapped.tables.iter().map(|t| t.rows.len()).collect();
    assert_eq!(counts, [1, 3]);
    let Parts::Rows(of_row) = &mapped.tables[1].parts else {
        panic!("an append table")
    };
    assert_eq!(of_row, &[0, 0, 3]);
    let dead: Vec<(i64, &str)> = mapped
        .dead_letters
        .iter()
        .map(|d| (d.offset, d.reason.as_str()))
        .collect();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(
        dead[0]
            .1
            .starts_with("table \"orders_items\": mapper returned a bad row: ")
            && dead[0].1.contains("column \"id\" is not nullable"),
        "{dead:?}"
    );
    assert!(
        dead[1]
            .1
            .contains("mapper named table 2, but declared 2 tables (0 to 1)"),
        "{dead:?}"
    );
}

#[test]
fn deletes_name_their_table_and_need_its_key() {
    let [orders, items] = orders();
    let keyed = [
        SinkTable {
            key: vec!["id".into()],
            ..orders
        },
        SinkTable {
            key: vec!["id".into(), "line".into()],
            ..items.clone()
        },
    ];
    let mapped = run_tables(
        vec![
            delete(1, vec![Value::Uuid(ID.into()), Value::Integer(2)]),
            delete(0, vec![Value::Uuid(ID.into()), Value::Integer(2)]),
            delete(0, vec![Value::Uuid(ID.into())]),
        ],
        &keyed,
    );
    assert_eq!(mapped.tables[1].deletes.len(), 1);
    assert_eq!(
        mapped.tables[0].deletes.iter().map(|d| d.message).collect::<Vec<_>>(),
        [2]
    );
    assert_eq!(mapped.dead_letters.len(), 1);
    assert!(mapped.dead_letters[0].reason.contains("2 values for the 1 key columns"));
}

/// `tables` with lineage, as `ensure_sink_tables` finds them in tables it made.
fn with_lineage(tables: &[SinkTable]) -> Vec<SinkTable> {
    tables
        .iter()
        .map(|t| SinkTable {
            lineage: true,
            ..t.clone()
        })
        .collect()
}

/// The field count of the first row of a `COPY` buffer, and its last 29 bytes
/// before the trailer (topic "t", partition and offset when lineage comes
/// last).
fn first_row_fields(rows: CopyRows) -> (i16, Vec<u8>) {
    let bytes = rows.finish();
    let at = crate::postgres::COPY_HEADER.len();
    let end = bytes.len() - 2;
    (
        i16::from_be_bytes([bytes[at], bytes[at + 1]]),
        bytes[end - 29..end].to_vec(),
    )
}

#[test]
fn lineage_appends_the_topic_partition_and_offset_to_every_row() {
    let row = || rows(0, vec![vec![Value::Uuid(ID.into()), Value::Null]]);
    let messages = vec![message(7)];
    let tables = with_lineage(&[SinkTable::one("t", columns(), &[])]);
    let mut mapper = Scripted(vec![row()], Vec::new());
    let mapped = map_blocking(&mut mapper, &tables, messages, false).expect("maps");
    let table = mapped.tables.into_iter().next().expect("one table");
    let (fields, tail) = first_row_fields(table.rows);
    assert_eq!(fields, 5, "two columns and lineage");
    assert_eq!(&tail[..5], &[0, 0, 0, 1, b't'], "the topic first");
    assert_eq!(&tail[5..17], &[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0], "partition 0");
    assert_eq!(&tail[21..], &7i64.to_be_bytes(), "the offset comes last");
    // Keyed: the staging rows carry lineage too (before the delete flag).
    let tables = with_lineage(&[SinkTable::one("t", columns(), &["id".to_string()])]);
    let mut mapper = Scripted(vec![row()], Vec::new());
    let mapped = map_blocking(&mut mapper, &tables, vec![message(9)], false).expect("maps");
    let table = mapped.tables.into_iter().next().expect("one table");
    let (fields, _) = first_row_fields(table.rows);
    assert_eq!(fields, 6, "lineage and the delete flag");
}

#[test]
fn every_table_with_lineage_gets_it_on_every_row() {
    let [orders, items] = orders();
    // The order's table has lineage, the items' one (made by hand) has not.
    let tables = [
        SinkTable {
            lineage: true,
            ..orders
        },
        items,
    ];
    let outcome = Outcome::Rows(vec![
        TableRows {
            table: 1,
            rows: vec![vec![Value::Uuid(ID.into()), Value::Integer(1)]],
        },
        TableRows {
            table: 0,
            rows: vec![vec![Value::Uuid(ID.into()), Value::Null]],
        },
    ]);
    let mut mapper = Scripted(vec![outcome], Vec::new());
    let mapped = map_blocking(&mut mapper, &tables, vec![message(11)], false).expect("maps");
    let mut mapped = mapped.tables.into_iter();
    let (fields, tail) = first_row_fields(mapped.next().expect("orders").rows);
    assert_eq!(fields, 5, "the order's two columns and lineage");
    assert_eq!(&tail[21..], &11i64.to_be_bytes(), "the order's message offset");
    let (fields, _) = first_row_fields(mapped.next().expect("items").rows);
    assert_eq!(fields, 2, "the items' columns only");
}

/// Answers every message with one row and remembers each call's size.
struct Counting(Vec<usize>);

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
    fn tables(&self) -> &[crate::plugins::mapper::Table] {
        &[]
    }
    fn map_batch(&mut self, messages: &[Message]) -> Result<Vec<Outcome>, PluginError> {
        self.0.push(messages.len());
        Ok(messages
            .iter()
            .map(|m| rows(0, vec![vec![Value::Uuid(ID.into()), Value::Integer(m.offset)]]))
            .collect())
    }
}

#[test]
fn a_large_batch_is_mapped_in_calls_of_bounded_size_in_order() {
    let n = 2 * MESSAGES_PER_CALL + 7;
    let messages: Vec<Message> = (0..n as i64).map(message).collect();
    let mut mapper = Counting(Vec::new());
    let tables = [SinkTable::one("t", columns(), &[])];
    let mapped = map_blocking(&mut mapper, &tables, messages, false).expect("maps");
    assert_eq!(mapper.0, [MESSAGES_PER_CALL, MESSAGES_PER_CALL, 7]);
    assert_eq!(mapped.rows(), n);
    assert!(mapped.dead_letters.is_empty());
    let offsets: Vec<i64> = mapped.positions.iter().map(|p| p.1).collect();
    assert_eq!(offsets, (0..n as i64).collect::<Vec<_>>());
}
