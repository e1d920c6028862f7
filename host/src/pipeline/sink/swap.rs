//! Swapping and rewinding: settings and reloaded mappers applied at a batch
//! boundary, and the start over from the offsets stored in PostgreSQL after
//! a failed or fenced write.

use super::super::retry::{self, Backoff, Verdict};
use super::start::connect_with_retry;
use super::{Sink, Swap, Writer};
use crate::kafka::StoredOffsets;
use crate::plugins::MapperWorld;
use crate::postgres::{self, SinkStatements, SinkTable};
use anyhow::Context as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A swap waiting for the database. Its retries back off: each attempt at
/// `ALTER TABLE` queues every other session's access to the table behind it
/// for up to the lock timeout.
pub(super) struct PendingSwap {
    swap: Swap<MapperWorld>,
    retry_at: Instant,
    backoff: Backoff,
}

/// The first and the longest pause before a pending swap is tried again.
const SWAP_RETRY_FIRST: Duration = Duration::from_secs(1);
const SWAP_RETRY_MAX: Duration = Duration::from_secs(60);

impl Sink {
    /// Settings and plugin changes apply from a batch boundary, once the
    /// write in flight is settled (they may need the table). True when
    /// settling made the sink rewind.
    pub(super) async fn apply_changes(&mut self) -> anyhow::Result<bool> {
        let changed = self.live.has_changed().unwrap_or(false);
        let due = |p: &PendingSwap| Instant::now() >= p.retry_at;
        let swapping = self.pending.as_ref().is_some_and(due) || !self.swaps.is_empty();
        if (changed || swapping) && self.in_flight.is_some() && self.settle().await? {
            return Ok(true);
        }
        if changed {
            self.config = self.live.borrow_and_update().clone();
        }
        // A swap sent after the look above finds the write still in flight
        // (`swap` would fail the sink): it waits for the next boundary.
        while self.in_flight.is_none() {
            // A newer mapper replaces one still waiting.
            let (swap, backoff) = match self.swaps.try_recv() {
                Ok(newer) => {
                    self.pending = None;
                    (newer, None)
                }
                Err(_) => match self.pending.take_if(|p| due(p)) {
                    Some(waiting) => (waiting.swap, Some(waiting.backoff)),
                    None => break,
                },
            };
            self.swap(swap, backoff).await?;
            if self.pending.is_some() {
                break;
            }
        }
        Ok(false)
    }

    /// Swaps in a reloaded mapper when the table fits its columns, or keeps
    /// the old one when it does not. Runs between batches, with no write in
    /// flight.
    /// `backoff`: the retry pauses of a swap that was pending.
    async fn swap(&mut self, swap: Swap<MapperWorld>, backoff: Option<Backoff>) -> anyhow::Result<()> {
        let old_hash = self
            .mapper
            .as_deref()
            .context("the mapper is away while a mapper is swapped")?
            .hash()
            .to_string();
        let writer = self
            .writer
            .as_mut()
            .context("a mapper is swapped while a batch is written")?;
        // The key must survive the swap; new tables are created and new
        // nullable columns added here, between batches; any other change is
        // refused (see `ensure_sink_table`).
        // Resolved here: the plugin (not `Sync`) must not be held across an await.
        let resolved = super::super::tables::resolve(&self.config, swap.plugin.configured());
        let fits = async {
            let mut tables = resolved.map_err(anyhow::Error::msg)?;
            postgres::ensure_sink_tables(&writer.client, &mut tables).await?;
            let tables: Arc<[SinkTable]> = tables.into();
            let statements = SinkStatements::prepare(&writer.client, &tables).await?;
            anyhow::Ok((tables, statements))
        };
        match fits.await {
            Ok((new_tables, statements)) => {
                tracing::info!(
                    sink = self.config.name,
                    path = %swap.plugin.path().display(),
                    old_hash,
                    new_hash = swap.plugin.hash(),
                    swap_ms = swap.detected.elapsed().as_millis(),
                    "mapper swapped"
                );
                writer.statements = statements;
                self.tables = new_tables;
                crate::ops::plugin_live::loaded(&swap.plugin);
                self.mapper = Some(Box::new(swap.plugin));
            }
            // The database did not answer (a lock held past the lock
            // timeout, a lost connection): no verdict on the mapper.
            Err(e) if e.chain().any(|c| c.is::<tokio_postgres::Error>()) => {
                let mut backoff = backoff.unwrap_or_else(|| Backoff::new(SWAP_RETRY_FIRST, SWAP_RETRY_MAX));
                let pause = backoff.next_pause();
                tracing::warn!(
                    sink = self.config.name,
                    path = %swap.plugin.path().display(),
                    error = %format!("{e:#}"),
                    retry_in_ms = pause.as_millis(),
                    "cannot apply the new mapper's table changes yet; the old mapper keeps writing, the swap is tried again at a batch boundary after the pause"
                );
                self.pending = Some(PendingSwap {
                    swap,
                    retry_at: Instant::now() + pause,
                    backoff,
                });
            }
            Err(e) => {
                tracing::error!(
                    sink = self.config.name,
                    path = %swap.plugin.path().display(),
                    error = %format!("{e:#}"),
                    "the new mapper does not fit the table; keeping the old one"
                );
                crate::ops::plugin_live::refused_unit(swap.plugin.name(), swap.plugin.path(), &format!("{e:#}"));
            }
        }
        Ok(())
    }

    /// After a failed or fenced write: reconnect, reread the stored offsets and
    /// start every assigned partition again from them.
    pub(super) async fn rewind(&mut self) -> anyhow::Result<()> {
        crate::ops::metrics::rewind(&self.config.name);
        let (pg, config, tables) = (&self.pipeline.postgres, &self.config, &self.tables);
        let failing = &mut self.failing;
        let mut stop = self.stop.clone();
        let (client, stored, statements) = retry::with_backoff(
            Backoff::default(),
            Some(&mut stop),
            || {
                let mut stop = self.stop.clone();
                async move {
                    let client = connect_with_retry(pg, &config.instance_id, &mut stop).await?;
                    let stored = postgres::stored_offsets(&client, &config.table, &config.topic).await?;
                    let statements = SinkStatements::prepare(&client, tables).await?;
                    postgres::asynchronous_commits(&client).await?;
                    anyhow::Ok((client, stored, statements))
                }
            },
            |e, _| {
                // A refused password or certificate does not heal by waiting.
                if postgres::is_permanent(e) {
                    return Verdict::GiveUp;
                }
                tracing::warn!(sink = config.name, error = %format!("{e:#}"), "cannot read stored offsets; retrying");
                failing.note(&config.name, &format!("{e:#}"));
                Verdict::Retry
            },
        )
        .await?;
        let assignment: StoredOffsets = self
            .positions
            .next
            .keys()
            .map(|p| (*p, stored.get(p).copied()))
            .collect();
        // Offsets Kafka no longer holds stop the sink here too.
        let starts = self.check_offsets(&assignment).await?;
        // A seek where every partition is fetching, else a re-assignment (a
        // seek fails on a partition that is not fetching yet, and the stream
        // would then go on from wherever it was).
        self.assign(&assignment, &starts)
            .context("cannot rewind the consumer to the stored offsets")?;
        self.positions.reset(assignment);
        self.writer = Some(Writer { client, statements });
        Ok(())
    }
}
