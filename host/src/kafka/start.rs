//! Offsets by position or time: where a partition with nothing stored starts
//! (a sink's `start`), and where `host sink rewind --to-time` goes.

use super::METADATA_TIMEOUT;
use crate::config::StartAt;
use anyhow::Context as _;
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::Duration;

/// Pause between two tries to look up offsets by time for an assignment.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

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

/// Where each of `partitions` (nothing stored for any) starts under `start`.
/// A time is looked up in Kafka, again until it answers: starting anywhere
/// else would store the wrong messages.
pub fn start_offsets<C: ConsumerContext, K: Consumer<C>>(
    consumer: &K,
    topic: &str,
    partitions: &[i32],
    start: StartAt,
) -> HashMap<i32, Offset> {
    let all = |offset: Offset| partitions.iter().map(|p| (*p, offset)).collect();
    match start {
        StartAt::Earliest => all(Offset::Beginning),
        StartAt::Latest => all(Offset::End),
        StartAt::Time(_) if partitions.is_empty() => HashMap::new(),
        StartAt::Time(ms) => loop {
            match offsets_for_time(consumer, topic, partitions, ms) {
                Ok(found) => {
                    break found
                        .into_iter()
                        .map(|(p, o)| (p, o.map_or(Offset::End, Offset::Offset)))
                        .collect();
                }
                Err(e) => {
                    tracing::warn!(topic, error = %format!("{e:#}"), "cannot look up the sink's start time in Kafka; retrying");
                    std::thread::sleep(RETRY_PAUSE);
                }
            }
        },
    }
}
