//! Stored offsets Kafka no longer holds. The consumer runs with
//! `auto.offset.reset = error`, so an offset out of range never moves the
//! sink on by itself: the sink compares the offsets PostgreSQL holds with the
//! log's start and end (at every assignment, after every rewind, and when
//! librdkafka reports an offset out of range) and, per the sink's
//! `on_lost_offsets`, stops naming the statement to run, or skips what
//! cannot be stored and counts it.
//!
//! Two cases:
//! - *past the end*: the stored next offset is beyond the log's end (the
//!   topic was deleted and created again, an unclean leader election
//!   truncated the log, or the offsets come from another cluster). Reading on
//!   would take the new messages below it for stored ones.
//! - *before the start*: retention (or `kafka-delete-records`) deleted
//!   messages between the stored offset and the log's start before the sink
//!   stored them: they are lost.

use crate::config::{OnLostOffsets, SinkConfig};
use crate::kafka::StoredOffsets;
use rdkafka::Offset;
use std::collections::HashMap;

/// A partition whose stored next offset lies outside Kafka's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lost {
    pub partition: i32,
    /// The next offset stored in PostgreSQL.
    pub stored: i64,
    /// The log's start (low watermark) and end (high watermark).
    pub start: i64,
    pub end: i64,
}

impl Lost {
    pub fn past_the_end(&self) -> bool {
        self.stored > self.end
    }
}

/// The partitions whose stored next offset lies outside `[start, end]`
/// (`marks`: partition -> (start, end)); a partition with nothing stored
/// starts at the log's beginning, wherever that is, so it is never lost.
pub fn find(stored: &StoredOffsets, marks: &HashMap<i32, (i64, i64)>) -> Vec<Lost> {
    let mut lost: Vec<Lost> = stored
        .iter()
        .filter_map(|(p, stored)| {
            let (stored, (start, end)) = ((*stored)?, *marks.get(p)?);
            (stored > end || stored < start).then_some(Lost {
                partition: *p,
                stored,
                start,
                end,
            })
        })
        .collect();
    lost.sort_unstable_by_key(|l| l.partition);
    lost
}

/// The error a sink stops with: each partition, its stored offset, the log's
/// start and end, the likely cause and the statements to run.
pub fn stop_message(topic: &str, table: &str, lost: &[Lost]) -> String {
    let quote = |s: &str| s.replace('\'', "''");
    let offsets = crate::postgres::OFFSETS_TABLE;
    let (table_q, topic_q) = (quote(table), quote(topic));
    let list: Vec<String> = lost
        .iter()
        .map(|l| {
            format!(
                "{topic}/{}: stored next offset {}, Kafka's log starts at {} and ends at {}",
                l.partition, l.stored, l.start, l.end
            )
        })
        .collect();
    let mut text = format!(
        "Kafka no longer holds the offsets PostgreSQL stored for topic {topic} ({}). Nothing was skipped: the sink stopped.",
        list.join("; ")
    );
    let past: Vec<String> = lost
        .iter()
        .filter(|l| l.past_the_end())
        .map(|l| l.partition.to_string())
        .collect();
    if !past.is_empty() {
        text.push_str(&format!(
            "\n  The offsets are past the end of topic {topic}: the topic was deleted and created again, an unclean leader election \
             truncated the log, or the database's offsets come from another Kafka cluster; reading on would skip the \
             messages below the stored offsets. To store these partitions from their beginning (the rows already in \
             table {table} stay), delete their stored offsets:\n  DELETE FROM {offsets} WHERE table_name = '{table_q}' \
             AND topic = '{topic_q}' AND partition IN ({});",
            past.join(", ")
        ));
    }
    let before: Vec<&Lost> = lost.iter().filter(|l| !l.past_the_end()).collect();
    if !before.is_empty() {
        text.push_str(&format!(
            "\n  The offsets are before the start of topic {topic}: retention (retention.ms / retention.bytes) or a delete-records \
             request removed messages the sink had not stored yet; they are lost. Raise the topic's retention if the \
             sink can be down this long. To go on from the log's start, accept the loss:"
        ));
        for l in before {
            text.push_str(&format!(
                "\n  UPDATE {offsets} SET next_offset = {} WHERE table_name = '{table_q}' AND topic = '{topic_q}' \
                 AND partition = {} AND next_offset = {};",
                l.start, l.partition, l.stored
            ));
        }
    }
    text.push_str("\n  Or set on_lost_offsets = \"skip\" in the sink's section of the pipeline file: the sink then goes on past such messages and counts them.");
    text
}

