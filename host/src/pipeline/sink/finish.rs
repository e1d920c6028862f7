//! How a sink ends: a `once` sink caught up with the end of its topic, the
//! commits made durable, and the consumer group left at once.

use super::{Destination, IDLE_POLL, Sink};
use crate::kafka;
use crate::postgres;
use rdkafka::Offset;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Longest wait for the revocation when leaving the group on a stop.
const LEAVE_WAIT: Duration = Duration::from_secs(2);

impl Sink {
    /// A `once` sink with nothing left to write, whose generators are done.
    pub(super) fn idle_and_generators_done(&mut self) -> bool {
        self.once && self.batch.is_empty() && self.in_flight.is_none() && *self.generators_done.borrow_and_update()
    }

    /// Whether the stored offsets reached the end of the topic (read once),
    /// with the commits on disk; also true when a stop came while reading it;
    /// never while paused.
    pub(super) async fn caught_up(&mut self) -> anyhow::Result<bool> {
        // A paused sink has written nothing past its offsets: `--once` waits
        // for a resume (or a stop) rather than report it caught up.
        if self.paused {
            return Ok(false);
        }
        let marks = match &self.end_offsets {
            Some(marks) => marks,
            None => match self.read_watermarks().await? {
                Some(marks) => self.end_offsets.insert(marks),
                None => return Ok(true),
            },
        };
        if !self
            .positions
            .reached(marks, &read_positions(&self.consumer, &self.config.topic))
        {
            return Ok(false);
        }
        // Caught up only once the commits are on disk: a database that
        // crashed meanwhile may have lost the last ones.
        if !self.make_durable().await? {
            self.batch.clear();
            return Ok(false);
        }
        tracing::info!(
            sink = self.config.name,
            rows = self.stats.rows(),
            "caught up with the end of the topic"
        );
        Ok(true)
    }

    /// Settles the write in flight and makes the commits durable.
    pub(super) async fn finish(mut self) -> anyhow::Result<()> {
        self.settle().await?;
        if let (Some(writer), Destination::Postgres) = (self.writer.as_mut(), self.destination)
            && let Err(e) = postgres::flush_commits(&mut writer.client, &self.config.table, &self.config.topic).await
        {
            // Nothing is lost: the next run resumes from what the database kept.
            tracing::warn!(sink = self.config.name, error = %format!("{e:#}"), "cannot make the last commits durable; the next run resumes from the stored offsets");
        }
        self.leave_group().await;
        Ok(())
    }

    /// Hands the partitions over at once. A static member sends no
    /// LeaveGroup when it closes (KIP-345), so its partitions would wait out
    /// the session timeout; librdkafka does send one on unsubscribe, once the
    /// revocation has been served, which takes polling.
    async fn leave_group(&mut self) {
        let before = self.consumer.context().generation();
        self.consumer.unsubscribe();
        let deadline = Instant::now() + LEAVE_WAIT;
        while Instant::now() < deadline && self.consumer.context().generation() == before {
            let _ = tokio::time::timeout(IDLE_POLL, self.consumer.recv()).await;
        }
        // The LeaveGroup request goes out after the revocation.
        let _ = tokio::time::timeout(IDLE_POLL, self.consumer.recv()).await;
        tracing::info!(
            sink = self.config.name,
            member = self.config.instance_id,
            "left the consumer group; its partitions go to the other members"
        );
    }

    /// Makes the commits so far durable. False when that failed (a database
    /// that crashed may have lost them): the sink has rewound to the offsets
    /// the database kept and must consume from there again.
    async fn make_durable(&mut self) -> anyhow::Result<bool> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(true);
        };
        if self.destination != Destination::Postgres {
            return Ok(true);
        }
        match postgres::flush_commits(&mut writer.client, &self.config.table, &self.config.topic).await {
            Ok(()) => Ok(true),
            Err(e) => {
                tracing::warn!(sink = self.config.name, error = %format!("{e:#}"), "cannot make the last commits durable; resuming from the stored offsets");
                self.rewind().await?;
                Ok(false)
            }
        }
    }
}

/// The consumer's position in each partition of `topic` it has read from:
/// one past the last message delivered or transaction marker passed.
fn read_positions(consumer: &StreamConsumer<kafka::SinkContext>, topic: &str) -> HashMap<i32, i64> {
    let Ok(tpl) = consumer.position() else {
        return HashMap::new();
    };
    tpl.elements_for_topic(topic)
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}
