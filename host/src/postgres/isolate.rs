//! When PostgreSQL refuses a batch because of the data of some of its rows
//! (a constraint, a value too long or too large, a trigger that raises), the
//! rows that cause it are found and their messages become dead letters with
//! PostgreSQL's reason, while every other row is stored: all in one
//! transaction with the offsets, so delivery stays exactly once.
//!
//! The culprits are found by bisecting under savepoints: the messages are
//! written in order, a group at a time; a group that is refused is rolled
//! back to its savepoint and split in two, down to one message, which is
//! then a culprit. Groups that were accepted stay, so a row that clashes
//! with an earlier row of the same batch (a duplicate in a unique index) is
//! the culprit, not the earlier one. Cost: about two failed statements per
//! culprit and halving, so a few culprits in thousands of rows take a few
//! dozen statements (`scripts/bench --only badrows`).

use super::upsert::Latest;
use super::{DeadLetter, SinkStatements, TableStatements, Written, keyed};
use crate::contract::mapper::Column;
use anyhow::Context as _;
use bytes::Bytes;
use std::collections::VecDeque;
use tokio_postgres::{Client, Statement, Transaction};

/// Encoded rows kept while a batch is written: the header and the rows of
/// a binary `COPY`, and where each row starts.
pub struct Frozen {
    bytes: Bytes,
    starts: Vec<usize>,
}

/// The binary `COPY` trailer.
const TRAILER: &[u8] = &[0xff, 0xff];

impl Frozen {
    pub(super) fn new(bytes: Bytes, starts: Vec<usize>) -> Self {
        Self { bytes, starts }
    }

    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Every row, ready to send: the rows, then the trailer (no copy).
    pub fn whole(&self) -> [Bytes; 2] {
        [self.bytes.clone(), Bytes::from_static(TRAILER)]
    }

    /// Rows `first..end`, ready to send.
    fn range(&self, first: usize, end: usize) -> [Bytes; 2] {
        let header = super::COPY_HEADER.len();
        let from = self.starts.get(first).copied().unwrap_or(self.bytes.len());
        let to = self.starts.get(end).copied().unwrap_or(self.bytes.len());
        let mut out = Vec::with_capacity(header + to - from);
        out.extend_from_slice(&self.bytes[..header]);
        out.extend_from_slice(&self.bytes[from..to]);
        [Bytes::from(out), Bytes::from_static(TRAILER)]
    }
}

/// Which message each row of a batch came from, so that the rows of some
/// of its messages can be written again.
pub enum Parts {
    /// Rows copied into the table: the message of each row, in row order
    /// (messages in consumed order).
    Rows(Vec<u32>),
    /// Operations staged for an upsert: every one of the batch, in order, and
    /// the mapper's columns.
    Keyed(Latest, Vec<Column>),
}

impl Parts {
    /// How many rows the messages had (in a keyed table: the messages that
    /// had an operation on it).
    pub fn rows_of(&self, messages: &[u32]) -> u64 {
        match self {
            Parts::Rows(of_row) => messages
                .iter()
                .map(|m| of_row.partition_point(|r| r <= m) - of_row.partition_point(|r| r < m))
                .sum::<usize>() as u64,
            Parts::Keyed(latest, _) => {
                let had = latest.messages();
                messages.iter().filter(|m| had.binary_search(m).is_ok()).count() as u64
            }
        }
    }
}

/// How the rows of a batch reach one table.
#[derive(Clone, Copy)]
pub enum Plan<'a> {
    /// `COPY` into the table: the rows, and the message of each, in row order.
    Copy {
        copy: &'a Statement,
        of_row: &'a [u32],
        rows: &'a Frozen,
    },
    /// Through the session's staging table (`mode = "upsert"`).
    Keyed {
        statements: &'a keyed::Statements,
        latest: &'a Latest,
        columns: &'a [Column],
    },
}

impl Parts {
    /// How a table with `statements` writes these parts and their `rows`.
    pub(super) fn plan<'a>(&'a self, statements: &'a TableStatements, rows: &'a Frozen) -> anyhow::Result<Plan<'a>> {
        match (self, &statements.keyed) {
            (Parts::Rows(of_row), None) => Ok(Plan::Copy {
                copy: &statements.copy,
                of_row,
                rows,
            }),
            (Parts::Keyed(latest, columns), Some(k)) => Ok(Plan::Keyed {
                statements: k,
                latest,
                columns,
            }),
            _ => anyhow::bail!("a batch mapped for another mode than its sink's statements"),
        }
    }
}

