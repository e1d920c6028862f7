//! PostgreSQL, through tokio-postgres over TLS (postgres-openssl): connecting,
//! the host's own tables (offsets and dead letters), sink tables made from a
//! mapper's columns, and the one transaction per batch that makes delivery
//! exactly once.

pub mod binary;
mod copy;
#[cfg(test)]
mod copy_format_tests;
mod host_tables;
pub mod isolate;
pub mod lineage;
pub mod looser;
mod schema;
mod session;
pub mod upsert;
mod write;

use anyhow::Context as _;
use tokio_postgres::Client;

pub mod keyed;
pub mod tables;

pub(crate) use copy::COPY_HEADER;
pub use copy::CopyRows;
pub use host_tables::{
    DEAD_LETTERS_TABLE, OFFSETS_TABLE, dead_letter_counts, ensure_host_tables, store_start_offsets, stored_offsets,
};
pub use schema::{Existing, ensure_sink_table, schema_changes, table_summary};
use schema::{sql_type, udt_name};
pub use session::{
    Refused, SINK_IDLE_IN_TRANSACTION_TIMEOUT, SINK_LOCK_TIMEOUT, SINK_STATEMENT_TIMEOUT, SessionInfo,
    asynchronous_commits, connect, connect_as, describe, flush_commits, is_permanent, session_info,
};
pub use tables::{SinkTable, ensure_sink_tables};
pub use write::{
    Batch, DeadLetter, RowsRefused, SinkStatements, Source, TableBatch, TableStatements, Written, write_batch,
};
use write::{insert_dead_letters, update_offsets};

/// Quotes an identifier for SQL. Names are validated at the edge too; quoting
/// keeps SQL safe whatever reaches here.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Advisory lock key every host takes around its DDL ("wasm" in ASCII).
const DDL_LOCK: i64 = 0x7761_736d;

/// Runs DDL that may race with another host doing the same: in one
/// transaction under a transaction-level advisory lock, so a second host
/// waits for the first to commit and its `IF NOT EXISTS` then sees the table
/// (without the lock, two concurrent `CREATE TABLE IF NOT EXISTS` can fail
/// with "type ... already exists").
pub(crate) async fn batch_ddl(client: &Client, sql: &str) -> anyhow::Result<()> {
    let wrapped = format!("BEGIN; SELECT pg_advisory_xact_lock({DDL_LOCK}); {sql}; COMMIT;");
    match client.batch_execute(&wrapped).await {
        Ok(()) => Ok(()),
        Err(e) => {
            // An error leaves the explicit transaction open and aborted.
            let _ = client.batch_execute("ROLLBACK").await;
            use tokio_postgres::error::SqlState;
            // Something other than a host (no advisory lock) created it first.
            let raced = [
                SqlState::UNIQUE_VIOLATION,
                SqlState::DUPLICATE_TABLE,
                SqlState::DUPLICATE_OBJECT,
            ];
            match e.code() {
                Some(code) if raced.contains(code) => Ok(()),
                _ => Err(e.into()),
            }
        }
    }
}

/// Whether a table exists in the connection's current schema.
pub async fn table_exists(client: &Client, table: &str) -> anyhow::Result<bool> {
    let row = client
        .query_opt(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1",
            &[&table],
        )
        .await
        .with_context(|| format!("cannot look up table {table:?}"))?;
    Ok(row.is_some())
}
