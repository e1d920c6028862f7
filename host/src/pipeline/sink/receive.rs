//! Receiving: the next message of the topic, a rebalance followed, each
//! partition (re)assigned at its stored offset, offsets Kafka no longer holds
//! found, and a message taken into the batch when it continues its partition.

use super::super::lost_offsets;
use super::super::retry::{self, Backoff, Verdict};
use super::{IDLE_POLL, IN_FLIGHT_POLL, Received, Sink, pace};
use crate::kafka::{self, StoredOffsets};
use crate::plugins::mapper::Message;
use anyhow::Context as _;
use rdkafka::consumer::Consumer as _;
use rdkafka::message::Message as _;
use rdkafka::{Offset, Timestamp, TopicPartitionList};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

impl Sink {
    /// Receives the next message. One already fetched needs no timer, no
    /// select and no clock; with none buffered and no write in flight, the
    /// batch goes at once (`pace`); otherwise it waits until the flush is
    /// due, a stop, or a poll interval (short while a write is in flight, so
    /// its commit is noticed promptly).
    pub(super) async fn receive(&mut self, stopping: bool) -> (Received, pace::Arrival) {
        if stopping {
            return (Received::Nothing, pace::Arrival::Waited);
        }
        if let Some(ready) = futures_util::FutureExt::now_or_never(self.consumer.recv()) {
            return (self.own(ready), pace::Arrival::Buffered);
        }
        let writing = self.in_flight.is_some();
        if pace::write_now(self.batch.len(), writing) {
            return (Received::Nothing, pace::Arrival::Drained);
        }
        let wait = pace::wait(
            &self.pace(),
            self.batch_started.elapsed(),
            IDLE_POLL,
            writing,
            IN_FLIGHT_POLL,
        );
        if wait.is_zero() {
            return (Received::Nothing, pace::Arrival::Waited);
        }
        let received = tokio::select! {
            r = tokio::time::timeout(wait, self.consumer.recv()) => r.ok(),
            _ = self.stop.changed() => None,
        };
        (
            received.map_or(Received::Nothing, |r| self.own(r)),
            pace::Arrival::Waited,
        )
    }

    /// A message of the sink's topic, copied out of the consumer's buffer.
    fn own(&self, received: rdkafka::error::KafkaResult<rdkafka::message::BorrowedMessage<'_>>) -> Received {
        match received {
            Err(e) => Received::Error(e),
            Ok(m) if m.topic() != self.config.topic => Received::Foreign,
            Ok(m) => Received::Message(Message {
                topic: self.config.topic.to_string(),
                partition: m.partition(),
                offset: m.offset(),
                timestamp: match m.timestamp() {
                    Timestamp::NotAvailable => None,
                    Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => Some(t),
                },
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().map(<[u8]>::to_vec),
                // Set by the decoder when the sink has a registry format.
                schema: None,
            }),
        }
    }

    /// A rebalance runs inside `recv()`: the batch may now hold messages that
    /// will be delivered again, so it is dropped and the positions start over
    /// from the new assignment (the generation invariant, see [`Sink`]).
    pub(super) async fn follow_rebalance(&mut self) -> anyhow::Result<()> {
        let current = self.consumer.context().generation();
        if current == self.generation {
            return Ok(());
        }
        self.generation = current;
        if let Some(assignment) = self.consumer.context().take_assignment() {
            let starts = self.check_offsets(&assignment).await?;
            if !starts.is_empty() {
                self.assign(&assignment, &starts)?;
            }
            // Tell Kafka where the database stands, so a committed offset
            // that drifted (a crash between the two commits, `host
            // simulate`) heals even before the next batch.
            let stored: HashMap<i32, i64> = assignment.iter().filter_map(|(p, o)| o.map(|o| (*p, o))).collect();
            kafka::commit_advisory(&self.consumer, &self.config.topic, &stored);
            self.positions.reset(assignment);
            crate::ops::state::sink_assigned(&self.config.name, self.positions.next.keys());
            self.pause_assigned();
        }
        self.batch.clear();
        Ok(())
    }

    /// Where partitions start instead of their stored offset because Kafka
    /// no longer holds it (past the end of a topic created again, before the
    /// start after retention); stops the sink there unless its
    /// `on_lost_offsets` is "skip" (see `lost_offsets`).
    pub(super) async fn check_offsets(&mut self, stored: &StoredOffsets) -> anyhow::Result<HashMap<i32, Offset>> {
        if stored.values().all(Option::is_none) {
            return Ok(HashMap::new());
        }
        // None: stopped while Kafka did not answer; nothing is read then.
        let Some(marks) = self.read_watermarks().await? else {
            return Ok(HashMap::new());
        };
        let lost = lost_offsets::find(stored, &marks);
        self.skipping.take_on(&self.config, &lost)
    }