/// Whether PostgreSQL refused the statement because of the data it was
/// given, so that writing the same rows again fails the same way, and
/// writing others may not:
/// - class 22, data exception: a value too long (`varchar(n)`), out of
///   range (`numeric(p,s)`, integers), malformed for its type;
/// - class 23, integrity constraint violation: NOT NULL, CHECK, unique,
///   foreign key, exclusion (and domain constraints, reported as 23514);
/// - P0001 `raise_exception` and P0004 `assert_failure`: a trigger refused
///   the row;
/// - 54000 `program_limit_exceeded`: a value too large for an index entry;
/// - 57014 `query_canceled`: the statement hit `statement_timeout`; the
///   batch is tried in smaller parts, and one message that still takes too
///   long is a dead letter;
/// - 21000 `cardinality_violation`: an upsert touched one row twice, two
///   keys the host tells apart being equal to PostgreSQL (a nondeterministic
///   collation); in smaller parts they land apart, the later one winning.
///
/// Everything else (a lost connection, a serialization failure, a deadlock,
/// an administrator's shutdown, a lock timeout, a missing column) is not
/// the rows' fault: the batch is tried again, whole.
pub fn refuses_rows(e: &tokio_postgres::Error) -> bool {
    let Some(code) = e.code() else {
        return false;
    };
    let code = code.code();
    code.starts_with("22") || code.starts_with("23") || matches!(code, "P0001" | "P0004" | "54000" | "57014" | "21000")
}

/// The database error in `e` when it is a refusal of rows ([`refuses_rows`]).
pub fn row_refusal(e: &anyhow::Error) -> Option<&tokio_postgres::Error> {
    e.chain()
        .filter_map(|c| c.downcast_ref::<tokio_postgres::Error>())
        .find(|e| refuses_rows(e))
}

/// Most characters of PostgreSQL's detail and context a reason keeps.
const DETAIL_CHARS: usize = 300;

/// A dead letter's reason: PostgreSQL's message, the constraint, column or
/// table it names, the SQLSTATE, and its detail.
pub fn reason(e: &tokio_postgres::Error) -> String {
    let Some(db) = e.as_db_error() else {
        return format!("PostgreSQL refused the row: {e}");
    };
    let mut names = Vec::new();
    if let Some(c) = db.constraint() {
        names.push(format!("constraint {c:?}"));
    }
    if let Some(c) = db.column() {
        names.push(format!("column {c:?}"));
    }
    if let Some(t) = db.table() {
        names.push(format!("table {t:?}"));
    }
    names.push(format!("SQLSTATE {}", db.code().code()));
    let mut text = format!("PostgreSQL refused the row: {} ({})", db.message(), names.join(", "));
    // A COPY names the column of a bad value only in its context.
    for extra in [db.detail(), db.where_()].into_iter().flatten() {
        let short: String = extra.chars().take(DETAIL_CHARS).collect();
        text.push_str("; ");
        text.push_str(&short);
    }
    text
}

/// The order in which groups of messages are written while looking for the
/// culprits: the pure part of the bisection.
#[derive(Debug, Default)]
pub struct Bisect {
    queue: VecDeque<Vec<u32>>,
    culprits: Vec<(u32, String)>,
    attempts: u32,
}

impl Bisect {
    /// Starts with the whole group.
    pub fn whole(messages: Vec<u32>) -> Self {
        let mut b = Self::default();
        if !messages.is_empty() {
            b.queue.push_back(messages);
        }
        b
    }

    /// Starts from a group known to have been refused with `reason`.
    pub fn after_failure(messages: Vec<u32>, reason: String) -> Self {
        let mut b = Self::default();
        b.failed(messages, reason);
        b
    }

    /// The next group to write, in message order.
    pub fn next_group(&mut self) -> Option<Vec<u32>> {
        let group = self.queue.pop_front()?;
        self.attempts += 1;
        Some(group)
    }

    /// `group` was refused: one message is a culprit, more are split in two
    /// and written next, the first half first.
    pub fn failed(&mut self, mut group: Vec<u32>, reason: String) {
        match group.len() {
            0 => {}
            1 => self.culprits.push((group[0], reason)),
            n => {
                let second = group.split_off(n / 2);
                self.queue.push_front(second);
                self.queue.push_front(group);
            }
        }
    }

    /// Groups written so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The culprits and their reasons, in message order.
    pub fn culprits(self) -> Vec<(u32, String)> {
        self.culprits
    }
}

const SAVEPOINT: &str = "wasm_stream_isolate";

