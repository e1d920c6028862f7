//! `host produce --stdin`: hand-made messages, one a line, to one topic
//! (to try a mapper through the whole pipeline without a generator).
//!
//! A line is a message: either its payload as it is, or a JSON object of
//! nothing but `payload` (a string, or `null` for a tombstone), `key`,
//! `partition` and `timestamp` (milliseconds), the lines `host plugin test
//! --input` takes (their `offset` and `topic` are left to Kafka and
//! `--topic`). Any other line, JSON or not, is itself the payload.

use crate::config::KafkaConfig;
use anyhow::{Context as _, bail};
use rdkafka::producer::{BaseRecord, Producer as _};
use std::io::BufRead as _;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How long the last messages may take to be acknowledged.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// One message of the input.
#[derive(Debug, PartialEq, Eq)]
pub struct Line {
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub partition: Option<i32>,
    pub timestamp: Option<i64>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    payload: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    partition: Option<i32>,
    #[serde(default)]
    timestamp: Option<i64>,
    /// Fields of `host plugin test --input` lines that producing cannot set.
    #[serde(default, rename = "offset")]
    _offset: Option<serde_json::Value>,
    #[serde(default, rename = "topic")]
    _topic: Option<serde_json::Value>,
}

/// Reads one line as a message (see the module's comment).
pub fn parse(line: &str) -> Line {
    let is_record = serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v.as_object().map(|o| o.contains_key("payload")))
        .unwrap_or(false);
    match serde_json::from_str::<Record>(line) {
        Ok(r) if is_record => Line {
            key: r.key.map(String::into_bytes),
            payload: r.payload.map(String::into_bytes),
            partition: r.partition,
            timestamp: r.timestamp,
        },
        _ => Line {
            key: None,
            payload: Some(line.as_bytes().to_vec()),
            partition: None,
            timestamp: None,
        },
    }
}

/// Produces each line of stdin to `topic`; returns how many were acknowledged.
pub fn produce(cfg: &KafkaConfig, topic: &str) -> anyhow::Result<u64> {
    let producer = super::producer(cfg)?;
    // librdkafka would hold messages for a missing topic until they time out.
    let metadata = producer
        .client()
        .fetch_metadata(Some(topic), super::METADATA_TIMEOUT)
        .with_context(|| format!("cannot read the metadata of topic {topic:?}"))?;
    if metadata
        .topics()
        .iter()
        .all(|t| t.name() != topic || t.error().is_some() || t.partitions().is_empty())
    {
        bail!(
            "topic {topic:?} does not exist\n  hint: the broker creates no topic by itself: declare it under [[topics]] in the pipeline file and run `host provision`"
        );
    }
    let mut sent = 0u64;
    for (n, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.with_context(|| format!("cannot read line {} of stdin", n + 1))?;
        let m = parse(&line);
        let mut record = BaseRecord::<[u8], [u8]>::to(topic);
        if let Some(payload) = &m.payload {
            record = record.payload(payload);
        }
        if let Some(key) = &m.key {
            record = record.key(key);
        }
        if let Some(p) = m.partition {
            record = record.partition(p);
        }
        if let Some(t) = m.timestamp {
            record = record.timestamp(t);
        }
        if let Err(e) = super::send_waiting(&producer, record) {
            bail!("line {}: cannot produce to {topic:?}: {e}", n + 1);
        }
        sent += 1;
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(FLUSH_TIMEOUT)
        .with_context(|| format!("not all of {sent} messages reached {topic:?} within {FLUSH_TIMEOUT:?}"))?;
    let counter = producer.context();
    let failed = counter.failed.load(Ordering::Relaxed);
    if failed > 0 {
        bail!(
            "{failed} of {sent} messages were not produced to {topic:?}: {}",
            counter.first_error()
        );
    }
    Ok(counter.delivered.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_a_payload_unless_it_is_a_message_record() {
        assert_eq!(parse("not json").payload.as_deref(), Some(&b"not json"[..]));
        let plain = parse(r#"{"a": 1}"#);
        assert_eq!((plain.payload.as_deref(), plain.key), (Some(&br#"{"a": 1}"#[..]), None));
        let other = parse(r#"{"payload": "x", "name": "y"}"#);
        assert_eq!(other.payload.as_deref(), Some(&br#"{"payload": "x", "name": "y"}"#[..]));
        assert_eq!(
            parse(r#"{"payload": "x", "key": "k", "partition": 1, "timestamp": 5}"#),
            Line {
                key: Some(b"k".to_vec()),
                payload: Some(b"x".to_vec()),
                partition: Some(1),
                timestamp: Some(5)
            }
        );
        let test_input = parse(r#"{"payload": "x", "offset": 41, "topic": "t"}"#);
        assert_eq!(test_input.payload.as_deref(), Some(&b"x"[..]));
        let tombstone = parse(r#"{"payload": null, "key": "k"}"#);
        assert_eq!((tombstone.payload, tombstone.key), (None, Some(b"k".to_vec())));
    }
}
