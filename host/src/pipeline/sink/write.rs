//! Batching and writing: when a batch is due, mapping it, and writing it in
//! a task of its own whose outcome is settled before the next write starts.

use super::super::batch::{self, Mapped};
use super::super::decode;
use super::{Destination, InFlight, Sink, pace};
use crate::kafka;
use crate::plugins::mapper::Message;
use crate::postgres::{self, Batch, TableBatch, Written};
use anyhow::Context as _;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long a batch with a new schema id waits for its columns to be resolved.
const NEW_SCHEMA_WAIT: Duration = Duration::from_secs(10);

impl Sink {
    pub(super) fn write_finished(&self) -> bool {
        self.in_flight.as_ref().is_some_and(|f| f.task.is_finished())
    }

    /// Whether the batch is to be written now (see `pace`), or the sink is
    /// stopping.
    pub(super) fn batch_due(&self, arrival: pace::Arrival, stopping: bool) -> bool {
        (stopping && !self.batch.is_empty()) || self.pace().due(arrival, || self.batch_started.elapsed())
    }

    pub(super) fn pace(&self) -> pace::Batch {
        pace::Batch {
            len: self.batch.len(),
            batch_size: self.config.batch_size,
            flush_interval: self.config.flush_interval,
        }
    }

    /// At a batch boundary: applies new settings and mappers, maps the batch
    /// and launches its write. True when the sink rewound instead: the batch
    /// will be consumed again.
    pub(super) async fn flush(&mut self) -> anyhow::Result<bool> {
        if self.apply_changes().await? {
            self.batch.clear();
            return Ok(true);
        }
        let taken = std::mem::replace(&mut self.batch, Vec::with_capacity(self.config.batch_size));
        let generation = self.generation;
        let Some(decoded) =
            decode::decode_waiting(self.decoder.as_ref(), taken, &self.config.name, &mut self.stop).await?
        else {
            // Stopped while the registry was down: nothing of it is written.
            return Ok(true);
        };
        // A new schema version may bring columns (`from_registry`): the
        // run loop resolves them, and the new mapper comes before this batch.
        if decoded.new_ids && self.config.registry.columns_from.is_some() {
            super::super::registry_columns::ask_and_wait(NEW_SCHEMA_WAIT).await;
            if self.apply_changes().await? {
                return Ok(true);
            }
        }
        let mut mapped = self.map(decoded.messages).await?;
        decode::add_dead_letters(&mut mapped, decoded.dead_letters);
        // The previous write finished meanwhile, most of the time.
        if self.in_flight.is_some() && self.settle().await? {
            return Ok(true);
        }
        // The generation invariant (see [`Sink`]).
        if generation == self.generation {
            self.launch(mapped)?;
        }
        Ok(false)
    }

    /// Maps and encodes a batch on a blocking thread; the mapper comes back.
    /// Fails only when the mapper cannot even be restarted.
    async fn map(&mut self, messages: Vec<Message>) -> anyhow::Result<Mapped> {
        let mapper = self
            .mapper
            .take()
            .context("the mapper is away while a batch is mapped")?;
        let (mapper, mapped) = batch::map(mapper, self.tables.clone(), messages, self.echo).await?;
        self.mapper = Some(mapper);
        mapped
    }

