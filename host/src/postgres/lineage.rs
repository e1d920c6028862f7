//! Lineage: which Kafka message each row of a sink table came from, and the
//! per-sink control row (paused, rewound) that running sinks poll.
//!
//! Tables the host creates get three columns, `_kafka_topic` (`text`),
//! `_kafka_partition` and `_kafka_offset` (both `bigint`), nullable, filled
//! on every row the host writes, and a BRIN index on the offset
//! (`<table>_kafka_lineage`, or a hashed name when that would pass
//! PostgreSQL's 63 bytes). A mapper cannot declare them: its column names
//! must start with a lowercase letter. With them, `host sink rewind` deletes
//! exactly the rows of the rewound offsets of its topic, even when sinks of
//! several topics write one table. Tables made before (or by hand) have no
//! lineage and keep working; a rewind of an append sink into them needs
//! `--delete-all`. A table made while lineage had no topic column gets it
//! added; its older rows (topic null) count as rows of any topic.

use super::{Client, ident};
use crate::contract::mapper::{Column, ColumnType, Value};
use anyhow::Context as _;

/// The topic of the message a row came from.
pub const TOPIC_COLUMN: &str = "_kafka_topic";
/// The partition of the message a row came from.
pub const PARTITION_COLUMN: &str = "_kafka_partition";
/// The offset of the message a row came from.
pub const OFFSET_COLUMN: &str = "_kafka_offset";

/// The lineage columns with the `udt_name` each must have, in write order.
const COLUMNS: [(&str, ColumnType, &str); 3] = [
    (TOPIC_COLUMN, ColumnType::Text, "text"),
    (PARTITION_COLUMN, ColumnType::Integer, "int8"),
    (OFFSET_COLUMN, ColumnType::Integer, "int8"),
];

/// The longest name PostgreSQL keeps whole.
const MAX_NAME_BYTES: usize = 63;

/// The host's control row per sink table and topic: pause state and the
/// generation a rewind bumps.
pub const CONTROL_TABLE: &str = "wasm_stream_sink_control";

/// The lineage columns' definitions, for `CREATE TABLE`.
pub fn column_defs() -> Vec<String> {
    COLUMNS
        .iter()
        .map(|(name, kind, _)| format!("{} {}", ident(name), super::sql_type(*kind)))
        .collect()
}

/// The name of a table's lineage index. PostgreSQL would cut a longer name
/// at 63 bytes, and two long table names with one prefix would then share
/// it (the second `IF NOT EXISTS` making no index at all), so a name that
/// does not fit is cut and a hash of the whole table name added.
pub fn index_name(table: &str) -> String {
    const SUFFIX: &str = "_kafka_lineage";
    let plain = format!("{table}{SUFFIX}");
    if plain.len() <= MAX_NAME_BYTES {
        return plain;
    }
    let hash = &crate::digest::content_hash(table.as_bytes())[..8];
    let room = MAX_NAME_BYTES - SUFFIX.len() - hash.len() - 1;
    let mut cut = room;
    while !table.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{hash}{SUFFIX}", &table[..cut])
}

/// The index `CREATE TABLE` adds beside the lineage columns: a BRIN index
/// on the offset, not a B-tree on all three. Rows arrive in offset order
/// (per partition, and partitions move together), so the ranges of blocks
/// a BRIN index keeps narrow a rewind's delete to the table's tail, while
/// its upkeep costs nothing measurable; a B-tree cost every insert about as
/// much as the row itself (1,000,000 rows: 2.3 s without, 4.3 s with one,
/// 2.1 s with BRIN; BENCHMARKS.md).
pub fn index_ddl(table: &str) -> String {
    format!(
        "CREATE INDEX IF NOT EXISTS {} ON {} USING brin ({})",
        ident(&index_name(table)),
        ident(table),
        ident(OFFSET_COLUMN)
    )
}

/// The lineage columns as the `COPY` encoder sees them, after the mapper's.
pub fn columns() -> [Column; 3] {
    COLUMNS.map(|(name, kind, _)| Column {
        name: name.into(),
        kind,
        nullable: true,
    })
}

/// The values of the lineage columns for a message.
pub fn values(topic: &str, partition: i32, offset: i64) -> [Value; 3] {
    [
        Value::Text(topic.to_string()),
        Value::Integer(i64::from(partition)),
        Value::Integer(offset),
    ]
}

/// `columns` with the lineage columns after them when `lineage`.
pub fn write_columns(columns: &[Column], lineage: bool) -> Vec<Column> {
    let mut all = columns.to_vec();
    if lineage {
        all.extend(self::columns());
    }
    all
}

/// The condition on a table's rows that came from offsets `$3` and later of
/// partition `$2` of topic `$1` (rows from before lineage had a topic count
/// as rows of any topic).
pub fn rows_from_condition() -> String {
    format!(
        "({t} = $1 OR {t} IS NULL) AND {p} = $2 AND {o} >= $3",
        t = ident(TOPIC_COLUMN),
        p = ident(PARTITION_COLUMN),
        o = ident(OFFSET_COLUMN)
    )
}

