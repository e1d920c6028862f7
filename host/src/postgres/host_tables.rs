//! The host's own tables: the stored offsets (the truth about what a sink
//! table holds) and the dead letters.

use super::{batch_ddl, ident, lineage, table_exists};
use anyhow::Context as _;
use std::collections::HashMap;
use tokio_postgres::Client;

/// Next offset per (table, topic, partition): the truth about what a sink table holds.
pub const OFFSETS_TABLE: &str = "wasm_stream_offsets";
/// Messages a mapper rejected or could not map, with the reason.
pub const DEAD_LETTERS_TABLE: &str = "wasm_stream_dead_letters";

/// Creates the host's own tables when missing.
pub async fn ensure_host_tables(client: &Client) -> anyhow::Result<()> {
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS {offsets} (
            table_name text NOT NULL,
            topic text NOT NULL,
            partition integer NOT NULL,
            consumer_group text NOT NULL,
            next_offset bigint NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (table_name, topic, partition)
        );
        CREATE TABLE IF NOT EXISTS {dead} (
            id bigserial PRIMARY KEY,
            sink text NOT NULL,
            topic text NOT NULL,
            partition integer NOT NULL,
            \"offset\" bigint NOT NULL,
            key bytea,
            payload bytea,
            reason text NOT NULL,
            plugin text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        {control};",
        offsets = ident(OFFSETS_TABLE),
        dead = ident(DEAD_LETTERS_TABLE),
        control = lineage::control_ddl(),
    );
    batch_ddl(client, &sql)
        .await
        .context("cannot create the host's tables (offsets, dead letters)")
}

/// The next offsets stored for a table's partitions of a topic.
pub async fn stored_offsets(client: &Client, table: &str, topic: &str) -> anyhow::Result<HashMap<i32, i64>> {
    let rows = client
        .query(
            &format!(
                "SELECT partition, next_offset FROM {} WHERE table_name = $1 AND topic = $2",
                ident(OFFSETS_TABLE)
            ),
            &[&table, &topic],
        )
        .await
        .with_context(|| format!("cannot read the stored offsets of table {table:?}"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Stores where partitions with nothing stored yet start (a sink's `start`
/// of "latest" or a time, resolved once); an offset already stored wins.
pub async fn store_start_offsets(
    client: &Client,
    table: &str,
    topic: &str,
    group: &str,
    starts: &HashMap<i32, i64>,
) -> anyhow::Result<()> {
    let (partitions, offsets): (Vec<i32>, Vec<i64>) = starts.iter().map(|(p, o)| (*p, *o)).unzip();
    client
        .execute(
            &format!(
                "INSERT INTO {} (table_name, topic, partition, next_offset, consumer_group)
                 SELECT $1, $2, p, n, $3 FROM UNNEST($4::int4[], $5::int8[]) AS x(p, n)
                 ON CONFLICT DO NOTHING",
                ident(OFFSETS_TABLE)
            ),
            &[&table, &topic, &group, &partitions, &offsets],
        )
        .await
        .with_context(|| format!("cannot store the start offsets of table {table:?}"))?;
    Ok(())
}

/// The dead letters of a sink per partition of its topic (none when the
/// host's tables do not exist yet).
pub async fn dead_letter_counts(client: &Client, sink: &str, topic: &str) -> anyhow::Result<HashMap<i32, i64>> {
    if !table_exists(client, DEAD_LETTERS_TABLE).await? {
        return Ok(HashMap::new());
    }
    let rows = client
        .query(
            &format!(
                "SELECT partition, count(*) FROM {} WHERE sink = $1 AND topic = $2 GROUP BY partition",
                ident(DEAD_LETTERS_TABLE)
            ),
            &[&sink, &topic],
        )
        .await
        .with_context(|| format!("cannot count the dead letters of sink {sink:?}"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
