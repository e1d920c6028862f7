//! The tables one sink writes: a mapper of contract 0.3.0 declares several
//! (an order and its line items), each with its columns and, in an upsert
//! sink, its key. They are written in one transaction with the offsets:
//! deletes first, table by table in the reverse of the declared order, then
//! inserts and upserts in the declared order, so a declared parent is
//! written before the tables whose foreign keys point at it, and deleted
//! after them.

use crate::contract::mapper::Column;
use tokio_postgres::Client;

/// One table of a sink, resolved from its mapper's declaration and the
/// pipeline file (see `pipeline::tables`).
#[derive(Debug, Clone, PartialEq)]
pub struct SinkTable {
    /// The table's name in PostgreSQL.
    pub name: String,
    pub columns: Vec<Column>,
    /// The key columns in an upsert sink; empty in an append sink.
    pub key: Vec<String>,
    /// The table has the lineage columns, which every row then gets (see
    /// `lineage`); set by [`ensure_sink_tables`].
    pub lineage: bool,
}

impl SinkTable {
    /// A sink's only table, as before 0.3.0.
    pub fn one(name: &str, columns: Vec<Column>, key: &[String]) -> Self {
        Self {
            name: name.to_string(),
            columns,
            key: key.to_vec(),
            lineage: false,
        }
    }

    /// What the table is written with: its columns, then the lineage
    /// columns when it has them.
    pub fn written(&self) -> Vec<Column> {
        super::lineage::write_columns(&self.columns, self.lineage)
    }

    /// The key's columns, in key order; `None` in an append sink.
    pub fn key_columns(&self) -> Option<Vec<Column>> {
        if self.key.is_empty() {
            return None;
        }
        Some(
            self.key
                .iter()
                .filter_map(|k| self.columns.iter().find(|c| &c.name == k).cloned())
                .collect(),
        )
    }
}

/// Creates every table that is missing, in the declared order (so a
/// parent exists before a child that may point at it), and checks or
/// evolves the ones that exist, as [`super::ensure_sink_table`] does for
/// one, and notes which have lineage. Returns the names of the tables it
/// created.
pub async fn ensure_sink_tables(client: &Client, tables: &mut [SinkTable]) -> anyhow::Result<Vec<String>> {
    let mut created = Vec::new();
    for t in tables {
        if super::ensure_sink_table(client, &t.name, &t.columns, &t.key).await? {
            created.push(t.name.clone());
        }
        t.lineage = super::lineage::present(client, &t.name).await?;
    }
    Ok(created)
}

/// Writes the rows of every table of a batch in `tx`, in the order the
/// module's header gives: the keyed tables' rows into their staging tables,
/// then their deletes in the reverse of the declared order and their upserts
/// in the declared order (sent together, one round trip), and the append
/// tables' rows by `COPY`, in the declared order.
pub(super) async fn write_tables(
    tx: &tokio_postgres::Transaction<'_>,
    statements: &[super::TableStatements],
    tables: &[super::TableBatch],
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use futures_util::future::BoxFuture;
    anyhow::ensure!(
        statements.len() == tables.len(),
        "a batch of {} tables for a sink of {}",
        tables.len(),
        statements.len()
    );
    let both = || statements.iter().zip(tables);
    for (s, t) in both() {
        if let Some(k) = &s.keyed
            && !t.rows.is_empty()
        {
            super::isolate::copy_in(tx, &k.copy, t.rows.whole())
                .await
                .with_context(|| format!("cannot stage the rows of table {:?}", k.table))?;
        }
    }
    let mut steps: Vec<BoxFuture<'_, anyhow::Result<()>>> = Vec::new();
    for (s, t) in both().rev() {
        if let Some(k) = &s.keyed
            && t.deletes > 0
        {
            // The staging table's statistics let the planner probe the key
            // index for a few deletes instead of scanning the whole table.
            steps.push(Box::pin(async move {
                tx.batch_execute(&k.analyze).await?;
                anyhow::Ok(())
            }));
            steps.push(Box::pin(async move {
                tx.execute(&k.delete, &[])
                    .await
                    .with_context(|| format!("cannot delete from table {:?}", k.table))?;
                anyhow::Ok(())
            }));
        }
    }
    for (s, t) in both() {
        if let Some(k) = &s.keyed
            && !t.rows.is_empty()
        {
            steps.push(Box::pin(async move {
                tx.execute(&k.upsert, &[])
                    .await
                    .with_context(|| format!("cannot upsert into table {:?}", k.table))?;
                anyhow::Ok(())
            }));
        }
    }
    // Keyed: one row per key in each staging table, so no statement touches
    // a row twice; they go out together.
    futures_util::future::try_join_all(steps).await?;
    for (s, t) in both() {
        if s.keyed.is_none() && !t.rows.is_empty() {
            super::isolate::copy_in(tx, &s.copy, t.rows.whole())
                .await
                .with_context(|| format!("cannot copy rows into table {:?}", s.table))?;
        }
    }
    Ok(())
}
