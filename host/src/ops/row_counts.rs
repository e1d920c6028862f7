//! How many rows a sink table holds, at a price `/status` can pay every two
//! seconds: a table PostgreSQL's statistics put at no more than
//! [`EXACT_UP_TO`] rows is counted (`count(*)`, bounded by
//! [`COUNT_TIMEOUT_MS`]); a larger one, or one whose count runs out of time,
//! gets PostgreSQL's estimate (the larger of `pg_class.reltuples`, from the
//! last ANALYZE or VACUUM, and `pg_stat_user_tables.n_live_tup`, the running
//! statistics), which costs a catalog lookup. Each figure says which it is.

use crate::postgres::ident;
use serde::{Deserialize, Serialize};
use tokio_postgres::{Client, SimpleQueryMessage};

/// Tables estimated at up to this many rows are counted exactly.
pub const EXACT_UP_TO: i64 = 100_000;
/// Longest an exact count may run before the estimate is used instead.
pub const COUNT_TIMEOUT_MS: u64 = 500;

/// Whether a row figure is a count or PostgreSQL's estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Exact,
    Estimate,
}

/// Rows of `table` (in the session's current schema) and how they were
/// obtained; a table that does not exist holds exactly 0.
pub async fn table_rows(client: &Client, table: &str) -> anyhow::Result<(i64, Kind)> {
    let row = client
        .query_opt(
            "SELECT greatest(c.reltuples, 0)::int8, coalesce(s.n_live_tup, 0)::int8 \
             FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid \
             WHERE c.oid = to_regclass($1)",
            &[&ident(table)],
        )
        .await?;
    let Some(row) = row else {
        return Ok((0, Kind::Exact));
    };
    let estimate = row.get::<_, i64>(0).max(row.get::<_, i64>(1));
    if estimate > EXACT_UP_TO {
        return Ok((estimate, Kind::Estimate));
    }
    match bounded(client, &format!("SELECT count(*) FROM {}", ident(table))).await {
        Ok(rows) => match rows.first().and_then(|r| r.first()).and_then(|v| v.parse().ok()) {
            Some(n) => Ok((n, Kind::Exact)),
            None => Ok((estimate, Kind::Estimate)),
        },
        Err(e) => {
            tracing::debug!(table, error = %e, "row count ran out of time; using the estimate");
            Ok((estimate, Kind::Estimate))
        }
    }
}

/// Runs one query under a statement timeout of [`COUNT_TIMEOUT_MS`] and
/// returns its rows as text. The three statements run as one implicit
/// transaction: if the query fails, the `SET` is rolled back with it, so the
/// session keeps its own timeout either way.
pub async fn bounded(client: &Client, query: &str) -> Result<Vec<Vec<String>>, tokio_postgres::Error> {
    let batch = format!("SET statement_timeout = {COUNT_TIMEOUT_MS}; {query}; RESET statement_timeout");
    Ok(client
        .simple_query(&batch)
        .await?
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).unwrap_or_default().to_string()).collect())
            }
            _ => None,
        })
        .collect())
}
