//! Tables written by key (`mode = "upsert"`): the unique constraint the key
//! needs, and the statements that apply a batch. A batch is copied into a
//! temporary staging table (one row per key, the last operation of the batch
//! for that key; see `postgres::upsert`), then one `DELETE` and one
//! `INSERT ... ON CONFLICT` move it into the table, in the transaction that
//! also moves the offsets.

use super::ident;
use crate::contract::mapper::Column;
use anyhow::Context as _;
use tokio_postgres::{Client, Statement};

/// The session's staging table of a sink's first table (temporary tables
/// are private to a session, and a sink has one session); see [`stage_table`].
pub const STAGE_TABLE: &str = "wasm_stream_stage";

/// The staging table of the sink's `index`th table: one per table, since
/// their columns differ.
pub fn stage_table(index: usize) -> String {
    match index {
        0 => STAGE_TABLE.to_string(),
        i => format!("{STAGE_TABLE}_{i}"),
    }
}
pub use crate::config::DELETE_COLUMN;

/// Checks that `table` has a primary key or unique constraint on exactly the
/// `key` columns, which `ON CONFLICT` needs.
pub async fn check_unique_key(client: &Client, table: &str, key: &[String]) -> anyhow::Result<()> {
    // Non-partial, immediate unique indexes (constraints make one each);
    // the names of their key columns, sorted (INCLUDE columns come after
    // the first indnkeyatts and are no part of what ON CONFLICT matches).
    let rows = client
        .query(
            "SELECT array_agg(a.attname::text ORDER BY a.attname)
             FROM pg_index i
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY ((i.indkey::int2[])[0:i.indnkeyatts - 1])
             WHERE i.indrelid = to_regclass(quote_ident($1)) AND i.indisunique AND i.indimmediate
               AND i.indpred IS NULL AND i.indexprs IS NULL
             GROUP BY i.indexrelid",
            &[&table],
        )
        .await
        .with_context(|| format!("cannot read the unique constraints of table {table:?}"))?;
    let mut wanted: Vec<&str> = key.iter().map(String::as_str).collect();
    wanted.sort_unstable();
    let found = rows.iter().any(|r| {
        let columns: Vec<String> = r.get(0);
        columns.iter().map(String::as_str).eq(wanted.iter().copied())
    });
    if found {
        return Ok(());
    }
    anyhow::bail!(
        "table {table:?} has no primary key or unique constraint on ({}), which mode = \"upsert\" with this key needs\n  hint: add one (after removing rows with duplicate keys): {}\n  or point the sink at a new table, which the host creates with that primary key",
        key.join(", "),
        add_unique_sql(table, key)
    )
}

/// The SQL that gives `table` the unique constraint an upsert on `key` needs.
pub fn add_unique_sql(table: &str, key: &[String]) -> String {
    format!("ALTER TABLE {} ADD UNIQUE ({});", ident(table), idents(key))
}

fn idents(names: &[String]) -> String {
    names.iter().map(|n| ident(n)).collect::<Vec<_>>().join(", ")
}

/// The SQL a keyed sink runs, built from its table, columns and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sql {
    /// (Re)creates the session's staging table, shaped like the mapper's
    /// columns plus the delete flag, emptied at every commit.
    pub stage: String,
    pub copy: String,
    /// Fresh statistics of the staging table, before a `DELETE`.
    pub analyze: String,
    pub delete: String,
    pub upsert: String,
}

impl Sql {
    /// `renumber`: the table has the host's `message_id` serial, which an
    /// update moves to a fresh number, so the highest is the row written last
    /// (what `host status` and the audit show as the last row).
    pub fn new(table: &str, columns: &[Column], key: &[String], renumber: bool, stage: &str) -> Self {
        let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
        let list = idents(&names);
        let stage = ident(stage);
        let flag = ident(DELETE_COLUMN);
        let target = ident(table);
        let matches: Vec<String> = key.iter().map(|k| format!("t.{k} = s.{k}", k = ident(k))).collect();
        let mut updates: Vec<String> = names
            .iter()
            .filter(|n| !key.contains(n))
            .map(|n| format!("{n} = EXCLUDED.{n}", n = ident(n)))
            .collect();
        if renumber && !updates.is_empty() {
            updates.push("message_id = EXCLUDED.message_id".into());
        }
        // With every column in the key, there is nothing to update.
        let action = if updates.is_empty() {
            "DO NOTHING".to_string()
        } else {
            format!("DO UPDATE SET {}", updates.join(", "))
        };
        Self {
            stage: format!(
                "DROP TABLE IF EXISTS pg_temp.{stage};
                 CREATE TEMP TABLE {stage} ON COMMIT DELETE ROWS AS
                 SELECT {list}, false AS {flag} FROM {target} WITH NO DATA"
            ),
            copy: format!("COPY pg_temp.{stage} ({list}, {flag}) FROM STDIN BINARY"),
            analyze: format!("ANALYZE pg_temp.{stage}"),
            delete: format!(
                "DELETE FROM {target} AS t USING pg_temp.{stage} AS s WHERE s.{flag} AND {}",
                matches.join(" AND ")
            ),
            upsert: format!(
                "INSERT INTO {target} ({list}) SELECT {list} FROM pg_temp.{stage} WHERE NOT {flag}
                 ON CONFLICT ({}) {action}",
                idents(key)
            ),
        }
    }
}

