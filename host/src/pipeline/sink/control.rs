//! What a running sink obeys from PostgreSQL: its control row (see
//! `postgres::lineage`), which `host sink pause|resume|rewind` writes.
//!
//! A task polls the row every [`POLL`] on a session of its own and hands it
//! to the sink loop. The loop acts at its next step:
//!
//! - **paused**: the write in flight is settled (it commits or fails as
//!   usual), the batch dropped, the assigned partitions paused in the
//!   consumer, which keeps polling, so the process keeps its group
//!   membership and its partitions; messages still delivered are dropped.
//!   Nothing is written while paused.
//! - **resumed**: the partitions resume from the offsets stored in
//!   PostgreSQL, so what was dropped is consumed again.
//! - **rewound** (the generation moved): the rewind's transaction moved the
//!   stored offsets, and every write conditional on the old ones fails its
//!   fence, so nothing stale lands; the sink drops what it holds and starts
//!   again from the new offsets. The poll makes an idle sink notice too.

use super::Sink;
use crate::config::PostgresConfig;
use crate::postgres::lineage::{self, Control};
use anyhow::Context as _;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::Consumer as _;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often a sink reads its control row.
pub(super) const POLL: Duration = Duration::from_secs(1);
/// The longest a read of the control row may take.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
/// At most one warning this often while the control session cannot connect.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The polling task; it ends when the sink drops it.
pub(super) struct Poller {
    task: JoinHandle<()>,
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts polling the control row of `table` and `topic`, beginning from
/// `first` (read by the sink before it starts).
pub(super) fn poll(
    pg: PostgresConfig,
    member: String,
    table: String,
    topic: String,
    first: Control,
) -> (Poller, watch::Receiver<Control>) {
    let (tx, rx) = watch::channel(first);
    let task = tokio::spawn(async move {
        let mut client = None;
        let mut warned: Option<Instant> = None;
        loop {
            tokio::time::sleep(POLL).await;
            if client.is_none() {
                match connect(&pg, &member).await {
                    Ok(c) => client = Some(c),
                    Err(e) => {
                        // A sink that cannot see its control row misses a
                        // pause or rewind: say so, but not every second.
                        if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                            warned = Some(Instant::now());
                            tracing::warn!(table, error = %format!("{e:#}"), "cannot connect to read the sink's control row (pause/resume/rewind are noticed only when it can); retrying");
                        }
                    }
                }
            }
            let Some(c) = client.as_ref() else { continue };
            match lineage::read_control(c, &table, &topic).await {
                Ok(now) => {
                    tx.send_if_modified(|seen| std::mem::replace(seen, now) != now);
                }
                Err(e) => {
                    // The sink's own writes report outages; read again later.
                    tracing::debug!(table, error = %format!("{e:#}"), "cannot read the sink's control row");
                    client = None;
                }
            }
            if tx.is_closed() {
                return;
            }
        }
    });
    (Poller { task }, rx)
}

/// The poller's session: named after the member, and bounded, so a stuck
/// read is retried instead of hanging the poller.
async fn connect(pg: &PostgresConfig, member: &str) -> anyhow::Result<tokio_postgres::Client> {
    let client = crate::postgres::connect_as(pg, Some(&format!("{member}-control"))).await?;
    client
        .batch_execute(&format!("SET statement_timeout = {}", STATEMENT_TIMEOUT.as_millis()))
        .await
        .context("cannot set statement_timeout on the control session")?;
    Ok(client)
}

impl Sink {
    /// Acts on a changed control row. True when the sink dropped its batch
    /// (rewound or paused).
    pub(super) async fn obey(&mut self) -> anyhow::Result<bool> {
        if !self.control.has_changed().unwrap_or(false) {
            return Ok(false);
        }
        let now = *self.control.borrow_and_update();
        let seen = std::mem::replace(&mut self.seen, now);
        let mut dropped = false;
        if now.generation != seen.generation {
            tracing::info!(
                sink = self.config.name,
                generation = now.generation,
                "the stored offsets were moved (host sink rewind); dropping what is not written and starting again from them"
            );
            // A write in flight has committed before the rewind, or fails
            // its fence now; either way the offsets are read afresh.
            if !self.settle().await? {
                self.rewind().await?;
            }
            self.batch.clear();
            dropped = true;
        }
        if now.paused != self.paused {
            if now.paused {
                self.pause().await?;
            } else {
                self.resume().await?;
            }
            dropped = true;
        }
        Ok(dropped)
    }

    /// Stops writing, keeping the partitions (see the module comment).
    async fn pause(&mut self) -> anyhow::Result<()> {
        self.settle().await?;
        self.batch.clear();
        self.paused = true;
        self.pause_assigned();
        crate::ops::state::sink_paused(&self.config.name, true);
        crate::ops::metrics::paused(&self.config.name, true);
        tracing::info!(
            sink = self.config.name,
            "paused (host sink pause): writing nothing, keeping the partitions"
        );
        Ok(())
    }

    /// Writes again, from the stored offsets.
    async fn resume(&mut self) -> anyhow::Result<()> {
        self.paused = false;
        if let Ok(assigned) = self.consumer.assignment()
            && let Err(e) = self.consumer.resume(&assigned)
        {
            tracing::warn!(sink = self.config.name, error = %e, "cannot resume the partitions");
        }
        self.rewind().await?;
        self.batch.clear();
        crate::ops::state::sink_paused(&self.config.name, false);
        crate::ops::metrics::paused(&self.config.name, false);
        tracing::info!(
            sink = self.config.name,
            "resumed (host sink resume): going on from the stored offsets"
        );
        Ok(())
    }

    /// Pauses fetching of every assigned partition while the sink is paused
    /// (after a rebalance or a re-assignment too).
    pub(super) fn pause_assigned(&self) {
        if !self.paused {
            return;
        }
        let assigned = self.consumer.assignment().unwrap_or_else(|_| TopicPartitionList::new());
        if let Err(e) = self.consumer.pause(&assigned) {
            tracing::warn!(sink = self.config.name, error = %e, "cannot pause the partitions");
        }
    }
}