/// What a sink with `on_lost_offsets = "skip"` has skipped, kept across
/// rewinds and assignments so each message counts once.
#[derive(Debug, Default)]
pub struct Skipping {
    /// Partition -> offsets below it are counted already.
    counted_to: HashMap<i32, i64>,
    /// Partition -> the stored offset that was past the end: the messages
    /// of the new log below it are skipped (and counted) as they arrive.
    below: HashMap<i32, i64>,
}

impl Skipping {
    /// Takes lost partitions on: stops the sink (`Err`, the text of
    /// [`stop_message`]) unless it skips; then returns where each lost
    /// partition starts instead of its stored offset, logs each at warning
    /// and counts what is skipped now.
    pub fn take_on(&mut self, config: &SinkConfig, lost: &[Lost]) -> anyhow::Result<HashMap<i32, Offset>> {
        if lost.is_empty() {
            return Ok(HashMap::new());
        }
        if config.on_lost_offsets == OnLostOffsets::Stop {
            anyhow::bail!("{}", stop_message(&config.topic, &config.table, lost));
        }
        let mut starts = HashMap::new();
        for l in lost {
            if l.past_the_end() {
                // The log starts over below the stored offset: read it from
                // its beginning and skip, counting, what lies below.
                if self.below.insert(l.partition, l.stored) != Some(l.stored) {
                    self.counted_to.insert(l.partition, l.start);
                    tracing::warn!(
                        sink = config.name,
                        topic = %config.topic,
                        partition = l.partition,
                        stored = l.stored,
                        start = l.start,
                        end = l.end,
                        "the stored next offset is past the end of the topic (created again?); on_lost_offsets = \"skip\": the messages below the stored offset are skipped and counted (wasm_stream_sink_skipped_messages_total), from {} now",
                        l.end - l.start
                    );
                }
                starts.insert(l.partition, Offset::Beginning);
            } else {
                let from = self
                    .counted_to
                    .get(&l.partition)
                    .copied()
                    .unwrap_or(l.stored)
                    .max(l.stored);
                let skipped = (l.start - from).max(0) as u64;
                self.counted_to.insert(l.partition, l.start.max(from));
                if skipped > 0 {
                    crate::ops::metrics::skipped(&config.name, skipped);
                    tracing::warn!(
                        sink = config.name,
                        topic = %config.topic,
                        partition = l.partition,
                        stored = l.stored,
                        start = l.start,
                        end = l.end,
                        skipped,
                        "messages were deleted from Kafka (retention) before they were stored; on_lost_offsets = \"skip\": going on from the log's start"
                    );
                }
                starts.insert(l.partition, Offset::Offset(l.start));
            }
        }
        Ok(starts)
    }

    /// A message below its partition's stored offset arrived (a stale one).
    /// Counts it when it is one of a log created again that is skipped.
    pub fn stale(&mut self, sink: &str, partition: i32, offset: i64) {
        let Some(below) = self.below.get(&partition) else {
            return;
        };
        let counted = self.counted_to.entry(partition).or_insert(0);
        if offset < *below && offset >= *counted {
            *counted = offset + 1;
            crate::ops::metrics::skipped(sink, 1);
        }
    }