/// The prepared statements of a keyed sink, on one session.
pub struct Statements {
    /// The table it writes, for messages.
    pub table: String,
    /// The staging table's name (in `pg_temp`).
    pub stage: String,
    pub analyze: String,
    pub copy: Statement,
    pub delete: Statement,
    pub upsert: Statement,
}

impl Statements {
    /// Creates the session's staging table and prepares the statements.
    pub async fn prepare(
        client: &Client,
        table: &str,
        columns: &[Column],
        key: &[String],
        stage: &str,
    ) -> anyhow::Result<Self> {
        let renumber = client
            .query_opt(
                "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()
                 AND table_name = $1 AND column_name = 'message_id' AND column_default LIKE 'nextval(%'",
                &[&table],
            )
            .await
            .with_context(|| format!("cannot read the columns of table {table:?}"))?
            .is_some()
            && !columns.iter().any(|c| c.name == "message_id");
        let sql = Sql::new(table, columns, key, renumber, stage);
        client
            .batch_execute(&sql.stage)
            .await
            .with_context(|| format!("cannot create the staging table of table {table:?}"))?;
        let context = || format!("cannot prepare the upsert statements of table {table:?}");
        Ok(Self {
            table: table.to_string(),
            stage: stage.to_string(),
            analyze: sql.analyze,
            copy: client.prepare(&sql.copy).await.with_context(context)?,
            delete: client.prepare(&sql.delete).await.with_context(context)?,
            upsert: client.prepare(&sql.upsert).await.with_context(context)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::mapper::ColumnType;

    fn column(name: &str) -> Column {
        Column {
            name: name.into(),
            kind: ColumnType::Text,
            nullable: true,
        }
    }

    #[test]
    fn upsert_updates_the_columns_outside_the_key() {
        let sql = Sql::new(
            "t",
            &[column("id"), column("v"), column("w")],
            &["id".into()],
            false,
            STAGE_TABLE,
        );
        assert_eq!(
            sql.upsert.split_whitespace().collect::<Vec<_>>().join(" "),
            "INSERT INTO \"t\" (\"id\", \"v\", \"w\") SELECT \"id\", \"v\", \"w\" FROM pg_temp.\"wasm_stream_stage\" WHERE NOT \"wasm_stream_delete\" ON CONFLICT (\"id\") DO UPDATE SET \"v\" = EXCLUDED.\"v\", \"w\" = EXCLUDED.\"w\""
        );
        assert_eq!(
            sql.delete,
            "DELETE FROM \"t\" AS t USING pg_temp.\"wasm_stream_stage\" AS s WHERE s.\"wasm_stream_delete\" AND t.\"id\" = s.\"id\""
        );
        assert_eq!(
            sql.copy,
            "COPY pg_temp.\"wasm_stream_stage\" (\"id\", \"v\", \"w\", \"wasm_stream_delete\") FROM STDIN BINARY"
        );
    }

    #[test]
    fn an_update_renumbers_message_id_when_the_table_has_the_serial() {
        let sql = Sql::new("t", &[column("id"), column("v")], &["id".into()], true, STAGE_TABLE);
        assert!(
            sql.upsert
                .ends_with("DO UPDATE SET \"v\" = EXCLUDED.\"v\", message_id = EXCLUDED.message_id"),
            "{}",
            sql.upsert
        );
    }

    #[test]
    fn upsert_does_nothing_when_every_column_is_in_the_key() {
        let sql = Sql::new(
            "t",
            &[column("a"), column("b")],
            &["b".into(), "a".into()],
            true,
            STAGE_TABLE,
        );
        assert!(
            sql.upsert.ends_with("ON CONFLICT (\"b\", \"a\") DO NOTHING"),
            "{}",
            sql.upsert
        );
        assert!(
            sql.delete.ends_with("t.\"b\" = s.\"b\" AND t.\"a\" = s.\"a\""),
            "{}",
            sql.delete
        );
    }

    #[test]
    fn names_are_quoted() {
        let sql = Sql::new("t", &[column("id")], &["id".into()], false, STAGE_TABLE);
        assert!(sql.stage.contains("FROM \"t\" WITH NO DATA"));
        assert_eq!(
            add_unique_sql("t", &["a".into(), "b".into()]),
            "ALTER TABLE \"t\" ADD UNIQUE (\"a\", \"b\");"
        );
    }
}