/// The `udt_name` of each lineage column `table` has.
async fn lineage_types(client: &Client, table: &str) -> anyhow::Result<Vec<(String, String)>> {
    let names: Vec<&str> = COLUMNS.iter().map(|c| c.0).collect();
    let rows = client
        .query(
            "SELECT column_name::text, udt_name::text FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1 AND column_name = ANY($2)",
            &[&table, &names],
        )
        .await
        .with_context(|| format!("cannot read the columns of table {table:?}"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Whether `table` has the three lineage columns, of their types. A column
/// of that name and another type (made by hand) is not lineage: the host
/// would write into it what it does not hold.
pub async fn present(client: &Client, table: &str) -> anyhow::Result<bool> {
    let found = lineage_types(client, table).await?;
    Ok(COLUMNS
        .iter()
        .all(|(name, _, udt)| found.iter().any(|(n, u)| n == name && u == udt)))
}

/// Adds the topic column to a table made while lineage was partition and
/// offset only, so its new rows name their topic.
pub async fn add_topic_column(client: &Client, table: &str) -> anyhow::Result<()> {
    let found = lineage_types(client, table).await?;
    let has = |name: &str| found.iter().any(|(n, u)| n == name && u == "int8");
    if has(PARTITION_COLUMN) && has(OFFSET_COLUMN) && !found.iter().any(|(n, _)| n == TOPIC_COLUMN) {
        super::batch_ddl(
            client,
            &format!(
                "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} text",
                ident(table),
                ident(TOPIC_COLUMN)
            ),
        )
        .await
        .with_context(|| format!("cannot add the lineage column {TOPIC_COLUMN} to table {table:?}"))?;
    }
    Ok(())
}

/// The control table's DDL (one of the host's tables).
pub fn control_ddl() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (
            table_name text NOT NULL,
            topic text NOT NULL,
            sink text NOT NULL,
            paused boolean NOT NULL DEFAULT false,
            generation bigint NOT NULL DEFAULT 0,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (table_name, topic)
        )",
        ident(CONTROL_TABLE)
    )
}

/// What a running sink obeys: paused or not, and the rewind generation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Control {
    pub paused: bool,
    pub generation: i64,
}

/// The control row of a sink's table and topic (the default when none).
pub async fn read_control(client: &Client, table: &str, topic: &str) -> anyhow::Result<Control> {
    let row = client
        .query_opt(
            &format!(
                "SELECT paused, generation FROM {} WHERE table_name = $1 AND topic = $2",
                ident(CONTROL_TABLE)
            ),
            &[&table, &topic],
        )
        .await
        .with_context(|| format!("cannot read the control row of table {table:?}"))?;
    Ok(row.map_or_else(Control::default, |r| Control {
        paused: r.get(0),
        generation: r.get(1),
    }))
}

/// Pauses or resumes a sink; returns whether it was paused before.
pub async fn set_paused(client: &Client, sink: &str, table: &str, topic: &str, paused: bool) -> anyhow::Result<bool> {
    let t = ident(CONTROL_TABLE);
    // The old value: the row as it was before this statement's update.
    let row = client
        .query_one(
            &format!(
                "WITH old AS (SELECT paused FROM {t} WHERE table_name = $1 AND topic = $2)
                 INSERT INTO {t} AS c (table_name, topic, sink, paused) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (table_name, topic) DO UPDATE SET paused = $4, sink = $3, updated_at = now()
                 RETURNING coalesce((SELECT paused FROM old), false)"
            ),
            &[&table, &topic, &sink, &paused],
        )
        .await
        .with_context(|| format!("cannot set the pause state of sink {sink:?}"))?;
    Ok(row.get(0))
}

/// Bumps the rewind generation inside a rewind's transaction, so every
/// running process of the sink drops what it holds and starts again from
/// the stored offsets.
pub async fn bump_generation(
    tx: &tokio_postgres::Transaction<'_>,
    sink: &str,
    table: &str,
    topic: &str,
) -> anyhow::Result<i64> {
    let t = ident(CONTROL_TABLE);
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO {t} AS c (table_name, topic, sink, generation) VALUES ($1, $2, $3, 1)
                 ON CONFLICT (table_name, topic) DO UPDATE SET generation = c.generation + 1, updated_at = now()
                 RETURNING generation"
            ),
            &[&table, &topic, &sink],
        )
        .await
        .context("cannot bump the sink's rewind generation")?;
    Ok(row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lineage_names_cannot_clash_with_a_mapper_column() {
        for name in [TOPIC_COLUMN, PARTITION_COLUMN, OFFSET_COLUMN] {
            assert!(crate::config::check_name(name, crate::config::MAX_PG_IDENT_LEN, false).is_err());
        }
        let all = write_columns(&[], true);
        assert_eq!(all.len(), 3);
        assert!(write_columns(&[], false).is_empty());
        assert!(index_ddl("t").ends_with("USING brin (\"_kafka_offset\")"));
    }

    #[test]
    fn long_table_names_get_distinct_index_names_within_63_bytes() {
        assert_eq!(index_name("orders"), "orders_kafka_lineage");
        let long = "a".repeat(49);
        assert_eq!(index_name(&long), format!("{long}_kafka_lineage"), "63 bytes fit");
        let one = format!("{}_one", "é".repeat(28));
        let two = format!("{}_two", "é".repeat(28));
        let (a, b) = (index_name(&one), index_name(&two));
        assert!(a.len() <= 63 && b.len() <= 63, "{a} {b}");
        assert_ne!(a, b, "same 63-byte prefix, different tables");
        assert_eq!(a, index_name(&one), "stable");
    }
}