    /// Messages counted so far for a partition skipped below its stored
    /// offset (for tests).
    #[cfg(test)]
    fn counted(&self, partition: i32) -> Option<i64> {
        self.counted_to.get(&partition).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(on_lost: &str) -> SinkConfig {
        let text = format!(
            "[kafka]\nbootstrap_servers = \"localhost:9092\"\nsecurity_protocol = \"plaintext\"\n\
             [postgres]\nurl = \"postgres://u@localhost/db\"\ntls = \"disable\"\n\
             [[topics]]\nname = \"t\"\n\
             [[sinks]]\nname = \"s\"\ntopic = \"t\"\ntable = \"rows\"\nmapper = \"m.wasm\"\non_lost_offsets = \"{on_lost}\"\n"
        );
        crate::config::Pipeline::parse(std::path::Path::new("p.toml"), &text)
            .unwrap_or_else(|e| panic!("{e}"))
            .sinks[0]
            .clone()
    }

    fn marks(list: &[(i32, i64, i64)]) -> HashMap<i32, (i64, i64)> {
        list.iter().map(|(p, s, e)| (*p, (*s, *e))).collect()
    }

    #[test]
    fn offsets_inside_the_log_or_not_stored_are_not_lost() {
        let stored: StoredOffsets = [(0, Some(5)), (1, None), (2, Some(10)), (3, Some(3))]
            .into_iter()
            .collect();
        let lost = find(&stored, &marks(&[(0, 0, 10), (1, 7, 7), (2, 3, 10), (3, 3, 3)]));
        assert!(lost.is_empty(), "{lost:?}");
    }

    #[test]
    fn offsets_past_the_end_or_before_the_start_are_lost() {
        let stored: StoredOffsets = [(0, Some(8)), (1, Some(2)), (2, Some(4))].into_iter().collect();
        let lost = find(&stored, &marks(&[(0, 0, 7), (1, 5, 9), (2, 0, 9)]));
        assert_eq!(lost.len(), 2);
        assert!(lost[0].past_the_end() && lost[0].partition == 0);
        assert!(!lost[1].past_the_end() && lost[1].start == 5);
    }

    #[test]
    fn the_stop_message_names_each_partition_and_a_statement_for_only_those() {
        let lost = [
            Lost {
                partition: 2,
                stored: 8,
                start: 0,
                end: 7,
            },
            Lost {
                partition: 5,
                stored: 2,
                start: 5,
                end: 9,
            },
        ];
        let text = stop_message("t", "rows", &lost);
        assert!(
            text.contains("t/2: stored next offset 8, Kafka's log starts at 0 and ends at 7"),
            "{text}"
        );
        assert!(text.contains("created again"), "{text}");
        assert!(text.contains("AND topic = 't' AND partition IN (2);"), "{text}");
        assert!(text.contains("retention"), "{text}");
        assert!(
            text.contains(
                "SET next_offset = 5 WHERE table_name = 'rows' AND topic = 't' AND partition = 5 AND next_offset = 2;"
            ),
            "{text}"
        );
        assert!(text.contains("on_lost_offsets = \"skip\""), "{text}");
    }

    #[test]
    fn stop_refuses_and_skip_starts_past_the_loss_counting_each_message_once() {
        let lost = [Lost {
            partition: 0,
            stored: 2,
            start: 5,
            end: 9,
        }];
        assert!(Skipping::default().take_on(&sink("stop"), &lost).is_err());
        let config = sink("skip");
        let mut s = Skipping::default();
        let starts = s.take_on(&config, &lost).unwrap();
        assert_eq!(starts[&0], Offset::Offset(5));
        assert_eq!(s.counted(0), Some(5));
        // After a rewind the same loss is found again: nothing more counted.
        s.take_on(&config, &lost).unwrap();
        assert_eq!(s.counted(0), Some(5));

        // Created again: read from the beginning, count what lies below 8.
        let past = [Lost {
            partition: 1,
            stored: 8,
            start: 0,
            end: 2,
        }];
        assert_eq!(s.take_on(&config, &past).unwrap()[&1], Offset::Beginning);
        for offset in [0, 1, 0, 1, 2] {
            s.stale("s", 1, offset);
        }
        assert_eq!(s.counted(1), Some(3), "offsets 0-2, each once");
        s.stale("s", 1, 9);
        assert_eq!(s.counted(1), Some(3), "at or past the stored offset: not skipped");
        // A partition not skipped counts nothing.
        s.stale("s", 0, 1);
        assert_eq!(s.counted(0), Some(5));
    }
}