/// Writes the rows of a batch in `tx`, one plan per table, leaving out the
/// messages PostgreSQL refuses: returns them with their reasons (a message
/// refused in one table has none of its rows written in any). `known`: the
/// reason the whole was already refused with (it is then not tried whole
/// again). Fails on an error that is not the rows' fault.
pub async fn write_isolating(
    tx: &Transaction<'_>,
    plans: &[Plan<'_>],
    known: Option<String>,
) -> Result<Vec<(u32, String)>, tokio_postgres::Error> {
    let mut messages: Vec<u32> = plans
        .iter()
        .flat_map(|plan| match plan {
            Plan::Copy { of_row, .. } => of_row.to_vec(),
            Plan::Keyed { latest, .. } => latest.messages(),
        })
        .collect();
    messages.sort_unstable();
    messages.dedup();
    let mut bisect = match known {
        Some(reason) => Bisect::after_failure(messages, reason),
        None => Bisect::whole(messages),
    };
    while let Some(group) = bisect.next_group() {
        tx.batch_execute(&format!("SAVEPOINT {SAVEPOINT}")).await?;
        match write_group(tx, plans, &group).await {
            Ok(()) => tx.batch_execute(&format!("RELEASE SAVEPOINT {SAVEPOINT}")).await?,
            Err(e) if refuses_rows(&e) => {
                tx.batch_execute(&format!("ROLLBACK TO SAVEPOINT {SAVEPOINT}")).await?;
                bisect.failed(group, reason(&e));
            }
            Err(e) => return Err(e),
        }
    }
    tracing::debug!(attempts = bisect.attempts(), "isolated the refused rows");
    Ok(bisect.culprits())
}

/// Writes the rows of `group`, consecutive messages of the batch, to every
/// table, in the order `postgres::tables` gives.
async fn write_group(tx: &Transaction<'_>, plans: &[Plan<'_>], group: &[u32]) -> Result<(), tokio_postgres::Error> {
    let (Some(lo), Some(hi)) = (group.first().copied(), group.last().copied()) else {
        return Ok(());
    };
    let in_group = |m: u32| lo <= m && m <= hi;
    // Keyed tables: the group's operations into the staging tables.
    let mut staged = vec![(0usize, 0usize); plans.len()];
    for (i, plan) in plans.iter().enumerate() {
        if let Plan::Keyed {
            statements: k,
            latest,
            columns,
        } = plan
        {
            let (rows, deletes) = latest.stage(columns, in_group);
            // The staging table keeps the rows of the groups before until the commit.
            tx.batch_execute(&format!("DELETE FROM pg_temp.{}", super::ident(&k.stage)))
                .await?;
            staged[i] = (rows.len(), deletes);
            if !rows.is_empty() {
                copy_in(tx, &k.copy, [Bytes::from(rows.finish()), Bytes::new()]).await?;
            }
        }
    }
    for (i, plan) in plans.iter().enumerate().rev() {
        if let Plan::Keyed { statements: k, .. } = plan
            && staged[i].1 > 0
        {
            tx.batch_execute(&k.analyze).await?;
            tx.execute(&k.delete, &[]).await?;
        }
    }
    for (i, plan) in plans.iter().enumerate() {
        match plan {
            Plan::Copy { copy, of_row, rows } => {
                let first = of_row.partition_point(|m| *m < lo);
                let end = of_row.partition_point(|m| *m <= hi);
                if first < end {
                    copy_in(tx, copy, rows.range(first, end)).await?;
                }
            }
            Plan::Keyed { statements: k, .. } if staged[i].0 > 0 => {
                tx.execute(&k.upsert, &[]).await?;
            }
            Plan::Keyed { .. } => {}
        }
    }
    Ok(())
}

/// Sends rows through `COPY` and waits for PostgreSQL's verdict.
pub async fn copy_in(tx: &Transaction<'_>, copy: &Statement, data: [Bytes; 2]) -> Result<(), tokio_postgres::Error> {
    let sink = tx.copy_in::<_, Bytes>(copy).await?;
    futures_util::pin_mut!(sink);
    for part in data.into_iter().filter(|p| !p.is_empty()) {
        futures_util::SinkExt::feed(&mut sink, part).await?;
    }
    sink.finish().await.map(drop)
}