    /// Starts writing a mapped batch in a task of its own: rows, dead letters
    /// and the next offsets, in one transaction.
    fn launch(&mut self, mapped: Mapped) -> anyhow::Result<()> {
        let mut writer = self
            .writer
            .take()
            .context("a batch is written while another is in flight")?;
        let offsets = self.positions.batch_offsets(&mapped.positions);
        let next = offsets.iter().map(|(p, (_, new))| (*p, *new)).collect();
        let (messages, rows, dead_letters) = (
            mapped.positions.len() as u64,
            mapped.rows() as u64,
            mapped.dead_letters.len() as u64,
        );
        let batch = Batch {
            sink: self.config.name.clone(),
            table: self.config.table.to_string(),
            topic: self.config.topic.to_string(),
            group: self.config.group.clone(),
            plugin: mapped.plugin,
            tables: mapped
                .tables
                .into_iter()
                .map(|t| TableBatch {
                    deletes: t.deletes.len(),
                    rows: t.rows.freeze(),
                    parts: t.parts,
                })
                .collect(),
            positions: mapped.positions,
            sources: mapped.sources,
            dead_letters: mapped.dead_letters,
            offsets,
        };
        let destination = self.destination;
        let task = tokio::spawn(async move {
            let result = match destination {
                Destination::Postgres => postgres::write_batch(&mut writer.client, &writer.statements, batch).await,
                Destination::Discard => Ok(Written::Committed(postgres::RowsRefused::default())),
            };
            (writer, result)
        });
        self.in_flight = Some(InFlight {
            task,
            generation: self.generation,
            next,
            messages,
            rows,
            dead_letters,
            echo: mapped.echo,
            started: Instant::now(),
        });
        Ok(())
    }

    /// Waits for the write in flight and applies its outcome. Returns true
    /// when the sink had to rewind to the stored offsets: whatever it holds
    /// that is not written must be dropped, and will be consumed again.
    pub(super) async fn settle(&mut self) -> anyhow::Result<bool> {
        let Some(mut f) = self.in_flight.take() else {
            return Ok(false);
        };
        let (writer, result) = (&mut f.task).await.context("the batch writer panicked")?;
        self.writer = Some(writer);
        let why = match result {
            Ok(Written::Committed(refused)) => {
                // Messages whose rows PostgreSQL refused are dead letters now.
                f.rows = f.rows.saturating_sub(refused.rows);
                f.dead_letters += refused.letters;
                self.committed_again();
                tracing::debug!(
                    sink = self.config.name,
                    messages = f.messages,
                    rows = f.rows,
                    dead_letters = f.dead_letters,
                    ms = f.started.elapsed().as_millis(),
                    "batch committed"
                );
                self.stats.messages.fetch_add(f.messages, Ordering::Relaxed);
                self.stats.rows.fetch_add(f.rows, Ordering::Relaxed);
                self.stats.dead_letters.fetch_add(f.dead_letters, Ordering::Relaxed);
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
                if self.echo {
                    for payload in &f.echo {
                        println!("Received: {}", String::from_utf8_lossy(payload));
                    }
                }
                // The generation invariant (see [`Sink`]).
                if f.generation == self.generation {
                    self.positions.committed(&f.next);
                    crate::ops::metrics::batch_committed(
                        &self.config.name,
                        (f.messages, f.rows, f.dead_letters),
                        f.started.elapsed(),
                        &self.positions.stored,
                    );
                    kafka::commit_advisory(&self.consumer, &self.config.topic, &self.positions.stored_next());
                    return Ok(false);
                }
                // The partitions were reassigned while the batch was written:
                // the start offsets read then may predate this commit.
                "the assignment changed while the batch was written".to_string()
            }
            Ok(Written::Fenced { partition }) => {
                crate::ops::metrics::fenced(&self.config.name);
                format!(
                    "partition {partition}'s stored offset was moved by another consumer or a rewind (host sink rewind)"
                )
            }
            Err(e) => format!("{e:#}"),
        };
        // The database is the truth: start again from what it holds, after
        // a pause that grows while the writes keep failing.
        let pause = self.failing.failed(&self.config.name, &why);
        tracing::warn!(
            sink = self.config.name,
            reason = why,
            retry_in_ms = pause.as_millis(),
            "batch not written; resuming from the stored offsets"
        );
        let mut stop = self.stop.clone();
        if !*stop.borrow() {
            let sleep = tokio::time::sleep(pause);
            tokio::pin!(sleep);
            tokio::select! {
                _ = &mut sleep => {}
                // A dropped sender never sends a stop: sleep the pause out.
                changed = stop.changed() => if changed.is_err() { sleep.await },
            }
        }
        self.rewind().await?;
        Ok(true)
    }

    /// A batch committed: the sink is no longer stuck, if it was.
    fn committed_again(&mut self) {
        self.failing.committed(&self.config.name);
    }
}
