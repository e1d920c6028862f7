//! Sink tables made from a mapper's columns: the SQL type of each column
//! type, creating a table, checking and evolving one that exists, and a
//! summary of one.

use super::{batch_ddl, ident, keyed, lineage, looser, table_exists};
use crate::contract::mapper::{Column, ColumnType};
use anyhow::{Context as _, bail};
use tokio_postgres::Client;

pub(super) fn sql_type(kind: ColumnType) -> &'static str {
    match kind {
        ColumnType::Text => "text",
        ColumnType::Integer => "bigint",
        ColumnType::Float => "double precision",
        ColumnType::Boolean => "boolean",
        ColumnType::Timestamp => "timestamptz",
        ColumnType::Json => "jsonb",
        ColumnType::Uuid => "uuid",
        ColumnType::Numeric => "numeric",
        ColumnType::Bytea => "bytea",
        ColumnType::Date => "date",
    }
}

/// The `udt_name` information_schema reports for each type.
pub(super) fn udt_name(kind: ColumnType) -> &'static str {
    match kind {
        ColumnType::Text => "text",
        ColumnType::Integer => "int8",
        ColumnType::Float => "float8",
        ColumnType::Boolean => "bool",
        ColumnType::Timestamp => "timestamptz",
        ColumnType::Json => "jsonb",
        ColumnType::Uuid => "uuid",
        ColumnType::Numeric => "numeric",
        ColumnType::Bytea => "bytea",
        ColumnType::Date => "date",
    }
}

/// Creates a sink table from a mapper's columns when missing, and checks an
/// existing one fits them. Without a key the table gets a `message_id`
/// serial primary key in front; with one (`mode = "upsert"`) the key is the
/// primary key and `message_id` stays, unique per insert, for the readers
/// that order by it. A column the mapper declares and the table lacks is
/// added when it is nullable; anything else that does not fit is refused with
/// what to do. A table made here also gets the lineage columns and their
/// index (see `lineage`). Returns whether it created the table.
pub async fn ensure_sink_table(
    client: &Client,
    table: &str,
    columns: &[Column],
    key: &[String],
) -> anyhow::Result<bool> {
    for c in columns {
        crate::config::check_name(&c.name, crate::config::MAX_PG_IDENT_LEN, false)
            .map_err(|m| anyhow::anyhow!("the mapper declares an invalid column name: {m}"))?;
    }
    let existed = table_exists(client, table).await?;
    let mut defs: Vec<String> = vec![if key.is_empty() {
        "message_id bigserial PRIMARY KEY".to_string()
    } else {
        "message_id bigserial NOT NULL".to_string()
    }];
    defs.extend(columns.iter().map(column_def));
    // Lineage (see `lineage`): only in tables made here, never added later
    // (the rows already there would have none), but for the topic column.
    defs.extend(lineage::column_defs());
    if !key.is_empty() {
        defs.push(format!(
            "PRIMARY KEY ({})",
            key.iter().map(|k| ident(k)).collect::<Vec<_>>().join(", ")
        ));
    }
    let mut sql = format!("CREATE TABLE IF NOT EXISTS {} ({})", ident(table), defs.join(", "));
    if !existed {
        sql = format!("{sql}; {}", lineage::index_ddl(table));
    }
    batch_ddl(client, &sql)
        .await
        .with_context(|| format!("cannot create table {table:?}"))?;
    if existed {
        lineage::add_topic_column(client, table).await?;
    }

    let rows = client
        .query(
            "SELECT column_name::text, udt_name::text, is_nullable = 'YES', column_default IS NOT NULL,
                    CASE WHEN character_maximum_length IS NOT NULL OR (udt_name = 'numeric' AND numeric_precision IS NOT NULL)
                         THEN format_type(a.atttypid, a.atttypmod) END
             FROM information_schema.columns c
             JOIN pg_attribute a ON a.attrelid = to_regclass(quote_ident(c.table_name)) AND a.attname = c.column_name
             WHERE c.table_schema = current_schema() AND c.table_name = $1",
            &[&table],
        )
        .await
        .with_context(|| format!("cannot read the columns of table {table:?}"))?;
    let existing: Vec<Existing> = rows
        .iter()
        .map(|r| Existing {
            name: r.get(0),
            udt: r.get(1),
            nullable: r.get(2),
            has_default: r.get(3),
            limited: r.get(4),
        })
        .collect();
    let added = schema_changes(table, &existing, columns)?;
    looser::warn(table, &looser::looser(table, &existing, columns, key));
    if !added.is_empty() {
        let sql = format!(
            "ALTER TABLE {} {}",
            ident(table),
            added
                .iter()
                .map(|c| format!("ADD COLUMN IF NOT EXISTS {}", column_def(c)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        batch_ddl(client, &sql)
            .await
            .with_context(|| format!("cannot add columns to table {table:?}"))?;
        let names: Vec<&str> = added.iter().map(|c| c.name.as_str()).collect();
        tracing::info!(table, columns = ?names, "added the mapper's new nullable columns to the table");
    }
    if !key.is_empty() {
        keyed::check_unique_key(client, table, key).await?;
    }
    Ok(!existed)
}

fn column_def(c: &Column) -> String {
    format!(
        "{} {}{}",
        ident(&c.name),
        sql_type(c.kind),
        if c.nullable { "" } else { " NOT NULL" }
    )
}

/// A column of an existing table, as information_schema tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    pub name: String,
    pub udt: String,
    pub nullable: bool,
    pub has_default: bool,
    /// The type with its limit (`character varying(5)`, `numeric(5,2)`)
    /// when it has one.
    pub limited: Option<String>,
}

/// What it takes for `existing` to fit the mapper's `columns`: the columns to
/// add (the mapper's nullable ones the table lacks), or why that cannot be
/// done safely, and what to do.
pub fn schema_changes<'a>(
    table: &str,
    existing: &[Existing],
    columns: &'a [Column],
) -> anyhow::Result<Vec<&'a Column>> {
    let mut added = Vec::new();
    for c in columns {
        match existing.iter().find(|e| e.name == c.name) {
            Some(e) if looser::type_fits(&e.udt, c.kind) => {}
            Some(e) => bail!(
                "table {table:?} has column {:?} of type {}, but the mapper writes {}\n  hint: the host does not change column types; migrate the column yourself (ALTER TABLE {} ALTER COLUMN {} TYPE {} USING ...), keep the mapper's old type, or point the sink at a new table",
                c.name,
                e.udt,
                sql_type(c.kind),
                ident(table),
                ident(&c.name),
                sql_type(c.kind)
            ),
            None if c.nullable => added.push(c),
            None => bail!(
                "table {table:?} has no column {:?}, which the mapper writes as NOT NULL; the host adds only nullable columns, since the rows already there have no value\n  hint: declare the column nullable in the mapper, or add it with a default yourself (ALTER TABLE {} ADD COLUMN {} {} NOT NULL DEFAULT ...)",
                c.name,
                ident(table),
                ident(&c.name),
                sql_type(c.kind)
            ),
        }
    }
    // A NOT NULL column the mapper no longer writes would fail every batch.
    if let Some(e) = existing
        .iter()
        .find(|e| !e.nullable && !e.has_default && !columns.iter().any(|c| c.name == e.name))
    {
        bail!(
            "table {table:?} has column {:?} NOT NULL without a default, and the mapper does not write it\n  hint: keep the column in the mapper, or allow NULL in it (ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL)",
            e.name,
            ident(table),
            ident(&e.name)
        );
    }
    Ok(added)
}