    /// Puts the partitions at their stored offsets, or at `starts` (a seek
    /// when the consumer holds just them, else an assignment: see
    /// `kafka::reposition`).
    /// A partition with nothing stored starts at the log's start: a sink
    /// whose `start` is "latest" or a time stored its start offsets when the
    /// partitions were first assigned (see `kafka::resolve_starts`).
    pub(super) fn assign(&self, stored: &StoredOffsets, starts: &HashMap<i32, Offset>) -> anyhow::Result<()> {
        let mut tpl = TopicPartitionList::new();
        for (p, offset) in stored {
            let start = match (starts.get(p), offset) {
                (Some(start), _) => *start,
                (None, Some(o)) => Offset::Offset(*o),
                (None, None) => Offset::Beginning,
            };
            tpl.add_partition_offset(&self.config.topic, *p, start)?;
        }
        kafka::reposition(&self.consumer, &tpl).context("cannot assign the partitions at their start offsets")?;
        self.pause_assigned();
        Ok(())
    }

    /// librdkafka found a fetch offset out of range (`auto.offset.reset =
    /// error`): the write in flight is settled, and the sink starts over from
    /// the stored offsets, which are checked against the log.
    async fn offset_out_of_range(&mut self, error: &rdkafka::error::KafkaError) -> anyhow::Result<()> {
        tracing::warn!(
            sink = self.config.name,
            error = %error,
            "a fetch offset is out of range; checking the stored offsets against the topic"
        );
        if !self.settle().await? {
            self.rewind().await?;
        }
        self.batch.clear();
        Ok(())
    }

    /// Adds a message that continues its partition to the batch; stops the
    /// sink on a consumer error that retrying cannot cure.
    pub(super) async fn take(&mut self, received: Received) -> anyhow::Result<()> {
        match received {
            // Paused: dropped, and consumed again from the stored offsets on resume.
            Received::Message(_) if self.paused => {}
            Received::Message(m) if self.positions.accept(m.partition, m.offset) => {
                if self.batch.is_empty() {
                    self.batch_started = Instant::now();
                }
                self.batch.push(m);
            }
            // Stale (already stored, or skipped), from a partition no longer
            // assigned, or not of the sink's topic.
            Received::Message(m) => self.skipping.stale(&self.config.name, m.partition, m.offset),
            Received::Foreign => {}
            Received::Error(e) if kafka::is_offset_out_of_range(&e) => self.offset_out_of_range(&e).await?,
            Received::Error(e) => {
                // Fenced, or refused by TLS: retrying would only hide it.
                if let Some(reason) = self.permanent_kafka_error(Some(&e)) {
                    return self.fail_or_rejoin(reason, Some(&e)).await;
                }
                tracing::warn!(sink = self.config.name, error = %e, "Kafka consumer error; retrying");
                tokio::time::sleep(IDLE_POLL).await;
            }
            Received::Nothing => {
                if let Some(reason) = self.permanent_kafka_error(None) {
                    return self.fail_or_rejoin(reason, None).await;
                }
            }
        }
        Ok(())
    }

    /// The start and end offset of each partition of the topic; `None` when
    /// the sink was stopped while a broker outage was waited out (never taken
    /// for the end).
    pub(super) async fn read_watermarks(&mut self) -> anyhow::Result<Option<HashMap<i32, (i64, i64)>>> {
        // A client of its own: on the consumer's connection these requests
        // would queue behind its long-polling fetches.
        let (kafka_cfg, group) = (self.pipeline.kafka.clone(), self.config.group.clone());
        let query = tokio::task::spawn_blocking(move || kafka::query_consumer(&kafka_cfg, &group)).await??;
        let query = Arc::new(query);
        let (topic, name) = (&self.config.topic, &self.config.name);
        let ends = retry::with_backoff(
            Backoff::default(),
            Some(&mut self.stop),
            || {
                let (q, t) = (query.clone(), topic.clone());
                async move {
                    tokio::task::spawn_blocking(move || kafka::watermarks(q.as_ref(), &t))
                        .await
                        .map_err(anyhow::Error::from)
                        .and_then(|ends| ends)
                }
            },
            |e: &anyhow::Error, _| {
                if e.is::<tokio::task::JoinError>() {
                    return Verdict::GiveUp;
                }
                tracing::warn!(sink = name, error = %format!("{e:#}"), "cannot read the end of the topic; retrying");
                Verdict::Retry
            },
        )
        .await;
        match ends {
            Ok(ends) => Ok(Some(ends)),
            Err(_) if *self.stop.borrow() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A consumer error that retrying cannot cure, explained.
    pub(super) fn permanent_kafka_error(&self, error: Option<&rdkafka::error::KafkaError>) -> Option<String> {
        kafka::permanent_consumer_error(&self.consumer, error, &self.config.group, &self.config.instance_id)
    }
}
