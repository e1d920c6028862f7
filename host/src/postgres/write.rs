//! The write path: the statements a sink prepares once, and the one
//! transaction per batch (rows by `COPY`, dead letters, conditional offset
//! updates) that makes delivery exactly once.

use super::{DEAD_LETTERS_TABLE, OFFSETS_TABLE, SinkTable, ident, isolate, keyed, tables};
use anyhow::Context as _;
use std::collections::HashMap;
use tokio_postgres::{Client, Statement};

/// The statements a sink runs for every batch, prepared once per connection
/// (each unprepared statement costs a round trip more).
pub struct SinkStatements {
    /// One per table of the sink, in the declared order.
    pub(super) tables: Vec<TableStatements>,
    pub(super) update_offset: Statement,
    pub(super) insert_offset: Statement,
}

/// The statements that write one table of a sink.
pub struct TableStatements {
    /// The table's name, for messages.
    pub(super) table: String,
    pub(super) copy: Statement,
    /// With a key (`mode = "upsert"`): rows go through a staging table.
    pub(super) keyed: Option<keyed::Statements>,
}

impl SinkStatements {
    /// Prepares the statements that write the sink's `tables`; for the ones
    /// with a key, also creates the session's staging tables.
    pub async fn prepare(client: &Client, tables: &[SinkTable]) -> anyhow::Result<Self> {
        let update_offset = format!(
            "UPDATE {} SET next_offset = $4, consumer_group = $5, updated_at = now()
             WHERE table_name = $1 AND topic = $2 AND partition = $3 AND next_offset = $6",
            ident(OFFSETS_TABLE)
        );
        let insert_offset = format!(
            "INSERT INTO {} (table_name, topic, partition, next_offset, consumer_group) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT DO NOTHING",
            ident(OFFSETS_TABLE)
        );
        let mut prepared = Vec::with_capacity(tables.len());
        for (i, t) in tables.iter().enumerate() {
            let written = t.written();
            let names: Vec<String> = written.iter().map(|c| ident(&c.name)).collect();
            let copy = format!("COPY {} ({}) FROM STDIN BINARY", ident(&t.name), names.join(", "));
            let context = || format!("cannot prepare the statements that write table {:?}", t.name);
            prepared.push(TableStatements {
                table: t.name.clone(),
                copy: client.prepare(&copy).await.with_context(context)?,
                keyed: if t.key.is_empty() {
                    None
                } else {
                    Some(keyed::Statements::prepare(client, &t.name, &written, &t.key, &keyed::stage_table(i)).await?)
                },
            });
        }
        let context = || "cannot prepare the statements that write the offsets".to_string();
        Ok(Self {
            tables: prepared,
            update_offset: client.prepare(&update_offset).await.with_context(context)?,
            insert_offset: client.prepare(&insert_offset).await.with_context(context)?,
        })
    }
}

/// A message that could not be mapped.
pub struct DeadLetter {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub reason: String,
}

/// The key and payload of a message, kept for a dead letter.
pub type Source = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Everything one batch writes, in one transaction.
pub struct Batch {
    pub sink: String,
    pub table: String,
    pub topic: String,
    pub group: String,
    pub plugin: String,
    /// The rows of each table of the sink, in the declared order.
    pub tables: Vec<TableBatch>,
    /// `(partition, offset)` of every message, and its key and payload
    /// (`None` for the ones already dead letters): for the refused ones.
    pub positions: Vec<(i32, i64)>,
    pub sources: Vec<Source>,
    pub dead_letters: Vec<DeadLetter>,
    /// Per partition: the next offset the database held when the batch was
    /// read (`None`: nothing stored yet) and the next offset after it.
    pub offsets: HashMap<i32, (Option<i64>, i64)>,
}

/// The rows of one table in a batch.
pub struct TableBatch {
    pub rows: isolate::Frozen,
    /// Which message each row came from, to leave out the ones PostgreSQL refuses.
    pub parts: isolate::Parts,
    /// How many deletes the mapper asked for (keyed sinks): with none, the
    /// table needs no `DELETE`.
    pub deletes: usize,
}

/// How a batch write ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// Stored; the messages and rows PostgreSQL refused are dead letters.
    Committed(RowsRefused),
    /// Another consumer moved a partition's stored offset first: the batch
    /// was rolled back and the sink must restart from the stored offsets.
    Fenced { partition: i32 },
}