/// A batch PostgreSQL refused because of some rows, written again in a new
/// transaction: the offsets first (a fenced batch needs no more work), then
/// the rows without their culprits, then the dead letters, the mapper's and
/// the culprits'.
pub async fn salvage(
    client: &mut Client,
    statements: &SinkStatements,
    batch: super::Batch,
    first: String,
    started: std::time::Instant,
) -> anyhow::Result<Written> {
    let tx = client.transaction().await?;
    // Deferred constraints would otherwise refuse the commit, not a group.
    tx.batch_execute("SET CONSTRAINTS ALL IMMEDIATE").await?;
    if let Some(partition) = super::update_offsets(&tx, statements, &batch).await? {
        tx.rollback().await?;
        return Ok(Written::Fenced { partition });
    }
    anyhow::ensure!(
        statements.tables.len() == batch.tables.len(),
        "a batch of {} tables for a sink of {}",
        batch.tables.len(),
        statements.tables.len()
    );
    let plans = batch
        .tables
        .iter()
        .zip(&statements.tables)
        .map(|(t, s)| t.parts.plan(s, &t.rows))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let culprits = write_isolating(&tx, &plans, Some(first))
        .await
        .with_context(|| format!("cannot copy rows into {:?}", batch.table))?;
    let refused = culprits.len() as u64;
    let culprit_messages: Vec<u32> = culprits.iter().map(|c| c.0).collect();
    let refused_rows: u64 = batch.tables.iter().map(|t| t.parts.rows_of(&culprit_messages)).sum();
    let mut letters = batch.dead_letters;
    for (message, reason) in culprits {
        let m = message as usize;
        let (partition, offset) = batch.positions.get(m).copied().context("a culprit outside the batch")?;
        let (key, payload) = batch.sources.get(m).cloned().unwrap_or_default();
        letters.push(DeadLetter {
            partition,
            offset,
            key,
            payload,
            reason,
        });
    }
    let last_reason = letters.last().map(|l| l.reason.clone()).unwrap_or_default();
    super::insert_dead_letters(&tx, &batch.sink, &batch.topic, &batch.plugin, &letters).await?;
    tx.commit().await.context("cannot commit the batch")?;
    tracing::warn!(
        sink = batch.sink,
        table = batch.table,
        messages = refused,
        rows = refused_rows,
        // From the start of the batch's write to the commit of the rest.
        ms = started.elapsed().as_millis(),
        reason = last_reason,
        "PostgreSQL refused some rows; their messages are dead letters, the rest of the batch is stored"
    );
    Ok(Written::Committed(super::RowsRefused {
        letters: refused,
        rows: refused_rows,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Runs a bisection against a table that refuses the `bad` messages, and
    /// also a message equal (by `value`) to one already stored, as a unique
    /// index does. Returns the culprits and the stored messages.
    fn run(n: u32, bad: &[u32], value: impl Fn(u32) -> u32) -> (Vec<u32>, Vec<u32>, u32) {
        let mut b = Bisect::whole((0..n).collect());
        let mut stored: Vec<u32> = Vec::new();
        while let Some(group) = b.next_group() {
            let mut seen: HashSet<u32> = stored.iter().map(|m| value(*m)).collect();
            let refused = group.iter().any(|m| bad.contains(m) || !seen.insert(value(*m)));
            if refused {
                b.failed(group, "refused".into());
            } else {
                stored.extend(group);
            }
        }
        let attempts = b.attempts();
        (b.culprits().into_iter().map(|c| c.0).collect(), stored, attempts)
    }

    #[test]
    fn every_culprit_is_found_and_every_other_message_stored_in_order() {
        let bad = [0, 17, 18, 500, 999];
        let (culprits, stored, attempts) = run(1000, &bad, |m| m);
        assert_eq!(culprits, bad);
        let expected: Vec<u32> = (0..1000).filter(|m| !bad.contains(m)).collect();
        assert_eq!(stored, expected);
        // About two groups per culprit and halving, far below one per message.
        assert!(attempts < 120, "{attempts} attempts");
    }

    #[test]
    fn a_clean_batch_is_written_at_once() {
        let (culprits, stored, attempts) = run(100, &[], |m| m);
        assert!(culprits.is_empty());
        assert_eq!(stored.len(), 100);
        assert_eq!(attempts, 1);
    }

    #[test]
    fn of_two_equal_values_the_later_message_is_the_culprit() {
        // Messages 10 and 700 carry the same unique value.
        let (culprits, stored, _) = run(1000, &[], |m| if m == 700 { 10 } else { m });
        assert_eq!(culprits, [700]);
        assert_eq!(stored.len(), 999);
    }

    #[test]
    fn a_group_known_to_fail_is_split_at_once_and_one_message_is_the_culprit() {
        let mut b = Bisect::after_failure(vec![4], "why".into());
        assert!(b.next_group().is_none());
        assert_eq!(b.culprits(), [(4, "why".to_string())]);
        let mut b = Bisect::after_failure(vec![1, 2, 3], "why".into());
        assert_eq!(b.next_group(), Some(vec![1]));
        assert_eq!(b.next_group(), Some(vec![2, 3]));
    }

    #[test]
    fn only_data_errors_isolate_rows() {
        // No database error at all (a closed connection): not the rows' fault.
        let e = anyhow::anyhow!("connection closed");
        assert!(row_refusal(&e).is_none());
    }
}