/// The row count of a sink table and its last row (highest `message_id`) as
/// JSON; `None` when the table does not exist.
pub async fn table_summary(client: &Client, table: &str) -> anyhow::Result<Option<(i64, Option<serde_json::Value>)>> {
    if !table_exists(client, table).await? {
        return Ok(None);
    }
    let t = ident(table);
    let count: i64 = client
        .query_one(&format!("SELECT count(*) FROM {t}"), &[])
        .await
        .with_context(|| format!("cannot count the rows of table {table:?}"))?
        .get(0);
    let last = client
        .query_opt(
            &format!("SELECT row_to_json(t) FROM {t} AS t ORDER BY t.message_id DESC LIMIT 1"),
            &[],
        )
        .await
        .with_context(|| format!("cannot read the last row of table {table:?} (by message_id)"))?
        .map(|r| r.get(0));
    Ok(Some((count, last)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, kind: ColumnType, nullable: bool) -> Column {
        Column {
            name: name.into(),
            kind,
            nullable,
        }
    }

    fn existing(name: &str, udt: &str, nullable: bool) -> Existing {
        Existing {
            name: name.into(),
            udt: udt.into(),
            nullable,
            has_default: false,
            limited: None,
        }
    }

    #[test]
    fn a_new_nullable_column_is_added_and_nothing_else() {
        let table = [
            Existing {
                has_default: true,
                ..existing("message_id", "int8", false)
            },
            existing("id", "text", false),
        ];
        let columns = [
            column("id", ColumnType::Text, false),
            column("extra", ColumnType::Integer, true),
        ];
        let added = schema_changes("t", &table, &columns).unwrap();
        assert_eq!(added, vec![&columns[1]]);
        assert!(schema_changes("t", &table, &columns[..1]).unwrap().is_empty());
    }

    #[test]
    fn unsafe_changes_are_refused_naming_table_column_and_fix() {
        let table = [existing("id", "text", false), existing("n", "int8", true)];
        let retyped = [
            column("id", ColumnType::Text, false),
            column("n", ColumnType::Text, true),
        ];
        let e = schema_changes("t", &table, &retyped).unwrap_err().to_string();
        assert!(
            e.contains("table \"t\" has column \"n\" of type int8") && e.contains("ALTER COLUMN"),
            "{e}"
        );
        let not_null = [
            column("id", ColumnType::Text, false),
            column("m", ColumnType::Text, false),
        ];
        let e = schema_changes("t", &table, &not_null).unwrap_err().to_string();
        assert!(e.contains("no column \"m\"") && e.contains("nullable"), "{e}");
        let dropped = [column("n", ColumnType::Integer, true)];
        let e = schema_changes("t", &table, &dropped).unwrap_err().to_string();
        assert!(
            e.contains("column \"id\" NOT NULL") && e.contains("DROP NOT NULL"),
            "{e}"
        );
    }
}
