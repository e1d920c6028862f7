//! The producer side: the idempotent producer, its delivery counter, and
//! sending a record that librdkafka accepts.

use super::client_config;
use crate::config::KafkaConfig;
use anyhow::Context as _;
use rdkafka::ClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counts deliveries of a producer; the first failure is kept for the report.
#[derive(Default)]
pub struct DeliveryCounter {
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    pub first_error: Mutex<Option<String>>,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

impl DeliveryCounter {
    /// The first delivery failure's text, empty when none was kept.
    pub fn first_error(&self) -> String {
        self.first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default()
    }
}

/// librdkafka's `message.max.bytes` (its default, which the host keeps).
pub const MAX_MESSAGE_BYTES: usize = 1_000_000;
/// What librdkafka adds to a record's key and value when it checks that size
/// (`RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD`).
const RECORD_OVERHEAD_BYTES: usize = 36;

/// Whether librdkafka refuses a record of this key and payload as too large
/// (`MessageSizeTooLarge`), told before it is handed over.
pub fn too_large(key_bytes: usize, payload_bytes: usize) -> bool {
    key_bytes + payload_bytes + RECORD_OVERHEAD_BYTES > MAX_MESSAGE_BYTES
}

/// Queues a record, waiting while the producer's local queue is full (the
/// poll lets deliveries drain); any other refusal is returned.
pub fn send_waiting<K, P>(
    producer: &BaseProducer<DeliveryCounter>,
    mut record: BaseRecord<'_, K, P>,
) -> Result<(), rdkafka::error::KafkaError>
where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                producer.poll(Duration::from_millis(10));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// An idempotent producer (`enable.idempotence`, `acks=all`): retries never
/// duplicate or reorder a message.
pub fn producer(cfg: &KafkaConfig) -> anyhow::Result<BaseProducer<DeliveryCounter>> {
    client_config(cfg)?
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        // Messages waiting for the broker's acknowledgement (librdkafka's
        // default: 100,000); a full queue makes the generator wait.
        .set("queue.buffering.max.messages", "20000")
        .create_with_context(DeliveryCounter::default())
        .context("cannot create the Kafka producer")
}