/// Messages of a batch PostgreSQL refused (see [`isolate`]), now dead
/// letters, and their rows.
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
pub struct RowsRefused {
    pub letters: u64,
    pub rows: u64,
}

/// Writes rows (binary `COPY`), dead letters and next offsets in one
/// transaction. The offset update is conditional on the offset the batch
/// started from, which fences a consumer that lost its partition to another.
/// When PostgreSQL refuses rows for their data, the batch is written again
/// without them, and their messages become dead letters ([`isolate`]).
pub async fn write_batch(client: &mut Client, statements: &SinkStatements, batch: Batch) -> anyhow::Result<Written> {
    let started = std::time::Instant::now();
    match write_whole(client, statements, &batch).await {
        Err(e) => match isolate::row_refusal(&e).map(isolate::reason) {
            Some(reason) => isolate::salvage(client, statements, batch, reason, started).await,
            None => Err(e),
        },
        written => written,
    }
}

/// The conditional offset updates of a batch; `Some(partition)` when one
/// found another consumer's offset (fenced).
pub(super) async fn update_offsets(
    tx: &tokio_postgres::Transaction<'_>,
    statements: &SinkStatements,
    batch: &Batch,
) -> Result<Option<i32>, tokio_postgres::Error> {
    // One round trip for all partitions: the updates are sent together.
    let updates = batch.offsets.iter().map(|(partition, (old, new))| {
        let (table, topic, group) = (&batch.table, &batch.topic, &batch.group);
        async move {
            let changed = match old {
                Some(old) => {
                    tx.execute(&statements.update_offset, &[table, topic, partition, new, group, old])
                        .await?
                }
                None => {
                    tx.execute(&statements.insert_offset, &[table, topic, partition, new, group])
                        .await?
                }
            };
            Ok::<_, tokio_postgres::Error>((*partition, changed))
        }
    });
    let updated = futures_util::future::try_join_all(updates).await?;
    Ok(updated.into_iter().find(|(_, changed)| *changed != 1).map(|(p, _)| p))
}

/// Inserts dead letters, in one statement.
pub(super) async fn insert_dead_letters(
    tx: &tokio_postgres::Transaction<'_>,
    sink: &str,
    topic: &str,
    plugin: &str,
    d: &[DeadLetter],
) -> anyhow::Result<()> {
    if d.is_empty() {
        return Ok(());
    }
    let partitions: Vec<i32> = d.iter().map(|x| x.partition).collect();
    let offsets: Vec<i64> = d.iter().map(|x| x.offset).collect();
    let keys: Vec<Option<&[u8]>> = d.iter().map(|x| x.key.as_deref()).collect();
    let payloads: Vec<Option<&[u8]>> = d.iter().map(|x| x.payload.as_deref()).collect();
    let reasons: Vec<&str> = d.iter().map(|x| x.reason.as_str()).collect();
    let sql = format!(
        "INSERT INTO {} (sink, topic, plugin, partition, \"offset\", key, payload, reason)
         SELECT $1, $2, $3, * FROM UNNEST($4::int4[], $5::int8[], $6::bytea[], $7::bytea[], $8::text[])",
        ident(DEAD_LETTERS_TABLE)
    );
    tx.execute(
        &sql,
        &[
            &sink,
            &topic,
            &plugin,
            &partitions,
            &offsets,
            &keys,
            &payloads,
            &reasons,
        ],
    )
    .await
    .context("cannot write dead letters")?;
    Ok(())
}

/// The batch in one go: the fast path.
async fn write_whole(client: &mut Client, statements: &SinkStatements, batch: &Batch) -> anyhow::Result<Written> {
    let tx = client.transaction().await?;
    // The end of the copies and the offset updates go out together (one
    // round trip); the commit waits for the updates' row counts.
    let copied = tables::write_tables(&tx, &statements.tables, &batch.tables);
    insert_dead_letters(&tx, &batch.sink, &batch.topic, &batch.plugin, &batch.dead_letters).await?;
    let (copied, fenced) = futures_util::future::join(copied, update_offsets(&tx, statements, batch)).await;
    copied.with_context(|| format!("cannot copy rows into {:?}", batch.table))?;
    if let Some(partition) = fenced? {
        tx.rollback().await?;
        return Ok(Written::Fenced { partition });
    }
    tx.commit().await.context("cannot commit the batch")?;
    Ok(Written::Committed(RowsRefused::default()))
}
