//! Offsets by position or time: where a partition with nothing stored starts
//! (a sink's `start`), and where `host sink rewind --to-time` goes.

use super::METADATA_TIMEOUT;
use crate::config::StartAt;
use anyhow::Context as _;
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::Duration;

/// First pause between two tries to look up where an assignment starts.
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// The longest pause between two tries.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(10);

/// For each partition: the offset of its first message with a timestamp at
/// or after `ms` (unix milliseconds); `None` when it has none (the time is
/// past its last message).
pub fn offsets_for_time<C: ConsumerContext, K: Consumer<C>>(
    consumer: &K,
    topic: &str,
    partitions: &[i32],
    ms: i64,
) -> anyhow::Result<HashMap<i32, Option<i64>>> {
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition_offset(topic, *p, Offset::Offset(ms))?;
    }
    let found = consumer
        .offsets_for_times(tpl, METADATA_TIMEOUT)
        .with_context(|| format!("cannot look up the offsets of topic {topic:?} by time"))?;
    found
        .elements_for_topic(topic)
        .iter()
        .map(|e| {
            if let Err(error) = e.error() {
                anyhow::bail!("cannot look up {topic}/{} by time: {error}", e.partition());
            }
            Ok((
                e.partition(),
                match e.offset() {
                    Offset::Offset(o) if o >= 0 => Some(o),
                    _ => None,
                },
            ))
        })
        .collect()
}

/// Where each of `partitions` (nothing stored for any) starts under a
/// `start` of "latest" or a time, as offsets to store in PostgreSQL before
/// the first message is read, so a later assignment (a rebalance, a
/// restart) resumes from there instead of resolving "latest" again past the
/// messages that came in between. `None` for "earliest": the log's start,
/// as a partition with nothing stored always begins.
///
/// Kafka is asked again, with a growing pause, until it answers: starting
/// anywhere else would store the wrong messages. It blocks (the rebalance
/// callback runs on the thread that polls the consumer), so the runtime is
/// told.
pub fn resolve_starts<C: ConsumerContext, K: Consumer<C>>(
    consumer: &K,
    topic: &str,
    partitions: &[i32],
    start: StartAt,
) -> Option<HashMap<i32, i64>> {
    if start == StartAt::Earliest || partitions.is_empty() {
        return None;
    }
    let lookup = || -> anyhow::Result<HashMap<i32, i64>> {
        let found = match start {
            StartAt::Time(ms) => offsets_for_time(consumer, topic, partitions, ms)?,
            _ => partitions.iter().map(|p| (*p, None)).collect(),
        };
        // "latest", and a time past a partition's last message: its end.
        found
            .into_iter()
            .map(|(p, at)| match at {
                Some(o) => Ok((p, o)),
                None => consumer
                    .fetch_watermarks(topic, p, METADATA_TIMEOUT)
                    .map(|(_, high)| (p, high))
                    .with_context(|| format!("cannot read the end offset of {topic}/{p}")),
            })
            .collect()
    };
    let mut pause = RETRY_PAUSE;
    tokio::task::block_in_place(|| {
        loop {
            match lookup() {
                Ok(starts) => break Some(starts),
                Err(e) => {
                    tracing::warn!(
                        topic,
                        ?partitions,
                        error = %format!("{e:#}"),
                        retry_in = ?pause,
                        "cannot look up where the sink starts in partitions with nothing stored (its start setting); retrying"
                    );
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(MAX_RETRY_PAUSE);
                }
            }
        }
    })
}
