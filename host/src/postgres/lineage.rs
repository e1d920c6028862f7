//! Lineage: which Kafka message each row of a sink table came from, and the
//! per-sink control row (paused, rewound) that running sinks poll.
//!
//! Tables the host creates get two columns, `_kafka_partition` and
//! `_kafka_offset` (both `bigint`, nullable), filled on every row the host
//! writes, and an index on them (`<table>_kafka_lineage`). A mapper cannot
//! declare them: its column names must start with a lowercase letter. With
//! them, `host sink rewind` deletes exactly the rows of the rewound offsets.
//! Tables made before (or by hand) have no lineage and keep working; a
//! rewind of an append sink into them needs `--delete-all`.

use super::{Client, ident};
use crate::plugins::mapper::{Column, ColumnType, Value};
use anyhow::Context as _;

/// The partition of the message a row came from.
pub const PARTITION_COLUMN: &str = "_kafka_partition";
/// The offset of the message a row came from.
pub const OFFSET_COLUMN: &str = "_kafka_offset";

/// The host's control row per sink table and topic: pause state and the
/// generation a rewind bumps.
pub const CONTROL_TABLE: &str = "wasm_stream_sink_control";

/// The lineage columns' definitions, for `CREATE TABLE`.
pub fn column_defs() -> [String; 2] {
    [
        format!("{} bigint", ident(PARTITION_COLUMN)),
        format!("{} bigint", ident(OFFSET_COLUMN)),
    ]
}

/// The index `CREATE TABLE` adds beside the lineage columns (PostgreSQL
/// truncates a name past 63 bytes the same way each time).
pub fn index_ddl(table: &str) -> String {
    format!(
        "CREATE INDEX IF NOT EXISTS {} ON {} ({}, {})",
        ident(&format!("{table}_kafka_lineage")),
        ident(table),
        ident(PARTITION_COLUMN),
        ident(OFFSET_COLUMN)
    )
}

/// The lineage columns as the `COPY` encoder sees them, after the mapper's.
pub fn columns() -> [Column; 2] {
    [PARTITION_COLUMN, OFFSET_COLUMN].map(|name| Column {
        name: name.into(),
        kind: ColumnType::Integer,
        nullable: true,
    })
}

/// The values of the lineage columns for a message.
pub fn values(partition: i32, offset: i64) -> [Value; 2] {
    [Value::Integer(i64::from(partition)), Value::Integer(offset)]
}

/// `columns` with the lineage columns after them when `lineage`.
pub fn write_columns(columns: &[Column], lineage: bool) -> Vec<Column> {
    let mut all = columns.to_vec();
    if lineage {
        all.extend(self::columns());
    }
    all
}

/// Whether `table` has both lineage columns.
pub async fn present(client: &Client, table: &str) -> anyhow::Result<bool> {
    let row = client
        .query_one(
            "SELECT count(*) FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1 AND column_name = ANY($2)",
            &[&table, &vec![PARTITION_COLUMN, OFFSET_COLUMN]],
        )
        .await
        .with_context(|| format!("cannot read the columns of table {table:?}"))?;
    Ok(row.get::<_, i64>(0) == 2)
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
        for name in [PARTITION_COLUMN, OFFSET_COLUMN] {
            assert!(crate::config::check_name(name, crate::config::MAX_PG_IDENT_LEN, false).is_err());
        }
        let all = write_columns(&[], true);
        assert_eq!(all.len(), 2);
        assert!(write_columns(&[], false).is_empty());
        assert!(index_ddl("t").contains("(\"_kafka_partition\", \"_kafka_offset\")"));
    }
}
